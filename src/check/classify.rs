//! Classification: turns translation's warnings and the per-key tables into the
//! findings of a [`Report`], per Ingress and annotation, with severities and the exit
//! code. Rendering is [`super::report`]'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressClassSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::TranslateConfig;
use crate::translate::annotations::{notes, support, Support};
use crate::translate::ingress::{is_served, CLASS_ANNOTATION};
use crate::translate::namespace_of;
use crate::translate::object::ANNOTATION_PREFIX;
use crate::translate::{translate, ObjKind, Warning};

use super::report::*;
use super::Input;

/// Kinds of object a partial input may leave out (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Absent {
    Services,
    Secrets,
    Endpoints,
}

impl Absent {
    /// What the report says about skipping them: everywhere, or in `namespaces`.
    fn assumption(self, everywhere: bool, namespaces: &BTreeSet<&str>) -> String {
        let (what, consequence) = match self {
            Absent::Services => ("Services", "references to Services are not checked"),
            Absent::Secrets => ("Secrets", "references to Secrets are not checked"),
            Absent::Endpoints => (
                "EndpointSlices or Endpoints",
                "Services are assumed to have ready endpoints",
            ),
        };
        if everywhere {
            format!("no {what} in the input: {consequence}")
        } else {
            let list: Vec<&str> = namespaces.iter().copied().collect();
            let s = if list.len() == 1 { "" } else { "s" };
            format!(
                "no {what} in the input for namespace{s} {}: there, {consequence}",
                list.join(", ")
            )
        }
    }
}

/// Namespaces for which the input holds objects of each [`Absent`] kind.
struct Present<'a> {
    services: BTreeSet<&'a str>,
    secrets: BTreeSet<&'a str>,
    endpoints: BTreeSet<&'a str>,
}

impl Present<'_> {
    fn namespaces(&self, kind: Absent) -> &BTreeSet<&str> {
        match kind {
            Absent::Services => &self.services,
            Absent::Secrets => &self.secrets,
            Absent::Endpoints => &self.endpoints,
        }
    }

    /// The kind a warning is about when the input cannot judge it: a Service, Secret or
    /// endpoints missing where the input holds none of that kind in the referring
    /// object's namespace.
    fn unjudgeable(&self, w: &Warning) -> Option<Absent> {
        let not_found = w.message.contains("not found");
        let kind = match w.reason {
            "BackendUnavailable" if not_found => Absent::Services,
            "InvalidTlsSecret" | "InvalidProxySslSecret" | "InvalidAuthSecret" if not_found => {
                Absent::Secrets
            }
            "NoReadyEndpoints" => Absent::Endpoints,
            _ => return None,
        };
        (!self.namespaces(kind).contains(w.namespace.as_str())).then_some(kind)
    }
}

