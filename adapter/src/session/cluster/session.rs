//! The cluster session: everything of DESIGN §5 put together behind the
//! [`SessionBackend`] the DAP proxy and the CLI use. Each change to the cluster or the
//! machine is recorded with the guardian before it is made, so any failure or crash —
//! here or later — is undone.

use super::addresses::AddressBook;
use super::config_file;
use super::connection::Cluster;
use super::drift;
use super::errors::ClusterError;
use super::hosts::{self, HostsEntry};
use super::isolation;
use super::lease;
use super::outbound::{self, ForwardedService};
use super::reachability::{Outcome, Reachability};
use super::restorer;
use super::rollout::wait_for_agents;
use super::settle;
use super::target::{ResolvedTarget, WorkloadKind};
use super::tunnels::{self, Agents, PortMap, TunnelNotice};
use super::workload::{self, SwapPlan, TOKEN_KEY};
use crate::env::EnvLayers;
use crate::session::local::create_private_dir;
use crate::session::registry;
use crate::session::{
    BoxFuture, BridgeSession, EventSink, Guardian, SessionError, SessionEvent, SessionId,
    SessionRequest, Settled, UndoStep,
};
use k8s_openapi::api::core::v1::{Secret, Service};
use kbridge_config::local_process::LocalProcessConfig;
use kbridge_config::{EnvVars, HostsMode, IsolateAs, PortMapping};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The agent image kbridge runs unless told otherwise.
pub const DEFAULT_AGENT_IMAGE: &str = concat!("ghcr.io/kbridge/agent:", env!("CARGO_PKG_VERSION"));

/// The agent image a session runs: `--agent-image` / `bridge.agentImage` when given, else
/// `KBRIDGE_AGENT_IMAGE` (a mirror, a private registry, a test cluster's registry), else
/// [`DEFAULT_AGENT_IMAGE`].
pub fn agent_image(requested: Option<&str>) -> String {
    requested
        .map(str::to_string)
        .or_else(|| {
            std::env::var("KBRIDGE_AGENT_IMAGE")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_AGENT_IMAGE.to_string())
}
/// How long agent pods may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Opens [`ClusterSession`]s.
pub struct ClusterBackend;

/// A live cluster session.
pub struct ClusterSession {
    id: SessionId,
    env: EnvLayers,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Services reachable locally.
    pub forwarded: Vec<ForwardedService>,
    /// Hosts entries for them.
    pub hosts: Vec<HostsEntry>,
    hosts_file: Option<PathBuf>,
    /// The workload whose template the session swapped (not for an isolated session,
    /// which leaves the original pods alone): after teardown, [`BridgeSession::settle`]
    /// waits for its rollout.
    swapped: Option<(Cluster, WorkloadKind, String)>,
}

impl super::super::SessionBackend for ClusterBackend {
    fn open<'a>(
        &'a self,
        request: SessionRequest,
        events: EventSink,
        guardian: &'a Guardian,
    ) -> BoxFuture<'a, Result<Box<dyn BridgeSession>, SessionError>> {
        Box::pin(async move {
            open(request, events, guardian)
                .await
                .map(|s| Box::new(s) as Box<dyn BridgeSession>)
                .map_err(|e| SessionError::Unsupported(e.to_string()))
        })
    }
}

fn step(events: &EventSink, text: impl Into<String>) {
    let text = text.into();
    record_timing(&text);
    let _ = events.send(SessionEvent::Step(text));
}

/// When this session's setup began, for the phase timings.
static SETUP_STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// With `KBRIDGE_TIMINGS=FILE`, appends `{"ms": …, "step": …}` for each setup step (ms since
/// setup began), so a benchmark can break setup time down by phase.
fn record_timing(step: &str) {
    let Some(path) = std::env::var_os("KBRIDGE_TIMINGS") else {
        return;
    };
    let ms = SETUP_STARTED
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
        * 1000.0;
    let line = format!("{}\n", serde_json::json!({"ms": ms, "step": step}));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(error) = written {
        tracing::warn!(%error, "cannot write KBRIDGE_TIMINGS");
    }
}

