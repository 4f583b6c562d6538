//! Real Pods for the e2e tests: a control plane in nodes mode (kube-scheduler and the
//! node-lifecycle controller too, see `e2e/k8s/cluster.sh`) and the node agent of
//! `e2e/node-agent`, which registers a Node and runs each Pod's container as a process
//! in a network namespace of its own (Pod IPs `10.244.SUBNET.x` on a bridge). Plus a
//! bounded load loop that counts requests per Pod. Everything is stopped and deleted on
//! drop, including namespaces a killed agent left behind.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::cluster::Cluster;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A control plane whose Pods are scheduled by kube-scheduler and whose Nodes are
/// watched by node-lifecycle (grace period `grace`, e.g. "10s").
pub fn cluster_with_nodes(grace: &str) -> Cluster {
    Cluster::start_with_env(&[("SLUICE_K8S_NODES", "1"), ("SLUICE_K8S_NODE_GRACE", grace)])
}

/// The node agent binary: `$SLUICE_NODE_AGENT`, else built (or found cached) by
/// e2e/node-agent/build.sh.
pub fn agent_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_NODE_AGENT") {
        return PathBuf::from(p);
    }
    let out = Command::new("bash")
        .arg(repo().join("e2e/node-agent/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run e2e/node-agent/build.sh");
    assert!(out.status.success(), "e2e/node-agent/build.sh failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("build.sh printed nothing")
            .trim(),
    )
}

/// A running node agent for Node `name`; stopped (its Pods killed, namespaces and
/// bridge deleted) on drop.
pub struct NodeAgent {
    child: Child,
    pub name: String,
    pub subnet: u8,
    tag: String,
    pub logs: tempfile::TempDir,
    log: PathBuf,
}

impl NodeAgent {
    pub fn start(cluster: &Cluster, name: &str, subnet: u8) -> NodeAgent {
        NodeAgent::start_with(cluster, name, subnet, &[])
    }

    /// As `start`, with extra agent flags (`--image NAME=PATH`, `--local-range CIDR`).
    pub fn start_with(cluster: &Cluster, name: &str, subnet: u8, extra: &[String]) -> NodeAgent {
        let logs = tempfile::Builder::new()
            .prefix("sluice-agent-")
            .tempdir()
            .unwrap();
        let log = logs.path().join("node-agent.log");
        // Short: it goes into interface names (15 bytes at most).
        let tag = format!("{}{subnet}", std::process::id() % 1000);
        let mut child = Command::new(agent_binary())
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["--node-name", name])
            .args(["--subnet", &subnet.to_string(), "--tag", &tag])
            .arg("--image")
            .arg(format!("sluice-echo={}", env!("CARGO_BIN_EXE_sluice-echo")))
            .arg("--image")
            .arg(format!("sluice={}", env!("CARGO_BIN_EXE_sluice")))
            .arg("--log-dir")
            .arg(logs.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start node-agent");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let agent = NodeAgent {
            child,
            name: name.to_string(),
            subnet,
            tag,
            logs,
            log,
        };
        assert!(
            line.contains("node-agent ready"),
            "node agent did not start: {line:?}\n{}",
            agent.log()
        );
        agent
    }

    /// The agent's own log (container output is in `container_log`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The node's own network namespace (hostNetwork Pods), at 10.244.SUBNET.254.
    pub fn node_netns(&self) -> String {
        format!("sluice-pod-{}-254", self.tag)
    }

    /// The bridge the Pods and the node netns are on (`slbTAG`, in the root netns).
    pub fn bridge(&self) -> String {
        format!("slb{}", self.tag)
    }

    pub fn container_log(&self, ns: &str, pod: &str, container: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("{ns}_{pod}_{container}.log")))
            .unwrap_or_default()
    }

    /// Freezes the agent (SIGSTOP): no more heartbeats, as a node cut off the network;
    /// its Pods' processes keep running.
    pub fn freeze(&self) {
        self.kill("STOP");
    }

    pub fn thaw(&self) {
        self.kill("CONT");
    }

    fn kill(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} node-agent");
    }

    /// When the agent posted `Ready=true` for Pod `ns/pod` (the last time), from its log.
    pub fn ready_posted_at(&self, ns: &str, pod: &str) -> Option<SystemTime> {
        let needle = format!(" {ns}/{pod}: Ready=true posted at ");
        let line = self
            .log()
            .lines()
            .rev()
            .find(|l| l.contains(&needle))?
            .to_string();
        let stamp = line.split(&needle).nth(1)?.trim();
        parse_rfc3339_utc(stamp)
    }
}

