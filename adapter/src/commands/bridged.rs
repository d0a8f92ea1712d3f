//! `kbridge run`, `kbridge connect` and `kbridge env`: a bridge session without a
//! debugger, for any command, for a terminal, or to see what a process would get.

use super::child::{self, Running};
use anyhow::{bail, Context};
use kbridge::cli::{EnvFormatArg, NsExecArgs, SelfCommand, TargetArgs};
use kbridge::env::EnvLayers;
use kbridge::session::held::Report;
use kbridge::session::{
    open_session_as, BridgeSession, Guardian, SessionEvent, SessionId, Settled,
};
use kbridge_config::{BridgeSettings, EnvVars, HostsMode, IsolateAs, PortMapping};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// Writes a line to stderr. Unlike `eprintln!` it does not panic when stderr is gone (a
/// closed terminal, a parent that stopped reading): the session must still end cleanly.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// [`say!`] without the newline (a spinner line on a terminal).
macro_rules! say_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

/// The `bridge` settings the flags describe.
fn settings(args: &TargetArgs) -> anyhow::Result<BridgeSettings> {
    let ports = args
        .ports
        .iter()
        .map(|text| {
            let parse = |p: &str| {
                p.parse::<u16>()
                    .with_context(|| format!("--port {text}: `{p}` is not a port number"))
            };
            Ok(match text.split_once(':') {
                Some((local, remote)) => PortMapping::Mapped {
                    remote: parse(remote)?,
                    local: parse(local)?,
                },
                None => PortMapping::Local(parse(text)?),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let hosts = match args.hosts.as_deref() {
        None => None,
        Some("auto") => Some(HostsMode::Auto),
        Some("namespace") => Some(HostsMode::Namespace),
        Some("system") => Some(HostsMode::System),
        Some(_) => Some(HostsMode::Off),
    };
    Ok(BridgeSettings {
        context: args.context.clone(),
        namespace: args.namespace.clone(),
        service: args.service.clone(),
        workload: args.workload.clone(),
        pod: args.pod.clone(),
        container: args.container.clone(),
        ports,
        hosts,
        config: args.config.clone(),
        agent_image: args.agent_image.clone(),
        isolate_as: args.isolate_as.as_deref().map(|name| match name {
            "" => IsolateAs::Generate(true),
            name => IsolateAs::Name(name.to_string()),
        }),
        ..BridgeSettings::default()
    })
}

/// How a command shows its session's progress.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// On stderr: a spinner line on a terminal, else one line per step.
    Stderr,
    /// `step …`/`notice …` lines on stdout, for the launch that started a background connect.
    Lines,
}

/// Opens the session, showing progress on stderr.
async fn open(args: &TargetArgs) -> anyhow::Result<(Box<dyn BridgeSession>, Guardian, SessionId)> {
    open_with(settings(args)?, false, Progress::Stderr).await
}

async fn open_with(
    settings: BridgeSettings,
    held: bool,
    progress: Progress,
) -> anyhow::Result<(Box<dyn BridgeSession>, Guardian, SessionId)> {
    let Some(target) = settings.target()? else {
        bail!("say what to bridge: --service NAME, --workload KIND/NAME or --pod NAME");
    };
    let id = SessionId::generate();
    kbridge::logging::init(&id.0);
    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let tty = std::io::stderr().is_terminal() && progress == Progress::Stderr;
    // Runs for the whole session: notices (e.g. "nothing listens on localhost:8080")
    // keep coming after setup.
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if progress == Progress::Lines {
                // The launch that reads these is gone once the session is up: a closed
                // pipe is expected, and the lines are in the log anyway.
                use std::io::Write;
                let line = format!("{}\n", Report::from(event).line());
                let _ = std::io::stdout().write_all(line.as_bytes());
                let _ = std::io::stdout().flush();
                continue;
            }
            match event {
                // On a terminal each step replaces the last; in logs each gets a line.
                SessionEvent::Step(step) if tty => say_inline!("\r\x1b[2Kkbridge: {step}…"),
                SessionEvent::Step(step) => say!("kbridge: {step}"),
                SessionEvent::Notice(notice) => {
                    say!("{}kbridge: {notice}", if tty { "\r\x1b[2K" } else { "" })
                }
            }
        }
    });
    let (session, guardian) =
        open_session_as(id.clone(), settings, Some(target), events, held).await?;
    if tty {
        say!("");
    }
    Ok((session, guardian, id))
}

/// How long teardown waits for the workload's own pods to be Ready again.
const SETTLE_BOUND: Duration = Duration::from_secs(120);

