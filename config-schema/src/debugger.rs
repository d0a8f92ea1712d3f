//! Which real debug adapter a bridge configuration runs: a preset name, or a custom
//! command described in full.

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// The debug adapters kbridge knows how to find, start and feed environment to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Python: `python3 -m debugpy.adapter`.
    Debugpy,
    /// C, C++, Rust, Swift: LLVM's `lldb-dap` (or the highest `lldb-dap-NN`).
    LldbDap,
    /// C, C++, Rust: the CodeLLDB extension's adapter, `codelldb`.
    Codelldb,
    /// Go: Delve's DAP server, `dlv dap`.
    Dlv,
    /// JavaScript and TypeScript: `js-debug-adapter` (vscode-js-debug's DAP server).
    JsDebug,
    /// .NET: `netcoredbg --interpreter=vscode`.
    Netcoredbg,
}

impl Preset {
    /// Every preset, in the order help texts list them.
    pub const ALL: [Preset; 6] = [
        Preset::Debugpy,
        Preset::LldbDap,
        Preset::Codelldb,
        Preset::Dlv,
        Preset::JsDebug,
        Preset::Netcoredbg,
    ];

    /// The name used in launch configurations and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Debugpy => "debugpy",
            Preset::LldbDap => "lldb-dap",
            Preset::Codelldb => "codelldb",
            Preset::Dlv => "dlv",
            Preset::JsDebug => "js-debug",
            Preset::Netcoredbg => "netcoredbg",
        }
    }

    /// Looks a preset up by name; the error lists the known names.
    pub fn from_name(name: &str) -> Result<Preset, String> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown debugger `{name}`; expected one of {}, or an object {{\"command\": ..., \"args\": [...], \"type\": ...}}",
                    Preset::ALL.map(|p| p.name()).join(", ")
                )
            })
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How an adapter wants the `env` launch argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EnvFormat {
    /// `{"NAME": "value"}`.
    #[default]
    Object,
    /// `["NAME=value"]`.
    List,
}

/// How kbridge talks to an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Transport {
    /// DAP over the adapter's stdin and stdout.
    #[default]
    Stdio,
    /// The adapter listens on TCP: kbridge replaces `${port}` in `args` with a free port,
    /// or reads the `HOST:PORT` the adapter prints on startup.
    Tcp,
}

/// A debug adapter kbridge has no preset for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomDebugger {
    /// The adapter executable: a name looked up on PATH, or a path.
    pub command: String,
    /// Arguments for the adapter.
    #[serde(default)]
    pub args: Vec<String>,
    /// The adapter's own debug type, sent as `type` in the forwarded request.
    #[serde(rename = "type")]
    pub adapter_type: String,
    /// How the adapter wants `env`.
    #[serde(default)]
    pub env_format: EnvFormat,
    /// How kbridge talks to the adapter.
    #[serde(default)]
    pub transport: Transport,
}

/// The `debugger` key: a preset name or a custom adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DebuggerChoice {
    /// One of the presets, by name.
    Preset(Preset),
    /// A custom adapter.
    Custom(CustomDebugger),
}

impl DebuggerChoice {
    /// A short human name: the preset name or the custom command.
    pub fn display_name(&self) -> &str {
        match self {
            DebuggerChoice::Preset(p) => p.name(),
            DebuggerChoice::Custom(c) => &c.command,
        }
    }
}

impl<'de> Deserialize<'de> for DebuggerChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Hand-written so that a typo gets "unknown debugger `debugy`; expected one of …"
        // instead of serde's "data did not match any variant".
        let value = serde_json::Value::deserialize(deserializer)?;
        match value {
            serde_json::Value::String(name) => Preset::from_name(&name)
                .map(DebuggerChoice::Preset)
                .map_err(de::Error::custom),
            serde_json::Value::Object(_) => serde_json::from_value(value)
                .map(DebuggerChoice::Custom)
                .map_err(de::Error::custom),
            other => Err(de::Error::custom(format!(
                "expected a preset name ({}) or an object, found {other}",
                Preset::ALL.map(|p| p.name()).join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn presets_round_trip_by_name() {
        for preset in Preset::ALL {
            let parsed: DebuggerChoice =
                serde_json::from_value(json!(preset.name())).expect("preset name parses");
            assert_eq!(parsed, DebuggerChoice::Preset(preset));
        }
    }

    #[test]
    fn a_typo_lists_the_presets() {
        let err = serde_json::from_value::<DebuggerChoice>(json!("debugy")).expect_err("typo");
        let text = err.to_string();
        assert!(text.contains("unknown debugger `debugy`"), "{text}");
        assert!(text.contains("lldb-dap"), "{text}");
    }

    #[test]
    fn custom_adapter_defaults_and_unknown_keys() {
        let custom: DebuggerChoice =
            serde_json::from_value(json!({"command": "my-dap", "type": "mine"})).expect("custom");
        let DebuggerChoice::Custom(custom) = custom else {
            panic!("expected a custom debugger")
        };
        assert_eq!(custom.env_format, EnvFormat::Object);
        assert_eq!(custom.transport, Transport::Stdio);
        let err = serde_json::from_value::<DebuggerChoice>(
            json!({"command": "x", "type": "y", "argz": []}),
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("argz"), "{err}");
    }
}
