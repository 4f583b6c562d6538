//! Which addresses a rule's Service stands for: `service-upstream` and `default-backend`.
//!
//! `service-upstream: "true"`: the backend is the Service's `spec.clusterIP` and the
//! Service port as its single endpoint (kube-proxy balances), instead of the endpoint
//! list. A Service port named in the Ingress is looked up by name. Services without a
//! ClusterIP (headless `None`, ExternalName) cannot be used that way: sluice warns
//! (`ServiceUpstreamIgnored`) and uses the endpoints, where ingress-nginx only logs.
//! A port the Service does not declare gives the usual 503 and warning (ingress-nginx
//! would send to the ClusterIP anyway and fail to connect). Applies to the Ingress's
//! rules and its `spec.defaultBackend`; on a canary Ingress, to the canary's backend.
//! As ingress-nginx documents, retries cannot pick another endpoint and cookie
//! affinity has only the one address.
//!
//! `default-backend: <service>`: a Service in the Ingress's namespace, its first port,
//! that answers when a rule's Service has no ready endpoints (or is missing), as
//! ingress-nginx's `custom-default-backend-*` upstream: the request is proxied to it
//! unchanged, with the route's other settings. It is used only when it has endpoints
//! itself; else the route answers 503 as without it. A missing Service or one without
//! ports warns and is ignored. It is never used in place of a backend that answers 503
//! because `proxy-ssl-verify` cannot be honoured (that would fail open).
//! The parsed backend is kept in `Policy::default_backend` for `custom-http-errors`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, ServiceBackendPort};

use super::super::backends::{port_label, BackendIndex};
use super::super::error::{Error, Result};
use super::super::object::namespace_of;
use super::super::object::raw_annotation;
use super::super::values::parse_bool;
use super::super::{ObjKind, Warning};
use crate::routing::{Backend, Endpoints, Policy};

use super::super::object::ANNOTATION_PREFIX as P;

fn warn(ing: &Ingress, reason: &'static str, message: String, warnings: &mut Vec<Warning>) {
    let w = Warning::new(
        ObjKind::Ingress,
        namespace_of(&ing.metadata),
        ing.metadata.name.as_deref().unwrap_or(""),
        reason,
        message,
    );
    if !warnings.contains(&w) {
        warnings.push(w);
    }
}

/// `service-upstream` (false when unset; a bad value warns and keeps false).
pub fn service_upstream(ing: &Ingress, warnings: &mut Vec<Warning>) -> bool {
    let Some(v) = raw_annotation(ing, "service-upstream") else {
        return false;
    };
    parse_bool(v).unwrap_or_else(|| {
        warn(
            ing,
            "InvalidAnnotation",
            format!("{P}service-upstream: {v:?} is not true or false; using false"),
            warnings,
        );
        false
    })
}

/// The backend for `namespace/service:port` of Ingress `ing`: the ClusterIP with
/// `service_upstream`, else the endpoints.
pub fn resolve(
    backends: &mut BackendIndex,
    ing: &Ingress,
    service_upstream: bool,
    service: &str,
    port: Option<&ServiceBackendPort>,
    warnings: &mut Vec<Warning>,
) -> Arc<Backend> {
    let ns = namespace_of(&ing.metadata);
    let me = (
        ObjKind::Ingress,
        ns,
        ing.metadata.name.as_deref().unwrap_or(""),
    );
    if service_upstream {
        match cluster_endpoint(backends, ns, service, port) {
            Ok(Some(addr)) => {
                return Arc::new(Backend::new(
                    ns,
                    service,
                    &port_label(port),
                    Endpoints::Addrs(vec![addr]),
                ))
            }
            Ok(None) => {}
            Err(why) => warn(
                ing,
                "ServiceUpstreamIgnored",
                format!("{P}service-upstream: {why}; its endpoints are used instead"),
                warnings,
            ),
        }
    }
    backends.resolve(ns, service, port, me, warnings)
}

/// `Ok(None)`: the Service or port is missing (the normal resolution reports it).
fn cluster_endpoint(
    backends: &BackendIndex,
    ns: &str,
    service: &str,
    port: Option<&ServiceBackendPort>,
) -> Result<Option<SocketAddr>> {
    let Some(spec) = backends.service(ns, service).and_then(|s| s.spec.as_ref()) else {
        return Ok(None);
    };
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    let found = match port {
        Some(ServiceBackendPort {
            number: Some(n), ..
        }) => ports.iter().find(|p| p.port == *n),
        Some(ServiceBackendPort { name: Some(n), .. }) => {
            ports.iter().find(|p| p.name.as_deref() == Some(n.as_str()))
        }
        _ if ports.len() == 1 => ports.first(),
        _ => None,
    };
    let Some(found) = found else {
        return Ok(None);
    };
    let ip = spec.cluster_ip.as_deref().unwrap_or("");
    if ip.is_empty() || ip == "None" {
        return Err(Error::Service(format!(
            "Service {ns}/{service} has no ClusterIP (headless or ExternalName)"
        )));
    }
    let ip: IpAddr = ip.parse().map_err(|_| {
        Error::Service(format!(
            "Service {ns}/{service} has an invalid clusterIP {ip:?}"
        ))
    })?;
    let port = u16::try_from(found.port).map_err(|_| {
        Error::Service(format!(
            "Service {ns}/{service} has an invalid port {}",
            found.port
        ))
    })?;
    Ok(Some(SocketAddr::new(ip, port)))
}

/// `default-backend`: the Service (first port) of the Ingress's namespace, resolved
/// through `backends` like any other. Missing or portless Services warn and give `None`.
pub fn default_backend(
    ing: &Ingress,
    backends: &mut BackendIndex,
    warnings: &mut Vec<Warning>,
) -> Option<Arc<Backend>> {
    let name = raw_annotation(ing, "default-backend")?.trim();
    if name.is_empty() {
        return None;
    }
    let ns = namespace_of(&ing.metadata);
    let bad = |why: String, warnings: &mut Vec<Warning>| {
        warn(
            ing,
            "InvalidAnnotation",
            format!("{P}default-backend: {name:?}: {why}; ignored"),
            warnings,
        );
        None
    };
    let label_ok = name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !label_ok {
        return bad(
            "not a Service name (a Service of the Ingress's own namespace)".into(),
            warnings,
        );
    }
    if backends.service(ns, name).is_none() {
        return bad(format!("Service {ns}/{name} not found"), warnings);
    }
    let Some(port) = backends.first_port(ns, name) else {
        return bad(format!("Service {ns}/{name} has no ports"), warnings);
    };
    let me = (
        ObjKind::Ingress,
        ns,
        ing.metadata.name.as_deref().unwrap_or(""),
    );
    Some(backends.resolve(ns, name, Some(&port), me, warnings))
}

/// The backend a route uses: its own, or the `default-backend` when its own has no
/// endpoints and the default backend has some.
pub fn fallback(backend: Arc<Backend>, policy: &Policy) -> Arc<Backend> {
    match &policy.default_backend {
        Some(db) if !backend.has_endpoints() && db.has_endpoints() => db.clone(),
        _ => backend,
    }
}
