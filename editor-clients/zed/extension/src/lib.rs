//! Zed extension for kbridge: the `kbridge` adapter in `.zed/debug.json` starts `kbridge
//! dap --debugger <preset>` (stdio) and hands Zed the scenario unchanged as the
//! launch/attach arguments; the `kbridge` language server is `kbridge lsp` (stdio) for
//! YAML and JSON files, of which it reads KubernetesLocalProcessConfig.yaml and
//! .vscode/launch.json. kbridge does everything else; this only finds it and builds its
//! command lines.

use zed_extension_api::{
    self as zed, serde_json, DebugAdapterBinary, DebugTaskDefinition,
    StartDebuggingRequestArguments, StartDebuggingRequestArgumentsRequest, Worktree,
};

const ADAPTER: &str = "kbridge";
const LANGUAGE_SERVER: &str = "kbridge";
const INSTALL_HINT: &str =
    "kbridge was not found on PATH. Install it with `cargo install --path adapter` \
from a kbridge checkout, or download a release binary, then put it on PATH or set \
`dap.kbridge.binary` in Zed's settings.";

/// `launch` or `attach`, from the scenario's `request` key.
fn request_kind(
    config: &serde_json::Value,
) -> Result<StartDebuggingRequestArgumentsRequest, String> {
    match config.get("request").and_then(|r| r.as_str()) {
        Some("launch") => Ok(StartDebuggingRequestArgumentsRequest::Launch),
        Some("attach") => Ok(StartDebuggingRequestArgumentsRequest::Attach),
        Some(other) => Err(format!(
            "kbridge: `request` must be \"launch\" or \"attach\", not {other:?}"
        )),
        None => Err("kbridge: the scenario needs `\"request\": \"launch\"` or `\"attach\"`".into()),
    }
}

/// `dap --debugger <preset>` for a preset name, so kbridge starts the real adapter at
/// `initialize`; a custom `debugger` object is left to kbridge, which reads it at `launch`.
fn adapter_arguments(config: &serde_json::Value) -> Vec<String> {
    let mut args = vec!["dap".to_string()];
    if let Some(preset) = config
        .get("debugger")
        .and_then(|d| d.as_str())
        .filter(|d| !d.is_empty())
    {
        args.push("--debugger".into());
        args.push(preset.into());
    }
    args
}

/// kbridge starts the real adapter before it sees `cwd`, and Delve builds in its own
/// working directory: run kbridge in the scenario's absolute `cwd`, else the project root.
fn working_directory(config: &serde_json::Value, root: String) -> String {
    match config.get("cwd").and_then(|c| c.as_str()) {
        Some(cwd) if cwd.starts_with('/') => cwd.to_string(),
        _ => root,
    }
}

/// `kbridge lsp`'s arguments.
fn language_server_arguments() -> Vec<String> {
    vec!["lsp".to_string()]
}

struct KbridgeExtension;

impl zed::Extension for KbridgeExtension {
    fn new() -> Self {
        KbridgeExtension
    }

    fn get_dap_binary(
        &mut self,
        adapter_name: String,
        config: DebugTaskDefinition,
        user_provided_debug_adapter_path: Option<String>,
        worktree: &Worktree,
    ) -> Result<DebugAdapterBinary, String> {
        if adapter_name != ADAPTER {
            return Err(format!(
                "the kbridge extension has no adapter {adapter_name:?}"
            ));
        }
        let command = user_provided_debug_adapter_path
            .or_else(|| worktree.which("kbridge"))
            .ok_or_else(|| INSTALL_HINT.to_string())?;
        let value: serde_json::Value = serde_json::from_str(&config.config)
            .map_err(|e| format!("kbridge: the scenario is not JSON: {e}"))?;
        Ok(DebugAdapterBinary {
            command: Some(command),
            arguments: adapter_arguments(&value),
            envs: Vec::new(),
            cwd: Some(working_directory(&value, worktree.root_path())),
            // None: stdio. kbridge talks TCP to adapters that need it (Delve) itself.
            connection: None,
            request_args: StartDebuggingRequestArguments {
                request: request_kind(&value)?,
                // Unchanged: kbridge strips `debugger`/`bridge` and forwards the rest.
                configuration: config.config,
            },
        })
    }

    fn language_server_command(
        &mut self,
        language_server_id: &zed::LanguageServerId,
        worktree: &Worktree,
    ) -> zed::Result<zed::Command> {
        if language_server_id.as_ref() != LANGUAGE_SERVER {
            return Err(format!(
                "the kbridge extension has no language server {language_server_id:?}"
            ));
        }
        // `lsp.kbridge.binary.path` in Zed's settings wins over PATH.
        let configured = zed::settings::LspSettings::for_worktree(LANGUAGE_SERVER, worktree)
            .ok()
            .and_then(|s| s.binary)
            .and_then(|b| b.path);
        let command = configured
            .or_else(|| worktree.which("kbridge"))
            .ok_or_else(|| INSTALL_HINT.to_string())?;
        Ok(zed::Command {
            command,
            args: language_server_arguments(),
            env: worktree.shell_env(),
        })
    }

    fn dap_request_kind(
        &mut self,
        _adapter_name: String,
        config: serde_json::Value,
    ) -> Result<StartDebuggingRequestArgumentsRequest, String> {
        request_kind(&config)
    }
}

zed::register_extension!(KbridgeExtension);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_language_server_is_kbridge_lsp() {
        assert_eq!(language_server_arguments(), ["lsp"]);
    }

    #[test]
    fn preset_becomes_debugger_flag() {
        let config = json!({"request": "launch", "debugger": "debugpy", "program": "app.py"});
        assert_eq!(adapter_arguments(&config), ["dap", "--debugger", "debugpy"]);
    }

    #[test]
    fn custom_debugger_is_left_to_kbridge() {
        let config =
            json!({"request": "launch", "debugger": {"command": "my-dap", "type": "mine"}});
        assert_eq!(adapter_arguments(&config), ["dap"]);
    }

    #[test]
    fn request_kind_is_read_and_checked() {
        assert!(matches!(
            request_kind(&json!({"request": "launch"})),
            Ok(StartDebuggingRequestArgumentsRequest::Launch)
        ));
        assert!(matches!(
            request_kind(&json!({"request": "attach"})),
            Ok(StartDebuggingRequestArgumentsRequest::Attach)
        ));
        assert!(request_kind(&json!({"request": "run"}))
            .unwrap_err()
            .contains("\"run\""));
        assert!(request_kind(&json!({})).unwrap_err().contains("needs"));
    }

    #[test]
    fn cwd_is_the_scenarios_when_absolute() {
        assert_eq!(
            working_directory(&json!({"cwd": "/srv/app"}), "/root".into()),
            "/srv/app"
        );
        assert_eq!(
            working_directory(&json!({"cwd": "app"}), "/root".into()),
            "/root"
        );
        assert_eq!(working_directory(&json!({}), "/root".into()), "/root");
    }
}
