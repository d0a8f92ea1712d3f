//! The command line, as the README lists it, and [`SelfCommand`]: the commands kbridge
//! runs itself with (the guardian, `ns-exec`, a background `connect`), rendered from the
//! same types clap parses.

use crate::session::cluster::setup::DEFAULT_AGENT_IMAGE;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use kbridge_config::flat::{self, FlatKey};
use kbridge_config::{BridgeSettings, ConfigError, Preset};
use std::ffi::OsString;
use std::path::PathBuf;

/// Run and debug one service of a Kubernetes application locally, wired into the cluster.
#[derive(Debug, Parser)]
#[command(name = "kbridge", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What `kbridge --version` prints after `kbridge `: the version, then the agent image a
/// session runs unless told otherwise, `env_image` (`$KBRIDGE_AGENT_IMAGE`) when set, else
/// `ghcr.io/kbridge/agent:<version>`. An upgrade shows here that sessions will ask for a
/// new agent image.
pub fn version_text(env_image: Option<&str>) -> String {
    let version = env!("CARGO_PKG_VERSION");
    match env_image.map(str::trim).filter(|image| !image.is_empty()) {
        Some(image) => format!(
            "{version}\nagent image {image} (from KBRIDGE_AGENT_IMAGE; the built-in default is {DEFAULT_AGENT_IMAGE})"
        ),
        None => format!(
            "{version}\nagent image {DEFAULT_AGENT_IMAGE} (the default; --agent-image, bridge.agentImage or KBRIDGE_AGENT_IMAGE name another)"
        ),
    }
}

/// Parses the command line like [`Cli::parse`], with [`version_text`] for `--version`
/// (read from the environment, so it cannot be a derive attribute).
pub fn parse() -> Cli {
    let env_image = std::env::var("KBRIDGE_AGENT_IMAGE").ok();
    // Once per process; clap keeps `&'static str` versions without its `string` feature.
    let version: &'static str = Box::leak(version_text(env_image.as_deref()).into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
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
        /// The cluster target for every launch of this adapter.
        #[command(flatten)]
        bridge: DapBridgeArgs,
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
    Connect(ConnectArgs),
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
    /// Check the setup: debuggers found, cluster reachable, RBAC for a session, the
    /// agent image resolves in its registry.
    Doctor {
        /// Kubeconfig context (default: the current one).
        #[arg(long)]
        context: Option<String>,
        /// Namespace to check permissions in (default: the context's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// The agent image to check [default: those .vscode/launch.json's bridged configurations
        /// name, else $KBRIDGE_AGENT_IMAGE, else ghcr.io/kbridge/agent:<version>].
        #[arg(long)]
        agent_image: Option<String>,
        /// Speak plain http to the image's registry (loopback registries always are).
        #[arg(long)]
        insecure: bool,
    },
    /// The agent image.
    Agent {
        /// What to do with it.
        #[command(subcommand)]
        command: AgentCommand,
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
        /// Every namespace's Services.
        #[arg(long, short = 'A', conflicts_with = "namespace")]
        all_namespaces: bool,
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
    /// Turn Bridge to Kubernetes launch configurations and tasks under DIR into
    /// `"type": "bridge"` configurations: prints the diff; `--write` applies it.
    Migrate {
        /// The directory to search, with the VS Code folders below it.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Rewrite the files, all or none, keeping each old one as FILE.b2k.bak.
        #[arg(long)]
        write: bool,
    },
    /// Language server for KubernetesLocalProcessConfig.yaml, azds-local.env and the
    /// `bridge` block of launch.json, on stdio (editors start it).
    Lsp {
        /// Accepted for editors that pass it; stdio is the only transport.
        #[arg(long, hide = true)]
        stdio: bool,
    },
    /// Internal: run PROGRAM in a private mount namespace with FILE as /etc/hosts.
    #[command(hide = true)]
    NsExec(NsExecArgs),
    /// Internal: the teardown guardian of a session (started by kbridge itself).
    #[command(hide = true)]
    Guard(GuardArgs),
}

/// `kbridge agent …`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Build the agent image (as agent/Dockerfile describes it) from a static kbridge-agent
    /// and push it to IMAGE through the registry API, with the credentials `docker login`
    /// or `podman login` left; no Docker engine needed.
    Push(AgentPushArgs),
}

