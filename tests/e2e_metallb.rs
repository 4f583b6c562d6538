//! End-to-end with a real MetalLB (v0.15.2, built by `e2e/metallb/build.sh`): its
//! controller and L2 speaker run as hostNetwork Pods of the node agent, in the node's
//! network namespace on the agent's bridge, with the module's own CRDs. The chart
//! (`metallb.enabled=true`) creates the IPAddressPool, L2Advertisement and sluice's
//! LoadBalancer Service; sluice runs as a hostNetwork Pod beside the speaker. A client
//! in another namespace on the bridge ARP-resolves the address MetalLB assigned to the
//! node and reaches sluice through it. All addresses are test addresses on a bridge
//! the agent created; the speaker only ever sees the node netns's `eth0`.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cluster::Cluster;
use support::helm;
use support::pods::{cluster_with_nodes, echo_deployment, service_and_ingress, NodeAgent, CLASS};

const SUBNET: u8 = 170;
/// The pool: 10.244.170.240-247, on the bridge's /24 (the node netns accepts it as local).
const POOL: &str = "10.244.170.240/29";
const CLIENT_IP: &str = "10.244.170.250";

/// `$SLUICE_METALLB` or what e2e/metallb/build.sh prints: controller, speaker, crds/.
fn metallb_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_METALLB") {
        return PathBuf::from(p);
    }
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/metallb/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run e2e/metallb/build.sh");
    assert!(out.status.success(), "e2e/metallb/build.sh failed");
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim(),
    )
}

fn run(cmd: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{cmd:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A client network namespace with one veth on the agent's bridge.
struct Client {
    ns: String,
    host_if: String,
}

impl Client {
    fn create(bridge: &str, cidr: &str) -> Client {
        let tag = std::process::id() % 100_000;
        let c = Client {
            ns: format!("sluice-mlb-client-{tag}"),
            host_if: format!("slm{tag}h"),
        };
        let peer = format!("slm{tag}c");
        for step in [
            vec!["netns", "add", &c.ns],
            vec![
                "link", "add", &c.host_if, "type", "veth", "peer", "name", &peer,
            ],
            vec!["link", "set", &peer, "netns", &c.ns],
            vec!["link", "set", &c.host_if, "master", bridge],
            vec!["link", "set", &c.host_if, "up"],
            vec!["-n", &c.ns, "link", "set", "lo", "up"],
            vec!["-n", &c.ns, "addr", "add", cidr, "dev", &peer],
            vec!["-n", &c.ns, "link", "set", &peer, "up"],
        ] {
            let mut cmd = vec!["ip"];
            cmd.extend(step);
            run(&cmd).unwrap();
        }
        c
    }

    /// curl from the client namespace; Err on any failure (no ARP answer, refused, ...).
    fn curl(&self, host: &str, url: &str) -> Result<String, String> {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "curl",
            "-sS",
            "-f",
            "--connect-timeout",
            "3",
            "--max-time",
            "5",
            "-H",
            &format!("Host: {host}"),
            url,
        ])
    }

    /// The client's neighbour entry for `ip` (`ip neigh show`), e.g. "... lladdr MAC REACHABLE".
    fn neigh(&self, ip: &str) -> String {
        run(&["ip", "-n", &self.ns, "neigh", "show", ip]).unwrap_or_default()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.ns]);
        let _ = run(&["ip", "link", "del", &self.host_if]);
    }
}

/// Polls `f` until it gives a value; None after `limit`.
fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// MetalLB's controller and speaker as hostNetwork Pods (the admin kubeconfig: the
/// e2e cluster has no MetalLB RBAC), webhooks off, memberlist off (one node).
fn metallb_pods(kubeconfig: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: controller, namespace: metallb-system, labels: {{app: metallb, component: controller}}}}
spec:
  nodeName: {node}
  hostNetwork: true
  containers:
  - name: controller
    image: quay.io/metallb/controller:v0.15.2
    args: ["--port=7572", "--log-level=debug", "--webhook-mode=disabled", "--disable-cert-rotation=true"]
    env:
    - {{name: METALLB_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: KUBECONFIG, value: "{kubeconfig}"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: speaker, namespace: metallb-system, labels: {{app: metallb, component: speaker}}}}
