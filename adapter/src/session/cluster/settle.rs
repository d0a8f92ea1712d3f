//! After teardown: waiting until the workload serves with its own pods again.
//!
//! Teardown puts the original pod template back; the workload's controller then rolls
//! the agents out and the original pods in. Until those are Ready, requests to the
//! Service fail or wait — so `kbridge run` and `kbridge connect` say "cluster restored"
//! only once the rollout is complete, showing its progress meanwhile and giving up
//! (with what to check) after a bound. The wait follows the object through a watch, not
//! a poll, and backs off if the API server stops answering.

use super::connection::Cluster;
use super::target::WorkloadKind;
use crate::session::Settled;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use std::fmt::Debug;
use std::time::Duration;

/// How far a workload's rollout back to its own pods has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollback {
    /// Pods of the current template that are Ready.
    pub ready: i32,
    /// Pods the workload wants.
    pub wanted: i32,
    /// Whether the rollout is complete: every wanted pod is of the current template and
    /// Ready, and no pod of an older template (an agent) is left.
    pub done: bool,
}

/// A rollout that did not complete within the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{ready}/{wanted} of its pods are ready after {waited:?}")]
pub struct NotYet {
    /// Ready pods of the current template at the end.
    pub ready: i32,
    /// Pods the workload wants.
    pub wanted: i32,
    /// How long kbridge waited.
    pub waited: Duration,
}

/// [`wait_until_serving`] in the words a session's [`BridgeSession::settle`] reports:
/// progress as "waiting for kind/name's own pods: r/w ready", the outcome as [`Settled`].
///
/// [`BridgeSession::settle`]: crate::session::BridgeSession::settle
pub async fn settled(
    cluster: &Cluster,
    kind: WorkloadKind,
    name: &str,
    bound: Duration,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Settled {
    let workload = format!("{}/{name}", kind.name());
    let report = |r: Rollback| {
        progress(format!(
            "waiting for {workload}'s own pods: {}/{} ready",
            r.ready, r.wanted
        ))
    };
    match wait_until_serving(cluster, kind, name, bound, &report).await {
        Ok(()) => Settled::Serving(workload),
        Err(not_yet) => Settled::NotYet(format!(
            "{workload} is back to its own pod template, but {not_yet}; see `kubectl -n {} rollout status {workload}`",
            cluster.namespace
        )),
    }
}

/// Waits (at most `bound`) until `kind/name` has rolled out its current template;
/// `progress` hears of every change in the count of ready pods.
pub async fn wait_until_serving(
    cluster: &Cluster,
    kind: WorkloadKind,
    name: &str,
    bound: Duration,
    progress: &(dyn Fn(Rollback) + Send + Sync),
) -> Result<(), NotYet> {
    let mut last = Rollback {
        ready: 0,
        wanted: 0,
        done: false,
    };
    let watched = async {
        match kind {
            WorkloadKind::Deployment => {
                follow::<Deployment>(cluster.api(), name, deployment, progress, &mut last).await
            }
            WorkloadKind::StatefulSet => {
                follow::<StatefulSet>(cluster.api(), name, statefulset, progress, &mut last).await
            }
            WorkloadKind::ReplicaSet => {
                follow::<ReplicaSet>(cluster.api(), name, replicaset, progress, &mut last).await
            }
            WorkloadKind::Pod => follow::<Pod>(cluster.api(), name, pod, progress, &mut last).await,
        }
    };
    match tokio::time::timeout(bound, watched).await {
        Ok(()) => Ok(()),
        Err(_) => Err(NotYet {
            ready: last.ready,
            wanted: last.wanted,
            waited: bound,
        }),
    }
}

/// Follows one object until `state` says its rollout is done.
async fn follow<K>(
    api: Api<K>,
    name: &str,
    state: fn(&K) -> Rollback,
    progress: &(dyn Fn(Rollback) + Send + Sync),
    last: &mut Rollback,
) where
    K: Resource + Clone + serde::de::DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut objects = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(item) = objects.next().await {
        let Ok(object) = item else {
            continue; // the watcher retries with backoff
        };
        let now = state(&object);
        if now.done {
            return;
        }
        if (now.ready, now.wanted) != (last.ready, last.wanted) {
            progress(now);
        }
        *last = now;
    }
}

/// Whether the controller has seen the current spec (`observedGeneration` caught up).
fn observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    match (generation, observed) {
        (Some(g), Some(o)) => o >= g,
        _ => false,
    }
}

/// As `kubectl rollout status` decides for a Deployment.
fn deployment(d: &Deployment) -> Rollback {
    let wanted = d.spec.replicas.unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    Rollback {
        ready: available.min(updated),
        wanted,
        done: observed(d.metadata.generation, status.observed_generation)
            && updated >= wanted
            && total <= updated
            && available >= updated,
    }
}

fn statefulset(s: &StatefulSet) -> Rollback {
    let wanted = s.spec.replicas.unwrap_or(1);
    let status = s.status.clone().unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let same_revision =
        status.update_revision.is_none() || status.update_revision == status.current_revision;
    Rollback {
        ready: ready.min(updated),
        wanted,
        done: observed(s.metadata.generation, status.observed_generation)
            && updated >= wanted
            && ready >= wanted
            && same_revision,
    }
}

fn replicaset(r: &ReplicaSet) -> Rollback {
    let wanted = r.spec.replicas.unwrap_or(1);
    let status = r.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    Rollback {
        ready,
        wanted,
        done: observed(r.metadata.generation, status.observed_generation)
            && ready >= wanted
            && status.replicas <= wanted,
    }
}

fn pod(p: &Pod) -> Rollback {
    let ready = i32::from(super::pod_wait::is_ready(p) && p.metadata.deletion_timestamp.is_none());
    Rollback {
        ready,
        wanted: 1,
        done: ready == 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn deploy(
        generation: i64,
        observed: i64,
        replicas: i32,
        updated: i32,
        available: i32,
        total: i32,
    ) -> Deployment {
        let mut d = Deployment {
            spec: DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                replicas: Some(total),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        };
        d.metadata.generation = Some(generation);
        d
    }

    #[test]
    fn a_deployment_is_back_when_every_pod_is_new_and_available() {
        // The restore patch is not seen by the controller yet.
        assert!(!deployment(&deploy(3, 2, 2, 2, 2, 2)).done);
        // New pods coming up while agents still run.
        assert_eq!(
            deployment(&deploy(3, 3, 2, 1, 1, 3)),
            Rollback {
                ready: 1,
                wanted: 2,
                done: false
            }
        );
        // All new, one not available yet.
        assert!(!deployment(&deploy(3, 3, 2, 2, 1, 2)).done);
        // All new and available, but an agent is still terminating.
        assert!(!deployment(&deploy(3, 3, 2, 2, 2, 3)).done);
        assert!(deployment(&deploy(3, 3, 2, 2, 2, 2)).done);
    }

    #[test]
    fn a_pod_is_back_when_ready_and_not_going_away() {
        let ready: Pod = serde_json::from_value(serde_json::json!({
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .expect("pod");
        assert!(pod(&ready).done);
        let mut leaving = ready.clone();
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(!pod(&leaving).done);
    }
}
