//! Choosing the endpoint for a request, and the balancing state that outlives tables.
//!
//! Owns, per request: cookie affinity (read and issue `Set-Cookie`), the Service's
//! `sessionAffinity: ClientIP`, and the route's policy (round robin, EWMA, hash); and,
//! across requests and table swaps, keyed by endpoint address: EWMA latency and
//! requests in flight, passive health (an endpoint whose connection fails is skipped
//! for 1 s, doubling per consecutive failure up to 10 s, and is back after its first
//! success), and the client-IP stickiness table. One `Balancer` is shared by every
//! worker.
//!
//! Order of precedence for a request: a valid affinity cookie; else ClientIP affinity
//! (only when the route has no cookie affinity); else the route's policy. Endpoints
//! that already failed this request, or are passively marked down, are skipped while
//! any other remains.
//!
//! A canary route's affinity cookies carry [`CANARY_MARK`], so each of the main and the
//! canary balancer reads only the cookies it issued (and `canary` can tell a client
//! pinned to either); the mark lives here with the rest of cookie affinity, and this
//! module imports nothing else from the proxy.
//!
//! Cookie values never reveal an address: `balanced` cookies are random tokens placed on
//! the hash ring (so they need no rewriting when an endpoint goes: the ring sends the
//! token to a neighbour); `persistent` cookies are HMAC-SHA256 of the endpoint address
//! under `--session-cookie-key` (random per process when unset, so set it when running
//! several replicas or upgrading in place).
//!
//! Bounds (issue 11): cookie affinity keeps no state (the cookie carries it). The
//! ClientIP table holds at most 16 shards × 8192 clients, about 13 MiB; a full shard
//! drops expired entries, then its least recently used eighth (a dropped client is
//! placed again by hashing its address, so it normally lands where it was). The
//! per-endpoint state map is keyed by endpoint addresses from the table, not by
//! clients; past 10,000 entries the idle, healthy ones are forgotten.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use pingora::http::RequestHeader;
use ring::hmac;

use crate::routing::balance::stable_hash;
use crate::routing::cookie;
use crate::routing::{
    AffinityMode, Backend, CookieAffinity, HashKey, LbPolicy, RequestVars, Route,
};

/// How long the EWMA remembers (ingress-nginx's decay time).
const EWMA_DECAY: Duration = Duration::from_secs(10);
const DOWN_MIN: Duration = Duration::from_secs(1);
const DOWN_MAX: Duration = Duration::from_secs(10);
const STICKY_SHARDS: usize = 16;
/// ClientIP entries per shard: 16 × 8192 = 131,072 clients (about 100 bytes each with
/// the map's overhead, so some 13 MiB at most).
const STICKY_SHARD_CAP: usize = 8192;

/// (client IP, backend key) → (endpoint, last used).
type StickyShard = HashMap<(IpAddr, u64), (SocketAddr, Instant)>;

/// Makes room in a full ClientIP shard: expired entries go; if that frees less than an
/// eighth, the least recently used eighth goes too, so a flood of new addresses costs
/// amortised O(1) per insert. A forgotten client is placed again by hashing its address,
/// which picks the same endpoint while the endpoints are unchanged.
fn evict_sticky(table: &mut StickyShard, now: Instant, timeout: Duration) {
    table.retain(|_, (_, at)| now.duration_since(*at) < timeout);
    let target = STICKY_SHARD_CAP - STICKY_SHARD_CAP / 8;
    if table.len() > target {
        let mut ages: Vec<Instant> = table.values().map(|(_, at)| *at).collect();
        let cut = ages.len() - target;
        let (_, nth, _) = ages.select_nth_unstable(cut - 1);
        let oldest_kept = *nth;
        table.retain(|_, (_, at)| *at > oldest_kept);
    }
}

