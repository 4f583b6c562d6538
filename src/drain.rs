//! How the process ends: draining on SIGTERM, handing its listening sockets to a new
//! process on SIGQUIT, a fast exit on SIGINT.
//!
//! **SIGTERM** (a Pod being deleted): `/readyz` answers 503 at once; the listeners keep
//! accepting for `--shutdown-grace-period` seconds, so that load balancers and
//! kube-proxy see the endpoint go and stop sending; responses carry `Connection: close`
//! from the signal on, so keep-alive clients move to a new connection (which, once the
//! endpoint is gone, lands on another replica). Then the listeners close (Pingora's
//! graceful-shutdown broadcast, which also sends HTTP/2 clients GOAWAY), requests and WebSockets in flight get up to
//! `worker-shutdown-timeout` (ConfigMap, default 240 s, the value of the table in force
//! at the signal) to finish, and the process exits with status 0 as soon as none is
//! left, or when the timeout cuts the rest.
//!
//! **SIGQUIT** (a binary upgrade on a host): a process started with `--upgrade` and the
//! same flags waits on `--upgrade-sock` for the listening sockets; on SIGQUIT this one
//! sends them over it (Pingora's fd passing: the same kernel sockets, so no connection
//! is refused or lost in between), answers `/readyz` with 503, closes its admin
//! listener once the sockets are sent (both processes bind the admin port with
//! `SO_REUSEPORT`, so from then on every probe reaches the new process), keeps
//! accepting beside the new process for Pingora's fixed 5 s, then stops accepting and
//! drains as for SIGTERM.
//!
//! **SIGINT**: out at once: Pingora's fast shutdown, or during a drain an immediate
//! exit (status 0 in both cases).
//!
//! Pingora ends a graceful shutdown with a fixed sleep and then stops its runtimes,
//! which cancels whatever still runs; sluice counts the work in flight instead
//! ([`Drain`]: connections being served, via the [`Draining`] wrapper around each
//! worker's app, and request contexts, via [`InFlight`]) and exits the process itself
//! once that reaches zero. Pingora drops connections still waiting for a request head
//! when its listeners close; [`Draining`] holds that back for up to [`CLEANUP_DELAY`]
//! so a request already on its way is served.
//!
//! A TLS connection is counted from accept, its handshake included (sluice runs the
//! handshake in the app, `proxy::tls::terminate`), and an SSL-passthrough splice for
//! its whole life (it runs inside the same `process_new`). Limits: Pingora's fd passing carries at most 32 sockets, so the
//! upgrade works with at most [`MAX_UPGRADE_WORKERS`] workers (two sockets each).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{broadcast, oneshot};
use tracing::{error, info, warn};

use crate::admin::Readiness;
use crate::routing::SharedTable;

/// How long a worker lets connections that have not sent a (next) request head yet
/// live on after its listeners closed, before Pingora drops them.
pub const CLEANUP_DELAY: Duration = Duration::from_secs(1);

/// How long after the listeners close the process stays up even with nothing in
/// flight: a connection accepted at the last moment is counted only once its task runs.
pub const SETTLE: Duration = Duration::from_millis(500);

/// Pingora's fd transfer takes at most 32 descriptors; each worker has two sockets.
pub const MAX_UPGRADE_WORKERS: usize = 16;

/// Process-wide drain state: whether shutdown has begun, and the work in flight.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    connections: AtomicUsize,
    requests: AtomicUsize,
}

static GLOBAL: Drain = Drain::new();

impl Drain {
    pub const fn new() -> Drain {
        Drain {
            draining: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        }
    }

    /// The one the proxy reports to.
    pub fn global() -> &'static Drain {
        &GLOBAL
    }

    /// Shutdown has begun: no more keep-alive.
    pub fn start(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Client connections being served (idle keep-alive ones included).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Requests in flight (an h2 stream or an upgraded WebSocket counts as one).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    pub fn is_idle(&self) -> bool {
        self.connections() == 0 && self.requests() == 0
    }

    fn connection(&'static self) -> Counted {
        self.connections.fetch_add(1, Ordering::AcqRel);
        Counted(&self.connections)
    }

    fn request(&'static self) -> Counted {
        self.requests.fetch_add(1, Ordering::AcqRel);
        Counted(&self.requests)
    }
}

/// Whether shutdown has begun (the proxy then answers with `Connection: close`).
pub fn draining() -> bool {
    GLOBAL.is_draining()
}

