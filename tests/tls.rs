//! TLS termination through the real `sluice` binary: certificates from
//! `kubernetes.io/tls` Secrets chosen by SNI, the generated default certificate, bad
//! Secrets, HTTP→HTTPS redirects, HSTS, forwarded scheme, ALPN, protocol versions and
//! certificate rotation under load. Certificates are made with the `openssl` CLI and
//! the clients are real: `curl`, `openssl s_client` and reqwest (rustls).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::tls::{
    assert_serves, curl_https, https_client, https_get, s_client, same_pem, secret, served_cert,
    served_subject, start_tls, tls_ingress, wait_served, Cert, HeldConnection, FAKE_CN, HSTS,
};
use support::{client, Echo, Reply, Sluice, INGRESS_CLASS};

/// Asserts that `addr` serves `default` (the generated fake certificate) for `sni`.
fn assert_serves_default(s: &Sluice, addr: SocketAddr, sni: Option<&str>, default: &str) {
    let got = served_cert(addr, sni);
    assert_eq!(
        got.as_deref().map(same_pem),
        Some(same_pem(default)),
        "SNI {sni:?}: expected the default certificate, served {}\n{}",
        served_subject(addr, sni),
        s.logs()
    );
}

/// `curl --cacert CERT [args] -w '\n%{http_version}'` for host/path: (body, http version).
fn curl_verified(
    addr: SocketAddr,
    host: &str,
    path: &str,
    ca: &Cert,
    args: &[&str],
) -> (String, String) {
    let ca_path = ca.path();
    let mut all = vec![
        "--cacert",
        ca_path.to_str().unwrap(),
        "-w",
        "\n%{http_version}",
    ];
    all.extend_from_slice(args);
    let out = curl_https(addr, host, path, &all);
    assert!(
        out.status.success(),
        "curl https://{host}{path} with --cacert {}: {}\n{}",
        ca.subject(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, version) = text.rsplit_once('\n').unwrap();
    (body.to_string(), version.to_string())
}

#[test]
fn sni_selects_exact_wildcard_and_default_certificates() {
    let alpha = Echo::start("alpha");
    let exact = Cert::ecdsa("exact.example", &["exact.example"]);
    let rsa = Cert::rsa("rsa.example", &["rsa.example"]);
    let ed = Cert::ed25519("ed.example", &["ed.example"]);
    let wild = Cert::ecdsa("*.wild.example", &["*.wild.example"]);
    let exact_wild = Cert::ecdsa("exact.wild.example", &["exact.wild.example"]);
    let mut m = String::from(INGRESS_CLASS);
    for (host, secret_name, cert) in [
        ("exact.example", "exact-tls", &exact),
        ("rsa.example", "rsa-tls", &rsa),
        ("ed.example", "ed-tls", &ed),
        ("*.wild.example", "wild-tls", &wild),
        ("exact.wild.example", "exact-wild-tls", &exact_wild),
    ] {
        let name = secret_name.trim_end_matches("-tls");
        m += &tls_ingress(name, host, &[("/", "alpha")], Some(secret_name), &[]);
        m += &cert.secret(secret_name);
    }
    m += &alpha.manifests("alpha");
    let (s, https) = start_tls(&[("tls.yaml", &m)], &[]);

    // Exact host names pick their own certificate, whatever the key type.
    assert_serves(&s, https, Some("exact.example"), &exact);
    assert_serves(&s, https, Some("rsa.example"), &rsa);
    assert_serves(&s, https, Some("ed.example"), &ed);
    // SNI is case-insensitive.
    assert_serves(&s, https, Some("EXACT.Example"), &exact);
    // An exact host wins over a wildcard covering it; the wildcard takes the rest,
    // one label deep only.
    assert_serves(&s, https, Some("exact.wild.example"), &exact_wild);
    assert_serves(&s, https, Some("a.wild.example"), &wild);
    assert_serves(&s, https, Some("other.wild.example"), &wild);

    // No match, a two-label-deep name, the wildcard's apex and no SNI at all: the
    // generated default certificate.
    let default = served_cert(https, None).expect("no certificate without SNI");
    assert_eq!(
        support::tls::common_name(&default).as_deref(),
        Some(FAKE_CN),
        "{}",
        s.logs()
    );
    let sans = support::tls::cert_field(&default, &["-ext", "subjectAltName"]);
    assert!(sans.contains("DNS:ingress.local"), "{sans}");
    for sni in ["nope.example", "a.b.wild.example", "wild.example"] {
        assert_serves_default(&s, https, Some(sni), &default);
    }

    // curl verifying against each certificate alone proves chain and host name, and the
    // request is routed; ALPN h2 and http/1.1 both work.
    for (host, cert) in [
        ("exact.example", &exact),
        ("rsa.example", &rsa),
        ("ed.example", &ed),
        ("a.wild.example", &wild),
        ("exact.wild.example", &exact_wild),
    ] {
        let (body, version) = curl_verified(https, host, "/v?x=1", cert, &["--http2"]);
        assert_eq!(version, "2", "{host}: {body}");
        let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echoed["backend"], "alpha", "{host}: {body}");
        // The Host header (with the port curl put in it) is passed on as sent.
        assert_eq!(
            echoed["headers"]["host"],
            format!("{host}:{}", https.port()),
            "{body}"
        );
        assert_eq!(echoed["uri"], "/v?x=1", "{body}");
        let (body, version) = curl_verified(https, host, "/", cert, &["--http1.1"]);
        assert_eq!(version, "1.1", "{host}: {body}");
    }
    let (_, text) = s_client(https, Some("exact.example"), &["-alpn", "h2,http/1.1"]);
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    let (_, text) = s_client(https, Some("exact.example"), &["-alpn", "http/1.1"]);
    assert!(text.contains("ALPN protocol: http/1.1"), "{text}");

    // TLS 1.2 and 1.3 only. The client is allowed the old versions at security level 0,
    // so a failure is the server's refusal, not the client's.
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, text) = s_client(https, Some("exact.example"), &[flag]);
        assert!(ok, "{flag} refused:\n{text}");
        assert!(
            text.contains(&format!("New, {version}, Cipher is")),
            "{text}"
        );
    }
    for flag in ["-tls1_1", "-tls1"] {
        let (ok, text) = s_client(
            https,
            Some("exact.example"),
            &[flag, "-cipher", "DEFAULT@SECLEVEL=0"],
        );
        assert!(!ok, "{flag} accepted:\n{text}");
        assert!(!text.contains("New, TLSv"), "{flag} negotiated:\n{text}");
        assert!(
            !text.contains("no protocols available"),
            "{flag}: client-side refusal, test is void:\n{text}"
        );
    }
}

