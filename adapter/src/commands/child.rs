//! The command of `kbridge run`: how it is started, signalled, waited for and reported.
//!
//! kbridge stands between the command and whoever runs kbridge — a terminal, a script, a
//! process manager, an IDE's stop button that signals one pid — and behaves as `docker
//! run`, `tini` and shells do, so that stopping "the run" stops the command however it
//! was asked:
//!
//! - **A process group of its own, default signal handling.** The command starts as the
//!   leader of a new process group, with every signal at its default action and none
//!   blocked. Ignored signals survive `exec`, and a non-interactive shell starts its
//!   background jobs with SIGINT ignored: without the reset such a command could not be
//!   interrupted at all. One exception: a SIGHUP that kbridge itself was started with
//!   ignored stays ignored, for kbridge and the command — that is `nohup` asking for the
//!   run to outlive its terminal.
//! - **Forwarding.** SIGINT, SIGTERM and SIGHUP reaching kbridge are sent on to the
//!   command's group (the command and whatever it started without a group of its own).
//!   kbridge does not end on them: the command decides, and the session is torn down
//!   after it ended.
//! - **Escalation.** If the command still runs after the grace period, or when another
//!   signal arrives, its group gets SIGKILL: one more Ctrl-C or `kill` always ends a run.
//! - **The terminal.** Only the foreground process group of a terminal may read it, and
//!   Ctrl-C and Ctrl-Z go to that group. So when stdin is kbridge's controlling terminal
//!   and kbridge's group is its foreground, the command's group becomes the foreground —
//!   in the child, before `exec`, so the command never meets the terminal from the
//!   background — and kbridge takes the terminal back once the command ended. Ctrl-C then
//!   reaches the command directly, as without kbridge. When the command stops (Ctrl-Z, or
//!   reading the terminal from the background) kbridge does what a shell's job does: it
//!   takes the terminal back and stops its own group, so the shell sees the run stopped;
//!   `fg` or `bg` continue kbridge, which hands the terminal back (when it is in the
//!   foreground again) and continues the command. Without a terminal on stdin none of
//!   this applies.
//! - **Exit status.** The command's exit code, or 128 + the signal that killed it, as a
//!   shell reports it.
//!
//! A process in a background group that changes the terminal's foreground gets SIGTTOU,
//! which would stop it; the calls to `tcsetpgrp` ignore SIGTTOU around them, as shells do.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

/// A started command, its group and the signals kbridge passes on to it.
pub struct Running {
    child: Child,
    /// The command's pid, which is also its process group's id.
    group: libc::pid_t,
    signals: Signals,
    /// SIGCHLD, to notice the command stopping.
    child_changed: Signal,
    /// Whether stdin is kbridge's controlling terminal (see the module doc).
    job_control: bool,
    grace: Duration,
    /// When the command gets SIGKILL unless it ended: set by the first signal passed on.
    kill_at: Option<Instant>,
    /// Whether the group got SIGKILL already.
    killed: bool,
}

impl Running {
    /// Starts `command` in a process group of its own with default signal handling,
    /// handing it the terminal when kbridge holds it.
    pub fn spawn(mut command: Command, grace: Duration) -> io::Result<Running> {
        let nohup = is_ignored(libc::SIGHUP);
        // Listen before the command exists: until then SIGINT or SIGTERM would end
        // kbridge at once and leave the command behind.
        let signals = Signals::listen(nohup)?;
        let child_changed = watch(SignalKind::child(), "SIGCHLD")?;
        let foreground = terminal_foreground();
        let job_control = foreground.is_some();
        let give_terminal = foreground == Some(own_group());
        #[cfg(target_os = "linux")]
        let last_signal = libc::SIGRTMAX();
        // macOS has no real-time signals: 31 is its last (NSIG - 1).
        #[cfg(not(target_os = "linux"))]
        let last_signal: libc::c_int = 31;
        // SAFETY: `prepare_child` runs in the forked child before exec and makes only
        // async-signal-safe calls, allocating nothing.
        unsafe {
            command.pre_exec(move || prepare_child(give_terminal, nohup, last_signal));
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                // The child may have taken the terminal before its exec failed.
                if give_terminal {
                    take_terminal_back();
                }
                return Err(error);
            }
        };
        let group = child
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .ok_or_else(|| io::Error::other("the command has no pid"))?;
        Ok(Running {
            child,
            group,
            signals,
            child_changed,
            job_control,
            grace,
            kill_at: None,
            killed: false,
        })
    }

    /// Waits for the command to end, passing signals on meanwhile; gives the terminal
    /// back to kbridge's group afterwards.
    pub async fn wait(mut self) -> io::Result<ExitStatus> {
        let status = loop {
            let kill_at = self.kill_at;
            let grace_over = async move {
                match kill_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = self.child.wait() => break status,
                signal = self.signals.next() => self.pass_on(signal),
                () = grace_over => {
                    tell(format_args!("the command still runs after {}s: killing it", self.grace.as_secs()));
                    self.kill();
                }
                Some(()) = self.child_changed.recv(), if self.job_control => self.follow_stop(),
            }
        };
        if self.job_control && terminal_foreground() == Some(self.group) {
            take_terminal_back();
        }
        status
    }

    /// The first signal goes to the command's group and starts the grace period; any
    /// later one kills the group.
    fn pass_on(&mut self, signal: libc::c_int) {
        let name = signal_name(signal);
        if self.kill_at.is_some() || self.killed {
            tell(format_args!("{name} again: killing the command"));
            self.kill();
            return;
        }
        tell(format_args!(
            "{name}: passed on to the command; it is killed if it still runs in {}s or on another signal",
            self.grace.as_secs()
        ));
        self.signal_group(signal);
        self.kill_at = Some(Instant::now() + self.grace);
    }

    fn kill(&mut self) {
        self.signal_group(libc::SIGKILL);
        self.killed = true;
        self.kill_at = None;
    }

    fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: killpg takes plain integers.
        if unsafe { libc::killpg(self.group, signal) } != 0 {
            // ESRCH: the group is gone already (the command is ending on its own).
            let error = io::Error::last_os_error();
            tracing::info!(group = self.group, signal, %error, "cannot signal the command");
        }
    }

    /// On SIGCHLD: if the command stopped, stop the run as a shell's job would stop, and
    /// continue the command when kbridge is continued (see the module doc).
    fn follow_stop(&mut self) {
        if !stopped(self.group) {
            return;
        }
        if terminal_foreground() == Some(self.group) {
            take_terminal_back();
        }
        // Stops kbridge's group (the shell's job) until `fg` or `bg`. Returns at once if
        // nobody could continue the group (an orphaned group ignores SIGTSTP).
        // SAFETY: plain integers.
        unsafe { libc::killpg(own_group(), libc::SIGTSTP) };
        if terminal_foreground() == Some(own_group()) {
            hand_terminal_to(self.group);
        }
        self.signal_group(libc::SIGCONT);
    }
}

