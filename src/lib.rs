//! sluice: a Kubernetes Ingress controller and L7 reverse proxy, a drop-in for ingress-nginx.
//!
//! Control plane (`source` → `publish` → `translate`) builds immutable routing tables; the data
//! plane (`proxy`) reads the current one through the single `ArcSwap` in `routing`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod check;
pub mod config;
pub mod drain;
pub mod metrics;
pub mod proxy;
pub mod publish;
pub mod routing;
pub mod source;
pub mod status;
pub mod translate;
