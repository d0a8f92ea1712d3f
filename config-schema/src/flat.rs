//! The `bridge` block written as flat keys of text: `"bridge.service": "todo-api"`,
//! `"bridge.ports": "8080:80,9090"`. Editors whose launch templates cannot nest a table
//! (Helix: template values are strings, string lists or booleans, filled from prompts) send
//! these; the same keys are `kbridge dap`'s target flags (`--service`, `--ports`, …).
//!
//! A value is text as a template fills it in: ports as `LOCAL[:REMOTE]` entries separated
//! by commas, booleans as `true`/`false`. An empty value (an unanswered prompt) means the
//! key is not given. Helix turns a value made only of digits into a JSON number, and a
//! template may hold a real boolean or a list of strings, so those are read as their text.
//!
//! Layers combine with [`BridgeSettings::or`]: the nested `bridge` table over the flat
//! keys over the flags (see `proxy/setup.rs` in the adapter).

use crate::error::ConfigError;
use crate::launch::{
    edit_distance, parse_workload, BridgeSettings, HostsMode, IsolateAs, PortMapping,
};
use serde_json::{Map, Value};

/// The prefix of a flat key in launch arguments.
const PREFIX: &str = "bridge.";

/// One key of the `bridge` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatKey {
    /// `context`.
    Context,
    /// `namespace`.
    Namespace,
    /// `service`.
    Service,
    /// `workload`, `KIND/NAME`.
    Workload,
    /// `pod`.
    Pod,
    /// `container`.
    Container,
    /// `ports`: `LOCAL[:REMOTE]` entries separated by commas.
    Ports,
    /// `isolateAs`: a routing name, or `true`/`false`.
    IsolateAs,
    /// `hosts`: `auto`, `namespace`, `system` or `off`.
    Hosts,
    /// `useKubernetesServiceEnvironmentVariables`: `true`/`false`.
    UseKubernetesServiceEnvironmentVariables,
    /// `config`: a path.
    Config,
    /// `disconnectAfterDebugging`: `true`/`false`.
    DisconnectAfterDebugging,
    /// `agentImage`.
    AgentImage,
    /// `idleRestoreSeconds`: a whole number.
    IdleRestoreSeconds,
}

impl FlatKey {
    /// Every key, in the order of the `bridge` block.
    pub const ALL: [FlatKey; 14] = [
        FlatKey::Context,
        FlatKey::Namespace,
        FlatKey::Service,
        FlatKey::Workload,
        FlatKey::Pod,
        FlatKey::Container,
        FlatKey::Ports,
        FlatKey::IsolateAs,
        FlatKey::Hosts,
        FlatKey::UseKubernetesServiceEnvironmentVariables,
        FlatKey::Config,
        FlatKey::DisconnectAfterDebugging,
        FlatKey::AgentImage,
        FlatKey::IdleRestoreSeconds,
    ];

