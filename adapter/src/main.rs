//! The `kbridge` binary: parses the command line and hands off to the library.

mod commands;

use anyhow::Context;
use kbridge::cli::{AgentCommand, Cli, Command, ConnectArgs, GuardArgs, NsExecArgs, SchemaKind};
use kbridge::proxy::{self, Outcome, ProxyOptions};
use kbridge::session::{guardian, SessionId};
use std::process::ExitCode;
use tokio::sync::watch;

fn main() -> ExitCode {
    let cli = kbridge::cli::parse();
    // Before any thread exists: a new user namespace needs a single-threaded process.
    if let Command::NsExec(NsExecArgs { hosts, command }) = &cli.command {
        let error =
            kbridge::session::hosts_namespace::exec_with_hosts(hosts, &command[0], &command[1..]);
        eprintln!(
            "kbridge: error: cannot run {}: {error}",
            command[0].to_string_lossy()
        );
        return ExitCode::FAILURE;
    }
    // One thread: a debug proxy routes one message at a time, and skipping cross-thread
    // wake-ups keeps the latency it adds small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kbridge: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kbridge: error: {error:#}");
            ExitCode::FAILURE
        }
    };
    // tokio reads stdin on a blocking thread that cannot be interrupted; do not wait
    // for it (or the process would linger until the editor closes our stdin).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dap {
            debugger,
            port,
            bridge,
        } => dap(debugger, port, &bridge).await,
        Command::Schema { which } => {
            let schema = match which {
                SchemaKind::Launch => kbridge_config::schema::launch_schema(),
                SchemaKind::Config => kbridge_config::schema::config_schema(),
            };
            print!("{}", kbridge_config::schema::to_file_text(&schema));
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor {
            context,
            namespace,
            agent_image,
            insecure,
        } => {
            let image = commands::doctor::ImageCheck {
                image: agent_image,
                insecure,
            };
            Ok(commands::doctor::run(context.as_deref(), namespace.as_deref(), &image).await)
        }
        Command::Agent {
            command: AgentCommand::Push(args),
        } => Ok(commands::agent_push::run(&args).await?),
        Command::Targets {
            context,
            namespace,
            all_namespaces,
            output,
        } => {
            let (context, namespace) = (context.as_deref(), namespace.as_deref());
            commands::targets::run(context, namespace, all_namespaces, output == "json").await
        }
        Command::Run {
            target,
            grace_period,
            command,
        } => {
            let grace_period = std::time::Duration::from_secs(grace_period);
            commands::bridged::run(&target, &command, grace_period).await
        }
        Command::Connect(ConnectArgs {
            target,
            env_file,
            background,
            settings_json,
        }) => {
            commands::bridged::connect(
                &target,
                env_file.as_deref(),
                background,
                settings_json.as_deref(),
            )
            .await
        }
        Command::Diagnostics { json } => commands::diagnostics::run(json).await,
        Command::Env { target, format } => commands::bridged::env(&target, format).await,
        Command::Restore {
            context,
            namespace,
            workload,
            all,
        } => {
            commands::restore::run(
                context.as_deref(),
                namespace.as_deref(),
                workload.as_deref(),
                all,
            )
            .await
        }
        Command::Status {
            context,
            namespace,
            all_namespaces,
        } => commands::status::run(context.as_deref(), namespace.as_deref(), all_namespaces).await,
        Command::Migrate { dir, write } => Ok(commands::migrate::run(&dir, write)),
        Command::Lsp { .. } => Ok(match kbridge::lsp::run_stdio().await? {
            kbridge::lsp::Exit::Clean => ExitCode::SUCCESS,
            kbridge::lsp::Exit::WithoutShutdown => ExitCode::FAILURE,
        }),
        Command::NsExec(_) => unreachable!("handled before the runtime starts"),
        Command::Guard(GuardArgs { session }) => {
            kbridge::logging::init(&session);
            guardian::run(SessionId(session))
                .await
                .context("guardian failed")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `kbridge dap`: the proxy, over stdio or a loopback TCP port.
async fn dap(
    debugger: Option<kbridge_config::Preset>,
    port: Option<u16>,
    bridge: &kbridge::cli::DapBridgeArgs,
) -> anyhow::Result<ExitCode> {
    // Checked before anything starts: a bad flag is the editor's setup, not a launch's.
    let bridge = bridge.settings()?;
    let log = kbridge::logging::init(&format!("dap-{}", SessionId::generate()));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        ?debugger,
        ?port,
        ?bridge,
        ?log,
        "kbridge dap"
    );
    let options = ProxyOptions { debugger, bridge };
    let shutdown = shutdown_on_signals()?;
    let outcome = match port {
        None => proxy::serve_stdio(options, shutdown).await,
        Some(port) => {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .with_context(|| format!("cannot listen on 127.0.0.1:{port} (is the port taken? pick another with --port, or 0 for a free one)"))?;
            let address = listener.local_addr()?;
            // Test clients and editors read this line to learn the port.
            println!("kbridge: listening on {address}");
            proxy::serve_tcp(options, listener, shutdown).await
        }
    };
    Ok(match outcome {
        Outcome::Clean => ExitCode::SUCCESS,
        Outcome::TeardownFailed(failures) => {
            eprintln!("kbridge: teardown incomplete: {}", failures.join("; "));
            ExitCode::FAILURE
        }
    })
}

/// A flag that turns true on SIGTERM or SIGINT (Ctrl-C, Ctrl-Break or a closed console on
/// Windows), so sessions end with teardown.
fn shutdown_on_signals() -> anyhow::Result<watch::Receiver<bool>> {
    let mut signals = kbridge::platform::StopSignals::listen()?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let name = signals.recv().await;
        tracing::info!("{name}");
        let _ = tx.send(true);
    });
    Ok(rx)
}
