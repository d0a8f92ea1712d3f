//! The editor's stdin and stdout as non-blocking async streams. tokio's own `stdin()`
//! and `stdout()` hand every read and write to a blocking thread, which costs a thread
//! hop per DAP message; editors connect adapters through pipes (FIFOs) or, like Node's
//! `child_process`, socket pairs, both of which can be polled directly.
//!
//! On Windows tokio's own streams are used (`docs/portability.md`).

#[cfg(unix)]
use std::os::fd::{AsFd, OwnedFd};
#[cfg(unix)]
use std::os::unix::fs::FileTypeExt;
use tokio::io::{AsyncRead, AsyncWrite};
#[cfg(unix)]
use tokio::net::unix::pipe;

/// Reader of the editor's messages.
#[cfg(not(unix))]
pub fn input() -> Box<dyn AsyncRead + Send + Unpin> {
    Box::new(tokio::io::stdin())
}

/// Writer of messages to the editor.
#[cfg(not(unix))]
pub fn output() -> Box<dyn AsyncWrite + Send + Unpin> {
    Box::new(tokio::io::stdout())
}

/// Reader of the editor's messages.
#[cfg(unix)]
pub fn input() -> Box<dyn AsyncRead + Send + Unpin> {
    let polled: Option<Box<dyn AsyncRead + Send + Unpin>> =
        match pollable(std::io::stdin().as_fd().try_clone_to_owned()) {
            Some(Pollable::Fifo(fd)) => pipe::Receiver::from_owned_fd(fd)
                .ok()
                .map(|pipe| Box::new(pipe) as _),
            Some(Pollable::Socket(stream)) => Some(Box::new(stream)),
            None => None,
        };
    polled.unwrap_or_else(|| Box::new(tokio::io::stdin()))
}

/// Writer of messages to the editor.
#[cfg(unix)]
pub fn output() -> Box<dyn AsyncWrite + Send + Unpin> {
    let polled: Option<Box<dyn AsyncWrite + Send + Unpin>> =
        match pollable(std::io::stdout().as_fd().try_clone_to_owned()) {
            Some(Pollable::Fifo(fd)) => pipe::Sender::from_owned_fd(fd)
                .ok()
                .map(|pipe| Box::new(pipe) as _),
            Some(Pollable::Socket(stream)) => Some(Box::new(stream)),
            None => None,
        };
    polled.unwrap_or_else(|| Box::new(tokio::io::stdout()))
}

/// A standard stream that tokio can poll without a blocking thread.
#[cfg(unix)]
enum Pollable {
    Fifo(OwnedFd),
    Socket(tokio::net::UnixStream),
}

#[cfg(unix)]
fn pollable(fd: std::io::Result<OwnedFd>) -> Option<Pollable> {
    let fd = fd.ok()?;
    let file = std::fs::File::from(fd);
    let kind = file.metadata().ok()?.file_type();
    let fd = OwnedFd::from(file);
    if kind.is_fifo() {
        Some(Pollable::Fifo(fd))
    } else if kind.is_socket() {
        unix_stream(fd).map(Pollable::Socket)
    } else {
        None
    }
}

#[cfg(unix)]
fn unix_stream(fd: OwnedFd) -> Option<tokio::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(stream).ok()
}