/// Parses `2026-12-03T13:40:01.123456789Z` (what Go's RFC3339Nano gives in UTC).
fn parse_rfc3339_utc(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let nanos: u64 = format!("{frac:0<9}")[..9].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(SystemTime::UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, nanos as u32))
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        // A frozen agent must be thawed to handle SIGTERM.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Whatever a killed agent left: processes in its namespaces, the namespaces,
        // the bridge (veth pairs go with their namespace).
        let prefix = format!("sluice-pod-{}-", self.tag);
        let list = Command::new("ip").args(["netns", "list"]).output();
        for ns in list
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&prefix))
        {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", p]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("slb{}", self.tag)])
            .stderr(Stdio::null())
            .status();
    }
}

/// A 3-field summary of what the load loop saw.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Successful requests per phase, per backend (Pod) name.
    pub per_phase: Vec<BTreeMap<String, usize>>,
    pub ok: usize,
    pub failures: Vec<String>,
}

/// Client threads sending GETs through sluice until stopped, at most `max_each`
/// requests each and for at most `limit`; half reuse connections, half open a new one
/// per request. Every request must answer 200 from a backend; the phase counter lets
/// the test split the per-Pod counts (before, during, after a rollout).
pub struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<LoadStats>>,
}

pub const PHASES: usize = 8;

impl Load {
    pub fn start(
        http: std::net::SocketAddr,
        host: &str,
        threads: usize,
        max_each: usize,
        limit: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let threads = (0..threads)
            .map(|i| {
                let (stop, phase, host) = (stop.clone(), phase.clone(), host.to_string());
                std::thread::spawn(move || {
                    let mut builder = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .redirect(reqwest::redirect::Policy::none());
                    if i % 2 == 1 {
                        builder = builder.pool_max_idle_per_host(0);
                    }
                    let client = builder.build().unwrap();
                    let mut stats = LoadStats {
                        per_phase: vec![BTreeMap::new(); PHASES],
                        ..LoadStats::default()
                    };
                    for _ in 0..max_each {
                        if stop.load(Ordering::Relaxed) || started.elapsed() > limit {
                            break;
                        }
                        let p = phase.load(Ordering::Relaxed).min(PHASES - 1);
                        let reply = client
                            .get(format!("http://{http}/load/{i}"))
                            .header("Host", &host)
                            .send()
                            .map(super::Reply::from);
                        match reply {
                            Ok(r) if r.status == 200 && r.backend().is_some() => {
                                stats.ok += 1;
                                *stats.per_phase[p]
                                    .entry(r.backend().unwrap().to_string())
                                    .or_default() += 1;
                            }
                            other => stats.failures.push(format!(
                                "client {i} at {:?} (phase {p}): {other:?}",
                                started.elapsed()
                            )),
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    stats
                })
            })
            .collect();
        Load {
            stop,
            phase,
            threads,
        }
    }

    /// Requests sent from now on count in the next phase.
    pub fn next_phase(&self) -> usize {
        self.phase.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = LoadStats {
            per_phase: vec![BTreeMap::new(); PHASES],
            ..LoadStats::default()
        };
        for t in self.threads {
            let s = t.join().unwrap();
            all.ok += s.ok;
            all.failures.extend(s.failures);
            for (p, counts) in s.per_phase.into_iter().enumerate() {
                for (name, n) in counts {
                    *all.per_phase[p].entry(name).or_default() += n;
                }
            }
        }
        all
    }
}

/// A Deployment of sluice-echo: each Pod answers with its own name (`--name` from the
/// downward API), is Ready once GET / answers, and on deletion keeps serving for
/// `prestop_s` seconds (preStop sleep) so the EndpointSlice drops it before SIGTERM.
pub fn echo_deployment(ns: &str, name: &str, replicas: u32, image: &str, prestop_s: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 15
      containers:
      - name: app
        image: {image}
        args: ["--listen", "0.0.0.0:8080", "--name", "$(POD_NAME)", "--threads", "1"]
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /ready, port: http}}
          periodSeconds: 1
        lifecycle:
          preStop:
            sleep: {{seconds: {prestop_s}}}
"#
    )
}

pub const CLASS: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: sluice.dev/ingress-controller}\n";

/// A Service `name` selecting `app: name` and an Ingress for `host` to it.
pub fn service_and_ingress(ns: &str, name: &str, host: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{port: 80, targetPort: http}}]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {name}, port: {{number: 80}}}}}}}}\n"
    )
}

/// Names of the Pods matching `selector` that are Ready and not terminating.
pub fn ready_pods(cluster: &Cluster, ns: &str, selector: &str) -> Vec<String> {
    let out = cluster.kubectl(&[
        "get", "pods", "-n", ns, "-l", selector, "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ]);
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 2 && f[1] == "True").then(|| f[0].to_string())
        })
        .collect();
    names.sort();
    names
}
