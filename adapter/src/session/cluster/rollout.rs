//! Waiting for the agent pods: watches the workload's pods (no polling) until every
//! replica runs the agent and is Ready, reporting progress; on timeout the error says
//! what each pod is stuck on, with its latest events.
//!
//! Failures that waiting cannot cure end the wait at once: an agent image the cluster
//! cannot pull, an agent container the kubelet refuses to start (`runAsNonRoot` with a
//! root image), and pods the workload's controller may not create (a `FailedCreate`
//! event: PodSecurity admission, a full quota, a webhook).

use super::connection::Cluster;
use super::errors::ClusterError;
use super::target::{label_selector, ResolvedTarget, WorkloadKind};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod, PodSpec};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::runtime::WatchStreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

/// A pod of the workload, as far as the wait is concerned.
#[derive(Debug, Clone)]
pub struct AgentPod {
    /// Pod name.
    pub name: String,
    /// Whether it is Ready.
    pub ready: bool,
    /// Whether its target container runs the agent image.
    pub runs_agent: bool,
    /// Why it is not ready, in Kubernetes' words (`ErrImagePull: …`, `Pending`, …).
    pub waiting: Option<String>,
    /// The target container's waiting reason alone (`ErrImagePull`, `ImagePullBackOff`, …).
    pub waiting_reason: Option<String>,
}

/// Waiting reasons of a container whose image cannot be had.
const IMAGE_REASONS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];
/// What the kubelet says (reason `CreateContainerConfigError`) when `runAsNonRoot` meets an
/// image that runs as root or names its user by name. Other configuration errors of that
/// reason pass (a Secret or ConfigMap not yet in the kubelet's cache: "failed to sync
/// secret cache"), so only these end the wait.
const NON_ROOT_REFUSALS: [&str; 2] = [
    "runAsNonRoot and image will run as root",
    "runAsNonRoot and image has non-numeric user",
];

/// The error that ends the wait at once for this pod, if its state cannot cure itself.
fn hopeless(pod: &AgentPod, agent_image: &str) -> Option<ClusterError> {
    let reason = pod.waiting_reason.as_deref().filter(|_| pod.runs_agent)?;
    let said = pod.waiting.clone().unwrap_or_else(|| reason.to_string());
    if IMAGE_REASONS.contains(&reason) {
        Some(ClusterError::AgentImageUnavailable {
            image: agent_image.to_string(),
            pod: pod.name.clone(),
            reason: said,
        })
    } else if reason == "CreateContainerConfigError"
        && NON_ROOT_REFUSALS.iter().any(|m| said.contains(m))
    {
        Some(ClusterError::AgentCannotStart {
            pod: pod.name.clone(),
            reason: said,
        })
    } else {
        None
    }
}

/// How long before the wait a `FailedCreate` event about a StatefulSet or a bare ReplicaSet
/// may be and still count: the first refusal can come before the event watch has listed,
/// and clocks may differ a little. (A Deployment's refusals are told apart by their
/// ReplicaSet's template instead: see [`is_ours`].)
const REFUSAL_LOOKBACK: Duration = Duration::from_secs(5);

/// A controller's `FailedCreate` event that may be about this session's agent pods.
struct Refusal {
    error: ClusterError,
    /// For a Deployment: the ReplicaSet that failed, ours only if its template runs our agent.
    replica_set: Option<String>,
}

/// When an event last happened, by the first timestamp it carries.
fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// What to do about a refusal kbridge recognises by the API server's message (ends with a
/// space, or is empty).
fn refusal_advice(message: &str) -> &'static str {
    if message.contains("violates PodSecurity") {
        "The namespace enforces a Pod Security level (label pod-security.kubernetes.io/enforce) these pods do not meet; the agent keeps the container's own securityContext, so give the workload one that meets the level (runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities.drop: [ALL], seccompProfile: RuntimeDefault), or bridge in a namespace with a lower level. "
    } else if message.contains("exceeded quota") {
        "A ResourceQuota of the namespace is used up: free some of it or ask for more. "
    } else {
        ""
    }
}

