//! Test harness for running the real `sluice` and `sluice-echo` binaries on loopback.
//! Every process is killed when its handle drops, so a failing test cleans up too.
#![allow(dead_code)]

pub mod cluster;
pub mod helm;
pub mod objects;
pub mod pods;
pub mod raw;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `sluice-echo` backend.
pub struct Echo {
    child: Child,
    pub name: String,
    pub addr: SocketAddr,
}

impl Echo {
    pub fn start(name: &str) -> Echo {
        Echo::start_with(name, &[])
    }

    /// With extra sluice-echo flags (e.g. `--tls`).
    pub fn start_with(name: &str, extra: &[&str]) -> Echo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-echo"))
            .args(["--listen", "127.0.0.1:0", "--name", name, "--threads", "1"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-echo");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected sluice-echo output {line:?}"));
        Echo {
            child,
            name: name.to_string(),
            addr,
        }
    }

    /// Service + EndpointSlice manifests for this backend as Service `svc` port 80.
    pub fn manifests(&self, svc: &str) -> String {
        endpoint_manifests(svc, &[self.addr])
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Service `svc` (port 80, named `http`) whose EndpointSlice lists `addrs`.
pub fn endpoint_manifests(svc: &str, addrs: &[SocketAddr]) -> String {
    let port = addrs.first().map_or(1, |a| a.port());
    let eps: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{addresses: [\"{}\"]}}", a.ip()))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: default}}\nspec: {{ports: [{{name: http, port: 80, targetPort: {port}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-1, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints: [{}]\n",
        eps.join(", ")
    )
}

pub const INGRESS_CLASS: &str = "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: sluice.dev/ingress-controller}\n";

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `sluice --manifests DIR`.
pub struct Sluice {
    child: Child,
    pub dir: tempfile::TempDir,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
    access_log: PathBuf,
}

/// `read()` once `done` holds for it, polled every 20 ms; after 10 s whatever is there.
fn read_when(read: impl Fn() -> String, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = read();
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Sluice {
    /// Writes `files` into a new manifests directory and starts sluice over it,
    /// returning once `/readyz` answers 200.
    pub fn start(files: &[(&str, &str)], extra_args: &[&str]) -> Sluice {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let logs = tempfile::tempdir().unwrap().keep();
        let log = logs.join("stderr.log");
        let access_log = logs.join("stdout.log");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        // Never the default 0.0.0.0:8443: tests run in parallel.
        let https: SocketAddr = match extra_args.iter().position(|a| *a == "--https-listen") {
            Some(i) => extra_args[i + 1].parse().unwrap(),
            None => format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        };
        let https_arg = [String::from("--https-listen"), https.to_string()];
        let https_args: &[String] = if extra_args.contains(&"--https-listen") {
            &[]
        } else {
            &https_arg
        };
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--manifests")
            .arg(dir.path())
            .args(["--http-listen", &http.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(https_args)
            .args(if extra_args.contains(&"--workers") {
                &[][..]
            } else {
                &["--workers", "2"][..]
            })
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&access_log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sluice");
        let mut s = Sluice {
            child,
            dir,
            http,
            https,
            admin,
            log,
            access_log,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = client();
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("sluice exited with {status}:\n{}", self.logs());
            }
            let ok = client
                .get(format!("http://{}/readyz", self.admin))
                .send()
                .is_ok_and(|r| r.status() == 200);
            // The proxy listener opens just after the admin one.
            if ok && std::net::TcpStream::connect(self.http).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sluice not ready:\n{}", self.logs());
    }

    /// Replaces a manifest file atomically (write aside, rename), as kubectl-style
    /// tools and ConfigMap mounts do.
    pub fn write(&self, name: &str, content: &str) {
        write_atomic(self.dir.path(), name, content);
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("sluice ignored SIGTERM:\n{}", self.logs()))
    }

    /// Sends a signal (`TERM`, `QUIT`, `INT`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status();
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }

    /// Controller log (stderr) so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The controller log once `done` holds for it, or after 10 s whatever is there,
    /// for the caller's assertion to show.
    pub fn logs_when(&self, done: impl Fn(&str) -> bool) -> String {
        read_when(|| self.logs(), done)
    }

    /// Access log (stdout) so far.
    pub fn access_logs(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }

    /// The access log once `done` holds for it: lines leave sluice in batches (see
    /// src/proxy/logwriter.rs), so a line can land a little after its response. Gives
    /// up after 10 s and returns what is there, for the caller's assertion to show.
    pub fn access_logs_when(&self, done: impl Fn(&str) -> bool) -> String {
        read_when(|| self.access_logs(), done)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// GET `path` with a Host header.
    pub fn get(&self, host: &str, path: &str) -> Reply {
        Reply::from(
            client()
                .get(self.url(path))
                .header("Host", host)
                .send()
                .unwrap(),
        )
    }

    /// Polls until `check` holds for the reply to GET host/path, returning the time it took.
    pub fn wait_for(
        &self,
        host: &str,
        path: &str,
        limit: Duration,
        check: impl Fn(&Reply) -> bool,
    ) -> Duration {
        let started = Instant::now();
        let client = client();
        while started.elapsed() < limit {
            if let Ok(r) = client.get(self.url(path)).header("Host", host).send() {
                if check(&Reply::from(r)) {
                    return started.elapsed();
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "{host}{path}: condition not met within {limit:?}\n{}",
            self.logs()
        );
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_atomic(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl From<reqwest::blocking::Response> for Reply {
    fn from(r: reqwest::blocking::Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }
}

impl Reply {
    /// The backend that answered (sluice-echo's `x-backend` header).
    pub fn backend(&self) -> Option<&str> {
        self.headers.get("x-backend").and_then(|v| v.to_str().ok())
    }

    /// sluice-echo's JSON description of the request it received.
    pub fn echoed(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A request header as the backend received it.
    pub fn seen_header(&self, name: &str) -> Option<String> {
        self.echoed()["headers"][name].as_str().map(str::to_string)
    }
}

/// An Ingress manifest. `paths` are `(pathType, path, service)`.
pub fn ingress(
    name: &str,
    created: &str,
    host: Option<&str>,
    paths: &[(&str, &str, &str)],
) -> String {
    objects::MkIngress {
        name,
        host,
        paths,
        created: Some(created),
        ..objects::MkIngress::default()
    }
    .yaml()
}