fn owner() -> String {
    let user = user();
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Maps container ports to local ports from `bridge.ports`.
fn port_map(target: &ResolvedTarget, ports: &[PortMapping]) -> Result<PortMap, ClusterError> {
    let container_ports: Vec<u16> = target.ports().iter().map(|p| p.port).collect();
    let mut map: PortMap = container_ports.iter().map(|p| (*p, *p)).collect();
    for mapping in ports {
        match *mapping {
            PortMapping::Mapped { remote, local } => {
                map.insert(remote, local);
            }
            PortMapping::Local(local) => match container_ports.as_slice() {
                [only] => {
                    map.insert(*only, local);
                }
                _ => {
                    return Err(ClusterError::Unsupported(format!(
                        "container '{}' has {} ports ({}); map them explicitly: \"ports\": [{{\"remote\": {}, \"local\": {local}}}]",
                        target.container.name,
                        container_ports.len(),
                        container_ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
                        container_ports.first().copied().unwrap_or(80)
                    )))
                }
            },
        }
    }
    Ok(map)
}

async fn open(
    request: SessionRequest,
    events: EventSink,
    guardian: &Guardian,
) -> Result<ClusterSession, Box<dyn std::error::Error + Send + Sync>> {
    SETUP_STARTED.get_or_init(std::time::Instant::now);
    let settings = &request.settings;
    let Some(target_spec) = &request.target else {
        return Err("no target".into());
    };
    guardian
        .record(UndoStep::RemoveDir {
            path: request.private_dir.clone(),
        })
        .await?;
    create_private_dir(&request.private_dir)?;

    // Read the config file first: a mistake there should stop us before the cluster changes.
    let config_file = match &settings.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            Some(if kbridge_config::azds_env::is_azds_env(path) {
                kbridge_config::azds_env::parse_azds_env(&text, path)?
            } else {
                LocalProcessConfig::parse(&text, path)?
            })
        }
        None => None,
    };

    step(&events, "connecting to the cluster");
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let cluster = Cluster::connect_with(
        kubeconfig.as_deref(),
        settings.context.as_deref(),
        settings.namespace.as_deref(),
    )
    .await?;
    step(
        &events,
        format!("resolving {target_spec} in namespace {}", cluster.namespace),
    );
    // Through an isolated Service's saved selector, so a session never swaps the router.
    let target =
        isolation::resolve_target(&cluster, target_spec, settings.container.as_deref()).await?;
    let session = request.id.0.clone();
    let token = kbridge_protocol::handshake::generate_token()
        .map_err(|e| format!("no randomness for the session token: {e}"))?;

    let secret_name = workload::session_secret_name(&session);
    guardian
        .record(UndoStep::DeleteObject {
            kubeconfig: kubeconfig.clone(),
            context: settings.context.clone(),
            namespace: cluster.namespace.clone(),
            kind: "secret".into(),
            name: secret_name.clone(),
        })
        .await?;
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".into(),
                "kbridge".into(),
            )])),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), token.clone())])),
        ..Default::default()
    };
    let secret = secrets.create(&PostParams::default(), &secret).await?;

    let agent_image = agent_image(settings.agent_image.as_deref());
    let idle_restore_secs = settings
        .idle_restore_seconds
        .or_else(|| {
            std::env::var("KBRIDGE_IDLE_RESTORE_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(60);
    let takeover = Takeover {
        cluster: &cluster,
        guardian,
        events: &events,
        kubeconfig: kubeconfig.clone(),
        context: settings.context.clone(),
        plan: SwapPlan {
            session: session.clone(),
            owner: owner(),
            agent_image: agent_image.clone(),
            token_secret: secret_name,
            idle_restore_secs,
        },
        secret: &secret,
    };
    // The route name of an isolated session; outbound requests carry it too.
    let route_as: Option<String> = match &settings.isolate_as {
        None | Some(IsolateAs::Generate(false)) => None,
        Some(IsolateAs::Name(name)) => Some(name.clone()),
        Some(_) => Some(isolation::generated_name(&user())),
    };
    let (target, ports, lease) = match &route_as {
        None => {
            takeover
                .swap(
                    target,
                    target_spec,
                    settings.container.as_deref(),
                    &settings.ports,
                )
                .await?
        }
        Some(route_as) => takeover.isolate(target, route_as, &settings.ports).await?,
    };
    let plan = takeover.plan;

    let replicas = target.replicas.max(1);
    let progress_events = events.clone();
    let pods = wait_for_agents(
        &cluster,
        &target,
        &agent_image,
        &plan.token_secret,
        replicas,
        READY_TIMEOUT,
        move |line| step(&progress_events, line),
    )
    .await?;

    step(&events, format!("opening {} tunnel(s)", pods.len()));
    let mut opened = Vec::new();
    for pod in &pods {
        opened.push((pod.clone(), tunnels::connect(&cluster, pod, &token).await?));
    }
    let first = &opened[0].1 .0;
    let pod_env = first
        .env()
        .await
        .map_err(|e| format!("cannot read the pod's environment: {e}"))?
        .vars;
    let mounts = first
        .mounts()
        .await
        .map_err(|e| format!("cannot read the pod's volume mounts: {e}"))?;

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let reachability = Reachability::new(events.clone(), target.workload(), idle_restore_secs);
    if let Some(lease) = lease {
        // Heartbeats come from kbridge itself, never from the debuggee: a process paused
        // on a breakpoint keeps its session.
        let (cluster, session, cancel) = (cluster.clone(), session.clone(), cancel.clone());
        let reachability = reachability.clone();
        tasks.spawn(async move {
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(lease::RENEW_EVERY) => {}
                }
                let renewed = lease::renew(&cluster, &lease, &session).await;
                reachability.report(Outcome::of_cluster(&renewed));
                match renewed {
                    Err(error) if !failing && !reachability.is_unreachable() => {
                        tracing::warn!(%error, "cannot renew the session's lease");
                        failing = true;
                    }
                    Err(_) => {}
                    Ok(()) => failing = false,
                }
            }
        });
    }
    if route_as.is_none() {
        // Someone else changing the workload meanwhile (a deploy, a GitOps sync) is told
        // at once; teardown then keeps their changes.
        let agent = serde_json::to_value(workload::agent_container(&target.container, &plan))
            .unwrap_or_default();
        drift::watch(
            &cluster,
            &target,
            agent,
            events.clone(),
            &tasks,
            cancel.clone(),
        );
    }
    let agents = Agents::default();
    let (notice_tx, mut notice_rx) = tokio::sync::mpsc::unbounded_channel::<TunnelNotice>();
    {
        let events = events.clone();
        tasks.spawn(async move {
            while let Some(TunnelNotice::Notice(text)) = notice_rx.recv().await {
                let _ = events.send(SessionEvent::Notice(text));
            }
        });
    }

    step(&events, "forwarding the namespace's services");
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut forwarder = outbound::Forwarder {
        book: AddressBook::seeded(&session),
        agents: agents.clone(),
        tasks: tasks.clone(),
        notices: notice_tx.clone(),
        cancel: cancel.clone(),
        route_as: route_as.clone(),
    };
    let mut forwarded = Vec::new();
    let mut links = EnvVars::new();
    for service in services.list(&ListParams::default()).await?.items {
        let ports = outbound::service_ports(&service);
        if let Some(f) = forwarder.forward(&service, &cluster.namespace).await {
            links.overlay(&f.env(&ports));
            forwarded.push(f);
        }
    }

    // The pod's environment, its service links pointing at the local endpoints.
    let mut pod_layer = EnvVars::new();
    for (name, value) in &pod_env {
        pod_layer.set(name.clone(), Some(value.clone()));
    }
    pod_layer.overlay(&links);

    // KubernetesLocalProcessConfig.yaml: volumes to download, env entries with tokens.
    let (config_layer, external_hosts) = match &config_file {
        Some(config) => {
            let at = config_file::Context {
                cluster: &cluster,
                agent: first,
                mounts: &mounts,
                container: &target.container.name,
                private_dir: &request.private_dir,
            };
            let applied = config_file::apply(config, &at, &mut forwarder, &mut forwarded, |line| {
                step(&events, line)
            })
            .await?;
            (applied.env, applied.external_hosts)
        }
        None => (EnvVars::new(), Vec::new()),
    };

    let hosts_entries: Vec<HostsEntry> = forwarded
        .iter()
        .map(|f| {
            let mut entry = f.hosts_entry();
            if f.namespace != cluster.namespace {
                // The bare name belongs to this namespace's Service of that name.
                entry.names.retain(|n| n != &f.name);
            }
            entry
        })
        .chain(external_hosts)
        .collect();
    let asked = settings.hosts.unwrap_or_default();
    let mut mode = resolve_hosts_mode(
        asked,
        settings.use_kubernetes_service_environment_variables == Some(true),
    );
    let hosts_file = match apply_hosts_mode(
        mode,
        &hosts_entries,
        &request.private_dir,
        &session,
        guardian,
    )
    .await
    {
        // `auto` chose the private hosts file, which cannot be written (a full disk):
        // the session still works through the environment variables.
        Err(error) if asked == HostsMode::Auto && mode == HostsMode::Namespace => {
            mode = HostsMode::Off;
            let _ = events.send(SessionEvent::Notice(format!(
                "{error}; cluster names do not resolve on this machine in this session (hosts mode `off`): use the services' environment variables"
            )));
            None
        }
        other => other?,
    };
    step(
        &events,
        format!(
            "cluster names resolve through hosts mode `{}`",
            hosts_mode_name(mode)
        ),
    );

    let tunnel_set = tunnels::TunnelSet {
        cluster: cluster.clone(),
        token: token.clone(),
        agents: agents.clone(),
        ports: ports.clone(),
        notices: notice_tx.clone(),
        cancel: cancel.clone(),
        tasks: tasks.clone(),
        reachability,
    };
    for (pod, open) in opened {
        tunnel_set.supervise(pod, Some(open));
    }
    // Pods replaced during the session (evictions, node drains, crashes) get tunnels too.
    tunnel_set.follow_replaced_pods(
        pods.iter().cloned().collect(),
        super::target::label_selector(&target.selector),
        tunnels::OurAgent {
            container: target.container.name.clone(),
            image: agent_image.clone(),
            token_secret: plan.token_secret.clone(),
        },
    );
    let service_name = target
        .service
        .as_ref()
        .and_then(|s| s.metadata.name.clone())
        .unwrap_or_else(|| target.workload());
    let routes: Vec<String> = ports
        .iter()
        .map(|(remote, local)| format!("{remote} → localhost:{local}"))
        .collect();
    let _ = events.send(SessionEvent::Notice(format!(
        "bridged {} ({} replica(s)): requests to {service_name} now reach this machine ({}); {} service(s) of namespace {} are reachable locally",
        target.workload(),
        pods.len(),
        routes.join(", "),
        forwarded.len(),
        cluster.namespace
    )));
    let env = EnvLayers {
        pod: pod_layer,
        config_file: config_layer,
        ..EnvLayers::default()
    };
    let view = ClusterView {
        info: registry::SessionInfo {
            id: session.clone(),
            pid: std::process::id(),
            held: request.held,
            key: registry::TargetKey {
                cluster: cluster.url.trim_end_matches('/').to_string(),
                namespace: cluster.namespace.clone(),
                target: target_spec.to_string(),
                container: settings.container.clone(),
            },
            workload: target.workload(),
            started: k8s_openapi::jiff::Timestamp::now().to_string(),
        },
        env: env.clone(),
        secret_names: secret_env_names(&target.container),
        forwarded: forwarded.clone(),
        hosts_mode: hosts_mode_name(mode),
        hosts_file: hosts_file.clone(),
        inbound: ports.clone(),
        agents: agents.clone(),
    };
    record_timing("session ready");
    if let Err(error) = registry::serve(std::sync::Arc::new(view), &tasks, cancel.clone()) {
        // Diagnostics and reuse are conveniences: the session itself works without them.
        tracing::warn!(%error, "cannot publish the session for `kbridge diagnostics`");
    }
    Ok(ClusterSession {
        id: request.id,
        env,
        cancel,
        tasks,
        forwarded,
        hosts: hosts_entries,
        hosts_file,
        swapped: route_as
            .is_none()
            .then(|| (cluster.clone(), target.kind, target.name.clone())),
    })
}

