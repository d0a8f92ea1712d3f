//! Opening a session: a launch first looks for a session `kbridge connect` holds for the
//! same target (reused: no change at all); otherwise the guardian starts, the session's
//! private directory and live socket are recorded for removal, and the backend the
//! configuration calls for sets the session up. A failure is undone before it is returned.

use super::{
    cluster, held, local, registry, state_root, BridgeSession, EventSink, Guardian, SessionBackend,
    SessionError, SessionId, SessionRequest, UndoStep,
};
use kbridge_config::{BridgeSettings, Target};

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
    let backend = backend_for(target.as_ref());
    let private_dir = state_root().join("sessions").join(&id.0);
    let guardian = Guardian::spawn(&id).await?;
    let request = SessionRequest {
        id,
        settings,
        target,
        private_dir,
        held,
    };
    let opened = async {
        prepare_local_state(&request, &guardian).await?;
        backend.open(request, events, &guardian).await
    };
    match opened.await {
        Ok(session) => Ok((session, guardian)),
        Err(error) => {
            if let Err(teardown) = guardian.teardown().await {
                tracing::error!(error = %teardown, "teardown after a failed start failed");
            }
            Err(error)
        }
    }
}

/// Records, then creates, what every session has on this machine: its 0700 private
/// directory (downloaded volumes, the private hosts file) and its `live/<id>.sock`, which
/// a live session removes itself but a kbridge killed outright cannot.
async fn prepare_local_state(
    request: &SessionRequest,
    guardian: &Guardian,
) -> Result<(), SessionError> {
    guardian
        .record(UndoStep::RemoveFile {
            path: registry::socket_path(&request.id.0),
        })
        .await?;
    guardian
        .record(UndoStep::RemoveDir {
            path: request.private_dir.clone(),
        })
        .await?;
    // The parent too: `sessions/` holds every session's files.
    let parent = request.private_dir.parent();
    for dir in parent.into_iter().chain([request.private_dir.as_path()]) {
        local::create_private_dir(dir).map_err(|source| {
            SessionError::io(format!("cannot create {}", dir.display()), source)
        })?;
    }
    Ok(())
}

/// Picks the backend for a request: a configuration without a target runs locally.
pub fn backend_for(target: Option<&Target>) -> Box<dyn SessionBackend> {
    match target {
        None => Box::new(local::LocalBackend),
        Some(_) => Box::new(cluster::setup::ClusterBackend),
    }
}
