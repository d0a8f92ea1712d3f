//! The agent server: binds the control, health and container-port listeners, authenticates
//! sessions, dispatches their streams, and owns every task it starts so that shutdown stops
//! them all.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonrpc_core::IoHandler;
use kbridge_protocol::handshake::{self, Status as HsStatus, PROTOCOL_VERSION};
use kbridge_protocol::mux::{self, Opener};
use kbridge_protocol::status::Status;
use kbridge_protocol::wire::{read_frame, write_frame, Reply, StreamHeader};
use kbridge_protocol::{HandshakeError, TunnelStream};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::ControlState;
use crate::error::ServerError;
use crate::idle::IdleClock;
use crate::AgentConfig;

/// Time an unauthenticated connection gets to complete its hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a new stream gets to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Unauthenticated connections handled at once; the control port is reachable from any pod,
/// so a flood of idle connections must not pile up tasks.
const MAX_PENDING_HANDSHAKES: usize = 64;

/// The session currently allowed to receive inbound connections.
#[derive(Default)]
pub(crate) struct Sessions {
    current: Mutex<Option<(u64, Opener, CancellationToken)>>,
    next_id: AtomicU64,
}

impl Sessions {
    /// The live session's stream opener, if any.
    pub(crate) fn current(&self) -> Option<Opener> {
        self.current
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|(_, o, _)| o.clone()))
    }

    /// Makes a new session current. One session per pod: a newer authenticated session (kbridge
    /// reconnecting after a dropped port-forward) replaces the older one, which is closed.
    fn install(&self, opener: Opener, cancel: CancellationToken) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut cur) = self.current.lock() {
            if let Some((old, _, old_cancel)) = cur.replace((id, opener, cancel)) {
                tracing::info!(
                    old_session = old,
                    new_session = id,
                    "a new session replaces the old one"
                );
                old_cancel.cancel();
            }
        }
        id
    }

    fn remove(&self, id: u64) {
        if let Ok(mut cur) = self.current.lock() {
            if cur.as_ref().is_some_and(|(cid, _, _)| *cid == id) {
                *cur = None;
            }
        }
    }
}

/// Entry point of the agent server.
pub struct Agent;

/// A started agent; dropping it does not stop it, [`RunningAgent::shutdown`] does.
pub struct RunningAgent {
    /// Address of the control listener (sessions).
    pub control_addr: SocketAddr,
    /// Address of the HTTP health listener.
    pub health_addr: SocketAddr,
    /// Container port → address actually listened on.
    pub port_addrs: Vec<(u16, SocketAddr)>,
    clock: Arc<IdleClock>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })
}

impl Agent {
    /// Binds every listener and starts serving.
    pub async fn start(config: AgentConfig) -> Result<RunningAgent, ServerError> {
        let control = bind(SocketAddr::new(config.bind, config.control_port)).await?;
        let health = bind(SocketAddr::new(config.bind, config.health_port)).await?;
        let mut ports = Vec::new();
        for &p in &config.ports {
            ports.push((p, bind(SocketAddr::new(config.bind, p)).await?));
        }
        let addr_of = |l: &TcpListener| {
            l.local_addr().map_err(|source| ServerError::Bind {
                addr: "listener".into(),
                source,
            })
        };
        let control_addr = addr_of(&control)?;
        let health_addr = addr_of(&health)?;
        let mut port_addrs = Vec::new();
        for (p, l) in &ports {
            port_addrs.push((*p, addr_of(l)?));
        }

        let clock = Arc::new(IdleClock::new(config.idle_restore));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let sessions = Arc::new(Sessions::default());
        let token: Arc<[u8]> = config.token.as_bytes().into();
        let readiness = config.readiness.clone().map(|check| {
            Arc::new(crate::readiness::Readiness {
                sessions: sessions.clone(),
                check,
            })
        });
        let rpc = Arc::new(crate::control::handler(Arc::new(ControlState {
            config,
            clock: clock.clone(),
        })));

        tracker.spawn(crate::health::serve(
            health,
            clock.clone(),
            readiness,
            cancel.clone(),
            tracker.clone(),
        ));
        for (p, l) in ports {
            tracker.spawn(crate::inbound::serve(
                l,
                p,
                sessions.clone(),
                cancel.clone(),
                tracker.clone(),
            ));
        }
        let ctx = Arc::new(SessionCtx {
            token,
            rpc,
            clock: clock.clone(),
            sessions,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES)),
        });
        tracker.spawn(accept_sessions(control, ctx));
        Ok(RunningAgent {
            control_addr,
            health_addr,
            port_addrs,
            clock,
            cancel,
            tracker,
        })
    }
}

