//! `kbridge-agent restore-watch`: the in-cluster restorer. It polls the agents' `/status` (every
//! replica) and the workload's `kbridge.dev/*` annotations, and puts the workload back — a
//! template patched, a bare Pod recreated — when the agents report "orphaned" (or stay
//! unreachable past the grace period), then removes the session's Lease and Secret.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions,
};
use tokio_util::sync::CancellationToken;

use crate::idle::SessionState;
use crate::restore::{
    decide, original_pod, restore_patch, AgentObservation, Decision, RestoreError,
};

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

/// Where the restorer finds the agent(s) whose health decides.
#[derive(Debug, Clone)]
pub enum AgentSource {
    /// One fixed `host:port` health endpoint.
    Address(String),
    /// Every running pod matching a label selector (all replicas of the workload), at this
    /// health port. A bare Pod target is found by name without a selector.
    Pods {
        /// Label selector (`app=todo-api,tier=web`); empty for a bare Pod.
        selector: String,
        /// The agents' health port.
        port: u16,
    },
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The agent(s) to ask.
    pub agents: AgentSource,
    /// Namespace of the workload.
    pub namespace: String,
    /// Workload as `kind/name` (`deployment/todo-api`, `statefulset/db`, `pod/solo`, …).
    pub workload: String,
    /// Session id the restorer was created for.
    pub session: String,
    /// Time between checks.
    pub interval: Duration,
    /// How long an unreachable agent is tolerated before restoring.
    pub unreachable_grace: Duration,
    /// The session's Lease, deleted after restoring.
    pub lease: Option<String>,
    /// The session's Secret, deleted after restoring. kbridge makes the restorer's Job,
    /// ServiceAccount, Role and RoleBinding dependents of it, so this also removes the
    /// restorer itself.
    pub secret: Option<String>,
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

/// The workload as the restorer handles it.
enum Target {
    /// A controller's pod template, restored with a merge patch.
    Template(Api<DynamicObject>),
    /// A bare Pod, recreated.
    Pod(Api<Pod>),
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
    let target = match workload_resource(kind) {
        Some(ar) => Target::Template(Api::namespaced_with(client.clone(), &opts.namespace, &ar)),
        None if matches!(kind, "pod" | "pods" | "po") => {
            Target::Pod(Api::namespaced(client.clone(), &opts.namespace))
        }
        None => {
            return Err(RestoreWatchError::Options(format!(
            "kind '{kind}' is not restorable (deployment, statefulset, replicaset, daemonset, pod)"
        )))
        }
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let observation = match observe(&opts.agents, &pods, kind, name).await {
            Some(state) => {
                unreachable_since = None;
                AgentObservation::State(state)
            }
            None => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                AgentObservation::Unreachable(since.elapsed())
            }
        };
        let object = match &target {
            Target::Template(api) => api
                .get_opt(name)
                .await?
                .map(|o| serde_json::to_value(&o).unwrap_or_default()),
            Target::Pod(api) => api
                .get_opt(name)
                .await?
                .map(|o| serde_json::to_value(&o).unwrap_or_default()),
        };
        let annotations: Option<BTreeMap<String, String>> = object.as_ref().map(|o| {
            serde_json::from_value(
                o.pointer("/metadata/annotations")
                    .cloned()
                    .unwrap_or_default(),
            )
            .unwrap_or_default()
        });
        match decide(
            &opts.session,
            annotations.as_ref(),
            observation,
            opts.unreachable_grace,
        )? {
            Decision::Done(reason) => return Ok(reason),
            Decision::Wait => {}
            Decision::Restore(record) => {
                let object = object.unwrap_or_default();
                let restored = match &target {
                    Target::Template(api) => {
                        let patch = restore_patch(&object, &record)?;
                        match api
                            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                        {
                            Ok(_) => true,
                            // Someone changed it meanwhile: look again rather than overwrite.
                            Err(kube::Error::Api(s)) if s.code == 409 => false,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Target::Pod(api) => {
                        let original =
                            original_pod(annotations.as_ref().unwrap_or(&BTreeMap::new()))?;
                        recreate_pod(api, name, &object, &original).await?
                    }
                };
                if restored {
                    clean_up(&client, &opts).await;
                    return Ok(format!(
                        "restored {} after session {} was orphaned",
                        opts.workload, record.session
                    ));
                }
                tracing::info!("workload changed while restoring; retrying");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(RestoreWatchError::Cancelled),
            _ = tokio::time::sleep(opts.interval) => {}
        }
    }
}

/// The most alive state any agent reports (one active replica keeps the session), or `None`
/// when no agent answers.
async fn observe(
    source: &AgentSource,
    pods: &Api<Pod>,
    kind: &str,
    name: &str,
) -> Option<SessionState> {
    let addresses: Vec<String> = match source {
        AgentSource::Address(a) => vec![a.clone()],
        AgentSource::Pods { selector, port } => {
            let found: Vec<Pod> = if selector.is_empty() && matches!(kind, "pod" | "pods" | "po") {
                pods.get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .into_iter()
                    .collect()
            } else {
                match pods.list(&ListParams::default().labels(selector)).await {
                    Ok(list) => list.items,
                    Err(error) => {
                        tracing::info!(%error, "cannot list the agent pods");
                        Vec::new()
                    }
                }
            };
            found
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                .map(|ip| format!("{ip}:{port}"))
                .collect()
        }
    };
    let mut best: Option<SessionState> = None;
    for address in addresses {
        match crate::health::fetch_status(&address).await {
            Ok(status) => {
                best = Some(match (best, status.state) {
                    (Some(SessionState::Active), _) | (_, SessionState::Active) => {
                        SessionState::Active
                    }
                    (Some(SessionState::Idle), _) | (_, SessionState::Idle) => SessionState::Idle,
                    _ => SessionState::Orphaned,
                })
            }
            Err(error) => tracing::info!(agent = %address, %error, "agent unreachable"),
        }
    }
    best
}

/// Deletes the agent Pod and creates `original` in its place. `false` when the Pod changed
/// under us (uid precondition), so the caller looks again.
async fn recreate_pod(
    api: &Api<Pod>,
    name: &str,
    current: &serde_json::Value,
    original: &serde_json::Value,
) -> Result<bool, RestoreWatchError> {
    let uid = current
        .pointer("/metadata/uid")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    // A Pod's name is free only once it is gone (after its grace period).
    loop {
        if api.get_opt(name).await?.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pod: Pod = serde_json::from_value(original.clone()).map_err(|e| {
        RestoreWatchError::Options(format!("the stored original pod is not a Pod: {e}"))
    })?;
    match api.create(&PostParams::default(), &pod).await {
        Ok(_) => Ok(true),
        // Someone (kbridge restore, the session itself) was quicker.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Removes the session's Lease and Secret (and with the Secret, by owner references, this
/// restorer's Job and its RBAC objects). Failures are logged: the workload is back already.
async fn clean_up(client: &kube::Client, opts: &WatchOptions) {
    if let Some(lease) = &opts.lease {
        let api: Api<Lease> = Api::namespaced(client.clone(), &opts.namespace);
        if let Err(error) = api.delete(lease, &DeleteParams::default()).await {
            tracing::warn!(%error, %lease, "cannot delete the session's lease");
        }
    }
    if let Some(secret) = &opts.secret {
        let api: Api<Secret> = Api::namespaced(client.clone(), &opts.namespace);
        if let Err(error) = api.delete(secret, &DeleteParams::background()).await {
            tracing::warn!(%error, %secret, "cannot delete the session's secret");
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
