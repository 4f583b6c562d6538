//! Client-certificate authentication (`auth-tls-*`) through the real `sluice` binary,
//! with CAs, client certificates and CRLs made by the `openssl` CLI and real clients
//! (`curl`, `openssl s_client`): valid, missing, wrong-CA, expired and revoked
//! certificates; `optional` and `optional_no_ca`; `auth-tls-match-cn`,
//! `-error-page`, `-pass-certificate-to-upstream`; a broken CA Secret failing closed;
//! hosts without client auth never asked for a certificate; `server-alias` names; the
//! `ssl-client-*` headers the backend sees (HTTP/1.1, h2, TLS 1.2); resumed sessions;
//! a rotated CA Secret.

mod support;

use std::net::SocketAddr;

use support::tls::{s_client, s_client_get, secret, start_tls, tls_ingress, Cert};
use support::{Echo, Sluice, INGRESS_CLASS};

const A: &str = "nginx.ingress.kubernetes.io/";

/// What curl got: status, body, redirect target.
struct Got {
    status: u16,
    body: String,
    location: String,
}

impl Got {
    fn header(&self, name: &str) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not the echo's JSON ({e}): {}", self.body));
        v["headers"][name].as_str().map(str::to_string)
    }
}

/// `curl -k` to https://host/path through `addr`, presenting `client` if given.
fn curl(addr: SocketAddr, host: &str, client: Option<&Cert>, extra: &[&str]) -> Got {
    curl_sni(addr, host, host, client, extra)
}

/// Like [`curl`] with SNI `sni` and `Host: host`.
fn curl_sni(addr: SocketAddr, sni: &str, host: &str, client: Option<&Cert>, extra: &[&str]) -> Got {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-k", "-sS", "--max-time", "10", "--resolve"])
        .arg(format!("{sni}:{}:127.0.0.1", addr.port()))
        .args(["-w", "\n%{http_code} %{redirect_url}"]);
    if let Some(c) = client {
        cmd.arg("--cert")
            .arg(c.path())
            .arg("--key")
            .arg(c.key_path());
    }
    if sni != host {
        cmd.args(["-H", &format!("Host: {host}")]);
    }
    let out = cmd
        .args(extra)
        .arg(format!("https://{sni}:{}/", addr.port()))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {host}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (code, location) = tail.split_once(' ').unwrap_or((tail, ""));
    Got {
        status: code.parse().unwrap(),
        body: body.to_string(),
        location: location.to_string(),
    }
}

fn assert_status(s: &Sluice, got: &Got, want: u16, what: &str) {
    assert_eq!(got.status, want, "{what}: {}\n{}", got.body, s.logs());
}

/// URL-decoding, for `ssl-client-cert`.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

struct Setup {
    s: Sluice,
    https: SocketAddr,
    alice: Cert,
    bob: Cert,
    revoked: Cert,
    expired: Cert,
    stranger: Cert,
    /// The manifests sluice was started with, and the PEMs of both CAs.
    manifests: String,
    ca_pem: String,
    other_ca_pem: String,
    _echo: Echo,
}

