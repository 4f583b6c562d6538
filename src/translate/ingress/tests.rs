//! The stages of [`build`], on typed objects made by the `mk_*` builders below.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IngressClassSpec, IngressRule, IngressServiceBackend,
    IngressSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::routing::Match;

/// An Ingress `ns/name`, created `age` seconds after the epoch, with `rules` of
/// (host, pathType, path, service) and the given annotations (short keys get the
/// ingress-nginx prefix).
fn mk_ingress(
    ns: &str,
    name: &str,
    age: i64,
    class: Option<&str>,
    rules: &[(Option<&str>, &str, &str, &str)],
    annotations: &[(&str, &str)],
) -> Ingress {
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| {
            let key = if k.contains('/') {
                k.to_string()
            } else {
                format!("{}{k}", super::super::object::ANNOTATION_PREFIX)
            };
            (key, v.to_string())
        })
        .collect();
    Ingress {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            creation_timestamp: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(age).unwrap(),
            )),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: class.map(Into::into),
            rules: Some(
                rules
                    .iter()
                    .map(|(host, kind, path, svc)| IngressRule {
                        host: host.map(Into::into),
                        http: Some(HTTPIngressRuleValue {
                            paths: vec![mk_path(kind, path, svc)],
                        }),
                    })
                    .collect(),
            ),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

fn mk_path(kind: &str, path: &str, svc: &str) -> HTTPIngressPath {
    HTTPIngressPath {
        path: Some(path.into()),
        path_type: kind.into(),
        backend: IngressBackend {
            service: Some(IngressServiceBackend {
                name: svc.into(),
                port: Some(ServiceBackendPort {
                    number: Some(80),
                    name: None,
                }),
            }),
            resource: None,
        },
    }
}

fn mk_class(name: &str, controller: &str) -> IngressClass {
    IngressClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some(controller.into()),
            ..IngressClassSpec::default()
        }),
    }
}

/// Serves class-less Ingresses, so the builders need no IngressClass.
fn mk_config() -> TranslateConfig {
    TranslateConfig {
        watch_without_class: true,
        ..TranslateConfig::default()
    }
}

fn mk_snapshot(ingresses: Vec<Ingress>, classes: Vec<IngressClass>) -> Snapshot {
    Snapshot {
        ingresses: ingresses.into_iter().map(Arc::new).collect(),
        ingress_classes: classes.into_iter().map(Arc::new).collect(),
        ..Snapshot::default()
    }
}

fn names(ingresses: &[&Ingress]) -> Vec<String> {
    ingresses
        .iter()
        .map(|i| i.metadata.name.clone().unwrap())
        .collect()
}

fn reasons(t: &Translation) -> Vec<(&str, &'static str)> {
    t.warnings
        .iter()
        .filter(|w| w.reason != "BackendUnavailable")
        .map(|w| (w.name.as_str(), w.reason))
        .collect()
}

fn served_by(t: &Translation, host: &str, path: &str) -> Option<String> {
    match t.table.lookup(host, path) {
        Match::Rule(r) => Some(r.ingress_name.to_string()),
        _ => None,
    }
}

#[test]
fn class_selection_serves_our_classes_oldest_first() {
    let config = TranslateConfig::default();
    let ours = config.controller_class.clone();
    let rule = [(Some("a.example"), "Prefix", "/", "svc")];
    let snap = mk_snapshot(
        vec![
            mk_ingress("ns", "young", 20, Some("mine"), &rule, &[]),
            mk_ingress("ns", "old", 10, Some("mine"), &rule, &[]),
            mk_ingress("ns", "theirs", 5, Some("other"), &rule, &[]),
            // The deprecated annotation decides on its own, over the class name.
            mk_ingress(
                "ns",
                "annotated",
                15,
                Some("other"),
                &rule,
                &[("kubernetes.io/ingress.class", "nginx")],
            ),
            mk_ingress("ns", "classless", 1, None, &rule, &[]),
        ],
        vec![
            mk_class("mine", &ours),
            mk_class("other", "k8s.io/ingress-nginx"),
        ],
    );
    let (served, ignored) = select(&snap, &config);
    assert_eq!(names(&served), ["old", "annotated", "young"]);
    assert_eq!(ignored, 2);
    let config = TranslateConfig {
        watch_without_class: true,
        ..config
    };
    let (served, _) = select(&snap, &config);
    assert_eq!(names(&served), ["classless", "old", "annotated", "young"]);
}

