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
    pub async fn run(&self) -> Result<(), UndoError> {
        match self {
            UndoStep::RemoveDir { path } => match tokio::fs::remove_dir_all(path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("cannot remove {}: {e}", path.display()).into()),
            },
            UndoStep::RemoveFile { path } => match tokio::fs::remove_file(path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("cannot remove {}: {e}", path.display()).into()),
            },
            UndoStep::DeleteObject {
                kubeconfig,
                context,
                namespace,
                kind,
                name,
            } => {
                use super::cluster::connection::Cluster;
                let resource = deletable_resource(kind)
                    .ok_or_else(|| UndoError::from(format!("cannot delete a {kind}")))?;
                let cluster = Cluster::connect_with(
                    kubeconfig.as_deref(),
                    context.as_deref(),
                    Some(namespace),
                )
                .await
                .map_err(UndoError::cluster)?;
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
                    Err(e @ (kube::Error::HyperError(_) | kube::Error::Service(_))) => {
                        Err(UndoError {
                            unreachable: Some(e.to_string()),
                            message: format!("cannot delete {kind} {namespace}/{name}: {e}"),
                        })
                    }
                    Err(e) => Err(format!("cannot delete {kind} {namespace}/{name}: {e}").into()),
                }
            }
            UndoStep::RemoveHostsBlock { path, session } => {
                let text = match tokio::fs::read_to_string(path).await {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
                };
                let cleaned = super::cluster::hosts::without_blocks(&text, |s| s == session);
                if cleaned != text {
                    // Rewrite in place: /etc/hosts may be a bind mount that cannot be replaced.
                    tokio::fs::write(path, cleaned).await.map_err(|e| {
                        UndoError::from(format!("cannot write {}: {e}", path.display()))
                    })?;
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
                .map_err(UndoError::cluster)?;
                let outcome = isolation::leave(&cluster, service, route_as, Some(session))
                    .await
                    .map_err(UndoError::cluster)?;
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
                let kind =
                    WorkloadKind::parse(kind).ok_or_else(|| format!("cannot restore a {kind}"))?;
                let cluster = Cluster::connect_with(
                    kubeconfig.as_deref(),
                    context.as_deref(),
                    Some(namespace),
                )
                .await
                .map_err(UndoError::cluster)?;
                let outcome = workload::restore(&cluster, kind, name, Some(session))
                    .await
                    .map_err(UndoError::cluster)?;
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

/// Why a step could not be undone.
#[derive(Debug)]
pub struct UndoError {
    /// What went wrong, for the log and the user.
    pub message: String,
    /// Set when the cluster's API server could not be reached (the transport error).
    pub unreachable: Option<String>,
}

impl From<String> for UndoError {
    fn from(message: String) -> UndoError {
        UndoError {
            message,
            unreachable: None,
        }
    }
}

impl UndoError {
    fn cluster(error: super::cluster::errors::ClusterError) -> UndoError {
        use super::cluster::errors::ClusterError;
        UndoError {
            unreachable: match &error {
                ClusterError::Unreachable { reason, .. } => Some(reason.clone()),
                _ => None,
            },
            message: error.to_string(),
        }
    }
}

impl UndoStep {
    /// Whether undoing this step needs the cluster's API server.
    fn needs_cluster(&self) -> bool {
        !matches!(
            self,
            UndoStep::RemoveDir { .. }
                | UndoStep::RemoveFile { .. }
                | UndoStep::RemoveHostsBlock { .. }
        )
    }

    /// What is left in the cluster while this step is not undone, in words, with the
    /// command that undoes it by hand; `None` for what the session's Secret takes along
    /// (or the restorer deletes) and for local steps.
    fn left_in_cluster(&self) -> Option<String> {
        match self {
            UndoStep::RestoreWorkload {
                namespace,
                kind,
                name,
                ..
            } => Some(format!(
                "{kind}/{name} in namespace {namespace} still runs kbridge's agent (`kbridge restore -n {namespace} {kind}/{name}` puts it back)"
            )),
            UndoStep::LeaveIsolation {
                namespace,
                service,
                route_as,
                ..
            } => Some(format!(
                "service {service} in namespace {namespace} still routes '{route_as}' to this session (`kbridge restore -n {namespace} --all` ends the namespace's isolations)"
            )),
            _ => None,
        }
    }
}

/// Runs a plan, last step first; returns what could not be undone, in words.
///
/// Once the API server turns out unreachable the remaining cluster steps are not tried
/// (each would only wait for the same timeout): local steps still run, and the failures
/// become one explanation — what is left in the cluster, that the in-cluster restorer
/// (when the session started one) puts it back, and the command that does it by hand.
pub async fn run_plan(steps: &[UndoStep]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut unreachable: Option<String> = None;
    let mut not_undone: Vec<&UndoStep> = Vec::new();
    for step in steps.iter().rev() {
        if unreachable.is_some() && step.needs_cluster() {
            tracing::warn!(?step, "not undone: the cluster is unreachable");
            not_undone.push(step);
            continue;
        }
        match step.run().await {
            Ok(()) => tracing::info!(?step, "undone"),
            Err(e) => {
                tracing::error!(?step, error = %e.message, "undo step failed");
                match e.unreachable {
                    Some(reason) => {
                        unreachable = Some(reason);
                        not_undone.push(step);
                    }
                    None => failures.push(e.message),
                }
            }
        }
    }
    if let Some(reason) = unreachable {
        failures.insert(0, unreachable_explanation(&reason, steps, &not_undone));
    }
    failures
}

/// The one message for a teardown that could not reach the cluster.
fn unreachable_explanation(reason: &str, plan: &[UndoStep], not_undone: &[&UndoStep]) -> String {
    let left: Vec<String> = not_undone
        .iter()
        .filter_map(|step| step.left_in_cluster())
        .collect();
    let restorer = plan.iter().any(|step| {
        matches!(step, UndoStep::DeleteObject { kind, name, .. }
            if kind == "job" && name.starts_with("kbridge-restorer-"))
    });
    let mut text = format!("the cluster's API server cannot be reached ({reason}), so the session's changes there are not undone yet");
    if !left.is_empty() {
        text.push_str(": ");
        text.push_str(&left.join("; "));
    }
    text.push_str(". ");
    if restorer {
        text.push_str("The session's in-cluster restorer puts it back by itself once its agents have gone `idleRestoreSeconds` without kbridge (60 s by default) and the API server answers; ");
    }
    text.push_str("run the command above once the cluster is reachable to do it at once. This machine's changes were undone.");
    text
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
