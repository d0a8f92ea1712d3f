//! Outbound streams: the client names a destination, the agent resolves and dials it from inside
//! the cluster, answers with a [`Reply`] (so a refused or unresolvable destination is reported,
//! never silently dropped) and then splices the connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use kbridge_protocol::wire::{write_frame, Reply};
use kbridge_protocol::TunnelStream;

/// Longest time for name resolution or for one connection attempt.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials `host:port`, trying every resolved address in order.
pub async fn dial(host: &str, port: u16) -> Result<TcpStream, Reply> {
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                return Err(Reply::error(
                    "unresolvable",
                    format!("cannot resolve '{host}': {e}"),
                ))
            }
            Err(_) => {
                return Err(Reply::error(
                    "timeout",
                    format!("resolving '{host}' took longer than {DIAL_TIMEOUT:?}"),
                ))
            }
        };
    if addrs.is_empty() {
        return Err(Reply::error(
            "unresolvable",
            format!("'{host}' resolves to no address"),
        ));
    }
    let mut last = Reply::error("unreachable", format!("cannot connect to {host}:{port}"));
    for addr in addrs {
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Reply::error(
                    "refused",
                    format!("connection to {host}:{port} ({addr}) refused"),
                );
            }
            Ok(Err(e)) => {
                last = Reply::error(
                    "unreachable",
                    format!("cannot connect to {host}:{port} ({addr}): {e}"),
                );
            }
            Err(_) => {
                last = Reply::error(
                    "timeout",
                    format!(
                        "connecting to {host}:{port} ({addr}) took longer than {DIAL_TIMEOUT:?}"
                    ),
                );
            }
        }
    }
    Err(last)
}

/// Agent side of an outbound stream whose header was already read.
pub(crate) async fn serve(mut stream: TunnelStream, host: String, port: u16) {
    match dial(&host, port).await {
        Ok(tcp) => {
            if write_frame(&mut stream, &Reply::ok()).await.is_err() {
                return;
            }
            if let Err(e) = crate::splice::splice(tcp, stream).await {
                tracing::debug!(%host, port, error = %e, "outbound connection ended with an error");
            }
        }
        Err(reply) => {
            tracing::info!(%host, port, reason = ?reply.message, "outbound dial failed");
            if write_frame(&mut stream, &reply).await.is_ok() {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            }
        }
    }
}
