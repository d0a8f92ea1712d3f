//! Phase 6, names: the cluster's Service names resolve on this machine to the local
//! addresses of phase 5, through the hosts mode the configuration asks for — a private
//! hosts file seen only by the debugger (`namespace`), a marked block in `/etc/hosts`
//! (`system`), or nothing (`off`: the environment variables still point at the services).

use super::progress::{notice, step};
use crate::cli::{NsExecArgs, SelfCommand};
use crate::session::cluster::outbound::ForwardedService;
use crate::session::hosts_file::{self as hosts, HostsEntry};
use crate::session::hosts_namespace;
use crate::session::{EventSink, Guardian, SessionError, UndoStep};
use kbridge_config::HostsMode;
use std::path::{Path, PathBuf};

/// How the session's names resolve.
pub(crate) struct Names {
    /// The entries: one per forwarded Service and external endpoint.
    pub entries: Vec<HostsEntry>,
    /// The mode in effect.
    pub mode: HostsMode,
    /// The private hosts file the debugger must see as `/etc/hosts` (`namespace` mode).
    pub hosts_file: Option<PathBuf>,
}

/// What the names phase works with.
pub(super) struct NamesInput<'a> {
    /// The session id (it marks the hosts block).
    pub session: &'a str,
    /// The session's namespace: bare names belong to its Services.
    pub namespace: &'a str,
    /// The forwarded Services.
    pub forwarded: &'a [ForwardedService],
    /// Hosts entries for the config file's external endpoints.
    pub external_hosts: Vec<HostsEntry>,
    /// `bridge.hosts`.
    pub asked: HostsMode,
    /// `useKubernetesServiceEnvironmentVariables`: names are not resolved at all.
    pub env_vars_only: bool,
    /// The session's private directory (the private hosts file goes there).
    pub private_dir: &'a Path,
}

/// Makes the names resolve as asked.
pub(super) async fn resolve(
    input: NamesInput<'_>,
    guardian: &Guardian,
    events: &EventSink,
) -> Result<Names, SessionError> {
    let entries: Vec<HostsEntry> = input
        .forwarded
        .iter()
        .map(|f| {
            let mut entry = f.hosts_entry();
            if f.namespace != input.namespace {
                // The bare name belongs to this namespace's Service of that name.
                entry.names.retain(|n| n != &f.name);
            }
            entry
        })
        .chain(input.external_hosts)
        .collect();
    let mut mode = resolve_hosts_mode(input.asked, input.env_vars_only);
    let applied = apply_hosts_mode(mode, &entries, input.private_dir, input.session, guardian);
    let hosts_file = match applied.await {
        // `auto` chose the private hosts file, which cannot be written (a full disk):
        // the session still works through the environment variables.
        Err(error) if input.asked == HostsMode::Auto && mode == HostsMode::Namespace => {
            mode = HostsMode::Off;
            notice(events, format!(
                "{error}; cluster names do not resolve on this machine in this session (hosts mode `off`): use the services' environment variables"
            ));
            None
        }
        other => other?,
    };
    step(
        events,
        format!(
            "cluster names resolve through hosts mode `{}`",
            hosts_mode_name(mode)
        ),
    );
    Ok(Names {
        entries,
        mode,
        hosts_file,
    })
}

/// Writes the names where `mode` says: in `namespace` mode a private hosts file for the
/// debugger (returned), in `system` mode a marked block in /etc/hosts (recorded with the
/// guardian first; blocks of crashed sessions removed on the way).
async fn apply_hosts_mode(
    mode: HostsMode,
    entries: &[HostsEntry],
    private_dir: &Path,
    session: &str,
    guardian: &Guardian,
) -> Result<Option<PathBuf>, SessionError> {
    match mode {
        HostsMode::Namespace => {
            if !hosts_namespace::AVAILABLE {
                return Err(SessionError::io(
                    "hosts mode `namespace`",
                    std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        hosts_namespace::UNAVAILABLE,
                    ),
                ));
            }
            // The debugger's private /etc/hosts: the machine's, plus the session's block.
            let path = private_dir.join("hosts");
            let system = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            let base = hosts::without_blocks(&system, |_| true);
            std::fs::write(&path, hosts::with_block(&base, session, entries)).map_err(|e| {
                SessionError::io(
                    format!(
                        "cannot write the session's hosts file {} (free space there or point TMPDIR elsewhere)",
                        path.display()
                    ),
                    e,
                )
            })?;
            Ok(Some(path))
        }
        HostsMode::System => {
            let path = hosts::system_path();
            guardian
                .record(UndoStep::RemoveHostsBlock {
                    path: path.clone(),
                    session: session.to_string(),
                })
                .await?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| SessionError::io(format!("cannot read {}", path.display()), e))?;
            let cleaned = hosts::without_blocks(&text, |s| s != session && !session_alive(s));
            std::fs::write(&path, hosts::with_block(&cleaned, session, entries)).map_err(|e| {
                SessionError::io(
                    format!(
                        "cannot write {} ({})",
                        path.display(),
                        hosts::write_hint(std::env::consts::OS)
                    ),
                    e,
                )
            })?;
            Ok(None)
        }
        HostsMode::Off | HostsMode::Auto => Ok(None),
    }
}

/// The mode's name as the configuration spells it.
pub(crate) fn hosts_mode_name(mode: HostsMode) -> &'static str {
    match mode {
        HostsMode::Auto => "auto",
        HostsMode::Namespace => "namespace",
        HostsMode::System => "system",
        HostsMode::Off => "off",
    }
}

/// `auto` becomes `namespace` where a private mount namespace can be made, else `system`
/// where the hosts file is writable, else `off`.
pub fn resolve_hosts_mode(asked: HostsMode, env_vars_only: bool) -> HostsMode {
    if env_vars_only {
        return HostsMode::Off;
    }
    match asked {
        HostsMode::Auto if namespace_supported() => HostsMode::Namespace,
        HostsMode::Auto if hosts_writable() => HostsMode::System,
        HostsMode::Auto => HostsMode::Off,
        other => other,
    }
}

/// Tries `kbridge ns-exec` once: user namespaces can be disabled by the kernel or a sandbox.
fn namespace_supported() -> bool {
    if !hosts_namespace::AVAILABLE {
        return false;
    }
    let probe = SelfCommand::NsExec(NsExecArgs {
        hosts: "/etc/hosts".into(),
        command: vec!["echo".into(), "kbridge-ns-ok".into()],
    });
    let Ok(mut command) = probe.command() else {
        return false;
    };
    command
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"kbridge-ns-ok\n")
}

fn hosts_writable() -> bool {
    std::fs::OpenOptions::new()
        .append(true)
        .open(hosts::system_path())
        .is_ok()
}

/// Whether the session that wrote a hosts block still runs: its id ends with its pid.
fn session_alive(session: &str) -> bool {
    session
        .rsplit('-')
        .next()
        .and_then(|pid| pid.parse::<u32>().ok())
        // Where kbridge cannot tell (Windows), the block is kept.
        .is_some_and(|pid| crate::platform::process_alive(pid).unwrap_or(true))
}
