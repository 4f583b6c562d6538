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
    // Long requests in flight when the Pod is deleted (round robin puts some on it)
    // finish there, while new requests go only to the other Pod.
    let long: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("http://{}/long?sleep_ms=3000", sluice.http);
            let request = std::thread::spawn(move || {
                support::client()
                    .get(url)
                    .header("Host", "drain.example")
                    .send()
                    .map(support::Reply::from)
            });
            std::thread::sleep(Duration::from_millis(50));
            request
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let deleted = std::time::Instant::now();
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
    let mut on_term = 0;
    for request in long {
        let r = request.join().unwrap().expect("long request");
        assert_eq!(r.status, 200, "{r:?}");
        on_term += usize::from(r.backend() == Some("term"));
    }
    eprintln!(
        "{on_term} of 4 long requests finished on the deleted Pod {:?} after the delete",
        deleted.elapsed()
    );
    assert!(
        on_term > 0,
        "no long request reached the Pod that was deleted"
    );
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

/// Client threads sending GET requests without pause until stopped: `keepalive` of
/// them reuse one connection (reqwest's pool), `fresh` open a new connection per request.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<LoadStats>>,
}

#[derive(Debug, Default)]
struct LoadStats {
    ok: usize,
    failures: Vec<String>,
}

impl Load {
    fn start(
        http: std::net::SocketAddr,
        host: &str,
        backend: &str,
        keepalive: usize,
        fresh: usize,
    ) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = std::time::Instant::now();
        let threads = (0..keepalive + fresh)
            .map(|i| {
                let (stop, host, backend) = (stop.clone(), host.to_string(), backend.to_string());
                std::thread::spawn(move || {
                    let mut builder = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .redirect(reqwest::redirect::Policy::none());
                    if i >= keepalive {
                        builder = builder.pool_max_idle_per_host(0);
                    }
                    let client = builder.build().unwrap();
                    let mut stats = LoadStats::default();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let reply = client
                            .get(format!("http://{http}/load/{i}"))
                            .header("Host", &host)
                            .send()
                            .map(support::Reply::from);
                        match reply {
                            Ok(r) if r.status == 200 && r.backend() == Some(backend.as_str()) => {
                                stats.ok += 1
                            }
                            other => stats
                                .failures
                                .push(format!("client {i} at {:?}: {other:?}", started.elapsed())),
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    stats
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) -> LoadStats {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = LoadStats::default();
        for t in self.threads {
            let s = t.join().unwrap();
            all.ok += s.ok;
            all.failures.extend(s.failures);
        }
        all
    }
}

/// A control plane with one backend Pod `name` (Service of the same name) behind an
/// Ingress for `host`, in namespace `ns` of network namespace `subnet`.
fn one_backend(
    subnet: u8,
    ns: &str,
    name: &str,
    host: &str,
) -> (Cluster, std::path::PathBuf, NetNs) {
    let cluster = Cluster::start();
    let kubeconfig = cluster.sluice_kubeconfig();
    cluster.ensure_node();
    cluster.apply(CLASSES);
    let mut net = NetNs::create(subnet);
    cluster.namespace(ns);
    pod_with_service(&cluster, &mut net, ns, 10, name);
    cluster.apply(&ingress(ns, name, "nginx", host, name));
    (cluster, kubeconfig, net)
}

/// Sends a GET on `conn` and reads the response (head and Content-Length body).
fn raw_get(conn: &mut std::net::TcpStream, host: &str, path: &str) -> String {
    std::io::Write::write_all(
        conn,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    read_response(conn)
}

/// Reads one response (head and Content-Length body); empty if the connection closed.
fn read_response(conn: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    conn.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

fn sleep_until(t: std::time::Instant) {
    if let Some(d) = t.checked_duration_since(std::time::Instant::now()) {
        std::thread::sleep(d);
    }
}

#[test]
fn sigterm_drains_under_load_and_exits_when_idle() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_cluster, kubeconfig, net) = one_backend(80, "e2e-sigterm", "web", "term.example");
    let grace = Duration::from_secs(3);
    let mut sluice = Controller::start(&kubeconfig, &["--shutdown-grace-period", "3"]);
    sluice.wait_for("route served", Duration::from_secs(10), |s| {
        s.get("term.example", "/").is_ok_and(|r| r.status == 200)
    });
    let load = Load::start(sluice.http, "term.example", "web", 3, 1);
    std::thread::sleep(Duration::from_millis(500));

    // A long request, in flight when the signal comes and past the grace period.
    let url = format!("http://{}/long?sleep_ms=6000", sluice.http);
    let long = std::thread::spawn(move || {
        support::client()
            .get(url)
            .header("Host", "term.example")
            .send()
            .map(support::Reply::from)
    });
    // A keep-alive connection of our own, used once before the signal.
    let mut kept = std::net::TcpStream::connect(sluice.http).unwrap();
    let first = raw_get(&mut kept, "term.example", "/kept");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first}"
    );
    std::thread::sleep(Duration::from_millis(300));

    let term = std::time::Instant::now();
    sluice.signal("TERM");
    let not_ready = loop {
        if sluice.readyz().is_some_and(|(status, _)| status == 503) {
            break term.elapsed();
        }
        assert!(
            term.elapsed() < Duration::from_secs(2),
            "/readyz still 200 after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    eprintln!("/readyz 503 {not_ready:?} after SIGTERM");
    assert!(
        not_ready < Duration::from_millis(300),
        "/readyz took {not_ready:?}"
    );

    // The kept connection is served and told to close, not cut.
    sleep_until(term + Duration::from_millis(500));
    let second = raw_get(&mut kept, "term.example", "/kept");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("connection: close"),
        "{second}"
    );
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        std::io::Read::read(&mut kept, &mut [0; 16]).unwrap(),
        0,
        "not closed"
    );

    // The clients keep going for most of the grace period: nothing fails.
    sleep_until(term + grace - Duration::from_millis(500));
    assert_eq!(sluice.readyz().map(|r| r.0), Some(503));
    let stats = load.stop();
    eprintln!(
        "{} requests from before SIGTERM until 0.5 s before the grace period ended",
        stats.ok
    );
    assert!(stats.failures.is_empty(), "{:#?}", stats.failures);
    assert!(stats.ok > 50, "only {} requests", stats.ok);

    // A client that has sent half a request head when the listeners close still gets
    // its answer (Pingora would drop it at once; sluice holds that back for a second).
    sleep_until(term + grace - Duration::from_millis(300));
    let mut partial = std::net::TcpStream::connect(sluice.http).unwrap();
    std::io::Write::write_all(
        &mut partial,
        b"GET /partial HTTP/1.1\r\nHost: term.example\r\n",
    )
    .unwrap();

    // When the grace period ends the listeners close (a new connection is refused)
    // while the long request still runs.
    sleep_until(term + grace);
    let closed = loop {
        match std::net::TcpStream::connect(sluice.http) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break term.elapsed(),
            Err(e) => panic!("connecting after the grace period: {e}"),
            Ok(_) => {}
        }
        assert!(
            term.elapsed() < grace + Duration::from_secs(2),
            "still accepting {:?} after SIGTERM",
            term.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("listeners closed {closed:?} after SIGTERM");
    assert!(
        sluice.try_wait().is_none(),
        "exited with a request in flight:\n{}",
        sluice.logs()
    );
    std::io::Write::write_all(&mut partial, b"\r\n").unwrap();
    let reply = read_response(&mut partial);
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "half-sent request: {reply:?}"
    );

    // The long request completes, then the process exits by itself at once, status 0.
    let reply = long.join().unwrap().expect("long request");
    let done = std::time::Instant::now();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.backend(), Some("web"));
    let status = sluice
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "still running 30 s after the last request:\n{}",
                sluice.logs()
            )
        });
    let exited = std::time::Instant::now();
    eprintln!(
        "long request done {:?} after SIGTERM; exit {:?} later",
        done - term,
        exited - done
    );
    assert!(status.success(), "exit {status:?}:\n{}", sluice.logs());
    assert!(
        exited - done < Duration::from_secs(3),
        "idle for {:?} before exiting",
        exited - done
    );
    assert!(
        sluice.logs().contains("drained: nothing in flight"),
        "{}",
        sluice.logs()
    );
    drop(net);
}

