//! The `"type": "bridge"` launch configuration: the user's ordinary debug
//! configuration plus `debugger` (which real adapter) and `bridge` (the cluster side).

use crate::debugger::DebuggerChoice;
use crate::env::EnvVars;
use crate::error::ConfigError;
use kbridge_protocol::contract::{UnknownWorkloadKind, WorkloadKind};
use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// `launch` or `attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RequestKind {
    /// Start the program under the debugger.
    Launch,
    /// Attach to a running program.
    Attach,
}

/// The keys kbridge reads from a launch configuration. Every other key belongs to the
/// real debugger and is forwarded untouched, so this type only sees its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "kbridge launch configuration", extend("additionalProperties" = true))]
pub struct LaunchConfig {
    /// Always `bridge` in the editor; kbridge replaces it with the real adapter's type.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `launch` or `attach`.
    #[serde(default)]
    pub request: Option<RequestKind>,
    /// The name the editor shows.
    #[serde(default)]
    pub name: Option<String>,
    /// The real debug adapter: a preset name or a custom command.
    #[serde(default)]
    pub debugger: Option<DebuggerChoice>,
    /// The cluster side. Without a target the debugger runs locally with kbridge's
    /// environment layers only.
    #[serde(default)]
    pub bridge: Option<BridgeSettings>,
    /// Environment for the debuggee; wins over everything kbridge adds.
    #[serde(default)]
    pub env: Option<EnvVars>,
    /// A dotenv file whose entries rank just below `env`. kbridge reads it itself, so
    /// the precedence holds whatever the adapter does with `envFile`.
    #[serde(default)]
    pub env_file: Option<String>,
}

/// How cluster service names resolve for the local process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HostsMode {
    /// `namespace` where available, else `system` if writable, else `off`.
    #[default]
    Auto,
    /// A private mount namespace whose `/etc/hosts` has the entries (Linux, no admin).
    Namespace,
    /// Entries added to the system hosts file between marker lines (needs admin).
    System,
    /// Only environment variables point at the local endpoints.
    Off,
}

/// `isolateAs`: a routing name, or `true` to have one generated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum IsolateAs {
    /// `true`: generate `<user>-<4 hex>`; `false`: no isolation.
    Generate(bool),
    /// Route only requests marked with this name.
    Name(String),
}

impl<'de> Deserialize<'de> for IsolateAs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Bool(b) => Ok(IsolateAs::Generate(b)),
            serde_json::Value::String(name) => {
                let valid = !name.is_empty()
                    && name.len() <= 40
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !name.starts_with('-')
                    && !name.ends_with('-');
                if valid {
                    Ok(IsolateAs::Name(name))
                } else {
                    Err(de::Error::custom(format!(
                        "`{name}` cannot be a routing name: use lowercase letters, digits and '-', at most 40 characters (it becomes a DNS label)"
                    )))
                }
            }
            other => Err(de::Error::custom(format!(
                "expected a name or true, found {other}"
            ))),
        }
    }
}

/// One entry of `ports`: a local port, or a container port mapped to a local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortMapping {
    /// The local port; maps the container's only port.
    Local(u16),
    /// `{"remote": container port, "local": local port}`.
    Mapped {
        /// The container port (the Service's targetPort).
        remote: u16,
        /// The port the local process listens on.
        local: u16,
    },
}

