//! The control channel: JSON-RPC 2.0 (`jsonrpc-core`), one message per line, on the stream the
//! client opens with a `control` header. Methods: `info`, `env`, `mounts`, `list`, `health`,
//! `heartbeat`; failures are JSON-RPC errors with messages a person can act on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use jsonrpc_core::{Error as RpcError, ErrorCode, IoHandler, Params, Value};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Framed, LinesCodec};

use crate::error::ClientError;
use crate::idle::IdleClock;
use crate::mounts::{Listing, Mount};
use crate::mux::TunnelStream;
use crate::AgentConfig;

/// Longest JSON-RPC message line accepted on either side.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Method names.
pub mod method {
    /// Agent identity and configuration → [`super::AgentInfo`].
    pub const INFO: &str = "info";
    /// Environment Kubernetes gave the container → [`super::EnvResponse`].
    pub const ENV: &str = "env";
    /// Volume mounts → list of [`crate::mounts::Mount`].
    pub const MOUNTS: &str = "mounts";
    /// Recursive listing of a path → [`crate::mounts::Listing`]; params [`super::ListParams`].
    pub const LIST: &str = "list";
    /// Agent status → [`crate::idle::Status`].
    pub const HEALTH: &str = "health";
    /// Proof of life from kbridge (resets the dead-man switch) → [`crate::idle::Status`].
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

/// Answer of `env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvResponse {
    /// Variables as Kubernetes set them (see [`crate::env`] for what is left out and why).
    pub vars: BTreeMap<String, String>,
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

/// What the control handler needs from the agent.
pub(crate) struct ControlState {
    pub(crate) config: AgentConfig,
    pub(crate) clock: Arc<IdleClock>,
}

fn app_error(code: i64, message: impl Into<String>) -> RpcError {
    RpcError {
        code: ErrorCode::ServerError(code),
        message: message.into(),
        data: None,
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError {
        code: ErrorCode::InternalError,
        message: e.to_string(),
        data: None,
    })
}

/// Builds the JSON-RPC handler of the agent.
pub(crate) fn handler(state: Arc<ControlState>) -> IoHandler {
    let mut io = IoHandler::new();
    let s = state.clone();
    io.add_sync_method(method::INFO, move |_: Params| {
        to_value(&AgentInfo {
            version: crate::VERSION.into(),
            protocol_version: crate::handshake::PROTOCOL_VERSION,
            pod: s.config.pod.clone(),
            namespace: s.config.namespace.clone(),
            container: s.config.container.clone(),
            ports: s.config.ports.clone(),
            idle_restore_secs: s.clock.status().idle_restore_secs,
        })
    });
    let s = state.clone();
    io.add_sync_method(method::ENV, move |_: Params| {
        let c = &s.config;
        to_value(&EnvResponse {
            vars: crate::env::kubernetes_env(&c.environment, &c.env_keep, &c.env_exclude),
        })
    });
    let s = state.clone();
    io.add_sync_method(method::MOUNTS, move |_: Params| {
        let m: Vec<Mount> = crate::mounts::current_mounts(s.config.mounts.as_deref())
            .map_err(|e| app_error(code::IO, format!("cannot read the mount table: {e}")))?;
        to_value(&m)
    });
    io.add_method(method::LIST, move |params: Params| async move {
        let p: ListParams = params.parse()?;
        let path = PathBuf::from(&p.path);
        if !path.is_absolute() {
            return Err(RpcError::invalid_params(format!(
                "'{}' is not an absolute path",
                p.path
            )));
        }
        let max = p.max_entries.unwrap_or(10_000);
        let listing: Listing = tokio::task::spawn_blocking(move || crate::mounts::list(&path, max))
            .await
            .map_err(|e| app_error(code::IO, e.to_string()))?
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    app_error(
                        code::NOT_FOUND,
                        format!("'{}' does not exist in the pod", p.path),
                    )
                } else {
                    app_error(code::IO, format!("cannot list '{}': {e}", p.path))
                }
            })?;
        to_value(&listing)
    });
    let s = state.clone();
    io.add_sync_method(method::HEALTH, move |_: Params| to_value(&s.clock.status()));
    let s = state;
    io.add_sync_method(method::HEARTBEAT, move |_: Params| {
        s.clock.touch();
        to_value(&s.clock.status())
    });
    io
}

/// Serves one control stream until the client closes it.
pub(crate) async fn serve(stream: TunnelStream, io: Arc<IoHandler>) {
    let mut framed = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(line) = framed.next().await {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                // Usually the session ending under it; the session logs why.
                tracing::debug!(error = %e, "control stream ended");
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        // Notifications produce no answer; malformed JSON produces a JSON-RPC parse error.
        if let Some(resp) = io.handle_request(&line).await {
            if framed.send(resp).await.is_err() {
                return;
            }
        }
    }
}

/// Client end of the control stream: one call at a time, matched by id.
pub(crate) struct ControlClient {
    framed: Framed<TunnelStream, LinesCodec>,
    next_id: u64,
}

impl ControlClient {
    pub(crate) fn new(stream: TunnelStream) -> Self {
        ControlClient {
            framed: Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE)),
            next_id: 1,
        }
    }

    /// Calls `method` and decodes its result.
    pub(crate) async fn call<R: serde::de::DeserializeOwned>(
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
