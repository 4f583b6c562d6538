//! Request bodies and connection caps through the real binary (issue 11): request
//! buffering (`proxy-request-buffering`, `client-body-buffer-size`), replay on retry,
//! `client-body-timeout`, `proxy-body-size` with buffering, and
//! `max-worker-connections`.
//!
//! A raw-recording backend (a plain `TcpListener` thread) records when each connection
//! arrives and every byte it receives, so the tests see exactly what reached the backend
//! and when.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{endpoint_manifests, Echo, Sluice, INGRESS_CLASS};

/// An Ingress `name` for `host`, Prefix `/` → `svc`, with annotations.
fn ingress(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    support::objects::mk_ingress(name, host, &[("Prefix", "/")], svc, annotations)
}

fn configmap(data: &[(&str, &str)]) -> String {
    support::objects::mk_config_map("sluice-config", data)
}

/// One connection as the raw backend saw it.
#[derive(Debug, Clone)]
struct Seen {
    accepted: Instant,
    bytes: Vec<u8>,
}

/// A backend that records every connection. It reads one request (head and a
/// `content-length` body), then answers `200 ok` (or, with `fail`, closes without an
/// answer) and closes.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn start(fail: bool) -> Recorder {
        Recorder::start_at("127.0.0.1:0", fail)
    }

    fn start_at(addr: &str, fail: bool) -> Recorder {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let accepted = Instant::now();
                let index = {
                    let mut l = log.lock().unwrap();
                    l.push(Seen {
                        accepted,
                        bytes: Vec::new(),
                    });
                    l.len() - 1
                };
                let log = log.clone();
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(20)))
                        .unwrap();
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 65536];
                    while !complete(&buf) {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                buf.extend_from_slice(&chunk[..n]);
                                log.lock().unwrap()[index].bytes = buf.clone();
                            }
                        }
                    }
                    if !fail {
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    }
                });
            }
        });
        Recorder { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Whether `buf` holds a whole request with a `content-length` body.
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return buf.ends_with(b"0\r\n\r\n");
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= end + 4 + len
}

/// The body of a request the recorder saw.
fn body_of(bytes: &[u8]) -> &[u8] {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    &bytes[end + 4..]
}

