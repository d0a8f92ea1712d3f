//! Endpoints where there are no Unix sockets (Windows): the server listens on a loopback
//! TCP port and writes `ADDRESS TOKEN` to the endpoint file; a client reads both from the
//! file and presents the token on its first line. Any local process can reach a loopback
//! port, so the token is what limits the endpoint to those who can read the file, in the
//! user's own `%TEMP%` (`docs/portability.md`).
//!
//! Compiled on Linux for its tests as well: the code is the same on every system.

use super::{write_line, Transport};
use std::future::Future;
use std::io;
use std::path::Path;
use tokio::net::{TcpListener, TcpStream};

/// Loopback TCP and a token file as the transport.
pub(super) struct Loopback;

impl Transport for Loopback {
    type Stream = TcpStream;
    type Listener = TcpListener;
    const EXTENSION: &'static str = "endpoint";

    fn bind(endpoint: &Path) -> io::Result<(TcpListener, Option<String>)> {
        let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let token = kbridge_protocol::handshake::generate_token().map_err(|e| {
            io::Error::other(format!("no randomness for the endpoint's token: {e}"))
        })?;
        // Written whole to a temporary name, then renamed: a reader never sees half a line.
        let temporary = endpoint.with_extension("endpoint-new");
        std::fs::write(&temporary, format!("{} {token}\n", listener.local_addr()?))?;
        std::fs::rename(&temporary, endpoint)?;
        Ok((listener, Some(token)))
    }

    async fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
        Ok(listener.accept().await?.0)
    }

    fn connect(endpoint: &Path) -> impl Future<Output = io::Result<TcpStream>> + Send {
        let endpoint = endpoint.to_path_buf();
        async move {
            let text = tokio::fs::read_to_string(&endpoint).await?;
            let (address, token) = parse(&text).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a kbridge endpoint file", endpoint.display()),
                )
            })?;
            let mut stream = TcpStream::connect(address).await?;
            write_line(&mut stream, token).await?;
            Ok(stream)
        }
    }
}

/// The address and token of an endpoint file's text.
fn parse(text: &str) -> Option<(std::net::SocketAddr, &str)> {
    let mut words = text.split_whitespace();
    let address = words.next()?.parse().ok()?;
    let token = words.next()?;
    words.next().is_none().then_some((address, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_file_reads_back() {
        let (address, token) = parse("127.0.0.1:4100 ab12\n").expect("parses");
        assert_eq!(address.to_string(), "127.0.0.1:4100");
        assert_eq!(token, "ab12");
        assert_eq!(parse("127.0.0.1:4100"), None, "no token");
        assert_eq!(parse("localhost ab12"), None, "not an address");
        assert_eq!(parse("127.0.0.1:4100 ab12 more"), None);
    }
}
