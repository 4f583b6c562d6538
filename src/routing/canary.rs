//! Canary routing data: the alternative route a main route may send a request to, and
//! the traffic-shaping rules (ingress-nginx's `canary-*` annotations) that decide.
//!
//! Owns the parsed, immutable form only; translation attaches a [`Canary`] to the main
//! Ingress's route (`Route::canary`) and the proxy (`proxy::canary`) evaluates the rules
//! per request. The header pattern is compiled here once, never per request.

use std::sync::Arc;

use regex::Regex;

use super::table::Route;

/// The canary alternative of one main route.
#[derive(Debug)]
pub struct Canary {
    /// The main route with the canary Ingress's backend and balancing (and
    /// `is_canary` set): every other setting is the main Ingress's, as in ingress-nginx.
    pub route: Arc<Route>,
    pub rules: CanaryRules,
    /// `namespace/name` of the canary Ingress (for logs).
    pub ingress: Box<str>,
}

/// ingress-nginx's traffic-shaping policy: header, then cookie, then weight.
#[derive(Debug, Clone, Default)]
pub struct CanaryRules {
    /// `canary-by-header`: the request header consulted first.
    pub header: Option<http::HeaderName>,
    /// `canary-by-header-value`: an exact value that selects the canary.
    pub header_value: Option<Box<str>>,
    /// `canary-by-header-pattern` (ignored when a value is set): a regex, unanchored
    /// like nginx's `ngx.re.match`, that selects the canary.
    pub header_pattern: Option<Regex>,
    /// `canary-by-cookie`: `always` selects the canary, `never` the main backend.
    pub cookie: Option<Box<str>>,
    /// `canary-weight`: requests out of `weight_total` sent to the canary.
    pub weight: u32,
    /// `canary-weight-total` (100 unless set above 100, as ingress-nginx's balancer).
    pub weight_total: u32,
}

impl CanaryRules {
    /// A short, stable description (logs and translation fixtures).
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.header {
            let mut s = format!("header {h}");
            if let Some(v) = &self.header_value {
                s += &format!("={v}");
            } else if let Some(p) = &self.header_pattern {
                s += &format!("~{p}");
            }
            parts.push(s);
        }
        if let Some(c) = &self.cookie {
            parts.push(format!("cookie {c}"));
        }
        parts.push(format!("weight {}/{}", self.weight, self.weight_total));
        parts.join(", ")
    }
}
