//! nginx variable templates (`log-format-upstream`, values of `proxy-set-headers` and
//! `add-headers`), parsed once during translation into literal text and variables.
//!
//! Owns the parsed form only: which variables exist and where they sit. Rendering needs
//! the request and lives in the proxy (`proxy::accesslog`). `$name` and `${name}` are
//! recognised as in nginx; a `$` not followed by a name is literal text. Variables sluice
//! does not know are kept as [`Var::Unknown`] (rendered like an unset variable, `-` in
//! the log) so a custom format keeps its shape; translation warns about them.

/// One nginx variable sluice can render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
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
    Host,
    RequestMethod,
    RequestUri,
    /// `$uri`: the normalised path.
    Uri,
    Args,
    ServerProtocol,
    Scheme,
    ServerPort,
    /// ingress-nginx's per-location variables.
    Namespace,
    IngressName,
    ServiceName,
    ServicePort,
    /// `$http_<name>`: a request header, lower-case with `-` (nginx writes `_`).
    Http(Box<str>),
    /// `$cookie_<name>`.
    Cookie(Box<str>),
    /// `$arg_<name>`.
    Arg(Box<str>),
    /// A variable sluice does not implement (the name, without `$`).
    Unknown(Box<str>),
}

impl Var {
    fn from_name(name: &str) -> Var {
        match name {
            "remote_addr" | "realip_remote_addr" => Var::RemoteAddr,
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
            "request_method" => Var::RequestMethod,
            "request_uri" => Var::RequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "server_protocol" => Var::ServerProtocol,
            "scheme" => Var::Scheme,
            "server_port" => Var::ServerPort,
            "namespace" => Var::Namespace,
            "ingress_name" => Var::IngressName,
            "service_name" => Var::ServiceName,
            "service_port" => Var::ServicePort,
            _ => {
                if let Some(h) = name.strip_prefix("http_").filter(|h| !h.is_empty()) {
                    Var::Http(h.to_ascii_lowercase().replace('_', "-").into())
                } else if let Some(c) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                    Var::Cookie(c.into())
                } else if let Some(a) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                    Var::Arg(a.into())
                } else {
                    Var::Unknown(name.into())
                }
            }
        }
    }
}

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

impl Template {
    /// Parses nginx's `$name` / `${name}` syntax. Never fails: unknown names become
    /// [`Var::Unknown`] (see [`Template::unknown`]).
    pub fn parse(source: &str) -> Template {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let bytes = source.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' {
                let (name, next) = if bytes.get(i + 1) == Some(&b'{') {
                    match source[i + 2..].find('}') {
                        Some(end) => (&source[i + 2..i + 2 + end], i + 3 + end),
                        None => ("", i + 1),
                    }
                } else {
                    let n = bytes[i + 1..]
                        .iter()
                        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                        .count();
                    (&source[i + 1..i + 1 + n], i + 1 + n)
                };
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal).into()));
                    }
                    parts.push(Part::Var(Var::from_name(name)));
                    i = next;
                    continue;
                }
            }
            let ch = source[i..].chars().next().unwrap_or('$');
            literal.push(ch);
            i += ch.len_utf8();
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        Template {
            source: source.into(),
            parts,
        }
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
    pub fn parse(name: &str, value: &str) -> Result<HeaderTemplate, String> {
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        let value = value.trim();
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(format!("the value of {name} contains control characters"));
        }
        let template = Template::parse(value);
        let literal = match template.as_literal() {
            Some(text) => Some(
                http::HeaderValue::from_str(text)
                    .map_err(|_| format!("the value of {name} is not a valid header value"))?,
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
    fn parses_nginx_variables() {
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
        assert!(Template::parse(DEFAULT_LOG_FORMAT).unknown().is_empty());
    }
}
