//! What differs between the systems kbridge runs on, in one place: whether a process is
//! alive, the signals that ask kbridge to stop, and starting a helper that outlives a
//! Ctrl-C aimed at its starter. Linux is the reference; `docs/portability.md` lists what
//! each other system has instead and what it lacks.

use std::io;

/// Whether process `pid` runs on this machine; None where kbridge cannot tell (Windows),
/// so callers keep whatever the process might still use.
pub fn process_alive(pid: u32) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        Some(std::path::Path::new(&format!("/proc/{pid}")).exists())
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let pid = libc::pid_t::try_from(pid).ok()?;
        // SAFETY: kill with signal 0 only checks that the process exists.
        let result = unsafe { libc::kill(pid, 0) };
        // EPERM: it exists, it is only someone else's.
        Some(result == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        None
    }
}

/// The signals that ask kbridge to stop: SIGTERM and SIGINT on Unix; Ctrl-C, Ctrl-Break
/// and closing the console window on Windows.
pub struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(windows)]
    ctrl_c: tokio::signal::windows::CtrlC,
    #[cfg(windows)]
    ctrl_break: tokio::signal::windows::CtrlBreak,
    #[cfg(windows)]
    ctrl_close: tokio::signal::windows::CtrlClose,
}

impl StopSignals {
    /// Starts listening; from here on these signals no longer end the process at once.
    pub fn listen() -> io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                terminate: signal(SignalKind::terminate())
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot watch SIGTERM: {e}")))?,
                interrupt: signal(SignalKind::interrupt())
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot watch SIGINT: {e}")))?,
            })
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows;
            Ok(StopSignals {
                ctrl_c: windows::ctrl_c()?,
                ctrl_break: windows::ctrl_break()?,
                ctrl_close: windows::ctrl_close()?,
            })
        }
    }

    /// Waits for the next one; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
        #[cfg(windows)]
        {
            tokio::select! {
                _ = self.ctrl_c.recv() => "Ctrl-C",
                _ = self.ctrl_break.recv() => "Ctrl-Break",
                _ = self.ctrl_close.recv() => "console closed",
            }
        }
    }
}

/// Makes `command` start outside its starter's signal group: on Unix a process group of
/// its own, on Windows a new console process group (Ctrl-C is not delivered to it).
pub fn detach_from_starter(command: &mut tokio::process::Command) -> &mut tokio::process::Command {
    #[cfg(unix)]
    {
        command.process_group(0)
    }
    #[cfg(windows)]
    {
        // CREATE_NEW_PROCESS_GROUP from the Windows API (winbase.h).
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        command.creation_flags(CREATE_NEW_PROCESS_GROUP)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert_eq!(process_alive(std::process::id()), Some(true));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert_eq!(process_alive(pid), Some(false));
    }
}
