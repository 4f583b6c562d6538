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

/// One `GET` on its own connection (`Connection: close`), so that requests spread over
/// the workers' SO_REUSEPORT sockets; returns the status code.
fn raw_get(addr: std::net::SocketAddr, host: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let head = String::from_utf8_lossy(&out);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The summed value of every `metric` sample with `labels`.
fn total(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    find(s, metric, labels).iter().map(|x| value(x)).sum()
}

fn shop_manifests(app: &Echo, extra: &str) -> String {
    let mut m = String::from(INGRESS_CLASS);
    m += &support::ingress(
        "shop",
        "2026-01-01T00:00:00Z",
        Some("shop.example"),
        &[("Prefix", "/api", "app")],
    );
    m += &app.manifests("app");
    m += extra;
    m
}

#[test]
fn metrics_totals_match_requests_across_workers_and_table_swaps() {
    let app = Echo::start("app");
    let s = support::Sluice::start(
        &[("m.yaml", &shop_manifests(&app, ""))],
        &["--workers", "2"],
    );
    // Concurrent clients, one new connection per request: both workers count.
    let burst = |n: usize| {
        std::thread::scope(|t| {
            for c in 0..4 {
                let http = s.http;
                t.spawn(move || {
                    for i in 0..n {
                        assert_eq!(raw_get(http, "shop.example", &format!("/api/{c}/{i}")), 200);
                    }
                });
            }
        });
    };
    burst(50);
    let route = [("ingress", "shop"), ("path", "/api"), ("status", "200")];
    let before = scrape(s.admin);
    assert_eq!(
        total(&before, "nginx_ingress_controller_requests", &route),
        200.0
    );
    let generation = total(&before, "sluice_table_generation", &[]);
    // A new table (one more Ingress): the route's series carries on.
    s.write(
        "m.yaml",
        &shop_manifests(
            &app,
            &support::ingress(
                "other",
                "2026-01-01T00:00:00Z",
                Some("other.example"),
                &[("Prefix", "/", "app")],
            ),
        ),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while total(&scrape(s.admin), "sluice_table_generation", &[]) <= generation {
        assert!(
            std::time::Instant::now() < deadline,
            "table not republished"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    burst(25);
    assert_eq!(raw_get(s.http, "other.example", "/"), 200);
    let after = scrape(s.admin);
    assert_eq!(
        total(&after, "nginx_ingress_controller_requests", &route),
        300.0
    );
    // Every histogram counted every request too.
    for h in [
        "nginx_ingress_controller_request_duration_seconds_count",
        "nginx_ingress_controller_response_duration_seconds_count",
        "nginx_ingress_controller_request_size_count",
        "nginx_ingress_controller_response_size_count",
        "nginx_ingress_controller_bytes_sent_count",
    ] {
        assert_eq!(total(&after, h, &route), 300.0, "{h}");
    }
    assert_eq!(
        total(
            &after,
            "nginx_ingress_controller_requests",
            &[("ingress", "other")]
        ),
        1.0
    );
}

#[test]
fn metric_series_stay_bounded_under_random_hosts_and_paths() {
    let app = Echo::start("app");
    let s = support::Sluice::start(
        &[("m.yaml", &shop_manifests(&app, ""))],
        &["--workers", "2"],
    );
    let mut rng = fastrand::Rng::with_seed(11);
    let word = |rng: &mut fastrand::Rng| -> String {
        (0..12)
            .map(|_| rng.alphanumeric().to_ascii_lowercase())
            .collect()
    };
    let mut sent = 0;
    for i in 0..300 {
        let path = format!(
            "/{}/{}",
            if i % 2 == 0 { "api" } else { "x" },
            word(&mut rng)
        );
        let host = if i % 3 == 0 {
            "shop.example".to_string()
        } else {
            format!("{}.example", word(&mut rng))
        };
        raw_get(s.http, &host, &path);
        sent += 1;
    }
    let scrape = scrape(s.admin);
    let series: Vec<_> = find(&scrape, "nginx_ingress_controller_requests", &[]);
    // shop.example/api (200), shop.example/x and every random host (404, no route):
    // a handful of series, however many hosts and paths clients make up.
    assert!(series.len() <= 4, "{series:#?}");
    let sum: f64 = series.iter().map(|x| value(x)).sum();
    assert_eq!(sum, f64::from(sent));
    for x in &series {
        let host = x.labels.get("host").unwrap_or_default();
        assert!(host == "shop.example" || host.is_empty(), "{x:?}");
        let path = x.labels.get("path").unwrap_or_default();
        assert!(path == "/api" || path.is_empty(), "{x:?}");
    }
}
