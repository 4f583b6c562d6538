//! TLS session resumption through the real `sluice` binary with two workers, tried
//! with `openssl s_client -sess_out` / `-sess_in` as a client would: one full
//! handshake saves the session, then many new connections each offer the newest back. The kernel
//! spreads those connections over both workers (SO_REUSEPORT), so with a session
//! cache per worker about half would fall back to a full handshake; every one must
//! resume. Also: TLS 1.2 session IDs, ingress-nginx's ConfigMap keys
//! (`ssl-session-cache: "false"` turns resumption off, `ssl-session-tickets: "true"`
//! issues stateless tickets), and the response still arriving on resumed sessions.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use support::tls::{s_client_get, start_tls, tls_ingress, Cert};
use support::{Echo, Sluice, INGRESS_CLASS};

/// Connections that offer the saved session back.
const RESUMES: usize = 24;

/// One `openssl s_client` connection sending a GET that must be answered 200.
fn connect(addr: SocketAddr, host: &str, extra: &[&str]) -> (bool, String) {
    let (reused, text) = s_client_get(addr, host, "/resume", extra);
    assert!(
        text.contains("HTTP/1.1 200"),
        "no response over TLS ({extra:?}):\n{text}"
    );
    (reused, text)
}

/// Saves a session with one full handshake, then offers it on [`RESUMES`] new
/// connections, each saving the session it got for the next (TLS 1.3 tickets are
/// single-use, as RFC 8446 §8.1 advises, so a client offers the newest); returns how
/// many resumed.
fn resumed(addr: SocketAddr, host: &str, version: &str, dir: &Path) -> usize {
    let path = |i: usize| {
        dir.join(format!("{version}-{i}.sess"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let (reused, text) = connect(addr, host, &[version, "-sess_out", &path(0)]);
    assert!(
        !reused,
        "the first connection had no session to resume:\n{text}"
    );
    let mut count = 0;
    for i in 0..RESUMES {
        if !std::fs::metadata(path(i)).is_ok_and(|m| m.len() > 0) {
            // No session was offered to save (the cache and tickets are off).
            break;
        }
        let (reused, _) = connect(
            addr,
            host,
            &[version, "-sess_in", &path(i), "-sess_out", &path(i + 1)],
        );
        count += usize::from(reused);
        // A resumed TLS 1.2 session (reusable) is not saved again: offer it once more.
        if reused && !std::fs::metadata(path(i + 1)).is_ok_and(|m| m.len() > 0) {
            std::fs::copy(path(i), path(i + 1)).unwrap();
        }
    }
    count
}

fn setup(configmap: &[(&str, &str)]) -> (Echo, Sluice, SocketAddr) {
    let echo = Echo::start("alpha");
    let cert = Cert::ecdsa("resume.example", &["resume.example"]);
    let mut m = String::from(INGRESS_CLASS);
    m += &tls_ingress(
        "resume",
        "resume.example",
        &[("/", "alpha")],
        Some("resume-tls"),
        &[],
    );
    m += &cert.secret("resume-tls");
    m += &echo.manifests("alpha");
    m += &support::objects::mk_config_map("sluice", configmap);
    let (s, https) = start_tls(
        &[("tls.yaml", &m)],
        &["--workers", "2", "--configmap", "default/sluice"],
    );
    (echo, s, https)
}

#[test]
fn sessions_resume_on_every_worker_with_tls13_and_tls12() {
    let (_echo, s, https) = setup(&[]);
    let dir = tempfile::tempdir().unwrap();
    for version in ["-tls1_3", "-tls1_2"] {
        let n = resumed(https, "resume.example", version, dir.path());
        assert_eq!(
            n,
            RESUMES,
            "{version}: only {n} of {RESUMES} connections resumed the session\n{}",
            s.logs()
        );
    }
}

#[test]
fn configmap_turns_the_cache_off_and_tickets_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_echo, s, https) = setup(&[("ssl-session-cache", "false")]);
        for version in ["-tls1_3", "-tls1_2"] {
            let n = resumed(https, "resume.example", version, dir.path());
            assert_eq!(
                n,
                0,
                "{version}: ssl-session-cache is off, yet {n} connections resumed\n{}",
                s.logs()
            );
        }
    }
    // Stateless tickets (TLS 1.2's session ticket extension) with the cache off: the
    // ticket alone carries the session, on either worker.
    let (_echo, s, https) = setup(&[
        ("ssl-session-cache", "false"),
        ("ssl-session-tickets", "true"),
    ]);
    let n = resumed(https, "resume.example", "-tls1_2", dir.path());
    assert_eq!(
        n,
        RESUMES,
        "tickets on: only {n} of {RESUMES} TLS 1.2 connections resumed\n{}",
        s.logs()
    );
    let (_, text) = connect(https, "resume.example", &["-tls1_2"]);
    assert!(
        text.contains("TLS session ticket lifetime hint"),
        "no session ticket issued with ssl-session-tickets on:\n{text}"
    );
}
