//! HTTP/2 limits on the client side (issue 11, hardening): the settings sluice
//! advertises in its SETTINGS frame, the idle timeout of an h2 connection, and the
//! per-field size check that the h2 crate does not make.
//!
//! ingress-nginx's ConfigMap names, and where each one lands:
//! - `http2-max-concurrent-streams` (128) → `SETTINGS_MAX_CONCURRENT_STREAMS` (h2's
//!   `max_concurrent_streams`; streams over it are refused by the h2 crate);
//! - `http2-max-header-size` (nginx's default is `large-client-header-buffers`, 4 × 8k
//!   = 32k) → `SETTINGS_MAX_HEADER_LIST_SIZE` (h2's `max_header_list_size`, the decoded
//!   header list with RFC 7541's 32 bytes per field; over it the h2 crate answers 431);
//! - `http2-max-field-size` (one 8k buffer) → checked here per decoded field, name plus
//!   value, answering 400 as nginx does ("client sent too large header field"). The h2
//!   crate has no per-field limit, and `max_frame_size` is unrelated (the frame payload
//!   size, at least 16 KiB by RFC 9113);
//! - `keep-alive` (75 s) → the h2 idle timeout: nginx ≥ 1.19.7 closes an h2 connection
//!   without open streams after `keepalive_timeout`, replacing the old
//!   `http2_idle_timeout`. Pingora's default is unbounded.
//!
//! Pingora clones the `H2Options` and `HttpServerOptions` of a service for each
//! connection, and sluice builds its services once, so the first three of these are
//! read from the first table and apply until restart; the field check reads the table
//! of each request and so follows the ConfigMap at run time. Must not touch the
//! HTTP/1 framing (`framing.rs`) or the response path.

use std::time::Duration;

use pingora::apps::HttpServerOptions;
use pingora::http::RequestHeader;
use pingora::protocols::http::v2::server::H2Options;

use crate::routing::GlobalSettings;

/// The h2 settings sluice advertises, from the ConfigMap values in `g`.
pub fn h2_options(g: &GlobalSettings) -> H2Options {
    let mut o = H2Options::default();
    o.max_concurrent_streams(g.http2_max_concurrent_streams);
    o.max_header_list_size(g.http2_max_header_size);
    o
}

/// The listener options of the plaintext and TLS listeners (one Pingora app serves
/// both): h2c by prior knowledge on the plaintext one, and the h2 idle timeout.
pub fn server_options(g: &GlobalSettings) -> HttpServerOptions {
    let mut o = HttpServerOptions::default();
    o.h2c = true;
    o.h2_idle_timeout = Some(g.http2_idle_timeout.max(Duration::from_secs(1)));
    o
}

/// Whether one decoded header field (name plus value, as nginx counts it) is longer
/// than `limit` bytes. Pseudo-headers are not in `headers`; the request target is
/// checked as part of the header list by the h2 crate.
pub fn field_too_large(req: &RequestHeader, limit: u32) -> bool {
    let limit = limit as usize;
    req.headers
        .iter()
        .any(|(k, v)| k.as_str().len() + v.len() > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_over_the_limit_is_found_and_one_at_it_is_not() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-a", "v".repeat(97)).unwrap();
        assert!(!field_too_large(&req, 100));
        req.insert_header("x-b", "v".repeat(98)).unwrap();
        assert!(field_too_large(&req, 100));
    }

    #[test]
    fn the_idle_timeout_is_never_zero() {
        let g = GlobalSettings {
            http2_idle_timeout: Duration::ZERO,
            ..GlobalSettings::default()
        };
        assert_eq!(
            server_options(&g).h2_idle_timeout,
            Some(Duration::from_secs(1))
        );
        assert!(server_options(&g).h2c);
    }
}
