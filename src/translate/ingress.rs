//! Ingress rules → routes: class selection (COMPAT §2), path validation, merging of
//! several Ingresses per host (oldest `creationTimestamp` first; the oldest keeps a
//! clashing host+path+pathType), `spec.defaultBackend` and `--default-backend-service`.
//!
//! `ImplementationSpecific` paths are treated as `Prefix` (regex mode arrives with the
//! annotation parsers). `resource` backends are not proxied: the path is treated as absent.
//!
//! Canary Ingresses (`annotations/canary.rs`) add no routes, hosts or certificates:
//! their backends are attached to the main routes of the same rule. `server-alias`
//! and `from-to-www-redirect` (`annotations/hosts.rs`) add host entries that share the
//! host's routes or only redirect.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, ServiceBackendPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::annotations::proxy_ssl::{self, ProxySsl};
use super::annotations::{
    auth, balance, canary, cors, custom_errors, hosts, limits, policy, upstream,
};
use super::backends::{port_label, BackendIndex};
use super::object::{
    annotation, bool_annotation, canonical, namespace_of, raw_annotation, service_of,
    validate_host, validate_path,
};
use super::values::parse_bool;
use super::{ObjKind, Snapshot, Translation, Warning};
use crate::config::TranslateConfig;
use crate::routing::matcher::InsertError;
use crate::routing::{
    Backend, Endpoints, HostPattern, PathKind, Rewrite, Route, RoutingTable, TableStats,
    UpstreamProtocol,
};

/// The deprecated annotation that still selects a class.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether an Ingress is ours (COMPAT §2). The deprecated annotation, when present,
/// decides on its own (as in ingress-nginx); then `spec.ingressClassName`; then
/// `--watch-ingress-without-class`.
pub fn is_served(
    ing: &Ingress,
    classes: &HashMap<&str, &IngressClass>,
    config: &TranslateConfig,
) -> bool {
    if let Some(class) = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLASS_ANNOTATION))
    {
        return *class == config.ingress_class;
    }
    match ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        Some(name) => {
            classes
                .get(name)
                .and_then(|c| c.spec.as_ref())
                .and_then(|s| s.controller.as_deref())
                == Some(config.controller_class.as_str())
        }
        None => config.watch_without_class,
    }
}

fn age_key(ing: &Ingress) -> (Option<&Time>, &str, &str) {
    (
        ing.metadata.creation_timestamp.as_ref(),
        namespace_of(&ing.metadata),
        ing.metadata.name.as_deref().unwrap_or(""),
    )
}