/// The `bridge` key. Unknown keys are errors: a misspelt `namespce` must not silently
/// bridge the wrong namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BridgeSettings {
    /// Kubeconfig context; default: the current context.
    #[serde(default)]
    pub context: Option<String>,
    /// Namespace; default: the context's namespace, else `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Target by Service name.
    #[serde(default)]
    pub service: Option<String>,
    /// Target by workload, `KIND/NAME` (deployment, statefulset, replicaset, pod).
    #[serde(default)]
    pub workload: Option<String>,
    /// Target by Pod name.
    #[serde(default)]
    pub pod: Option<String>,
    /// The container to replace; needed only when the pod has several app containers.
    #[serde(default)]
    pub container: Option<String>,
    /// Ports the local process listens on.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Route only requests marked with this name to this machine.
    #[serde(default)]
    pub isolate_as: Option<IsolateAs>,
    /// How cluster names resolve locally.
    #[serde(default)]
    pub hosts: Option<HostsMode>,
    /// Reach services through `*_SERVICE_HOST`/`*_PORT` variables only, no hosts entries.
    #[serde(default)]
    pub use_kubernetes_service_environment_variables: Option<bool>,
    /// Path of `KubernetesLocalProcessConfig.yaml`, or of an older `azds-local.env` (a name
    /// ending in `.env`).
    #[serde(default)]
    pub config: Option<String>,
    /// End the session when debugging ends (default true); `false` keeps it for the next launch.
    #[serde(default)]
    pub disconnect_after_debugging: Option<bool>,
    /// The agent image to run in the cluster.
    #[serde(default)]
    pub agent_image: Option<String>,
    /// Seconds without kbridge after which the cluster restores the workload by itself.
    #[serde(default)]
    pub idle_restore_seconds: Option<u64>,
}

/// What the session bridges: at most one of service, workload, pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Service, resolved through its selector.
    Service(String),
    /// A workload `KIND/NAME`.
    Workload {
        /// The kind, as the cluster contract names it.
        kind: WorkloadKind,
        /// Object name.
        name: String,
    },
    /// A Pod by name.
    Pod(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Service(name) => write!(f, "service/{name}"),
            Target::Workload { kind, name } => write!(f, "{kind}/{name}"),
            Target::Pod(name) => write!(f, "pod/{name}"),
        }
    }
}

impl BridgeSettings {
    /// The target, if any; an error when several are given or the workload is malformed.
    pub fn target(&self) -> Result<Option<Target>, ConfigError> {
        let given: Vec<&str> = [
            ("service", &self.service),
            ("workload", &self.workload),
            ("pod", &self.pod),
        ]
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| *k)
        .collect();
        if given.len() > 1 {
            return Err(ConfigError::Conflict(format!(
                "`bridge` names a target more than once ({}); keep exactly one of `service`, `workload`, `pod`",
                given.join(", ")
            )));
        }
        if let Some(service) = &self.service {
            return Ok(Some(Target::Service(service.clone())));
        }
        if let Some(pod) = &self.pod {
            return Ok(Some(Target::Pod(pod.clone())));
        }
        let Some(workload) = &self.workload else {
            return Ok(None);
        };
        let (kind, name) = workload.split_once('/').ok_or_else(|| {
            ConfigError::invalid(
                "bridge.workload",
                format!("`{workload}` is not of the form KIND/NAME, e.g. deployment/todo-api"),
            )
        })?;
        let kind: WorkloadKind = kind.parse().map_err(|e: UnknownWorkloadKind| {
            ConfigError::invalid("bridge.workload", e.to_string())
        })?;
        if name.is_empty() {
            return Err(ConfigError::invalid(
                "bridge.workload",
                format!("`{workload}` has no name after the '/'"),
            ));
        }
        Ok(Some(Target::Workload {
            kind,
            name: name.to_string(),
        }))
    }
}

impl LaunchConfig {
    /// Reads the kbridge keys of a launch or attach request's `arguments`, with errors
    /// that name the key path (`bridge.hosts: unknown variant …`).
    pub fn from_arguments(arguments: &serde_json::Value) -> Result<LaunchConfig, ConfigError> {
        let config: LaunchConfig = serde_path_to_error::deserialize(arguments).map_err(|err| {
            let path = err.path().to_string();
            ConfigError::invalid(path, with_suggestion(err.into_inner().to_string()))
        })?;
        if let Some(bridge) = &config.bridge {
            bridge.target()?;
        }
        Ok(config)
    }

    /// The target named in `bridge`, if any.
    pub fn target(&self) -> Option<Target> {
        self.bridge.as_ref().and_then(|b| b.target().ok().flatten())
    }
}

