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

mod classify;
mod report;
#[cfg(test)]
mod tests;

pub use classify::check;
pub use report::{
    AnnotationItem, FileItem, IngressReport, ObjectItem, Problem, Report, Severity, Status, Summary,
};

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::config::{ObjectRef, TranslateConfig, DEFAULT_CONTROLLER_CLASS};
use crate::source::manifests::{self, Identity, Object};
use crate::translate::Snapshot;

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

    /// As sluice's flag: honour `ssl-passthrough` (without it the annotation warns).
    #[arg(long)]
    pub enable_ssl_passthrough: bool,
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
            enable_ssl_passthrough: self.enable_ssl_passthrough,
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
