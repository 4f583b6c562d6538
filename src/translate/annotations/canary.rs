//! Canary Ingresses: `canary: "true"` and its traffic-shaping annotations
//! (`canary-by-header`, `-by-header-value`, `-by-header-pattern`, `-by-cookie`,
//! `canary-weight`, `canary-weight-total`), plus `affinity-canary-behavior`.
//!
//! A canary Ingress adds no routes of its own. Each of its rules (host + path +
//! pathType, compared as sluice compares rules: Prefix `/a` and `/a/` are one rule)
//! lends its backend to the main route with the same rule, which then sends requests
//! there by the rules of `proxy::canary` (header, then cookie, then weight). As in
//! ingress-nginx:
//! - a canary rule whose host+path+pathType has no main (non-canary) Ingress is not
//!   served at all (warning `CanaryWithoutMain`); its host answers as if it did not exist;
//! - one canary per rule: a younger canary for a rule that already has one is ignored
//!   (`CanaryConflict`), as is a canary whose Service is the main route's own;
//! - the canary's `spec.defaultBackend` is the canary of the catch-all default backend
//!   (when that comes from an Ingress, not `--default-backend-service`) and of every
//!   rule without a host that has no canary of its own;
//! - of the canary Ingress's other annotations only `load-balance`, `upstream-hash-by`,
//!   `service-upstream` and `affinity-canary-behavior` are read; everything else (path
//!   rewriting, redirects, access lists, TLS, aliases...) is the main Ingress's. Set
//!   ones are listed in one `CanaryAnnotationIgnored` warning (session-affinity keys
//!   excepted: ingress-nginx documents them as honoured, and what it does is give the
//!   canary the main Ingress's affinity settings, which sluice does too);
//! - `affinity-canary-behavior: legacy` gives the canary no affinity at all;
//! - `canary-weight-total` only counts above 100 (ingress-nginx's balancer uses 100 for
//!   smaller totals; sluice warns); a weight above the total sends everything;
//! - a canary Service without ready endpoints is not attached (requests stay on main).
//! - `canary-*` keys on an Ingress without `canary: "true"` are ignored with a warning
//!   ("configured but not enabled" in ingress-nginx).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use super::super::backends::BackendIndex;
use super::super::object::{
    canonical, namespace_of, raw_annotation, service_of, validate_host, validate_path,
    ANNOTATION_PREFIX as P,
};
use super::super::values::parse_bool;
use super::super::{ObjKind, Warning};
use super::{balance, upstream};
use crate::routing::{
    Backend, Canary, CanaryRules, GlobalSettings, HostPattern, LbPolicy, PathKind, Route,
};

/// The identity of a rule: host, kind and canonical path (as `PathConflict` uses).
pub type RuleKey = (HostPattern, PathKind, String);

fn warn(ing: &Ingress, reason: &'static str, message: String, warnings: &mut Vec<Warning>) {
    warnings.push(Warning::new(
        ObjKind::Ingress,
        namespace_of(&ing.metadata),
        ing.metadata.name.as_deref().unwrap_or(""),
        reason,
        message,
    ));
}

/// Whether `canary: "true"` makes this Ingress a canary (an invalid value does not;
/// [`Plan::build`]'s caller warns through [`check_not_canary`]).
pub fn is_canary(ing: &Ingress) -> bool {
    raw_annotation(ing, "canary").is_some_and(|v| parse_bool(v) == Some(true))
}

