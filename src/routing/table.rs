//! The immutable routing table and the one `ArcSwap` that publishes it.
//!
//! Owns the data the proxy reads per request: hosts → paths → [`Route`] → [`Backend`]
//! with its endpoint list, plus the generation number. A table is built whole by
//! translation and never mutated afterwards (apart from the round-robin cursor, an
//! atomic); the control plane swaps in a complete new one and the data plane loads
//! it once per request, so every phase of a request sees one generation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::balance::{CookieAffinity, LbPolicy, NextUpstream, Ring};
use super::matcher::{normalize_host, HostIndex, PathKind, PathMatcher};
use super::policy::{CidrSet, Policy, Rewrite};
use super::template::{HeaderTemplate, LogFormat};

/// Where a matched request goes and what it is reported as.
#[derive(Debug, Clone)]
pub struct Route {
    pub backend: Arc<Backend>,
    /// `namespace/name` of the Ingress that defined the rule (for logs and metrics).
    pub ingress_namespace: Box<str>,
    pub ingress_name: Box<str>,
    /// The rule's host as written (`*.x` included; empty for host-less rules and the
    /// default backend): a bounded metrics label, never the request's Host.
    pub host: Box<str>,
    /// The rule's path pattern as written (a bounded metrics label, never the request path).
    pub path: Box<str>,
    pub kind: PathKind,
    /// Plain-HTTP requests get a redirect to https (the host has TLS and `ssl-redirect`
    /// is on, or `force-ssl-redirect`).
    pub ssl_redirect: bool,
    /// How to talk to the backend (`backend-protocol`).
    pub protocol: UpstreamProtocol,
    /// TLS settings for HTTPS/GRPCS backends (`proxy-ssl-*`); `None` = ingress-nginx's
    /// default: no verification, no client certificate, the request host as SNI.
    pub upstream_tls: Option<Arc<UpstreamTls>>,
    /// `load-balance` / `upstream-hash-by`.
    pub lb: LbPolicy,
    /// `affinity: cookie`.
    pub affinity: Option<Arc<CookieAffinity>>,
    /// `proxy-next-upstream*`.
    pub next_upstream: NextUpstream,
    /// The Ingress's request policy (shared by its routes).
    pub policy: Arc<Policy>,
    /// `rewrite-target` for this rule.
    pub rewrite: Option<Arc<Rewrite>>,
    // Canary (`canary-*` annotations of another Ingress on the same host+path+pathType).
    /// The canary alternative, chosen per request by its rules (`proxy::canary`).
    pub canary: Option<Arc<super::canary::Canary>>,
    /// This route is itself a canary alternative (its affinity cookies are marked so a
    /// client stays on the canary, as ingress-nginx's per-backend cookie values do).
    pub is_canary: bool,
    /// ingress-nginx's implicit root location of a host without a `/` rule (COMPAT §7):
    /// the first Ingress's annotations apply, then the request is answered as an
    /// unmatched one (404), since no rule sends it anywhere.
    pub implicit_root: bool,
}

/// ingress-nginx's `proxy-ssl-*` annotations, parsed once during translation into the
/// types Pingora's connector takes, so connecting does no PEM or DER parsing.
pub struct UpstreamTls {
    /// `proxy-ssl-verify: on`: the backend's chain must lead to `ca` and name `name`.
    pub verify: bool,
    /// `proxy-ssl-name`: sent as SNI and, when verifying, the name checked.
    pub name: Option<Box<str>>,
    /// `proxy-ssl-server-name: off` with verification off: send no SNI (nginx's default).
    pub send_sni: bool,
    /// `ca.crt` of `proxy-ssl-secret`.
    pub ca: Option<Arc<pingora::protocols::tls::CaType>>,
    /// `tls.crt` + `tls.key` of `proxy-ssl-secret`: the client certificate (mTLS).
    pub client_cert: Option<Arc<pingora::utils::tls::CertKey>>,
    /// Keeps pooled connections made with one trust root apart from the others
    /// (Pingora's pool key covers verification flags and client certificate, not the CA).
    pub pool_group: u64,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("verify", &self.verify)
            .field("name", &self.name)
            .field("send_sni", &self.send_sni)
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

impl Route {
    /// A route with every per-route setting at its ingress-nginx default.
    pub fn new(
        backend: Arc<Backend>,
        ingress_namespace: &str,
        ingress_name: &str,
        path: &str,
        kind: PathKind,
    ) -> Route {
        Route {
            backend,
            ingress_namespace: ingress_namespace.into(),
            ingress_name: ingress_name.into(),
            host: "".into(),
            path: path.into(),
            kind,
            ssl_redirect: false,
            protocol: UpstreamProtocol::Http,
            upstream_tls: None,
            lb: LbPolicy::RoundRobin,
            affinity: None,
            next_upstream: NextUpstream::default(),
            policy: Arc::new(Policy::unrestricted()),
            rewrite: None,
            canary: None,
            is_canary: false,
            implicit_root: false,
        }
    }
}

/// ingress-nginx's `backend-protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over plain TCP (also `AUTO_HTTP`).
    #[default]
    Http,
    /// HTTP/1.1 over TLS, certificate not verified (`proxy-ssl-verify` off, as in ingress-nginx).
    Https,
    /// HTTP/2 over plain TCP (h2c prior knowledge), for gRPC.
    Grpc,
    /// HTTP/2 over TLS, for gRPC.
    Grpcs,
}

