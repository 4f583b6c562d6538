//! Static configuration that translation needs: which Ingresses are ours and the
//! process-wide fallbacks. Validated once at start (from flags) and never changed.

/// A `namespace/name` reference given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

/// A flag value that is not what the flag takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not `namespace/name`.
    #[error("expected namespace/name, got {0:?}")]
    ObjectRef(String),
}

/// `Result` with the config's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl std::str::FromStr for ObjectRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(ObjectRef {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(Error::ObjectRef(s.to_string())),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The controller class sluice claims IngressClasses for by default.
pub const DEFAULT_CONTROLLER_CLASS: &str = "sluice.dev/ingress-controller";

/// Inputs to translation besides the objects themselves.
#[derive(Debug, Clone)]
pub struct TranslateConfig {
    /// `--ingress-class`: the value of the deprecated `kubernetes.io/ingress.class` annotation we serve.
    pub ingress_class: String,
    /// `--controller-class`: IngressClasses whose `spec.controller` equals this are ours.
    pub controller_class: String,
    /// `--watch-ingress-without-class`.
    pub watch_without_class: bool,
    /// `--default-backend-service`: serves unmatched requests instead of the 404 page.
    pub default_backend_service: Option<ObjectRef>,
    /// `--configmap`: the ConfigMap holding ingress-nginx-style global options.
    pub configmap: Option<ObjectRef>,
    /// `--default-ssl-certificate`: a TLS Secret served when no other certificate fits.
    pub default_ssl_certificate: Option<ObjectRef>,
    /// `--enable-ssl-passthrough`: honour the `ssl-passthrough` annotation (off, as in
    /// ingress-nginx: without it the annotation warns and is ignored).
    pub enable_ssl_passthrough: bool,
}

impl Default for TranslateConfig {
    fn default() -> Self {
        TranslateConfig {
            ingress_class: "nginx".into(),
            controller_class: DEFAULT_CONTROLLER_CLASS.into(),
            watch_without_class: false,
            default_backend_service: None,
            configmap: None,
            default_ssl_certificate: None,
            enable_ssl_passthrough: false,
        }
    }
}
