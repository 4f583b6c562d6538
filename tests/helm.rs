//! The Helm chart (helm/sluice): `helm lint`, what `helm template` renders with default
//! values, with every optional feature (tests/helm/all-features.yaml) and as a
//! DaemonSet, values the chart must refuse, its RBAC against config/rbac/sluice.yaml,
//! its flags against the binary's, and, on a real kube-apiserver (e2e/k8s), strict
//! server-side validation of every rendering, `helm install`/`upgrade` (the session
//! cookie key survives upgrades), and sluice run with the installed Deployment's
//! arguments under the chart's ServiceAccount.
//!
//! helm is built from its Go module by e2e/helm/build.sh (`$SLUICE_HELM`, or built on
//! first use). The cluster test is serialised like tests/e2e_cluster.rs's; cargo runs
//! test binaries one after another, and a concurrent run elsewhere gets its own
//! control plane (random ports, own directory) and uses no network namespace.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::{Cluster, Controller};
use support::helm::{self, docs, kind, name, one, template, try_template};

/// Serialises the scenarios that start a control plane (see tests/e2e_cluster.rs).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn all_features() -> String {
    helm::repo()
        .join("tests/helm/all-features.yaml")
        .to_str()
        .unwrap()
        .to_string()
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter().map(|d| kind(d).to_string()).collect()
}

