//! The classes of failure every layer reports (the cluster, the session, the launch
//! setup). The class travels with the error up to the proxy, which gives it to the editor
//! as the stable numeric id of the DAP error response (`body.error.id`), next to the
//! message that says what to do. The table of ids is in `docs/architecture.md` ("Errors").

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
    /// Anything else the Kubernetes API answered, or an internal error.
    Api,
    /// The editor cancelled what was asked (a `disconnect` during setup).
    Cancelled,
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
            ErrorKind::Cancelled => 7314,
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
            ErrorKind::Cancelled => "cancelled",
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
            ErrorKind::Cancelled,
        ];
        let ids: std::collections::BTreeSet<u32> = kinds.iter().map(|k| k.id()).collect();
        let names: std::collections::BTreeSet<&str> = kinds.iter().map(|k| k.name()).collect();
        assert_eq!(ids.len(), kinds.len());
        assert_eq!(names.len(), kinds.len());
    }
}
