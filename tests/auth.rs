//! Authentication through the real binary: `auth-type: basic` with real hashes written
//! by Debian's `htpasswd` (apache2-utils) and `openssl passwd`, `auth-secret-type`,
//! `auth-realm`, broken and missing Secrets (fail closed), and `auth-url` against a real
//! auth service (`tests/auth/auth_service.py`) with `auth-method`, `auth-signin`,
//! `auth-response-headers`, `auth-request-redirect` and a service that is down.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use support::{client, Echo, Reply, Sluice, INGRESS_CLASS};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An Ingress `name` for `host`, Prefix `/` → `svc`, with annotations.
fn ingress(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    support::objects::mk_ingress(name, host, &[("Prefix", "/")], svc, annotations)
}

/// An Opaque Secret with base64 `data`, as `kubectl create secret generic` writes it.
fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> String {
    let data: Vec<String> = data
        .iter()
        .map(|(k, v)| format!("  {k}: {}\n", B64.encode(v)))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: Opaque\ndata:\n{}",
        data.concat()
    )
}

/// Runs a hash-generating tool and returns its trimmed stdout.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!(
            "{cmd} is needed for these tests (Debian: apt-get install apache2-utils openssl): {e}"
        )
    });
    assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `htpasswd -nb<flag> user password` → `user:hash`.
fn htpasswd(flag: &str, user: &str, password: &str) -> String {
    run("htpasswd", &[&format!("-nb{flag}"), user, password])
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{user}:{password}")))
}

fn get_with(s: &Sluice, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut r = client().get(s.url(path)).header("Host", host);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    Reply::from(r.send().unwrap())
}

