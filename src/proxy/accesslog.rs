//! Access-log lines and nginx variables: renders a parsed [`Template`]
//! (`log-format-upstream`, default ingress-nginx's upstream format) for one request, and
//! the values of `proxy-set-headers` / `add-headers` that use variables. The variables of
//! the request itself are evaluated by `routing::template::RequestVars`; this module adds
//! the response-side and per-route ones (status, times, upstream, `$namespace`, ...).
//!
//! ingress-nginx's default format is
//! `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
//! "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name]
//! [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length
//! $upstream_response_time $upstream_status $req_id`.
//!
//! Escaping follows nginx's `escape=` (`log-format-escape-json` / `-none`): by default
//! `"`, `\`, control and non-ASCII bytes of every variable become `\xHH` (a client cannot
//! forge fields or lines) and an unset variable prints `-`; JSON escaping writes JSON
//! string escapes and nothing for an unset variable. Lines go to stdout bare through
//! `logwriter` (per-worker buffers written in batches; controller logs go to stderr), as
//! ingress-nginx's container does. Times are UTC. `$remote_user` is the user name of a
//! `Basic` Authorization header, as nginx's is, whether or not the route checks it.
//!
//! Dates come from jiff's calendar (`$time_local`, `$time_iso8601`), written field by
//! field rather than through `strftime`, which would parse its format on every line.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use pingora::http::RequestHeader;

use crate::routing::template::{Part, RequestVars};
use crate::routing::{LogEscape, Route, Template, Var};

/// Everything a variable can be rendered from. Response-side values are `None` while
/// the request is still going upstream (header templates).
#[derive(Debug)]
pub struct Vars<'a> {
    pub req: &'a RequestHeader,
    pub client_ip: Option<IpAddr>,
    /// `Host` or `:authority` as received.
    pub host: &'a str,
    pub scheme: &'a str,
    pub server_port: u16,
    pub route: Option<&'a Route>,
    /// Empty: none (`generate-request-id: false` and none received).
    pub request_id: &'a str,
    pub now: SystemTime,
    pub status: Option<u16>,
    pub body_bytes_sent: usize,
    pub request_length: usize,
    pub request_time: f64,
    pub upstream_addr: Option<&'a str>,
    pub upstream_response_length: Option<usize>,
    pub upstream_response_time: Option<f64>,
    pub upstream_status: Option<u16>,
}

impl<'a> Vars<'a> {
    /// Request-time values only.
    pub fn request(
        req: &'a RequestHeader,
        client_ip: Option<IpAddr>,
        host: &'a str,
        scheme: &'a str,
        server_port: u16,
        route: Option<&'a Route>,
        request_id: &'a str,
    ) -> Vars<'a> {
        Vars {
            req,
            client_ip,
            host,
            scheme,
            server_port,
            route,
            request_id,
            now: SystemTime::now(),
            status: None,
            body_bytes_sent: 0,
            request_length: 0,
            request_time: 0.0,
            upstream_addr: None,
            upstream_response_length: None,
            upstream_response_time: None,
            upstream_status: None,
        }
    }

    /// The request-side view, which evaluates every variable of the request itself.
    pub fn request_vars(&self) -> RequestVars<'a> {
        RequestVars {
            method: &self.req.method,
            uri: &self.req.uri,
            headers: &self.req.headers,
            http_host: self.host,
            scheme: self.scheme,
            server_port: self.server_port,
            remote_addr: self.client_ip,
        }
    }

    /// The value of one variable; `None` is nginx's "not found".
    pub fn value(&self, var: &Var) -> Option<Cow<'a, str>> {
        let req = self.req;
        let route = self.route;
        Some(match var {
            Var::RemoteUser => basic_user(req)?.into(),
            Var::TimeLocal => {
                let mut s = String::new();
                time_local(&mut s, self.now);
                s.into()
            }
            Var::TimeIso8601 => iso8601(self.now).into(),
            Var::Msec => {
                let d = self.now.duration_since(UNIX_EPOCH).unwrap_or_default();
                format!("{}.{:03}", d.as_secs(), d.subsec_millis()).into()
            }
            Var::Request => format!(
                "{} {} {:?}",
                req.method,
                req.uri.path_and_query().map_or("/", |p| p.as_str()),
                req.version
            )
            .into(),
            Var::Status => self.status?.to_string().into(),
            Var::BodyBytesSent => self.body_bytes_sent.to_string().into(),
            Var::RequestLength => self.request_length.to_string().into(),
            Var::RequestTime => format!("{:.3}", self.request_time).into(),
            Var::ProxyUpstreamName => Cow::Borrowed(
                route.map_or("upstream-default-backend", |r| &r.backend.upstream_name),
            ),
            Var::ProxyAlternativeUpstreamName => Cow::Borrowed(""),
            Var::UpstreamAddr => Cow::Borrowed(self.upstream_addr?),
            Var::UpstreamResponseLength => self.upstream_response_length?.to_string().into(),
            Var::UpstreamResponseTime => format!("{:.3}", self.upstream_response_time?).into(),
            Var::UpstreamStatus => self.upstream_status?.to_string().into(),
            Var::ReqId => Some(self.request_id)
                .filter(|r| !r.is_empty())
                .map(Cow::Borrowed)?,
            Var::ServerProtocol => format!("{:?}", req.version).into(),
            Var::Namespace => Cow::Borrowed(route.map_or("", |r| &r.ingress_namespace)),
            Var::IngressName => Cow::Borrowed(route.map_or("", |r| &r.ingress_name)),
            Var::ServiceName => Cow::Borrowed(route.map_or("", |r| &r.backend.service)),
            Var::ServicePort => Cow::Borrowed(route.map_or("", |r| &r.backend.port)),
            Var::Unknown(_) => return None,
            request_side => return self.request_vars().value(request_side),
        })
    }
}

