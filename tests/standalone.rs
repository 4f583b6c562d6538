//! The real `sluice` binary in standalone mode, driven through real HTTP requests to
//! real `sluice-echo` backends on loopback: routing, precedence, errors, forwarded
//! headers, h2c, WebSocket, hot reload under load, and bad input.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{client, endpoint_manifests, free_port, ingress, Echo, Sluice, INGRESS_CLASS};

fn routing_manifests(alpha: &Echo, beta: &Echo, gamma: &Echo) -> String {
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut m = String::from(INGRESS_CLASS);
    m += &ingress(
        "main",
        "2026-01-01T00:00:00Z",
        Some("app.example"),
        &[
            ("Prefix", "/", "alpha"),
            ("Prefix", "/api", "beta"),
            ("Exact", "/api/exact", "gamma"),
            ("Prefix", "/missing", "nope"),
            ("Prefix", "/down", "down"),
            ("Prefix", "/slow", "alpha"),
        ],
    );
    m += &ingress(
        "wild",
        "2026-01-01T00:00:00Z",
        Some("*.wild.example"),
        &[("Prefix", "/", "gamma")],
    );
    m += &ingress(
        "hostless",
        "2026-01-01T00:00:00Z",
        None,
        &[("Prefix", "/hostless", "beta")],
    );
    // Younger Ingress claiming the same host+path: the older one keeps it.
    m += &ingress(
        "younger",
        "2026-02-01T00:00:00Z",
        Some("app.example"),
        &[("Prefix", "/api", "gamma")],
    );
    m += &alpha.manifests("alpha");
    m += &beta.manifests("beta");
    m += &gamma.manifests("gamma");
    m += &endpoint_manifests("down", &[closed]);
    m += "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: sluice-config, namespace: default}\ndata: {proxy-read-timeout: \"1\"}\n";
    m
}

#[test]
fn routes_by_host_and_path_with_nginx_errors() {
    let (alpha, beta, gamma) = (
        Echo::start("alpha"),
        Echo::start("beta"),
        Echo::start("gamma"),
    );
    let s = Sluice::start(
        &[("routes.yaml", &routing_manifests(&alpha, &beta, &gamma))],
        &["--configmap", "default/sluice-config"],
    );
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("app.example", "/", Some("alpha"), 200),
        ("APP.example:8080", "/x/y", Some("alpha"), 200),
        ("app.example", "/api", Some("beta"), 200),
        ("app.example", "/api/x", Some("beta"), 200),
        ("app.example", "/apix", Some("alpha"), 200),
        ("app.example", "/api/exact", Some("gamma"), 200),
        ("app.example", "/api/exact/", Some("beta"), 200),
        ("app.example", "/api/exact?q=1", Some("gamma"), 200),
        ("x.wild.example", "/", Some("gamma"), 200),
        ("a.b.wild.example", "/", None, 404),
        ("other.example", "/hostless/a", Some("beta"), 200),
        ("x.wild.example", "/hostless", Some("gamma"), 200),
        ("other.example", "/", None, 404),
        ("app.example", "/missing", None, 503),
        ("app.example", "/down", None, 502),
    ];
    for (host, path, backend, status) in cases {
        let r = s.get(host, path);
        assert_eq!(r.status, *status, "{host}{path}: {r:?}");
        assert_eq!(r.backend(), *backend, "{host}{path}");
    }
    let r = s.get("other.example", "/");
    assert!(
        r.body.contains("<title>404 Not Found</title>"),
        "{}",
        r.body
    );
    assert_eq!(r.headers["content-type"], "text/html");
    let r = s.get("app.example", "/missing");
    assert!(
        r.body.contains("503 Service Temporarily Unavailable"),
        "{}",
        r.body
    );
    let r = s.get("app.example", "/down");
    assert!(r.body.contains("502 Bad Gateway"), "{}", r.body);

    // Upstream read timeout (ConfigMap proxy-read-timeout: 1) → 504: the backend would
    // answer 200 after 5 s, so the status alone shows the timeout cut each try. The
    // default `proxy-next-upstream: error timeout` re-picks the lone endpoint, as
    // ingress-nginx does, so the client waits about 3 × 1 s (no timing asserted here).
    let r = s.get("app.example", "/slow?sleep_ms=5000");
    assert_eq!(r.status, 504, "{r:?}");

    // The access log has a line per request in ingress-nginx's upstream format.
    let log = s.access_logs_when(|l| l.contains("\"GET /api/exact?q=1 HTTP/1.1\" 200"));
    let line = log
        .lines()
        .find(|l| l.contains("\"GET /api/exact?q=1 HTTP/1.1\" 200"))
        .unwrap_or_else(|| panic!("no access-log line:\n{log}"));
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains(&format!("[default-gamma-80] [] {} ", gamma.addr)),
        "{line}"
    );
    assert!(s.logs().contains("PathConflict"), "{}", s.logs());
}

