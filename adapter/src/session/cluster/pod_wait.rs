//! Waiting for pods to be Ready, with one diagnosis of who is stuck: a watch (no polling,
//! kube-runtime's default backoff while the API server does not answer) of the pods a label
//! selector picks, until enough of "ours" are Ready. Used for the agent pods of a swapped
//! workload (`rollout`) and for the isolation router and clone (`isolation`).
//!
//! With [`AgentChecks`], failures that waiting cannot cure end the wait at once: an agent
//! image the cluster cannot pull, an agent container the kubelet refuses to start
//! (`runAsNonRoot` with a root image), and pods the workload's controller may not create (a
//! `FailedCreate` event: PodSecurity admission, a full quota, a webhook). On timeout the
//! caller gets what each pod was stuck on and words the error; [`stuck_report`] adds each
//! pod's latest events.

use super::connection::Cluster;
use super::errors::ClusterError;
use super::target::{ResolvedTarget, WorkloadKind};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ContainerState, Event, Pod, PodSpec};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::runtime::WatchStreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

/// A pod, as far as the wait is concerned.
#[derive(Debug, Clone)]
pub struct PodState {
    /// Pod name.
    pub name: String,
    /// Whether it is Ready.
    pub ready: bool,
    /// Whether it is one of the pods waited for ([`PodWait::ours`]).
    pub ours: bool,
    /// Why it is not ready, in Kubernetes' words (`ErrImagePull: …`, `Pending`, …).
    pub waiting: Option<String>,
    /// The explaining container's waiting reason alone (`ErrImagePull`, `ImagePullBackOff`, …).
    pub waiting_reason: Option<String>,
}

/// Whose state explains why a pod is not Ready.
#[derive(Debug, Clone, Copy)]
pub enum Explain<'a> {
    /// The named container's (the one kbridge replaced by the agent); else the pod's phase,
    /// unless it is `Running`.
    Container(&'a str),
    /// The first container that waits or has terminated; else the pod's phase.
    AnyContainer,
}

/// What ends the wait early when the agent cannot run (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct AgentChecks<'a> {
    /// The kind of workload whose controller creates the pods (for its `FailedCreate`
    /// events).
    pub kind: WorkloadKind,
    /// Its name.
    pub workload: &'a str,
    /// The container that runs the agent image.
    pub container: &'a str,
    /// The agent image.
    pub agent_image: &'a str,
    /// The session's token Secret, where the pods hold one: it tells this session's agent
    /// from an earlier one's. `None` for pods shared by sessions (the isolation router).
    pub token_secret: Option<&'a str>,
}

impl<'a> AgentChecks<'a> {
    /// The checks for a session's agent pods in place of `target`'s container.
    pub fn for_target(
        target: &'a ResolvedTarget,
        agent_image: &'a str,
        token_secret: &'a str,
    ) -> Self {
        Self {
            kind: target.kind,
            workload: &target.name,
            container: &target.container.name,
            agent_image,
            token_secret: Some(token_secret),
        }
    }

    /// `kind/name` of the workload.
    fn workload_name(&self) -> String {
        format!("{}/{}", self.kind.name(), self.workload)
    }

    /// Whether a pod spec (a pod's, or a controller's template) runs the agent these
    /// checks are about.
    fn spec_matches(&self, spec: &PodSpec) -> bool {
        match self.token_secret {
            Some(token) => spec_runs_our_agent(spec, self.container, self.agent_image, token),
            None => spec
                .containers
                .iter()
                .any(|c| c.name == self.container && c.image.as_deref() == Some(self.agent_image)),
        }
    }
}

/// What to wait for.
pub struct PodWait<'a> {
    /// Label selector of the pods to watch (`a=1,b=2`).
    pub selector: String,
    /// Which of them count (e.g. those running this session's agent).
    pub ours: &'a (dyn Fn(&Pod) -> bool + Send + Sync),
    /// Whose state explains a pod that is not Ready.
    pub explain: Explain<'a>,
    /// How many of ours must be Ready.
    pub wanted: usize,
    /// Whether every pod that is not ours must also be gone.
    pub exclusive: bool,
    /// Early failures of agent pods, when the pods run the agent.
    pub agent: Option<AgentChecks<'a>>,
    /// How long to wait.
    pub timeout: Duration,
}

