//! `kbridge run` and signals, with real processes and real signals: a signal sent to
//! kbridge alone (a process manager, a script, an IDE's stop button) reaches the command,
//! a command that ignores it is killed after the grace period or on a second signal, the
//! command never inherits an ignored SIGINT and runs in a process group of its own, the
//! command owns the terminal while it runs, and kbridge exits as a shell would report the
//! command (its code, or 128 + signal). Every test ends with the command gone and the
//! workload restored.

use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{kbridge_bin, temp_dir};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The sample app's own image: the workload is restored when its template shows it again.
const APP_IMAGE: &str = "kbridge-samples/todo-api:1.0";

/// A `kbridge run` of a `sh -c` script that writes its pid to `pid_file` first.
struct Run {
    kbridge: Child,
    pid_file: PathBuf,
    stderr: PathBuf,
}

/// `kbridge run TARGET FLAGS -- sh -c SCRIPT`, where SCRIPT may use `$PID_FILE` (the shell's
/// own pid is written there before SCRIPT runs); `wrapper` goes before kbridge's path (e.g.
/// `sh -c '…; exec "$0" "$@"'`).
fn start(fixture: &TestCluster, tag: &str, wrapper: &[&str], flags: &[&str], script: &str) -> Run {
    let tmp = temp_dir(tag);
    let pid_file = tmp.join("command.pid");
    let stderr = tmp.join("kbridge.stderr");
    let script = format!("echo $$ > {}; {script}", pid_file.display());
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(kbridge_bin());
            command
        }
        None => Command::new(kbridge_bin()),
    };
    let kbridge = command
        .arg("run")
        .args(fixture.todo_api_target())
        .args(flags)
        .args(["--", "sh", "-c", &script])
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start kbridge run");
    Run {
        kbridge,
        pid_file,
        stderr,
    }
}

