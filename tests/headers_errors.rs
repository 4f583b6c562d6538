//! Custom error pages and the ConfigMap's header and log options, end to end through the
//! real `sluice` binary (standalone mode) with real `sluice-echo` backends: one answers
//! the requests, others play the error backends and report in their JSON body the
//! `X-Code`, `X-Original-URI`, ... headers sluice sent them.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{endpoint_manifests, free_port, Echo, Reply, Sluice, INGRESS_CLASS};

/// A ConfigMap as JSON (valid YAML, and no quoting trouble with log formats).
fn configmap(name: &str, data: &[(&str, &str)]) -> String {
    let data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    });
    format!("---\n{cm}\n")
}

/// An Ingress for `host` → Service `svc` port 80, with annotations (short keys).
fn ingress(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| {
            (
                format!("nginx.ingress.kubernetes.io/{k}"),
                serde_json::Value::from(*v),
            )
        })
        .collect();
    let ing = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": svc, "port": {"number": 80}}}
            }]}}]
        }
    });
    format!("---\n{ing}\n")
}

fn get(s: &Sluice, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    client_from(None, s, host, path, headers)
}

/// GET through sluice from a given loopback source address.
fn client_from(
    local: Option<&str>,
    s: &Sluice,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ip) = local {
        b = b.local_address(ip.parse::<IpAddr>().unwrap());
    }
    let mut req = b.build().unwrap().get(s.url(path)).header("Host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Reply::from(req.send().unwrap())
}

