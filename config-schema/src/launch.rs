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
#[schemars(
    title = "kbridge launch configuration",
    extend("additionalProperties" = true),
    transform = crate::flat::describe_in_schema
)]
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

impl IsolateAs {
    /// A routing name, checked: it becomes a DNS label (lowercase letters, digits and
    /// '-', at most 40 characters). The error says so.
    pub fn name(name: &str) -> Result<IsolateAs, String> {
        let valid = !name.is_empty()
            && name.len() <= 40
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if valid {
            Ok(IsolateAs::Name(name.to_string()))
        } else {
            Err(format!(
                "`{name}` cannot be a routing name: use lowercase letters, digits and '-', at most 40 characters (it becomes a DNS label)"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for IsolateAs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Bool(b) => Ok(IsolateAs::Generate(b)),
            serde_json::Value::String(name) => IsolateAs::name(&name).map_err(de::Error::custom),
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
        let (kind, name) =
            parse_workload(workload).map_err(|m| ConfigError::invalid("bridge.workload", m))?;
        Ok(Some(Target::Workload { kind, name }))
    }

    /// These settings, with every key they leave out taken from `lower` (a layer of
    /// lower precedence). The target is one unit: when these settings name a service,
    /// workload or pod, none of `lower`'s comes along. `ports` is taken whole.
    pub fn or(self, lower: BridgeSettings) -> BridgeSettings {
        let names_target = self.service.is_some() || self.workload.is_some() || self.pod.is_some();
        let (service, workload, pod) = if names_target {
            (self.service, self.workload, self.pod)
        } else {
            (lower.service, lower.workload, lower.pod)
        };
        BridgeSettings {
            context: self.context.or(lower.context),
            namespace: self.namespace.or(lower.namespace),
            service,
            workload,
            pod,
            container: self.container.or(lower.container),
            ports: if self.ports.is_empty() {
                lower.ports
            } else {
                self.ports
            },
            isolate_as: self.isolate_as.or(lower.isolate_as),
            hosts: self.hosts.or(lower.hosts),
            use_kubernetes_service_environment_variables: self
                .use_kubernetes_service_environment_variables
                .or(lower.use_kubernetes_service_environment_variables),
            config: self.config.or(lower.config),
            disconnect_after_debugging: self
                .disconnect_after_debugging
                .or(lower.disconnect_after_debugging),
            agent_image: self.agent_image.or(lower.agent_image),
            idle_restore_seconds: self.idle_restore_seconds.or(lower.idle_restore_seconds),
        }
    }
}

/// `KIND/NAME` (`deployment/todo-api`, `deploy/todo-api`): the kind and the name; the
/// error says what is wrong with it.
pub fn parse_workload(workload: &str) -> Result<(WorkloadKind, String), String> {
    let (kind, name) = workload.split_once('/').ok_or_else(|| {
        format!("`{workload}` is not of the form KIND/NAME, e.g. deployment/todo-api")
    })?;
    let kind: WorkloadKind = kind
        .parse()
        .map_err(|e: UnknownWorkloadKind| e.to_string())?;
    if name.is_empty() {
        return Err(format!("`{workload}` has no name after the '/'"));
    }
    Ok((kind, name.to_string()))
}

impl LaunchConfig {
    /// Reads the kbridge keys of a launch or attach request's `arguments`, with errors
    /// that name the key path (`bridge.hosts: unknown variant …`). Flat `bridge.*` keys
    /// (`flat.rs`) fill in what the nested `bridge` table leaves out.
    pub fn from_arguments(arguments: &serde_json::Value) -> Result<LaunchConfig, ConfigError> {
        let mut config: LaunchConfig =
            serde_path_to_error::deserialize(arguments).map_err(|err| {
                let path = err.path().to_string();
                ConfigError::invalid(path, with_suggestion(err.into_inner().to_string()))
            })?;
        if let Some(bridge) = &config.bridge {
            bridge.target()?;
        }
        let flat = match arguments.as_object() {
            Some(arguments) => crate::flat::from_launch_arguments(arguments)?,
            None => None,
        };
        config.bridge = match (config.bridge.take(), flat) {
            (Some(nested), Some(flat)) => Some(nested.or(flat)),
            (nested, flat) => nested.or(flat),
        };
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
