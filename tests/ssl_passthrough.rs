//! SSL passthrough (`--enable-ssl-passthrough` with `ssl-passthrough: "true"`) through
//! the real `sluice` binary, against `sluice-echo --tls` backends that terminate TLS
//! themselves. What a user sees, with `curl --resolve` and `openssl s_client
//! -servername`: a passthrough host presents its backend's certificate and is answered
//! by the backend; every other SNI, and a ClientHello without one, is sluice's own TLS;
//! without the flag the annotation warns and sluice terminates. Also: round robin and
//! endpoint changes for new connections, PROXY protocol on the HTTPS port, a dead
//! backend, a ClientHello that never names a host, and the SIGTERM drain.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::tls::{
    assert_serves, common_name, curl_https, served_cert, start_tls, tls_ingress, Cert,
    HeldConnection, FAKE_CN,
};
use support::{endpoint_manifests, Echo, Sluice, INGRESS_CLASS};

const PASSTHROUGH: (&str, &str) = ("nginx.ingress.kubernetes.io/ssl-passthrough", "true");

/// `argocd.example` (`/` to Service argocd) with `ssl-passthrough`, and `secret` in its
/// `tls` section.
fn argocd_ingress(secret: Option<&str>) -> String {
    tls_ingress(
        "argocd",
        "argocd.example",
        &[("/", "argocd")],
        secret,
        &[PASSTHROUGH],
    )
}

/// A `sluice-echo --tls` backend serving `cert`.
fn tls_echo(name: &str, cert: &Cert) -> Echo {
    let (c, k) = (cert.path(), cert.key_path());
    Echo::start_with(
        name,
        &[
            "--tls",
            "--cert",
            c.to_str().unwrap(),
            "--key",
            k.to_str().unwrap(),
        ],
    )
}

