//! The rebuild loop: turns each [`Snapshot`] a source hands over into a published
//! routing table, and reports what came of it (log lines, metrics, the status writer's
//! input).
//!
//! Sits above `source`, `translate` and `status`: sources only produce snapshots and
//! know nothing of the table, metrics or status; this is the one writer of the
//! [`SharedTable`]. Builds run on a thread of their own ([`Rebuilder::spawn`]), not on
//! the control-plane runtime that serves `/readyz` and `/metrics` and drives the
//! watches, so a long build never stalls a probe or a watch. Snapshots that arrive
//! while a build runs are coalesced: translation is a pure function of the latest one.

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use crate::config::TranslateConfig;
use crate::routing::SharedTable;
use crate::source::{now_secs, SnapshotSink};
use crate::status::StatusInput;
use crate::translate::{translate, Snapshot, Warning};

/// Turns snapshots into published tables and reports what translation warned about.
/// The only writer of the [`SharedTable`].
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

    /// Runs this rebuilder on a thread of its own until every [`SnapshotSink`] is
    /// dropped. Returns the sink a source feeds and a [`FirstTable`] that tells when the
    /// first table is published.
    pub fn spawn(mut self) -> std::io::Result<(SnapshotSink, FirstTable)> {
        let (tx, rx) = mpsc::channel::<Snapshot>();
        let (first_tx, first_rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("sluice-rebuild".into())
            .spawn(move || {
                let mut first = Some(first_tx);
                while let Ok(mut snapshot) = rx.recv() {
                    // Only the latest snapshot matters; older ones queued behind a long
                    // build would only delay it.
                    while let Ok(newer) = rx.try_recv() {
                        snapshot = newer;
                    }
                    let generation = self.rebuild(&snapshot);
                    if let Some(tx) = first.take() {
                        let _ = tx.send(generation);
                    }
                }
            })?;
        Ok((tx, FirstTable(first_rx)))
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

/// Tells when the rebuild thread has published its first table.
#[derive(Debug)]
pub struct FirstTable(mpsc::Receiver<u64>);

impl FirstTable {
    /// Blocks until the first table is published and returns its generation; `None`
    /// if the rebuild thread ended first (every source stopped, or a build panicked).
    pub fn wait(self) -> Option<u64> {
        self.0.recv().ok()
    }
}
