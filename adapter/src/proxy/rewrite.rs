//! The request rewrites the proxy performs on intercepted messages: a bridge
//! configuration becomes the real adapter's configuration, and the session's
//! environment reaches the debuggee however the adapter starts it.

use crate::debugger::AdapterSpec;
use crate::env::to_adapter_format;
use kbridge_config::EnvVars;
use serde_json::{Map, Value};

/// Keys only kbridge reads; the real adapter never sees them. `envFile` is read by
/// kbridge and merged into `env`, so its precedence is the same for every adapter.
const KBRIDGE_KEYS: [&str; 3] = ["bridge", "debugger", "envFile"];

/// The prefix of the flat `bridge.*` keys (`config-schema/src/flat.rs`), kbridge's too.
const FLAT_BRIDGE_PREFIX: &str = "bridge.";

/// Turns `launch`/`attach` arguments into the real adapter's: kbridge keys (flat
/// `bridge.*` ones too) removed,
/// `type` set to the adapter's, `env` replaced by the merged environment in the
/// adapter's format. Everything else keeps its value and position.
pub fn adapter_arguments(arguments: &mut Map<String, Value>, spec: &AdapterSpec, env: &EnvVars) {
    for key in KBRIDGE_KEYS {
        arguments.shift_remove(key);
    }
    arguments.retain(|key, _| !key.starts_with(FLAT_BRIDGE_PREFIX));
    arguments.insert("type".into(), Value::String(spec.adapter_type.clone()));
    arguments.insert("env".into(), to_adapter_format(env, spec.env_format));
}

/// Applies [`adapter_arguments`] to a `launch`, `attach` or `restart` request. A
/// `restart` carries the new configuration in `arguments.arguments`.
pub fn request(message: &mut Value, spec: &AdapterSpec, env: &EnvVars) {
    let is_restart = message.get("command").and_then(Value::as_str) == Some("restart");
    let arguments = match message.get_mut("arguments") {
        Some(Value::Object(arguments)) if is_restart => arguments.get_mut("arguments"),
        Some(arguments) => Some(arguments),
        None => None,
    };
    if let Some(Value::Object(arguments)) = arguments {
        adapter_arguments(arguments, spec, env);
    }
}

/// Adds the session's environment to a `runInTerminal` reverse request, keeping what
/// the adapter already put there (it derived that from the launch configuration).
pub fn run_in_terminal(message: &mut Value, env: &EnvVars) {
    let Some(Value::Object(arguments)) = message.get_mut("arguments") else {
        return;
    };
    let terminal_env = arguments
        .entry("env")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(terminal_env) = terminal_env {
        for (name, value) in env.iter() {
            if !terminal_env.contains_key(name) {
                let value = value.map_or(Value::Null, |v| Value::String(v.to_string()));
                terminal_env.insert(name.to_string(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbridge_config::{EnvFormat, Transport};
    use serde_json::json;

    fn spec(format: EnvFormat) -> AdapterSpec {
        AdapterSpec {
            name: "test".into(),
            preset: None,
            program: "/bin/true".into(),
            args: vec![],
            adapter_type: "real".into(),
            env_format: format,
            transport: Transport::Stdio,
        }
    }

    fn env() -> EnvVars {
        EnvVars::from_json(&json!({"A": "1", "GRPC_DNS_RESOLVER": "native"})).expect("env")
    }

    #[test]
    fn launch_keeps_order_and_unknown_keys_and_drops_kbridge_keys() {
        let mut message = json!({"seq": 2, "type": "request", "command": "launch", "arguments": {
            "type": "bridge", "zeta": {"custom": [1, 2]}, "debugger": "debugpy",
            "env": {"A": "old"}, "bridge": {}, "envFile": ".env", "program": "p.py",
            "bridge.service": "todo-api", "bridge.ports": 8080, "bridged": true
        }});
        request(&mut message, &spec(EnvFormat::List), &env());
        assert_eq!(
            serde_json::to_string(&message["arguments"]).expect("json"),
            r#"{"type":"real","zeta":{"custom":[1,2]},"env":["A=1","GRPC_DNS_RESOLVER=native"],"program":"p.py","bridged":true}"#
        );
    }

    #[test]
    fn restart_rewrites_the_nested_configuration() {
        let mut message = json!({"seq": 9, "type": "request", "command": "restart", "arguments": {
            "arguments": {"type": "bridge", "bridge": {}, "program": "p"}
        }});
        request(&mut message, &spec(EnvFormat::Object), &env());
        assert_eq!(
            message["arguments"]["arguments"],
            json!({"type": "real", "program": "p", "env": {"A": "1", "GRPC_DNS_RESOLVER": "native"}})
        );
    }

    #[test]
    fn run_in_terminal_adds_missing_variables_only() {
        let mut message = json!({"type": "request", "command": "runInTerminal",
            "arguments": {"args": ["x"], "env": {"A": "adapter"}}});
        run_in_terminal(&mut message, &env());
        assert_eq!(
            message["arguments"]["env"],
            json!({"A": "adapter", "GRPC_DNS_RESOLVER": "native"})
        );
    }
}