/// Per-endpoint state, kept across table generations.
#[derive(Debug, Default)]
pub struct EndpointState {
    /// Decayed time to response header, in microseconds (f64 bits).
    ewma_us: AtomicU64,
    /// When `ewma_us` was last updated (ms since the balancer started).
    ewma_at: AtomicU64,
    inflight: AtomicUsize,
    fails: AtomicU32,
    /// Skipped until this time (ms since the balancer started; 0 = healthy).
    down_until: AtomicU64,
}

/// Decrements an endpoint's in-flight count when the request ends.
pub struct InflightGuard(Arc<EndpointState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoint chosen for one attempt.
pub struct Pick {
    pub addr: SocketAddr,
    /// The affinity cookie value to set on the response, if it must change.
    pub set_cookie: Option<String>,
}

/// Shared balancing state (one per process).
pub struct Balancer {
    started: Instant,
    states: RwLock<HashMap<SocketAddr, Arc<EndpointState>>>,
    /// Endpoints currently marked down; zero lets healthy traffic skip every lookup.
    down: AtomicUsize,
    /// Endpoints with a failure not yet cleared by an answer; zero lets `mark_ok` skip
    /// the state map on every response of a healthy round-robin route. (A pruned state
    /// may leave it high, which only costs that lookup.)
    failing: AtomicUsize,
    sticky: Vec<Mutex<StickyShard>>,
    cookie_key: hmac::Key,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer").finish_non_exhaustive()
    }
}

/// What the balancer needs to know about a request.
pub struct RequestInfo<'a> {
    pub req: &'a RequestHeader,
    pub client_ip: Option<IpAddr>,
    /// `Host`, else the HTTP/2 `:authority`, as received.
    pub http_host: &'a str,
}