/// Ends the session: stops its tasks, has the guardian undo its changes, then waits until
/// the workload serves with its own pods again (see [`BridgeSession::settle`]) before
/// saying the cluster is restored.
async fn close(mut session: Box<dyn BridgeSession>, guardian: Guardian) -> anyhow::Result<()> {
    session.close().await;
    let failures = guardian.teardown().await?;
    if !failures.is_empty() {
        bail!("teardown incomplete: {}", failures.join("; "));
    }
    let tty = std::io::stderr().is_terminal();
    let progress = move |line: String| {
        if tty {
            say_inline!("\r\x1b[2Kkbridge: {line}…");
        } else {
            say!("kbridge: {line}");
        }
    };
    let settled = session.settle(SETTLE_BOUND, &progress).await;
    let clear = if tty { "\r\x1b[2K" } else { "" };
    match settled {
        Settled::Nothing => say!("{clear}kbridge: session ended, cluster restored"),
        Settled::Serving(workload) => say!(
            "{clear}kbridge: session ended, cluster restored: {workload} serves with its own pods again"
        ),
        Settled::NotYet(what) => say!("{clear}kbridge: session ended; {what}"),
    }
    Ok(())
}

fn environment(session: &dyn BridgeSession) -> EnvVars {
    let layers = session.environment();
    EnvLayers {
        pod: layers.pod,
        config_file: layers.config_file,
        ..EnvLayers::default()
    }
    .merged()
}

/// Resolves when SIGINT or SIGTERM arrives (their Windows counterparts there); returns
/// which (`kbridge connect`).
async fn signal() -> anyhow::Result<&'static str> {
    let mut signals = kbridge::platform::StopSignals::listen()?;
    Ok(signals.recv().await)
}

/// `kbridge run`: runs the command in the session (see [`child`] for how it is started
/// and signalled), then tears down; the command's exit code, or 128 + the signal that
/// ended it.
pub async fn run(
    args: &TargetArgs,
    command: &[OsString],
    grace_period: Duration,
) -> anyhow::Result<ExitCode> {
    let (session, guardian, _) = open(args).await?;
    let running = bridged_command(session.as_ref(), command).and_then(|bridged| {
        Running::spawn(bridged, grace_period)
            .with_context(|| format!("cannot run {}", command[0].to_string_lossy()))
    });
    let running = match running {
        Ok(running) => running,
        Err(error) => {
            close(session, guardian).await?;
            return Err(error);
        }
    };
    let status = running.wait().await;
    close(session, guardian).await?;
    let status = status.context("cannot wait for the command")?;
    Ok(ExitCode::from(child::exit_code(status)))
}

/// The command with the session's environment, run through `kbridge ns-exec` (which
/// execs it, keeping its pid) when cluster names resolve through a private /etc/hosts.
fn bridged_command(
    session: &dyn BridgeSession,
    command: &[OsString],
) -> anyhow::Result<tokio::process::Command> {
    let mut bridged = match session.hosts_file() {
        Some(hosts) => SelfCommand::NsExec(NsExecArgs {
            hosts,
            command: command.to_vec(),
        })
        .tokio_command()
        .context("cannot run ns-exec")?,
        None => {
            let mut c = tokio::process::Command::new(&command[0]);
            c.args(&command[1..]);
            c
        }
    };
    for (name, value) in environment(session).iter() {
        match value {
            Some(value) => bridged.env(name, value),
            None => bridged.env_remove(name),
        };
    }
    Ok(bridged)
}

/// `kbridge connect`: holds the session until Ctrl-C or SIGTERM; launches of the same
/// target reuse it meanwhile.
pub async fn connect(
    args: &TargetArgs,
    env_file: Option<&std::path::Path>,
    background: bool,
    settings_json: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let settings = match settings_json {
        Some(json) => {
            serde_json::from_str(json).context("--settings-json is not a `bridge` object")?
        }
        None => settings(args)?,
    };
    let progress = if background {
        Progress::Lines
    } else {
        Progress::Stderr
    };
    let (session, guardian, id) = match open_with(settings, true, progress).await {
        Ok(opened) => opened,
        Err(error) if background => {
            println!("{}", Report::Error(format!("{error:#}")).line());
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    if background {
        println!("{}", Report::Ready(id.to_string()).line());
    }
    if let Some(path) = env_file {
        std::fs::write(path, dotenv(&environment(session.as_ref())))
            .with_context(|| format!("cannot write {}", path.display()))?;
        say!("kbridge: environment written to {}", path.display());
    }
    say!("kbridge: session {id} is up; press Ctrl-C to end it");
    let which = signal().await?;
    say!("kbridge: {which}: ending the session");
    close(session, guardian).await?;
    Ok(ExitCode::SUCCESS)
}

/// `kbridge env`: prints the environment, then ends the session.
pub async fn env(args: &TargetArgs, format: EnvFormatArg) -> anyhow::Result<ExitCode> {
    let (session, guardian, _) = open(args).await?;
    let env = environment(session.as_ref());
    match format {
        EnvFormatArg::Dotenv => print!("{}", dotenv(&env)),
        EnvFormatArg::Json => println!("{}", serde_json::to_string_pretty(&env.to_object())?),
    }
    close(session, guardian).await?;
    Ok(ExitCode::SUCCESS)
}

/// `NAME="value"` lines with the escapes dotenv readers understand.
fn dotenv(env: &EnvVars) -> String {
    env.iter()
        .filter_map(|(name, value)| {
            let value = value?
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            Some(format!("{name}=\"{value}\"\n"))
        })
        .collect()
}
