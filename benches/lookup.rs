//! Micro-benchmarks of the request-path lookup: a table of 10,000 hosts and 50,000
//! paths (exact hosts, wildcard hosts, Exact and Prefix paths of depth 1–3), matched
//! for hits at each host level, deep prefixes, and misses that end in 404.
//! Also the time to translate 2,000 Ingresses into a table.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sluice::config::TranslateConfig;
use sluice::routing::{
    normalize_path, Backend, Endpoints, HostPattern, Match, PathKind, Route, RoutingTable,
};

const HOSTS: usize = 10_000;
const PATHS_PER_HOST: usize = 5;

fn big_table() -> RoutingTable {
    let mut t = RoutingTable::default();
    let backend = Arc::new(Backend::new(
        "bench",
        "svc",
        "80",
        Endpoints::Addrs(vec!["10.0.0.1:8080".parse().unwrap()]),
    ));
    for h in 0..HOSTS {
        // One host in ten is a wildcard.
        let host = if h % 10 == 0 {
            format!("*.w{h}.example.com")
        } else {
            format!("h{h}.example.com")
        };
        let rules = t.hosts.entry(&HostPattern::parse(Some(&host)));
        for p in 0..PATHS_PER_HOST {
            let (kind, path) = match p {
                0 => (PathKind::Prefix, "/".to_string()),
                1 => (PathKind::Prefix, format!("/api/v{h}")),
                2 => (PathKind::Prefix, format!("/api/v{h}/items/{p}")),
                3 => (PathKind::Exact, format!("/login/{h}")),
                _ => (PathKind::Prefix, format!("/static/{h}/assets")),
            };
            let route = Arc::new(Route::new(backend.clone(), "bench", &host, &path, kind));
            rules.insert(kind, &path, route).unwrap();
        }
    }
    t
}

fn lookup(c: &mut Criterion) {
    let t = big_table();
    assert_eq!(t.hosts.host_count(), HOSTS);
    let mut g = c.benchmark_group("lookup 10k hosts / 50k paths");
    let cases = [
        ("exact host, root", "h5001.example.com", "/index.html"),
        (
            "exact host, deep prefix",
            "h5001.example.com",
            "/api/v5001/items/2/detail/9",
        ),
        (
            "exact host, exact path",
            "H5001.example.com:443",
            "/login/5001",
        ),
        (
            "wildcard host",
            "x.w5000.example.com",
            "/static/5000/assets/app.js",
        ),
        ("unknown host (404)", "nowhere.example.org", "/a/b/c"),
        (
            "path needing normalisation",
            "h5001.example.com",
            "/api/v5001/./items/%32/x",
        ),
    ];
    for (name, host, path) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                let p = normalize_path(black_box(path)).unwrap();
                match t.lookup(black_box(host), &p) {
                    Match::Rule(r) => black_box(r.path.len()),
                    Match::Default(_) | Match::NotFound => 0,
                }
            })
        });
    }
    g.finish();
}

fn translate_2000_ingresses(c: &mut Criterion) {
    let mut yaml = String::from("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: sluice.dev/ingress-controller}\n");
    for i in 0..2000 {
        yaml += &format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing{i}, namespace: ns{ns}}}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: h{i}.example.com\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{number: 80}}}}}}}}\n      - {{path: /api, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{number: 80}}}}}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: ns{ns}}}\nspec: {{ports: [{{port: 80, targetPort: 8080}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc{i}-1, namespace: ns{ns}, labels: {{kubernetes.io/service-name: svc{i}}}}}\naddressType: IPv4\nports: [{{port: 8080}}]\nendpoints: [{{addresses: [10.1.{a}.{b}]}}, {{addresses: [10.2.{a}.{b}]}}]\n",
            ns = i % 50,
            a = i / 250,
            b = i % 250,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yaml"), yaml).unwrap();
    let mut md = sluice::source::manifests::ManifestDir::new(dir.path());
    let snapshot = md.load().unwrap().snapshot;
    let config = TranslateConfig::default();
    c.bench_function("translate 2000 Ingresses", |b| {
        b.iter(|| {
            black_box(
                sluice::translate::translate(&snapshot, &config)
                    .table
                    .stats
                    .paths,
            )
        })
    });
}

criterion_group!(benches, lookup, translate_2000_ingresses);
criterion_main!(benches);
