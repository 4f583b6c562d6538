//! What translation reads: the [`Snapshot`] a source produces, and what a source must
//! know to produce a complete one ([`referenced_config_maps`]). Owned by translation,
//! so sources depend on it and not the other way round.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::object::namespace_of;
use crate::config::ObjectRef;

/// Every object translation may look at, as one consistent view.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub ingresses: Vec<Arc<Ingress>>,
    pub ingress_classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    pub config_maps: Vec<Arc<ConfigMap>>,
    /// When the snapshot was taken (seconds since the epoch), so translation can judge
    /// certificate expiry without reading the clock. 0: unknown (nothing expires).
    pub observed_at: i64,
}

/// The ConfigMaps that `proxy-set-headers` and `add-headers` of the controller ConfigMap
/// `cm` name. A source must put them in the [`Snapshot`] too (controller mode watches
/// each by name), or those headers are not set.
pub fn referenced_config_maps(cm: &ConfigMap) -> Vec<ObjectRef> {
    let ns = namespace_of(&cm.metadata);
    let Some(data) = cm.data.as_ref() else {
        return Vec::new();
    };
    let mut refs: Vec<ObjectRef> = ["proxy-set-headers", "add-headers"]
        .iter()
        .filter_map(|k| data.get(*k))
        .filter_map(|v| config_map_ref(v, ns))
        .collect();
    refs.dedup();
    refs
}

pub(super) fn config_map_ref(value: &str, default_ns: &str) -> Option<ObjectRef> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    match v.parse::<ObjectRef>() {
        Ok(r) => Some(r),
        Err(_) if !v.contains('/') => Some(ObjectRef {
            namespace: default_ns.to_string(),
            name: v.to_string(),
        }),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let cm: ConfigMap = serde_yaml_ng::from_str(
            "metadata: {name: c, namespace: ingress}\ndata: {proxy-set-headers: other/req, add-headers: resp}",
        )
        .unwrap();
        let refs: Vec<String> = referenced_config_maps(&cm)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(refs, vec!["other/req", "ingress/resp"]);
    }
}
