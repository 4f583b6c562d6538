//! The `sluice` binary: flags, logging, and wiring a source, the shared table, the
//! Pingora proxy, the admin listener and the shutdown handling (`sluice::drain`:
//! SIGTERM drains, SIGQUIT hands the sockets to a process started with `--upgrade`)
//! together. Holds no logic of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use pingora::listeners::{Listeners, TcpSocketOptions};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{ExecutionPhase, RunArgs, Server};
use pingora::services::listening::Service;
use tokio::sync::broadcast;
use tracing::info;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::prelude::*;

use sluice::config::{ObjectRef, TranslateConfig, DEFAULT_CONTROLLER_CLASS};
use sluice::drain::{Draining, Lifecycle, MAX_UPGRADE_WORKERS};
use sluice::proxy::balance::Balancer;
use sluice::proxy::conncap::ConnectionCap;
use sluice::proxy::proxy_protocol::ProxyProtocolApp;
use sluice::proxy::tls::fake_certificate;
use sluice::proxy::tls::terminate::TlsTerminate;
use sluice::proxy::{ProxyOptions, SluiceProxy};
use sluice::publish::{FirstTable, Rebuilder};
use sluice::routing::SharedTable;
use sluice::source::kube as kube_source;
use sluice::source::manifests::{self, ManifestDir};
use sluice::status::{AddressSource, ElectionConfig, StatusConfig};

// glibc's malloc showed up at ~7% of proxy CPU in profiles (many small per-request
// allocations inside Pingora); mimalloc's thread-local free lists make that cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Kubernetes Ingress controller and L7 reverse proxy that reads ingress-nginx manifests.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Standalone mode: serve the manifests (*.yaml, *.yml, multi-document) under DIR,
    /// reloading on every change. No cluster needed. Without it sluice runs in
    /// controller mode and watches the API server.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,

    /// Controller mode: kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or the
    /// in-cluster ServiceAccount).
    #[arg(long, value_name = "PATH", env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Controller mode: only watch this namespace (repeatable; default: all namespaces).
    #[arg(long, value_name = "NS")]
    watch_namespace: Vec<String>,

    /// Controller mode: copy this LoadBalancer Service's (namespace/name) address into
    /// the status of every served Ingress.
    #[arg(long, value_name = "NS/NAME")]
    publish_service: Option<ObjectRef>,

    /// Controller mode: publish these addresses (IPs or host names, comma-separated) in
    /// Ingress status instead of the publish Service's.
    #[arg(long, value_name = "ADDR[,ADDR]", value_delimiter = ',')]
    publish_status_address: Vec<String>,

    /// Controller mode: name of the coordination.k8s.io Lease used for leader election
    /// (in $POD_NAMESPACE, default `default`). Only the leader writes status and Events.
    #[arg(long, default_value = "sluice-leader")]
    election_id: String,

    /// Controller mode: seconds a leader's Lease stays valid without renewal.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    election_lease_duration: u64,

    /// Plain HTTP listener (HTTP/1.1 and h2c).
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    http_listen: SocketAddr,

    /// HTTPS listener (TLS 1.2/1.3, ALPN h2 and http/1.1; certificates from TLS Secrets
    /// by SNI).
    #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR")]
    https_listen: SocketAddr,

    /// TLS Secret (namespace/name) served when no Ingress certificate matches the SNI name,
    /// instead of the generated fake certificate.
    #[arg(long, value_name = "NS/NAME")]
    default_ssl_certificate: Option<ObjectRef>,

    /// Admin listener: /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:10254", value_name = "ADDR")]
    admin_listen: SocketAddr,

    /// Serve Ingresses whose deprecated `kubernetes.io/ingress.class` annotation has this value.
    #[arg(long, default_value = "nginx")]
    ingress_class: String,

    /// Serve Ingresses whose IngressClass has this `spec.controller`
    /// (set `k8s.io/ingress-nginx` to take over ingress-nginx's classes).
    #[arg(long, default_value = DEFAULT_CONTROLLER_CLASS)]
    controller_class: String,

    /// Also serve Ingresses that name no class at all.
    #[arg(long)]
    watch_ingress_without_class: bool,

    /// Service (namespace/name) that answers requests no rule matches, instead of the 404 page.
    #[arg(long, value_name = "NS/NAME")]
    default_backend_service: Option<ObjectRef>,

    /// ConfigMap (namespace/name) with ingress-nginx global options; in standalone mode it
    /// is read from the manifests directory.
    #[arg(long, value_name = "NS/NAME")]
    configmap: Option<ObjectRef>,

    /// Honour the `ssl-passthrough` annotation: the HTTPS port reads each ClientHello's
    /// SNI and splices a passthrough host's connection raw to its backend (as
    /// ingress-nginx's flag; off by default, and then the annotation warns).
    #[arg(long)]
    enable_ssl_passthrough: bool,

    /// Proxy worker threads (default: the number of CPUs).
    #[arg(long, env = "SLUICE_WORKERS")]
    workers: Option<usize>,

    /// Do not write access-log lines, whatever the ConfigMap's `enable-access-log` says.
    #[arg(long)]
    no_access_log: bool,

    /// Secret for `affinity-mode: persistent` cookie values (an HMAC key; any string).
    /// Give every replica the same one so a cookie issued by one is honoured by all and
    /// across restarts; unset, a random key is drawn at start.
    #[arg(long, env = "SLUICE_SESSION_COOKIE_KEY", hide_env_values = true)]
    session_cookie_key: Option<String>,

    /// Controller log format on stderr: `text`, or `json` (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Log verbosity as ingress-nginx's klog `--v`: 0 warnings, 1-2 info (default),
    /// 3-4 debug, 5+ trace. `RUST_LOG` overrides it.
    #[arg(long, value_name = "N")]
    v: Option<u8>,

    /// Seconds the listeners keep accepting after SIGTERM, with /readyz already 503, so
    /// load balancers and kube-proxy stop sending first (ingress-nginx's
    /// `--shutdown-grace-period`). Requests in flight then get the ConfigMap's
    /// `worker-shutdown-timeout` (default 240s) to finish.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    shutdown_grace_period: u64,

    /// Take the listening sockets over from a running sluice (started with the same
    /// flags), which hands them over on SIGQUIT through --upgrade-sock.
    #[arg(long)]
    upgrade: bool,

    /// Unix socket through which the listening sockets pass on a SIGQUIT upgrade.
    #[arg(long, default_value = "/tmp/sluice-upgrade.sock", value_name = "PATH")]
    upgrade_sock: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check Ingress manifests offline (files, directories, - for stdin): what sluice
    /// will do with each ingress-nginx annotation, and problems in the specs. Exit code
    /// 0 clean, 1 warnings, 2 errors.
    Check(sluice::check::CheckArgs),
}

