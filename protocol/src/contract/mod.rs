//! The cluster contract: what kbridge writes on cluster objects and what everyone who puts
//! them back reads — kbridge itself, `kbridge restore`, and the in-cluster restorer
//! (`kbridge-agent restore-watch`). Everything here is pure data and pure functions from the
//! objects as read to the patches to send, so every party computes the same patch.
//!
//! - [`agent_pod`]: the agent's ports, the token's key in the session's Secret, the
//!   route header;
//! - [`labels`]: every `kbridge.dev/*` label and annotation key;
//! - [`workload`]: the kinds of workload a session takes over, and the one parser of their
//!   names;
//! - [`restore`]: the restore record on a swapped workload, the patch that undoes the swap,
//!   and the restorer's decision;
//! - [`restore_merge`]: the three-way merge that undoes only kbridge's own changes to the
//!   container;
//! - [`readiness`]: the readiness check the agent carries out against the local process
//!   (`enableFeatures: [Probes]`);
//! - [`isolation_record`] (feature `kube`): the isolated Service's record and the patches
//!   that join and leave it.

pub mod agent_pod;
#[cfg(feature = "kube")]
pub mod isolation_record;
pub mod labels;
pub mod readiness;
pub mod restore;
pub mod restore_merge;
pub mod workload;

pub use workload::{UnknownWorkloadKind, WorkloadKind};
