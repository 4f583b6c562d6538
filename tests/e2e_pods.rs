//! End-to-end with real Pods: kube-scheduler, the Deployment, ReplicaSet, EndpointSlice
//! and node-lifecycle controllers, and the node agent of `e2e/node-agent` running each
//! Pod's sluice-echo as a process in its own network namespace. sluice runs as in
//! tests/e2e_cluster.rs (its own ServiceAccount token, the chart's RBAC).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use support::cluster::{Cluster, Controller};
use support::pods::{
    cluster_with_nodes, echo_deployment, ready_pods, service_and_ingress, Load, NodeAgent, CLASS,
};

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Control plane in nodes mode, one node agent, sluice, and a Deployment `web` of
/// `replicas` behind a Service and an Ingress for `host`, rolled out and served.
fn setup(subnet: u8, ns: &str, host: &str, replicas: u32) -> (Cluster, NodeAgent, Controller) {
    let cluster = cluster_with_nodes("10s");
    let agent = NodeAgent::start(&cluster, &format!("node-{subnet}"), subnet);
    let kubeconfig = cluster.sluice_kubeconfig();
    cluster.apply(CLASS);
    cluster.namespace(ns);
    cluster.apply(&echo_deployment(ns, "web", replicas, "sluice-echo:v1", 2));
    cluster.apply(&service_and_ingress(ns, "web", host));
    rollout_status(&cluster, &agent, ns);
    let sluice = Controller::start(&kubeconfig, &[]);
    if replicas > 0 {
        let want: BTreeSet<String> = ready_pods(&cluster, ns, "app=web").into_iter().collect();
        sluice.wait_for("every Pod served", Duration::from_secs(20), |s| {
            let seen: BTreeSet<String> = (0..30)
                .filter_map(|_| s.get(host, "/").ok()?.backend().map(str::to_string))
                .collect();
            seen == want
        });
    }
    (cluster, agent, sluice)
}

fn rollout_status(cluster: &Cluster, agent: &NodeAgent, ns: &str) {
    if let Err(e) = cluster.try_kubectl(
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            ns,
            "--timeout=180s",
        ],
        None,
    ) {
        panic!(
            "rollout did not finish: {e}\n{}\nnode agent log:\n{}",
            cluster.kubectl(&["get", "pods,rs", "-n", ns, "-o", "wide"]),
            agent.log()
        );
    }
}

/// `kubectl rollout restart`, then an image-tag and env change, of a 3-replica
/// Deployment while a load loop runs: no request fails, and the new Pods take over.
#[test]
fn rollouts_under_load_lose_no_request() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, host) = ("e2e-roll", "roll.example");
    let (cluster, agent, sluice) = setup(151, ns, host, 3);
    let first = ready_pods(&cluster, ns, "app=web");
    assert_eq!(first.len(), 3, "{first:?}");

    let load = Load::start(sluice.http, host, 4, 40_000, Duration::from_secs(300));
    std::thread::sleep(Duration::from_secs(2));
    // Phase 1: the restart rolls; phase 2: settled on the second generation of Pods.
    load.next_phase();
    cluster.kubectl(&["rollout", "restart", "deployment/web", "-n", ns]);
    rollout_status(&cluster, &agent, ns);
    let second = settled(&cluster, ns, &first);
    load.next_phase();
    std::thread::sleep(Duration::from_secs(3));
    // Phase 3: image tag and env change; phase 4: settled on the third generation.
    load.next_phase();
    cluster.kubectl(&[
        "set",
        "image",
        "deployment/web",
        "-n",
        ns,
        "app=sluice-echo:v2",
    ]);
    cluster.kubectl(&["set", "env", "deployment/web", "-n", ns, "ROLLOUT=3"]);
    rollout_status(&cluster, &agent, ns);
    let third = settled(&cluster, ns, &second);
    load.next_phase();
    std::thread::sleep(Duration::from_secs(3));
    let stats = load.stop();

    for (p, counts) in stats.per_phase.iter().enumerate().take(5) {
        eprintln!("phase {p}: {counts:?}");
    }
    eprintln!(
        "rollouts under load: {} requests ok, {} failed",
        stats.ok,
        stats.failures.len()
    );
    assert!(
        stats.failures.is_empty(),
        "{} failed requests, first: {:#?}\nsluice log:\n{}",
        stats.failures.len(),
        &stats.failures[..stats.failures.len().min(10)],
        sluice.logs()
    );
    let names = |p: usize| -> BTreeSet<String> { stats.per_phase[p].keys().cloned().collect() };
    let set = |v: &[String]| -> BTreeSet<String> { v.iter().cloned().collect() };
    assert_eq!(names(0), set(&first), "before the restart: the first Pods");
    assert_eq!(
        names(2),
        set(&second),
        "after the restart: only the new Pods"
    );
    assert_eq!(
        names(4),
        set(&third),
        "after the image change: only the newest Pods"
    );
    let image = cluster.kubectl(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[0].image}",
    ]);
    assert!(image.contains("sluice-echo:v2"), "{image}");
}

