//! The control channel: JSON-RPC 2.0, one message per line, on the stream the client opens
//! with a `control` header. Methods ([`method`]): `info`, `env`, `mounts`, `list`, `health`,
//! `heartbeat`; failures are JSON-RPC errors ([`code`]) with messages a person can act on.
//! The answers are [`AgentInfo`], [`crate::env::EnvResponse`], [`crate::mounts`] and
//! [`crate::status::Status`]; the agent serves them with `jsonrpc-core`, and
//! [`ControlClient`] is the calling end [`crate::AgentClient`] uses.

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::codec::{Framed, LinesCodec};

use crate::error::ClientError;
use crate::mux::TunnelStream;

/// Longest JSON-RPC message line accepted on either side.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Method names.
pub mod method {
    /// Agent identity and configuration → [`super::AgentInfo`].
    pub const INFO: &str = "info";
    /// Environment Kubernetes gave the container → [`crate::env::EnvResponse`].
    pub const ENV: &str = "env";
    /// Volume mounts → list of [`crate::mounts::Mount`].
    pub const MOUNTS: &str = "mounts";
    /// Recursive listing of a path → [`crate::mounts::Listing`]; params
    /// [`crate::mounts::ListParams`].
    pub const LIST: &str = "list";
    /// Agent status → [`crate::status::Status`].
    pub const HEALTH: &str = "health";
    /// Proof of life from kbridge (resets the dead-man switch) → [`crate::status::Status`].
    pub const HEARTBEAT: &str = "heartbeat";
}

/// Application error codes (JSON-RPC reserves -32768..-32000 for itself).
pub mod code {
    /// The path does not exist.
    pub const NOT_FOUND: i64 = 1;
    /// The path exists but could not be read.
    pub const IO: i64 = 2;
}

/// Answer of `info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    /// Agent version.
    pub version: String,
    /// Wire protocol version.
    pub protocol_version: u8,
    /// Pod name, if known.
    pub pod: Option<String>,
    /// Namespace, if known.
    pub namespace: Option<String>,
    /// Name of the container the agent replaced, if known.
    pub container: Option<String>,
    /// Container ports the agent accepts connections on.
    pub ports: Vec<u16>,
    /// Dead-man switch threshold, which the client uses to pace its heartbeats.
    pub idle_restore_secs: u64,
}

/// Client end of the control stream: one call at a time, matched by id.
pub struct ControlClient {
    framed: Framed<TunnelStream, LinesCodec>,
    next_id: u64,
}

impl ControlClient {
    /// The client end of `stream`, a stream opened with a `control` header.
    pub fn new(stream: TunnelStream) -> Self {
        ControlClient {
            framed: Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE)),
            next_id: 1,
        }
    }

    /// Calls `method` and decodes its result.
    pub async fn call<R: serde::de::DeserializeOwned>(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<R, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let req =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let lost =
            |e: &dyn std::fmt::Display| ClientError::SessionLost(format!("control channel: {e}"));
        self.framed
            .send(req.to_string())
            .await
            .map_err(|e| lost(&e))?;
        loop {
            let line = match self.framed.next().await {
                Some(Ok(l)) => l,
                Some(Err(e)) => return Err(lost(&e)),
                None => return Err(lost(&"closed by the agent")),
            };
            let resp: Value = serde_json::from_str(&line)
                .map_err(|e| ClientError::Protocol(format!("bad JSON-RPC response: {e}")))?;
            if resp.get("id").and_then(Value::as_u64) != Some(id) {
                // A stale answer to a call that was abandoned (e.g. timed out); skip it.
                continue;
            }
            if let Some(err) = resp.get("error") {
                return Err(ClientError::Rpc {
                    method: method.to_string(),
                    code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: err
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                        .to_string(),
                });
            }
            let result = resp.get("result").cloned().unwrap_or(Value::Null);
            return serde_json::from_value(result).map_err(|e| {
                ClientError::Protocol(format!("unexpected result of '{method}': {e}"))
            });
        }
    }
}