fn container(workload: &Value) -> &Value {
    let containers = workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn args(workload: &Value) -> Vec<String> {
    container(workload)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn env_names(workload: &Value) -> Vec<String> {
    container(workload)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn chart_lints() {
    let chart = helm::chart();
    let chart = chart.to_str().unwrap();
    let af = all_features();
    for extra in [
        vec![],
        vec!["-f", af.as_str()],
        vec!["--set", "controller.kind=DaemonSet"],
    ] {
        let mut a = vec!["lint", "--strict", chart];
        a.extend(extra.iter().copied());
        let out = helm::helm(&a).unwrap_or_else(|e| panic!("helm {a:?}:\n{e}"));
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

#[test]
fn default_rendering_is_ingress_nginx_shaped_and_locked_down() {
    let d = docs(&template(&[]));
    assert_eq!(
        kinds(&d),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "IngressClass",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount"
        ]
        .map(String::from)
        .into_iter()
        .collect::<BTreeSet<_>>(),
        "default values render no optional objects"
    );

    // IngressClass `nginx`, claimed by sluice's own default controller class.
    let class = one(&d, "IngressClass");
    assert_eq!(name(class), "nginx");
    assert_eq!(
        class["spec"]["controller"],
        sluice::config::DEFAULT_CONTROLLER_CLASS
    );
    assert!(class["metadata"]["annotations"].is_null(), "not default");

    let deploy = one(&d, "Deployment");
    assert_eq!(name(deploy), "sluice-controller");
    assert_eq!(deploy["spec"]["replicas"], 1);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "sluice");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    // 5 s shutdown grace + 240 s worker-shutdown-timeout + 10 s to exit.
    assert_eq!(pod["terminationGracePeriodSeconds"], 255);
    let c = container(deploy);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "admin");
    }
    let ports: Vec<(String, i64)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [("http", 8080), ("https", 8443), ("admin", 10254)].map(|(n, p)| (n.to_string(), p))
    );
    assert_eq!(
        args(deploy),
        [
            "--http-listen=0.0.0.0:8080",
            "--https-listen=0.0.0.0:8443",
            "--admin-listen=0.0.0.0:10254",
            "--controller-class=sluice.dev/ingress-controller",
            "--ingress-class=nginx",
            "--configmap=sluice-system/sluice-controller",
            "--election-id=sluice-leader",
            "--publish-service=sluice-system/sluice-controller",
        ]
    );
    assert_eq!(
        env_names(deploy),
        [
            "POD_NAME",
            "POD_NAMESPACE",
            "SLUICE_SESSION_COOKIE_KEY",
            "RUST_LOG"
        ]
    );
    let env = c["env"].as_array().unwrap();
    assert_eq!(
        env[0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env[1]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        env[2]["valueFrom"]["secretKeyRef"],
        json!({"name": "sluice-session-cookie", "key": "session-cookie-key"})
    );
    // The read-only root filesystem leaves /tmp as the only writable place.
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/tmp");

    // A generated session cookie key (random per rendering without a cluster).
    let secret = one(&d, "Secret");
    assert_eq!(name(secret), "sluice-session-cookie");
    let key = secret["data"]["session-cookie-key"].as_str().unwrap();
    assert!(key.len() >= 64, "48 random characters, base64: {key}");

    // LoadBalancer Service: 80 -> http (8080), 443 -> https (8443).
    let svc = one(&d, "Service");
    assert_eq!(name(svc), "sluice-controller");
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert!(svc["spec"]["externalTrafficPolicy"].is_null());
    let sp: Vec<(i64, &str)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["port"].as_i64().unwrap(),
                p["targetPort"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(sp, [(80, "http"), (443, "https")]);
    assert_eq!(
        svc["spec"]["selector"],
        deploy["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(
        one(&d, "ConfigMap")["data"],
        json!({}),
        "an empty ConfigMap: sluice's defaults"
    );
}

#[test]
fn every_feature_renders() {
    let d = docs(&template(&["-f", &all_features()]));
    let k = kinds(&d);
    for want in [
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "IPAddressPool",
        "L2Advertisement",
    ] {
        assert!(k.contains(want), "{want} missing from {k:?}");
    }
    let deploy = one(&d, "Deployment");
    assert!(
        deploy["spec"]["replicas"].is_null(),
        "the HPA owns the replica count"
    );
    let a = args(deploy);
    for want in [
        "--watch-ingress-without-class",
        "--election-id=sluice-all-features",
        "--shutdown-grace-period=10",
        "--default-ssl-certificate=sluice-system/default-tls",
        "--no-access-log",
        "--watch-namespace=team-a",
        "--watch-namespace=team-b",
        "--workers=2",
    ] {
        assert!(a.contains(&want.to_string()), "{want} missing from {a:?}");
    }
    let pod = &deploy["spec"]["template"]["spec"];
    // 10 s grace + worker-shutdown-timeout 4m + 10 s.
    assert_eq!(pod["terminationGracePeriodSeconds"], 260);
    assert_eq!(
        container(deploy)["image"],
        "registry.example.com/sluice@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    );
    assert!(env_names(deploy).contains(&"SLUICE_EXTRA".to_string()));

    let secret = one(&d, "Secret");
    assert_eq!(
        secret["data"]["session-cookie-key"], "YS1maXhlZC1rZXktc2hhcmVkLWJ5LWV2ZXJ5LXJlcGxpY2E=",
        "the given key, base64"
    );
    let cm = one(&d, "ConfigMap");
    assert_eq!(
        cm["data"]["keep-alive-requests"], "1000",
        "numbers as strings"
    );
    assert_eq!(cm["data"]["hsts"], "false");
    assert_eq!(cm["data"]["worker-shutdown-timeout"], "4m");

    let class = one(&d, "IngressClass");
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );

    let svc = d
        .iter()
        .find(|o| kind(o) == "Service" && name(o) == "sluice-controller")
        .unwrap();
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
    let ann = &svc["metadata"]["annotations"];
    assert_eq!(ann["metallb.universe.tf/loadBalancerIPs"], "192.0.2.10");
    assert_eq!(ann["metallb.universe.tf/address-pool"], "sluice");
    assert_eq!(ann["example.com/owner"], "platform");
    assert!(
        svc["spec"]["loadBalancerIP"].is_null(),
        "MetalLB gets the annotation, not the deprecated field as well"
    );

    let pool = one(&d, "IPAddressPool");
    assert_eq!(pool["metadata"]["namespace"], "metallb-system");
    assert_eq!(
        pool["spec"],
        json!({"addresses": ["192.0.2.10-192.0.2.20", "198.51.100.0/28"], "autoAssign": false})
    );
    assert_eq!(
        one(&d, "L2Advertisement")["spec"],
        json!({"ipAddressPools": ["sluice"], "interfaces": ["eth0"]})
    );

    let metrics = d
        .iter()
        .find(|o| kind(o) == "Service" && name(o) == "sluice-controller-metrics")
        .expect("metrics Service");
    let sm = one(&d, "ServiceMonitor");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &metrics["metadata"]["labels"][k], v,
            "ServiceMonitor selects {k}"
        );
    }
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "admin");

    let np = one(&d, "NetworkPolicy");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        one(&d, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"],
        "sluice-controller"
    );
    assert_eq!(one(&d, "PodDisruptionBudget")["spec"]["minAvailable"], 1);

    // Without MetalLB a fixed address goes into spec.loadBalancerIP.
    let d = docs(&template(&[
        "--set",
        "controller.service.loadBalancerIP=192.0.2.7",
    ]));
    let svc = one(&d, "Service");
    assert_eq!(svc["spec"]["loadBalancerIP"], "192.0.2.7");
    assert!(svc["metadata"]["annotations"].is_null());
}

