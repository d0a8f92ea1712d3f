//! One tunnel per agent pod: a Kubernetes port-forward to the agent's control port with
//! the agent protocol over it. Each tunnel is supervised: when the port-forward drops it
//! is reopened (with backoff) while the session lives, so a flaky network costs a pause,
//! not the session. Inbound connections the agents accept are served from here too.

use super::connection::Cluster;
use super::errors::ClusterError;
use super::reachability::{Outcome, Reachability};
use super::workload::AGENT_CONTROL_PORT;
use k8s_openapi::api::core::v1::Pod;
use kbridge_protocol::{AgentClient, InboundConnection};
use kube::api::Api;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Maps a container port to the local port the developer's process listens on.
pub type PortMap = BTreeMap<u16, u16>;

/// A connected agent and the pod it runs in.
type LiveAgent = (String, Arc<AgentClient>);

/// The live agents, shared by the outbound listeners, with each tunnel's traffic.
#[derive(Clone, Default)]
pub struct Agents {
    live: Arc<Mutex<Vec<LiveAgent>>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    traffic: Arc<Mutex<BTreeMap<String, TunnelTraffic>>>,
}

/// What went through one pod's tunnel, for `kbridge diagnostics`. Bytes are counted when a
/// connection ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelTraffic {
    /// The agent's pod.
    pub pod: String,
    /// Whether the tunnel is up now.
    pub connected: bool,
    /// Times it came up (more than one: it was reconnected).
    pub connects: u64,
    /// Connections from the cluster to the local process.
    pub inbound_connections: u64,
    /// Bytes from the cluster to the local process.
    pub inbound_bytes_in: u64,
    /// Bytes from the local process back to the cluster.
    pub inbound_bytes_out: u64,
    /// Connections from the local process to cluster services.
    pub outbound_connections: u64,
    /// Bytes the local process sent to cluster services.
    pub outbound_bytes_sent: u64,
    /// Bytes cluster services sent back.
    pub outbound_bytes_received: u64,
}

impl Agents {
    /// An agent to carry the next outbound connection (round robin), with its pod.
    pub fn pick(&self) -> Option<(String, Arc<AgentClient>)> {
        let live = self.live.lock().ok()?;
        if live.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % live.len();
        Some(live[i].clone())
    }

