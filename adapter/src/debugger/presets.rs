//! From a `debugger` choice to a runnable adapter: the executable found with `which`
//! (spawned by absolute path), its arguments, its debug type and env format.

use kbridge_config::{CustomDebugger, DebuggerChoice, EnvFormat, Preset, Transport};
use std::path::{Path, PathBuf};

/// A resolved adapter, ready to start.
#[derive(Debug, Clone)]
pub struct AdapterSpec {
    /// Preset name or custom command, for messages.
    pub name: String,
    /// The preset, if this is one.
    pub preset: Option<Preset>,
    /// Absolute path of the executable.
    pub program: PathBuf,
    /// Arguments; `${port}` is replaced for TCP adapters.
    pub args: Vec<String>,
    /// The adapter's debug type, sent as `type`.
    pub adapter_type: String,
    /// How it wants `env`.
    pub env_format: EnvFormat,
    /// Stdio or TCP.
    pub transport: Transport,
}

/// Why an adapter cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DebuggerError {
    /// The executable is not on PATH.
    #[error("debugger `{name}` not found: {looked_for} is not on PATH. {hint}")]
    NotFound {
        /// Preset or command name.
        name: String,
        /// What was looked for.
        looked_for: String,
        /// How to install it.
        hint: &'static str,
    },
    /// The adapter process could not be started or exited at once.
    #[error("debugger `{name}` could not start: {reason}. {hint}")]
    StartFailed {
        /// Preset or command name.
        name: String,
        /// What went wrong (with the adapter's stderr, if any).
        reason: String,
        /// How to install or fix it.
        hint: &'static str,
    },
}

/// How to install each preset; shown when it is missing.
pub fn install_hint(preset: Option<Preset>) -> &'static str {
    match preset {
        Some(Preset::Debugpy) => "Install it with `pip install debugpy` (for the python3 on PATH).",
        Some(Preset::LldbDap) => "Install LLVM's lldb-dap, e.g. `apt-get install lldb-19` (provides lldb-dap-19) or `brew install llvm`.",
        Some(Preset::Codelldb) => "Install CodeLLDB and put its `adapter/codelldb` on PATH.",
        Some(Preset::Dlv) => "Install Delve: `go install github.com/go-delve/delve/cmd/dlv@latest` or `apt-get install delve`.",
        Some(Preset::JsDebug) => "Install vscode-js-debug's DAP server and put `js-debug-adapter` on PATH (e.g. `:MasonInstall js-debug-adapter`).",
        Some(Preset::Netcoredbg) => "Install netcoredbg from Samsung's releases and put it on PATH.",
        None => "Check `debugger.command` in the launch configuration.",
    }
}

/// Resolves a choice against the current PATH.
pub fn resolve(choice: &DebuggerChoice) -> Result<AdapterSpec, DebuggerError> {
    match choice {
        DebuggerChoice::Preset(preset) => resolve_preset(*preset),
        DebuggerChoice::Custom(custom) => resolve_custom(custom),
    }
}

fn find(name: &str, preset: Preset, looked_for: &str) -> Result<PathBuf, DebuggerError> {
    which::which(name).map_err(|_| DebuggerError::NotFound {
        name: preset.name().into(),
        looked_for: looked_for.into(),
        hint: install_hint(Some(preset)),
    })
}

fn resolve_preset(preset: Preset) -> Result<AdapterSpec, DebuggerError> {
    let spec = |program, args: &[&str], adapter_type: &str, env_format, transport| AdapterSpec {
        name: preset.name().into(),
        preset: Some(preset),
        program,
        args: args.iter().map(|a| a.to_string()).collect(),
        adapter_type: adapter_type.into(),
        env_format,
        transport,
    };
    use EnvFormat::{List, Object};
    use Transport::{Stdio, Tcp};
    Ok(match preset {
        Preset::Debugpy => {
            let python = which::which("python3")
                .or_else(|_| which::which("python"))
                .map_err(|_| DebuggerError::NotFound {
                    name: preset.name().into(),
                    looked_for: "python3".into(),
                    hint: install_hint(Some(preset)),
                })?;
            spec(python, &["-m", "debugpy.adapter"], "debugpy", Object, Stdio)
        }
        Preset::LldbDap => {
            let program = which::which("lldb-dap")
                .ok()
                .or_else(highest_versioned_lldb_dap)
                .ok_or_else(|| DebuggerError::NotFound {
                    name: preset.name().into(),
                    looked_for: "lldb-dap (or lldb-dap-NN)".into(),
                    hint: install_hint(Some(preset)),
                })?;
            // lldb-dap 19 silently ignores `env` given as an object: it wants K=V strings.
            spec(program, &[], "lldb-dap", List, Stdio)
        }
        Preset::Codelldb => spec(
            find("codelldb", preset, "codelldb")?,
            &[],
            "lldb",
            Object,
            Stdio,
        ),
        Preset::Dlv => spec(
            find("dlv", preset, "dlv")?,
            &["dap", "--listen=127.0.0.1:0"],
            "go",
            Object,
            Tcp,
        ),
        Preset::JsDebug => spec(
            find("js-debug-adapter", preset, "js-debug-adapter")?,
            &["${port}", "127.0.0.1"],
            "pwa-node",
            Object,
            Tcp,
        ),
        Preset::Netcoredbg => spec(
            find("netcoredbg", preset, "netcoredbg")?,
            &["--interpreter=vscode"],
            "coreclr",
            Object,
            Stdio,
        ),
    })
}

fn resolve_custom(custom: &CustomDebugger) -> Result<AdapterSpec, DebuggerError> {
    let program = which::which(&custom.command).map_err(|_| DebuggerError::NotFound {
        name: custom.command.clone(),
        looked_for: format!("`{}`", custom.command),
        hint: install_hint(None),
    })?;
    Ok(AdapterSpec {
        name: custom.command.clone(),
        preset: None,
        program,
        args: custom.args.clone(),
        adapter_type: custom.adapter_type.clone(),
        env_format: custom.env_format,
        transport: custom.transport,
    })
}

/// The highest `lldb-dap-NN` on PATH (Debian installs versioned names only).
fn highest_versioned_lldb_dap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version: u32 = name.strip_prefix("lldb-dap-")?.parse().ok()?;
            is_executable(&entry.path()).then(|| (version, entry.path()))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, path)| path)
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Windows has no execute bit: any file may be started.
#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_custom_command_names_it() {
        let choice = DebuggerChoice::Custom(CustomDebugger {
            command: "no-such-adapter-kbridge".into(),
            args: vec![],
            adapter_type: "x".into(),
            env_format: EnvFormat::Object,
            transport: Transport::Stdio,
        });
        let err = resolve(&choice).expect_err("not on PATH");
        assert!(err.to_string().contains("no-such-adapter-kbridge"), "{err}");
    }

    #[test]
    fn every_preset_has_an_install_hint() {
        for preset in Preset::ALL {
            assert!(install_hint(Some(preset)).len() > 20, "{preset}");
        }
    }
}