/// The refusal an event stands for, if it is a `FailedCreate` about this workload's pods
/// (and, where no template can tell sessions apart, a recent one).
fn refusal(event: &Event, target: &ResolvedTarget, since: Timestamp) -> Option<Refusal> {
    let object = &event.involved_object;
    let name = object.name.as_deref()?;
    let replica_set = match (object.kind.as_deref()?, target.kind) {
        // A Deployment's pods come from its ReplicaSets, `<name>-<template hash>`.
        ("ReplicaSet", WorkloadKind::Deployment)
            if name
                .strip_prefix(target.name.as_str())
                .is_some_and(|hash| hash.starts_with('-')) =>
        {
            Some(name.to_string())
        }
        ("ReplicaSet", WorkloadKind::ReplicaSet) | ("StatefulSet", WorkloadKind::StatefulSet)
            if name == target.name && event_time(event)? >= since =>
        {
            None
        }
        _ => return None,
    };
    let message = event.message.clone().unwrap_or_default();
    Some(Refusal {
        error: ClusterError::PodsRefused {
            workload: target.workload(),
            advice: refusal_advice(&message),
            message,
        },
        replica_set,
    })
}

/// Whether a refusal is about this session's pods: a Deployment's ReplicaSet must be the one
/// whose template runs this session's agent (an earlier session's, or the app's own, may
/// have been refused before and left its events).
async fn is_ours(
    cluster: &Cluster,
    refusal: &Refusal,
    container: &str,
    agent_image: &str,
    token_secret: &str,
) -> bool {
    let Some(name) = &refusal.replica_set else {
        return true;
    };
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    match sets.get_opt(name).await {
        Ok(Some(set)) => {
            set.spec.template.and_then(|t| t.spec).is_some_and(|spec| {
                spec_runs_our_agent(&spec, container, agent_image, token_secret)
            })
        }
        Ok(None) => false,
        Err(error) => {
            tracing::debug!(%error, replica_set = %name, "cannot read the refused ReplicaSet");
            false
        }
    }
}

/// Whether the pod's target container is this session's agent: the agent image, holding
/// this session's token (an earlier session's agent pods do not count).
pub fn runs_our_agent(pod: &Pod, container: &str, agent_image: &str, token_secret: &str) -> bool {
    pod.spec
        .as_ref()
        .is_some_and(|spec| spec_runs_our_agent(spec, container, agent_image, token_secret))
}

/// [`runs_our_agent`] for a pod spec: a pod's, or a controller's pod template.
fn spec_runs_our_agent(
    spec: &PodSpec,
    container: &str,
    agent_image: &str,
    token_secret: &str,
) -> bool {
    spec.containers.iter().any(|c| {
        c.name == container
            && c.image.as_deref() == Some(agent_image)
            && c.env.iter().flatten().any(|e| {
                e.name == "KBRIDGE_SESSION_TOKEN"
                    && e.value_from
                        .as_ref()
                        .and_then(|v| v.secret_key_ref.as_ref())
                        .is_some_and(|s| s.name == token_secret)
            })
    })
}

/// Whether the pod's Ready condition is true.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn describe(pod: &Pod, container: &str, agent_image: &str, token_secret: &str) -> Option<AgentPod> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None; // on its way out
    }
    let name = pod.metadata.name.clone()?;
    let runs_agent = runs_our_agent(pod, container, agent_image, token_secret);
    let status = pod.status.as_ref();
    let ready = is_ready(pod);
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|c| c.name == container))
        .and_then(|c| c.state.as_ref())
        .and_then(|state| {
            state
                .waiting
                .as_ref()
                .map(|w| {
                    format!(
                        "{}{}",
                        w.reason.clone().unwrap_or_default(),
                        w.message
                            .as_ref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    )
                })
                .or_else(|| {
                    state
                        .terminated
                        .as_ref()
                        .map(|t| format!("terminated ({})", t.reason.clone().unwrap_or_default()))
                })
        })
        .or_else(|| {
            status
                .and_then(|s| s.phase.clone())
                .filter(|p| p != "Running")
        });
    let waiting_reason = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|c| c.name == container))
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    Some(AgentPod {
        name,
        ready,
        runs_agent,
        waiting,
        waiting_reason,
    })
}