/// `kbridge agent push`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct AgentPushArgs {
    /// Where to push: REGISTRY/REPOSITORY:TAG (e.g. 127.0.0.1:5000/kbridge/agent:dev).
    pub image: String,
    /// The static kbridge-agent to put in [default: the kbridge-agent next to kbridge].
    /// Given once per platform (an x86_64 and an aarch64 build), IMAGE becomes a
    /// multi-platform index and each node pulls its own.
    #[arg(long, value_name = "PATH")]
    pub agent_binary: Vec<PathBuf>,
    /// Speak plain http to the registry (loopback registries always are).
    #[arg(long)]
    pub insecure: bool,
}

/// `kbridge connect`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ConnectArgs {
    /// The target.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Write the session's environment to this file (dotenv).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Report progress as lines on stdout (`step …`, `ready ID`) for the launch that
    /// started this process with `disconnectAfterDebugging: false`.
    #[arg(long, hide = true)]
    pub background: bool,
    /// The launch configuration's `bridge` object, instead of target flags.
    #[arg(long, hide = true)]
    pub settings_json: Option<String>,
}

/// `kbridge ns-exec` (internal).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct NsExecArgs {
    /// The hosts file to show as /etc/hosts.
    #[arg(long)]
    pub hosts: PathBuf,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<OsString>,
}

/// `kbridge guard` (internal).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct GuardArgs {
    /// The session id.
    #[arg(long)]
    pub session: String,
}

/// Which workload to bridge and how (the target flags the README lists).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
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

/// `kbridge dap`'s target flags: the `bridge` keys for every launch this adapter serves,
/// for editors that cannot put a `bridge` table in a launch configuration (Helix's
/// `debugger.args` in a project's `.helix/languages.toml`). The launch configuration's
/// `bridge` table and flat `bridge.*` keys win key by key; a target it names replaces the
/// flags' whole. Values are read as the flat keys are (`config-schema/src/flat.rs`); an
/// empty value is not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[command(
    next_help_heading = "Bridge target (defaults for every launch; the launch configuration wins)"
)]
pub struct DapBridgeArgs {
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace (default: the context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Bridge the workload behind this Service.
    #[arg(long, group = "dap_target")]
    pub service: Option<String>,
    /// Bridge this workload, KIND/NAME (deployment/todo-api).
    #[arg(long, group = "dap_target")]
    pub workload: Option<String>,
    /// Bridge the workload of this Pod.
    #[arg(long, group = "dap_target")]
    pub pod: Option<String>,
    /// The container to replace, when the pod has several.
    #[arg(long)]
    pub container: Option<String>,
    /// Ports the local process listens on: LOCAL or LOCAL:REMOTE entries, comma-separated
    /// or repeated (`--port` is the TCP port of `kbridge dap` itself).
    #[arg(long, value_name = "LOCAL[:REMOTE],...")]
    pub ports: Vec<String>,
    /// Only requests routed as NAME reach this machine; without NAME (or `true`) one is
    /// generated, `false` isolates nothing.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "NAME")]
    pub isolate_as: Option<String>,
    /// How cluster names resolve locally.
    #[arg(long, value_parser = ["auto", "namespace", "system", "off"])]
    pub hosts: Option<String>,
    /// Reach services through `*_SERVICE_HOST`/`*_PORT` variables only.
    #[arg(long, value_name = "true|false")]
    pub use_kubernetes_service_environment_variables: Option<String>,
    /// Path of KubernetesLocalProcessConfig.yaml (or azds-local.env).
    #[arg(long)]
    pub config: Option<String>,
    /// `false` keeps the session for the next launch.
    #[arg(long, value_name = "true|false")]
    pub disconnect_after_debugging: Option<String>,
    /// The agent image [default: $KBRIDGE_AGENT_IMAGE, else ghcr.io/kbridge/agent:<version>].
    #[arg(long)]
    pub agent_image: Option<String>,
    /// Seconds without kbridge after which the cluster restores the workload by itself.
    #[arg(long, value_name = "SECONDS")]
    pub idle_restore_seconds: Option<String>,
}

impl DapBridgeArgs {
    /// The `bridge` settings the flags give; an error names the flag.
    pub fn settings(&self) -> Result<BridgeSettings, ConfigError> {
        let ports = self.ports.join(",");
        let given = [
            (FlatKey::Context, self.context.as_deref()),
            (FlatKey::Namespace, self.namespace.as_deref()),
            (FlatKey::Service, self.service.as_deref()),
            (FlatKey::Workload, self.workload.as_deref()),
            (FlatKey::Pod, self.pod.as_deref()),
            (FlatKey::Container, self.container.as_deref()),
            (FlatKey::Ports, Some(ports.as_str())),
            (FlatKey::IsolateAs, self.isolate_as.as_deref()),
            (FlatKey::Hosts, self.hosts.as_deref()),
            (
                FlatKey::UseKubernetesServiceEnvironmentVariables,
                self.use_kubernetes_service_environment_variables.as_deref(),
            ),
            (FlatKey::Config, self.config.as_deref()),
            (
                FlatKey::DisconnectAfterDebugging,
                self.disconnect_after_debugging.as_deref(),
            ),
            (FlatKey::AgentImage, self.agent_image.as_deref()),
            (
                FlatKey::IdleRestoreSeconds,
                self.idle_restore_seconds.as_deref(),
            ),
        ];
        flat::from_flags(
            given
                .into_iter()
                .filter_map(|(key, value)| value.map(|value| (key, value))),
        )
    }
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

/// A command kbridge runs itself with: its arguments are rendered from the types clap
/// parses them into, so the two cannot drift apart (the tests parse each rendering back).
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "built once to start a process, never stored"
)]
pub enum SelfCommand {
    /// `kbridge guard`: a session's teardown guardian.
    Guard(GuardArgs),
    /// `kbridge ns-exec`: a program with a private /etc/hosts.
    NsExec(NsExecArgs),
    /// `kbridge connect`: a held session (`--background` for a launch).
    Connect(ConnectArgs),
}

