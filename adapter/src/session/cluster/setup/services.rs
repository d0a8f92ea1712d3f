//! Phase 5, services: every Service of the namespace gets a local address that tunnels to
//! it through the agents; the pod's environment is layered with service-link variables
//! pointing there; `KubernetesLocalProcessConfig.yaml`, when given, downloads its volumes
//! and adds its `env` entries (forwarding the Services of other namespaces it names);
//! variables whose values are paths into the container's volumes point at local copies,
//! projected tokens among them kept fresh (`session/cluster/env_paths.rs`); identity
//! endpoints the pod's environment names (or `ManagedIdentity` asks for) get local
//! addresses the agents carry into the pod's network (`session/cluster/identity/`).

use super::agents::Reached;
use super::progress::step;
use super::running::Running;
use crate::env::EnvLayers;
use crate::session::cluster::addresses::AddressBook;
use crate::session::cluster::config_file;
use crate::session::cluster::connection::Cluster;
use crate::session::cluster::env_paths::{self, ContainerMount, EnvPath, KeptPath};
use crate::session::cluster::identity::{self, IdentityEndpoint};
use crate::session::cluster::outbound::{self, ForwardedService};
use crate::session::cluster::token_refresh::{self, TokenFile};
use crate::session::hosts_file::HostsEntry;
use crate::session::{EventSink, SessionError};
use k8s_openapi::api::core::v1::Service;
use kbridge_config::local_process::{Feature, LocalProcessConfig};
use kbridge_config::EnvVars;
use kube::api::ListParams;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the local process reaches, and the environment that tells it where.
pub(crate) struct Outbound {
    /// Services reachable locally.
    pub forwarded: Vec<ForwardedService>,
    /// The pod's and the config file's environment layers.
    pub env: EnvLayers,
    /// Hosts entries for the external endpoints the config file names.
    pub external_hosts: Vec<HostsEntry>,
    /// Variables whose values were paths into the container's volumes, now local copies.
    pub env_paths: Vec<EnvPath>,
    /// Variables with such paths left as the pod has them, and why.
    pub kept_paths: Vec<KeptPath>,
    /// Identity endpoint variables pointing at local addresses now.
    pub identity: Vec<IdentityEndpoint>,
    /// Identity variables left as the pod has them, or endpoints not reachable, with why.
    pub identity_notes: Vec<String>,
}

/// What the services phase works with.
pub(super) struct ServicesInput<'a> {
    /// The session id (it seeds the local addresses).
    pub session: &'a str,
    /// The cluster.
    pub cluster: &'a Cluster,
    /// The agents, reached.
    pub reached: &'a Reached,
    /// The target container's name.
    pub container: &'a str,
    /// An isolated session's route name, carried by its outbound requests.
    pub route_as: Option<String>,
    /// `bridge.config`, its name and contents.
    pub config_file: Option<(&'a str, &'a LocalProcessConfig)>,
    /// The session's private directory (downloaded volumes go there).
    pub private_dir: &'a Path,
    /// The target container's volume mounts, with what backs them.
    pub mounts: Vec<ContainerMount>,
}

