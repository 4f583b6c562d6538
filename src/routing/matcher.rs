//! Host and path matching: the precedence rules of the Ingress spec, precomputed.
//!
//! Owns how a request's `Host` and path find a route. Everything here is built once
//! per table and only read on the request path: lookups are a handful of hash probes,
//! no allocation for ordinary paths and no regex.
//!
//! Hosts: exact names (lower-cased, port stripped) win over `*.parent` wildcards, which
//! cover exactly one extra label; rules without a host apply to every host. Sluice
//! follows the spec here and tries the three in that order, falling through when a
//! level has no matching path (ingress-nginx instead keeps each host a separate server
//! and never falls through to host-less rules; the README lists the difference).
//!
//! Paths: `Exact` is a whole-path comparison; `Prefix` matches element-wise (split on
//! `/`, trailing slash ignored on both sides), longest prefix first; an Exact match
//! beats any Prefix (it is always at least as long). Matching is case-sensitive and
//! runs on the normalised path (percent-decoded, `//` merged, `.`/`..` resolved, as
//! nginx normalises `$uri`), while the request is forwarded unchanged.
//!
//! Regex hosts (COMPAT §3): when any Ingress on a host uses `use-regex` or
//! `rewrite-target`, every Prefix/ImplementationSpecific path of that host is a
//! case-insensitive regex anchored at the start, tried longest path first (nginx's
//! `~*` locations as ingress-nginx orders them); Exact paths stay exact and win first.
//! Only those hosts pay for regex matching.
//! matchit was considered and rejected: its catch-all segments cannot express
//! "trailing slash ignored on both sides" plus Exact-over-Prefix ties without
//! duplicating every route, and a direct hash probe per path element is simpler.

use std::borrow::Cow;
use std::collections::HashMap;

/// How an Ingress path matches, after translation resolved `ImplementationSpecific`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    Exact,
    Prefix,
}

/// The path rules of one host (or of the host-less rule set).
#[derive(Debug)]
pub struct PathMatcher<T> {
    exact: HashMap<Box<str>, T>,
    /// Keyed by the prefix with trailing slashes removed; `/` is the empty key.
    prefix: HashMap<Box<str>, T>,
    /// Regex mode: Prefix rules as (regex, path as written, value), longest path first.
    regex: Option<Vec<(regex::Regex, Box<str>, T)>>,
}

impl<T> Default for PathMatcher<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            prefix: HashMap::new(),
            regex: None,
        }
    }
}

/// Why a path rule could not be inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertError {
    /// The same path and kind is already taken (the older Ingress keeps it).
    Conflict,
    /// Regex mode: the path does not compile as a regex.
    BadRegex(super::policy::Error),
}

impl<T> PathMatcher<T> {
    /// Adds a rule. `path` must start with `/` (translation validates that).
    pub fn insert(&mut self, kind: PathKind, path: &str, value: T) -> Result<(), InsertError> {
        if let (PathKind::Prefix, Some(list)) = (kind, self.regex.as_mut()) {
            if list.iter().any(|(_, p, _)| &**p == path) {
                return Err(InsertError::Conflict);
            }
            let re = super::policy::path_regex(path).map_err(InsertError::BadRegex)?;
            // Longest first; equal lengths keep insertion (oldest Ingress) order.
            let at = list.partition_point(|(_, p, _)| p.len() >= path.len());
            list.insert(at, (re, path.into(), value));
            return Ok(());
        }
        let map = match kind {
            PathKind::Exact => &mut self.exact,
            PathKind::Prefix => &mut self.prefix,
        };
        let key: Box<str> = match kind {
            PathKind::Exact => path.into(),
            PathKind::Prefix => path.trim_end_matches('/').into(),
        };
        if map.contains_key(&key) {
            return Err(InsertError::Conflict);
        }
        map.insert(key, value);
        Ok(())
    }

    /// Switches to regex mode; must come before any Prefix rule is inserted.
    pub fn set_regex_mode(&mut self) {
        debug_assert!(self.prefix.is_empty());
        self.regex.get_or_insert_with(Vec::new);
    }

    pub fn is_regex_mode(&self) -> bool {
        self.regex.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.prefix.len() + self.regex.as_ref().map_or(0, Vec::len)
    }

