//! Errors of the agent server. (Handshake and client errors are the protocol's:
//! [`kbridge_protocol::error`].)

use std::io;

/// Errors that stop the agent server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration value is missing or invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address that was asked for.
        addr: String,
        /// Underlying failure.
        source: io::Error,
    },
}