pub(super) fn build(snapshot: &Snapshot, config: &TranslateConfig) -> Translation {
    let mut warnings = Vec::new();
    let classes: HashMap<&str, &IngressClass> = snapshot
        .ingress_classes
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c.as_ref())))
        .collect();
    let mut served: Vec<&Ingress> = snapshot
        .ingresses
        .iter()
        .map(Arc::as_ref)
        .filter(|i| is_served(i, &classes, config))
        .collect();
    let ignored_ingresses = snapshot.ingresses.len() - served.len();
    // Oldest first; namespace/name breaks ties so the result is deterministic.
    served.sort_by(|a, b| age_key(a).cmp(&age_key(b)));

    let mut backends = BackendIndex::new(&snapshot.services, &snapshot.endpoint_slices);
    let mut table = RoutingTable::default();
    // Which Ingress holds each host+path+kind, to name it in conflict warnings.
    let mut owners: HashMap<(HostPattern, PathKind, String), String> = HashMap::new();
    let mut paths = 0;
    table.globals = super::configmap::globals(
        &snapshot.config_maps,
        config.configmap.as_ref(),
        &mut warnings,
    );
    // Canary Ingresses add no routes, hosts, certificates or regex mode of their own:
    // they only lend their backends to the main routes (annotations/canary.rs).
    let primaries: Vec<&Ingress> = served
        .iter()
        .copied()
        .filter(|i| !canary::is_canary(i))
        .collect();
    let tls = super::tls::build(
        &primaries,
        &snapshot.secrets,
        config.default_ssl_certificate.as_ref(),
        snapshot.observed_at,
        &mut warnings,
    );

    let secrets: HashMap<(&str, &str), &Secret> = snapshot
        .secrets
        .iter()
        .filter_map(|s| {
            Some((
                (namespace_of(&s.metadata), s.metadata.name.as_deref()?),
                s.as_ref(),
            ))
        })
        .collect();

    // Regex hosts (COMPAT §3): one Ingress with use-regex or rewrite-target on a host
    // turns every path of that host into a regex.
    for ing in &primaries {
        let regex = raw_annotation(ing, "use-regex").is_some_and(|v| parse_bool(v) == Some(true))
            || raw_annotation(ing, "rewrite-target").is_some_and(|v| !v.trim().is_empty());
        if !regex {
            continue;
        }
        for rule in ing.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
            let host = rule.host.as_deref();
            if host.is_none_or(|h| validate_host(h).is_ok()) {
                table
                    .hosts
                    .entry(&HostPattern::parse(host))
                    .set_regex_mode();
            }
        }
    }

    let hosts_plan = hosts::HostPlan::build(&primaries, &tls.certs, &mut warnings);
    hosts_plan.set_regex_modes(&mut table);
    let canaries: Vec<&Ingress> = served
        .iter()
        .copied()
        .filter(|i| canary::is_canary(i))
        .collect();
    let mut canary_plan =
        canary::Plan::build(&canaries, &mut backends, &table.globals, &mut warnings);

    for ing in &served {
        let ns = namespace_of(&ing.metadata);
        let name = ing.metadata.name.as_deref().unwrap_or("");
        let me = (ObjKind::Ingress, ns, name);
        super::annotations::check_keys(ing, &mut warnings);
        if canary::is_canary(ing) {
            continue;
        }
        canary::check_not_canary(ing, &mut warnings);
        let (mut policy, path_options) = policy::parse(ing, &mut warnings);
        auth::parse(ing, &secrets, &mut policy, &mut warnings);
        policy.cors = cors::parse(ing, &mut warnings);
        policy.limits = limits::parse(ing, &mut warnings);
        hosts::apply_policy(ing, &mut policy, &mut warnings);
        policy.default_backend = upstream::default_backend(ing, &mut backends, &mut warnings);
        let service_upstream = upstream::service_upstream(ing, &mut warnings);
        custom_errors::parse(ing, &mut policy, &mut warnings);
        let policy = Arc::new(policy);
        let Some(spec) = ing.spec.as_ref() else {
            continue;
        };
        let ssl_redirect = bool_annotation(
            ing,
            "ssl-redirect",
            table.globals.ssl_redirect,
            &mut warnings,
        );
        let force_ssl_redirect = bool_annotation(ing, "force-ssl-redirect", false, &mut warnings);
        let protocol = backend_protocol(ing, &mut warnings);
        let balancing = balance::parse(
            ing,
            &table.globals.load_balance,
            table.globals.next_upstream,
            &mut warnings,
        );
        let affinity_for = |path: &str| {
            balancing.affinity.as_ref().map(|a| {
                let mut a = a.clone();
                if !balancing.cookie_path_set {
                    a.path = path.into();
                }
                Arc::new(a)
            })
        };
        let mut upstream_tls = None;
        let mut tls_broken = None;
        if matches!(protocol, UpstreamProtocol::Https | UpstreamProtocol::Grpcs) {
            match proxy_ssl::parse(ing, &secrets, &mut warnings) {
                ProxySsl::Default => {}
                ProxySsl::Settings(t) => upstream_tls = Some(t),
                ProxySsl::Broken(why) => tls_broken = Some(why),
            }
        }
        // Verification that cannot be honoured: the paths answer 503, never unverified.
        let resolve = |backends: &mut BackendIndex,
                       svc: &str,
                       port: Option<&ServiceBackendPort>,
                       warnings: &mut Vec<Warning>| match &tls_broken {
            Some(why) => Arc::new(Backend::new(
                ns,
                svc,
                &port_label(port),
                Endpoints::Unavailable {
                    reason: why.clone(),
                },
            )),
            None => upstream::fallback(
                upstream::resolve(backends, ing, service_upstream, svc, port, warnings),
                &policy,
            ),
        };

        if let Some(default) = &spec.default_backend {
            if table.default_backend.is_some() {
                warnings.push(Warning::new(
                    ObjKind::Ingress,
                    ns,
                    name,
                    "DefaultBackendConflict",
                    "spec.defaultBackend ignored: an older Ingress already sets the default backend".into(),
                ));
            } else if let Some(svc) = service_of(default, me, &mut warnings) {
                let backend = resolve(&mut backends, &svc.name, svc.port.as_ref(), &mut warnings);
                table.default_backend = Some(Arc::new(Route {
                    backend,
                    ingress_namespace: ns.into(),
                    ingress_name: name.into(),
                    host: "".into(),
                    path: "".into(),
                    kind: PathKind::Prefix,
                    ssl_redirect: false,
                    protocol,
                    upstream_tls: upstream_tls.clone(),
                    lb: balancing.lb.clone(),
                    affinity: affinity_for("/"),
                    next_upstream: balancing.next_upstream,
                    policy: policy.clone(),
                    rewrite: None,
                    canary: None,
                    is_canary: false,
                }));
            }
        }

        for rule in spec.rules.iter().flatten() {
            let host = rule.host.as_deref();
            if let Some(h) = host {
                if let Err(why) = validate_host(h) {
                    warnings.push(Warning::new(
                        ObjKind::Ingress,
                        ns,
                        name,
                        "InvalidHost",
                        format!("rule for host {h:?} ignored: {why}"),
                    ));
                    continue;
                }
            }
            let pattern = HostPattern::parse(host);
            for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                let raw_path = p.path.as_deref().unwrap_or("");
                let kind = match validate_path(&p.path_type, raw_path) {
                    Ok(k) => k,
                    Err(why) => {
                        warnings.push(Warning::new(
                            ObjKind::Ingress,
                            ns,
                            name,
                            "InvalidPath",
                            format!(
                                "path {raw_path:?} ({}) on host {pattern} ignored: {why}",
                                p.path_type
                            ),
                        ));
                        continue;
                    }
                };
                let path = if raw_path.is_empty() { "/" } else { raw_path };
                let Some(svc) = service_of(&p.backend, me, &mut warnings) else {
                    continue;
                };
                let owner_key = (pattern.clone(), kind, canonical(kind, path));
                if let Some(owner) = owners.get(&owner_key) {
                    if owner != &format!("{ns}/{name}") {
                        warnings.push(Warning::new(
                            ObjKind::Ingress,
                            ns,
                            name,
                            "PathConflict",
                            format!("path {path} ({kind:?}) on host {pattern} is already served by older Ingress {owner}; this rule is ignored"),
                        ));
                    }
                    continue;
                }
                let backend = resolve(&mut backends, &svc.name, svc.port.as_ref(), &mut warnings);
                let host_has_tls = match &pattern {
                    HostPattern::Any => false,
                    p => tls.tls_hosts.contains(&p.to_string()),
                };
                let regex_host = table.hosts.get(&pattern).is_some_and(|m| m.is_regex_mode());
                if regex_host && balancing.affinity.is_some() && !balancing.cookie_path_set {
                    warnings.push(Warning::new(
                        ObjKind::Ingress,
                        ns,
                        name,
                        "InvalidAnnotation",
                        format!("nginx.ingress.kubernetes.io/session-cookie-path is required when host {pattern} matches paths as regexes; the affinity cookie uses Path=/"),
                    ));
                }
                let rewrite = match &path_options.rewrite_target {
                    None => None,
                    Some(target) => match crate::routing::policy::path_regex(path) {
                        Ok(regex) => Some(Arc::new(Rewrite {
                            regex,
                            target: target.clone(),
                        })),
                        Err(why) => {
                            warnings.push(Warning::new(
                                ObjKind::Ingress,
                                ns,
                                name,
                                "InvalidPath",
                                format!("path {path:?} on host {pattern} ignored: rewrite-target needs it as a regex, and it is {why}"),
                            ));
                            continue;
                        }
                    },
                };
                let route = Arc::new(Route {
                    backend,
                    ingress_namespace: ns.into(),
                    ingress_name: name.into(),
                    host: match &pattern {
                        HostPattern::Any => "".into(),
                        p => p.to_string().into(),
                    },
                    path: path.into(),
                    kind,
                    ssl_redirect: force_ssl_redirect || (ssl_redirect && host_has_tls),
                    protocol,
                    upstream_tls: upstream_tls.clone(),
                    lb: balancing.lb.clone(),
                    // A regex is no cookie path: ingress-nginx requires
                    // session-cookie-path there; without it the cookie gets `/`.
                    affinity: affinity_for(if regex_host { "/" } else { path }),
                    next_upstream: balancing.next_upstream,
                    policy: policy.clone(),
                    rewrite,
                    canary: None,
                    is_canary: false,
                });
                let route = canary_plan.attach(&owner_key, route, &mut warnings);
                match table.hosts.entry(&pattern).insert(kind, path, route.clone()) {
                    Ok(()) => {
                        hosts_plan.insert_aliases(
                            &mut table,
                            &pattern,
                            kind,
                            path,
                            &route,
                            force_ssl_redirect,
                        );
                        owners.insert(owner_key, format!("{ns}/{name}"));
                        paths += 1;
                    }
                    Err(InsertError::BadRegex(why)) => warnings.push(Warning::new(
                        ObjKind::Ingress,
                        ns,
                        name,
                        "InvalidPath",
                        format!("path {path:?} on host {pattern} ignored: the host matches paths as regexes (use-regex or rewrite-target) and this one is {why}"),
                    )),
                    Err(InsertError::Conflict) => {}
                }
            }
        }
    }

    hosts_plan.insert_redirects(&mut table);
    canary_plan.finish(&mut table.default_backend, &mut warnings);

    if let Some(dbs) = &config.default_backend_service {
        let port = backends.first_port(&dbs.namespace, &dbs.name);
        let who = (ObjKind::Service, dbs.namespace.as_str(), dbs.name.as_str());
        let backend =
            backends.resolve(&dbs.namespace, &dbs.name, port.as_ref(), who, &mut warnings);
        // Also the error backend of custom-http-errors.
        table.error_backend = Some(backend.clone());
        if table.default_backend.is_none() {
            let mut route = Route::new(backend, "", "", "", PathKind::Prefix);
            route.lb = table.globals.load_balance.clone();
            route.next_upstream = table.globals.next_upstream;
            table.default_backend = Some(Arc::new(route));
        }
    }

    table.certs = tls.certs;
    table.cert_expiry = tls.expiry;
    table.stats = TableStats {
        ingresses: served.len(),
        hosts: table.hosts.host_count(),
        paths,
        backends: backends.backend_count(),
    };
    let served = served
        .iter()
        .map(|i| {
            (
                namespace_of(&i.metadata).to_string(),
                i.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    Translation {
        table,
        warnings,
        ignored_ingresses,
        served,
    }
}

/// `backend-protocol`: HTTP (default), HTTPS, GRPC, GRPCS, AUTO_HTTP. Anything else
/// (FCGI, garbage) warns and keeps HTTP.
fn backend_protocol(ing: &Ingress, warnings: &mut Vec<Warning>) -> UpstreamProtocol {
    let parse = |raw: &str| match raw.trim().to_ascii_uppercase().as_str() {
        "HTTP" | "AUTO_HTTP" => Ok(UpstreamProtocol::Http),
        "HTTPS" => Ok(UpstreamProtocol::Https),
        "GRPC" => Ok(UpstreamProtocol::Grpc),
        "GRPCS" => Ok(UpstreamProtocol::Grpcs),
        _ => Err("supported (HTTP, HTTPS, GRPC, GRPCS, AUTO_HTTP)"),
    };
    annotation(
        ing,
        "backend-protocol",
        UpstreamProtocol::Http,
        parse,
        warnings,
    )
}
