//! Live sessions on this machine, findable by other kbridge processes: each cluster session
//! serves a Unix socket `<state>/live/<id>.sock` (in a 0700 directory; on Windows an
//! endpoint file `<id>.endpoint` for a loopback port, see [`crate::ipc`]) that answers one
//! JSON request per connection — `describe` for `kbridge diagnostics` and `kbridge status`, and
//! `attach` for a launch that reuses a session held by `kbridge connect`.

use crate::ipc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client waits for a session to answer.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// What identifies "the same target": a launch reuses a held session only when all match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetKey {
    /// API server URL.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// The target as written (`service/todo-api`).
    pub target: String,
    /// The container asked for, if any.
    pub container: Option<String>,
}

/// A session's public card.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// The process that owns it.
    pub pid: u32,
    /// Held open by `kbridge connect` for other launches to reuse.
    pub held: bool,
    /// What it bridges.
    pub key: TargetKey,
    /// The workload (`deployment/todo-api`).
    pub workload: String,
    /// RFC 3339 start time.
    pub started: String,
}

/// What `attach` hands to a launch reusing a held session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The pod's environment, service links rewritten.
    pub pod_env: Vec<(String, Option<String>)>,
    /// Entries built from the config file.
    pub config_env: Vec<(String, Option<String>)>,
    /// The hosts file the debugger runs with (hosts mode `namespace`).
    pub hosts_file: Option<PathBuf>,
}

/// What a session answers; built on demand so counters are current.
pub trait SessionView: Send + Sync {
    /// The session's card.
    fn info(&self) -> SessionInfo;
    /// Everything `kbridge diagnostics` shows (secret values already redacted).
    fn describe(&self) -> Value;
    /// The environment and hosts file for a reusing launch.
    fn attach(&self) -> Attachment;
}

/// The directory of live sessions' sockets.
pub fn live_dir() -> PathBuf {
    super::state_root().join("live")
}

/// Where session `id` serves its card: `<live>/<id>.sock` (`.endpoint` on Windows).
pub fn socket_path(id: &str) -> PathBuf {
    live_dir().join(format!("{id}.{}", ipc::ENDPOINT_EXTENSION))
}

/// Serves `view` on `<live>/<id>.sock` until `cancel`; the socket is removed at the end
/// (and by the guardian, if the process is killed first: see [`super::open_session_as`]).
pub fn serve(
    view: Arc<dyn SessionView>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> std::io::Result<PathBuf> {
    let dir = live_dir();
    super::local::create_private_dir(&dir)?;
    let path = socket_path(&view.info().id);
    ipc::serve(path.clone(), tasks, cancel, move |line| {
        answer(view.as_ref(), line).to_string()
    })?;
    Ok(path)
}

fn answer(view: &dyn SessionView, line: &str) -> Value {
    let request: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    match request.get("op").and_then(Value::as_str) {
        Some("info") => serde_json::to_value(view.info()),
        Some("describe") => Ok(view.describe()),
        Some("attach") if view.info().held => serde_json::to_value(view.attach()),
        Some("attach") => Ok(serde_json::json!({"error": "this session is not held for reuse"})),
        _ => Ok(serde_json::json!({"error": "unknown request; expected info, describe or attach"})),
    }
    .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}))
}

/// Sends one request to the session listening on `socket`.
pub async fn ask(socket: &Path, op: &str) -> std::io::Result<Value> {
    let request = serde_json::json!({ "op": op }).to_string();
    let reply = ipc::ask(socket, &request, ANSWER_TIMEOUT).await?;
    serde_json::from_str::<Value>(reply.trim())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Every live session's card with its socket. Sockets nobody answers on (their session
/// crashed) are removed on the way, and so are crashed sessions' private directories.
pub async fn list() -> Vec<(PathBuf, SessionInfo)> {
    sweep_private_dirs();
    let Ok(entries) = std::fs::read_dir(live_dir()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some(ipc::ENDPOINT_EXTENSION) {
            continue;
        }
        match ask(&path, "info").await {
            Ok(value) => match serde_json::from_value::<SessionInfo>(value) {
                Ok(info) => found.push((path, info)),
                Err(error) => tracing::debug!(%error, path = %path.display(), "not a session card"),
            },
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(&path);
            }
            Err(error) => tracing::debug!(%error, path = %path.display(), "session did not answer"),
        }
    }
    found.sort_by(|a, b| a.1.started.cmp(&b.1.started));
    found
}

