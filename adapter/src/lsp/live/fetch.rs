//! One look at the cluster for one [`Scope`]: the kubeconfig's contexts, the namespaces,
//! the Services of the namespace with their ports, the target container's volumes (mount
//! path and source) and environment variable names, and the Services a live session on
//! this machine forwards. Connections and target resolution are the session's own
//! ([`Cluster::connect`], [`target::resolve`]), so the server sees the cluster as a launch
//! would. Values are never read into the snapshot: a Secret's keys become names, its data
//! is dropped at once.

use crate::lsp::cluster::{Scope, ServiceInfo, SessionService, Snapshot, VolumeInfo};
use crate::session::cluster::connection::Cluster;
use crate::session::cluster::errors::ClusterError;
use crate::session::cluster::target::{self, ResolvedTarget};
use crate::session::registry;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, Volume};
use kbridge_config::launch::parse_workload;
use kbridge_config::Target;
use kube::api::{Api, ListParams};

/// Why a look at the cluster failed; the cached snapshot stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No client for the kubeconfig (none, or a context it does not have).
    #[error("cannot use the kubeconfig: {0}")]
    Connect(ClusterError),
    /// Neither the namespaces nor the namespace's Services could be listed: the cluster
    /// is unreachable or refuses this user.
    #[error("cannot list Services nor namespaces: {0}")]
    Unreachable(ClusterError),
    /// The whole look took longer than allowed.
    #[error("the cluster did not answer within {0} s")]
    Timeout(u64),
}

/// Everything the server may know about `scope`, read now.
pub async fn snapshot(scope: &Scope) -> Result<Snapshot, FetchError> {
    let cluster = Cluster::connect(scope.context.as_deref(), scope.namespace.as_deref())
        .await
        .map_err(FetchError::Connect)?;
    // Each part on its own: a namespace that does not exist (a typo the document shows)
    // has no Services, but the namespaces are still worth knowing.
    let (services, namespaces) = match tokio::join!(services(&cluster), namespaces(&cluster)) {
        (Err(error), None) => return Err(FetchError::Unreachable(error)),
        (services, namespaces) => (services.ok(), namespaces),
    };
    let (volumes, env_names) = match parse_target(scope.target.as_deref()) {
        Some(target) => {
            match target::resolve(&cluster, &target, scope.container.as_deref()).await {
                Ok(resolved) => (
                    Some(volumes(&resolved)),
                    Some(env_names(&cluster, &resolved).await),
                ),
                // The target does not resolve (a typo the document shows): nothing known.
                Err(error) => {
                    tracing::debug!(%error, "target not resolved");
                    (None, None)
                }
            }
        }
        None => (None, None),
    };
    Ok(Snapshot {
        services,
        volumes,
        env_names,
        namespaces,
        contexts: contexts(),
        session_services: session_services(&cluster).await,
    })
}

/// The kubeconfig's contexts, read locally (`KUBECONFIG`, else `~/.kube/config`).
pub fn contexts() -> Option<Vec<String>> {
    let config = kube::config::Kubeconfig::read().ok()?;
    Some(config.contexts.into_iter().map(|c| c.name).collect())
}

/// `service/NAME`, `pod/NAME` or `KIND/NAME` as [`Target`].
fn parse_target(target: Option<&str>) -> Option<Target> {
    let target = target?;
    if let Some(name) = target.strip_prefix("service/") {
        return Some(Target::Service(name.to_string()));
    }
    if let Some(name) = target.strip_prefix("pod/") {
        return Some(Target::Pod(name.to_string()));
    }
    let (kind, name) = parse_workload(target).ok()?;
    Some(Target::Workload { kind, name })
}

async fn services(cluster: &Cluster) -> Result<Vec<ServiceInfo>, ClusterError> {
    let listed: Vec<Service> = cluster.list(&ListParams::default()).await?;
    Ok(listed
        .into_iter()
        .map(|service| ServiceInfo {
            name: service.metadata.name.unwrap_or_default(),
            namespace: cluster.namespace.clone(),
            ports: service
                .spec
                .and_then(|s| s.ports)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| Some((u16::try_from(p.port).ok()?, p.name)))
                .collect(),
        })
        .collect())
}

/// The cluster's namespaces; `None` when the user may not list them (quiet: unknown).
async fn namespaces(cluster: &Cluster) -> Option<Vec<String>> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    match api.list(&ListParams::default()).await {
        Ok(list) => Some(
            list.items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .collect(),
        ),
        Err(error) => {
            tracing::debug!(%error, "cannot list namespaces");
            None
        }
    }
}

