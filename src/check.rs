//! `sluice check`: reads Ingress manifests offline and reports, per Ingress and per
//! `nginx.ingress.kubernetes.io/*` annotation, what sluice will do with them, for users
//! moving from ingress-nginx.
//!
//! Owns reading the inputs (files, directories, `-` for stdin; multi-document YAML and
//! `kind: List`, as `kubectl get ingress -A -o yaml` prints) with the standalone
//! manifests parser, running the **same** translation the controller runs, and turning
//! its warnings plus the per-key tables ([`support`], [`notes`]) into a report (text or
//! a stable JSON document) and an exit code: 0 clean, 1 warnings, 2 errors.
//!
//! Annotation statuses: `supported`; `differs` (supported, with a difference written
//! down in [`notes::DIFFERS`] or warned as `AnnotationNotApplied`); `unsupported` (an
//! ingress-nginx key sluice ignores); `unknown` (not an ingress-nginx key at all, most
//! likely a typo: the nearest key is suggested; also keys under a misspelt prefix);
//! `refused` (snippets: never executed); `invalid` (the parser rejected the value).
//! `differs`, `unsupported` and `unknown` count as warnings, `refused` and `invalid` as
//! errors.
//! Translation warnings are errors when the value or spec is invalid or a path is
//! dropped (`Invalid*`, `PathConflict`, `ResourceBackendIgnored`), otherwise warnings.
//!
//! Choices, since the input is usually a partial view of a cluster:
//! - **Missing objects.** Services, Secrets and endpoints are often not part of what is
//!   checked. A "Service not found" warning is dropped when the input holds no Service
//!   in the referring Ingress's namespace; likewise "Secret not found" (TLS, `auth-secret` and
//!   `proxy-ssl-secret`) without any Secret there, and "no ready endpoints" without any
//!   EndpointSlice or Endpoints there. Once one object of a kind is given for a
//!   namespace, the input is taken as complete for that kind there and every problem
//!   is reported. The report says what it skipped ("Assuming").
//! - **IngressClass.** Without an IngressClass named `--ingress-class` (default `nginx`)
//!   in the input, one is assumed with `--controller-class` as its controller: that is
//!   what sluice's chart creates, so `ingressClassName: nginx` is served. An
//!   IngressClass in the input wins, so feeding in ingress-nginx's own class
//!   (`k8s.io/ingress-nginx`) shows those Ingresses as ignored, with the flag to take
//!   them over.
//! - **Ignored Ingresses** (another class) get only the reason: their annotations are
//!   not sluice's business and do not count towards the exit code beyond the one
//!   warning.
//! - **Age.** Ingresses without `creationTimestamp` are stamped "now", as the API server
//!   would stamp them on create, so for a clash between a listed (older) Ingress and a
//!   new manifest the listed one wins.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressClassSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Serialize;

use crate::config::{ObjectRef, TranslateConfig, DEFAULT_CONTROLLER_CLASS};
use crate::source::manifests::{self, Identity, Object};
use crate::translate::annotations::{notes, support, Support};
use crate::translate::ingress::{is_served, CLASS_ANNOTATION};
use crate::translate::namespace_of;
use crate::translate::object::ANNOTATION_PREFIX;
use crate::translate::Snapshot;
use crate::translate::{translate, ObjKind, Warning};

/// `sluice check` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// Manifests to check: files, directories (every *.yaml/*.yml under them) or `-`
    /// for stdin (the default). `kubectl get ingress -A -o yaml` output works as is.
    #[arg(value_name = "FILE|DIR|-")]
    pub inputs: Vec<String>,

    /// Report format: `text` for people, `json` for tools (a stable document).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// As sluice's flag: Ingresses whose `kubernetes.io/ingress.class` annotation has
    /// this value are served; also the name of the IngressClass assumed when the input
    /// has none of that name.
    #[arg(long, default_value = "nginx")]
    pub ingress_class: String,

    /// As sluice's flag: IngressClasses with this `spec.controller` are served.
    #[arg(long, default_value = DEFAULT_CONTROLLER_CLASS)]
    pub controller_class: String,

    /// As sluice's flag: also serve Ingresses that name no class.
    #[arg(long)]
    pub watch_ingress_without_class: bool,

    /// As sluice's flag: the ConfigMap (namespace/name, in the input) with global options.
    #[arg(long, value_name = "NS/NAME")]
    pub configmap: Option<ObjectRef>,
}

/// `--output`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

