//! Ingress rules → routes: class selection (COMPAT §2), path validation, merging of
//! several Ingresses per host (oldest `creationTimestamp` first; the oldest keeps a
//! clashing host+path+pathType), `spec.defaultBackend` and `--default-backend-service`.
//!
//! `ImplementationSpecific` paths are treated as `Prefix`, or as regexes on a host in
//! regex mode (COMPAT §3). `resource` backends are not proxied: the path is treated as
//! absent.
//!
//! Canary Ingresses (`annotations/canary.rs`) add no routes, hosts or certificates:
//! their backends are attached to the main routes of the same rule. `server-alias`
//! and `from-to-www-redirect` (`annotations/hosts.rs`) add host entries that share the
//! host's routes or only redirect.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass, ServiceBackendPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::annotations::proxy_ssl::{self, ProxySsl};
use super::annotations::{
    auth, auth_tls, balance, canary, cors, custom_errors, hosts, limits, passthrough, policy,
    upstream,
};
use super::backends::{port_label, BackendIndex};
use super::object::{
    annotation, bool_annotation, canonical, namespace_of, raw_annotation, service_of,
    validate_host, validate_path,
};
use super::values::parse_bool;
use super::{ObjKind, Snapshot, Translation, Warning};
use crate::config::TranslateConfig;
use crate::routing::matcher::InsertError;
use crate::routing::{
    Backend, CookieAffinity, Endpoints, GlobalSettings, HostPattern, PathKind, Policy, Rewrite,
    Route, RoutingTable, TableStats, UpstreamProtocol, UpstreamTls,
};

/// The deprecated annotation that still selects a class.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether an Ingress is ours (COMPAT §2). The deprecated annotation, when present,
/// decides on its own (as in ingress-nginx); then `spec.ingressClassName`; then
/// `--watch-ingress-without-class`.
pub fn is_served(
    ing: &Ingress,
    classes: &HashMap<&str, &IngressClass>,
    config: &TranslateConfig,
) -> bool {
    if let Some(class) = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLASS_ANNOTATION))
    {
        return *class == config.ingress_class;
    }
    match ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        Some(name) => {
            classes
                .get(name)
                .and_then(|c| c.spec.as_ref())
                .and_then(|s| s.controller.as_deref())
                == Some(config.controller_class.as_str())
        }
        None => config.watch_without_class,
    }
}

fn age_key(ing: &Ingress) -> (Option<&Time>, &str, &str) {
    (
        ing.metadata.creation_timestamp.as_ref(),
        namespace_of(&ing.metadata),
        ing.metadata.name.as_deref().unwrap_or(""),
    )
}

