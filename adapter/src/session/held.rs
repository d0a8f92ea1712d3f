//! Reusing a session that `kbridge connect` holds open (`disconnectAfterDebugging`; see `docs/architecture.md`, "Commands and sessions"):
//! a launch for the same target takes the held session's environment and hosts file instead
//! of changing the cluster again, so a re-launch costs a socket round trip, not a rollout.

use super::registry::{self, Attachment, TargetKey};
use super::{
    BridgeSession, EventSink, Guardian, SessionError, SessionEvent, SessionFace, SessionId,
};
use crate::cli::{ConnectArgs, SelfCommand, TargetArgs};
use crate::env::EnvLayers;
use crate::ipc::LineReader;
use kbridge_config::{BridgeSettings, EnvVars, Target};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// How long a background `kbridge connect` may take to set its session up.
const BACKGROUND_START_TIMEOUT: Duration = Duration::from_secs(360);

/// The key a launch with `settings` would have: same cluster, namespace, target, container.
fn key_for(settings: &BridgeSettings, target: &Target) -> Option<TargetKey> {
    // Reading the kubeconfig is local; no request reaches the cluster here.
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let options = kube::config::KubeConfigOptions {
        context: settings.context.clone(),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path),
        None => kube::config::Kubeconfig::read(),
    }
    .ok()?;
    let cluster = config
        .contexts
        .iter()
        .find(|c| Some(&c.name) == options.context.as_ref().or(config.current_context.as_ref()))?
        .context
        .as_ref()?;
    let server = config
        .clusters
        .iter()
        .find(|c| c.name == cluster.cluster)?
        .cluster
        .as_ref()?
        .server
        .clone()?;
    let namespace = settings
        .namespace
        .clone()
        .or_else(|| cluster.namespace.clone())
        .unwrap_or_else(|| "default".into());
    Some(TargetKey {
        // The same normalisation the session applies (a URL may or may not end in `/`).
        cluster: server.trim_end_matches('/').to_string(),
        namespace,
        target: target.to_string(),
        container: settings.container.clone(),
    })
}

/// A held session for this launch, if there is one or `disconnectAfterDebugging: false`
/// asks for one to be started.
pub async fn reuse(
    id: &SessionId,
    settings: &BridgeSettings,
    target: &Target,
    events: &EventSink,
) -> Result<Option<(Box<dyn BridgeSession>, Guardian)>, SessionError> {
    let Some(key) = key_for(settings, target) else {
        return Ok(None);
    };
    let found = match registry::find_held(&key).await {
        Some(found) => Some(found),
        None if settings.disconnect_after_debugging == Some(false) => {
            start_in_background(settings, events).await?;
            registry::find_held(&key).await
        }
        None => None,
    };
    let Some((info, attachment)) = found else {
        return Ok(None);
    };
    let _ = events.send(SessionEvent::Notice(format!(
        "reusing session {} that holds {} (kbridge connect, pid {}); end it with Ctrl-C there or `kill {}`",
        info.id, info.workload, info.pid, info.pid
    )));
    // Nothing is changed for this launch, so its guardian has nothing to undo; it still
    // exists so every launch ends the same way.
    let guardian = Guardian::spawn(id).await?;
    Ok(Some((
        Box::new(ReusedSession::new(id.clone(), attachment)),
        guardian,
    )))
}

/// What a background `kbridge connect` reports to the launch that started it, a line
/// each on its stdout: `step …`, `notice …`, then `ready ID` or `error …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A setup step started.
    Step(String),
    /// Something the user should read.
    Notice(String),
    /// The session (this id) is up.
    Ready(String),
    /// The session could not be opened.
    Error(String),
}

impl Report {
    /// The line for this report.
    pub fn line(&self) -> String {
        match self {
            Report::Step(step) => format!("step {step}"),
            Report::Notice(notice) => format!("notice {notice}"),
            Report::Ready(id) => format!("ready {id}"),
            Report::Error(error) => format!("error {error}"),
        }
    }