impl SelfCommand {
    /// The arguments after the program name.
    pub fn args(&self) -> Vec<OsString> {
        let mut argv = Args::default();
        match self {
            SelfCommand::Guard(GuardArgs { session }) => {
                argv.word("guard").option("--session", Some(session));
            }
            SelfCommand::NsExec(NsExecArgs { hosts, command }) => {
                argv.word("ns-exec").option("--hosts", Some(hosts));
                argv.word("--").0.extend(command.iter().cloned());
            }
            SelfCommand::Connect(ConnectArgs {
                target,
                env_file,
                background,
                settings_json,
            }) => {
                argv.word("connect")
                    .flag("--background", *background)
                    .option("--settings-json", settings_json.as_ref())
                    .option("--env-file", env_file.as_ref());
                target.render(&mut argv);
            }
        }
        argv.0
    }

    /// `kbridge` itself with these arguments; fails when kbridge's own executable
    /// cannot be found.
    pub fn command(&self) -> std::io::Result<std::process::Command> {
        let exe = std::env::current_exe().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot find kbridge's own executable: {e}"),
            )
        })?;
        let mut command = std::process::Command::new(exe);
        command.args(self.args());
        Ok(command)
    }

    /// [`SelfCommand::command`] for tokio.
    pub fn tokio_command(&self) -> std::io::Result<tokio::process::Command> {
        self.command().map(tokio::process::Command::from)
    }

    /// Starts it as a helper that outlives signals to its starter: in a process group of
    /// its own (a Ctrl-C or SIGINT sent to the editor's or the terminal's group does not
    /// reach it), reporting on a pipe from its stdout, its stderr discarded (it logs to
    /// its own file).
    pub fn spawn_helper(
        &self,
        stdin: std::process::Stdio,
    ) -> std::io::Result<tokio::process::Child> {
        let mut command = self.tokio_command()?;
        command
            .stdin(stdin)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        crate::platform::detach_from_starter(&mut command).spawn()
    }

    /// Whether `cmdline` (a process's arguments, its program first) runs this command.
    pub fn runs_in(&self, cmdline: &[&[u8]]) -> bool {
        let args = self.args();
        cmdline.len() > args.len()
            && cmdline[1..=args.len()]
                .iter()
                .zip(&args)
                .all(|(have, want)| *have == want.as_encoded_bytes())
    }
}