impl Balancer {
    /// `cookie_key`: the secret for `persistent` cookie values (random when `None`).
    pub fn new(cookie_key: Option<&[u8]>) -> Balancer {
        let key = match cookie_key {
            Some(k) => hmac::Key::new(hmac::HMAC_SHA256, k),
            None => hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .expect("the system RNG works"),
        };
        Balancer {
            started: Instant::now(),
            states: RwLock::new(HashMap::new()),
            down: AtomicUsize::new(0),
            failing: AtomicUsize::new(0),
            sticky: (0..STICKY_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            cookie_key: key,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    fn state(&self, addr: SocketAddr) -> Arc<EndpointState> {
        if let Some(s) = self
            .states
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&addr)
        {
            return s.clone();
        }
        let mut map = self.states.write().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            // Forget idle, healthy endpoints (Pod IPs churn forever).
            map.retain(|_, s| {
                s.inflight.load(Ordering::Relaxed) > 0 || s.fails.load(Ordering::Relaxed) > 0
            });
        }
        map.entry(addr).or_default().clone()
    }

    fn existing(&self, addr: &SocketAddr) -> Option<Arc<EndpointState>> {
        self.states
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .cloned()
    }

    /// Whether passive health currently skips `addr`.
    pub fn is_down(&self, addr: &SocketAddr) -> bool {
        if self.down.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.existing(addr).is_some_and(|s| {
            let until = s.down_until.load(Ordering::Relaxed);
            until != 0 && until > self.now_ms()
        })
    }

    /// A connection to `addr` failed or timed out: skip it for a while.
    pub fn mark_failed(&self, addr: SocketAddr) {
        let s = self.state(addr);
        let fails = s.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if fails == 1 {
            self.failing.fetch_add(1, Ordering::Relaxed);
        }
        let pause = (DOWN_MIN * 2u32.saturating_pow(fails.min(8) - 1)).min(DOWN_MAX);
        let was = s
            .down_until
            .swap(self.now_ms() + pause.as_millis() as u64, Ordering::Relaxed);
        if was == 0 {
            self.down.fetch_add(1, Ordering::Relaxed);
        }
        // A failure also counts as a slow response for EWMA.
        self.observe(&s, pause);
    }

    /// `addr` answered: it is healthy again; feed EWMA with the time to response header.
    pub fn mark_ok(&self, addr: SocketAddr, latency: Duration, ewma: bool) {
        let s = if ewma {
            Some(self.state(addr))
        } else if self.failing.load(Ordering::Relaxed) == 0 {
            None
        } else {
            self.existing(&addr)
        };
        let Some(s) = s else { return };
        if s.fails.swap(0, Ordering::Relaxed) > 0 {
            self.failing.fetch_sub(1, Ordering::Relaxed);
            if s.down_until.swap(0, Ordering::Relaxed) != 0 {
                self.down.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if ewma {
            self.observe(&s, latency);
        }
    }

    fn observe(&self, s: &EndpointState, latency: Duration) {
        let now = self.now_ms();
        let last = s.ewma_at.swap(now, Ordering::Relaxed);
        let sample = latency.as_micros() as f64;
        let old = f64::from_bits(s.ewma_us.load(Ordering::Relaxed));
        let value = if last == 0 {
            sample
        } else {
            let w = (-((now - last) as f64) / EWMA_DECAY.as_millis() as f64).exp();
            old * w + sample * (1.0 - w)
        };
        s.ewma_us.store(value.to_bits(), Ordering::Relaxed);
    }

    /// EWMA's score: decayed latency times the queue the request would join.
    fn score(&self, addr: SocketAddr) -> f64 {
        match self.existing(&addr) {
            None => 0.0,
            Some(s) => {
                let ewma = f64::from_bits(s.ewma_us.load(Ordering::Relaxed));
                (ewma + 1.0) * (s.inflight.load(Ordering::Relaxed) + 1) as f64
            }
        }
    }

    /// Counts a request in flight to `addr` until the guard drops (EWMA routes).
    pub fn track(&self, addr: SocketAddr) -> InflightGuard {
        let s = self.state(addr);
        s.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(s)
    }

    /// Chooses an endpoint of `route.backend` (which must have addresses) for one attempt.
    pub fn pick(
        &self,
        route: &Route,
        info: &RequestInfo<'_>,
        failed: &[SocketAddr],
    ) -> Option<Pick> {
        let backend = &*route.backend;
        let addrs = backend.addrs();
        if addrs.is_empty() {
            return None;
        }
        // Prefer endpoints that are neither failed for this request nor marked down;
        // then any not failed for this request; then anything. Tiers are tried in turn
        // rather than counted up front, so the healthy case costs no scan.
        let strict = |i: usize| !failed.contains(&addrs[i]) && !self.is_down(&addrs[i]);
        let loose = |i: usize| !failed.contains(&addrs[i]);
        let any = |_: usize| true;
        let tiers: [&dyn Fn(usize) -> bool; 3] = [&strict, &loose, &any];
        for usable in tiers {
            let pick = if let Some(aff) = &route.affinity {
                self.pick_cookie(route, aff, info, failed, usable)
            } else if let (Some(timeout), Some(ip)) = (backend.client_ip_affinity, info.client_ip) {
                self.pick_client_ip(backend, ip, timeout, usable)
            } else {
                self.pick_policy(route, info, usable).map(|i| Pick {
                    addr: addrs[i],
                    set_cookie: None,
                })
            };
            if let Some(p) = pick {
                return Some(mark_pick(route, p));
            }
        }
        None
    }

    fn pick_policy(
        &self,
        route: &Route,
        info: &RequestInfo<'_>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let backend = &*route.backend;
        let addrs = backend.addrs();
        match &route.lb {
            LbPolicy::RoundRobin => round_robin(backend, usable),
            LbPolicy::Hash(key) => {
                let h = stable_hash(eval(key, info).as_bytes());
                backend.ring().pick(h, usable)
            }
            LbPolicy::Ewma => {
                let candidates: Vec<usize> = (0..addrs.len()).filter(|i| usable(*i)).collect();
                match candidates.len() {
                    0 => None,
                    1 => Some(candidates[0]),
                    n => {
                        // Power of two choices.
                        let a = candidates[fastrand::usize(..n)];
                        let mut b = candidates[fastrand::usize(..n - 1)];
                        if b == a {
                            b = candidates[n - 1];
                        }
                        Some(if self.score(addrs[b]) < self.score(addrs[a]) {
                            b
                        } else {
                            a
                        })
                    }
                }
            }
        }
    }

    fn pick_client_ip(
        &self,
        backend: &Backend,
        ip: IpAddr,
        timeout: Duration,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<Pick> {
        let addrs = backend.addrs();
        let shard = &self.sticky[(stable_hash(ip.to_string().as_bytes()) as usize) % STICKY_SHARDS];
        let now = Instant::now();
        let mut table = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((addr, at)) = table.get(&(ip, backend.key)).copied() {
            if now.duration_since(at) < timeout {
                if let Some(i) = addrs.iter().position(|a| *a == addr) {
                    if usable(i) {
                        table.insert((ip, backend.key), (addr, now));
                        return Some(Pick {
                            addr,
                            set_cookie: None,
                        });
                    }
                }
            }
        }
        // New (or expired, or gone) client: place it by hashing its address, so
        // replicas agree, and remember it as kube-proxy does.
        let i = backend
            .ring()
            .pick(stable_hash(ip.to_string().as_bytes()), usable)?;
        if table.len() >= STICKY_SHARD_CAP {
            evict_sticky(&mut table, now, timeout);
        }
        table.insert((ip, backend.key), (addrs[i], now));
        Some(Pick {
            addr: addrs[i],
            set_cookie: None,
        })
    }

    /// Entries in the ClientIP table (all shards).
    pub fn sticky_len(&self) -> usize {
        self.sticky
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    fn pick_cookie(
        &self,
        route: &Route,
        aff: &CookieAffinity,
        info: &RequestInfo<'_>,
        failed: &[SocketAddr],
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<Pick> {
        let backend = &*route.backend;
        let addrs = backend.addrs();
        let cookie = own_affinity_cookie(route, cookie::get(&info.req.headers, &aff.name));
        match aff.mode {
            AffinityMode::Persistent => {
                let ids = backend.persistent_ids.get_or_init(|| {
                    addrs
                        .iter()
                        .map(|a| {
                            let tag = hmac::sign(&self.cookie_key, a.to_string().as_bytes());
                            let mut b = [0u8; 8];
                            b.copy_from_slice(&tag.as_ref()[..8]);
                            u64::from_be_bytes(b)
                        })
                        .collect()
                });
                let home = cookie
                    .and_then(|c| u64::from_str_radix(c, 16).ok())
                    .and_then(|id| ids.iter().position(|x| *x == id));
                if let Some(i) = home {
                    if usable(i) {
                        return Some(Pick {
                            addr: addrs[i],
                            set_cookie: None,
                        });
                    }
                }
                let j = self.pick_policy(route, info, usable)?;
                // Rewrite when the endpoint is gone, or with change-on-failure; an endpoint
                // that is only unhealthy for now gets its client back when it recovers.
                let rewrite = home.is_none() || aff.change_on_failure;
                Some(Pick {
                    addr: addrs[j],
                    set_cookie: rewrite.then(|| format!("{:016x}", ids[j])),
                })
            }
            AffinityMode::Balanced => {
                let ring = backend.ring();
                if let Some(token) = cookie.filter(|c| valid_token(c)) {
                    let key = stable_hash(token.as_bytes());
                    let j = ring.pick(key, usable)?;
                    let home = ring.pick(key, |_| true);
                    let rewrite = aff.change_on_failure
                        && home.is_some_and(|h| h != j && failed.contains(&addrs[h]));
                    let set_cookie = if rewrite { token_for(ring, j) } else { None };
                    return Some(Pick {
                        addr: addrs[j],
                        set_cookie,
                    });
                }
                // A new client: a random token decides, as ingress-nginx's balanced mode.
                let mut token = new_token();
                for _ in 0..8 {
                    let home = ring.pick(stable_hash(token.as_bytes()), |_| true);
                    if home.is_some_and(usable) {
                        break;
                    }
                    token = new_token();
                }
                let j = ring.pick(stable_hash(token.as_bytes()), usable)?;
                Some(Pick {
                    addr: addrs[j],
                    set_cookie: Some(token),
                })
            }
        }
    }
}

fn round_robin(backend: &Backend, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
    let n = backend.addrs().len();
    let start = backend.next_cursor();
    (0..n).map(|k| (start + k) % n).find(|i| usable(*i))
}

fn new_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn valid_token(t: &str) -> bool {
    t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A fresh token whose home on the ring is endpoint `j` (expected n draws).
fn token_for(ring: &crate::routing::Ring, j: usize) -> Option<String> {
    (0..256)
        .map(|_| new_token())
        .find(|t| ring.pick(stable_hash(t.as_bytes()), |_| true) == Some(j))
}

/// Evaluates an `upstream-hash-by` expression for a request (variables not found are
/// empty, as in nginx).
pub fn eval(key: &HashKey, info: &RequestInfo<'_>) -> String {
    let vars = RequestVars {
        method: &info.req.method,
        uri: &info.req.uri,
        headers: &info.req.headers,
        http_host: info.http_host,
        // The hash-key dialect admits neither `$scheme` nor `$server_port`.
        scheme: "",
        server_port: 0,
        remote_addr: info.client_ip,
    };
    key.template.expand(&vars)
}

/// Appended to affinity cookie values the canary issues.
pub const CANARY_MARK: &str = "-canary";

/// The affinity cookie value as `route`'s balancer should read it: a canary route sees
/// only its own (marked) values with the mark removed, a main route only unmarked ones.
pub fn own_affinity_cookie<'a>(route: &Route, value: Option<&'a str>) -> Option<&'a str> {
    let v = value?;
    match v.strip_suffix(CANARY_MARK) {
        Some(inner) => route.is_canary.then_some(inner),
        None => (!route.is_canary).then_some(v),
    }
}

/// Marks the affinity cookie a canary route issues.
pub fn mark_pick(route: &Route, mut pick: Pick) -> Pick {
    if route.is_canary {
        if let Some(c) = pick.set_cookie.as_mut() {
            c.push_str(CANARY_MARK);
        }
    }
    pick
}

/// The `Set-Cookie` value for an affinity cookie.
pub fn set_cookie_header(aff: &CookieAffinity, value: &str, tls: bool, user_agent: &str) -> String {
    let mut c = format!("{}={}; Path={}", aff.name, value, aff.path);
    if let Some(e) = aff.expires {
        c += "; Expires=";
        c += &httpdate::fmt_http_date(SystemTime::now() + e);
    }
    if let Some(m) = aff.max_age {
        c += &format!("; Max-Age={}", m.as_secs());
    }
    if let Some(d) = &aff.domain {
        c += "; Domain=";
        c += d;
    }
    c += "; HttpOnly";
    if aff.secure || tls {
        c += "; Secure";
    }
    if let Some(s) = &aff.samesite {
        let skip = &**s == "None"
            && aff.conditional_samesite_none
            && samesite_none_incompatible(user_agent);
        if !skip {
            c += "; SameSite=";
            c += s;
        }
    }
    c
}

/// Browsers that reject or mistreat `SameSite=None` (the list ingress-nginx uses, from
/// the Chromium project's guidance): Chrome/Chromium 51–66 and Safari/WebKit on iOS 12
/// and macOS 10.14.
fn samesite_none_incompatible(ua: &str) -> bool {
    let chrome_version = ua
        .split("Chrom")
        .nth(1)
        .and_then(|rest| {
            rest.strip_prefix("e/")
                .or_else(|| rest.strip_prefix("ium/"))
        })
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.parse::<u32>().ok());
    if chrome_version.is_some_and(|v| (51..=66).contains(&v)) {
        return true;
    }
    let ios12 = ua.contains("CPU iPhone OS 12_") || ua.contains("CPU OS 12_");
    let mac1014 = ua.contains("Mac OS X 10_14") && ua.contains("Version/") && ua.contains("Safari");
    ios12 || mac1014
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{Endpoints, PathKind};

    fn route(n: u8, lb: LbPolicy) -> Route {
        let addrs = (1..=n)
            .map(|i| format!("10.0.0.{i}:80").parse().unwrap())
            .collect();
        let backend = Arc::new(Backend::new("ns", "svc", "80", Endpoints::Addrs(addrs)));
        let mut r = Route::new(backend, "ns", "ing", "/", PathKind::Prefix);
        r.lb = lb;
        r
    }

    fn req(uri: &str, cookie: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        if let Some(c) = cookie {
            r.insert_header("cookie", c).unwrap();
        }
        r
    }

    #[test]
    fn client_ip_table_stays_bounded_under_a_flood_of_addresses() {
        let r = route(3, LbPolicy::RoundRobin);
        let b = Balancer::new(None);
        let all = |_: usize| true;
        let first: IpAddr = "192.0.2.1".parse().unwrap();
        let placed = b
            .pick_client_ip(&r.backend, first, Duration::from_secs(10800), &all)
            .unwrap()
            .addr;
        // Over twice the cap, all within the affinity timeout.
        for i in 0..300_000u32 {
            let ip = IpAddr::from(std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128));
            b.pick_client_ip(&r.backend, ip, Duration::from_secs(10800), &all)
                .unwrap();
        }
        let n = b.sticky_len();
        assert!(n <= STICKY_SHARDS * STICKY_SHARD_CAP, "{n}");
        assert!(
            n > STICKY_SHARDS * STICKY_SHARD_CAP / 2,
            "evicts only what it must: {n}"
        );
        // A forgotten client is placed where it was.
        let again = b
            .pick_client_ip(&r.backend, first, Duration::from_secs(10800), &all)
            .unwrap()
            .addr;
        assert_eq!(again, placed);
    }

    #[test]
    fn round_robin_skips_failed_endpoints() {
        let r = route(2, LbPolicy::RoundRobin);
        let b = Balancer::new(None);
        let h = req("/", None);
        let info = RequestInfo {
            req: &h,
            client_ip: None,
            http_host: "h",
        };
        let addrs = r.backend.addrs().to_vec();
        let picks: Vec<_> = (0..4)
            .map(|_| b.pick(&r, &info, &[]).unwrap().addr)
            .collect();
        // Alternates, from a random start.
        assert_ne!(picks[0], picks[1]);
        assert_eq!((picks[0], picks[1]), (picks[2], picks[3]));
        for _ in 0..3 {
            assert_eq!(b.pick(&r, &info, &[addrs[0]]).unwrap().addr, addrs[1]);
        }
        // Everything failed: still pick one rather than nothing.
        assert!(b.pick(&r, &info, &addrs).is_some());
    }

    #[test]
    fn ewma_prefers_the_faster_and_less_busy_endpoint() {
        let r = route(2, LbPolicy::Ewma);
        let b = Balancer::new(None);
        let (fast, slow) = (r.backend.addrs()[0], r.backend.addrs()[1]);
        for _ in 0..5 {
            b.mark_ok(fast, Duration::from_millis(2), true);
            b.mark_ok(slow, Duration::from_millis(200), true);
        }
        let h = req("/", None);
        let info = RequestInfo {
            req: &h,
            client_ip: None,
            http_host: "h",
        };
        let to_fast = (0..100)
            .filter(|_| b.pick(&r, &info, &[]).unwrap().addr == fast)
            .count();
        assert_eq!(to_fast, 100);
        // Enough requests queued on the fast one tip the balance.
        let _busy: Vec<_> = (0..200).map(|_| b.track(fast)).collect();
        assert_eq!(b.pick(&r, &info, &[]).unwrap().addr, slow);
    }

    #[test]
    fn hash_by_is_stable_and_skips_failed() {
        let r = route(5, LbPolicy::Hash(HashKey::parse("$request_uri").unwrap()));
        let b = Balancer::new(Some(b"k"));
        let h = req("/a?x=1", None);
        let info = RequestInfo {
            req: &h,
            client_ip: None,
            http_host: "h",
        };
        let first = b.pick(&r, &info, &[]).unwrap().addr;
        for _ in 0..10 {
            assert_eq!(b.pick(&r, &info, &[]).unwrap().addr, first);
        }
        let second = b.pick(&r, &info, &[first]).unwrap().addr;
        assert_ne!(second, first);
        b.mark_failed(first);
        assert_eq!(b.pick(&r, &info, &[]).unwrap().addr, second);
        b.mark_ok(first, Duration::from_millis(1), false);
        assert_eq!(b.pick(&r, &info, &[]).unwrap().addr, first);
    }

    #[test]
    fn persistent_cookie_sticks_and_is_rewritten_when_its_endpoint_goes() {
        let mut r = route(3, LbPolicy::RoundRobin);
        let aff = CookieAffinity::new(AffinityMode::Persistent, "S");
        r.affinity = Some(Arc::new(aff));
        let b = Balancer::new(Some(b"k"));
        let h = req("/", None);
        let info = |h| RequestInfo {
            req: h,
            client_ip: None,
            http_host: "h",
        };
        let p = b.pick(&r, &info(&h), &[]).unwrap();
        let value = p.set_cookie.unwrap();
        assert!(!value.contains("10.0.0"), "{value}");
        let with = req("/", Some(&format!("a=b; S={value}")));
        for _ in 0..20 {
            let q = b.pick(&r, &info(&with), &[]).unwrap();
            assert_eq!(q.addr, p.addr);
            assert!(q.set_cookie.is_none());
        }
        // An unknown (gone) endpoint's cookie is replaced.
        let stale = req("/", Some("S=0123456789abcdef"));
        assert!(b.pick(&r, &info(&stale), &[]).unwrap().set_cookie.is_some());
    }

    #[test]
    fn canary_affinity_cookies_carry_the_mark() {
        let mut main = route(1, LbPolicy::RoundRobin);
        main.affinity = Some(Arc::new(CookieAffinity::new(AffinityMode::Balanced, "S")));
        let mut alt = main.clone();
        alt.is_canary = true;
        let token = "0123456789abcdef0123456789abcdef";
        let marked = format!("{token}{CANARY_MARK}");
        assert_eq!(own_affinity_cookie(&main, Some(token)), Some(token));
        assert_eq!(own_affinity_cookie(&main, Some(&marked)), None);
        assert_eq!(own_affinity_cookie(&alt, Some(&marked)), Some(token));
        assert_eq!(own_affinity_cookie(&alt, Some(token)), None);
        let p = mark_pick(
            &alt,
            Pick {
                addr: "10.0.0.1:80".parse().unwrap(),
                set_cookie: Some(token.into()),
            },
        );
        assert_eq!(p.set_cookie.as_deref(), Some(marked.as_str()));
        // A main route's cookie is left alone.
        let p = mark_pick(
            &main,
            Pick {
                addr: "10.0.0.1:80".parse().unwrap(),
                set_cookie: Some(token.into()),
            },
        );
        assert_eq!(p.set_cookie.as_deref(), Some(token));
    }

    #[test]
    fn cookie_attributes() {
        let aff = CookieAffinity {
            mode: AffinityMode::Balanced,
            name: "C".into(),
            path: "/app".into(),
            expires: Some(Duration::from_secs(60)),
            max_age: Some(Duration::from_secs(120)),
            samesite: Some("None".into()),
            conditional_samesite_none: true,
            secure: false,
            domain: Some("example.com".into()),
            change_on_failure: false,
        };
        let c = set_cookie_header(&aff, "v", true, "curl/8");
        assert!(c.starts_with("C=v; Path=/app; Expires="), "{c}");
        assert!(
            c.contains("; Max-Age=120; Domain=example.com; HttpOnly; Secure; SameSite=None"),
            "{c}"
        );
        let old = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.113 Safari/537.36";
        assert!(!set_cookie_header(&aff, "v", false, old).contains("SameSite"));
        assert!(!set_cookie_header(&aff, "v", false, "x").contains("Secure"));
    }
}
