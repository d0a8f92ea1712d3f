//! `kbridge-agent restore-watch`: the in-cluster restorer. It polls one agent's `/status` and the
//! workload's `kbridge.dev/*` annotations, and puts the workload back when the agent reports
//! "orphaned" (or stays unreachable past the grace period), using in-cluster credentials.

use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

use crate::restore::{decide, restore_patch, AgentObservation, Decision, RestoreError};

/// Errors that stop the restorer.
#[derive(Debug, thiserror::Error)]
pub enum RestoreWatchError {
    /// Bad command-line values.
    #[error("invalid restore-watch option: {0}")]
    Options(String),
    /// Kubernetes API failure.
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// In-cluster configuration could not be loaded.
    #[error("cannot load in-cluster credentials: {0}")]
    InCluster(String),
    /// The restore record is unusable.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// Interrupted by a signal.
    #[error("interrupted before the session ended")]
    Cancelled,
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// `host:port` of the agent's health endpoint.
    pub agent: String,
    /// Namespace of the workload.
    pub namespace: String,
    /// Workload as `kind/name` (`deployment/todo-api`, `statefulset/db`, …).
    pub workload: String,
    /// Session id the restorer was created for.
    pub session: String,
    /// Time between checks.
    pub interval: Duration,
    /// How long an unreachable agent is tolerated before restoring.
    pub unreachable_grace: Duration,
}

/// The API resource for a workload kind name as users type it.
pub fn workload_resource(kind: &str) -> Option<ApiResource> {
    let (k, plural) = match kind.to_ascii_lowercase().as_str() {
        "deployment" | "deployments" | "deploy" => ("Deployment", "deployments"),
        "statefulset" | "statefulsets" | "sts" => ("StatefulSet", "statefulsets"),
        "replicaset" | "replicasets" | "rs" => ("ReplicaSet", "replicasets"),
        "daemonset" | "daemonsets" | "ds" => ("DaemonSet", "daemonsets"),
        _ => return None,
    };
    Some(ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: k.into(),
        plural: plural.into(),
    })
}

/// Watches with in-cluster credentials until the session ends or the workload is restored;
/// returns what happened.
pub async fn run(
    opts: WatchOptions,
    cancel: CancellationToken,
) -> Result<String, RestoreWatchError> {
    let config =
        kube::Config::incluster().map_err(|e| RestoreWatchError::InCluster(e.to_string()))?;
    let client = kube::Client::try_from(config)?;
    run_with_client(client, opts, cancel).await
}

/// Like [`run`], with a client built elsewhere (tests, or `kbridge restore` reusing the loop).
pub async fn run_with_client(
    client: kube::Client,
    opts: WatchOptions,
    cancel: CancellationToken,
) -> Result<String, RestoreWatchError> {
    let (kind, name) = opts.workload.split_once('/').ok_or_else(|| {
        RestoreWatchError::Options(format!(
            "workload '{}' is not KIND/NAME (e.g. deployment/todo-api)",
            opts.workload
        ))
    })?;
    let ar = workload_resource(kind).ok_or_else(|| {
        RestoreWatchError::Options(format!(
            "kind '{kind}' is not restorable here (deployment, statefulset, replicaset, daemonset); \
             use 'kbridge restore' for bare pods"
        ))
    })?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, &opts.namespace, &ar);
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let observation = match crate::health::fetch_status(&opts.agent).await {
            Ok(s) => {
                unreachable_since = None;
                AgentObservation::State(s.state)
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                tracing::info!(agent = %opts.agent, error = %e, "agent unreachable");
                AgentObservation::Unreachable(since.elapsed())
            }
        };
        let obj = api.get_opt(name).await?;
        let annotations = obj
            .as_ref()
            .map(|o| o.metadata.annotations.clone().unwrap_or_default());
        match decide(
            &opts.session,
            annotations.as_ref(),
            observation,
            opts.unreachable_grace,
        )? {
            Decision::Done(reason) => return Ok(reason),
            Decision::Wait => {}
            Decision::Restore(record) => {
                let value = serde_json::to_value(&obj)
                    .map_err(|e| RestoreWatchError::Options(e.to_string()))?;
                let patch = restore_patch(&value, &record)?;
                match api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        return Ok(format!(
                            "restored {} after session {} was orphaned",
                            opts.workload, record.session
                        ))
                    }
                    // Someone changed it meanwhile: look again rather than overwrite.
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        tracing::info!("workload changed while restoring; retrying")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(RestoreWatchError::Cancelled),
            _ = tokio::time::sleep(opts.interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            workload_resource("Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(workload_resource("sts").unwrap().kind, "StatefulSet");
        assert!(workload_resource("pod").is_none());
    }
}
