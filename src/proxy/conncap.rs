//! The per-worker cap on client connections (`max-worker-connections`, ingress-nginx's
//! ConfigMap key, default 16384), so that a flood of connections is shed instead of
//! running the process out of file descriptors.
//!
//! Owns counting each worker's open client connections (idle keep-alive and HTTP/2 ones
//! included) and refusing new ones over the cap: a connection over the cap is closed at
//! once, without reading from it. A 503 would first need its request head read and
//! parsed, which is the work (and the time holding the descriptor) shedding is meant to
//! avoid, and clients and load balancers retry a refused connection like a reset one.
//! nginx does the same when `worker_connections` are exhausted (it logs "worker
//! connections are not enough" and closes). The cap is read from the table for every new
//! connection, so a ConfigMap change applies to new connections at once.
//!
//! `0` means: derived from the open-file limit, as ingress-nginx derives it from
//! `max-worker-open-files`: the soft `RLIMIT_NOFILE` divided among the workers, halved
//! because every proxied connection may hold an upstream descriptor too. Unlike nginx,
//! which counts upstream connections against `worker_connections`, sluice counts client
//! connections only. TLS connections are counted from accept, and one over the cap is
//! closed before its handshake (sluice runs the handshake inside the app), so shedding
//! costs no signature.
//!
//! Pingora hands a keep-alive connection back to the app for each request
//! (`process_new` returns it and is called again at once, on the same task, with no
//! await in between); the wrapper recognises that hand-back by the descriptor it just
//! returned, so a connection is counted from accept to close, and a kept-alive
//! connection is never shed.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tracing::warn;

use crate::routing::SharedTable;

/// Wraps a worker's app with its connection cap.
pub struct ConnectionCap<A> {
    inner: Arc<A>,
    table: Arc<SharedTable>,
    workers: usize,
    open: AtomicUsize,
    /// The descriptor of the connection just handed back for its next request.
    handed_back: AtomicI64,
    /// Unix second of the last "over the cap" log line (one a second at most).
    last_log: AtomicU64,
}

impl<A> ConnectionCap<A> {
    pub fn new(inner: A, table: Arc<SharedTable>, workers: usize) -> ConnectionCap<A> {
        ConnectionCap {
            inner: Arc::new(inner),
            table,
            workers: workers.max(1),
            open: AtomicUsize::new(0),
            handed_back: AtomicI64::new(-1),
            last_log: AtomicU64::new(0),
        }
    }

    /// Client connections this worker serves now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn cap(&self) -> usize {
        match self.table.load().globals.max_worker_connections {
            0 => derived_cap(open_file_limit(), self.workers),
            n => n,
        }
    }
}

/// `max-worker-connections: 0`: half of each worker's share of the open-file limit
/// (at least 1024).
pub fn derived_cap(nofile: Option<u64>, workers: usize) -> usize {
    let share = nofile.unwrap_or(1024 * 1024) / workers.max(1) as u64 / 2;
    usize::try_from(share).unwrap_or(usize::MAX).max(1024)
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits`.
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok() // "unlimited" → None: the default above applies
}

/// Decrements the count when the connection is closed (not when handed back).
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionCap<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let fd = i64::from(stream.id());
        let reused = self
            .handed_back
            .compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !reused {
            let cap = self.cap();
            if self.open.load(Ordering::Acquire) >= cap {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if self.last_log.swap(now, Ordering::AcqRel) != now {
                    warn!(
                        cap,
                        "max-worker-connections reached: closing new connections"
                    );
                }
                return None; // dropping the stream closes it
            }
            self.open.fetch_add(1, Ordering::AcqRel);
        }
        // Counted until the connection closes: released unless handed back below.
        let guard = Open(&self.open);
        match self.inner.process_new(stream, shutdown).await {
            Some(s) => {
                std::mem::forget(guard);
                self.handed_back.store(i64::from(s.id()), Ordering::Release);
                Some(s)
            }
            None => None,
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_cap_shares_the_open_file_limit() {
        assert_eq!(derived_cap(Some(1 << 20), 2), 1 << 18);
        assert_eq!(derived_cap(Some(4096), 4), 1024, "never below 1024");
        assert_eq!(derived_cap(None, 1), 1 << 19);
    }

    #[test]
    fn reads_this_process_limit() {
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }
}