#[test]
fn forwards_ingress_nginx_headers_h2c_bodies_and_websockets() {
    let (alpha, beta, gamma) = (
        Echo::start("alpha"),
        Echo::start("beta"),
        Echo::start("gamma"),
    );
    let s = Sluice::start(
        &[("routes.yaml", &routing_manifests(&alpha, &beta, &gamma))],
        &[],
    );

    let r = support::Reply::from(
        client()
            .get(s.url("/headers?x=1"))
            .header("Host", "app.example")
            .header("X-Forwarded-For", "203.0.113.9")
            .header("Connection", "keep-alive, X-Hop")
            .header("X-Hop", "secret")
            .header("Proxy", "http://attacker.example")
            .send()
            .unwrap(),
    );
    assert_eq!(r.status, 200);
    let seen = |n: &str| r.seen_header(n);
    assert_eq!(seen("host").as_deref(), Some("app.example"));
    assert_eq!(seen("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        seen("x-original-forwarded-for").as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(seen("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen("x-forwarded-host").as_deref(), Some("app.example"));
    assert_eq!(seen("x-forwarded-port"), Some(s.http.port().to_string()));
    assert_eq!(seen("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen("x-forwarded-scheme").as_deref(), Some("http"));
    assert_eq!(seen("x-scheme").as_deref(), Some("http"));
    let id = seen("x-request-id").unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(seen("x-hop"), None, "connection-nominated header leaked");
    assert_eq!(seen("proxy"), None);
    assert_eq!(r.echoed()["uri"], "/headers?x=1");
    // An incoming request id is kept.
    let r = support::Reply::from(
        client()
            .get(s.url("/"))
            .header("Host", "app.example")
            .header("X-Request-ID", "abc-123")
            .send()
            .unwrap(),
    );
    assert_eq!(r.seen_header("x-request-id").as_deref(), Some("abc-123"));

    // h2c from the client (curl, prior knowledge), HTTP/1.1 to the backend.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-H",
            "Host: app.example",
            "-w",
            "\n%{http_version}",
        ])
        .arg(s.url("/h2"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, version) = text.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "{text}");
    let echoed: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echoed["backend"], "alpha");
    assert_eq!(echoed["headers"]["host"], "app.example");

    // Request and response bodies stream through intact.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let resp = client()
        .post(s.url("/upload?echo_body=1"))
        .header("Host", "app.example")
        .body(payload.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), payload.as_slice());

    // WebSocket upgrade with no annotation.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
        let mut req = format!("ws://{}/ws", s.http).into_client_request().unwrap();
        req.headers_mut()
            .insert("host", "app.example".parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("ws connect");
        assert_eq!(resp.status(), 101);
        let hello = ws.next().await.unwrap().unwrap();
        assert_eq!(hello, Message::text("hello from alpha"));
        for i in 0..5 {
            ws.send(Message::text(format!("ping-{i}"))).await.unwrap();
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                Message::text(format!("ping-{i}"))
            );
        }
        ws.close(None).await.unwrap();
    });
}

fn reload_manifests(target: &str, default: Option<&str>, alpha: &Echo, beta: &Echo) -> String {
    let mut m = String::from(INGRESS_CLASS);
    m += &ingress(
        "reload",
        "2026-01-01T00:00:00Z",
        Some("reload.example"),
        &[("Prefix", "/", target)],
    );
    if let Some(d) = default {
        m += &format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: fallback, namespace: default}}\nspec:\n  ingressClassName: nginx\n  defaultBackend: {{service: {{name: {d}, port: {{number: 80}}}}}}\n"
        );
    }
    m += &alpha.manifests("alpha");
    m += &beta.manifests("beta");
    m
}

