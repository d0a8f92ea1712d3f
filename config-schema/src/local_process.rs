//! `KubernetesLocalProcessConfig.yaml` as Bridge to Kubernetes defined it: which volumes
//! to download and which extra environment entries to build from tokens.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "KubernetesLocalProcessConfig.yaml")]
pub struct LocalProcessConfig {
    /// File format version; `0.1` is the only one defined.
    #[serde(default)]
    pub version: Option<String>,
    /// Optional features: `Probes`, `LifecycleHooks`, `ManagedIdentity`.
    #[serde(default)]
    pub enable_features: Vec<Feature>,
    /// Volumes to download, by name (wildcards allowed), and where to put them.
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    /// Extra environment entries; values may contain `$(volumeMounts:NAME)`,
    /// `$(services:SVC[.NS][:PORTS])` and `$(externalEndpoints:HOST:PORTS)` tokens.
    #[serde(default)]
    pub env: Vec<EnvEntry>,
}

/// Optional features of the file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Feature {
    /// Keep the container's probes instead of the agent's health endpoint.
    Probes,
    /// Keep the container's lifecycle hooks.
    LifecycleHooks,
    /// Make Azure managed identity requests work from the local process.
    ManagedIdentity,
}

/// One `volumeMounts` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// Volume name; `*` and `?` wildcards allowed.
    pub name: String,
    /// Local directory to download into; default: a private temporary directory.
    #[serde(default)]
    pub local_path: Option<String>,
}

/// One `env` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvEntry {
    /// Variable name.
    pub name: String,
    /// Value: text mixed with tokens.
    pub value: String,
}