#[test]
fn daemonset_and_refused_values() {
    let d = docs(&template(&[
        "--set",
        "controller.kind=DaemonSet",
        "--set",
        "controller.autoscaling.enabled=true",
        "--set",
        "controller.hostNetwork=true",
    ]));
    let ds = one(&d, "DaemonSet");
    assert!(ds["spec"]["replicas"].is_null());
    assert!(!kinds(&d).contains("Deployment"));
    assert!(
        !kinds(&d).contains("HorizontalPodAutoscaler"),
        "no HPA for a DaemonSet"
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");

    // An explicit grace period that covers the drain is kept.
    let d = docs(&template(&[
        "--set",
        "controller.terminationGracePeriodSeconds=300",
    ]));
    assert_eq!(
        one(&d, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        300
    );
    // worker-shutdown-timeout in nginx time units, milliseconds rounded up.
    let d = docs(&template(&[
        "--set-string",
        "controller.config.worker-shutdown-timeout=1m30s 1500ms",
    ]));
    assert_eq!(
        one(&d, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        5 + 92 + 10
    );

    for (set, why) in [
        ("controller.kind=StatefulSet", "Deployment or DaemonSet"),
        (
            "controller.terminationGracePeriodSeconds=30",
            "shorter than sluice's drain",
        ),
        (
            "controller.config.worker-shutdown-timeout=soon",
            "is not an nginx time",
        ),
        (
            "controller.metrics.serviceMonitor.enabled=true",
            "needs controller.metrics.enabled",
        ),
        ("metallb.enabled=true", "needs metallb.addresses"),
    ] {
        let err = try_template(&["--set", set]).expect_err(set);
        assert!(err.contains(why), "--set {set}: {err}");
    }
}

/// What RBAC objects say, without the labels and annotations the chart adds.
fn rbac_essence(v: &Value) -> Value {
    let mut v = v.clone();
    let meta = v["metadata"].as_object_mut().unwrap();
    meta.retain(|k, _| k == "name" || k == "namespace");
    v
}

#[test]
fn chart_rbac_is_config_rbac() {
    let file = std::fs::read_to_string(helm::repo().join("config/rbac/sluice.yaml")).unwrap();
    let mut config: Vec<Value> = docs(&file)
        .iter()
        .filter(|d| kind(d) != "Namespace")
        .map(rbac_essence)
        .collect();
    let mut chart: Vec<Value> = docs(&template(&[]))
        .iter()
        .filter(|d| helm::RBAC_KINDS.contains(&kind(d)))
        .map(rbac_essence)
        .collect();
    // The chart also says automountServiceAccountToken: true, the API's default.
    for sa in chart.iter_mut().filter(|d| kind(d) == "ServiceAccount") {
        assert_eq!(sa["automountServiceAccountToken"], true);
        sa.as_object_mut()
            .unwrap()
            .remove("automountServiceAccountToken");
    }
    let key = |v: &Value| format!("{}/{}", kind(v), name(v));
    config.sort_by_key(key);
    chart.sort_by_key(key);
    assert_eq!(
        chart.iter().map(key).collect::<Vec<_>>(),
        config.iter().map(key).collect::<Vec<_>>()
    );
    for (c, f) in chart.iter().zip(&config) {
        assert_eq!(c, f, "{} differs from config/rbac/sluice.yaml", key(c));
    }
    // Nothing broader than sluice needs: no wildcard, no get on secrets, writes only to
    // ingresses/status, events and the one Lease.
    for obj in &chart {
        for rule in obj["rules"].as_array().into_iter().flatten() {
            let s = rule.to_string();
            assert!(!s.contains('*'), "wildcard in {s}");
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let resources = rule["resources"].to_string();
            if verbs.iter().any(|v| !["list", "watch"].contains(v)) {
                assert!(
                    ["ingresses/status", "events", "leases"]
                        .iter()
                        .any(|r| resources == format!("[\"{r}\"]")),
                    "write access beyond status, events and the Lease: {s}"
                );
            }
        }
    }
}

/// The long flags a rendering passes, with whether each carries a value.
fn flags_of(rendered: &str) -> Vec<(String, bool)> {
    let d = docs(rendered);
    let workload = d
        .iter()
        .find(|o| kind(o) == "Deployment" || kind(o) == "DaemonSet")
        .unwrap();
    args(workload)
        .iter()
        .map(|a| {
            let a = a.strip_prefix("--").expect("a long flag");
            match a.split_once('=') {
                Some((f, _)) => (f.to_string(), true),
                None => (a.to_string(), false),
            }
        })
        .collect()
}

#[test]
fn chart_flags_are_sluice_flags() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let af = all_features();
    let renderings = [template(&[]), template(&["-f", &af])];
    for rendered in &renderings {
        for (flag, valued) in flags_of(rendered) {
            let line = help
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(&format!("--{flag} ")) || *l == format!("--{flag}"))
                .unwrap_or_else(|| panic!("sluice has no --{flag}:\n{help}"));
            assert_eq!(
                line.contains('<'),
                valued,
                "--{flag}: the chart and the binary disagree on whether it takes a value ({line})"
            );
        }
    }
}

fn ingress(ns: &str, name: &str, class: &str, host: &str, tls: bool) -> String {
    let tls = if tls {
        format!("  tls: [{{hosts: [{host}], secretName: missing}}]\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ingressClassName: {class}\n{tls}  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
    )
}

#[test]
fn chart_on_a_real_apiserver() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start();
    let kubeconfig = cluster.kubeconfig.to_str().unwrap().to_string();

    // CRDs of the optional kinds, then every rendering validated strictly server-side.
    let crds = std::fs::read_to_string(helm::repo().join("tests/helm/crds.yaml")).unwrap();
    cluster.apply(&crds);
    cluster.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/ipaddresspools.metallb.io",
        "crd/l2advertisements.metallb.io",
        "--timeout=60s",
    ]);
    cluster.namespace(helm::NAMESPACE);
    cluster.namespace("metallb-system");
    let af = all_features();
    let renderings = [
        ("defaults", template(&[])),
        ("all features", template(&["-f", &af])),
        (
            "DaemonSet",
            template(&["-f", &af, "--set", "controller.kind=DaemonSet"]),
        ),
    ];
    for (what, rendered) in &renderings {
        let out = cluster
            .try_kubectl(
                &[
                    "apply",
                    "--server-side",
                    "--dry-run=server",
                    "--validate=strict",
                    "-f",
                    "-",
                ],
                Some(rendered),
            )
            .unwrap_or_else(|e| panic!("API server refused the chart ({what}):\n{e}"));
        let applied = out
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        assert_eq!(applied, docs(rendered).len(), "{what}:\n{out}");
    }

    // A real install, then an upgrade: the generated session cookie key is kept.
    let chart = helm::chart();
    let install = |extra: &[&str]| {
        let mut a = vec![
            "upgrade",
            "--install",
            helm::RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            helm::NAMESPACE,
            "--kubeconfig",
            &kubeconfig,
            "--set-string",
            "controller.config.http-redirect-code=301",
        ];
        a.extend_from_slice(extra);
        helm::helm(&a).unwrap_or_else(|e| panic!("helm {a:?}:\n{e}"))
    };
    let notes = install(&[]);
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert!(
        notes.contains("kubectl create ingress web --class=nginx"),
        "NOTES.txt:\n{notes}"
    );
    let cookie_key = || {
        cluster.kubectl(&[
            "get",
            "secret",
            "sluice-session-cookie",
            "-n",
            helm::NAMESPACE,
            "-o",
            "jsonpath={.data.session-cookie-key}",
        ])
    };
    let first = cookie_key();
    assert!(first.len() >= 64, "{first:?}");
    install(&["--set", "controller.replicaCount=2"]);
    assert_eq!(cookie_key(), first, "an upgrade keeps the generated key");
    assert_eq!(
        cluster.kubectl(&[
            "get",
            "deployment",
            "sluice-controller",
            "-n",
            helm::NAMESPACE,
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2"
    );

    // sluice with the installed Deployment's arguments (listen addresses aside: the
    // harness picks free loopback ports) and the chart's ServiceAccount.
    let deploy: Value = serde_json::from_str(&cluster.kubectl(&[
        "get",
        "deployment",
        "sluice-controller",
        "-n",
        helm::NAMESPACE,
        "-o",
        "json",
    ]))
    .unwrap();
    let chart_args: Vec<String> = args(&deploy)
        .into_iter()
        .filter(|a| !a.contains("-listen="))
        .collect();
    let extra: Vec<&str> = chart_args.iter().map(String::as_str).collect();
    let sa_kubeconfig = cluster.sluice_kubeconfig();
    cluster.namespace("demo");
    cluster.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n");
    cluster.apply(&ingress("demo", "web", "nginx", "web.example", false));
    cluster.apply(&ingress("demo", "secure", "nginx", "secure.example", true));
    cluster.apply("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: other}\nspec: {controller: example.com/other}\n");
    cluster.apply(&ingress(
        "demo",
        "foreign",
        "other",
        "foreign.example",
        false,
    ));
    let sluice = Controller::start(&sa_kubeconfig, &extra);

    // Served through the chart's IngressClass: a route without endpoints answers 503;
    // another class's Ingress gets nothing.
    sluice.wait_for("web.example routed", Duration::from_secs(10), |s| {
        s.get("web.example", "/").is_ok_and(|r| r.status == 503)
    });
    assert_eq!(sluice.get("foreign.example", "/").unwrap().status, 404);
    // The chart's ConfigMap is the one sluice reads: http-redirect-code 301.
    let r = sluice.get("secure.example", "/x").unwrap();
    assert_eq!(r.status, 301, "{r:?}");

    // The address of the chart's Service reaches the Ingress status: sluice watched the
    // publish Service and won the election on the chart's Lease.
    cluster.kubectl(&[
        "patch",
        "service",
        "sluice-controller",
        "-n",
        helm::NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.80"}]}}}"#,
    ]);
    let status_ip = |name: &str| {
        cluster
            .kubectl(&[
                "get",
                "ingress",
                name,
                "-n",
                "demo",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ])
            .trim()
            .to_string()
    };
    sluice.wait_for("status address published", Duration::from_secs(10), |_| {
        status_ip("web") == "192.0.2.80"
    });
    assert_eq!(status_ip("foreign"), "");
    let holder = cluster.kubectl(&[
        "get",
        "lease",
        "sluice-leader",
        "-n",
        helm::NAMESPACE,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(!holder.is_empty(), "the chart's Lease has a holder");
    // The warning about the missing TLS Secret became an Event (events.k8s.io).
    sluice.wait_for("warning Event", Duration::from_secs(10), |_| {
        cluster
            .kubectl(&["get", "events.events.k8s.io", "-n", "demo", "-o", "json"])
            .contains("secure")
    });
    let logs = sluice.logs();
    for forbidden in ["forbidden", "Forbidden"] {
        assert!(
            !logs.contains(forbidden),
            "sluice hit a permission the chart lacks:\n{logs}"
        );
    }
}