/// Why [`wait`] ended without success.
#[derive(Debug)]
pub enum Stopped {
    /// A failure waiting cannot cure.
    Failed(ClusterError),
    /// Time ran out; the pods as last seen, by name.
    TimedOut(BTreeMap<String, PodState>),
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
fn hopeless(pod: &PodState, agent_image: &str) -> Option<ClusterError> {
    let reason = pod.waiting_reason.as_deref().filter(|_| pod.ours)?;
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
fn refusal(event: &Event, checks: &AgentChecks<'_>, since: Timestamp) -> Option<Refusal> {
    let object = &event.involved_object;
    let name = object.name.as_deref()?;
    let replica_set = match (object.kind.as_deref()?, checks.kind) {
        // A Deployment's pods come from its ReplicaSets, `<name>-<template hash>`.
        ("ReplicaSet", WorkloadKind::Deployment)
            if name
                .strip_prefix(checks.workload)
                .is_some_and(|hash| hash.starts_with('-')) =>
        {
            Some(name.to_string())
        }
        ("ReplicaSet", WorkloadKind::ReplicaSet) | ("StatefulSet", WorkloadKind::StatefulSet)
            if name == checks.workload && event_time(event)? >= since =>
        {
            None
        }
        _ => return None,
    };
    let message = event.message.clone().unwrap_or_default();
    Some(Refusal {
        error: ClusterError::PodsRefused {
            workload: checks.workload_name(),
            advice: refusal_advice(&message),
            message,
        },
        replica_set,
    })
}

/// Whether a refusal is about this session's pods: a Deployment's ReplicaSet must be the one
/// whose template runs this session's agent (an earlier session's, or the app's own, may
/// have been refused before and left its events).
async fn is_ours(cluster: &Cluster, refusal: &Refusal, checks: &AgentChecks<'_>) -> bool {
    let Some(name) = &refusal.replica_set else {
        return true;
    };
    match cluster.get_opt::<ReplicaSet>(name).await {
        Ok(Some(set)) => set
            .spec
            .template
            .and_then(|t| t.spec)
            .is_some_and(|spec| checks.spec_matches(&spec)),
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

/// The pod as the wait sees it; `None` for one on its way out.
fn describe(pod: &Pod, wait: &PodWait<'_>) -> Option<PodState> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None; // on its way out
    }
    let name = pod.metadata.name.clone()?;
    let status = pod.status.as_ref();
    let statuses = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let state_text = |state: &ContainerState| {
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
    };
    let phase = status.and_then(|s| s.phase.clone());
    let (waiting, waiting_reason) = match wait.explain {
        Explain::Container(container) => {
            let state = statuses
                .iter()
                .find(|c| c.name == container)
                .and_then(|c| c.state.as_ref());
            (
                state
                    .and_then(state_text)
                    .or_else(|| phase.filter(|p| p != "Running")),
                state.and_then(|s| s.waiting.as_ref()?.reason.clone()),
            )
        }
        Explain::AnyContainer => (
            statuses
                .iter()
                .find_map(|c| state_text(c.state.as_ref()?))
                .or(phase),
            statuses
                .iter()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()),
        ),
    };
    Some(PodState {
        name,
        ready: is_ready(pod),
        ours: (wait.ours)(pod),
        waiting,
        waiting_reason,
    })
}

/// Watches the pods until [`PodWait::wanted`] of ours are Ready (and, if
/// [`PodWait::exclusive`], no other pod is left); returns the names of our Ready pods.
/// `progress` hears the number of our Ready pods whenever it changes.
pub async fn wait(
    cluster: &Cluster,
    wait: &PodWait<'_>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<String>, Stopped> {
    let config = watcher::Config::default().labels(&wait.selector);
    let mut stream = watcher::watcher(cluster.api::<Pod>(), config)
        .default_backoff()
        .boxed();
    // Controllers' refusals to create pods: without these the wait would only time out.
    let since = Timestamp::now() - SignedDuration::try_from(REFUSAL_LOOKBACK).unwrap_or_default();
    let mut refusals = match wait.agent {
        Some(_) => {
            let refusals = watcher::Config::default().fields("type=Warning,reason=FailedCreate");
            watcher::watcher(cluster.api::<Event>(), refusals)
                .default_backoff()
                .applied_objects()
                .boxed()
        }
        None => futures::stream::pending().boxed(),
    }
    .fuse();
    let mut seen: BTreeMap<String, PodState> = BTreeMap::new();
    let mut initial: BTreeMap<String, PodState> = BTreeMap::new();
    let mut last_ready = None;
    let deadline = tokio::time::Instant::now() + wait.timeout;
    let mut watch_failing = false;
    loop {
        let next = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                event = stream.next() => Ok(event),
                Some(refused) = refusals.next() => Err(refused),
            }
        });
        let event = match next.await {
            Ok(Ok(Some(Ok(event)))) => {
                watch_failing = false;
                event
            }
            Ok(Ok(Some(Err(error)))) => {
                // Said once per spell of errors: the watcher retries with backoff.
                if !watch_failing {
                    tracing::warn!(%error, "pod watch error; the watcher retries with backoff");
                    watch_failing = true;
                }
                continue;
            }
            Ok(Ok(None)) => return Err(Stopped::Failed(ClusterError::WatchEnded("pod"))),
            Ok(Err(Ok(event))) => {
                let Some(checks) = wait.agent else { continue };
                match refusal(&event, &checks, since) {
                    Some(refused) if is_ours(cluster, &refused, &checks).await => {
                        return Err(Stopped::Failed(refused.error))
                    }
                    _ => continue,
                }
            }
            // Events may be hidden from this user, or the watch broken: the pod watch
            // still decides, only without the early answer.
            Ok(Err(Err(error))) => {
                tracing::debug!(%error, "event watch error; the watcher retries with backoff");
                continue;
            }
            Err(_) => return Err(Stopped::TimedOut(seen)),
        };
        match event {
            WatchEvent::Init => initial.clear(),
            WatchEvent::InitApply(pod) => {
                if let Some(p) = describe(&pod, wait) {
                    initial.insert(p.name.clone(), p);
                }
            }
            WatchEvent::InitDone => seen = std::mem::take(&mut initial),
            WatchEvent::Apply(pod) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                match describe(&pod, wait) {
                    Some(p) => seen.insert(name, p),
                    None => seen.remove(&name),
                };
            }
            WatchEvent::Delete(pod) => {
                seen.remove(&pod.metadata.name.clone().unwrap_or_default());
            }
        }
        if let Some(checks) = wait.agent {
            if let Some(error) = seen.values().find_map(|p| hopeless(p, checks.agent_image)) {
                return Err(Stopped::Failed(error));
            }
        }
        let ready: Vec<String> = seen
            .values()
            .filter(|p| p.ours && p.ready)
            .map(|p| p.name.clone())
            .collect();
        if last_ready != Some(ready.len()) {
            progress(ready.len());
            last_ready = Some(ready.len());
        }
        let others = seen.values().filter(|p| !p.ours).count();
        if ready.len() >= wait.wanted && (!wait.exclusive || others == 0) {
            return Ok(ready);
        }
    }
}