fn setup() -> Setup {
    let echo = Echo::start("app");
    let ca = Cert::ca("client-ca");
    let other_ca = Cert::ca("other-ca");
    let alice = ca.issue("alice", &[]);
    let bob = ca.issue("bob", &[]);
    let revoked = ca.issue("revoked", &[]);
    let expired = ca.issue_expired("expired");
    let stranger = other_ca.issue("alice", &[]);
    let hosts = [
        "on.example",
        "crl.example",
        "opt.example",
        "noca.example",
        "plain.example",
        "broken.example",
        "cn.example",
        "page.example",
        "alias-on.example",
    ];
    let server = Cert::ecdsa("server", &hosts);
    let mut m = String::from(INGRESS_CLASS);
    m += &server.secret("server-tls");
    m += &secret("client-ca", "Opaque", &[("ca.crt", &ca.cert_pem)]);
    m += &secret(
        "client-ca-crl",
        "Opaque",
        &[("ca.crt", &ca.cert_pem), ("ca.crl", &ca.crl(&[&revoked]))],
    );
    m += &echo.manifests("app");
    let secret_key = format!("{A}auth-tls-secret");
    let verify_key = format!("{A}auth-tls-verify-client");
    let pass_key = format!("{A}auth-tls-pass-certificate-to-upstream");
    let cn_key = format!("{A}auth-tls-match-cn");
    let page_key = format!("{A}auth-tls-error-page");
    let alias_key = format!("{A}server-alias");
    let ingresses: [(&str, Vec<(&str, &str)>); 8] = [
        (
            "on.example",
            vec![
                (&secret_key, "default/client-ca"),
                (&pass_key, "true"),
                (&alias_key, "alias-on.example"),
            ],
        ),
        ("crl.example", vec![(&secret_key, "client-ca-crl")]),
        (
            "opt.example",
            vec![(&secret_key, "client-ca"), (&verify_key, "optional")],
        ),
        (
            "noca.example",
            vec![(&secret_key, "client-ca"), (&verify_key, "optional_no_ca")],
        ),
        ("plain.example", vec![]),
        (
            "broken.example",
            vec![(&secret_key, "default/no-such-secret")],
        ),
        (
            "cn.example",
            vec![(&secret_key, "client-ca"), (&cn_key, "CN=alice")],
        ),
        (
            "page.example",
            vec![
                (&secret_key, "client-ca"),
                (&page_key, "https://help.example/client-certs"),
            ],
        ),
    ];
    for (host, annotations) in &ingresses {
        let name = host.trim_end_matches(".example");
        m += &tls_ingress(name, host, &[("/", "app")], Some("server-tls"), annotations);
    }
    let (s, https) = start_tls(&[("mtls.yaml", &m)], &[]);
    Setup {
        s,
        https,
        alice,
        bob,
        revoked,
        expired,
        stranger,
        manifests: m,
        ca_pem: ca.cert_pem.clone(),
        other_ca_pem: other_ca.cert_pem.clone(),
        _echo: echo,
    }
}

