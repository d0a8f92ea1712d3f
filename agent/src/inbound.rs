//! Inbound connections: the agent listens on the original container's ports and turns each
//! accepted connection into a stream towards kbridge, headed with the port and the peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::server::Sessions;
use kbridge_protocol::wire::{write_frame, StreamHeader};

/// Accepts on one container port until `cancel` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    port: u16,
    sessions: Arc<Sessions>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let sessions = sessions.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = forward(tcp, peer, port, &sessions) => {}
            }
        });
    }
}

async fn forward(tcp: TcpStream, peer: SocketAddr, port: u16, sessions: &Sessions) {
    let _ = tcp.set_nodelay(true);
    let Some(opener) = sessions.current() else {
        // Nobody to hand it to: refuse with a reset rather than leaving the peer hanging.
        tracing::debug!(port, %peer, "no kbridge session; resetting inbound connection");
        let _ = tcp.set_zero_linger();
        return;
    };
    let mut stream = match opener.open().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(port, %peer, error = %e, "cannot open inbound stream");
            let _ = tcp.set_zero_linger();
            return;
        }
    };
    let header = StreamHeader::Inbound {
        port,
        peer: peer.to_string(),
    };
    if write_frame(&mut stream, &header).await.is_err() {
        let _ = tcp.set_zero_linger();
        return;
    }
    if let Err(e) = crate::splice::splice_inbound(tcp, stream).await {
        tracing::debug!(port, %peer, error = %e, "inbound connection ended with an error");
    }
}
