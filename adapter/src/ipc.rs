//! kbridge's local line protocols, one message a line: the guardian's control channel
//! (its stdin and stdout, [`crate::session::guardian`]), the live sessions' sockets
//! ([`crate::session::registry`]) and the progress a background `kbridge connect` reports
//! to the launch that started it ([`crate::session::held`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Reads a stream line by line.
pub struct LineReader<R>(tokio::io::Lines<BufReader<R>>);

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Reads `read`.
    pub fn new(read: R) -> LineReader<R> {
        LineReader(BufReader::new(read).lines())
    }

    /// The next line, without its end; None at the end of the stream.
    pub async fn next(&mut self) -> io::Result<Option<String>> {
        self.0.next_line().await
    }

    /// [`LineReader::next`], waiting at most `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> io::Result<Option<String>> {
        tokio::time::timeout(limit, self.next())
            .await
            .map_err(|_| no_reply_within(limit))?
    }
}

/// Writes `line` and a newline, and flushes.
pub async fn write_line<W: AsyncWrite + Unpin>(write: &mut W, line: &str) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.flush().await
}

/// Sends `request` to the server on `socket` and reads its reply, all within `limit`.
pub async fn ask(socket: &Path, request: &str, limit: Duration) -> io::Result<String> {
    let exchange = async {
        let (read, mut write) = UnixStream::connect(socket).await?.into_split();
        write_line(&mut write, request).await?;
        LineReader::new(read)
            .next()
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed without a reply"))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| no_reply_within(limit))?
}

/// Serves `socket` until `cancel`, answering one request line per connection with the
/// line `answer` gives. A stale socket file is replaced; the file is removed at the end.
/// The listener and its connections are tasks of `tasks`.
pub fn serve(
    socket: PathBuf,
    tasks: &TaskTracker,
    cancel: CancellationToken,
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> io::Result<()> {
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    let answer = Arc::new(answer);
    let connections = tasks.clone();
    tasks.spawn(async move {
        // An accept that fails (out of file descriptors) is tried again after a pause that
        // doubles up to a second, not at once.
        let mut pause = Duration::from_millis(10);
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            };
            pause = Duration::from_millis(10);
            let answer = answer.clone();
            connections.spawn(async move {
                if let Err(error) = reply(stream, answer.as_ref()).await {
                    tracing::debug!(%error, "local request failed");
                }
            });
        }
        let _ = std::fs::remove_file(&socket);
    });
    Ok(())
}

async fn reply(stream: UnixStream, answer: &(dyn Fn(&str) -> String + Sync)) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let request = LineReader::new(read).next().await?.unwrap_or_default();
    write_line(&mut write, &answer(request.trim())).await?;
    write.shutdown().await
}

fn no_reply_within(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no reply within {}s", limit.as_secs_f32()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_gets_its_reply_and_the_socket_goes_at_the_end() {
        let socket =
            std::env::temp_dir().join(format!("kbridge-ipc-test-{}.sock", std::process::id()));
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        serve(socket.clone(), &tasks, cancel.clone(), |request| {
            format!("you said {request}")
        })
        .expect("serve");
        let reply = ask(&socket, "hello", Duration::from_secs(3)).await;
        assert_eq!(reply.expect("reply"), "you said hello");
        cancel.cancel();
        tasks.close();
        tasks.wait().await;
        assert!(!socket.exists());
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (_quiet, read) = tokio::io::duplex(64);
        let mut lines = LineReader::new(read);
        let error = lines
            .next_within(Duration::from_millis(20))
            .await
            .expect_err("nothing was said");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