    /// A report line read back; None for anything else.
    pub fn parse(line: &str) -> Option<Report> {
        let (word, rest) = line.split_once(' ')?;
        let rest = rest.to_string();
        Some(match word {
            "step" => Report::Step(rest),
            "notice" => Report::Notice(rest),
            "ready" => Report::Ready(rest),
            "error" => Report::Error(rest),
            _ => return None,
        })
    }
}

impl From<SessionEvent> for Report {
    fn from(event: SessionEvent) -> Report {
        match event {
            SessionEvent::Step(step) => Report::Step(step),
            SessionEvent::Notice(notice) => Report::Notice(notice),
        }
    }
}

/// Starts `kbridge connect` detached (its own process group, no terminal) with these
/// settings, relaying its progress, and returns once its session is up.
async fn start_in_background(
    settings: &BridgeSettings,
    events: &EventSink,
) -> Result<(), SessionError> {
    let fail = |what: String| SessionError::Background(what);
    let connect = SelfCommand::Connect(ConnectArgs {
        target: TargetArgs::default(),
        env_file: None,
        background: true,
        settings_json: Some(serde_json::to_string(settings).map_err(|e| fail(e.to_string()))?),
    });
    let _ = events.send(SessionEvent::Step(
        "starting a held session (disconnectAfterDebugging: false)".into(),
    ));
    let mut child = connect
        .spawn_helper(Stdio::null())
        .map_err(|e| fail(format!("cannot start `kbridge connect`: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| fail("cannot read `kbridge connect`'s progress".into()))?;
    let mut lines = LineReader::new(stdout);
    let relay = async {
        while let Ok(Some(line)) = lines.next().await {
            match Report::parse(&line) {
                Some(Report::Step(step)) => {
                    let _ = events.send(SessionEvent::Step(step));
                }
                Some(Report::Notice(notice)) => {
                    let _ = events.send(SessionEvent::Notice(notice));
                }
                Some(Report::Ready(_)) => return Ok(()),
                Some(Report::Error(error)) => return Err(fail(error)),
                None => {}
            }
        }
        Err(fail(
            "the background `kbridge connect` ended before its session was up; see its log in the kbridge state directory".into(),
        ))
    };
    match tokio::time::timeout(BACKGROUND_START_TIMEOUT, relay).await {
        Ok(result) => result,
        Err(_) => {
            let _ = child.start_kill();
            Err(fail(format!(
                "the background `kbridge connect` did not come up within {}s",
                BACKGROUND_START_TIMEOUT.as_secs()
            )))
        }
    }
}

/// A launch's view of a held session: its environment and hosts file; closing it leaves
/// the held session running.
struct ReusedSession {
    face: SessionFace,
}

impl ReusedSession {
    fn new(id: SessionId, attachment: Attachment) -> ReusedSession {
        let layer = |vars: Vec<(String, Option<String>)>| {
            let mut layer = EnvVars::new();
            for (name, value) in vars {
                layer.set(name, value);
            }
            layer
        };
        let face = SessionFace {
            id,
            env: EnvLayers {
                pod: layer(attachment.pod_env),
                config_file: layer(attachment.config_env),
                ..EnvLayers::default()
            },
            hosts_file: attachment.hosts_file,
        };
        ReusedSession { face }
    }
}

impl BridgeSession for ReusedSession {
    fn face(&self) -> &SessionFace {
        &self.face
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_back_as_written() {
        for report in [
            Report::Step("waiting for the agent".into()),
            Report::Notice("nothing listens on localhost:8080".into()),
            Report::Ready("1764000000-042-1234".into()),
            Report::Error("no such service: todo".into()),
        ] {
            assert_eq!(Report::parse(&report.line()), Some(report));
        }
        assert_eq!(Report::parse("kbridge: log noise"), None);
    }
}