/// Writes numbers and times straight into `out` (they never need escaping): `Some(true)`
/// written, `Some(false)` unset, `None` not such a variable.
fn direct(v: &Var, vars: &Vars<'_>, out: &mut String) -> Option<bool> {
    let n = |out: &mut String, n: Option<usize>| match n {
        Some(n) => write!(out, "{n}").is_ok(),
        None => false,
    };
    Some(match v {
        Var::TimeLocal => {
            time_local(out, vars.now);
            true
        }
        Var::Status => n(out, vars.status.map(usize::from)),
        Var::BodyBytesSent => n(out, Some(vars.body_bytes_sent)),
        Var::RequestLength => n(out, Some(vars.request_length)),
        Var::RequestTime => write!(out, "{:.3}", vars.request_time).is_ok(),
        Var::UpstreamResponseLength => n(out, vars.upstream_response_length),
        Var::UpstreamStatus => n(out, vars.upstream_status.map(usize::from)),
        Var::UpstreamResponseTime => match vars.upstream_response_time {
            Some(t) => write!(out, "{t:.3}").is_ok(),
            None => false,
        },
        Var::ServerPort => n(out, Some(usize::from(vars.server_port))),
        _ => return None,
    })
}

/// Renders `t` with `escape` (access-log lines).
pub fn render(t: &Template, vars: &Vars<'_>, escape: LogEscape, out: &mut String) {
    for part in &t.parts {
        match part {
            Part::Literal(l) => out.push_str(l),
            Part::Var(v) => match direct(v, vars, out) {
                Some(true) => {}
                Some(false) if escape == LogEscape::Json => {}
                Some(false) => out.push('-'),
                None => render_value(v, vars, escape, out),
            },
        }
    }
}

fn render_value(v: &Var, vars: &Vars<'_>, escape: LogEscape, out: &mut String) {
    match (vars.value(v), escape) {
        (None, LogEscape::Json) => {}
        (None, _) => out.push('-'),
        (Some(s), LogEscape::Default) => escape_default(out, &s),
        (Some(s), LogEscape::Json) => escape_json(out, &s),
        (Some(s), LogEscape::None) => out.push_str(&s),
    }
}

/// A header value from a template: not-found variables are empty, as in nginx.
pub fn render_header(t: &Template, vars: &Vars<'_>) -> Option<http::HeaderValue> {
    let mut out = String::new();
    for part in &t.parts {
        match part {
            Part::Literal(l) => out.push_str(l),
            Part::Var(v) => {
                if let Some(s) = vars.value(v) {
                    out.push_str(&s)
                }
            }
        }
    }
    http::HeaderValue::from_str(&out).ok()
}

