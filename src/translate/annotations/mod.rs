//! Typed parsers for `nginx.ingress.kubernetes.io/*` annotations, one module per family.
//!
//! Owns turning annotation text into route settings, once per translation: nothing here
//! runs per request. A bad value warns, naming the annotation and the value, and affects
//! only the Ingress that carries it.

pub mod balance;
pub mod proxy_ssl;