#[test]
fn plain_http_redirects_with_308_except_acme_and_annotations() {
    let (alpha, beta) = (Echo::start("alpha"), Echo::start("beta"));
    let secure = Cert::ecdsa("secure.example", &["secure.example"]);
    let noredirect = Cert::ecdsa("noredirect.example", &["noredirect.example"]);
    let mut m = String::from(INGRESS_CLASS);
    m += &tls_ingress(
        "secure",
        "secure.example",
        &[("/", "alpha")],
        Some("secure-tls"),
        &[],
    );
    // Same host, other Ingresses without spec.tls: the host still has TLS, so their
    // paths redirect too unless their own annotation says otherwise.
    m += &tls_ingress(
        "secure-open",
        "secure.example",
        &[("/open", "beta")],
        None,
        &[("nginx.ingress.kubernetes.io/ssl-redirect", "false")],
    );
    m += &tls_ingress(
        "secure-more",
        "secure.example",
        &[("/more", "beta")],
        None,
        &[],
    );
    m += &tls_ingress(
        "noredirect",
        "noredirect.example",
        &[("/", "alpha")],
        Some("noredirect-tls"),
        &[("nginx.ingress.kubernetes.io/ssl-redirect", "false")],
    );
    m += &tls_ingress(
        "forced",
        "forced.example",
        &[("/", "alpha")],
        None,
        &[("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")],
    );
    m += &tls_ingress("plain", "plain.example", &[("/", "alpha")], None, &[]);
    m += &secure.secret("secure-tls");
    m += &noredirect.secret("noredirect-tls");
    m += &alpha.manifests("alpha");
    m += &beta.manifests("beta");
    let (s, https) = start_tls(&[("tls.yaml", &m)], &[]);

    let redirects: &[(&str, &str, &str)] = &[
        (
            "secure.example",
            "/a/b?x=1&y=2",
            "https://secure.example/a/b?x=1&y=2",
        ),
        // ingress-nginx drops one trailing slash (preserve-trailing-slash keeps it).
        ("secure.example", "/", "https://secure.example"),
        ("secure.example", "/dir/", "https://secure.example/dir"),
        ("secure.example", "/more/x", "https://secure.example/more/x"),
        (
            "secure.example",
            "/.well-known/other",
            "https://secure.example/.well-known/other",
        ),
        ("forced.example", "/f?q=1", "https://forced.example/f?q=1"),
    ];
    for (host, path, location) in redirects {
        let r = s.get(host, path);
        assert_eq!(r.status, 308, "http://{host}{path}: {r:?}");
        assert_eq!(r.headers["location"], *location, "http://{host}{path}");
        assert_eq!(r.backend(), None, "http://{host}{path} reached a backend");
        assert!(
            r.headers.get("strict-transport-security").is_none(),
            "HSTS over plain HTTP: {r:?}"
        );
    }
    // Other methods too (308 keeps the method and body).
    let r = Reply::from(
        client()
            .post(s.url("/submit?id=7"))
            .header("Host", "secure.example")
            .body("payload")
            .send()
            .unwrap(),
    );
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(r.headers["location"], "https://secure.example/submit?id=7");
    // curl sends the Host with its port; the redirect goes to the HTTPS default port.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "--resolve",
        ])
        .arg(format!("secure.example:{}:127.0.0.1", s.http.port()))
        .arg(format!(
            "http://secure.example:{}/a/b?x=1&y=2",
            s.http.port()
        ))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "308 https://secure.example/a/b?x=1&y=2"
    );

    // Proxied over plain HTTP: ACME challenges, ssl-redirect "false" and hosts without TLS.
    let proxied: &[(&str, &str, &str)] = &[
        (
            "secure.example",
            "/.well-known/acme-challenge/tok-123",
            "alpha",
        ),
        ("secure.example", "/open/x", "beta"),
        ("noredirect.example", "/n?k=v", "alpha"),
        ("plain.example", "/p", "alpha"),
    ];
    for (host, path, backend) in proxied {
        let r = s.get(host, path);
        assert_eq!(r.status, 200, "http://{host}{path}: {r:?}");
        assert_eq!(r.backend(), Some(*backend), "http://{host}{path}");
        assert_eq!(r.echoed()["uri"], *path);
        assert_eq!(r.seen_header("x-forwarded-proto").as_deref(), Some("http"));
        assert!(
            r.headers.get("strict-transport-security").is_none(),
            "HSTS over plain HTTP: {r:?}"
        );
    }

    // Over HTTPS: no redirect, HSTS, and the backend is told the scheme was https.
    let over_tls: &[(&str, &str, &str)] = &[
        ("secure.example", "/x?y=1", "alpha"),
        ("secure.example", "/open/x", "beta"),
        ("secure.example", "/more/x", "beta"),
        ("noredirect.example", "/n", "alpha"),
        ("forced.example", "/f?q=1", "alpha"),
    ];
    for (host, path, backend) in over_tls {
        let r = https_get(https, host, path);
        assert_eq!(r.status, 200, "https://{host}{path}: {r:?}");
        assert_eq!(r.backend(), Some(*backend), "https://{host}{path}");
        assert_eq!(
            r.headers
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some(HSTS),
            "https://{host}{path}: {r:?}"
        );
        assert_eq!(r.echoed()["uri"], *path);
        assert_eq!(
            r.seen_header("host"),
            Some(format!("{host}:{}", https.port()))
        );
        for h in ["x-forwarded-proto", "x-forwarded-scheme", "x-scheme"] {
            assert_eq!(
                r.seen_header(h).as_deref(),
                Some("https"),
                "https://{host}{path}: {h}: {}",
                r.body
            );
        }
    }
    // The same over h2, verified against the host's own certificate.
    let (body, version) =
        curl_verified(https, "secure.example", "/h2", &secure, &["--http2", "-i"]);
    assert_eq!(version, "2", "{body}");
    assert!(
        body.to_ascii_lowercase().contains(&format!(
            "strict-transport-security: {}",
            HSTS.to_ascii_lowercase()
        )),
        "{body}"
    );
    let json = &body[body.find('{').expect("no JSON body")..];
    let echoed: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https", "{body}");
}

