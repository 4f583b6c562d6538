//! Producing consistent [`Snapshot`]s of the objects translation reads.
//!
//! Owns getting objects in (a directory of manifests, or the API server) and deciding
//! when a new snapshot is due (debounced). Must not build routes: every source hands
//! its snapshots to a [`SnapshotSink`], and the rebuild loop above it (`crate::publish`)
//! translates and publishes, so every source feeds the same translate → table → proxy
//! path. Knows nothing of status, metrics or the table.

pub mod kube;
pub mod manifests;

use std::time::Duration;

use crate::translate::Snapshot;

/// Where a source hands each complete snapshot. The receiver (the rebuild loop) may
/// take its time; a source never waits for a build.
pub type SnapshotSink = std::sync::mpsc::Sender<Snapshot>;

/// Why a source could not take an object in. Each is reported with its file and line
/// (standalone) and the object's last good version is kept.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A document of a kind sluice reads that does not decode as that kind.
    #[error("{0}")]
    Decode(#[from] serde_yaml_ng::Error),
    /// A document without `apiVersion` or `kind`.
    #[error("document has no apiVersion or kind")]
    NoKind,
}

/// `Result` with the source's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The current time for [`Snapshot::observed_at`].
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

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
