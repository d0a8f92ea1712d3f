//! Message of the `env` control method: the environment Kubernetes gave the replaced
//! container, which kbridge hands to the local process.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Answer of `env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvResponse {
    /// Variables as Kubernetes set them: the agent leaves out what the container runtime and
    /// kbridge added, and never reports the session token.
    pub vars: BTreeMap<String, String>,
}
