//! Translation fixtures: each `tests/fixtures/<case>/input.yaml` (multi-document
//! manifests, decoded by the same code as standalone mode) is translated and checked
//! against `expect.yaml`: routing decisions for requests, and the exact set of warnings.
//!
//! `expect.yaml`:
//! ```yaml
//! config: {ingressClass: nginx, controllerClass: x, watchIngressWithoutClass: true,
//!          defaultBackendService: ns/name, configmap: ns/name,
//!          enableSslPassthrough: true}                       # all optional
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
//! - {..., rewrite: "/$2"}                      # rewrite-target of the rule; "none"
//! - {..., bodyLimit: 1048576}                  # proxy-body-size in bytes; 0 = unlimited
//! - {..., redirect: "301 https://x/"}          # permanent/temporal redirect; "none"
//! - {..., access: "allow 10.0.0.0/8 deny -"}   # allow / deny lists ("-" = none)
//! - {..., auth: 'basic "realm" alice:bcrypt,bob:apr1'} # users sorted, hash kinds;
//!   'url GET http://a/x signin https://s/?rd=... headers x-user' for auth-url (" + "
//!   joins both); "broken" (fails closed: 503); "none"
//! - {..., cors: "off"}                         # or every setting:
//! - {..., cors: {origins: ["*"], methods: "GET", headers: "X-A", credentials: true,
//!                maxAge: "600", expose: "X-B"}}  # expose omitted = not sent
//! - {..., limits: none}                        # or (omitted numbers = 0, exempt = []):
//! - {..., limits: {rps: 10, rpsBurst: 50, rpm: 0, rpmBurst: 0, connections: 2,
//!                  exempt: ["10.0.0.0/8"], broken: false, zone: ns/ingress}}
//! - {..., canary: "ns/svc:80 header x-c, weight 20/100"}  # canary backend + rules; "none"
//! - {..., canaryAffinity: "none"}               # the canary route's affinity (as `affinity`)
//! - {..., defaultBackend: "ns/svc:80"}         # the `default-backend` annotation; "none"
//! - {..., preserveTrailingSlash: true}
//! - {host: www.a.example, path: /, wwwRedirect: a.example}  # from-to-www-redirect route
//! - {..., customErrors: [404, 503], errorBackend: "ns/svc:80"}  # codes in force
//!                                              # (the Ingress's, else the ConfigMap's),
//!                                              # where their pages come from ("none")
//! - {..., accessLog: false}                    # the Ingress's enable-access-log
//! globals:                                     # ConfigMap settings, each optional
//!   {useForwardedHeaders: true, computeFullForwardedFor: true, forwardedForHeader: x-real,
//!    proxyRealIpCidr: ["10.0.0.0/8"], enableRealIp: true, useProxyProtocol: true,
//!    generateRequestId: false, proxySetHeaders: {x-a: "1"}, addHeaders: {x-b: "$host"},
//!    accessLog: false, logFormat: "$status", logEscape: json, customHttpErrors: [503]}
//! passthrough: {a.example: ns/svc:443}        # SSL passthrough hosts → backend;
//!                                              # exact map, omitted = none
//! warnings:                                                  # exact set; omitted = none
//! - {kind: Ingress, name: web, reason: InvalidPath}
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use sluice::config::{ObjectRef, TranslateConfig};
use sluice::routing::balance::stable_hash;
use sluice::routing::{normalize_path, AffinityMode, AllowOrigin, Endpoints, LbPolicy, Match};
use sluice::translate::translate;
use sluice::translate::Snapshot;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FixtureConfig {
    ingress_class: Option<String>,
    controller_class: Option<String>,
    #[serde(default)]
    watch_ingress_without_class: bool,
    default_backend_service: Option<String>,
    configmap: Option<String>,
    #[serde(default)]
    enable_ssl_passthrough: bool,
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
    rewrite: Option<String>,
    body_limit: Option<u64>,
    redirect: Option<String>,
    access: Option<String>,
    auth: Option<String>,
    cors: Option<Setting<CorsExpect>>,
    limits: Option<Setting<LimitsExpect>>,
    canary: Option<String>,
    canary_affinity: Option<String>,
    default_backend: Option<String>,
    preserve_trailing_slash: Option<bool>,
    www_redirect: Option<String>,
}

