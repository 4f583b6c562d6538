//! Translation fixtures: each `tests/fixtures/<case>/input.yaml` (multi-document
//! manifests, decoded by the same code as standalone mode) is translated and checked
//! against `expect.yaml`: routing decisions for requests, and the exact set of warnings.
//!
//! `expect.yaml`:
//! ```yaml
//! config: {ingressClass: nginx, controllerClass: x, watchIngressWithoutClass: true,
//!          defaultBackendService: ns/name, configmap: ns/name}  # all optional
//! requests:
//! - {host: a.example, path: /x, backend: ns/svc:80}          # routed, has endpoints
//! - {host: a.example, path: /y, backend: ns/svc:80, status: 503}  # routed, no endpoints
//! - {host: a.example, path: /z, status: 404}                 # no route, no default
//! - {host: a.example, path: /d, backend: ns/svc:80, default: true}  # via default backend
//! - {..., endpoints: ["10.0.0.1:8080"]}                      # exact endpoint list
//! - {..., external: "db.example.com:5432"}                   # ExternalName target
//! - {..., lb: "hash ${request_uri}"}          # round_robin | ewma | hash <expr>
//! - {..., affinity: "persistent SESSION /app"} # mode, cookie name, cookie path; "none"
//! - {..., clientIp: 600}                       # Service ClientIP timeout (s); 0 = none
//! - {..., nextUpstream: "error timeout 3"}     # applied tokens, then tries
//! - {..., customErrors: [404, 503], errorBackend: "ns/svc:80"}  # codes in force
//!                                              # (the Ingress's, else the ConfigMap's),
//!                                              # where their pages come from ("none")
//! - {..., accessLog: false}                    # the Ingress's enable-access-log
//! globals:                                     # ConfigMap settings, each optional
//!   {useForwardedHeaders: true, computeFullForwardedFor: true, forwardedForHeader: x-real,
//!    proxyRealIpCidr: ["10.0.0.0/8"], enableRealIp: true, useProxyProtocol: true,
//!    generateRequestId: false, proxySetHeaders: {x-a: "1"}, addHeaders: {x-b: "$host"},
//!    accessLog: false, logFormat: "$status", logEscape: json, customHttpErrors: [503]}
//! warnings:                                                  # exact set; omitted = none
//! - {kind: Ingress, name: web, reason: InvalidPath}
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use sluice::config::{ObjectRef, TranslateConfig};
use sluice::routing::{normalize_path, AffinityMode, Endpoints, LbPolicy, Match};
use sluice::source::Snapshot;
use sluice::translate::translate;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FixtureConfig {
    ingress_class: Option<String>,
    controller_class: Option<String>,
    #[serde(default)]
    watch_ingress_without_class: bool,
    default_backend_service: Option<String>,
    configmap: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Request {
    host: String,
    path: String,
    backend: Option<String>,
    status: Option<u16>,
    #[serde(default)]
    default: bool,
    endpoints: Option<Vec<String>>,
    external: Option<String>,
    lb: Option<String>,
    affinity: Option<String>,
    client_ip: Option<u64>,
    next_upstream: Option<String>,
    custom_errors: Option<Vec<u16>>,
    error_backend: Option<String>,
    access_log: Option<bool>,
}

/// ConfigMap-derived settings to check (`globals:`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExpectedGlobals {
    use_forwarded_headers: Option<bool>,
    compute_full_forwarded_for: Option<bool>,
    forwarded_for_header: Option<String>,
    proxy_real_ip_cidr: Option<Vec<String>>,
    enable_real_ip: Option<bool>,
    use_proxy_protocol: Option<bool>,
    generate_request_id: Option<bool>,
    proxy_set_headers: Option<std::collections::BTreeMap<String, String>>,
    add_headers: Option<std::collections::BTreeMap<String, String>>,
    access_log: Option<bool>,
    log_format: Option<String>,
    log_escape: Option<String>,
    custom_http_errors: Option<Vec<u16>>,
}