/// What to tell of pods that did not become Ready: a line `pod NAME: WHY` for each of
/// `pods` (name, why), followed by its last three events; `no pods were created` if none.
pub async fn stuck_report(
    cluster: &Cluster,
    pods: impl IntoIterator<Item = (String, String)>,
) -> String {
    let events = cluster.api::<Event>();
    let mut lines = Vec::new();
    for (pod, why) in pods {
        let mut line = format!("pod {pod}: {why}");
        let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
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
    if lines.is_empty() {
        "no pods were created".to_string()
    } else {
        lines.join("\n")
    }
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

    fn checks(target: &ResolvedTarget) -> AgentChecks<'_> {
        AgentChecks::for_target(target, "registry.local/kbridge/agent:1", "kbridge-token-1")
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
        let deployment = target(WorkloadKind::Deployment);
        let refused = refusal(&event, &checks(&deployment), now).expect("ours");
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
            let event = failed_create(kind, name, now, PSA);
            assert!(refusal(&event, &checks(&deployment), now).is_none());
        }
    }

    #[test]
    fn a_statefulsets_refusal_counts_only_when_recent() {
        let now = Timestamp::now();
        let since = now - SignedDuration::from_secs(5);
        let sts = target(WorkloadKind::StatefulSet);
        let recent = failed_create("StatefulSet", "todo-api", now, "exceeded quota: compute");
        let refused = refusal(&recent, &checks(&sts), since).expect("recent");
        assert!(refused.replica_set.is_none());
        assert!(refused.error.to_string().contains("ResourceQuota"));
        let old = failed_create(
            "StatefulSet",
            "todo-api",
            now - SignedDuration::from_secs(60),
            PSA,
        );
        assert!(refusal(&old, &checks(&sts), since).is_none());
    }

    fn pod(ours: bool, reason: &str, message: &str) -> PodState {
        PodState {
            name: "todo-api-1".into(),
            ready: false,
            ours,
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

    fn waiting_pod(phase: &str, statuses: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "todo-api-1"},
            "status": {"phase": phase, "containerStatuses": statuses}
        }))
        .expect("a pod")
    }

    #[test]
    fn a_pod_is_explained_by_the_container_asked_for_or_the_first_in_trouble() {
        let ours = |_: &Pod| true;
        let wait = |explain| PodWait {
            selector: String::new(),
            ours: &ours,
            explain,
            wanted: 1,
            exclusive: false,
            agent: None,
            timeout: Duration::from_secs(1),
        };
        let sidecar_waits = waiting_pod(
            "Running",
            serde_json::json!([
                {"name": "sidecar", "ready": false, "restartCount": 0, "image": "s", "imageID": "",
                 "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}},
                {"name": "api", "ready": false, "restartCount": 0, "image": "a", "imageID": "",
                 "state": {"running": {}}}
            ]),
        );
        let any = describe(&sidecar_waits, &wait(Explain::AnyContainer)).expect("described");
        assert_eq!(
            any.waiting.as_deref(),
            Some("ImagePullBackOff: no such image")
        );
        assert_eq!(any.waiting_reason.as_deref(), Some("ImagePullBackOff"));
        // The api container runs, and a Running pod needs no more words.
        let api = describe(&sidecar_waits, &wait(Explain::Container("api"))).expect("described");
        assert_eq!((api.waiting, api.waiting_reason), (None, None));
        let pending = waiting_pod("Pending", serde_json::json!([]));
        let api = describe(&pending, &wait(Explain::Container("api"))).expect("described");
        assert_eq!(api.waiting.as_deref(), Some("Pending"));
        assert!(api.ours && !api.ready);
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