spec:
  nodeName: {node}
  hostNetwork: true
  containers:
  - name: speaker
    image: quay.io/metallb/speaker:v0.15.2
    args: ["--port=7472", "--log-level=debug"]
    env:
    - {{name: METALLB_NODE_NAME, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    - {{name: METALLB_POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: METALLB_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: KUBECONFIG, value: "{kubeconfig}"}}
"#
    )
}

/// sluice as a hostNetwork Pod selected by the chart's Service (labels `selector`),
/// publishing that Service's address to Ingress status.
fn sluice_pod(kubeconfig: &str, node: &str, selector: &serde_json::Value, svc: &str) -> String {
    let labels = serde_json::to_string(&selector).unwrap();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: sluice, namespace: sluice-system, labels: {labels}}}
spec:
  nodeName: {node}
  hostNetwork: true
  containers:
  - name: controller
    image: sluice:dev
    args: ["--kubeconfig", "{kubeconfig}", "--http-listen", "0.0.0.0:80", "--https-listen", "0.0.0.0:443",
           "--admin-listen", "0.0.0.0:10254", "--workers", "1", "--publish-service", "sluice-system/{svc}"]
    env:
    - {{name: POD_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    ports: [{{name: http, containerPort: 80}}, {{name: https, containerPort: 443}}]
    readinessProbe:
      httpGet: {{path: /readyz, port: 10254}}
      periodSeconds: 1
"#
    )
}

