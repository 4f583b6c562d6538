//! The parsed form of ingress-nginx's rate-limit annotations (`limit-rps`, `limit-rpm`,
//! `limit-connections`, `limit-burst-multiplier`, `limit-allowlist` /
//! `limit-whitelist`): what the proxy's limiter (`proxy::limits`) enforces.
//!
//! ingress-nginx turns them into nginx `limit_req` zones (`rate=Nr/s` or `r/m`,
//! `burst = N × multiplier`, `nodelay`) and a `limit_conn` zone, all keyed by the
//! client address and named after the Ingress, so every path of one Ingress shares
//! the same counters. The state itself lives in the proxy (it must outlive tables);
//! this is only the configuration, built once per translation.

use super::policy::CidrSet;

/// One Ingress's request limits. `Policy::limits` is `None` when it sets none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Identifies the Ingress's counters across tables (hash of `namespace/name`).
    pub zone: u64,
    /// `limit-rps`.
    pub rps: Option<Rate>,
    /// `limit-rpm`.
    pub rpm: Option<Rate>,
    /// `limit-connections`: requests in progress per client (0 = no limit).
    pub connections: u32,
    /// `limit-allowlist` / `limit-whitelist`: clients never limited.
    pub exempt: Option<CidrSet>,
    /// A limit annotation did not parse: every request is refused with
    /// `limit-req-status-code`, since ignoring the limit would fail open.
    pub broken: bool,
}

/// nginx's `limit_req_zone ... rate=` with `limit_req burst=... nodelay`, in nginx's
/// own fixed-point units (thousandths of a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The limit as written (requests per second or per minute).
    pub limit: u32,
    /// Thousandths of a request drained per second: `limit × 1000 / 1` for `r/s`,
    /// `limit × 1000 / 60` for `r/m` (integer division, as nginx does).
    pub milli_per_sec: u64,
    /// `burst` in thousandths of a request: `limit × multiplier × 1000`.
    pub burst_milli: u64,
}

impl Rate {
    pub fn per_second(limit: u32, multiplier: u32) -> Rate {
        Rate::new(limit, 1, multiplier)
    }

    pub fn per_minute(limit: u32, multiplier: u32) -> Rate {
        Rate::new(limit, 60, multiplier)
    }

    fn new(limit: u32, scale: u64, multiplier: u32) -> Rate {
        Rate {
            limit,
            milli_per_sec: u64::from(limit) * 1000 / scale,
            burst_milli: u64::from(limit) * u64::from(multiplier) * 1000,
        }
    }

    /// The `burst` nginx was given.
    pub fn burst(&self) -> u64 {
        self.burst_milli / 1000
    }
}

impl RateLimits {
    /// Whether any limit applies to requests (a whitelist alone does nothing).
    pub fn is_active(&self) -> bool {
        self.broken || self.rps.is_some() || self.rpm.is_some() || self.connections > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_units() {
        let r = Rate::per_second(10, 5);
        assert_eq!(
            (r.milli_per_sec, r.burst_milli, r.burst()),
            (10_000, 50_000, 50)
        );
        let m = Rate::per_minute(1, 3);
        assert_eq!((m.milli_per_sec, m.burst()), (16, 3));
    }
}