/// Waits until an access-log line containing `needle` appears and returns it.
fn access_line(s: &Sluice, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(l) = s.access_logs().lines().find(|l| l.contains(needle)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no access-log line with {needle:?}:\n{}",
            s.access_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A backend answering every request with an empty 404 (`Content-Length: 0`).
fn bodiless_backend() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = c.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
                        if c.write_all(answer).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A Service whose only endpoint refuses connections.
fn dead_service(svc: &str) -> String {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    endpoint_manifests(svc, &[addr])
}

#[test]
fn custom_http_errors_replace_backend_and_own_errors() {
    let app = Echo::start("app");
    let errors = Echo::start("errors");
    let team = Echo::start("team-errors");
    let manifests = [
        INGRESS_CLASS.to_string(),
        app.manifests("app"),
        errors.manifests("errors"),
        team.manifests("team-errors"),
        dead_service("dead"),
        endpoint_manifests("bodiless", &[bodiless_backend()]),
        ingress("bodiless", "bodiless.example", "bodiless", &[]),
        // A Service without endpoints: sluice's own 503.
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: nopods, namespace: default}\nspec: {ports: [{port: 80}]}\n".to_string(),
        configmap("sluice", &[("custom-http-errors", "404,503")]),
        ingress("shop", "shop.example", "app", &[]),
        ingress("empty", "empty.example", "nopods", &[]),
        ingress(
            "team",
            "team.example",
            "app",
            &[
                ("custom-http-errors", "502,503"),
                ("default-backend", "team-errors"),
            ],
        ),
        ingress(
            "dead",
            "dead.example",
            "dead",
            &[("custom-http-errors", "502"), ("default-backend", "team-errors")],
        ),
        // The error backend has no endpoints: the original answers stay.
        ingress(
            "noerrors",
            "noerrors.example",
            "app",
            &[("default-backend", "nopods")],
        ),
    ]
    .concat();
    let s = Sluice::start(
        &[("all.yaml", &manifests)],
        &[
            "--configmap",
            "default/sluice",
            "--default-backend-service",
            "default/errors",
        ],
    );

    // A backend 503: the client gets 503 with the error backend's body and type.
    let r = get(
        &s,
        "shop.example",
        "/cart?status=503",
        &[("Accept", "application/json"), ("X-Request-ID", "rid-503")],
    );
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.headers["content-type"], "application/json");
    let page = r.echoed();
    assert_eq!(page["backend"], "errors", "{page}");
    assert_eq!(page["method"], "GET");
    // ingress-nginx's `rewrite (.*) / break`: the path is /, the query kept.
    assert_eq!(page["uri"], "/?status=503");
    let h = &page["headers"];
    assert_eq!(h["x-code"], "503");
    assert_eq!(h["x-format"], "application/json");
    assert_eq!(h["x-original-uri"], "/cart?status=503");
    assert_eq!(h["x-namespace"], "default");
    assert_eq!(h["x-ingress-name"], "shop");
    assert_eq!(h["x-service-name"], "app");
    assert_eq!(h["x-service-port"], "80");
    assert_eq!(h["x-request-id"], "rid-503");
    assert_eq!(h["host"], "shop.example");

    // A listed status without a body (Content-Length: 0) is replaced too.
    let r = get(&s, "bodiless.example", "/gone", &[]);
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.echoed()["headers"]["x-code"], "404");
    assert_eq!(r.echoed()["backend"], "errors");
    // A POST is asked for as a GET.
    let r = Reply::from(
        support::client()
            .post(s.url("/form?status=503"))
            .header("Host", "shop.example")
            .body("a=1")
            .send()
            .unwrap(),
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.echoed()["method"], "GET");
    assert_eq!(r.echoed()["headers"]["x-original-uri"], "/form?status=503");
    // A status not listed passes through untouched, and so do successes.
    let r = get(&s, "shop.example", "/x?status=500", &[]);
    assert_eq!((r.status, r.backend()), (500, Some("app")));
    let r = get(&s, "shop.example", "/x", &[]);
    assert_eq!((r.status, r.backend()), (200, Some("app")));
    // The connection stays usable after a replaced response (keep-alive).
    let c = support::client();
    for _ in 0..3 {
        let r = Reply::from(
            c.get(s.url("/?status=503"))
                .header("Host", "shop.example")
                .send()
                .unwrap(),
        );
        assert_eq!(
            (r.status, r.echoed()["backend"].as_str()),
            (503, Some("errors"))
        );
    }

    // sluice's own 503 (no endpoints) gets the page as well.
    let r = get(&s, "empty.example", "/p", &[]);
    assert_eq!(r.status, 503, "{r:?}");
    let page = r.echoed();
    assert_eq!(page["headers"]["x-code"], "503");
    assert_eq!(page["headers"]["x-service-name"], "nopods");
    // sluice's own 404 (nothing matches; the ConfigMap lists 404).
    let r = get(
        &s,
        "unknown.example",
        "/nope?q=1",
        &[("Accept", "text/html")],
    );
    assert_eq!(r.status, 404, "{r:?}");
    let page = r.echoed();
    assert_eq!(page["backend"], "errors");
    assert_eq!(page["headers"]["x-code"], "404");
    assert_eq!(page["headers"]["x-original-uri"], "/nope?q=1");
    assert_eq!(page["headers"]["x-format"], "text/html");
    assert!(page["headers"]["x-ingress-name"].is_null());

    // The annotation's list and error backend replace the ConfigMap's for its Ingress.
    let r = get(&s, "team.example", "/?status=503", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.echoed()["backend"], "team-errors");
    assert_eq!(r.echoed()["headers"]["x-ingress-name"], "team");
    let r = get(&s, "team.example", "/?status=404", &[]);
    assert_eq!((r.status, r.backend()), (404, Some("app")));
    // sluice's own 502 (the backend refuses connections).
    let r = get(&s, "dead.example", "/down", &[]);
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.echoed()["backend"], "team-errors");
    assert_eq!(r.echoed()["headers"]["x-code"], "502");
    assert_eq!(r.echoed()["headers"]["x-service-name"], "dead");

    // An error backend that cannot answer: the original response is sent.
    let r = get(&s, "noerrors.example", "/?status=503", &[]);
    assert_eq!((r.status, r.backend()), (503, Some("app")));
    assert_eq!(r.echoed()["backend"], "app");

    // The access log records the status the client got.
    let line = access_line(&s, "GET /cart?status=503 HTTP/1.1");
    assert!(line.contains("\" 503 "), "{line}");
}

