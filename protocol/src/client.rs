//! The client the kbridge adapter uses: it authenticates a byte stream (a port-forward, or TCP
//! in tests), multiplexes it, keeps the agent's dead-man switch fed, and offers typed calls for
//! the control channel, outbound and inbound streams and file downloads.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::control::{method, AgentInfo, ControlClient};
use crate::env::EnvResponse;
use crate::error::{ClientError, HandshakeError};
use crate::files::DownloadSummary;
use crate::mounts::{ListParams, Listing, Mount};
use crate::mux::{Opener, TunnelStream};
use crate::status::Status;
use crate::wire::{read_frame, write_frame, Reply, StreamHeader, INBOUND_ACCEPT};

/// How the client behaves; `Default` suits the adapter.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time allowed for the handshake.
    pub handshake_timeout: Duration,
    /// Heartbeat period; `None` derives it from the agent's threshold (a quarter, 1–10 s).
    pub heartbeat_interval: Option<Duration>,
    /// Time allowed for the agent to open a stream or answer a header.
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            handshake_timeout: Duration::from_secs(15),
            heartbeat_interval: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A connection the agent accepted on a container port, tunnelled to this side.
#[derive(Debug)]
pub struct InboundConnection {
    /// Container port it arrived on.
    pub port: u16,
    /// Who connected (as the agent saw it).
    pub peer: SocketAddr,
    /// The connection's bytes; see [`TunnelStream`] for half-close and reset semantics.
    pub stream: TunnelStream,
}

/// The stream of inbound connections, from [`AgentClient::inbound`].
#[derive(Debug)]
pub struct Inbound {
    rx: mpsc::UnboundedReceiver<InboundConnection>,
}

impl Inbound {
    /// The next inbound connection; `None` once the session is gone.
    pub async fn next(&mut self) -> Option<InboundConnection> {
        self.rx.recv().await
    }
}

impl futures::Stream for Inbound {
    type Item = InboundConnection;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// An authenticated, multiplexed session with one agent.
///
/// Dropping it closes the session; [`AgentClient::shutdown`] does so gracefully.
pub struct AgentClient {
    opener: Opener,
    control: tokio::sync::Mutex<ControlClient>,
    inbound: Mutex<Option<mpsc::UnboundedReceiver<InboundConnection>>>,
    info: AgentInfo,
    cancel: CancellationToken,
    lost: CancellationToken,
    tasks: TaskTracker,
    options: ClientOptions,
    _guard: DropGuard,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// Connects over `io` (a port-forward stream, a TCP socket…) with default options.
    pub async fn connect<S>(io: S, token: &str) -> Result<AgentClient, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::connect_with(io, token, ClientOptions::default()).await
    }

    /// Connects with explicit options.
    pub async fn connect_with<S>(
        mut io: S,
        token: &str,
        options: ClientOptions,
    ) -> Result<AgentClient, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tokio::time::timeout(
            options.handshake_timeout,
            crate::handshake::client_handshake(&mut io, token),
        )
        .await
        .map_err(|_| HandshakeError::Timeout(options.handshake_timeout))??;

        let cancel = CancellationToken::new();
        let guard = cancel.clone().drop_guard();
        let mux = crate::mux::start(io, yamux::Mode::Client, cancel.clone());
        let tasks = TaskTracker::new();
        let lost = CancellationToken::new();
        {
            let lost = lost.clone();
            let driver = mux.driver;
            tasks.spawn(async move {
                let _ = driver.await;
                lost.cancel();
            });
        }
        let opener = mux.opener;

        let mut control = ControlClient::new(open_control(&opener).await?);
        let info: AgentInfo = control.call(method::INFO, json!({})).await?;

        let (in_tx, in_rx) = mpsc::unbounded_channel();
        tasks.spawn(accept_inbound(
            mux.incoming,
            in_tx,
            tasks.clone(),
            cancel.clone(),
        ));

        let period = options
            .heartbeat_interval
            .unwrap_or_else(|| Duration::from_secs((info.idle_restore_secs / 4).clamp(1, 10)));
        let beat = ControlClient::new(open_control(&opener).await?);
        tasks.spawn(heartbeat(beat, period, cancel.clone()));

