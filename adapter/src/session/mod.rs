//! The bridge session: what the proxy asks of the cluster side at `launch` and at the
//! end. A [`SessionBackend`] opens a [`BridgeSession`]; every change it makes outside
//! this process is first recorded as an [`UndoStep`] with the session's guardian, a
//! helper process that undoes them even if the proxy is killed.

pub mod cluster;
pub mod guardian;
pub mod held;
pub mod hosts_namespace;
pub mod local;
pub mod registry;
pub mod undo;

pub use guardian::Guardian;
pub use undo::UndoStep;

use crate::env::EnvLayers;
use kbridge_config::{BridgeSettings, Target};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use tokio::sync::mpsc;

/// A boxed future, so backends and sessions can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A session's identity: also its log file name and private directory name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId(pub String);

impl SessionId {
    /// A new id, unique on this machine: start time and process id.
    pub fn generate() -> SessionId {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        SessionId(format!(
            "{}-{:03}-{}",
            now.as_secs(),
            now.subsec_millis(),
            std::process::id()
        ))
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where kbridge keeps logs and session state: `$TMPDIR/kbridge` (`/tmp/kbridge` on Linux).
pub fn state_root() -> PathBuf {
    std::env::temp_dir().join("kbridge")
}

/// What a launch asks of the session.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    /// The session's id.
    pub id: SessionId,
    /// The `bridge` key, or defaults when absent.
    pub settings: BridgeSettings,
    /// The validated target, if any.
    pub target: Option<Target>,
    /// A private 0700 directory for this session's files (downloaded volumes, hosts copy).
    pub private_dir: PathBuf,
    /// Held open by `kbridge connect` so later launches of the same target reuse it.
    pub held: bool,
}

/// Progress a session reports while it sets up; the proxy turns it into DAP progress
/// and output events, the CLI into a spinner.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// A setup step started.
    Step(String),
    /// Something the user should read (e.g. the isolation URL prefix).
    Notice(String),
}

/// Where a session sends its [`SessionEvent`]s.
pub type EventSink = mpsc::UnboundedSender<SessionEvent>;

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The guardian process could not be started or stopped answering.
    #[error("kbridge's teardown helper failed: {0}")]
    Guardian(String),
    /// Local files could not be prepared.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration asks for something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
}

/// Opens sessions. The local backend serves configurations without a cluster target;
/// the cluster backend implements the same trait.
pub trait SessionBackend: Send + Sync {
    /// Sets the session up, reporting progress to `events` and recording every outside
    /// change with `guardian` before making it. Dropping the future cancels the setup;
    /// the guardian then undoes what was done.
    fn open<'a>(
        &'a self,
        request: SessionRequest,
        events: EventSink,
        guardian: &'a Guardian,
    ) -> BoxFuture<'a, Result<Box<dyn BridgeSession>, SessionError>>;
}

/// A live session. It owns its in-process tasks (tunnels, listeners) and stops them all
/// on [`BridgeSession::close`]; outside changes are undone by the guardian.
pub trait BridgeSession: Send + Sync {
    /// The session's id.
    fn id(&self) -> &SessionId;
    /// The environment layers the session contributes (pod env, config file env).
    fn environment(&self) -> EnvLayers;
    /// Stops the session's own tasks. Idempotent.
    fn close(&mut self) -> BoxFuture<'_, ()>;
    /// The hosts file the debugger must see as `/etc/hosts` (hosts mode `namespace`).
    fn hosts_file(&self) -> Option<PathBuf> {
        None
    }
    /// After teardown: waits (at most `bound`) until the workload the session swapped
    /// serves with its own pods again, telling `progress` how far it is; says what it
    /// waited for, or what is still missing. Nothing to wait for by default.
    fn settle<'a>(
        &'a self,
        bound: std::time::Duration,
        progress: &'a (dyn Fn(String) + Send + Sync),
    ) -> BoxFuture<'a, Settled> {
        let _ = (bound, progress);
        Box::pin(async { Settled::Nothing })
    }
}

/// What [`BridgeSession::settle`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The session changed nothing that needs a rollout (local, isolated, reused).
    Nothing,
    /// The workload (`kind/name`) serves with its own pods again.
    Serving(String),
    /// The workload is back to its own template, but its rollout did not complete in
    /// time: what is missing, in words.
    NotYet(String),
}

/// Opens the session a configuration asks for, with its guardian. On failure the
/// guardian has already undone whatever was done.
pub async fn open_session(
    id: SessionId,
    settings: BridgeSettings,
    target: Option<Target>,
    events: EventSink,
) -> Result<(Box<dyn BridgeSession>, Guardian), SessionError> {
    open_session_as(id, settings, target, events, false).await
}

/// [`open_session`] for `kbridge connect` (`held`: published for reuse, never reusing one).
/// Any other launch first looks for a session held for the same target and, if there is
/// one, reuses it (no cluster change at all); with `disconnectAfterDebugging: false` and
/// none held yet, it starts one in the background and reuses that.
pub async fn open_session_as(
    id: SessionId,
    settings: BridgeSettings,
    target: Option<Target>,
    events: EventSink,
    held: bool,
) -> Result<(Box<dyn BridgeSession>, Guardian), SessionError> {
    if let (Some(target), false) = (&target, held) {
        if let Some(reused) = held::reuse(&id, &settings, target, &events).await? {
            return Ok(reused);
        }
    }
    let backend = backend_for(target.as_ref())?;
    let private_dir = state_root().join("sessions").join(&id.0);
    if let Some(parent) = private_dir.parent() {
        local::create_private_dir(parent).map_err(|source| SessionError::Io {
            what: format!("cannot create {}", parent.display()),
            source,
        })?;
    }
    let guardian = Guardian::spawn(&id).await?;
    // A live session serves `live/<id>.sock` (diagnostics, reuse) and removes it when it
    // ends; a kbridge killed outright cannot, so its guardian does.
    guardian
        .record(UndoStep::RemoveFile {
            path: registry::socket_path(&id.0),
        })
        .await?;
    let request = SessionRequest {
        id,
        settings,
        target,
        private_dir,
        held,
    };
    match backend.open(request, events, &guardian).await {
        Ok(session) => Ok((session, guardian)),
        Err(error) => {
            if let Err(teardown) = guardian.teardown().await {
                tracing::error!(error = %teardown, "teardown after a failed start failed");
            }
            Err(error)
        }
    }
}

/// Picks the backend for a request: a configuration without a target runs locally.
pub fn backend_for(target: Option<&Target>) -> Result<Box<dyn SessionBackend>, SessionError> {
    match target {
        None => Ok(Box::new(local::LocalBackend)),
        Some(_) => Ok(Box::new(cluster::session::ClusterBackend)),
    }
}
