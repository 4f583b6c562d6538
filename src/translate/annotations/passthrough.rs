//! `ssl-passthrough` (with `--enable-ssl-passthrough`): which hosts have their TLS
//! connections spliced raw to a backend instead of terminated by sluice.
//!
//! As in ingress-nginx, the setting is host-level and needs the flag: without it every
//! Ingress that sets the annotation gets one `AnnotationNotApplied` warning and its
//! hosts are terminated as usual. With it, the oldest Ingress of a host that sets
//! `ssl-passthrough: "true"` makes the host a passthrough host; its target is the
//! backend of the host's `/` rule, whatever other paths say (ingress-nginx's
//! passthrough proxy has no paths to look at). Only exact host names can be matched by
//! SNI this way (ingress-nginx compares the SNI with each server name): a wildcard or
//! host-less rule warns. A passthrough host counts as a TLS host for `ssl-redirect`,
//! so plain HTTP to it gets the 308.

use std::collections::HashMap;

use k8s_openapi::api::networking::v1::Ingress;

use crate::routing::{HostPattern, RoutingTable};
use crate::translate::object::{bool_annotation, namespace_of, raw_annotation, validate_host};
use crate::translate::{ObjKind, Warning};

/// The annotation key (without the prefix).
pub const KEY: &str = "ssl-passthrough";

/// The hosts (lower-case) of the Ingresses in `primaries` (oldest first) that ask for
/// passthrough, each with the (namespace, name) of the oldest Ingress asking; empty,
/// with a warning per asking Ingress, when `enabled` is false.
pub type Hosts = HashMap<String, (String, String)>;

/// Collects [`Hosts`].
pub fn hosts(primaries: &[&Ingress], enabled: bool, warnings: &mut Vec<Warning>) -> Hosts {
    let mut out = Hosts::new();
    for ing in primaries {
        if raw_annotation(ing, KEY).is_none() || !bool_annotation(ing, KEY, false, warnings) {
            continue;
        }
        let ns = namespace_of(&ing.metadata);
        let name = ing.metadata.name.as_deref().unwrap_or("");
        if !enabled {
            warnings.push(Warning::new(
                ObjKind::Ingress,
                ns,
                name,
                "AnnotationNotApplied",
                "nginx.ingress.kubernetes.io/ssl-passthrough needs --enable-ssl-passthrough; ignored: sluice terminates TLS for these hosts".to_string(),
            ));
            continue;
        }
        for rule in ing.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
            match rule.host.as_deref() {
                // An invalid host is warned about by the rule itself.
                Some(h) if validate_host(h).is_err() => {}
                Some(h) if !h.starts_with("*.") => {
                    out.entry(h.to_ascii_lowercase())
                        .or_insert_with(|| (ns.to_string(), name.to_string()));
                }
                other => warnings.push(Warning::new(
                    ObjKind::Ingress,
                    ns,
                    name,
                    "AnnotationNotApplied",
                    format!(
                        "nginx.ingress.kubernetes.io/ssl-passthrough needs an exact host (matched by SNI); the rule for {} is terminated as usual",
                        other.unwrap_or("every host")
                    ),
                )),
            }
        }
    }
    out
}

/// Points each passthrough host at the backend of its `/` rule, once every rule is in
/// the table; a host without one warns and is terminated as usual.
pub fn assign(hosts: &Hosts, table: &mut RoutingTable, warnings: &mut Vec<Warning>) {
    let mut sorted: Vec<(&String, &(String, String))> = hosts.iter().collect();
    sorted.sort();
    for (host, (ns, name)) in sorted {
        let route = table
            .hosts
            .get(&HostPattern::parse(Some(host)))
            .and_then(|rules| rules.lookup("/"))
            .filter(|r| !r.implicit_root);
        match route {
            Some(r) => {
                let backend = r.backend.clone();
                table.passthrough.insert(host.as_str().into(), backend);
            }
            None => warnings.push(Warning::new(
                ObjKind::Ingress,
                ns,
                name,
                "AnnotationNotApplied",
                format!("nginx.ingress.kubernetes.io/ssl-passthrough on host {host}: the host has no rule for / to pass connections to; TLS is terminated as usual"),
            )),
        }
    }
}
