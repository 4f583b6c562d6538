//! Service port resolution and endpoint lists: Service + EndpointSlices → [`Endpoints`].
//!
//! Owns the rules of COMPAT §3/§6 for backends: port by number or name, named
//! targetPorts resolved per Pod through the EndpointSlice's port names, endpoints
//! with `ready: false` skipped (a missing condition counts as ready), ip:port
//! de-duplicated, headless Services like any other, ExternalName to a DNS name.
//! A backend that cannot be resolved still exists and answers 503, with a warning.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceBackendPort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::error::{Error, Result};
use super::object::namespace_of;
use super::{ObjKind, Warning};
use crate::routing::{Backend, Endpoints};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Services and their slices, indexed once per translation.
pub struct BackendIndex<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    /// Backends already built in this translation, shared between routes.
    built: HashMap<BackendKey, Arc<Backend>>,
    /// (backend, referrer) pairs already warned about in this translation.
    warned: HashSet<(BackendKey, ObjKind, String, String)>,
}

/// namespace, service, port as the Ingress named it.
type BackendKey = (String, String, String);

impl<'a> BackendIndex<'a> {
    pub fn new(services: &'a [Arc<Service>], slices: &'a [Arc<EndpointSlice>]) -> Self {
        let services = services
            .iter()
            .filter_map(|s| {
                let name = s.metadata.name.as_deref()?;
                Some(((namespace_of(&s.metadata), name), s.as_ref()))
            })
            .collect();
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            by_service
                .entry((namespace_of(&slice.metadata), svc.as_str()))
                .or_default()
                .push(slice.as_ref());
        }
        BackendIndex {
            services,
            slices: by_service,
            built: HashMap::new(),
            warned: HashSet::new(),
        }
    }

    /// The first port of a Service, as ingress-nginx uses for `--default-backend-service`.
    pub fn first_port(&self, namespace: &str, service: &str) -> Option<ServiceBackendPort> {
        let svc = self.services.get(&(namespace, service))?;
        let port = svc.spec.as_ref()?.ports.as_ref()?.first()?;
        Some(ServiceBackendPort {
            name: None,
            number: Some(port.port),
        })
    }

    /// A Service by namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&'a Service> {
        self.services.get(&(namespace, name)).copied()
    }

    pub fn backend_count(&self) -> usize {
        self.built.len()
    }

    /// The backend for `namespace/service:port`, built once per translation.
    /// `referrer` names the object whose warnings this produces.
    pub fn resolve(
        &mut self,
        namespace: &str,
        service: &str,
        port: Option<&ServiceBackendPort>,
        referrer: (ObjKind, &str, &str),
        warnings: &mut Vec<Warning>,
    ) -> Arc<Backend> {
        let port_label = port_label(port);
        let key = (
            namespace.to_string(),
            service.to_string(),
            port_label.clone(),
        );
        let backend = match self.built.get(&key) {
            Some(b) => b.clone(),
            None => {
                let endpoints = self.endpoints(namespace, service, port);
                let mut b = Backend::new(namespace, service, &port_label, endpoints);
                b.client_ip_affinity = self.client_ip_affinity(namespace, service);
                let b = Arc::new(b);
                self.built.insert(key.clone(), b.clone());
                b
            }
        };
        // Every Ingress using a broken backend is told (each gets its own Event),
        // once per backend.
        let (kind, ref_ns, ref_name) = referrer;
        let problem = match &backend.endpoints {
            Endpoints::Unavailable { reason } => Some((
                "BackendUnavailable",
                format!("backend {namespace}/{service}:{port_label} answers 503: {reason}"),
            )),
            Endpoints::Addrs(a) if a.is_empty() => Some((
                "NoReadyEndpoints",
                format!("Service {namespace}/{service} has no ready endpoints for port {port_label}; requests answer 503"),
            )),
            _ => None,
        };
        if let Some((reason, message)) = problem {
            if self
                .warned
                .insert((key, kind, ref_ns.to_string(), ref_name.to_string()))
            {
                warnings.push(Warning::new(kind, ref_ns, ref_name, reason, message));
            }
        }
        backend
    }

    /// `sessionAffinity: ClientIP` with its timeout (kube-proxy's default, 10800 s).
    fn client_ip_affinity(&self, namespace: &str, service: &str) -> Option<Duration> {
        let spec = self.services.get(&(namespace, service))?.spec.as_ref()?;
        if spec.session_affinity.as_deref() != Some("ClientIP") {
            return None;
        }
        let secs = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .filter(|s| *s > 0)
            .unwrap_or(10_800);
        Some(Duration::from_secs(secs as u64))
    }

    fn endpoints(
        &self,
        namespace: &str,
        service: &str,
        port: Option<&ServiceBackendPort>,
    ) -> Endpoints {
        let Some(svc) = self.services.get(&(namespace, service)) else {
            return Endpoints::Unavailable {
                reason: format!("Service {namespace}/{service} not found"),
            };
        };
        let spec = svc.spec.as_ref();
        let ports: &[ServicePort] = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
        let svc_port = match find_service_port(ports, port) {
            Ok(p) => p,
            Err(reason) => {
                // ExternalName Services often declare no ports: use the number as given.
                if let (Some(ext), Some(n)) = (external_name(svc), port.and_then(|p| p.number)) {
                    return external(ext, n);
                }
                return Endpoints::Unavailable {
                    reason: reason.to_string(),
                };
            }
        };
        if let Some(ext) = external_name(svc) {
            let n = match &svc_port.target_port {
                Some(IntOrString::Int(t)) if *t > 0 => *t,
                _ => svc_port.port,
            };
            return external(ext, n);
        }
        let want_name = svc_port.name.as_deref().unwrap_or("");
        let mut addrs = BTreeSet::new();
        for slice in self.slices.get(&(namespace, service)).into_iter().flatten() {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            // The slice's port with the Service port's name carries the resolved
            // target port (per Pod, so named targetPorts work).
            let Some(target) = slice.ports.iter().flatten().find_map(|p| {
                (p.name.as_deref().unwrap_or("") == want_name)
                    .then_some(p.port)
                    .flatten()
            }) else {
                continue;
            };
            let Ok(target) = u16::try_from(target) else {
                continue;
            };
            for ep in &slice.endpoints {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                for a in &ep.addresses {
                    if let Ok(ip) = a.parse::<IpAddr>() {
                        addrs.insert(SocketAddr::new(ip, target));
                    }
                }
            }
        }
        Endpoints::Addrs(addrs.into_iter().collect())
    }
}