#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[serde(deny_unknown_fields)]
struct ExpectedWarning {
    kind: String,
    name: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    config: FixtureConfig,
    requests: Vec<Request>,
    #[serde(default)]
    globals: ExpectedGlobals,
    #[serde(default)]
    warnings: Vec<ExpectedWarning>,
}

fn check_globals(want: &ExpectedGlobals, g: &sluice::routing::GlobalSettings) -> Vec<String> {
    let mut errors = Vec::new();
    macro_rules! same {
        ($field:ident, $got:expr) => {
            if let Some(w) = &want.$field {
                let got = $got;
                if &got != w {
                    errors.push(format!(
                        "globals.{}: got {got:?}, want {w:?}",
                        stringify!($field)
                    ));
                }
            }
        };
    }
    let headers = |h: &[sluice::routing::HeaderTemplate]| {
        h.iter()
            .map(|t| (t.name.to_string(), t.value.source.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    same!(use_forwarded_headers, g.use_forwarded_headers);
    same!(compute_full_forwarded_for, g.compute_full_forwarded_for);
    same!(forwarded_for_header, g.forwarded_for_header.to_string());
    same!(
        proxy_real_ip_cidr,
        g.proxy_real_ip_cidr
            .nets
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
    );
    same!(enable_real_ip, g.enable_real_ip);
    same!(use_proxy_protocol, g.use_proxy_protocol);
    same!(generate_request_id, g.generate_request_id);
    same!(proxy_set_headers, headers(&g.proxy_set_headers));
    same!(add_headers, headers(&g.add_headers));
    same!(access_log, g.access_log);
    same!(log_format, g.log_format.template.source.to_string());
    same!(
        log_escape,
        format!("{:?}", g.log_format.escape).to_ascii_lowercase()
    );
    same!(custom_http_errors, g.custom_http_errors.to_vec());
    errors
}

fn snapshot_from(path: &Path) -> Snapshot {
    // The same reading and assembly as standalone mode (Endpoints mirrored, timestamps kept).
    let text = std::fs::read_to_string(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.yaml"), &text).unwrap();
    let mut md = sluice::source::manifests::ManifestDir::new(dir.path());
    let loaded = md.load().unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.snapshot
}

fn run_case(dir: &Path) -> Result<(), String> {
    let snapshot = snapshot_from(&dir.join("input.yaml"));
    let expect: Expect =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("expect.yaml")).unwrap())
            .map_err(|e| format!("expect.yaml: {e}"))?;
    let mut config = TranslateConfig::default();
    if let Some(c) = expect.config.ingress_class {
        config.ingress_class = c;
    }
    if let Some(c) = expect.config.controller_class {
        config.controller_class = c;
    }
    config.watch_without_class = expect.config.watch_ingress_without_class;
    config.default_backend_service = expect
        .config
        .default_backend_service
        .map(|s| s.parse::<ObjectRef>().unwrap());
    config.configmap = expect
        .config
        .configmap
        .map(|s| s.parse::<ObjectRef>().unwrap());

    let t = translate(&snapshot, &config);
    let mut errors = check_globals(&expect.globals, &t.table.globals);
    for r in &expect.requests {
        let path = normalize_path(&r.path).map_err(|e| format!("{}: {e:?}", r.path))?;
        let got = t.table.lookup(&r.host, &path);
        let what = format!("{} {}", r.host, r.path);
        let (route, via_default) = match got {
            Match::Rule(route) => (Some(route), false),
            Match::Default(route) => (Some(route), true),
            Match::NotFound => (None, false),
        };
        let Some(route) = route else {
            if r.status != Some(404) || r.backend.is_some() {
                errors.push(format!(
                    "{what}: got 404, want {:?} {:?}",
                    r.backend, r.status
                ));
            }
            continue;
        };
        let b = &route.backend;
        let got_backend = format!("{}/{}:{}", b.namespace, b.service, b.port);
        if r.backend.as_deref() != Some(got_backend.as_str()) {
            errors.push(format!(
                "{what}: got backend {got_backend}, want {:?}",
                r.backend
            ));
            continue;
        }
        if via_default != r.default {
            errors.push(format!(
                "{what}: via default backend = {via_default}, want {}",
                r.default
            ));
        }
        let got_status = if b.has_endpoints() { 200 } else { 503 };
        if got_status != r.status.unwrap_or(200) {
            errors.push(format!(
                "{what}: status {got_status}, want {:?} ({:?})",
                r.status, b.endpoints
            ));
        }
        if let Some(want) = &r.endpoints {
            let got: Vec<String> = match &b.endpoints {
                Endpoints::Addrs(a) => a.iter().map(|x| x.to_string()).collect(),
                other => vec![format!("{other:?}")],
            };
            if &got != want {
                errors.push(format!("{what}: endpoints {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = &r.lb {
            let got = match &route.lb {
                LbPolicy::RoundRobin => "round_robin".to_string(),
                LbPolicy::Ewma => "ewma".to_string(),
                LbPolicy::Hash(k) => format!("hash {k}"),
            };
            if &got != want {
                errors.push(format!("{what}: lb {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = &r.affinity {
            let got = match &route.affinity {
                None => "none".to_string(),
                Some(a) => format!(
                    "{} {} {}",
                    match a.mode {
                        AffinityMode::Balanced => "balanced",
                        AffinityMode::Persistent => "persistent",
                    },
                    a.name,
                    a.path
                ),
            };
            if &got != want {
                errors.push(format!("{what}: affinity {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = r.client_ip {
            let got = b.client_ip_affinity.map_or(0, |d| d.as_secs());
            if got != want {
                errors.push(format!("{what}: ClientIP timeout {got}, want {want}"));
            }
        }
        if let Some(want) = &r.next_upstream {
            let n = route.next_upstream;
            let mut got: Vec<String> = [
                (n.on_error, "error"),
                (n.on_timeout, "timeout"),
                (n.non_idempotent, "non_idempotent"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, t)| t.to_string())
            .collect();
            got.push(n.tries.to_string());
            let got = got.join(" ");
            if &got != want {
                errors.push(format!("{what}: nextUpstream {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = &r.custom_errors {
            let got = route
                .policy
                .custom_http_errors
                .as_deref()
                .unwrap_or(&t.table.globals.custom_http_errors);
            if got != want.as_slice() {
                errors.push(format!("{what}: customErrors {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = &r.error_backend {
            let got = match route
                .policy
                .default_backend
                .as_ref()
                .or(t.table.error_backend.as_ref())
            {
                Some(b) => format!("{}/{}:{}", b.namespace, b.service, b.port),
                None => "none".to_string(),
            };
            if &got != want {
                errors.push(format!("{what}: errorBackend {got}, want {want}"));
            }
        }
        if let Some(want) = r.access_log {
            let got = route.policy.access_log.unwrap_or(true);
            if got != want {
                errors.push(format!("{what}: accessLog {got}, want {want}"));
            }
        }
        if let Some(want) = &r.external {
            let got = match &b.endpoints {
                Endpoints::External { host, port } => format!("{host}:{port}"),
                other => format!("{other:?}"),
            };
            if &got != want {
                errors.push(format!("{what}: external {got}, want {want}"));
            }
        }
    }
    let got_warnings: BTreeSet<ExpectedWarning> = t
        .warnings
        .iter()
        .map(|w| ExpectedWarning {
            kind: w.kind.to_string(),
            name: w.name.clone(),
            reason: w.reason.to_string(),
        })
        .collect();
    let want_warnings: BTreeSet<ExpectedWarning> = expect.warnings.into_iter().collect();
    if got_warnings != want_warnings {
        errors.push(format!(
            "warnings: got {got_warnings:?}, want {want_warnings:?}; messages: {:?}",
            t.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>()
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n  "))
    }
}

#[test]
fn translation_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expect.yaml").exists())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no fixtures under {}", root.display());
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = run_case(case) {
            failures.push(format!(
                "{}:\n  {e}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} translation fixtures passed", cases.len());
}
