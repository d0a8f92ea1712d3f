//! The changes a session makes outside the proxy process, each recorded as the step
//! that reverses it. Steps are data so a separate process can run them; each is
//! idempotent, so running a plan twice, or after a partial run, is safe. The steps on this
//! machine are here; those in the cluster ([`ClusterStep`]) live with the cluster code.

use super::cluster::errors::ClusterError;
pub use super::cluster::undo::{ClusterAt, ClusterStep};
use super::hosts_file as hosts;
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
    /// Remove the session's block from a hosts file.
    RemoveHostsBlock {
        /// The hosts file.
        path: PathBuf,
        /// The session whose block goes.
        session: String,
    },
    /// A change in the cluster (an object created, a workload swapped, an isolation joined).
    Cluster(ClusterStep),
}

impl From<ClusterStep> for UndoStep {
    fn from(step: ClusterStep) -> UndoStep {
        UndoStep::Cluster(step)
    }
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
            UndoStep::RemoveHostsBlock { path, session } => {
                let text = match tokio::fs::read_to_string(path).await {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
                };
                let cleaned = hosts::without_blocks(&text, |s| s == session);
                if cleaned != text {
                    // Rewrite in place: /etc/hosts may be a bind mount that cannot be replaced.
                    tokio::fs::write(path, cleaned).await.map_err(|e| {
                        UndoError::from(format!("cannot write {}: {e}", path.display()))
                    })?;
                }
                Ok(())
            }
            UndoStep::Cluster(step) => step.run().await.map_err(UndoError::cluster),
        }
    }

    /// The cluster step, if this is one: undoing it needs the cluster's API server.
    fn in_cluster(&self) -> Option<&ClusterStep> {
        match self {
            UndoStep::Cluster(step) => Some(step),
            _ => None,
        }
    }
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
    fn cluster(error: ClusterError) -> UndoError {
        UndoError {
            unreachable: match &error {
                ClusterError::Unreachable { reason, .. } => Some(reason.clone()),
                _ => None,
            },
            message: error.to_string(),
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
        if unreachable.is_some() && step.in_cluster().is_some() {
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
        .filter_map(|step| step.in_cluster()?.left_in_cluster())
        .collect();
    let restorer = plan
        .iter()
        .any(|step| step.in_cluster().is_some_and(ClusterStep::is_restorer));
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

    #[test]
    fn cluster_steps_round_trip_as_flat_json() {
        let at = ClusterAt {
            kubeconfig: Some("/k".into()),
            context: None,
            namespace: "todo".into(),
        };
        let step = UndoStep::from(at.delete("secret", "kbridge-s1"));
        let text = serde_json::to_string(&step).expect("serialise");
        assert_eq!(
            text,
            r#"{"step":"cluster","action":"deleteObject","kubeconfig":"/k","context":null,"namespace":"todo","kind":"secret","name":"kbridge-s1"}"#
        );
        assert_eq!(
            serde_json::from_str::<UndoStep>(&text).expect("parse"),
            step
        );
    }
}