fn external(host: &str, port: i32) -> Endpoints {
    match u16::try_from(port) {
        Ok(port) if port > 0 => Endpoints::External {
            host: host.trim_end_matches('.').to_string(),
            port,
        },
        _ => Endpoints::Unavailable {
            reason: format!("invalid port {port} for ExternalName {host}"),
        },
    }
}

fn external_name(svc: &Service) -> Option<&str> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        spec.external_name.as_deref().filter(|n| !n.is_empty())
    } else {
        None
    }
}

fn find_service_port<'p>(
    ports: &'p [ServicePort],
    want: Option<&ServiceBackendPort>,
) -> Result<&'p ServicePort> {
    let found = match want {
        Some(ServiceBackendPort {
            number: Some(n), ..
        }) => ports.iter().find(|p| p.port == *n),
        Some(ServiceBackendPort { name: Some(n), .. }) => {
            ports.iter().find(|p| p.name.as_deref() == Some(n.as_str()))
        }
        // No port given: only unambiguous with a single port.
        _ if ports.len() == 1 => ports.first(),
        _ => None,
    };
    found.ok_or_else(|| {
        Error::Service(format!(
            "Service has no port {}",
            want.map_or_else(|| "(none given)".to_string(), |p| port_label(Some(p)))
        ))
    })
}

pub(super) fn port_label(port: Option<&ServiceBackendPort>) -> String {
    match port {
        Some(ServiceBackendPort {
            number: Some(n), ..
        }) => n.to_string(),
        Some(ServiceBackendPort { name: Some(n), .. }) => n.clone(),
        _ => String::new(),
    }
}