/// Decrements its counter when dropped.
#[derive(Debug)]
struct Counted(&'static AtomicUsize);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One request in flight, for as long as its context lives (a field of the proxy's
/// per-request context).
#[derive(Debug)]
pub struct InFlight(#[allow(dead_code)] Counted);

impl InFlight {
    pub fn request() -> InFlight {
        InFlight(GLOBAL.request())
    }
}

/// Wraps a worker's Pingora app: counts the connections it serves, and delays
/// Pingora's cleanup at shutdown (which drops every connection waiting for a request
/// head) by up to [`CLEANUP_DELAY`].
pub struct Draining<A> {
    inner: Arc<A>,
}

impl<A> Draining<A> {
    pub fn new(inner: A) -> Draining<A> {
        Draining {
            inner: Arc::new(inner),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Draining<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _connection = GLOBAL.connection();
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        let until = Instant::now() + CLEANUP_DELAY;
        while GLOBAL.connections() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.inner.cleanup().await;
    }
}

/// Pingora's side of the signal handling: the shutdown [`Lifecycle`] decided on.
pub struct Decided(Mutex<Option<oneshot::Receiver<ShutdownSignal>>>);

#[async_trait]
impl ShutdownSignalWatch for Decided {
    async fn recv(&self) -> ShutdownSignal {
        let rx = self.0.lock().expect("not poisoned").take();
        match rx {
            Some(rx) => rx.await.unwrap_or(ShutdownSignal::FastShutdown),
            None => std::future::pending().await,
        }
    }
}

/// What the signal handling needs from the rest of the process.
pub struct Lifecycle {
    pub readiness: Arc<Readiness>,
    pub table: Arc<SharedTable>,
    /// `--shutdown-grace-period`.
    pub grace_period: Duration,
    /// Whether this process can hand its sockets over (see [`MAX_UPGRADE_WORKERS`]).
    pub can_upgrade: bool,
}

struct Signals {
    term: Signal,
    quit: Signal,
    int: Signal,
}

impl Lifecycle {
    /// Installs the signal handlers (call inside the control runtime) and returns the
    /// watch to hand to Pingora's `Server::run` plus the task that drives shutdown
    /// (spawn it on the control runtime). `phases` must be subscribed before
    /// `Server::run`.
    pub fn install(
        self,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> std::io::Result<(Decided, impl std::future::Future<Output = ()>)> {
        let signals = Signals {
            term: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
            int: signal(SignalKind::interrupt())?,
        };
        let (tx, rx) = oneshot::channel();
        Ok((Decided(Mutex::new(Some(rx))), self.run(signals, tx, phases)))
    }

    async fn run(
        self,
        mut s: Signals,
        tx: oneshot::Sender<ShutdownSignal>,
        mut phases: broadcast::Receiver<ExecutionPhase>,
    ) {
        let upgrade = loop {
            tokio::select! {
                _ = s.int.recv() => {
                    info!("SIGINT: fast shutdown");
                    let _ = tx.send(ShutdownSignal::FastShutdown);
                    return;
                }
                _ = s.term.recv() => break false,
                _ = s.quit.recv() => {
                    if self.can_upgrade {
                        break true;
                    }
                    error!(
                        max_workers = MAX_UPGRADE_WORKERS,
                        "SIGQUIT ignored: Pingora cannot pass this many listening sockets to a new process; still serving"
                    );
                }
            }
        };
        // The value in force when shutdown starts.
        let timeout = self.table.load().globals.worker_shutdown_timeout;
        self.readiness.set_draining();
        GLOBAL.start();
        if upgrade {
            info!(
                worker_shutdown_timeout = ?timeout,
                "SIGQUIT: handing the listening sockets to the new process; /readyz now 503"
            );
            let _ = tx.send(ShutdownSignal::GracefulUpgrade);
        } else {
            info!(
                grace_period = ?self.grace_period,
                worker_shutdown_timeout = ?timeout,
                "SIGTERM: draining; /readyz now 503, listeners accept until the grace period ends"
            );
            tokio::select! {
                _ = tokio::time::sleep(self.grace_period) => {}
                _ = s.int.recv() => {
                    info!("SIGINT during the grace period: fast shutdown");
                    let _ = tx.send(ShutdownSignal::FastShutdown);
                    return;
                }
            }
            info!("grace period over: closing the listeners");
            let _ = tx.send(ShutdownSignal::GracefulTerminate);
        }
        // Wait until Pingora has told its listeners to stop.
        loop {
            tokio::select! {
                phase = phases.recv() => match phase {
                    Ok(ExecutionPhase::GracefulUpgradeCloseTimeout) => {
                        info!("listening sockets handed over; closing the admin listener, the new process answers probes");
                        self.readiness.close_admin();
                    }
                    Ok(ExecutionPhase::ShutdownStarted) | Err(broadcast::error::RecvError::Closed) => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                },
                _ = s.int.recv() => exit_now("SIGINT"),
            }
        }
        let closed = Instant::now();
        info!(
            connections = GLOBAL.connections(),
            requests = GLOBAL.requests(),
            worker_shutdown_timeout = ?timeout,
            "listeners closed; waiting for requests in flight"
        );
        loop {
            let waited = closed.elapsed();
            if GLOBAL.is_idle() && waited >= SETTLE.min(timeout) {
                info!(after = ?waited, "drained: nothing in flight, exiting");
                exit_process();
            }
            if waited >= timeout {
                warn!(
                    connections = GLOBAL.connections(),
                    requests = GLOBAL.requests(),
                    "worker-shutdown-timeout reached: exiting with work still in flight"
                );
                exit_process();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = s.int.recv() => exit_now("SIGINT"),
            }
        }
    }
}

// Flushing what must not be lost (the access log) before the process exits: the proxy
// registers it here, below which the drain cannot import.
static EXIT_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Runs `hook` just before the drain (or a SIGINT during it) exits the process.
pub fn on_exit(hook: fn()) {
    let _ = EXIT_HOOK.set(hook);
}

fn exit_process() -> ! {
    if let Some(hook) = EXIT_HOOK.get() {
        hook();
    }
    std::process::exit(0)
}

fn exit_now(why: &str) -> ! {
    warn!(
        connections = GLOBAL.connections(),
        requests = GLOBAL.requests(),
        "{why} during the drain: exiting now"
    );
    exit_process()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_guards() {
        static D: Drain = Drain::new();
        assert!(D.is_idle());
        let c = D.connection();
        let r1 = D.request();
        let r2 = D.request();
        assert_eq!((D.connections(), D.requests()), (1, 2));
        drop(r1);
        drop(c);
        assert!(!D.is_idle());
        drop(r2);
        assert!(D.is_idle());
        assert!(!D.is_draining());
        D.start();
        assert!(D.is_draining());
    }
}