#[test]
fn client_certificates_as_ingress_nginx() {
    let t = setup();
    let (s, https) = (&t.s, t.https);

    // verify-client on (the default): a valid certificate passes, over TLS 1.3 and 1.2,
    // and the backend sees who it was.
    for version in [
        &["--http1.1"][..],
        &["--http2"],
        &["--tlsv1.2", "--tls-max", "1.2"],
    ] {
        let got = curl(https, "on.example", Some(&t.alice), version);
        assert_status(s, &got, 200, "valid certificate");
        assert_eq!(got.header("ssl-client-verify").as_deref(), Some("SUCCESS"));
        assert_eq!(
            got.header("ssl-client-subject-dn").as_deref(),
            Some("CN=alice")
        );
        assert_eq!(
            got.header("ssl-client-issuer-dn").as_deref(),
            Some("CN=client-ca")
        );
        // auth-tls-pass-certificate-to-upstream: the URL-encoded PEM of the leaf.
        let cert = got.header("ssl-client-cert").expect("ssl-client-cert");
        assert!(!cert.contains('\n') && cert.contains("%0A"), "{cert}");
        assert_eq!(
            support::tls::same_pem(&url_decode(&cert)),
            support::tls::same_pem(&t.alice.cert_pem)
        );
    }
    // Missing, from another CA, expired: 400 after the handshake, as nginx.
    assert_status(
        s,
        &curl(https, "on.example", None, &[]),
        400,
        "no certificate",
    );
    let got = curl(https, "on.example", Some(&t.stranger), &[]);
    assert_status(s, &got, 400, "wrong CA");
    assert_status(
        s,
        &curl(https, "on.example", Some(&t.expired), &[]),
        400,
        "expired",
    );
    // What a client claims in ssl-client-* headers never reaches the backend.
    let got = curl(
        https,
        "on.example",
        Some(&t.bob),
        &[
            "-H",
            "ssl-client-subject-dn: CN=alice",
            "-H",
            "ssl-client-verify: FORGED",
        ],
    );
    assert_status(s, &got, 200, "forged headers");
    assert_eq!(
        got.header("ssl-client-subject-dn").as_deref(),
        Some("CN=bob")
    );
    assert_eq!(got.header("ssl-client-verify").as_deref(), Some("SUCCESS"));

    // ca.crl: the revoked certificate is refused, the others pass.
    assert_status(
        s,
        &curl(https, "crl.example", Some(&t.alice), &[]),
        200,
        "not revoked",
    );
    let got = curl(https, "crl.example", Some(&t.revoked), &[]);
    assert_status(s, &got, 400, "revoked");
    // Without pass-certificate, no ssl-client-cert.
    let got = curl(https, "crl.example", Some(&t.bob), &[]);
    assert_eq!(got.header("ssl-client-cert"), None);

    // optional: no certificate passes with NONE; a bad one is still 400.
    let got = curl(https, "opt.example", None, &[]);
    assert_status(s, &got, 200, "optional without certificate");
    assert_eq!(got.header("ssl-client-verify").as_deref(), Some("NONE"));
    assert_eq!(got.header("ssl-client-subject-dn"), None);
    assert_status(
        s,
        &curl(https, "opt.example", Some(&t.stranger), &[]),
        400,
        "optional, wrong CA",
    );
    let got = curl(https, "opt.example", Some(&t.alice), &[]);
    assert_eq!(got.header("ssl-client-verify").as_deref(), Some("SUCCESS"));
    // optional_no_ca: an unknown issuer passes, with the reason.
    let got = curl(https, "noca.example", Some(&t.stranger), &[]);
    assert_status(s, &got, 200, "optional_no_ca, wrong CA");
    assert_eq!(
        got.header("ssl-client-verify").as_deref(),
        Some("FAILED:unable to get local issuer certificate")
    );
    assert_eq!(
        got.header("ssl-client-issuer-dn").as_deref(),
        Some("CN=other-ca")
    );
    assert_status(
        s,
        &curl(https, "noca.example", Some(&t.expired), &[]),
        400,
        "optional_no_ca, expired",
    );

    // auth-tls-match-cn: the subject must match.
    assert_status(
        s,
        &curl(https, "cn.example", Some(&t.alice), &[]),
        200,
        "CN matches",
    );
    assert_status(
        s,
        &curl(https, "cn.example", Some(&t.bob), &[]),
        403,
        "CN does not match",
    );

    // auth-tls-error-page: a redirect instead of the 400.
    let got = curl(https, "page.example", None, &[]);
    assert_status(s, &got, 302, "error page");
    assert_eq!(got.location, "https://help.example/client-certs");

    // A missing CA Secret fails closed: 403 even with a good certificate, and a warning.
    assert_status(
        s,
        &curl(https, "broken.example", Some(&t.alice), &[]),
        403,
        "broken Secret",
    );
    assert_status(
        s,
        &curl(https, "broken.example", None, &[]),
        403,
        "broken Secret",
    );
    assert!(
        s.logs().contains("InvalidAuthTlsSecret") && s.logs().contains("no-such-secret"),
        "{}",
        s.logs()
    );

    // A server-alias is the same server: same certificate rules.
    assert_status(
        s,
        &curl(https, "alias-on.example", None, &[]),
        400,
        "alias, no certificate",
    );
    let got = curl(https, "alias-on.example", Some(&t.alice), &[]);
    assert_status(s, &got, 200, "alias, valid certificate");
    assert_eq!(got.header("ssl-client-verify").as_deref(), Some("SUCCESS"));

    // A host without client auth is served, and ssl-client-* headers pass untouched.
    let got = curl(https, "plain.example", None, &[]);
    assert_status(s, &got, 200, "no client auth");
    assert_eq!(got.header("ssl-client-verify"), None);
    // A connection made for a host without client auth cannot reach one with it.
    let got = curl_sni(https, "plain.example", "on.example", Some(&t.alice), &[]);
    assert_status(s, &got, 421, "SNI of another host");
}