impl TargetArgs {
    fn render(&self, argv: &mut Args) {
        let TargetArgs {
            context,
            namespace,
            service,
            workload,
            pod,
            container,
            ports,
            config,
            hosts,
            agent_image,
            isolate_as,
        } = self;
        argv.option("--context", context.as_ref())
            .option("--namespace", namespace.as_ref())
            .option("--service", service.as_ref())
            .option("--workload", workload.as_ref())
            .option("--pod", pod.as_ref())
            .option("--container", container.as_ref());
        for port in ports {
            argv.option("--port", Some(port));
        }
        argv.option("--config", config.as_ref())
            .option("--hosts", hosts.as_ref())
            .option("--agent-image", agent_image.as_ref());
        match isolate_as.as_deref() {
            None => {}
            // `--isolate-as` alone: a generated name.
            Some("") => {
                argv.word("--isolate-as");
            }
            Some(name) => {
                argv.word(format!("--isolate-as={name}"));
            }
        }
    }
}

/// An argument list being rendered: each value its own argument, as a shell would pass
/// it (so `/proc/PID/cmdline` shows `--session ID`).
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn word(&mut self, word: impl Into<OsString>) -> &mut Args {
        self.0.push(word.into());
        self
    }

    fn flag(&mut self, name: &str, set: bool) -> &mut Args {
        if set {
            self.word(name);
        }
        self
    }

    fn option(
        &mut self,
        name: &str,
        value: Option<&(impl AsRef<std::ffi::OsStr> + ?Sized)>,
    ) -> &mut Args {
        if let Some(value) = value {
            self.word(name).word(value.as_ref());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_default_agent_image_of_this_version() {
        let text = version_text(None);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(env!("CARGO_PKG_VERSION")));
        let image = lines.next().unwrap_or_default();
        assert!(image.contains(DEFAULT_AGENT_IMAGE), "{text}");
        assert!(
            DEFAULT_AGENT_IMAGE.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
            "the default image is tagged with the version"
        );
        assert_eq!(version_text(Some("  ")), text, "blank is unset");
    }

    #[test]
    fn version_names_the_image_from_the_environment() {
        let text = version_text(Some("127.0.0.1:5000/kbridge/agent:dev"));
        assert!(
            text.contains("agent image 127.0.0.1:5000/kbridge/agent:dev (from KBRIDGE_AGENT_IMAGE"),
            "{text}"
        );
        assert!(text.contains(DEFAULT_AGENT_IMAGE), "{text}");
    }

    #[test]
    fn version_flag_prints_the_version_text() {
        let version: &'static str = Box::leak(version_text(None).into_boxed_str());
        let error = Cli::command()
            .version(version)
            .try_get_matches_from(["kbridge", "--version"])
            .expect_err("--version ends parsing");
        assert_eq!(error.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(error.to_string(), format!("kbridge {version}\n"));
    }

    /// Renders `command` and parses it back as the command line it is.
    fn round_trip(command: &SelfCommand) -> SelfCommand {
        let argv = std::iter::once(OsString::from("kbridge")).chain(command.args());
        match Cli::try_parse_from(argv)
            .expect("kbridge parses its own rendering")
            .command
        {
            Command::Guard(args) => SelfCommand::Guard(args),
            Command::NsExec(args) => SelfCommand::NsExec(args),
            Command::Connect(args) => SelfCommand::Connect(args),
            other => panic!("parsed as another command: {other:?}"),
        }
    }

    #[test]
    fn every_self_command_parses_back_to_itself() {
        let target = TargetArgs {
            context: Some("kind-dev".into()),
            namespace: Some("todo".into()),
            service: Some("todo-api".into()),
            container: Some("api".into()),
            ports: vec!["8080".into(), "9090:80".into()],
            config: Some("KubernetesLocalProcessConfig.yaml".into()),
            hosts: Some("namespace".into()),
            agent_image: Some("localhost:5000/agent:dev".into()),
            isolate_as: Some("alice".into()),
            ..TargetArgs::default()
        };
        let commands = [
            SelfCommand::Guard(GuardArgs {
                session: "1764000000-042-1234".into(),
            }),
            SelfCommand::NsExec(NsExecArgs {
                hosts: "/tmp/kbridge/sessions/x/hosts".into(),
                command: vec!["python3".into(), "-m".into(), "debugpy".into(), "--".into()],
            }),
            SelfCommand::Connect(ConnectArgs {
                target: TargetArgs::default(),
                env_file: None,
                background: true,
                settings_json: Some(r#"{"service":"todo-api","hosts":"off"}"#.into()),
            }),
            SelfCommand::Connect(ConnectArgs {
                target,
                env_file: Some("/tmp/session.env".into()),
                background: false,
                settings_json: None,
            }),
            SelfCommand::Connect(ConnectArgs {
                target: TargetArgs {
                    workload: Some("deployment/todo-api".into()),
                    isolate_as: Some(String::new()),
                    ..TargetArgs::default()
                },
                env_file: None,
                background: false,
                settings_json: None,
            }),
        ];
        for command in commands {
            assert_eq!(round_trip(&command), command, "{:?}", command.args());
        }
    }

    fn dap_bridge(args: &[&str]) -> Result<DapBridgeArgs, clap::Error> {
        let argv = ["kbridge", "dap"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Dap { bridge, .. } => Ok(bridge),
            other => panic!("parsed as another command: {other:?}"),
        }
    }

    #[test]
    fn dap_target_flags_become_bridge_settings() {
        let args = dap_bridge(&[
            "--debugger",
            "debugpy",
            "--service",
            "todo-api",
            "-n",
            "todo",
            "--ports",
            "8080",
            "--ports",
            "9090:80",
            "--isolate-as",
            "--hosts",
            "off",
            "--idle-restore-seconds",
            "90",
        ])
        .expect("valid flags");
        let settings = args.settings().expect("valid values");
        assert_eq!(settings.service.as_deref(), Some("todo-api"));
        assert_eq!(settings.namespace.as_deref(), Some("todo"));
        assert_eq!(
            settings.ports,
            [
                kbridge_config::PortMapping::Local(8080),
                kbridge_config::PortMapping::Mapped {
                    remote: 80,
                    local: 9090
                }
            ]
        );
        assert_eq!(
            settings.isolate_as,
            Some(kbridge_config::IsolateAs::Generate(true))
        );
        assert_eq!(settings.hosts, Some(kbridge_config::HostsMode::Off));
        assert_eq!(settings.idle_restore_seconds, Some(90));
        let none = dap_bridge(&["--debugger", "debugpy"]).expect("no flags");
        assert_eq!(none.settings().expect("empty"), BridgeSettings::default());
    }

    #[test]
    fn dap_target_flags_are_checked_and_named() {
        assert!(
            dap_bridge(&["--service", "a", "--pod", "b"]).is_err(),
            "one target"
        );
        let err = dap_bridge(&["--ports", "8080:http"])
            .expect("clap takes text")
            .settings()
            .expect_err("not a port");
        assert!(err.to_string().contains("`--ports`"), "{err}");
    }

    #[test]
    fn every_bridge_key_is_a_dap_flag() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let dap = cli.find_subcommand("dap").expect("dap");
        let longs: Vec<String> = dap
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        for key in FlatKey::ALL {
            assert!(longs.contains(&key.flag()), "{} has no flag", key.flag());
        }
    }

    #[test]
    fn a_process_is_found_by_its_arguments() {
        let guard = SelfCommand::Guard(GuardArgs {
            session: "s-1".into(),
        });
        let cmdline =
            |raw: &'static [u8]| -> Vec<&'static [u8]> { raw.split(|b| *b == 0).collect() };
        assert!(guard.runs_in(&cmdline(b"/usr/bin/kbridge\0guard\0--session\0s-1\0")));
        assert!(!guard.runs_in(&cmdline(b"/usr/bin/kbridge\0guard\0--session\0s-12\0")));
        assert!(!guard.runs_in(&cmdline(b"/usr/bin/kbridge\0guard\0")));
        assert!(!guard.runs_in(&cmdline(b"vim\0s-1\0guard\0")));
    }

    #[test]
    fn the_guardian_shows_its_session_as_an_argument_of_its_own() {
        // `registry::guarded` and the tests find a guardian by these words.
        let args = SelfCommand::Guard(GuardArgs {
            session: "s-1".into(),
        })
        .args();
        assert_eq!(args, ["guard", "--session", "s-1"]);
    }
}
