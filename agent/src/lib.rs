//! The kbridge agent, the in-cluster half of a bridge session: the server of the adapter↔agent
//! wire protocol ([`kbridge_protocol`], which also holds the client the adapter drives), the
//! isolation router and the in-cluster restorer.
//!
//! Layout: [`server`] runs the agent: it accepts sessions (the protocol's handshake and mux),
//! serves the control channel ([`control`], answering from [`env`](mod@env), [`mounts`] and
//! [`idle`]), dials [`outbound`] streams, tunnels [`inbound`] connections and sends
//! [`files`], moving bytes with [`splice`]; [`health`]/[`idle`] serve probes and the
//! dead-man switch, and [`readiness`] the local process's readiness (`Probes`).
//! [`restore_watch`] is the restorer (`kbridge-agent restore-watch`), which applies the
//! cluster contract ([`kbridge_protocol::contract`]) when kbridge is gone, and [`router`] is
//! the isolation router (`kbridge-agent router`; see `docs/architecture.md`, "Isolation").

#![warn(missing_docs)]

pub mod config;
pub mod control;
pub mod env;
pub mod error;
pub mod files;
pub mod health;
pub mod idle;
pub mod inbound;
pub mod mounts;
pub mod outbound;
pub mod readiness;
pub mod restore_watch;
pub mod router;
pub mod server;
pub mod splice;

pub use config::AgentConfig;
pub use error::ServerError;
pub use server::{Agent, RunningAgent};

/// Version of this crate, reported by the agent's `info` method.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
