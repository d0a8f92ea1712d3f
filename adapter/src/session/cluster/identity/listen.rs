//! Local listeners for identity endpoints: each endpoint gets a loopback address of the
//! session's address book, and every connection to it is carried through an agent, which
//! dials the endpoint from the pod's network — so the metadata server sees the pod, as it
//! does for the process in the pod.

use super::plan::Endpoint;
use crate::session::cluster::addresses::AddressBook;
use crate::session::cluster::tunnels::Agents;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The address-book namespace identity endpoints take their addresses under (no Service
/// of a cluster namespace can have it: it is not a DNS label).
const BOOK_NAMESPACE: &str = "kbridge/identity";

/// Why an endpoint got no local listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// 127.1.0.0/16 has no address left.
    #[error(transparent)]
    Exhausted(#[from] crate::session::cluster::addresses::AddressesExhausted),
    /// Binding failed for another reason than a taken or privileged port.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The local address tried.
        address: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

/// Binds a local listener for `endpoint`: its own port when free and allowed (below 1024
/// needs admin rights), else any port of the same address. Returns the listener and its
/// `ADDRESS:PORT`.
pub async fn bind(
    book: &mut AddressBook,
    endpoint: &Endpoint,
) -> Result<(TcpListener, SocketAddr), ListenError> {
    let address = IpAddr::V4(book.address(BOOK_NAMESPACE, &endpoint.to_string())?);
    let preferred = SocketAddr::new(address, endpoint.port);
    let listener = match TcpListener::bind(preferred).await {
        Ok(listener) => listener,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::AddrInUse
            ) =>
        {
            let any = SocketAddr::new(address, 0);
            TcpListener::bind(any)
                .await
                .map_err(|source| ListenError::Bind {
                    address: any,
                    source,
                })?
        }
        Err(source) => {
            return Err(ListenError::Bind {
                address: preferred,
                source,
            })
        }
    };
    let local = listener.local_addr().map_err(|source| ListenError::Bind {
        address: preferred,
        source,
    })?;
    Ok((listener, local))
}

/// Accepts on `listener` until `cancel`, carrying each connection to `endpoint` through an
/// agent. Bytes are counted as the Services' outbound traffic is (`kbridge diagnostics`).
pub fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    agents: Agents,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) {
    let connections = tasks.clone();
    tasks.spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let mut socket = match accepted {
                Ok((socket, _)) => socket,
                Err(error) => {
                    // Out of file descriptors, usually: give connections time to end.
                    tracing::debug!(%error, "identity endpoint accept failed; pausing");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (agents, endpoint, cancel) = (agents.clone(), endpoint.clone(), cancel.clone());
            connections.spawn(async move {
                let Some((pod, agent)) = agents.pick() else {
                    tracing::warn!(%endpoint, "no agent connected; dropping identity connection");
                    return;
                };
                let mut stream = match agent.open_outbound(&endpoint.host, endpoint.port).await {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::warn!(%endpoint, %error, "the agent cannot reach the identity endpoint");
                        return;
                    }
                };
                let _ = socket.set_nodelay(true);
                // Token material passes through here: it is relayed, never logged.
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    copied = tokio::io::copy_bidirectional(&mut socket, &mut stream) => {
                        let (sent, received) = copied.unwrap_or_default();
                        agents.count_outbound(&pod, sent, received);
                    }
                }
            });
        }
    });
}