#[test]
fn sigquit_hands_the_sockets_to_an_upgraded_process_under_load() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_cluster, kubeconfig, net) = one_backend(81, "e2e-upgrade", "web", "upgrade.example");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("upgrade.sock");
    let sock = sock.to_str().unwrap();
    let mut old = Controller::start(&kubeconfig, &["--workers", "2", "--upgrade-sock", sock]);
    old.wait_for("route served", Duration::from_secs(10), |s| {
        s.get("upgrade.example", "/").is_ok_and(|r| r.status == 200)
    });
    let inodes = |c: &Controller| {
        let mut all = support::cluster::listen_inodes(c.http.port());
        all.extend(support::cluster::listen_inodes(c.https.port()));
        all
    };
    let before = inodes(&old);
    assert_eq!(
        before.len(),
        4,
        "two workers, each with an HTTP and an HTTPS socket"
    );

    let load = Load::start(old.http, "upgrade.example", "web", 2, 2);
    std::thread::sleep(Duration::from_millis(500));
    let mut new = old.upgrade(&kubeconfig);
    let quit = std::time::Instant::now();
    old.signal("QUIT");
    // The old process sends its sockets, serves beside the new one for Pingora's 5 s,
    // then stops accepting and drains.
    let status = old
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("old process still running:\n{}", old.logs()));
    eprintln!("old process exited {:?} after SIGQUIT", quit.elapsed());
    assert!(status.success(), "old exit {status:?}:\n{}", old.logs());
    assert!(
        old.logs().contains("listener sockets sent"),
        "{}",
        old.logs()
    );
    // The new process answers probes on the shared admin port and serves alone.
    new.wait_ready(Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    let stats = load.stop();
    eprintln!("{} requests across the upgrade", stats.ok);
    assert!(stats.failures.is_empty(), "{:#?}", stats.failures);
    assert!(stats.ok > 100, "only {} requests", stats.ok);
    assert!(
        new.try_wait().is_none(),
        "new process exited:\n{}",
        new.logs()
    );
    let r = new.get("upgrade.example", "/").unwrap();
    assert_eq!((r.status, r.backend()), (200, Some("web")));

    // Every worker's socket was handed over (the fd table keys matched), none re-bound.
    assert_eq!(
        inodes(&new),
        before,
        "listening sockets changed:\n{}",
        new.logs()
    );
    let held = support::cluster::socket_inodes_of(new.pid());
    assert!(
        before.is_subset(&held),
        "new process holds {held:?}, not {before:?}"
    );
    assert!(
        !new.logs().contains("not claimed by any service"),
        "{}",
        new.logs()
    );
    drop(net);
}

