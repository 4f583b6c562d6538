//! `sluice-echo`: a small HTTP echo backend for demos, end-to-end tests and benchmarks.
//!
//! It serves HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge) on every `--listen`
//! address and answers every method and path with a JSON description of the request it
//! saw, tagged with its `--name` (also sent as the `x-backend` response header), so a
//! client can tell which backend a proxy picked and what the proxy forwarded.
//!
//! Query parameters (may be combined):
//! - `sleep_ms=N`: wait N milliseconds before answering;
//! - `status=N`: answer with status code N (the body is unchanged);
//! - `size=N`: answer with N bytes of `x` as `text/plain` instead of the JSON (benchmarks);
//! - `echo_body=1`: stream the request body back as `application/octet-stream`.
//! - `fail=N` (with `key=K`, default the path): the first N requests with that key
//!   answer `status` (503 when not given), later ones answer 200. Every answer carries
//!   `x-attempt: n`, the request's number for its key in this process (for testing
//!   `proxy-next-upstream` retries).
//!
//! A request carrying `Upgrade: websocket` is upgraded to a WebSocket: the server first
//! sends the text message `hello from NAME`, then echoes every text and binary message.
//!
//! With `--tls` every address serves TLS instead (a self-signed certificate generated at
//! start, ALPN h2 and http/1.1), for testing `backend-protocol: HTTPS/GRPCS`; the JSON
//! then says `"tls": true`, with `"sni"` (the server name the client sent, or null).
//! `--cert`/`--key` serve a given PEM chain and key instead; `--client-ca` requires a
//! client certificate signed by that CA and reports its CN as `"client_cn"` (for testing
//! `proxy-ssl-verify` and `proxy-ssl-secret`).
//!
//! Usage: `sluice-echo --listen 127.0.0.1:9001 [--listen ...] --name alpha [--tls
//! [--cert PEM --key PEM] [--client-ca PEM]] [--threads N]`.
//! For each address, once bound, `sluice-echo NAME listening on ADDR` is printed on stdout.
//!
//! Errors: a bad query parameter is a typed [`BadQuery`], because it is an answer (400,
//! its text as the body). Everything else fails at start (an address, a PEM file, the
//! TLS config) and ends the process with one printed line, which no caller matches on:
//! that is `anyhow`, as in sluice's own `main`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Demo/test/benchmark HTTP backend that echoes the request it received.
#[derive(Parser, Debug)]
#[command(name = "sluice-echo", version, about)]
struct Args {
    /// Address to listen on (`IP:PORT` or `HOST:PORT`; port 0 picks a free port).
    /// May be given several times; all addresses answer with the same name.
    #[arg(long, required = true, value_name = "ADDR")]
    listen: Vec<String>,

    /// Backend name, reported in the `x-backend` header and the JSON body.
    #[arg(long)]
    name: String,

    /// Serve TLS (a self-signed certificate generated at start; ALPN h2 and http/1.1).
    #[arg(long)]
    tls: bool,

    /// With `--tls`: serve this PEM certificate chain instead of a generated one.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<std::path::PathBuf>,

    /// With `--tls`: the private key of `--cert`.
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<std::path::PathBuf>,

    /// With `--tls`: require a client certificate signed by this CA.
    #[arg(long, value_name = "PEM")]
    client_ca: Option<std::path::PathBuf>,

    /// Number of runtime worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

/// 64 KiB of `x`: `size=N` bodies are served as slices of this, without allocating.
static XS: [u8; 65536] = [b'x'; 65536];

struct Ctx {
    name: String,
    name_header: HeaderValue,
    /// `--tls`: connections are TLS (self-signed certificate, ALPN h2 and http/1.1).
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// `fail=N`: requests seen per key.
    attempts: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// What one connection's handshake revealed.
struct Conn {
    peer: SocketAddr,
    sni: Option<String>,
    client_cn: Option<String>,
}

/// Response body: a single chunk, `N` bytes of `x`, or the request body streamed back.
enum EchoBody {
    Full(Option<Bytes>),
    Repeat(u64),
    Stream(Incoming),
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            EchoBody::Full(chunk) => Poll::Ready(chunk.take().map(|b| Ok(Frame::data(b)))),
            EchoBody::Repeat(remaining) => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let n = (*remaining).min(XS.len() as u64) as usize;
                *remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&XS[..n])))))
            }
            EchoBody::Stream(incoming) => Pin::new(incoming).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EchoBody::Full(chunk) => chunk.is_none(),
            EchoBody::Repeat(remaining) => *remaining == 0,
            EchoBody::Stream(incoming) => incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EchoBody::Full(chunk) => {
                SizeHint::with_exact(chunk.as_ref().map_or(0, |b| b.len() as u64))
            }
            EchoBody::Repeat(remaining) => SizeHint::with_exact(*remaining),
            EchoBody::Stream(incoming) => incoming.size_hint(),
        }
    }
}

