//! Typed errors of the protocol: [`HandshakeError`] for either side of the handshake and
//! [`ClientError`] for [`crate::AgentClient`] users, so the adapter can match on what went
//! wrong (bad token, unreachable destination, lost session) without parsing strings.

use std::io;

/// Why a handshake failed, on either side.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer's bytes are not a kbridge handshake (wrong magic, truncated, oversized).
    #[error("malformed handshake: {0}")]
    Malformed(String),
    /// The peer speaks a protocol version this side does not.
    #[error("unsupported protocol version {theirs} (this side speaks {ours})")]
    UnsupportedVersion {
        /// Version offered by the peer.
        theirs: u8,
        /// Version spoken here.
        ours: u8,
    },
    /// The agent refused the session token. The token itself is never part of the message.
    #[error("the agent refused the session token (KBRIDGE_SESSION_TOKEN does not match)")]
    BadToken,
    /// The agent refused for another reason it explained.
    #[error("the agent refused the session: {0}")]
    Refused(String),
    /// The handshake did not complete in time.
    #[error("handshake timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The byte stream failed during the handshake.
    #[error("i/o error during handshake: {0}")]
    Io(#[from] io::Error),
}

/// Errors seen by [`crate::AgentClient`] users.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The handshake failed (wrong token, wrong version, not an agent).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The multiplexed session to the agent is gone (agent killed, port-forward dropped).
    #[error("the session to the kbridge agent was lost: {0}")]
    SessionLost(String),
    /// A JSON-RPC call returned an error.
    #[error("agent method '{method}' failed: {message} (code {code})")]
    Rpc {
        /// Method called.
        method: String,
        /// JSON-RPC error code.
        code: i64,
        /// Message from the agent.
        message: String,
    },
    /// The agent could not reach an outbound destination.
    #[error("the agent could not connect to {host}:{port}: {message}")]
    Outbound {
        /// Destination host as asked.
        host: String,
        /// Destination port.
        port: u16,
        /// Machine-readable reason: `refused`, `unresolvable`, `timeout`, `unreachable`.
        code: String,
        /// Human-readable explanation.
        message: String,
    },
    /// The agent refused a download request (missing path, not absolute, …).
    #[error("download refused by the agent: {0}")]
    DownloadRefused(String),
    /// A download failed while unpacking (including the stream breaking midway).
    #[error("download into {dest} failed: {source}")]
    Download {
        /// Local destination directory.
        dest: String,
        /// Underlying failure.
        source: io::Error,
    },
    /// The agent answered something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The inbound connection stream was already taken by an earlier call.
    #[error("the inbound connection stream was already taken")]
    InboundTaken,
    /// Local i/o failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
