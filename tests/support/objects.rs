//! Kubernetes objects for the integration tests, built as k8s-openapi values and
//! serialised by serde_yaml_ng (in the style of linkerd2's `mk_*` builders), so a
//! value reaches sluice exactly as written whatever it holds (quotes, `#`, `: `,
//! newlines). Formatting the YAML by hand put values in `'...'` or `"..."`, which broke
//! on a value holding that quote.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// The prefix every annotation key of [`MkIngress`] gets.
pub const ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// An Ingress in namespace `default`, class `nginx`, with one rule. Unset fields are
/// left out of the manifest.
#[derive(Debug, Default, Clone, Copy)]
pub struct MkIngress<'a> {
    pub name: &'a str,
    /// The rule's host (`None`: a rule for every host).
    pub host: Option<&'a str>,
    /// `(pathType, path, service)`; every Service on port 80.
    pub paths: &'a [(&'a str, &'a str, &'a str)],
    /// Short keys get [`ANNOTATION_PREFIX`]; a key with a `/` is taken as written.
    pub annotations: &'a [(&'a str, &'a str)],
    /// `metadata.creationTimestamp` (RFC 3339), which decides merge conflicts.
    pub created: Option<&'a str>,
    /// A `spec.tls` entry for the host, with `tls_secret` as its `secretName` (none:
    /// the default certificate).
    pub tls: bool,
    /// Implies `tls`.
    pub tls_secret: Option<&'a str>,
}

impl MkIngress<'_> {
    /// The manifest as one YAML document, starting with `---`.
    pub fn yaml(&self) -> String {
        let annotations: BTreeMap<String, String> = self
            .annotations
            .iter()
            .map(|(k, v)| match k.contains('/') {
                true => (k.to_string(), v.to_string()),
                false => (format!("{ANNOTATION_PREFIX}{k}"), v.to_string()),
            })
            .collect();
        let path = |&(kind, path, svc): &(&str, &str, &str)| HTTPIngressPath {
            path: Some(path.into()),
            path_type: kind.into(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: svc.into(),
                    port: Some(ServiceBackendPort {
                        number: Some(80),
                        ..ServiceBackendPort::default()
                    }),
                }),
                ..IngressBackend::default()
            },
        };
        let ingress = Ingress {
            metadata: ObjectMeta {
                name: Some(self.name.into()),
                namespace: Some("default".into()),
                annotations: (!annotations.is_empty()).then_some(annotations),
                creation_timestamp: self
                    .created
                    .map(|t| Time(t.parse().unwrap_or_else(|e| panic!("created {t:?}: {e}")))),
                ..ObjectMeta::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: Some("nginx".into()),
                tls: (self.tls || self.tls_secret.is_some()).then(|| {
                    vec![IngressTLS {
                        hosts: Some(self.host.into_iter().map(String::from).collect()),
                        secret_name: self.tls_secret.map(String::from),
                    }]
                }),
                rules: Some(vec![IngressRule {
                    host: self.host.map(String::from),
                    http: Some(HTTPIngressRuleValue {
                        paths: self.paths.iter().map(path).collect(),
                    }),
                }]),
                ..IngressSpec::default()
            }),
            ..Ingress::default()
        };
        format!(
            "---\n{}",
            serde_yaml_ng::to_string(&ingress).expect("an Ingress serialises")
        )
    }
}

/// [`MkIngress`] for `host`: each of `paths` (pathType, path) → Service `svc`.
pub fn mk_ingress(
    name: &str,
    host: &str,
    paths: &[(&str, &str)],
    svc: &str,
    annotations: &[(&str, &str)],
) -> String {
    let paths: Vec<(&str, &str, &str)> = paths.iter().map(|&(k, p)| (k, p, svc)).collect();
    MkIngress {
        name,
        host: Some(host),
        paths: &paths,
        annotations,
        ..MkIngress::default()
    }
    .yaml()
}

/// A ConfigMap `name` in namespace `default` with `data`, as one YAML document.
pub fn mk_config_map(name: &str, data: &[(&str, &str)]) -> String {
    let cm = k8s_openapi::api::core::v1::ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    format!(
        "---\n{}",
        serde_yaml_ng::to_string(&cm).expect("a ConfigMap serialises")
    )
}
