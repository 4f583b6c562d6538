//! TLS helpers for the integration tests: certificates made by the `openssl` CLI,
//! `kubernetes.io/tls` Secret and Ingress manifests, sluice started with an HTTPS
//! listener, and real TLS clients (`openssl s_client`, `curl`, reqwest).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, Reply, Sluice};

/// The common name of the self-signed certificate sluice generates at start.
pub const FAKE_CN: &str = "Kubernetes Ingress Controller Fake Certificate";
/// ingress-nginx's HSTS default.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Starts sluice with `--https-listen` on a free loopback port and waits until that
/// port accepts connections too.
pub fn start_tls(files: &[(&str, &str)], extra_args: &[&str]) -> (Sluice, SocketAddr) {
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let https_arg = https.to_string();
    let mut args = vec!["--https-listen", https_arg.as_str()];
    args.extend_from_slice(extra_args);
    let s = Sluice::start(files, &args);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(https).is_err() {
        assert!(
            Instant::now() < deadline,
            "HTTPS listener {https} never opened:\n{}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (s, https)
}

/// A new ECDSA P-256 key (`key.pem`) and a signing request for CN `cn` (`req.csr`) in `dir`.
fn new_csr(dir: &Path, cn: &str) {
    let subj = format!("/CN={cn}");
    openssl(
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            &subj,
        ],
        dir,
    );
}

/// A certificate and its private key (PEM), made by the `openssl` CLI.
pub struct Cert {
    dir: tempfile::TempDir,
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn san_ext(sans: &[&str]) -> String {
    let names: Vec<String> = sans.iter().map(|s| format!("DNS:{s}")).collect();
    format!("subjectAltName={}", names.join(","))
}

impl Cert {
    /// ECDSA P-256, self-signed, valid for 30 days.
    pub fn ecdsa(cn: &str, sans: &[&str]) -> Cert {
        Cert::self_signed(
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            cn,
            sans,
        )
    }

    /// RSA 2048, self-signed.
    pub fn rsa(cn: &str, sans: &[&str]) -> Cert {
        Cert::self_signed(&["-newkey", "rsa:2048"], cn, sans)
    }

    /// Ed25519, self-signed.
    pub fn ed25519(cn: &str, sans: &[&str]) -> Cert {
        Cert::self_signed(&["-newkey", "ed25519"], cn, sans)
    }

    fn self_signed(key_args: &[&str], cn: &str, sans: &[&str]) -> Cert {
        let dir = tempfile::tempdir().unwrap();
        let subj = format!("/CN={cn}");
        let ext = san_ext(sans);
        let mut args = vec!["req", "-x509", "-nodes", "-days", "30"];
        args.extend_from_slice(key_args);
        args.extend_from_slice(&[
            "-keyout", "key.pem", "-out", "cert.pem", "-subj", &subj, "-addext", &ext,
        ]);
        openssl(&args, dir.path());
        Cert::load(dir)
    }

    /// ECDSA P-256, self-signed with `openssl ca`, valid only in January 2020.
    pub fn expired(cn: &str, sans: &[&str]) -> Cert {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ca.cnf"),
            "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
             default_md = sha256\npolicy = p\ncopy_extensions = copy\nunique_subject = no\n\
             [p]\ncommonName = supplied\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("index.txt"), "").unwrap();
        std::fs::write(dir.path().join("serial"), "01\n").unwrap();
        let subj = format!("/CN={cn}");
        let ext = san_ext(sans);
        openssl(
            &[
                "req",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                "key.pem",
                "-out",
                "req.csr",
                "-subj",
                &subj,
                "-addext",
                &ext,
            ],
            dir.path(),
        );
        openssl(
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-selfsign",
                "-keyfile",
                "key.pem",
                "-in",
                "req.csr",
                "-out",
                "cert.pem",
                "-notext",
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200201000000Z",
            ],
            dir.path(),
        );
        Cert::load(dir)
    }

    /// A self-signed ECDSA certificate authority.
    pub fn ca(cn: &str) -> Cert {
        let dir = tempfile::tempdir().unwrap();
        let subj = format!("/CN={cn}");
        openssl(
            &[
                "req",
                "-x509",
                "-nodes",
                "-days",
                "30",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-subj",
                &subj,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            dir.path(),
        );
        Cert::load(dir)
    }

    /// An ECDSA leaf certificate signed by `self` (a [`Cert::ca`]), usable by servers
    /// and clients.
    pub fn issue(&self, cn: &str, sans: &[&str]) -> Cert {
        let dir = tempfile::tempdir().unwrap();
        let mut ext =
            String::from("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n");
        if !sans.is_empty() {
            ext += &san_ext(sans);
            ext += "\n";
        }
        std::fs::write(dir.path().join("ext.cnf"), ext).unwrap();
        new_csr(dir.path(), cn);
        let ca_cert = self.path();
        let ca_key = self.dir.path().join("key.pem");
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "req.csr",
                "-CA",
                ca_cert.to_str().unwrap(),
                "-CAkey",
                ca_key.to_str().unwrap(),
                "-set_serial",
                &next_serial().to_string(),
                "-days",
                "30",
                "-out",
                "cert.pem",
                "-extfile",
                "ext.cnf",
            ],
            dir.path(),
        );
        Cert::load(dir)
    }

    /// An ECDSA client certificate signed by `self` (a [`Cert::ca`]), valid only in
    /// January 2020.
    pub fn issue_expired(&self, cn: &str) -> Cert {
        let dir = tempfile::tempdir().unwrap();
        self.ca_files(dir.path());
        new_csr(dir.path(), cn);
        std::fs::write(
            dir.path().join("ext.cnf"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        let (ca_cert, ca_key) = (self.path(), self.key_path());
        openssl(
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-cert",
                ca_cert.to_str().unwrap(),
                "-keyfile",
                ca_key.to_str().unwrap(),
                "-in",
                "req.csr",
                "-out",
                "cert.pem",
                "-notext",
                "-extfile",
                "ext.cnf",
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200201000000Z",
            ],
            dir.path(),
        );
        Cert::load(dir)
    }

    /// A CRL (PEM) of `self` (a [`Cert::ca`]) revoking `revoked`, valid for 30 days.
    pub fn crl(&self, revoked: &[&Cert]) -> String {
        let dir = tempfile::tempdir().unwrap();
        self.ca_files(dir.path());
        let (ca_cert, ca_key) = (self.path(), self.key_path());
        let ca_args = [
            "-config",
            "ca.cnf",
            "-cert",
            ca_cert.to_str().unwrap(),
            "-keyfile",
            ca_key.to_str().unwrap(),
        ];
        for cert in revoked {
            let mut args = vec!["ca"];
            args.extend_from_slice(&ca_args);
            let path = cert.path();
            args.extend_from_slice(&["-revoke", path.to_str().unwrap()]);
            openssl(&args, dir.path());
        }
        let mut args = vec!["ca", "-gencrl"];
        args.extend_from_slice(&ca_args);
        args.extend_from_slice(&["-crldays", "30", "-out", "crl.pem"]);
        openssl(&args, dir.path());
        std::fs::read_to_string(dir.path().join("crl.pem")).unwrap()
    }

    /// An `openssl ca` database and config in `dir`.
    fn ca_files(&self, dir: &Path) {
        std::fs::write(
            dir.join("ca.cnf"),
            "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
             crlnumber = crlnumber\ndefault_md = sha256\npolicy = p\nunique_subject = no\n\
             [p]\ncommonName = supplied\n",
        )
        .unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), format!("{:04X}\n", next_serial())).unwrap();
        std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    }

    /// The private key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn load(dir: tempfile::TempDir) -> Cert {
        openssl(
            &[
                "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
            ],
            dir.path(),
        );
        Cert {
            cert_pem: std::fs::read_to_string(dir.path().join("cert.pem")).unwrap(),
            key_pem: std::fs::read_to_string(dir.path().join("key.pem")).unwrap(),
            der: std::fs::read(dir.path().join("cert.der")).unwrap(),
            dir,
        }
    }

    /// The certificate file, for `curl --cacert`.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// `subject=CN = ...`, as `openssl x509 -noout -subject` prints it.
    pub fn subject(&self) -> String {
        cert_field(&self.cert_pem, &["-subject"])
    }

    /// A `kubernetes.io/tls` Secret holding this certificate and key.
    pub fn secret(&self, name: &str) -> String {
        secret(
            name,
            "kubernetes.io/tls",
            &[("tls.crt", &self.cert_pem), ("tls.key", &self.key_pem)],
        )
    }
}