#[test]
fn the_older_ingress_keeps_a_clashing_path() {
    let snap = mk_snapshot(
        vec![
            mk_ingress(
                "ns",
                "young",
                20,
                None,
                &[(Some("a.example"), "Prefix", "/app/", "svc")],
                &[],
            ),
            mk_ingress(
                "ns",
                "old",
                10,
                None,
                &[(Some("a.example"), "Prefix", "/app", "svc")],
                &[],
            ),
            mk_ingress(
                "ns",
                "exact",
                30,
                None,
                &[(Some("a.example"), "Exact", "/app", "svc")],
                &[],
            ),
        ],
        vec![],
    );
    let t = build(&snap, &mk_config());
    // Prefix /app and /app/ are one rule: the younger is dropped with a warning.
    assert_eq!(reasons(&t), [("young", "PathConflict")]);
    assert_eq!(served_by(&t, "a.example", "/app/x").as_deref(), Some("old"));
    // Exact is another kind: it coexists and wins for its own path.
    assert_eq!(served_by(&t, "a.example", "/app").as_deref(), Some("exact"));
    assert_eq!(t.table.stats.paths, 2);
}

#[test]
fn invalid_hosts_and_paths_drop_only_themselves() {
    let snap = mk_snapshot(
        vec![mk_ingress(
            "ns",
            "mixed",
            1,
            None,
            &[
                (Some("bad_host"), "Prefix", "/", "svc"),
                (Some("a.example"), "Prefix", "relative", "svc"),
                (Some("a.example"), "Exact", "/ok", "svc"),
            ],
            &[],
        )],
        vec![],
    );
    let t = build(&snap, &mk_config());
    assert_eq!(
        reasons(&t),
        [("mixed", "InvalidHost"), ("mixed", "InvalidPath")]
    );
    assert_eq!(served_by(&t, "a.example", "/ok").as_deref(), Some("mixed"));
}

#[test]
fn use_regex_on_one_ingress_makes_the_whole_host_regex() {
    let a = mk_ingress(
        "ns",
        "a",
        1,
        None,
        &[(Some("r.example"), "Prefix", "/x", "svc")],
        &[("use-regex", "true")],
    );
    let b = mk_ingress(
        "ns",
        "b",
        2,
        None,
        &[(Some("r.example"), "Prefix", "/y", "svc")],
        &[],
    );
    let c = mk_ingress(
        "ns",
        "c",
        3,
        None,
        &[(Some("plain.example"), "Prefix", "/z", "svc")],
        &[("use-regex", "false")],
    );
    let mut table = RoutingTable::default();
    mark_regex_hosts(&[&a, &b, &c], &mut table);
    let regex = |h: &str| {
        table
            .hosts
            .get(&HostPattern::parse(Some(h)))
            .is_some_and(|m| m.is_regex_mode())
    };
    assert!(regex("r.example"));
    assert!(!regex("plain.example"));
}

#[test]
fn settings_warn_on_a_bad_boolean_and_keep_the_default() {
    let ing = mk_ingress(
        "ns",
        "i",
        1,
        None,
        &[(Some("a.example"), "Prefix", "/", "svc")],
        &[("force-ssl-redirect", "yes"), ("backend-protocol", "grpc")],
    );
    let snap = mk_snapshot(vec![], vec![]);
    let mut backends = BackendIndex::new(&snap.services, &snap.endpoint_slices);
    let mut warnings = Vec::new();
    let s = Settings::parse(
        &ing,
        &HashMap::new(),
        &mut backends,
        &GlobalSettings::default(),
        &mut warnings,
    )
    .unwrap();
    assert!(!s.force_ssl_redirect);
    assert_eq!(s.protocol, UpstreamProtocol::Grpc);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].reason, "InvalidAnnotation");
    assert!(
        warnings[0].message.contains("force-ssl-redirect"),
        "{}",
        warnings[0].message
    );
}