/// Parsed query parameters that change the answer.
#[derive(Default)]
struct Opts {
    sleep_ms: u64,
    status: Option<StatusCode>,
    size: Option<u64>,
    echo_body: bool,
    fail: Option<u64>,
    key: Option<String>,
}

/// A query parameter of the known set whose value does not parse: answered with 400.
#[derive(Debug, thiserror::Error)]
#[error("bad query parameter {key}={value:?}")]
struct BadQuery {
    key: String,
    value: String,
}

fn parse_opts(query: Option<&str>) -> Result<Opts, BadQuery> {
    let mut opts = Opts::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || BadQuery {
            key: key.into(),
            value: value.into(),
        };
        match key {
            "sleep_ms" => opts.sleep_ms = value.parse().map_err(|_| bad())?,
            "status" => {
                let code: u16 = value.parse().map_err(|_| bad())?;
                opts.status = Some(StatusCode::from_u16(code).map_err(|_| bad())?);
            }
            "size" => opts.size = Some(value.parse().map_err(|_| bad())?),
            "echo_body" => opts.echo_body = !matches!(value, "0" | "false"),
            "fail" => opts.fail = Some(value.parse().map_err(|_| bad())?),
            "key" => opts.key = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(opts)
}

fn response(
    ctx: &Ctx,
    status: StatusCode,
    content_type: &'static str,
    body: EchoBody,
) -> Response<EchoBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert("x-backend", ctx.name_header.clone());
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    req.headers().get_all(header::UPGRADE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
    })
}

async fn handle(
    mut req: Request<Incoming>,
    ctx: Arc<Ctx>,
    conn: Arc<Conn>,
) -> Result<Response<EchoBody>, Infallible> {
    if is_websocket_upgrade(&req) {
        return Ok(websocket(&mut req, ctx));
    }
    let opts = match parse_opts(req.uri().query()) {
        Ok(opts) => opts,
        Err(bad) => {
            let body = EchoBody::Full(Some(Bytes::from(format!("{bad}\n"))));
            return Ok(response(&ctx, StatusCode::BAD_REQUEST, "text/plain", body));
        }
    };
    if opts.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(opts.sleep_ms)).await;
    }
    let mut status = opts.status.unwrap_or(StatusCode::OK);
    let mut attempt = None;
    if let Some(fail) = opts.fail {
        let key = opts
            .key
            .clone()
            .unwrap_or_else(|| req.uri().path().to_string());
        let mut seen = ctx.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let n = seen.entry(key).or_insert(0);
        *n += 1;
        attempt = Some(*n);
        status = if *n <= fail {
            opts.status.unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            StatusCode::OK
        };
    }
    let mut resp = handle_with(req, &ctx, &conn, &opts, status).await;
    if let Some(n) = attempt {
        resp.headers_mut().insert("x-attempt", HeaderValue::from(n));
    }
    Ok(resp)
}

async fn handle_with(
    req: Request<Incoming>,
    ctx: &Ctx,
    conn: &Conn,
    opts: &Opts,
    status: StatusCode,
) -> Response<EchoBody> {
    if opts.echo_body {
        let body = EchoBody::Stream(req.into_body());
        return response(ctx, status, "application/octet-stream", body);
    }
    if let Some(size) = opts.size {
        // Drain the request body (if any) so the connection stays reusable.
        let mut body = req.into_body();
        if !body.is_end_stream() {
            while let Some(Ok(_)) = body.frame().await {}
        }
        return response(ctx, status, "text/plain", EchoBody::Repeat(size));
    }

    let (parts, mut body) = req.into_parts();
    let mut body_len: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_len += data.len() as u64;
                }
            }
            Err(_) => break,
        }
    }

    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let joined = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_owned(), joined.into());
    }
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let doc = serde_json::json!({
        "backend": ctx.name,
        "method": parts.method.as_str(),
        "uri": uri,
        "version": format!("{:?}", parts.version),
        "tls": ctx.tls.is_some(),
        "headers": headers,
        "body_len": body_len,
        "peer": conn.peer.to_string(),
        "sni": conn.sni,
        "client_cn": conn.client_cn,
    });
    let mut out = serde_json::to_vec(&doc).expect("JSON serialization cannot fail");
    out.push(b'\n');
    response(
        ctx,
        status,
        "application/json",
        EchoBody::Full(Some(Bytes::from(out))),
    )
}

