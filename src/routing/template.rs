//! nginx variables: the one parser and the one request-side evaluator behind every
//! place a user writes them, parsed once during translation.
//!
//! Three dialects share the syntax and the evaluation and differ only in which names
//! they admit (each keeps the set it had when it had its own parser):
//! - [`Dialect::Log`], for `log-format-upstream` and the values of `proxy-set-headers` /
//!   `add-headers`. Never fails: a name sluice does not know stays as [`Var::Unknown`]
//!   (rendered like an unset variable, `-` in the log) so a custom format keeps its
//!   shape, and a `$` not followed by a name is literal text; translation warns.
//! - [`Dialect::Url`], for `auth-url`, `auth-signin`, `auth-request-redirect`, `app-root`.
//! - [`Dialect::HashKey`], for `upstream-hash-by`.
//!
//! The last two refuse an unknown name, a lone `$` and an unclosed `${`, as nginx fails
//! its configuration test on them. `$name` and `${name}` are recognised as in nginx,
//! and names match case-insensitively (nginx lower-cases them when it compiles a
//! script), so `$HOST` is `$host`; the name part of `$cookie_<name>` / `$arg_<name>`
//! is kept as written and matched case-insensitively at request time.
//!
//! [`RequestVars`] evaluates the variables of the request itself (`$host`, `$uri`,
//! `$http_*`, `$cookie_*`, `$arg_*`, ...); the access log adds the response-side ones
//! (`proxy::accesslog`). Where the three former evaluators disagreed, nginx decided:
//! `$arg_<name>` matches case-insensitively (`ngx_http_arg`), `$http_<name>` joins
//! repeated headers (`, `; `; ` for Cookie) and `$http_host` falls back to the HTTP/2
//! `:authority` (nginx turns it into `Host`). Kept from all of them although nginx
//! differs: a query parameter without `=` counts as present and empty.

use std::borrow::Cow;
use std::net::IpAddr;

use super::cookie;
use super::matcher::{normalize_host, normalize_path};

/// One nginx variable sluice can render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `$remote_addr` (and `$realip_remote_addr`, `$the_real_ip`, `$binary_remote_addr`).
    RemoteAddr,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    /// `$request`: the request line.
    Request,
    Status,
    BodyBytesSent,
    RequestLength,
    RequestTime,
    ProxyUpstreamName,
    ProxyAlternativeUpstreamName,
    UpstreamAddr,
    UpstreamResponseLength,
    UpstreamResponseTime,
    UpstreamStatus,
    /// `$req_id` (and nginx's `$request_id`).
    ReqId,
    /// `$host`: the request host, lower case, without port.
    Host,
    RequestMethod,
    /// `$request_uri`: path and query as received.
    RequestUri,
    /// `$escaped_request_uri`: `$request_uri` percent-encoded as set-misc's
    /// `set_escape_uri` does (everything but `A-Za-z0-9-._~`).
    EscapedRequestUri,
    /// `$uri`: the normalised path.
    Uri,
    /// `$args`, `$query_string`.
    Args,
    /// `$is_args`: `?` when there is a query string.
    IsArgs,
    ServerProtocol,
    /// `$scheme` (and `$pass_access_scheme`).
    Scheme,
    /// `$server_port` (and `$pass_server_port`, `$pass_port`).
    ServerPort,
    /// ingress-nginx's per-location variables.
    Namespace,
    IngressName,
    ServiceName,
    ServicePort,
    /// `$http_<name>`: a request header, lower-case with `-` (nginx writes `_`).
    /// `$http_host` (and `$best_http_host`) is `Http("host")`.
    Http(Box<str>),
    /// `$cookie_<name>`, the name as written.
    Cookie(Box<str>),
    /// `$arg_<name>`, the name as written.
    Arg(Box<str>),
    /// A variable sluice does not implement (the name, without `$`; log dialect only).
    Unknown(Box<str>),
}

