//! The multiplexer: yamux over the session's byte stream once the [`crate::handshake`] has
//! succeeded, on both sides. One driver task owns the connection, other tasks ask it for new
//! streams through a channel, and every stream is handed out as a [`TunnelStream`] whose first
//! bytes are a [`crate::wire`] header.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use tokio_util::sync::CancellationToken;

/// Streams open at once per session; 1000 concurrent connections must fit with room to spare.
const MAX_STREAMS: usize = 16 * 1024;
/// Receive window the busy streams of a session may grow into, together, beyond the 256 KiB
/// every stream is guaranteed. yamux doubles a stream's window while the sender uses it up
/// within two round trips, but only out of this budget: with none, every stream stays at
/// 256 KiB and a bulk transfer stalls for a window update every 128 KiB. It bounds what a
/// session can buffer for readers slower than their senders.
const GROWTH_BUDGET: usize = 32 * 1024 * 1024;
/// Largest yamux data frame we send.
const SPLIT_SEND_SIZE: usize = 64 * 1024;
/// Buffer on the session socket: yamux writes a frame's header and body separately and reads
/// the 12-byte header before the body, so without it each frame costs two syscalls each way.
const SOCKET_BUFFER: usize = 128 * 1024;

/// yamux settings shared by both sides.
fn yamux_config() -> yamux::Config {
    let mut cfg = yamux::Config::default();
    // Raise the window budget first: set_max_num_streams asserts it covers 256 KiB per stream.
    cfg.set_max_connection_receive_window(Some(
        MAX_STREAMS * yamux::DEFAULT_CREDIT as usize + GROWTH_BUDGET,
    ));
    cfg.set_max_num_streams(MAX_STREAMS);
    // Bigger frames than the 16 KiB default: fewer syscalls and channel hops per byte in bulk
    // transfers; at loopback speeds 64 KiB delays other streams by tens of microseconds.
    cfg.set_split_send_size(SPLIT_SEND_SIZE);
    cfg
}

/// Why a session ended; shared with every stream so their errors can say it.
#[derive(Debug, Default)]
pub struct SessionEnd {
    reason: OnceLock<String>,
}

impl SessionEnd {
    /// Records why the session ended; the first reason wins.
    pub fn set(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
    }

    /// Why the session ended, once it has.
    pub fn get(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }
}

type OpenRequest = oneshot::Sender<Result<yamux::Stream, String>>;

/// Cheap handle that asks the driver for new outbound streams.
#[derive(Clone)]
pub struct Opener {
    tx: mpsc::Sender<OpenRequest>,
    end: Arc<SessionEnd>,
}

impl Opener {
    /// Opens a new stream; fails once the session is gone.
    pub async fn open(&self) -> Result<TunnelStream, String> {
        let (tx, rx) = oneshot::channel();
        let lost = || {
            self.end
                .get()
                .unwrap_or("the multiplexed session closed")
                .to_string()
        };
        self.tx.send(tx).await.map_err(|_| lost())?;
        match rx.await {
            Ok(Ok(s)) => Ok(TunnelStream::new(s, self.end.clone())),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(lost()),
        }
    }

    /// Why the session ended, shared with its streams.
    pub fn end(&self) -> &Arc<SessionEnd> {
        &self.end
    }
}

/// A running multiplexed session.
pub struct Session {
    /// Opens streams towards the peer.
    pub opener: Opener,
    /// Streams the peer opened.
    pub incoming: mpsc::UnboundedReceiver<TunnelStream>,
    /// Resolves when the driver stops (socket closed, error, or cancellation).
    pub driver: tokio::task::JoinHandle<()>,
}

/// Starts yamux on `io` and spawns its driver; cancelling `cancel` closes the session.
pub fn start<T>(io: T, mode: yamux::Mode, cancel: CancellationToken) -> Session
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = tokio::io::BufStream::with_capacity(SOCKET_BUFFER, SOCKET_BUFFER, io);
    let conn = yamux::Connection::new(io.compat(), yamux_config(), mode);
    let (open_tx, open_rx) = mpsc::channel::<OpenRequest>(64);
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let end = Arc::new(SessionEnd::default());
    let driver = tokio::spawn(drive(conn, open_rx, in_tx, cancel, end.clone()));
    Session {
        opener: Opener { tx: open_tx, end },
        incoming: in_rx,
        driver,
    }
}

async fn drive<T>(
    mut conn: yamux::Connection<T>,
    mut open_rx: mpsc::Receiver<OpenRequest>,
    in_tx: mpsc::UnboundedSender<TunnelStream>,
    cancel: CancellationToken,
    end: Arc<SessionEnd>,
) where
    T: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let mut pending: Option<OpenRequest> = None;
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    // Ok(true): asked to close; Ok(false): peer closed; Err: connection error.
    let outcome: Result<bool, String> = poll_fn(|cx| {
        if cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(true));
        }
        loop {
            let mut progressed = false;
            if pending.is_none() {
                if let Poll::Ready(Some(req)) = open_rx.poll_recv(cx) {
                    pending = Some(req);
                }
            }
            if let Some(req) = pending.take() {
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(Ok(s)) => {
                        let _ = req.send(Ok(s));
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => {
                        let msg = format!("cannot open a stream: {e}");
                        let _ = req.send(Err(msg.clone()));
                        return Poll::Ready(Err(msg));
                    }
                    Poll::Pending => pending = Some(req),
                }
            }
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(s))) => {
                    // A closed receiver means nobody serves new streams; dropping resets them.
                    let _ = in_tx.send(TunnelStream::new(s, end.clone()));
                    progressed = true;
                }
                // Record why right away: streams woken by yamux's cleanup read it in `broken`.
                Poll::Ready(Some(Err(e))) => {
                    end.set(format!("connection error: {e}"));
                    return Poll::Ready(Err(e.to_string()));
                }
                Poll::Ready(None) => {
                    end.set("the peer closed the session");
                    return Poll::Ready(Ok(false));
                }
                Poll::Pending => {}
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    })
    .await;
    match outcome {
        // Closing means dropping the connection, not yamux's graceful close: that one sends a
        // GoAway but never wakes a read pending on one of our own streams (only a connection
        // dropped while active does), so a task waiting for a reply — the heartbeat, a spliced
        // connection — slept on after the session was gone, and whoever waited for it waited
        // out a timeout (`AgentClient::shutdown`'s second, the session's tasks' three). Dropped,
        // every stream wakes and fails with the reason below at once, and the peer sees the
        // socket close, which yamux reads as the session's end just like a GoAway.
        Ok(true) => end.set("the session was shut down"),
        Ok(false) => end.set("the peer closed the session"),
        Err(e) => end.set(format!("connection error: {e}")),
    }
    tracing::debug!(reason = end.get().unwrap_or(""), "mux session ended");
    // Dropping `conn` marks every stream closed, which wakes their readers and writers.
}

