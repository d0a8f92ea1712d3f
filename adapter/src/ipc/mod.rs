//! kbridge's local line protocols, one message a line: the guardian's control channel
//! (its stdin and stdout, [`crate::session::guardian`]), the live sessions' sockets
//! ([`crate::session::registry`]) and the progress a background `kbridge connect` reports
//! to the launch that started it ([`crate::session::held`]).
//!
//! A live session's endpoint is a file in kbridge's state directory. On Unix it is the
//! socket itself ([`unix`]); Windows has no Unix sockets in tokio, so there it is a
//! loopback TCP port and a token written to the file ([`loopback`]), and only a client
//! that can read the file may ask (`docs/portability.md`).

#[cfg(any(windows, test))]
mod loopback;
#[cfg(unix)]
mod unix;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The transport of this system's endpoints.
#[cfg(unix)]
type Native = unix::UnixSocket;
#[cfg(windows)]
type Native = loopback::Loopback;

/// How endpoint files end (`<id>.<extension>`), so listings can find them.
pub const ENDPOINT_EXTENSION: &str = Native::EXTENSION;

/// A way to reach a server through an endpoint file.
trait Transport {
    /// A connection.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// A bound server.
    type Listener: Send + Sync + 'static;
    /// The endpoint files' extension.
    const EXTENSION: &'static str;
    /// Binds a server and creates its endpoint file (replacing a stale one); the token
    /// every request must first present, if the transport needs one.
    fn bind(endpoint: &Path) -> io::Result<(Self::Listener, Option<String>)>;
    /// The next connection.
    fn accept(listener: &Self::Listener) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Connects to the server behind `endpoint`, presenting its token if there is one.
    fn connect(endpoint: &Path) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

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
    ask_on::<Native>(socket, request, limit).await
}

async fn ask_on<T: Transport>(socket: &Path, request: &str, limit: Duration) -> io::Result<String> {
    let exchange = async {
        let (read, mut write) = tokio::io::split(T::connect(socket).await?);
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
    serve_on::<Native>(socket, tasks, cancel, answer)
}

fn serve_on<T: Transport + 'static>(
    socket: PathBuf,
    tasks: &TaskTracker,
    cancel: CancellationToken,
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> io::Result<()> {
    let _ = std::fs::remove_file(&socket);
    let (listener, token) = T::bind(&socket)?;
    let token: Arc<Option<String>> = Arc::new(token);
    let answer = Arc::new(answer);
    let connections = tasks.clone();
    tasks.spawn(async move {
        // An accept that fails (out of file descriptors) is tried again after a pause that
        // doubles up to a second, not at once.
        let mut pause = Duration::from_millis(10);
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = T::accept(&listener) => accepted,
            };
            let Ok(stream) = accepted else {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            };
            pause = Duration::from_millis(10);
            let (answer, token) = (answer.clone(), token.clone());
            connections.spawn(async move {
                if let Err(error) = reply(stream, token.as_deref(), answer.as_ref()).await {
                    tracing::debug!(%error, "local request failed");
                }
            });
        }
        let _ = std::fs::remove_file(&socket);
    });
    Ok(())
}

/// Answers the one request of a connection; with a `token`, only after the client
/// presented it on the line before.
async fn reply<S: AsyncRead + AsyncWrite>(
    stream: S,
    token: Option<&str>,
    answer: &(dyn Fn(&str) -> String + Sync),
) -> io::Result<()> {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = LineReader::new(read);
    if let Some(token) = token {
        let presented = lines.next().await?.unwrap_or_default();
        if !same_secret(presented.as_bytes(), token.as_bytes()) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a client without the endpoint's token",
            ));
        }
    }
    let request = lines.next().await?.unwrap_or_default();
    write_line(&mut write, &answer(request.trim())).await?;
    write.shutdown().await
}

/// Compares a presented token with the expected one in time that depends on the length
/// only (tokens have a fixed length; their bytes are the secret).
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
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
    async fn over_loopback_a_request_with_the_token_gets_its_reply() {
        let endpoint =
            std::env::temp_dir().join(format!("kbridge-ipc-test-{}.endpoint", std::process::id()));
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        serve_on::<loopback::Loopback>(endpoint.clone(), &tasks, cancel.clone(), |request| {
            format!("you said {request}")
        })
        .expect("serve");
        let reply = ask_on::<loopback::Loopback>(&endpoint, "hello", Duration::from_secs(3)).await;
        assert_eq!(reply.expect("reply"), "you said hello");

        // A client that does not know the token is not answered.
        let address = std::fs::read_to_string(&endpoint).expect("endpoint file");
        let address = address.split_whitespace().next().expect("address");
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let (read, mut write) = tokio::io::split(stream);
        write_line(&mut write, "not-the-token")
            .await
            .expect("write");
        write_line(&mut write, "hello").await.expect("write");
        let answered = LineReader::new(read)
            .next_within(Duration::from_secs(3))
            .await;
        assert!(matches!(answered, Ok(None) | Err(_)), "{answered:?}");

        cancel.cancel();
        tasks.close();
        tasks.wait().await;
        assert!(!endpoint.exists(), "endpoint file removed at the end");
        let gone = ask_on::<loopback::Loopback>(&endpoint, "hello", Duration::from_secs(3)).await;
        assert_eq!(gone.expect_err("no server").kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
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
