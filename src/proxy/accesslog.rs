//! Access-log lines in ingress-nginx's default `log-format-upstream`:
//!
//! `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
//! "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name]
//! [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length
//! $upstream_response_time $upstream_status $req_id`
//!
//! Lines go to the `access_log` tracing target, which main writes to stdout bare
//! (controller logs go to stderr), as ingress-nginx's container does. Times are UTC.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Everything one line needs; `None`/empty prints nginx's `-`.
#[derive(Debug, Default)]
pub struct AccessEntry<'a> {
    pub remote_addr: &'a str,
    pub remote_user: &'a str,
    pub request_line: &'a str,
    pub status: u16,
    pub body_bytes_sent: usize,
    pub referer: &'a str,
    pub user_agent: &'a str,
    pub request_length: usize,
    pub request_time: f64,
    pub upstream_name: &'a str,
    pub upstream_addr: &'a str,
    pub upstream_response_length: Option<usize>,
    pub upstream_response_time: Option<f64>,
    pub upstream_status: Option<u16>,
    pub req_id: &'a str,
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Escapes a quoted field the way nginx's default escaping does (`\xHH` for `"`, `\`,
/// control and non-ASCII bytes), so a client cannot forge extra log fields or lines.
fn escaped(out: &mut String, s: &str) {
    if s.is_empty() {
        out.push('-');
        return;
    }
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// Formats one line in the default upstream format.
pub fn format_line(e: &AccessEntry<'_>, now: SystemTime) -> String {
    let mut out = String::with_capacity(256);
    let _ = write!(out, "{} - {} [", dash(e.remote_addr), dash(e.remote_user));
    time_local(&mut out, now);
    out.push_str("] \"");
    escaped(&mut out, e.request_line);
    let _ = write!(out, "\" {} {} \"", e.status, e.body_bytes_sent);
    escaped(&mut out, e.referer);
    out.push_str("\" \"");
    escaped(&mut out, e.user_agent);
    let _ = write!(
        out,
        "\" {} {:.3} [{}] [] {} ",
        e.request_length,
        e.request_time,
        e.upstream_name,
        dash(e.upstream_addr),
    );
    match e.upstream_response_length {
        Some(n) => write!(out, "{n} "),
        None => write!(out, "- "),
    }
    .ok();
    match e.upstream_response_time {
        Some(t) => write!(out, "{t:.3} "),
        None => write!(out, "- "),
    }
    .ok();
    match e.upstream_status {
        Some(s) => write!(out, "{s} "),
        None => write!(out, "- "),
    }
    .ok();
    out.push_str(dash(e.req_id));
    out
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `22/Nov/2026:06:26:10 +0000`
fn time_local(out: &mut String, t: SystemTime) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_like_ingress_nginx() {
        let e = AccessEntry {
            remote_addr: "192.0.2.1",
            request_line: "GET /a?b=1 HTTP/1.1",
            status: 200,
            body_bytes_sent: 12,
            user_agent: "curl/8.0 \"x\"",
            request_length: 80,
            request_time: 0.0123,
            upstream_name: "default-web-80",
            upstream_addr: "10.0.0.1:8080",
            upstream_response_length: Some(12),
            upstream_response_time: Some(0.011),
            upstream_status: Some(200),
            req_id: "0123456789abcdef0123456789abcdef",
            ..Default::default()
        };
        // 2026-11-22T06:26:10Z
        let t = UNIX_EPOCH + Duration::from_secs(1_795_328_770);
        assert_eq!(
            format_line(&e, t),
            "192.0.2.1 - - [22/Nov/2026:06:26:10 +0000] \"GET /a?b=1 HTTP/1.1\" 200 12 \"-\" \"curl/8.0 \\x22x\\x22\" 80 0.012 [default-web-80] [] 10.0.0.1:8080 12 0.011 200 0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn leap_day() {
        let mut s = String::new();
        // 2024-02-29T12:00:00Z
        time_local(&mut s, UNIX_EPOCH + Duration::from_secs(1_709_208_000));
        assert_eq!(s, "29/Feb/2024:12:00:00 +0000");
    }
}
