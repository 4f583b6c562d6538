//! Canary Ingresses and host-level routing annotations through the real `sluice`
//! binary in standalone mode, with real `sluice-echo` backends: which backend answered
//! (`x-backend`), what it received, and what the client got (status, Location, cookies,
//! certificates).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::tls::{common_name, https_get, served_cert, start_tls, Cert, FAKE_CN};
use support::{client, Echo, Reply, Sluice, INGRESS_CLASS};

/// An Ingress with annotations (keys without the prefix) and `(pathType, path, service)`
/// rules on `host` (all Services on port 80).
fn ing(
    name: &str,
    created: &str,
    host: &str,
    paths: &[(&str, &str, &str)],
    annotations: &[(&str, &str)],
) -> String {
    support::objects::MkIngress {
        name,
        host: Some(host),
        paths,
        annotations,
        created: Some(created),
        ..support::objects::MkIngress::default()
    }
    .yaml()
}

/// A Service `svc` (port 80) without any endpoint.
fn empty_service(svc: &str) -> String {
    format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: default}}\nspec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n")
}

/// GET host/path with extra headers on a shared client.
fn get(
    c: &reqwest::blocking::Client,
    s: &Sluice,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut r = c.get(s.url(path)).header("Host", host);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    Reply::from(r.send().unwrap())
}

/// Host, request headers, the backend that must answer.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

fn backend_of(r: &Reply) -> String {
    assert_eq!(r.status, 200, "{r:?}");
    r.backend().unwrap_or("none").to_string()
}

#[test]
fn canary_weight_splits_traffic_fairly() {
    let (main, canary) = (Echo::start("main"), Echo::start("canary"));
    let mut m = String::from(INGRESS_CLASS);
    m += &main.manifests("app");
    m += &canary.manifests("app-canary");
    for (host, weight, total) in [
        ("w20.example", "20", None),
        ("w0.example", "0", None),
        ("wall.example", "1000", Some("1000")),
    ] {
        m += &ing(
            &format!("main-{weight}"),
            "2026-01-01T00:00:00Z",
            host,
            &[("Prefix", "/", "app")],
            &[],
        );
        let mut ann = vec![("canary", "true"), ("canary-weight", weight)];
        if let Some(t) = total {
            ann.push(("canary-weight-total", t));
        }
        m += &ing(
            &format!("canary-{weight}"),
            "2026-01-01T00:01:00Z",
            host,
            &[("Prefix", "/", "app-canary")],
            &ann,
        );
    }
    let s = Sluice::start(&[("m.yaml", &m)], &["--no-access-log"]);
    let c = client();
    let n = 2000;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..n {
        let r = get(&c, &s, "w20.example", &format!("/item/{i}"), &[]);
        *counts.entry(backend_of(&r)).or_default() += 1;
    }
    let to_canary = counts.get("canary").copied().unwrap_or(0);
    assert_eq!(to_canary + counts.get("main").copied().unwrap_or(0), n);
    // 20 % of 2,000 is 400 ± 18 (one standard deviation): 17–23 % is over 3 of them.
    let share = to_canary as f64 / n as f64;
    assert!(
        (0.17..=0.23).contains(&share),
        "canary-weight 20 sent {to_canary} of {n} requests to the canary"
    );
    for _ in 0..50 {
        assert_eq!(backend_of(&get(&c, &s, "w0.example", "/", &[])), "main");
        assert_eq!(backend_of(&get(&c, &s, "wall.example", "/", &[])), "canary");
    }
}