/// Variables whose values come from Secrets (`secretKeyRef`), redacted in diagnostics along
/// with any whose name looks secret.
fn secret_env_names(container: &k8s_openapi::api::core::v1::Container) -> BTreeSet<String> {
    container
        .env
        .iter()
        .flatten()
        .filter(|e| {
            e.value_from
                .as_ref()
                .is_some_and(|v| v.secret_key_ref.is_some())
        })
        .map(|e| e.name.clone())
        .collect()
}

/// What a live cluster session shows to `kbridge diagnostics` and hands to reusing launches.
struct ClusterView {
    info: registry::SessionInfo,
    env: EnvLayers,
    secret_names: BTreeSet<String>,
    forwarded: Vec<ForwardedService>,
    hosts_mode: &'static str,
    hosts_file: Option<PathBuf>,
    inbound: PortMap,
    agents: Agents,
}

impl registry::SessionView for ClusterView {
    fn info(&self) -> registry::SessionInfo {
        self.info.clone()
    }

    fn describe(&self) -> serde_json::Value {
        let env: serde_json::Map<String, serde_json::Value> = self
            .env
            .merged()
            .iter()
            .filter_map(|(name, value)| {
                let value = value?;
                Some((
                    name.to_string(),
                    registry::redact(name, value, &self.secret_names).into(),
                ))
            })
            .collect();
        let services: Vec<serde_json::Value> = self
            .forwarded
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name,
                    "namespace": f.namespace,
                    "address": f.address.to_string(),
                    "ports": f.ports.iter().map(|(remote, local)| serde_json::json!({"service": remote, "local": local})).collect::<Vec<_>>(),
                    "names": f.hosts_entry().names,
                })
            })
            .collect();
        serde_json::json!({
            "session": self.info,
            "hostsMode": self.hosts_mode,
            "hostsFile": self.hosts_file,
            "env": env,
            "services": services,
            "inbound": self.inbound.iter().map(|(remote, local)| serde_json::json!({"containerPort": remote, "local": local})).collect::<Vec<_>>(),
            "tunnels": self.agents.traffic(),
        })
    }

    fn attach(&self) -> registry::Attachment {
        let list = |vars: &EnvVars| {
            vars.iter()
                .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
                .collect()
        };
        registry::Attachment {
            pod_env: list(&self.env.pod),
            config_env: list(&self.env.config_file),
            hosts_file: self.hosts_file.clone(),
        }
    }
}

