//! The crate's error type. Every variant maps to a condition reason and a metric label.
use crate::gateway::GatewayError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The resource is missing something it needs: it was not persisted or has no namespace.
    #[error("invalid resource: {0}")]
    Invalid(String),
    /// The operator cannot go on: its metrics address is taken, or this replica lost the leader lease.
    #[error("{0}")]
    Fatal(String),
}

impl Error {
    /// The finalizer patch lost a race with another pass that already made the same change (the cache was a step
    /// behind): nothing failed, so nothing is reported.
    pub fn is_finalizer_race(&self) -> bool {
        use kube::runtime::finalizer::Error as F;
        match self {
            Self::Finalizer(inner) => match inner.as_ref() {
                F::AddFinalizer(kube::Error::Api(e)) | F::RemoveFinalizer(kube::Error::Api(e)) => {
                    e.code == 409 || e.code == 422
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// The `Ready`/`Synced` reason this error is reported with.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Gateway(e) if e.is_unavailable() => "GatewayUnavailable",
            Self::Gateway(GatewayError::AdminKey(_)) => "AdminKeyUnavailable",
            Self::Gateway(_) => "GatewayError",
            Self::Kube(_) => "KubernetesError",
            Self::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "KubernetesError",
            },
            Self::Invalid(_) => "Invalid",
            Self::Fatal(_) => "Fatal",
        }
    }

    /// A low-cardinality label for metrics.
    pub fn metric_label(&self) -> String {
        match self {
            Self::Gateway(e) => format!("gateway_{}", e.metric_label()),
            Self::Kube(_) => "kube".into(),
            Self::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer".into(),
            },
            Self::Invalid(_) => "invalid".into(),
            Self::Fatal(_) => "fatal".into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
