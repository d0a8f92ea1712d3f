//! Why a session could not be opened, typed from the cluster to the editor: every
//! failure keeps its class ([`ErrorKind`]) until the proxy writes the DAP error response.

use super::cluster::errors::ClusterError;

pub use crate::error_kind::ErrorKind;

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The cluster side failed; the error says what to do.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The configuration, or a config file it names (`bridge.config`), cannot be used.
    #[error(transparent)]
    Config(#[from] kbridge_config::ConfigError),
    /// A config file asks for something the session cannot give (a volume the container
    /// does not mount, a Service that does not exist).
    #[error("{file}: {message}")]
    ConfigFileUse {
        /// The file, as the configuration names it.
        file: String,
        /// What is wrong, naming the entry.
        message: String,
    },
    /// The guardian process could not be started or stopped answering.
    #[error("kbridge's teardown helper failed: {0}")]
    Guardian(String),
    /// Local files could not be prepared.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An agent did not answer as it should once its tunnel was open.
    #[error("{what}{}", source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Agent {
        /// What kbridge asked of it.
        what: String,
        /// The agent client's error.
        source: Option<kbridge_protocol::ClientError>,
    },
    /// A session held by `kbridge connect` could not be started in the background.
    #[error("{0}")]
    Background(String),
}

impl SessionError {
    /// A local I/O failure while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> SessionError {
        SessionError::Io {
            what: what.into(),
            source,
        }
    }

    /// An agent failing to answer `what`.
    pub fn agent(what: impl Into<String>, source: kbridge_protocol::ClientError) -> SessionError {
        SessionError::Agent {
            what: what.into(),
            source: Some(source),
        }
    }

    /// The class of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SessionError::Cluster(error) => error.kind(),
            SessionError::Config(kbridge_config::ConfigError::File { .. }) => ErrorKind::ConfigFile,
            SessionError::Config(_) => ErrorKind::Invalid,
            SessionError::ConfigFileUse { .. } => ErrorKind::ConfigFile,
            SessionError::Guardian(_) => ErrorKind::Guardian,
            SessionError::Agent { .. } => ErrorKind::Unreachable,
            SessionError::Io { .. } | SessionError::Background(_) => ErrorKind::LocalIo,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_error_keeps_its_class() {
        let error = SessionError::from(ClusterError::Unreachable {
            url: "https://10.0.0.1".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(error.kind(), ErrorKind::Unreachable);
        assert!(error.to_string().contains("cannot be reached"));
    }
}
