//! Fuzz target `translate`: manifests in, never a panic, always a table whose lookups
//! answer for every host and path the input named.
//!
//! Two input shapes: text containing `kind:` is read as a manifests file (the seeds are
//! the translation fixtures and `sluice check`'s corpus, mutated as text); anything
//! else is a stream of choices that builds Ingresses with random annotations (every
//! key sluice reads plus unknown ones, values from a dictionary of edge cases and raw
//! bytes), hosts, paths, path types and TLS entries, beside Services, EndpointSlices, a
//! TLS Secret, an htpasswd Secret and a ConfigMap with random keys. Strings are written
//! JSON-quoted, so arbitrary characters stay valid YAML and reach translation.

use sluice::check;
use sluice::config::TranslateConfig;
use sluice::routing::{normalize_path, Match};
use sluice::translate::annotations::SUPPORTED;
use sluice::translate::translate;

use crate::engine::Choices;

const VALUES: &[&str] = &[
    "",
    "true",
    "false",
    "0",
    "-1",
    "1",
    "5",
    "100",
    "101",
    "65536",
    "4294967296",
    "1m",
    "0m",
    "10k",
    "8g",
    "1.5",
    "30s",
    "off",
    "on",
    "cookie",
    "balanced",
    "persistent",
    "ewma",
    "round_robin",
    "$request_uri",
    "$remote_addr$host",
    "${",
    "$http_",
    "/$1",
    "/$2",
    "https://a.example/$1",
    "http://auth.example/x",
    "GRPC",
    "HTTPS",
    "AUTO_HTTP",
    "10.0.0.0/8",
    "10.0.0.0/33",
    "::1/128",
    "0.0.0.0/0,::/0",
    "*",
    "https://*.x",
    "GET",
    "error timeout",
    "http_502 non_idempotent",
    "basic",
    "digest",
    "auth",
    "ns/auth",
    "../x",
    "always",
    "never",
    "404,503",
    "999",
    "a,b,,c",
    "\u{0}",
    "\n",
    "x\r\ny: z",
    "Strict",
    "None",
    "Lax",
    "/",
    "//",
    "/(.*)",
    "(",
    "[",
    "\\",
    "a b",
    "é",
    "ca/certs",
];
const HOSTS: &[&str] = &[
    "a.example",
    "A.Example",
    "*.example",
    "*.a.example",
    "*",
    "",
    "a..b",
    "-a.example",
    "a.example.",
    "127.0.0.1",
    "[::1]",
    "a.example:80",
    "xn--e1a.example",
    "*.*.example",
    "localhost",
    "é.example",
];
const PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/",
    "/a/b",
    "/aa",
    "",
    "a",
    "/a//b",
    "/a/../b",
    "/%2e",
    "/(.*)",
    "/something(/|$)(.*)",
    "/[",
    "/a?x=1",
    "/a#f",
    "/\u{0}",
    "/é",
];
const KINDS: &[&str] = &["Exact", "Prefix", "ImplementationSpecific", "", "Regex"];
const CONFIG_KEYS: &[&str] = &[
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "ssl-redirect",
    "http-redirect-code",
    "hsts",
    "hsts-max-age",
    "load-balance",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "upstream-keepalive-connections",
    "worker-shutdown-timeout",
    "limit-req-status-code",
    "use-forwarded-headers",
    "forwarded-for-header",
    "proxy-real-ip-cidr",
    "use-proxy-protocol",
    "proxy-set-headers",
    "add-headers",
    "log-format-upstream",
    "log-format-escape-json",
    "custom-http-errors",
    "http2-max-concurrent-streams",
    "http2-max-field-size",
    "http2-max-header-size",
    "keep-alive",
];

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn value(c: &mut Choices) -> String {
    if c.flag() {
        c.pick(VALUES).to_string()
    } else {
        c.text(24)
    }
}

