//! `proxy-next-upstream` status codes (issue 14 §3) through the real binaries:
//! sluice-echo's `fail=N` answers 503 (or `status`) N times per key, then 200.

mod support;

use support::{Echo, Sluice};

fn manifests(echo: &Echo, ann: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: nginx}}\nspec: {{controller: sluice.dev/ingress-controller}}\n{}---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: r\n  namespace: default\n  annotations:\n{ann}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: r.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n",
        echo.manifests("app")
    )
}

#[test]
fn listed_statuses_are_retried_on_the_only_endpoint() {
    let echo = Echo::start("app");
    let ann = "    nginx.ingress.kubernetes.io/proxy-next-upstream: \"error timeout http_503 http_429\"\n    nginx.ingress.kubernetes.io/proxy-request-buffering: \"off\"";
    let s = Sluice::start(&[("m.yaml", &manifests(&echo, ann))], &["--workers", "1"]);
    // Fails twice, try 3 (of the default 3) succeeds.
    let r = s.get("r.example", "/?fail=2&key=a");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("x-attempt").unwrap(), "3");
    // Three failures exhaust the tries: the third 503 reaches the client.
    let r = s.get("r.example", "/?fail=3&key=b");
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get("x-attempt").unwrap(), "3");
    // 429 listed too; 500 is not: answered at once.
    let r = s.get("r.example", "/?fail=1&key=c&status=429");
    assert_eq!(
        (
            r.status,
            r.headers.get("x-attempt").unwrap().to_str().unwrap()
        ),
        (200, "2")
    );
    let r = s.get("r.example", "/?fail=1&key=d&status=500");
    assert_eq!(
        (
            r.status,
            r.headers.get("x-attempt").unwrap().to_str().unwrap()
        ),
        (500, "1")
    );
    // A POST is not idempotent: not retried.
    let r = support::client()
        .post(s.url("/?fail=1&key=e"))
        .header("Host", "r.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    // A body streamed with request buffering off is never resent, even for PUT.
    let r = support::client()
        .put(s.url("/?fail=1&key=f"))
        .header("Host", "r.example")
        .body("streamed body")
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("x-attempt").unwrap(), "1");
}

#[test]
fn tries_limit_the_attempts() {
    let echo = Echo::start("app");
    let ann = "    nginx.ingress.kubernetes.io/proxy-next-upstream: \"http_502\"\n    nginx.ingress.kubernetes.io/proxy-next-upstream-tries: \"5\"";
    let s = Sluice::start(&[("m.yaml", &manifests(&echo, ann))], &["--workers", "1"]);
    let r = s.get("r.example", "/?fail=4&key=a&status=502");
    assert_eq!(
        (
            r.status,
            r.headers.get("x-attempt").unwrap().to_str().unwrap()
        ),
        (200, "5")
    );
    let r = s.get("r.example", "/?fail=5&key=b&status=502");
    assert_eq!(r.status, 502);
    // A buffered PUT body is replayed whole on every attempt.
    let r = support::client()
        .put(s.url("/?fail=2&key=c&status=502"))
        .header("Host", "r.example")
        .body("kept body")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(v["body_len"], 9);
}
