//! `KubernetesLocalProcessConfig.yaml` (or `azds-local.env`) applied to a live session: the
//! volumes it names are downloaded, and its `env` entries are built from their tokens —
//! local volume paths, local addresses of Services (forwarding those of other namespaces),
//! and external endpoints reached through the cluster.

use super::connection::Cluster;
use super::outbound::{ForwardedService, Forwarder};
use crate::session::hosts_file::HostsEntry;
use crate::session::SessionError;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kbridge_config::local_process::{parse_value, LocalProcessConfig, ValuePart, VolumeMount};
use kbridge_config::EnvVars;
use kbridge_protocol::AgentClient;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What applying the file gives the session.
pub struct Applied {
    /// The file's `env` entries, tokens replaced.
    pub env: EnvVars,
    /// Hosts entries for external endpoints (`$(externalEndpoints:HOST:…)` → HOST).
    pub external_hosts: Vec<HostsEntry>,
    /// Where each downloaded volume landed, by volume name.
    pub volumes: BTreeMap<String, PathBuf>,
}

/// Where the file's work happens.
pub struct Context<'a> {
    /// The file, as the configuration names it (for error messages).
    pub file: &'a str,
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
) -> Result<Applied, SessionError> {
    let mut tokens = Tokens {
        at,
        local_volumes: download_volumes(config, at, &mut progress).await?,
        forwarder,
        forwarded,
        external_hosts: Vec::new(),
    };
    let mut env = EnvVars::new();
    for entry in &config.env {
        // An entry without a value only keeps the pod's path (`rewritePath: false`).
        let Some(raw) = &entry.value else {
            continue;
        };
        let mut value = String::new();
        for part in parse_value(raw).map_err(|e| at.unusable(e))? {
            let text = match part {
                ValuePart::Text(text) => text,
                ValuePart::VolumeMount(name) => tokens.volume_path(&entry.name, &name)?,
                ValuePart::Service {
                    name, namespace, ..
                } => {
                    tokens
                        .service_address(&entry.name, &name, namespace)
                        .await?
                }
                ValuePart::ExternalEndpoint { host, ports } => {
                    tokens.external_endpoint(&entry.name, host, &ports).await?
                }
            };
            value.push_str(&text);
        }
        env.set(entry.name.clone(), Some(value));
    }
    Ok(Applied {
        env,
        external_hosts: tokens.external_hosts,
        volumes: tokens.local_volumes,
    })
}

/// What the tokens of `env` values resolve with.
struct Tokens<'a, 'c> {
    at: &'a Context<'c>,
    /// Downloaded volumes, by name.
    local_volumes: BTreeMap<String, PathBuf>,
    forwarder: &'a mut Forwarder,
    forwarded: &'a mut Vec<ForwardedService>,
    /// One per external endpoint named.
    external_hosts: Vec<HostsEntry>,
}

