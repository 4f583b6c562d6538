//! Translation: a pure function from a [`Snapshot`] of Kubernetes objects to a
//! [`RoutingTable`] plus the warnings a user should see.
//!
//! Owns every decision about what the objects mean (COMPAT §1–§3). Does no I/O, reads
//! no clock and logs nothing: callers log, count and turn warnings into Events, and the
//! same code serves the controller, standalone mode and `sluice check`.
//! One bad object only ever drops itself (or its own bad paths) from the table.

pub mod annotations;
pub mod backends;
pub mod configmap;
pub mod error;
pub mod headers;
pub mod ingress;
mod input;
pub mod object;
pub mod tls;
pub mod values;

pub use error::{Error, Result};
pub use input::{referenced_config_maps, Snapshot};
pub use object::namespace_of;

use std::fmt;

use crate::config::TranslateConfig;
use crate::routing::RoutingTable;

/// The kind of object a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjKind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
}

impl fmt::Display for ObjKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Something wrong with an object: shown in logs, counted, and (in a cluster) an Event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Warning {
    pub kind: ObjKind,
    pub namespace: String,
    pub name: String,
    /// A stable CamelCase reason, as Kubernetes Events use.
    pub reason: &'static str,
    pub message: String,
}

impl Warning {
    pub fn new(
        kind: ObjKind,
        namespace: &str,
        name: &str,
        reason: &'static str,
        message: String,
    ) -> Warning {
        Warning {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason,
            message,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}: {}: {}",
            self.kind, self.namespace, self.name, self.reason, self.message
        )
    }
}

/// The result of one translation.
#[derive(Debug)]
pub struct Translation {
    pub table: RoutingTable,
    pub warnings: Vec<Warning>,
    /// Ingresses that belong to another class (not warned about: they are not ours).
    pub ignored_ingresses: usize,
    /// (namespace, name) of every Ingress this table serves (for status).
    pub served: Vec<(String, String)>,
}

/// Builds a complete routing table from a snapshot. Pure and deterministic.
pub fn translate(snapshot: &Snapshot, config: &TranslateConfig) -> Translation {
    ingress::build(snapshot, config)
}