/// What taking the workload over needs: the cluster, the guardian to record each change
/// with before making it, and the swap plan shared by both ways of taking over.
struct Takeover<'a> {
    cluster: &'a Cluster,
    guardian: &'a Guardian,
    events: &'a EventSink,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    plan: SwapPlan,
    secret: &'a Secret,
}

impl Takeover<'_> {
    fn delete_step(&self, kind: &str, name: &str) -> UndoStep {
        UndoStep::DeleteObject {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.cluster.namespace.clone(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    /// The whole workload: its Lease taken (a stale holder restored first), the target
    /// container swapped for the agent, the in-cluster restorer started.
    async fn swap(
        &self,
        mut target: ResolvedTarget,
        target_spec: &kbridge_config::Target,
        container: Option<&str>,
        port_mappings: &[PortMapping],
    ) -> Result<(ResolvedTarget, PortMap, Option<String>), Box<dyn std::error::Error + Send + Sync>>
    {
        let (cluster, events, session) = (self.cluster, self.events, &self.plan.session);
        // Exclusive use: a live holder is refused (by the annotations check in the swap),
        // a stale one — its session is gone — is restored first.
        let lease = lease::lease_name(target.kind.name(), &target.name);
        match lease::holder(cluster, &lease).await? {
            lease::Holder::Stale { session: gone } => {
                step(
                    events,
                    format!("session {gone} holding {} is gone (its lease expired); restoring the workload first", target.workload()),
                );
                workload::restore(cluster, target.kind, &target.name, Some(&gone)).await?;
                // What we resolved was the gone session's agent; the real container is back now.
                target = isolation::resolve_target(cluster, target_spec, container).await?;
            }
            lease::Holder::Alive { session: other } if &other != session => {
                return Err(lease::in_use(&target.workload(), &other, &cluster.namespace).into());
            }
            _ => {}
        }
        // Checked before anything changes: a bad mapping must not cost a rollout.
        let ports = port_map(&target, port_mappings)?;
        self.guardian
            .record(self.delete_step("lease", &lease))
            .await?;
        lease::acquire(cluster, &lease, session, &target.workload()).await?;
        self.guardian
            .record(UndoStep::RestoreWorkload {
                kubeconfig: self.kubeconfig.clone(),
                context: self.context.clone(),
                namespace: cluster.namespace.clone(),
                kind: target.kind.name().into(),
                name: target.name.clone(),
                session: session.clone(),
            })
            .await?;
        step(
            events,
            format!(
                "replacing container '{}' of {} with the kbridge agent",
                target.container.name,
                target.workload()
            ),
        );
        workload::swap(cluster, &target, &self.plan).await?;
        if restorer_enabled() {
            // Created after the swap: a restorer that finds no session annotation ends at once.
            let restorer = restorer::RestorerPlan {
                session: session.clone(),
                kind: target.kind,
                name: target.name.clone(),
                agent_selector: if target.kind == WorkloadKind::Pod {
                    String::new()
                } else {
                    super::target::label_selector(&target.selector)
                },
                image: self.plan.agent_image.clone(),
                idle_restore_secs: self.plan.idle_restore_secs,
                lease: lease.clone(),
            };
            let name = restorer::restorer_name(session);
            for kind in ["serviceaccount", "role", "rolebinding", "job"] {
                self.guardian.record(self.delete_step(kind, &name)).await?;
            }
            step(events, "starting the in-cluster restorer");
            restorer::create(cluster, &restorer, self.secret).await?;
        }
        Ok((target, ports, Some(lease)))
    }

    /// Only this session's requests (DESIGN §9): the original workload keeps serving, a
    /// one-replica clone runs the agent, the shared router sends requests routed as
    /// `route_as` to it. Returns the clone as the target the rest of the session works on.
    async fn isolate(
        &self,
        target: ResolvedTarget,
        route_as: &str,
        port_mappings: &[PortMapping],
    ) -> Result<(ResolvedTarget, PortMap, Option<String>), Box<dyn std::error::Error + Send + Sync>>
    {
        let (cluster, events, session) = (self.cluster, self.events, &self.plan.session);
        let ports = port_map(&target, port_mappings)?;
        let service = isolation::fronting_service(cluster, &target).await?;
        self.guardian
            .record(UndoStep::LeaveIsolation {
                kubeconfig: self.kubeconfig.clone(),
                context: self.context.clone(),
                namespace: cluster.namespace.clone(),
                service: service.clone(),
                route_as: route_as.to_string(),
                session: session.clone(),
            })
            .await?;
        step(
            events,
            format!(
                "isolating service {service} as '{route_as}': starting the router and a clone of {} with the kbridge agent",
                target.workload()
            ),
        );
        let joined = isolation::join(
            cluster,
            &target,
            route_as,
            &isolation::IsolationPlan {
                session: session.clone(),
                owner: self.plan.owner.clone(),
                agent_image: self.plan.agent_image.clone(),
                token_secret: self.plan.token_secret.clone(),
                idle_restore_secs: self.plan.idle_restore_secs,
                ready_timeout: READY_TIMEOUT,
            },
        )
        .await?;
        if restorer_enabled() {
            // Created after the join: a restorer that finds the route gone ends at once.
            // Orphaned, it takes this session's route off the Service (the last one out
            // puts the Service back) and deletes the Secret, and so the clone.
            let restorer = restorer::IsolationRestorerPlan {
                session: session.clone(),
                service: joined.service.clone(),
                route_as: joined.route_as.clone(),
                agent_selector: super::target::label_selector(&joined.clone_selector),
                image: self.plan.agent_image.clone(),
                idle_restore_secs: self.plan.idle_restore_secs,
            };
            let name = restorer::restorer_name(session);
            for kind in ["serviceaccount", "role", "rolebinding", "job"] {
                self.guardian.record(self.delete_step(kind, &name)).await?;
            }
            step(events, "starting the in-cluster restorer");
            restorer::create_for_isolation(cluster, &restorer, self.secret).await?;
        }
        let _ = events.send(SessionEvent::Notice(joined.summary()));
        // Isolated sessions share the workload: no Lease to hold.
        Ok((joined.clone_target(&target), ports, None))
    }
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "someone".into())
}

/// The in-cluster restorer runs unless `KBRIDGE_RESTORER=off` (for clusters where a session
/// may not create Roles; the guardian and `kbridge restore` remain).
fn restorer_enabled() -> bool {
    !matches!(
        std::env::var("KBRIDGE_RESTORER").as_deref(),
        Ok("off" | "0" | "false")
    )
}

/// Makes the cluster's names resolve locally: in `namespace` mode a private hosts file for
/// the debugger (returned), in `system` mode a marked block in /etc/hosts (recorded with the
/// guardian first; blocks of crashed sessions removed on the way).
async fn apply_hosts_mode(
    mode: HostsMode,
    entries: &[HostsEntry],
    private_dir: &Path,
    session: &str,
    guardian: &Guardian,
) -> Result<Option<PathBuf>, Box<dyn std::error::Error + Send + Sync>> {
    match mode {
        HostsMode::Namespace => {
            // The debugger's private /etc/hosts: the machine's, plus the session's block.
            let path = private_dir.join("hosts");
            let system = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            let base = hosts::without_blocks(&system, |_| true);
            std::fs::write(&path, hosts::with_block(&base, session, entries)).map_err(|e| {
                format!(
                    "cannot write the session's hosts file {} ({e}); free space there or point TMPDIR elsewhere",
                    path.display()
                )
            })?;
            Ok(Some(path))
        }
        HostsMode::System => {
            let path = PathBuf::from("/etc/hosts");
            guardian
                .record(UndoStep::RemoveHostsBlock {
                    path: path.clone(),
                    session: session.to_string(),
                })
                .await?;
            let text = std::fs::read_to_string(&path)?;
            let cleaned = hosts::without_blocks(&text, |s| s != session && !session_alive(s));
            std::fs::write(&path, hosts::with_block(&cleaned, session, entries)).map_err(|e| {
                format!(
                    "cannot write {} ({e}); run with admin rights or use \"hosts\": \"namespace\"",
                    path.display()
                )
            })?;
            Ok(None)
        }
        HostsMode::Off | HostsMode::Auto => Ok(None),
    }
}

fn hosts_mode_name(mode: HostsMode) -> &'static str {
    match mode {
        HostsMode::Auto => "auto",
        HostsMode::Namespace => "namespace",
        HostsMode::System => "system",
        HostsMode::Off => "off",
    }
}

