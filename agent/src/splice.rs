//! Joins a TCP connection and a tunnel stream in both directions, carrying half-closes as
//! half-closes and resets as resets, with buffers held only while data is in flight.
//!
//! Both directions are polled from one future (like tokio's `copy_bidirectional`) so that neither
//! blocks the other; unlike it, an error on either side resets both sides, so an application's
//! RST reaches the far end as an RST and not as a clean EOF.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use kbridge_protocol::wire::INBOUND_ACCEPT;
use kbridge_protocol::TunnelStream;

/// Bytes read from TCP per read call; large enough for loopback-speed bulk transfers.
const CHUNK: usize = 64 * 1024;

/// Bytes moved by a finished [`splice`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpliceStats {
    /// Bytes read from TCP and written into the tunnel.
    pub tcp_to_tunnel: u64,
    /// Bytes read from the tunnel and written to TCP.
    pub tunnel_to_tcp: u64,
}

/// Copies data both ways until both directions finished (EOF and half-close each way).
///
/// On an error in either direction both sides are reset: the TCP socket with an RST
/// (`SO_LINGER` 0) and the tunnel stream with a yamux RST, and the error is returned.
pub async fn splice(tcp: TcpStream, tunnel: TunnelStream) -> io::Result<SpliceStats> {
    splice_inner(tcp, tunnel, false).await
}

/// Like [`splice`], but first expects the client's one-byte acceptance on the tunnel
/// (the agent side of an inbound stream).
pub(crate) async fn splice_inbound(
    tcp: TcpStream,
    tunnel: TunnelStream,
) -> io::Result<SpliceStats> {
    splice_inner(tcp, tunnel, true).await
}

async fn splice_inner(
    mut tcp: TcpStream,
    mut tunnel: TunnelStream,
    expect_ack: bool,
) -> io::Result<SpliceStats> {
    let mut up = Up::default();
    let mut down = Down {
        ack_pending: expect_ack,
        ..Down::default()
    };
    let result = poll_fn(|cx| {
        if !up.done {
            if let Poll::Ready(Err(e)) = up.poll(cx, &tcp, &mut tunnel) {
                return Poll::Ready(Err(e));
            }
        }
        if !down.done {
            if let Poll::Ready(Err(e)) = down.poll(cx, &mut tcp, &mut tunnel) {
                return Poll::Ready(Err(e));
            }
        }
        if up.done && down.done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await;
    let stats = SpliceStats {
        tcp_to_tunnel: up.bytes,
        tunnel_to_tcp: down.bytes,
    };
    match result {
        Ok(()) => Ok(stats),
        Err(e) => {
            // Best effort: the socket may already be gone, which is what we want anyway.
            let _ = tcp.set_zero_linger();
            drop(tcp);
            tunnel.reset();
            Err(e)
        }
    }
}

/// TCP → tunnel.
#[derive(Default)]
struct Up {
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    done: bool,
    bytes: u64,
}

impl Up {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        tcp: &TcpStream,
        tunnel: &mut TunnelStream,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.pos < self.buf.len() {
                let n = ready!(Pin::new(&mut *tunnel).poll_write(cx, &self.buf[self.pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.bytes += n as u64;
                continue;
            }
            if self.eof {
                ready!(Pin::new(&mut *tunnel).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            if tcp.poll_read_ready(cx)?.is_pending() {
                // Idle: give the buffer back so a thousand quiet connections cost little.
                if self.buf.capacity() > 0 {
                    self.buf = Vec::new();
                    self.pos = 0;
                }
                return Poll::Pending;
            }
            self.buf.clear();
            self.pos = 0;
            self.buf.reserve(CHUNK);
            match tcp.try_read_buf(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                // Spurious readiness: poll again, which re-registers interest.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Tunnel → TCP.
#[derive(Default)]
struct Down {
    packet: Option<(yamux::Packet, usize)>,
    ack_pending: bool,
    eof: bool,
    done: bool,
    bytes: u64,
}

impl Down {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        tcp: &mut TcpStream,
        tunnel: &mut TunnelStream,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some((packet, pos)) = &mut self.packet {
                let data = packet.as_ref();
                while *pos < data.len() {
                    let n = ready!(Pin::new(&mut *tcp).poll_write(cx, &data[*pos..]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    *pos += n;
                    self.bytes += n as u64;
                }
                self.packet = None;
                continue;
            }
            if self.eof {
                ready!(Pin::new(&mut *tcp).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            match ready!(tunnel.poll_packet(cx))? {
                Some(p) => {
                    let mut pos = 0;
                    if self.ack_pending {
                        match p.as_ref().first() {
                            None => continue,
                            Some(&INBOUND_ACCEPT) => {}
                            Some(_) => {
                                return Poll::Ready(Err(io::Error::new(
                                    io::ErrorKind::ConnectionRefused,
                                    "kbridge refused the inbound connection",
                                )))
                            }
                        }
                        self.ack_pending = false;
                        pos = 1;
                    }
                    self.packet = Some((p, pos));
                }
                None if self.ack_pending => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "kbridge closed the inbound connection without accepting it",
                    )))
                }
                None => self.eof = true,
            }
        }
    }
}