fn header(r: &Reply, name: &str) -> Option<String> {
    r.headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

#[test]
fn basic_auth_accepts_every_hash_format_nginx_does() {
    let app = Echo::start("app");
    // (user, password, htpasswd line) from the real tools.
    let mut users: Vec<(String, String, String)> = Vec::new();
    let mut add = |user: &str, password: &str, line: String| {
        assert!(line.starts_with(&format!("{user}:")), "{line}");
        users.push((user.into(), password.into(), line));
    };
    add("bcrypt", "b-secret", htpasswd("B", "bcrypt", "b-secret"));
    add(
        "bcrypt10",
        "b10",
        run("htpasswd", &["-nbB", "-C", "10", "bcrypt10", "b10"]),
    );
    add("apr1", "apache md5", htpasswd("m", "apr1", "apache md5"));
    add("sha1", "sha-one", htpasswd("s", "sha1", "sha-one"));
    add("des", "des-pass", htpasswd("d", "des", "des-pass"));
    add(
        "sha256",
        "two-five-six",
        htpasswd("2", "sha256", "two-five-six"),
    );
    add(
        "sha512",
        "five-twelve",
        htpasswd("5", "sha512", "five-twelve"),
    );
    add(
        "osslapr1",
        "openssl apr1",
        format!(
            "osslapr1:{}",
            run("openssl", &["passwd", "-apr1", "openssl apr1"])
        ),
    );
    add(
        "md5crypt",
        "one",
        format!("md5crypt:{}", run("openssl", &["passwd", "-1", "one"])),
    );
    add(
        "ossl5",
        "five",
        format!("ossl5:{}", run("openssl", &["passwd", "-5", "five"])),
    );
    add(
        "ossl6",
        "six",
        format!(
            "ossl6:{}",
            run("openssl", &["passwd", "-6", "-salt", "pepper", "six"])
        ),
    );
    add("plain", "in the clear", "plain:{PLAIN}in the clear".into());
    let ssha = run(
        "python3",
        &[
            "-c",
            "import hashlib,base64;s=b'saltsalt';print('{SSHA}'+base64.b64encode(hashlib.sha1(b'salted'+s).digest()+s).decode())",
        ],
    );
    add("ssha", "salted", format!("ssha:{ssha}"));
    let file: String = users.iter().map(|(_, _, l)| format!("{l}\n")).collect();

    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    m += &secret("default", "htpasswd", &[("auth", &file)]);
    m += &ingress(
        "private",
        "private.example",
        "app",
        &[
            ("auth-type", "basic"),
            ("auth-secret", "htpasswd"),
            ("auth-realm", "Authentication Required - staff"),
        ],
    );
    m += &ingress("public", "public.example", "app", &[]);
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    assert!(
        !s.logs().contains("InvalidAuthSecret"),
        "every generated hash must be usable:\n{}",
        s.logs()
    );

    let realm = "Basic realm=\"Authentication Required - staff\"";
    let r = s.get("private.example", "/");
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(header(&r, "www-authenticate").as_deref(), Some(realm));
    assert!(r.body.contains("401 Authorization Required"), "{}", r.body);
    assert_eq!(r.backend(), None);

    for (user, password, _) in &users {
        let ok = get_with(
            &s,
            "private.example",
            "/ok",
            &[("Authorization", &basic(user, password))],
        );
        assert_eq!(ok.status, 200, "{user}: {ok:?}");
        assert_eq!(ok.backend(), Some("app"), "{user}");
        assert_eq!(
            ok.seen_header("authorization"),
            None,
            "{user}: credentials are not forwarded (ingress-nginx clears Authorization)"
        );
        let wrong = get_with(
            &s,
            "private.example",
            "/ok",
            &[("Authorization", &basic(user, &format!("{password}x")))],
        );
        // DES crypt reads 8 bytes of the password: change the first one instead.
        let wrong = if user == "des" {
            get_with(
                &s,
                "private.example",
                "/ok",
                &[("Authorization", &basic(user, "Des-pass"))],
            )
        } else {
            wrong
        };
        assert_eq!(wrong.status, 401, "{user} with a wrong password: {wrong:?}");
        assert_eq!(header(&wrong, "www-authenticate").as_deref(), Some(realm));
    }
    // Unknown user, wrong scheme, garbage.
    for auth in [
        basic("nobody", "b-secret"),
        format!("Bearer {}", B64.encode("bcrypt:b-secret")),
        "Basic !!!".to_string(),
    ] {
        let r = get_with(&s, "private.example", "/", &[("Authorization", &auth)]);
        assert_eq!(r.status, 401, "{auth}: {r:?}");
    }
    // The bcrypt cache: the same good credentials again still pass.
    let again = get_with(
        &s,
        "private.example",
        "/again",
        &[("Authorization", &basic("bcrypt10", "b10"))],
    );
    assert_eq!(again.status, 200);
    // Other Ingresses are not affected, and their Authorization passes through.
    let open = get_with(
        &s,
        "public.example",
        "/",
        &[("Authorization", "Bearer abc")],
    );
    assert_eq!(open.status, 200);
    assert_eq!(
        open.seen_header("authorization").as_deref(),
        Some("Bearer abc")
    );
    // The access log names the user, as nginx's $remote_user.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !s.access_logs().contains(" - bcrypt10 [") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        s.access_logs().contains(" - bcrypt10 ["),
        "{}",
        s.access_logs()
    );
}