/// Waits until 3 Pods are Ready and none of `old` is left; returns the new names.
fn settled(cluster: &Cluster, ns: &str, old: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = ready_pods(cluster, ns, "app=web");
        let all = cluster.kubectl(&["get", "pods", "-n", ns, "-o", "name"]);
        if now.len() == 3 && old.iter().all(|o| !all.contains(&format!("pod/{o}\n"))) {
            return now;
        }
        assert!(Instant::now() < deadline, "old Pods never went: {all}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Scaled to zero the route answers 503; scaled back, 200 soon after the Pod is Ready.
#[test]
fn scale_to_zero_and_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, host) = ("e2e-zero", "zero.example");
    let (cluster, agent, sluice) = setup(152, ns, host, 1);
    cluster.kubectl(&["scale", "deployment/web", "-n", ns, "--replicas=0"]);
    sluice.wait_for("503 with no endpoints", Duration::from_secs(30), |s| {
        s.get(host, "/").is_ok_and(|r| r.status == 503)
    });
    for _ in 0..20 {
        assert_eq!(sluice.get(host, "/").unwrap().status, 503);
    }
    cluster.kubectl(&["scale", "deployment/web", "-n", ns, "--replicas=1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (first_ok, backend) = loop {
        let r = sluice.get(host, "/").unwrap();
        if r.status == 200 {
            break (SystemTime::now(), r.backend().unwrap().to_string());
        }
        assert_eq!(r.status, 503, "{r:?}");
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(5));
    };
    let ready = agent
        .ready_posted_at(ns, &backend)
        .unwrap_or_else(|| panic!("no Ready line for {backend}:\n{}", agent.log()));
    let took = first_ok.duration_since(ready).unwrap_or_default();
    eprintln!("Pod {backend} Ready -> first request routed: {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "first request routed {took:?} after the Pod became Ready"
    );
}

/// The node stops heartbeating: node-lifecycle marks its Pods NotReady and sluice stops
/// sending to them (503: no ready endpoint); when it heartbeats again, traffic returns.
#[test]
fn node_loss_stops_traffic() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, host) = ("e2e-loss", "loss.example");
    let (cluster, agent, sluice) = setup(153, ns, host, 2);
    agent.freeze();
    let lost = Instant::now();
    let took = sluice.wait_for("traffic stopped", Duration::from_secs(60), |s| {
        s.get(host, "/").is_ok_and(|r| r.status == 503)
    });
    let node = cluster.kubectl(&[
        "get",
        "node",
        &agent.name,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    eprintln!("node loss -> traffic stopped after {took:?} (node Ready={node})");
    assert_eq!(node, "Unknown");
    let unready = cluster.kubectl(&[
        "get",
        "pods",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(unready, "False False", "Pods not marked NotReady");
    assert!(
        lost.elapsed() >= Duration::from_secs(5),
        "stopped before the grace period"
    );
    agent.thaw();
    let back = sluice.wait_for("traffic back", Duration::from_secs(60), |s| {
        s.get(host, "/").is_ok_and(|r| r.status == 200)
    });
    eprintln!("node back -> traffic again after {back:?}");
}