#[test]
fn bad_secrets_fall_back_to_the_default_certificate_without_affecting_others() {
    let alpha = Echo::start("alpha");
    let good = Cert::ecdsa("good.example", &["good.example"]);
    let mismatch = Cert::ecdsa("mismatch.example", &["mismatch.example"]);
    let other_key = Cert::ecdsa("other-key.example", &["other-key.example"]);
    let opaque = Cert::ecdsa("opaque.example", &["opaque.example"]);
    let uncovered = Cert::ecdsa("elsewhere.example", &["elsewhere.example"]);
    let expired = Cert::expired("expired.example", &["expired.example"]);

    // (host, Ingress, Secret) for every case; Ingress and Secret names are unique so a
    // log line naming one names that case only.
    let cases = [
        ("good.example", "ing-good", "tls-good"),
        ("garbage.example", "ing-garbage", "tls-garbage"),
        ("badcert.example", "ing-badcert", "tls-badcert"),
        ("mismatch.example", "ing-mismatch", "tls-mismatch"),
        ("empty.example", "ing-empty", "tls-empty"),
        ("opaque.example", "ing-opaque", "tls-opaque"),
        ("uncovered.example", "ing-uncovered", "tls-uncovered"),
        ("missing.example", "ing-missing", "tls-ghost"),
        ("expired.example", "ing-expired", "tls-expired"),
    ];
    let mut m = String::from(INGRESS_CLASS);
    for (host, ing, sec) in cases {
        m += &tls_ingress(ing, host, &[("/", "alpha")], Some(sec), &[]);
    }
    m += &alpha.manifests("alpha");
    m += &good.secret("tls-good");
    let mut bad = String::new();
    bad += &secret(
        "tls-mismatch",
        "kubernetes.io/tls",
        &[
            ("tls.crt", &mismatch.cert_pem),
            ("tls.key", &other_key.key_pem),
        ],
    );
    bad += "---\napiVersion: v1\nkind: Secret\nmetadata: {name: tls-empty, namespace: default}\ntype: kubernetes.io/tls\ndata: {}\n";
    bad += &secret(
        "tls-opaque",
        "Opaque",
        &[("tls.crt", &opaque.cert_pem), ("tls.key", &opaque.key_pem)],
    );
    // A good key under a certificate that is not one.
    bad += &secret(
        "tls-badcert",
        "kubernetes.io/tls",
        &[
            (
                "tls.crt",
                "-----BEGIN CERTIFICATE-----\nMIIBzzCCAXWgAwIBAgIU\n-----END CERTIFICATE-----\n",
            ),
            ("tls.key", &opaque.key_pem),
        ],
    );
    bad += &uncovered.secret("tls-uncovered");
    bad += &expired.secret("tls-expired");
    let garbage = secret(
        "tls-garbage",
        "kubernetes.io/tls",
        &[
            (
                "tls.crt",
                "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            ),
            ("tls.key", "this is not a key"),
        ],
    );
    let (s, https) = start_tls(
        &[
            ("app.yaml", &m),
            ("bad.yaml", &bad),
            ("garbage.yaml", &garbage),
        ],
        &[],
    );

    let default = served_cert(https, None).expect("no certificate without SNI");
    assert_eq!(
        support::tls::common_name(&default).as_deref(),
        Some(FAKE_CN)
    );
    // The good host keeps its certificate, verified end to end.
    assert_serves(&s, https, Some("good.example"), &good);
    let (body, _) = curl_verified(https, "good.example", "/", &good, &[]);
    assert!(body.contains("\"backend\":\"alpha\""), "{body}");
    // Expired certificates are still served.
    assert_serves(&s, https, Some("expired.example"), &expired);
    // Every bad Secret: the default certificate, and the host is still routed over TLS.
    let bad_cases = &cases[1..cases.len() - 1];
    for (host, _, _) in bad_cases {
        assert_serves_default(&s, https, Some(host), &default);
        let r = https_get(https, host, "/");
        assert_eq!(r.status, 200, "https://{host}/: {r:?}");
        assert_eq!(r.backend(), Some("alpha"), "https://{host}/");
    }

    // Each bad Secret, and the expired one, is named in a warning; the good one is not.
    let logs = s.logs();
    let warned = |name: &str| logs.lines().any(|l| l.contains("WARN") && l.contains(name));
    let mut unnamed = Vec::new();
    for (_, ing, sec) in &cases[1..] {
        if !warned(sec) {
            unnamed.push(format!("{sec} (Ingress {ing} named: {})", warned(ing)));
        }
    }
    assert!(unnamed.is_empty(), "no warning names {unnamed:?}:\n{logs}");
    assert!(!warned("tls-good"), "good Secret warned about:\n{logs}");

    // Fixing a bad Secret serves its certificate; the others are untouched.
    let fixed = Cert::ecdsa("garbage.example", &["garbage.example"]);
    s.write("garbage.yaml", &fixed.secret("tls-garbage"));
    let took = wait_served(&s, https, "garbage.example", &fixed, Duration::from_secs(2));
    eprintln!("fixed Secret served after {took:?}");
    assert_serves(&s, https, Some("good.example"), &good);
    assert_serves_default(&s, https, Some("mismatch.example"), &default);
}

#[test]
fn rotated_secret_is_served_from_the_next_handshake_under_load() {
    const ROTATIONS: usize = 10;
    let alpha = Echo::start("alpha");
    let certs: Vec<Cert> = (0..=ROTATIONS)
        .map(|i| Cert::ecdsa(&format!("rot-{i}"), &["rot.example"]))
        .collect();
    let by_der: Arc<HashMap<Vec<u8>, usize>> = Arc::new(
        certs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.der.clone(), i))
            .collect(),
    );
    let app = format!(
        "{INGRESS_CLASS}{}{}",
        tls_ingress(
            "rot",
            "rot.example",
            &[("/", "alpha")],
            Some("rot-tls"),
            &[]
        ),
        alpha.manifests("alpha")
    );
    let (s, https) = start_tls(
        &[
            ("app.yaml", &app),
            ("secret.yaml", &certs[0].secret("rot-tls")),
        ],
        &[],
    );
    assert_serves(&s, https, Some("rot.example"), &certs[0]);

    // One connection opened before any rotation, used after each one.
    let mut held = HeldConnection::open(https, "rot.example");
    let (status, body) = held.get("rot.example", "/held/0").expect("held connection");
    assert_eq!(status, 200, "{body}");

    // Load: two threads with a new TLS connection per request (recording the
    // certificate each handshake saw), two reusing keep-alive connections.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = format!("https://rot.example:{}/load", https.port());
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let fresh = t < 2;
            let (stop, ok, failures, by_der, url) = (
                stop.clone(),
                ok.clone(),
                failures.clone(),
                by_der.clone(),
                url.clone(),
            );
            std::thread::spawn(move || {
                // A fresh thread builds a client per request: a new connection and no
                // session to resume (a resumed session keeps the certificate it was
                // made with, as in nginx; sessions are shared by the workers).
                let build = || {
                    let b = https_client("rot.example", https).tls_info(true);
                    b.build().unwrap()
                };
                let mut c = build();
                let mut seen: Vec<usize> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if fresh {
                        c = build();
                    }
                    let outcome = c.get(&url).send().and_then(|r| {
                        let cert = r
                            .extensions()
                            .get::<reqwest::tls::TlsInfo>()
                            .and_then(|i| i.peer_certificate())
                            .map(|d| by_der.get(d).copied());
                        Ok((r.status(), cert, r.bytes()?))
                    });
                    match outcome {
                        Ok((status, cert, body)) if status == 200 && !body.is_empty() => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if fresh {
                                match cert {
                                    Some(Some(i)) => {
                                        if seen.last() != Some(&i) {
                                            seen.push(i)
                                        }
                                    }
                                    other => failures
                                        .lock()
                                        .unwrap()
                                        .push(format!("unknown certificate {other:?}")),
                                }
                            }
                        }
                        other => failures.lock().unwrap().push(format!("{other:?}")),
                    }
                }
                seen
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(200));
    for (i, cert) in certs.iter().enumerate().skip(1) {
        s.write("secret.yaml", &cert.secret("rot-tls"));
        let took = wait_served(&s, https, "rot.example", cert, Duration::from_secs(1));
        eprintln!("rotation {i} served after {took:?}");
        let (status, body) = held
            .get("rot.example", &format!("/held/{i}"))
            .unwrap_or_else(|e| panic!("held connection broke after rotation {i}: {e}"));
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Vec<usize>> = workers.into_iter().map(|w| w.join().unwrap()).collect();

    let ok = ok.load(Ordering::Relaxed);
    let failures = failures.lock().unwrap();
    eprintln!(
        "{ok} requests succeeded, {} failed; fresh handshakes saw {seen:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(ok > 100, "too few requests to mean anything: {ok}");
    for (t, seq) in seen[..2].iter().enumerate() {
        // Each new handshake gets the certificate of the moment: never an older one.
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "thread {t} went back: {seq:?}"
        );
        assert_eq!(seq.last(), Some(&ROTATIONS), "thread {t}: {seq:?}");
    }
    let mut all: Vec<usize> = seen[..2].concat();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        ROTATIONS + 1,
        "not every certificate was seen: {all:?}"
    );
    assert_serves(&s, https, Some("rot.example"), &certs[ROTATIONS]);
    assert_eq!(
        served_subject(https, Some("rot.example")),
        format!("subject=CN = rot-{ROTATIONS}")
    );
}