#[test]
fn only_client_auth_hosts_ask_for_a_certificate() {
    let t = setup();
    let (_, plain) = s_client(t.https, Some("plain.example"), &[]);
    assert!(
        plain.contains("No client certificate CA names sent"),
        "{plain}\n{}",
        t.s.logs()
    );
    for host in ["on.example", "opt.example", "noca.example"] {
        let (_, asked) = s_client(t.https, Some(host), &[]);
        assert!(
            asked.contains("Acceptable client certificate CA names")
                && asked.contains("CN = client-ca"),
            "{host}: {asked}"
        );
    }
    // No SNI: the default config, no certificate asked for.
    let (_, none) = s_client(t.https, None, &[]);
    assert!(
        none.contains("No client certificate CA names sent"),
        "{none}"
    );
    // The broken host cannot verify anything, so it does not ask either.
    let (_, broken) = s_client(t.https, Some("broken.example"), &[]);
    assert!(
        broken.contains("No client certificate CA names sent"),
        "{broken}"
    );
}

/// One `openssl s_client` connection to `sni` sending a GET: (resumed?, full output).
#[test]
fn resumed_sessions_keep_their_certificate_and_policy() {
    let t = setup();
    let dir = tempfile::tempdir().unwrap();
    let sess = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (cert, key) = (t.alice.path(), t.alice.key_path());
    let with_alice = [
        "-cert",
        cert.to_str().unwrap(),
        "-key",
        key.to_str().unwrap(),
    ];
    for version in ["-tls1_3", "-tls1_2"] {
        let first = sess(&format!("{version}-first"));
        let mut args = vec![version, "-sess_out", &first];
        args.extend_from_slice(&with_alice);
        let (reused, text) = s_client_get(t.https, "on.example", "/", &args);
        assert!(!reused && text.contains("HTTP/1.1 200"), "{text}");
        // The resumed session is still alice's: verified again, and served.
        let again = sess(&format!("{version}-again"));
        let (reused, text) = s_client_get(
            t.https,
            "on.example",
            "/",
            &[version, "-sess_in", &first, "-sess_out", &again],
        );
        assert!(reused, "{version}: no resumption\n{text}");
        assert!(
            text.contains("HTTP/1.1 200") && text.contains("SUCCESS") && text.contains("CN=alice"),
            "{text}"
        );
        // A session of a host without client auth does not resume on one with it.
        let plain = sess(&format!("{version}-plain"));
        let (_, text) = s_client_get(
            t.https,
            "plain.example",
            "/",
            &[version, "-sess_out", &plain],
        );
        assert!(text.contains("HTTP/1.1 200"), "{text}");
        let (reused, text) =
            s_client_get(t.https, "on.example", "/", &[version, "-sess_in", &plain]);
        assert!(
            !reused && text.contains("HTTP/1.1 400"),
            "{version}:\n{text}"
        );
    }
}

#[test]
fn a_rotated_ca_applies_from_the_next_handshake() {
    let t = setup();
    let (s, https) = (&t.s, t.https);
    assert_status(
        s,
        &curl(https, "on.example", Some(&t.alice), &[]),
        200,
        "before",
    );
    let b64 = support::tls::base64;
    let rotated = t
        .manifests
        .replace(&b64(t.ca_pem.as_bytes()), &b64(t.other_ca_pem.as_bytes()));
    assert_ne!(rotated, t.manifests);
    s.write("mtls.yaml", &rotated);
    let started = std::time::Instant::now();
    while curl(https, "on.example", Some(&t.stranger), &[]).status != 200 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the new CA never applied\n{}",
            s.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_status(
        s,
        &curl(https, "on.example", Some(&t.alice), &[]),
        400,
        "old CA",
    );
    let (_, asked) = s_client(https, Some("on.example"), &[]);
    assert!(asked.contains("CN = other-ca"), "{asked}");
}