/// Builds the table in named stages: class selection ([`select`]), the ConfigMap, TLS
/// (`tls.rs`), regex hosts ([`mark_regex_hosts`]) and host aliases, then per Ingress,
/// oldest first, its annotations ([`Settings::parse`]), its default backend and its
/// rules ([`add_rules`]: path validation and precedence, merging into shared hosts),
/// and last the `--default-backend-service` fallback.
pub(super) fn build(snapshot: &Snapshot, config: &TranslateConfig) -> Translation {
    let mut warnings = Vec::new();
    let (served, ignored_ingresses) = select(snapshot, config);

    let mut backends = BackendIndex::new(&snapshot.services, &snapshot.endpoint_slices);
    let mut table = RoutingTable {
        globals: super::configmap::globals(
            &snapshot.config_maps,
            config.configmap.as_ref(),
            &mut warnings,
        ),
        ..RoutingTable::default()
    };
    // Canary Ingresses add no routes, hosts, certificates or regex mode of their own:
    // they only lend their backends to the main routes (annotations/canary.rs).
    let primaries: Vec<&Ingress> = served
        .iter()
        .copied()
        .filter(|i| !canary::is_canary(i))
        .collect();
    let mut tls = super::tls::build(
        &primaries,
        &snapshot.secrets,
        config.default_ssl_certificate.as_ref(),
        snapshot.observed_at,
        &mut warnings,
    );
    let secrets: HashMap<(&str, &str), &Secret> = snapshot
        .secrets
        .iter()
        .filter_map(|s| {
            Some((
                (namespace_of(&s.metadata), s.metadata.name.as_deref()?),
                s.as_ref(),
            ))
        })
        .collect();

    // Passthrough hosts count as TLS hosts for ssl-redirect (ingress-nginx redirects
    // plain HTTP to them too).
    let passthrough_hosts =
        passthrough::hosts(&primaries, config.enable_ssl_passthrough, &mut warnings);
    tls.tls_hosts.extend(passthrough_hosts.keys().cloned());

    mark_regex_hosts(&primaries, &mut table);
    let hosts_plan = hosts::HostPlan::build(&primaries, &tls.certs, &mut warnings);
    hosts_plan.set_regex_modes(&mut table);
    let canaries: Vec<&Ingress> = served
        .iter()
        .copied()
        .filter(|i| canary::is_canary(i))
        .collect();
    let mut canary_plan =
        canary::Plan::build(&canaries, &mut backends, &table.globals, &mut warnings);

    let mut implicit_roots = implicit_root::ImplicitRoots::default();
    let mut merge = Merge {
        table,
        owners: HashMap::new(),
        paths: 0,
    };
    for ing in &served {
        super::annotations::check_keys(ing, &mut warnings);
        if canary::is_canary(ing) {
            continue;
        }
        canary::check_not_canary(ing, &mut warnings);
        let Some(settings) = Settings::parse(
            ing,
            &secrets,
            &mut backends,
            &merge.table.globals,
            &mut warnings,
        ) else {
            continue;
        };
        let spec = ing.spec.as_ref().expect("Settings::parse checked the spec");
        if let Some(auth) = auth_tls::parse(ing, &secrets, &mut warnings) {
            auth_tls::assign(ing, &auth, &mut merge.table.client_auth, &mut warnings);
        }
        if let Some(default) = &spec.default_backend {
            spec_default_backend(
                ing,
                default,
                &settings,
                &mut backends,
                &mut merge.table,
                &mut warnings,
            );
        }
        implicit_roots.offer(ing, &settings, &mut backends);
        add_rules(
            ing,
            &settings,
            &tls.tls_hosts,
            &mut backends,
            &mut canary_plan,
            &hosts_plan,
            &mut merge,
            &mut warnings,
        );
    }
    let Merge {
        mut table, paths, ..
    } = merge;

    hosts_plan.insert_redirects(&mut table);
    passthrough::assign(&passthrough_hosts, &mut table, &mut warnings);
    auth_tls::cover_aliases(&hosts_plan, &mut table.client_auth);
    canary_plan.finish(&mut table.default_backend, &mut warnings);
    if let Some(dbs) = &config.default_backend_service {
        default_backend_service(dbs, &mut backends, &mut table, &mut warnings);
    }
    implicit_roots.insert(&mut table);

    table.certs = tls.certs;
    table.cert_expiry = tls.expiry;
    table.stats = TableStats {
        ingresses: served.len(),
        hosts: table.hosts.host_count(),
        paths,
        backends: backends.backend_count(),
    };
    let served = served
        .iter()
        .map(|i| {
            (
                namespace_of(&i.metadata).to_string(),
                i.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    Translation {
        table,
        warnings,
        ignored_ingresses,
        served,
    }
}

/// Class selection: the Ingresses this controller serves, oldest first (namespace/name
/// breaks ties, so the result is deterministic), and how many belong to another class.
fn select<'s>(snapshot: &'s Snapshot, config: &TranslateConfig) -> (Vec<&'s Ingress>, usize) {
    let classes: HashMap<&str, &IngressClass> = snapshot
        .ingress_classes
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c.as_ref())))
        .collect();
    let mut served: Vec<&Ingress> = snapshot
        .ingresses
        .iter()
        .map(Arc::as_ref)
        .filter(|i| is_served(i, &classes, config))
        .collect();
    let ignored = snapshot.ingresses.len() - served.len();
    served.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    (served, ignored)
}

/// Regex hosts (COMPAT §3): one Ingress with use-regex or rewrite-target on a host
/// turns every path of that host into a regex.
fn mark_regex_hosts(primaries: &[&Ingress], table: &mut RoutingTable) {
    for ing in primaries {
        let regex = raw_annotation(ing, "use-regex").is_some_and(|v| parse_bool(v) == Some(true))
            || raw_annotation(ing, "rewrite-target").is_some_and(|v| !v.trim().is_empty());
        if !regex {
            continue;
        }
        for rule in ing.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
            let host = rule.host.as_deref();
            if host.is_none_or(|h| validate_host(h).is_ok()) {
                table
                    .hosts
                    .entry(&HostPattern::parse(host))
                    .set_regex_mode();
            }
        }
    }
}

