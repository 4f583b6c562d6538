//! Rate and connection limits (`limit-rps`, `limit-rpm`, `limit-connections`): the
//! per-client counters, shared by every worker and kept across table swaps.
//!
//! Semantics are nginx's as ingress-nginx configures it:
//! - `limit_req zone=... burst=rate×multiplier nodelay`: a leaky bucket in thousandths
//!   of a request. Each request adds 1000 to the client's excess after draining
//!   `rate × elapsed`; when that would exceed `burst × 1000` the request is refused
//!   and nothing is counted. A new client starts at 0, so `burst + 1` requests pass
//!   at once. With both `limit-rps` and `limit-rpm`, a request must pass both, and
//!   only requests that pass are counted.
//! - `limit_conn`: requests in progress (from the request head to the end of the
//!   response), checked after the rate limits, so a refused request holds no slot.
//! - Keys are (Ingress, client address) — the TCP peer, IPv4-mapped IPv6 folded to
//!   IPv4 — so every path of an Ingress shares the client's counters; clients in
//!   `limit-allowlist` are never counted. State is per sluice process (per replica),
//!   as nginx's shared-memory zones are per pod.
//!
//! Memory is bounded: entries that are idle (bucket drained, nothing in progress) are
//! swept out of their shard every few seconds, and a full shard drops its least
//! recently seen idle-or-not entry (nginx's zones likewise forget their oldest
//! states when full), so a flood of new addresses cannot grow memory without limit.
//! Routes without limits never touch this state; routes with limits lock one of
//! 64 shards briefly.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::routing::{Rate, RateLimits};

const SHARDS: usize = 64;
/// Entries per shard before the least recently seen one is dropped (64 × 4096 ≈ 262k
/// clients, about 30 MiB at most).
const SHARD_CAP: usize = 4096;
const SWEEP_EVERY: Duration = Duration::from_secs(5);

type Key = (u64, IpAddr);

/// One leaky bucket (nginx's `ngx_http_limit_req_node_t`).
#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    /// Thousandths of a request above the rate.
    excess: u64,
    /// Milliseconds (limiter clock) of the last counted request.
    last: u64,
}

impl Bucket {
    /// nginx's arithmetic: the excess this request would leave, or `None` when over
    /// the burst.
    fn admit(&self, rate: &Rate, now: u64, fresh: bool) -> Option<u64> {
        if fresh {
            return Some(0);
        }
        let elapsed = now.saturating_sub(self.last);
        let drained = rate.milli_per_sec.saturating_mul(elapsed) / 1000;
        let excess = (self.excess + 1000).saturating_sub(drained);
        (excess <= rate.burst_milli).then_some(excess)
    }