fn init_logging(format: LogFormat, verbosity: Option<u8>) {
    // Controller logs to stderr; access-log lines bare to stdout, as ingress-nginx does.
    // RUST_LOG wins; else `--v` as klog levels: 0 warn, 1-2 info, 3-4 debug, 5+ trace.
    let level = match verbosity {
        None | Some(1..=2) => "info",
        Some(0) => "warn",
        Some(3..=4) => "debug",
        Some(_) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // The layers' own filters carry the EnvFilter's level as their hint: without one the
    // subscriber's hint is TRACE, so `log`'s max level stays TRACE and every one of
    // Pingora's `debug!` records went through LogTracer on the request path (about 1%
    // of proxy CPU in a profile) only to be dropped.
    let hint = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    let not_access = filter_fn(|m| m.target() != "access_log").with_max_level_hint(hint);
    let controller = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(not_access)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_filter(not_access)
            .boxed(),
    };
    let access = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_filter(filter_fn(|m| m.target() == "access_log").with_max_level_hint(hint));
    // `init` also bridges Pingora's `log` records into tracing.
    tracing_subscriber::registry()
        .with(filter)
        .with(controller)
        .with(access)
        .init();
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// The listen address as written for worker `n`: the same socket address, spelled with
/// `n` leading zeros on the port (`127.0.0.1:08080`). Pingora keys its table of
/// listening fds by this string and hands an already-bound fd to every service that
/// names the same string; two services then own one fd and the second close at
/// shutdown aborts the process. A distinct spelling per worker gives each worker its
/// own SO_REUSEPORT socket (the kernel spreads connections across them), and the keys
/// stay stable across processes for Pingora's fd-passing upgrade.
fn worker_addr(addr: SocketAddr, n: usize) -> String {
    let zeros = "0".repeat(n);
    match addr {
        SocketAddr::V4(a) => format!("{}:{zeros}{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{zeros}{}", a.ip(), a.port()),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // One crypto provider for the process (aws-lc-rs, see routing::certs): the kube
    // client and Pingora's upstream connector take the process default, which rustls
    // cannot pick by itself with two providers compiled in.
    let _ = rustls::crypto::CryptoProvider::install_default(
        (*sluice::routing::certs::crypto_provider()).clone(),
    );
    if let Some(Command::Check(check)) = &args.command {
        std::process::exit(sluice::check::run(check));
    }
    init_logging(args.log_format, args.v);

    let translate_config = TranslateConfig {
        ingress_class: args.ingress_class.clone(),
        controller_class: args.controller_class.clone(),
        watch_without_class: args.watch_ingress_without_class,
        default_backend_service: args.default_backend_service.clone(),
        configmap: args.configmap.clone(),
        default_ssl_certificate: args.default_ssl_certificate.clone(),
        enable_ssl_passthrough: args.enable_ssl_passthrough,
    };
    let table = SharedTable::new();
    let rebuilder = Rebuilder::new(translate_config, table.clone());
    // Set by whichever source starts below.
    let first_table: Option<FirstTable>;

    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-control")
        .enable_all()
        .build()?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.upgrade && workers > MAX_UPGRADE_WORKERS {
        bail!("--upgrade works with at most {MAX_UPGRADE_WORKERS} workers (Pingora passes at most 32 listening sockets)");
    }
    // Pingora binds on its own threads and cannot report failure to us; check first,
    // with the same SO_REUSEPORT the workers use, so a taken port is a clear error.
    // Not when upgrading: the old process holds the ports, and a socket of our own
    // joining its SO_REUSEPORT group for a moment would take (and drop) connections.
    let prebind = if args.upgrade {
        &[][..]
    } else {
        &[args.http_listen, args.https_listen][..]
    };
    for &addr in prebind {
        control
            .block_on(async {
                let sock = match addr {
                    SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                    SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                };
                sock.set_reuseport(true)?;
                sock.bind(addr)?;
                sock.listen(1).map(drop)
            })
            .with_context(|| format!("cannot listen on {addr}"))?;
    }
    sluice::metrics::global().set_controller(
        &args.controller_class,
        &std::env::var("POD_NAMESPACE").unwrap_or_default(),
        &std::env::var("POD_NAME").unwrap_or_default(),
    );
    let admin_listener = control
        .block_on(sluice::admin::bind(args.admin_listen, args.upgrade))
        .with_context(|| format!("binding admin listener {}", args.admin_listen))?;
    let readiness = sluice::admin::Readiness::new();
    control.spawn(sluice::admin::serve(
        admin_listener,
        table.clone(),
        readiness.clone(),
    ));

    match &args.manifests {
        Some(dir) => {
            if !dir.is_dir() {
                bail!("--manifests {}: not a directory", dir.display());
            }
            let (sink, first) = rebuilder.spawn().context("starting the rebuild thread")?;
            first_table = Some(first);
            let mut manifest_dir = ManifestDir::new(dir);
            manifests::load_and_publish(&mut manifest_dir, &sink)
                .with_context(|| format!("reading {}", dir.display()))?;
            control.spawn(async move {
                if let Err(e) = manifests::watch(manifest_dir, sink).await {
                    tracing::error!(error = %e, "cannot watch manifests; serving the last table without reloads");
                }
            });
        }
        None => {
            let client = control
                .block_on(kube_client(args.kubeconfig.as_deref()))
                .context("connecting to the Kubernetes API server")?;
            let watch = kube_source::WatchConfig {
                namespaces: args.watch_namespace.clone(),
                configmap: args.configmap.clone(),
                publish_service: args.publish_service.clone(),
            };
            let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "sluice".into());
                format!("{host}-{}", std::process::id())
            });
            let status_config = StatusConfig {
                address: AddressSource {
                    publish_service: args.publish_service.clone(),
                    publish_status_address: args.publish_status_address.clone(),
                },
                election: ElectionConfig {
                    namespace: std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
                    name: args.election_id.clone(),
                    identity,
                    lease_duration: std::time::Duration::from_secs(
                        args.election_lease_duration.max(2),
                    ),
                },
            };
            let (status_tx, status_rx) = tokio::sync::watch::channel(None);
            let (leading_tx, _) = tokio::sync::watch::channel(false);
            let (sink, first) = rebuilder
                .with_status(status_tx)
                .spawn()
                .context("starting the rebuild thread")?;
            first_table = Some(first);
            control.spawn(sluice::status::run(
                client.clone(),
                status_config,
                status_rx,
                leading_tx,
            ));
            let changed = Arc::new(tokio::sync::Notify::new());
            let stores = {
                let _guard = control.enter();
                kube_source::Stores::start(&client, &watch, changed.clone())
            };
            control.spawn(kube_source::run(stores, changed, sink));
            info!("waiting for the initial list of every watched kind");
        }
    }
    // The listeners open only once the first complete table is published.
    if first_table.and_then(FirstTable::wait).is_none() {
        bail!("the control plane stopped before publishing a first routing table");
    }

    let conf = ServerConf {
        threads: 1,
        // ConfigMap upstream-keepalive-connections (per worker, as nginx's is), read
        // once: Pingora sizes its pool when the services are built.
        upstream_keepalive_pool_size: table.load().globals.upstream_keepalive_connections,
        work_stealing: false,
        // sluice::drain exits the process once the work in flight is done or
        // worker-shutdown-timeout (at most a day) has passed; Pingora's fixed wait
        // after closing the listeners is only a backstop.
        grace_period_seconds: Some(86_400 + 60),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: args.upgrade_sock.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: args.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    if args.upgrade {
        info!(sock = %args.upgrade_sock.display(), "waiting for the running sluice to hand over its listening sockets (send it SIGQUIT)");
    } else if workers > MAX_UPGRADE_WORKERS {
        tracing::warn!(workers, "more than {MAX_UPGRADE_WORKERS} workers: SIGQUIT upgrades are not possible (Pingora passes at most 32 listening sockets)");
    }
    // With --upgrade: receives the old process's sockets (or exits with status 1).
    server.bootstrap();
    if args.upgrade {
        info!("received the listening sockets");
    }
    // /readyz waits for the proxy port, probed once Pingora has started its services.
    let mut phase = server.watch_execution_phase();
    let running = async move {
        loop {
            match phase.recv().await {
                Ok(ExecutionPhase::Running) | Err(broadcast::error::RecvError::Closed) => break,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            }
        }
    };
    control.spawn(sluice::admin::watch_listener(
        args.http_listen,
        readiness.clone(),
        running,
    ));

    let fake_cert = fake_certificate()
        .map_err(|e| anyhow::anyhow!("generating the default certificate: {e}"))?;
    // One set of TLS configs for all workers: one session cache and one set of ticket
    // keys per config (the base one, and one per client-certificate policy).
    let tls_config = sluice::proxy::tls::server_config(table.clone(), fake_cert)
        .context("building the TLS configuration")?;
    let options = ProxyOptions {
        access_log: !args.no_access_log,
        balancer: Arc::new(Balancer::new(
            args.session_cookie_key.as_deref().map(str::as_bytes),
        )),
        ..ProxyOptions::default()
    };
    // One single-threaded proxy service per worker, all listening on the same address
    // with SO_REUSEPORT, so the kernel spreads connections and each connection lives on
    // one thread, as nginx workers do. Pingora's upstream pool spawns an idle-watch task
    // per released connection on a random runtime of its service; with one thread per
    // service that task stays local instead of waking another thread per request
    // (measured with e2e/bench/proxy.sh: about 2x throughput on 2 cores).
    // Each worker's app is wrapped in `Draining`, which counts its connections for the
    // shutdown drain.
    let first = table.load().globals.clone();
    for worker in 0..workers {
        let mut proxy = pingora::proxy::HttpProxy::new(
            SluiceProxy::new(table.clone(), options.clone()),
            server.configuration.clone(),
        );
        proxy.handle_init_modules();
        // HTTP/2 limits and the h2 idle timeout (issue 11), for both listeners, read
        // from the first table: Pingora clones these per connection from the service.
        proxy.server_options = Some(sluice::proxy::h2limits::server_options(&first));
        proxy.h2_options = Some(sluice::proxy::h2limits::h2_options(&first));
        // ConfigMap use-proxy-protocol: PROXY headers are read before HTTP on plain
        // connections and before the handshake on TLS ones, which TlsTerminate runs with
        // the shared config. Draining (outermost) counts every accepted connection for
        // the shutdown drain.
        let mut http = Service::with_listeners(
            format!("sluice-http-{worker}"),
            Listeners::new(),
            // max-worker-connections: this worker's cap, inside the drain count.
            Draining::new(ConnectionCap::new(
                TlsTerminate::new(
                    ProxyProtocolApp::new(proxy, table.clone()),
                    tls_config.clone(),
                    args.https_listen.port(),
                    table.clone(),
                ),
                table.clone(),
                workers,
            )),
        );
        http.threads = Some(1);
        let mut sock = TcpSocketOptions::default();
        sock.so_reuseport = Some(true);
        http.add_tcp_with_settings(&worker_addr(args.http_listen, worker), sock.clone());
        http.add_tcp_with_settings(&worker_addr(args.https_listen, worker), sock);
        server.add_service(http);
    }

    // Access-log lines still buffered are written before a drain exits the process.
    sluice::drain::on_exit(sluice::proxy::logwriter::flush);
    let lifecycle = Lifecycle {
        readiness,
        table,
        grace_period: std::time::Duration::from_secs(args.shutdown_grace_period),
        can_upgrade: workers <= MAX_UPGRADE_WORKERS,
    };
    let phases = server.watch_execution_phase();
    let (shutdown_signal, shutdown) = {
        let _guard = control.enter();
        lifecycle
            .install(phases)
            .context("installing signal handlers")?
    };
    control.spawn(shutdown);

    info!(http = %args.http_listen, https = %args.https_listen, admin = %args.admin_listen, workers, "sluice listening");
    // Keep the control-plane runtime alive for the life of the process.
    let _control = Arc::new(control);
    server.run(RunArgs {
        shutdown_signal: Box::new(shutdown_signal),
    });
    // Only a fast shutdown (SIGINT) gets here: a drain exits from sluice::drain.
    sluice::proxy::logwriter::flush();
    std::process::exit(0);
}