    /// Finds the rule for an already normalised path (see [`normalize_path`]).
    pub fn lookup(&self, path: &str) -> Option<&T> {
        if !self.exact.is_empty() {
            if let Some(v) = self.exact.get(path) {
                return Some(v);
            }
        }
        if let Some(list) = &self.regex {
            return list
                .iter()
                .find(|(re, _, _)| re.is_match(path))
                .map(|(_, _, v)| v);
        }
        if self.prefix.is_empty() {
            return None;
        }
        // Longest element-wise prefix: the whole path, then cut at each `/` from the right.
        let mut candidate = path.trim_end_matches('/');
        loop {
            if let Some(v) = self.prefix.get(candidate) {
                return Some(v);
            }
            match candidate.rfind('/') {
                Some(i) => candidate = &candidate[..i],
                None => return None,
            }
        }
    }
}

/// Hosts to rule sets: exact names, one-label wildcards, and the host-less set.
#[derive(Debug)]
pub struct HostIndex<T> {
    exact: HashMap<Box<str>, T>,
    /// `*.foo.com` is stored under `foo.com`.
    wildcard: HashMap<Box<str>, T>,
    any: Option<T>,
}

impl<T> Default for HostIndex<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: None,
        }
    }
}

/// A host as an Ingress rule names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// The parent domain of `*.parent`.
    Wildcard(String),
    Any,
}

impl HostPattern {
    /// Parses a rule's host (already validated by translation); lower-cases it.
    pub fn parse(host: Option<&str>) -> HostPattern {
        match host.map(str::trim) {
            None | Some("") => HostPattern::Any,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix("*.") {
                    Some(parent) => HostPattern::Wildcard(parent.to_string()),
                    None => HostPattern::Exact(h),
                }
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(p) => write!(f, "*.{p}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

impl<T: Default> HostIndex<T> {
    /// The rule set for a pattern, created empty on first use.
    pub fn entry(&mut self, pattern: &HostPattern) -> &mut T {
        match pattern {
            HostPattern::Exact(h) => self.exact.entry(h.as_str().into()).or_default(),
            HostPattern::Wildcard(p) => self.wildcard.entry(p.as_str().into()).or_default(),
            HostPattern::Any => self.any.get_or_insert_with(T::default),
        }
    }
}

impl<T> HostIndex<T> {
    /// The rule sets that apply to a request host, most specific first (at most three).
    /// `host` must already be normalised with [`normalize_host`].
    pub fn candidates<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a T> + 'a {
        let exact = self.exact.get(host);
        let wildcard = host
            .split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent));
        exact.into_iter().chain(wildcard).chain(self.any.as_ref())
    }

    pub fn get(&self, pattern: &HostPattern) -> Option<&T> {
        match pattern {
            HostPattern::Exact(h) => self.exact.get(h.as_str()),
            HostPattern::Wildcard(p) => self.wildcard.get(p.as_str()),
            HostPattern::Any => self.any.as_ref(),
        }
    }

    pub fn host_count(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.any.is_some())
    }
}

/// Lower-cases a `Host` header value and strips the port and a trailing dot.
/// Borrows when nothing needs changing (the common case).
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        rest.split(']').next().unwrap_or(rest)
    } else {
        raw.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(raw, |(h, _)| h)
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// Why a request path cannot be matched at all (nginx answers these with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// Not an origin-form path starting with `/`.
    NotAbsolute,
    /// `..` climbs above the root.
    AboveRoot,
}

