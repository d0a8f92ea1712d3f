//! The commands of the `kbridge` binary that are more than a call into the library.

pub mod agent_push;
pub mod agent_versions;
pub mod bridged;
#[cfg(unix)]
pub mod child;
#[cfg(windows)]
#[path = "child_windows.rs"]
pub mod child;
pub mod diagnostics;
pub mod doctor;
pub mod migrate;
pub mod restore;
pub mod status;
pub mod targets;

use k8s_openapi::api::core::v1::Namespace;
use kbridge::session::cluster::connection::Cluster;
use kube::api::{Api, ListParams};

/// The cluster once per namespace a command looks at: the connection's own, or with
/// `all_namespaces` every namespace of the cluster.
pub async fn namespaces(cluster: &Cluster, all_namespaces: bool) -> anyhow::Result<Vec<Cluster>> {
    let names = if all_namespaces {
        Api::<Namespace>::all(cluster.client.clone())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect()
    } else {
        vec![cluster.namespace.clone()]
    };
    Ok(names
        .into_iter()
        .map(|namespace| Cluster {
            namespace,
            ..cluster.clone()
        })
        .collect())
}