/// Where a template is used, which decides the names it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Access-log formats and header values; unknown names are kept.
    Log,
    /// Auth and redirect URLs.
    Url,
    /// `upstream-hash-by`.
    HashKey,
}

impl Dialect {
    /// The plain (non-prefix) names this dialect admits; `http_*`, `cookie_*` and
    /// `arg_*` are admitted by all.
    fn names(self) -> &'static [&'static str] {
        match self {
            Dialect::Log => &[
                "remote_addr",
                "realip_remote_addr",
                "remote_user",
                "time_local",
                "time_iso8601",
                "msec",
                "request",
                "status",
                "body_bytes_sent",
                "request_length",
                "request_time",
                "proxy_upstream_name",
                "proxy_alternative_upstream_name",
                "upstream_addr",
                "upstream_response_length",
                "upstream_response_time",
                "upstream_status",
                "req_id",
                "request_id",
                "host",
                "request_method",
                "request_uri",
                "uri",
                "document_uri",
                "args",
                "query_string",
                "server_protocol",
                "scheme",
                "server_port",
                "namespace",
                "ingress_name",
                "service_name",
                "service_port",
            ],
            Dialect::Url => &[
                "host",
                "best_http_host",
                "scheme",
                "pass_access_scheme",
                "request_uri",
                "escaped_request_uri",
                "uri",
                "document_uri",
                "args",
                "query_string",
                "is_args",
                "request_method",
                "remote_addr",
                "the_real_ip",
                "server_port",
                "pass_server_port",
                "pass_port",
            ],
            Dialect::HashKey => &[
                "request_uri",
                "uri",
                "document_uri",
                "host",
                "remote_addr",
                "binary_remote_addr",
            ],
        }
    }

    /// The variable `name` (without `$`) stands for here, `None` when not admitted.
    fn variable(self, name: &str) -> Option<Var> {
        let lower = name.to_ascii_lowercase();
        if self.names().contains(&lower.as_str()) {
            return plain(&lower);
        }
        // The prefixes are ASCII, so `lower` and `name` split at the same byte.
        let rest = |prefix: &str| lower.strip_prefix(prefix).filter(|r| !r.is_empty());
        if let Some(h) = rest("http_") {
            Some(Var::Http(h.replace('_', "-").into()))
        } else if rest("cookie_").is_some() {
            Some(Var::Cookie(name["cookie_".len()..].into()))
        } else if rest("arg_").is_some() {
            Some(Var::Arg(name["arg_".len()..].into()))
        } else {
            None
        }
    }
}

/// Every plain name of every dialect (lower case).
fn plain(name: &str) -> Option<Var> {
    Some(match name {
        "remote_addr" | "realip_remote_addr" | "the_real_ip" | "binary_remote_addr" => {
            Var::RemoteAddr
        }
        "remote_user" => Var::RemoteUser,
        "time_local" => Var::TimeLocal,
        "time_iso8601" => Var::TimeIso8601,
        "msec" => Var::Msec,
        "request" => Var::Request,
        "status" => Var::Status,
        "body_bytes_sent" => Var::BodyBytesSent,
        "request_length" => Var::RequestLength,
        "request_time" => Var::RequestTime,
        "proxy_upstream_name" => Var::ProxyUpstreamName,
        "proxy_alternative_upstream_name" => Var::ProxyAlternativeUpstreamName,
        "upstream_addr" => Var::UpstreamAddr,
        "upstream_response_length" => Var::UpstreamResponseLength,
        "upstream_response_time" => Var::UpstreamResponseTime,
        "upstream_status" => Var::UpstreamStatus,
        "req_id" | "request_id" => Var::ReqId,
        "host" => Var::Host,
        "best_http_host" => Var::Http("host".into()),
        "request_method" => Var::RequestMethod,
        "request_uri" => Var::RequestUri,
        "escaped_request_uri" => Var::EscapedRequestUri,
        "uri" | "document_uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "is_args" => Var::IsArgs,
        "server_protocol" => Var::ServerProtocol,
        "scheme" | "pass_access_scheme" => Var::Scheme,
        "server_port" | "pass_server_port" | "pass_port" => Var::ServerPort,
        "namespace" => Var::Namespace,
        "ingress_name" => Var::IngressName,
        "service_name" => Var::ServiceName,
        "service_port" => Var::ServicePort,
        _ => return None,
    })
}