/// The path used for matching: percent-decoded, `//` merged, `.` and `..` resolved,
/// query excluded. Borrows when the path needs none of that.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, BadPath> {
    let path = raw.split_once('?').map_or(raw, |(p, _)| p);
    if !path.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    let needs_work = path.contains('%') || path.contains("//") || path.contains("/.");
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = percent_decode(path);
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate().skip(1) {
        match *seg {
            "" => trailing_slash = i == last,
            "." => trailing_slash = true,
            ".." => {
                if out.pop().is_none() {
                    return Err(BadPath::AboveRoot);
                }
                trailing_slash = true;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

fn percent_decode(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rules: &[(PathKind, &str)]) -> PathMatcher<String> {
        let mut pm = PathMatcher::default();
        for (k, p) in rules {
            pm.insert(*k, p, format!("{k:?} {p}")).unwrap();
        }
        pm
    }

    type Case<'a> = (&'a [(PathKind, &'a str)], &'a str, Option<&'a str>);

    #[test]
    fn compat_section_1_paths() {
        use PathKind::*;
        let cases: &[Case] = &[
            (&[(Exact, "/foo")], "/foo", Some("Exact /foo")),
            (&[(Exact, "/foo")], "/foo/", None),
            (&[(Exact, "/foo")], "/FOO", None),
            (&[(Exact, "/foo")], "/bar", None),
            (&[(Exact, "/foo/")], "/foo", None),
            (&[(Prefix, "/")], "/anything/at/all", Some("Prefix /")),
            (&[(Prefix, "/foo")], "/foo", Some("Prefix /foo")),
            (&[(Prefix, "/foo")], "/foo/", Some("Prefix /foo")),
            (&[(Prefix, "/foo/")], "/foo", Some("Prefix /foo/")),
            (&[(Prefix, "/foo/")], "/foo/", Some("Prefix /foo/")),
            (
                &[(Prefix, "/aaa/bbb")],
                "/aaa/bbb/ccc",
                Some("Prefix /aaa/bbb"),
            ),
            (&[(Prefix, "/aaa/bbb")], "/aaa/bbbxyz", None),
            (
                &[(Prefix, "/aaa/bbb/")],
                "/aaa/bbb",
                Some("Prefix /aaa/bbb/"),
            ),
            (&[(Prefix, "/aaa/bb")], "/aaa/bbb", None),
            (
                &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
                "/aaa/bbb",
                Some("Prefix /aaa/bbb"),
            ),
            (
                &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
                "/ccc",
                Some("Prefix /"),
            ),
            (
                &[(Prefix, "/foo"), (Exact, "/foo")],
                "/foo",
                Some("Exact /foo"),
            ),
            (
                &[(Prefix, "/foo"), (Exact, "/foo")],
                "/foo/x",
                Some("Prefix /foo"),
            ),
        ];
        for (rules, req, want) in cases {
            let pm = m(rules);
            assert_eq!(
                pm.lookup(req).map(String::as_str),
                *want,
                "rules {rules:?} request {req}"
            );
        }
    }

    #[test]
    fn duplicate_rule_is_a_conflict() {
        let mut pm = m(&[(PathKind::Prefix, "/a/")]);
        assert_eq!(
            pm.insert(PathKind::Prefix, "/a", "x".into()),
            Err(InsertError::Conflict)
        );
        assert!(pm.insert(PathKind::Exact, "/a", "x".into()).is_ok());
    }

    #[test]
    fn hosts() {
        let mut idx: HostIndex<Vec<&str>> = HostIndex::default();
        idx.entry(&HostPattern::parse(Some("foo.bar.com")))
            .push("exact");
        idx.entry(&HostPattern::parse(Some("*.foo.com")))
            .push("wild");
        idx.entry(&HostPattern::parse(None)).push("any");
        let first = |h: &str| {
            idx.candidates(&normalize_host(h))
                .map(|v| v[0])
                .collect::<Vec<_>>()
        };
        assert_eq!(first("foo.bar.com"), ["exact", "any"]);
        assert_eq!(first("FOO.bar.com:8080"), ["exact", "any"]);
        assert_eq!(first("bar.foo.com"), ["wild", "any"]);
        assert_eq!(first("baz.bar.foo.com"), ["any"]);
        assert_eq!(first("foo.com"), ["any"]);
        assert_eq!(first("foo.bar.com."), ["exact", "any"]);
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalize_host("Example.COM:443"), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "::1");
        assert_eq!(normalize_host("a.b"), "a.b");
    }

    #[test]
    fn path_normalisation() {
        let n = |p| normalize_path(p).map(|c| c.into_owned());
        assert_eq!(n("/a/b?x=/c").unwrap(), "/a/b");
        assert_eq!(n("/a//b").unwrap(), "/a/b");
        assert_eq!(n("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/%61dmin").unwrap(), "/admin");
        assert_eq!(n("/a%2").unwrap(), "/a%2");
        assert_eq!(n("/..").unwrap_err(), BadPath::AboveRoot);
        assert_eq!(n("*").unwrap_err(), BadPath::NotAbsolute);
        assert_eq!(n("/").unwrap(), "/");
        assert_eq!(n("/a/").unwrap(), "/a/");
    }
}
