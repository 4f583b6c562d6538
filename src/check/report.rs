//! The report `sluice check` prints: its types (the `--output json` document's
//! layout, version 1) and its text rendering. Decides nothing about the input: that is
//! [`super::classify`]'s job.

use std::fmt::Write as _;

use serde::Serialize;

use crate::translate::object::ANNOTATION_PREFIX;

/// How bad one finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub(super) fn label(self) -> &'static str {
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
    pub(super) fn label(self) -> &'static str {
        match self {
            Status::Supported => "supported",
            Status::Differs => "differs",
            Status::Unsupported => "unsupported",
            Status::Unknown => "unknown",
            Status::Refused => "refused",
            Status::Invalid => "invalid",
        }
    }

    pub(super) fn severity(self) -> Option<Severity> {
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