impl CheckArgs {
    /// The translation settings these flags stand for.
    pub fn translate_config(&self) -> TranslateConfig {
        TranslateConfig {
            ingress_class: self.ingress_class.clone(),
            controller_class: self.controller_class.clone(),
            watch_without_class: self.watch_ingress_without_class,
            configmap: self.configmap.clone(),
            ..TranslateConfig::default()
        }
    }
}

/// Runs the subcommand: reads, checks, prints the report to stdout. Returns the exit code.
pub fn run(args: &CheckArgs) -> i32 {
    let inputs = if args.inputs.is_empty() {
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            eprintln!("sluice check: give manifest files or directories, or - to read stdin");
            return 2;
        }
        vec!["-".to_string()]
    } else {
        args.inputs.clone()
    };
    let input = load(&inputs, &mut std::io::stdin().lock());
    let report = check(input, &args.translate_config());
    match args.output {
        OutputFormat::Text => print!("{}", report.to_text()),
        OutputFormat::Json => println!("{}", report.to_json()),
    }
    report.summary.exit_code
}

/// What was read: the objects as one snapshot, plus where each Ingress came from.
#[derive(Debug, Default)]
pub struct Input {
    pub snapshot: Snapshot,
    /// Ingress namespace/name → the file it came from.
    pub origin: HashMap<(String, String), String>,
    pub file_problems: Vec<FileItem>,
    /// Namespaces with any EndpointSlice or Endpoints object in the input.
    pub endpoint_namespaces: BTreeSet<String>,
}

/// Reads every input (`-` is `stdin`). Problems are recorded, never fatal.
pub fn load(inputs: &[String], stdin: &mut dyn Read) -> Input {
    let mut input = Input::default();
    let mut texts: Vec<(String, String)> = Vec::new();
    let problem = |input: &mut Input, file: &str, line: Option<usize>, message: String| {
        input.file_problems.push(FileItem {
            file: file.to_string(),
            line,
            severity: Severity::Error,
            message,
        })
    };
    for arg in inputs {
        if arg == "-" {
            let mut text = String::new();
            match stdin.read_to_string(&mut text) {
                Ok(_) => texts.push(("<stdin>".into(), text)),
                Err(e) => problem(&mut input, "<stdin>", None, format!("cannot read: {e}")),
            }
            continue;
        }
        let path = Path::new(arg);
        let mut files = Vec::new();
        if path.is_dir() {
            if let Err(e) = manifests::collect_yaml_files(path, &mut files) {
                problem(&mut input, arg, None, format!("cannot list: {e}"));
            }
            files.sort();
            if files.is_empty() {
                problem(
                    &mut input,
                    arg,
                    None,
                    "no *.yaml or *.yml files in this directory".into(),
                );
            }
        } else {
            files.push(PathBuf::from(arg));
        }
        for file in files {
            let name = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => texts.push((name, text)),
                Err(e) => problem(&mut input, &name, None, format!("cannot read: {e}")),
            }
        }
    }

    let now = Time(
        k8s_openapi::jiff::Timestamp::from_second(crate::source::now_secs()).unwrap_or_default(),
    );
    let mut seen: HashMap<Identity, String> = HashMap::new();
    let mut endpoints = Vec::new();
    for (name, text) in &texts {
        let parsed = manifests::parse_str(Path::new(name), text);
        if let Some(p) = parsed.syntax_error {
            problem(
                &mut input,
                name,
                Some(p.line),
                format!("{}; nothing in this file is checked", p.message),
            );
            continue;
        }
        for (_, p) in parsed.bad_documents {
            problem(&mut input, name, Some(p.line), p.message);
        }
        for obj in parsed.objects {
            let id = obj.identity();
            if let Some(first) = seen.get(&id) {
                input.file_problems.push(FileItem {
                    file: name.clone(),
                    line: None,
                    severity: Severity::Warning,
                    message: format!("{id} is also defined in {first}; this copy is ignored"),
                });
                continue;
            }
            seen.insert(id.clone(), name.clone());
            let snap = &mut input.snapshot;
            match obj {
                Object::Ingress(mut o) => {
                    if o.metadata.creation_timestamp.is_none() {
                        o.metadata.creation_timestamp = Some(now.clone());
                    }
                    input.origin.insert((id.namespace, id.name), name.clone());
                    snap.ingresses.push(Arc::new(o));
                }
                Object::IngressClass(o) => snap.ingress_classes.push(Arc::new(o)),
                Object::Service(o) => snap.services.push(Arc::new(o)),
                Object::EndpointSlice(o) => {
                    input.endpoint_namespaces.insert(id.namespace);
                    snap.endpoint_slices.push(Arc::new(o));
                }
                Object::Endpoints(o) => {
                    input.endpoint_namespaces.insert(id.namespace);
                    endpoints.push(o);
                }
                Object::Secret(o) => snap.secrets.push(Arc::new(o)),
                Object::ConfigMap(o) => snap.config_maps.push(Arc::new(o)),
            }
        }
    }
    for ep in endpoints {
        let slices = manifests::mirror(&ep, &input.snapshot.services);
        input
            .snapshot
            .endpoint_slices
            .extend(slices.into_iter().map(Arc::new));
    }
    input.snapshot.observed_at = crate::source::now_secs();
    input
}