#[test]
fn basic_auth_map_in_another_namespace_and_default_realm() {
    let app = Echo::start("app");
    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    let carol = htpasswd("B", "carol", "carol-pw");
    let dave = htpasswd("m", "dave", "dave-pw");
    m += &secret(
        "auth-ns",
        "users",
        &[
            ("carol", carol.split_once(':').unwrap().1),
            ("dave", dave.split_once(':').unwrap().1),
        ],
    );
    m += &ingress(
        "mapped",
        "map.example",
        "app",
        &[
            ("auth-type", "basic"),
            ("auth-secret", "auth-ns/users"),
            ("auth-secret-type", "auth-map"),
        ],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let r = s.get("map.example", "/");
    assert_eq!(r.status, 401);
    // ingress-nginx's default: no realm text at all.
    assert_eq!(
        header(&r, "www-authenticate").as_deref(),
        Some("Basic realm=\"\"")
    );
    for (u, p) in [("carol", "carol-pw"), ("dave", "dave-pw")] {
        let ok = get_with(&s, "map.example", "/", &[("Authorization", &basic(u, p))]);
        assert_eq!(ok.status, 200, "{u}");
        assert_eq!(ok.backend(), Some("app"));
        let bad = get_with(
            &s,
            "map.example",
            "/",
            &[("Authorization", &basic(u, "nope"))],
        );
        assert_eq!(bad.status, 401, "{u}");
    }
}

#[test]
fn missing_or_broken_auth_secrets_fail_closed() {
    let app = Echo::start("app");
    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    m += &secret("default", "no-auth-key", &[("users", "x:{PLAIN}x")]);
    m += &secret("default", "garbage", &[("auth", "eve:not-a-hash\n")]);
    m += &ingress(
        "missing",
        "missing.example",
        "app",
        &[("auth-type", "basic"), ("auth-secret", "later")],
    );
    m += &ingress(
        "nokey",
        "nokey.example",
        "app",
        &[("auth-type", "basic"), ("auth-secret", "no-auth-key")],
    );
    m += &ingress(
        "garbage",
        "garbage.example",
        "app",
        &[("auth-type", "basic"), ("auth-secret", "garbage")],
    );
    m += &ingress(
        "digest",
        "digest.example",
        "app",
        &[("auth-type", "digest"), ("auth-secret", "no-auth-key")],
    );
    m += &ingress(
        "no-type",
        "notype.example",
        "app",
        &[("auth-secret", "no-auth-key")],
    );
    m += &ingress(
        "bad-url",
        "badurl.example",
        "app",
        &[("auth-url", "ftp://auth.example/")],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let logs = s.logs();
    for (host, status) in [
        ("missing.example", 503),
        ("nokey.example", 503),
        ("garbage.example", 401),
        ("digest.example", 503),
        ("notype.example", 503),
        ("badurl.example", 503),
    ] {
        let r = get_with(&s, host, "/", &[("Authorization", &basic("eve", "x"))]);
        assert_eq!(r.status, status, "{host}: {r:?}");
        assert_eq!(r.backend(), None, "{host} must not reach the backend");
    }
    for needle in [
        "Secret default/later not found",
        "Secret default/no-auth-key has no key auth",
        "Secret default/garbage holds no usable user",
        "auth-type: \"digest\" is not supported",
        "auth-secret is set without nginx.ingress.kubernetes.io/auth-type",
        "auth-url: \"ftp://auth.example/\" is not an http:// or https:// URL",
    ] {
        assert!(logs.contains(needle), "warning {needle:?} missing:\n{logs}");
    }
    assert!(!logs.contains("not-a-hash"), "hashes never reach the log");

    // The missing Secret appears: the paths start asking for credentials.
    let line = htpasswd("m", "frank", "frank-pw");
    s.write(
        "late.yaml",
        &secret("default", "later", &[("auth", &format!("{line}\n"))]),
    );
    s.wait_for("missing.example", "/", Duration::from_secs(10), |r| {
        r.status == 401
    });
    let ok = get_with(
        &s,
        "missing.example",
        "/",
        &[("Authorization", &basic("frank", "frank-pw"))],
    );
    assert_eq!(ok.status, 200);
    // And when it goes again, back to 503.
    s.remove("late.yaml");
    s.wait_for("missing.example", "/", Duration::from_secs(10), |r| {
        r.status == 503
    });
}

/// The real auth service, killed on drop.
struct AuthService {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AuthService {
    fn start() -> AuthService {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("seen.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/auth/auth_service.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the test auth service");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected auth service output {line:?}"));
        AuthService {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request the service received, oldest first.
    fn seen(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn auth_url_subrequest_decides_and_passes_headers() {
    let app = Echo::start("app");
    let auth = AuthService::start();
    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    m += &ingress(
        "guarded",
        "guarded.example",
        "app",
        &[
            ("auth-url", &auth.url("/check?for=$host")),
            ("auth-method", "POST"),
            ("auth-response-headers", "X-User, X-Auth-Groups, X-Absent"),
            ("auth-request-redirect", "https://$host/landing"),
        ],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);

    // Allowed: reaches the backend with the auth service's headers, never the client's.
    let r = Reply::from(
        client()
            .post(s.url("/orders/42?expand=items"))
            .header("Host", "guarded.example")
            .header("X-Token", "letmein")
            .header("X-User", "mallory")
            .header("X-Absent", "spoofed")
            .header("X-Forwarded-Host", "evil.example")
            .body("a request body the auth service must not get")
            .send()
            .unwrap(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.backend(), Some("app"));
    assert_eq!(r.seen_header("x-user").as_deref(), Some("alice"));
    assert_eq!(r.seen_header("x-auth-groups").as_deref(), Some("staff"));
    assert_eq!(
        r.seen_header("x-absent"),
        None,
        "a listed header the auth response lacks is removed, not taken from the client"
    );
    assert_eq!(r.echoed()["method"], "POST");
    assert_eq!(r.echoed()["uri"], "/orders/42?expand=items");
    assert_eq!(
        header(&r, "set-cookie").as_deref(),
        Some("authsession=fresh; Path=/"),
        "the auth service's cookie reaches the client"
    );

    let seen = auth.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let a = &seen[0];
    let h = |n: &str| a["headers"][n].as_str().map(str::to_string);
    assert_eq!(a["method"], "POST", "auth-method");
    assert_eq!(a["path"], "/check?for=guarded.example", "$host expanded");
    assert_eq!(a["body_len"], 0, "no body to the auth service");
    assert_eq!(h("content-length"), None);
    assert_eq!(
        h("x-original-url").as_deref(),
        Some("http://guarded.example/orders/42?expand=items")
    );
    assert_eq!(h("x-original-method").as_deref(), Some("POST"));
    assert_eq!(
        h("x-original-uri").as_deref(),
        Some("/orders/42?expand=items")
    );
    assert_eq!(
        h("x-auth-request-redirect").as_deref(),
        Some("https://guarded.example/landing")
    );
    assert_eq!(
        h("x-token").as_deref(),
        Some("letmein"),
        "client headers pass"
    );
    assert_eq!(h("host").as_deref(), Some("127.0.0.1"));
    assert_eq!(h("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(h("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        h("x-forwarded-host").as_deref(),
        Some("guarded.example"),
        "sluice's own value, not the client's"
    );
    assert_eq!(
        h("x-sent-from").as_deref(),
        Some("nginx-ingress-controller")
    );
    assert_eq!(
        h("x-request-id").map(|v| v.len()),
        Some(32),
        "the request's id"
    );

    // Denied: the auth service's 401 (and its challenge) reaches the client.
    let r = get_with(&s, "guarded.example", "/orders", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        header(&r, "www-authenticate").as_deref(),
        Some("Bearer realm=\"test-auth\"")
    );
    assert_eq!(
        header(&r, "set-cookie"),
        None,
        "no auth cookie on a 401 by default"
    );
    let r = get_with(&s, "guarded.example", "/", &[("X-Token", "forbidden")]);
    assert_eq!(header(&r, "set-cookie"), None, "nor on a 403");
    assert_eq!(r.backend(), None);
    assert_eq!(r.status, 403, "forbidden: 403");
    assert_eq!(r.backend(), None);
    // Anything else from the auth service: 500.
    let r = get_with(&s, "guarded.example", "/teapot", &[]);
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.backend(), None);
    // One subrequest per request, each with the original method.
    let seen = auth.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[3]["headers"]["x-original-method"], "GET");
    assert_eq!(seen[3]["path"], "/check?for=guarded.example");
}

#[test]
fn auth_signin_redirects_with_rd_and_defaults() {
    let app = Echo::start("app");
    let auth = AuthService::start();
    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    m += &ingress(
        "signin",
        "signin.example",
        "app",
        &[
            ("auth-url", &auth.url("/oauth2/auth")),
            ("auth-signin", "https://login.example/oauth2/start"),
            ("auth-always-set-cookie", "true"),
        ],
    );
    m += &ingress(
        "signin-vars",
        "vars.example",
        "app",
        &[
            ("auth-url", &auth.url("/oauth2/auth")),
            (
                "auth-signin",
                "https://$host/oauth2/start?rd=$escaped_request_uri",
            ),
        ],
    );
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let r = get_with(&s, "signin.example", "/a b/c?x=1&y=2", &[]);
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(
        header(&r, "location").as_deref(),
        Some("https://login.example/oauth2/start?rd=http://signin.example%2Fa%2520b%2Fc%3Fx%3D1%26y%3D2")
    );
    assert_eq!(
        header(&r, "set-cookie").as_deref(),
        Some("authtried=1"),
        "the auth response's cookie comes with the redirect"
    );
    // The default method is GET and the redirect header the request URI.
    let seen = auth.seen();
    assert_eq!(seen[0]["method"], "GET");
    assert_eq!(
        seen[0]["headers"]["x-auth-request-redirect"],
        "/a%20b/c?x=1&y=2"
    );

    let r = get_with(&s, "vars.example", "/deep/page?q=1", &[]);
    assert_eq!(r.status, 302);
    assert_eq!(
        header(&r, "location").as_deref(),
        Some("https://vars.example/oauth2/start?rd=%2Fdeep%2Fpage%3Fq%3D1")
    );
    // Signed in: straight through.
    let r = get_with(&s, "signin.example", "/", &[("X-Token", "letmein")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), Some("app"));
    // auth-always-set-cookie: the cookie also comes with a 403.
    let r = get_with(&s, "signin.example", "/", &[("X-Token", "forbidden")]);
    assert_eq!(r.status, 403);
    assert_eq!(header(&r, "set-cookie").as_deref(), Some("authforbidden=1"));
}

#[test]
fn auth_service_down_answers_500_and_keeps_pooled_connections() {
    let app = Echo::start("app");
    let auth = AuthService::start();
    let dead = support::free_port();
    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    m += &ingress(
        "down",
        "down.example",
        "app",
        &[("auth-url", &format!("http://127.0.0.1:{dead}/auth"))],
    );
    m += &ingress(
        "up",
        "up.example",
        "app",
        &[("auth-url", &auth.url("/auth"))],
    );
    // One worker: every request shares one connection pool.
    let s = Sluice::start(&[("m.yaml", &m)], &["--workers", "1"]);
    let r = get_with(&s, "down.example", "/", &[("X-Token", "letmein")]);
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.backend(), None);
    assert!(
        s.logs().contains("auth-url subrequest failed"),
        "{}",
        s.logs()
    );
    for _ in 0..5 {
        let r = get_with(&s, "up.example", "/", &[("X-Token", "letmein")]);
        assert_eq!(r.status, 200);
    }
    // Keep-alive to the auth service: five subrequests, one connection.
    let conns: std::collections::HashSet<String> = auth
        .seen()
        .iter()
        .map(|a| a["conn"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(conns.len(), 1, "{conns:?}");
}

#[test]
fn auth_url_over_https_with_a_self_signed_certificate() {
    let app = Echo::start("app");
    // sluice-echo --tls: a self-signed certificate; `status=N` picks its answer.
    let auth = Echo::start_with("tls-auth", &["--tls"]);
    let mut m = String::from(INGRESS_CLASS);
    m += &app.manifests("app");
    for (name, status) in [("allow", 200), ("deny", 401), ("forbid", 403)] {
        m += &ingress(
            name,
            &format!("{name}.example"),
            "app",
            &[(
                "auth-url",
                &format!(
                    "https://localhost:{}/auth?status={status}",
                    auth.addr.port()
                ),
            )],
        );
    }
    let s = Sluice::start(&[("m.yaml", &m)], &[]);
    let r = s.get("allow.example", "/");
    assert_eq!(r.status, 200, "{r:?}\n{}", s.logs());
    assert_eq!(r.backend(), Some("app"));
    assert_eq!(s.get("deny.example", "/").status, 401);
    assert_eq!(s.get("forbid.example", "/").status, 403);
}
