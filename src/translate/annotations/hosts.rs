//! Host-level routing annotations: `server-alias` and `from-to-www-redirect`, plus
//! `preserve-trailing-slash` (the https redirect's Location).
//!
//! `server-alias: "a.example, b.example"`: extra names that get every rule of the host
//! (of all its Ingresses, as nginx's `server_name` list does). Host-level, so the
//! oldest Ingress on the host that sets it wins (COMPAT §3); a younger one's list is
//! ignored with a `ServerAliasConflict` warning. An alias that is a host of its own
//! keeps its own rules (ingress-nginx's rule), an alias already claimed by an older
//! host stays with it, and an alias equal to a `from-to-www-redirect` name is that
//! redirect (nginx's redirect servers come first): each with a warning. Entries that
//! are not DNS names (or `*.` wildcards) are warned about and skipped. Canary
//! Ingresses' aliases are ignored, as in ingress-nginx. Aliases apply to the rules of
//! every host of the Ingress that sets them; rules without a host already match
//! every name. TLS for an alias: the certificate whose SANs cover the alias name is
//! served (the host's own certificate when it covers it, as ingress-nginx; else
//! another matching one, else the default certificate). The redirect to https applies
//! to an alias only when such a certificate exists (or with `force-ssl-redirect`), as
//! ingress-nginx redirects only names it has a certificate configured for.
//!
//! `from-to-www-redirect: "true"` on any Ingress of host `h` (exact hosts only): requests
//! for `www.h` (or for `h` minus `www.` when the rule's host is `www.h`) answer
//! `http-redirect-code` (308) to the same scheme, the host `h` and the request URI with
//! one trailing `/` dropped, as ingress-nginx's redirect server. When the other name
//! is a host of some Ingress, that host keeps its rules and the redirect is skipped
//! with a `FromToWwwRedirectIgnored` warning. The redirecting name is served over
//! HTTPS with the certificate covering it (ingress-nginx: the host's certificate when
//! its names include the `www.` name, else the default certificate). Unlike
//! ingress-nginx, sluice never appends its HTTPS listen port to the Location
//! (ingress-nginx adds it when that port is not 443; sluice's listen ports usually sit
//! behind a Service on 80/443).
//!
//! `preserve-trailing-slash: "true"`: the redirect to https keeps a trailing `/`
//! (ingress-nginx, and sluice, drop one by default: `/docs/` → `https://h/docs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use super::super::object::namespace_of;
use super::super::object::{raw_annotation, validate_host};
use super::super::values::parse_bool;
use super::super::{ObjKind, Warning};
use crate::routing::{
    Backend, CertTable, Endpoints, HostPattern, PathKind, Policy, Route, RoutingTable,
};

use super::super::object::ANNOTATION_PREFIX as P;

fn warn(ing: &Ingress, reason: &'static str, message: String, warnings: &mut Vec<Warning>) {
    warnings.push(Warning::new(
        ObjKind::Ingress,
        namespace_of(&ing.metadata),
        ing.metadata.name.as_deref().unwrap_or(""),
        reason,
        message,
    ));
}

fn bool_of(ing: &Ingress, key: &str, warnings: &mut Vec<Warning>) -> bool {
    let Some(v) = raw_annotation(ing, key) else {
        return false;
    };
    parse_bool(v).unwrap_or_else(|| {
        warn(
            ing,
            "InvalidAnnotation",
            format!("{P}{key}: {v:?} is not true or false; using false"),
            warnings,
        );
        false
    })
}

/// `preserve-trailing-slash` into the Ingress's policy.
pub fn apply_policy(ing: &Ingress, policy: &mut Policy, warnings: &mut Vec<Warning>) {
    policy.preserve_trailing_slash = bool_of(ing, "preserve-trailing-slash", warnings);
}

/// The valid hosts of an Ingress's rules (invalid ones are warned about by the rules).
fn rule_hosts(ing: &Ingress) -> impl Iterator<Item = HostPattern> + '_ {
    ing.spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .filter_map(|r| r.host.as_deref())
        .filter(|h| validate_host(h).is_ok())
        .map(|h| HostPattern::parse(Some(h)))
}

/// Aliases and www redirects of the whole table, decided before any rule is inserted.
#[derive(Debug, Default)]
pub struct HostPlan {
    /// Host → the alias names that get its rules, each with whether a certificate of
    /// the table covers it.
    aliases: HashMap<HostPattern, Vec<(HostPattern, bool)>>,
    /// Redirecting name → (target host, namespace and name of the Ingress asking).
    redirects: Vec<(String, String, String, String)>,
}