#[test]
fn default_ssl_certificate_flag_replaces_the_generated_one() {
    let alpha = Echo::start("alpha");
    let fallback = Cert::rsa("fallback.example", &["fallback.example"]);
    let site = Cert::ecdsa("site.example", &["site.example"]);
    let mut m = String::from(INGRESS_CLASS);
    m += &tls_ingress(
        "site",
        "site.example",
        &[("/", "alpha")],
        Some("site-tls"),
        &[],
    );
    m += &tls_ingress(
        "broken",
        "broken.example",
        &[("/", "alpha")],
        Some("ghost"),
        &[],
    );
    m += &site.secret("site-tls");
    m += &alpha.manifests("alpha");
    let (s, https) = start_tls(
        &[
            ("app.yaml", &m),
            ("fallback.yaml", &fallback.secret("fallback-tls")),
        ],
        &["--default-ssl-certificate", "default/fallback-tls"],
    );
    assert_serves(&s, https, Some("site.example"), &site);
    // No SNI, an unknown name and a host whose Secret is missing: the given Secret.
    assert_serves(&s, https, None, &fallback);
    assert_serves(&s, https, Some("unknown.example"), &fallback);
    assert_serves(&s, https, Some("broken.example"), &fallback);
    // curl verifies the chain and name; no Ingress has that host, so nginx's 404 page.
    let (body, _) = curl_verified(https, "fallback.example", "/", &fallback, &[]);
    assert!(body.contains("404 Not Found"), "{body}");
    // Rewriting that Secret replaces the default certificate too.
    let next = Cert::ecdsa("fallback-2.example", &["fallback.example"]);
    s.write("fallback.yaml", &next.secret("fallback-tls"));
    wait_served(&s, https, "unknown.example", &next, Duration::from_secs(2));
    assert_serves(&s, https, Some("site.example"), &site);
}

