//! The access log under load, through the real binary: every request gets exactly one
//! whole line (none lost, none interleaved or cut) while both workers write at once,
//! each client's lines stay in order, and lines still buffered when the process is
//! stopped (drain or SIGINT) are written before it exits.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{Echo, Sluice, INGRESS_CLASS};

fn manifests(app: &Echo) -> String {
    let mut m = String::from(INGRESS_CLASS);
    m += &support::ingress(
        "web",
        "2026-01-01T00:00:00Z",
        Some("web.example"),
        &[("Prefix", "/", "app")],
    );
    m += &app.manifests("app");
    m
}

/// `n` GETs on one keep-alive connection, each with its own X-Request-ID
/// (`<client>-<i>`); reads each response whole (Content-Length) before the next.
fn client(addr: SocketAddr, client: usize, n: usize) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    for i in 0..n {
        write!(
            c,
            "GET /load/{client}/{i} HTTP/1.1\r\nHost: web.example\r\nUser-Agent: load \"test\"\r\nX-Request-ID: rid-{client}-{i}\r\n\r\n"
        )
        .unwrap();
        // Read the head, then the body by Content-Length.
        buf.clear();
        let mut byte = [0u8; 4096];
        let (head_end, len) = loop {
            let k = c.read(&mut byte).unwrap();
            assert!(k > 0, "connection closed");
            buf.extend_from_slice(&byte[..k]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .expect("content-length");
                break (p + 4, len);
            }
        };
        while buf.len() < head_end + len {
            let k = c.read(&mut byte).unwrap();
            assert!(k > 0, "connection closed mid-body");
            buf.extend_from_slice(&byte[..k]);
        }
    }
}

/// Checks the log holds exactly one whole line per request of `clients` x `n`, in each
/// client's order.
fn check_lines(log: &str, clients: usize, n: usize) {
    let mut next = vec![0usize; clients];
    let mut count = 0;
    for line in log.lines().filter(|l| !l.is_empty()) {
        // ingress-nginx's default format: `... "GET /load/C/I HTTP/1.1" 200 ... rid-C-I`.
        let id = line.rsplit(' ').next().unwrap();
        let (c, i) = id
            .strip_prefix("rid-")
            .and_then(|r| r.split_once('-'))
            .and_then(|(c, i)| Some((c.parse::<usize>().ok()?, i.parse::<usize>().ok()?)))
            .unwrap_or_else(|| panic!("line without its request id at the end: {line:?}"));
        assert!(
            line.starts_with("127.0.0.1 - - [")
                && line.contains(&format!("\"GET /load/{c}/{i} HTTP/1.1\" 200 "))
                && line.contains("\"load \\x22test\\x22\"")
                && line.matches("rid-").count() == 1,
            "cut or interleaved line: {line:?}"
        );
        assert_eq!(i, next[c], "client {c}'s lines out of order at {line:?}");
        next[c] += 1;
        count += 1;
    }
    assert_eq!(
        count,
        clients * n,
        "lines: {count}, requests: {}",
        clients * n
    );
}

fn wait_lines(s: &Sluice, want: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = s.access_logs();
        if log.lines().count() >= want || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_request_has_exactly_one_whole_line_under_concurrent_load() {
    let app = Echo::start("app");
    let s = Sluice::start(&[("m.yaml", &manifests(&app))], &["--workers", "2"]);
    let (clients, n) = (8, 150);
    std::thread::scope(|t| {
        for c in 0..clients {
            let http = s.http;
            t.spawn(move || client(http, c, n));
        }
    });
    let log = wait_lines(&s, clients * n);
    check_lines(&log, clients, n);
}

#[test]
fn buffered_lines_are_written_before_exit() {
    let app = Echo::start("app");
    for signal in ["INT", "TERM"] {
        let mut s = Sluice::start(
            &[("m.yaml", &manifests(&app))],
            &["--workers", "2", "--shutdown-grace-period", "0"],
        );
        let (clients, n) = (4, 100);
        std::thread::scope(|t| {
            for c in 0..clients {
                let http = s.http;
                t.spawn(move || client(http, c, n));
            }
        });
        // At once: the last lines are still in the workers' buffers.
        s.signal(signal);
        s.wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no exit after SIG{signal}:\n{}", s.logs()));
        check_lines(&s.access_logs(), clients, n);
    }
}