/// Waits until `replicas` pods run the agent and are Ready, and no pod without the agent
/// is left; `progress` gets a line whenever the count changes.
pub async fn wait_for_agents(
    cluster: &Cluster,
    target: &ResolvedTarget,
    agent_image: &str,
    token_secret: &str,
    replicas: usize,
    timeout: Duration,
    mut progress: impl FnMut(String),
) -> Result<Vec<String>, ClusterError> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let selector = label_selector(&target.selector);
    let config = watcher::Config::default().labels(&selector);
    let mut stream = watcher::watcher(pods.clone(), config)
        .default_backoff()
        .boxed();
    // Controllers' refusals to create pods: without these the wait would only time out.
    let since = Timestamp::now() - SignedDuration::try_from(REFUSAL_LOOKBACK).unwrap_or_default();
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let refusals = watcher::Config::default().fields("type=Warning,reason=FailedCreate");
    let mut refusals = watcher::watcher(events, refusals)
        .default_backoff()
        .applied_objects()
        .boxed()
        .fuse();
    let mut seen: BTreeMap<String, AgentPod> = BTreeMap::new();
    let mut initial: BTreeMap<String, AgentPod> = BTreeMap::new();
    let container = target.container.name.as_str();
    let mut last_report = String::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                event = stream.next() => Ok(event),
                Some(refused) = refusals.next() => Err(refused),
            }
        });
        let event = match next.await {
            Ok(Ok(Some(Ok(event)))) => event,
            Ok(Ok(Some(Err(error)))) => {
                tracing::warn!(%error, "pod watch error; the watcher retries with backoff");
                continue;
            }
            Ok(Ok(None)) => {
                return Err(ClusterError::Unsupported(
                    "the pod watch ended unexpectedly".into(),
                ))
            }
            Ok(Err(Ok(event))) => match refusal(&event, target, since) {
                Some(refused)
                    if is_ours(cluster, &refused, container, agent_image, token_secret).await =>
                {
                    return Err(refused.error)
                }
                _ => continue,
            },
            // Events may be hidden from this user, or the watch broken: the pod watch
            // still decides, only without the early answer.
            Ok(Err(Err(error))) => {
                tracing::debug!(%error, "event watch error; the watcher retries with backoff");
                continue;
            }
            Err(_) => return Err(stuck(cluster, target, &seen, timeout).await),
        };
        match event {
            WatchEvent::Init => initial.clear(),
            WatchEvent::InitApply(pod) => {
                if let Some(p) = describe(&pod, container, agent_image, token_secret) {
                    initial.insert(p.name.clone(), p);
                }
            }
            WatchEvent::InitDone => seen = std::mem::take(&mut initial),
            WatchEvent::Apply(pod) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                match describe(&pod, container, agent_image, token_secret) {
                    Some(p) => seen.insert(name, p),
                    None => seen.remove(&name),
                };
            }
            WatchEvent::Delete(pod) => {
                seen.remove(&pod.metadata.name.clone().unwrap_or_default());
            }
        }
        if let Some(error) = seen.values().find_map(|p| hopeless(p, agent_image)) {
            return Err(error);
        }
        let ready: Vec<&AgentPod> = seen.values().filter(|p| p.runs_agent && p.ready).collect();
        let old = seen.values().filter(|p| !p.runs_agent).count();
        let report = format!("{}/{replicas} agent pods ready", ready.len());
        if report != last_report {
            progress(report.clone());
            last_report = report;
        }
        if ready.len() >= replicas && old == 0 {
            return Ok(ready.iter().map(|p| p.name.clone()).collect());
        }
    }
}

