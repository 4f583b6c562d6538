//! Value syntaxes that annotations and ConfigMap keys share: ingress-nginx booleans,
//! nginx `on`/`off` and sizes, whole seconds, nginx time values, `load-balance` and
//! `proxy-next-upstream` lists.
//!
//! A leaf of translation: it reads no object and imports nothing of translate, so the
//! annotation parsers and the ConfigMap reader can both use it without depending on
//! each other.

use std::time::Duration;

use super::error::{Error, Result};
use crate::routing::{LbPolicy, NextUpstream};

/// ingress-nginx booleans: `true`/`false` (any case).
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// nginx's `on`/`off`.
pub fn parse_on_off(v: &str) -> Option<bool> {
    match v.trim() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// nginx sizes: bytes, or a number with k/K, m/M, g/G.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1024),
        'm' | 'M' => (&v[..v.len() - 1], 1024 * 1024),
        'g' | 'G' => (&v[..v.len() - 1], 1024 * 1024 * 1024),
        _ => (v, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// ingress-nginx timeouts are whole seconds; a trailing `s` is tolerated.
pub fn parse_seconds(raw: &str) -> Option<Duration> {
    let v = raw.trim();
    let v = v.strip_suffix('s').unwrap_or(v);
    let n: u64 = v.parse().ok()?;
    (n > 0 && n <= 86_400).then(|| Duration::from_secs(n))
}

/// An nginx time value (`240s`, `4m`, `1m30s`, `500ms`, `1h 30m`; a bare number is
/// seconds), as ingress-nginx writes `worker-shutdown-timeout`. Zero is allowed; more
/// than a day is not.
pub fn parse_nginx_time(raw: &str) -> Option<Duration> {
    let mut rest = raw.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "" | "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return None,
        };
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
        rest = rest[unit_len..].trim_start();
    }
    (total <= Duration::from_secs(86_400)).then_some(total)
}

/// `round_robin` or `ewma` (ingress-nginx's two balancers).
pub fn parse_load_balance(v: &str) -> Option<LbPolicy> {
    match v.trim().to_ascii_lowercase().as_str() {
        "round_robin" => Some(LbPolicy::RoundRobin),
        "ewma" => Some(LbPolicy::Ewma),
        _ => None,
    }
}

/// nginx's `proxy_next_upstream` list (every value nginx accepts is applied).
pub fn parse_next_upstream(v: &str, base: NextUpstream) -> Result<NextUpstream> {
    let mut n = NextUpstream {
        on_error: false,
        on_timeout: false,
        non_idempotent: false,
        invalid_header: false,
        statuses: Default::default(),
        ..base
    };
    let tokens: Vec<&str> = v.split_ascii_whitespace().collect();
    if tokens.is_empty() {
        return Err(Error::InvalidValue("empty".into()));
    }
    for t in &tokens {
        match *t {
            "error" => n.on_error = true,
            "timeout" => n.on_timeout = true,
            "non_idempotent" => n.non_idempotent = true,
            "off" => {
                if tokens.len() > 1 {
                    return Err(Error::InvalidValue(
                        "off cannot be combined with other values".into(),
                    ));
                }
            }
            "invalid_header" => n.invalid_header = true,
            other
                if other
                    .strip_prefix("http_")
                    .and_then(|c| c.parse().ok())
                    .is_some_and(|c| n.statuses.insert(c)) => {}
            other => {
                return Err(Error::InvalidValue(format!(
                    "{other:?} is not a proxy_next_upstream value"
                )))
            }
        }
    }
    Ok(n)
}

/// Seconds, `0` meaning no limit.
pub fn parse_timeout(v: &str) -> Option<Option<Duration>> {
    let v = v.trim();
    let n: u64 = v.strip_suffix('s').unwrap_or(v).parse().ok()?;
    Some((n > 0).then(|| Duration::from_secs(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("8M"), Some(8 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1.5m"), None);
        assert_eq!(parse_size("big"), None);
    }
}