/// What one Ingress's annotations say for all of its routes.
struct Settings {
    policy: Arc<Policy>,
    path_options: policy::PathOptions,
    service_upstream: bool,
    ssl_redirect: bool,
    force_ssl_redirect: bool,
    protocol: UpstreamProtocol,
    balancing: balance::Balancing,
    upstream_tls: Option<Arc<UpstreamTls>>,
    /// Verification asked for that cannot be honoured: the paths answer 503.
    tls_broken: Option<String>,
}

impl Settings {
    /// Parses the annotations (in a fixed order, so warnings come out in it). `None`
    /// for an Ingress without a spec, after the policy annotations have warned.
    fn parse(
        ing: &Ingress,
        secrets: &HashMap<(&str, &str), &Secret>,
        backends: &mut BackendIndex,
        globals: &GlobalSettings,
        warnings: &mut Vec<Warning>,
    ) -> Option<Settings> {
        let (mut policy, path_options) = policy::parse(ing, warnings);
        auth::parse(ing, secrets, &mut policy, warnings);
        policy.cors = cors::parse(ing, warnings);
        policy.limits = limits::parse(ing, warnings);
        hosts::apply_policy(ing, &mut policy, warnings);
        policy.default_backend = upstream::default_backend(ing, backends, warnings);
        let service_upstream = upstream::service_upstream(ing, warnings);
        custom_errors::parse(ing, &mut policy, warnings);
        ing.spec.as_ref()?;
        let ssl_redirect = bool_annotation(ing, "ssl-redirect", globals.ssl_redirect, warnings);
        let force_ssl_redirect = bool_annotation(ing, "force-ssl-redirect", false, warnings);
        let protocol = backend_protocol(ing, warnings);
        let balancing = balance::parse(ing, &globals.load_balance, globals.next_upstream, warnings);
        let mut upstream_tls = None;
        let mut tls_broken = None;
        if matches!(protocol, UpstreamProtocol::Https | UpstreamProtocol::Grpcs) {
            match proxy_ssl::parse(ing, secrets, warnings) {
                ProxySsl::Default => {}
                ProxySsl::Settings(t) => upstream_tls = Some(t),
                ProxySsl::Broken(why) => {
                    policy.denied.get_or_insert_with(|| why.clone().into());
                    tls_broken = Some(why);
                }
            }
        }
        Some(Settings {
            policy: Arc::new(policy),
            path_options,
            service_upstream,
            ssl_redirect,
            force_ssl_redirect,
            protocol,
            balancing,
            upstream_tls,
            tls_broken,
        })
    }

    /// The backend for `svc`/`port`; 503 when verification cannot be honoured, never
    /// unverified.
    fn resolve(
        &self,
        ing: &Ingress,
        backends: &mut BackendIndex,
        svc: &str,
        port: Option<&ServiceBackendPort>,
        warnings: &mut Vec<Warning>,
    ) -> Arc<Backend> {
        match &self.tls_broken {
            Some(why) => Arc::new(Backend::new(
                namespace_of(&ing.metadata),
                svc,
                &port_label(port),
                Endpoints::Unavailable {
                    reason: why.clone(),
                },
            )),
            None => upstream::fallback(
                upstream::resolve(backends, ing, self.service_upstream, svc, port, warnings),
                &self.policy,
            ),
        }
    }

    /// The affinity cookie for a route at `path` (unless `session-cookie-path` is set).
    fn affinity_for(&self, path: &str) -> Option<Arc<CookieAffinity>> {
        self.balancing.affinity.as_ref().map(|a| {
            let mut a = a.clone();
            if !self.balancing.cookie_path_set {
                a.path = path.into();
            }
            Arc::new(a)
        })
    }

