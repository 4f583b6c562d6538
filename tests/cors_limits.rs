//! CORS (`enable-cors`, `cors-*`) and rate limits (`limit-*`, ConfigMap
//! `limit-req-status-code` / `limit-conn-status-code`) through the real `sluice` binary
//! in standalone mode: real clients from distinct loopback addresses, a real recording
//! backend (to prove what never reaches it) and real `sluice-echo` backends.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{endpoint_manifests, Echo, Reply, Sluice, INGRESS_CLASS};

/// One request as the recording backend received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 backend that records every request head it receives and answers
/// 200 with CORS headers of its own (which sluice must replace where it applies CORS).
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve(conn, &log));
            }
        });
        Recorder { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, log: &Mutex<Vec<Seen>>) {
    let mut out = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let seen = Seen {
            method: method.to_string(),
            target: target.to_string(),
            headers,
        };
        let len: usize = seen
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push(seen);
        let resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\nAccess-Control-Allow-Origin: https://backend.example\r\nAccess-Control-Allow-Credentials: true\r\nX-Backend: recorder\r\n\r\nbackend";
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// An Ingress for `host` (paths `/` and `/other`) → Service `svc`, with annotations.
fn ingress(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    support::objects::mk_ingress(
        name,
        host,
        &[("Prefix", "/"), ("Prefix", "/other")],
        svc,
        annotations,
    )
}

const CONFIGMAP: &str = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: sluice-config, namespace: default}\ndata: {limit-req-status-code: \"429\"}\n";

/// A client from a given loopback address; a new connection per request, so requests
/// land on either worker.
fn client_from(ip: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn send(
    c: &reqwest::blocking::Client,
    s: &Sluice,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut r = c
        .request(method.parse().unwrap(), s.url(path))
        .header("Host", host);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    Reply::from(r.send().unwrap())
}

fn hdr<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

/// All values of a header, to catch duplicates.
fn all(r: &Reply, name: &str) -> Vec<String> {
    r.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";

fn cors_manifests(rec: &Recorder) -> String {
    let mut m = String::from(INGRESS_CLASS);
    m += &ingress("open", "open.example", "rec", &[("enable-cors", "true")]);
    m += &ingress(
        "listed",
        "listed.example",
        "rec",
        &[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://app.example, https://*.example.com, http://local.test:3000",
            ),
            ("cors-allow-methods", "GET, POST"),
            ("cors-allow-headers", "X-Custom, Authorization"),
            ("cors-allow-credentials", "false"),
            ("cors-expose-headers", "X-Total, X-Page"),
            ("cors-max-age", "600"),
        ],
    );
    m += &ingress("plain", "plain.example", "rec", &[]);
    // CORS headers on sluice's own answers; preflights come before the access list.
    m += &ingress(
        "guarded",
        "guarded.example",
        "rec",
        &[
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://app.example"),
            ("whitelist-source-range", "10.0.0.0/8"),
        ],
    );
    m += &endpoint_manifests("rec", &[rec.addr]);
    m
}

#[test]
fn preflight_is_answered_204_by_sluice_with_exact_headers() {
    let rec = Recorder::start();
    let s = Sluice::start(&[("cors.yaml", &cors_manifests(&rec))], &[]);
    let c = client_from("127.0.0.1");

    // Default settings (`*`): a browser preflight.
    let r = send(
        &c,
        &s,
        "OPTIONS",
        "open.example",
        "/api/items",
        &[
            ("Origin", "https://anywhere.test"),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.body, "");
    let mut names: Vec<&str> = r
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| !matches!(*k, "date" | "server" | "connection"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "access-control-allow-credentials",
            "access-control-allow-headers",
            "access-control-allow-methods",
            "access-control-allow-origin",
            "access-control-max-age",
            "content-length",
            "content-type",
        ],
        "{r:?}"
    );
    assert_eq!(hdr(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(hdr(&r, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        hdr(&r, "access-control-allow-methods"),
        Some(DEFAULT_METHODS)
    );
    assert_eq!(
        hdr(&r, "access-control-allow-headers"),
        Some(DEFAULT_HEADERS)
    );
    assert_eq!(hdr(&r, "access-control-max-age"), Some("1728000"));
    assert_eq!(hdr(&r, "content-length"), Some("0"));
    assert_eq!(hdr(&r, "content-type"), Some("text/plain charset=UTF-8"));

    // Configured values, the allowed Origin echoed.
    let r = send(
        &c,
        &s,
        "OPTIONS",
        "listed.example",
        "/other",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        hdr(&r, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(hdr(&r, "access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(
        hdr(&r, "access-control-allow-headers"),
        Some("X-Custom, Authorization")
    );
    assert_eq!(
        hdr(&r, "access-control-expose-headers"),
        Some("X-Total, X-Page")
    );
    assert_eq!(hdr(&r, "access-control-max-age"), Some("600"));
    assert_eq!(hdr(&r, "access-control-allow-credentials"), None);

    // As nginx's `if ($request_method = OPTIONS)`: with `*` even an OPTIONS without
    // Origin is answered; preflights come before the access list (10.0.0.0/8 only).
    let r = send(&c, &s, "OPTIONS", "open.example", "/", &[]);
    assert_eq!(r.status, 204);
    let r = send(
        &c,
        &s,
        "OPTIONS",
        "guarded.example",
        "/",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
    );
    assert_eq!(r.status, 204, "{r:?}");

    // None of those reached the backend.
    assert!(rec.seen().is_empty(), "{:?}", rec.seen());

    // An origin that is not allowed, or a host without CORS: OPTIONS is proxied.
    let r = send(
        &c,
        &s,
        "OPTIONS",
        "listed.example",
        "/",
        &[
            ("Origin", "https://evil.test"),
            ("Access-Control-Request-Method", "POST"),
        ],
    );
    assert_eq!((r.status, hdr(&r, "x-backend")), (200, Some("recorder")));
    let r = send(
        &c,
        &s,
        "OPTIONS",
        "plain.example",
        "/x",
        &[("Origin", "https://a.test")],
    );
    assert_eq!((r.status, hdr(&r, "x-backend")), (200, Some("recorder")));
    let seen = rec.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|x| x.method == "OPTIONS"));
    assert_eq!(seen[0].header("origin"), Some("https://evil.test"));
    assert_eq!(seen[1].target, "/x");
    // The access log shows sluice answered the preflights itself.
    let preflight_line = |log: &str| {
        log.lines().any(|l| {
            l.contains("\"OPTIONS /api/items HTTP/1.1\" 204 0")
                && l.contains("[default-rec-80] [] - - - -")
        })
    };
    let log = s.access_logs_when(preflight_line);
    assert!(preflight_line(&log), "{log}");
}

#[test]
fn actual_requests_get_cors_headers_for_allowed_origins_only() {
    let rec = Recorder::start();
    let s = Sluice::start(&[("cors.yaml", &cors_manifests(&rec))], &[]);
    let c = client_from("127.0.0.1");

    // `*`: added to every response, replacing the backend's own values.
    let r = send(
        &c,
        &s,
        "GET",
        "open.example",
        "/",
        &[("Origin", "https://anywhere.test")],
    );
    assert_eq!((r.status, r.body.as_str()), (200, "backend"));
    assert_eq!(all(&r, "access-control-allow-origin"), ["*"]);
    assert_eq!(all(&r, "access-control-allow-credentials"), ["true"]);
    assert_eq!(
        hdr(&r, "access-control-allow-methods"),
        Some(DEFAULT_METHODS)
    );
    assert_eq!(hdr(&r, "access-control-max-age"), Some("1728000"));
    assert_eq!(hdr(&r, "access-control-expose-headers"), None);
    // ... even without an Origin (ingress-nginx sets them unconditionally for `*`).
    let r = send(&c, &s, "GET", "open.example", "/", &[]);
    assert_eq!(all(&r, "access-control-allow-origin"), ["*"]);

    // A list: the matching Origin is echoed, exact entry or one-label wildcard.
    for origin in [
        "https://app.example",
        "https://api.example.com",
        "HTTPS://API.EXAMPLE.COM",
        "http://local.test:3000",
    ] {
        let r = send(
            &c,
            &s,
            "POST",
            "listed.example",
            "/other",
            &[("Origin", origin)],
        );
        assert_eq!(r.status, 200, "{origin}: {r:?}");
        assert_eq!(all(&r, "access-control-allow-origin"), [origin], "{r:?}");
        assert_eq!(hdr(&r, "access-control-allow-methods"), Some("GET, POST"));
        assert_eq!(
            hdr(&r, "access-control-allow-headers"),
            Some("X-Custom, Authorization")
        );
        assert_eq!(
            hdr(&r, "access-control-expose-headers"),
            Some("X-Total, X-Page")
        );
        assert_eq!(hdr(&r, "access-control-max-age"), Some("600"));
        // cors-allow-credentials: false, so the backend's `true` is not passed on.
        assert_eq!(hdr(&r, "access-control-allow-credentials"), None, "{r:?}");
    }
    // Any other Origin (or none): sluice adds nothing; the backend's headers pass as is.
    for origin in [
        Some("https://evil.test"),
        Some("https://example.com"),
        Some("https://a.b.example.com"),
        Some("https://api.example.com:8443"),
        Some("http://app.example"),
        Some("http://local.test"),
        None,
    ] {
        let h: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        let r = send(&c, &s, "GET", "listed.example", "/", &h);
        assert_eq!(r.status, 200);
        assert_eq!(
            all(&r, "access-control-allow-origin"),
            ["https://backend.example"],
            "{origin:?}"
        );
        for sluices in [
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-expose-headers",
            "access-control-max-age",
        ] {
            assert_eq!(hdr(&r, sluices), None, "{origin:?}: {sluices}");
        }
    }

    // The backend received the actual requests with their Origin, path and method.
    let seen = rec.seen();
    let post = seen.iter().find(|x| x.method == "POST").unwrap();
    assert_eq!(post.target, "/other");
    assert_eq!(post.header("origin"), Some("https://app.example"));

    // sluice's own answers carry the headers too: 403 from the access list.
    let r = send(
        &c,
        &s,
        "GET",
        "guarded.example",
        "/",
        &[("Origin", "https://app.example")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        hdr(&r, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(hdr(&r, "access-control-allow-credentials"), Some("true"));
}

/// `n` requests from one client, returning the statuses.
fn burst(c: &reqwest::blocking::Client, s: &Sluice, host: &str, path: &str, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| send(c, s, "GET", host, path, &[]).status)
        .collect()
}

fn limit_manifests(echo: &Echo) -> String {
    let mut m = String::from(INGRESS_CLASS);
    // 1 r/s with burst 2: three requests pass at once.
    m += &ingress(
        "rps",
        "rps.example",
        "echo",
        &[("limit-rps", "1"), ("limit-burst-multiplier", "2")],
    );
    m += &ingress(
        "exempt",
        "exempt.example",
        "echo",
        &[
            ("limit-rps", "1"),
            ("limit-burst-multiplier", "1"),
            ("limit-whitelist", "127.0.0.4/32, 10.0.0.0/8"),
        ],
    );
    m += &ingress(
        "conns",
        "conns.example",
        "echo",
        &[("limit-connections", "2")],
    );
    m += &ingress("broken", "broken.example", "echo", &[("limit-rps", "ten")]);
    m += &ingress(
        "cors-limited",
        "cors-limited.example",
        "echo",
        &[
            ("limit-rpm", "1"),
            ("limit-burst-multiplier", "1"),
            ("enable-cors", "true"),
        ],
    );
    m += &echo.manifests("echo");
    m += CONFIGMAP;
    m
}

#[test]
fn rate_limit_refuses_a_burst_from_one_client_but_not_another() {
    let echo = Echo::start("echo");
    let s = Sluice::start(
        &[("limits.yaml", &limit_manifests(&echo))],
        &["--configmap", "default/sluice-config"],
    );
    let a = client_from("127.0.0.2");
    let b = client_from("127.0.0.3");

    let started = Instant::now();
    let got = burst(&a, &s, "rps.example", "/", 10);
    let quick = started.elapsed() < Duration::from_millis(900);
    let passed = got.iter().filter(|c| **c == 200).count();
    // burst 2 + the first: 3 pass at once (4 if a second went by meanwhile).
    assert!(
        got.iter().all(|c| *c == 200 || *c == 429),
        "limit-req-status-code 429: {got:?}"
    );
    if quick {
        assert_eq!(passed, 3, "{got:?}");
    } else {
        assert!((3..=4).contains(&passed), "{got:?}");
    }
    assert_eq!(&got[..3], [200, 200, 200]);
    // Every path of the Ingress shares the client's counter.
    assert_eq!(
        send(&a, &s, "GET", "rps.example", "/other", &[]).status,
        429
    );
    let refused = send(&a, &s, "GET", "rps.example", "/", &[]);
    assert_eq!(refused.status, 429);
    assert!(
        refused.body.contains("429 Too Many Requests"),
        "{refused:?}"
    );
    assert!(refused.backend().is_none());
    // Another client is not affected.
    assert_eq!(burst(&b, &s, "rps.example", "/", 3), [200, 200, 200]);
    // One request drains per second.
    std::thread::sleep(Duration::from_millis(1100));
    let after = burst(&a, &s, "rps.example", "/", 2);
    assert_eq!(after[0], 200, "{after:?}");

    // A limit that does not parse refuses everyone rather than limiting no one.
    let r = send(&b, &s, "GET", "broken.example", "/", &[]);
    assert_eq!(r.status, 429);
    let logs = s.logs();
    assert!(
        logs.lines().any(|l| l.contains("InvalidAnnotation")
            && l.contains("limit-rps")
            && l.contains("ten")),
        "{logs}"
    );

    // Refusals carry CORS headers when the Ingress has CORS (rpm 1, burst 1).
    let got = burst(&a, &s, "cors-limited.example", "/", 3);
    assert_eq!(got, [200, 200, 429]);
    let r = send(
        &a,
        &s,
        "GET",
        "cors-limited.example",
        "/",
        &[("Origin", "https://x.test")],
    );
    assert_eq!(r.status, 429);
    assert_eq!(hdr(&r, "access-control-allow-origin"), Some("*"));
}

#[test]
fn limit_whitelist_exempts_a_client() {
    let echo = Echo::start("echo");
    let s = Sluice::start(
        &[("limits.yaml", &limit_manifests(&echo))],
        &["--configmap", "default/sluice-config"],
    );
    let exempt = client_from("127.0.0.4");
    let other = client_from("127.0.0.5");
    assert!(burst(&exempt, &s, "exempt.example", "/", 12)
        .iter()
        .all(|c| *c == 200));
    let got = burst(&other, &s, "exempt.example", "/", 6);
    assert_eq!(&got[..2], [200, 200], "{got:?}");
    assert!(got.contains(&429), "{got:?}");
    // The exempt client's requests reached the backend as usual.
    let r = send(&exempt, &s, "GET", "exempt.example", "/other?x=1", &[]);
    assert_eq!(r.backend(), Some("echo"));
    assert_eq!(r.echoed()["uri"], "/other?x=1");
    assert_eq!(r.seen_header("x-real-ip").as_deref(), Some("127.0.0.4"));
}

#[test]
fn limit_connections_refuses_concurrent_requests_beyond_the_limit() {
    let echo = Echo::start("echo");
    let s = Arc::new(Sluice::start(
        &[("limits.yaml", &limit_manifests(&echo))],
        &["--configmap", "default/sluice-config"],
    ));
    // Five slow requests at once from one client: two are served, three refused at once
    // (limit-conn-status-code, default 503); another client meanwhile is served.
    let slow = |ip: &'static str| {
        let s = s.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = send(
                &client_from(ip),
                &s,
                "GET",
                "conns.example",
                "/?sleep_ms=1500",
                &[],
            );
            (r.status, started.elapsed())
        })
    };
    let a: Vec<_> = (0..5).map(|_| slow("127.0.0.6")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let b = slow("127.0.0.7");
    let a: Vec<(u16, Duration)> = a.into_iter().map(|t| t.join().unwrap()).collect();
    let served: Vec<_> = a.iter().filter(|(c, _)| *c == 200).collect();
    let refused: Vec<_> = a.iter().filter(|(c, _)| *c == 503).collect();
    assert_eq!((served.len(), refused.len()), (2, 3), "{a:?}");
    assert!(
        served
            .iter()
            .all(|(_, t)| *t >= Duration::from_millis(1400)),
        "{a:?}"
    );
    assert!(
        refused
            .iter()
            .all(|(_, t)| *t < Duration::from_millis(1000)),
        "refused without waiting: {a:?}"
    );
    assert_eq!(b.join().unwrap().0, 200);
    // The slots were released when those requests ended.
    let c = client_from("127.0.0.6");
    assert_eq!(burst(&c, &s, "conns.example", "/other", 3), [200, 200, 200]);
}

#[test]
fn limits_survive_table_swaps() {
    let echo = Echo::start("echo");
    let s = Sluice::start(
        &[("limits.yaml", &limit_manifests(&echo))],
        &["--configmap", "default/sluice-config"],
    );
    // 1 r/min with burst 1: two pass, then nothing for a minute.
    let a = client_from("127.0.0.8");
    let got = burst(&a, &s, "cors-limited.example", "/", 3);
    assert_eq!(got, [200, 200, 429]);
    // A new table: another Ingress appears.
    s.write("more.yaml", &ingress("new", "new.example", "echo", &[]));
    s.wait_for("new.example", "/", Duration::from_secs(10), |r| {
        r.status == 200
    });
    // The client's counter outlived the swap.
    assert_eq!(
        send(&a, &s, "GET", "cors-limited.example", "/", &[]).status,
        429
    );
    assert_eq!(
        send(
            &client_from("127.0.0.9"),
            &s,
            "GET",
            "cors-limited.example",
            "/",
            &[]
        )
        .status,
        200
    );
}