/// nginx's default log escaping: `"`, `\`, control and non-ASCII bytes as `\xHH`.
fn escape_default(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// nginx's `escape=json`.
fn escape_json(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// The user of a `Basic` Authorization header.
fn basic_user(req: &RequestHeader) -> Option<String> {
    let v = req
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, creds) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(creds.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    Some(user.to_string()).filter(|u| !u.is_empty())
}

/// Standard base64 with optional padding.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes().take_while(|b| *b != b'=') {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `t` as a UTC date and time, to the second (jiff's calendar arithmetic). A clock
/// before 1970 reads as the epoch, and one past jiff's year 9999 as the epoch too.
fn civil(t: SystemTime) -> jiff::civil::DateTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let ts = i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    jiff::tz::Offset::UTC.to_datetime(ts)
}

/// `22/Nov/2026:06:26:10 +0000`
fn time_local(out: &mut String, t: SystemTime) {
    let d = civil(t);
    let _ = write!(
        out,
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        d.day(),
        MONTHS[(d.month() - 1) as usize],
        d.year(),
        d.hour(),
        d.minute(),
        d.second()
    );
}

/// `2026-11-22T06:26:10+00:00`
fn iso8601(t: SystemTime) -> String {
    let d = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{Backend, Endpoints, LogFormat, PathKind};
    use std::sync::Arc;
    use std::time::Duration;

    fn line(req: &RequestHeader, route: Option<&Route>, fmt: &LogFormat) -> String {
        let vars = Vars {
            status: Some(200),
            body_bytes_sent: 12,
            request_length: 80,
            request_time: 0.0123,
            upstream_addr: Some("10.0.0.1:8080"),
            upstream_response_length: Some(12),
            upstream_response_time: Some(0.011),
            upstream_status: Some(200),
            // 2026-11-22T06:26:10Z
            now: UNIX_EPOCH + Duration::from_secs(1_795_328_770),
            ..Vars::request(
                req,
                Some("192.0.2.1".parse().unwrap()),
                "app.example:8080",
                "http",
                8080,
                route,
                "0123456789abcdef0123456789abcdef",
            )
        };
        let mut out = String::new();
        render(&fmt.template, &vars, fmt.escape, &mut out);
        out
    }

    fn route() -> Route {
        Route::new(
            Arc::new(Backend::new(
                "default",
                "web",
                "80",
                Endpoints::Addrs(vec![]),
            )),
            "default",
            "web-ing",
            "/",
            PathKind::Prefix,
        )
    }

    #[test]
    fn formats_like_ingress_nginx() {
        let mut req = RequestHeader::build("GET", b"/a?b=1", None).unwrap();
        req.insert_header("User-Agent", "curl/8.0 \"x\"").unwrap();
        let r = route();
        assert_eq!(
            line(&req, Some(&r), &LogFormat::default()),
            "192.0.2.1 - - [22/Nov/2026:06:26:10 +0000] \"GET /a?b=1 HTTP/1.1\" 200 12 \"-\" \"curl/8.0 \\x22x\\x22\" 80 0.012 [default-web-80] [] 10.0.0.1:8080 12 0.011 200 0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn custom_format_and_json_escaping() {
        let mut req = RequestHeader::build("POST", b"/p/../q?x=1&user=ann", None).unwrap();
        req.insert_header("User-Agent", "ev\"il\\").unwrap();
        req.insert_header("X-Custom", "v").unwrap();
        req.insert_header("Cookie", "a=1; sid=abc").unwrap();
        req.insert_header("Authorization", "Basic YWxpY2U6c2VjcmV0")
            .unwrap();
        let r = route();
        let fmt = LogFormat {
            template: Template::parse(
                r#"{"ua":"$http_user_agent","ref":"$http_referer","c":"$http_x_custom","m":"$request_method","u":"$uri","ru":"$request_uri","sid":"$cookie_sid","user":"$remote_user","arg":"$arg_user","ns":"$namespace","ing":"$ingress_name","svc":"$service_name:$service_port","t":"$time_iso8601","p":"$server_protocol","h":"$host","x":"$nope"}"#,
            ),
            escape: LogEscape::Json,
        };
        let out = line(&req, Some(&r), &fmt);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["ua"], "ev\"il\\");
        assert_eq!(v["ref"], "");
        assert_eq!(v["c"], "v");
        assert_eq!(v["m"], "POST");
        assert_eq!(v["u"], "/q");
        assert_eq!(v["ru"], "/p/../q?x=1&user=ann");
        assert_eq!(v["sid"], "abc");
        assert_eq!(v["user"], "alice");
        assert_eq!(v["arg"], "ann");
        assert_eq!(v["ns"], "default");
        assert_eq!(v["ing"], "web-ing");
        assert_eq!(v["svc"], "web:80");
        assert_eq!(v["t"], "2026-11-22T06:26:10+00:00");
        assert_eq!(v["p"], "HTTP/1.1");
        assert_eq!(v["h"], "app.example");
        assert_eq!(v["x"], "");
        // Default escaping of the same: unset variables are "-", quotes are \x22.
        let fmt = LogFormat {
            template: Template::parse("$http_referer $nope \"$http_x_custom\" $remote_user"),
            escape: LogEscape::Default,
        };
        assert_eq!(line(&req, None, &fmt), "- - \"v\" alice");
    }

    #[test]
    fn leap_day() {
        let mut s = String::new();
        // 2024-02-29T12:00:00Z
        time_local(&mut s, UNIX_EPOCH + Duration::from_secs(1_709_208_000));
        assert_eq!(s, "29/Feb/2024:12:00:00 +0000");
    }

    #[test]
    fn no_escaping() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("X-A", "a\"b").unwrap();
        let fmt = LogFormat {
            template: Template::parse("$http_x_a $http_x_b $status $upstream_status"),
            escape: LogEscape::None,
        };
        assert_eq!(line(&req, None, &fmt), "a\"b - 200 200");
    }

    #[test]
    fn json_escapes() {
        let mut s = String::new();
        escape_json(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "a\\\"b\\\\c\\nd\\u0001é");
    }
}