/// The target container's mounts, each with where its volume comes from.
fn volumes(resolved: &ResolvedTarget) -> Vec<VolumeInfo> {
    let pod_volumes = resolved.pod_spec.volumes.as_deref().unwrap_or_default();
    resolved
        .container
        .volume_mounts
        .iter()
        .flatten()
        .map(|mount| VolumeInfo {
            name: mount.name.clone(),
            mount_path: mount.mount_path.clone(),
            source: pod_volumes
                .iter()
                .find(|v| v.name == mount.name)
                .map_or_else(|| "a volume the pod does not declare".into(), source_of),
        })
        .collect()
}

/// Where a volume comes from, by kind and object name (never its content).
fn source_of(volume: &Volume) -> String {
    if let Some(c) = &volume.config_map {
        return format!("configMap `{}`", c.name);
    }
    if let Some(s) = &volume.secret {
        return format!("secret `{}`", s.secret_name.as_deref().unwrap_or("?"));
    }
    if let Some(p) = &volume.persistent_volume_claim {
        return format!("persistentVolumeClaim `{}`", p.claim_name);
    }
    if volume.empty_dir.is_some() {
        return "emptyDir".into();
    }
    if let Some(h) = &volume.host_path {
        return format!("hostPath `{}`", h.path);
    }
    if volume.projected.is_some() {
        return "projected (service account token and the like)".into();
    }
    if volume.downward_api.is_some() {
        return "downwardAPI".into();
    }
    "another volume source".into()
}

/// The names of the target container's environment: `env`, then the keys `envFrom`
/// brings in (ConfigMaps' and Secrets' keys, with their prefix). A source that cannot be
/// read adds nothing.
async fn env_names(cluster: &Cluster, resolved: &ResolvedTarget) -> Vec<String> {
    let container = &resolved.container;
    let mut names: Vec<String> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let keys: Vec<String> = if let Some(c) = &source.config_map_ref {
            let api: Api<ConfigMap> = cluster.api();
            match api.get_opt(&c.name).await {
                Ok(Some(map)) => map.data.unwrap_or_default().into_keys().collect(),
                _ => Vec::new(),
            }
        } else if let Some(s) = &source.secret_ref {
            let api: Api<Secret> = cluster.api();
            match api.get_opt(&s.name).await {
                // Only the keys are kept; the values go out of scope here.
                Ok(Some(secret)) => secret.data.unwrap_or_default().into_keys().collect(),
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        names.extend(keys.into_iter().map(|k| format!("{prefix}{k}")));
    }
    names.sort();
    names.dedup();
    names
}

/// The Services that live sessions on this machine forward, for this cluster and
/// namespace (`kbridge status` lists the same sessions).
async fn session_services(cluster: &Cluster) -> Vec<SessionService> {
    let url = cluster.url.trim_end_matches('/');
    let mut found = Vec::new();
    for (socket, info) in registry::list().await {
        if info.key.cluster.trim_end_matches('/') != url || info.key.namespace != cluster.namespace
        {
            continue;
        }
        let Ok(described) = registry::ask(&socket, "describe").await else {
            continue;
        };
        found.extend(forwarded(&described, &info.id));
    }
    found
}

/// The `services` of a session's `describe` answer.
pub fn forwarded(described: &serde_json::Value, session: &str) -> Vec<SessionService> {
    let number = |v: &serde_json::Value| v.as_u64().and_then(|n| u16::try_from(n).ok());
    described["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some(SessionService {
                name: s["name"].as_str()?.to_string(),
                namespace: s["namespace"].as_str()?.to_string(),
                address: s["address"].as_str()?.to_string(),
                ports: s["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| Some((number(&p["service"])?, number(&p["local"])?)))
                    .collect(),
                session: session.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_bridge_names_them() {
        assert_eq!(
            parse_target(Some("service/todo-api")),
            Some(Target::Service("todo-api".into()))
        );
        assert_eq!(
            parse_target(Some("pod/p-1")),
            Some(Target::Pod("p-1".into()))
        );
        assert!(matches!(
            parse_target(Some("deployment/todo-api")),
            Some(Target::Workload { .. })
        ));
        assert_eq!(parse_target(Some("nonsense")), None);
        assert_eq!(parse_target(None), None);
    }

    #[test]
    fn a_sessions_description_gives_its_forwarded_services() {
        let described = serde_json::json!({"services": [
            {"name": "stats-api", "namespace": "todo", "address": "127.1.0.3",
             "ports": [{"service": 80, "local": 80}], "names": ["stats-api"]},
            {"name": "broken"}
        ]});
        let found = forwarded(&described, "s-1");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].address, "127.1.0.3");
        assert_eq!(found[0].ports, [(80, 80)]);
        assert_eq!(found[0].session, "s-1");
    }
}
