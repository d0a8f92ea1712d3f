//! The cluster's undo steps: what a session changed in the cluster, recorded with the
//! guardian before the change (see `docs/architecture.md`, crash safety) and run by it at
//! teardown, or after a crash. Each step is idempotent and touches only what its own
//! session made.

use super::connection::Cluster;
use super::errors::ClusterError;
use super::target::WorkloadKind;
use super::{isolation, workload};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a step runs: the kubeconfig, context and namespace the session used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterAt {
    /// The kubeconfig file used, if not the default.
    pub kubeconfig: Option<PathBuf>,
    /// The context used.
    pub context: Option<String>,
    /// The namespace.
    pub namespace: String,
}

impl ClusterAt {
    /// Connects as the session did.
    async fn connect(&self) -> Result<Cluster, ClusterError> {
        Cluster::connect_with(
            self.kubeconfig.as_deref(),
            self.context.as_deref(),
            Some(&self.namespace),
        )
        .await
    }

    /// A step that deletes the object `kind/name` the session created.
    pub fn delete(&self, kind: &str, name: &str) -> ClusterStep {
        ClusterStep::DeleteObject {
            at: self.clone(),
            kind: kind.into(),
            name: name.into(),
        }
    }
}

/// One reversal in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum ClusterStep {
    /// Delete an object the session created: its token Secret, its Lease, the restorer's
    /// Job and RBAC objects.
    DeleteObject {
        /// Where.
        #[serde(flatten)]
        at: ClusterAt,
        /// `secret`, `lease`, `job`, `role`, `rolebinding`, `serviceaccount` or `pod`.
        kind: String,
        /// Object name.
        name: String,
    },
    /// End this session's isolation of a Service: its clone and Ingress copies go; the last
    /// session out restores the Service's selector and removes the router.
    LeaveIsolation {
        /// Where.
        #[serde(flatten)]
        at: ClusterAt,
        /// The isolated Service.
        service: String,
        /// The session's route name.
        route_as: String,
        /// The session.
        session: String,
    },
    /// Put a workload's original container back (if this session still holds it).
    RestoreWorkload {
        /// Where.
        #[serde(flatten)]
        at: ClusterAt,
        /// Lowercase kind: deployment, statefulset, replicaset, pod.
        kind: String,
        /// Name.
        name: String,
        /// The session that swapped it.
        session: String,
    },
}

impl ClusterStep {
    /// Performs the reversal. Already reversed is success.
    pub async fn run(&self) -> Result<(), ClusterError> {
        match self {
            ClusterStep::DeleteObject { at, kind, name } => {
                let resource = deletable_resource(kind).ok_or_else(|| {
                    ClusterError::BadRecord(format!("kbridge cannot delete a {kind}"))
                })?;
                let cluster = at.connect().await?;
                // Background propagation: a Job's pods, and objects owned by the Secret, go too.
                match cluster
                    .dynamic_api(&resource)
                    .delete(name, &kube::api::DeleteParams::background())
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if super::errors::is_not_found(&e) => Ok(()),
                    Err(e) => Err(match cluster.api_error(e, "delete", resource_name(kind)) {
                        // Name the object: teardown lists what it could not undo.
                        ClusterError::Api { source, .. } => ClusterError::Api {
                            action: format!("delete {kind} {}/{name}", at.namespace),
                            source,
                        },
                        other => other,
                    }),
                }
            }
            ClusterStep::LeaveIsolation {
                at,
                service,
                route_as,
                session,
            } => {
                let cluster = at.connect().await?;
                let outcome = isolation::leave(&cluster, service, route_as, Some(session)).await?;
                tracing::info!(?outcome, %service, %route_as, "left the isolation");
                Ok(())
            }
            ClusterStep::RestoreWorkload {
                at,
                kind,
                name,
                session,
            } => {
                let kind = WorkloadKind::parse(kind).ok_or_else(|| {
                    ClusterError::BadRecord(format!("kbridge cannot restore a {kind}"))
                })?;
                let cluster = at.connect().await?;
                let outcome = workload::restore(&cluster, kind, name, Some(session)).await?;
                tracing::info!(?outcome, "{}/{name}", kind.name());
                Ok(())
            }
        }
    }

    /// What is left in the cluster while this step is not undone, in words, with the
    /// command that undoes it by hand; `None` for what the session's Secret takes along
    /// (or the restorer deletes).
    pub fn left_in_cluster(&self) -> Option<String> {
        match self {
            ClusterStep::RestoreWorkload { at, kind, name, .. } => {
                let namespace = &at.namespace;
                Some(format!(
                    "{kind}/{name} in namespace {namespace} still runs kbridge's agent (`kbridge restore -n {namespace} {kind}/{name}` puts it back)"
                ))
            }
            ClusterStep::LeaveIsolation {
                at,
                service,
                route_as,
                ..
            } => {
                let namespace = &at.namespace;
                Some(format!(
                    "service {service} in namespace {namespace} still routes '{route_as}' to this session (`kbridge restore -n {namespace} --all` ends the namespace's isolations)"
                ))
            }
            ClusterStep::DeleteObject { .. } => None,
        }
    }

    /// Whether this step deletes the session's in-cluster restorer (so one was started).
    pub fn is_restorer(&self) -> bool {
        matches!(self, ClusterStep::DeleteObject { kind, name, .. }
            if kind == "job" && name.starts_with(super::restorer::RESTORER_PREFIX))
    }
}

/// The plural resource of a kind [`ClusterStep::DeleteObject`] may delete, for errors.
fn resource_name(kind: &str) -> &'static str {
    deletable(kind).map_or("objects", |(_, _, _, plural)| plural)
}

/// `(group, version, Kind, plural)` of the kinds a session creates.
fn deletable(kind: &str) -> Option<(&'static str, &'static str, &'static str, &'static str)> {
    Some(match kind {
        "secret" => ("", "v1", "Secret", "secrets"),
        "pod" => ("", "v1", "Pod", "pods"),
        "serviceaccount" => ("", "v1", "ServiceAccount", "serviceaccounts"),
        "lease" => ("coordination.k8s.io", "v1", "Lease", "leases"),
        "job" => ("batch", "v1", "Job", "jobs"),
        "role" => ("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        "rolebinding" => (
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
        ),
        _ => return None,
    })
}

/// The API resource of a kind [`ClusterStep::DeleteObject`] may delete.
fn deletable_resource(kind: &str) -> Option<kube::api::ApiResource> {
    let (group, version, kind, plural) = deletable(kind)?;
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    Some(kube::api::ApiResource::from_gvk_with_plural(&gvk, plural))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_a_session_creates_can_be_deleted() {
        for kind in [
            "secret",
            "pod",
            "serviceaccount",
            "lease",
            "job",
            "role",
            "rolebinding",
        ] {
            assert!(deletable_resource(kind).is_some(), "{kind}");
        }
        assert!(deletable_resource("deployment").is_none());
        let secret = deletable_resource("secret").expect("secret");
        assert_eq!(
            (secret.api_version.as_str(), secret.plural.as_str()),
            ("v1", "secrets")
        );
        let lease = deletable_resource("lease").expect("lease");
        assert_eq!(lease.api_version, "coordination.k8s.io/v1");
    }
}
