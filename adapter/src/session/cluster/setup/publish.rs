//! Phase 7, publish: the tunnels are handed to their supervisors (which reconnect them,
//! and give pods replaced during the session tunnels of their own), the user is told what
//! is bridged, and the session is published on its `live/<id>.sock` for
//! `kbridge diagnostics` and for launches that reuse a held session.

use super::agents::Reached;
use super::names::{hosts_mode_name, Names};
use super::progress::{notice, record_timing};
use super::running::Running;
use super::services::Outbound;
use super::takeover::TakenOver;
use super::Prepared;
use crate::env::EnvLayers;
use crate::session::cluster::connection::Cluster;
use crate::session::cluster::outbound::ForwardedService;
use crate::session::cluster::target::label_selector;
use crate::session::cluster::tunnels::{self, Agents, PortMap};
use crate::session::registry;
use crate::session::SessionRequest;
use kbridge_config::EnvVars;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Supervises the tunnels, tells the user what is bridged, and publishes the session.
pub(super) fn publish(
    request: &SessionRequest,
    prepared: &Prepared,
    taken: &TakenOver,
    reached: Reached,
    running: &Running,
    outbound: &Outbound,
    names: &Names,
) {
    let cluster = &prepared.cluster;
    supervise_tunnels(cluster, &prepared.token, taken, reached.opened, running);
    notice(
        &running.events,
        summary(cluster, taken, reached.pods.len(), outbound),
    );
    if let Some(text) = env_paths_summary(outbound) {
        notice(&running.events, text);
    }
    if let Some(text) = identity_summary(outbound) {
        notice(&running.events, text);
    }
    let view = ClusterView {
        info: registry::SessionInfo {
            id: request.id.0.clone(),
            pid: std::process::id(),
            held: request.held,
            key: registry::TargetKey {
                cluster: cluster.url.trim_end_matches('/').to_string(),
                namespace: cluster.namespace.clone(),
                target: request
                    .target
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                container: request.settings.container.clone(),
            },
            workload: taken.target.workload(),
            started: k8s_openapi::jiff::Timestamp::now().to_string(),
        },
        env: outbound.env.clone(),
        secret_names: secret_env_names(&taken.target.container),
        forwarded: outbound.forwarded.clone(),
        env_paths: outbound.env_paths.clone(),
        kept_paths: outbound.kept_paths.clone(),
        identity: outbound.identity.clone(),
        hosts_mode: hosts_mode_name(names.mode),
        hosts_file: names.hosts_file.clone(),
        inbound: taken.ports.clone(),
        agents: running.agents.clone(),
    };
    record_timing("session ready");
    let published = registry::serve(
        std::sync::Arc::new(view),
        &running.tasks,
        running.cancel.clone(),
    );
    if let Err(error) = published {
        // Diagnostics and reuse are conveniences: the session itself works without them.
        tracing::warn!(%error, "cannot publish the session for `kbridge diagnostics`");
    }
}

/// Each agent's tunnel gets a supervisor that reconnects it; pods replaced during the
/// session (evictions, node drains, crashes) get tunnels too.
fn supervise_tunnels(
    cluster: &Cluster,
    token: &str,
    taken: &TakenOver,
    opened: Vec<(
        String,
        (kbridge_protocol::AgentClient, kube::api::Portforwarder),
    )>,
    running: &Running,
) {
    let pods: std::collections::HashSet<String> =
        opened.iter().map(|(pod, _)| pod.clone()).collect();
    let tunnel_set = tunnels::TunnelSet {
        cluster: cluster.clone(),
        token: token.to_string(),
        agents: running.agents.clone(),
        ports: taken.ports.clone(),
        notices: running.notices.clone(),
        cancel: running.cancel.clone(),
        tasks: running.tasks.clone(),
        reachability: running.reachability.clone(),
    };
    for (pod, open) in opened {
        tunnel_set.supervise(pod, Some(open));
    }
    tunnel_set.follow_replaced_pods(
        pods,
        label_selector(&taken.target.selector),
        tunnels::OurAgent {
            container: taken.target.container.name.clone(),
            image: taken.plan.agent_image.clone(),
            token_secret: taken.plan.token_secret.clone(),
        },
    );
}

/// "bridged deployment/todo-api (2 replica(s)): requests to todo-api now reach …".
fn summary(cluster: &Cluster, taken: &TakenOver, replicas: usize, outbound: &Outbound) -> String {
    let target = &taken.target;
    let service_name = target
        .service
        .as_ref()
        .and_then(|s| s.metadata.name.clone())
        .unwrap_or_else(|| target.workload());
    let routes: Vec<String> = taken
        .ports
        .iter()
        .map(|(remote, local)| format!("{remote} → localhost:{local}"))
        .collect();
    format!(
        "bridged {} ({replicas} replica(s)): requests to {service_name} now reach this machine ({}); {} service(s) of namespace {} are reachable locally",
        target.workload(),
        routes.join(", "),
        outbound.forwarded.len(),
        cluster.namespace
    )
}

/// "environment paths into the pod's volumes now point at local copies: CONFIG_PATH →
/// /tmp/…/conf.yaml (volume app-config), …; kept as in the pod: …", or nothing when no
/// value is a path into a volume.
fn env_paths_summary(outbound: &Outbound) -> Option<String> {
    let rewritten: Vec<String> = outbound
        .env_paths
        .iter()
        .map(|p| {
            format!(
                "{} → {} (volume {}{})",
                p.name,
                p.local_path.display(),
                p.volume,
                if p.refreshed {
                    ", a token refreshed before it expires"
                } else {
                    ""
                }
            )
        })
        .collect();
    let kept: Vec<String> = outbound
        .kept_paths
        .iter()
        .map(|k| format!("{} ({})", k.name, k.reason))
        .collect();
    let mut parts = Vec::new();
    if !rewritten.is_empty() {
        parts.push(format!(
            "environment paths into the pod's volumes now point at local copies: {}",
            rewritten.join(", ")
        ));
    }
    if !kept.is_empty() {
        parts.push(format!("kept as in the pod: {}", kept.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// "identity endpoints reached through the agent: AWS_CONTAINER_CREDENTIALS_FULL_URI →
/// http://127.1.…/v1/credentials (169.254.170.23:80 from the pod), …", with what was kept.
fn identity_summary(outbound: &Outbound) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(line) = crate::session::cluster::identity::summary(&outbound.identity) {
        parts.push(line);
    }
    parts.extend(outbound.identity_notes.iter().cloned());
    (!parts.is_empty()).then(|| parts.join("; "))
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
    env_paths: Vec<crate::session::cluster::env_paths::EnvPath>,
    kept_paths: Vec<crate::session::cluster::env_paths::KeptPath>,
    identity: Vec<crate::session::cluster::identity::IdentityEndpoint>,
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
            "envPaths": self.env_paths,
            "keptPaths": self.kept_paths,
            "identityEndpoints": self.identity,
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