/// `"off"`/`none`, or the expected settings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Setting<T> {
    Off(String),
    On(T),
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CorsExpect {
    origins: Vec<String>,
    methods: String,
    headers: String,
    credentials: bool,
    expose: Option<String>,
    max_age: String,
}

#[derive(Deserialize, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct LimitsExpect {
    rps: u32,
    rps_burst: u64,
    rpm: u32,
    rpm_burst: u64,
    connections: u32,
    exempt: Vec<String>,
    broken: bool,
    /// `namespace/name` whose counters the route uses.
    zone: String,
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
    passthrough: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    warnings: Vec<ExpectedWarning>,
}

/// The zone name a `limits` expectation names (its hash is what the route stores).
fn want_zone(want: &Setting<LimitsExpect>) -> String {
    match want {
        Setting::On(w) => w.zone.clone(),
        Setting::Off(_) => String::new(),
    }
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
    config.enable_ssl_passthrough = expect.config.enable_ssl_passthrough;

    let t = translate(&snapshot, &config);
    let mut errors = check_globals(&expect.globals, &t.table.globals);
    let got_passthrough: std::collections::BTreeMap<String, String> = t
        .table
        .passthrough
        .iter()
        .map(|(host, b)| {
            let backend = format!("{}/{}:{}", b.namespace, b.service, b.port);
            (host.to_string(), backend)
        })
        .collect();
    if got_passthrough != expect.passthrough {
        errors.push(format!(
            "passthrough: got {got_passthrough:?}, want {:?}",
            expect.passthrough
        ));
    }
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
        if let Some(want) = &r.www_redirect {
            let got = route.policy.www_redirect.as_deref().unwrap_or("none");
            if got != want {
                errors.push(format!("{what}: wwwRedirect {got:?}, want {want:?}"));
            }
            continue;
        }
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
        let affinity_of = |route: &sluice::routing::Route| match &route.affinity {
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
        if let Some(want) = &r.canary {
            let got = match &route.canary {
                None => "none".to_string(),
                Some(c) => {
                    let cb = &c.route.backend;
                    format!(
                        "{}/{}:{} {}",
                        cb.namespace,
                        cb.service,
                        cb.port,
                        c.rules.summary()
                    )
                }
            };
            if &got != want {
                errors.push(format!("{what}: canary {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = &r.canary_affinity {
            let got = route
                .canary
                .as_ref()
                .map_or("no canary".to_string(), |c| affinity_of(&c.route));
            if &got != want {
                errors.push(format!("{what}: canary affinity {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = &r.default_backend {
            let got = route
                .policy
                .default_backend
                .as_ref()
                .map_or("none".to_string(), |d| {
                    format!("{}/{}:{}", d.namespace, d.service, d.port)
                });
            if &got != want {
                errors.push(format!("{what}: defaultBackend {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = r.preserve_trailing_slash {
            if route.policy.preserve_trailing_slash != want {
                errors.push(format!("{what}: preserveTrailingSlash, want {want}"));
            }
        }
        if let Some(want) = &r.affinity {
            let got = affinity_of(route);
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
        let p = &route.policy;
        if let Some(want) = &r.rewrite {
            let got = route
                .rewrite
                .as_ref()
                .map_or("none".to_string(), |w| w.target.to_string());
            if &got != want {
                errors.push(format!("{what}: rewrite {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = r.body_limit {
            let got = p.body_limit.unwrap_or(0);
            if got != want {
                errors.push(format!("{what}: body limit {got}, want {want}"));
            }
        }
        if let Some(want) = &r.redirect {
            let got = p
                .redirect
                .as_ref()
                .map_or("none".to_string(), |d| format!("{} {}", d.code, d.location));
            if &got != want {
                errors.push(format!("{what}: redirect {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = &r.access {
            let list = |s: &Option<sluice::routing::CidrSet>| match s {
                None => "-".to_string(),
                Some(s) => s
                    .nets
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let got = format!("allow {} deny {}", list(&p.allow), list(&p.deny));
            if &got != want {
                errors.push(format!("{what}: access {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = &r.auth {
            let got = describe_auth(p);
            if &got != want {
                errors.push(format!("{what}: auth {got:?}, want {want:?}"));
            }
        }
        if let Some(want) = &r.cors {
            let got = route.policy.cors.as_ref().map(|c| CorsExpect {
                origins: match &c.origins {
                    AllowOrigin::Any => vec!["*".to_string()],
                    AllowOrigin::List(l) => l.iter().map(|p| p.as_text()).collect(),
                },
                methods: c.allow_methods.to_str().unwrap().to_string(),
                headers: c.allow_headers.to_str().unwrap().to_string(),
                credentials: c.allow_credentials,
                expose: c
                    .expose_headers
                    .as_ref()
                    .map(|e| e.to_str().unwrap().to_string()),
                max_age: c.max_age.to_str().unwrap().to_string(),
            });
            match (want, got) {
                (Setting::Off(_), None) => {}
                (Setting::On(w), Some(g)) if *w == g => {}
                (w, g) => errors.push(format!(
                    "{what}: cors {g:?}, want {}",
                    match w {
                        Setting::Off(s) => s.clone(),
                        Setting::On(w) => format!("{w:?}"),
                    }
                )),
            }
        }
        if let Some(want) = &r.limits {
            let got = route.policy.limits.as_ref().map(|l| {
                let wanted = want_zone(want);
                let zone = if stable_hash(wanted.as_bytes()) == l.zone {
                    wanted
                } else {
                    format!("another zone ({:x})", l.zone)
                };
                LimitsExpect {
                    rps: l.rps.map_or(0, |r| r.limit),
                    rps_burst: l.rps.map_or(0, |r| r.burst()),
                    rpm: l.rpm.map_or(0, |r| r.limit),
                    rpm_burst: l.rpm.map_or(0, |r| r.burst()),
                    connections: l.connections,
                    exempt: l
                        .exempt
                        .iter()
                        .flat_map(|e| e.nets.iter().map(|n| n.to_string()))
                        .collect(),
                    broken: l.broken,
                    zone,
                }
            });
            match (want, got) {
                (Setting::Off(_), None) => {}
                (Setting::On(w), Some(g)) if *w == g => {}
                (w, g) => errors.push(format!(
                    "{what}: limits {g:?}, want {}",
                    match w {
                        Setting::Off(s) => s.clone(),
                        Setting::On(w) => format!("{w:?}"),
                    }
                )),
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

/// The `auth` field of a request: what authentication the route enforces.
fn describe_auth(p: &sluice::routing::Policy) -> String {
    if p.denied.is_some() {
        return "broken".into();
    }
    let mut parts = Vec::new();
    if let Some(b) = &p.basic_auth {
        let mut users: Vec<String> = b
            .users
            .iter()
            .map(|(u, h)| format!("{u}:{}", h.kind().name()))
            .collect();
        users.sort();
        parts.push(format!("basic {:?} {}", &*b.realm, users.join(",")));
    }
    if let Some(e) = &p.external_auth {
        let mut s = format!("url {} {}", e.method, e.url);
        if let Some(signin) = &e.signin {
            s += &format!(" signin {signin}");
        }
        if !e.response_headers.is_empty() {
            let h: Vec<&str> = e.response_headers.iter().map(|h| h.as_str()).collect();
            s += &format!(" headers {}", h.join(","));
        }
        parts.push(s);
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" + ")
    }
}

#[test]
fn translation_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no fixtures under {}", root.display());
    // A case folder missing either file is a mistake, never a case to skip quietly.
    let incomplete: Vec<String> = cases
        .iter()
        .flat_map(|c| {
            ["input.yaml", "expect.yaml"]
                .into_iter()
                .filter(|f| !c.join(f).is_file())
                .map(move |f| format!("{} has no {f}", c.display()))
        })
        .collect();
    assert!(
        incomplete.is_empty(),
        "incomplete fixtures:\n{}",
        incomplete.join("\n")
    );
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
