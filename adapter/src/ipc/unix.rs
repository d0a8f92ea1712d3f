//! Endpoints on Unix: the endpoint file is the server's Unix socket. Only who may enter
//! the (0700) directory it is in can connect, so no token is needed.

use super::Transport;
use std::future::Future;
use std::io;
use std::path::Path;
use tokio::net::{UnixListener, UnixStream};

/// Unix sockets as the transport.
pub(super) struct UnixSocket;

impl Transport for UnixSocket {
    type Stream = UnixStream;
    type Listener = UnixListener;
    const EXTENSION: &'static str = "sock";

    fn bind(endpoint: &Path) -> io::Result<(UnixListener, Option<String>)> {
        Ok((UnixListener::bind(endpoint)?, None))
    }

    async fn accept(listener: &UnixListener) -> io::Result<UnixStream> {
        Ok(listener.accept().await?.0)
    }

    fn connect(endpoint: &Path) -> impl Future<Output = io::Result<UnixStream>> + Send {
        UnixStream::connect(endpoint.to_path_buf())
    }
}