/// A fresh certificate serial number (revocation lists name certificates by it).
fn next_serial() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(2);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A Secret in namespace `default` with `data` (values given in clear, stored base64).
pub fn secret(name: &str, kind: &str, data: &[(&str, &str)]) -> String {
    let data: Vec<String> = data
        .iter()
        .map(|(k, v)| format!("{k}: \"{}\"", base64(v.as_bytes())))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: {kind}\ndata: {{{}}}\n",
        data.join(", ")
    )
}

/// An Ingress for `host` (all paths `Prefix` to `svc`) with `annotations`, and when
/// `tls_secret` is given, `spec.tls: [{hosts: [host], secretName: tls_secret}]`.
pub fn tls_ingress(
    name: &str,
    host: &str,
    paths: &[(&str, &str)],
    tls_secret: Option<&str>,
    annotations: &[(&str, &str)],
) -> String {
    let paths: Vec<(&str, &str, &str)> = paths.iter().map(|(p, s)| ("Prefix", *p, *s)).collect();
    super::objects::MkIngress {
        name,
        host: Some(host),
        paths: &paths,
        annotations,
        created: Some("2026-01-01T00:00:00Z"),
        tls_secret,
        ..super::objects::MkIngress::default()
    }
    .yaml()
}

pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `openssl x509 -noout FIELD...` over a PEM certificate, trimmed.
pub fn cert_field(pem: &str, field: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout"])
        .args(field)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl x509 {field:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `openssl s_client` against `addr` (SNI `sni`, or none), stdin closed at once, with
/// `extra` options. Returns whether it succeeded and what it printed (stdout+stderr).
pub fn s_client(addr: SocketAddr, sni: Option<&str>, extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("timeout");
    cmd.args(["10", "openssl", "s_client", "-connect", &addr.to_string()]);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// One `openssl s_client` connection to `addr` (SNI `sni`) sending `GET path` with
/// `Connection: close`: (resumed?, full output). The answer and close let s_client read
/// the TLS 1.3 session tickets (sent after the handshake) before it exits.
pub fn s_client_get(addr: SocketAddr, sni: &str, path: &str, extra: &[&str]) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect", &addr.to_string()])
        .args(["-servername", sni, "-ign_eof"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("\nReused, "), text)
}

/// The leaf certificate (PEM) `addr` serves for SNI `sni` (None: no SNI sent).
pub fn served_cert(addr: SocketAddr, sni: Option<&str>) -> Option<String> {
    let (_, text) = s_client(addr, sni, &[]);
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = text[start..].find(end_marker)? + start + end_marker.len();
    Some(format!("{}\n", &text[start..end]))
}

/// The subject of the certificate served for `sni`, or a description of the failure.
pub fn served_subject(addr: SocketAddr, sni: Option<&str>) -> String {
    match served_cert(addr, sni) {
        Some(pem) => cert_field(&pem, &["-subject"]),
        None => format!("no certificate served for SNI {sni:?}"),
    }
}

/// Polls until the certificate served for `sni` is `want`; returns the time it took.
pub fn wait_served(
    s: &Sluice,
    addr: SocketAddr,
    sni: &str,
    want: &Cert,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let got = served_cert(addr, Some(sni));
        if got.as_deref().map(same_pem) == Some(same_pem(&want.cert_pem)) {
            return started.elapsed();
        }
        if started.elapsed() > limit {
            panic!(
                "SNI {sni}: expected {} within {limit:?}, got {}\n{}",
                want.subject(),
                served_subject(addr, Some(sni)),
                s.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The CN of a PEM certificate's subject.
pub fn common_name(pem: &str) -> Option<String> {
    let subject = cert_field(pem, &["-subject", "-nameopt", "sep_multiline,sname"]);
    subject
        .lines()
        .find_map(|l| l.trim().strip_prefix("CN="))
        .map(str::to_string)
}

/// A PEM text without whitespace, for comparing certificates.
pub fn same_pem(pem: &str) -> String {
    pem.split_whitespace().collect()
}

/// `curl -sS --max-time 10 --resolve HOST:PORT:127.0.0.1 ARGS... https://HOST:PORT/PATH`.
pub fn curl_https(addr: SocketAddr, host: &str, path: &str, args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("{host}:{}:127.0.0.1", addr.port()))
        .args(args)
        .arg(format!("https://{host}:{}{path}", addr.port()))
        .output()
        .expect("run curl")
}

/// A reqwest client that talks TLS to `addr` for `host`, accepting any certificate.
pub fn https_client(host: &str, addr: SocketAddr) -> reqwest::blocking::ClientBuilder {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .resolve(host, addr)
}

/// GET https://host/path through `addr`, accepting any certificate.
pub fn https_get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    let client = https_client(host, addr).build().unwrap();
    Reply::from(
        client
            .get(format!("https://{host}:{}{path}", addr.port()))
            .send()
            .unwrap_or_else(|e| panic!("https://{host}{path}: {e:?}")),
    )
}

/// One TLS connection held open by `openssl s_client`, carrying HTTP/1.1 requests.
pub struct HeldConnection {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl HeldConnection {
    pub fn open(addr: SocketAddr, sni: &str) -> HeldConnection {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-nocommands", "-alpn", "http/1.1"])
            .args(["-connect", &addr.to_string(), "-servername", sni])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_client");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        HeldConnection {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends GET `path` with `Host: host` on this connection; returns (status, body).
    pub fn get(&mut self, host: &str, path: &str) -> std::io::Result<(u16, String)> {
        write!(
            self.stdin,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: held\r\n\r\n"
        )?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut length, mut chunked) = (0usize, false);
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("connection closed in headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stdout.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other(format!("bad chunk {line:?}")))?;
                let mut chunk = vec![0; size + 2];
                self.stdout.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            self.stdout.read_exact(&mut body)?;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

impl Drop for HeldConnection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that `addr` serves exactly `want` for SNI `sni`.
pub fn assert_serves(s: &Sluice, addr: SocketAddr, sni: Option<&str>, want: &Cert) {
    let got = served_cert(addr, sni);
    assert_eq!(
        got.as_deref().map(same_pem),
        Some(same_pem(&want.cert_pem)),
        "SNI {sni:?}: expected {}, served {}\n{}",
        want.subject(),
        served_subject(addr, sni),
        s.logs()
    );
}