/// Builds a manifests file from choices.
fn manifests(c: &mut Choices) -> String {
    let mut y = String::from(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: sluice.dev/ingress-controller}\n",
    );
    for svc in ["s0", "s1"] {
        let port = 1 + c.below(65535);
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: default}}\nspec: {{ports: [{{name: http, port: 80, targetPort: {port}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-1, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints: [{{addresses: [\"127.0.0.{}\"], conditions: {{ready: {}}}}}]\n",
            1 + c.below(250),
            c.flag()
        ));
    }
    y.push_str(&format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: auth, namespace: default}}\nstringData: {{auth: {}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: default}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: {}, tls.key: {}}}\n",
        q(&format!("{}:{}\nbob:{}", c.text(8), value(c), c.text(40))),
        q(&format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----", c.text(64))),
        q(&c.text(32)),
    ));
    y.push_str(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: default}\ndata:\n",
    );
    for _ in 0..c.below(5) {
        y.push_str(&format!("  {}: {}\n", q(c.pick(CONFIG_KEYS)), q(&value(c))));
    }
    y.push_str("  x: y\n");
    for i in 0..1 + c.below(4) {
        y.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i{i}\n  namespace: default\n  creationTimestamp: \"2024-01-0{}T00:00:00Z\"\n  annotations:\n",
            1 + c.below(9)
        ));
        for _ in 0..c.below(8) {
            let key = if c.below(8) == 0 {
                c.text(12)
            } else {
                c.pick(SUPPORTED).to_string()
            };
            y.push_str(&format!(
                "    {}: {}\n",
                q(&format!("nginx.ingress.kubernetes.io/{key}")),
                q(&value(c))
            ));
        }
        y.push_str("    x: y\nspec:\n  ingressClassName: nginx\n");
        if c.below(4) == 0 {
            y.push_str("  defaultBackend: {service: {name: s0, port: {number: 80}}}\n");
        }
        if c.flag() {
            y.push_str(&format!(
                "  tls: [{{hosts: [{}], secretName: {}}}]\n",
                q(c.pick(HOSTS)),
                q(c.pick(&["tls", "auth", "missing", ""]))
            ));
        }
        y.push_str("  rules:\n");
        for _ in 0..1 + c.below(3) {
            let host = if c.below(4) == 0 {
                c.text(12)
            } else {
                c.pick(HOSTS).to_string()
            };
            y.push_str(&format!(
                "  - host: {}\n    http:\n      paths:\n",
                q(&host)
            ));
            for _ in 0..1 + c.below(4) {
                let path = if c.below(4) == 0 {
                    c.text(12)
                } else {
                    c.pick(PATHS).to_string()
                };
                let port = if c.flag() {
                    "{number: 80}"
                } else {
                    "{name: http}"
                };
                y.push_str(&format!(
                    "      - {{path: {}, pathType: {}, backend: {{service: {{name: {}, port: {port}}}}}}}\n",
                    q(&path),
                    q(c.pick(KINDS)),
                    c.pick(&["s0", "s1", "missing"]),
                ));
            }
        }
    }
    y
}

pub fn target(data: &[u8]) {
    let text = match std::str::from_utf8(data) {
        Ok(t) if t.contains("kind:") => t.to_string(),
        _ => manifests(&mut Choices::new(data)),
    };
    // The same reading as standalone mode and `sluice check` (Endpoints mirrored).
    let input = check::load(&["-".to_string()], &mut text.as_bytes());
    let config = TranslateConfig {
        configmap: Some("default/cfg".parse().unwrap()),
        ..TranslateConfig::default()
    };
    let t = translate(&input.snapshot, &config);
    assert!(t.served.len() <= input.snapshot.ingresses.len());
    // Every host and path the input could name gets an answer.
    let mut hosts: Vec<&str> = HOSTS.to_vec();
    hosts.extend(
        text.split(['"', ' ', '\n'])
            .filter(|s| s.contains('.'))
            .take(32),
    );
    for host in hosts {
        for path in PATHS {
            let Ok(path) = normalize_path(path) else {
                continue;
            };
            match t.table.lookup(host, &path) {
                Match::Rule(r) | Match::Default(r) => {
                    let _ = r.clone();
                }
                Match::NotFound => {}
            }
        }
    }
}