/// testssl.sh (Debian's package; e2e/test.sh installs it) scans the HTTPS listener:
/// no SSLv2/SSLv3/TLS 1.0/TLS 1.1, no NULL/anonymous/export/low/3DES/"average" ciphers,
/// strong ciphers and TLS 1.2/1.3 offered, ALPN h2.
#[test]
fn testssl_finds_no_weak_protocol_or_cipher() {
    let echo = Echo::start("scan");
    let cert = Cert::ecdsa("scan.example", &["scan.example"]);
    let m = format!(
        "{INGRESS_CLASS}{}{}{}",
        cert.secret("scan-tls"),
        tls_ingress(
            "scan",
            "scan.example",
            &[("/", "scan")],
            Some("scan-tls"),
            &[]
        ),
        echo.manifests("scan")
    );
    let (_s, https) = start_tls(&[("scan.yaml", &m)], &[]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("testssl.json");
    let out = std::process::Command::new("testssl")
        .args([
            "--quiet",
            "--warnings",
            "off",
            "--color",
            "0",
            "-p",
            "-s",
            "--jsonfile",
        ])
        .arg(&json)
        .args([
            "--ip",
            "127.0.0.1",
            &format!("https://scan.example:{}", https.port()),
        ])
        .output()
        .expect("testssl (Debian package testssl.sh; e2e/test.sh installs it)");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "testssl wrote no JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let finding = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .and_then(|f| f["finding"].as_str())
            .unwrap_or_else(|| panic!("testssl reported no {id}: {text}"))
            .to_string()
    };
    for id in [
        "SSLv2",
        "SSLv3",
        "TLS1",
        "TLS1_1",
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        "cipherlist_AVERAGE",
    ] {
        assert_eq!(finding(id), "not offered", "{id}");
    }
    for id in ["TLS1_2", "TLS1_3", "cipherlist_STRONG"] {
        assert!(finding(id).starts_with("offered"), "{id}: {}", finding(id));
    }
    assert_eq!(finding("ALPN_HTTP2"), "h2");
}

