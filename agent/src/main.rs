//! `kbridge-agent` command line: serve (default), `restore-watch` or `router`.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kbridge_agent::restore_watch::{self, AgentSource, IsolationWatchOptions, WatchOptions};
use kbridge_agent::{Agent, AgentConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "kbridge-agent",
    version,
    about = "The in-cluster half of kbridge"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default); configured by KBRIDGE_* environment variables.
    Serve,
    /// Watch one agent and restore its workload when the agent is orphaned (or, with
    /// --isolation, end the session's isolation of a Service).
    RestoreWatch {
        /// One agent health endpoint, host:port (instead of --agent-selector).
        #[arg(long, env = "KBRIDGE_RESTORE_AGENT", conflicts_with = "agent_selector")]
        agent: Option<String>,
        /// Label selector of the agent pods (every replica is asked); empty with a bare pod.
        #[arg(long, env = "KBRIDGE_RESTORE_AGENT_SELECTOR", default_value = "")]
        agent_selector: String,
        /// The agents' health port.
        #[arg(long, env = "KBRIDGE_RESTORE_AGENT_PORT", default_value_t = kbridge_protocol::contract::agent_pod::HEALTH_PORT)]
        agent_port: u16,
        /// The session's Lease, deleted after restoring.
        #[arg(long, env = "KBRIDGE_RESTORE_LEASE")]
        lease: Option<String>,
        /// The session's Secret, deleted after restoring (the restorer's objects go with it).
        #[arg(long, env = "KBRIDGE_RESTORE_SECRET")]
        secret: Option<String>,
        /// Namespace of the workload.
        #[arg(long, env = "KBRIDGE_RESTORE_NAMESPACE")]
        namespace: String,
        /// Workload as KIND/NAME, e.g. deployment/todo-api.
        #[arg(
            long,
            env = "KBRIDGE_RESTORE_WORKLOAD",
            required_unless_present = "isolation"
        )]
        workload: Option<String>,
        /// An isolated session instead of a workload, as SERVICE/ROUTE_AS (e.g.
        /// todo-api/alice): the agents are the clone's, and restoring removes the route from
        /// the Service (the last one out puts its selector back and removes the router).
        #[arg(long, env = "KBRIDGE_RESTORE_ISOLATION", conflicts_with = "workload")]
        isolation: Option<String>,
        /// Session id (the kbridge.dev/session annotation it must match).
        #[arg(long, env = "KBRIDGE_SESSION_ID")]
        session: String,
        /// Seconds between checks.
        #[arg(long, default_value_t = 5)]
        interval: u64,
        /// Seconds an unreachable agent is tolerated.
        #[arg(long, env = "KBRIDGE_IDLE_RESTORE_SECS", default_value_t = 60)]
        grace: u64,
    },
    /// Run the isolation router in front of a Service (`docs/architecture.md`, "Isolation"); configured by
    /// KBRIDGE_ROUTER_* environment variables or these flags.
    Router(kbridge_agent::router::RouterArgs),
}

fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Pod logs are files, not terminals: no colour escapes there.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // The router runs on one thread: every request is a read, a lookup and a write, and
    // handing them between worker threads cost it ~10 µs per request in the router
    // benchmark (docs/performance.md). nginx, its peer there, runs one worker too.
    let mut rt = match cli.command {
        Some(Command::Router(_)) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = rt
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve().await,
            Command::Router(args) => router(args).await,
            Command::RestoreWatch {
                agent,
                agent_selector,
                agent_port,
                lease,
                secret,
                namespace,
                workload,
                isolation,
                session,
                interval,
                grace,
            } => {
                let cancel = CancellationToken::new();
                let mut signals = Signals::install()?;
                let on_signal = cancel.clone();
                tokio::spawn(async move {
                    signals.recv().await;
                    on_signal.cancel();
                });
                let agents = match agent {
                    Some(address) => AgentSource::Address(address),
                    None => AgentSource::Pods {
                        selector: agent_selector,
                        port: agent_port,
                    },
                };
                let interval = Duration::from_secs(interval.max(1));
                let unreachable_grace = Duration::from_secs(grace);
                let outcome = match (isolation, workload) {
                    (Some(isolation), _) => {
                        let (service, route_as) = isolation
                            .split_once('/')
                            .filter(|(s, r)| !s.is_empty() && !r.is_empty())
                            .with_context(|| {
                                format!("--isolation '{isolation}' is not SERVICE/ROUTE_AS (e.g. todo-api/alice)")
                            })?;
                        restore_watch::run_isolation(
                            IsolationWatchOptions {
                                agents,
                                namespace,
                                service: service.to_string(),
                                route_as: route_as.to_string(),
                                session,
                                interval,
                                unreachable_grace,
                                secret,
                            },
                            cancel,
                        )
                        .await?
                    }
                    (None, workload) => {
                        restore_watch::run(
                            WatchOptions {
                                agents,
                                lease,
                                secret,
                                namespace,
                                workload: workload.unwrap_or_default(),
                                session,
                                interval,
                                unreachable_grace,
                            },
                            cancel,
                        )
                        .await?
                    }
                };
                tracing::info!(%outcome, "restore-watch finished");
                Ok(())
            }
        }
    })
}

async fn serve() -> anyhow::Result<()> {
    let mut signals = Signals::install()?;
    let config = AgentConfig::from_vars(std::env::vars())?;
    tracing::info!(?config, "starting kbridge-agent {}", kbridge_agent::VERSION);
    let agent = Agent::start(config).await?;
    let mut ready = ready_line(&agent.port_addrs, agent.health_addr);
    ready["control"] = agent.control_addr.to_string().into();
    println!("{ready}");
    signals.recv().await;
    tracing::info!("stopping: closing listeners and sessions");
    agent.shutdown(Duration::from_millis(800)).await;
    Ok(())
}

/// The one machine-readable line on stdout once listening, for tests and for humans
/// reading pod logs: `{"event": "ready", "ports": {port: address}, "health": address}`.
fn ready_line(
    ports: &[(u16, std::net::SocketAddr)],
    health: std::net::SocketAddr,
) -> serde_json::Value {
    let ports: serde_json::Map<String, serde_json::Value> = ports
        .iter()
        .map(|(p, a)| (p.to_string(), a.to_string().into()))
        .collect();
    serde_json::json!({"event": "ready", "ports": ports, "health": health.to_string()})
}

async fn router(args: kbridge_agent::router::RouterArgs) -> anyhow::Result<()> {
    let mut signals = Signals::install()?;
    let config = args.into_config()?;
    tracing::info!(
        ?config,
        "starting kbridge-agent {} router",
        kbridge_agent::VERSION
    );
    let stop = async move {
        signals.recv().await;
        tracing::info!("stopping: closing listeners, finishing requests in flight");
    };
    kbridge_agent::router::run(config, stop, Duration::from_secs(5), |r| {
        println!("{}", ready_line(&r.port_addrs, r.health_addr));
    })
    .await?;
    Ok(())
}

/// SIGTERM and SIGINT, installed before the agent announces itself so none is missed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