/// Checks what [`load`] read, as sluice configured with `config` would serve it.
pub fn check(input: Input, config: &TranslateConfig) -> Report {
    let mut snapshot = input.snapshot;
    let mut assumptions = Vec::new();

    let class_given = snapshot
        .ingress_classes
        .iter()
        .any(|c| c.metadata.name.as_deref() == Some(config.ingress_class.as_str()));
    if !class_given {
        snapshot.ingress_classes.push(Arc::new(IngressClass {
            metadata: ObjectMeta {
                name: Some(config.ingress_class.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(IngressClassSpec {
                controller: Some(config.controller_class.clone()),
                ..IngressClassSpec::default()
            }),
        }));
        let named = snapshot.ingresses.iter().any(|i| {
            i.spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.as_deref())
                == Some(config.ingress_class.as_str())
        });
        if named {
            assumptions.push(format!(
                "IngressClass {} with controller {} (none of that name in the input; sluice's chart creates it)",
                config.ingress_class, config.controller_class
            ));
        }
    }
    if let Some(cm) = &config.configmap {
        let found = snapshot.config_maps.iter().any(|c| {
            namespace_of(&c.metadata) == cm.namespace
                && c.metadata.name.as_deref() == Some(&cm.name)
        });
        if !found {
            assumptions.push(format!(
                "ConfigMap {cm} (--configmap) is not in the input: its defaults are used"
            ));
        }
    }

    let translation = translate(&snapshot, config);
    let present = Present {
        services: snapshot
            .services
            .iter()
            .map(|s| namespace_of(&s.metadata))
            .collect(),
        secrets: snapshot
            .secrets
            .iter()
            .map(|s| namespace_of(&s.metadata))
            .collect(),
        endpoints: input
            .endpoint_namespaces
            .iter()
            .map(String::as_str)
            .collect(),
    };
    let mut warnings: Vec<&Warning> = Vec::new();
    let mut skipped: BTreeMap<Absent, BTreeSet<&str>> = BTreeMap::new();
    for w in &translation.warnings {
        match present.unjudgeable(w) {
            Some(kind) => {
                skipped.entry(kind).or_default().insert(&w.namespace);
            }
            None => warnings.push(w),
        }
    }
    for (kind, namespaces) in &skipped {
        let everywhere = present.namespaces(*kind).is_empty();
        assumptions.push(kind.assumption(everywhere, namespaces));
    }

    let classes: HashMap<&str, &IngressClass> = snapshot
        .ingress_classes
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c.as_ref())))
        .collect();
    let mut ingresses: Vec<&Ingress> = snapshot.ingresses.iter().map(Arc::as_ref).collect();
    ingresses.sort_by_key(|i| {
        (
            namespace_of(&i.metadata).to_string(),
            i.metadata.name.clone().unwrap_or_default(),
        )
    });
    let mut reports = Vec::new();
    for ing in ingresses {
        let ns = namespace_of(&ing.metadata).to_string();
        let name = ing.metadata.name.clone().unwrap_or_default();
        let file = input.origin.get(&(ns.clone(), name.clone())).cloned();
        if !is_served(ing, &classes, config) {
            reports.push(IngressReport {
                ignored_reason: Some(not_served_reason(ing, &classes, config)),
                namespace: ns,
                name,
                file,
                served: false,
                annotations: Vec::new(),
                problems: Vec::new(),
            });
            continue;
        }
        let mine = warnings
            .iter()
            .filter(|w| w.kind == ObjKind::Ingress && w.namespace == ns && w.name == name);
        let (annotations, problems) = ingress_findings(ing, mine);
        reports.push(IngressReport {
            namespace: ns,
            name,
            file,
            served: true,
            ignored_reason: None,
            annotations,
            problems,
        });
    }

    let mut objects: Vec<ObjectItem> = warnings
        .iter()
        .filter(|w| w.kind != ObjKind::Ingress)
        .map(|w| ObjectItem {
            kind: w.kind.to_string(),
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            severity: Severity::of_reason(w.reason),
            reason: w.reason.to_string(),
            message: w.message.clone(),
        })
        .collect();
    if let Some(cm_ref) = &config.configmap {
        let cm = snapshot.config_maps.iter().find(|c| {
            namespace_of(&c.metadata) == cm_ref.namespace
                && c.metadata.name.as_deref() == Some(&cm_ref.name)
        });
        for key in cm
            .iter()
            .flat_map(|c| c.data.iter().flatten())
            .map(|(k, _)| k)
        {
            if let Some(how) = notes::configmap_differs(key) {
                objects.push(ObjectItem {
                    kind: "ConfigMap".into(),
                    namespace: cm_ref.namespace.clone(),
                    name: cm_ref.name.clone(),
                    severity: Severity::Warning,
                    reason: "Differs".into(),
                    message: format!("{key}: {how}"),
                });
            }
        }
    }

    let mut files = input.file_problems;
    if snapshot.ingresses.is_empty() {
        files.push(FileItem {
            file: "<input>".into(),
            line: None,
            severity: Severity::Warning,
            message: "no Ingress in the input".into(),
        });
    }

    let mut severities: Vec<Severity> = Vec::new();
    severities.extend(files.iter().map(|f| f.severity));
    for r in &reports {
        if !r.served {
            severities.push(Severity::Warning);
        }
        severities.extend(r.annotations.iter().filter_map(|a| a.status.severity()));
        severities.extend(r.problems.iter().map(|p| p.severity));
    }
    severities.extend(objects.iter().map(|o| o.severity));
    let errors = severities.iter().filter(|s| **s == Severity::Error).count();
    let warnings = severities.len() - errors;
    let served = reports.iter().filter(|r| r.served).count();
    Report {
        version: 1,
        summary: Summary {
            ingresses: reports.len(),
            served,
            ignored: reports.len() - served,
            errors,
            warnings,
            exit_code: if errors > 0 {
                2
            } else if warnings > 0 {
                1
            } else {
                0
            },
        },
        assumptions,
        files,
        ingresses: reports,
        objects,
    }
}

/// Keys whose warnings are worded with another key (`whitelist-source-range` is read
/// as `allowlist-source-range`).
const ALIASES: &[(&str, &str)] = &[("allowlist-source-range", "whitelist-source-range")];