impl std::fmt::Display for Var {
    /// The canonical nginx name, without `$` (aliases print as the variable they are).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Var::RemoteAddr => "remote_addr",
            Var::RemoteUser => "remote_user",
            Var::TimeLocal => "time_local",
            Var::TimeIso8601 => "time_iso8601",
            Var::Msec => "msec",
            Var::Request => "request",
            Var::Status => "status",
            Var::BodyBytesSent => "body_bytes_sent",
            Var::RequestLength => "request_length",
            Var::RequestTime => "request_time",
            Var::ProxyUpstreamName => "proxy_upstream_name",
            Var::ProxyAlternativeUpstreamName => "proxy_alternative_upstream_name",
            Var::UpstreamAddr => "upstream_addr",
            Var::UpstreamResponseLength => "upstream_response_length",
            Var::UpstreamResponseTime => "upstream_response_time",
            Var::UpstreamStatus => "upstream_status",
            Var::ReqId => "req_id",
            Var::Host => "host",
            Var::RequestMethod => "request_method",
            Var::RequestUri => "request_uri",
            Var::EscapedRequestUri => "escaped_request_uri",
            Var::Uri => "uri",
            Var::Args => "args",
            Var::IsArgs => "is_args",
            Var::ServerProtocol => "server_protocol",
            Var::Scheme => "scheme",
            Var::ServerPort => "server_port",
            Var::Namespace => "namespace",
            Var::IngressName => "ingress_name",
            Var::ServiceName => "service_name",
            Var::ServicePort => "service_port",
            Var::Http(h) => return write!(f, "http_{}", h.replace('-', "_")),
            Var::Cookie(c) => return write!(f, "cookie_{c}"),
            Var::Arg(a) => return write!(f, "arg_{a}"),
            Var::Unknown(n) => n,
        };
        f.write_str(name)
    }
}

/// Why a URL or hash-key template, or a header of `proxy-set-headers` / `add-headers`,
/// was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unterminated ${{ in {0:?}")]
    Unterminated(Box<str>),
    #[error("a $ without a variable name in {0:?}")]
    LoneDollar(Box<str>),
    #[error("unknown variable ${0}")]
    Unknown(Box<str>),
    /// A header name that is not an HTTP token (as written).
    #[error("{0:?} is not a valid header name")]
    HeaderName(Box<str>),
    /// A header value with a control character other than tab.
    #[error("the value of {0} contains control characters")]
    ControlCharacters(http::HeaderName),
    /// A plain-text header value `http` refuses.
    #[error("the value of {0} is not a valid header value")]
    HeaderValue(http::HeaderName),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(Box<str>),
    Var(Var),
}

/// A parsed template; equal templates have equal source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub source: Box<str>,
    pub parts: Vec<Part>,
}

/// What one `$` starts: a name and the byte after the reference, or why not.
enum Reference<'a> {
    Name(&'a str, usize),
    Unterminated,
    Lone,
}

/// nginx's lexing of a reference at `s[i] == '$'`: `${name}` or `$name`, names made of
/// `A-Za-z0-9_`.
fn reference(s: &str, i: usize) -> Reference<'_> {
    let is_name = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let after = &s.as_bytes()[i + 1..];
    if after.first() == Some(&b'{') {
        let n = after[1..].iter().take_while(|b| is_name(b)).count();
        return match after.get(1 + n) {
            Some(b'}') if n > 0 => Reference::Name(&s[i + 2..i + 2 + n], i + 3 + n),
            Some(b'}') => Reference::Lone,
            _ => Reference::Unterminated,
        };
    }
    match after.iter().take_while(|b| is_name(b)).count() {
        0 => Reference::Lone,
        n => Reference::Name(&s[i + 1..i + 1 + n], i + 1 + n),
    }
}

