//! The local process's readiness, for `enableFeatures: [Probes]` (`docs/identity.md`): the
//! kubelet asks the agent's health port at
//! [`READINESS_PATH`](kbridge_protocol::contract::readiness::READINESS_PATH), and the agent
//! carries out the container's own readiness probe against the developer's process, through
//! the session as any inbound connection goes.
//!
//! Until a kbridge session is connected the agent answers ready, as its own health does:
//! the session only starts the local process once every replica runs the agent and is
//! Ready, so a probe that needed the local process from the start would stop the rollout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kbridge_protocol::contract::readiness::LocalReadiness;
use kbridge_protocol::wire::{write_frame, StreamHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::Sessions;

/// How long a TCP check waits for the session to drop a connection nothing accepted
/// locally; a connection still open then counts as accepted.
const TCP_SETTLE: Duration = Duration::from_millis(300);
/// The longest a check may take (the kubelet's own timeout is usually shorter).
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The readiness check and the sessions it goes through.
pub(crate) struct Readiness {
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) check: LocalReadiness,
}

impl Readiness {
    /// Whether the local process is ready: the probe through the current session, or
    /// `true` while no session is connected. `peer` is the kubelet's address, which kbridge
    /// is told as for any inbound connection.
    pub(crate) async fn ready(&self, peer: SocketAddr) -> bool {
        let Some(opener) = self.sessions.current() else {
            return true;
        };
        let probe = async {
            let mut stream = opener.open().await.ok()?;
            let header = StreamHeader::Inbound {
                port: self.check.port,
                peer: peer.to_string(),
            };
            write_frame(&mut stream, &header).await.ok()?;
            Some(match &self.check.http {
                Some(http) => {
                    let mut request = format!(
                        "GET {} HTTP/1.1\r\nHost: localhost:{}\r\nUser-Agent: kube-probe (kbridge agent)\r\nAccept: */*\r\nConnection: close\r\n",
                        http.path, self.check.port
                    );
                    for (name, value) in &http.headers {
                        request.push_str(&format!("{name}: {value}\r\n"));
                    }
                    request.push_str("\r\n");
                    stream.write_all(request.as_bytes()).await.ok()?;
                    status_ok(&mut stream).await
                }
                None => {
                    let mut byte = [0u8; 1];
                    match tokio::time::timeout(TCP_SETTLE, stream.read(&mut byte)).await {
                        // Still open: the local process accepted the connection.
                        Err(_) => true,
                        Ok(Ok(n)) => n > 0,
                        Ok(Err(_)) => false,
                    }
                }
            })
        };
        matches!(
            tokio::time::timeout(CHECK_TIMEOUT, probe).await,
            Ok(Some(true))
        )
    }
}

/// Reads the status line of an HTTP response: 200–399 is ready, as for the kubelet.
async fn status_ok(stream: &mut (impl AsyncReadExt + Unpin)) -> bool {
    let mut head = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .is_some_and(|code| (200..400).contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_lines() {
        let mut ok: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert!(status_ok(&mut ok).await);
        let mut unavailable: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert!(!status_ok(&mut unavailable).await);
        let mut nothing: &[u8] = b"";
        assert!(!status_ok(&mut nothing).await);
    }

    #[tokio::test]
    async fn ready_without_a_session() {
        let readiness = Readiness {
            sessions: Arc::new(Sessions::default()),
            check: LocalReadiness {
                port: 8080,
                http: None,
            },
        };
        assert!(
            readiness
                .ready(SocketAddr::from(([10, 0, 0, 1], 40000)))
                .await
        );
    }
}
