//! Errors of the cluster side, each worded as what went wrong and what to do about it.

/// Why the cluster side of a session cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable kubeconfig or context.
    #[error("cannot load the Kubernetes configuration: {0}. Set KUBECONFIG or `bridge.context`, or check `kubectl config get-contexts`")]
    Config(String),
    /// The API server cannot be reached.
    #[error("the cluster at {url} cannot be reached: {reason}. Check the network/VPN and `kubectl cluster-info`")]
    Unreachable {
        /// The API server URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// An object does not exist.
    #[error("{kind} '{name}' not found in namespace '{namespace}'{}", suggestion.as_ref().map(|s| format!("; did you mean '{s}'?")).unwrap_or_default())]
    NotFound {
        /// Kind, lowercase (`service`, `deployment`, …).
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The namespace.
        namespace: String,
        /// The closest existing name, if any is close.
        suggestion: Option<String>,
    },
    /// RBAC refused a request.
    #[error("permission denied: you may not {verb} {resource} in namespace '{namespace}' ({message}); ask for a Role that allows it")]
    Forbidden {
        /// The verb (`get`, `list`, `patch`, …).
        verb: &'static str,
        /// The resource (`deployments`, …).
        resource: &'static str,
        /// The namespace.
        namespace: String,
        /// The API server's message.
        message: String,
    },
    /// The cluster cannot pull the agent image for an agent pod.
    #[error("the cluster cannot pull the agent image '{image}' (pod {pod}: {reason}). Push the image to a registry the cluster can pull from and name it with --agent-image, `bridge.agentImage` or KBRIDGE_AGENT_IMAGE; the workload is put back as it was")]
    AgentImageUnavailable {
        /// The image reference.
        image: String,
        /// The pod that reported it.
        pod: String,
        /// Kubernetes' reason and message (`ErrImagePull: …`).
        reason: String,
    },
    /// The agent container cannot start as configured (e.g. `runAsNonRoot` with a root image).
    #[error("the agent container cannot start in pod {pod}: {reason}. kbridge's agent image runs as user 65532; an agent image of your own needs a numeric non-root USER, or give the container a runAsUser; the workload is put back as it was")]
    AgentCannotStart {
        /// The pod.
        pod: String,
        /// Kubernetes' reason and message.
        reason: String,
    },
    /// The workload's controller may not create the agent pods (admission: PodSecurity, quota, a webhook).
    #[error("the cluster refuses to create the agent pods of {workload}: {message}. {advice}The workload is put back as it was")]
    PodsRefused {
        /// `kind/name`.
        workload: String,
        /// The controller's FailedCreate message, as the API server gave it.
        message: String,
        /// What to do, for the refusals kbridge recognises (ends with a space, or empty).
        advice: &'static str,
    },
    /// The target exists but cannot be bridged as it is.
    #[error("{0}")]
    Unsupported(String),
    /// Any other API error.
    #[error("Kubernetes API error while trying to {action}: {source}")]
    Api {
        /// What kbridge was doing.
        action: String,
        /// The client error.
        source: kube::Error,
    },
}

/// What a request was, so errors can name it.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// The verb.
    pub verb: &'static str,
    /// The resource, plural.
    pub resource: &'static str,
}

impl ClusterError {
    /// The class of the failure, which the editor gets as a stable error id.
    pub fn kind(&self) -> crate::session::ErrorKind {
        use crate::session::ErrorKind;
        match self {
            ClusterError::Config(_) => ErrorKind::Kubeconfig,
            ClusterError::Unreachable { .. } => ErrorKind::Unreachable,
            ClusterError::NotFound { .. } => ErrorKind::NotFound,
            ClusterError::Forbidden { .. } | ClusterError::PodsRefused { .. } => ErrorKind::Denied,
            ClusterError::AgentImageUnavailable { .. } | ClusterError::AgentCannotStart { .. } => {
                ErrorKind::AgentImage
            }
            ClusterError::Unsupported(_) => ErrorKind::Invalid,
            ClusterError::Api { .. } => ErrorKind::Api,
        }
    }

    /// Classifies a client error from `request` on `namespace`.
    pub fn from_kube(
        error: kube::Error,
        request: Request,
        namespace: &str,
        url: &str,
    ) -> ClusterError {
        match error {
            kube::Error::Api(status) if status.code == 403 => ClusterError::Forbidden {
                verb: request.verb,
                resource: request.resource,
                namespace: namespace.to_string(),
                message: status.message.clone(),
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => ClusterError::Unreachable {
                url: url.to_string(),
                reason: error.to_string(),
            },
            other => ClusterError::Api {
                action: format!("{} {}", request.verb, request.resource),
                source: other,
            },
        }
    }
}

/// Whether a client error is a 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
