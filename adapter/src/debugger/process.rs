//! Starting an adapter process and connecting to it over stdio or TCP. The proxy keeps
//! the child so it can close its input, wait for it, and kill it if it hangs.

use super::presets::{install_hint, AdapterSpec, DebuggerError};
use crate::cli::{NsExecArgs, SelfCommand};
use kbridge_config::Transport;
use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a TCP adapter may take to print its address and accept a connection.
const TCP_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of adapter stderr kept for error messages.
const STDERR_TAIL_LINES: usize = 20;

/// The DAP byte streams of a running adapter.
pub struct AdapterStreams {
    /// Messages from the adapter.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// Messages to the adapter.
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
}

/// Text a TCP adapter's process printed: for Delve this is the debuggee's own output.
#[derive(Debug)]
pub struct ProgramOutput {
    /// `stdout` or `stderr`.
    pub category: &'static str,
    /// One line, with its newline.
    pub text: String,
}

/// A started adapter process.
pub struct AdapterProcess {
    /// What was started.
    pub spec: AdapterSpec,
    child: Child,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Output of TCP adapters' processes, to be shown as `output` events.
    pub program_output: Option<mpsc::UnboundedReceiver<ProgramOutput>>,
}

impl AdapterProcess {
    /// The last lines the adapter wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|tail| tail.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Process id, for logs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits up to `grace` for the adapter to exit by itself, then kills it.
    pub async fn finish(&mut self, grace: Duration) -> Option<ExitStatus> {
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::warn!(adapter = %self.spec.name, "adapter did not exit in time; killing it");
                let _ = self.child.kill().await;
                self.child.wait().await.ok()
            }
        }
    }

    /// Whether the process has exited, and how.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// An error naming the adapter, what happened and its last stderr lines.
    pub fn start_error(&mut self, what: &str) -> DebuggerError {
        let status = self
            .try_status()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let tail = self.stderr_tail();
        let reason = if tail.is_empty() {
            format!("{what}{status}")
        } else {
            format!("{what}{status}; it said:\n{tail}")
        };
        DebuggerError::StartFailed {
            name: self.spec.name.clone(),
            reason,
            hint: install_hint(self.spec.preset),
        }
    }
}

/// Starts the adapter and connects to its DAP stream. With `hosts`, the adapter (and so
/// the debuggee) runs in a private mount namespace where that file is `/etc/hosts`.
pub async fn start(
    spec: &AdapterSpec,
    hosts: Option<&std::path::Path>,
) -> Result<(AdapterProcess, AdapterStreams), DebuggerError> {
    let port = match spec.transport {
        Transport::Tcp if spec.args.iter().any(|a| a.contains("${port}")) => {
            Some(free_port().map_err(|e| start_failed(spec, format!("no free local port: {e}")))?)
        }
        _ => None,
    };
    let mut command = adapter_command(spec, hosts, port)?;
    let child = command
        .spawn()
        .map_err(|e| start_failed(spec, format!("cannot run {}: {e}", spec.program.display())))?;
    tracing::info!(adapter = %spec.name, command = ?command.as_std(), pid = ?child.id(), "adapter started");
    match spec.transport {
        Transport::Stdio => attach_stdio(spec, child),
        Transport::Tcp => attach_tcp(spec, child, port).await,
    }
}

/// The adapter's command line (`${port}` filled in), run through `kbridge ns-exec` when
/// it needs the session's hosts file; its stdio piped.
fn adapter_command(
    spec: &AdapterSpec,
    hosts: Option<&std::path::Path>,
    port: Option<u16>,
) -> Result<Command, DebuggerError> {
    let args = spec.args.iter().map(|a| match port {
        Some(port) => a.replace("${port}", &port.to_string()),
        None => a.clone(),
    });
    let mut command = match hosts {
        Some(hosts) => SelfCommand::NsExec(NsExecArgs {
            hosts: hosts.to_path_buf(),
            command: vec![spec.program.clone().into_os_string()],
        })
        .tokio_command()
        .map_err(|e| start_failed(spec, e.to_string()))?,
        None => Command::new(&spec.program),
    };
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(command)
}

/// A stdio adapter: its stdout and stdin are the DAP stream, its stderr is kept for errors.
fn attach_stdio(
    spec: &AdapterSpec,
    mut child: Child,
) -> Result<(AdapterProcess, AdapterStreams), DebuggerError> {
    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(keep_stderr_tail(stderr, stderr_tail.clone()));
    }
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(start_failed(spec, "its stdio could not be captured".into()));
    };
    let process = AdapterProcess {
        spec: spec.clone(),
        child,
        stderr_tail,
        program_output: None,
    };
    let streams = AdapterStreams {
        reader: Box::new(stdout),
        writer: Box::new(stdin),
    };
    Ok((process, streams))
}

