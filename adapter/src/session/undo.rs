//! The changes a session makes outside the proxy process, each recorded as the step
//! that reverses it. Steps are data so a separate process can run them; each is
//! idempotent, so running a plan twice, or after a partial run, is safe.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One reversal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum UndoStep {
    /// Delete a directory kbridge created (downloaded volumes, session files).
    RemoveDir {
        /// The directory.
        path: PathBuf,
    },
    /// Delete a file kbridge created (the session's `live/<id>.sock`).
    RemoveFile {
        /// The file.
        path: PathBuf,
    },
    /// Delete an object the session created: its token Secret, its Lease.
    DeleteObject {
        /// Kubeconfig file used, if not the default.
        kubeconfig: Option<PathBuf>,
        /// Context used.
        context: Option<String>,
        /// Namespace.
        namespace: String,
        /// `secret`, `lease`, `job`, `role`, `rolebinding`, `serviceaccount` or `pod`.
        kind: String,
        /// Object name.
        name: String,
    },
    /// Remove the session's block from a hosts file.
    RemoveHostsBlock {
        /// The hosts file.
        path: PathBuf,
        /// The session whose block goes.
        session: String,
    },
    /// End this session's isolation of a Service (DESIGN §9): its clone and Ingress copies
    /// go; the last session out restores the Service's selector and removes the router.
    LeaveIsolation {
        /// The kubeconfig file used, if not the default.
        kubeconfig: Option<PathBuf>,
        /// The context used.
        context: Option<String>,
        /// Namespace.
        namespace: String,
        /// The isolated Service.
        service: String,
        /// The session's route name.
        route_as: String,
        /// The session.
        session: String,
    },
    /// Put a workload's original container back (if this session still holds it).
    RestoreWorkload {
        /// Where the cluster is: the kubeconfig file used, if not the default.
        kubeconfig: Option<PathBuf>,
        /// The context used.
        context: Option<String>,
        /// Namespace.
        namespace: String,
        /// Lowercase kind: deployment, statefulset, replicaset.
        kind: String,
        /// Name.
        name: String,
        /// The session that swapped it.
        session: String,
    },
}

impl UndoStep {
    /// Performs the reversal. Already reversed is success.
    pub async fn run(&self) -> Result<(), String> {
        match self {
            UndoStep::RemoveDir { path } => match tokio::fs::remove_dir_all(path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
            },
            UndoStep::RemoveFile { path } => match tokio::fs::remove_file(path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
            },
            UndoStep::DeleteObject {
                kubeconfig,
                context,
                namespace,
                kind,
                name,
            } => {
                use super::cluster::connection::Cluster;
                let resource =
                    deletable_resource(kind).ok_or_else(|| format!("cannot delete a {kind}"))?;
                let cluster = Cluster::connect_with(
                    kubeconfig.as_deref(),
                    context.as_deref(),
                    Some(namespace),
                )
                .await
                .map_err(|e| e.to_string())?;
                let api: kube::Api<kube::api::DynamicObject> =
                    kube::Api::namespaced_with(cluster.client, namespace, &resource);
                // Background propagation: a Job's pods, and objects owned by the Secret, go too.
                let deleted = api
                    .delete(name, &kube::api::DeleteParams::background())
                    .await
                    .map(|_| ());
                match deleted {
                    Ok(()) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    Err(e) => Err(format!("cannot delete {kind} {namespace}/{name}: {e}")),
                }
            }
            UndoStep::RemoveHostsBlock { path, session } => {
                let text = match tokio::fs::read_to_string(path).await {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
                };
                let cleaned = super::cluster::hosts::without_blocks(&text, |s| s == session);
                if cleaned != text {
                    // Rewrite in place: /etc/hosts may be a bind mount that cannot be replaced.
                    tokio::fs::write(path, cleaned)
                        .await
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                }
                Ok(())
            }
            UndoStep::LeaveIsolation {
                kubeconfig,
                context,
                namespace,
                service,
                route_as,
                session,
            } => {
                use super::cluster::{connection::Cluster, isolation};
                let cluster = Cluster::connect_with(
                    kubeconfig.as_deref(),
                    context.as_deref(),
                    Some(namespace),
                )
                .await
                .map_err(|e| e.to_string())?;
                let outcome = isolation::leave(&cluster, service, route_as, Some(session))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(?outcome, %service, %route_as, "left the isolation");
                Ok(())
            }
            UndoStep::RestoreWorkload {
                kubeconfig,
                context,
                namespace,
                kind,
                name,
                session,
            } => {
                use super::cluster::{connection::Cluster, target::WorkloadKind, workload};
                let kind = match kind.as_str() {
                    "deployment" => WorkloadKind::Deployment,
                    "statefulset" => WorkloadKind::StatefulSet,
                    "replicaset" => WorkloadKind::ReplicaSet,
                    "pod" => WorkloadKind::Pod,
                    other => return Err(format!("cannot restore a {other}")),
                };
                let cluster = Cluster::connect_with(
                    kubeconfig.as_deref(),
                    context.as_deref(),
                    Some(namespace),
                )
                .await
                .map_err(|e| e.to_string())?;
                let outcome = workload::restore(&cluster, kind, name, Some(session))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(?outcome, "{}/{name}", kind.name());
                Ok(())
            }
        }
    }
}

/// The API resource of a kind [`UndoStep::DeleteObject`] may delete.
fn deletable_resource(kind: &str) -> Option<kube::api::ApiResource> {
    let (group, version, kind, plural) = match kind {
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
    };
    Some(kube::api::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    })
}

/// Runs a plan newest first, going on past failures; returns the failures.
pub async fn run_plan(steps: &[UndoStep]) -> Vec<String> {
    let mut failures = Vec::new();
    for step in steps.iter().rev() {
        match step.run().await {
            Ok(()) => tracing::info!(?step, "undone"),
            Err(e) => {
                tracing::error!(?step, error = %e, "undo step failed");
                failures.push(e);
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remove_dir_is_idempotent() {
        let dir = std::env::temp_dir().join(format!("kbridge-undo-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("nested")).expect("create test dir");
        let plan = [UndoStep::RemoveDir { path: dir.clone() }];
        assert!(run_plan(&plan).await.is_empty());
        assert!(!dir.exists());
        assert!(run_plan(&plan).await.is_empty(), "second run is a no-op");
    }

    #[tokio::test]
    async fn remove_file_is_idempotent() {
        let file = std::env::temp_dir().join(format!("kbridge-undo-file-{}", std::process::id()));
        std::fs::write(&file, "x").expect("create test file");
        let plan = [UndoStep::RemoveFile { path: file.clone() }];
        assert!(run_plan(&plan).await.is_empty());
        assert!(!file.exists());
        assert!(run_plan(&plan).await.is_empty(), "second run is a no-op");
    }

    #[test]
    fn steps_round_trip_as_json() {
        let step = UndoStep::RemoveDir {
            path: "/tmp/x".into(),
        };
        let text = serde_json::to_string(&step).expect("serialise");
        assert_eq!(text, r#"{"step":"removeDir","path":"/tmp/x"}"#);
        assert_eq!(
            serde_json::from_str::<UndoStep>(&text).expect("parse"),
            step
        );
    }
}
