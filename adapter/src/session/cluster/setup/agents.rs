//! Phase 3, agents: wait until every replica runs kbridge's agent and is Ready (saying
//! who is stuck and why when one is not), open a tunnel to each, and read from the first
//! what the pod sees: its environment and its volume mounts.

use super::progress::step;
use super::takeover::{TakenOver, READY_TIMEOUT};
use crate::session::cluster::connection::Cluster;
use crate::session::cluster::rollout::wait_for_agents;
use crate::session::cluster::tunnels;
use crate::session::{EventSink, SessionError};
use kbridge_protocol::mounts::Mount;
use kbridge_protocol::AgentClient;
use std::collections::BTreeMap;

/// The agents, reached.
pub(super) struct Reached {
    /// The agents' pods.
    pub pods: Vec<String>,
    /// A tunnel to each: the agent session and the port-forward it runs over.
    pub opened: Vec<(String, (AgentClient, kube::api::Portforwarder))>,
    /// The pod's environment, as the target container sees it.
    pub pod_env: BTreeMap<String, String>,
    /// The target container's volume mounts.
    pub mounts: Vec<Mount>,
}

impl Reached {
    /// The first agent: the one asked for the pod's environment and files.
    pub fn first(&self) -> &AgentClient {
        &self.opened[0].1 .0
    }
}

/// Waits for the agents and opens their tunnels.
pub(super) async fn reach(
    cluster: &Cluster,
    taken: &TakenOver,
    token: &str,
    events: &EventSink,
) -> Result<Reached, SessionError> {
    let replicas = taken.target.replicas.max(1);
    let progress_events = events.clone();
    let pods = wait_for_agents(
        cluster,
        &taken.target,
        &taken.plan.agent_image,
        &taken.plan.token_secret,
        replicas,
        READY_TIMEOUT,
        move |line| step(&progress_events, line),
    )
    .await?;

    step(events, format!("opening {} tunnel(s)", pods.len()));
    let mut opened = Vec::new();
    for pod in &pods {
        opened.push((pod.clone(), tunnels::connect(cluster, pod, token).await?));
    }
    let Some((_, (first, _))) = opened.first() else {
        return Err(SessionError::Agent {
            what: "no agent pod is ready".into(),
            source: None,
        });
    };
    let pod_env = first
        .env()
        .await
        .map_err(|e| SessionError::agent("cannot read the pod's environment", e))?
        .vars;
    let mounts = first
        .mounts()
        .await
        .map_err(|e| SessionError::agent("cannot read the pod's volume mounts", e))?;
    Ok(Reached {
        pods,
        opened,
        pod_env,
        mounts,
    })
}
