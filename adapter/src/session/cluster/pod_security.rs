//! The security settings of the pods kbridge itself creates (the in-cluster restorer, the
//! isolation router): what the Pod Security Standard `restricted` asks for, so they start
//! in any namespace, however locked down. The agent that replaces an application
//! container keeps that container's own `securityContext` instead (see `workload`).

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};

/// The non-root user the agent image declares (`agent/Dockerfile`).
pub const AGENT_USER: i64 = 65532;

/// Pod level: a non-root user and the runtime's default seccomp profile.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(AGENT_USER),
        run_as_group: Some(AGENT_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Container level: no privilege escalation, no capabilities, a read-only root.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields PodSecurity `restricted` checks, as its documentation lists them.
    #[test]
    fn meets_restricted() {
        let pod = restricted_pod();
        let container = restricted_container();
        assert_eq!(pod.run_as_non_root, Some(true));
        assert_ne!(pod.run_as_user, Some(0));
        assert_eq!(
            pod.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(
            container.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_string()])
        );
    }
}