        Ok(AgentClient {
            opener,
            control: tokio::sync::Mutex::new(control),
            inbound: Mutex::new(Some(in_rx)),
            info,
            cancel,
            lost,
            tasks,
            options,
            _guard: guard,
        })
    }

    /// What the agent said about itself at connect time.
    pub fn agent_info(&self) -> &AgentInfo {
        &self.info
    }

    async fn call<R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<R, ClientError> {
        let mut c = self.control.lock().await;
        c.call(method, params).await
    }

    /// Asks the agent for its identity and configuration again.
    pub async fn info(&self) -> Result<AgentInfo, ClientError> {
        self.call(method::INFO, json!({})).await
    }

    /// The environment Kubernetes gave the container (see [`crate::env::EnvResponse`]).
    pub async fn env(&self) -> Result<EnvResponse, ClientError> {
        self.call(method::ENV, json!({})).await
    }

    /// The container's volume mounts.
    pub async fn mounts(&self) -> Result<Vec<Mount>, ClientError> {
        self.call(method::MOUNTS, json!({})).await
    }

    /// Lists `path` in the pod recursively (up to 10 000 entries).
    pub async fn list(&self, path: &str) -> Result<Listing, ClientError> {
        let p = ListParams {
            path: path.to_string(),
            max_entries: None,
        };
        self.call(method::LIST, serde_json::to_value(p).unwrap_or_default())
            .await
    }

    /// The agent's status (health and dead-man switch state).
    pub async fn health(&self) -> Result<Status, ClientError> {
        self.call(method::HEALTH, json!({})).await
    }

    /// Sends a heartbeat now (the client also sends them on its own).
    pub async fn heartbeat(&self) -> Result<Status, ClientError> {
        self.call(method::HEARTBEAT, json!({})).await
    }

    async fn open(&self, header: &StreamHeader) -> Result<(TunnelStream, Reply), ClientError> {
        let fut = async {
            let mut s = self.opener.open().await.map_err(ClientError::SessionLost)?;
            write_frame(&mut s, header)
                .await
                .map_err(|e| lost_or_io(&self.opener, e))?;
            let reply: Reply = read_frame(&mut s)
                .await
                .map_err(|e| lost_or_io(&self.opener, e))?;
            Ok((s, reply))
        };
        tokio::time::timeout(self.options.request_timeout, fut)
            .await
            .map_err(|_| {
                ClientError::SessionLost(format!(
                    "the agent did not answer within {:?}",
                    self.options.request_timeout
                ))
            })?
    }

    /// Opens a bare stream. The caller must first send a [`StreamHeader`] frame
    /// ([`crate::wire::write_frame`]); this exists for protocol extensions and tests.
    pub async fn open_stream(&self) -> Result<TunnelStream, ClientError> {
        self.opener.open().await.map_err(ClientError::SessionLost)
    }

    /// Asks the agent to connect to `host:port` (IP or DNS name) from inside the cluster.
    ///
    /// A refused, unresolvable or unreachable destination is [`ClientError::Outbound`].
    pub async fn open_outbound(&self, host: &str, port: u16) -> Result<TunnelStream, ClientError> {
        let header = StreamHeader::Outbound {
            host: host.to_string(),
            port,
        };
        let (s, reply) = self.open(&header).await?;
        if reply.ok {
            Ok(s)
        } else {
            Err(ClientError::Outbound {
                host: host.to_string(),
                port,
                code: reply.code.unwrap_or_default(),
                message: reply.message.unwrap_or_default(),
            })
        }
    }

    /// Downloads files or directories (absolute paths in the pod) into `dest`, which is created
    /// with mode 0700. `/a/b` lands at `dest/a/b`; modes and symlinks are kept.
    pub async fn download(
        &self,
        paths: &[String],
        dest: &Path,
    ) -> Result<DownloadSummary, ClientError> {
        let header = StreamHeader::Download {
            paths: paths.to_vec(),
        };
        let (s, reply) = self.open(&header).await?;
        if !reply.ok {
            return Err(ClientError::DownloadRefused(
                reply.message.unwrap_or_default(),
            ));
        }
        crate::files::unpack(s, dest)
            .await
            .map_err(|source| ClientError::Download {
                dest: dest.display().to_string(),
                source,
            })
    }

    /// Takes the stream of inbound connections (once; later calls fail). Connections that
    /// arrive before it is taken wait in a queue; dropping the [`Inbound`] resets later ones.
    pub fn inbound(&self) -> Result<Inbound, ClientError> {
        self.inbound
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .map(|rx| Inbound { rx })
            .ok_or(ClientError::InboundTaken)
    }

    /// Resolves when the session is gone, for whatever reason.
    pub async fn closed(&self) {
        self.lost.cancelled().await
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.opener.end().get().map(str::to_string)
    }

    /// Closes the session gracefully: stops heartbeats and tells the agent goodbye.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks.wait()).await;
    }
}

fn lost_or_io(opener: &Opener, e: std::io::Error) -> ClientError {
    match opener.end().get() {
        Some(reason) => ClientError::SessionLost(reason.to_string()),
        None => ClientError::Io(e),
    }
}

async fn open_control(opener: &Opener) -> Result<TunnelStream, ClientError> {
    let mut s = opener.open().await.map_err(ClientError::SessionLost)?;
    write_frame(&mut s, &StreamHeader::Control)
        .await
        .map_err(|e| lost_or_io(opener, e))?;
    Ok(s)
}

/// Feeds the agent's dead-man switch. Only this task heartbeats, never anything the debuggee
/// does; and an agent that stops answering is treated as gone.
async fn heartbeat(mut control: ControlClient, period: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let call = control.call::<Status>(method::HEARTBEAT, json!({}));
        match tokio::time::timeout(period * 3 + Duration::from_secs(5), call).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "heartbeat failed; session is gone");
                return;
            }
            Err(_) => {
                tracing::warn!("the agent stopped answering heartbeats; closing the session");
                cancel.cancel();
                return;
            }
        }
    }
}

/// Accepts the agent's inbound streams, acknowledges them and hands them to the user.
async fn accept_inbound(
    mut incoming: mpsc::UnboundedReceiver<TunnelStream>,
    out: mpsc::UnboundedSender<InboundConnection>,
    tasks: TaskTracker,
    cancel: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            s = incoming.recv() => match s { Some(s) => s, None => return },
        };
        let out = out.clone();
        tasks.spawn(async move {
            let mut stream = stream;
            let header =
                tokio::time::timeout(Duration::from_secs(30), read_frame(&mut stream)).await;
            match header {
                Ok(Ok(StreamHeader::Inbound { port, peer })) => {
                    let Ok(peer) = peer.parse::<SocketAddr>() else {
                        tracing::warn!(%peer, "inbound stream with an unparsable peer address");
                        return;
                    };
                    if stream.write_all(&[INBOUND_ACCEPT]).await.is_err() {
                        return;
                    }
                    // If nobody takes inbound connections any more, dropping resets the stream.
                    let _ = out.send(InboundConnection { port, peer, stream });
                }
                Ok(Ok(other)) => {
                    tracing::warn!(?other, "unexpected stream opened by the agent");
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "bad inbound stream header"),
                Err(_) => tracing::warn!("inbound stream header timed out"),
            }
        });
    }
}