    /// The key's name inside `bridge` (`isolateAs`).
    pub fn name(self) -> &'static str {
        match self {
            FlatKey::Context => "context",
            FlatKey::Namespace => "namespace",
            FlatKey::Service => "service",
            FlatKey::Workload => "workload",
            FlatKey::Pod => "pod",
            FlatKey::Container => "container",
            FlatKey::Ports => "ports",
            FlatKey::IsolateAs => "isolateAs",
            FlatKey::Hosts => "hosts",
            FlatKey::UseKubernetesServiceEnvironmentVariables => {
                "useKubernetesServiceEnvironmentVariables"
            }
            FlatKey::Config => "config",
            FlatKey::DisconnectAfterDebugging => "disconnectAfterDebugging",
            FlatKey::AgentImage => "agentImage",
            FlatKey::IdleRestoreSeconds => "idleRestoreSeconds",
        }
    }

    /// The flat launch argument: `bridge.isolateAs`.
    pub fn launch_key(self) -> String {
        format!("{PREFIX}{}", self.name())
    }

    /// The `kbridge dap` flag: `--isolate-as`.
    pub fn flag(self) -> String {
        let mut flag = String::from("--");
        for c in self.name().chars() {
            if c.is_ascii_uppercase() {
                flag.push('-');
            }
            flag.push(c.to_ascii_lowercase());
        }
        flag
    }

    fn from_name(name: &str) -> Option<FlatKey> {
        FlatKey::ALL.into_iter().find(|key| key.name() == name)
    }

    /// Sets this key of `settings` from `text` (trimmed, not empty). The error says what
    /// is wrong and what is allowed; the caller names the key or flag.
    pub fn apply(self, text: &str, settings: &mut BridgeSettings) -> Result<(), String> {
        let owned = || Some(text.to_string());
        match self {
            FlatKey::Context => settings.context = owned(),
            FlatKey::Namespace => settings.namespace = owned(),
            FlatKey::Service => settings.service = owned(),
            FlatKey::Workload => {
                parse_workload(text)?;
                settings.workload = owned();
            }
            FlatKey::Pod => settings.pod = owned(),
            FlatKey::Container => settings.container = owned(),
            FlatKey::Ports => settings.ports = parse_ports(text)?,
            FlatKey::IsolateAs => {
                settings.isolate_as = Some(match text {
                    "true" => IsolateAs::Generate(true),
                    "false" => IsolateAs::Generate(false),
                    name => IsolateAs::name(name)?,
                })
            }
            FlatKey::Hosts => settings.hosts = Some(parse_hosts(text)?),
            FlatKey::UseKubernetesServiceEnvironmentVariables => {
                settings.use_kubernetes_service_environment_variables = Some(parse_bool(text)?)
            }
            FlatKey::Config => settings.config = owned(),
            FlatKey::DisconnectAfterDebugging => {
                settings.disconnect_after_debugging = Some(parse_bool(text)?)
            }
            FlatKey::AgentImage => settings.agent_image = owned(),
            FlatKey::IdleRestoreSeconds => {
                settings.idle_restore_seconds = Some(text.parse().map_err(|_| {
                    format!("`{text}` is not a whole number of seconds, e.g. \"60\"")
                })?)
            }
        }
        Ok(())
    }
}

/// `8080`, `8080:80`, `8080:80,9090` (spaces allowed around entries): LOCAL or
/// LOCAL:REMOTE, as `--port` of `kbridge run` takes them.
fn parse_ports(text: &str) -> Result<Vec<PortMapping>, String> {
    let port = |p: &str| {
        p.trim().parse::<u16>().map_err(|_| {
            format!("`{p}` in `{text}` is not a port number; write LOCAL or LOCAL:REMOTE entries separated by commas, e.g. \"8080\" or \"8080:80,9090\"")
        })
    };
    text.split(',')
        .map(|entry| match entry.split_once(':') {
            Some((local, remote)) => Ok(PortMapping::Mapped {
                remote: port(remote)?,
                local: port(local)?,
            }),
            None => Ok(PortMapping::Local(port(entry)?)),
        })
        .collect()
}

