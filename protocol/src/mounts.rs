//! Messages of the `mounts` and `list` control methods: the volumes the container sees and
//! recursive listings of them. The agent reads them (`kbridge-agent`'s `mounts` module);
//! kbridge shows them and downloads what the user picks.

use serde::{Deserialize, Serialize};

/// One mounted volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Volume name from the pod spec, when kbridge told the agent (`KBRIDGE_AGENT_MOUNTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Mount path inside the container.
    pub path: String,
    /// Whether it is mounted read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Filesystem type, when read from `/proc/self/mountinfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
}

/// Parameters of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    /// Absolute path to list.
    pub path: String,
    /// Stop after this many entries (default 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<usize>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListEntry {
    /// Path relative to the listed directory.
    pub path: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Permission bits, e.g. `0o644` = 420.
    pub mode: u32,
    /// Symlink target, for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A listing, possibly cut at a maximum number of entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    /// The absolute path that was listed.
    pub root: String,
    /// Entries, depth-first, sorted by name within a directory.
    pub entries: Vec<ListEntry>,
    /// Whether the listing stopped at the entry limit.
    pub truncated: bool,
}
