//! The agent's status: the answer of the `health` and `heartbeat` control methods and the
//! body of the agent's HTTP `/status` endpoint, which the in-cluster restorer polls. Its
//! [`SessionState`] is what restore and isolation decisions ([`crate::contract`]) turn on.

use serde::{Deserialize, Serialize};

/// What the agent says about its kbridge session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionState {
    /// kbridge is attached and heartbeating.
    Active,
    /// No session right now, but kbridge was seen recently (e.g. reconnecting).
    Idle,
    /// No heartbeat for longer than the threshold: the workload should be restored.
    Orphaned,
}

/// The agent's status, served on `/status` and by the `health` method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always `"ok"` while the agent runs (what probes need).
    pub health: String,
    /// Session state for the restorer.
    pub state: SessionState,
    /// Seconds since the last sign of life from kbridge.
    pub idle_secs: u64,
    /// The orphan threshold in seconds.
    pub idle_restore_secs: u64,
    /// Open kbridge sessions (0 or 1 in normal use).
    pub sessions: usize,
    /// Agent version.
    pub version: String,
}