/// `auto` becomes `namespace` where a private mount namespace can be made, else `system`
/// where the hosts file is writable, else `off`.
pub fn resolve_hosts_mode(asked: HostsMode, env_vars_only: bool) -> HostsMode {
    if env_vars_only {
        return HostsMode::Off;
    }
    match asked {
        HostsMode::Auto if namespace_supported() => HostsMode::Namespace,
        HostsMode::Auto if hosts_writable() => HostsMode::System,
        HostsMode::Auto => HostsMode::Off,
        other => other,
    }
}

/// Tries `kbridge ns-exec` once: user namespaces can be disabled by the kernel or a sandbox.
fn namespace_supported() -> bool {
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    std::process::Command::new(exe)
        .args([
            "ns-exec",
            "--hosts",
            "/etc/hosts",
            "--",
            "echo",
            "kbridge-ns-ok",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"kbridge-ns-ok\n")
}

fn hosts_writable() -> bool {
    std::fs::OpenOptions::new()
        .append(true)
        .open("/etc/hosts")
        .is_ok()
}

/// Whether the session that wrote a hosts block still runs: its id ends with its pid.
fn session_alive(session: &str) -> bool {
    session
        .rsplit('-')
        .next()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// A session dropped without `close` (a launch that failed after the cluster side was up)
/// still stops its tasks: the lease heartbeat, tunnels and forwarders end with it. The
/// guardian undoes the cluster changes either way.
impl Drop for ClusterSession {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl BridgeSession for ClusterSession {
    fn id(&self) -> &SessionId {
        &self.id
    }

    fn environment(&self) -> EnvLayers {
        self.env.clone()
    }

    fn hosts_file(&self) -> Option<PathBuf> {
        self.hosts_file.clone()
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.cancel.cancel();
            self.tasks.close();
            let _ = tokio::time::timeout(Duration::from_secs(3), self.tasks.wait()).await;
        })
    }

    fn settle<'a>(
        &'a self,
        bound: Duration,
        progress: &'a (dyn Fn(String) + Send + Sync),
    ) -> BoxFuture<'a, Settled> {
        Box::pin(async move {
            let Some((cluster, kind, name)) = &self.swapped else {
                return Settled::Nothing;
            };
            let workload = format!("{}/{name}", kind.name());
            let report = |r: settle::Rollback| {
                progress(format!(
                    "waiting for {workload}'s own pods: {}/{} ready",
                    r.ready, r.wanted
                ))
            };
            match settle::wait_until_serving(cluster, *kind, name, bound, &report).await {
                Ok(()) => Settled::Serving(workload),
                Err(not_yet) => Settled::NotYet(format!(
                    "{workload} is back to its own pod template, but {not_yet}; see `kubectl -n {} rollout status {workload}`",
                    cluster.namespace
                )),
            }
        })
    }
}
