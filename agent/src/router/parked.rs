//! A client connection between HTTP/1.1 requests holds no buffers.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB header buffer for as long as a connection
//! lives, idle or not, which made an idle keep-alive connection cost the router 16 KiB. So
//! once a connection has been idle for [`PARK_AFTER`], the router ends its hyper connection
//! (hyper closes an idle connection at once when asked to shut down gracefully), takes the
//! socket back (with any bytes hyper read of a next request) and waits for the socket to
//! turn readable with nothing but the socket itself; the next request gets a new hyper
//! connection on the same socket — the way nginx frees its buffers on an idle keep-alive
//! connection. A busy connection keeps its hyper connection, so requests that follow each
//! other closely pay nothing for this.
//!
//! Ending a hyper connection must look like keep-alive to the client: it is ended only
//! between requests (the service has answered the latest one and hyper has parsed no other:
//! no `Connection: close` can be added any more), and its shutdown does not reach the
//! socket ([`ParkedIo`] ignores it while parking). Only requests after which hyper keeps the
//! connection open anyway are followed by parking ([`reusable`]); after any other the
//! connection runs on as a plain hyper connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::CONNECTION;
use http::{HeaderMap, Request, Version};
use hyper::body::Body as _;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a keep-alive connection waits for its next request before its buffers go.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(20);

/// The latest request on a connection, shared by its service and its socket: a count of
/// requests (so a wait for idleness restarts with every request) and a state in the low bits.
#[derive(Debug, Default)]
pub(crate) struct Turn(AtomicU64);

/// A request is being served, or its connection will not be parked after it.
const BUSY: u64 = 0;
/// The latest request is answered and the connection may be parked after it.
const DONE: u64 = 1;
/// The connection is being parked: its shutdown is ignored.
const PARKING: u64 = 2;
const STATE: u64 = 3;

impl Turn {
    /// A request arrived (hyper calls the service as soon as it has parsed the head).
    pub(crate) fn begin(&self) {
        let next = (self.0.load(Ordering::Acquire) & !STATE) + 4;
        self.0.store(next | BUSY, Ordering::Release);
    }

    /// The service answered a request that can be followed by parking.
    pub(crate) fn done(&self) {
        self.set(DONE);
    }

    fn set(&self, state: u64) {
        let count = self.0.load(Ordering::Acquire) & !STATE;
        self.0.store(count | state, Ordering::Release);
    }

    /// The request count, if the latest request is answered and parking may follow.
    pub(crate) fn idle(&self) -> Option<u64> {
        let v = self.0.load(Ordering::Acquire);
        (v & STATE == DONE).then_some(v >> 2)
    }

    /// Starts parking if the connection is still idle after request `count`.
    pub(crate) fn park(&self, count: u64) -> bool {
        self.0
            .compare_exchange(
                count << 2 | DONE,
                count << 2 | PARKING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    fn is_parking(&self) -> bool {
        self.0.load(Ordering::Acquire) & STATE == PARKING
    }
}

/// How long after connections were parked the memory they freed is given back.
const TRIM_AFTER: Duration = Duration::from_millis(100);

/// Gives what parked connections freed back to the system, soon and once for a burst.
///
/// glibc's allocator keeps freed memory for reuse and only returns the top of its heap, so
/// after a burst of requests the buffers of connections since gone idle would stay in the
/// process however idle it is; `malloc_trim` hands their pages back (the agent is built on
/// glibc, statically). At most one trim is pending; it runs on a blocking thread.
pub(crate) fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::atomic::AtomicBool;
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        static PENDING: AtomicBool = AtomicBool::new(false);
        if PENDING.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async {
            tokio::time::sleep(TRIM_AFTER).await;
            PENDING.store(false, Ordering::Release);
            // SAFETY: glibc's malloc_trim takes the allocator's own locks; any thread may
            // call it at any time.
            let _ = tokio::task::spawn_blocking(|| unsafe { malloc_trim(0) }).await;
        });
    }
}

/// Whether a connection can be parked after a request: hyper keeps an HTTP/1.1 connection
/// open after a request without a body that did not ask to close it (bodies are left to
/// hyper: it alone knows when one has been read to the end).
pub(crate) fn reusable(req: &Request<Incoming>) -> bool {
    keeps_alive(req.version(), req.headers()) && req.body().is_end_stream()
}

/// Whether hyper keeps a connection open after a request with these version and headers.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && !headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                let t = t.trim();
                t.eq_ignore_ascii_case("close") || t.eq_ignore_ascii_case("upgrade")
            })
}

/// The client socket as hyper sees it: bytes read ahead of the next request first, and a
/// shutdown that does nothing while the connection is being parked.
pub(crate) struct ParkedIo {
    sock: TcpStream,
    ahead: Bytes,
    turn: Arc<Turn>,
}

impl ParkedIo {
    pub(crate) fn new(sock: TcpStream, turn: Arc<Turn>) -> ParkedIo {
        ParkedIo {
            sock,
            ahead: Bytes::new(),
            turn,
        }
    }

    /// Takes the socket back from a finished hyper connection; `read_buf` is what hyper
    /// read but did not use (the start of the next request). Copied, so the buffer it is a
    /// view of is freed.
    pub(crate) fn parked(mut self, read_buf: Bytes) -> ParkedIo {
        if !read_buf.is_empty() {
            let mut joined = Vec::with_capacity(read_buf.len() + self.ahead.len());
            joined.extend_from_slice(&read_buf);
            joined.extend_from_slice(&self.ahead);
            self.ahead = Bytes::from(joined);
        } else if !self.ahead.is_empty() {
            self.ahead = Bytes::copy_from_slice(&self.ahead);
        }
        self
    }

    /// Whether the next request has begun arriving already.
    pub(crate) fn has_input(&self) -> bool {
        !self.ahead.is_empty()
    }

    /// Waits until the client sends something (or closes); holds no buffer meanwhile.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.sock.readable().await
    }
}

impl AsyncRead for ParkedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ahead.is_empty() {
            let n = self.ahead.len().min(buf.remaining());
            buf.put_slice(&self.ahead[..n]);
            self.ahead.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.sock).poll_read(cx, buf)
    }
}

impl AsyncWrite for ParkedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.sock).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.sock).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.sock.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sock).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.turn.is_parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.sock).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(connection: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(c) = connection {
            h.insert(CONNECTION, http::HeaderValue::from_static(c));
        }
        h
    }

    #[test]
    fn turns() {
        let t = Turn::default();
        t.begin();
        assert_eq!(t.idle(), None, "busy");
        t.done();
        let count = t.idle().expect("idle after the answer");
        assert!(t.park(count));
        assert!(t.is_parking());
        assert_eq!(t.idle(), None);
        t.begin();
        assert!(!t.is_parking());
        t.done();
        let next = t.idle().expect("idle again");
        assert_ne!(next, count, "a new request restarts the wait");
        t.begin();
        t.done();
        assert!(!t.park(next), "a request came in between");
    }

    #[test]
    fn only_keep_alive_requests_park() {
        let v11 = Version::HTTP_11;
        assert!(keeps_alive(v11, &headers(None)));
        assert!(keeps_alive(v11, &headers(Some("keep-alive, x-trace"))));
        assert!(!keeps_alive(v11, &headers(Some("Close"))));
        assert!(!keeps_alive(v11, &headers(Some("keep-alive, upgrade"))));
        assert!(!keeps_alive(Version::HTTP_10, &headers(None)));
        assert!(!keeps_alive(Version::HTTP_10, &headers(Some("keep-alive"))));
    }
}