impl Run {
    /// The command's pid, once the session is up and the command has started.
    fn command_pid(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(pid) = std::fs::read_to_string(&self.pid_file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                return pid;
            }
            if Instant::now() > deadline || matches!(self.kbridge.try_wait(), Ok(Some(_))) {
                self.fail(None, "the command did not start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, name: &str) {
        signal(self.kbridge.id(), name);
    }

    /// kbridge's exit status, within `limit`; on timeout, kills what is left and fails.
    fn exit_status(&mut self, command: u32, limit: Duration) -> ExitStatus {
        match wait_for(&mut self.kbridge, limit) {
            Some(status) => status,
            None => self.fail(
                Some(command),
                &format!("kbridge still runs after {limit:?}"),
            ),
        }
    }

    /// Kills kbridge and the command (so a failing test leaves nothing behind; kbridge's
    /// guardian restores the workload), then fails with kbridge's stderr.
    fn fail(&mut self, command: Option<u32>, what: &str) -> ! {
        if let Some(pid) = command {
            signal(pid, "KILL");
        }
        let _ = self.kbridge.kill();
        let _ = self.kbridge.wait();
        panic!("{what}; kbridge said:\n{}", self.stderr_text());
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Checks how the run ended: kbridge's exit code, the command gone, the session torn
    /// down and the workload restored.
    fn assert_ended(&self, status: ExitStatus, code: i32, command: u32, fixture: &TestCluster) {
        let left_running = alive(command);
        if left_running {
            signal(command, "KILL");
        }
        let stderr = self.stderr_text();
        assert_eq!(status.code(), Some(code), "kbridge's exit: {stderr}");
        assert!(!left_running, "the command {command} was left running");
        assert!(
            stderr.contains("session ended, cluster restored"),
            "{stderr}"
        );
        assert_eq!(fixture.todo_api_template_image(), APP_IMAGE);
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_fields(&stat).first().map(|state| state != "Z"))
        .unwrap_or(false)
}

/// The fields of `/proc/PID/stat` after the command name: state, ppid, pgrp, session,
/// tty_nr, tpgid, …
fn stat_fields(stat: &str) -> Vec<String> {
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name.split_whitespace().map(String::from).collect()
}

/// The process group of `pid`.
fn process_group(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    stat_fields(&stat)[2].clone()
}

/// Polls `child` until it exits, at most `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Waits until `pid` is gone, at most `limit`; whether it went.
fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A signal sent to kbridge alone (no terminal delivered it to the command too) reaches
/// the command; kbridge tears the session down and exits as the command did.
fn signal_alone_ends_the_run(tag: &str, hosts: &str, name: &str, code: i32) {
    let fixture = TestCluster::start_demo(tag);
    let mut run = start(&fixture, tag, &[], &["--hosts", hosts], "exec sleep 120");
    let command = run.command_pid();
    assert_eq!(
        fixture.todo_api_template_image(),
        kbridge_tests::agent_image()
    );
    run.signal(name);
    let status = run.exit_status(command, Duration::from_secs(45));
    run.assert_ended(status, code, command, &fixture);
}

#[test]
fn sigint_to_kbridge_alone_interrupts_the_command() {
    // Through `kbridge ns-exec` (private /etc/hosts): it must hand the signal on too.
    signal_alone_ends_the_run("sig-int", "namespace", "INT", 130);
}

#[test]
fn sigterm_to_kbridge_alone_terminates_the_command() {
    signal_alone_ends_the_run("sig-term", "off", "TERM", 143);
}

#[test]
fn sighup_to_kbridge_alone_hangs_up_the_command() {
    signal_alone_ends_the_run("sig-hup", "off", "HUP", 129);
}

#[test]
fn a_command_ignoring_sigterm_is_killed_after_the_grace_period() {
    let fixture = TestCluster::start_demo("sig-grace");
    let flags = ["--hosts", "off", "--grace-period", "2"];
    let script = "trap '' TERM; while :; do sleep 1; done";
    let mut run = start(&fixture, "sig-grace", &[], &flags, script);
    let command = run.command_pid();
    run.signal("TERM");
    let sent = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    if !alive(command) {
        run.fail(None, "the command was supposed to ignore SIGTERM");
    }
    if !gone_within(command, Duration::from_secs(10)) {
        run.fail(Some(command), "the command outlived the grace period");
    }
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "killed after {waited:?}, before the grace period of 2 s"
    );
    let status = run.exit_status(command, Duration::from_secs(45));
    run.assert_ended(status, 137, command, &fixture);
}

#[test]
fn a_second_signal_kills_the_command_at_once() {
    let fixture = TestCluster::start_demo("sig-second");
    let flags = ["--hosts", "off", "--grace-period", "120"];
    let script = "trap '' INT TERM; while :; do sleep 1; done";
    let mut run = start(&fixture, "sig-second", &[], &flags, script);
    let command = run.command_pid();
    run.signal("TERM");
    std::thread::sleep(Duration::from_secs(1));
    if !alive(command) {
        run.fail(None, "the command was supposed to ignore SIGTERM");
    }
    run.signal("INT");
    if !gone_within(command, Duration::from_secs(5)) {
        run.fail(Some(command), "a second signal did not kill the command");
    }
    let status = run.exit_status(command, Duration::from_secs(45));
    run.assert_ended(status, 137, command, &fixture);
}

#[test]
fn the_command_never_inherits_an_ignored_sigint_and_has_its_own_group() {
    // As a non-interactive shell starts a background job: SIGINT ignored, same group.
    let fixture = TestCluster::start_demo("sig-ignored");
    let wrapper = ["sh", "-c", r#"trap "" INT; exec "$0" "$@""#];
    let flags = ["--hosts", "namespace"];
    let mut run = start(&fixture, "sig-ignored", &wrapper, &flags, "exec sleep 120");
    let command = run.command_pid();
    // `exec sleep` keeps the pid: look at the process once it is `sleep`.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{command}/comm")).unwrap_or_default() != "sleep\n"
    {
        if Instant::now() > deadline {
            run.fail(Some(command), "the command did not become `sleep`");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::fs::read_to_string(format!("/proc/{command}/status")).expect("status");
    let ignored = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .expect("SigIgn line");
    let kbridge_group = process_group(run.kbridge.id());
    let command_group = process_group(command);
    if ignored & (1 << (2 - 1)) != 0 || command_group == kbridge_group {
        run.fail(
            Some(command),
            &format!("SigIgn {ignored:#x} (SIGINT is bit 0x2); group {command_group}, kbridge's {kbridge_group}"),
        );
    }
    assert_eq!(
        command_group,
        command.to_string(),
        "the command leads its group"
    );
    run.signal("INT");
    let status = run.exit_status(command, Duration::from_secs(45));
    run.assert_ended(status, 130, command, &fixture);
}

#[test]
fn a_command_killed_by_a_signal_gives_128_plus_the_signal() {
    let fixture = TestCluster::start_demo("sig-self");
    let mut run = start(
        &fixture,
        "sig-self",
        &[],
        &["--hosts", "off"],
        "kill -TERM $$",
    );
    let command = run.command_pid();
    let status = run.exit_status(command, Duration::from_secs(45));
    run.assert_ended(status, 143, command, &fixture);
}

/// On a terminal the command is the foreground: it reads the terminal, Ctrl-C reaches it,
/// and afterwards the terminal is back with the shell that started kbridge.
#[test]
fn the_command_owns_the_terminal_while_it_runs() {
    let fixture = TestCluster::start_demo("sig-tty");
    let tmp = temp_dir("sig-tty");
    let file = |name: &str| tmp.join(name).display().to_string();
    let command = format!(
        // Fields 5 and 8 of stat: the process group and the terminal's foreground group.
        "cut -d' ' -f5,8 /proc/$$/stat > {groups}; read line; echo \"$line\" > {read}; \
         echo $$ > {pid}; exec sleep 120",
        groups = file("groups"),
        read = file("read"),
        pid = file("pid"),
    );
    let quote = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
    let mut kbridge_line = vec![kbridge_bin().display().to_string(), "run".into()];
    kbridge_line.extend(fixture.todo_api_target());
    kbridge_line.extend(["--hosts".into(), "off".into(), "--".into(), "sh".into()]);
    kbridge_line.extend(["-c".into(), command]);
    let kbridge_line: Vec<String> = kbridge_line.iter().map(|word| quote(word)).collect();
    // A shell on a new terminal (script(1)); it reads the terminal again after kbridge.
    let shell = format!(
        "{} 2> {}; echo $? > {}; read after; echo \"$after\" > {}",
        kbridge_line.join(" "),
        file("stderr"),
        file("code"),
        file("after"),
    );
    let mut script = Command::new("script")
        .args(["--quiet", "--return", "--command", &shell, "/dev/null"])
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", &tmp)
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start script(1)");
    let mut terminal = script.stdin.take().expect("script's stdin");
    let read = |name: &str| std::fs::read_to_string(tmp.join(name)).unwrap_or_default();
    let stop = |script: &mut Child, pid: Option<u32>, what: &str| -> ! {
        if let Some(pid) = pid {
            signal(pid, "KILL");
        }
        let _ = script.kill();
        let _ = script.wait();
        panic!("{what}; kbridge said:\n{}", read("stderr"));
    };
    // Typed before the session is up: the terminal keeps the line for whoever reads it.
    terminal.write_all(b"typed line\n").expect("type");
    let deadline = Instant::now() + Duration::from_secs(60);
    let command_pid = loop {
        if let Ok(pid) = read("pid").trim().parse::<u32>() {
            break pid;
        }
        if Instant::now() > deadline {
            stop(&mut script, None, "the command did not read the terminal");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let groups = read("groups");
    let groups: Vec<&str> = groups.split_whitespace().collect();
    if groups.len() != 2 || groups[0] != groups[1] {
        stop(
            &mut script,
            Some(command_pid),
            &format!("the command started outside the foreground: (group, foreground) {groups:?}"),
        );
    }
    assert_eq!(read("read").trim(), "typed line");
    // Ctrl-C on the terminal: the line discipline signals the foreground group.
    terminal.write_all(b"\x03").expect("type Ctrl-C");
    if !gone_within(command_pid, Duration::from_secs(10)) {
        stop(
            &mut script,
            Some(command_pid),
            "Ctrl-C did not end the command",
        );
    }
    let deadline = Instant::now() + Duration::from_secs(45);
    while read("code").is_empty() {
        if Instant::now() > deadline {
            stop(&mut script, None, "kbridge did not end after the command");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without the terminal the shell's `read` fails and it exits: a broken pipe here.
    let _ = terminal.write_all(b"after kbridge\n");
    if wait_for(&mut script, Duration::from_secs(10)).is_none() {
        stop(&mut script, None, "the shell did not get the terminal back");
    }
    assert_eq!(
        read("code").trim(),
        "130",
        "kbridge's exit: {}",
        read("stderr")
    );
    assert_eq!(
        read("after").trim(),
        "after kbridge",
        "the shell reads the terminal after kbridge"
    );
    assert!(read("stderr").contains("session ended, cluster restored"));
    assert_eq!(fixture.todo_api_template_image(), APP_IMAGE);
}
