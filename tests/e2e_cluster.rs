//! End-to-end: sluice in controller mode against a real kube-apiserver and the real
//! EndpointSlice controller (e2e/k8s/cluster.sh), with backends in network namespaces,
//! sluice on its own ServiceAccount token with the least-privilege RBAC, and manifests
//! applied with kubectl. One control plane serves every scenario; each scenario uses
//! its own namespace.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::cluster::{self_signed, Cluster, Controller, NetNs};

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
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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
    // A new ready Pod starts receiving requests.
    let addr = net.backend(20, "web-new");
    cluster.pod(ns, "web-new", "app: web", &addr.ip().to_string(), true);
    let took = sluice.wait_for("new Pod in rotation", Duration::from_secs(2), |s| {
        (0..30).any(|_| {
            s.get("lb.example", "/")
                .is_ok_and(|r| r.backend() == Some("web-new"))
        })
    });
    eprintln!("new Pod in rotation after {took:?}");

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

    // TLS from `kubectl create secret tls`; updating the Secret rotates the certificate;
    // a broken Secret falls back to the default certificate with a warning Event.
    let certs = tempfile::tempdir().unwrap();
    let (crt1, key1) = self_signed(certs.path(), "secure.example", "first");
    let (crt2, key2) = self_signed(certs.path(), "secure.example", "second");
    let secret = |crt: &std::path::Path, key: &std::path::Path| {
        let (crt, key) = (crt.to_str().unwrap(), key.to_str().unwrap());
        let yaml = cluster.kubectl(&[
            "create",
            "secret",
            "tls",
            "secure-tls",
            "-n",
            ns2,
            "--dry-run=client",
            "-o",
            "yaml",
            "--cert",
            crt,
            "--key",
            key,
        ]);
        cluster.apply(&yaml);
    };
    secret(&crt1, &key1);
    cluster.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: secure, namespace: {ns2}}}\nspec:\n  ingressClassName: nginx\n  tls: [{{hosts: [secure.example], secretName: secure-tls}}]\n  rules:\n  - host: secure.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: ghost, port: {{number: 80}}}}}}}}\n"
    ));
    if std::env::var("SLUICE_E2E_DEBUG").is_ok() {
        std::thread::sleep(Duration::from_secs(2));
        eprintln!(
            "served: {:?}\n{}",
            sluice.served_subject("secure.example"),
            sluice.logs()
        );
    }
    sluice.wait_for("certificate from the Secret", Duration::from_secs(3), |s| {
        s.served_subject("secure.example").contains("O = first")
    });
    // A key that does not match the certificate (kubectl refuses to build one, so by hand).
    let b64 = |p: &std::path::Path| {
        serde_json::to_string(&k8s_openapi::ByteString(std::fs::read(p).unwrap())).unwrap()
    };
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: secure-tls, namespace: {ns2}}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: {}, tls.key: {}}}\n",
        b64(&crt2),
        b64(&key1)
    ));
    sluice.wait_for("broken Secret falls back", Duration::from_secs(3), |s| {
        s.served_subject("secure.example")
            .contains("Fake Certificate")
    });
    sluice.wait_for("InvalidTlsSecret Event", Duration::from_secs(5), |_| {
        cluster
            .kubectl(&[
                "get",
                "events",
                "-n",
                ns2,
                "-o",
                "jsonpath={range .items[*]}{.reason} {.involvedObject.name}{\"\\n\"}{end}",
            ])
            .contains("InvalidTlsSecret secure")
    });
    secret(&crt2, &key2);
    let took = sluice.wait_for("rotated certificate", Duration::from_secs(3), |s| {
        s.served_subject("secure.example").contains("O = second")
    });
    eprintln!("rotated certificate served after {took:?}");
    drop(net);
}

/// Serialises the scenarios: each starts its own control plane, and two at once would
/// only fight over the machine's two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pod_with_service(cluster: &Cluster, net: &mut NetNs, ns: &str, host: u8, name: &str) {
    let addr = net.backend(host, name);
    cluster.pod(
        ns,
        name,
        &format!("app: {name}"),
        &addr.ip().to_string(),
        true,
    );
    cluster.apply(&service(ns, name, name));
}

