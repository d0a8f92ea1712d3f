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
use crate::cli::{GuardArgs, SelfCommand};
use crate::ipc::{write_line, LineReader};
use serde::{Deserialize, Serialize};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex;

/// Test hook: the guardian waits this long before undoing, so a test can kill the proxy
/// in the meantime and prove teardown does not depend on it.
pub const TEST_DELAY_VAR: &str = "KBRIDGE_TEST_TEARDOWN_DELAY_MS";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Request {
    Record { step: UndoStep },
    Teardown,
}

/// The guardian's replies.
const READY: &str = "ready";
const OK: &str = "ok";
const ERROR: &str = "error";
const DONE: &str = "done ";

struct Channel {
    stdin: ChildStdin,
    stdout: LineReader<ChildStdout>,
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
        let mut child = SelfCommand::Guard(GuardArgs {
            session: session.0.clone(),
        })
        .spawn_helper(Stdio::piped())
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(fail("its stdio could not be captured".into()));
        };
        let mut stdout = LineReader::new(stdout);
        match stdout.next_within(Duration::from_secs(10)).await {
            Ok(Some(line)) if line == READY => {}
            other => return Err(fail(format!("it did not start properly ({other:?})"))),
        }
        tracing::info!(pid = ?child.id(), "guardian started");
        Ok(Guardian {
            channel: Mutex::new(Channel { stdin, stdout }),
            child: Mutex::new(child),
        })
    }

    async fn exchange(&self, command: &Request) -> Result<String, SessionError> {
        let line =
            serde_json::to_string(command).map_err(|e| SessionError::Guardian(e.to_string()))?;
        let mut channel = self.channel.lock().await;
        write_line(&mut channel.stdin, &line)
            .await
            .map_err(|e| SessionError::Guardian(format!("it stopped listening: {e}")))?;
        match channel.stdout.next().await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(SessionError::Guardian("it exited".into())),
            Err(e) => Err(SessionError::Guardian(format!(
                "cannot read its reply: {e}"
            ))),
        }
    }

    /// Records a step before the change it reverses is made.
    pub async fn record(&self, step: UndoStep) -> Result<(), SessionError> {
        match self.exchange(&Request::Record { step }).await?.as_str() {
            OK => Ok(()),
            other => Err(SessionError::Guardian(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Runs the undo plan and waits for it; returns the steps that failed.
    pub async fn teardown(self) -> Result<Vec<String>, SessionError> {
        let reply = self.exchange(&Request::Teardown).await?;
        let failures = reply
            .strip_prefix(DONE)
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| SessionError::Guardian(format!("unexpected reply {reply:?}")))?;
        let _ = self.child.lock().await.wait().await;
        Ok(failures)
    }
}

/// What tells the guardian to tear down at once.
struct Terminate {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    /// Kept only to ignore them.
    #[cfg(unix)]
    _ignored: [tokio::signal::unix::Signal; 2],
    #[cfg(windows)]
    close: tokio::signal::windows::CtrlClose,
    #[cfg(windows)]
    shutdown: tokio::signal::windows::CtrlShutdown,
}

impl Terminate {
    fn listen() -> std::io::Result<Terminate> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            // Interrupts and hang-ups aimed at the editor or terminal are not for us: keep
            // guarding. SIGTERM (shutdown, `kill`) means tear down now.
            let ignored = [
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            ];
            Ok(Terminate {
                terminate: signal(SignalKind::terminate())?,
                _ignored: ignored,
            })
        }
        #[cfg(windows)]
        {
            // Started in a console process group of its own, the guardian gets no Ctrl-C;
            // closing the console or shutting the system down means tear down now.
            Ok(Terminate {
                close: tokio::signal::windows::ctrl_close()?,
                shutdown: tokio::signal::windows::ctrl_shutdown()?,
            })
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            self.terminate.recv().await;
        }
        #[cfg(windows)]
        {
            tokio::select! {
                _ = self.close.recv() => {}
                _ = self.shutdown.recv() => {}
            }
        }
    }
}

/// The guardian process itself (`kbridge guard --session ID`).
pub async fn run(session: SessionId) -> std::io::Result<()> {
    let mut terminate = Terminate::listen()?;

    let mut stdout = tokio::io::stdout();
    write_line(&mut stdout, READY).await?;
    let mut stdin = LineReader::new(tokio::io::stdin());
    let mut plan: Vec<UndoStep> = Vec::new();
    let reply = loop {
        tokio::select! {
            line = stdin.next() => match line {
                Ok(Some(line)) => match serde_json::from_str::<Request>(&line) {
                    Ok(Request::Record { step }) => {
                        tracing::info!(%session, ?step, "recorded");
                        plan.push(step);
                        write_line(&mut stdout, OK).await?;
                    }
                    Ok(Request::Teardown) => break true,
                    Err(e) => {
                        tracing::error!(%session, error = %e, "unreadable guardian command");
                        write_line(&mut stdout, ERROR).await?;
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
            "{DONE}{}",
            serde_json::to_string(&failures).unwrap_or_else(|_| "[]".into())
        );
        // The proxy may already be gone; nothing to do about a failed reply.
        let _ = write_line(&mut stdout, &text).await;
    }
    Ok(())
}
