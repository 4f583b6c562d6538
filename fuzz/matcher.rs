//! Fuzz target `matcher`: the path and host matcher (src/routing/matcher.rs) against a
//! reference model written straight from COMPAT §1, plus path normalisation and regex
//! mode on raw bytes (never a panic).
//!
//! Paths are built from a small alphabet of segments so that rules and requests
//! collide often: Exact is whole-path equality; Prefix matches element-wise (split on
//! `/`, trailing slash ignored on both sides), the longest prefix wins, Exact wins a
//! tie; the first rule of a (kind, path) keeps it. Hosts: exact names (case-insensitive,
//! port and trailing dot ignored), then `*.parent` covering exactly one more label, then
//! host-less rules.

use sluice::routing::matcher::{normalize_host, HostIndex, HostPattern, PathKind, PathMatcher};
use sluice::routing::normalize_path;

use crate::engine::Choices;

const SEGMENTS: &[&str] = &["a", "aa", "b", "a.b", "A", "%61", ".", "..", ""];
const LABELS: &[&str] = &["a", "b", "ab", "A", "x-y"];

fn path(c: &mut Choices, segments: &[&str]) -> String {
    let mut p = String::new();
    for _ in 0..c.below(4) {
        p.push('/');
        p.push_str(c.pick(segments));
    }
    if p.is_empty() || c.below(3) == 0 {
        p.push('/');
    }
    p
}

fn elements(p: &str) -> Vec<&str> {
    p.split('/').filter(|s| !s.is_empty()).collect()
}

/// COMPAT §1 for one host's rules: the index of the winning rule.
fn model(rules: &[(PathKind, String)], req: &str) -> Option<usize> {
    let mut kept: Vec<(usize, PathKind, Vec<&str>, &str)> = Vec::new();
    for (i, (k, p)) in rules.iter().enumerate() {
        let key = match k {
            PathKind::Exact => p.as_str(),
            PathKind::Prefix => p.trim_end_matches('/'),
        };
        if !kept.iter().any(|(_, k2, _, key2)| k2 == k && *key2 == key) {
            kept.push((i, *k, elements(p), key));
        }
    }
    if let Some((i, ..)) = kept
        .iter()
        .find(|(i, k, _, _)| *k == PathKind::Exact && rules[*i].1 == req)
    {
        return Some(*i);
    }
    let req_el = elements(req);
    kept.iter()
        .filter(|(_, k, el, _)| *k == PathKind::Prefix && req_el.starts_with(el))
        .max_by_key(|(i, _, el, _)| (el.len(), std::cmp::Reverse(*i)))
        .map(|(i, ..)| *i)
}

fn paths(c: &mut Choices) {
    let mut rules = Vec::new();
    let mut m = PathMatcher::default();
    for i in 0..c.below(8) {
        let kind = if c.flag() {
            PathKind::Exact
        } else {
            PathKind::Prefix
        };
        // Rule paths as translation admits them: no empty or dot segments.
        let p = path(c, &SEGMENTS[..5]);
        let _ = m.insert(kind, &p, i);
        rules.push((kind, p));
    }
    for _ in 0..1 + c.below(6) {
        let raw = path(c, SEGMENTS);
        let Ok(req) = normalize_path(&raw) else {
            continue;
        };
        let got = m.lookup(&req).copied();
        let want = model(&rules, &req);
        assert_eq!(
            got, want,
            "rules {rules:?}, request {raw:?} (normalised {req:?})"
        );
    }
}

fn host(c: &mut Choices) -> String {
    let mut h = String::new();
    for i in 0..1 + c.below(3) {
        if i > 0 {
            h.push('.');
        }
        h.push_str(c.pick(LABELS));
    }
    h
}

fn hosts(c: &mut Choices) {
    let mut patterns: Vec<HostPattern> = Vec::new();
    let mut index: HostIndex<Vec<usize>> = HostIndex::default();
    for i in 0..c.below(6) {
        let raw = match c.below(3) {
            0 => None,
            1 => Some(format!("*.{}", host(c))),
            _ => Some(host(c)),
        };
        let pat = HostPattern::parse(raw.as_deref());
        index.entry(&pat).push(i);
        patterns.push(pat);
    }
    for _ in 0..1 + c.below(4) {
        let mut raw = host(c);
        if c.flag() {
            raw.push('.');
        }
        if c.flag() {
            raw.push_str(":8080");
        }
        let norm = normalize_host(&raw);
        let got: Vec<usize> = index.candidates(&norm).flatten().copied().collect();
        // Reference: the request host lower-cased, without port and trailing dot.
        let h = raw
            .rsplit_once(':')
            .map_or(raw.as_str(), |(h, _)| h)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let mut want = Vec::new();
        for level in 0..3 {
            for (i, p) in patterns.iter().enumerate() {
                let hit = match (level, p) {
                    (0, HostPattern::Exact(e)) => *e == h,
                    (1, HostPattern::Wildcard(parent)) => h
                        .split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                    (2, HostPattern::Any) => true,
                    _ => false,
                };
                if hit {
                    want.push(i);
                }
            }
        }
        assert_eq!(got, want, "patterns {patterns:?}, host {raw:?}");
    }
}

/// Raw bytes: normalisation's invariants and regex mode must hold for anything.
fn raw(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for candidate in text.lines().chain([&text[..]]).take(16) {
        if let Ok(p) = normalize_path(candidate) {
            assert!(p.starts_with('/'), "{candidate:?} → {p:?}");
            let el: Vec<&str> = p.split('/').collect();
            assert!(
                !el[1..el.len().saturating_sub(1)]
                    .iter()
                    .any(|s| s.is_empty() || *s == "." || *s == ".."),
                "{candidate:?} → {p:?} keeps an empty or dot segment"
            );
            // Decoding is single-pass, as nginx's: `%5%42` leaves `%5B`, which a second
            // pass would decode again (fuzz/regressions/matcher/single-decode). And a
            // decoded `%3F` is a `?` inside the path, as in nginx's `$uri`, which read
            // again as a request target would start a query (regressions/matcher/
            // decoded-question-mark). So only a result without `%` or `?` must be a
            // fixed point.
            if !p.contains('%') && !p.contains('?') {
                assert_eq!(
                    normalize_path(&p).as_deref(),
                    Ok(&*p),
                    "not idempotent: {candidate:?}"
                );
            }
        }
        let _ = normalize_host(candidate);
    }
    let mut m = PathMatcher::default();
    m.set_regex_mode();
    for (i, line) in text.lines().take(8).enumerate() {
        let _ = m.insert(PathKind::Prefix, &format!("/{line}"), i);
        let _ = m.insert(PathKind::Exact, &format!("/{line}"), i);
    }
    for line in text.lines().take(8) {
        let _ = m.lookup(line);
    }
}

pub fn target(data: &[u8]) {
    let mut c = Choices::new(data);
    paths(&mut c);
    hosts(&mut c);
    raw(data);
}