/// For an Ingress that is not a canary: warns about a bad `canary` value and about
/// `canary-*` keys that have no effect without `canary: "true"`.
pub fn check_not_canary(ing: &Ingress, warnings: &mut Vec<Warning>) {
    if let Some(v) = raw_annotation(ing, "canary") {
        if parse_bool(v).is_none() {
            warn(
                ing,
                "InvalidAnnotation",
                format!("{P}canary: {v:?} is not true or false; the Ingress is not a canary"),
                warnings,
            );
        }
    }
    let set: Vec<&str> = ing
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix(P))
        .filter(|k| k.starts_with("canary-"))
        .collect();
    if !set.is_empty() {
        warn(
            ing,
            "InvalidAnnotation",
            format!(
                "{} set but {P}canary is not \"true\"; ignored",
                set.iter()
                    .map(|k| format!("{P}{k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            warnings,
        );
    }
}

/// The traffic-shaping rules and affinity behaviour of a canary Ingress.
pub fn parse_rules(ing: &Ingress, warnings: &mut Vec<Warning>) -> (CanaryRules, bool) {
    let get = |key: &str| raw_annotation(ing, key).map(str::trim);
    let mut rules = CanaryRules {
        weight_total: 100,
        ..CanaryRules::default()
    };
    if let Some(h) = get("canary-by-header").filter(|h| !h.is_empty()) {
        // nginx reads it as `$http_<name>`, where `_` and `-` are the same.
        match http::HeaderName::from_bytes(h.replace('_', "-").as_bytes()) {
            Ok(name) => rules.header = Some(name),
            Err(_) => warn(
                ing,
                "InvalidAnnotation",
                format!("{P}canary-by-header: {h:?} is not a header name; ignored"),
                warnings,
            ),
        }
    }
    let value = get("canary-by-header-value").filter(|v| !v.is_empty());
    let pattern = get("canary-by-header-pattern").filter(|v| !v.is_empty());
    if rules.header.is_none() && (value.is_some() || pattern.is_some()) {
        warn(
            ing,
            "InvalidAnnotation",
            format!("{P}canary-by-header-value/-pattern have no effect without a valid {P}canary-by-header; ignored"),
            warnings,
        );
    } else if let Some(v) = value {
        rules.header_value = Some(v.into());
    } else if let Some(p) = pattern {
        match regex::RegexBuilder::new(p).size_limit(1 << 20).build() {
            Ok(re) => rules.header_pattern = Some(re),
            Err(e) => warn(
                ing,
                "InvalidAnnotation",
                format!("{P}canary-by-header-pattern: {p:?} is not a valid regex ({e}); ignored"),
                warnings,
            ),
        }
    }
    if let Some(c) = get("canary-by-cookie").filter(|c| !c.is_empty()) {
        let token = c
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if token {
            rules.cookie = Some(c.into());
        } else {
            warn(
                ing,
                "InvalidAnnotation",
                format!("{P}canary-by-cookie: {c:?} is not a cookie name; ignored"),
                warnings,
            );
        }
    }
    if let Some(w) = get("canary-weight") {
        match w.parse::<i64>() {
            Ok(n) => rules.weight = n.clamp(0, u32::MAX as i64) as u32,
            Err(_) => warn(
                ing,
                "InvalidAnnotation",
                format!("{P}canary-weight: {w:?} is not an integer; using 0"),
                warnings,
            ),
        }
    }
    if let Some(t) = get("canary-weight-total") {
        match t.parse::<i64>() {
            Ok(n) if n >= 100 => rules.weight_total = n.min(u32::MAX as i64) as u32,
            Ok(_) => warn(
                ing,
                "InvalidAnnotation",
                format!("{P}canary-weight-total: {t:?} is below 100, which ingress-nginx treats as 100; using 100"),
                warnings,
            ),
            Err(_) => warn(
                ing,
                "InvalidAnnotation",
                format!("{P}canary-weight-total: {t:?} is not an integer; using 100"),
                warnings,
            ),
        }
    }
    let legacy = match get("affinity-canary-behavior") {
        None | Some("sticky") => false,
        Some("legacy") => true,
        Some(v) => {
            warn(
                ing,
                "InvalidAnnotation",
                format!("{P}affinity-canary-behavior: {v:?} is not sticky or legacy; using sticky"),
                warnings,
            );
            false
        }
    };
    (rules, legacy)
}

/// Keys of a canary Ingress that sluice reads (the rest is the main Ingress's).
fn read_on_canary(key: &str) -> bool {
    key == "canary"
        || key.starts_with("canary-")
        || key.starts_with("affinity")
        || key.starts_with("session-cookie-")
        || matches!(
            key,
            "load-balance" | "upstream-hash-by" | "service-upstream"
        )
}

fn warn_ignored(ing: &Ingress, warnings: &mut Vec<Warning>) {
    let ignored: Vec<&str> = ing
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter_map(|(k, _)| Some((k, k.strip_prefix(P)?)))
        .filter(|(_, short)| {
            !read_on_canary(short) && super::support(short) == super::Support::Supported
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if !ignored.is_empty() {
        warn(
            ing,
            "CanaryAnnotationIgnored",
            format!(
                "{} ignored: a canary Ingress takes every setting but its canary rules, balancing and service-upstream from the main Ingress",
                ignored.join(", ")
            ),
            warnings,
        );
    }
}

/// One canary backend waiting for its main route.
#[derive(Debug)]
struct Pending {
    backend: Arc<Backend>,
    lb: LbPolicy,
    rules: CanaryRules,
    legacy_affinity: bool,
    /// namespace/name of the canary Ingress.
    ingress: String,
    /// The rule as written, for the warning when no main route takes it.
    what: String,
    ns: String,
    name: String,
    attached: bool,
}

impl Pending {
    /// The main route with this canary attached (unchanged when the canary cannot be).
    fn attach(&mut self, main: Arc<Route>, warnings: &mut Vec<Warning>) -> Arc<Route> {
        self.attached = true;
        let (m, c) = (&main.backend, &self.backend);
        if (&m.namespace, &m.service, &m.port) == (&c.namespace, &c.service, &c.port) {
            warnings.push(Warning::new(
                ObjKind::Ingress,
                &self.ns,
                &self.name,
                "CanaryConflict",
                format!(
                    "{}: the canary's Service {}/{} is the main route's own; ignored",
                    self.what, c.namespace, c.service
                ),
            ));
            return main;
        }
        if !self.backend.has_endpoints() || main.canary.is_some() {
            return main;
        }
        let mut alt = (*main).clone();
        alt.backend = self.backend.clone();
        alt.lb = self.lb.clone();
        if self.legacy_affinity {
            alt.affinity = None;
        }
        alt.is_canary = true;
        let mut route = (*main).clone();
        route.canary = Some(Arc::new(Canary {
            route: Arc::new(alt),
            rules: self.rules.clone(),
            ingress: self.ingress.as_str().into(),
        }));
        Arc::new(route)
    }
}

/// The canary backends of every canary Ingress, keyed by the rule they shadow.
#[derive(Debug, Default)]
pub struct Plan {
    by_rule: HashMap<RuleKey, Pending>,
    /// From a canary's `spec.defaultBackend`.
    catch_all: Option<Pending>,
}

impl Plan {
    /// Resolves the canary Ingresses (served, oldest first) against the backends.
    pub fn build(
        canaries: &[&Ingress],
        backends: &mut BackendIndex,
        globals: &GlobalSettings,
        warnings: &mut Vec<Warning>,
    ) -> Plan {
        let mut plan = Plan::default();
        for ing in canaries {
            let ns = namespace_of(&ing.metadata);
            let name = ing.metadata.name.as_deref().unwrap_or("");
            let me = (ObjKind::Ingress, ns, name);
            let (rules, legacy_affinity) = parse_rules(ing, warnings);
            let lb = balance::parse(ing, &globals.load_balance, globals.next_upstream, warnings).lb;
            let service_upstream = upstream::service_upstream(ing, warnings);
            warn_ignored(ing, warnings);
            let pending = |backend: Arc<Backend>, what: String| Pending {
                backend,
                lb: lb.clone(),
                rules: rules.clone(),
                legacy_affinity,
                ingress: format!("{ns}/{name}"),
                what,
                ns: ns.to_string(),
                name: name.to_string(),
                attached: false,
            };
            let Some(spec) = ing.spec.as_ref() else {
                continue;
            };
            if let Some(default) = &spec.default_backend {
                if let Some(svc) = service_of(default, me, warnings) {
                    let b = upstream::resolve(
                        backends,
                        ing,
                        service_upstream,
                        &svc.name,
                        svc.port.as_ref(),
                        warnings,
                    );
                    if plan.catch_all.is_some() {
                        warn(
                            ing,
                            "CanaryConflict",
                            "spec.defaultBackend ignored: an older canary Ingress already shadows the default backend".into(),
                            warnings,
                        );
                    } else {
                        plan.catch_all = Some(pending(b, "spec.defaultBackend".into()));
                    }
                }
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.as_deref();
                if let Some(h) = host {
                    if let Err(why) = validate_host(h) {
                        warn(
                            ing,
                            "InvalidHost",
                            format!("rule for host {h:?} ignored: {why}"),
                            warnings,
                        );
                        continue;
                    }
                }
                let pattern = HostPattern::parse(host);
                for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                    let raw_path = p.path.as_deref().unwrap_or("");
                    let kind = match validate_path(&p.path_type, raw_path) {
                        Ok(k) => k,
                        Err(why) => {
                            warn(
                                ing,
                                "InvalidPath",
                                format!(
                                    "path {raw_path:?} ({}) on host {pattern} ignored: {why}",
                                    p.path_type
                                ),
                                warnings,
                            );
                            continue;
                        }
                    };
                    let path = if raw_path.is_empty() { "/" } else { raw_path };
                    let Some(svc) = service_of(&p.backend, me, warnings) else {
                        continue;
                    };
                    let key = (pattern.clone(), kind, canonical(kind, path));
                    let what = format!("path {path} ({}) on host {pattern}", p.path_type);
                    if let Some(older) = plan.by_rule.get(&key) {
                        if older.ingress != format!("{ns}/{name}") {
                            warn(
                                ing,
                                "CanaryConflict",
                                format!(
                                    "{what} already has canary Ingress {}; this one is ignored (one canary per rule)",
                                    older.ingress
                                ),
                                warnings,
                            );
                        }
                        continue;
                    }
                    let b = upstream::resolve(
                        backends,
                        ing,
                        service_upstream,
                        &svc.name,
                        svc.port.as_ref(),
                        warnings,
                    );
                    plan.by_rule.insert(key, pending(b, what));
                }
            }
        }
        plan
    }

    /// The main route for `key` with its canary attached, if a canary shadows it.
    pub fn attach(
        &mut self,
        key: &RuleKey,
        main: Arc<Route>,
        warnings: &mut Vec<Warning>,
    ) -> Arc<Route> {
        let main = match self.by_rule.get_mut(key) {
            Some(p) => p.attach(main, warnings),
            None => main,
        };
        match &mut self.catch_all {
            Some(p) if key.0 == HostPattern::Any && main.canary.is_none() => {
                p.attach(main, warnings)
            }
            _ => main,
        }
    }

    /// Attaches the catch-all canary to an Ingress's `spec.defaultBackend` route, then
    /// warns about canaries no main route took.
    pub fn finish(mut self, default: &mut Option<Arc<Route>>, warnings: &mut Vec<Warning>) {
        if let (Some(p), Some(d)) = (&mut self.catch_all, default.as_mut()) {
            // The --default-backend-service route has no Ingress: nothing to shadow.
            if !d.ingress_name.is_empty() {
                *d = p.attach(d.clone(), warnings);
            }
        }
        let mut left: Vec<&Pending> = self
            .by_rule
            .values()
            .chain(self.catch_all.iter())
            .filter(|p| !p.attached)
            .collect();
        left.sort_by(|a, b| (&a.ingress, &a.what).cmp(&(&b.ingress, &b.what)));
        for p in left {
            warnings.push(Warning::new(
                ObjKind::Ingress,
                &p.ns,
                &p.name,
                "CanaryWithoutMain",
                format!(
                    "canary for {} has no main Ingress with the same host, path and pathType; it is not served",
                    p.what
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(annotations: &[(&str, &str)]) -> Ingress {
        let mut ing = Ingress::default();
        ing.metadata.name = Some("c".into());
        ing.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (format!("{P}{k}"), v.to_string()))
                .collect(),
        );
        ing
    }

    fn messages(w: &[Warning]) -> Vec<String> {
        w.iter().map(|w| w.message.clone()).collect()
    }

    #[test]
    fn rules_as_ingress_nginx_reads_them() {
        let mut w = Vec::new();
        let ing = ingress(&[
            ("canary", "true"),
            ("canary-by-header", "X_Canary_Flag"),
            ("canary-by-header-value", "on"),
            ("canary-by-header-pattern", "ignored("),
            ("canary-by-cookie", "beta"),
            ("canary-weight", "250"),
            ("canary-weight-total", "1000"),
            ("affinity-canary-behavior", "legacy"),
        ]);
        assert!(is_canary(&ing));
        let (r, legacy) = parse_rules(&ing, &mut w);
        assert!(w.is_empty(), "{:?}", messages(&w));
        assert!(legacy);
        assert_eq!(
            r.summary(),
            "header x-canary-flag=on, cookie beta, weight 250/1000"
        );

        let ing = ingress(&[
            ("canary", "true"),
            ("canary-by-header-value", "on"),
            ("canary-by-cookie", "bad;name"),
            ("canary-weight", "-5"),
            ("canary-weight-total", "50"),
            ("affinity-canary-behavior", "sometimes"),
        ]);
        let (r, legacy) = parse_rules(&ing, &mut w);
        assert!(!legacy);
        assert_eq!(r.summary(), "weight 0/100");
        assert_eq!(w.len(), 4, "{:?}", messages(&w));

        let mut w = Vec::new();
        let ing = ingress(&[
            ("canary", "true"),
            ("canary-by-header", "x-user"),
            ("canary-by-header-pattern", "(unclosed"),
            ("canary-weight", "many"),
        ]);
        let (r, _) = parse_rules(&ing, &mut w);
        assert_eq!(r.summary(), "header x-user, weight 0/100");
        assert_eq!(w.len(), 2, "{:?}", messages(&w));
    }

    #[test]
    fn canary_keys_without_canary_true_warn() {
        let mut w = Vec::new();
        let ing = ingress(&[("canary", "yes"), ("canary-weight", "10")]);
        assert!(!is_canary(&ing));
        check_not_canary(&ing, &mut w);
        assert_eq!(w.len(), 2, "{:?}", messages(&w));
        let mut w = Vec::new();
        check_not_canary(&ingress(&[("canary", "false")]), &mut w);
        assert!(w.is_empty());
    }
}
