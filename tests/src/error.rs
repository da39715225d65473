use std::path::PathBuf;

/// Everything that can go wrong while bringing up or talking to the test control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{what} not found ({detail}). Run `scripts/test-all`, the repository's test command, which \
         installs etcd and builds the Kubernetes binaries (the latter alone: `tests/k8s/build.sh`)"
    )]
    MissingBinary { what: &'static str, detail: String },

    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },

    #[error(
        "{what} did not become ready within {waited_secs}s; last error: {last_error}\n--- {log} (tail) ---\n{log_tail}"
    )]
    NotReady {
        what: &'static str,
        waited_secs: u64,
        last_error: String,
        log: PathBuf,
        log_tail: String,
    },

    #[error("{what} exited during start-up ({status})\n--- {log} (tail) ---\n{log_tail}")]
    Exited {
        what: &'static str,
        status: String,
        log: PathBuf,
        log_tail: String,
    },

    #[error("the shared test cluster of this test binary could not start: {0}")]
    StartFailed(String),

    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("kubeconfig error: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),

    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),

    #[error("{0}")]
    Serialize(String),

    #[error("end-to-end stack: {0}")]
    Stack(String),
}

impl Error {
    /// Short stable label per variant, for logs and assertions.
    pub fn label(&self) -> &'static str {
        match self {
            Error::MissingBinary { .. } => "missing_binary",
            Error::Command { .. } => "command",
            Error::NotReady { .. } => "not_ready",
            Error::Exited { .. } => "exited",
            Error::StartFailed(_) => "start_failed",
            Error::Io { .. } => "io",
            Error::Kubeconfig(_) => "kubeconfig",
            Error::Kube(_) => "kube",
            Error::Serialize(_) => "serialize",
            Error::Stack(_) => "stack",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches what we were doing to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}
