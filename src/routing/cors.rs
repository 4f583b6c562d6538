//! The parsed form of ingress-nginx's CORS annotations (`enable-cors`, `cors-*`), and
//! the one question the proxy asks of it: which `Access-Control-Allow-Origin` does
//! this request get, if any.
//!
//! Built once per translation (header values pre-made, origin patterns lower-cased);
//! nothing here allocates per request.
//!
//! Origin matching follows ingress-nginx's generated `if ($http_origin ~* (...)$)`:
//! case-insensitive, an entry `scheme://*.example.com` stands for exactly one DNS label
//! (`[A-Za-z0-9-]+`) in place of the `*`, the port must match as written (no port in
//! the entry means the Origin must carry none). One difference: ingress-nginx's regex
//! is anchored only at the end, so `xhttps://a.example` would pass for an entry
//! `https://a.example`; sluice compares the whole Origin.

use http::HeaderValue;

/// `enable-cors: "true"` with its settings.
#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: AllowOrigin,
    /// `cors-allow-methods`, sent as is.
    pub allow_methods: HeaderValue,
    /// `cors-allow-headers`, sent as is.
    pub allow_headers: HeaderValue,
    /// `cors-allow-credentials`: sends `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// `cors-expose-headers` (`None`: the header is not sent).
    pub expose_headers: Option<HeaderValue>,
    /// `cors-max-age` in seconds.
    pub max_age: HeaderValue,
}

/// `cors-allow-origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowOrigin {
    /// `*` (the default): every request gets `Access-Control-Allow-Origin: *`, whether
    /// or not it carries an `Origin`.
    Any,
    /// Only these origins are echoed; any other request gets no CORS headers. Empty
    /// when every entry was invalid: CORS is then in effect off.
    List(Vec<OriginPattern>),
}

/// One `cors-allow-origin` entry: `scheme://host[:port]`, `scheme://*.domain[:port]`
/// or `null`, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    /// Everything before the `*` (the whole entry when there is none).
    pub prefix: Box<str>,
    /// Everything after the `*`, for wildcard entries.
    pub suffix: Option<Box<str>>,
}

impl OriginPattern {
    /// The pattern for an entry already validated by the annotation parser.
    pub fn new(entry: &str) -> OriginPattern {
        let entry = entry.to_ascii_lowercase();
        match entry.split_once('*') {
            Some((prefix, suffix)) => OriginPattern {
                prefix: prefix.into(),
                suffix: Some(suffix.into()),
            },
            None => OriginPattern {
                prefix: entry.into(),
                suffix: None,
            },
        }
    }

    /// Whether an `Origin` value matches (case-insensitively).
    pub fn matches(&self, origin: &[u8]) -> bool {
        let p = self.prefix.as_bytes();
        match &self.suffix {
            None => origin.eq_ignore_ascii_case(p),
            Some(s) => {
                let s = s.as_bytes();
                origin.len() > p.len() + s.len()
                    && origin[..p.len()].eq_ignore_ascii_case(p)
                    && origin[origin.len() - s.len()..].eq_ignore_ascii_case(s)
                    && origin[p.len()..origin.len() - s.len()]
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
        }
    }

    /// The entry as written (lower-cased), for fixtures and logs.
    pub fn as_text(&self) -> String {
        match &self.suffix {
            None => self.prefix.to_string(),
            Some(s) => format!("{}*{s}", self.prefix),
        }
    }
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request with this `Origin`
    /// header (`None` when absent), or `None` when the request gets no CORS headers.
    pub fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.origins {
            AllowOrigin::Any => Some(HeaderValue::from_static("*")),
            AllowOrigin::List(list) => {
                let o = origin?;
                list.iter()
                    .any(|p| p.matches(o.as_bytes()))
                    .then(|| o.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors {
            origins: AllowOrigin::List(origins.iter().map(|o| OriginPattern::new(o)).collect()),
            allow_methods: HeaderValue::from_static("GET"),
            allow_headers: HeaderValue::from_static("X"),
            allow_credentials: true,
            expose_headers: None,
            max_age: HeaderValue::from_static("5"),
        }
    }

    fn allowed(c: &Cors, origin: &str) -> bool {
        c.allow_origin(Some(&HeaderValue::from_str(origin).unwrap()))
            .is_some_and(|v| v == origin)
    }

    #[test]
    fn exact_entries_compare_whole_origins_case_insensitively() {
        let c = cors(&["https://App.example", "http://b.example:8080", "null"]);
        assert!(allowed(&c, "https://app.example"));
        assert!(allowed(&c, "HTTPS://APP.EXAMPLE"));
        assert!(allowed(&c, "http://b.example:8080"));
        assert!(allowed(&c, "null"));
        assert!(!allowed(&c, "http://app.example"));
        assert!(!allowed(&c, "https://app.example:443"));
        assert!(!allowed(&c, "https://app.example.evil"));
        assert!(!allowed(&c, "xhttps://app.example"));
        assert!(!allowed(&c, "http://b.example"));
        assert!(c.allow_origin(None).is_none());
    }

    #[test]
    fn wildcard_entries_stand_for_one_label() {
        let c = cors(&["https://*.example.com", "http://*.dev.example:3000"]);
        assert!(allowed(&c, "https://a.example.com"));
        assert!(allowed(&c, "https://A-1.Example.COM"));
        assert!(allowed(&c, "http://x.dev.example:3000"));
        assert!(!allowed(&c, "https://example.com"));
        assert!(!allowed(&c, "https://.example.com"));
        assert!(!allowed(&c, "https://a.b.example.com"));
        assert!(!allowed(&c, "https://a.example.com:8443"));
        assert!(!allowed(&c, "http://a.example.com"));
        assert!(!allowed(&c, "https://a_b.example.com"));
        assert!(!allowed(&c, "http://x.dev.example"));
    }

    #[test]
    fn any_answers_star_with_or_without_origin() {
        let mut c = cors(&[]);
        assert!(c.allow_origin(None).is_none());
        assert!(!allowed(&c, "https://a.example"));
        c.origins = AllowOrigin::Any;
        assert_eq!(c.allow_origin(None).unwrap(), "*");
        assert_eq!(
            c.allow_origin(Some(&HeaderValue::from_static("https://a.example")))
                .unwrap(),
            "*"
        );
    }
}
