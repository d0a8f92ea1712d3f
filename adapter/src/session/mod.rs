//! The bridge session: what the proxy asks of the cluster side at `launch` and at the
//! end. A [`SessionBackend`] opens a [`BridgeSession`]; every change it makes outside
//! this process is first recorded as an [`UndoStep`] with the session's guardian, a
//! helper process that undoes them even if the proxy is killed.
//!
//! This file is the interface; [`open`] picks a backend and opens a session with its
//! guardian, [`local`] and [`cluster`] are the backends, [`held`] reuses a session that
//! `kbridge connect` holds. `docs/architecture.md` shows where this sits in a `launch`.

pub mod cluster;
pub mod error;
pub mod guardian;
pub mod held;
pub mod hosts_file;
pub mod hosts_namespace;
pub mod local;
pub mod open;
pub mod registry;
pub mod undo;

pub use error::{ErrorKind, SessionError};
pub use guardian::Guardian;
pub use open::{backend_for, open_session, open_session_as};
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

/// What a session gives the debuggee, the same for every kind of session.
#[derive(Debug, Clone)]
pub struct SessionFace {
    /// The session's id.
    pub id: SessionId,
    /// The environment layers the session contributes (pod env, config file env).
    pub env: EnvLayers,
    /// The hosts file the debugger must see as `/etc/hosts` (hosts mode `namespace`).
    pub hosts_file: Option<PathBuf>,
}

/// A live session. It owns its in-process tasks (tunnels, listeners) and stops them all
/// on [`BridgeSession::close`]; outside changes are undone by the guardian.
pub trait BridgeSession: Send + Sync {
    /// What the session gives the debuggee.
    fn face(&self) -> &SessionFace;
    /// The session's id.
    fn id(&self) -> &SessionId {
        &self.face().id
    }
    /// The environment layers the session contributes (pod env, config file env).
    fn environment(&self) -> EnvLayers {
        self.face().env.clone()
    }
    /// The hosts file the debugger must see as `/etc/hosts` (hosts mode `namespace`).
    fn hosts_file(&self) -> Option<PathBuf> {
        self.face().hosts_file.clone()
    }
    /// Stops the session's own tasks. Idempotent; nothing to stop by default.
    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
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