    fn drained(&self, rate: Option<&Rate>, now: u64) -> bool {
        match rate {
            None => true,
            Some(r) => {
                r.milli_per_sec
                    .saturating_mul(now.saturating_sub(self.last))
                    / 1000
                    >= self.excess
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    rps: Bucket,
    rpm: Bucket,
    /// Neither bucket has counted a request yet (nginx creates the node on first use).
    fresh_rps: bool,
    fresh_rpm: bool,
    /// Requests in progress; shared with their [`ConnGuard`]s.
    conns: Arc<AtomicU32>,
    /// Milliseconds (limiter clock) of the last request seen.
    seen: u64,
    /// The rates this entry was last used with, to tell when it is idle.
    rps_rate: Option<Rate>,
    rpm_rate: Option<Rate>,
}

impl Entry {
    fn new(now: u64) -> Entry {
        Entry {
            rps: Bucket::default(),
            rpm: Bucket::default(),
            fresh_rps: true,
            fresh_rpm: true,
            conns: Arc::new(AtomicU32::new(0)),
            seen: now,
            rps_rate: None,
            rpm_rate: None,
        }
    }

    /// Nothing left to remember: both buckets drained, nothing in progress.
    fn idle(&self, now: u64) -> bool {
        Arc::strong_count(&self.conns) == 1
            && self.rps.drained(self.rps_rate.as_ref(), now)
            && self.rpm.drained(self.rpm_rate.as_ref(), now)
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Key, Entry>,
    last_sweep: u64,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `limit-rps` / `limit-rpm` (or a broken limit annotation): `limit-req-status-code`.
    Rate,
    /// `limit-connections`: `limit-conn-status-code`.
    Connections,
}

/// Holds one `limit-connections` slot until the request ends.
#[derive(Debug)]
pub struct ConnGuard(Arc<AtomicU32>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The outcome of [`Limiter::check`].
#[derive(Debug)]
pub enum Verdict {
    /// Go ahead; keep the guard (if any) for as long as the request runs.
    Pass(Option<ConnGuard>),
    Refuse(Refused),
}

/// The limit counters of every Ingress, shared by all workers (one per process).
pub struct Limiter {
    started: Instant,
    shards: Box<[Mutex<Shard>]>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter {
            started: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Applies an Ingress's limits to one request from `client` (`None`: not an IP
    /// peer; such clients share one counter).
    pub fn check(&self, limits: &RateLimits, client: Option<IpAddr>) -> Verdict {
        if limits.broken {
            return Verdict::Refuse(Refused::Rate);
        }
        let ip = match client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if limits.exempt.as_ref().is_some_and(|e| e.contains(ip)) {
            return Verdict::Pass(None);
        }
        self.check_at(limits, ip, self.now_ms())
    }

    fn check_at(&self, limits: &RateLimits, ip: IpAddr, now: u64) -> Verdict {
        let key = (limits.zone, ip);
        let shard_idx = (crate::routing::balance::mix(limits.zone ^ ip_bits(ip)) as usize) % SHARDS;
        let mut shard = self.shards[shard_idx]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !shard.map.contains_key(&key) {
            shard.make_room(now);
        }
        let entry = shard.map.entry(key).or_insert_with(|| Entry::new(now));
        entry.seen = now;
        entry.rps_rate = limits.rps;
        entry.rpm_rate = limits.rpm;
        // Both rates must admit the request before either counts it.
        let rps = match &limits.rps {
            Some(r) => match entry.rps.admit(r, now, entry.fresh_rps) {
                Some(e) => Some(e),
                None => return Verdict::Refuse(Refused::Rate),
            },
            None => None,
        };
        let rpm = match &limits.rpm {
            Some(r) => match entry.rpm.admit(r, now, entry.fresh_rpm) {
                Some(e) => Some(e),
                None => return Verdict::Refuse(Refused::Rate),
            },
            None => None,
        };
        if let Some(excess) = rps {
            entry.rps = Bucket { excess, last: now };
            entry.fresh_rps = false;
        }
        if let Some(excess) = rpm {
            entry.rpm = Bucket { excess, last: now };
            entry.fresh_rpm = false;
        }
        if limits.connections == 0 {
            return Verdict::Pass(None);
        }
        let conns = &entry.conns;
        if conns.load(Ordering::Acquire) >= limits.connections {
            return Verdict::Refuse(Refused::Connections);
        }
        conns.fetch_add(1, Ordering::AcqRel);
        Verdict::Pass(Some(ConnGuard(conns.clone())))
    }

    /// Clients remembered (all Ingresses), for tests and metrics.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shard {
    /// Before inserting: sweep idle entries now and then, and drop the least recently
    /// seen entry when the shard is still full.
    fn make_room(&mut self, now: u64) {
        let due = now.saturating_sub(self.last_sweep) >= SWEEP_EVERY.as_millis() as u64;
        if due || self.map.len() >= SHARD_CAP {
            self.map.retain(|_, e| !e.idle(now));
            self.last_sweep = now;
        }
        if self.map.len() >= SHARD_CAP {
            let oldest = self
                .map
                .iter()
                .filter(|(_, e)| Arc::strong_count(&e.conns) == 1)
                .min_by_key(|(_, e)| e.seen)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.map.remove(&k);
            }
        }
    }
}

fn ip_bits(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            (b as u64) ^ ((b >> 64) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::CidrSet;

    fn limits(rps: u32, rpm: u32, conns: u32, mult: u32) -> RateLimits {
        RateLimits {
            zone: 7,
            rps: (rps > 0).then(|| Rate::per_second(rps, mult)),
            rpm: (rpm > 0).then(|| Rate::per_minute(rpm, mult)),
            connections: conns,
            exempt: None,
            broken: false,
        }
    }

    fn passes(v: &Verdict) -> bool {
        matches!(v, Verdict::Pass(_))
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn burst_then_steady_rate_like_nginx_nodelay() {
        let l = Limiter::new();
        let lim = limits(2, 0, 0, 3); // burst 6: 7 pass at once
        let at_once: Vec<bool> = (0..8).map(|_| passes(&l.check_at(&lim, A, 1000))).collect();
        assert_eq!(at_once, [true, true, true, true, true, true, true, false]);
        // Another client and another Ingress have their own buckets.
        assert!(passes(&l.check_at(&lim, B, 1000)));
        assert!(passes(&l.check_at(
            &RateLimits {
                zone: 8,
                ..lim.clone()
            },
            A,
            1000
        )));
        // 2 r/s: one request drains every 500 ms.
        assert!(!passes(&l.check_at(&lim, A, 1499)));
        assert!(passes(&l.check_at(&lim, A, 1500)));
        assert!(!passes(&l.check_at(&lim, A, 1500)));
        // Refused requests were not counted: after 3 s (6 drained) six pass again.
        let later: Vec<bool> = (0..7).map(|_| passes(&l.check_at(&lim, A, 4500))).collect();
        assert_eq!(later, [true, true, true, true, true, true, false]);
    }

    #[test]
    fn per_minute_and_both_rates() {
        let l = Limiter::new();
        let lim = limits(0, 60, 0, 1); // 1 r/s, burst 60
        assert_eq!(
            (0..70).filter(|_| passes(&l.check_at(&lim, A, 0))).count(),
            61
        );
        assert!(passes(&l.check_at(&lim, A, 1000)));
        let both = limits(100, 2, 0, 1); // rpm is the tighter one: 3 at once
        assert_eq!(
            (0..10).filter(|_| passes(&l.check_at(&both, B, 0))).count(),
            3
        );
    }

    #[test]
    fn connections_are_held_until_the_guard_drops() {
        let l = Limiter::new();
        let lim = limits(0, 0, 2, 5);
        let g1 = l.check_at(&lim, A, 0);
        let g2 = l.check_at(&lim, A, 0);
        assert!(passes(&g1) && passes(&g2));
        assert!(matches!(
            l.check_at(&lim, A, 0),
            Verdict::Refuse(Refused::Connections)
        ));
        assert!(passes(&l.check_at(&lim, B, 0)));
        drop(g1);
        assert!(passes(&l.check_at(&lim, A, 0)));
    }

    #[test]
    fn allowlist_broken_and_mapped_addresses() {
        let l = Limiter::new();
        let mut lim = limits(1, 0, 0, 0); // burst 0: one request per second
        lim.exempt = Some(CidrSet::parse("10.0.0.0/31").unwrap());
        for _ in 0..5 {
            assert!(passes(&l.check(&lim, Some(A))));
        }
        assert!(l.is_empty(), "exempt clients are not even remembered");
        let c: IpAddr = "10.9.9.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.9.9.9".parse().unwrap();
        assert!(passes(&l.check(&lim, Some(c))));
        assert!(!passes(&l.check(&lim, Some(mapped))), "same client");
        lim.broken = true;
        assert!(matches!(
            l.check(&lim, Some(A)),
            Verdict::Refuse(Refused::Rate)
        ));
    }

    #[test]
    fn idle_entries_are_swept_and_shards_stay_bounded() {
        let l = Limiter::new();
        let lim = limits(10, 0, 0, 1);
        for i in 0..1000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            l.check_at(&lim, ip, 0);
        }
        assert_eq!(l.len(), 1000);
        // Each entry holds 0 excess after one request: idle at once; the next sweep
        // (5 s later) forgets them as new clients arrive.
        for i in 0..(SHARDS as u32 * 8) {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            l.check_at(&lim, ip, 6000);
        }
        assert!(l.len() < 1000, "{}", l.len());
        // A flood far beyond the cap stays within it.
        let l = Limiter::new();
        let held = l.check_at(&limits(0, 0, 1, 1), A, 0);
        for i in 0..(SHARDS * SHARD_CAP + 5000) as u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0c00_0000 + i));
            l.check_at(&lim, ip, 1);
        }
        assert!(l.len() <= SHARDS * SHARD_CAP);
        // The entry holding a connection slot survived the flood.
        assert!(matches!(
            l.check_at(&limits(0, 0, 1, 1), A, 1),
            Verdict::Refuse(Refused::Connections)
        ));
        drop(held);
    }
}