/// A Service port as a proxy target: its identity and its endpoints.
#[derive(Debug)]
pub struct Backend {
    pub namespace: Box<str>,
    pub service: Box<str>,
    /// The Service port as the Ingress named it: a number or a name.
    pub port: Box<str>,
    /// ingress-nginx's `$proxy_upstream_name`: `namespace-service-port`.
    pub upstream_name: Box<str>,
    pub endpoints: Endpoints,
    /// The Service's `sessionAffinity: ClientIP` timeout (`None`: no affinity).
    pub client_ip_affinity: Option<Duration>,
    /// Identifies the backend across table generations (hash of `upstream_name`).
    pub key: u64,
    cursor: AtomicUsize,
    /// Built on first use by a hashing route, once per generation.
    ring: OnceLock<Ring>,
    /// Per-endpoint cookie ids for `affinity-mode: persistent`, built on first use.
    pub persistent_ids: OnceLock<Vec<u64>>,
}

/// The addresses a backend can send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoints {
    /// Ready endpoints, de-duplicated and sorted. Empty means 503.
    Addrs(Vec<SocketAddr>),
    /// An ExternalName Service: resolved by DNS when connecting.
    External { host: String, port: u16 },
    /// No usable endpoint list at all (missing Service, unknown port): 503.
    Unavailable { reason: String },
}

impl Backend {
    pub fn new(namespace: &str, service: &str, port: &str, endpoints: Endpoints) -> Backend {
        Backend {
            namespace: namespace.into(),
            service: service.into(),
            port: port.into(),
            upstream_name: format!("{namespace}-{service}-{port}").into(),
            endpoints,
            client_ip_affinity: None,
            key: super::balance::stable_hash(format!("{namespace}-{service}-{port}").as_bytes()),
            // A random start: every table swap makes new backends, and starting each at
            // index 0 would favour the first endpoints whenever tables change often.
            cursor: AtomicUsize::new(fastrand::usize(..)),
            ring: OnceLock::new(),
            persistent_ids: OnceLock::new(),
        }
    }

    /// The ready addresses (empty for ExternalName and unavailable backends).
    pub fn addrs(&self) -> &[SocketAddr] {
        match &self.endpoints {
            Endpoints::Addrs(a) => a,
            _ => &[],
        }
    }

    /// The consistent-hash ring over [`Backend::addrs`].
    pub fn ring(&self) -> &Ring {
        self.ring.get_or_init(|| Ring::new(self.addrs()))
    }

