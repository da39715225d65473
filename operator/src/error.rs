//! The operator's errors, each with a label for metrics.

/// Something a reconcile could not do; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("status serialization: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("no free hostPort in the range {0}")]
    NoHostPort(String),
    #[error("lost the leader lease: {0}")]
    LostLease(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Low-cardinality label for `controller_runtime_reconcile_errors_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Serialize(_) => "serialize",
            Error::NoHostPort(_) => "no_host_port",
            Error::LostLease(_) => "lost_lease",
        }
    }
}
