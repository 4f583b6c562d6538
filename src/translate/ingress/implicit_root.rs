//! ingress-nginx's implicit root location (COMPAT §7): every server it generates has a
//! `/` location, and when no rule of the host is `/`, that location carries the
//! annotations of the first (oldest) Ingress that names the host and sends requests to
//! the default backend. Migrating manifests rely on it: with only `/original/(.*)` and
//! an absolute `rewrite-target`, `GET /original` still answers 302; auth and access
//! lists also cover the host's unmatched paths.
//!
//! sluice adds this route only where the first Ingress's annotations decide what an
//! unmatched request gets (redirects, `app-root`, access lists, authentication, a
//! denied location, an absolute `rewrite-target`). Elsewhere the Kubernetes spec's
//! host fall-through stays (README, "Behaviour worth knowing"). After its policy the
//! route goes where an unmatched request would: the Ingress's own `spec.defaultBackend`,
//! else the table's default backend, else 404.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use super::super::backends::BackendIndex;
use super::super::object::{namespace_of, service_of, validate_host};
use super::super::{ObjKind, Warning};
use super::Settings;
use crate::routing::{Backend, Endpoints, HostPattern, PathKind, Rewrite, Route, RoutingTable};

/// The candidate root route of each named host, from the first Ingress naming it.
#[derive(Default)]
pub(super) struct ImplicitRoots {
    seen: HashSet<HostPattern>,
    /// Routes still without a backend when the Ingress has no `spec.defaultBackend`.
    candidates: Vec<(HostPattern, Route, bool)>,
}

impl ImplicitRoots {
    /// Called for each primary Ingress, oldest first: claims the hosts it names first.
    pub(super) fn offer(
        &mut self,
        ing: &Ingress,
        settings: &Settings,
        backends: &mut BackendIndex,
    ) {
        let hosts: Vec<HostPattern> = ing
            .spec
            .iter()
            .flat_map(|s| s.rules.iter().flatten())
            .filter_map(|r| r.host.as_deref())
            .filter(|h| validate_host(h).is_ok())
            .map(|h| HostPattern::parse(Some(h)))
            .filter(|p| self.seen.insert(p.clone()))
            .collect();
        if hosts.is_empty() || !acts_on_unmatched(settings) {
            return;
        }
        let (ns, name) = (
            namespace_of(&ing.metadata),
            ing.metadata.name.as_deref().unwrap_or(""),
        );
        // spec_default_backend has warned about this backend already.
        let quiet: &mut Vec<Warning> = &mut Vec::new();
        let own_default = ing
            .spec
            .as_ref()
            .and_then(|s| s.default_backend.as_ref())
            .and_then(|d| service_of(d, (ObjKind::Ingress, ns, name), quiet))
            .map(|svc| settings.resolve(ing, backends, &svc.name, svc.port.as_ref(), quiet));
        let has_backend = own_default.is_some();
        let backend = own_default.unwrap_or_else(|| {
            Arc::new(Backend::new(
                ns,
                "",
                "",
                Endpoints::Unavailable {
                    reason: "implicit root location".into(),
                },
            ))
        });
        let mut route = settings.route(ing, backend, "/");
        route.path = "/".into();
        route.kind = PathKind::Prefix;
        route.rewrite = settings
            .path_options
            .rewrite_target
            .as_ref()
            .and_then(|target| {
                let rw = Rewrite {
                    regex: crate::routing::policy::path_regex("/").ok()?,
                    target: target.clone(),
                };
                rw.is_redirect().then(|| Arc::new(rw))
            });
        for pattern in hosts {
            let mut r = route.clone();
            r.host = pattern.to_string().into();
            self.candidates.push((pattern, r, has_backend));
        }
    }

    /// Adds the root route to each claimed host that has no `/` rule, once the table's
    /// default backend is settled.
    pub(super) fn insert(self, table: &mut RoutingTable) {
        for (pattern, mut route, has_backend) in self.candidates {
            if !has_backend {
                match &table.default_backend {
                    Some(d) => route.backend = d.backend.clone(),
                    None => route.implicit_root = true,
                }
            }
            // A `/` rule of any Ingress takes the place (Conflict): nothing to do.
            let _ = table
                .hosts
                .entry(&pattern)
                .insert(PathKind::Prefix, "/", Arc::new(route));
        }
    }
}

/// The annotations that change what an unmatched request of the host gets.
fn acts_on_unmatched(s: &Settings) -> bool {
    let p = &s.policy;
    p.redirect.is_some()
        || p.app_root.is_some()
        || p.allow.is_some()
        || p.deny.is_some()
        || p.basic_auth.is_some()
        || p.external_auth.is_some()
        || p.denied.is_some()
        || s.path_options
            .rewrite_target
            .as_deref()
            .is_some_and(|t| t.starts_with("http://") || t.starts_with("https://"))
}
