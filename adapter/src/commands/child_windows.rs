//! The command of `kbridge run` on Windows (`child.rs` is the Unix one; the module is
//! picked in `commands/mod.rs`).
//!
//! Windows has no process groups to signal and no job control: the command shares
//! kbridge's console, so a Ctrl-C in it reaches the command directly, as without kbridge.
//! kbridge does not end on Ctrl-C, Ctrl-Break or a closed console: it waits for the
//! command and kills it if it still runs after the grace period, or on the next one of
//! them. The exit code is the command's own (`docs/portability.md`).

use kbridge::platform::StopSignals;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A started command and the console signals kbridge watches meanwhile.
pub struct Running {
    child: Child,
    signals: StopSignals,
    grace: Duration,
    /// When the command is killed unless it ended: set by the first signal.
    kill_at: Option<Instant>,
    /// Whether the command was killed already.
    killed: bool,
}

impl Running {
    /// Starts `command` in kbridge's console.
    pub fn spawn(mut command: Command, grace: Duration) -> io::Result<Running> {
        // Listen before the command exists: until then Ctrl-C would end kbridge at once
        // and leave the command behind.
        let signals = StopSignals::listen()?;
        let child = command.spawn()?;
        Ok(Running {
            child,
            signals,
            grace,
            kill_at: None,
            killed: false,
        })
    }

    /// Waits for the command to end, killing it after the grace period that the first
    /// console signal starts, or at once on a second one.
    pub async fn wait(mut self) -> io::Result<ExitStatus> {
        loop {
            let kill_at = self.kill_at;
            let grace_over = async move {
                match kill_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = self.child.wait() => return status,
                name = self.signals.recv() => {
                    if self.kill_at.is_some() || self.killed {
                        tell(format_args!("{name} again: killing the command"));
                        self.kill();
                    } else {
                        tell(format_args!(
                            "{name}: the command got it too; it is killed if it still runs in {}s or on another one",
                            self.grace.as_secs()
                        ));
                        self.kill_at = Some(Instant::now() + self.grace);
                    }
                }
                () = grace_over => {
                    tell(format_args!("the command still runs after {}s: killing it", self.grace.as_secs()));
                    self.kill();
                }
            }
        }
    }

    fn kill(&mut self) {
        if let Err(error) = self.child.start_kill() {
            tracing::info!(%error, "cannot kill the command");
        }
        // Nothing left to wait for but the exit itself.
        self.killed = true;
        self.kill_at = None;
    }
}

/// The exit code kbridge reports: the command's own where it fits a byte, else 1
/// (Windows exit codes are 32 bits, e.g. 0xC000013A after Ctrl-C).
pub fn exit_code(status: ExitStatus) -> u8 {
    status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1)
}

/// A `kbridge:` line on stderr; a closed stderr is no reason to fail the run.
fn tell(message: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "kbridge: {message}");
}
