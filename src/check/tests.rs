//! `sluice check` unit tests: loading, classification and rendering.
use super::*;
use crate::translate::object::ANNOTATION_PREFIX;

fn run(yaml: &str) -> Report {
    let input = load(&["-".into()], &mut yaml.as_bytes());
    check(input, &TranslateConfig::default())
}

const ING: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  ingressClassName: nginx\n  tls: [{hosts: [a.example], secretName: a-tls}]\n  rules:\n  - host: a.example\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n";

#[test]
fn missing_objects_are_reported_only_where_the_input_has_that_kind() {
    let has = |r: &Report, reason: &str| r.ingresses[0].problems.iter().any(|p| p.reason == reason);
    // No Service, Secret or endpoints at all: nothing to complain about.
    let r = run(ING);
    assert_eq!(r.summary.exit_code, 0, "{}", r.to_text());
    assert_eq!(
        r.assumptions[1..],
        [
            "no Services in the input: references to Services are not checked",
            "no Secrets in the input: references to Secrets are not checked",
        ],
        "{:?}",
        r.assumptions
    );

    // A Service in another namespace says nothing about this one.
    let elsewhere = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: other}\nspec: {ports: [{port: 80}]}\n";
    let r = run(&format!("{ING}{elsewhere}"));
    assert!(!has(&r, "BackendUnavailable"), "{}", r.to_text());
    assert!(r
        .assumptions
        .contains(&"no Services in the input for namespace shop: there, references to Services are not checked".to_string()));

    // A Service of another name in the same namespace: the input speaks for it.
    let svc = "---\napiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
    let r = run(&format!("{ING}{svc}"));
    assert!(has(&r, "BackendUnavailable"), "{}", r.to_text());
    // Secrets still absent: the missing TLS Secret is not reported.
    assert!(!has(&r, "InvalidTlsSecret"));

    let secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: other, namespace: shop}\ntype: Opaque\n";
    let r = run(&format!("{ING}{secret}"));
    assert!(has(&r, "InvalidTlsSecret"), "{}", r.to_text());

    // The Service itself, without endpoints: judged only once endpoints are given.
    let web = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
    let r = run(&format!("{ING}{web}"));
    assert_eq!(r.summary.exit_code, 0, "{}", r.to_text());
    let slice = "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: other-1, namespace: shop, labels: {kubernetes.io/service-name: other}}\naddressType: IPv4\nendpoints: []\n";
    let r = run(&format!("{ING}{web}{slice}"));
    assert!(has(&r, "NoReadyEndpoints"), "{}", r.to_text());
}

#[test]
fn annotation_statuses() {
    let yaml = ING.replace(
        "  namespace: shop\n",
        "  namespace: shop\n  annotations:\n    nginx.ingress.kubernetes.io/rewrite-target: /\n    nginx.ingress.kubernetes.io/proxy-ssl-verify-depth: \"2\"\n    nginx.ingress.kubernetes.io/mirror-target: http://m\n    nginx.ingress.kubernetes.io/rewrite-traget: /\n    nginx.ingress.kubernetes.io/server-snippet: x\n    nginx.ingress.kubernetes.io/proxy-body-size: 8MB\n    ngnix.ingress.kubernetes.io/ssl-redirect: \"false\"\n    cert-manager.io/cluster-issuer: le\n",
    );
    let r = run(&yaml);
    let got: Vec<(&str, Status)> = r.ingresses[0]
        .annotations
        .iter()
        .map(|a| (a.key.as_str(), a.status))
        .collect();
    let p = ANNOTATION_PREFIX;
    assert_eq!(
        got,
        vec![
            (&*format!("{p}mirror-target"), Status::Unsupported),
            (&*format!("{p}proxy-body-size"), Status::Invalid),
            (&*format!("{p}proxy-ssl-verify-depth"), Status::Differs),
            (&*format!("{p}rewrite-target"), Status::Supported),
            (&*format!("{p}rewrite-traget"), Status::Unknown),
            (&*format!("{p}server-snippet"), Status::Refused),
            ("ngnix.ingress.kubernetes.io/ssl-redirect", Status::Unknown),
        ]
    );
    assert!(r.ingresses[0].problems.is_empty(), "{}", r.to_text());
    assert_eq!(r.summary.exit_code, 2);
}

#[test]
fn whitelist_warnings_land_on_the_whitelist_key() {
    let yaml = ING.replace(
        "  namespace: shop\n",
        "  namespace: shop\n  annotations:\n    nginx.ingress.kubernetes.io/whitelist-source-range: 10.0.0.0/33\n",
    );
    let r = run(&yaml);
    let a = &r.ingresses[0].annotations[0];
    assert_eq!(a.status, Status::Invalid);
    assert_eq!(a.messages.len(), 1, "{}", r.to_text());
    assert!(r.ingresses[0].problems.is_empty());
}

#[test]
fn proxy_next_upstream_statuses_apply_without_a_warning() {
    let yaml = ING.replace(
        "  namespace: shop\n",
        "  namespace: shop\n  annotations:\n    nginx.ingress.kubernetes.io/backend-protocol: HTTPS\n    nginx.ingress.kubernetes.io/proxy-ssl-verify: \"off\"\n    nginx.ingress.kubernetes.io/proxy-next-upstream: error http_503\n",
    );
    let r = run(&yaml);
    let a = r.ingresses[0]
        .annotations
        .iter()
        .find(|a| a.key.ends_with("/proxy-next-upstream"))
        .unwrap();
    assert_eq!(a.status, Status::Differs);
    assert!(
        a.messages.iter().all(|m| !m.contains("not applied")),
        "{:?}",
        a.messages
    );
}

#[test]
fn reasons_for_not_serving() {
    let other = ING.replace("ingressClassName: nginx", "ingressClassName: traefik");
    let r = run(&other);
    assert!(!r.ingresses[0].served);
    assert!(r.ingresses[0]
        .ignored_reason
        .as_deref()
        .unwrap()
        .contains("IngressClass traefik is not in the input"));
    assert_eq!(r.summary.exit_code, 1);

    let class = "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: k8s.io/ingress-nginx}\n";
    let r = run(&format!("{ING}{class}"));
    assert!(r.ingresses[0]
        .ignored_reason
        .as_deref()
        .unwrap()
        .contains("--controller-class k8s.io/ingress-nginx"));
    let config = TranslateConfig {
        controller_class: "k8s.io/ingress-nginx".into(),
        ..TranslateConfig::default()
    };
    let r = check(
        load(&["-".into()], &mut format!("{ING}{class}").as_bytes()),
        &config,
    );
    assert!(r.ingresses[0].served, "{}", r.to_text());
}

#[test]
fn severities() {
    assert_eq!(Severity::of_reason("PathConflict"), Severity::Error);
    assert_eq!(Severity::of_reason("InvalidSomethingNew"), Severity::Error);
    assert_eq!(Severity::of_reason("CertificateExpired"), Severity::Warning);
    assert_eq!(Severity::of_reason("SomethingNew"), Severity::Warning);
}
