//! The kbridge agent (the in-cluster half of a bridge session) and the adapter↔agent wire
//! protocol, with a client ([`AgentClient`]) that the kbridge adapter drives over one byte stream.
//!
//! Layout: [`handshake`] authenticates the byte stream, [`mux`] multiplexes it with yamux,
//! [`wire`] frames each stream's header, [`control`] is the JSON-RPC 2.0 channel, [`inbound`],
//! [`outbound`] and [`files`] are the data streams, [`server`] runs the agent, [`client`] talks
//! to it, [`health`]/[`idle`] serve probes and the dead-man switch, and [`restore`] holds the
//! annotation contract the restorer ([`restore_watch`]) and the adapter share. [`router`] is the
//! isolation router (`kbridge-agent router`, DESIGN §9), and [`isolation_record`] the
//! isolated Service's bookkeeping that kbridge and the restorer both read and patch.

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod control;
pub mod env;
pub mod error;
pub mod files;
pub mod handshake;
pub mod health;
pub mod idle;
pub mod inbound;
pub mod isolation_record;
pub mod mounts;
pub mod mux;
pub mod outbound;
pub mod restore;
pub mod restore_merge;
pub mod restore_watch;
pub mod router;
pub mod server;
pub mod splice;
pub mod wire;

pub use client::{AgentClient, ClientOptions, Inbound, InboundConnection};
pub use config::AgentConfig;
pub use error::{ClientError, HandshakeError, ServerError};
pub use mux::TunnelStream;
pub use server::{Agent, RunningAgent};

/// Version of this crate, reported by the agent's `info` method.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
