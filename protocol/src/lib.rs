//! The adapter↔agent wire protocol of kbridge, and the cluster contract both sides share.
//!
//! The protocol, layer by layer, on one byte stream (a port-forward to the agent's control
//! port, or TCP in tests):
//!
//! 1. [`handshake`] — a versioned hello carrying the per-session token, which the agent
//!    checks in constant time;
//! 2. [`mux`] — yamux over the authenticated stream: every capability is its own stream;
//! 3. [`wire`] — each stream starts with one length-prefixed JSON [`wire::StreamHeader`]
//!    saying what it carries, answered by a [`wire::Reply`] when the client opened it;
//! 4. the capabilities, one per header kind:
//!    - `control`: JSON-RPC 2.0 ([`control`]), whose methods answer with
//!      [`control::AgentInfo`], [`env`](mod@env), [`mounts`] and [`status`];
//!    - `outbound`: the agent dials a host and port in the cluster, then raw bytes;
//!    - `inbound`: the agent opens one stream per connection accepted on a container port,
//!      the client accepts it with one byte ([`wire::INBOUND_ACCEPT`]), then raw bytes;
//!    - `download`: a tar stream of files or mounts ([`files`]).
//!
//! [`AgentClient`] drives all of it from the adapter's side; the server is `kbridge-agent`.
//!
//! The cluster contract ([`contract`]) is what both sides write on and read from cluster
//! objects: the `kbridge.dev/*` keys, the restore record, the container merge, the isolation
//! record and the kinds of workload a session takes over.
//!
//! Features: the contract and the message types need only serde; `wire` adds the handshake
//! and the header frames (tokio's I/O traits); `client` adds yamux, the control channel and
//! [`AgentClient`]; `kube` adds what names Kubernetes types. The defaults are `client` and
//! `kube`.

#![warn(missing_docs)]

pub mod contract;
pub mod env;
pub mod error;
pub mod mounts;
pub mod status;

#[cfg(feature = "wire")]
pub mod handshake;
#[cfg(feature = "wire")]
pub mod wire;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod control;
#[cfg(feature = "client")]
pub mod files;
#[cfg(feature = "client")]
pub mod mux;

#[cfg(feature = "client")]
pub use client::{AgentClient, ClientOptions, Inbound, InboundConnection};
pub use error::{ClientError, HandshakeError};
#[cfg(feature = "client")]
pub use mux::TunnelStream;
