//! What the Ingress statuses should be: a pure function of the snapshot, the set of
//! Ingresses this table serves, and the address to publish.
//!
//! The address is `--publish-status-address` when given, else the `status.loadBalancer`
//! of `--publish-service` (the address MetalLB or a cloud assigned). Served Ingresses
//! get exactly that list; an Ingress that is no longer served loses it, but only when
//! everything in its status is ours, so another controller's address is never erased.

use std::collections::{BTreeSet, HashSet};

use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};

use crate::config::ObjectRef;
use crate::translate::namespace_of;
use crate::translate::Snapshot;

/// Where the published address comes from.
#[derive(Debug, Clone, Default)]
pub struct AddressSource {
    pub publish_service: Option<ObjectRef>,
    pub publish_status_address: Vec<String>,
}

/// One Ingress whose status must change.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub namespace: String,
    pub name: String,
    pub addresses: Vec<IngressLoadBalancerIngress>,
}

/// The address list to publish, or `None` when there is nothing to publish yet
/// (no source configured, or the publish Service does not exist).
pub fn desired_addresses(
    snapshot: &Snapshot,
    source: &AddressSource,
) -> Option<Vec<IngressLoadBalancerIngress>> {
    if !source.publish_status_address.is_empty() {
        return Some(
            source
                .publish_status_address
                .iter()
                .map(|a| {
                    if a.parse::<std::net::IpAddr>().is_ok() {
                        IngressLoadBalancerIngress {
                            ip: Some(a.clone()),
                            ..Default::default()
                        }
                    } else {
                        IngressLoadBalancerIngress {
                            hostname: Some(a.clone()),
                            ..Default::default()
                        }
                    }
                })
                .collect(),
        );
    }
    let svc_ref = source.publish_service.as_ref()?;
    let svc = snapshot.services.iter().find(|s| {
        namespace_of(&s.metadata) == svc_ref.namespace
            && s.metadata.name.as_deref() == Some(&svc_ref.name)
    })?;
    let lb = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    Some(
        lb.into_iter()
            .flatten()
            .map(|i| IngressLoadBalancerIngress {
                ip: i.ip.clone(),
                hostname: i.hostname.clone(),
                ports: None,
            })
            .collect(),
    )
}

fn key(a: &IngressLoadBalancerIngress) -> (String, String) {
    (
        a.ip.clone().unwrap_or_default(),
        a.hostname.clone().unwrap_or_default(),
    )
}

fn current(ing: &Ingress) -> Vec<IngressLoadBalancerIngress> {
    ing.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
}

/// The status changes needed so that served Ingresses show `desired` and unserved ones
/// do not show it.
pub fn updates(
    snapshot: &Snapshot,
    served: &HashSet<(String, String)>,
    desired: &[IngressLoadBalancerIngress],
) -> Vec<StatusUpdate> {
    let want: BTreeSet<_> = desired.iter().map(key).collect();
    let mut out = Vec::new();
    for ing in &snapshot.ingresses {
        let ns = namespace_of(&ing.metadata).to_string();
        let name = ing.metadata.name.clone().unwrap_or_default();
        let have_list = current(ing);
        let have: BTreeSet<_> = have_list.iter().map(key).collect();
        if served.contains(&(ns.clone(), name.clone())) {
            if have != want {
                out.push(StatusUpdate {
                    namespace: ns,
                    name,
                    addresses: desired.to_vec(),
                });
            }
        } else if !have.is_empty() && !want.is_empty() && have.is_subset(&want) {
            out.push(StatusUpdate {
                namespace: ns,
                name,
                addresses: Vec::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ingress(name: &str, ips: &[&str]) -> Arc<Ingress> {
        let mut ing: Ingress = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default"},
        }))
        .unwrap();
        if !ips.is_empty() {
            ing.status = serde_json::from_value(serde_json::json!({
                "loadBalancer": {"ingress": ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect::<Vec<_>>()}
            }))
            .unwrap();
        }
        Arc::new(ing)
    }

    fn lb(ip: &str) -> IngressLoadBalancerIngress {
        IngressLoadBalancerIngress {
            ip: Some(ip.into()),
            ..Default::default()
        }
    }

    #[test]
    fn served_get_the_address_and_unserved_lose_only_ours() {
        let snapshot = Snapshot {
            ingresses: vec![
                ingress("new", &[]),
                ingress("done", &["192.0.2.10"]),
                ingress("left", &["192.0.2.10"]),
                ingress("other", &["198.51.100.7"]),
            ],
            ..Default::default()
        };
        let served: HashSet<_> = ["new", "done"]
            .iter()
            .map(|n| ("default".to_string(), n.to_string()))
            .collect();
        let ups = updates(&snapshot, &served, &[lb("192.0.2.10")]);
        let names: Vec<_> = ups
            .iter()
            .map(|u| (u.name.as_str(), u.addresses.len()))
            .collect();
        assert_eq!(names, [("new", 1), ("left", 0)]);
    }

    #[test]
    fn status_address_overrides_service() {
        let src = AddressSource {
            publish_service: Some("x/y".parse().unwrap()),
            publish_status_address: vec!["192.0.2.1".into(), "lb.example.com".into()],
        };
        let got = desired_addresses(&Snapshot::default(), &src).unwrap();
        assert_eq!(got[0].ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(got[1].hostname.as_deref(), Some("lb.example.com"));
        let src = AddressSource {
            publish_service: Some("x/y".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(desired_addresses(&Snapshot::default(), &src), None);
    }
}