    /// A route with these settings; the caller fills in what differs per rule.
    fn route(&self, ing: &Ingress, backend: Arc<Backend>, path: &str) -> Route {
        Route {
            backend,
            ingress_namespace: namespace_of(&ing.metadata).into(),
            ingress_name: ing.metadata.name.as_deref().unwrap_or("").into(),
            host: "".into(),
            path: "".into(),
            kind: PathKind::Prefix,
            ssl_redirect: false,
            protocol: self.protocol,
            upstream_tls: self.upstream_tls.clone(),
            lb: self.balancing.lb.clone(),
            affinity: self.affinity_for(path),
            next_upstream: self.balancing.next_upstream,
            policy: self.policy.clone(),
            rewrite: None,
            canary: None,
            is_canary: false,
            implicit_root: false,
        }
    }
}

/// `spec.defaultBackend`: the oldest Ingress that sets one wins; later ones warn.
fn spec_default_backend(
    ing: &Ingress,
    default: &IngressBackend,
    settings: &Settings,
    backends: &mut BackendIndex,
    table: &mut RoutingTable,
    warnings: &mut Vec<Warning>,
) {
    let (ns, name) = (
        namespace_of(&ing.metadata),
        ing.metadata.name.as_deref().unwrap_or(""),
    );
    if table.default_backend.is_some() {
        warnings.push(Warning::new(
            ObjKind::Ingress,
            ns,
            name,
            "DefaultBackendConflict",
            "spec.defaultBackend ignored: an older Ingress already sets the default backend".into(),
        ));
    } else if let Some(svc) = service_of(default, (ObjKind::Ingress, ns, name), warnings) {
        let backend = settings.resolve(ing, backends, &svc.name, svc.port.as_ref(), warnings);
        table.default_backend = Some(Arc::new(settings.route(ing, backend, "/")));
    }
}

/// The table being merged into, and which Ingress holds each host+path+kind (to name
/// it in conflict warnings).
struct Merge {
    table: RoutingTable,
    owners: HashMap<canary::RuleKey, String>,
    paths: usize,
}

/// Path validation and precedence: each valid rule path of `ing` becomes a route on its
/// host, unless an older Ingress already holds the same host, kind and canonical path
/// (`PathConflict`). Hosts with TLS redirect plain HTTP; canaries and aliases attach.
#[allow(clippy::too_many_arguments)]
fn add_rules(
    ing: &Ingress,
    settings: &Settings,
    tls_hosts: &std::collections::HashSet<String>,
    backends: &mut BackendIndex,
    canary_plan: &mut canary::Plan,
    hosts_plan: &hosts::HostPlan,
    merge: &mut Merge,
    warnings: &mut Vec<Warning>,
) {
    let ns = namespace_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let me = (ObjKind::Ingress, ns, name);
    let table = &mut merge.table;
    for rule in ing.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
        let host = rule.host.as_deref();
        if let Some(h) = host {
            if let Err(why) = validate_host(h) {
                warnings.push(Warning::new(
                    ObjKind::Ingress,
                    ns,
                    name,
                    "InvalidHost",
                    format!("rule for host {h:?} ignored: {why}"),
                ));
                continue;
            }
        }
        let pattern = HostPattern::parse(host);
        for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
            let raw_path = p.path.as_deref().unwrap_or("");
            let kind = match validate_path(&p.path_type, raw_path) {
                Ok(k) => k,
                Err(why) => {
                    warnings.push(Warning::new(
                        ObjKind::Ingress,
                        ns,
                        name,
                        "InvalidPath",
                        format!(
                            "path {raw_path:?} ({}) on host {pattern} ignored: {why}",
                            p.path_type
                        ),
                    ));
                    continue;
                }
            };
            let path = if raw_path.is_empty() { "/" } else { raw_path };
            let Some(svc) = service_of(&p.backend, me, warnings) else {
                continue;
            };
            let owner_key = (pattern.clone(), kind, canonical(kind, path));
            if let Some(owner) = merge.owners.get(&owner_key) {
                if owner != &format!("{ns}/{name}") {
                    warnings.push(Warning::new(
                        ObjKind::Ingress,
                        ns,
                        name,
                        "PathConflict",
                        format!("path {path} ({kind:?}) on host {pattern} is already served by older Ingress {owner}; this rule is ignored"),
                    ));
                }
                continue;
            }
            let backend = settings.resolve(ing, backends, &svc.name, svc.port.as_ref(), warnings);
            let host_has_tls = match &pattern {
                HostPattern::Any => false,
                p => tls_hosts.contains(&p.to_string()),
            };
            let regex_host = table.hosts.get(&pattern).is_some_and(|m| m.is_regex_mode());
            let balancing = &settings.balancing;
            if regex_host && balancing.affinity.is_some() && !balancing.cookie_path_set {
                warnings.push(Warning::new(
                    ObjKind::Ingress,
                    ns,
                    name,
                    "InvalidAnnotation",
                    format!("nginx.ingress.kubernetes.io/session-cookie-path is required when host {pattern} matches paths as regexes; the affinity cookie uses Path=/"),
                ));
            }
            let rewrite = match &settings.path_options.rewrite_target {
                None => None,
                Some(target) => match crate::routing::policy::path_regex(path) {
                    Ok(regex) => Some(Arc::new(Rewrite {
                        regex,
                        target: target.clone(),
                    })),
                    Err(why) => {
                        warnings.push(Warning::new(
                            ObjKind::Ingress,
                            ns,
                            name,
                            "InvalidPath",
                            format!("path {path:?} on host {pattern} ignored: rewrite-target needs it as a regex, and it is {why}"),
                        ));
                        continue;
                    }
                },
            };
            // A regex is no cookie path: ingress-nginx requires session-cookie-path
            // there; without it the cookie gets `/`.
            let mut route = settings.route(ing, backend, if regex_host { "/" } else { path });
            route.host = match &pattern {
                HostPattern::Any => "".into(),
                p => p.to_string().into(),
            };
            route.path = path.into();
            route.kind = kind;
            route.ssl_redirect =
                settings.force_ssl_redirect || (settings.ssl_redirect && host_has_tls);
            route.rewrite = rewrite;
            let route = canary_plan.attach(&owner_key, Arc::new(route), warnings);
            match table.hosts.entry(&pattern).insert(kind, path, route.clone()) {
                Ok(()) => {
                    hosts_plan.insert_aliases(
                        table,
                        &pattern,
                        kind,
                        path,
                        &route,
                        settings.force_ssl_redirect,
                    );
                    merge.owners.insert(owner_key, format!("{ns}/{name}"));
                    merge.paths += 1;
                }
                Err(InsertError::BadRegex(why)) => warnings.push(Warning::new(
                    ObjKind::Ingress,
                    ns,
                    name,
                    "InvalidPath",
                    format!("path {path:?} on host {pattern} ignored: the host matches paths as regexes (use-regex or rewrite-target) and this one is {why}"),
                )),
                Err(InsertError::Conflict) => {}
            }
        }
    }
}