    /// Every tunnel's traffic so far.
    pub fn traffic(&self) -> Vec<TunnelTraffic> {
        self.traffic
            .lock()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    fn count(&self, pod: &str, update: impl FnOnce(&mut TunnelTraffic)) {
        if let Ok(mut traffic) = self.traffic.lock() {
            let entry = traffic
                .entry(pod.to_string())
                .or_insert_with(|| TunnelTraffic {
                    pod: pod.to_string(),
                    ..TunnelTraffic::default()
                });
            update(entry);
        }
    }

    /// Records an outbound connection that ended.
    pub fn count_outbound(&self, pod: &str, sent: u64, received: u64) {
        self.count(pod, |t| {
            t.outbound_connections += 1;
            t.outbound_bytes_sent += sent;
            t.outbound_bytes_received += received;
        });
    }

    /// Pods with a connected agent.
    pub fn pods(&self) -> Vec<String> {
        self.live
            .lock()
            .map(|l| l.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default()
    }

    fn add(&self, pod: &str, client: Arc<AgentClient>) {
        if let Ok(mut live) = self.live.lock() {
            live.retain(|(p, _)| p != pod);
            live.push((pod.to_string(), client));
        }
        self.count(pod, |t| {
            t.connected = true;
            t.connects += 1;
        });
    }

    fn remove(&self, pod: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.retain(|(p, _)| p != pod);
        }
        self.count(pod, |t| t.connected = false);
    }
}

/// Opens the port-forward and the agent session for one pod.
pub async fn connect(
    cluster: &Cluster,
    pod: &str,
    token: &str,
) -> Result<(AgentClient, kube::api::Portforwarder), ClusterError> {
    let mut forwarder = cluster
        .api::<Pod>()
        .portforward(pod, &[AGENT_CONTROL_PORT])
        .await
        .map_err(|e| cluster.api_error(e, "create", "pods/portforward"))?;
    let stream = forwarder.take_stream(AGENT_CONTROL_PORT).ok_or_else(|| {
        ClusterError::AgentUnreachable(format!("no port-forward stream to pod {pod}"))
    })?;
    let client = AgentClient::connect(stream, token).await.map_err(|e| {
        ClusterError::AgentUnreachable(format!("cannot talk to the agent in pod {pod}: {e}"))
    })?;
    Ok((client, forwarder))
}

/// What the tunnels report to the session.
#[derive(Debug, Clone)]
pub enum TunnelNotice {
    /// Something the user should see once.
    Notice(String),
}

/// What every tunnel of a session shares.
#[derive(Clone)]
pub struct TunnelSet {
    /// The cluster the agents run in.
    pub cluster: Cluster,
    /// The session token the agents expect.
    pub token: String,
    /// The live agents (outbound connections pick from them).
    pub agents: Agents,
    /// Container port → local port, for inbound connections.
    pub ports: PortMap,
    /// Where notices for the user go.
    pub notices: tokio::sync::mpsc::UnboundedSender<TunnelNotice>,
    /// Ends every tunnel.
    pub cancel: CancellationToken,
    /// The session's tasks.
    pub tasks: TaskTracker,
    /// Where tunnel and watch failures report whether the API server answers.
    pub reachability: Reachability,
}

/// How to recognise this session's agent in a pod.
#[derive(Clone)]
pub struct OurAgent {
    /// The swapped container's name.
    pub container: String,
    /// The agent image.
    pub image: String,
    /// The Secret its token comes from.
    pub token_secret: String,
}

impl TunnelSet {
    /// Watches the pods matching `selector` and gives every new Ready pod running our agent
    /// its own tunnel: replicas replaced during the session (evictions, node drains,
    /// crashes) stay bridged. `known` pods already have one. The watch backs off while
    /// the API server does not answer (kube-runtime's default: exponential, jittered,
    /// capped) and re-lists when it does.
    pub fn follow_replaced_pods(
        &self,
        mut known: std::collections::HashSet<String>,
        selector: String,
        agent: OurAgent,
    ) {
        let set = self.clone();
        self.tasks.spawn(async move {
            use futures::StreamExt;
            use kube::runtime::{watcher::Event, WatchStreamExt};
            let api: Api<Pod> = set.cluster.api();
            let config = kube::runtime::watcher::Config::default().labels(&selector);
            let mut events = kube::runtime::watcher(api, config)
                .default_backoff()
                .boxed();
            loop {
                let item = tokio::select! {
                    _ = set.cancel.cancelled() => return,
                    next = events.next() => match next {
                        Some(item) => item,
                        None => return,
                    },
                };
                set.reachability.report(Outcome::of_watch(&item));
                let pod = match item {
                    Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::debug!(%error, "pod watch error; the watcher retries with backoff");
                        continue;
                    }
                };
                let Some(name) = pod.metadata.name.clone() else {
                    continue;
                };
                if known.contains(&name)
                    || pod.metadata.deletion_timestamp.is_some()
                    || !super::pod_wait::is_ready(&pod)
                    || !super::pod_wait::runs_our_agent(
                        &pod,
                        &agent.container,
                        &agent.image,
                        &agent.token_secret,
                    )
                {
                    continue;
                }
                tracing::info!(pod = %name, "a new agent pod joined the session");
                known.insert(name.clone());
                set.supervise(name, None);
            }
        });
    }

    /// Supervises the tunnel to `pod` until the session ends: serve, and reconnect with
    /// backoff when it drops. `first` is an already open connection (setup opened it to
    /// read the environment).
    pub fn supervise(&self, pod: String, first: Option<(AgentClient, kube::api::Portforwarder)>) {
        let set = self.clone();
        self.tasks.spawn(async move {
            let mut next = first;
            let warned = Arc::new(std::sync::atomic::AtomicBool::new(false));
            loop {
                let (client, forwarder) = match next.take() {
                    Some(open) => open,
                    None => match set.reconnect(&pod).await {
                        Some(open) => open,
                        None => return,
                    },
                };
                let client = Arc::new(client);
                set.agents.add(&pod, client.clone());
                tracing::info!(%pod, "agent tunnel up");
                if let Ok(inbound) = client.inbound() {
                    set.serve_inbound_connections(inbound, pod.clone(), warned.clone());
                }
                tokio::select! {
                    _ = set.cancel.cancelled() => {
                        set.agents.remove(&pod);
                        forwarder.abort();
                        if let Ok(client) = Arc::try_unwrap(client) {
                            client.shutdown().await;
                        }
                        return;
                    }
                    _ = client.closed() => {
                        tracing::info!(%pod, reason = ?client.close_reason(), "agent tunnel dropped; reconnecting");
                        set.agents.remove(&pod);
                        forwarder.abort();
                    }
                }
            }
        });
    }