/// An Ingress to `svc` (port 80) over `backend-protocol: HTTPS` with extra annotations.
fn https_backend_ingress(
    name: &str,
    host: &str,
    svc: &str,
    annotations: &[(&str, &str)],
) -> String {
    let annotations: Vec<(&str, &str)> = [("backend-protocol", "HTTPS")]
        .into_iter()
        .chain(annotations.iter().copied())
        .collect();
    support::objects::mk_ingress(name, host, &[("Prefix", "/")], svc, &annotations)
}

#[test]
fn proxy_ssl_annotations_verify_backends_and_present_client_certificates() {
    let ca = Cert::ca("sluice test CA");
    let other_ca = Cert::ca("some other CA");
    let server = ca.issue(
        "backend",
        &[
            "verified.default.svc",
            "mtls.default.svc",
            "backend.internal",
        ],
    );
    let client_cert = ca.issue("sluice-client", &[]);
    let arg = |p: std::path::PathBuf| p.to_str().unwrap().to_string();
    let (cert, key, ca_path) = (arg(server.path()), arg(server.key_path()), arg(ca.path()));
    let verified = Echo::start_with("verified", &["--tls", "--cert", &cert, "--key", &key]);
    let mtls = Echo::start_with(
        "mtls",
        &[
            "--tls",
            "--cert",
            &cert,
            "--key",
            &key,
            "--client-ca",
            &ca_path,
        ],
    );

    let mut m = String::from(INGRESS_CLASS);
    m += &secret("ca", "Opaque", &[("ca.crt", &ca.cert_pem)]);
    m += &secret("other-ca", "Opaque", &[("ca.crt", &other_ca.cert_pem)]);
    m += &secret(
        "client",
        "kubernetes.io/tls",
        &[
            ("tls.crt", &client_cert.cert_pem),
            ("tls.key", &client_cert.key_pem),
            ("ca.crt", &ca.cert_pem),
        ],
    );
    m += &secret("garbage", "Opaque", &[("ca.crt", "not a certificate")]);
    let on = ("proxy-ssl-verify", "on");
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        ("plain", "verified", &[]),
        ("ok", "verified", &[on, ("proxy-ssl-secret", "default/ca")]),
        (
            "named",
            "verified",
            &[
                on,
                ("proxy-ssl-secret", "ca"),
                ("proxy-ssl-name", "backend.internal"),
            ],
        ),
        (
            "wrongca",
            "verified",
            &[on, ("proxy-ssl-secret", "default/other-ca")],
        ),
        (
            "wrongname",
            "verified",
            &[
                on,
                ("proxy-ssl-secret", "default/ca"),
                ("proxy-ssl-name", "nope.internal"),
            ],
        ),
        ("nosecret", "verified", &[on]),
        (
            "garbage",
            "verified",
            &[on, ("proxy-ssl-secret", "default/garbage")],
        ),
        (
            "mtls",
            "mtls",
            &[on, ("proxy-ssl-secret", "default/client")],
        ),
        (
            "mtls-noverify",
            "mtls",
            &[("proxy-ssl-secret", "default/client")],
        ),
        ("mtls-nocert", "mtls", &[]),
        ("nosni", "verified", &[("proxy-ssl-server-name", "off")]),
    ];
    for (name, svc, ann) in cases {
        m += &https_backend_ingress(name, &format!("{name}.example"), svc, ann);
    }
    m += &verified.manifests("verified");
    m += &mtls.manifests("mtls");
    let s = Sluice::start(&[("proxyssl.yaml", &m)], &[]);

    // (host, status, SNI the backend saw, client certificate CN it saw)
    let expect: &[(&str, u16, Option<&str>, Option<&str>)] = &[
        ("plain", 200, Some("plain.example"), None),
        ("ok", 200, Some("verified.default.svc"), None),
        ("named", 200, Some("backend.internal"), None),
        ("wrongca", 502, None, None),
        ("wrongname", 502, None, None),
        ("nosecret", 503, None, None),
        ("garbage", 503, None, None),
        ("mtls", 200, Some("mtls.default.svc"), Some("sluice-client")),
        (
            "mtls-noverify",
            200,
            Some("mtls-noverify.example"),
            Some("sluice-client"),
        ),
        ("mtls-nocert", 502, None, None),
        ("nosni", 200, None, None),
    ];
    for (name, status, sni, cn) in expect {
        let host = format!("{name}.example");
        let r = s.get(&host, "/x");
        assert_eq!(r.status, *status, "{host}: {r:?}\n{}", s.logs());
        if *status == 200 {
            let seen = r.echoed();
            assert_eq!(seen["tls"], true, "{host}: {seen}");
            assert_eq!(seen["sni"].as_str(), *sni, "{host}: {seen}");
            assert_eq!(seen["client_cn"].as_str(), *cn, "{host}: {seen}");
        }
    }
    let logs = s.logs();
    for bad in ["nosecret", "garbage"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("InvalidProxySslSecret") && l.contains(&format!("name={bad}"))),
            "no warning for {bad}:\n{logs}"
        );
    }
}
