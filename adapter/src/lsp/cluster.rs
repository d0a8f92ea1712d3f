//! What the server may know about the cluster — Services and their ports, the target
//! container's volumes and environment names, namespaces, contexts — behind
//! [`ClusterData`], so completion, hover and diagnostics never wait on the cluster.
//!
//! An implementation answers from what it already has and fetches in the background:
//! [`ClusterData::snapshot`] returns at once (possibly knowing nothing), [`ClusterData::refresh`]
//! asks for fresher data without waiting for it, and [`ClusterData::changes`] tells the server
//! when something new arrived, so it can check open documents again. [`NoCluster`] knows
//! nothing; [`super::live::LiveCluster`] reads the current kubeconfig's cluster in the
//! background (docs/lsp.md, "Cluster data").

use std::sync::Arc;
use tokio::sync::watch;

/// Which part of the cluster a document is about: what its `bridge` block (or the launch
/// configuration naming a config file) says, defaults left to the kubeconfig.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Kubeconfig context; `None`: the current one.
    pub context: Option<String>,
    /// Namespace; `None`: the context's.
    pub namespace: Option<String>,
    /// The target as `bridge` names it (`service/NAME`, `deployment/NAME`, `pod/NAME`).
    pub target: Option<String>,
    /// The target container, when the pod has several.
    pub container: Option<String>,
}

/// A Service a token or `bridge.service` can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its ports: (port, name if named).
    pub ports: Vec<(u16, Option<String>)>,
}

/// A volume the target container mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// The volume's name in the pod.
    pub name: String,
    /// Where the container mounts it.
    pub mount_path: String,
    /// Where it comes from, e.g. `configMap todo-config` (never its content).
    pub source: String,
}

/// A Service as a live session on this machine forwards it: the local address its name
/// resolves to there (`kbridge connect` holding the target, or a debug session running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionService {
    /// The Service's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The local address, e.g. `127.1.0.3`.
    pub address: String,
    /// (Service port, local port) pairs.
    pub ports: Vec<(u16, u16)>,
    /// The session's id.
    pub session: String,
}

/// What is known about one scope at one moment. `None` means unknown (not fetched yet,
/// or the cluster unreachable): checks that need it stay quiet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Services of the scope's namespace.
    pub services: Option<Vec<ServiceInfo>>,
    /// Volumes of the target container.
    pub volumes: Option<Vec<VolumeInfo>>,
    /// Environment variable names of the target container (names only: values may be
    /// secret).
    pub env_names: Option<Vec<String>>,
    /// Namespaces of the context.
    pub namespaces: Option<Vec<String>>,
    /// Contexts of the kubeconfig.
    pub contexts: Option<Vec<String>>,
    /// Services that a live session on this machine, in the scope's cluster and
    /// namespace, forwards (empty when none runs).
    pub session_services: Vec<SessionService>,
}

/// Cluster knowledge for the language server. Every method returns at once: the server
/// answers requests on one task, and an editor must never wait on a cluster.
pub trait ClusterData: Send + Sync {
    /// What is known about `scope` now, fetched or not.
    fn snapshot(&self, scope: &Scope) -> Arc<Snapshot>;

    /// Asks for fresher data about `scope` (a document was opened or its target
    /// changed); returns without waiting for it.
    fn refresh(&self, scope: &Scope);

    /// A counter that moves whenever new data arrived, for the server to re-check open
    /// documents; `None` when data never changes.
    fn changes(&self) -> Option<watch::Receiver<u64>>;
}

/// No cluster: knows nothing, so only what the documents themselves say is used.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCluster;

impl ClusterData for NoCluster {
    fn snapshot(&self, _scope: &Scope) -> Arc<Snapshot> {
        Arc::new(Snapshot::default())
    }

    fn refresh(&self, _scope: &Scope) {}

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

/// A fixed snapshot for every scope: the test double for completion and hover.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FixedCluster(pub Arc<Snapshot>);

#[cfg(test)]
impl ClusterData for FixedCluster {
    fn snapshot(&self, _scope: &Scope) -> Arc<Snapshot> {
        self.0.clone()
    }

    fn refresh(&self, _scope: &Scope) {}

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}