#[test]
fn canary_rules_header_then_cookie_then_weight() {
    let (main, canary) = (Echo::start("main"), Echo::start("canary"));
    let mut m = String::from(INGRESS_CLASS);
    m += &main.manifests("app");
    m += &canary.manifests("app-canary");
    let t0 = "2026-01-01T00:00:00Z";
    let t1 = "2026-01-01T00:01:00Z";
    // Main: its upstream-vhost applies to canary requests too; the canary's own is ignored.
    m += &ing(
        "main",
        t0,
        "shop.example",
        &[("Prefix", "/", "app")],
        &[("upstream-vhost", "internal.shop")],
    );
    m += &ing(
        "canary",
        t1,
        "shop.example",
        &[("Prefix", "/", "app-canary")],
        &[
            ("canary", "true"),
            ("canary-by-header", "X-Canary"),
            ("canary-by-cookie", "canary"),
            ("upstream-vhost", "ignored.example"),
        ],
    );
    // Weight 100 behind the header and the cookie.
    m += &ing("main-w", t0, "all.example", &[("Prefix", "/", "app")], &[]);
    m += &ing(
        "canary-w",
        t1,
        "all.example",
        &[("Prefix", "/", "app-canary")],
        &[
            ("canary", "true"),
            ("canary-by-header", "X-Canary"),
            ("canary-by-cookie", "canary"),
            ("canary-weight", "100"),
        ],
    );
    m += &ing(
        "main-v",
        t0,
        "value.example",
        &[("Prefix", "/", "app")],
        &[],
    );
    m += &ing(
        "canary-v",
        t1,
        "value.example",
        &[("Prefix", "/", "app-canary")],
        &[
            ("canary", "true"),
            ("canary-by-header", "X-User"),
            ("canary-by-header-value", "beta"),
        ],
    );
    m += &ing(
        "main-p",
        t0,
        "pattern.example",
        &[("Prefix", "/", "app")],
        &[],
    );
    m += &ing(
        "canary-p",
        t1,
        "pattern.example",
        &[("Prefix", "/", "app-canary")],
        &[
            ("canary", "true"),
            ("canary-by-header", "X-User"),
            ("canary-by-header-pattern", "^(alice|bob)$"),
        ],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let c = client();
    let cases: &[Case] = &[
        // canary-by-header: always / never / anything else falls through (weight 0).
        ("shop.example", &[("X-Canary", "always")], "canary"),
        ("shop.example", &[("x-canary", "never")], "main"),
        ("shop.example", &[("X-Canary", "sometimes")], "main"),
        ("shop.example", &[], "main"),
        // canary-by-cookie: always / never; the header is consulted first.
        (
            "shop.example",
            &[("Cookie", "a=1; canary=always")],
            "canary",
        ),
        ("shop.example", &[("Cookie", "canary=never")], "main"),
        (
            "shop.example",
            &[("X-Canary", "never"), ("Cookie", "canary=always")],
            "main",
        ),
        (
            "shop.example",
            &[("X-Canary", "other"), ("Cookie", "canary=always")],
            "canary",
        ),
        // Header beats cookie beats weight (100 here).
        ("all.example", &[], "canary"),
        ("all.example", &[("Cookie", "canary=never")], "main"),
        (
            "all.example",
            &[("X-Canary", "always"), ("Cookie", "canary=never")],
            "canary",
        ),
        (
            "all.example",
            &[("X-Canary", "never"), ("Cookie", "canary=always")],
            "main",
        ),
        (
            "all.example",
            &[("X-Canary", "maybe"), ("Cookie", "canary=maybe")],
            "canary",
        ),
        // canary-by-header-value: that exact value; `always` means nothing then.
        ("value.example", &[("X-User", "beta")], "canary"),
        ("value.example", &[("X-User", "Beta")], "main"),
        ("value.example", &[("X-User", "always")], "main"),
        // canary-by-header-pattern.
        ("pattern.example", &[("X-User", "alice")], "canary"),
        ("pattern.example", &[("X-User", "bob")], "canary"),
        ("pattern.example", &[("X-User", "carol")], "main"),
        ("pattern.example", &[("X-User", "always")], "main"),
    ];
    for (host, headers, want) in cases {
        for _ in 0..5 {
            let r = get(&c, &s, host, "/orders?id=7", headers);
            assert_eq!(backend_of(&r), *want, "{host} {headers:?}");
        }
    }
    // The canary gets the request exactly as the main backend would: same URI, and the
    // main Ingress's settings (upstream-vhost), not the canary's.
    let r = get(
        &c,
        &s,
        "shop.example",
        "/orders?id=7",
        &[("X-Canary", "always")],
    );
    assert_eq!(r.backend(), Some("canary"));
    assert_eq!(r.echoed()["uri"], "/orders?id=7");
    assert_eq!(r.seen_header("host").as_deref(), Some("internal.shop"));
    let r = get(&c, &s, "shop.example", "/orders?id=7", &[]);
    assert_eq!(r.backend(), Some("main"));
    assert_eq!(r.seen_header("host").as_deref(), Some("internal.shop"));
    assert!(s.logs().contains("CanaryAnnotationIgnored"), "{}", s.logs());
}

#[test]
fn canary_keeps_affinity_clients_where_they_started() {
    let (main, canary) = (Echo::start("main"), Echo::start("canary"));
    let mut m = String::from(INGRESS_CLASS);
    m += &main.manifests("app");
    m += &canary.manifests("app-canary");
    m += &ing(
        "main",
        "2026-01-01T00:00:00Z",
        "sticky.example",
        &[("Prefix", "/", "app")],
        &[("affinity", "cookie"), ("session-cookie-name", "route")],
    );
    m += &ing(
        "canary",
        "2026-01-01T00:01:00Z",
        "sticky.example",
        &[("Prefix", "/", "app-canary")],
        &[
            ("canary", "true"),
            ("canary-weight", "50"),
            ("canary-by-header", "X-Canary"),
        ],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let c = client();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for client_no in 0..30 {
        let first = get(&c, &s, "sticky.example", "/", &[]);
        let home = backend_of(&first);
        let set = first
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no affinity cookie: {first:?}"));
        let cookie = set.split(';').next().unwrap().to_string();
        assert_eq!(cookie.ends_with("-canary"), home == "canary", "{cookie}");
        for _ in 0..5 {
            let r = get(&c, &s, "sticky.example", "/", &[("Cookie", &cookie)]);
            assert_eq!(backend_of(&r), home, "client {client_no} with {cookie}");
            assert!(r.headers.get("set-cookie").is_none(), "{r:?}");
        }
        *seen.entry(home).or_default() += 1;
    }
    // Weight 50 over 30 new clients: both sides got some (all on one side: 2^-29).
    assert_eq!(seen.len(), 2, "{seen:?}");
    // As in ingress-nginx, affinity comes before the header.
    let main_cookie = loop {
        let r = get(&c, &s, "sticky.example", "/", &[]);
        if r.backend() == Some("main") {
            let set = r.headers["set-cookie"].to_str().unwrap().to_string();
            break set.split(';').next().unwrap().to_string();
        }
    };
    let r = get(
        &c,
        &s,
        "sticky.example",
        "/",
        &[("Cookie", &main_cookie), ("X-Canary", "always")],
    );
    assert_eq!(backend_of(&r), "main");
}

#[test]
fn canary_without_main_ingress_is_not_served_and_warned() {
    let canary = Echo::start("canary");
    let main = Echo::start("main");
    let mut m = String::from(INGRESS_CLASS);
    m += &canary.manifests("app-canary");
    m += &main.manifests("app");
    m += &ing(
        "lonely",
        "2026-01-01T00:00:00Z",
        "lonely.example",
        &[("Prefix", "/", "app-canary")],
        &[("canary", "true"), ("canary-weight", "100")],
    );
    // Same host and path but another pathType: no main for the canary either.
    m += &ing(
        "exact-main",
        "2026-01-01T00:00:00Z",
        "kinds.example",
        &[("Exact", "/x", "app")],
        &[],
    );
    m += &ing(
        "prefix-canary",
        "2026-01-01T00:01:00Z",
        "kinds.example",
        &[("Prefix", "/x", "app-canary")],
        &[("canary", "true"), ("canary-weight", "100")],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    assert_eq!(s.get("lonely.example", "/").status, 404);
    assert_eq!(s.get("kinds.example", "/x").backend(), Some("main"));
    assert_eq!(s.get("kinds.example", "/x/y").status, 404);
    let logs = s.logs();
    for name in ["lonely", "prefix-canary"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("CanaryWithoutMain") && l.contains(&format!("name={name} "))),
            "no CanaryWithoutMain warning for {name}:\n{logs}"
        );
    }
    // No path conflict either: a canary is not a competing rule.
    assert!(!logs.contains("PathConflict"), "{logs}");
}

#[test]
fn service_upstream_sends_to_the_cluster_ip() {
    // The "ClusterIP" is a sluice-echo on 127.0.0.1:<port>; the Service's endpoints are
    // another one. Only service-upstream reaches the first.
    let cluster = Echo::start("cluster-ip");
    let pod = Echo::start("pod");
    let port = cluster.addr.port();
    let mut m = String::from(INGRESS_CLASS);
    m += &format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec: {{clusterIP: 127.0.0.1, ports: [{{name: http, port: {port}, targetPort: {}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n",
        pod.addr.port(),
        pod.addr.port()
    );
    // A headless Service: service-upstream cannot apply, endpoints are used (with a warning).
    m += &format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: headless, namespace: default}}\nspec: {{clusterIP: None, ports: [{{name: http, port: 80, targetPort: {0}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: headless-1, namespace: default, labels: {{kubernetes.io/service-name: headless}}}}\naddressType: IPv4\nports: [{{name: http, port: {0}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n",
        pod.addr.port()
    );
    let rule = |name: &str, host: &str, svc: &str, port: u16, ann: &[(&str, &str)]| {
        ing(
            name,
            "2026-01-01T00:00:00Z",
            host,
            &[("Prefix", "/", svc)],
            ann,
        )
        .replace("number: 80", &format!("number: {port}"))
    };
    m += &rule(
        "via-cluster",
        "cluster.example",
        "web",
        port,
        &[("service-upstream", "true")],
    );
    m += &rule("via-endpoints", "pods.example", "web", port, &[]);
    m += &rule(
        "via-headless",
        "headless.example",
        "headless",
        80,
        &[("service-upstream", "true")],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    for _ in 0..5 {
        let r = s.get("cluster.example", "/a?b=1");
        assert_eq!(backend_of(&r), "cluster-ip");
        assert_eq!(r.echoed()["uri"], "/a?b=1");
        assert_eq!(backend_of(&s.get("pods.example", "/")), "pod");
        assert_eq!(backend_of(&s.get("headless.example", "/")), "pod");
    }
    let logs = s.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("ServiceUpstreamIgnored") && l.contains("via-headless")),
        "{logs}"
    );
}

#[test]
fn server_alias_serves_the_host_rules() {
    let (shop, other) = (Echo::start("shop"), Echo::start("other"));
    let mut m = String::from(INGRESS_CLASS);
    m += &shop.manifests("shop");
    m += &other.manifests("other");
    m += &ing(
        "shop",
        "2026-01-01T00:00:00Z",
        "shop.example",
        &[("Prefix", "/api", "shop")],
        &[(
            "server-alias",
            "store.example, *.shop-mirror.example, other.example",
        )],
    );
    // Another Ingress of the same host: the alias gets its rules too.
    m += &ing(
        "shop-more",
        "2026-01-01T00:01:00Z",
        "shop.example",
        &[("Exact", "/about", "shop")],
        &[("server-alias", "late.example")],
    );
    // An alias that is a host of its own keeps its own rules.
    m += &ing(
        "other",
        "2026-01-01T00:02:00Z",
        "other.example",
        &[("Prefix", "/", "other")],
        &[],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    for host in ["shop.example", "store.example", "eu.shop-mirror.example"] {
        let r = s.get(host, "/api/items?x=1");
        assert_eq!(backend_of(&r), "shop", "{host}");
        // The backend sees the name the client used.
        assert_eq!(r.seen_header("host").as_deref(), Some(host));
        assert_eq!(r.echoed()["uri"], "/api/items?x=1");
        assert_eq!(backend_of(&s.get(host, "/about")), "shop", "{host}");
        assert_eq!(s.get(host, "/other").status, 404, "{host}");
    }
    assert_eq!(backend_of(&s.get("other.example", "/api")), "other");
    // The younger Ingress's aliases are ignored: the oldest sets the host's.
    assert_eq!(s.get("late.example", "/api").status, 404);
    let logs = s.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("ServerAliasConflict") && l.contains("other.example")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("ServerAliasConflict") && l.contains("shop-more")),
        "{logs}"
    );
}

#[test]
fn from_to_www_redirect_answers_308() {
    let app = Echo::start("app");
    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    m += &ing(
        "site",
        "2026-01-01T00:00:00Z",
        "example.com",
        &[("Prefix", "/", "app")],
        &[("from-to-www-redirect", "true")],
    );
    m += &ing(
        "blog",
        "2026-01-01T00:00:00Z",
        "www.blog.example",
        &[("Prefix", "/", "app")],
        &[("from-to-www-redirect", "true")],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let cases = [
        ("www.example.com", "/a/b?x=1", "http://example.com/a/b?x=1"),
        ("www.example.com", "/a/", "http://example.com/a"),
        ("WWW.Example.com:8080", "/", "http://example.com"),
        ("blog.example", "/post/1", "http://www.blog.example/post/1"),
    ];
    for (host, path, location) in cases {
        let r = s.get(host, path);
        assert_eq!(r.status, 308, "{host}{path}: {r:?}");
        assert_eq!(r.headers["location"], location, "{host}{path}");
        assert_eq!(r.backend(), None);
    }
    // The real hosts are served as usual.
    assert_eq!(backend_of(&s.get("example.com", "/a")), "app");
    assert_eq!(backend_of(&s.get("www.blog.example", "/a")), "app");
    // A POST keeps its method through a 308.
    let r = Reply::from(
        client()
            .post(s.url("/form"))
            .header("Host", "www.example.com")
            .body("x")
            .send()
            .unwrap(),
    );
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "http://example.com/form");
}

#[test]
fn www_redirect_and_aliases_over_https_use_the_certificate_covering_the_name() {
    let app = Echo::start("app");
    let both = Cert::ecdsa("example.com", &["example.com", "www.example.com"]);
    let bare = Cert::ecdsa("bare.example", &["bare.example", "alias-ok.example"]);
    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    m += &both.secret("both-tls");
    m += &bare.secret("bare-tls");
    let site = support::objects::MkIngress {
        name: "site",
        host: Some("example.com"),
        paths: &[("Prefix", "/", "app")],
        annotations: &[("from-to-www-redirect", "true")],
        created: Some("2026-01-01T00:00:00Z"),
        tls_secret: Some("both-tls"),
        ..support::objects::MkIngress::default()
    };
    m += &site.yaml();
    m += &support::objects::MkIngress {
        name: "bare",
        host: Some("bare.example"),
        annotations: &[
            ("from-to-www-redirect", "true"),
            ("server-alias", "alias.example, alias-ok.example"),
        ],
        tls_secret: Some("bare-tls"),
        ..site
    }
    .yaml();
    let (s, https) = start_tls(&[("m.yaml", &m)], &[]);
    // HTTPS to HTTPS: the redirect keeps the scheme.
    let r = https_get(https, "www.example.com", "/a/?q=1");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(r.headers["location"], "https://example.com/a/?q=1");
    // Plain HTTP to the www name redirects to the host directly (not to https first).
    let r = s.get("www.example.com", "/a");
    assert_eq!(r.headers["location"], "http://example.com/a");
    let cn = |sni: &str| served_cert(https, Some(sni)).and_then(|p| common_name(&p));
    // The host's certificate covers www.example.com: served for it.
    assert_eq!(cn("www.example.com").as_deref(), Some("example.com"));
    // bare.example's covers one alias only; the other names get the default one.
    assert_eq!(cn("www.bare.example").as_deref(), Some(FAKE_CN));
    assert_eq!(cn("alias.example").as_deref(), Some(FAKE_CN));
    assert_eq!(cn("alias-ok.example").as_deref(), Some("bare.example"));
    // The covered alias has the host's rules, including the redirect to https...
    let r = s.get("alias-ok.example", "/x");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(r.headers["location"], "https://alias-ok.example/x");
    assert_eq!(
        backend_of(&https_get(https, "alias-ok.example", "/x")),
        "app"
    );
    // ...the other is served over plain HTTP as ingress-nginx does (no certificate is
    // configured for it there, so no redirect).
    assert_eq!(backend_of(&s.get("alias.example", "/x")), "app");
    assert_eq!(backend_of(&https_get(https, "alias.example", "/x")), "app");
    assert_eq!(s.get("bare.example", "/x").status, 308);
}

#[test]
fn preserve_trailing_slash_controls_the_https_redirect() {
    let app = Echo::start("app");
    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    m += &ing(
        "strip",
        "2026-01-01T00:00:00Z",
        "strip.example",
        &[("Prefix", "/", "app")],
        &[("force-ssl-redirect", "true")],
    );
    m += &ing(
        "keep",
        "2026-01-01T00:00:00Z",
        "keep.example",
        &[("Prefix", "/", "app")],
        &[
            ("force-ssl-redirect", "true"),
            ("preserve-trailing-slash", "true"),
        ],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let cases = [
        ("strip.example", "/docs/", "https://strip.example/docs"),
        (
            "strip.example",
            "/docs/?v=1",
            "https://strip.example/docs/?v=1",
        ),
        ("strip.example", "/docs", "https://strip.example/docs"),
        ("keep.example", "/docs/", "https://keep.example/docs/"),
        ("keep.example", "/", "https://keep.example/"),
    ];
    for (host, path, location) in cases {
        let r = s.get(host, path);
        assert_eq!(r.status, 308, "{host}{path}: {r:?}");
        assert_eq!(r.headers["location"], location, "{host}{path}");
    }
}

#[test]
fn default_backend_answers_when_the_service_has_no_endpoints() {
    let (app, fallback) = (Echo::start("app"), Echo::start("fallback"));
    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    m += &fallback.manifests("fallback");
    m += &empty_service("empty");
    m += &empty_service("also-empty");
    m += &ing(
        "with-default",
        "2026-01-01T00:00:00Z",
        "shop.example",
        &[
            ("Prefix", "/cart", "empty"),
            ("Prefix", "/gone", "missing-service"),
            ("Prefix", "/ok", "app"),
        ],
        &[("default-backend", "fallback")],
    );
    m += &ing(
        "without",
        "2026-01-01T00:00:00Z",
        "plain.example",
        &[("Prefix", "/cart", "empty")],
        &[],
    );
    // A default backend without endpoints is no help: 503 as without it.
    m += &ing(
        "empty-default",
        "2026-01-01T00:00:00Z",
        "both-empty.example",
        &[("Prefix", "/cart", "empty")],
        &[("default-backend", "also-empty")],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let r = s.get("shop.example", "/cart/items?id=3");
    assert_eq!(backend_of(&r), "fallback");
    // Proxied unchanged: URI and Host as the client sent them.
    assert_eq!(r.echoed()["uri"], "/cart/items?id=3");
    assert_eq!(r.seen_header("host").as_deref(), Some("shop.example"));
    assert_eq!(backend_of(&s.get("shop.example", "/gone")), "fallback");
    assert_eq!(backend_of(&s.get("shop.example", "/ok")), "app");
    assert_eq!(s.get("plain.example", "/cart").status, 503);
    assert_eq!(s.get("both-empty.example", "/cart").status, 503);
    // Endpoints appear: the rule's own Service answers again, no restart.
    let late = Echo::start("late-app");
    let mut m2 = m.replace(&empty_service("empty"), "");
    m2 += &late.manifests("empty");
    s.write("m.yaml", &m2);
    s.wait_for("shop.example", "/cart", Duration::from_secs(10), |r| {
        r.backend() == Some("late-app")
    });
}