/// `curl --cacert CA https://host/path` through `addr` (plus `args`): the backend's
/// JSON, or the failure with curl's stderr.
fn curl_json(
    addr: SocketAddr,
    host: &str,
    ca: &Cert,
    args: &[&str],
) -> Result<serde_json::Value, String> {
    let ca_path = ca.path();
    let mut all = vec!["--cacert", ca_path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = curl_https(addr, host, "/pt", &all);
    if !out.status.success() {
        return Err(format!(
            "curl https://{host}/pt: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let body = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(body.trim()).map_err(|e| format!("not JSON ({e}): {body}"))
}

fn assert_serves_fake(s: &Sluice, addr: SocketAddr, sni: Option<&str>) {
    let cn = served_cert(addr, sni).and_then(|pem| common_name(&pem));
    assert_eq!(
        cn.as_deref(),
        Some(FAKE_CN),
        "SNI {sni:?}: expected sluice's default certificate\n{}",
        s.logs()
    );
}

/// The usual pair: `argocd.example` passthrough to a TLS backend (whose Ingress also
/// names a sluice certificate, which passthrough must not serve), `shop.example`
/// terminated by sluice in front of a plain backend.
struct Setup {
    argo: Echo,
    shop: Echo,
    backend_cert: Cert,
    argo_sluice_cert: Cert,
    shop_cert: Cert,
}

impl Setup {
    fn new() -> Setup {
        let backend_cert = Cert::ecdsa("argocd backend", &["argocd.example"]);
        Setup {
            argo: tls_echo("argo", &backend_cert),
            shop: Echo::start("shop"),
            backend_cert,
            argo_sluice_cert: Cert::ecdsa("argocd at sluice", &["argocd.example"]),
            shop_cert: Cert::ecdsa("shop at sluice", &["shop.example"]),
        }
    }

    fn manifests(&self) -> String {
        let mut m = String::from(INGRESS_CLASS);
        m += &argocd_ingress(Some("argocd-tls"));
        m += &tls_ingress(
            "shop",
            "shop.example",
            &[("/", "shop")],
            Some("shop-tls"),
            &[],
        );
        m += &self.argo_sluice_cert.secret("argocd-tls");
        m += &self.shop_cert.secret("shop-tls");
        m += &self.argo.manifests("argocd");
        m += &self.shop.manifests("shop");
        m
    }
}

#[test]
fn passthrough_host_gets_the_backends_tls_and_every_other_name_gets_sluices() {
    let set = Setup::new();
    let (s, https) = start_tls(
        &[("all.yaml", &set.manifests())],
        &["--enable-ssl-passthrough"],
    );

    // The passthrough host: the backend's certificate (not the one its Ingress names),
    // and the backend terminated TLS itself, with the SNI the client sent.
    assert_serves(&s, https, Some("argocd.example"), &set.backend_cert);
    let seen = curl_json(https, "argocd.example", &set.backend_cert, &[]).unwrap();
    assert_eq!(seen["backend"], "argo");
    assert_eq!(seen["tls"], true);
    assert_eq!(seen["sni"], "argocd.example");
    // Nothing of sluice's HTTP layer: no forwarded headers added.
    assert!(seen["headers"]["x-forwarded-for"].is_null(), "{seen}");
    assert!(seen["headers"]["x-request-id"].is_null(), "{seen}");
    // ALPN is the backend's too: h2 end to end.
    let seen = curl_json(https, "argocd.example", &set.backend_cert, &["--http2"]).unwrap();
    assert_eq!(seen["version"], "HTTP/2.0");
    // SNI is case-insensitive.
    assert_serves(&s, https, Some("ArgoCD.Example"), &set.backend_cert);

    // Another host on the same port: sluice's termination, unchanged.
    assert_serves(&s, https, Some("shop.example"), &set.shop_cert);
    let seen = curl_json(https, "shop.example", &set.shop_cert, &[]).unwrap();
    assert_eq!(seen["backend"], "shop");
    assert_eq!(seen["tls"], false);
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");

    // No SNI, or a name that is not a passthrough host: sluice's default certificate.
    assert_serves_fake(&s, https, None);
    assert_serves_fake(&s, https, Some("unknown.example"));

    // Plain HTTP to the passthrough host gets the ssl-redirect 308.
    let r = s.get("argocd.example", "/x");
    assert_eq!(r.status, 308, "{}", s.logs());
    let location = r.headers["location"].to_str().unwrap();
    assert!(location.starts_with("https://argocd.example"), "{location}");
}

#[test]
fn without_the_flag_the_annotation_warns_and_sluice_terminates() {
    let backend_cert = Cert::ecdsa("argocd backend", &["argocd.example"]);
    let sluice_cert = Cert::ecdsa("argocd at sluice", &["argocd.example"]);
    let plain = Echo::start("argo-plain");
    let mut m = String::from(INGRESS_CLASS);
    m += &argocd_ingress(Some("argocd-tls"));
    m += &sluice_cert.secret("argocd-tls");
    m += &plain.manifests("argocd");
    let (s, https) = start_tls(&[("all.yaml", &m)], &[]);

    assert_serves(&s, https, Some("argocd.example"), &sluice_cert);
    let seen = curl_json(https, "argocd.example", &sluice_cert, &[]).unwrap();
    assert_eq!(seen["backend"], "argo-plain");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert!(
        curl_json(https, "argocd.example", &backend_cert, &[]).is_err(),
        "the backend's certificate was served"
    );
    let logs = s.logs();
    assert!(
        logs.contains("AnnotationNotApplied") && logs.contains("--enable-ssl-passthrough"),
        "{logs}"
    );
}

#[test]
fn new_connections_are_balanced_and_follow_endpoint_changes() {
    let cert = Cert::ecdsa("argocd backend", &["argocd.example"]);
    let (a, b) = (tls_echo("a", &cert), tls_echo("b", &cert));
    let ingress = argocd_ingress(None);
    let with = |addrs: &[SocketAddr]| {
        // The two echoes listen on different ports: one EndpointSlice per port.
        let mut m = format!("{INGRESS_CLASS}{ingress}");
        m += &endpoint_manifests("argocd", &addrs[..1]);
        for (i, addr) in addrs.iter().enumerate().skip(1) {
            m += &format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: argocd-{}, namespace: default, labels: {{kubernetes.io/service-name: argocd}}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"{}\"]}}]\n",
                i + 1,
                addr.port(),
                addr.ip()
            );
        }
        m
    };
    let (s, https) = start_tls(
        &[("all.yaml", &with(&[a.addr, b.addr]))],
        &["--enable-ssl-passthrough"],
    );
    let backend = || curl_json(https, "argocd.example", &cert, &[]).map(|v| v["backend"].clone());

    // Round robin: each connection to the next endpoint.
    let picks: Vec<String> = (0..6)
        .map(|_| backend().unwrap().as_str().unwrap().to_string())
        .collect();
    for pair in picks.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {picks:?}");
    }

    // A connection open to `a` across the change below.
    let mut held = loop {
        let mut c = HeldConnection::open(https, "argocd.example");
        let (status, body) = c.get("argocd.example", "/held").unwrap();
        assert_eq!(status, 200);
        if body.contains("\"backend\":\"a\"") {
            break c;
        }
    };

    // `a` leaves the endpoints: new connections go to `b` only.
    s.write("all.yaml", &with(&[b.addr]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut in_a_row = 0;
    while in_a_row < 6 {
        assert!(Instant::now() < deadline, "`a` still picked\n{}", s.logs());
        if backend().unwrap() == "b" {
            in_a_row += 1;
        } else {
            in_a_row = 0;
        }
    }
    // The spliced connection is not cut: it is the client's TCP connection to `a`.
    let (status, body) = held.get("argocd.example", "/held").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"backend\":\"a\""), "{body}");
}

#[test]
fn a_dead_backend_closes_the_connection_and_other_hosts_keep_working() {
    let set = Setup::new();
    let (s, https) = start_tls(
        &[("all.yaml", &set.manifests())],
        &["--enable-ssl-passthrough"],
    );
    assert!(curl_json(https, "argocd.example", &set.backend_cert, &[]).is_ok());
    let Setup {
        argo,
        backend_cert,
        shop_cert,
        ..
    } = set;
    drop(argo);

    // The client's connection is closed at once (the refused connect), without TLS
    // from sluice.
    let started = Instant::now();
    let mut c = TcpStream::connect(https).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&client_hello("argocd.example")).unwrap();
    let mut got = Vec::new();
    let read = c.read_to_end(&mut got);
    assert!(
        matches!(&read, Ok(0)) || read.is_err() && got.is_empty(),
        "expected a closed connection, got {read:?} and {} bytes",
        got.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let err = curl_json(https, "argocd.example", &backend_cert, &[]).unwrap_err();
    assert!(!err.contains("SSL certificate problem"), "{err}");

    // The rest of the port is unaffected.
    let seen = curl_json(https, "shop.example", &shop_cert, &[]).unwrap();
    assert_eq!(seen["backend"], "shop");
    assert_serves_fake(&s, https, None);
}

#[test]
fn proxy_protocol_on_the_https_port_works_with_passthrough() {
    let set = Setup::new();
    let mut m = set.manifests();
    m += "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: sluice, namespace: default}\ndata: {use-proxy-protocol: \"true\", proxy-real-ip-cidr: 127.0.0.1/32}\n";
    let (s, https) = start_tls(
        &[("all.yaml", &m)],
        &["--enable-ssl-passthrough", "--configmap", "default/sluice"],
    );

    // The PROXY header is sluice's (read, never passed on): the backend's TLS starts
    // right after it.
    let seen = curl_json(
        https,
        "argocd.example",
        &set.backend_cert,
        &["--haproxy-protocol"],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
    assert_eq!(seen["backend"], "argo");
    assert_eq!(seen["sni"], "argocd.example");
    // Terminated hosts still read it too.
    let seen = curl_json(
        https,
        "shop.example",
        &set.shop_cert,
        &["--haproxy-protocol"],
    )
    .unwrap();
    assert_eq!(seen["backend"], "shop");
    assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.1");
    // Without the header the connection is refused, passthrough host or not.
    assert!(curl_json(https, "argocd.example", &set.backend_cert, &[]).is_err());
}

#[test]
fn a_client_hello_that_never_names_a_host_is_bounded_in_size_and_time() {
    let set = Setup::new();
    let (s, https) = start_tls(
        &[("all.yaml", &set.manifests())],
        &["--enable-ssl-passthrough"],
    );
    // Not TLS at all: no SNI, so sluice's own TLS, which refuses it at once.
    let started = Instant::now();
    let mut c = TcpStream::connect(https).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: argocd.example\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A ClientHello announced at 16 KiB and sent as 20 KiB of one-byte handshake
    // records, never finished: sluice stops reading for the SNI at one record's worth
    // (16 KiB), gives the bytes to its own TLS, and the 60 s handshake bound closes it.
    let mut hostile = vec![22u8, 3, 1, 0, 4, 1, 0, 0x3f, 0xff];
    hostile.extend(std::iter::repeat_n([22u8, 3, 1, 0, 1, 0], 20 * 1024 / 6).flatten());
    let started = Instant::now();
    let mut stalled = TcpStream::connect(https).unwrap();
    stalled.write_all(&hostile).unwrap();
    // Meanwhile the port serves both kinds of host.
    for _ in 0..3 {
        assert_serves(&s, https, Some("argocd.example"), &set.backend_cert);
        assert_serves(&s, https, Some("shop.example"), &set.shop_cert);
    }
    let seen = curl_json(https, "argocd.example", &set.backend_cert, &[]).unwrap();
    assert_eq!(seen["backend"], "argo");
    stalled
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let mut got = Vec::new();
    let read = stalled.read_to_end(&mut got);
    let held = started.elapsed();
    assert!(
        held >= Duration::from_secs(55) && held < Duration::from_secs(70),
        "closed after {held:?} ({read:?}, {} bytes)\n{}",
        got.len(),
        s.logs()
    );
    assert!(!String::from_utf8_lossy(&got).contains("argocd backend"));
}

#[test]
fn sigterm_drains_a_spliced_connection_like_any_other() {
    let set = Setup::new();
    let mut m = set.manifests();
    m += "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: sluice, namespace: default}\ndata: {worker-shutdown-timeout: \"60s\"}\n";
    let (mut s, https) = start_tls(
        &[("all.yaml", &m)],
        &[
            "--enable-ssl-passthrough",
            "--configmap",
            "default/sluice",
            "--shutdown-grace-period",
            "0",
        ],
    );
    let mut held = HeldConnection::open(https, "argocd.example");
    let (status, body) = held.get("argocd.example", "/before").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"backend\":\"argo\""), "{body}");

    s.signal("TERM");
    // The listeners close...
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(https).is_ok() {
        assert!(Instant::now() < deadline, "still accepting\n{}", s.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...the spliced connection still carries requests, and holds the process up.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = held.get("argocd.example", "/during").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"uri\":\"/during\""), "{body}");
    assert!(
        s.wait_exit(Duration::ZERO).is_none(),
        "exited with a spliced connection open\n{}",
        s.logs()
    );
    // Once the client is done, the process exits at once, cleanly.
    drop(held);
    let closed = Instant::now();
    let status = s
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running after the connection closed\n{}", s.logs()));
    assert!(status.success(), "{status:?}\n{}", s.logs());
    assert!(
        closed.elapsed() < Duration::from_secs(5),
        "{:?}",
        closed.elapsed()
    );
}

/// A real ClientHello for `name`, from `openssl s_client` (captured on a socket).
fn client_hello(name: &str) -> Vec<u8> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(["-servername", name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut hello = Vec::new();
    let mut buf = [0u8; 4096];
    // The ClientHello is one write; read until the client waits for an answer.
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        hello.extend_from_slice(&buf[..n]);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(hello.len() > 5 && hello[0] == 22, "no ClientHello captured");
    hello
}