impl Template {
    /// Parses a log format or header value ([`Dialect::Log`]). Never fails: unknown
    /// names become [`Var::Unknown`] (see [`Template::unknown`]) and a `$` that starts
    /// no reference is literal text.
    pub fn parse(source: &str) -> Template {
        Self::build(source, Dialect::Log)
            .unwrap_or_else(|_| unreachable!("the log dialect never fails"))
    }

    /// Parses a template of a dialect that refuses what nginx would not load
    /// ([`Dialect::Url`], [`Dialect::HashKey`]).
    pub fn parse_in(source: &str, dialect: Dialect) -> Result<Template> {
        Self::build(source, dialect)
    }

    fn build(source: &str, dialect: Dialect) -> Result<Template> {
        let lenient = dialect == Dialect::Log;
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while let Some(off) = source[i..].find('$') {
            let at = i + off;
            literal.push_str(&source[i..at]);
            let (var, next) = match reference(source, at) {
                Reference::Name(name, next) => match dialect.variable(name) {
                    Some(v) => (v, next),
                    None if lenient => (Var::Unknown(name.into()), next),
                    None => return Err(Error::Unknown(name.into())),
                },
                _ if lenient => {
                    literal.push('$');
                    i = at + 1;
                    continue;
                }
                Reference::Unterminated => return Err(Error::Unterminated(source.into())),
                Reference::Lone => return Err(Error::LoneDollar(source.into())),
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal).into()));
            }
            parts.push(Part::Var(var));
            i = next;
        }
        literal.push_str(&source[i..]);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        Ok(Template {
            source: source.into(),
            parts,
        })
    }

    /// The names of variables sluice does not implement, for a warning.
    pub fn unknown(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(Var::Unknown(n)) => Some(n.as_ref()),
                _ => None,
            })
            .collect()
    }

    /// The text when the template has no variables.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(l)] => Some(l),
            _ => None,
        }
    }

    /// The text before the first variable (all of it when there is none).
    pub fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(l)) => l,
            _ => "",
        }
    }

    /// Whether any part is a variable.
    pub fn has_variables(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var(_)))
    }

    /// The text for one request, with every variable that is not found empty (URLs,
    /// hash keys, header values).
    pub fn expand(&self, vars: &RequestVars<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Var(v) => {
                    if let Some(s) = vars.value(v) {
                        out.push_str(&s)
                    }
                }
            }
        }
        out
    }
}

impl std::fmt::Display for Template {
    /// The template in nginx syntax with braced canonical names (`${host}`), for
    /// fixtures, logs and `check`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.parts {
            match p {
                Part::Literal(l) => f.write_str(l)?,
                Part::Var(v) => write!(f, "${{{v}}}")?,
            }
        }
        Ok(())
    }
}

/// The request a template's request-side variables are read from, as received.
#[derive(Debug, Clone, Copy)]
pub struct RequestVars<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub headers: &'a http::HeaderMap,
    /// `Host`, else the HTTP/2 `:authority`, port included (`$host` is derived from it).
    pub http_host: &'a str,
    pub scheme: &'a str,
    pub server_port: u16,
    pub remote_addr: Option<IpAddr>,
}

