//! The `sluice` binary: flags, logging, and wiring a source, the shared table, the
//! Pingora proxy and the admin listener together. Holds no logic of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use pingora::apps::HttpServerOptions;
use pingora::listeners::TcpSocketOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use tracing::info;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::prelude::*;

use sluice::config::{ObjectRef, TranslateConfig, DEFAULT_CONTROLLER_CLASS};
use sluice::proxy::{ProxyOptions, SluiceProxy};
use sluice::routing::SharedTable;
use sluice::source::manifests::{self, ManifestDir};
use sluice::source::Rebuilder;

// glibc's malloc showed up at ~7% of proxy CPU in profiles (many small per-request
// allocations inside Pingora); mimalloc's thread-local free lists make that cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Kubernetes Ingress controller and L7 reverse proxy that reads ingress-nginx manifests.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Standalone mode: serve the manifests (*.yaml, *.yml, multi-document) under DIR,
    /// reloading on every change. No cluster needed.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,

    /// Plain HTTP listener (HTTP/1.1 and h2c).
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    http_listen: SocketAddr,

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

    /// Proxy worker threads (default: the number of CPUs).
    #[arg(long, env = "SLUICE_WORKERS")]
    workers: Option<usize>,

    /// Do not write access-log lines (ingress-nginx's `enable-access-log: false`).
    #[arg(long)]
    no_access_log: bool,
}

fn init_logging() {
    // Controller logs to stderr; access-log lines bare to stdout, as ingress-nginx does.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let controller = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter_fn(|m| m.target() != "access_log"));
    let access = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_filter(filter_fn(|m| m.target() == "access_log"));
    // `init` also bridges Pingora's `log` records into tracing.
    tracing_subscriber::registry()
        .with(filter)
        .with(controller)
        .with(access)
        .init();
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging();

    let translate_config = TranslateConfig {
        ingress_class: args.ingress_class.clone(),
        controller_class: args.controller_class.clone(),
        watch_without_class: args.watch_ingress_without_class,
        default_backend_service: args.default_backend_service.clone(),
        configmap: args.configmap.clone(),
    };
    let table = SharedTable::new();
    let mut rebuilder = Rebuilder::new(translate_config, table.clone());

    let Some(dir) = args.manifests.clone() else {
        bail!("controller mode (watching the API server) is not implemented yet; run with --manifests DIR");
    };
    if !dir.is_dir() {
        bail!("--manifests {}: not a directory", dir.display());
    }
    // The first table is published before any listener opens.
    let mut manifest_dir = ManifestDir::new(&dir);
    manifests::load_and_publish(&mut manifest_dir, &mut rebuilder)
        .with_context(|| format!("reading {}", dir.display()))?;

    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-control")
        .enable_all()
        .build()?;
    // Pingora binds on its own threads and cannot report failure to us; check first,
    // with the same SO_REUSEPORT the workers use, so a taken port is a clear error.
    control
        .block_on(async {
            let sock = match args.http_listen {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            sock.set_reuseport(true)?;
            sock.bind(args.http_listen)?;
            sock.listen(1).map(drop)
        })
        .with_context(|| format!("cannot listen on {}", args.http_listen))?;
    let admin_listener = control
        .block_on(sluice::admin::bind(args.admin_listen))
        .with_context(|| format!("binding admin listener {}", args.admin_listen))?;
    let readiness = sluice::admin::Readiness::new();
    control.spawn(sluice::admin::serve(
        admin_listener,
        table.clone(),
        readiness.clone(),
    ));
    control.spawn(sluice::admin::watch_listener(args.http_listen, readiness));
    control.spawn(async move {
        if let Err(e) = manifests::watch(manifest_dir, rebuilder).await {
            tracing::error!(error = %e, "cannot watch manifests; serving the last table without reloads");
        }
    });

    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let conf = ServerConf {
        threads: 1,
        // ingress-nginx's upstream-keepalive-connections.
        upstream_keepalive_pool_size: 320,
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let options = ProxyOptions {
        access_log: !args.no_access_log,
        ..ProxyOptions::default()
    };
    // One single-threaded proxy service per worker, all listening on the same address
    // with SO_REUSEPORT, so the kernel spreads connections and each connection lives on
    // one thread, as nginx workers do. Pingora's upstream pool spawns an idle-watch task
    // per released connection on a random runtime of its service; with one thread per
    // service that task stays local instead of waking another thread per request
    // (measured with e2e/bench/proxy.sh: about 2x throughput on 2 cores).
    for worker in 0..workers {
        let mut http = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            SluiceProxy::new(table.clone(), options.clone()),
            &format!("sluice-http-{worker}"),
        );
        http.threads = Some(1);
        let mut server_options = HttpServerOptions::default();
        server_options.h2c = true;
        if let Some(app) = http.app_logic_mut() {
            app.server_options = Some(server_options);
        }
        let mut sock = TcpSocketOptions::default();
        sock.so_reuseport = Some(true);
        http.add_tcp_with_settings(&args.http_listen.to_string(), sock);
        server.add_service(http);
    }

    info!(http = %args.http_listen, admin = %args.admin_listen, workers, "sluice listening");
    // Keep the control-plane runtime alive for the life of the process.
    let _control = Arc::new(control);
    server.run_forever();
}