/// Adds "did you mean …?" to serde's "unknown field `x`, expected one of `a`, `b`".
fn with_suggestion(message: String) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message;
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message;
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|candidate| (edit_distance(unknown, candidate), candidate))
        .min();
    match best {
        Some((distance, candidate)) if distance <= 2.max(unknown.len() / 3) => {
            format!("{message}; did you mean `{candidate}`?")
        }
        _ => message,
    }
}

/// Levenshtein distance, case-insensitive; names here are short.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_configuration_with_every_bridge_key() {
        let config = LaunchConfig::from_arguments(&json!({
            "type": "bridge", "request": "launch", "name": "todo-api (bridged)",
            "debugger": "debugpy", "program": "/w/app.py", "env": {"LOG_LEVEL": "debug"},
            "bridge": {
                "context": "kind-dev", "namespace": "todo", "service": "todo-api",
                "container": "api", "ports": [3000, {"remote": 80, "local": 3001}],
                "isolateAs": "alice", "hosts": "auto",
                "useKubernetesServiceEnvironmentVariables": false,
                "config": "KubernetesLocalProcessConfig.yaml",
                "disconnectAfterDebugging": true, "agentImage": "ghcr.io/kbridge/agent:1"
            }
        }))
        .expect("a configuration using every bridge key is valid");
        let bridge = config.bridge.as_ref().expect("bridge");
        assert_eq!(config.target(), Some(Target::Service("todo-api".into())));
        assert_eq!(
            bridge.ports,
            [
                PortMapping::Local(3000),
                PortMapping::Mapped {
                    remote: 80,
                    local: 3001
                }
            ]
        );
        assert_eq!(bridge.isolate_as, Some(IsolateAs::Name("alice".into())));
    }

    #[test]
    fn unknown_bridge_key_names_the_path() {
        let err = LaunchConfig::from_arguments(&json!({"bridge": {"namespce": "x"}}))
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("`bridge.namespce`"), "{text}");
        assert!(text.contains("did you mean `namespace`?"), "{text}");
        assert!(text.contains("namespace"), "lists allowed keys: {text}");
    }

    #[test]
    fn bad_enum_value_lists_allowed_values() {
        let err = LaunchConfig::from_arguments(&json!({"bridge": {"hosts": "etc"}}))
            .expect_err("bad hosts");
        let text = err.to_string();
        assert!(text.contains("bridge.hosts"), "{text}");
        assert!(
            text.contains("namespace") && text.contains("system"),
            "{text}"
        );
    }

    #[test]
    fn targets_conflict_and_workload_forms() {
        let err = LaunchConfig::from_arguments(&json!({"bridge": {"service": "a", "pod": "b"}}))
            .expect_err("two targets");
        assert!(err.to_string().contains("service, pod"), "{err}");
        let config =
            LaunchConfig::from_arguments(&json!({"bridge": {"workload": "deploy/todo-api"}}))
                .expect("deploy/ is accepted");
        assert_eq!(
            config.target(),
            Some(Target::Workload {
                kind: WorkloadKind::Deployment,
                name: "todo-api".into()
            })
        );
        let err = LaunchConfig::from_arguments(&json!({"bridge": {"workload": "cronjob/x"}}))
            .expect_err("unsupported kind");
        assert!(err.to_string().contains("statefulset"), "{err}");
    }

    #[test]
    fn isolate_as_must_be_a_dns_label() {
        let err = LaunchConfig::from_arguments(&json!({"bridge": {"isolateAs": "Alice Smith"}}))
            .expect_err("not a label");
        assert!(err.to_string().contains("bridge.isolateAs"), "{err}");
    }

    #[test]
    fn top_level_keys_belong_to_the_debugger() {
        let config = LaunchConfig::from_arguments(&json!({"program": "x", "justMyCode": false}))
            .expect("unknown top-level keys are the debugger's");
        assert!(config.bridge.is_none() && config.debugger.is_none());
    }
}