/// How bad one finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// The severity of a translation warning, by its reason.
    pub fn of_reason(reason: &str) -> Severity {
        match reason {
            // The value or the spec is wrong, or a path is dropped.
            "InvalidAnnotation"
            | "InvalidPath"
            | "InvalidHost"
            | "InvalidBackend"
            | "PathConflict"
            | "ResourceBackendIgnored"
            | "RefusedAnnotation"
            | "InvalidProxySslSecret"
            | "InvalidConfigValue" => Severity::Error,
            // Served, but not as written; or as ingress-nginx would do it too.
            "AnnotationNotApplied"
            | "UnsupportedAnnotation"
            | "BackendUnavailable"
            | "NoReadyEndpoints"
            | "TlsNoSecret"
            | "InvalidTlsSecret"
            | "CertificateHostMismatch"
            | "CertificateExpired"
            | "DefaultBackendConflict" => Severity::Warning,
            r if r.starts_with("Invalid") => Severity::Error,
            _ => Severity::Warning,
        }
    }
}

/// What sluice does with one annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Supported,
    Differs,
    Unsupported,
    Unknown,
    Refused,
    Invalid,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Supported => "supported",
            Status::Differs => "differs",
            Status::Unsupported => "unsupported",
            Status::Unknown => "unknown",
            Status::Refused => "refused",
            Status::Invalid => "invalid",
        }
    }

    fn severity(self) -> Option<Severity> {
        match self {
            Status::Supported => None,
            Status::Differs | Status::Unsupported | Status::Unknown => Some(Severity::Warning),
            Status::Refused | Status::Invalid => Some(Severity::Error),
        }
    }
}