/// The timeout error: each pod that is not ready, why, and its last events.
async fn stuck(
    cluster: &Cluster,
    target: &ResolvedTarget,
    seen: &BTreeMap<String, AgentPod>,
    timeout: Duration,
) -> ClusterError {
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut lines = Vec::new();
    for pod in seen.values().filter(|p| !p.ready) {
        let mut line = format!(
            "pod {}: {}",
            pod.name,
            pod.waiting.clone().unwrap_or_else(|| "not ready".into())
        );
        let params = ListParams::default().fields(&format!("involvedObject.name={}", pod.name));
        if let Ok(list) = events.list(&params).await {
            for event in list.items.iter().rev().take(3) {
                line.push_str(&format!(
                    "\n    {} {}: {}",
                    event.type_.clone().unwrap_or_default(),
                    event.reason.clone().unwrap_or_default(),
                    event.message.clone().unwrap_or_default()
                ));
            }
        }
        lines.push(line);
    }
    ClusterError::Unsupported(format!(
        "the agent pods of {} were not ready after {}s:\n{}\nThe workload stays bridged until kbridge restores it; check the agent image (`bridge.agentImage`) and the events above",
        target.workload(),
        timeout.as_secs(),
        if lines.is_empty() { "no pods were created".to_string() } else { lines.join("\n") }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn target(kind: WorkloadKind) -> ResolvedTarget {
        ResolvedTarget {
            namespace: "shop".into(),
            kind,
            name: "todo-api".into(),
            container: Container {
                name: "api".into(),
                ..Default::default()
            },
            service: None,
            pods: Vec::new(),
            pod_spec: PodSpec::default(),
            selector: BTreeMap::new(),
            replicas: 2,
        }
    }

    fn failed_create(kind: &str, name: &str, at: Timestamp, message: &str) -> Event {
        Event {
            involved_object: ObjectReference {
                kind: Some(kind.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            last_timestamp: Some(Time(at)),
            message: Some(message.into()),
            ..Default::default()
        }
    }

    const PSA: &str = r#"Error creating: pods "todo-api-6987f495f6-fxcrx" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true"#;

    #[test]
    fn a_deployments_refusal_names_its_replicaset_and_the_policy() {
        let now = Timestamp::now();
        let event = failed_create("ReplicaSet", "todo-api-6987f495f6", now, PSA);
        let refused = refusal(&event, &target(WorkloadKind::Deployment), now).expect("ours");
        assert_eq!(refused.replica_set.as_deref(), Some("todo-api-6987f495f6"));
        let text = refused.error.to_string();
        assert!(text.contains("deployment/todo-api") && text.contains("violates PodSecurity"));
        assert!(
            text.contains("pod-security.kubernetes.io/enforce"),
            "{text}"
        );
    }

    #[test]
    fn events_of_other_workloads_are_not_refusals() {
        let now = Timestamp::now();
        let deployment = target(WorkloadKind::Deployment);
        // `todo-apix-…` is another Deployment's ReplicaSet; a Pod's event is no controller's.
        for (kind, name) in [("ReplicaSet", "todo-apix-5d4f"), ("Pod", "todo-api-5d4f-x")] {
            assert!(refusal(&failed_create(kind, name, now, PSA), &deployment, now).is_none());
        }
    }

    #[test]
    fn a_statefulsets_refusal_counts_only_when_recent() {
        let now = Timestamp::now();
        let since = now - SignedDuration::from_secs(5);
        let sts = target(WorkloadKind::StatefulSet);
        let recent = failed_create("StatefulSet", "todo-api", now, "exceeded quota: compute");
        let refused = refusal(&recent, &sts, since).expect("recent");
        assert!(refused.replica_set.is_none());
        assert!(refused.error.to_string().contains("ResourceQuota"));
        let old = failed_create(
            "StatefulSet",
            "todo-api",
            now - SignedDuration::from_secs(60),
            PSA,
        );
        assert!(refusal(&old, &sts, since).is_none());
    }

    fn pod(runs_agent: bool, reason: &str, message: &str) -> AgentPod {
        AgentPod {
            name: "todo-api-1".into(),
            ready: false,
            runs_agent,
            waiting: Some(format!("{reason}: {message}")),
            waiting_reason: Some(reason.into()),
        }
    }

    #[test]
    fn pull_and_non_root_failures_of_agent_pods_end_the_wait() {
        let image = "registry.example/kbridge/agent:1";
        let pulled = hopeless(&pod(true, "ImagePullBackOff", "Back-off pulling"), image);
        assert!(pulled
            .expect("hopeless")
            .to_string()
            .contains("cannot pull the agent image 'registry.example/kbridge/agent:1'"));
        let root = "container has runAsNonRoot and image will run as root (pod: \"x\")";
        let start = hopeless(&pod(true, "CreateContainerConfigError", root), image);
        assert!(matches!(start, Some(ClusterError::AgentCannotStart { .. })));
    }

    #[test]
    fn passing_trouble_and_old_pods_do_not_end_the_wait() {
        let image = "registry.example/kbridge/agent:1";
        // Seen on the real cluster right after the session's Secret was created.
        let cache = "failed to sync secret cache: timed out waiting for the condition";
        assert!(hopeless(&pod(true, "CreateContainerConfigError", cache), image).is_none());
        assert!(hopeless(&pod(true, "ContainerCreating", ""), image).is_none());
        // An old pod's trouble is not the agent's.
        assert!(hopeless(&pod(false, "ErrImagePull", "not found"), image).is_none());
    }
}
