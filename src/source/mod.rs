//! Producing consistent [`Snapshot`]s of the objects translation reads.
//!
//! Owns getting objects in (today: a directory of manifests; later: the API server)
//! and triggering rebuilds. Must not build routes: that is translation's job, so
//! every source feeds the same translate → table → proxy path.

pub mod kube;
pub mod manifests;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// Every object translation may look at, as one consistent view.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub ingresses: Vec<Arc<Ingress>>,
    pub ingress_classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    pub config_maps: Vec<Arc<ConfigMap>>,
    /// When the snapshot was taken (seconds since the epoch), so translation can judge
    /// certificate expiry without reading the clock. 0: unknown (nothing expires).
    pub observed_at: i64,
}

/// The current time for [`Snapshot::observed_at`].
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::TranslateConfig;
use crate::routing::SharedTable;
use crate::status::StatusInput;
use crate::translate::{translate, Warning};

/// Waits for a change announced on `changed`, then until `quiet` passes without another
/// or `max` has passed since the first: a burst of changes costs one rebuild, and a
/// steady stream cannot postpone one for longer than `max`.
pub async fn debounced(changed: &tokio::sync::Notify, quiet: Duration, max: Duration) {
    changed.notified().await;
    let deadline = tokio::time::Instant::now() + max;
    loop {
        tokio::select! {
            _ = changed.notified() => {
                if tokio::time::Instant::now() >= deadline { return; }
            }
            _ = tokio::time::sleep(quiet) => return,
        }
    }
}

/// Turns snapshots into published tables and reports what translation warned about.
/// Every source drives one of these; it is the only writer of the [`SharedTable`].
pub struct Rebuilder {
    config: TranslateConfig,
    table: Arc<SharedTable>,
    /// Warnings of the previous build: each is logged when it first appears, not on
    /// every rebuild while it persists.
    last_warnings: HashSet<Warning>,
    /// Controller mode: where the status writer picks up each rebuild.
    status: Option<tokio::sync::watch::Sender<Option<Arc<StatusInput>>>>,
}

impl Rebuilder {
    /// The generation currently published (0 before the first).
    pub fn generation(&self) -> u64 {
        if self.table.is_ready() {
            self.table.load().generation
        } else {
            0
        }
    }

    pub fn new(config: TranslateConfig, table: Arc<SharedTable>) -> Rebuilder {
        Rebuilder {
            config,
            table,
            last_warnings: HashSet::new(),
            status: None,
        }
    }

    /// Also hands every rebuild to the status writer.
    pub fn with_status(
        mut self,
        tx: tokio::sync::watch::Sender<Option<Arc<StatusInput>>>,
    ) -> Rebuilder {
        self.status = Some(tx);
        self
    }

    pub fn table(&self) -> &Arc<SharedTable> {
        &self.table
    }

    /// Translates and publishes; returns the new generation.
    pub fn rebuild(&mut self, snapshot: &Snapshot) -> u64 {
        let started = Instant::now();
        let t = translate(snapshot, &self.config);
        for w in &t.warnings {
            if !self.last_warnings.contains(w) {
                warn!(
                    kind = %w.kind,
                    namespace = %w.namespace,
                    name = %w.name,
                    reason = w.reason,
                    "{}", w.message
                );
            }
        }
        let stats = t.table.stats.clone();
        let metrics = crate::metrics::global();
        metrics.set_cert_expiry(&t.table.cert_expiry);
        let generation = self.table.publish(t.table);
        metrics.table_published(
            generation,
            started.elapsed().as_secs_f64(),
            now_secs() as f64,
        );
        metrics.set_warnings(t.warnings.iter().map(|w| w.reason));
        metrics.set_objects(&[
            ("Ingress", snapshot.ingresses.len()),
            ("IngressClass", snapshot.ingress_classes.len()),
            ("Service", snapshot.services.len()),
            ("EndpointSlice", snapshot.endpoint_slices.len()),
            ("Secret", snapshot.secrets.len()),
            ("ConfigMap", snapshot.config_maps.len()),
        ]);
        info!(
            generation,
            ingresses = stats.ingresses,
            ignored_ingresses = t.ignored_ingresses,
            hosts = stats.hosts,
            paths = stats.paths,
            backends = stats.backends,
            warnings = t.warnings.len(),
            build_ms = started.elapsed().as_secs_f64() * 1e3,
            "published routing table"
        );
        if let Some(tx) = &self.status {
            let _ = tx.send(Some(Arc::new(StatusInput {
                snapshot: snapshot.clone(),
                served: t.served.into_iter().collect(),
                warnings: t.warnings.clone(),
            })));
        }
        self.last_warnings = t.warnings.into_iter().collect();
        generation
    }
}
