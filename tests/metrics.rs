//! `/metrics` through the real binary: ingress-nginx's metric names and labels with the
//! right counts after real requests, accepted by a Prometheus text-format parser.

mod support;

use prometheus_parse::{Sample, Scrape, Value};
use support::tls::{https_get, start_tls, Cert};
use support::{client, Echo, INGRESS_CLASS};

fn scrape(admin: std::net::SocketAddr) -> Scrape {
    let text = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .collect()
}

fn value(s: &Sample) -> f64 {
    match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn metrics_count_requests_with_ingress_nginx_names_and_labels() {
    let app = Echo::start("app");
    let cert = Cert::ecdsa("shop.example", &["shop.example"]);
    let mut m = String::from(INGRESS_CLASS);
    m += &cert.secret("shop-tls");
    m += "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: shop, namespace: default}\nspec:\n  ingressClassName: nginx\n  tls: [{hosts: [shop.example], secretName: shop-tls}]\n  rules:\n  - host: shop.example\n    http:\n      paths:\n      - {path: /api, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}\n";
    m += &app.manifests("app");
    let (s, https) = start_tls(&[("m.yaml", &m)], &[]);
    for i in 0..5 {
        let r = https_get(https, "shop.example", &format!("/api/items/{i}"));
        assert_eq!(r.status, 200);
    }
    for _ in 0..2 {
        let r = https_get(https, "shop.example", "/api/x?status=503");
        assert_eq!(r.status, 503);
    }
    for _ in 0..3 {
        assert_eq!(s.get("nowhere.example", "/").status, 404);
    }

    let scrape = scrape(s.admin);
    let route = [
        ("host", "shop.example"),
        ("ingress", "shop"),
        ("namespace", "default"),
        ("path", "/api"),
        ("service", "app"),
        ("method", "GET"),
    ];
    let with = |status: &'static str| {
        let mut l = route.to_vec();
        l.push(("status", status));
        l
    };
    let ok = find(&scrape, "nginx_ingress_controller_requests", &with("200"));
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(value(ok[0]), 5.0);
    // Labels are bounded: the rule path, never /api/items/N.
    assert!(find(
        &scrape,
        "nginx_ingress_controller_requests",
        &[("path", "/api/items/0")]
    )
    .is_empty());
    assert_eq!(
        ok[0].labels.get("controller_class"),
        Some("sluice.dev/ingress-controller")
    );
    let unavailable = find(&scrape, "nginx_ingress_controller_requests", &with("503"));
    assert_eq!(value(unavailable[0]), 2.0);
    let unmatched = find(
        &scrape,
        "nginx_ingress_controller_requests",
        &[("status", "404"), ("ingress", "")],
    );
    assert_eq!(value(unmatched[0]), 3.0);
    // Histograms: 5 observations in the 200 series.
    for h in [
        "nginx_ingress_controller_request_duration_seconds",
        "nginx_ingress_controller_response_duration_seconds",
        "nginx_ingress_controller_request_size",
        "nginx_ingress_controller_response_size",
        "nginx_ingress_controller_bytes_sent",
    ] {
        let series = find(&scrape, h, &with("200"));
        assert_eq!(series.len(), 1, "{h}");
        match &series[0].value {
            Value::Histogram(buckets) => {
                let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
                assert_eq!(total, 5.0, "{h}: {buckets:?}");
            }
            other => panic!("{h}: {other:?}"),
        }
    }
    let expiry = find(
        &scrape,
        "nginx_ingress_controller_ssl_expire_time_seconds",
        &[("host", "shop.example"), ("secret_name", "shop-tls")],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(value(expiry[0]) > now + 25.0 * 86400.0, "{expiry:?}");
    let ok = find(
        &scrape,
        "nginx_ingress_controller_config_last_reload_successful",
        &[],
    );
    assert_eq!(value(ok[0]), 1.0);
    assert!(value(find(&scrape, "sluice_table_generation", &[])[0]) >= 1.0);
    assert_eq!(
        value(find(&scrape, "sluice_objects", &[("kind", "Ingress")])[0]),
        1.0
    );
    let reused = find(&scrape, "sluice_upstream_connections", &[]);
    let total: f64 = reused.iter().map(|s| value(s)).sum();
    assert_eq!(
        total, 7.0,
        "one upstream connection use per proxied request: {reused:?}"
    );
}