/// Forwards the namespace's Services and builds the environment.
pub(super) async fn forward(
    input: ServicesInput<'_>,
    running: &Running,
    events: &EventSink,
) -> Result<Outbound, SessionError> {
    let cluster = input.cluster;
    step(events, "forwarding the namespace's services");
    let mut forwarder = outbound::Forwarder {
        book: AddressBook::seeded(input.session),
        agents: running.agents.clone(),
        tasks: running.tasks.clone(),
        notices: running.notices.clone(),
        cancel: running.cancel.clone(),
        route_as: input.route_as.clone(),
    };
    let mut forwarded = Vec::new();
    let mut links = EnvVars::new();
    for service in cluster.list::<Service>(&ListParams::default()).await? {
        let ports = outbound::service_ports(&service);
        if let Some(f) = forwarder.forward(&service, &cluster.namespace).await {
            links.overlay(&f.env(&ports));
            forwarded.push(f);
        }
    }

    // The pod's environment, its service links pointing at the local endpoints.
    let mut pod_layer = EnvVars::new();
    for (name, value) in &input.reached.pod_env {
        pod_layer.set(name.clone(), Some(value.clone()));
    }
    pod_layer.overlay(&links);

    // KubernetesLocalProcessConfig.yaml: volumes to download, env entries with tokens.
    let (config_layer, external_hosts, downloaded) = match input.config_file {
        Some((file, config)) => {
            let at = config_file::Context {
                file,
                cluster,
                agent: input.reached.first(),
                mounts: &input.reached.mounts,
                container: input.container,
                private_dir: input.private_dir,
            };
            let applied = config_file::apply(config, &at, &mut forwarder, &mut forwarded, |line| {
                step(events, line)
            })
            .await?;
            (applied.env, applied.external_hosts, applied.volumes)
        }
        None => (EnvVars::new(), Vec::new(), BTreeMap::new()),
    };

    // Values that are paths into the container's volumes: local copies.
    let fetched = local_env_paths(&input, &downloaded, events).await;
    for rewrite in &fetched.rewrites {
        pod_layer.set(
            rewrite.name.clone(),
            Some(rewrite.local_path.display().to_string()),
        );
    }
    for (n, (pod_path, local)) in fetched.tokens.into_iter().enumerate() {
        let staging = input.private_dir.join("token-refresh").join(n.to_string());
        let file = TokenFile {
            pod_path,
            local,
            staging,
        };
        token_refresh::keep_fresh(
            file,
            running.agents.clone(),
            events.clone(),
            &running.tasks,
            running.cancel.clone(),
        );
    }

    // Identity endpoints (metadata servers): local addresses the agents carry.
    let identity = identity_endpoints(&input, &mut forwarder, &config_layer).await;
    for endpoint in &identity.endpoints {
        pod_layer.set(endpoint.name.clone(), Some(endpoint.local_value.clone()));
    }
    Ok(Outbound {
        forwarded,
        env: EnvLayers {
            pod: pod_layer,
            config_file: config_layer,
            ..EnvLayers::default()
        },
        external_hosts,
        env_paths: fetched.rewrites,
        kept_paths: fetched.kept,
        identity: identity.endpoints,
        identity_notes: identity.notes,
    })
}

/// The pod's identity endpoints, and the metadata address with `enableFeatures:
/// [ManagedIdentity]`, forwarded; a variable the config file's `env` sets is its own.
async fn identity_endpoints(
    input: &ServicesInput<'_>,
    forwarder: &mut outbound::Forwarder,
    config_layer: &EnvVars,
) -> identity::Forwarded {
    let managed = input
        .config_file
        .is_some_and(|(_, c)| c.enable_features.contains(&Feature::ManagedIdentity));
    let owned: Vec<&str> = config_layer.iter().map(|(name, _)| name).collect();
    let plan = identity::plan::plan(&input.reached.pod_env, managed, &owned);
    identity::forward(
        &plan,
        identity::Session {
            book: &mut forwarder.book,
            agents: forwarder.agents.clone(),
            tasks: &forwarder.tasks,
            cancel: forwarder.cancel.clone(),
        },
    )
    .await
}

/// Plans and downloads the local copies of the pod's env paths.
async fn local_env_paths(
    input: &ServicesInput<'_>,
    downloaded: &BTreeMap<String, PathBuf>,
    events: &EventSink,
) -> env_paths::Fetched {
    let root = input.private_dir.join("mounts");
    let choices = env_paths::Choices {
        config: input.config_file.map(|(_, config)| config),
        downloaded,
        root: &root,
    };
    let plan = env_paths::plan(&input.reached.pod_env, &input.mounts, &choices);
    env_paths::fetch(plan, input.reached.first(), &root, |line| {
        step(events, line)
    })
    .await
}
