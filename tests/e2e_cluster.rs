//! End-to-end: sluice in controller mode against a real kube-apiserver and the real
//! EndpointSlice controller (e2e/k8s/cluster.sh), with backends in network namespaces,
//! sluice on its own ServiceAccount token with the least-privilege RBAC, and manifests
//! applied with kubectl. One control plane serves every scenario; each scenario uses
//! its own namespace.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::cluster::{Cluster, Controller, NetNs};

const CLASSES: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: sluice.dev/ingress-controller}\n---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: other}\nspec: {controller: example.com/other}\n";

fn ingress(ns: &str, name: &str, class: &str, host: &str, svc: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ingressClassName: {class}\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n"
    )
}

fn service(ns: &str, name: &str, app: &str) -> String {
    // Named targetPort: resolved per Pod through the EndpointSlice.
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{port: 80, targetPort: http}}]\n")
}

fn ingress_status_ips(cluster: &Cluster, ns: &str, name: &str) -> String {
    cluster
        .kubectl(&[
            "get",
            "ingress",
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ])
        .trim()
        .to_string()
}

#[test]
fn controller_mode_against_a_real_apiserver() {
    let cluster = Cluster::start();
    let kubeconfig = cluster.sluice_kubeconfig();
    cluster.ensure_node();
    cluster.apply(CLASSES);
    // The LoadBalancer Service sluice publishes (MetalLB's part is played by a status patch).
    cluster.apply("apiVersion: v1\nkind: Service\nmetadata: {name: sluice, namespace: sluice-system}\nspec:\n  type: LoadBalancer\n  selector: {app: sluice}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n");

    let mut net = NetNs::create(77);
    let ns = "e2e-lb";
    cluster.namespace(ns);
    let mut names = HashSet::new();
    for i in 0..10u8 {
        let name = format!("web-{i}");
        let addr = net.backend(10 + i, &name);
        cluster.pod(ns, &name, "app: web", &addr.ip().to_string(), true);
        names.insert(name);
    }
    cluster.apply(&service(ns, "web", "web"));
    cluster.apply(&ingress(ns, "web", "nginx", "lb.example", "web"));
    cluster.apply(&ingress(ns, "foreign", "other", "foreign.example", "web"));

    let sluice = Controller::start(&kubeconfig, &["--publish-service", "sluice-system/sluice"]);

    // Load balancing over 10 ready Pods written into EndpointSlices by the real controller.
    sluice.wait_for("lb.example served", Duration::from_secs(10), |s| {
        s.get("lb.example", "/").is_ok_and(|r| r.status == 200)
    });
    let mut seen = HashSet::new();
    for _ in 0..100 {
        let r = sluice.get("lb.example", "/").unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        seen.insert(r.backend().unwrap().to_string());
    }
    assert_eq!(seen, names, "100 requests should reach all 10 backends");

    // An Ingress of another class gets no route.
    assert_eq!(sluice.get("foreign.example", "/").unwrap().status, 404);

    // Status: the address MetalLB would assign appears in served Ingresses within 2 s.
    cluster.kubectl(&[
        "patch",
        "service",
        "sluice",
        "-n",
        "sluice-system",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.50"}]}}}"#,
    ]);
    let took = sluice.wait_for("status address published", Duration::from_secs(2), |_| {
        ingress_status_ips(&cluster, ns, "web") == "192.0.2.50"
    });
    eprintln!("status published after {took:?}");
    cluster.kubectl(&[
        "patch",
        "service",
        "sluice",
        "-n",
        "sluice-system",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.51"}]}}}"#,
    ]);
    sluice.wait_for("status address followed", Duration::from_secs(2), |_| {
        ingress_status_ips(&cluster, ns, "web") == "192.0.2.51"
    });
    assert_eq!(
        ingress_status_ips(&cluster, ns, "foreign"),
        "",
        "other class got our address"
    );

    // A Pod turned unready stops receiving requests within one second.
    let addr0 = "10.244.77.10";
    cluster.set_pod_ready(ns, "web-0", addr0, false);
    let took = sluice.wait_for("unready Pod drained", Duration::from_secs(1), |s| {
        (0..20).all(|_| {
            s.get("lb.example", "/")
                .is_ok_and(|r| r.backend() != Some("web-0"))
        })
    });
    eprintln!("unready Pod out of rotation after {took:?}");
    cluster.set_pod_ready(ns, "web-0", addr0, true);
    sluice.wait_for("ready Pod back", Duration::from_secs(2), |s| {
        (0..30).any(|_| {
            s.get("lb.example", "/")
                .is_ok_and(|r| r.backend() == Some("web-0"))
        })
    });

    // A missing Service answers 503 and carries a warning Event; fixing it heals.
    let ns2 = "e2e-missing";
    cluster.namespace(ns2);
    let addr = net.backend(30, "healed");
    cluster.pod(ns2, "healed", "app: healed", &addr.ip().to_string(), true);
    cluster.apply(&ingress(ns2, "broken", "nginx", "missing.example", "ghost"));
    sluice.wait_for("503 for a missing Service", Duration::from_secs(2), |s| {
        s.get("missing.example", "/").is_ok_and(|r| r.status == 503)
    });
    sluice.wait_for("warning Event", Duration::from_secs(5), |_| {
        cluster
            .kubectl(&[
                "get",
                "events",
                "-n",
                ns2,
                "-o",
                "jsonpath={range .items[*]}{.reason} {.involvedObject.name}{\"\\n\"}{end}",
            ])
            .contains("BackendUnavailable broken")
    });
    cluster.apply(&service(ns2, "ghost", "healed"));
    sluice.wait_for(
        "fixed Service heals the route",
        Duration::from_secs(3),
        |s| {
            s.get("missing.example", "/")
                .is_ok_and(|r| r.backend() == Some("healed"))
        },
    );
    drop(net);
}
