//! The agent's end of the control channel ([`kbridge_protocol::control`]): the JSON-RPC 2.0
//! handler (`jsonrpc-core`) that answers `info`, `env`, `mounts`, `list`, `health` and
//! `heartbeat`, and the loop that serves one control stream line by line.

use std::path::PathBuf;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use jsonrpc_core::{Error as RpcError, ErrorCode, IoHandler, Params, Value};
use kbridge_protocol::control::{code, method, AgentInfo, MAX_LINE};
use kbridge_protocol::env::EnvResponse;
use kbridge_protocol::mounts::{ListParams, Listing, Mount};
use kbridge_protocol::TunnelStream;
use serde::Serialize;
use tokio_util::codec::{Framed, LinesCodec};

use crate::idle::IdleClock;
use crate::AgentConfig;

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
            protocol_version: kbridge_protocol::handshake::PROTOCOL_VERSION,
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

/// The control channel's message handling under arbitrary input. A proptest rather than a
/// fuzz target: the handler is in the agent crate, whose kube and k8s-openapi dependencies
/// take too long to build under sanitizer coverage (see fuzz/src/lib.rs).
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::time::Duration;

    const SECRET: &str = "0d6f1c0ffee5ec7e7";

    fn handler_for(dir: &Path) -> IoHandler {
        let mounts = vec![Mount {
            name: Some("config".into()),
            path: dir.display().to_string(),
            read_only: true,
            fs_type: None,
        }];
        let config = AgentConfig {
            bind: [127, 0, 0, 1].into(),
            control_port: 0,
            health_port: 0,
            ports: vec![8080],
            token: SECRET.into(),
            idle_restore: Duration::from_secs(60),
            pod: Some("todo-api-7d9f8-x2k4q".into()),
            namespace: Some("todo".into()),
            container: Some("api".into()),
            env_keep: BTreeSet::new(),
            env_exclude: BTreeSet::new(),
            mounts: Some(mounts),
            environment: vec![
                ("TODO_DB".into(), "postgres://db:5432/todo".into()),
                ("KBRIDGE_SESSION_TOKEN".into(), SECRET.into()),
            ],
            readiness: None,
        };
        handler(Arc::new(ControlState {
            clock: Arc::new(IdleClock::new(config.idle_restore)),
            config,
        }))
    }

    /// A small directory to list, so that no case walks the machine's file system.
    fn listing_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kbridge-control-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
        std::fs::write(dir.join("sub/appsettings.json"), "{}").expect("temp file");
        dir
    }

    fn json_id() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            any::<u64>().prop_map(|n| Some(json!(n))),
            "[a-z0-9-]{0,8}".prop_map(|s| Some(json!(s))),
            Just(Some(Value::Null)),
            any::<i64>().prop_map(|n| Some(json!(n))),
            Just(Some(json!(1.5))),
            Just(Some(json!({"id": 1}))),
        ]
    }

    fn method() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => prop::sample::select(vec![
                method::INFO,
                method::ENV,
                method::MOUNTS,
                method::LIST,
                method::HEALTH,
                method::HEARTBEAT,
            ])
            .prop_map(|m| json!(m)),
            1 => ".{0,12}".prop_map(|m| json!(m)),
            1 => Just(json!(7)),
        ]
    }

    /// `list` paths: the listing directory and a file in it, missing and relative paths,
    /// odd text; never a real directory of the machine.
    fn path(dir: String) -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!(dir.clone())),
            Just(json!(format!("{dir}/sub/appsettings.json"))),
            "[a-z/.]{0,12}".prop_map(move |p| json!(format!("{dir}/missing/{p}"))),
            "[a-z./]{0,12}"
                .prop_filter("relative", |p| !p.starts_with('/'))
                .prop_map(|p| json!(p)),
            Just(json!(3)),
            Just(Value::Null),
        ]
    }

    fn params(dir: String) -> impl Strategy<Value = Option<Value>> {
        let max = prop_oneof![
            Just(None),
            (0usize..5).prop_map(Some),
            Just(Some(usize::MAX))
        ];
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            Just(Some(json!([]))),
            Just(Some(json!({}))),
            (path(dir.clone()), max).prop_map(|(path, max)| {
                let mut p = json!({ "path": path });
                if let Some(max) = max {
                    p["maxEntries"] = json!(max);
                }
                Some(p)
            }),
            path(dir).prop_map(|p| Some(json!([p]))),
        ]
    }

    fn call(dir: String) -> impl Strategy<Value = Value> {
        let version = prop_oneof![
            8 => Just(Some(json!("2.0"))),
            1 => Just(None),
            1 => Just(Some(json!("1.0"))),
        ];
        (version, json_id(), method(), params(dir)).prop_map(|(version, id, method, params)| {
            let mut call = json!({ "method": method });
            if let Some(v) = version {
                call["jsonrpc"] = v;
            }
            if let Some(id) = id {
                call["id"] = id;
            }
            if let Some(p) = params {
                call["params"] = p;
            }
            call
        })
    }

    /// The id a well-formed call is answered with, or `None` for a notification or a call
    /// whose id JSON-RPC does not allow.
    fn answered_id(call: &Value) -> Option<&Value> {
        let id = call.get("id")?;
        let ok = call["jsonrpc"] == "2.0" && call["method"].is_string();
        (ok && (id.is_u64() || id.is_string())).then_some(id)
    }

    /// A call or notification with the types JSON-RPC 2.0 requires.
    fn well_formed(call: &Value) -> bool {
        let id_ok = call
            .get("id")
            .is_none_or(|id| id.is_u64() || id.is_string());
        call["jsonrpc"] == "2.0" && call["method"].is_string() && id_ok
    }

    /// Checks one response object.
    fn check_response(response: &Value) {
        // A call without `"jsonrpc": "2.0"` is refused in JSON-RPC 1.0's shape.
        let version = response.get("jsonrpc");
        assert!(version.is_none_or(|v| v == "2.0"), "{response}");
        let has = |k: &str| response.get(k).is_some();
        assert!(
            has("result") != has("error"),
            "result xor error: {response}"
        );
        assert!(
            !response.to_string().contains(SECRET),
            "the session token left the agent: {response}"
        );
    }

    /// What the agent's own methods answer, beyond JSON-RPC's envelope.
    fn check_answer(call: &Value, response: &Value, dir: &str) {
        if call["method"] != method::LIST || response.get("result").is_none() {
            return;
        }
        let path = match &call["params"] {
            Value::Object(p) => &p["path"],
            Value::Array(p) => &p[0],
            _ => &Value::Null,
        };
        let path = path.as_str().expect("list answered without a path");
        assert!(
            path.starts_with(dir) && !path.contains("/missing/"),
            "listed {path}"
        );
        assert_eq!(response["result"]["root"], path);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any line at all: an answer, if any, is a JSON-RPC response, never a panic.
        #[test]
        fn any_line_gets_a_json_rpc_answer_or_none(line in ".{0,80}") {
            let dir = listing_dir();
            let io = handler_for(&dir);
            if let Some(answer) = runtime().block_on(io.handle_request(&line)) {
                let value: Value = serde_json::from_str(&answer).expect("answers are JSON");
                match &value {
                    Value::Array(responses) => responses.iter().for_each(check_response),
                    response => check_response(response),
                }
            }
        }

        /// Calls and batches of calls shaped like the client's, with the mistakes a client
        /// could make: each call with a valid id gets exactly one answer with that id, the
        /// token never comes back, and `list` answers only for the paths that exist.
        #[test]
        fn calls_and_batches_are_answered_by_id(
            (calls, batch) in prop::collection::vec(call(listing_dir().display().to_string()), 1..4)
                .prop_flat_map(|calls| (Just(calls), any::<bool>())),
        ) {
            let dir = listing_dir();
            let io = handler_for(&dir);
            let line = if batch { json!(calls).to_string() } else { calls[0].to_string() };
            let calls = if batch { &calls[..] } else { &calls[..1] };
            let answer = runtime().block_on(io.handle_request(&line));
            let responses: Vec<Value> = match answer.map(|a| serde_json::from_str(&a).expect("JSON")) {
                None => vec![],
                Some(Value::Array(r)) if batch => r,
                Some(r) if !batch => vec![r],
                // jsonrpc-core refuses a whole batch when one call has an id or method of the
                // wrong type (the client never sends one).
                Some(error) => {
                    prop_assert!(!calls.iter().all(well_formed), "batch answered with {}", error);
                    prop_assert_eq!(&error["id"], &Value::Null);
                    check_response(&error);
                    return Ok(());
                }
            };
            responses.iter().for_each(check_response);
            for call in calls {
                let Some(id) = answered_id(call) else { continue };
                let answers: Vec<&Value> = responses.iter().filter(|r| &r["id"] == id).collect();
                prop_assert_eq!(answers.len(), 1, "answers to {}: {:?}", call, responses);
                check_answer(call, answers[0], &dir.display().to_string());
            }
        }
    }

    #[test]
    fn list_refuses_relative_and_missing_paths() {
        let dir = listing_dir();
        let io = handler_for(&dir);
        let rt = runtime();
        let ask = |params: Value| {
            let line = json!({"jsonrpc": "2.0", "id": 1, "method": "list", "params": params});
            let answer = rt
                .block_on(io.handle_request(&line.to_string()))
                .expect("answer");
            serde_json::from_str::<Value>(&answer).expect("JSON")
        };
        assert_eq!(ask(json!({"path": "etc"}))["error"]["code"], -32602);
        let missing = format!("{}/missing", dir.display());
        assert_eq!(
            ask(json!({"path": missing}))["error"]["code"],
            code::NOT_FOUND
        );
        let listed = ask(json!({"path": dir.display().to_string(), "maxEntries": 1}));
        assert_eq!(listed["result"]["truncated"], true, "{listed}");
    }
}
