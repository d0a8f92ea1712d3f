//! The session for configurations without a cluster target: the debugger runs locally
//! with kbridge's own environment layers, and the session still gets a private
//! directory and a guardian (see [`super::open`]), so the teardown path is the same as a
//! cluster session's.

use super::{
    BoxFuture, BridgeSession, EventSink, Guardian, SessionError, SessionEvent, SessionFace,
    SessionRequest,
};
use crate::env::EnvLayers;

/// Opens [`LocalSession`]s.
pub struct LocalBackend;

/// A session with no cluster side.
pub struct LocalSession {
    face: SessionFace,
}

impl super::SessionBackend for LocalBackend {
    fn open<'a>(
        &'a self,
        request: SessionRequest,
        events: EventSink,
        _guardian: &'a Guardian,
    ) -> BoxFuture<'a, Result<Box<dyn BridgeSession>, SessionError>> {
        // Nothing outside this process changes: the private directory and the live
        // socket, which every session has, are recorded by `open`.
        Box::pin(async move {
            let _ = events.send(SessionEvent::Step("preparing the local session".into()));
            let _ = events.send(SessionEvent::Notice(
                "no cluster target in `bridge`: debugging locally with kbridge's environment"
                    .into(),
            ));
            let face = SessionFace {
                id: request.id,
                env: EnvLayers::default(),
                hosts_file: None,
            };
            Ok(Box::new(LocalSession { face }) as Box<dyn BridgeSession>)
        })
    }
}

impl BridgeSession for LocalSession {
    fn face(&self) -> &SessionFace {
        &self.face
    }
}

/// Creates `dir` (and parents) readable by the owner only.
#[cfg(unix)]
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates `dir` (and parents). Windows has no modes: kbridge's state directory is in the
/// user's own `%TEMP%`, which other users cannot read (`docs/portability.md`).
#[cfg(not(unix))]
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}
