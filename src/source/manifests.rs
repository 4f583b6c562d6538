//! Standalone mode: a directory of Kubernetes manifests as the object source.
//!
//! Owns reading every `*.yaml`/`*.yml` under a directory (multi-document, `kind: List`
//! too), decoding the kinds sluice consumes, converting core/v1 `Endpoints` into
//! EndpointSlices as the cluster's mirroring controller would (selector-less Services
//! only), and watching the directory. It never drops what it had: a file whose YAML
//! does not parse keeps its last good objects, and a document that fails to decode
//! keeps its last good version, each reported with file and line.
//!
//! Objects without `creationTimestamp` are stamped with the time this source first
//! saw them, as the API server would stamp them, so "oldest Ingress wins" means
//! "written first" here too.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_yaml_ng::Value;
use std::time::Duration;
use tracing::{debug, info, warn};

use super::SnapshotSink;
use crate::translate::Snapshot;

/// One decoded object of a kind sluice consumes. Variants differ in size, but objects
/// are few and short-lived here, so boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Object {
    Ingress(Ingress),
    IngressClass(IngressClass),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Endpoints(Endpoints),
    Secret(Secret),
    ConfigMap(ConfigMap),
}

impl Object {
    fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Ingress(o) => &mut o.metadata,
            Object::IngressClass(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Endpoints(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Object::Ingress(_) => "Ingress",
            Object::IngressClass(_) => "IngressClass",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Endpoints(_) => "Endpoints",
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
        }
    }

    /// kind + namespace + name (namespace defaulted as the API server would).
    pub fn identity(&self) -> Identity {
        let kind = self.kind();
        let meta = self.meta();
        // IngressClass is cluster-scoped; everything else defaults to `default`.
        let ns = if kind == "IngressClass" {
            String::new()
        } else {
            meta.namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into())
        };
        Identity {
            kind: kind.to_string(),
            namespace: ns,
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// kind + namespace + name: what makes two documents "the same object".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A problem with a manifest file, reported with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub file: PathBuf,
    /// 1-based line of the error (or of the document's start).
    pub line: usize,
    pub message: String,
    /// True when the object(s) from the last good read are still served.
    pub kept_previous: bool,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)?;
        if self.kept_previous {
            f.write_str(" (keeping the last good version)")?;
        }
        Ok(())
    }
}

/// The outcome of decoding one file's text.
#[derive(Debug, Default)]
pub struct Parsed {
    pub objects: Vec<Object>,
    /// Documents that did not decode: their identity (when readable) and the problem.
    pub bad_documents: Vec<(Option<Identity>, FileProblem)>,
    /// Kinds sluice does not consume, by identity (reported at debug level).
    pub ignored: Vec<Identity>,
    /// A YAML syntax error somewhere in the file: nothing in it can be trusted.
    pub syntax_error: Option<FileProblem>,
}

/// Splits multi-document YAML into (first line, text) pieces at `---` markers.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line == "...";
        if is_marker {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
            // `--- {inline: doc}` keeps its content.
            if let Some(rest) = line.strip_prefix("--- ") {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((start, current));
    docs
}

/// Decodes the text of one manifest file. `file` is only used in messages.
pub fn parse_str(file: &Path, text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for (start, doc) in split_documents(text) {
        let value: Value = match serde_yaml_ng::from_str(&doc) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map_or(start, |l| start + l.line() - 1);
                parsed.syntax_error = Some(FileProblem {
                    file: file.to_path_buf(),
                    line,
                    message: format!("invalid YAML: {e}"),
                    kept_previous: false,
                });
                return parsed;
            }
        };
        if value.is_null() {
            continue;
        }
        decode_value(file, start, value, &mut parsed);
    }
    parsed
}

fn str_field<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_str()
}