/// One multiplexed stream, as a tokio `AsyncRead + AsyncWrite`.
///
/// Semantics on top of yamux: `shutdown()` half-closes (the peer reads EOF); dropping the stream
/// without `shutdown()` resets it (the peer sees `ConnectionReset`); a read after the peer reset
/// the stream, or after the whole session was lost, fails with `ConnectionReset` or
/// `ConnectionAborted` instead of looking like a clean EOF.
pub struct TunnelStream {
    inner: Compat<yamux::Stream>,
    end: Arc<SessionEnd>,
    wrote_fin: bool,
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream")
            .field("id", &self.inner.get_ref().id())
            .finish()
    }
}

impl TunnelStream {
    fn new(s: yamux::Stream, end: Arc<SessionEnd>) -> Self {
        TunnelStream {
            inner: s.compat(),
            end,
            wrote_fin: false,
        }
    }

    /// Resets the stream: the peer sees `ConnectionReset` rather than EOF.
    pub fn reset(self) {
        drop(self);
    }

    /// The error to report for an unexpected end of the stream.
    fn broken(&self) -> io::Error {
        match self.end.get() {
            Some(reason) => io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("the kbridge session was lost: {reason}"),
            ),
            None => io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the stream was reset by the other side",
            ),
        }
    }

    /// Classifies an EOF from yamux: a closed state we did not cause by half-closing is a reset.
    fn eof_is_reset(&self) -> bool {
        self.inner.get_ref().is_closed() && !self.wrote_fin
    }

    /// Reads the next chunk yamux received, without copying it into a caller buffer.
    /// `Ok(None)` is a clean EOF.
    pub fn poll_packet(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<yamux::Packet>>> {
        match ready!(self.inner.get_mut().poll_next_unpin(cx)) {
            Some(Ok(p)) => Poll::Ready(Ok(Some(p))),
            Some(Err(e)) => Poll::Ready(Err(e)),
            None if self.eof_is_reset() => Poll::Ready(Err(self.broken())),
            None => Poll::Ready(Ok(None)),
        }
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() == before && buf.remaining() > 0 && self.eof_is_reset() {
            return Poll::Ready(Err(self.broken()));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match ready!(Pin::new(&mut self.inner).poll_write(cx, buf)) {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WriteZero => Poll::Ready(Err(self.broken())),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.inner).poll_flush(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::WriteZero => Poll::Ready(Err(self.broken())),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wrote_fin = true;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Found by the teardown benchmark: yamux's graceful close never woke a read pending on
    /// one of the closing side's streams, so a heartbeat waiting for its reply kept
    /// `AgentClient::shutdown` waiting for its one-second bound.
    #[tokio::test(flavor = "current_thread")]
    async fn closing_a_session_wakes_reads_pending_on_its_streams() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (cancel_a, cancel_b) = (CancellationToken::new(), CancellationToken::new());
        let client = start(a, yamux::Mode::Client, cancel_a.clone());
        let mut server = start(b, yamux::Mode::Server, cancel_b.clone());
        let mut stream = client.opener.open().await.expect("open");
        stream.write_all(b"hello").await.expect("write");
        stream.flush().await.expect("flush");
        let mut accepted = server.incoming.recv().await.expect("accepted");
        let mut hello = [0u8; 5];
        accepted.read_exact(&mut hello).await.expect("read");
        // The client waits for a reply that never comes; then its session is closed.
        let pending = tokio::spawn(async move {
            let mut reply = [0u8; 1];
            stream.read(&mut reply).await
        });
        tokio::task::yield_now().await;
        cancel_a.cancel();
        let read = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .expect("the pending read ends with the session")
            .expect("task");
        let error = read.expect_err("no reply was sent");
        assert!(
            error.to_string().contains("the session was shut down"),
            "{error}"
        );
        tokio::time::timeout(Duration::from_secs(5), client.driver)
            .await
            .expect("driver ends")
            .expect("driver");
        // The peer sees the session end too, as after a GoAway.
        tokio::time::timeout(Duration::from_secs(5), &mut server.driver)
            .await
            .expect("the peer's driver ends")
            .expect("driver");
        assert_eq!(
            server.opener.end().get(),
            Some("the peer closed the session")
        );
        let mut rest = Vec::new();
        assert!(accepted.read_to_end(&mut rest).await.is_err() || rest.is_empty());
    }
}