/// The annotations of one served Ingress with their status, and its other problems.
fn ingress_findings<'w>(
    ing: &Ingress,
    warnings: impl Iterator<Item = &'w &'w Warning>,
) -> (Vec<AnnotationItem>, Vec<Problem>) {
    let empty = BTreeMap::new();
    let annotations = ing.metadata.annotations.as_ref().unwrap_or(&empty);
    let mut items: BTreeMap<&str, AnnotationItem> = annotations
        .keys()
        .filter_map(|k| Some((k.as_str(), classify(k)?)))
        .collect();
    let mut problems = Vec::new();
    for w in warnings {
        match w.reason {
            // Already shown per key.
            "RefusedAnnotation" | "UnsupportedAnnotation" => continue,
            "InvalidAnnotation" | "AnnotationNotApplied" => {
                if let Some((key, rest)) = warned_key(&w.message, annotations) {
                    if let Some(item) = items.get_mut(key) {
                        item.status = match (w.reason, item.status) {
                            ("InvalidAnnotation", _) => Status::Invalid,
                            (_, Status::Supported) => Status::Differs,
                            (_, s) => s,
                        };
                        item.messages.push(rest.to_string());
                        continue;
                    }
                }
            }
            _ => {}
        }
        problems.push(Problem {
            severity: Severity::of_reason(w.reason),
            reason: w.reason.to_string(),
            message: w.message.clone(),
        });
    }
    (items.into_values().collect(), problems)
}

/// The annotation key (as the Ingress spells it) a warning message starts with, and
/// the rest of the message.
fn warned_key<'m, 'a>(
    message: &'m str,
    annotations: &'a BTreeMap<String, String>,
) -> Option<(&'a str, &'m str)> {
    let rest = message.strip_prefix(ANNOTATION_PREFIX)?;
    let end = rest.find([':', ' ']).unwrap_or(rest.len());
    let short = &rest[..end];
    let tail = rest[end..].trim_start_matches(':').trim_start();
    let candidates = std::iter::once(short).chain(
        ALIASES
            .iter()
            .filter(|(from, _)| *from == short)
            .map(|(_, to)| *to),
    );
    for c in candidates {
        if let Some((k, _)) = annotations.get_key_value(&format!("{ANNOTATION_PREFIX}{c}")) {
            return Some((k.as_str(), tail));
        }
    }
    None
}

/// Classifies one annotation key; `None` for keys that are not ingress-nginx's business.
fn classify(key: &str) -> Option<AnnotationItem> {
    let item = |status, note: Option<String>| {
        Some(AnnotationItem {
            key: key.to_string(),
            status,
            note,
            messages: Vec::new(),
        })
    };
    let Some(short) = key.strip_prefix(ANNOTATION_PREFIX) else {
        // A misspelt prefix (or ingress-nginx's pre-0.9 one) silently does nothing.
        let (prefix, name) = key.rsplit_once('/')?;
        let ours = ANNOTATION_PREFIX.trim_end_matches('/');
        let misspelt = notes::edit_distance(prefix, ours) <= 3 || prefix == "ingress.kubernetes.io";
        if !misspelt || key == CLASS_ANNOTATION {
            return None;
        }
        return item(
            Status::Unknown,
            Some(format!(
                "not an ingress-nginx annotation (prefix {prefix}/); did you mean {ANNOTATION_PREFIX}{name}?"
            )),
        );
    };
    match support(short) {
        Support::Refused => item(
            Status::Refused,
            Some(
                "raw nginx configuration is never executed; the Ingress is served without it"
                    .into(),
            ),
        ),
        Support::Supported => match notes::differs(short) {
            Some(how) => item(Status::Differs, Some(how.into())),
            None => item(Status::Supported, None),
        },
        Support::Unsupported if notes::is_ingress_nginx_key(short) => item(
            Status::Unsupported,
            Some(
                notes::unsupported_reason(short)
                    .unwrap_or("not implemented in sluice; ignored")
                    .into(),
            ),
        ),
        Support::Unsupported => item(
            Status::Unknown,
            Some(match notes::nearest_key(short) {
                Some(k) => format!("not an ingress-nginx annotation; did you mean {k}?"),
                None => "not an ingress-nginx annotation; ignored".into(),
            }),
        ),
    }
}

/// Why [`is_served`] said no, in the terms of its rules (COMPAT §2).
fn not_served_reason(
    ing: &Ingress,
    classes: &HashMap<&str, &IngressClass>,
    config: &TranslateConfig,
) -> String {
    if let Some(class) = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLASS_ANNOTATION))
    {
        return format!(
            "its {CLASS_ANNOTATION} annotation is {class:?}, and sluice serves {:?} (--ingress-class)",
            config.ingress_class
        );
    }
    match ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        Some(name) => match classes
            .get(name)
            .map(|c| c.spec.as_ref().and_then(|s| s.controller.as_deref()))
        {
            None => format!(
                "IngressClass {name} is not in the input, and sluice serves only classes with controller {} (--controller-class)",
                config.controller_class
            ),
            Some(controller) => {
                let controller = controller.unwrap_or("");
                format!(
                    "IngressClass {name} belongs to controller {controller}; sluice claims {} (run sluice with --controller-class {controller} to take over its Ingresses)",
                    config.controller_class
                )
            }
        },
        None => "it names no IngressClass; sluice serves such Ingresses only with --watch-ingress-without-class (in a cluster, a default IngressClass fills the name in when the Ingress is created)".into(),
    }
}
