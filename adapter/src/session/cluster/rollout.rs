//! Waiting for the agent pods: watches the workload's pods (no polling) until every
//! replica runs the agent and is Ready, reporting progress; on timeout the error says
//! what each pod is stuck on, with its latest events.

use super::connection::Cluster;
use super::errors::ClusterError;
use super::target::{label_selector, ResolvedTarget};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event as WatchEvent};
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
    /// Why it is not ready, in Kubernetes' words (`ErrImagePull`, `Pending`, …).
    pub waiting: Option<String>,
}

/// Whether the pod's target container is this session's agent: the agent image, holding
/// this session's token (an earlier session's agent pods do not count).
pub fn runs_our_agent(pod: &Pod, container: &str, agent_image: &str, token_secret: &str) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
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
    Some(AgentPod {
        name,
        ready,
        runs_agent,
        waiting,
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
    let mut stream = watcher::watcher(pods.clone(), config).boxed();
    let mut seen: BTreeMap<String, AgentPod> = BTreeMap::new();
    let mut initial: BTreeMap<String, AgentPod> = BTreeMap::new();
    let container = target.container.name.as_str();
    let mut last_report = String::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let event = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(error))) => {
                tracing::warn!(%error, "pod watch error; the watcher retries");
                continue;
            }
            Ok(None) => {
                return Err(ClusterError::Unsupported(
                    "the pod watch ended unexpectedly".into(),
                ))
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