    /// Opens `pod`'s tunnel again, retrying with capped exponential backoff; `None` when
    /// the session ends or the pod is gone for good (its successor gets its own tunnel
    /// from the pod watch). Failures are logged when they change, not per attempt.
    async fn reconnect(&self, pod: &str) -> Option<(AgentClient, kube::api::Portforwarder)> {
        let mut backoff = RECONNECT_FIRST;
        let mut last_error = String::new();
        loop {
            let result = tokio::select! {
                _ = self.cancel.cancelled() => return None,
                result = connect(&self.cluster, pod, &self.token) => result,
            };
            self.reachability.report(Outcome::of_cluster(&result));
            let error = match result {
                Ok(open) => return Some(open),
                Err(error) => error,
            };
            if !self.reachability.is_unreachable() {
                if let Ok(None) = self.cluster.get_opt::<Pod>(pod).await {
                    tracing::info!(%pod, "pod is gone; its tunnel ends");
                    self.agents.remove(pod);
                    return None;
                }
            }
            let text = error.to_string();
            if text != last_error {
                tracing::warn!(%pod, error = %text, "agent tunnel down; retrying with backoff");
                last_error = text;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RECONNECT_MAX);
        }
    }

    /// Serves the connections `pod`'s agent accepts, until the tunnel or session ends.
    fn serve_inbound_connections(
        &self,
        mut inbound: kbridge_protocol::Inbound,
        pod: String,
        warned: Arc<std::sync::atomic::AtomicBool>,
    ) {
        let set = self.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = set.cancel.cancelled() => return,
                    next = inbound.next() => match next {
                        Some(connection) => {
                            set.tasks.spawn(serve_inbound(
                                connection,
                                set.ports.clone(),
                                set.notices.clone(),
                                warned.clone(),
                                (set.agents.clone(), pod.clone()),
                            ));
                        }
                        None => return,
                    }
                }
            }
        });
    }
}

/// The first pause before reopening a dropped tunnel; it doubles per failure up to
/// [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(200);
/// The longest pause between attempts to reopen a tunnel.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Connects an inbound connection to the local process. When nothing listens there the
/// caller's connection is reset at once, and the user is told (once per tunnel).
async fn serve_inbound(
    connection: InboundConnection,
    ports: PortMap,
    notices: tokio::sync::mpsc::UnboundedSender<TunnelNotice>,
    warned: Arc<std::sync::atomic::AtomicBool>,
    (agents, pod): (Agents, String),
) {
    let InboundConnection {
        port,
        peer,
        mut stream,
    } = connection;
    let local = ports.get(&port).copied().unwrap_or(port);
    match tokio::net::TcpStream::connect(("127.0.0.1", local)).await {
        Ok(mut socket) => {
            let _ = socket.set_nodelay(true);
            match tokio::io::copy_bidirectional(&mut stream, &mut socket).await {
                Ok((to_local, from_local)) => agents.count(&pod, |t| {
                    t.inbound_connections += 1;
                    t.inbound_bytes_in += to_local;
                    t.inbound_bytes_out += from_local;
                }),
                Err(error) => {
                    agents.count(&pod, |t| t.inbound_connections += 1);
                    tracing::debug!(%peer, port, %error, "inbound connection ended with an error");
                }
            }
        }
        Err(error) => {
            if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                let _ = notices.send(TunnelNotice::Notice(format!(
                    "a request for port {port} came in from {peer}, but nothing listens on localhost:{local} ({error}); start your program or fix `bridge.ports`"
                )));
            }
            // Dropping the stream resets the caller's connection.
        }
    }
}
