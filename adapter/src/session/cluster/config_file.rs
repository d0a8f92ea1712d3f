//! `KubernetesLocalProcessConfig.yaml` (or `azds-local.env`) applied to a live session: the
//! volumes it names are downloaded, and its `env` entries are built from their tokens —
//! local volume paths, local addresses of Services (forwarding those of other namespaces),
//! and external endpoints reached through the cluster.

use super::connection::Cluster;
use super::hosts::HostsEntry;
use super::outbound::{ForwardedService, Forwarder};
use k8s_openapi::api::core::v1::Service;
use kbridge_config::local_process::{parse_value, LocalProcessConfig, ValuePart, VolumeMount};
use kbridge_config::EnvVars;
use kbridge_protocol::AgentClient;
use kube::api::Api;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What applying the file gives the session.
pub struct Applied {
    /// The file's `env` entries, tokens replaced.
    pub env: EnvVars,
    /// Hosts entries for external endpoints (`$(externalEndpoints:HOST:…)` → HOST).
    pub external_hosts: Vec<HostsEntry>,
}

/// Where the file's work happens.
pub struct Context<'a> {
    /// The cluster (Services of other namespaces are looked up there).
    pub cluster: &'a Cluster,
    /// An agent of the session, for downloads.
    pub agent: &'a AgentClient,
    /// The volumes the target container mounts, as the agent reports them.
    pub mounts: &'a [kbridge_protocol::mounts::Mount],
    /// The target container's name, for error messages.
    pub container: &'a str,
    /// The session's private 0700 directory.
    pub private_dir: &'a Path,
}

/// Downloads the volumes and builds the env entries. `forwarded` holds the Services already
/// forwarded; those the file names in other namespaces are added to it. `progress` is told
/// of each download.
pub async fn apply(
    config: &LocalProcessConfig,
    at: &Context<'_>,
    forwarder: &mut Forwarder,
    forwarded: &mut Vec<ForwardedService>,
    mut progress: impl FnMut(String),
) -> Result<Applied, BoxError> {
    let local_volumes = download_volumes(config, at, &mut progress).await?;
    let mut env = EnvVars::new();
    let mut external_hosts: Vec<HostsEntry> = Vec::new();
    for entry in &config.env {
        let mut value = String::new();
        for part in parse_value(&entry.value)? {
            match part {
                ValuePart::Text(text) => value.push_str(&text),
                ValuePart::VolumeMount(name) => {
                    let path = local_volumes
                        .iter()
                        .find(|(n, _)| wildcard(&name, n))
                        .map(|(_, p)| p.display().to_string())
                        .ok_or_else(|| {
                            format!(
                                "env `{}`: container '{}' mounts no volume named '{name}' (it mounts: {})",
                                entry.name,
                                at.container,
                                at.mounts
                                    .iter()
                                    .filter_map(|m| m.name.clone())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })?;
                    value.push_str(&path);
                }
                ValuePart::Service {
                    name, namespace, ..
                } => {
                    let namespace = namespace.unwrap_or_else(|| at.cluster.namespace.clone());
                    let known = forwarded
                        .iter()
                        .find(|f| f.name == name && f.namespace == namespace)
                        .map(|f| f.address);
                    let address = match known {
                        Some(address) => address,
                        // A Service of another namespace is forwarded when the file names
                        // it, as Bridge to Kubernetes did.
                        None => {
                            let api: Api<Service> =
                                Api::namespaced(at.cluster.client.clone(), &namespace);
                            let service = api.get_opt(&name).await?.ok_or_else(|| {
                                format!(
                                    "env `{}`: service '{name}' not found in namespace '{namespace}'",
                                    entry.name
                                )
                            })?;
                            let f = forwarder.forward(&service, &namespace).await.ok_or_else(
                                || {
                                    format!(
                                        "env `{}`: service {name}.{namespace} has no TCP port to forward",
                                        entry.name
                                    )
                                },
                            )?;
                            let address = f.address;
                            forwarded.push(f);
                            address
                        }
                    };
                    value.push_str(&address.to_string());
                }
                ValuePart::ExternalEndpoint { host, ports } => {
                    // Reached from inside the cluster: the agent dials HOST:PORT, and the
                    // name resolves locally to the listener (hosts modes namespace/system).
                    if !external_hosts.iter().any(|e| e.names == [host.clone()]) {
                        let service: Service = serde_json::from_value(serde_json::json!({
                            "metadata": {"name": format!("external-{}", host.replace('.', "-"))},
                            "spec": {"type": "ExternalName", "externalName": host,
                                     "ports": ports.iter().map(|p| serde_json::json!({"name": format!("p{p}"), "port": p})).collect::<Vec<_>>()}
                        }))?;
                        let f = forwarder
                            .forward_with_route(&service, &at.cluster.namespace, None)
                            .await
                            .ok_or_else(|| {
                                format!("env `{}`: cannot listen for {host}", entry.name)
                            })?;
                        external_hosts.push(HostsEntry {
                            address: f.address,
                            names: vec![host.clone()],
                        });
                    }
                    value.push_str(&host);
                }
            }
        }
        env.set(entry.name.clone(), Some(value));
    }
    Ok(Applied {
        env,
        external_hosts,
    })
}

/// Downloads every volume the file names — in `volumeMounts`, or only in a
/// `$(volumeMounts:NAME)` token, as Bridge to Kubernetes allowed — and returns where each
/// landed, by volume name.
async fn download_volumes(
    config: &LocalProcessConfig,
    at: &Context<'_>,
    progress: &mut impl FnMut(String),
) -> Result<BTreeMap<String, PathBuf>, BoxError> {
    let mut wanted = config.volume_mounts.clone();
    for entry in &config.env {
        for part in parse_value(&entry.value)? {
            if let ValuePart::VolumeMount(name) = part {
                if !wanted.iter().any(|w| w.name == name) {
                    wanted.push(VolumeMount {
                        name,
                        local_path: None,
                    });
                }
            }
        }
    }
    let mut local = BTreeMap::new();
    for want in &wanted {
        for mount in at
            .mounts
            .iter()
            .filter(|m| m.name.as_deref().is_some_and(|n| wildcard(&want.name, n)))
        {
            let name = mount.name.clone().unwrap_or_default();
            let dest = match &want.local_path {
                Some(path) => PathBuf::from(path),
                None => at.private_dir.join("volumes").join(&name),
            };
            progress(format!(
                "downloading volume {name} ({}) to {}",
                mount.path,
                dest.display()
            ));
            let staging = at.private_dir.join("download").join(&name);
            at.agent
                .download(std::slice::from_ref(&mount.path), &staging)
                .await?;
            move_into(&staging.join(mount.path.trim_start_matches('/')), &dest)?;
            local.insert(name, dest);
        }
    }
    Ok(local)
}

/// `*` and `?` wildcards, as Bridge to Kubernetes allowed in volume names.
fn wildcard(pattern: &str, name: &str) -> bool {
    fn matches(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], n) || (!n.is_empty() && matches(p, &n[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &n[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), name.as_bytes())
}

/// Moves a downloaded directory to where the user wants it.
fn move_into(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::rename(from, to)
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn volume_wildcards() {
        assert!(wildcard("default-token-*", "default-token-x7k2p"));
        assert!(wildcard("conf?g", "config"));
        assert!(!wildcard("config", "config-2"));
    }
}