fn paths_ingress(ns: &str, name: &str, host: Option<&str>, paths: &[(&str, &str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ingressClassName: nginx\n  rules:\n  - "
    );
    if let Some(h) = host {
        s += &format!("host: \"{h}\"\n    ");
    }
    s += "http:\n      paths:\n";
    for (kind, path, svc) in paths {
        s += &format!("      - {{path: {path}, pathType: {kind}, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n");
    }
    s
}

#[test]
fn ingress_conformance_and_service_shapes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start();
    let kubeconfig = cluster.sluice_kubeconfig();
    cluster.ensure_node();
    cluster.apply(CLASSES);
    let mut net = NetNs::create(78);
    let ns = "e2e-conf";
    cluster.namespace(ns);
    for (i, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        pod_with_service(&cluster, &mut net, ns, 10 + i as u8, name);
    }
    cluster.apply(&paths_ingress(
        ns,
        "rules",
        Some("exact.example"),
        &[
            ("Exact", "/foo", "a"),
            ("Prefix", "/aaa/bbb", "b"),
            ("Prefix", "/", "c"),
        ],
    ));
    // The remaining COMPAT §1 rows, on hosts of their own.
    cluster.apply(&paths_ingress(
        ns,
        "rows",
        Some("rows.example"),
        &[
            ("Exact", "/exact/", "a"),
            ("Prefix", "/slash/", "b"),
            ("Prefix", "/aaa/bb", "d"),
            ("Prefix", "/tie", "e"),
            ("Exact", "/tie", "f"),
        ],
    ));
    cluster.apply(&paths_ingress(
        ns,
        "wild",
        Some("*.wild.example"),
        &[("Prefix", "/", "d")],
    ));
    cluster.apply(&paths_ingress(
        ns,
        "nohost",
        None,
        &[("Prefix", "/nohost", "e")],
    ));
    // The deprecated class annotation, and an Ingress with no class at all.
    cluster.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: annotated\n  namespace: {ns}\n  annotations: {{kubernetes.io/ingress.class: nginx}}\nspec:\n  rules:\n  - host: anno.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: a, port: {{number: 80}}}}}}}}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: classless, namespace: {ns}}}\nspec:\n  rules:\n  - host: noclass.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: b, port: {{number: 80}}}}}}}}\n"
    ));

    // Service shapes: selector-less with hand-written Endpoints (mirrored by the real
    // controller), multi-port by name and by number, headless.
    let manual = net.backend(20, "manual");
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: manual, namespace: {ns}}}\nspec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: manual, namespace: {ns}}}\nsubsets: [{{addresses: [{{ip: \"{}\"}}], ports: [{{name: http, port: 8080}}]}}]\n",
        manual.ip()
    ));
    let multi = net.backend_on(21, 8080, "multi-web");
    net.backend_on(21, 8081, "multi-alt");
    cluster.pod(ns, "multi", "app: multi", &multi.ip().to_string(), true);
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: multi, namespace: {ns}}}\nspec:\n  selector: {{app: multi}}\n  ports: [{{name: web, port: 80, targetPort: 8080}}, {{name: alt, port: 81, targetPort: 8081}}]\n"
    ));
    let headless = net.backend(22, "headless");
    cluster.pod(
        ns,
        "headless",
        "app: headless",
        &headless.ip().to_string(),
        true,
    );
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: headless, namespace: {ns}}}\nspec:\n  clusterIP: None\n  selector: {{app: headless}}\n  ports: [{{port: 80, targetPort: http}}]\n"
    ));
    cluster.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: shapes, namespace: {ns}}}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: shapes.example\n    http:\n      paths:\n      - {{path: /manual, pathType: Prefix, backend: {{service: {{name: manual, port: {{number: 80}}}}}}}}\n      - {{path: /by-name, pathType: Prefix, backend: {{service: {{name: multi, port: {{name: alt}}}}}}}}\n      - {{path: /by-number, pathType: Prefix, backend: {{service: {{name: multi, port: {{number: 80}}}}}}}}\n      - {{path: /headless, pathType: Prefix, backend: {{service: {{name: headless, port: {{number: 80}}}}}}}}\n"
    ));

    let sluice = Controller::start(&kubeconfig, &[]);
    let expect: &[(&str, &str, Option<&str>)] = &[
        ("exact.example", "/foo", Some("a")),
        ("exact.example", "/foo/", Some("c")),
        ("exact.example", "/aaa/bbb", Some("b")),
        ("exact.example", "/aaa/bbb/ccc", Some("b")),
        ("exact.example", "/aaa/bbbxyz", Some("c")),
        ("exact.example", "/FOO", Some("c")),
        ("exact.example", "/bar?q=1", Some("c")),
        ("rows.example", "/exact/", Some("a")),
        ("rows.example", "/exact", None),
        ("rows.example", "/slash", Some("b")),
        ("rows.example", "/slash/", Some("b")),
        ("rows.example", "/slash/x", Some("b")),
        ("rows.example", "/aaa/bbb", None),
        ("rows.example", "/aaa/bb/c", Some("d")),
        ("rows.example", "/tie", Some("f")),
        ("rows.example", "/tie/x", Some("e")),
        ("x.wild.example", "/", Some("d")),
        ("a.b.wild.example", "/", None),
        ("other.example", "/nohost/x", Some("e")),
        ("anno.example", "/", Some("a")),
        ("noclass.example", "/", None),
        ("shapes.example", "/manual", Some("manual")),
        ("shapes.example", "/by-name", Some("multi-alt")),
        ("shapes.example", "/by-number", Some("multi-web")),
        ("shapes.example", "/headless", Some("headless")),
    ];
    let check_all = |s: &Controller| {
        expect.iter().all(|(host, path, want)| {
            s.get(host, path).is_ok_and(|r| match want {
                Some(b) => r.status == 200 && r.backend() == Some(b),
                None => r.status == 404,
            })
        })
    };
    sluice.wait_for("conformance routes", Duration::from_secs(10), check_all);
    for (host, path, want) in expect {
        let r = sluice.get(host, path).unwrap();
        assert_eq!(r.backend(), *want, "{host}{path}: {r:?}");
    }

    // An Ingress with only a default backend takes every unmatched request.
    cluster.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: fallback, namespace: {ns}}}\nspec:\n  ingressClassName: nginx\n  defaultBackend: {{service: {{name: f, port: {{number: 80}}}}}}\n"
    ));
    sluice.wait_for("default backend", Duration::from_secs(2), |s| {
        s.get("unknown.example", "/")
            .is_ok_and(|r| r.backend() == Some("f"))
            && s.get("a.b.wild.example", "/")
                .is_ok_and(|r| r.backend() == Some("f"))
    });

    // Without --watch-ingress-without-class the class-less Ingress was ignored; with it, served.
    drop(sluice);
    let sluice = Controller::start(&kubeconfig, &["--watch-ingress-without-class"]);
    sluice.wait_for("class-less Ingress served", Duration::from_secs(5), |s| {
        s.get("noclass.example", "/")
            .is_ok_and(|r| r.backend() == Some("b"))
    });

    // A gracefully deleted Pod (Terminating: no kubelet ever confirms) gets no new requests.
    let drain_ns = "e2e-drain";
    cluster.namespace(drain_ns);
    let term = net.backend(40, "term");
    let keep = net.backend(41, "keep");
    cluster.pod(drain_ns, "term", "app: drain", &term.ip().to_string(), true);
    cluster.pod(drain_ns, "keep", "app: drain", &keep.ip().to_string(), true);
    cluster.apply(&service(drain_ns, "drain", "drain"));
    cluster.apply(&paths_ingress(
        drain_ns,
        "drain",
        Some("drain.example"),
        &[("Prefix", "/", "drain")],
    ));
    sluice.wait_for("both Pods serving", Duration::from_secs(5), |s| {
        let seen: HashSet<_> = (0..20)
            .filter_map(|_| {
                s.get("drain.example", "/")
                    .ok()?
                    .backend()
                    .map(str::to_string)
            })
            .collect();
        seen.len() == 2
    });
    cluster.kubectl(&["delete", "pod", "term", "-n", drain_ns, "--wait=false"]);
    let took = sluice.wait_for(
        "Terminating Pod out of rotation",
        Duration::from_secs(2),
        |s| {
            (0..20).all(|_| {
                s.get("drain.example", "/")
                    .is_ok_and(|r| r.backend() == Some("keep"))
            })
        },
    );
    eprintln!("terminating Pod out of rotation after {took:?}");
    drop(net);
}

