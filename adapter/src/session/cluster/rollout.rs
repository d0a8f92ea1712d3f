//! Waiting for the agent pods: watches the workload's pods (no polling) until every
//! replica runs the agent and is Ready, reporting progress; on timeout the error says
//! what each pod is stuck on, with its latest events.
//!
//! Failures that waiting cannot cure end the wait at once: an agent image the cluster
//! cannot pull, an agent container the kubelet refuses to start (`runAsNonRoot` with a
//! root image), and pods the workload's controller may not create (a `FailedCreate`
//! event: PodSecurity admission, a full quota, a webhook). The watch and the diagnosis
//! are [`pod_wait`](super::pod_wait)'s.

use super::connection::Cluster;
use super::errors::ClusterError;
use super::pod_wait::{self, runs_our_agent, AgentChecks, Explain, PodWait, Stopped};
use super::target::{label_selector, ResolvedTarget};
use k8s_openapi::api::core::v1::Pod;
use std::time::Duration;

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
    let container = target.container.name.as_str();
    let ours = |pod: &Pod| runs_our_agent(pod, container, agent_image, token_secret);
    let wait = PodWait {
        selector: label_selector(&target.selector),
        ours: &ours,
        explain: Explain::Container(container),
        wanted: replicas,
        exclusive: true,
        agent: Some(AgentChecks::for_target(target, agent_image, token_secret)),
        timeout,
    };
    let report = |ready: usize| progress(format!("{ready}/{replicas} agent pods ready"));
    match pod_wait::wait(cluster, &wait, report).await {
        Ok(ready) => Ok(ready),
        Err(Stopped::Failed(error)) => Err(error),
        Err(Stopped::TimedOut(seen)) => {
            let stuck = seen.into_values().filter(|p| !p.ready).map(|p| {
                let why = p.waiting.unwrap_or_else(|| "not ready".into());
                (p.name, why)
            });
            Err(ClusterError::Timeout(format!(
                "the agent pods of {} were not ready after {}s:\n{}\nThe workload stays bridged until kbridge restores it; check the agent image (`bridge.agentImage`) and the events above",
                target.workload(),
                timeout.as_secs(),
                pod_wait::stuck_report(cluster, stuck).await
            )))
        }
    }
}