/// `--default-backend-service`: the error backend of custom-http-errors, and the
/// default backend when no Ingress sets one.
fn default_backend_service(
    dbs: &crate::config::ObjectRef,
    backends: &mut BackendIndex,
    table: &mut RoutingTable,
    warnings: &mut Vec<Warning>,
) {
    let port = backends.first_port(&dbs.namespace, &dbs.name);
    let who = (ObjKind::Service, dbs.namespace.as_str(), dbs.name.as_str());
    let backend = backends.resolve(&dbs.namespace, &dbs.name, port.as_ref(), who, warnings);
    table.error_backend = Some(backend.clone());
    if table.default_backend.is_none() {
        let mut route = Route::new(backend, "", "", "", PathKind::Prefix);
        route.lb = table.globals.load_balance.clone();
        route.next_upstream = table.globals.next_upstream;
        table.default_backend = Some(Arc::new(route));
    }
}

/// `backend-protocol`: HTTP (default), HTTPS, GRPC, GRPCS, AUTO_HTTP. Anything else
/// (FCGI, garbage) warns and keeps HTTP.
fn backend_protocol(ing: &Ingress, warnings: &mut Vec<Warning>) -> UpstreamProtocol {
    let parse = |raw: &str| match raw.trim().to_ascii_uppercase().as_str() {
        "HTTP" | "AUTO_HTTP" => Ok(UpstreamProtocol::Http),
        "HTTPS" => Ok(UpstreamProtocol::Https),
        "GRPC" => Ok(UpstreamProtocol::Grpc),
        "GRPCS" => Ok(UpstreamProtocol::Grpcs),
        _ => Err("supported (HTTP, HTTPS, GRPC, GRPCS, AUTO_HTTP)"),
    };
    annotation(
        ing,
        "backend-protocol",
        UpstreamProtocol::Http,
        parse,
        warnings,
    )
}

mod implicit_root;
#[cfg(test)]
mod tests;