impl<'a> RequestVars<'a> {
    /// The value of a request-side variable; `None` is nginx's "not found", and also
    /// the answer for response-side variables (the access log renders those).
    pub fn value(&self, var: &Var) -> Option<Cow<'a, str>> {
        Some(match var {
            Var::Host => normalize_host(self.http_host),
            Var::RequestUri => Cow::Borrowed(self.request_uri()),
            Var::EscapedRequestUri => escape_uri_component(self.request_uri()).into(),
            Var::Uri => normalize_path(self.uri.path()).ok()?,
            Var::Args => Cow::Borrowed(self.uri.query()?),
            Var::IsArgs => Cow::Borrowed(match self.uri.query() {
                Some(q) if !q.is_empty() => "?",
                _ => "",
            }),
            Var::RequestMethod => Cow::Borrowed(self.method.as_str()),
            Var::RemoteAddr => self.remote_addr?.to_string().into(),
            Var::Scheme => Cow::Borrowed(self.scheme),
            Var::ServerPort => self.server_port.to_string().into(),
            Var::Http(name) => match header(self.headers, name) {
                Some(v) => v,
                None if &**name == "host" && !self.http_host.is_empty() => {
                    Cow::Borrowed(self.http_host)
                }
                None => return None,
            },
            Var::Cookie(name) => String::from_utf8_lossy(cookie::get_bytes(self.headers, name)?),
            Var::Arg(name) => Cow::Borrowed(arg(self.uri.query()?, name)?),
            _ => return None,
        })
    }

    /// `$request_uri`: path and query as received.
    pub fn request_uri(&self) -> &'a str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }
}

/// `$http_<name>`: every value of the header, joined as nginx joins them (`; ` for
/// Cookie, else `, `); bytes that are not UTF-8 become U+FFFD.
fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    let all = headers.get_all(name);
    let mut values = all.iter();
    let first = values.next()?;
    let mut out = String::from_utf8_lossy(first.as_bytes());
    for v in values {
        let s = out.to_mut();
        s.push_str(if name == "cookie" { "; " } else { ", " });
        s.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    Some(out)
}

/// `$arg_<name>`: the first query parameter called `name`, case-insensitively as
/// nginx's `ngx_http_arg`; the value as sent (not percent-decoded). A parameter
/// without `=` is present and empty.
pub fn arg<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// Percent-encodes everything but `A-Za-z0-9-._~` (set-misc's `set_escape_uri`, which
/// ingress-nginx uses for `$escaped_request_uri`).
pub fn escape_uri_component(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    /// Every byte but the unreserved ones; non-ASCII bytes are always encoded.
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// One header of `proxy-set-headers` (requests to backends) or `add-headers`
/// (responses to clients). Most values are plain text, kept ready as a header value;
/// values with nginx variables are rendered per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    pub name: http::HeaderName,
    pub value: Template,
    /// The value when it has no variables.
    pub literal: Option<http::HeaderValue>,
}

impl HeaderTemplate {
    /// Validates the name and (for plain text) the value.
    pub fn parse(name: &str, value: &str) -> Result<HeaderTemplate> {
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| Error::HeaderName(name.into()))?;
        let value = value.trim();
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(Error::ControlCharacters(name));
        }
        let template = Template::parse(value);
        let literal = match template.as_literal() {
            Some(text) => Some(
                http::HeaderValue::from_str(text).map_err(|_| Error::HeaderValue(name.clone()))?,
            ),
            None => None,
        };
        Ok(HeaderTemplate {
            name,
            value: template,
            literal,
        })
    }
}

/// ingress-nginx's default `log-format-upstream`.
pub const DEFAULT_LOG_FORMAT: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id";

/// How variable values are escaped in access-log lines (nginx's `escape=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogEscape {
    /// `"`, `\`, control and non-ASCII bytes as `\xHH`; unset variables print `-`.
    #[default]
    Default,
    /// `log-format-escape-json`: JSON string escaping; unset variables print nothing.
    Json,
    /// `log-format-escape-none`: values as they are.
    None,
}

/// The access-log line format: `log-format-upstream` and its escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    pub template: Template,
    pub escape: LogEscape,
}