/// The signals kbridge watches while the command runs.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    /// None under `nohup`.
    hangup: Option<Signal>,
}

impl Signals {
    fn listen(nohup: bool) -> io::Result<Signals> {
        Ok(Signals {
            interrupt: watch(SignalKind::interrupt(), "SIGINT")?,
            terminate: watch(SignalKind::terminate(), "SIGTERM")?,
            hangup: match nohup {
                true => None,
                false => Some(watch(SignalKind::hangup(), "SIGHUP")?),
            },
        })
    }

    /// The next signal to pass on.
    async fn next(&mut self) -> libc::c_int {
        let hangup = async {
            match self.hangup.as_mut() {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(()) = self.interrupt.recv() => libc::SIGINT,
            Some(()) = self.terminate.recv() => libc::SIGTERM,
            Some(()) = hangup => libc::SIGHUP,
        }
    }
}

fn watch(kind: SignalKind, name: &str) -> io::Result<Signal> {
    signal(kind).map_err(|e| io::Error::new(e.kind(), format!("cannot watch {name}: {e}")))
}

/// The exit code a shell reports for the command: its own, or 128 + the signal that
/// killed it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
        (None, None) => 1,
    }
}

/// In the forked child, before exec: a new process group (the foreground one when
/// `give_terminal`), signals 1..=`last_signal` at their default action (SIGHUP left
/// ignored under `nohup`), none blocked.
fn prepare_child(give_terminal: bool, nohup: bool, last_signal: libc::c_int) -> io::Result<()> {
    // SAFETY: setpgid, signal, tcsetpgrp, sigemptyset and sigprocmask are
    // async-signal-safe and get valid arguments; nothing is allocated.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if give_terminal {
            // We are in a background group now: without this, tcsetpgrp stops us.
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
        }
        for signal in 1..=last_signal {
            // SIGKILL, SIGSTOP and the C library's own signals refuse; that is fine.
            if !(nohup && signal == libc::SIGHUP) {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    Ok(())
}

/// Whether the command (`pid`) stopped since last asked. Looks at stops only
/// (`WSTOPPED` without `WEXITED`), so the exit is left for tokio to collect.
fn stopped(pid: libc::pid_t) -> bool {
    let Ok(id) = libc::id_t::try_from(pid) else {
        return false;
    };
    // SAFETY: waitid writes into `info`, a zeroed siginfo_t of our own; si_pid stays 0
    // when nothing is reported.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let reported = libc::waitid(libc::P_PID, id, &mut info, libc::WSTOPPED | libc::WNOHANG);
        reported == 0 && info.si_pid() == pid
    }
}

/// The foreground process group of the terminal on stdin, if stdin is kbridge's
/// controlling terminal.
fn terminal_foreground() -> Option<libc::pid_t> {
    // SAFETY: tcgetpgrp only reads; it fails on a descriptor that is not our terminal.
    let group = unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) };
    (group > 0).then_some(group)
}

fn own_group() -> libc::pid_t {
    // SAFETY: getpgrp cannot fail.
    unsafe { libc::getpgrp() }
}

fn take_terminal_back() {
    hand_terminal_to(own_group());
}

/// Makes `group` the terminal's foreground group, ignoring SIGTTOU for the call.
fn hand_terminal_to(group: libc::pid_t) {
    // SAFETY: sigaction gets a zeroed action with SIG_IGN and a place for the previous
    // one, which is put back; tcsetpgrp takes integers.
    let result = unsafe {
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        let mut previous: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGTTOU, &ignore, &mut previous);
        let result = libc::tcsetpgrp(libc::STDIN_FILENO, group);
        let error = io::Error::last_os_error();
        libc::sigaction(libc::SIGTTOU, &previous, std::ptr::null_mut());
        if result == 0 {
            Ok(())
        } else {
            Err(error)
        }
    };
    if let Err(error) = result {
        tracing::warn!(group, %error, "cannot hand the terminal over");
    }
}

/// Whether `signal` is ignored in kbridge.
fn is_ignored(signal: libc::c_int) -> bool {
    // SAFETY: with a null new action, sigaction only reads the current one.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// A `kbridge:` line on stderr; a closed stderr is no reason to fail the run.
fn tell(message: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "kbridge: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_code_passes_through() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(255 << 8)), 255);
    }

    #[test]
    fn a_signal_gives_128_plus_its_number() {
        // A raw wait status of N alone means "killed by signal N".
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGINT)), 130);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGTERM)), 143);
        // The core-dump flag (0x80) does not change the signal.
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGSEGV | 0x80)), 139);
    }
}
