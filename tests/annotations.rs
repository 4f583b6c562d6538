//! Request-policy annotations through the real binary: regex paths and
//! `rewrite-target`, redirects, `app-root`, access lists, `proxy-body-size`, timeouts,
//! `upstream-vhost`, `x-forwarded-prefix`, and the refusal of snippets.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

// An Ingress `name` for `host` with `paths` (pathType, path) → `svc`, and annotations.
use support::objects::mk_ingress as ingress;
use support::{client, Echo, Reply, Sluice, INGRESS_CLASS};

fn uri_seen(r: &Reply) -> String {
    r.echoed()["uri"].as_str().unwrap().to_string()
}

#[test]
fn regex_paths_and_rewrite_target() {
    let app = Echo::start("app");
    let other = Echo::start("other");
    let mut m = String::from(INGRESS_CLASS);
    // ingress-nginx's documented example.
    m += &ingress(
        "rewrite",
        "rewrite.example",
        &[("ImplementationSpecific", "/something(/|$)(.*)")],
        "app",
        &[
            ("rewrite-target", "/$2"),
            ("x-forwarded-prefix", "/something"),
        ],
    );
    // A second Ingress on the same host without annotations: its paths become regexes
    // too (case-insensitive, anchored, longest first).
    m += &ingress(
        "plain-same-host",
        "rewrite.example",
        &[("Prefix", "/other"), ("Exact", "/exact")],
        "other",
        &[],
    );
    m += &ingress(
        "regex",
        "regex.example",
        &[
            ("ImplementationSpecific", "/api/v[0-9]+/users"),
            ("ImplementationSpecific", "/api"),
            ("ImplementationSpecific", "/bad(["),
        ],
        "app",
        &[("use-regex", "true")],
    );
    // Without regex the same host shape matches element-wise and case-sensitively.
    m += &ingress(
        "literal",
        "literal.example",
        &[("Prefix", "/Api")],
        "app",
        &[],
    );
    m += &app.manifests("app");
    m += &other.manifests("other");
    let s = Sluice::start(&[("m.yaml", &m)], &[]);

    for (path, want) in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new?q=1&r=2", "/new?q=1&r=2"),
        ("/SOMETHING/deep/er", "/deep/er"),
    ] {
        let r = s.get("rewrite.example", path);
        assert_eq!(r.backend(), Some("app"), "{path}: {r:?}");
        assert_eq!(uri_seen(&r), want, "{path}");
        assert_eq!(
            r.seen_header("x-forwarded-prefix").as_deref(),
            Some("/something")
        );
    }
    // The plain Ingress on the regex host: /other is now `^/other` (so /otherwise too),
    // case-insensitive, and not rewritten (its Ingress has no rewrite-target).
    for path in ["/other", "/OTHER/x", "/otherwise"] {
        let r = s.get("rewrite.example", path);
        assert_eq!(r.backend(), Some("other"), "{path}");
        assert_eq!(uri_seen(&r), path);
        assert_eq!(r.seen_header("x-forwarded-prefix"), None);
    }
    assert_eq!(s.get("rewrite.example", "/exact").backend(), Some("other"));
    assert_eq!(s.get("rewrite.example", "/nothing").status, 404);

    // use-regex: longest path first; bad regexes are dropped with a warning.
    let r = s.get("regex.example", "/api/v2/users/7");
    assert_eq!(
        (r.status, uri_seen(&r)),
        (200, "/api/v2/users/7".to_string())
    );
    assert_eq!(s.get("regex.example", "/API/other").status, 200);
    assert_eq!(s.get("regex.example", "/v1").status, 404);
    assert!(
        s.logs()
            .lines()
            .any(|l| l.contains("InvalidPath") && l.contains("/bad([")),
        "{}",
        s.logs()
    );
    // Not a regex host: case-sensitive element-wise prefix.
    assert_eq!(s.get("literal.example", "/Api/x").status, 200);
    assert_eq!(s.get("literal.example", "/api/x").status, 404);
    assert_eq!(s.get("literal.example", "/Apix").status, 404);
}