fn decode_value(file: &Path, line: usize, value: Value, parsed: &mut Parsed) {
    let kind = str_field(&value, &["kind"]).unwrap_or("").to_string();
    let api_version = str_field(&value, &["apiVersion"]).unwrap_or("").to_string();
    let identity = Identity {
        kind: kind.clone(),
        namespace: str_field(&value, &["metadata", "namespace"])
            .filter(|n| !n.is_empty())
            .unwrap_or(if kind == "IngressClass" {
                ""
            } else {
                "default"
            })
            .to_string(),
        name: str_field(&value, &["metadata", "name"])
            .unwrap_or("")
            .to_string(),
    };
    fn typed<T: serde::de::DeserializeOwned>(v: Value) -> super::Result<T> {
        Ok(serde_yaml_ng::from_value(v)?)
    }
    let result = match (api_version.as_str(), kind.as_str()) {
        (_, "List") => {
            if let Some(items) = value.get("items").and_then(Value::as_sequence) {
                for item in items.clone() {
                    decode_value(file, line, item, parsed);
                }
            }
            return;
        }
        ("networking.k8s.io/v1", "Ingress") => typed(value).map(Object::Ingress),
        ("networking.k8s.io/v1", "IngressClass") => typed(value).map(Object::IngressClass),
        ("v1", "Service") => typed(value).map(Object::Service),
        ("discovery.k8s.io/v1", "EndpointSlice") => typed(value).map(Object::EndpointSlice),
        ("v1", "Endpoints") => typed(value).map(Object::Endpoints),
        ("v1", "Secret") => typed(value).map(Object::Secret),
        ("v1", "ConfigMap") => typed(value).map(Object::ConfigMap),
        ("", _) | (_, "") => Err(super::Error::NoKind),
        _ => {
            parsed.ignored.push(identity);
            return;
        }
    };
    match result {
        Ok(obj) => parsed.objects.push(obj),
        Err(message) => {
            let readable = !identity.name.is_empty() && !identity.kind.is_empty();
            parsed.bad_documents.push((
                readable.then(|| identity.clone()),
                FileProblem {
                    file: file.to_path_buf(),
                    line,
                    message: format!("cannot decode {identity}: {message}"),
                    kept_previous: false,
                },
            ))
        }
    }
}

/// Reads a directory of manifests, remembering each file's last good objects.
#[derive(Debug)]
pub struct ManifestDir {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    first_seen: HashMap<Identity, Time>,
    /// A snapshot has been handed to a sink (so an unchanged reload can be skipped).
    sent: bool,
}

#[derive(Debug, Default, Clone)]
struct FileState {
    text: String,
    objects: Vec<Object>,
}

/// What one load of the directory produced.
#[derive(Debug, Default)]
pub struct Loaded {
    pub snapshot: Snapshot,
    pub problems: Vec<FileProblem>,
    pub ignored: Vec<(PathBuf, Identity)>,
    /// Some file was added, removed or changed since the previous load.
    pub changed: bool,
}

impl ManifestDir {
    pub fn new(root: impl Into<PathBuf>) -> ManifestDir {
        ManifestDir {
            root: root.into(),
            files: BTreeMap::new(),
            first_seen: HashMap::new(),
            sent: false,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Re-reads the directory and assembles a snapshot. Unchanged files are not re-parsed.
    pub fn load(&mut self) -> std::io::Result<Loaded> {
        let mut paths = Vec::new();
        collect_yaml_files(&self.root, &mut paths)?;
        paths.sort();
        let mut loaded = Loaded::default();
        let mut next = BTreeMap::new();
        for path in paths {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // Vanished between listing and reading: a later event rebuilds.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let kept = self.files.get(&path).cloned();
                    loaded.problems.push(FileProblem {
                        file: path.clone(),
                        line: 0,
                        message: format!("cannot read: {e}"),
                        kept_previous: kept.is_some(),
                    });
                    if let Some(k) = kept {
                        next.insert(path, k);
                    }
                    continue;
                }
            };
            let previous = self.files.get(&path);
            if let Some(prev) = previous.filter(|p| p.text == text) {
                next.insert(path, prev.clone());
                continue;
            }
            loaded.changed = true;
            let parsed = parse_str(&path, &text);
            for ignored in parsed.ignored {
                loaded.ignored.push((path.clone(), ignored));
            }
            if let Some(mut problem) = parsed.syntax_error {
                problem.kept_previous = previous.is_some();
                loaded.problems.push(problem);
                if let Some(prev) = previous {
                    // Keep the old objects but not the old text, so a fix re-parses.
                    next.insert(
                        path,
                        FileState {
                            text: String::new(),
                            objects: prev.objects.clone(),
                        },
                    );
                }
                continue;
            }
            let mut objects = parsed.objects;
            for (identity, mut problem) in parsed.bad_documents {
                let old = identity.as_ref().and_then(|id| {
                    previous?
                        .objects
                        .iter()
                        .find(|o| o.identity() == *id)
                        .cloned()
                });
                problem.kept_previous = old.is_some();
                objects.extend(old);
                loaded.problems.push(problem);
            }
            next.insert(path, FileState { text, objects });
        }
        if !next.keys().eq(self.files.keys()) {
            loaded.changed = true;
        }
        self.files = next;
        loaded.snapshot = self.assemble(&mut loaded.problems);
        Ok(loaded)
    }

