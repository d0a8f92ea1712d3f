//! A minimal HTTP/1.1 responder for kubelet probes and the restorer: `GET /healthz` (also
//! `/readyz`, `/livez`) and `GET /status`. Hand-written because two fixed routes do not justify
//! an HTTP stack in a 10 MiB agent.
//!
//! Probes always get 200 while the agent runs, whatever the developer's process is doing; the
//! body carries the session state ("active", "idle", "orphaned") for whoever wants it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::idle::IdleClock;
use crate::readiness::Readiness;
use kbridge_protocol::contract::readiness::READINESS_PATH;

/// Requests larger than this are not probes.
const MAX_REQUEST: usize = 8 * 1024;
/// A probe that does not send its request in this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves health requests until `cancel` fires; with `readiness`, also the local process's
/// readiness (`crate::readiness`).
pub(crate) async fn serve(
    listener: TcpListener,
    clock: Arc<IdleClock>,
    readiness: Option<Arc<Readiness>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((sock, _)) => {
                let clock = clock.clone();
                let cancel = cancel.clone();
                let readiness = readiness.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = answer(sock, &clock, readiness.as_deref()) => {}
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "health accept failed");
                // Back off briefly so a persistent error (e.g. EMFILE) does not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut sock: TcpStream, clock: &IdleClock, readiness: Option<&Readiness>) {
    let peer = sock
        .peer_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut buf = Vec::with_capacity(512);
    let head = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = sock.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Some(());
            }
            if buf.len() > MAX_REQUEST {
                return None;
            }
        }
    })
    .await;
    let (code, body) = match head {
        Ok(Some(())) if asks_local_readiness(&buf) => match readiness {
            Some(readiness) if readiness.ready(peer).await => {
                (200, "{\"local\":\"ready\"}\n".into())
            }
            Some(_) => (503, "{\"local\":\"not ready\"}\n".into()),
            None => (
                404,
                "{\"error\":\"no readiness check configured\"}\n".into(),
            ),
        },
        Ok(Some(())) => route(&buf, clock),
        _ => (400, "{\"error\":\"bad request\"}\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        503 => "Service Unavailable",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Bad Request",
    };
    let resp = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// Whether the request is `GET` of the local process's readiness path.
fn asks_local_readiness(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    parts.next() == Some("GET")
        && parts.next().map(|p| p.split('?').next().unwrap_or(p)) == Some(READINESS_PATH)
}

/// Picks the response for a request head.
fn route(head: &[u8], clock: &IdleClock) -> (u16, String) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return (405, "{\"error\":\"method not allowed\"}\n".into());
    }
    match path {
        "/healthz" | "/readyz" | "/livez" | "/status" => {
            let body = serde_json::to_string(&clock.status())
                .unwrap_or_else(|_| "{\"health\":\"ok\"}".into());
            (200, body + "\n")
        }
        _ => (404, "{\"error\":\"not found\"}\n".into()),
    }
}

/// Fetches `/status` from an agent's health endpoint (used by `restore-watch` and tests).
pub async fn fetch_status(addr: &str) -> std::io::Result<kbridge_protocol::status::Status> {
    let mut sock = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    sock.write_all(
        format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut resp = Vec::new();
    tokio::time::timeout(READ_TIMEOUT, sock.read_to_end(&mut resp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected response: {}", head.lines().next().unwrap_or("")),
        ));
    }
    serde_json::from_str(body.trim())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let clock = IdleClock::new(Duration::from_secs(60));
        assert_eq!(route(b"GET /healthz HTTP/1.1\r\n\r\n", &clock).0, 200);
        assert_eq!(route(b"GET /status?x=1 HTTP/1.1\r\n\r\n", &clock).0, 200);
        assert_eq!(route(b"GET /nope HTTP/1.1\r\n\r\n", &clock).0, 404);
        assert_eq!(route(b"POST /healthz HTTP/1.1\r\n\r\n", &clock).0, 405);
        assert!(route(b"GET /status HTTP/1.1\r\n\r\n", &clock)
            .1
            .contains("\"state\":\"idle\""));
    }
}
