//! The kinds of workload kbridge takes over, and the one parser of their names: the
//! `bridge.workload` setting (`KIND/NAME`), `kbridge restore KIND/NAME`, the undo journal
//! and the in-cluster restorer's `--workload` all read a kind with [`WorkloadKind::parse`].
//!
//! DaemonSets are not among them: kbridge refuses to take over a DaemonSet's pod, so no
//! session ever swaps one and nothing has to restore one.

use std::fmt;
use std::str::FromStr;

/// Kinds of workload a session can take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 ReplicaSet not owned by a Deployment.
    ReplicaSet,
    /// A Pod no controller owns.
    Pod,
}

/// A kind name [`WorkloadKind::parse`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown workload kind `{0}`; expected one of deployment, statefulset, replicaset, pod")]
pub struct UnknownWorkloadKind(pub String);

impl WorkloadKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [WorkloadKind; 4] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::ReplicaSet,
        WorkloadKind::Pod,
    ];

    /// Reads a kind as users type it, in any case: the singular, the plural, or kubectl's
    /// short name (`deploy`, `sts`, `rs`, `po`).
    pub fn parse(text: &str) -> Option<WorkloadKind> {
        match text.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => Some(WorkloadKind::Deployment),
            "statefulset" | "statefulsets" | "sts" => Some(WorkloadKind::StatefulSet),
            "replicaset" | "replicasets" | "rs" => Some(WorkloadKind::ReplicaSet),
            "pod" | "pods" | "po" => Some(WorkloadKind::Pod),
            _ => None,
        }
    }

    /// Lowercase kind, as in `deployment/todo-api`.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::ReplicaSet => "replicaset",
            WorkloadKind::Pod => "pod",
        }
    }

    /// Plural resource name, as RBAC and the API name it.
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::ReplicaSet => "replicasets",
            WorkloadKind::Pod => "pods",
        }
    }

    /// The API's kind, as in an object's `kind` field (`Deployment`).
    pub fn kind(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Pod => "Pod",
        }
    }

    /// The API resource of a controller with a pod template (apps/v1), which a session
    /// patches; `None` for a bare Pod, which is recreated instead.
    #[cfg(feature = "kube")]
    pub fn template_resource(self) -> Option<kube_core::ApiResource> {
        if self == WorkloadKind::Pod {
            return None;
        }
        Some(kube_core::ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: self.kind().into(),
            plural: self.resource().into(),
        })
    }
}

impl FromStr for WorkloadKind {
    type Err = UnknownWorkloadKind;

    fn from_str(text: &str) -> Result<WorkloadKind, UnknownWorkloadKind> {
        WorkloadKind::parse(text).ok_or_else(|| UnknownWorkloadKind(text.to_string()))
    }
}

impl fmt::Display for WorkloadKind {
    /// The lowercase [`WorkloadKind::name`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_users_type_reads_as_its_kind() {
        for (text, kind) in [
            ("deployment", WorkloadKind::Deployment),
            ("Deployments", WorkloadKind::Deployment),
            ("deploy", WorkloadKind::Deployment),
            ("StatefulSet", WorkloadKind::StatefulSet),
            ("sts", WorkloadKind::StatefulSet),
            ("replicasets", WorkloadKind::ReplicaSet),
            ("rs", WorkloadKind::ReplicaSet),
            ("pod", WorkloadKind::Pod),
            ("PODS", WorkloadKind::Pod),
            ("po", WorkloadKind::Pod),
        ] {
            assert_eq!(WorkloadKind::parse(text), Some(kind), "{text}");
            assert_eq!(text.parse::<WorkloadKind>(), Ok(kind), "{text}");
        }
        for text in ["daemonset", "ds", "job", "", "deployment/x"] {
            assert_eq!(WorkloadKind::parse(text), None, "{text}");
        }
        let err = "ds".parse::<WorkloadKind>().unwrap_err();
        assert!(err.to_string().contains("statefulset"), "{err}");
    }

    #[test]
    fn names_read_back_as_the_same_kind() {
        for kind in WorkloadKind::ALL {
            assert_eq!(WorkloadKind::parse(kind.name()), Some(kind));
            assert_eq!(WorkloadKind::parse(kind.resource()), Some(kind));
            assert_eq!(WorkloadKind::parse(kind.kind()), Some(kind));
            assert_eq!(kind.to_string(), kind.name());
        }
    }

    #[cfg(feature = "kube")]
    #[test]
    fn templates_are_apps_v1_and_a_bare_pod_has_none() {
        let deployment = WorkloadKind::Deployment.template_resource().unwrap();
        assert_eq!(
            (deployment.api_version.as_str(), deployment.plural.as_str()),
            ("apps/v1", "deployments")
        );
        assert_eq!(
            WorkloadKind::StatefulSet.template_resource().unwrap().kind,
            "StatefulSet"
        );
        assert!(WorkloadKind::Pod.template_resource().is_none());
    }
}
