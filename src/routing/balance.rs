//! How a route spreads requests over a backend's endpoints: the per-route policy
//! (round robin, EWMA, `upstream-hash-by` consistent hashing), cookie affinity and the
//! `proxy-next-upstream` retry rules, plus the consistent-hash ring itself.
//!
//! Everything here is immutable table data built by translation. The state that must
//! outlive a table swap (EWMA latencies, passively failed endpoints, client-IP
//! stickiness) lives in `proxy::balance`, keyed by endpoint address, so a swap never
//! resets it. The ring is Ketama-style: 160 points per endpoint on a 64-bit circle,
//! hashed from the endpoint address, so adding or removing one of n endpoints moves
//! only about 1/n of the keys, and every sluice replica maps a key the same way.
//!
//! Why not `pingora-ketama` (in the lock file through Pingora's `lb`): neither ring
//! gives ingress-nginx's mapping (its `upstream-hash-by` is lua-resty-balancer's
//! `chash`, not nginx's Ketama, which pingora-ketama reproduces), so nothing is gained
//! in compatibility, and switching would move keys. What this ring must keep is its own
//! mapping: `balanced` affinity cookies are tokens placed on it, so a different ring
//! would re-pin every client at the upgrade, and during a rolling upgrade old and new
//! replicas would send one key to different endpoints. It also needs the walk past
//! endpoints that are down or already failed for the request (`pick`'s `usable`),
//! on 64-bit keys, where pingora-ketama hashes with 32-bit CRC.

use std::net::SocketAddr;
use std::time::Duration;

use super::template::{self, Dialect, Template};

/// Why an `upstream-hash-by` expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A variable the hash-key dialect does not have.
    #[error("${0} is not supported (use $request_uri, $uri, $host, $remote_addr, $http_*, $cookie_*, $arg_*)")]
    Unsupported(Box<str>),
    /// A lone `$` or an unclosed `${`.
    #[error(transparent)]
    Template(template::Error),
    /// Text without a variable: every request would land on one endpoint.
    #[error("{0:?} has no variable, so every request would hash alike")]
    Constant(Box<str>),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `load-balance` / `upstream-hash-by`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    /// Latency-weighted: the better of two random endpoints by decayed response time
    /// times requests in flight (ingress-nginx's `ewma`, power of two choices).
    Ewma,
    /// Consistent hashing of an nginx expression.
    Hash(HashKey),
}

/// A parsed `upstream-hash-by` expression such as `$host$request_uri` or `user-$arg_id`:
/// a template of the hash-key dialect (`$request_uri`, `$uri`, `$host`, `$remote_addr`,
/// `$http_*`, `$cookie_*`, `$arg_*`), evaluated by `routing::template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashKey {
    pub template: Template,
}

impl HashKey {
    /// Parses an nginx expression: `$name` or `${name}` variables among literal text.
    /// Unknown variables are an error (nginx would fail its config test).
    pub fn parse(expr: &str) -> Result<HashKey> {
        let template = Template::parse_in(expr, Dialect::HashKey).map_err(|e| match e {
            template::Error::Unknown(name) => Error::Unsupported(name),
            e => Error::Template(e),
        })?;
        if !template.has_variables() {
            return Err(Error::Constant(expr.into()));
        }
        Ok(HashKey { template })
    }
}

impl std::fmt::Display for HashKey {
    /// The expression in nginx syntax (braced variables), for logs and tests.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.template.fmt(f)
    }
}

/// `affinity-mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AffinityMode {
    /// The cookie holds a random token placed on the hash ring: scaling up moves about
    /// 1/n of the clients, to rebalance (ingress-nginx's default).
    #[default]
    Balanced,
    /// The cookie names the endpoint (by keyed hash, never its address): a client stays
    /// while that endpoint exists.
    Persistent,
}

/// `affinity: cookie` and its `session-cookie-*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAffinity {
    pub mode: AffinityMode,
    pub name: Box<str>,
    /// `session-cookie-path`, else the rule's path.
    pub path: Box<str>,
    pub expires: Option<Duration>,
    pub max_age: Option<Duration>,
    /// `None`, `Lax` or `Strict`, as configured.
    pub samesite: Option<Box<str>>,
    /// Leave out `SameSite=None` for browsers known to mishandle it.
    pub conditional_samesite_none: bool,
    /// Always `Secure` (it is also added whenever the request came over HTTPS).
    pub secure: bool,
    pub domain: Option<Box<str>>,
    /// Rewrite the cookie when its endpoint failed this request and another answered.
    pub change_on_failure: bool,
}

impl CookieAffinity {
    /// Cookie affinity with every `session-cookie-*` setting at its default.
    pub fn new(mode: AffinityMode, name: &str) -> CookieAffinity {
        CookieAffinity {
            mode,
            name: name.into(),
            path: "/".into(),
            expires: None,
            max_age: None,
            samesite: None,
            conditional_samesite_none: false,
            secure: false,
            domain: None,
            change_on_failure: false,
        }
    }
}

/// `proxy-next-upstream`, `-tries`, `-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextUpstream {
    /// Retry when connecting fails or the connection breaks before a response.
    pub on_error: bool,
    /// Retry when connecting or waiting for the response header times out.
    pub on_timeout: bool,
    /// Also retry non-idempotent requests (POST, PATCH) after they may have been sent.
    pub non_idempotent: bool,
    /// Attempts in total, the first included (`0` = unlimited, capped at the endpoint count).
    pub tries: u32,
    /// Overall time for all attempts (`None` = unlimited).
    pub timeout: Option<Duration>,
    /// `invalid_header`: retry when the upstream's response head does not parse.
    pub invalid_header: bool,
    /// `http_500`, `http_502`, ...: retry when the upstream answers one of these.
    pub statuses: RetryStatuses,
}

