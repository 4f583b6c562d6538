//! The data plane: a Pingora `ProxyHttp` that routes each request by the current table.
//!
//! Owns request handling: matching, endpoint choice, the headers sent upstream, the
//! error pages and the access log. Must not import `kube`/`k8s_openapi`, block, or take
//! locks on the request path: the only shared state is the table, loaded once per
//! request from its `ArcSwap`.

pub mod accesslog;
pub mod errors;
pub mod headers;
pub mod service;
pub mod tls;

pub use service::{ProxyOptions, SluiceProxy};