    fn assemble(&mut self, problems: &mut Vec<FileProblem>) -> Snapshot {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default());
        let mut seen: HashMap<Identity, PathBuf> = HashMap::new();
        let mut snap = Snapshot::default();
        let mut endpoints = Vec::new();
        for (path, state) in &self.files {
            for obj in &state.objects {
                let mut obj = obj.clone();
                let id = obj.identity();
                if let Some(first) = seen.get(&id) {
                    problems.push(FileProblem {
                        file: path.clone(),
                        line: 0,
                        message: format!(
                            "{id} is also defined in {}; this copy is ignored",
                            first.display()
                        ),
                        kept_previous: false,
                    });
                    continue;
                }
                seen.insert(id.clone(), path.clone());
                let meta = obj.meta_mut();
                if meta.creation_timestamp.is_none() {
                    let t = self.first_seen.entry(id).or_insert_with(|| now.clone());
                    meta.creation_timestamp = Some(t.clone());
                }
                match obj {
                    Object::Ingress(o) => snap.ingresses.push(Arc::new(o)),
                    Object::IngressClass(o) => snap.ingress_classes.push(Arc::new(o)),
                    Object::Service(o) => snap.services.push(Arc::new(o)),
                    Object::EndpointSlice(o) => snap.endpoint_slices.push(Arc::new(o)),
                    Object::Endpoints(o) => endpoints.push(o),
                    Object::Secret(o) => snap.secrets.push(Arc::new(o)),
                    Object::ConfigMap(o) => snap.config_maps.push(Arc::new(o)),
                }
            }
        }
        snap.observed_at = super::now_secs();
        let live: std::collections::HashSet<_> = seen.into_keys().collect();
        self.first_seen.retain(|id, _| live.contains(id));
        for ep in endpoints {
            snap.endpoint_slices
                .extend(mirror(&ep, &snap.services).into_iter().map(Arc::new));
        }
        snap
    }
}

/// Every `*.yaml`/`*.yml` under `dir`, recursively, skipping hidden entries (unsorted).
pub fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Editors' swap and backup files, and hidden directories (e.g. `..data` of ConfigMap mounts).
        if name.starts_with('.') {
            continue;
        }
        let ft = entry.file_type()?;
        if ft.is_dir() || (ft.is_symlink() && path.is_dir()) {
            collect_yaml_files(&path, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(path);
        }
    }
    Ok(())
}

const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

/// Converts hand-written Endpoints into an EndpointSlice the way EndpointSliceMirroring
/// does: only for an existing Service without a selector, ready addresses plus
/// `notReadyAddresses` as not ready. One slice per subset and address family.
pub fn mirror(ep: &Endpoints, services: &[Arc<Service>]) -> Vec<EndpointSlice> {
    let ns = ep.metadata.namespace.as_deref().unwrap_or("default");
    let Some(name) = ep.metadata.name.as_deref() else {
        return Vec::new();
    };
    if ep
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SKIP_MIRROR_LABEL))
        .is_some_and(|v| v == "true")
    {
        return Vec::new();
    }
    let selectorless = services.iter().any(|s| {
        s.metadata.name.as_deref() == Some(name)
            && s.metadata.namespace.as_deref().unwrap_or("default") == ns
            && s.spec
                .as_ref()
                .and_then(|sp| sp.selector.as_ref())
                .is_none_or(|sel| sel.is_empty())
    });
    if !selectorless {
        return Vec::new();
    }
    let mut slices = Vec::new();
    for (i, subset) in ep.subsets.iter().flatten().enumerate() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                port: Some(p.port),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        for family in ["IPv4", "IPv6"] {
            let mut endpoints = Vec::new();
            let groups = [
                (&subset.addresses, true),
                (&subset.not_ready_addresses, false),
            ];
            for (addrs, ready) in groups {
                for a in addrs.iter().flatten() {
                    let is_v6 = a.ip.contains(':');
                    if is_v6 != (family == "IPv6") {
                        continue;
                    }
                    endpoints.push(Endpoint {
                        addresses: vec![a.ip.clone()],
                        conditions: Some(EndpointConditions {
                            ready: Some(ready),
                            serving: Some(ready),
                            terminating: Some(false),
                        }),
                        hostname: a.hostname.clone(),
                        node_name: a.node_name.clone(),
                        ..Default::default()
                    });
                }
            }
            if endpoints.is_empty() {
                continue;
            }
            let mut labels = BTreeMap::new();
            labels.insert("kubernetes.io/service-name".to_string(), name.to_string());
            labels.insert(
                "endpointslice.kubernetes.io/managed-by".to_string(),
                "endpointslicemirroring-controller.k8s.io".to_string(),
            );
            slices.push(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-mirror-{i}-{}", family.to_lowercase())),
                    namespace: Some(ns.to_string()),
                    labels: Some(labels),
                    ..Default::default()
                },
                address_type: family.to_string(),
                endpoints,
                ports: Some(ports.clone()),
            });
        }
    }
    slices
}