#[test]
fn hot_reload_is_fast_and_loses_no_request() {
    let (alpha, beta) = (Echo::start("alpha"), Echo::start("beta"));
    let s = Sluice::start(
        &[("app.yaml", &reload_manifests("alpha", None, &alpha, &beta))],
        &[],
    );
    assert_eq!(s.get("reload.example", "/").backend(), Some("alpha"));
    assert_eq!(s.get("unknown.example", "/").status, 404);

    // A changed Ingress serves its new route within one second.
    s.write("app.yaml", &reload_manifests("beta", None, &alpha, &beta));
    let took = s.wait_for("reload.example", "/", Duration::from_secs(1), |r| {
        r.backend() == Some("beta")
    });
    eprintln!("change live after {took:?}");
    // A new default backend takes unmatched requests.
    s.write(
        "app.yaml",
        &reload_manifests("beta", Some("alpha"), &alpha, &beta),
    );
    s.wait_for("unknown.example", "/", Duration::from_secs(1), |r| {
        r.backend() == Some("alpha")
    });

    // A client sending continuously while the manifests change 50 times sees no failure.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, failures) =
                (stop.clone(), ok.clone(), failed.clone(), failures.clone());
            let url = s.url("/load");
            std::thread::spawn(move || {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    let outcome = c
                        .get(&url)
                        .header("Host", "reload.example")
                        .send()
                        .and_then(|r| Ok((r.status(), r.bytes()?)));
                    match outcome {
                        Ok((status, _)) if status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            failures.lock().unwrap().push(format!("{other:?}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    // Each change is written once the previous one is published (a loaded machine
    // would otherwise coalesce several writes into one rebuild, which is by design).
    let published = || s.logs().matches("published routing table").count();
    let before = published();
    for i in 0..50 {
        let target = if i % 2 == 0 { "alpha" } else { "beta" };
        let seen = published();
        s.write(
            "app.yaml",
            &reload_manifests(target, Some("alpha"), &alpha, &beta),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while published() == seen && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} requests succeeded, {failed} failed during 50 reloads");
    assert_eq!(failed, 0, "{:?}", failures.lock().unwrap());
    assert!(ok > 100, "too few requests to mean anything: {ok}");
    let generations = published() - before;
    assert!(
        generations >= 50,
        "expected ~50 rebuilds, saw {generations}"
    );
}

#[test]
fn bad_input_never_takes_down_other_routes() {
    let alpha = Echo::start("alpha");
    let good = format!(
        "{INGRESS_CLASS}{}{}",
        ingress(
            "good",
            "2026-01-01T00:00:00Z",
            Some("good.example"),
            &[("Prefix", "/", "alpha")]
        ),
        alpha.manifests("alpha")
    );
    let bad_path = ingress(
        "badpath",
        "2026-01-01T00:00:00Z",
        Some("paths.example"),
        &[("Exact", "foo", "alpha"), ("Prefix", "/ok", "alpha")],
    );
    let missing = ingress(
        "nosvc",
        "2026-01-01T00:00:00Z",
        Some("missing.example"),
        &[("Prefix", "/", "ghost")],
    );
    let unknown =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n";
    let s = Sluice::start(
        &[
            ("good.yaml", &good),
            (
                "broken.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: x\n  oops: [\n",
            ),
            ("badpath.yaml", &bad_path),
            ("missing.yaml", &missing),
            ("deploy.yml", unknown),
        ],
        &[],
    );
    assert_eq!(s.get("good.example", "/").backend(), Some("alpha"));
    assert_eq!(s.get("paths.example", "/ok/1").backend(), Some("alpha"));
    assert_eq!(s.get("paths.example", "/foo").status, 404);
    assert_eq!(s.get("missing.example", "/").status, 503);
    let logs = s.logs();
    assert!(logs.contains("broken.yaml:"), "file not named:\n{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("InvalidPath") && l.contains("name=badpath")),
        "invalid path warning does not name the Ingress:\n{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("ghost") && l.contains("name=nosvc")),
        "missing Service warning does not name the Ingress:\n{logs}"
    );

    // Breaking a good file keeps its last good objects serving.
    s.write(
        "good.yaml",
        &good.replace("kind: Ingress", "kind: Ingress\n  : : ["),
    );
    let logs = s.logs_when(|l| l.contains("keeping the last good version"));
    assert!(logs.contains("keeping the last good version"), "{logs}");
    for _ in 0..20 {
        assert_eq!(s.get("good.example", "/").backend(), Some("alpha"));
    }
    // Fixing the broken file brings its objects in.
    s.write(
        "broken.yaml",
        &ingress(
            "fixed",
            "2026-01-01T00:00:00Z",
            Some("fixed.example"),
            &[("Prefix", "/", "alpha")],
        ),
    );
    s.wait_for("fixed.example", "/", Duration::from_secs(1), |r| {
        r.backend() == Some("alpha")
    });
}

fn protocol_ingress(name: &str, host: &str, protocol: &str, svc: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  annotations: {{nginx.ingress.kubernetes.io/backend-protocol: \"{protocol}\"}}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n"
    )
}

#[test]
fn backend_protocol_speaks_https_h2c_and_h2_over_tls_to_backends() {
    let plain = Echo::start("plain");
    let secure = Echo::start_with("secure", &["--tls"]);
    let mut m = String::from(INGRESS_CLASS);
    m += &protocol_ingress("https", "https.example", "HTTPS", "secure");
    m += &protocol_ingress("grpc", "grpc.example", "GRPC", "plain");
    m += &protocol_ingress("grpcs", "grpcs.example", "GRPCS", "secure");
    m += &protocol_ingress("http", "http.example", "HTTP", "plain");
    m += &protocol_ingress("bogus", "bogus.example", "FCGI", "plain");
    m += &plain.manifests("plain");
    m += &secure.manifests("secure");
    let s = Sluice::start(&[("protocols.yaml", &m)], &[]);
    // (host, TLS to the backend, HTTP version the backend saw)
    let cases = [
        ("https.example", true, "HTTP/1.1"),
        ("grpc.example", false, "HTTP/2.0"),
        ("grpcs.example", true, "HTTP/2.0"),
        ("http.example", false, "HTTP/1.1"),
        ("bogus.example", false, "HTTP/1.1"),
    ];
    for (host, tls, version) in cases {
        let r = s.get(host, "/p?q=1");
        assert_eq!(r.status, 200, "{host}: {r:?}");
        let seen = r.echoed();
        assert_eq!(seen["tls"], tls, "{host}: {seen}");
        assert_eq!(seen["version"], version, "{host}: {seen}");
        assert_eq!(seen["uri"], "/p?q=1", "{host}: {seen}");
    }
    assert!(
        s.logs()
            .lines()
            .any(|l| l.contains("backend-protocol") && l.contains("name=bogus")),
        "{}",
        s.logs()
    );
}

/// A gRPC health server (grpcio, tests/grpc/health.py) on loopback; killed on drop.
struct GrpcServer {
    child: std::process::Child,
    port: u16,
}

fn python() -> String {
    std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into())
}

impl GrpcServer {
    fn start(tls: Option<(&std::path::Path, &std::path::Path)>) -> GrpcServer {
        use std::io::BufRead;
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/health.py");
        let mut cmd = std::process::Command::new(python());
        cmd.args([script, "serve", "--port", &port.to_string()]);
        if let Some((crt, key)) = tls {
            cmd.arg("--tls").arg(crt).arg(key);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 with grpcio (e2e/test.sh installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.contains("listening"),
            "gRPC server did not start (is grpcio installed? e2e/test.sh installs it): {line:?}"
        );
        GrpcServer { child, port }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn real_grpc_unary_calls_pass_through_grpc_and_grpcs() {
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = support::cluster::self_signed(certs.path(), "localhost", "grpc");
    let plain = GrpcServer::start(None);
    let secure = GrpcServer::start(Some((&crt, &key)));
    let addr = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    let mut m = String::from(INGRESS_CLASS);
    m += &protocol_ingress("grpc", "grpc.example", "GRPC", "plain");
    m += &protocol_ingress("grpcs", "grpcs.example", "GRPCS", "secure");
    m += &endpoint_manifests("plain", &[addr(plain.port)]);
    m += &endpoint_manifests("secure", &[addr(secure.port)]);
    let s = Sluice::start(&[("grpc.yaml", &m)], &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/health.py");
    for authority in ["grpc.example", "grpcs.example"] {
        // A real gRPC client (h2c to sluice) making unary Check calls.
        let out = std::process::Command::new(python())
            .args([
                script,
                "check",
                "--target",
                &s.http.to_string(),
                "--authority",
                authority,
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.lines().filter(|l| *l == "SERVING").count() == 3,
            "{authority}: {stdout}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.logs()
        );
    }
}

#[test]
fn sigterm_shuts_down_cleanly_with_several_workers() {
    let alpha = Echo::start("alpha");
    let m = format!(
        "{INGRESS_CLASS}{}{}",
        ingress(
            "t",
            "2026-01-01T00:00:00Z",
            Some("t.example"),
            &[("Prefix", "/", "alpha")]
        ),
        alpha.manifests("alpha")
    );
    // Each worker owns its own listening sockets; a shared fd used to be closed twice
    // at shutdown, which aborted the process. No grace period: nothing balances onto
    // this process, so it may stop accepting at once (the drain is e2e-tested).
    let mut s = Sluice::start(
        &[("t.yaml", &m)],
        &["--workers", "3", "--shutdown-grace-period", "0"],
    );
    for _ in 0..6 {
        assert_eq!(s.get("t.example", "/").backend(), Some("alpha"));
    }
    let status = s.terminate();
    assert!(status.success(), "exit {status:?}:\n{}", s.logs());
}

#[test]
fn worker_shutdown_timeout_cuts_what_is_left_and_sigint_exits_at_once() {
    let alpha = Echo::start("alpha");
    let manifests = |timeout: &str| {
        format!(
            "{INGRESS_CLASS}{}{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: sluice-config, namespace: default}}\ndata: {{worker-shutdown-timeout: \"{timeout}\"}}\n",
            ingress(
                "t",
                "2026-01-01T00:00:00Z",
                Some("t.example"),
                &[("Prefix", "/", "alpha")]
            ),
            alpha.manifests("alpha")
        )
    };
    let args = [
        "--configmap",
        "default/sluice-config",
        "--shutdown-grace-period",
        "0",
    ];
    let backend_port = alpha.addr.port();
    let long_request = |s: &Sluice| {
        let url = s.url("/long?sleep_ms=20000");
        let request = std::thread::spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap()
                .get(url)
                .header("Host", "t.example")
                .send()
                .and_then(|r| r.text())
        });
        // In flight once sluice holds a connection to the backend (the echo's port has
        // an established socket), however slowly this machine starts the client.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !established_to(backend_port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        request
    };

    // worker-shutdown-timeout: 2s (the ConfigMap's, in the table in force) cuts a 20 s
    // request 2 s after the listeners close; the exit is still clean.
    let mut s = Sluice::start(&[("t.yaml", &manifests("2s"))], &args);
    let request = long_request(&s);
    let term = Instant::now();
    s.signal("TERM");
    let status = s
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running:\n{}", s.logs()));
    let took = term.elapsed();
    assert!(status.success(), "exit {status:?}:\n{}", s.logs());
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "exited {took:?} after SIGTERM:\n{}",
        s.logs()
    );
    assert!(
        request.join().unwrap().is_err(),
        "the long request was not cut"
    );
    assert!(
        s.logs().contains("worker-shutdown-timeout reached"),
        "{}",
        s.logs()
    );

    // SIGINT during a drain (timeout 60 s here) exits at once.
    let mut s = Sluice::start(&[("t.yaml", &manifests("60s"))], &args);
    let request = long_request(&s);
    s.signal("TERM");
    // Past the point where an idle process would exit: the listeners are closed and
    // sluice is waiting for the request in flight.
    let logs = s.logs_when(|l| l.contains("waiting for requests in flight"));
    assert!(logs.contains("waiting for requests in flight"), "{logs}");
    assert!(
        s.wait_exit(Duration::ZERO).is_none(),
        "exited with a request in flight"
    );
    let int = Instant::now();
    s.signal("INT");
    let status = s
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("SIGINT ignored during the drain:\n{}", s.logs()));
    assert!(
        int.elapsed() < Duration::from_secs(5),
        "{:?}",
        int.elapsed()
    );
    assert!(status.success(), "exit {status:?}");
    assert!(request.join().unwrap().is_err());
}

#[test]
fn http10_without_keep_alive_gets_its_connection_closed() {
    use std::io::{Read, Write};
    let alpha = Echo::start("alpha");
    let m = format!(
        "{INGRESS_CLASS}{}{}",
        ingress(
            "old",
            "2026-01-01T00:00:00Z",
            Some("old.example"),
            &[("Prefix", "/", "alpha")]
        ),
        alpha.manifests("alpha")
    );
    let s = Sluice::start(&[("old.yaml", &m)], &[]);
    for request in [
        "GET / HTTP/1.0\r\nHost: old.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: old.example\r\nConnection: close\r\n\r\n",
    ] {
        let mut conn = std::net::TcpStream::connect(s.http).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        conn.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        // read_to_string only returns once sluice closes the connection.
        conn.read_to_string(&mut reply)
            .unwrap_or_else(|e| panic!("connection left open after {request:?}: {e}"));
        assert!(reply.contains(" 200 "), "{reply}");
        assert!(
            !reply
                .to_ascii_lowercase()
                .contains("connection: keep-alive"),
            "{reply}"
        );
    }
}

#[test]
fn the_manifests_dir_settles_after_a_change() {
    let alpha = Echo::start("alpha");
    let mut m = String::from(INGRESS_CLASS);
    m += &support::ingress(
        "a",
        "2024-01-01T00:00:00Z",
        Some("a.example"),
        &[("Prefix", "/", "alpha")],
    );
    m += &alpha.manifests("alpha");
    let s = Sluice::start(&[("a.yaml", &m)], &[]);
    let publishes = |l: &str| l.matches("published routing table").count();
    let unchanged = |l: &str| l.matches("no change, nothing published").count();
    let before = publishes(&s.logs());
    support::write_atomic(s.dir.path(), "a.yaml", &m.replace("a.example", "b.example"));
    s.wait_for("b.example", "/", Duration::from_secs(5), |r| {
        r.status == 200
    });
    // Rewriting a file with the same content re-reads it and publishes nothing; the
    // "no change" line is the signal that it has been looked at.
    support::write_atomic(s.dir.path(), "a.yaml", &m.replace("a.example", "b.example"));
    let logs = s.logs_when(|l| unchanged(l) >= 1);
    assert_eq!(unchanged(&logs), 1, "{logs}");
    // A real change in another file then goes live with exactly one more publish.
    let c = support::ingress(
        "c",
        "2024-01-01T00:00:00Z",
        Some("c.example"),
        &[("Prefix", "/", "alpha")],
    );
    support::write_atomic(s.dir.path(), "c.yaml", &c);
    s.wait_for("c.example", "/", Duration::from_secs(5), |r| {
        r.status == 200
    });
    let logs = s.logs_when(|l| publishes(l) >= before + 2);
    assert_eq!(publishes(&logs), before + 2, "{logs}");
    // sluice's own reads must not count as changes (that re-read forever once). Nothing
    // signals "no further event", so this one check is a quiet window: 500 ms is twelve
    // 40 ms debounce periods, in which such a loop re-reads about twelve times.
    std::thread::sleep(Duration::from_millis(500));
    let logs = s.logs();
    assert_eq!(publishes(&logs), before + 2, "{logs}");
    assert_eq!(unchanged(&logs), 1, "still re-reading:\n{logs}");
}

#[test]
fn json_controller_logs_are_one_object_per_line() {
    let alpha = Echo::start("alpha");
    let mut m = String::from(INGRESS_CLASS);
    m += &support::ingress(
        "a",
        "2024-01-01T00:00:00Z",
        Some("a.example"),
        &[("Prefix", "/", "missing")],
    );
    m += &alpha.manifests("alpha");
    let s = Sluice::start(&[("a.yaml", &m)], &["--log-format", "json", "--v", "2"]);
    assert_eq!(s.get("a.example", "/").status, 503);
    let logs = s.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let warning = lines
        .iter()
        .find(|l| l["reason"] == "BackendUnavailable")
        .unwrap_or_else(|| panic!("no BackendUnavailable warning:\n{logs}"));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["name"], "a");
    assert!(warning["message"].as_str().unwrap().contains("missing"));
}

/// Whether some TCP connection to local port `port` is established (/proc/net/tcp,
/// state 01): the backend has accepted a connection from sluice.
fn established_to(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&local) && f[3] == "01"
    })
}
