//! The command line, as DESIGN §2 lists it. Commands of the cluster session join as
//! they are built.

use clap::{Parser, Subcommand, ValueEnum};
use kbridge_config::Preset;

/// Run and debug one service of a Kubernetes application locally, wired into the cluster.
#[derive(Debug, Parser)]
#[command(name = "kbridge", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// kbridge's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Debug Adapter Protocol proxy on stdio (or TCP with --port): what editors launch.
    Dap {
        /// Start this debug adapter at `initialize` instead of waiting for `launch`.
        #[arg(long, value_parser = parse_preset)]
        debugger: Option<Preset>,
        /// Listen on this TCP port on 127.0.0.1 instead of stdio (0 picks a free port);
        /// every connection is its own session.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run a command bridged to the cluster, without a debugger.
    Run {
        /// The target.
        #[command(flatten)]
        target: TargetArgs,
        /// After passing SIGINT, SIGTERM or SIGHUP on to the command, wait this long for it
        /// to end before killing it (SIGKILL); a second signal kills it at once.
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        grace_period: u64,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Hold a session open until Ctrl-C.
    Connect {
        /// The target.
        #[command(flatten)]
        target: TargetArgs,
        /// Write the session's environment to this file (dotenv).
        #[arg(long)]
        env_file: Option<std::path::PathBuf>,
        /// Report progress as lines on stdout (`step …`, `ready ID`) for the launch that
        /// started this process with `disconnectAfterDebugging: false`.
        #[arg(long, hide = true)]
        background: bool,
        /// The launch configuration's `bridge` object, instead of target flags.
        #[arg(long, hide = true)]
        settings_json: Option<String>,
    },
    /// The live sessions on this machine: environment (secret values redacted), hosts
    /// entries, forwarded services, inbound ports and tunnels with their traffic.
    Diagnostics {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the environment a bridged process gets.
    Env {
        /// The target.
        #[command(flatten)]
        target: TargetArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "dotenv")]
        format: EnvFormatArg,
    },
    /// Print a JSON Schema.
    Schema {
        /// Which schema.
        #[arg(value_enum)]
        which: SchemaKind,
    },
    /// Check the setup: debuggers found, cluster reachable, RBAC for a session.
    Doctor {
        /// Kubeconfig context (default: the current one).
        #[arg(long)]
        context: Option<String>,
        /// Namespace to check permissions in (default: the context's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
    /// Sessions on this machine and workloads marked as bridged in the cluster.
    Status {
        /// Kubeconfig context (default: the current one).
        #[arg(long)]
        context: Option<String>,
        /// Namespace (default: the context's).
        #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        /// Look in every namespace.
        #[arg(long, short = 'A')]
        all_namespaces: bool,
    },
    /// The Services of a namespace that can be bridged, with their ports.
    Targets {
        /// Kubeconfig context (default: the current one).
        #[arg(long)]
        context: Option<String>,
        /// Namespace (default: the context's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// `table` or `json`.
        #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Put back workloads a crashed session left modified (from their annotations alone).
    Restore {
        /// Kubeconfig context (default: the current one).
        #[arg(long)]
        context: Option<String>,
        /// Namespace (default: the context's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// The workload, KIND/NAME (e.g. deployment/todo-api).
        workload: Option<String>,
        /// Every bridged workload of the namespace.
        #[arg(long)]
        all: bool,
    },
    /// Internal: run PROGRAM in a private mount namespace with FILE as /etc/hosts.
    #[command(hide = true)]
    NsExec {
        /// The hosts file to show as /etc/hosts.
        #[arg(long)]
        hosts: std::path::PathBuf,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Internal: the teardown guardian of a session (started by kbridge itself).
    #[command(hide = true)]
    Guard {
        /// The session id.
        #[arg(long)]
        session: String,
    },
}

/// Which workload to bridge and how (DESIGN §2 target flags).
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace (default: the context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Bridge the workload behind this Service.
    #[arg(long, group = "target")]
    pub service: Option<String>,
    /// Bridge this workload, KIND/NAME (deployment/todo-api).
    #[arg(long, group = "target")]
    pub workload: Option<String>,
    /// Bridge the workload of this Pod.
    #[arg(long, group = "target")]
    pub pod: Option<String>,
    /// The container to replace, when the pod has several.
    #[arg(long)]
    pub container: Option<String>,
    /// LOCAL or LOCAL:REMOTE (REMOTE is the container port); repeatable.
    #[arg(long = "port", value_name = "LOCAL[:REMOTE]")]
    pub ports: Vec<String>,
    /// Path of KubernetesLocalProcessConfig.yaml.
    #[arg(long)]
    pub config: Option<String>,
    /// How cluster names resolve locally.
    #[arg(long, value_parser = ["auto", "namespace", "system", "off"])]
    pub hosts: Option<String>,
    /// The agent image [default: $KBRIDGE_AGENT_IMAGE, else ghcr.io/kbridge/agent:<version>].
    #[arg(long)]
    pub agent_image: Option<String>,
    /// Only requests routed as NAME reach this machine (header `kubernetes-route-as: NAME`
    /// or a Host starting with `NAME.`); without NAME one is generated (`<user>-<4 hex>`).
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "NAME")]
    pub isolate_as: Option<String>,
}

/// Output formats of `kbridge env`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EnvFormatArg {
    /// NAME=value lines.
    Dotenv,
    /// A JSON object.
    Json,
}

/// The schemas `kbridge schema` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemaKind {
    /// The `"type": "bridge"` launch configuration.
    Launch,
    /// `KubernetesLocalProcessConfig.yaml`.
    Config,
}

fn parse_preset(name: &str) -> Result<Preset, String> {
    Preset::from_name(name)
}
