//! Hostile HTTP/1 through the real `sluice` binary: each request-framing finding of
//! issue 11 as the exact bytes over a raw socket, checking what the client gets (the
//! status, and that the connection is closed: EOF within a bound) and what a
//! raw-recording backend received (no smuggled request, no wrongly framed body).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::raw::RawBackend;
use support::{endpoint_manifests, Sluice, INGRESS_CLASS};

/// sluice routing host `h.example` to a raw backend, with ConfigMap `data`.
fn start(data: &[(&str, &str)]) -> (Sluice, RawBackend) {
    let backend = RawBackend::start();
    let manifests = format!(
        "{INGRESS_CLASS}{}{}{}",
        endpoint_manifests("raw", &[backend.addr]),
        support::objects::mk_ingress("h", "h.example", &[("Prefix", "/")], "raw", &[]),
        support::objects::mk_config_map("sluice", data)
    );
    let s = Sluice::start(
        &[("all.yaml", &manifests)],
        &["--configmap", "default/sluice"],
    );
    (s, backend)
}

fn connect(s: &Sluice) -> TcpStream {
    let c = TcpStream::connect(s.http).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c
}

/// Reads until EOF or `limit`: (bytes, whether the connection was closed).
fn read_until_closed(c: &mut TcpStream, limit: Duration) -> (String, bool) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while started.elapsed() < limit {
        match c.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true)
            }
            Err(_) => {}
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

