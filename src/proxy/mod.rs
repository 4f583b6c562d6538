//! The data plane: a Pingora `ProxyHttp` that routes each request by the current table.
//!
//! Owns request handling: matching, endpoint choice, the headers sent upstream, the
//! error pages and the access log. Must not import `kube`/`k8s_openapi` or block. The
//! table is loaded once per request from its `ArcSwap`. The other shared state, and
//! when a request touches its locks:
//! - the balancer's per-endpoint map (`balance`): read-locked on EWMA routes, and on
//!   other routes only while some endpoint has a failure no answer has cleared yet
//!   (two atomic counters say so, so a healthy round-robin or hash route takes no lock);
//!   write-locked the first time an endpoint fails or is tracked;
//! - the ClientIP table (`balance`): one of 16 shards locked per request, only for
//!   Services with `sessionAffinity: ClientIP`;
//! - the rate-limit counters (`limits`): one shard locked per request, only on routes
//!   with `limit-*`.

pub mod accesslog;
pub mod auth;
pub mod balance;
pub mod buffering;
pub mod canary;
pub mod client_cert;
pub mod conncap;
pub mod context;
pub mod cors;
pub mod custom_errors;
pub mod errors;
pub mod framing;
pub mod h2limits;
pub mod headers;
pub mod limits;
pub mod logwriter;
pub mod policy;
pub mod proxy_protocol;
pub mod redirects;
pub mod respond;
pub mod retry;
pub mod service;
pub mod subrequest;
pub mod tls;

pub use service::{ProxyOptions, SluiceProxy};