/// A body that shows misplaced or dropped bytes.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// Reads a whole `Connection: close` response; (status, body).
fn read_response(conn: &mut TcpStream) -> (u16, Vec<u8>) {
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        panic!("no response head: {:?}", String::from_utf8_lossy(&out));
    };
    let head = String::from_utf8_lossy(&out[..end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = out[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..line_end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        b = &b[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// POSTs `body` to `host` over a raw socket, with `content-length` or chunked.
fn post(s: &Sluice, host: &str, path: &str, body: &[u8], chunked: bool) -> (u16, Vec<u8>) {
    let mut conn = TcpStream::connect(s.http).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n{framing}\r\nConnection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    if chunked {
        for c in body.chunks(10_000) {
            let _ = conn.write_all(format!("{:x}\r\n", c.len()).as_bytes());
            let _ = conn.write_all(c);
            let _ = conn.write_all(b"\r\n");
        }
        let _ = conn.write_all(b"0\r\n\r\n");
    } else {
        for c in body.chunks(64 * 1024) {
            let _ = conn.write_all(c);
        }
    }
    read_response(&mut conn)
}

#[test]
fn buffered_and_streamed_uploads_arrive_intact() {
    let echo = Echo::start("echo");
    let mut m = String::from(INGRESS_CLASS);
    m += &ingress("buf", "buf.example", "echo", &[("proxy-body-size", "8m")]);
    m += &ingress(
        "stream",
        "stream.example",
        "echo",
        &[
            ("proxy-body-size", "8m"),
            ("proxy-request-buffering", "off"),
        ],
    );
    m += &ingress(
        "small",
        "small.example",
        "echo",
        &[
            ("proxy-body-size", "8m"),
            ("client-body-buffer-size", "64k"),
        ],
    );
    m += &echo.manifests("echo");
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let mib = pattern(1024 * 1024);
    for host in ["buf.example", "stream.example", "small.example"] {
        for chunked in [false, true] {
            let (status, got) = post(&s, host, "/?echo_body=1", &mib, chunked);
            assert_eq!(status, 200, "{host} chunked={chunked}");
            assert_eq!(got.len(), mib.len(), "{host} chunked={chunked}");
            assert!(got == mib, "{host} chunked={chunked}: bytes differ");
        }
    }
    // In memory (below client-body-buffer-size) and just around Pingora's 64 KiB.
    for n in [1, 100, 8 * 1024, 65_535, 65_536, 65_537, 200_000] {
        let body = pattern(n);
        let (status, got) = post(&s, "buf.example", "/?echo_body=1", &body, false);
        assert_eq!((status, got.len()), (200, n));
        assert!(got == body, "{n} bytes differ");
    }
}

/// Sends a head and half of a `content-length` body, waits, then the rest; returns what
/// the backend had seen before the rest was sent, and the response status.
fn half_then_rest(s: &Sluice, host: &str, rec: &Recorder, n: usize) -> (usize, u16) {
    let body = pattern(n);
    let mut conn = TcpStream::connect(s.http).unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body[..n / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let before = rec.seen().len();
    conn.write_all(&body[n / 2..]).unwrap();
    let (status, _) = read_response(&mut conn);
    (before, status)
}

#[test]
fn the_backend_is_contacted_only_after_the_last_body_byte() {
    let buffered = Recorder::start(false);
    let streamed = Recorder::start(false);
    let mut m = String::from(INGRESS_CLASS);
    m += &ingress(
        "wait",
        "wait.example",
        "buffered",
        &[("proxy-body-size", "1m")],
    );
    m += &ingress(
        "flow",
        "flow.example",
        "streamed",
        &[("proxy-request-buffering", "off")],
    );
    m += &endpoint_manifests("buffered", &[buffered.addr]);
    m += &endpoint_manifests("streamed", &[streamed.addr]);
    let s = Sluice::start(&[("m.yaml", &m)], &[]);

    // 100 kB: on disk with the default 8k client-body-buffer-size.
    let sent_at = Instant::now();
    let (before, status) = half_then_rest(&s, "wait.example", &buffered, 100_000);
    assert_eq!(status, 200);
    assert_eq!(
        before, 0,
        "no backend connection while the body is incomplete"
    );
    let seen = buffered.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].accepted > sent_at + Duration::from_millis(1400),
        "connected {:?} after the head",
        seen[0].accepted - sent_at
    );
    assert!(body_of(&seen[0].bytes) == pattern(100_000), "body intact");
    let head = String::from_utf8_lossy(&seen[0].bytes[..200]).to_ascii_lowercase();
    assert!(head.contains("content-length: 100000"), "{head}");

    // Streaming (`off`): the backend sees the connection (and the head) at once.
    let (before, status) = half_then_rest(&s, "flow.example", &streamed, 100_000);
    assert_eq!(status, 200);
    assert_eq!(
        before, 1,
        "streamed: connected before the body was complete"
    );
    assert!(body_of(&streamed.seen()[0].bytes) == pattern(100_000));
}

#[test]
fn expect_100_continue_is_answered_by_sluice_when_buffering() {
    let rec = Recorder::start(false);
    let mut m = String::from(INGRESS_CLASS);
    m += &ingress("wait", "wait.example", "rec", &[]);
    m += &endpoint_manifests("rec", &[rec.addr]);
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let body = pattern(20_000);
    let mut conn = TcpStream::connect(s.http).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"POST / HTTP/1.1\r\nHost: wait.example\r\nContent-Length: 20000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte)
            .expect("an interim response before the body");
        interim.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&interim);
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim}"
    );
    assert!(rec.seen().is_empty(), "no backend yet");
    conn.write_all(&body).unwrap();
    let (status, got) = read_response(&mut conn);
    assert_eq!((status, &got[..]), (200, &b"ok"[..]));
    let seen = rec.seen();
    assert!(body_of(&seen[0].bytes) == body);
    let head = String::from_utf8_lossy(&seen[0].bytes[..300]).to_ascii_lowercase();
    assert!(!head.contains("expect:"), "Expect is not forwarded: {head}");
}

#[test]
fn a_buffered_post_is_replayed_on_the_next_endpoint() {
    // Two endpoints on one port (a Service port maps to one target port).
    let port = support::free_port();
    let bad = Recorder::start_at(&format!("127.0.0.21:{port}"), true);
    let good = Recorder::start_at(&format!("127.0.0.22:{port}"), false);
    let mut m = String::from(INGRESS_CLASS);
    let retry = [
        ("proxy-next-upstream", "error timeout non_idempotent"),
        ("proxy-body-size", "1m"),
    ];
    m += &ingress("retry", "retry.example", "pair", &retry);
    let mut off = retry.to_vec();
    off.push(("proxy-request-buffering", "off"));
    m += &ingress("noretry", "noretry.example", "pair", &off);
    m += &endpoint_manifests("pair", &[bad.addr, good.addr]);
    let s = Sluice::start(&[("m.yaml", &m)], &["--workers", "1"]);
    // 200 kB: over Pingora's 64 KiB retry buffer, so only a buffered body can be
    // replayed. Streamed (`off`), the failure reaches the client.
    let body = pattern(200_000);
    let statuses: Vec<u16> = (0..4)
        .map(|_| post(&s, "noretry.example", "/", &body, false).0)
        .collect();
    assert!(statuses.contains(&502), "{statuses:?}");
    // Passive health skips the failed endpoint for 1 s: wait until it is back.
    std::thread::sleep(Duration::from_millis(1500));
    let tried_before = bad.seen().len();
    for _ in 0..4 {
        let (status, _) = post(&s, "retry.example", "/", &body, false);
        assert_eq!(status, 200, "retried on the good endpoint");
    }
    let failed = bad.seen();
    assert!(
        failed.len() > tried_before,
        "the failing endpoint was tried"
    );
    assert!(
        failed.iter().all(|c| body_of(&c.bytes) == body),
        "the failing endpoint got the whole body"
    );
    assert!(good.seen().iter().all(|c| body_of(&c.bytes) == body));
}

