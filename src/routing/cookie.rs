//! Reading one cookie from a request's `Cookie` headers: the single parser behind
//! nginx's `$cookie_<name>` (log formats, header values, auth URLs, `upstream-hash-by`),
//! `canary-by-cookie` and the affinity cookie.
//!
//! A leaf module (it knows only `http` header maps) so routing and proxy both use it.
//! It follows nginx's `ngx_http_parse_multi_header_lines`, which `$cookie_` reads:
//! - the name matches case-insensitively (`ngx_strncasecmp`), so `sid=1` answers
//!   `$cookie_SID`;
//! - spaces may sit around the `=` (`a = 1` is cookie `a` with value `1`);
//! - the value is everything up to the next `;`, quotes included (no unquoting);
//! - the first match wins, across `Cookie` headers in order (HTTP/2 may send several);
//! - bytes, not text: a header with non-UTF-8 bytes in another cookie still yields the
//!   one asked for.
//!
//! Where the four copies this replaced disagreed, nginx decided: the name match used to
//! be case-sensitive in three of them (case-insensitive in the canary's), spaces around
//! `=` counted only there, and the affinity reader alone stripped `"` from values. Two
//! details all of them shared are kept although nginx differs: only `;` separates
//! cookies (nginx also resumes its name search after a `,`), and trailing whitespace is
//! not part of a value.

use http::HeaderMap;

/// The value of cookie `name` in one `Cookie` header value (`name` is never empty).
pub fn find<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii_start();
        let rest = pair
            .get(..name.len())
            .filter(|k| k.eq_ignore_ascii_case(name))
            .map(|_| &pair[name.len()..])?;
        let rest = skip_spaces(rest).strip_prefix(b"=")?;
        Some(skip_spaces(rest).trim_ascii_end())
    })
}

/// The value of cookie `name` across a request's `Cookie` headers, as bytes.
pub fn get_bytes<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .find_map(|v| find(v.as_bytes(), name))
}

/// The value of cookie `name` as text; `None` when absent or not UTF-8.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    std::str::from_utf8(get_bytes(headers, name)?).ok()
}

/// nginx skips spaces (not tabs) around the `=`.
fn skip_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| **b == b' ').count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(header: &str, name: &str) -> Option<String> {
        find(header.as_bytes(), name).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn reads_cookies_as_nginx_does() {
        assert_eq!(one("a=1; SID=xyz", "SID").as_deref(), Some("xyz"));
        // Case-insensitive names (ngx_strncasecmp).
        assert_eq!(one("a=1; sid=xyz", "SID").as_deref(), Some("xyz"));
        assert_eq!(one("a=1;SID=xyz", "sid").as_deref(), Some("xyz"));
        // A longer name is another cookie; a name without `=` is no cookie.
        assert_eq!(one("SIDX=1; SID=2", "SID").as_deref(), Some("2"));
        assert_eq!(one("SID; SID=2", "SID").as_deref(), Some("2"));
        assert_eq!(one("a=1", "SID"), None);
        assert_eq!(one("", "SID"), None);
        // Spaces around `=`; trailing whitespace dropped; empty values are values.
        assert_eq!(one("a = 1 ; b=2", "a").as_deref(), Some("1"));
        assert_eq!(one("a=; b=2", "a").as_deref(), Some(""));
        // Quotes and `=` inside a value stay; the first match wins.
        assert_eq!(one("a=\"q\"; a=2", "a").as_deref(), Some("\"q\""));
        assert_eq!(one("t=x=y", "t").as_deref(), Some("x=y"));
    }

    #[test]
    fn across_headers_and_bytes() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append(
            "cookie",
            http::HeaderValue::from_bytes(b"x=\xff; b=2; a=3").unwrap(),
        );
        assert_eq!(get(&h, "a"), Some("1"));
        assert_eq!(get(&h, "B"), Some("2"));
        assert_eq!(get_bytes(&h, "x"), Some(&b"\xff"[..]));
        // Not text: absent for the text reader.
        assert_eq!(get(&h, "x"), None);
        assert_eq!(get(&h, "c"), None);
    }
}