/// Removes the private directories (`<state>/sessions/<id>`: downloaded volumes, the hosts
/// copy) of sessions whose kbridge and guardian both died, so nothing could tear them down.
/// A session id ends with its kbridge's pid; a directory whose pid is alive is kept (its
/// guardian removes it at teardown).
pub fn sweep_private_dirs() {
    let Ok(entries) = std::fs::read_dir(super::state_root().join("sessions")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // Where kbridge cannot tell whether the pid lives (Windows), the files are kept.
        let dead = crate::platform::process_alive(pid) == Some(false);
        if dead && !guarded(&name) {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(session = %name, "removed a crashed session's files"),
                Err(error) => tracing::debug!(%error, session = %name, "cannot remove"),
            }
        }
    }
}

/// Whether a guardian still holds session `id` (`kbridge guard --session ID`): it removes
/// the session's files itself when it tears down.
#[cfg(target_os = "linux")]
fn guarded(id: &str) -> bool {
    use crate::cli::{GuardArgs, SelfCommand};
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let guard = SelfCommand::Guard(GuardArgs {
        session: id.to_string(),
    });
    entries.flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline")).is_ok_and(|raw| {
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            guard.runs_in(&args)
        })
    })
}

/// Without `/proc` kbridge cannot look for the guardian, so it assumes one: a crashed
/// session's files then stay until removed by hand (`docs/portability.md`).
#[cfg(not(target_os = "linux"))]
fn guarded(id: &str) -> bool {
    let _ = id;
    true
}

/// The held session for `key`, if one is live, with what a launch needs to reuse it.
pub async fn find_held(key: &TargetKey) -> Option<(SessionInfo, Attachment)> {
    for (socket, info) in list().await {
        if info.held && &info.key == key {
            let value = ask(&socket, "attach").await.ok()?;
            return serde_json::from_value(value).ok().map(|a| (info, a));
        }
    }
    None
}

/// Replaces values of variables that look secret, for display.
pub fn redact(
    name: &str,
    value: &str,
    secret_names: &std::collections::BTreeSet<String>,
) -> String {
    let upper = name.to_ascii_uppercase();
    let sensitive = secret_names.contains(name)
        || ["SECRET", "PASSWORD", "TOKEN", "KEY", "CREDENTIAL", "PASSWD"]
            .iter()
            .any(|w| upper.contains(w));
    if sensitive {
        format!("<redacted, {} chars>", value.chars().count())
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(bool);

    impl SessionView for Fake {
        fn info(&self) -> SessionInfo {
            SessionInfo {
                id: format!("test-registry-{}-{}", self.0, std::process::id()),
                pid: std::process::id(),
                held: self.0,
                key: TargetKey {
                    cluster: "https://127.0.0.1:1".into(),
                    namespace: "todo".into(),
                    target: "service/todo-api".into(),
                    container: None,
                },
                workload: "deployment/todo-api".into(),
                started: "2026-12-01T00:00:00Z".into(),
            }
        }
        fn describe(&self) -> Value {
            serde_json::json!({"env": {"A": "1"}})
        }
        fn attach(&self) -> Attachment {
            Attachment {
                pod_env: vec![("A".into(), Some("1".into()))],
                config_env: vec![],
                hosts_file: None,
            }
        }
    }

    #[tokio::test]
    async fn a_held_session_is_found_and_attached_and_others_are_not() {
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let held = serve(Arc::new(Fake(true)), &tasks, cancel.clone()).expect("serve held");
        let plain = serve(Arc::new(Fake(false)), &tasks, cancel.clone()).expect("serve plain");
        let key = Fake(true).info().key;
        let (info, attachment) = find_held(&key).await.expect("held session found");
        assert!(info.held);
        assert_eq!(
            attachment.pod_env,
            [("A".to_string(), Some("1".to_string()))]
        );
        let refused = ask(&plain, "attach").await.expect("answer");
        assert!(refused.get("error").is_some(), "{refused}");
        assert_eq!(
            ask(&held, "describe").await.expect("describe")["env"]["A"],
            "1"
        );
        cancel.cancel();
        tasks.close();
        tasks.wait().await;
        assert!(
            !held.exists() && !plain.exists(),
            "sockets removed at the end"
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let secrets = std::collections::BTreeSet::from(["DB_URL".to_string()]);
        assert_eq!(redact("LOG_LEVEL", "debug", &secrets), "debug");
        assert!(redact("API_KEY", "abc", &secrets).starts_with("<redacted"));
        assert!(redact("DB_URL", "postgres://u:p@h", &secrets).starts_with("<redacted"));
    }
}
