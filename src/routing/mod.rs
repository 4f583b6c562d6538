//! The data-plane view of routing: immutable tables and how requests match them.
//!
//! Owns host/path matching and the published table. Must not import `kube` or
//! `k8s_openapi`: translation converts Kubernetes objects into these types.

pub mod auth;
pub mod balance;
pub mod canary;
pub mod certs;
pub mod client_auth;
pub mod cookie;
pub mod cors;
pub mod limits;
pub mod matcher;
pub mod policy;
pub mod table;
pub mod template;

pub use balance::{
    AffinityMode, CookieAffinity, HashKey, LbPolicy, NextUpstream, RetryStatuses, Ring,
};
pub use canary::{Canary, CanaryRules};
pub use certs::CertTable;
pub use client_auth::{ClientAuth, ClientAuthTable, Trust, VerifyClient};
pub use cors::{AllowOrigin, Cors, OriginPattern};
pub use limits::{Rate, RateLimits};
pub use matcher::{normalize_host, normalize_path, BadPath, HostPattern, PathKind};
pub use policy::{CidrSet, Policy, Redirect, Rewrite};
pub use table::{
    Backend, Endpoints, GlobalSettings, Match, Route, RoutingTable, SharedTable, TableStats,
    UpstreamProtocol, UpstreamTls,
};
pub use template::{
    Dialect, Error as TemplateError, HeaderTemplate, LogEscape, LogFormat, RequestVars, Template,
    Var,
};