impl HostPlan {
    /// `primaries`: the served non-canary Ingresses, oldest first.
    pub fn build(
        primaries: &[&Ingress],
        certs: &CertTable,
        warnings: &mut Vec<Warning>,
    ) -> HostPlan {
        let real: HashSet<HostPattern> = primaries.iter().flat_map(|i| rule_hosts(i)).collect();
        let mut plan = HostPlan::default();

        let mut redirect_from: HashSet<String> = HashSet::new();
        for ing in primaries {
            if !bool_of(ing, "from-to-www-redirect", warnings) {
                continue;
            }
            for host in rule_hosts(ing) {
                let HostPattern::Exact(to) = host else {
                    continue;
                };
                let from = match to.strip_prefix("www.") {
                    Some(bare) => bare.to_string(),
                    None => format!("www.{to}"),
                };
                if real.contains(&HostPattern::Exact(from.clone())) {
                    warn(
                        ing,
                        "FromToWwwRedirectIgnored",
                        format!("{P}from-to-www-redirect: {from} is a host of its own Ingress rules, so it is not redirected to {to}"),
                        warnings,
                    );
                    continue;
                }
                if redirect_from.insert(from.clone()) {
                    plan.redirects.push((
                        from,
                        to,
                        namespace_of(&ing.metadata).to_string(),
                        ing.metadata.name.clone().unwrap_or_default(),
                    ));
                }
            }
        }

        // Who claimed each host's alias list, and which host each alias went to.
        let mut claimed: HashMap<HostPattern, String> = HashMap::new();
        let mut taken: HashMap<HostPattern, HostPattern> = HashMap::new();
        for ing in primaries {
            let Some(raw) = raw_annotation(ing, "server-alias") else {
                continue;
            };
            let me = format!(
                "{}/{}",
                namespace_of(&ing.metadata),
                ing.metadata.name.as_deref().unwrap_or("")
            );
            let mut list: Vec<HostPattern> = Vec::new();
            for a in raw.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                match validate_host(a) {
                    Ok(()) => {
                        let p = HostPattern::parse(Some(a));
                        if !list.contains(&p) {
                            list.push(p);
                        }
                    }
                    Err(why) => warn(
                        ing,
                        "InvalidAnnotation",
                        format!("{P}server-alias: {a:?} skipped: {why}"),
                        warnings,
                    ),
                }
            }
            if list.is_empty() {
                continue;
            }
            for host in rule_hosts(ing).collect::<Vec<_>>() {
                if let Some(owner) = claimed.get(&host) {
                    if *owner != me {
                        warn(
                            ing,
                            "ServerAliasConflict",
                            format!("{P}server-alias of host {host} ignored: older Ingress {owner} already sets the host's aliases"),
                            warnings,
                        );
                    }
                    continue;
                }
                claimed.insert(host.clone(), me.clone());
                let mut mine = Vec::new();
                for alias in &list {
                    if *alias == host {
                        continue;
                    }
                    let why = if real.contains(alias) {
                        Some("it is a host of its own Ingress rules, which keep it".to_string())
                    } else if matches!(alias, HostPattern::Exact(a) if redirect_from.contains(a)) {
                        Some("it redirects (from-to-www-redirect)".to_string())
                    } else {
                        taken
                            .get(alias)
                            .map(|other| format!("it is already an alias of host {other}"))
                    };
                    if let Some(why) = why {
                        warn(
                            ing,
                            "ServerAliasConflict",
                            format!("{P}server-alias {alias} of host {host} ignored: {why}"),
                            warnings,
                        );
                        continue;
                    }
                    taken.insert(alias.clone(), host.clone());
                    mine.push((alias.clone(), certs.resolve(&alias.to_string()).is_some()));
                }
                if !mine.is_empty() {
                    plan.aliases.insert(host, mine);
                }
            }
        }
        plan
    }

    /// Every (host, alias) pair: host-level settings of the host apply to the alias.
    pub fn alias_pairs(&self) -> impl Iterator<Item = (&HostPattern, &HostPattern)> {
        self.aliases
            .iter()
            .flat_map(|(h, list)| list.iter().map(move |(a, _)| (h, a)))
    }

    /// Alias hosts match paths as their host does (call after the host's regex mode
    /// is decided, before any rule is inserted).
    pub fn set_regex_modes(&self, table: &mut RoutingTable) {
        for (host, aliases) in &self.aliases {
            if table.hosts.get(host).is_some_and(|m| m.is_regex_mode()) {
                for (a, _) in aliases {
                    table.hosts.entry(a).set_regex_mode();
                }
            }
        }
    }

    /// Gives a rule just inserted for `host` to the host's aliases too. The redirect to
    /// https follows the host's, except that (as ingress-nginx, which configures the
    /// host's certificate for an alias only when it covers the name) an alias no
    /// certificate covers is not redirected unless `force-ssl-redirect` is set.
    pub fn insert_aliases(
        &self,
        table: &mut RoutingTable,
        host: &HostPattern,
        kind: PathKind,
        path: &str,
        route: &Arc<Route>,
        force_ssl_redirect: bool,
    ) {
        for (a, has_cert) in self.aliases.get(host).into_iter().flatten() {
            let route = if route.ssl_redirect && !force_ssl_redirect && !has_cert {
                let mut r = (**route).clone();
                r.ssl_redirect = false;
                Arc::new(r)
            } else {
                route.clone()
            };
            // The host accepted the rule, so its alias (same mode, same rules) does too.
            let _ = table.hosts.entry(a).insert(kind, path, route);
        }
    }

    /// Adds the `from-to-www-redirect` names: a `/` Prefix route that only redirects.
    pub fn insert_redirects(&self, table: &mut RoutingTable) {
        for (from, to, ns, name) in &self.redirects {
            let backend = Arc::new(Backend::new(
                ns,
                "",
                "",
                Endpoints::Unavailable {
                    reason: format!("from-to-www-redirect to {to}"),
                },
            ));
            let mut route = Route::new(backend, ns, name, "/", PathKind::Prefix);
            route.policy = Arc::new(Policy {
                www_redirect: Some(to.as_str().into()),
                ..Policy::default()
            });
            let _ = table.hosts.entry(&HostPattern::Exact(from.clone())).insert(
                PathKind::Prefix,
                "/",
                Arc::new(route),
            );
        }
    }
}