impl Default for LogFormat {
    fn default() -> Self {
        LogFormat {
            template: Template::parse(DEFAULT_LOG_FORMAT),
            escape: LogEscape::Default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_formats_leniently() {
        let t = Template::parse("a $remote_addr ${status}x $http_X_Real_Ip $$ $ $foo_bar {");
        assert_eq!(
            t.parts,
            vec![
                Part::Literal("a ".into()),
                Part::Var(Var::RemoteAddr),
                Part::Literal(" ".into()),
                Part::Var(Var::Status),
                Part::Literal("x ".into()),
                Part::Var(Var::Http("x-real-ip".into())),
                Part::Literal(" $$ $ ".into()),
                Part::Var(Var::Unknown("foo_bar".into())),
                Part::Literal(" {".into()),
            ]
        );
        assert_eq!(t.unknown(), vec!["foo_bar"]);
        assert_eq!(Template::parse("plain").as_literal(), Some("plain"));
        assert_eq!(
            Template::parse("${unclosed").as_literal(),
            Some("${unclosed")
        );
        assert_eq!(Template::parse("${a-b}").as_literal(), Some("${a-b}"));
        assert!(Template::parse(DEFAULT_LOG_FORMAT).unknown().is_empty());
        // Names are case-insensitive, as nginx's; the cookie name is kept as written.
        assert_eq!(
            Template::parse("$HOST$Cookie_SID").parts,
            vec![Part::Var(Var::Host), Part::Var(Var::Cookie("SID".into()))]
        );
        // Each dialect keeps its own names: `$is_args` is a URL variable only.
        assert_eq!(Template::parse("$is_args").unknown(), vec!["is_args"]);
    }

    #[test]
    fn strict_dialects_refuse_what_nginx_would_not_load() {
        let url = |s: &str| Template::parse_in(s, Dialect::Url);
        let key = |s: &str| Template::parse_in(s, Dialect::HashKey);
        assert_eq!(url("http://x/$nope"), Err(Error::Unknown("nope".into())));
        assert!(matches!(
            url("http://x/${host"),
            Err(Error::Unterminated(_))
        ));
        assert!(matches!(
            url("http://x/${a-b}"),
            Err(Error::Unterminated(_))
        ));
        assert!(matches!(url("http://x/$"), Err(Error::LoneDollar(_))));
        assert!(matches!(url("http://x/${}"), Err(Error::LoneDollar(_))));
        assert!(url("$status").is_err(), "a log variable");
        assert!(key("$scheme").is_err(), "a URL variable");
        assert!(key("$binary_remote_addr").is_ok());
        assert!(Template::parse_in("$binary_remote_addr", Dialect::Url).is_err());
        // Aliases print as the variable they are.
        let t = url("$pass_access_scheme://$best_http_host$escaped_request_uri$is_args").unwrap();
        assert_eq!(
            t.to_string(),
            "${scheme}://${http_host}${escaped_request_uri}${is_args}"
        );
        assert_eq!(
            key("$host-${arg_user}").unwrap().to_string(),
            "${host}-${arg_user}"
        );
        assert_eq!(url("https://").unwrap().literal_prefix(), "https://");
        assert!(!url("https://a/").unwrap().has_variables());
    }

    fn request(uri: &str, headers: &[(&str, &[u8])]) -> http::request::Parts {
        let mut b = http::Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, http::HeaderValue::from_bytes(v).unwrap());
        }
        b.body(()).unwrap().into_parts().0
    }

    fn vars<'a>(p: &'a http::request::Parts, http_host: &'a str) -> RequestVars<'a> {
        RequestVars {
            method: &p.method,
            uri: &p.uri,
            headers: &p.headers,
            http_host,
            scheme: "https",
            server_port: 8443,
            remote_addr: Some("10.0.0.9".parse().unwrap()),
        }
    }