#[test]
fn leader_election_and_api_server_outage() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start();
    let kubeconfig = cluster.sluice_kubeconfig();
    cluster.ensure_node();
    cluster.apply(CLASSES);
    cluster.apply("apiVersion: v1\nkind: Service\nmetadata: {name: sluice, namespace: sluice-system}\nspec:\n  type: LoadBalancer\n  selector: {app: sluice}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n");
    let set_lb = |ip: &str| {
        cluster.kubectl(&[
            "patch",
            "service",
            "sluice",
            "-n",
            "sluice-system",
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{ip}"}}]}}}}}}"#),
        ]);
    };
    set_lb("192.0.2.60");
    let mut net = NetNs::create(79);
    let ns = "e2e-ha";
    cluster.namespace(ns);
    pod_with_service(&cluster, &mut net, ns, 10, "one");
    cluster.apply(&ingress(ns, "web", "nginx", "ha.example", "one"));

    // Two replicas: exactly one leads and writes status.
    let args = [
        "--publish-service",
        "sluice-system/sluice",
        "--election-lease-duration",
        "4",
    ];
    let mut a = Controller::start(&kubeconfig, &args);
    let mut b = Controller::start(&kubeconfig, &args);
    a.wait_for("status from the leader", Duration::from_secs(5), |_| {
        ingress_status_ips(&cluster, ns, "web") == "192.0.2.60"
    });
    let leads = |c: &Controller| c.logs().contains("leading=true");
    a.wait_for("one leader", Duration::from_secs(6), |a| {
        leads(a) || leads(&b)
    });
    assert!(
        !(leads(&a) && leads(&b)),
        "two leaders:\n{}\n---\n{}",
        a.logs(),
        b.logs()
    );
    let (leader, follower) = if leads(&a) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(
        !follower.logs().contains("updated Ingress status"),
        "the follower wrote status:\n{}",
        follower.logs()
    );
    // The leader goes away; the other takes over and follows a new address.
    leader.stop();
    let took = follower.wait_for("takeover", Duration::from_secs(10), |f| leads(f));
    eprintln!("follower took over after {took:?} (lease 4 s)");
    set_lb("192.0.2.61");
    follower.wait_for("new leader writes status", Duration::from_secs(3), |_| {
        ingress_status_ips(&cluster, ns, "web") == "192.0.2.61"
    });

    // The API server stops: sluice keeps serving the last table with no failed request,
    // then picks up changes made after it is back.
    let outage = Duration::from_secs(
        std::env::var("SLUICE_E2E_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    cluster.stop_apiserver();
    let started = std::time::Instant::now();
    let (mut ok, mut failed) = (0, Vec::new());
    while started.elapsed() < outage {
        match follower.get("ha.example", "/") {
            Ok(r) if r.status == 200 && r.backend() == Some("one") => ok += 1,
            other => failed.push(format!("{other:?}")),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{ok} requests served during a {outage:?} API server outage, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 100);
    cluster.restart_apiserver();
    // (An Ingress to the existing Service: a new Service's EndpointSlice would wait on
    // the controller manager's own reconnect backoff, which is not sluice's to measure.)
    cluster.apply(&ingress(ns, "after", "nginx", "after.example", "one"));
    let took = follower.wait_for("change after the outage", Duration::from_secs(15), |f| {
        f.get("after.example", "/")
            .is_ok_and(|r| r.backend() == Some("one"))
    });
    eprintln!("change after the outage live in {took:?} (includes the watch's reconnect backoff)");
    if std::env::var("SLUICE_E2E_DEBUG").is_ok() {
        eprintln!("{}", follower.logs());
    }
    assert_eq!(
        follower.get("ha.example", "/").unwrap().backend(),
        Some("one")
    );
    drop(net);
}
