//! Load balancing, sticky sessions and failover, end to end through the real `sluice`
//! binary in standalone mode with real `sluice-echo` backends on loopback addresses
//! (127.0.0.x, one port, as Pods of one Service would be).

mod support;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::tls::https_client;
use support::{client, free_port, write_atomic, Reply, Sluice, INGRESS_CLASS};

/// A `sluice-echo` on a given address (killed on drop).
struct Backend {
    child: Child,
    addr: SocketAddr,
}

impl Backend {
    fn start(name: &str, addr: SocketAddr) -> Backend {
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-echo"))
            .args([
                "--listen",
                &addr.to_string(),
                "--name",
                name,
                "--threads",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-echo");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "{name} never listened on {addr}");
            std::thread::sleep(Duration::from_millis(10));
        }
        Backend { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` backends `b1..bn` on 127.0.0.{base+1..} sharing one free port.
fn pool(n: u8, base: u8) -> Vec<Backend> {
    let port = free_port();
    (1..=n)
        .map(|i| {
            let addr: SocketAddr = format!("127.0.0.{}:{port}", base + i).parse().unwrap();
            Backend::start(&format!("b{i}"), addr)
        })
        .collect()
}

/// Service `svc` (port 80 → the backends' port) and its EndpointSlice.
fn service(svc: &str, backends: &[&Backend], spec_extra: &str) -> String {
    let port = backends[0].addr.port();
    let eps: Vec<String> = backends
        .iter()
        .map(|b| format!("{{addresses: [\"{}\"]}}", b.addr.ip()))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: default}}\nspec: {{ports: [{{name: http, port: 80, targetPort: {port}}}]{spec_extra}}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-1, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints: [{}]\n",
        eps.join(", ")
    )
}

/// An Ingress for `host` → `svc` with `nginx.ingress.kubernetes.io/*` annotations.
fn ingress(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    // The host has TLS (for the Secure cookie check); plain HTTP must not redirect.
    let annotations: Vec<(&str, &str)> = [("ssl-redirect", "false")]
        .into_iter()
        .chain(annotations.iter().copied())
        .collect();
    support::objects::MkIngress {
        name,
        host: Some(host),
        paths: &[("Prefix", "/", svc)],
        annotations: &annotations,
        tls: true,
        ..support::objects::MkIngress::default()
    }
    .yaml()
}

/// GET through sluice with an optional Cookie header.
fn get(s: &Sluice, host: &str, path: &str, cookie: Option<&str>) -> Reply {
    let mut r = client().get(s.url(path)).header("Host", host);
    if let Some(c) = cookie {
        r = r.header("Cookie", c);
    }
    Reply::from(r.send().unwrap())
}

fn set_cookie(r: &Reply) -> Option<String> {
    r.headers
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
}

/// `NAME=value` from a Set-Cookie header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

/// A new client: its first request, the backend it landed on and its cookie.
fn new_client(s: &Sluice, host: &str) -> (String, String) {
    let r = get(s, host, "/", None);
    assert_eq!(r.status, 200, "{r:?}");
    let c = set_cookie(&r).unwrap_or_else(|| panic!("no Set-Cookie for a new client: {r:?}"));
    (r.backend().unwrap().to_string(), cookie_pair(&c))
}

#[test]
fn cookie_affinity_sticks_spreads_rebalances_and_fails_over() {
    let mut backends = pool(4, 20);
    let four = backends.pop().unwrap();
    let three: Vec<&Backend> = backends.iter().collect();
    let sticky = [
        ("affinity", "cookie"),
        ("session-cookie-name", "SLUICE"),
        ("session-cookie-max-age", "3600"),
        ("session-cookie-samesite", "Lax"),
        ("session-cookie-domain", "balanced.example"),
    ];
    let persistent = [("affinity", "cookie"), ("affinity-mode", "persistent")];
    let manifests = |svc: &str| {
        format!(
            "{INGRESS_CLASS}{}{}{svc}",
            ingress("balanced", "balanced.example", "app", &sticky),
            ingress("persistent", "persistent.example", "app", &persistent)
        )
    };
    let s = Sluice::start(
        &[("app.yaml", &manifests(&service("app", &three, "")))],
        &[],
    );

    // The cookie as configured; HttpOnly always; Secure only over HTTPS; no address.
    let r = get(&s, "balanced.example", "/", None);
    let c = set_cookie(&r).expect("Set-Cookie");
    let value = cookie_pair(&c);
    assert!(value.starts_with("SLUICE="), "{c}");
    assert!(!value.contains("127.0.0"), "cookie reveals an address: {c}");
    for attr in [
        "Path=/",
        "Max-Age=3600",
        "Domain=balanced.example",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(c.split("; ").any(|a| a == attr), "{attr} missing: {c}");
    }
    assert!(!c.contains("Secure"), "Secure over plain HTTP: {c}");
    let https = https_client("balanced.example", s.https)
        .build()
        .unwrap()
        .get(format!("https://balanced.example:{}/", s.https.port()))
        .send()
        .unwrap();
    let c = https.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(c.contains("; Secure"), "no Secure over HTTPS: {c}");
    let (_, p) = new_client(&s, "persistent.example");
    assert!(p.starts_with("INGRESSCOOKIE="), "default name: {p}");

    // A client with a cookie jar stays on one backend for 50 requests.
    for host in ["balanced.example", "persistent.example"] {
        let (home, cookie) = new_client(&s, host);
        for i in 0..50 {
            let r = get(&s, host, "/", Some(&cookie));
            assert_eq!(r.backend(), Some(home.as_str()), "{host} request {i}");
            assert!(set_cookie(&r).is_none(), "cookie rewritten: {r:?}");
        }
    }
    // Fresh clients spread over all three.
    for host in ["balanced.example", "persistent.example"] {
        let seen: HashSet<String> = (0..40).map(|_| new_client(&s, host).0).collect();
        assert_eq!(seen.len(), 3, "{host}: fresh clients reached only {seen:?}");
    }

    // A fourth backend appears: persistent clients stay; balanced ones move only to it,
    // and only about a quarter of them.
    let clients: Vec<(&str, String, String)> = ["balanced.example", "persistent.example"]
        .iter()
        .flat_map(|h| (0..60).map(move |_| *h))
        .map(|h| {
            let (b, c) = new_client(&s, h);
            (h, b, c)
        })
        .collect();
    let all4: Vec<&Backend> = backends.iter().chain([&four]).collect();
    write_atomic(
        s.dir.path(),
        "app.yaml",
        &manifests(&service("app", &all4, "")),
    );
    s.wait_for("persistent.example", "/", Duration::from_secs(5), |r| {
        r.backend() == Some("b4")
    });
    let mut moved = 0;
    for (host, home, cookie) in &clients {
        let now = get(&s, host, "/", Some(cookie));
        let now = now.backend().unwrap();
        if *host == "persistent.example" {
            assert_eq!(now, home, "persistent client moved");
        } else if now != home {
            assert_eq!(now, "b4", "balanced client moved to an old backend");
            moved += 1;
        }
    }
    assert!(
        (3..=35).contains(&moved),
        "{moved} of 60 balanced clients moved"
    );

    // The sticky backend goes away (endpoint removed, then the process dies) while its
    // clients keep sending: no request fails and they settle on one other backend; the
    // persistent cookie is rewritten.
    let (home_b, cookie_b) = loop {
        let (b, c) = new_client(&s, "balanced.example");
        if b == "b1" {
            break (b, c);
        }
    };
    let (home_p, mut cookie_p) = loop {
        let (b, c) = new_client(&s, "persistent.example");
        if b == "b1" {
            break (b, c);
        }
    };
    assert_eq!((home_b.as_str(), home_p.as_str()), ("b1", "b1"));
    let rest: Vec<&Backend> = backends[1..].iter().chain([&four]).collect();
    write_atomic(
        s.dir.path(),
        "app.yaml",
        &manifests(&service("app", &rest, "")),
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut killed = false;
    let (mut last_b, mut last_p) = (String::new(), String::new());
    let mut rewrites = 0;
    while Instant::now() < deadline {
        if !killed && deadline - Instant::now() < Duration::from_secs(2) {
            backends[0].kill();
            killed = true;
        }
        let r = get(&s, "balanced.example", "/", Some(&cookie_b));
        assert_eq!(r.status, 200, "{r:?}");
        last_b = r.backend().unwrap().to_string();
        let r = get(&s, "persistent.example", "/", Some(&cookie_p));
        assert_eq!(r.status, 200, "{r:?}");
        last_p = r.backend().unwrap().to_string();
        if let Some(c) = set_cookie(&r) {
            cookie_p = cookie_pair(&c);
            rewrites += 1;
        }
    }
    assert_ne!(last_b, "b1");
    assert_ne!(last_p, "b1");
    assert!(rewrites >= 1, "persistent cookie never rewritten");
    for _ in 0..10 {
        assert_eq!(
            get(&s, "balanced.example", "/", Some(&cookie_b)).backend(),
            Some(last_b.as_str())
        );
        let r = get(&s, "persistent.example", "/", Some(&cookie_p));
        assert_eq!(r.backend(), Some(last_p.as_str()));
        assert!(set_cookie(&r).is_none(), "rewritten again: {r:?}");
    }
}

#[test]
fn service_client_ip_affinity_keeps_each_client_on_one_backend() {
    let backends = pool(3, 40);
    let refs: Vec<&Backend> = backends.iter().collect();
    let m = format!(
        "{INGRESS_CLASS}{}{}{}",
        ingress("clientip", "clientip.example", "clientip", &[]),
        service(
            "clientip",
            &refs,
            ", sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}"
        ),
        // The same backends without affinity: round robin.
        ingress("plain", "plain.example", "plain", &[]) + &service("plain", &refs, "")
    );
    let s = Sluice::start(&[("ip.yaml", &m)], &[]);
    let mut per_client = HashMap::new();
    for i in 0..24u8 {
        let ip: IpAddr = format!("127.0.0.{}", 100 + i).parse().unwrap();
        let c = reqwest::blocking::Client::builder()
            .local_address(ip)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let seen: HashSet<String> = (0..10)
            .map(|_| {
                let r = Reply::from(
                    c.get(s.url("/"))
                        .header("Host", "clientip.example")
                        .send()
                        .unwrap(),
                );
                assert_eq!(r.status, 200);
                r.echoed()["peer"].as_str().unwrap();
                r.backend().unwrap().to_string()
            })
            .collect();
        assert_eq!(seen.len(), 1, "client {ip} reached {seen:?}");
        per_client.insert(ip, seen.into_iter().next().unwrap());
    }
    let spread: HashSet<&String> = per_client.values().collect();
    assert_eq!(spread.len(), 3, "24 clients reached only {spread:?}");
    // Without sessionAffinity one client is spread.
    let seen: HashSet<String> = (0..9)
        .map(|_| s.get("plain.example", "/").backend().unwrap().to_string())
        .collect();
    assert_eq!(seen.len(), 3);
}

#[test]
fn upstream_hash_by_request_uri_is_consistent() {
    let backends = pool(5, 60);
    let all: Vec<&Backend> = backends.iter().collect();
    let m = |b: &[&Backend]| {
        format!(
            "{INGRESS_CLASS}{}{}",
            ingress(
                "hash",
                "hash.example",
                "hash",
                &[("upstream-hash-by", "$request_uri")]
            ),
            service("hash", b, "")
        )
    };
    let s = Sluice::start(&[("hash.yaml", &m(&all))], &[]);
    let uris: Vec<String> = (0..200).map(|k| format!("/item/{k}?v={}", k % 7)).collect();
    let map = |s: &Sluice| -> Vec<String> {
        uris.iter()
            .map(|u| s.get("hash.example", u).backend().unwrap().to_string())
            .collect()
    };
    let before = map(&s);
    assert_eq!(map(&s), before, "the same URI moved between two passes");
    let used: HashSet<&String> = before.iter().collect();
    assert_eq!(used.len(), 5, "keys reached only {used:?}");

    // Remove b5: only its keys move (about a fifth), nothing else.
    write_atomic(s.dir.path(), "hash.yaml", &m(&all[..4]));
    s.wait_for(
        "hash.example",
        &uris[before.iter().position(|b| b == "b5").unwrap()],
        Duration::from_secs(5),
        |r| r.backend() != Some("b5"),
    );
    let after = map(&s);
    let on_b5 = before.iter().filter(|b| *b == "b5").count();
    let mut moved = 0;
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        if a != b {
            assert_eq!(a, "b5", "{} moved from {a} to {b}", uris[i]);
            moved += 1;
        }
    }
    assert_eq!(moved, on_b5);
    assert!((20..=70).contains(&moved), "{moved} of 200 URIs moved");
}

#[test]
fn killed_backend_costs_no_request_and_returns_after_recovery() {
    let mut backends = pool(3, 80);
    let refs: Vec<&Backend> = backends.iter().collect();
    let m = format!(
        "{INGRESS_CLASS}{}{}",
        ingress("failover", "failover.example", "failover", &[]),
        service("failover", &refs, "")
    );
    let s = Arc::new(Sluice::start(&[("f.yaml", &m)], &[]));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let seen_b2 = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (s, stop, ok, seen_b2) = (s.clone(), stop.clone(), ok.clone(), seen_b2.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    // Alternate GET and HEAD keep-alive requests (idempotent).
                    let req = if t % 2 == 0 {
                        c.get(s.url("/"))
                    } else {
                        c.head(s.url("/"))
                    };
                    match req.header("Host", "failover.example").send() {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if r.headers().get("x-backend").is_some_and(|v| v == "b2") {
                                seen_b2.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let addr = backends[1].addr;
    backends[1].kill();
    let killed_at = ok.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1500));
    let b2_while_dead = seen_b2.load(Ordering::Relaxed);
    // It comes back on the same address and gets traffic again.
    backends[1] = Backend::start("b2", addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen_b2.load(Ordering::Relaxed) == b2_while_dead {
        assert!(
            Instant::now() < deadline,
            "b2 never received traffic again\n{}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let total = ok.load(Ordering::Relaxed);
    eprintln!(
        "{total} requests, {} after the kill, 0 expected failures",
        total - killed_at
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        s.logs()
    );
    assert!(total - killed_at > 50, "too little load after the kill");
}