/// Reads exactly `n` responses of the backend's fixed form (or what arrives by `limit`).
fn read_responses(c: &mut TcpStream, n: usize, limit: Duration) -> String {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while started.elapsed() < limit
        && String::from_utf8_lossy(&got).matches("\r\n\r\nok").count() < n
    {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends `bytes` on a new connection and expects `status` and a closed connection.
fn refused(s: &Sluice, bytes: &[u8], status: &str) -> String {
    let mut c = connect(s);
    c.write_all(bytes).unwrap();
    let (reply, closed) = read_until_closed(&mut c, Duration::from_secs(5));
    assert!(
        reply.starts_with(&format!("HTTP/1.1 {status}")),
        "want {status}, got {reply:?}"
    );
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply:?}"
    );
    assert!(closed, "connection left open after {reply:?}");
    reply
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: h.example\r\n\r\n";

/// What the backend received before a marker request sent after the hostile ones. The
/// marker is the signal that sluice has finished with them: each hostile request's bytes
/// would have been forwarded before its answer was written, so once the marker has been
/// answered there is nothing left to wait for.
fn received_before_marker(s: &Sluice, backend: &RawBackend) -> String {
    let mut c = connect(s);
    c.write_all(b"GET /marker HTTP/1.1\r\nHost: h.example\r\n\r\n")
        .unwrap();
    let reply = read_responses(&mut c, 1, Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 200"), "marker: {reply:?}");
    let seen = backend.received();
    let end = seen
        .find("GET /marker")
        .unwrap_or_else(|| panic!("marker not received: {seen:?}"));
    seen[..end].to_string()
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_closed() {
    let (s, backend) = start(&[]);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: h.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused(&s, req.as_bytes(), "400");
    assert_eq!(
        received_before_marker(&s, &backend),
        "",
        "the backend saw the request"
    );
}

#[test]
fn bare_lf_in_a_chunk_extension_is_400_and_closed() {
    let (s, backend) = start(&[]);
    let req = format!(
        "POST /c HTTP/1.1\r\nHost: h.example\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\nhello\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused(&s, req.as_bytes(), "400");
    let seen = received_before_marker(&s, &backend);
    assert!(!seen.contains("hello"), "chunk data forwarded: {seen:?}");
    assert!(!seen.contains("smuggled"), "{seen:?}");
}

#[test]
fn list_valued_and_duplicate_content_length_are_400_and_closed() {
    let (s, backend) = start(&[]);
    let list = format!(
        "POST / HTTP/1.1\r\nHost: h.example\r\nContent-Length: 5, 5\r\n\r\nhello{SMUGGLED}"
    );
    refused(&s, list.as_bytes(), "400");
    let dup = format!("POST / HTTP/1.1\r\nHost: h.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello{SMUGGLED}");
    refused(&s, dup.as_bytes(), "400");
    assert_eq!(received_before_marker(&s, &backend), "");
}

#[test]
fn repeated_or_odd_transfer_encoding_is_refused_and_closed() {
    let (s, backend) = start(&[]);
    let twice = format!("POST / HTTP/1.1\r\nHost: h.example\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}");
    refused(&s, twice.as_bytes(), "400");
    let tab = format!("POST / HTTP/1.1\r\nHost: h.example\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n{SMUGGLED}");
    refused(&s, tab.as_bytes(), "501");
    let http10 =
        "POST / HTTP/1.0\r\nHost: h.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    refused(&s, http10.as_bytes(), "400");
    assert_eq!(received_before_marker(&s, &backend), "");
}

#[test]
fn a_40_kb_header_block_is_400_and_closed() {
    let (s, backend) = start(&[]);
    let mut req = String::from("GET / HTTP/1.1\r\nHost: h.example\r\n");
    for i in 0..10 {
        req.push_str(&format!("X-Big-{i}: {}\r\n", "a".repeat(4000)));
    }
    req.push_str("\r\n");
    let reply = refused(&s, req.as_bytes(), "400");
    assert!(
        reply.contains("Request Header Or Cookie Too Large"),
        "{reply}"
    );
    assert_eq!(backend.received(), "");
}

#[test]
fn a_10_kb_request_line_is_414_and_closed() {
    let (s, backend) = start(&[]);
    let req = format!(
        "GET /{} HTTP/1.1\r\nHost: h.example\r\n\r\n",
        "a".repeat(10_000)
    );
    refused(&s, req.as_bytes(), "414");
    assert_eq!(backend.received(), "");
}

#[test]
fn slowloris_is_cut_by_client_header_timeout() {
    let (s, backend) = start(&[("client-header-timeout", "2s")]);
    let mut c = connect(&s);
    c.write_all(b"GET / HTTP/1.1\r\nHost: h.example\r\n")
        .unwrap();
    let started = Instant::now();
    let mut reply = String::new();
    let mut closed = false;
    // One header byte every 500 ms, for at most 10 s.
    while started.elapsed() < Duration::from_secs(10) {
        if c.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        let (r, eof) = read_until_closed(&mut c, Duration::from_millis(500));
        reply.push_str(&r);
        if eof {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(took < Duration::from_secs(5), "closed only after {took:?}");
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply:?}"
    );
    assert_eq!(backend.received(), "");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (s, backend) = start(&[]);
    let mut c = connect(&s);
    c.write_all(
        b"GET /one HTTP/1.1\r\nHost: h.example\r\n\r\nGET /two HTTP/1.1\r\nHost: h.example\r\n\r\n",
    )
    .unwrap();
    let replies = read_responses(&mut c, 2, Duration::from_secs(5));
    assert_eq!(replies.matches("HTTP/1.1 200").count(), 2, "{replies:?}");
    let seen = backend.received();
    let (one, two) = (seen.find("GET /one "), seen.find("GET /two "));
    assert!(one.is_some() && two.is_some() && one < two, "{seen:?}");
    // Still usable afterwards.
    c.write_all(b"GET /three HTTP/1.1\r\nHost: h.example\r\n\r\n")
        .unwrap();
    let third = read_responses(&mut c, 1, Duration::from_secs(5));
    assert!(third.starts_with("HTTP/1.1 200"), "{third:?}");
}

#[test]
fn a_bad_pipelined_request_is_refused_after_the_good_one_is_answered() {
    let (s, backend) = start(&[]);
    let mut c = connect(&s);
    let req = "GET /good HTTP/1.1\r\nHost: h.example\r\n\r\nPOST /bad HTTP/1.1\r\nHost: h.example\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd";
    c.write_all(req.as_bytes()).unwrap();
    let (reply, closed) = read_until_closed(&mut c, Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    let second = reply.find("HTTP/1.1 400").expect("a 400 after the 200");
    assert!(second > reply.find("ok").unwrap(), "{reply:?}");
    assert!(closed);
    let seen = backend.received();
    assert!(
        seen.contains("GET /good ") && !seen.contains("/bad"),
        "{seen:?}"
    );
}

#[test]
fn keep_alive_requests_closes_after_the_last() {
    let (s, _backend) = start(&[("keep-alive-requests", "2")]);
    let mut c = connect(&s);
    c.write_all(b"GET /1 HTTP/1.1\r\nHost: h.example\r\n\r\n")
        .unwrap();
    let first = read_responses(&mut c, 1, Duration::from_secs(5));
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first:?}"
    );
    c.write_all(b"GET /2 HTTP/1.1\r\nHost: h.example\r\n\r\n")
        .unwrap();
    let (second, closed) = read_until_closed(&mut c, Duration::from_secs(5));
    assert!(second.starts_with("HTTP/1.1 200"), "{second:?}");
    assert!(
        second.to_ascii_lowercase().contains("connection: close"),
        "{second:?}"
    );
    assert!(closed, "open after keep-alive-requests");
}

#[test]
fn controls_keep_alive_chunked_and_http10_bodies_still_work() {
    let (s, backend) = start(&[]);
    let mut c = connect(&s);
    // Plain keep-alive: two requests, one connection, both answered.
    for path in ["/ka1", "/ka2"] {
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: h.example\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_responses(&mut c, 1, Duration::from_secs(5));
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r:?}");
    }
    // A chunked POST (with an extension and a trailer) reaches the backend whole.
    c.write_all(b"POST /chunked HTTP/1.1\r\nHost: h.example\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .unwrap();
    let r = read_responses(&mut c, 1, Duration::from_secs(5));
    assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
    let seen = backend.received();
    let at = seen
        .find("POST /chunked ")
        .expect("the POST reached the backend");
    let body = &seen[at + seen[at..].find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(dechunk(body), "hello world", "{body:?}");
    // HTTP/1.0 with a Content-Length body (answered, then closed as HTTP/1.0 does).
    let mut c = connect(&s);
    c.write_all(b"POST /old HTTP/1.0\r\nHost: h.example\r\nContent-Length: 4\r\n\r\nabcd")
        .unwrap();
    let (r, closed) = read_until_closed(&mut c, Duration::from_secs(5));
    assert!(
        r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"),
        "{r:?}"
    );
    assert!(r.ends_with("ok") && closed, "{r:?}");
    let seen = backend.received();
    assert!(seen.contains("POST /old HTTP/1."), "{seen:?}");
    assert!(seen.contains("\r\n\r\nabcd"), "{seen:?}");
}

/// The data of a chunked body (up to the last chunk).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let line_end = body.find("\r\n").unwrap();
        let size = usize::from_str_radix(body[..line_end].split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}

#[test]
fn the_tls_listener_refuses_ambiguous_framing_too() {
    use std::process::{Command, Stdio};
    let (s, backend) = start(&[]);
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-ign_eof", "-alpn", "http/1.1"])
        .args(["-servername", "h.example", "-connect", &s.https.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let req = format!(
        "POST / HTTP/1.1\r\nHost: h.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(req.as_bytes())
        .unwrap();
    // s_client exits when the server closes the connection.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let exited = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    assert!(exited, "TLS connection left open after {out:?}");
    assert_eq!(backend.received(), "");
}