/// The whole report; its JSON form is the `--output json` document (`version` 1).
#[derive(Debug, Serialize)]
pub struct Report {
    /// Version of this document's layout.
    pub version: u32,
    pub summary: Summary,
    /// What the check assumed about objects the input did not contain.
    pub assumptions: Vec<String>,
    pub files: Vec<FileItem>,
    pub ingresses: Vec<IngressReport>,
    /// Findings about objects other than Ingresses (ConfigMap, ...).
    pub objects: Vec<ObjectItem>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub ingresses: usize,
    pub served: usize,
    pub ignored: usize,
    pub errors: usize,
    pub warnings: usize,
    /// 0 clean, 1 warnings, 2 errors.
    pub exit_code: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileItem {
    pub file: String,
    pub line: Option<usize>,
    pub severity: Severity,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct IngressReport {
    pub namespace: String,
    pub name: String,
    pub file: Option<String>,
    pub served: bool,
    /// Why sluice will not serve it (another class), when it will not.
    pub ignored_reason: Option<String>,
    pub annotations: Vec<AnnotationItem>,
    /// Translation warnings that are not about one annotation.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct AnnotationItem {
    /// The full key, prefix included.
    pub key: String,
    pub status: Status,
    /// How it differs / why it is not supported / what it may be a typo of.
    pub note: Option<String>,
    /// Translation warnings about its value.
    pub messages: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct ObjectItem {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub severity: Severity,
    pub reason: String,
    pub message: String,
}

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

impl Report {
    /// The `--output json` document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serialises")
    }

    /// The `--output text` report.
    pub fn to_text(&self) -> String {
        const W: usize = 12;
        // Continuation lines of multi-line messages (regex errors) stay inside the item.
        let indent = |s: &str| s.replace('\n', &format!("\n  {:<W$}   ", ""));
        let mut out = String::new();
        let o = &mut out;
        if !self.assumptions.is_empty() {
            o.push_str("Assuming\n");
            for a in &self.assumptions {
                let _ = writeln!(o, "  {a}");
            }
            o.push('\n');
        }
        for r in &self.ingresses {
            let from = r
                .file
                .as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            let state = if r.served { "served" } else { "ignored" };
            let _ = writeln!(o, "Ingress {}/{}{from}: {state}", r.namespace, r.name);
            if let Some(why) = &r.ignored_reason {
                let _ = writeln!(o, "  {:<W$} {why}", "ignored");
            }
            for a in &r.annotations {
                let key = a.key.strip_prefix(ANNOTATION_PREFIX).unwrap_or(&a.key);
                let mut parts = a.note.iter().chain(&a.messages);
                let _ = write!(o, "  {:<W$} {key}", a.status.label());
                if let Some(first) = parts.next() {
                    let _ = write!(o, ": {}", indent(first));
                }
                o.push('\n');
                for more in parts {
                    let _ = writeln!(o, "  {:<W$}   {}", "", indent(more));
                }
            }
            for p in &r.problems {
                let _ = writeln!(
                    o,
                    "  {:<W$} {}: {}",
                    p.severity.label(),
                    p.reason,
                    indent(&p.message)
                );
            }
            o.push('\n');
        }
        if !self.files.is_empty() {
            o.push_str("Files\n");
            for f in &self.files {
                let at = f.line.map(|l| format!(":{l}")).unwrap_or_default();
                let _ = writeln!(
                    o,
                    "  {:<W$} {}{at}: {}",
                    f.severity.label(),
                    f.file,
                    indent(&f.message)
                );
            }
            o.push('\n');
        }
        if !self.objects.is_empty() {
            o.push_str("Other objects\n");
            for x in &self.objects {
                let _ = writeln!(
                    o,
                    "  {:<W$} {} {}/{}: {}: {}",
                    x.severity.label(),
                    x.kind,
                    x.namespace,
                    x.name,
                    x.reason,
                    indent(&x.message)
                );
            }
            o.push('\n');
        }
        let s = &self.summary;
        let _ = writeln!(
            o,
            "{} Ingress{}: {} served, {} ignored; {} error{}, {} warning{}",
            s.ingresses,
            if s.ingresses == 1 { "" } else { "es" },
            s.served,
            s.ignored,
            s.errors,
            if s.errors == 1 { "" } else { "s" },
            s.warnings,
            if s.warnings == 1 { "" } else { "s" },
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> Report {
        let input = load(&["-".into()], &mut yaml.as_bytes());
        check(input, &TranslateConfig::default())
    }

    const ING: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  ingressClassName: nginx\n  tls: [{hosts: [a.example], secretName: a-tls}]\n  rules:\n  - host: a.example\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n";

    #[test]
    fn missing_objects_are_reported_only_where_the_input_has_that_kind() {
        let has =
            |r: &Report, reason: &str| r.ingresses[0].problems.iter().any(|p| p.reason == reason);
        // No Service, Secret or endpoints at all: nothing to complain about.
        let r = run(ING);
        assert_eq!(r.summary.exit_code, 0, "{}", r.to_text());
        assert_eq!(
            r.assumptions[1..],
            [
                "no Services in the input: references to Services are not checked",
                "no Secrets in the input: references to Secrets are not checked",
            ],
            "{:?}",
            r.assumptions
        );

        // A Service in another namespace says nothing about this one.
        let elsewhere = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: other}\nspec: {ports: [{port: 80}]}\n";
        let r = run(&format!("{ING}{elsewhere}"));
        assert!(!has(&r, "BackendUnavailable"), "{}", r.to_text());
        assert!(r
            .assumptions
            .contains(&"no Services in the input for namespace shop: there, references to Services are not checked".to_string()));

        // A Service of another name in the same namespace: the input speaks for it.
        let svc = "---\napiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
        let r = run(&format!("{ING}{svc}"));
        assert!(has(&r, "BackendUnavailable"), "{}", r.to_text());
        // Secrets still absent: the missing TLS Secret is not reported.
        assert!(!has(&r, "InvalidTlsSecret"));

        let secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: other, namespace: shop}\ntype: Opaque\n";
        let r = run(&format!("{ING}{secret}"));
        assert!(has(&r, "InvalidTlsSecret"), "{}", r.to_text());

        // The Service itself, without endpoints: judged only once endpoints are given.
        let web = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
        let r = run(&format!("{ING}{web}"));
        assert_eq!(r.summary.exit_code, 0, "{}", r.to_text());
        let slice = "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: other-1, namespace: shop, labels: {kubernetes.io/service-name: other}}\naddressType: IPv4\nendpoints: []\n";
        let r = run(&format!("{ING}{web}{slice}"));
        assert!(has(&r, "NoReadyEndpoints"), "{}", r.to_text());
    }

    #[test]
    fn annotation_statuses() {
        let yaml = ING.replace(
            "  namespace: shop\n",
            "  namespace: shop\n  annotations:\n    nginx.ingress.kubernetes.io/rewrite-target: /\n    nginx.ingress.kubernetes.io/proxy-ssl-verify-depth: \"2\"\n    nginx.ingress.kubernetes.io/mirror-target: http://m\n    nginx.ingress.kubernetes.io/rewrite-traget: /\n    nginx.ingress.kubernetes.io/server-snippet: x\n    nginx.ingress.kubernetes.io/proxy-body-size: 8MB\n    ngnix.ingress.kubernetes.io/ssl-redirect: \"false\"\n    cert-manager.io/cluster-issuer: le\n",
        );
        let r = run(&yaml);
        let got: Vec<(&str, Status)> = r.ingresses[0]
            .annotations
            .iter()
            .map(|a| (a.key.as_str(), a.status))
            .collect();
        let p = ANNOTATION_PREFIX;
        assert_eq!(
            got,
            vec![
                (&*format!("{p}mirror-target"), Status::Unsupported),
                (&*format!("{p}proxy-body-size"), Status::Invalid),
                (&*format!("{p}proxy-ssl-verify-depth"), Status::Differs),
                (&*format!("{p}rewrite-target"), Status::Supported),
                (&*format!("{p}rewrite-traget"), Status::Unknown),
                (&*format!("{p}server-snippet"), Status::Refused),
                ("ngnix.ingress.kubernetes.io/ssl-redirect", Status::Unknown),
            ]
        );
        assert!(r.ingresses[0].problems.is_empty(), "{}", r.to_text());
        assert_eq!(r.summary.exit_code, 2);
    }

    #[test]
    fn whitelist_warnings_land_on_the_whitelist_key() {
        let yaml = ING.replace(
            "  namespace: shop\n",
            "  namespace: shop\n  annotations:\n    nginx.ingress.kubernetes.io/whitelist-source-range: 10.0.0.0/33\n",
        );
        let r = run(&yaml);
        let a = &r.ingresses[0].annotations[0];
        assert_eq!(a.status, Status::Invalid);
        assert_eq!(a.messages.len(), 1, "{}", r.to_text());
        assert!(r.ingresses[0].problems.is_empty());
    }

    #[test]
    fn not_applied_values_make_a_supported_key_differ() {
        let yaml = ING.replace(
            "  namespace: shop\n",
            "  namespace: shop\n  annotations:\n    nginx.ingress.kubernetes.io/backend-protocol: HTTPS\n    nginx.ingress.kubernetes.io/proxy-ssl-verify: \"off\"\n    nginx.ingress.kubernetes.io/proxy-next-upstream: error http_503\n",
        );
        let r = run(&yaml);
        let a = r.ingresses[0]
            .annotations
            .iter()
            .find(|a| a.key.ends_with("/proxy-next-upstream"))
            .unwrap();
        assert_eq!(a.status, Status::Differs);
        assert!(a.messages[0].contains("http_503"), "{:?}", a.messages);
        assert_eq!(r.summary.exit_code, 1, "{}", r.to_text());
    }

    #[test]
    fn reasons_for_not_serving() {
        let other = ING.replace("ingressClassName: nginx", "ingressClassName: traefik");
        let r = run(&other);
        assert!(!r.ingresses[0].served);
        assert!(r.ingresses[0]
            .ignored_reason
            .as_deref()
            .unwrap()
            .contains("IngressClass traefik is not in the input"));
        assert_eq!(r.summary.exit_code, 1);

        let class = "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: k8s.io/ingress-nginx}\n";
        let r = run(&format!("{ING}{class}"));
        assert!(r.ingresses[0]
            .ignored_reason
            .as_deref()
            .unwrap()
            .contains("--controller-class k8s.io/ingress-nginx"));
        let config = TranslateConfig {
            controller_class: "k8s.io/ingress-nginx".into(),
            ..TranslateConfig::default()
        };
        let r = check(
            load(&["-".into()], &mut format!("{ING}{class}").as_bytes()),
            &config,
        );
        assert!(r.ingresses[0].served, "{}", r.to_text());
    }

    #[test]
    fn severities() {
        assert_eq!(Severity::of_reason("PathConflict"), Severity::Error);
        assert_eq!(Severity::of_reason("InvalidSomethingNew"), Severity::Error);
        assert_eq!(Severity::of_reason("CertificateExpired"), Severity::Warning);
        assert_eq!(Severity::of_reason("SomethingNew"), Severity::Warning);
    }
}
