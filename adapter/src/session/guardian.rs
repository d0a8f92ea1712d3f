//! The guardian: a small helper process (`kbridge guard`) that holds a session's undo
//! plan and runs it when told to, or by itself when the proxy disappears (its stdin
//! closes). Editors kill debug adapters abruptly — VS Code right after the `disconnect`
//! response, nvim-dap with SIGINT then SIGKILL — so teardown cannot live in the proxy.
//!
//! Protocol on the guardian's stdin/stdout, one JSON line per message:
//! `{"op":"record","step":{…}}` → `ok`; `{"op":"teardown"}` → `done [failures…]`;
//! end of input → teardown without a reply. The guardian prints `ready` once started.

use super::undo::{run_plan, UndoStep};
use super::{SessionError, SessionId};
use serde::{Deserialize, Serialize};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

/// Test hook: the guardian waits this long before undoing, so a test can kill the proxy
/// in the meantime and prove teardown does not depend on it.
pub const TEST_DELAY_VAR: &str = "KBRIDGE_TEST_TEARDOWN_DELAY_MS";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Command_ {
    Record { step: UndoStep },
    Teardown,
}

struct Channel {
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// The proxy's handle on its session's guardian process.
pub struct Guardian {
    channel: Mutex<Channel>,
    child: Mutex<Child>,
}

impl Guardian {
    /// Starts `kbridge guard` for the session, in its own process group so a Ctrl-C or
    /// SIGINT sent to the editor's group does not reach it.
    pub async fn spawn(session: &SessionId) -> Result<Guardian, SessionError> {
        let fail = |what: String| SessionError::Guardian(what);
        let exe = std::env::current_exe()
            .map_err(|e| fail(format!("cannot find kbridge's own executable: {e}")))?;
        let mut child = Command::new(exe)
            .args(["guard", "--session", &session.0])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| fail(format!("cannot start it: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(fail("its stdio could not be captured".into()));
        };
        let mut stdout = BufReader::new(stdout).lines();
        match tokio::time::timeout(Duration::from_secs(10), stdout.next_line()).await {
            Ok(Ok(Some(line))) if line == "ready" => {}
            other => return Err(fail(format!("it did not start properly ({other:?})"))),
        }
        tracing::info!(pid = ?child.id(), "guardian started");
        Ok(Guardian {
            channel: Mutex::new(Channel { stdin, stdout }),
            child: Mutex::new(child),
        })
    }

    async fn exchange(&self, command: &Command_) -> Result<String, SessionError> {
        let mut line =
            serde_json::to_string(command).map_err(|e| SessionError::Guardian(e.to_string()))?;
        line.push('\n');
        let mut channel = self.channel.lock().await;
        channel
            .stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| SessionError::Guardian(format!("it stopped listening: {e}")))?;
        match channel.stdout.next_line().await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(SessionError::Guardian("it exited".into())),
            Err(e) => Err(SessionError::Guardian(format!(
                "cannot read its reply: {e}"
            ))),
        }
    }

    /// Records a step before the change it reverses is made.
    pub async fn record(&self, step: UndoStep) -> Result<(), SessionError> {
        match self.exchange(&Command_::Record { step }).await?.as_str() {
            "ok" => Ok(()),
            other => Err(SessionError::Guardian(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Runs the undo plan and waits for it; returns the steps that failed.
    pub async fn teardown(self) -> Result<Vec<String>, SessionError> {
        let reply = self.exchange(&Command_::Teardown).await?;
        let failures = reply
            .strip_prefix("done ")
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| SessionError::Guardian(format!("unexpected reply {reply:?}")))?;
        let _ = self.child.lock().await.wait().await;
        Ok(failures)
    }
}

/// The guardian process itself (`kbridge guard --session ID`).
pub async fn run(session: SessionId) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Interrupts and hang-ups aimed at the editor or terminal are not for us: keep
    // guarding. SIGTERM (shutdown, `kill`) means tear down now.
    let _interrupt = signal(SignalKind::interrupt())?;
    let _hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;

    let mut stdout = tokio::io::stdout();
    stdout.write_all(b"ready\n").await?;
    stdout.flush().await?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut plan: Vec<UndoStep> = Vec::new();
    let reply = loop {
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(line)) => match serde_json::from_str::<Command_>(&line) {
                    Ok(Command_::Record { step }) => {
                        tracing::info!(%session, ?step, "recorded");
                        plan.push(step);
                        stdout.write_all(b"ok\n").await?;
                        stdout.flush().await?;
                    }
                    Ok(Command_::Teardown) => break true,
                    Err(e) => {
                        tracing::error!(%session, error = %e, "unreadable guardian command");
                        stdout.write_all(b"error\n").await?;
                        stdout.flush().await?;
                    }
                },
                Ok(None) | Err(_) => {
                    tracing::warn!(%session, "kbridge went away without tearing down; tearing down now");
                    break false;
                }
            },
            _ = terminate.recv() => {
                tracing::warn!(%session, "guardian terminated; tearing down now");
                break false;
            }
        }
    };
    if let Some(delay) = std::env::var(TEST_DELAY_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let failures = run_plan(&plan).await;
    if failures.is_empty() {
        tracing::info!(%session, steps = plan.len(), "teardown complete");
    } else {
        tracing::error!(%session, ?failures, "teardown finished with failures");
    }
    if reply {
        let text = format!(
            "done {}\n",
            serde_json::to_string(&failures).unwrap_or_else(|_| "[]".into())
        );
        // The proxy may already be gone; nothing to do about a failed reply.
        let _ = stdout.write_all(text.as_bytes()).await;
        let _ = stdout.flush().await;
    }
    Ok(())
}