fn parse_hosts(text: &str) -> Result<HostsMode, String> {
    match text {
        "auto" => Ok(HostsMode::Auto),
        "namespace" => Ok(HostsMode::Namespace),
        "system" => Ok(HostsMode::System),
        "off" => Ok(HostsMode::Off),
        _ => Err(format!(
            "`{text}` is not a hosts mode; expected one of `auto`, `namespace`, `system`, `off`"
        )),
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{text}` is not `true` or `false`")),
    }
}

/// The text of a flat value as a template sends it; `None` when not given (null, or
/// empty after trimming). Lists are accepted for `ports` only, one entry per item.
fn value_text(key: FlatKey, value: &Value) -> Result<Option<String>, String> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(text) => text.trim().to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        Value::Array(items) if key == FlatKey::Ports => {
            let entries: Option<Vec<String>> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Some(s.trim().to_string()),
                    Value::Number(n) if n.is_u64() => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            let entries = entries
                .ok_or_else(|| format!("expected port entries as strings, found {value}"))?;
            entries
                .into_iter()
                .filter(|e| !e.is_empty())
                .collect::<Vec<_>>()
                .join(",")
        }
        other => return Err(format!("expected a string, found {other}")),
    };
    Ok((!text.is_empty()).then_some(text))
}

/// "unknown key `bridge.x`", with the closest real key when one is near.
fn unknown_key(name: &str) -> String {
    let expected: Vec<String> = FlatKey::ALL.iter().map(|k| k.launch_key()).collect();
    let closest = FlatKey::ALL
        .iter()
        .map(|k| (edit_distance(name, k.name()), k.launch_key()))
        .min()
        .filter(|(distance, _)| *distance <= 2.max(name.len() / 3));
    let hint = closest
        .map(|(_, key)| format!("did you mean `{key}`? "))
        .unwrap_or_default();
    format!(
        "unknown key; {hint}expected one of `{}`",
        expected.join("`, `")
    )
}

/// The settings the flat `bridge.*` keys of launch arguments give; `None` when no such
/// key has a value. Errors name the key: `` `bridge.ports`: `80a` in … ``.
pub fn from_launch_arguments(
    arguments: &Map<String, Value>,
) -> Result<Option<BridgeSettings>, ConfigError> {
    let mut settings = BridgeSettings::default();
    let mut given = false;
    for (key, value) in arguments {
        let Some(name) = key.strip_prefix(PREFIX) else {
            continue;
        };
        let flat =
            FlatKey::from_name(name).ok_or_else(|| ConfigError::invalid(key, unknown_key(name)))?;
        let Some(text) = value_text(flat, value).map_err(|m| ConfigError::invalid(key, m))? else {
            continue;
        };
        flat.apply(&text, &mut settings)
            .map_err(|m| ConfigError::invalid(key, m))?;
        given = true;
    }
    if given {
        settings.target()?;
    }
    Ok(given.then_some(settings))
}

/// The settings `kbridge dap`'s target flags give: each `(key, value)` as typed after
/// its flag. Errors name the flag: `` `--ports`: … ``.
pub fn from_flags<'a>(
    flags: impl IntoIterator<Item = (FlatKey, &'a str)>,
) -> Result<BridgeSettings, ConfigError> {
    let mut settings = BridgeSettings::default();
    for (key, value) in flags {
        let text = value.trim();
        if text.is_empty() {
            continue;
        }
        key.apply(text, &mut settings)
            .map_err(|message| ConfigError::Flag {
                flag: key.flag(),
                message,
            })?;
    }
    Ok(settings)
}

/// Adds the flat keys to the launch schema as one pattern property, `^bridge\.(context|…)$`,
/// so `kbridge schema launch` documents them without listing fourteen more completions
/// next to the `bridge` table (VS Code's attributes take `properties` only).
pub fn describe_in_schema(schema: &mut schemars::Schema) {
    let names: Vec<&str> = FlatKey::ALL.iter().map(|k| k.name()).collect();
    let pattern = format!("^bridge\\.({})$", names.join("|"));
    let described = serde_json::json!({
        "description": "A key of `bridge` written flat, as text, for editors whose templates cannot nest a table (Helix): `\"bridge.service\": \"todo-api\"`, `\"bridge.ports\": \"8080:80,9090\"` (LOCAL[:REMOTE] entries), booleans as `\"true\"`/`\"false\"`. An empty value is not given; the nested `bridge` table wins key by key.",
        "anyOf": [
            {"type": "string"},
            {"type": "integer", "minimum": 0},
            {"type": "boolean"},
            {"type": "array", "items": {"type": ["string", "integer"]}}
        ]
    });
    schema.insert(
        "patternProperties".into(),
        serde_json::json!({ pattern: described }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::{LaunchConfig, Target};
    use kbridge_protocol::contract::WorkloadKind;
    use serde_json::json;

    fn flat(arguments: Value) -> Result<Option<BridgeSettings>, ConfigError> {
        from_launch_arguments(arguments.as_object().expect("an object"))
    }

    #[test]
    fn every_key_of_the_bridge_block_is_read_from_text() {
        let settings = flat(json!({
            "program": "app.py",
            "bridge.context": "kind-dev", "bridge.namespace": "todo",
            "bridge.workload": "deployment/todo-api", "bridge.container": "api",
            "bridge.ports": "8080:80, 9090", "bridge.isolateAs": "alice",
            "bridge.hosts": "namespace", "bridge.useKubernetesServiceEnvironmentVariables": "true",
            "bridge.config": "KubernetesLocalProcessConfig.yaml",
            "bridge.disconnectAfterDebugging": "false", "bridge.agentImage": "localhost:5000/agent:dev",
            "bridge.idleRestoreSeconds": "90"
        }))
        .expect("valid")
        .expect("given");
        assert_eq!(
            settings,
            BridgeSettings {
                context: Some("kind-dev".into()),
                namespace: Some("todo".into()),
                service: None,
                workload: Some("deployment/todo-api".into()),
                pod: None,
                container: Some("api".into()),
                ports: vec![
                    PortMapping::Mapped {
                        remote: 80,
                        local: 8080
                    },
                    PortMapping::Local(9090)
                ],
                isolate_as: Some(IsolateAs::Name("alice".into())),
                hosts: Some(HostsMode::Namespace),
                use_kubernetes_service_environment_variables: Some(true),
                config: Some("KubernetesLocalProcessConfig.yaml".into()),
                disconnect_after_debugging: Some(false),
                agent_image: Some("localhost:5000/agent:dev".into()),
                idle_restore_seconds: Some(90),
            }
        );
        let service = flat(json!({"bridge.service": "todo-api"})).expect("valid");
        assert_eq!(
            service.and_then(|s| s.target().ok().flatten()),
            Some(Target::Service("todo-api".into()))
        );
        let pod = flat(json!({"bridge.pod": "todo-api-0"})).expect("valid");
        assert_eq!(pod.expect("given").pod.as_deref(), Some("todo-api-0"));
    }

    #[test]
    fn every_key_has_a_launch_key_and_a_flag() {
        let names: Vec<&str> = FlatKey::ALL.iter().map(|k| k.name()).collect();
        let schema = crate::schema::launch_schema();
        let bridge_keys = schema["$defs"]["BridgeSettings"]["properties"]
            .as_object()
            .expect("bridge properties");
        let mut expected: Vec<&str> = bridge_keys.keys().map(String::as_str).collect();
        let mut sorted = names.clone();
        expected.sort_unstable();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "FlatKey::ALL is every key of `bridge`");
        assert_eq!(FlatKey::IsolateAs.launch_key(), "bridge.isolateAs");
        assert_eq!(FlatKey::IsolateAs.flag(), "--isolate-as");
        assert_eq!(
            FlatKey::UseKubernetesServiceEnvironmentVariables.flag(),
            "--use-kubernetes-service-environment-variables"
        );
    }

    #[test]
    fn values_as_helix_sends_them() {
        // Helix sends a value made only of digits as a number; a template may hold a real
        // boolean or a list of strings.
        let settings = flat(json!({
            "bridge.ports": 8080, "bridge.idleRestoreSeconds": 30,
            "bridge.isolateAs": true, "bridge.disconnectAfterDebugging": false
        }))
        .expect("valid")
        .expect("given");
        assert_eq!(settings.ports, [PortMapping::Local(8080)]);
        assert_eq!(settings.idle_restore_seconds, Some(30));
        assert_eq!(settings.isolate_as, Some(IsolateAs::Generate(true)));
        assert_eq!(settings.disconnect_after_debugging, Some(false));
        let list = flat(json!({"bridge.ports": ["8080", "9090:80", ""]}))
            .expect("valid")
            .expect("given");
        assert_eq!(
            list.ports,
            [
                PortMapping::Local(8080),
                PortMapping::Mapped {
                    remote: 80,
                    local: 9090
                }
            ]
        );
    }

    #[test]
    fn empty_values_are_not_given() {
        assert_eq!(
            flat(json!({"bridge.service": "", "bridge.namespace": "  ", "bridge.ports": null}))
                .expect("valid"),
            None
        );
        let settings = flat(json!({"bridge.service": "todo-api", "bridge.ports": ""}))
            .expect("valid")
            .expect("given");
        assert!(settings.ports.is_empty());
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (json!({"bridge.ports": "80a"}), "`bridge.ports`", "`80a`"),
            (
                json!({"bridge.ports": "8080:99999"}),
                "`bridge.ports`",
                "99999",
            ),
            (json!({"bridge.ports": [true]}), "`bridge.ports`", "strings"),
            (
                json!({"bridge.hosts": "etc"}),
                "`bridge.hosts`",
                "`namespace`",
            ),
            (
                json!({"bridge.isolateAs": "Alice Smith"}),
                "`bridge.isolateAs`",
                "DNS label",
            ),
            (
                json!({"bridge.workload": "cronjob/x"}),
                "`bridge.workload`",
                "statefulset",
            ),
            (
                json!({"bridge.workload": "todo-api"}),
                "`bridge.workload`",
                "KIND/NAME",
            ),
            (
                json!({"bridge.disconnectAfterDebugging": "yes"}),
                "`bridge.disconnectAfterDebugging`",
                "`true` or `false`",
            ),
            (
                json!({"bridge.useKubernetesServiceEnvironmentVariables": "1"}),
                "`bridge.useKubernetesServiceEnvironmentVariables`",
                "`true` or `false`",
            ),
            (
                json!({"bridge.idleRestoreSeconds": "soon"}),
                "`bridge.idleRestoreSeconds`",
                "whole number",
            ),
            (
                json!({"bridge.service": ["a", "b"]}),
                "`bridge.service`",
                "expected a string",
            ),
            (
                json!({"bridge.namespace": {"x": 1}}),
                "`bridge.namespace`",
                "expected a string",
            ),
            (
                json!({"bridge.namespce": "todo"}),
                "`bridge.namespce`",
                "did you mean `bridge.namespace`?",
            ),
        ];
        for (arguments, key, detail) in cases {
            let text = flat(arguments.clone())
                .expect_err(&arguments.to_string())
                .to_string();
            assert!(
                text.contains(key) && text.contains(detail),
                "{arguments}: {text}"
            );
        }
        let err = flat(json!({"bridge.service": "a", "bridge.pod": "b"})).expect_err("two targets");
        assert!(err.to_string().contains("service, pod"), "{err}");
    }

    #[test]
    fn the_nested_table_wins_over_flat_keys_key_by_key() {
        let config = LaunchConfig::from_arguments(&json!({
            "bridge": {"namespace": "nested", "ports": [3000]},
            "bridge.namespace": "flat", "bridge.service": "todo-api",
            "bridge.ports": "8080", "bridge.hosts": "off"
        }))
        .expect("valid");
        let bridge = config.bridge.expect("bridge");
        assert_eq!(bridge.namespace.as_deref(), Some("nested"));
        assert_eq!(bridge.ports, [PortMapping::Local(3000)]);
        assert_eq!(bridge.service.as_deref(), Some("todo-api"));
        assert_eq!(bridge.hosts, Some(HostsMode::Off));
        // Only flat keys: they make the `bridge` block.
        let config =
            LaunchConfig::from_arguments(&json!({"bridge.service": "todo-api"})).expect("valid");
        assert_eq!(config.target(), Some(Target::Service("todo-api".into())));
    }

    #[test]
    fn a_target_is_taken_whole_from_the_highest_layer_naming_one() {
        let config = LaunchConfig::from_arguments(&json!({
            "bridge": {"workload": "statefulset/db"}, "bridge.service": "todo-api"
        }))
        .expect("one target per layer is fine");
        assert_eq!(
            config.target(),
            Some(Target::Workload {
                kind: WorkloadKind::StatefulSet,
                name: "db".into()
            })
        );
        let flags = from_flags([
            (FlatKey::Service, "stats-api"),
            (FlatKey::Namespace, "todo"),
            (FlatKey::IsolateAs, "true"),
        ])
        .expect("valid flags");
        let launch = flat(json!({"bridge.pod": "todo-api-0", "bridge.isolateAs": "false"}))
            .expect("valid")
            .expect("given");
        let merged = launch.or(flags);
        assert_eq!(
            merged.target().expect("one target"),
            Some(Target::Pod("todo-api-0".into()))
        );
        assert_eq!(merged.service, None);
        assert_eq!(merged.namespace.as_deref(), Some("todo"));
        assert_eq!(merged.isolate_as, Some(IsolateAs::Generate(false)));
    }

    #[test]
    fn flags_fill_what_the_launch_leaves_out() {
        let flags = from_flags([
            (FlatKey::Service, "todo-api"),
            (FlatKey::Namespace, "todo"),
            (FlatKey::Ports, "8080"),
            (FlatKey::Context, ""),
        ])
        .expect("valid flags");
        assert_eq!(flags.context, None, "an empty flag is not given");
        let merged = BridgeSettings::default().or(flags.clone());
        assert_eq!(merged, flags);
        let launch = flat(json!({"bridge.ports": "3000", "bridge.context": "kind-dev"}))
            .expect("valid")
            .expect("given");
        let merged = launch.or(flags);
        assert_eq!(merged.ports, [PortMapping::Local(3000)]);
        assert_eq!(merged.context.as_deref(), Some("kind-dev"));
        assert_eq!(merged.service.as_deref(), Some("todo-api"));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let err = from_flags([(FlatKey::Ports, "http")]).expect_err("not a port");
        assert!(err.to_string().contains("`--ports`"), "{err}");
        let err = from_flags([(FlatKey::IsolateAs, "-bad-")]).expect_err("not a label");
        assert!(err.to_string().contains("`--isolate-as`"), "{err}");
        let err = from_flags([(FlatKey::Workload, "deployment/")]).expect_err("no name");
        assert!(err.to_string().contains("`--workload`"), "{err}");
    }
}