    /// Advances the round-robin cursor.
    pub fn next_cursor(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether any request could be sent (false means the route answers 503).
    pub fn has_endpoints(&self) -> bool {
        match &self.endpoints {
            Endpoints::Addrs(a) => !a.is_empty(),
            Endpoints::External { .. } => true,
            Endpoints::Unavailable { .. } => false,
        }
    }
}

/// The rules of one host (or of the host-less set).
pub type HostRoutes = PathMatcher<Arc<Route>>;

/// One published generation of routing state.
#[derive(Debug, Default)]
pub struct RoutingTable {
    pub generation: u64,
    pub hosts: HostIndex<HostRoutes>,
    /// `spec.defaultBackend` of the oldest Ingress that sets one, else
    /// `--default-backend-service`; `None` means unmatched requests get 404.
    pub default_backend: Option<Arc<Route>>,
    /// `--default-backend-service` as the error backend of `custom-http-errors` (also
    /// when an Ingress's `spec.defaultBackend` serves unmatched requests instead).
    pub error_backend: Option<Arc<Backend>>,
    pub globals: GlobalSettings,
    /// Certificates by SNI name.
    pub certs: super::CertTable,
    /// (host, Secret namespace, Secret name, notAfter) of every served certificate, for
    /// the expiry metric.
    pub cert_expiry: Vec<(String, String, String, i64)>,
    /// Client-certificate authentication (`auth-tls-*`) by host.
    pub client_auth: super::ClientAuthTable,
    /// SSL passthrough (`ssl-passthrough` with `--enable-ssl-passthrough`): exact host
    /// name (lower-case) → the backend of the host's `/` rule. Connections whose SNI is
    /// one of these are spliced raw to the backend instead of being terminated; empty
    /// when the flag is off.
    pub passthrough: std::collections::HashMap<Box<str>, Arc<Backend>>,
    pub stats: TableStats,
}

/// Process-wide proxy settings from the controller ConfigMap (ingress-nginx defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalSettings {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    /// `ssl-redirect`: the default for Ingresses that do not set the annotation.
    pub ssl_redirect: bool,
    /// `http-redirect-code` for the redirect to https.
    pub http_redirect_code: u16,
    /// The `Strict-Transport-Security` value for HTTPS responses (`hsts: false` → none).
    pub hsts: Option<Box<str>>,
    /// `load-balance`: the policy of Ingresses that set none.
    pub load_balance: LbPolicy,
    /// `proxy-next-upstream*`: the retry rules of Ingresses that set none.
    pub next_upstream: NextUpstream,
    /// `upstream-keepalive-timeout`: how long an idle pooled upstream connection is kept.
    pub upstream_keepalive_timeout: Duration,
    /// `upstream-keepalive-connections`: idle upstream connections pooled per worker
    /// (read at start only).
    pub upstream_keepalive_connections: usize,
    /// `worker-shutdown-timeout`: how long in-flight requests and WebSockets may run
    /// once the listeners have closed at shutdown (the value in force when it starts).
    pub worker_shutdown_timeout: Duration,
    /// `limit-req-status-code`: the answer to a request over `limit-rps`/`-rpm`.
    pub limit_req_status: u16,
    /// `limit-conn-status-code`: the answer to a request over `limit-connections`.
    pub limit_conn_status: u16,

    // Forwarded headers, the client address, request ids, extra headers, the access
    // log and custom error pages (issue 6, items 2 and 6).
    /// `use-forwarded-headers`: X-Forwarded-For/-Proto/-Host/-Port from peers in
    /// `proxy_real_ip_cidr` are believed.
    pub use_forwarded_headers: bool,
    /// `compute-full-forwarded-for`: a believed forwarded-for list is passed on with
    /// the peer appended, instead of replaced by the client address.
    pub compute_full_forwarded_for: bool,
    /// `forwarded-for-header`: where a believed client address is read from.
    pub forwarded_for_header: http::HeaderName,
    /// `proxy-real-ip-cidr`: the peers believed about the client address (ingress-nginx's
    /// default `0.0.0.0/0`).
    pub proxy_real_ip_cidr: CidrSet,
    /// `enable-real-ip`: the client address from `forwarded_for_header`, without
    /// believing the other X-Forwarded-* headers.
    pub enable_real_ip: bool,
    /// `use-proxy-protocol`: every connection starts with a PROXY protocol v1/v2 header.
    pub use_proxy_protocol: bool,
    /// `ssl-session-cache`: TLS sessions are kept for resumption (shared by workers).
    pub ssl_session_cache: bool,
    /// `ssl-session-timeout`: how long a cached session can be resumed.
    pub ssl_session_timeout: Duration,
    /// `ssl-session-tickets`: stateless session tickets (ingress-nginx: off).
    pub ssl_session_tickets: bool,
    /// `generate-request-id`: a request without X-Request-ID gets a new one.
    pub generate_request_id: bool,
    /// `proxy-set-headers`: set on every request to a backend.
    pub proxy_set_headers: Arc<[HeaderTemplate]>,
    /// `add-headers`: set on every response to a client.
    pub add_headers: Arc<[HeaderTemplate]>,
    /// `enable-access-log`.
    pub access_log: bool,
    /// `log-format-upstream` with `log-format-escape-json` / `-none`.
    pub log_format: Arc<LogFormat>,
    /// `custom-http-errors`: statuses replaced by the error backend's page, for
    /// Ingresses without the annotation (sorted; empty: none).
    pub custom_http_errors: Box<[u16]>,