    #[test]
    fn evaluates_every_request_variable() {
        let p = request(
            "/p/./a%20th?x=1&Y=2&flag",
            &[
                ("x-user", b"bob"),
                ("x-multi", b"a"),
                ("x-multi", b"b"),
                ("cookie", b"a=1; SID=xyz"),
            ],
        );
        let v = vars(&p, "App.Example:8443");
        let val = |name: &str| {
            let t = Template::parse_in(&format!("${{{name}}}"), Dialect::Url)
                .or_else(|_| Template::parse_in(&format!("${{{name}}}"), Dialect::HashKey))
                .unwrap_or_else(|_| Template::parse(&format!("${{{name}}}")));
            match &t.parts[..] {
                [Part::Var(var)] => v.value(var).map(Cow::into_owned),
                other => panic!("{name}: {other:?}"),
            }
        };
        assert_eq!(val("host").as_deref(), Some("app.example"));
        assert_eq!(val("http_host").as_deref(), Some("App.Example:8443"));
        assert_eq!(
            val("request_uri").as_deref(),
            Some("/p/./a%20th?x=1&Y=2&flag")
        );
        assert_eq!(
            val("escaped_request_uri").as_deref(),
            Some("%2Fp%2F.%2Fa%2520th%3Fx%3D1%26Y%3D2%26flag")
        );
        assert_eq!(val("uri").as_deref(), Some("/p/a th"));
        assert_eq!(val("document_uri").as_deref(), Some("/p/a th"));
        assert_eq!(val("args").as_deref(), Some("x=1&Y=2&flag"));
        assert_eq!(val("is_args").as_deref(), Some("?"));
        assert_eq!(val("request_method").as_deref(), Some("POST"));
        assert_eq!(val("remote_addr").as_deref(), Some("10.0.0.9"));
        assert_eq!(val("binary_remote_addr").as_deref(), Some("10.0.0.9"));
        assert_eq!(val("scheme").as_deref(), Some("https"));
        assert_eq!(val("server_port").as_deref(), Some("8443"));
        assert_eq!(val("http_x_user").as_deref(), Some("bob"));
        assert_eq!(val("http_X_MULTI").as_deref(), Some("a, b"));
        assert_eq!(val("http_x_none"), None);
        // `$arg_`: case-insensitive (ngx_http_arg); without `=`, present and empty.
        assert_eq!(val("arg_y").as_deref(), Some("2"));
        assert_eq!(val("arg_X").as_deref(), Some("1"));
        assert_eq!(val("arg_flag").as_deref(), Some(""));
        assert_eq!(val("arg_none"), None);
        // `$cookie_`: case-insensitive (ngx_http_parse_multi_header_lines).
        assert_eq!(val("cookie_sid").as_deref(), Some("xyz"));
        assert_eq!(val("cookie_none"), None);
        // Response-side variables are the access log's.
        assert_eq!(val("status"), None);

        // No query: `$args` not found, `$is_args` empty; HTTP/2 without `Host`:
        // `$http_host` is the `:authority`.
        let p = request("/", &[]);
        let v = vars(&p, "h2.example");
        let t = Template::parse_in("[$args][$is_args][$http_host][$host]", Dialect::Url).unwrap();
        assert_eq!(t.expand(&v), "[][][h2.example][h2.example]");
    }

    #[test]
    fn expands_urls() {
        let p = request(
            "/p/a%20th?x=1&y=2",
            &[("x-user", b"bob"), ("cookie", b"a=1; SID=xyz")],
        );
        let v = vars(&p, "app.example:8080");
        let t = Template::parse_in(
            "https://$host/auth?u=${request_uri}&e=$escaped_request_uri&$http_x_user-$arg_y-$cookie_SID-$scheme",
            Dialect::Url,
        )
        .unwrap();
        assert_eq!(
            t.expand(&v),
            "https://app.example/auth?u=/p/a%20th?x=1&y=2&e=%2Fp%2Fa%2520th%3Fx%3D1%26y%3D2&bob-2-xyz-https"
        );
    }

    #[test]
    fn escaped_request_uri_encodes_all_but_unreserved() {
        assert_eq!(
            escape_uri_component("/a b/\u{fc}?x=1&y=~._-Z9"),
            "%2Fa%20b%2F%C3%BC%3Fx%3D1%26y%3D~._-Z9"
        );
    }
}