/// The chart with MetalLB on: the LoadBalancer Service gets its address from MetalLB's
/// controller (nobody patches it), the speaker answers ARP for it from the node, the
/// client reaches sluice there, and sluice shows the address in Ingress status.
#[test]
fn metallb_assigns_and_announces_sluice_address() {
    let mlb = metallb_dir();
    let cluster = cluster_with_nodes("10s");
    let node = format!("node-{SUBNET}");
    let img = |name: &str, file: &str| format!("{name}={}", mlb.join(file).display());
    let agent = NodeAgent::start_with(
        &cluster,
        &node,
        SUBNET,
        &[
            "--image".into(),
            img("controller", "controller"),
            "--image".into(),
            img("speaker", "speaker"),
            "--local-range".into(),
            POOL.into(),
        ],
    );
    let dump = |cluster: &Cluster, agent: &NodeAgent| {
        format!(
            "{}\nagent:\n{}\nspeaker:\n{}\ncontroller:\n{}\nsluice:\n{}",
            cluster.kubectl(&[
                "get",
                "pods,svc,ingress,ipaddresspools,l2advertisements",
                "-A",
                "-o",
                "wide"
            ]),
            agent.log(),
            agent.container_log("metallb-system", "speaker", "speaker"),
            agent.container_log("metallb-system", "controller", "controller"),
            agent.container_log("sluice-system", "sluice", "controller"),
        )
    };

    // MetalLB: the module's CRDs, then its two Pods.
    cluster.kubectl(&["apply", "-f", mlb.join("crds").to_str().unwrap()]);
    cluster.kubectl(&[
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/ipaddresspools.metallb.io",
        "crd/l2advertisements.metallb.io",
    ]);
    cluster.namespace("metallb-system");
    let admin = cluster.kubeconfig.display().to_string();
    cluster.apply(&metallb_pods(&admin, &node));

    // The chart's MetalLB objects and Service (externalTrafficPolicy Local: the speaker
    // announces only from a node with a ready sluice endpoint).
    let kubeconfig = cluster.sluice_kubeconfig();
    let rendered = helm::docs(&helm::template(&[
        "--set",
        "metallb.enabled=true",
        "--set",
        &format!("metallb.addresses={{{POOL}}}"),
        "--set",
        "metallb.interfaces={eth0}",
        "--set",
        "controller.service.externalTrafficPolicy=Local",
    ]));
    let svc = helm::one(&rendered, "Service");
    let svc_name = helm::name(svc).to_string();
    for kind in ["IPAddressPool", "L2Advertisement", "Service"] {
        cluster.apply(&serde_yaml_ng::to_string(helm::one(&rendered, kind)).unwrap());
    }
    cluster.apply(CLASS);
    cluster.apply(&sluice_pod(
        &kubeconfig.display().to_string(),
        &node,
        &svc["spec"]["selector"],
        &svc_name,
    ));
    let (ns, host) = ("e2e-mlb", "mlb.example");
    cluster.namespace(ns);
    cluster.apply(&echo_deployment(ns, "web", 1, "sluice-echo:v1", 0));
    cluster.apply(&service_and_ingress(ns, "web", host));

    // The address comes from MetalLB's controller.
    let lb_ip = wait_until(Duration::from_secs(120), || {
        let ip = cluster
            .try_kubectl(
                &[
                    "get",
                    "svc",
                    "-n",
                    "sluice-system",
                    &svc_name,
                    "-o",
                    "jsonpath={.status.loadBalancer.ingress[0].ip}",
                ],
                None,
            )
            .ok()?;
        (!ip.trim().is_empty()).then(|| ip.trim().to_string())
    })
    .unwrap_or_else(|| {
        panic!(
            "no MetalLB address on the Service:\n{}",
            dump(&cluster, &agent)
        )
    });
    let last: u8 = lb_ip
        .strip_prefix("10.244.170.")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    assert!(
        (240..=247).contains(&last),
        "{lb_ip} is not from the pool {POOL}"
    );
    eprintln!("MetalLB assigned {lb_ip}");

    // A client on the bridge reaches sluice at that address, through ARP.
    let client = Client::create(&agent.bridge(), &format!("{CLIENT_IP}/24"));
    let url = format!("http://{lb_ip}/");
    let started = Instant::now();
    let body =
        wait_until(Duration::from_secs(90), || client.curl(host, &url).ok()).unwrap_or_else(|| {
            panic!(
                "client never reached sluice at {url}: {:?}, neigh {:?}\n{}",
                client.curl(host, &url),
                client.neigh(&lb_ip),
                dump(&cluster, &agent)
            )
        });
    eprintln!("first answer through {lb_ip} after {:?}", started.elapsed());
    let echoed: serde_json::Value = serde_json::from_str(&body).expect("sluice-echo JSON");
    // No SNAT anywhere (no kube-proxy here): the backend sees the client's own address.
    let xff = echoed["headers"]["x-forwarded-for"]
        .as_str()
        .unwrap_or_default();
    assert!(
        xff.contains(CLIENT_IP),
        "backend saw X-Forwarded-For {xff:?}: {body}"
    );

    // The client's ARP entry for the address is the node netns's eth0: the speaker's answer.
    let mac_line = run(&[
        "ip",
        "-n",
        &agent.node_netns(),
        "-o",
        "link",
        "show",
        "eth0",
    ])
    .unwrap();
    let node_mac = mac_line
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("eth0 MAC")
        .to_string();
    let neigh = client.neigh(&lb_ip);
    assert!(
        neigh.contains(&node_mac),
        "client's neighbour entry {neigh:?}, node eth0 is {node_mac}"
    );

    // Control: another pool address is local to the node too, but no one announces it, so
    // the client gets no ARP answer (the node's kernel does not answer: arp_ignore=1).
    let unassigned = if last == 247 {
        "10.244.170.246"
    } else {
        "10.244.170.247"
    };
    let err = client
        .curl(host, &format!("http://{unassigned}/"))
        .unwrap_err();
    assert!(
        !client.neigh(unassigned).contains(&node_mac),
        "{unassigned} resolved: {err}"
    );

    // sluice publishes the address: `kubectl get ingress` shows it under ADDRESS.
    wait_until(Duration::from_secs(30), || {
        let table = cluster.kubectl(&["get", "ingress", "-n", ns, "web"]);
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().any(|w| w == lb_ip))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{lb_ip} not in Ingress status:\n{}", dump(&cluster, &agent)));
    eprintln!("{}", cluster.kubectl(&["get", "ingress", "-n", ns, "web"]));
    drop(client);
    drop(agent);
}