/// The statuses `proxy-next-upstream` may list (nginx's `http_*` values), as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryStatuses(u8);

impl RetryStatuses {
    /// Every status nginx accepts, in its documentation's order.
    pub const KNOWN: [u16; 7] = [500, 502, 503, 504, 403, 404, 429];

    /// Adds `code`; `false` when nginx has no `http_<code>`.
    pub fn insert(&mut self, code: u16) -> bool {
        match Self::KNOWN.iter().position(|c| *c == code) {
            Some(i) => {
                self.0 |= 1 << i;
                true
            }
            None => false,
        }
    }

    pub fn contains(self, code: u16) -> bool {
        Self::KNOWN
            .iter()
            .position(|c| *c == code)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Default for NextUpstream {
    /// ingress-nginx: `error timeout`, 3 tries, no overall timeout.
    fn default() -> Self {
        NextUpstream {
            on_error: true,
            on_timeout: true,
            non_idempotent: false,
            tries: 3,
            timeout: None,
            invalid_header: false,
            statuses: RetryStatuses::default(),
        }
    }
}

/// Points each endpoint gets on the ring (nginx's Ketama uses 160 per unit of weight).
const POINTS_PER_ENDPOINT: u64 = 160;

/// A consistent-hash ring over a backend's endpoints.
#[derive(Debug, Default)]
pub struct Ring {
    /// (point, index into the endpoint list), sorted by point.
    points: Vec<(u64, u32)>,
}

impl Ring {
    pub fn new(endpoints: &[SocketAddr]) -> Ring {
        let mut points = Vec::with_capacity(endpoints.len() * POINTS_PER_ENDPOINT as usize);
        for (i, ep) in endpoints.iter().enumerate() {
            let base = stable_hash(ep.to_string().as_bytes());
            for j in 0..POINTS_PER_ENDPOINT {
                points.push((mix(base ^ mix(j + 1)), i as u32));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The first endpoint clockwise from `key` that `usable` accepts; `None` if none does.
    pub fn pick(&self, key: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < key);
        let n = self.points.len();
        let mut tried = 0usize;
        let mut last = u32::MAX;
        for k in 0..n {
            let (_, idx) = self.points[(start + k) % n];
            if idx == last {
                continue;
            }
            last = idx;
            if usable(idx as usize) {
                return Some(idx as usize);
            }
            tried += 1;
            // Every endpoint rejected (each appears many times): stop early.
            if tried > 4 * POINTS_PER_ENDPOINT as usize {
                break;
            }
        }
        None
    }
}

/// FNV-1a 64, finished with a mixer: stable across processes, versions and replicas
/// (std's hasher is not guaranteed to be), so every replica hashes a key alike.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: spreads FNV's weak low bits over the whole word.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::template::{Part, Var};

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| format!("10.0.0.{i}:8080").parse().unwrap())
            .collect()
    }

    #[test]
    fn parses_nginx_expressions() {
        let k = HashKey::parse("$request_uri").unwrap();
        assert_eq!(k.template.parts, vec![Part::Var(Var::RequestUri)]);
        let k = HashKey::parse("u-${arg_id}/$http_x_user$cookie_SID").unwrap();
        assert_eq!(
            k.template.parts,
            vec![
                Part::Literal("u-".into()),
                Part::Var(Var::Arg("id".into())),
                Part::Literal("/".into()),
                Part::Var(Var::Http("x-user".into())),
                Part::Var(Var::Cookie("SID".into())),
            ]
        );
        assert_eq!(k.to_string(), "u-${arg_id}/${http_x_user}${cookie_SID}");
        assert!(HashKey::parse("$nope").is_err());
        assert!(HashKey::parse("constant").is_err());
        assert!(HashKey::parse("${host").is_err());
        assert!(HashKey::parse("a $ b").is_err());
    }

    #[test]
    fn removing_one_of_five_endpoints_moves_about_a_fifth_of_keys() {
        let five = addrs(5);
        let four: Vec<_> = five[..4].to_vec();
        let (r5, r4) = (Ring::new(&five), Ring::new(&four));
        let keys = 10_000u64;
        let mut moved = 0;
        let mut per = [0usize; 5];
        for k in 0..keys {
            let key = stable_hash(format!("/item/{k}").as_bytes());
            let a = five[r5.pick(key, |_| true).unwrap()];
            let b = four[r4.pick(key, |_| true).unwrap()];
            per[five.iter().position(|x| *x == a).unwrap()] += 1;
            if a != b {
                moved += 1;
            }
        }
        // Only keys of the removed endpoint move.
        assert_eq!(
            moved, per[4],
            "moved {moved}, removed endpoint had {}",
            per[4]
        );
        assert!((1200..2800).contains(&moved), "moved {moved} of {keys}");
        for (i, n) in per.iter().enumerate() {
            assert!((1200..2800).contains(n), "endpoint {i} got {n} of {keys}");
        }
    }

    #[test]
    fn pick_skips_unusable_endpoints() {
        let eps = addrs(3);
        let ring = Ring::new(&eps);
        for k in 0..100u64 {
            let key = stable_hash(&k.to_le_bytes());
            let first = ring.pick(key, |_| true).unwrap();
            let other = ring.pick(key, |i| i != first).unwrap();
            assert_ne!(first, other);
        }
        assert_eq!(ring.pick(1, |_| false), None);
        assert_eq!(Ring::new(&[]).pick(1, |_| true), None);
    }
}
