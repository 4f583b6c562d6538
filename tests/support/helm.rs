//! The Helm chart (`helm/sluice`) as the tests see it: the helm CLI built from its Go
//! module by `e2e/helm/build.sh` (`$SLUICE_HELM`, or built on first use, cached under
//! ~/.cache/sluice/helm), `helm template` renderings parsed into JSON values, and the
//! chart's RBAC picked out of a rendering (the e2e suite runs sluice with exactly that).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart() -> PathBuf {
    repo().join("helm/sluice")
}

/// The release and namespace the e2e suite installs the chart as; with these names the
/// chart's objects are named as in config/rbac/sluice.yaml.
pub const RELEASE: &str = "sluice";
pub const NAMESPACE: &str = "sluice-system";

/// The helm binary: `$SLUICE_HELM`, else whatever `e2e/helm/build.sh` prints (a warm run
/// takes a fraction of a second; a cold one builds helm, minutes).
pub fn helm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SLUICE_HELM").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let out = Command::new("bash")
            .arg(repo().join("e2e/helm/build.sh"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run e2e/helm/build.sh");
        assert!(out.status.success(), "e2e/helm/build.sh failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("build.sh printed nothing")
                .trim(),
        )
    })
}

/// Runs helm with its config, cache and data kept inside the target directory (never
/// the user's ~/.config/helm), returning stdout or stdout+stderr on failure.
pub fn helm(args: &[&str]) -> Result<String, String> {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    let out = Command::new(helm_bin())
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `helm template RELEASE helm/sluice -n NAMESPACE` with extra flags (`-f FILE`,
/// `--set k=v`, ...): the rendered YAML, or helm's error.
pub fn try_template(extra: &[&str]) -> Result<String, String> {
    let chart = chart();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
    ];
    args.extend_from_slice(extra);
    helm(&args)
}

pub fn template(extra: &[&str]) -> String {
    try_template(extra).unwrap_or_else(|e| panic!("helm template {extra:?} failed:\n{e}"))
}

/// The documents of a multi-document YAML stream, empty ones dropped.
pub fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

pub fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

/// The one object of `kind` (panics if there is not exactly one).
pub fn one<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| kind(d) == k).collect();
    assert_eq!(found.len(), 1, "expected exactly one {k}");
    found[0]
}

/// The kinds whose objects make up sluice's identity and permissions.
pub const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// The ServiceAccount and RBAC objects of the chart rendered with default values, as
/// one YAML stream for kubectl.
pub fn rbac_manifests() -> String {
    docs(&template(&[]))
        .iter()
        .filter(|d| RBAC_KINDS.contains(&kind(d)))
        .map(|d| serde_yaml_ng::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}