    // Request bodies and connection caps (hardening, issue 11).
    /// `proxy-request-buffering`: read the whole body before contacting the backend.
    pub request_buffering: bool,
    /// `client-body-buffer-size`: body bytes kept in memory, the rest in a temporary file.
    pub client_body_buffer_size: u64,
    /// `client-body-timeout`: the longest wait for each read of a request body (408).
    pub client_body_timeout: Duration,
    /// `max-worker-connections`: client connections per worker; more are closed at
    /// once. 0: derived from the open-file limit (see `proxy::conncap`).
    pub max_worker_connections: usize,
    // Request framing and client limits (hardening): see `proxy::framing`.
    /// `client-header-timeout`: the whole request head must arrive within it.
    pub client_header_timeout: Duration,
    /// `client-header-buffer-size`: the first buffer a request head is read into.
    pub client_header_buffer_size: usize,
    /// `large-client-header-buffers`: (number, size); the request line and each header
    /// line fit in one buffer, the whole head in all of them.
    pub large_client_header_buffers: (usize, usize),
    /// `keep-alive`: idle time a client connection is kept between requests (zero: no
    /// keep-alive).
    pub keep_alive: Duration,
    /// `keep-alive-requests`: requests served on one client connection.
    pub keep_alive_requests: u32,
    // HTTP/2 limits (hardening, issue 11): see proxy/h2limits.rs. All but the field
    // size are read once, from the first table (Pingora's h2 options are per service).
    /// `http2-max-concurrent-streams` (128): SETTINGS_MAX_CONCURRENT_STREAMS.
    pub http2_max_concurrent_streams: u32,
    /// `http2-max-header-size` (32k, nginx's 4 × 8k header buffers): the decoded header
    /// list, SETTINGS_MAX_HEADER_LIST_SIZE.
    pub http2_max_header_size: u32,
    /// `http2-max-field-size` (8k): one decoded header field; larger gets 400.
    pub http2_max_field_size: u32,
    /// `keep-alive` (75 s) as nginx applies it to h2: an h2 connection without open
    /// streams is closed after this long.
    pub http2_idle_timeout: Duration,
}

impl Default for GlobalSettings {
    fn default() -> Self {
        GlobalSettings {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            ssl_redirect: true,
            http_redirect_code: 308,
            hsts: Some("max-age=31536000; includeSubDomains".into()),
            load_balance: LbPolicy::RoundRobin,
            next_upstream: NextUpstream::default(),
            upstream_keepalive_timeout: Duration::from_secs(60),
            upstream_keepalive_connections: 320,
            worker_shutdown_timeout: Duration::from_secs(240),
            limit_req_status: 503,
            limit_conn_status: 503,
            use_forwarded_headers: false,
            compute_full_forwarded_for: false,
            forwarded_for_header: http::HeaderName::from_static("x-forwarded-for"),
            proxy_real_ip_cidr: CidrSet {
                nets: vec!["0.0.0.0/0".parse().expect("a CIDR")],
            },
            enable_real_ip: false,
            use_proxy_protocol: false,
            ssl_session_cache: true,
            ssl_session_timeout: Duration::from_secs(600),
            ssl_session_tickets: false,
            generate_request_id: true,
            proxy_set_headers: Arc::new([]),
            add_headers: Arc::new([]),
            access_log: true,
            log_format: Arc::new(LogFormat::default()),
            custom_http_errors: Box::new([]),
            request_buffering: true,
            client_body_buffer_size: 8 * 1024,
            client_body_timeout: Duration::from_secs(60),
            max_worker_connections: 16384,
            client_header_timeout: Duration::from_secs(60),
            client_header_buffer_size: 1024,
            large_client_header_buffers: (4, 8192),
            keep_alive: Duration::from_secs(75),
            keep_alive_requests: 1000,
            http2_max_concurrent_streams: 128,
            http2_max_header_size: 32 * 1024,
            http2_max_field_size: 8 * 1024,
            http2_idle_timeout: Duration::from_secs(75),
        }
    }
}