#[test]
fn websocket_survives_100_table_swaps() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = "e2e-ws";
    let (cluster, kubeconfig, net) = one_backend(82, ns, "ws", "ws.example");
    let sluice = Controller::start(&kubeconfig, &[]);
    sluice.wait_for("route served", Duration::from_secs(10), |s| {
        s.get("ws.example", "/").is_ok_and(|r| r.status == 200)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut req = format!("ws://{}/ws", sluice.http)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", "ws.example".parse().unwrap());
    let (mut ws, resp) = rt
        .block_on(tokio_tungstenite::connect_async(req))
        .expect("ws connect");
    assert_eq!(resp.status(), 101);
    rt.block_on(async {
        let hello = ws.next().await.unwrap().unwrap();
        assert_eq!(hello, Message::text("hello from ws"));
    });
    let mut echo = |text: String| {
        rt.block_on(async {
            ws.send(Message::text(text.clone())).await.expect("ws send");
            let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("no echo within 5 s")
                .expect("socket closed")
                .expect("ws read");
            assert_eq!(got, Message::text(text));
        })
    };
    let first = sluice.generation().unwrap();
    let started = std::time::Instant::now();
    for i in 0..100 {
        let before = sluice.generation().unwrap();
        // An unrelated Ingress changes on every round: each is a new table.
        cluster.apply(&paths_ingress(
            ns,
            "swap",
            Some("swap.example"),
            &[("Prefix", &format!("/v{i}"), "ws")],
        ));
        sluice.wait_for("table swapped", Duration::from_secs(5), |s| {
            s.generation().is_some_and(|g| g > before)
        });
        if i % 5 == 4 {
            echo(format!("after swap {i}"));
        }
    }
    let last = sluice.generation().unwrap();
    eprintln!(
        "generations {first}..{last} in {:?}; the WebSocket echoed throughout",
        started.elapsed()
    );
    assert!(last - first >= 100);
    assert_eq!(
        sluice.get("swap.example", "/v99").unwrap().backend(),
        Some("ws")
    );
    echo("still open".into());
    rt.block_on(ws.close(None)).unwrap();
    drop(net);
}
