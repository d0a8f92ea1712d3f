//! `kbridge_agent::{error, handshake, wire}`: the session handshake and stream headers.

#[path = "../../agent/src/error.rs"]
pub mod error;
#[path = "../../agent/src/handshake.rs"]
pub mod handshake;
#[path = "../../agent/src/wire.rs"]
pub mod wire;