#[test]
fn body_size_limit_and_client_body_timeout() {
    let rec = Recorder::start(false);
    let mut m = String::from(INGRESS_CLASS);
    m += &ingress(
        "small",
        "small.example",
        "rec",
        &[("proxy-body-size", "10k")],
    );
    m += &endpoint_manifests("rec", &[rec.addr]);
    m += &configmap(&[("client-body-timeout", "1")]);
    let s = Sluice::start(&[("m.yaml", &m)], &["--configmap", "default/sluice-config"]);
    let big = pattern(20_000);
    assert_eq!(post(&s, "small.example", "/", &big, false).0, 413);
    assert_eq!(post(&s, "small.example", "/", &big, true).0, 413);
    assert_eq!(post(&s, "small.example", "/", &big[..9_000], false).0, 200);
    assert_eq!(post(&s, "small.example", "/", &big[..9_000], true).0, 200);

    // Half a body, then silence: 408 after about a second, and the connection closes.
    let mut conn = TcpStream::connect(s.http).unwrap();
    conn.write_all(b"POST / HTTP/1.1\r\nHost: small.example\r\nContent-Length: 5000\r\n\r\n")
        .unwrap();
    conn.write_all(&big[..2000]).unwrap();
    let started = Instant::now();
    let (status, _) = read_response(&mut conn); // read_to_end: returns once closed
    let waited = started.elapsed();
    assert_eq!(status, 408);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // Streaming (chunked) bodies are bounded by the same timeout.
    let mut conn = TcpStream::connect(s.http).unwrap();
    conn.write_all(b"POST / HTTP/1.1\r\nHost: small.example\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n")
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = conn.read_to_end(&mut out);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed after the timeout"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 502"),
        "{text}"
    );
    // The buffered requests refused (413 on content-length, 408) never reached it.
    let reached: Vec<String> = rec
        .seen()
        .iter()
        .map(|c| String::from_utf8_lossy(&c.bytes).to_ascii_lowercase())
        .collect();
    assert!(
        !reached
            .iter()
            .any(|r| r.contains("content-length: 20000") || r.contains("content-length: 5000")),
        "{reached:?}"
    );
    assert!(reached.iter().any(|r| r.contains("content-length: 9000")));
}

#[test]
fn max_worker_connections_sheds_new_connections_and_recovers() {
    let echo = Echo::start("echo");
    let mut m = String::from(INGRESS_CLASS);
    m += &ingress("e", "e.example", "echo", &[]);
    m += &echo.manifests("echo");
    m += &configmap(&[("max-worker-connections", "3")]);
    let s = Sluice::start(
        &[("m.yaml", &m)],
        &["--configmap", "default/sluice-config", "--workers", "1"],
    );
    // One keep-alive GET (a 10-byte body); None when the connection is closed.
    let get = |conn: &mut TcpStream| -> Option<u16> {
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(b"GET /?size=10 HTTP/1.1\r\nHost: e.example\r\n\r\n")
            .ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !complete(&buf) {
            let n = conn.read(&mut chunk).ok().filter(|n| *n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buf)
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    // The readiness probe's connection may still be closing: let it go.
    std::thread::sleep(Duration::from_millis(300));
    let mut kept: Vec<TcpStream> = Vec::new();
    let first = TcpStream::connect(s.http).unwrap();
    kept.push(first);
    assert_eq!(get(&mut kept[0]), Some(200), "a keep-alive connection");
    for _ in 0..2 {
        kept.push(TcpStream::connect(s.http).unwrap()); // idle, counted
    }
    std::thread::sleep(Duration::from_millis(300));
    // The fourth is closed without an answer.
    let mut extra = TcpStream::connect(s.http).unwrap();
    assert_eq!(get(&mut extra), None, "over the cap: closed at once");
    // Connections already open keep being served, keep-alive included.
    assert_eq!(get(&mut kept[0]), Some(200));
    assert_eq!(get(&mut kept[1]), Some(200));
    // One closes; a new connection is served again.
    drop(kept.pop());
    std::thread::sleep(Duration::from_millis(300));
    let mut again = TcpStream::connect(s.http).unwrap();
    assert_eq!(get(&mut again), Some(200));
    assert!(
        s.logs().contains("max-worker-connections reached"),
        "{}",
        s.logs()
    );
}

#[test]
fn http2_bodies_with_a_length_are_buffered_intact() {
    let rec = Recorder::start(false);
    let mut m = String::from(INGRESS_CLASS);
    m += &ingress("h2", "h2.example", "rec", &[("proxy-body-size", "4m")]);
    m += &endpoint_manifests("rec", &[rec.addr]);
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    // DATA frames of 16 KiB: the retry buffer is switched on for the last 64 KiB.
    let body = pattern(1024 * 1024 + 123);
    std::fs::write(&file, &body).unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(["-H", "Host: h2.example", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(s.url("/up"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200 2"), "{text}");
    let seen = rec.seen();
    assert_eq!(seen.len(), 1);
    assert!(body_of(&seen[0].bytes) == body, "body intact over HTTP/2");
}