/// A TCP adapter: it listens on `port`, or on an address it prints; what its process
/// prints otherwise is the debuggee's output, relayed as `output` events.
async fn attach_tcp(
    spec: &AdapterSpec,
    mut child: Child,
    port: Option<u16>,
) -> Result<(AdapterProcess, AdapterStreams), DebuggerError> {
    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    let (output_tx, output_rx) = mpsc::unbounded_channel();
    let (address_tx, mut address_rx) = mpsc::unbounded_channel();
    if let Some(stdout) = child.stdout.take() {
        let relay = relay_lines(
            stdout,
            "stdout",
            output_tx.clone(),
            address_tx.clone(),
            None,
        );
        tokio::spawn(relay);
    }
    if let Some(stderr) = child.stderr.take() {
        let tail = Some(stderr_tail.clone());
        tokio::spawn(relay_lines(stderr, "stderr", output_tx, address_tx, tail));
    }
    let mut process = AdapterProcess {
        spec: spec.clone(),
        child,
        stderr_tail,
        program_output: Some(output_rx),
    };
    let address = match port {
        Some(port) => format!("127.0.0.1:{port}"),
        None => match tokio::time::timeout(TCP_START_TIMEOUT, address_rx.recv()).await {
            Ok(Some(address)) => address,
            Ok(None) => return Err(process.start_error("it exited before printing its address")),
            Err(_) => return Err(process.start_error("it printed no listening address")),
        },
    };
    let stream = connect_with_retry(&address)
        .await
        .map_err(|e| start_failed(spec, format!("cannot connect to it at {address}: {e}")))?;
    let _ = stream.set_nodelay(true);
    tracing::info!(adapter = %spec.name, %address, "connected to adapter");
    let (reader, writer) = stream.into_split();
    let streams = AdapterStreams {
        reader: Box::new(reader),
        writer: Box::new(writer),
    };
    Ok((process, streams))
}

/// The adapter of `spec` could not be started, for `reason`.
fn start_failed(spec: &AdapterSpec, reason: String) -> DebuggerError {
    DebuggerError::StartFailed {
        name: spec.name.clone(),
        reason,
        hint: install_hint(spec.preset),
    }
}

async fn keep_stderr_tail(stderr: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "adapter_stderr", "{line}");
        remember(&tail, line);
    }
}

fn remember(tail: &Mutex<VecDeque<String>>, line: String) {
    if let Ok(mut tail) = tail.lock() {
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Forwards a TCP adapter's output lines; the first `HOST:PORT` seen is its address.
async fn relay_lines(
    pipe: impl AsyncRead + Unpin,
    category: &'static str,
    output: mpsc::UnboundedSender<ProgramOutput>,
    address: mpsc::UnboundedSender<String>,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let mut lines = BufReader::new(pipe).lines();
    let mut address_seen = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if !address_seen {
            if let Some(found) = find_address(&line) {
                address_seen = true;
                let _ = address.send(found);
                continue;
            }
        }
        if let Some(tail) = &tail {
            remember(tail, line.clone());
        }
        let _ = output.send(ProgramOutput {
            category,
            text: format!("{line}\n"),
        });
    }
}

/// Finds `IPv4:PORT`, `[IPv6]:PORT` or `localhost:PORT` in a line such as Delve's
/// "DAP server listening at: 127.0.0.1:38213".
fn find_address(line: &str) -> Option<String> {
    line.split(|c: char| c.is_whitespace() || c == ',' || c == '"' || c == '\'')
        .map(|word| word.trim_end_matches('.'))
        .find(|word| {
            let Some((host, port)) = word.rsplit_once(':') else {
                return false;
            };
            let host_ok = host == "localhost"
                || host.parse::<std::net::Ipv4Addr>().is_ok()
                || (host.starts_with('[') && host.ends_with(']'));
            host_ok && port.parse::<u16>().is_ok_and(|p| p != 0)
        })
        .map(str::to_string)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn connect_with_retry(address: &str) -> std::io::Result<tokio::net::TcpStream> {
    let deadline = tokio::time::Instant::now() + TCP_START_TIMEOUT;
    loop {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::find_address;

    #[test]
    fn finds_listening_addresses() {
        assert_eq!(
            find_address("DAP server listening at: 127.0.0.1:38213").as_deref(),
            Some("127.0.0.1:38213")
        );
        assert_eq!(
            find_address("Debug server listening at [::1]:9229").as_deref(),
            Some("[::1]:9229")
        );
        assert_eq!(find_address("time 12:30 and nothing else"), None);
    }
}