/// Loads the directory once and hands the snapshot to `sink`, logging every file
/// problem. An unchanged directory sends nothing after the first time.
pub fn load_and_publish(dir: &mut ManifestDir, sink: &SnapshotSink) -> std::io::Result<()> {
    let loaded = dir.load()?;
    for p in &loaded.problems {
        warn!("{p}");
    }
    for (file, id) in &loaded.ignored {
        debug!(file = %file.display(), object = %id, "ignoring a kind sluice does not consume");
    }
    if !loaded.changed && dir.sent {
        // An editor touched a file without changing it. Said at info so an operator
        // whose edit did nothing can see why (and tests have a signal to wait on).
        info!(dir = %dir.root().display(), "manifests re-read: no change, nothing published");
        return Ok(());
    }
    // A receiver that has gone ends the process's rebuilds anyway; nothing to report.
    let _ = sink.send(loaded.snapshot);
    dir.sent = true;
    Ok(())
}

/// How long the directory must be quiet before a rebuild, and the longest a burst of
/// changes can delay one.
const DEBOUNCE_QUIET: Duration = Duration::from_millis(40);
const DEBOUNCE_MAX: Duration = Duration::from_millis(200);

/// Watches the directory and sends a snapshot on every change until the runtime stops.
/// The first load must already have happened (see [`load_and_publish`]).
/// Returns only if the watch cannot be set up.
pub async fn watch(mut dir: ManifestDir, sink: SnapshotSink) -> notify::Result<()> {
    use notify::{RecursiveMode, Watcher};
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        match ev {
            // Reads change nothing; reacting to them would rebuild forever on our own
            // reads, and two processes over one directory (a SIGQUIT upgrade) on each
            // other's.
            Ok(e) if e.kind.is_access() => return,
            Ok(_) => {}
            Err(e) => warn!(error = %e, "file watch error; rebuilding anyway"),
        }
        notify.notify_one();
    })?;
    watcher.watch(dir.root(), RecursiveMode::Recursive)?;
    info!(dir = %dir.root().display(), "watching manifests");
    loop {
        super::debounced(&changed, DEBOUNCE_QUIET, DEBOUNCE_MAX).await;
        if let Err(e) = load_and_publish(&mut dir, &sink) {
            warn!(dir = %dir.root().display(), error = %e, "cannot read manifests; keeping the last table");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_carry_the_file_line() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: [oops\n";
        let parsed = parse_str(Path::new("x.yaml"), text);
        let err = parsed.syntax_error.expect("syntax error");
        assert!(err.line >= 7, "line {} in {err}", err.line);
        assert!(err.to_string().starts_with("x.yaml:"));
    }

    #[test]
    fn unknown_kinds_are_ignored_and_lists_unpacked() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n";
        let parsed = parse_str(Path::new("x.yaml"), text);
        assert_eq!(parsed.ignored.len(), 1);
        assert_eq!(parsed.objects.len(), 1);
    }

    #[test]
    fn bad_document_names_the_object_and_line() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: ok}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: broken}\nspec: {rules: 5}\n";
        let parsed = parse_str(Path::new("x.yaml"), text);
        assert_eq!(parsed.objects.len(), 1);
        let (id, problem) = &parsed.bad_documents[0];
        assert_eq!(id.as_ref().unwrap().name, "broken");
        assert_eq!(problem.line, 5);
        assert!(
            problem.message.contains("Ingress default/broken"),
            "{}",
            problem.message
        );
    }
}