#[test]
fn forwarded_headers_are_replaced_unless_trusted() {
    let app = Echo::start("app");
    let manifests = [
        INGRESS_CLASS.to_string(),
        app.manifests("app"),
        ingress("shop", "shop.example", "app", &[]),
        ingress(
            "internal",
            "internal.example",
            "app",
            &[("allowlist-source-range", "203.0.113.0/24")],
        ),
        ingress(
            "secure",
            "secure.example",
            "app",
            &[("force-ssl-redirect", "true")],
        ),
    ]
    .concat();
    let spoof = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Port", "443"),
    ];

    // Default ConfigMap: nothing the client says about itself is believed.
    let s = Sluice::start(&[("all.yaml", &manifests)], &[]);
    let r = client_from(Some("127.0.0.2"), &s, "shop.example", "/", &spoof);
    assert_eq!(
        r.seen_header("x-forwarded-for").as_deref(),
        Some("127.0.0.2")
    );
    assert_eq!(r.seen_header("x-real-ip").as_deref(), Some("127.0.0.2"));
    assert_eq!(
        r.seen_header("x-original-forwarded-for").as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(r.seen_header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(r.seen_header("host").as_deref(), Some("shop.example"));
    let r = client_from(Some("127.0.0.2"), &s, "internal.example", "/", &spoof);
    assert_eq!(r.status, 403);
    let r = client_from(Some("127.0.0.2"), &s, "secure.example", "/", &spoof);
    assert_eq!(r.status, 308);
    // A generated request id by default.
    let r = get(&s, "shop.example", "/", &[]);
    let id = r.seen_header("x-request-id").unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );

    // Trusted from 127.0.0.2 only, with the full list passed on.
    drop(s);
    let s = Sluice::start(
        &[
            ("all.yaml", &manifests),
            (
                "cm.yaml",
                &configmap(
                    "sluice",
                    &[
                        ("use-forwarded-headers", "true"),
                        ("compute-full-forwarded-for", "true"),
                        ("proxy-real-ip-cidr", "127.0.0.2/32"),
                    ],
                ),
            ),
        ],
        &["--configmap", "default/sluice"],
    );
    let r = client_from(Some("127.0.0.2"), &s, "shop.example", "/t1", &spoof);
    assert_eq!(
        r.seen_header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.2")
    );
    assert_eq!(r.seen_header("x-real-ip").as_deref(), Some("203.0.113.9"));
    assert_eq!(r.seen_header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(r.seen_header("x-forwarded-port").as_deref(), Some("443"));
    // ingress-nginx's $best_http_host: the believed X-Forwarded-Host is the Host sent.
    assert_eq!(r.seen_header("host").as_deref(), Some("evil.example"));
    // The allowlist sees the real client.
    let r = client_from(Some("127.0.0.2"), &s, "internal.example", "/", &spoof);
    assert_eq!(r.status, 200, "{r:?}");
    // force-ssl-redirect believes the proxy's X-Forwarded-Proto: https.
    let r = client_from(Some("127.0.0.2"), &s, "secure.example", "/", &spoof);
    assert_eq!(r.status, 200, "{r:?}");
    // The access log too.
    let line = access_line(&s, "GET /t1 ");
    assert!(line.starts_with("203.0.113.9 - - ["), "{line}");

    // The same headers from a peer outside proxy-real-ip-cidr are replaced.
    let r = client_from(Some("127.0.0.3"), &s, "shop.example", "/", &spoof);
    assert_eq!(
        r.seen_header("x-forwarded-for").as_deref(),
        Some("127.0.0.3")
    );
    assert_eq!(r.seen_header("x-real-ip").as_deref(), Some("127.0.0.3"));
    assert_eq!(r.seen_header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(r.seen_header("host").as_deref(), Some("shop.example"));
    let r = client_from(Some("127.0.0.3"), &s, "internal.example", "/", &spoof);
    assert_eq!(r.status, 403);
    let r = client_from(Some("127.0.0.3"), &s, "secure.example", "/", &spoof);
    assert_eq!(r.status, 308);

    // Without compute-full-forwarded-for (applied at runtime): the real client only.
    s.write(
        "cm.yaml",
        &configmap(
            "sluice",
            &[
                ("use-forwarded-headers", "true"),
                ("proxy-real-ip-cidr", "127.0.0.2/32"),
                ("generate-request-id", "false"),
            ],
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = client_from(Some("127.0.0.2"), &s, "shop.example", "/", &spoof);
        if r.seen_header("x-forwarded-for").as_deref() == Some("203.0.113.9") {
            // generate-request-id: false: none made up, one received is passed on.
            assert_eq!(r.seen_header("x-request-id"), None);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ConfigMap change not applied: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = get(&s, "shop.example", "/rid", &[("X-Request-ID", "given-1")]);
    assert_eq!(r.seen_header("x-request-id").as_deref(), Some("given-1"));
    let r = get(&s, "shop.example", "/norid", &[]);
    assert_eq!(r.seen_header("x-request-id"), None);
    let line = access_line(&s, "GET /norid ");
    assert!(line.ends_with(" -"), "no $req_id means -: {line}");
}

#[test]
fn proxy_set_headers_and_add_headers_from_configmaps() {
    let app = Echo::start("app");
    let manifests = [
        INGRESS_CLASS.to_string(),
        app.manifests("app"),
        ingress("shop", "shop.example", "app", &[]),
        configmap(
            "sluice",
            &[
                ("proxy-set-headers", "default/req-headers"),
                // A bare name: the controller ConfigMap's namespace.
                ("add-headers", "resp-headers"),
            ],
        ),
        configmap(
            "req-headers",
            &[
                ("X-Team", "payments"),
                ("X-Client", "$remote_addr for $host"),
            ],
        ),
        configmap(
            "resp-headers",
            &[
                ("X-Frame-Options", "DENY"),
                ("X-Served-For", "$request_uri"),
            ],
        ),
    ]
    .concat();
    let s = Sluice::start(
        &[("all.yaml", &manifests)],
        &["--configmap", "default/sluice"],
    );
    let r = get(&s, "shop.example:8080", "/a?b=1", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.seen_header("x-team").as_deref(), Some("payments"));
    assert_eq!(
        r.seen_header("x-client").as_deref(),
        Some("127.0.0.1 for shop.example")
    );
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert_eq!(r.headers["x-served-for"], "/a?b=1");
    // Responses sluice writes itself carry them too.
    let r = get(&s, "unknown.example", "/none", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-frame-options"], "DENY");

    // Editing a referenced ConfigMap applies at once.
    s.write(
        "req.yaml",
        &configmap("req-headers", &[("X-Team", "search")]),
    );
    let all = manifests.replace(
        &configmap(
            "req-headers",
            &[
                ("X-Team", "payments"),
                ("X-Client", "$remote_addr for $host"),
            ],
        ),
        "",
    );
    s.write("all.yaml", &all);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(&s, "shop.example", "/", &[]);
        if r.seen_header("x-team").as_deref() == Some("search") {
            assert_eq!(r.seen_header("x-client"), None);
            break;
        }
        assert!(Instant::now() < deadline, "not applied: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn log_format_upstream_escape_json_and_enable_access_log() {
    let app = Echo::start("app");
    let format = r#"{"addr":"$remote_addr","status":"$status","uri":"$request_uri","ua":"$http_user_agent","ref":"$http_referer","up":"$upstream_status","name":"$proxy_upstream_name","rid":"$req_id","method":"$request_method","len":"$body_bytes_sent"}"#;
    let manifests = [
        INGRESS_CLASS.to_string(),
        app.manifests("app"),
        ingress("shop", "shop.example", "app", &[]),
        ingress(
            "quiet",
            "quiet.example",
            "app",
            &[("enable-access-log", "false")],
        ),
        configmap(
            "sluice",
            &[
                ("log-format-upstream", format),
                ("log-format-escape-json", "true"),
            ],
        ),
    ]
    .concat();
    let s = Sluice::start(
        &[("all.yaml", &manifests)],
        &["--configmap", "default/sluice"],
    );
    let r = get(
        &s,
        "shop.example",
        "/json?x=\"1\"",
        &[
            ("User-Agent", "tool \"v1\" \\ x"),
            ("X-Request-ID", "rid-json"),
        ],
    );
    assert_eq!(r.status, 200);
    let line = access_line(&s, "rid-json");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["addr"], "127.0.0.1");
    assert_eq!(v["status"], "200");
    assert_eq!(v["uri"], "/json?x=%221%22");
    assert_eq!(v["ua"], "tool \"v1\" \\ x");
    assert_eq!(v["ref"], "", "unset variables are empty in JSON");
    assert_eq!(v["up"], "200");
    assert_eq!(v["name"], "default-app-80");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["len"], r.body.len().to_string());
    // enable-access-log: false on one Ingress.
    get(&s, "quiet.example", "/", &[("X-Request-ID", "rid-quiet")]);
    get(
        &s,
        "shop.example",
        "/",
        &[("X-Request-ID", "rid-after-quiet")],
    );
    access_line(&s, "rid-after-quiet");
    assert!(!s.access_logs().contains("rid-quiet"));

    // The default format and escaping come back when the keys go; then
    // enable-access-log: false silences everything (both at runtime).
    s.write(
        "all.yaml",
        &manifests
            .replace("log-format-upstream", "unused-key")
            .replace("log-format-escape-json", "unused-key-2"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    loop {
        n += 1;
        let rid = format!("rid-default-{n}");
        get(&s, "shop.example", "/plain", &[("X-Request-ID", &rid)]);
        let line = access_line(&s, &rid);
        if line.starts_with("127.0.0.1 - - [") {
            assert!(line.contains("\"GET /plain HTTP/1.1\" 200 "), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "format not reset: {line}");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.write(
        "all.yaml",
        &manifests
            .replace("log-format-escape-json", "enable-access-log")
            .replace(
                "\"enable-access-log\":\"true\"",
                "\"enable-access-log\":\"false\"",
            ),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = s.access_logs().lines().count();
        get(&s, "shop.example", "/silent", &[]);
        std::thread::sleep(Duration::from_millis(200));
        if s.access_logs().lines().count() == before {
            break;
        }
        assert!(Instant::now() < deadline, "access log still on");
    }
}

/// Sends `prefix` and then a GET over one raw TCP connection; the response text, or
/// `None` if the connection closed without one.
fn raw_exchange(addr: SocketAddr, prefix: &[u8], host: &str) -> Option<String> {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(prefix).unwrap();
    let _ = c.write_all(
        format!("GET /pp HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// The JSON body of a raw HTTP/1.1 response.
fn json_body(resp: &str) -> serde_json::Value {
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

#[test]
fn use_proxy_protocol_v1_v2_plain_and_tls() {
    let app = Echo::start("app");
    let manifests = [
        INGRESS_CLASS.to_string(),
        app.manifests("app"),
        ingress("shop", "shop.example", "app", &[]),
        configmap(
            "sluice",
            &[
                ("use-proxy-protocol", "true"),
                ("proxy-real-ip-cidr", "127.0.0.1/32"),
            ],
        ),
    ]
    .concat();
    let s = Sluice::start(
        &[("all.yaml", &manifests)],
        &["--configmap", "default/sluice"],
    );

    // v1 from a trusted peer: the header's source is the client.
    let resp = raw_exchange(
        s.http,
        b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\n",
        "shop.example",
    )
    .expect("an answer");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = json_body(&resp);
    assert_eq!(seen["headers"]["x-real-ip"], "198.51.100.7");
    assert_eq!(seen["headers"]["x-forwarded-for"], "198.51.100.7");
    // v2, IPv6 source.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend([0x21, 0x21, 0, 36]);
    let src: std::net::Ipv6Addr = "2001:db8::42".parse().unwrap();
    v2.extend(src.octets());
    v2.extend([0u8; 16]);
    v2.extend([0x9c, 0x40, 0, 80]);
    let resp = raw_exchange(s.http, &v2, "shop.example").expect("an answer");
    assert_eq!(json_body(&resp)["headers"]["x-real-ip"], "2001:db8::42");
    // No header: the connection is closed unanswered.
    assert_eq!(raw_exchange(s.http, b"", "shop.example"), None);

    // Over TLS: the header comes before the handshake.
    let resp = tls_exchange(
        s.https,
        b"PROXY TCP4 192.0.2.55 127.0.0.1 40001 443\r\n",
        "shop.example",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = json_body(&resp);
    assert_eq!(seen["headers"]["x-real-ip"], "192.0.2.55");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    let line = access_line(&s, "192.0.2.55 - - [");
    assert!(line.contains("\"GET /pp HTTP/1.1\" 200"), "{line}");

    // From a peer outside proxy-real-ip-cidr the header is read but not believed.
    s.write("all.yaml", &manifests.replace("127.0.0.1/32", "10.0.0.0/8"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = raw_exchange(
            s.http,
            b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\n",
            "shop.example",
        )
        .expect("an answer");
        if json_body(&resp)["headers"]["x-real-ip"] == "127.0.0.1" {
            break;
        }
        assert!(Instant::now() < deadline, "not applied: {resp}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Turned off at runtime: plain HTTP again.
    s.write(
        "all.yaml",
        &manifests.replace("use-proxy-protocol", "unused"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while raw_exchange(s.http, b"", "shop.example").is_none() {
        assert!(Instant::now() < deadline, "use-proxy-protocol still on");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request over TLS after `prefix` on the raw connection (any certificate).
fn tls_exchange(addr: SocketAddr, prefix: &[u8], host: &str) -> String {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(prefix).unwrap();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(
        format!("GET /pp HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Controller mode: the ConfigMaps `proxy-set-headers` names are watched by name as
/// the controller ConfigMap names them (created later, edited, switched), on a real
/// kube-apiserver with sluice's least-privilege RBAC.
#[test]
fn controller_mode_watches_the_configmaps_it_names() {
    use support::cluster::{Cluster, Controller, NetNs};
    let cluster = Cluster::start();
    let kubeconfig = cluster.sluice_kubeconfig();
    cluster.ensure_node();
    cluster.apply(INGRESS_CLASS);
    let mut net = NetNs::create(91);
    let ns = "e2e-headers";
    cluster.namespace(ns);
    let web = net.backend(10, "web");
    cluster.pod(ns, "web", "app: web", &web.ip().to_string(), true);
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: http}}]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: web.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
    ));
    let cm = |name: &str, data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata: {data}\n")
    };
    cluster.apply(&cm("sluice", "{proxy-set-headers: req, add-headers: resp}"));
    cluster.apply(&cm("resp", "{X-Frame-Options: DENY}"));
    let sluice = Controller::start(&kubeconfig, &["--configmap", &format!("{ns}/sluice")]);
    let team = |s: &Controller| {
        s.get("web.example", "/")
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.seen_header("x-team"))
    };
    // Named ConfigMaps that exist at start are in the first table.
    let r = sluice.get("web.example", "/").unwrap();
    assert_eq!(r.headers["x-frame-options"], "DENY", "{r:?}");
    assert_eq!(team(&sluice), Some(None));
    // Created later, then edited.
    cluster.apply(&cm("req", "{X-Team: payments}"));
    sluice.wait_for("req created", Duration::from_secs(5), |s| {
        team(s) == Some(Some("payments".into()))
    });
    cluster.apply(&cm("req", "{X-Team: search}"));
    sluice.wait_for("req edited", Duration::from_secs(5), |s| {
        team(s) == Some(Some("search".into()))
    });
    // The controller ConfigMap names another one.
    cluster.apply(&cm("req2", "{X-Team: ads}"));
    cluster.apply(&cm("sluice", "{proxy-set-headers: req2}"));
    sluice.wait_for("switched to req2", Duration::from_secs(5), |s| {
        team(s) == Some(Some("ads".into()))
            && s.get("web.example", "/")
                .is_ok_and(|r| r.headers.get("x-frame-options").is_none())
    });
    assert!(
        sluice
            .logs()
            .contains("watching a ConfigMap named by the controller ConfigMap"),
        "{}",
        sluice.logs()
    );
    drop(net);
}