/// Answers a WebSocket upgrade with 101 and spawns the echo session on the upgraded stream.
fn websocket(req: &mut Request<Incoming>, ctx: Arc<Ctx>) -> Response<EchoBody> {
    let Some(key) = req.headers().get("sec-websocket-key") else {
        let body = EchoBody::Full(Some(Bytes::from_static(b"missing Sec-WebSocket-Key\n")));
        return response(&ctx, StatusCode::BAD_REQUEST, "text/plain", body);
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    let name = ctx.name.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                eprintln!("sluice-echo {name}: websocket upgrade failed: {err}");
                return;
            }
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if ws
            .send(Message::text(format!("hello from {name}")))
            .await
            .is_err()
        {
            return;
        }
        // Pings are answered and close handshakes completed by tungstenite itself while reading.
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });

    let mut resp = Response::new(EchoBody::Full(None));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    headers.insert("x-backend", ctx.name_header.clone());
    resp
}

async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr}"))?
        .collect();
    let mut last_err = anyhow!("{addr} resolved to no address");
    for sa in resolved {
        let socket = if sa.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        let attempt = socket.and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(sa)?;
            s.listen(4096)
        });
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e) => last_err = anyhow::Error::new(e).context(format!("cannot listen on {sa}")),
        }
    }
    Err(last_err)
}

async fn serve(listener: TcpListener, ctx: Arc<Ctx>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Typically EMFILE under load: back off briefly instead of spinning.
                eprintln!("sluice-echo {}: accept failed: {err}", ctx.name);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            match ctx.tls.clone() {
                Some(acceptor) => {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let (_, session) = tls.get_ref();
                    let conn = Arc::new(Conn {
                        peer,
                        sni: session.server_name().map(str::to_owned),
                        client_cn: session
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| common_name(c.as_ref())),
                    });
                    let svc = service_fn(move |req| handle(req, ctx.clone(), conn.clone()));
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .await;
                }
                None => {
                    let conn = Arc::new(Conn {
                        peer,
                        sni: None,
                        client_cn: None,
                    });
                    let svc = service_fn(move |req| handle(req, ctx.clone(), conn.clone()));
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                }
            }
        });
    }
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(cn)
}

fn read_pem(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| path.display().to_string())
}

/// The TLS acceptor: `--cert`/`--key`, else a fresh self-signed certificate for
/// `localhost` (backends behind `backend-protocol: HTTPS/GRPCS` are not verified by
/// default, as in ingress-nginx); with `--client-ca`, client certificates are required.
fn tls_acceptor(args: &Args) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key) = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            let chain = CertificateDer::pem_slice_iter(&read_pem(c)?)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| c.display().to_string())?;
            let key = PrivateKeyDer::from_pem_slice(&read_pem(k)?)
                .with_context(|| k.display().to_string())?;
            (chain, key)
        }
        _ => {
            let key = rcgen::KeyPair::generate()?;
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
                .and_then(|p| p.self_signed(&key))?;
            let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
            (vec![cert.der().clone()], der)
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &args.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read_pem(ca)?) {
                roots
                    .add(c.with_context(|| ca.display().to_string())?)
                    .with_context(|| ca.display().to_string())?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let name_header = HeaderValue::from_str(&args.name)
        .map_err(|_| anyhow!("--name {:?} is not a valid header value", args.name))?;
    let tls = if args.tls {
        Some(tls_acceptor(&args)?)
    } else {
        None
    };
    let ctx = Arc::new(Ctx {
        name: args.name.clone(),
        name_header,
        tls,
        attempts: Default::default(),
    });

    // Bind everything first so a bad address fails the whole process before serving.
    let mut listeners = Vec::with_capacity(args.listen.len());
    for addr in &args.listen {
        let listener = bind(addr).await?;
        let local = listener.local_addr().with_context(|| addr.clone())?;
        listeners.push((listener, local));
    }
    let mut tasks = Vec::with_capacity(listeners.len());
    for (listener, local) in listeners {
        println!("sluice-echo {} listening on {local}", ctx.name);
        tasks.push(tokio::spawn(serve(listener, ctx.clone())));
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("sluice-echo: cannot start runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the context and its cause on one line ("cannot listen on A: why").
            eprintln!("sluice-echo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
