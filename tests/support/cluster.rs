//! A real control plane for the e2e tests: etcd, kube-apiserver and
//! kube-controller-manager started by `e2e/k8s/cluster.sh` (binaries built from the
//! Kubernetes Go modules by `e2e/k8s/build.sh`), backends in network namespaces, and
//! sluice running as a separate process with its own ServiceAccount token and the
//! least-privilege RBAC of the Helm chart (the same as `config/rbac/sluice.yaml`).
//! Every handle cleans up on drop, so a failing test leaves nothing behind.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The running control plane; stopped on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub ca: PathBuf,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with_env(&[])
    }

    /// `start` with extra environment for cluster.sh (e.g. `SLUICE_K8S_NODES=1`).
    pub fn start_with_env(env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("sluice-k8s-")
            .tempdir()
            .unwrap();
        let status = Command::new("bash")
            .arg(repo().join("e2e/k8s/cluster.sh"))
            .arg("start")
            .arg(dir.path())
            .envs(env.iter().copied())
            .status()
            .expect("run cluster.sh");
        let mut c = Cluster {
            kubeconfig: dir.path().join("admin.kubeconfig"),
            server: String::new(),
            ca: PathBuf::new(),
            dir,
        };
        // `c` already owns the directory, so a failed start still stops what began.
        assert!(status.success(), "cluster.sh start failed");
        let env = std::fs::read_to_string(c.dir.path().join("env")).unwrap();
        let var = |name: &str| {
            env.lines()
                .find_map(|l| {
                    l.trim_start_matches("export ")
                        .strip_prefix(&format!("{name}="))
                        .map(|v| v.trim_matches(|ch| ch == '"' || ch == '\'').to_string())
                })
                .unwrap_or_else(|| panic!("{name} missing from cluster env:\n{env}"))
        };
        c.server = var("SLUICE_K8S_SERVER");
        c.ca = PathBuf::from(var("SLUICE_K8S_CA"));
        c
    }

    /// Runs kubectl as the admin; panics with its output on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.try_kubectl(args, stdin);
        match out {
            Ok(s) => s,
            Err(e) => panic!("kubectl {args:?} failed: {e}"),
        }
    }

    pub fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    pub fn apply(&self, yaml: &str) {
        self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml));
    }

    /// A kubeconfig for sluice's own ServiceAccount, with exactly the Helm chart's RBAC
    /// (see `apply_chart_rbac`); `SLUICE_E2E_RBAC=config` takes config/rbac/sluice.yaml
    /// instead (tests/helm.rs checks that the two agree).
    pub fn sluice_kubeconfig(&self) -> PathBuf {
        if std::env::var("SLUICE_E2E_RBAC").as_deref() == Ok("config") {
            let rbac = std::fs::read_to_string(repo().join("config/rbac/sluice.yaml")).unwrap();
            self.apply(&rbac);
        } else {
            self.apply_chart_rbac();
        }
        let token = self
            .kubectl(&[
                "create",
                "token",
                "sluice",
                "-n",
                "sluice-system",
                "--duration=2h",
            ])
            .trim()
            .to_string();
        let path = self.dir.path().join("sluice.kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\nusers:\n- name: sluice\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: sluice}}\ncurrent-context: e2e\n",
                self.server,
                self.ca.display()
            ),
        )
        .unwrap();
        path
    }

    /// Creates the ServiceAccount `sluice` in `sluice-system` with the chart's ClusterRole,
    /// Role and bindings, from `helm template` of helm/sluice with default values.
    pub fn apply_chart_rbac(&self) {
        self.namespace(super::helm::NAMESPACE);
        self.apply(&super::helm::rbac_manifests());
    }

    /// Creates the Node the test Pods are "scheduled" on.
    pub fn ensure_node(&self) {
        self.apply("apiVersion: v1\nkind: Node\nmetadata: {name: e2e-node}\n");
    }

    /// Creates a Pod bound to the test Node and marks it Running with `ip`, ready or not.
    pub fn pod(&self, ns: &str, name: &str, labels: &str, ip: &str, ready: bool) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\nspec:\n  nodeName: e2e-node\n  terminationGracePeriodSeconds: 300\n  containers: [{{name: app, image: none, ports: [{{name: http, containerPort: 8080}}]}}]\n"
        ));
        self.set_pod_ready(ns, name, ip, ready);
    }

    pub fn set_pod_ready(&self, ns: &str, name: &str, ip: &str, ready: bool) {
        let status = if ready { "True" } else { "False" };
        let patch = format!(
            "{{\"status\":{{\"phase\":\"Running\",\"podIP\":\"{ip}\",\"podIPs\":[{{\"ip\":\"{ip}\"}}],\"conditions\":[{{\"type\":\"Ready\",\"status\":\"{status}\"}}]}}}}"
        );
        self.kubectl(&[
            "patch",
            "pod",
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    }

    pub fn namespace(&self, ns: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
        ));
    }
}

