//! Errors of the cluster side, each worded as what went wrong and what to do about it.
//!
//! Every variant says what class of failure it is, and [`ClusterError::kind`] sums that up
//! as an [`ErrorKind`] (the session's error classes: the DAP error id); the text users see is
//! the `Display` output alone. Kubernetes client errors become a `ClusterError` only through
//! [`ClusterError::from_kube`] (usually by way of `Cluster::api_error` or the typed helpers
//! on `Cluster`), so a 403 always names the verb and resource and says to ask for a Role,
//! and a transport failure always names the API server.

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
    /// Waiting ran out of time (pods not Ready, a Pod still terminating); the text says
    /// what each one is stuck on.
    #[error("{0}")]
    Timeout(String),
    /// Someone else has the object: another session holds the workload or its Lease, the
    /// Service is isolated in a way that does not fit, or the object kept changing under
    /// kbridge's updates (409 after every retry).
    #[error("{0}")]
    Conflict(String),
    /// The target exists but cannot be bridged as asked: no such container, several
    /// candidates (containers, Services, workloads), no selector, a kind or a port kbridge
    /// cannot handle, an object kbridge made itself.
    #[error("{0}")]
    InvalidTarget(String),
    /// A setting's value cannot be used (e.g. an `isolateAs` that is no valid route name).
    #[error("{0}")]
    InvalidSetting(String),
    /// kbridge's own record on an object (restore annotations, a Service's isolation
    /// annotations, the original Pod kept in the session's Secret) cannot be read.
    #[error("{0}")]
    BadRecord(String),
    /// The tunnel to an agent could not be opened (no port-forward stream, no handshake).
    #[error("{0}")]
    AgentUnreachable(String),
    /// A watch kbridge was waiting on ended (the watcher normally retries forever).
    #[error("the {0} watch ended unexpectedly")]
    WatchEnded(&'static str),
    /// An object could not be converted to or from JSON (a bug, not a cluster state).
    #[error("{0}")]
    Encoding(String),
    /// Any other API error.
    #[error("Kubernetes API error while trying to {action}: {source}")]
    Api {
        /// What kbridge was doing.
        action: String,
        /// The client error.
        source: kube::Error,
    },
}

pub use crate::session::ErrorKind;

impl ClusterError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClusterError::Config(_) => ErrorKind::Kubeconfig,
            ClusterError::Unreachable { .. } | ClusterError::AgentUnreachable(_) => {
                ErrorKind::Unreachable
            }
            ClusterError::NotFound { .. } => ErrorKind::NotFound,
            ClusterError::Forbidden { .. } | ClusterError::PodsRefused { .. } => ErrorKind::Denied,
            ClusterError::AgentImageUnavailable { .. } | ClusterError::AgentCannotStart { .. } => {
                ErrorKind::AgentImage
            }
            ClusterError::Timeout(_) => ErrorKind::Timeout,
            ClusterError::Conflict(_) => ErrorKind::Conflict,
            ClusterError::InvalidTarget(_)
            | ClusterError::InvalidSetting(_)
            | ClusterError::BadRecord(_) => ErrorKind::Invalid,
            ClusterError::WatchEnded(_) | ClusterError::Encoding(_) => ErrorKind::Api,
            ClusterError::Api { source, .. } => match source {
                kube::Error::Api(status) => match status.code {
                    401 | 403 => ErrorKind::Denied,
                    404 => ErrorKind::NotFound,
                    409 => ErrorKind::Conflict,
                    400 | 422 => ErrorKind::Invalid,
                    _ => ErrorKind::Api,
                },
                _ => ErrorKind::Api,
            },
        }
    }

    /// An [`ClusterError::Encoding`] from a serde error.
    pub fn encoding(error: serde_json::Error) -> ClusterError {
        ClusterError::Encoding(error.to_string())
    }
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

/// Whether a client error is a 409: AlreadyExists on create, a stale `resourceVersion` on
/// update.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: "refused".into(),
            ..Default::default()
        }))
    }

    #[test]
    fn every_class_has_its_kind() {
        let request = Request {
            verb: "patch",
            resource: "deployments",
        };
        let classify = |code| ClusterError::from_kube(status(code), request, "shop", "https://k");
        let denied = classify(403);
        assert_eq!(denied.kind(), ErrorKind::Denied);
        assert!(denied
            .to_string()
            .contains("you may not patch deployments in namespace 'shop'"));
        assert!(denied
            .to_string()
            .ends_with("ask for a Role that allows it"));
        assert_eq!(classify(409).kind(), ErrorKind::Conflict);
        assert_eq!(classify(404).kind(), ErrorKind::NotFound);
        assert_eq!(classify(500).kind(), ErrorKind::Api);
        for (error, kind) in [
            (ClusterError::Timeout("t".into()), ErrorKind::Timeout),
            (ClusterError::Conflict("c".into()), ErrorKind::Conflict),
            (ClusterError::InvalidTarget("i".into()), ErrorKind::Invalid),
            (ClusterError::InvalidSetting("i".into()), ErrorKind::Invalid),
            (ClusterError::BadRecord("b".into()), ErrorKind::Invalid),
            (
                ClusterError::AgentUnreachable("a".into()),
                ErrorKind::Unreachable,
            ),
            (ClusterError::Config("k".into()), ErrorKind::Kubeconfig),
        ] {
            assert_eq!(error.kind(), kind, "{error}");
        }
        // The class is not part of the text: messages read as before.
        assert_eq!(ClusterError::Conflict("held".into()).to_string(), "held");
        assert_eq!(
            ClusterError::WatchEnded("pod").to_string(),
            "the pod watch ended unexpectedly"
        );
    }
}