impl RunningAgent {
    /// The agent's status as served on `/status`.
    pub fn status(&self) -> Status {
        self.clock.status()
    }

    /// Stops accepting, closes every session and stream, and waits up to `grace` for the tasks.
    pub async fn shutdown(self, grace: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within {grace:?}");
        }
    }
}

struct SessionCtx {
    token: Arc<[u8]>,
    rpc: Arc<IoHandler>,
    clock: Arc<IdleClock>,
    sessions: Arc<Sessions>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    handshakes: Arc<tokio::sync::Semaphore>,
}

async fn accept_sessions(listener: TcpListener, ctx: Arc<SessionCtx>) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((sock, peer)) => {
                let Ok(permit) = ctx.handshakes.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "too many pending handshakes; dropping connection");
                    continue;
                };
                let ctx2 = ctx.clone();
                ctx.tracker.spawn(async move {
                    let cancel = ctx2.cancel.clone();
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = session(sock, peer, ctx2, permit) => {}
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "control accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs the handshake; on success returns the socket ready for yamux.
async fn authenticate(sock: &mut TcpStream, token: &[u8]) -> Result<(), HandshakeError> {
    let hello = match handshake::read_hello(sock).await {
        Ok(h) => h,
        Err(e) => {
            let _ =
                handshake::write_reply(sock, HsStatus::Malformed, "not a kbridge handshake").await;
            return Err(e);
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let _ = handshake::write_reply(
            sock,
            HsStatus::UnsupportedVersion,
            &format!("this agent speaks protocol {PROTOCOL_VERSION}"),
        )
        .await;
        return Err(HandshakeError::UnsupportedVersion {
            theirs: hello.version,
            ours: PROTOCOL_VERSION,
        });
    }
    if !hello.token_matches(token) {
        let _ = handshake::write_reply(sock, HsStatus::BadToken, "session token refused").await;
        return Err(HandshakeError::BadToken);
    }
    handshake::write_reply(sock, HsStatus::Ok, "").await?;
    Ok(())
}

async fn session(
    mut sock: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionCtx>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = sock.set_nodelay(true);
    let outcome =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, authenticate(&mut sock, &ctx.token)).await;
    drop(permit);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            // The error never contains the token, only what was wrong with it.
            tracing::warn!(%peer, reason = %e, "refused a session");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "refused a session: handshake timed out");
            return;
        }
    }
    let _guard = ctx.clock.session();
    let session_cancel = ctx.cancel.child_token();
    let mut mux = mux::start(sock, yamux::Mode::Server, session_cancel.clone());
    let id = ctx
        .sessions
        .install(mux.opener.clone(), session_cancel.clone());
    tracing::info!(%peer, session = id, "kbridge session started");
    while let Some(stream) = mux.incoming.recv().await {
        let ctx2 = ctx.clone();
        let cancel = session_cancel.clone();
        ctx.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = dispatch(stream, &ctx2) => {}
            }
        });
    }
    ctx.sessions.remove(id);
    let _ = (&mut mux.driver).await;
    tracing::info!(
        %peer,
        session = id,
        reason = mux.opener.end().get().unwrap_or("ended"),
        "kbridge session ended"
    );
}

async fn dispatch(mut stream: TunnelStream, ctx: &SessionCtx) {
    let header: StreamHeader =
        match tokio::time::timeout(HEADER_TIMEOUT, read_frame(&mut stream)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "malformed stream header");
                let _ = write_frame(&mut stream, &Reply::error("bad-request", e.to_string())).await;
                return;
            }
            Err(_) => {
                tracing::warn!("stream header timed out");
                return;
            }
        };
    match header {
        StreamHeader::Control => crate::control::serve(stream, ctx.rpc.clone()).await,
        StreamHeader::Outbound { host, port } => crate::outbound::serve(stream, host, port).await,
        StreamHeader::Download { paths } => crate::files::serve(stream, paths).await,
        StreamHeader::Inbound { .. } => {
            let _ = write_frame(
                &mut stream,
                &Reply::error("bad-request", "inbound streams are opened by the agent"),
            )
            .await;
        }
    }
}
