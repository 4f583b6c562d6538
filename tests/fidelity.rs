//! ingress-nginx fidelity (issue 14 §6, COMPAT §7) through the real `sluice` and
//! `sluice-echo` binaries: app-root, temporal over permanent redirect, absolute
//! rewrite-target (and the implicit root location), location denied.

mod support;

use support::{Echo, Sluice};

fn ing(name: &str, host: &str, path: &str, kind: &str, ann: &[(&str, &str)]) -> String {
    support::objects::mk_ingress(name, host, &[(kind, path)], "app", ann)
}

const CLASS: &str = "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: sluice.dev/ingress-controller}\n";

fn location(r: &support::Reply) -> &str {
    r.headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[test]
fn redirects_match_ingress_nginx() {
    let echo = Echo::start("app");
    let mut m = String::from(CLASS);
    m += &echo.manifests("app");
    m += &ing(
        "root",
        "root.example",
        "/",
        "Prefix",
        &[("app-root", "/login$is_args$args")],
    );
    m += &ing(
        "both",
        "both.example",
        "/",
        "Prefix",
        &[
            ("permanent-redirect", "https://perm.example/"),
            ("temporal-redirect", "https://temp.example/"),
        ],
    );
    m += &ing(
        "abs",
        "abs.example",
        "/original/(.*)",
        "ImplementationSpecific",
        &[("rewrite-target", "https://other.example/$1")],
    );
    m += &ing(
        "absprefix",
        "absprefix.example",
        "/",
        "Prefix",
        &[("rewrite-target", "https://other.example/x")],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);

    let r = s.get("root.example:8080", "/?a=1&b=2");
    assert_eq!(r.status, 302);
    assert_eq!(location(&r), "http://root.example:8080/login?a=1&b=2");
    let r = s.get("root.example", "/");
    assert_eq!(location(&r), "http://root.example/login");
    // Other paths are proxied.
    assert_eq!(s.get("root.example", "/x").backend(), Some("app"));

    let r = s.get("both.example", "/");
    assert_eq!((r.status, location(&r)), (302, "https://temp.example/"));

    let r = s.get("abs.example", "/original/a/b?q=1");
    assert_eq!(
        (r.status, location(&r)),
        (302, "https://other.example/a/b?q=1")
    );
    // The implicit root location carries the Ingress's rewrite: still a 302.
    let r = s.get("abs.example", "/original");
    assert_eq!((r.status, location(&r)), (302, "https://other.example/"));
    let r = s.get("absprefix.example", "/anything");
    assert_eq!((r.status, location(&r)), (302, "https://other.example/x"));
}

#[test]
fn missing_secret_denies_the_location_only() {
    let echo = Echo::start("app");
    let mut m = String::from(CLASS);
    m += &echo.manifests("app");
    m += &ing(
        "auth",
        "auth.example",
        "/",
        "Prefix",
        &[
            ("auth-type", "basic"),
            ("auth-secret", "nope"),
            ("whitelist-source-range", "10.0.0.0/8"),
        ],
    );
    m += &ing(
        "ssl",
        "ssl.example",
        "/",
        "Prefix",
        &[
            ("backend-protocol", "HTTPS"),
            ("proxy-ssl-secret", "default/nope"),
        ],
    );
    m += &ing("ok", "ok.example", "/", "Prefix", &[]);
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    // 503 before the allowlist's 403: the whole location is denied.
    assert_eq!(s.get("auth.example", "/").status, 503);
    assert_eq!(s.get("ssl.example", "/").status, 503);
    assert_eq!(s.get("ok.example", "/").backend(), Some("app"));
    let logs = s.logs();
    assert!(logs.contains("InvalidAuthSecret"), "{logs}");
    assert!(logs.contains("InvalidProxySslSecret"), "{logs}");
}

#[test]
fn implicit_root_covers_unmatched_paths_of_an_allowlisted_host() {
    let echo = Echo::start("app");
    let mut m = String::from(CLASS);
    m += &echo.manifests("app");
    m += &ing(
        "only",
        "only.example",
        "/api",
        "Prefix",
        &[("whitelist-source-range", "10.0.0.0/8")],
    );
    m += &ing("open", "open.example", "/api", "Prefix", &[]);
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    assert_eq!(s.get("only.example", "/api").status, 403);
    assert_eq!(s.get("only.example", "/elsewhere").status, 403);
    assert_eq!(s.get("open.example", "/elsewhere").status, 404);
}
