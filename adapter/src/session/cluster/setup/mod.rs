//! Opening a cluster session, as seven phases in the order they run (each in its own
//! file, each recording the undo step of every change with the guardian before making it,
//! so a failure or a crash at any point is undone):
//!
//! 1. [`prepare`] — read the config file, connect, resolve the target; create the
//!    session's token Secret (the first change).
//! 2. [`takeover`] — swap the workload's container for the agent (Lease, restorer; the
//!    container's probes and hooks `enableFeatures` keeps: [`features`]), or join an
//!    isolation (router, clone).
//! 3. [`agents`] — wait for the agent pods, open their tunnels, read the pod's
//!    environment and mounts.
//! 4. [`running`] — start the session's own tasks: Lease heartbeat, drift watch, notices.
//! 5. [`services`] — forward the namespace's Services; build the environment layers
//!    (service links, `KubernetesLocalProcessConfig.yaml`).
//! 6. [`names`] — make the Services' names resolve (hosts modes).
//! 7. [`publish`] — supervise the tunnels, tell the user, publish for diagnostics.
//!
//! `docs/architecture.md` puts these phases in the path of a whole `launch`.

mod agents;
mod features;
mod names;
mod prepare;
mod progress;
mod publish;
mod running;
mod services;
mod takeover;

pub use names::resolve_hosts_mode;
pub(crate) use names::Names;
pub(crate) use running::Running;
pub(crate) use services::Outbound;

use super::live::ClusterSession;
use crate::session::{
    BoxFuture, BridgeSession, EventSink, Guardian, SessionBackend, SessionError, SessionRequest,
};
use prepare::Prepared;

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

/// Opens [`ClusterSession`]s.
pub struct ClusterBackend;

impl SessionBackend for ClusterBackend {
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
        })
    }
}

/// The phases, in order.
async fn open(
    request: SessionRequest,
    events: EventSink,
    guardian: &Guardian,
) -> Result<ClusterSession, SessionError> {
    progress::start_clock();
    let session = request.id.0.as_str();
    let settings = &request.settings;

    let prepared = prepare::prepare(&request, &events, guardian).await?;
    let cluster = &prepared.cluster;
    let taken = takeover::take_over(session, &prepared, settings, &events, guardian).await?;
    let reached = agents::reach(cluster, &taken, &prepared.token, &events).await?;
    let running = running::start(cluster, session, &taken, &events);
    let outbound = services::forward(
        services::ServicesInput {
            session,
            cluster,
            reached: &reached,
            container: &taken.target.container.name,
            route_as: taken.route_as.clone(),
            config_file: settings
                .config
                .as_deref()
                .zip(prepared.config_file.as_ref()),
            private_dir: &request.private_dir,
            mounts: super::env_paths::mounts_of(&taken.target.container, &taken.target.pod_spec),
        },
        &running,
        &events,
    )
    .await?;
    let names = names::resolve(
        names::NamesInput {
            session,
            namespace: &cluster.namespace,
            forwarded: &outbound.forwarded,
            external_hosts: outbound.external_hosts.clone(),
            asked: settings.hosts.unwrap_or_default(),
            env_vars_only: settings.use_kubernetes_service_environment_variables == Some(true),
            private_dir: &request.private_dir,
        },
        guardian,
        &events,
    )
    .await?;
    publish::publish(
        &request, &prepared, &taken, reached, &running, &outbound, &names,
    );
    Ok(ClusterSession::new(
        request.id.clone(),
        running,
        outbound,
        names,
        // An isolated session leaves the original pods alone: nothing to wait for after.
        taken.route_as.is_none().then(|| {
            (
                cluster.clone(),
                taken.target.kind,
                taken.target.name.clone(),
            )
        }),
    ))
}
