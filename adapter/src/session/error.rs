//! Why a session could not be opened, typed from the cluster to the editor.
//!
//! Every failure keeps its class ([`ErrorKind`]) until the proxy writes the DAP error
//! response: the editor shows the message (which says what to do) and gets a stable
//! numeric id it can match on. The ids are listed in `docs/architecture.md`.

use super::cluster::errors::ClusterError;

/// The class of a failure: what the user is to do about it differs by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Something did not happen in time (agents not ready, a rollout stuck).
    Timeout,
    /// RBAC or admission refused a request.
    Denied,
    /// The target (or an object it needs) does not exist.
    NotFound,
    /// Someone else holds what the session needs (another session, a concurrent change).
    Conflict,
    /// The API server, or an agent, cannot be reached.
    Unreachable,
    /// The target exists but cannot be bridged as asked, or the configuration is invalid.
    Invalid,
    /// `KubernetesLocalProcessConfig.yaml` (or another config file) cannot be used.
    ConfigFile,
    /// The kubeconfig or context cannot be used.
    Kubeconfig,
    /// The agent image cannot be pulled or run.
    AgentImage,
    /// A local file, directory or process could not be prepared.
    LocalIo,
    /// kbridge's teardown helper (the guardian) failed.
    Guardian,
    /// A debugger could not be found or started.
    Debugger,
    /// Anything else the Kubernetes API answered.
    Api,
}

impl ErrorKind {
    /// The stable id of the DAP `Message` in the error response (`body.error.id`).
    pub fn id(self) -> u32 {
        match self {
            ErrorKind::Timeout => 7301,
            ErrorKind::Denied => 7302,
            ErrorKind::NotFound => 7303,
            ErrorKind::Conflict => 7304,
            ErrorKind::Unreachable => 7305,
            ErrorKind::Invalid => 7306,
            ErrorKind::ConfigFile => 7307,
            ErrorKind::Kubeconfig => 7308,
            ErrorKind::AgentImage => 7309,
            ErrorKind::LocalIo => 7310,
            ErrorKind::Api => 7311,
            ErrorKind::Guardian => 7312,
            ErrorKind::Debugger => 7313,
        }
    }

    /// A short stable name (`denied`, `notFound`, …), for logs and the error's variables.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Denied => "denied",
            ErrorKind::NotFound => "notFound",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Invalid => "invalid",
            ErrorKind::ConfigFile => "configFile",
            ErrorKind::Kubeconfig => "kubeconfig",
            ErrorKind::AgentImage => "agentImage",
            ErrorKind::LocalIo => "localIo",
            ErrorKind::Api => "api",
            ErrorKind::Guardian => "guardian",
            ErrorKind::Debugger => "debugger",
        }
    }
}

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
    fn ids_are_distinct() {
        let kinds = [
            ErrorKind::Timeout,
            ErrorKind::Denied,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unreachable,
            ErrorKind::Invalid,
            ErrorKind::ConfigFile,
            ErrorKind::Kubeconfig,
            ErrorKind::AgentImage,
            ErrorKind::LocalIo,
            ErrorKind::Api,
            ErrorKind::Guardian,
            ErrorKind::Debugger,
        ];
        let ids: std::collections::BTreeSet<u32> = kinds.iter().map(|k| k.id()).collect();
        let names: std::collections::BTreeSet<&str> = kinds.iter().map(|k| k.name()).collect();
        assert_eq!(ids.len(), kinds.len());
        assert_eq!(names.len(), kinds.len());
    }

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
