//! Why translation rejected a value or an object: one error type for the translate
//! module (DESIGN §3.5), so callers can tell a bad path from a bad Secret. Each is
//! turned into a [`super::Warning`] by its caller, which adds the object and the
//! reason code; the text here is the detail that warning shows.

/// What went wrong, with the detail for the warning's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A path the API server would reject (or an unknown `pathType`).
    #[error("{0}")]
    InvalidPath(String),
    /// A host that is not a DNS name (optionally with one leading `*.` label).
    #[error("{0}")]
    InvalidHost(String),
    /// An annotation or ConfigMap value that does not parse.
    #[error("{0}")]
    InvalidValue(String),
    /// A Service that cannot serve as asked (no such port, a bad clusterIP).
    #[error("{0}")]
    Service(String),
    /// A Secret whose certificate, key or CA is missing or does not parse.
    #[error("{0}")]
    Secret(String),
    /// An auth setting that cannot be honoured: its paths answer 503 (fails closed).
    #[error("{0}")]
    Denied(String),
}

/// `Result` with translation's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