/// Counts describing a table, for logs and metrics.
#[derive(Debug, Default, Clone)]
pub struct TableStats {
    pub ingresses: usize,
    pub hosts: usize,
    pub paths: usize,
    pub backends: usize,
}

/// The outcome of matching one request.
#[derive(Debug, Clone, Copy)]
pub enum Match<'a> {
    /// A rule matched.
    Rule(&'a Arc<Route>),
    /// Nothing matched; the default backend takes it.
    Default(&'a Arc<Route>),
    /// Nothing matched and there is no default backend: 404.
    NotFound,
}

impl RoutingTable {
    /// Matches a request. `host` is the raw `Host`/`:authority`; `path` is already
    /// normalised by [`super::matcher::normalize_path`].
    pub fn lookup(&self, host: &str, path: &str) -> Match<'_> {
        let host = normalize_host(host);
        for rules in self.hosts.candidates(&host) {
            if let Some(route) = rules.lookup(path) {
                return Match::Rule(route);
            }
        }
        match &self.default_backend {
            Some(r) => Match::Default(r),
            None => Match::NotFound,
        }
    }
}

/// The single writer/many readers handle shared by control and data plane.
#[derive(Debug)]
pub struct SharedTable {
    current: ArcSwap<RoutingTable>,
    ready: AtomicBool,
    next_generation: AtomicU64,
    published_at: ArcSwap<Option<SystemTime>>,
}

impl Default for SharedTable {
    fn default() -> Self {
        SharedTable {
            current: ArcSwap::from_pointee(RoutingTable::default()),
            ready: AtomicBool::new(false),
            next_generation: AtomicU64::new(1),
            published_at: ArcSwap::from_pointee(None),
        }
    }
}

impl SharedTable {
    pub fn new() -> Arc<SharedTable> {
        Arc::new(SharedTable::default())
    }

    /// The current table; cheap (one atomic increment).
    pub fn load(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// Stamps `table` with the next generation and makes it current. Returns the generation.
    pub fn publish(&self, mut table: RoutingTable) -> u64 {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        table.generation = generation;
        self.current.store(Arc::new(table));
        self.published_at.store(Arc::new(Some(SystemTime::now())));
        self.ready.store(true, Ordering::Release);
        generation
    }

    /// True once the first complete table has been published.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn published_at(&self) -> Option<SystemTime> {
        **self.published_at.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::matcher::HostPattern;

    fn route(name: &str, addrs: Vec<SocketAddr>) -> Arc<Route> {
        Arc::new(Route::new(
            Arc::new(Backend::new("ns", name, "80", Endpoints::Addrs(addrs))),
            "ns",
            "ing",
            "/",
            PathKind::Prefix,
        ))
    }

    #[test]
    fn lookup_falls_through_host_levels_then_default() {
        let mut t = RoutingTable::default();
        t.hosts
            .entry(&HostPattern::parse(Some("a.example")))
            .insert(PathKind::Prefix, "/api", route("api", vec![]))
            .unwrap();
        t.hosts
            .entry(&HostPattern::parse(None))
            .insert(PathKind::Prefix, "/", route("any", vec![]))
            .unwrap();
        let svc = |m: Match<'_>| match m {
            Match::Rule(r) => r.backend.service.to_string(),
            Match::Default(_) => "default".into(),
            Match::NotFound => "404".into(),
        };
        assert_eq!(svc(t.lookup("a.example", "/api/x")), "api");
        assert_eq!(svc(t.lookup("a.example", "/other")), "any");
        assert_eq!(svc(t.lookup("b.example", "/")), "any");
        let mut t2 = RoutingTable::default();
        assert_eq!(svc(t2.lookup("x", "/")), "404");
        t2.default_backend = Some(route("d", vec![]));
        assert_eq!(svc(t2.lookup("x", "/")), "default");
    }

    #[test]
    fn publish_bumps_generation_and_readiness() {
        let s = SharedTable::new();
        assert!(!s.is_ready());
        let g1 = s.publish(RoutingTable::default());
        let g2 = s.publish(RoutingTable::default());
        assert!(s.is_ready());
        assert_eq!(g2, g1 + 1);
        assert_eq!(s.load().generation, g2);
    }
}