#[test]
fn redirects_access_lists_body_size_timeouts_and_host() {
    let app = Echo::start("app");
    let mut m = String::from(INGRESS_CLASS);
    m += &ingress(
        "perm",
        "perm.example",
        &[("Prefix", "/")],
        "app",
        &[("permanent-redirect", "https://new.example/landing")],
    );
    m += &ingress(
        "temp",
        "temp.example",
        &[("Prefix", "/")],
        "app",
        &[
            ("temporal-redirect", "/elsewhere"),
            ("temporal-redirect-code", "307"),
        ],
    );
    m += &ingress(
        "root",
        "root.example",
        &[("Prefix", "/")],
        "app",
        &[("app-root", "/app1")],
    );
    m += &ingress(
        "allow",
        "allow.example",
        &[("Prefix", "/")],
        "app",
        &[("whitelist-source-range", "127.0.0.0/30, 10.0.0.0/8")],
    );
    m += &ingress(
        "deny",
        "deny.example",
        &[("Prefix", "/")],
        "app",
        &[("denylist-source-range", "127.0.0.2")],
    );
    m += &ingress(
        "broken-allow",
        "broken.example",
        &[("Prefix", "/")],
        "app",
        &[("allowlist-source-range", "10.0.0.0/99")],
    );
    m += &ingress(
        "small",
        "small.example",
        &[("Prefix", "/")],
        "app",
        &[("proxy-body-size", "1k")],
    );
    m += &ingress(
        "default-size",
        "default-size.example",
        &[("Prefix", "/")],
        "app",
        &[],
    );
    m += &ingress(
        "unlimited",
        "unlimited.example",
        &[("Prefix", "/")],
        "app",
        &[("proxy-body-size", "0")],
    );
    m += &ingress(
        "slow",
        "slow.example",
        &[("Prefix", "/")],
        "app",
        &[
            ("proxy-read-timeout", "1"),
            ("upstream-vhost", "internal.svc"),
        ],
    );
    m += &ingress(
        "snippets",
        "snippets.example",
        &[("Prefix", "/")],
        "app",
        &[
            ("configuration-snippet", "more_set_headers \"X-Pwned: 1\";"),
            ("server-snippet", "location /x { return 200; }"),
            ("mirror-target", "http://mirror"),
        ],
    );
    m += &app.manifests("app");
    let s = Sluice::start(&[("m.yaml", &m)], &[]);

    let r = s.get("perm.example", "/a?b=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://new.example/landing");
    let r = s.get("temp.example", "/a");
    assert_eq!(
        (r.status, r.headers["location"].to_str().unwrap()),
        (307, "/elsewhere")
    );
    // app-root: ingress-nginx answers with an absolute Location from the request's
    // scheme and Host (tests/fidelity.rs covers variables in the target).
    let r = s.get("root.example", "/");
    assert_eq!(
        (r.status, r.headers["location"].to_str().unwrap()),
        (302, "http://root.example/app1")
    );
    assert_eq!(s.get("root.example", "/app1").backend(), Some("app"));

    // Access lists, from distinct loopback source addresses.
    let from = |ip: &str, host: &str| -> u16 {
        let c = reqwest::blocking::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap();
        c.get(s.url("/"))
            .header("Host", host)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(from("127.0.0.1", "allow.example"), 200);
    assert_eq!(from("127.0.0.3", "allow.example"), 200);
    assert_eq!(from("127.0.0.9", "allow.example"), 403);
    assert_eq!(from("127.0.0.1", "deny.example"), 200);
    assert_eq!(from("127.0.0.2", "deny.example"), 403);
    // A broken list fails closed, with a warning.
    assert_eq!(from("127.0.0.1", "broken.example"), 403);
    assert!(s.logs().contains("allowlist-source-range"), "{}", s.logs());

    // Body size: Content-Length over the limit → 413; chunked bodies that grow past it
    // → 413; the default is 1m; 0 is unlimited.
    let post = |host: &str, body: Vec<u8>| {
        client()
            .post(s.url("/?echo_body=1"))
            .header("Host", host)
            .body(body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post("small.example", vec![b'x'; 1024]), 200);
    assert_eq!(post("small.example", vec![b'x'; 1025]), 413);
    assert_eq!(post("default-size.example", vec![b'x'; 1 << 20]), 200);
    assert_eq!(post("default-size.example", vec![b'x'; (1 << 20) + 1]), 413);
    assert_eq!(post("unlimited.example", vec![b'x'; 3 << 20]), 200);
    assert_eq!(chunked_post(&s, "small.example", 4096), 413);
    assert_eq!(chunked_post(&s, "small.example", 512), 200);

    // proxy-read-timeout 1 s: a 2 s backend answer is a 504; a quick one passes with the
    // Host from upstream-vhost.
    let r = s.get("slow.example", "/?sleep_ms=2500");
    assert_eq!(r.status, 504);
    let r = s.get("slow.example", "/");
    assert_eq!(r.seen_header("host").as_deref(), Some("internal.svc"));
    assert_eq!(
        r.seen_header("x-forwarded-host").as_deref(),
        Some("slow.example")
    );

    // Snippets are never executed; unknown keys are named.
    let r = s.get("snippets.example", "/x");
    assert_eq!(r.backend(), Some("app"));
    assert!(r.headers.get("x-pwned").is_none());
    let logs = s.logs();
    assert!(
        logs.lines().any(|l| l.contains("RefusedAnnotation")
            && l.contains("configuration-snippet")
            && l.contains("server-snippet")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("UnsupportedAnnotation") && l.contains("mirror-target")),
        "{logs}"
    );
}

/// POSTs `size` bytes with `Transfer-Encoding: chunked` over a raw socket; the status.
fn chunked_post(s: &Sluice, host: &str, size: usize) -> u16 {
    let mut conn = std::net::TcpStream::connect(s.http).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /?echo_body=1 HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).unwrap();
    for chunk in vec![b'y'; size].chunks(256) {
        let _ = conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = conn.write_all(chunk);
        let _ = conn.write_all(b"\r\n");
    }
    let _ = conn.write_all(b"0\r\n\r\n");
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"))
}

/// The builder's YAML carries any annotation value as written (the hand-formatted
/// `'{v}'` builders it replaces broke on a quote).
#[test]
fn ingress_builder_keeps_values_as_written() {
    let value = "it's \"quoted\" # not a comment: {x}\n$1 \\ 'end'";
    let yaml = ingress(
        "q",
        "q.example",
        &[("Prefix", "/a'b")],
        "svc",
        &[("rewrite-target", value)],
    );
    let back: k8s_openapi::api::networking::v1::Ingress =
        serde_yaml_ng::from_str(yaml.trim_start_matches("---\n")).unwrap();
    let annotations = back.metadata.annotations.unwrap();
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/rewrite-target"],
        value
    );
    let spec = back.spec.unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let rules = spec.rules.unwrap();
    let path = &rules[0].http.as_ref().unwrap().paths[0];
    assert_eq!(path.path.as_deref(), Some("/a'b"));
}