impl Cluster {
    /// Stops only the API server (an outage); etcd and the controller manager keep running.
    pub fn stop_apiserver(&self) {
        self.cluster_sh("stop-apiserver");
    }

    /// Brings the API server back on the same address with the same state.
    pub fn restart_apiserver(&self) {
        self.cluster_sh("restart-apiserver");
    }

    fn cluster_sh(&self, verb: &str) {
        let status = Command::new("bash")
            .arg(repo().join("e2e/k8s/cluster.sh"))
            .arg(verb)
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "cluster.sh {verb} failed");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("e2e/k8s/cluster.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A network namespace joined to the host by a veth pair: host side `10.244.N.1/24`,
/// backends inside on `10.244.N.2` and up. Deleted (with its processes) on drop.
pub struct NetNs {
    pub name: String,
    host_if: String,
    pub subnet: u8,
    children: Vec<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    pub fn create(subnet: u8) -> NetNs {
        let tag = format!("{}{subnet}", std::process::id() % 100_000);
        let name = format!("sluice-e2e-{tag}");
        let host_if = format!("sle{tag}h");
        let peer_if = format!("sle{tag}c");
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &name]);
        let ns = NetNs {
            name: name.clone(),
            host_if: host_if.clone(),
            subnet,
            children: Vec::new(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &name]);
        ip(&[
            "addr",
            "add",
            &format!("10.244.{subnet}.1/24"),
            "dev",
            &host_if,
        ]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &peer_if, "up"]);
        ns
    }

    fn peer_if(&self) -> String {
        self.host_if.trim_end_matches('h').to_string() + "c"
    }

    /// Starts a sluice-echo named `name` on `10.244.N.host:8080` inside the namespace.
    pub fn backend(&mut self, host: u8, name: &str) -> SocketAddr {
        self.backend_on(host, 8080, name)
    }

    /// Starts a sluice-echo named `name` on `10.244.N.host:port` (the address is added
    /// to the namespace's interface on first use).
    pub fn backend_on(&mut self, host: u8, port: u16, name: &str) -> SocketAddr {
        let addr: SocketAddr = format!("10.244.{}.{host}:{port}", self.subnet)
            .parse()
            .unwrap();
        let cidr = format!("{}/24", addr.ip());
        let shown = Command::new("ip")
            .args(["netns", "exec", &self.name, "ip", "-o", "addr", "show"])
            .output()
            .unwrap();
        if !String::from_utf8_lossy(&shown.stdout).contains(&format!(" {cidr} ")) {
            ip(&[
                "netns",
                "exec",
                &self.name,
                "ip",
                "addr",
                "add",
                &cidr,
                "dev",
                &self.peer_if(),
            ]);
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(env!("CARGO_BIN_EXE_sluice-echo"))
            .args([
                "--listen",
                &addr.to_string(),
                "--name",
                name,
                "--threads",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.contains("listening"), "backend {name}: {line:?}");
        self.children.push(child);
        addr
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// sluice in controller mode against the test cluster.
pub struct Controller {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
    /// The extra flags it was started with (an upgrade reuses them).
    extra: Vec<String>,
}

impl Controller {
    pub fn start(kubeconfig: &Path, extra: &[&str]) -> Controller {
        let port =
            || -> SocketAddr { format!("127.0.0.1:{}", super::free_port()).parse().unwrap() };
        let c = Controller::spawn(kubeconfig, (port(), port(), port()), extra);
        c.wait_ready(Duration::from_secs(30));
        c
    }

    /// Starts `sluice --upgrade` with this one's ports and flags, returning once it waits
    /// on the upgrade socket for the listening sockets (send this one SIGQUIT next).
    /// `extra` must contain `--upgrade-sock PATH`.
    pub fn upgrade(&self, kubeconfig: &Path) -> Controller {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let sock = extra
            .iter()
            .position(|a| *a == "--upgrade-sock")
            .map(|i| PathBuf::from(extra[i + 1]))
            .expect("an upgrade needs --upgrade-sock");
        assert!(!sock.exists(), "stale {}", sock.display());
        let mut args = extra.clone();
        args.push("--upgrade");
        let mut c = Controller::spawn(kubeconfig, (self.http, self.https, self.admin), &args);
        c.extra.retain(|a| a != "--upgrade");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            if let Some(status) = c.try_wait() {
                panic!("upgraded sluice exited with {status}:\n{}", c.logs());
            }
            assert!(
                Instant::now() < deadline,
                "upgraded sluice never opened {}:\n{}",
                sock.display(),
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    fn spawn(
        kubeconfig: &Path,
        (http, https, admin): (SocketAddr, SocketAddr, SocketAddr),
        extra: &[&str],
    ) -> Controller {
        let log = tempfile::Builder::new()
            .prefix("sluice-controller-")
            .suffix(".log")
            .tempfile()
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--http-listen", &http.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--https-listen", &https.to_string()])
            .args(if extra.contains(&"--workers") {
                &["--no-access-log"][..]
            } else {
                &["--workers", "1", "--no-access-log"][..]
            })
            .args(extra)
            .env("POD_NAMESPACE", "sluice-system")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Controller {
            child,
            http,
            https,
            admin,
            log,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.readyz().is_some_and(|(status, _)| status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sluice not ready:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `/readyz` status and body, `None` if the admin port does not answer.
    pub fn readyz(&self) -> Option<(u16, String)> {
        let r = super::client()
            .get(format!("http://{}/readyz", self.admin))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().unwrap_or_default()))
    }

    /// The generation `/readyz` reports.
    pub fn generation(&self) -> Option<u64> {
        let (_, body) = self.readyz()?;
        body.trim().strip_prefix("ready: generation ")?.parse().ok()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `QUIT`, `INT`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} failed");
    }

    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, host: &str, path: &str) -> Result<super::Reply, reqwest::Error> {
        super::client()
            .get(format!("http://{}{path}", self.http))
            .header("Host", host)
            .send()
            .map(super::Reply::from)
    }

    /// Polls until `check` holds, panicking with the controller log after `limit`.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&Controller) -> bool,
    ) -> Duration {
        let started = Instant::now();
        while started.elapsed() < limit {
            if check(self) {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("{what}: not within {limit:?}\n{}", self.logs());
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Controller {
    /// The subject of the certificate served for `sni`, as `openssl s_client` reads it.
    pub fn served_subject(&self, sni: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {} -servername {sni} </dev/null 2>/dev/null | openssl x509 -noout -subject",
                self.https
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Inodes of the IPv4 sockets listening on `port` (from /proc/net/tcp): the same
/// inodes before and after an upgrade mean the sockets were handed over, not re-bound.
pub fn listen_inodes(port: u16) -> std::collections::BTreeSet<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            // State 0A is LISTEN.
            (local_port == port && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// Inodes of the sockets process `pid` holds open.
pub fn socket_inodes_of(pid: u32) -> std::collections::BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let target = std::fs::read_link(e.ok()?.path()).ok()?;
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// A self-signed ECDSA certificate and key for `host` (PEM files in `dir`), made with openssl.
pub fn self_signed(dir: &Path, host: &str, org: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{org}.crt")),
        dir.join(format!("{org}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .args(["-subj", &format!("/CN={host}/O={org}")])
        .args(["-addext", &format!("subjectAltName=DNS:{host}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (crt, key)
}