impl Tokens<'_, '_> {
    /// `$(volumeMounts:NAME)`: where the volume was downloaded.
    fn volume_path(&self, entry: &str, name: &str) -> Result<String, SessionError> {
        let at = self.at;
        self.local_volumes
            .iter()
            .find(|(n, _)| wildcard(name, n))
            .map(|(_, p)| p.display().to_string())
            .ok_or_else(|| {
                at.unusable(format!(
                    "env `{entry}`: container '{}' mounts no volume named '{name}' (it mounts: {})",
                    at.container,
                    at.mounts
                        .iter()
                        .filter_map(|m| m.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// `$(services:NAME[.NS])`: the Service's local address. A Service of another
    /// namespace is forwarded when the file names it, as Bridge to Kubernetes did.
    async fn service_address(
        &mut self,
        entry: &str,
        name: &str,
        namespace: Option<String>,
    ) -> Result<String, SessionError> {
        let at = self.at;
        let namespace = namespace.unwrap_or_else(|| at.cluster.namespace.clone());
        let known = self
            .forwarded
            .iter()
            .find(|f| f.name == name && f.namespace == namespace);
        if let Some(f) = known {
            return Ok(f.address.to_string());
        }
        let service = at
            .cluster
            .api_in::<Service>(&namespace)
            .get_opt(name)
            .await
            .map_err(|e| at.cluster.api_error_in(&namespace, e, "get", "services"))?
            .ok_or_else(|| {
                at.unusable(format!(
                    "env `{entry}`: service '{name}' not found in namespace '{namespace}'"
                ))
            })?;
        let f = self
            .forwarder
            .forward(&service, &namespace)
            .await
            .ok_or_else(|| {
                at.unusable(format!(
                    "env `{entry}`: service {name}.{namespace} has no TCP port to forward"
                ))
            })?;
        let address = f.address.to_string();
        self.forwarded.push(f);
        Ok(address)
    }

    /// `$(externalEndpoints:HOST:PORTS)`: reached from inside the cluster — the agent dials
    /// HOST:PORT, and the name resolves locally to the listener (hosts modes
    /// namespace/system). The value keeps the host name.
    async fn external_endpoint(
        &mut self,
        entry: &str,
        host: String,
        ports: &[u16],
    ) -> Result<String, SessionError> {
        if self
            .external_hosts
            .iter()
            .any(|e| e.names == [host.clone()])
        {
            return Ok(host);
        }
        let at = self.at;
        let service = external_name_service(&host, ports);
        let f = self
            .forwarder
            .forward_with_route(&service, &at.cluster.namespace, None)
            .await
            .ok_or_else(|| at.unusable(format!("env `{entry}`: cannot listen for {host}")))?;
        self.external_hosts.push(HostsEntry {
            address: f.address,
            names: vec![host.clone()],
        });
        Ok(host)
    }
}

/// Downloads every volume the file names — in `volumeMounts`, or only in a
/// `$(volumeMounts:NAME)` token, as Bridge to Kubernetes allowed — and returns where each
/// landed, by volume name.
async fn download_volumes(
    config: &LocalProcessConfig,
    at: &Context<'_>,
    progress: &mut impl FnMut(String),
) -> Result<BTreeMap<String, PathBuf>, SessionError> {
    // An entry that only sets `rewriteEnvPaths: false` downloads nothing.
    let mut wanted: Vec<VolumeMount> = config
        .volume_mounts
        .iter()
        .filter(|m| m.downloads())
        .cloned()
        .collect();
    for value in config.env.iter().filter_map(|e| e.value.as_deref()) {
        for part in parse_value(value).map_err(|e| at.unusable(e))? {
            if let ValuePart::VolumeMount(name) = part {
                if !wanted.iter().any(|w| w.name == name) {
                    wanted.push(VolumeMount::named(name));
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
                .await
                .map_err(|e| SessionError::agent(format!("cannot download volume {name}"), e))?;
            move_into(&staging.join(mount.path.trim_start_matches('/')), &dest).map_err(|e| {
                SessionError::io(
                    format!("cannot move volume {name} to {}", dest.display()),
                    e,
                )
            })?;
            local.insert(name, dest);
        }
    }
    Ok(local)
}

impl Context<'_> {
    /// The file asks for something this session cannot give.
    fn unusable(&self, message: impl Into<String>) -> SessionError {
        SessionError::ConfigFileUse {
            file: self.file.to_string(),
            message: message.into(),
        }
    }
}

/// A stand-in `ExternalName` Service for an external endpoint, so it is forwarded as
/// Services are.
fn external_name_service(host: &str, ports: &[u16]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(format!("external-{}", host.replace('.', "-"))),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(host.to_string()),
            ports: Some(
                ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(format!("p{p}")),
                        port: i32::from(*p),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `*` and `?` wildcards, as Bridge to Kubernetes allowed in volume names. Greedy, with
/// one step back to the last `*`: time grows with the product of the lengths at worst,
/// never exponentially, whatever a config file (or an editor's buffer, for `kbridge lsp`)
/// holds.
pub(crate) fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((star_pi, star_ni)) => {
                    pi = star_pi + 1;
                    ni = star_ni + 1;
                    star = Some((star_pi, star_ni + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
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
    use super::{external_name_service, wildcard};

    #[test]
    fn an_external_endpoint_is_forwarded_as_an_external_name_service() {
        let service = external_name_service("db.example.com", &[5432, 6432]);
        let expected: k8s_openapi::api::core::v1::Service =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "external-db-example-com"},
                "spec": {"type": "ExternalName", "externalName": "db.example.com",
                         "ports": [{"name": "p5432", "port": 5432}, {"name": "p6432", "port": 6432}]}
            }))
            .expect("a Service");
        assert_eq!(service, expected);
    }

    #[test]
    fn volume_wildcards() {
        assert!(wildcard("default-token-*", "default-token-x7k2p"));
        assert!(wildcard("conf?g", "config"));
        assert!(!wildcard("config", "config-2"));
        assert!(wildcard("*", ""));
        assert!(wildcard("a*b*c", "aXbYbZc"));
        assert!(!wildcard("a*b*c", "aXbYbZ"));
        assert!(wildcard("*-token-*", "default-token-x7k2p"));
        assert!(!wildcard("", "x"));
        // What a naive recursive matcher takes exponential time on.
        let hostile = "*a".repeat(40) + "b";
        assert!(!wildcard(&hostile, &"a".repeat(200)));
    }
}
