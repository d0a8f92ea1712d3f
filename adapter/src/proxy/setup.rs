//! What happens between the client's `launch` and its forwarding: the configuration is
//! checked, the adapter started if it is not running yet (its `initialize` replayed),
//! the bridge session opened, and the request rewritten. It runs as a task so the
//! proxy keeps serving the client meanwhile; dropping it cancels the launch cleanly
//! (the adapter is killed, the guardian undoes the session's changes).

use super::reader::{check, Inbound};
use super::rewrite;
use crate::dap::codec::{Frame, FrameReader};
use crate::dap::FrameWriter;
use crate::debugger::{self, process, AdapterProcess, AdapterSpec};
use crate::env::{dotenv, EnvLayers};
use crate::error_kind::ErrorKind;
use crate::session::{
    open_session, BridgeSession, EventSink, Guardian, SessionError, SessionEvent, SessionId,
};
use bytes::Bytes;
use kbridge_config::{BridgeSettings, DebuggerChoice, EnvVars, LaunchConfig, Preset};
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncRead;

/// How long an adapter may take to answer the replayed `initialize`.
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(30);

/// An adapter started during setup, with what it said so far.
pub struct StartedAdapter {
    /// The process.
    pub process: AdapterProcess,
    /// Its message stream, possibly with buffered input.
    pub reader: FrameReader<Box<dyn AsyncRead + Send + Unpin>>,
    /// Its input.
    pub writer: FrameWriter<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// Its answer to `initialize`.
    pub capabilities: Map<String, Value>,
    /// Messages it sent before that answer (events), to forward after it.
    pub early: Vec<Bytes>,
}

/// A launch ready to forward.
pub struct Prepared {
    /// The adapter the request goes to.
    pub spec: AdapterSpec,
    /// Set when setup had to start the adapter.
    pub adapter: Option<StartedAdapter>,
    /// The open session.
    pub session: Box<dyn BridgeSession>,
    /// Its guardian.
    pub guardian: Guardian,
    /// The debuggee's environment.
    pub env: EnvVars,
    /// The rewritten request.
    pub request: Bytes,
}

/// Everything setup needs, owned so the task can run on its own.
pub struct LaunchInput {
    /// The client's `launch`/`attach` message.
    pub message: Value,
    /// The adapter already running (eager start), if any.
    pub running: Option<AdapterSpec>,
    /// `--debugger`, if given.
    pub flag: Option<Preset>,
    /// The `bridge` keys `kbridge dap`'s target flags give; the configuration's win.
    pub flag_settings: BridgeSettings,
    /// The client's `initialize`, to replay to an adapter started now.
    pub initialize: Option<Bytes>,
    /// The session id.
    pub session_id: SessionId,
    /// Progress sink.
    pub events: EventSink,
}

/// Why a launch could not be set up; the message says what to do, the kind becomes the
/// DAP error's id.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The launch configuration is invalid.
    #[error(transparent)]
    Config(#[from] kbridge_config::ConfigError),
    /// `envFile` cannot be read.
    #[error(transparent)]
    EnvFile(#[from] dotenv::DotenvError),
    /// The configuration does not say which debugger to run, or contradicts `--debugger`.
    #[error("{0}")]
    DebuggerChoice(String),
    /// The debugger cannot be found or started.
    #[error(transparent)]
    Debugger(#[from] debugger::DebuggerError),
    /// The bridge session could not be opened.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The client broke the protocol (`launch` before `initialize`).
    #[error("{0}")]
    Protocol(&'static str),
    /// The rewritten request could not be encoded.
    #[error("cannot encode the rewritten request: {0}")]
    Encode(#[from] serde_json::Error),
}

impl LaunchError {
    /// The class of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LaunchError::Config(_)
            | LaunchError::DebuggerChoice(_)
            | LaunchError::Protocol(_)
            | LaunchError::Encode(_) => ErrorKind::Invalid,
            LaunchError::EnvFile(_) => ErrorKind::LocalIo,
            LaunchError::Debugger(_) => ErrorKind::Debugger,
            LaunchError::Session(error) => error.kind(),
        }
    }
}

/// Runs setup.
pub async fn prepare(input: LaunchInput) -> Result<Prepared, LaunchError> {
    let LaunchInput {
        mut message,
        running,
        flag,
        flag_settings,
        initialize,
        session_id,
        events,
    } = input;
    let arguments = message
        .get("arguments")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    let config = LaunchConfig::from_arguments(&arguments)?;
    let already_running = running.is_some();
    let spec = choose_adapter(&config, running, flag)?;

    let mut layers = EnvLayers::default();
    if let Some(path) = &config.env_file {
        let cwd = arguments.get("cwd").and_then(Value::as_str).map(Path::new);
        layers.env_file = dotenv::read(path, cwd)?;
    }
    layers.user = config.env.clone().unwrap_or_default();

    // Precedence: the `bridge` table, then flat `bridge.*` keys (merged by
    // `from_arguments`), then the flags.
    let settings = config.bridge.clone().unwrap_or_default().or(flag_settings);
    let target = settings.target()?;
    let (session, guardian) = open_session(session_id, settings, target, events.clone()).await?;

    // A session with private hosts entries needs the adapter inside its namespace: an
    // adapter started at `initialize` is replaced by one started there.
    let hosts = session.hosts_file();
    let adapter = if already_running && hosts.is_none() {
        None
    } else {
        let _ = events.send(SessionEvent::Step(format!("starting {}", spec.name)));
        let started = match initialize {
            Some(initialize) => start_and_initialize(&spec, &initialize, hosts.as_deref())
                .await
                .map_err(LaunchError::from),
            None => Err(LaunchError::Protocol(
                "the client sent `launch` before `initialize`",
            )),
        };
        match started {
            Ok(started) => Some(started),
            Err(error) => {
                let _ = guardian.teardown().await;
                return Err(error);
            }
        }
    };

    let session_layers = session.environment();
    layers.pod = session_layers.pod;
    layers.config_file = session_layers.config_file;
    let env = layers.merged();
    rewrite::request(&mut message, &spec, &env);
    let request = serde_json::to_vec(&message)?;
    tracing::info!(variables = ?env.names().collect::<Vec<_>>(), "debuggee environment prepared");
    Ok(Prepared {
        spec,
        adapter,
        session,
        guardian,
        env,
        request: Bytes::from(request),
    })
}

/// The adapter this launch goes to: the running one, or the configuration's choice.
fn choose_adapter(
    config: &LaunchConfig,
    running: Option<AdapterSpec>,
    flag: Option<Preset>,
) -> Result<AdapterSpec, LaunchError> {
    if let (Some(flag), Some(DebuggerChoice::Preset(asked))) = (flag, &config.debugger) {
        if *asked != flag {
            return Err(LaunchError::DebuggerChoice(format!(
                "this kbridge was started with `--debugger {flag}` but the configuration asks for `\"debugger\": \"{asked}\"`; make them agree or remove one"
            )));
        }
    }
    if let Some(spec) = running {
        return Ok(spec);
    }
    let choice = match (&config.debugger, flag) {
        (Some(choice), _) => choice.clone(),
        (None, Some(flag)) => DebuggerChoice::Preset(flag),
        (None, None) => {
            return Err(LaunchError::DebuggerChoice(format!(
                "the configuration does not say which debugger to run: add \"debugger\": \"debugpy\" (or one of {}) to it",
                Preset::ALL.map(|p| p.name()).join(", ")
            )))
        }
    };
    Ok(debugger::resolve(&choice)?)
}

/// Starts an adapter and replays the client's `initialize` to it.
pub async fn start_and_initialize(
    spec: &AdapterSpec,
    initialize: &[u8],
    hosts: Option<&Path>,
) -> Result<StartedAdapter, debugger::DebuggerError> {
    let (mut process, streams) = process::start(spec, hosts).await?;
    let mut reader = FrameReader::new(streams.reader);
    let mut writer = FrameWriter::new(streams.writer);
    let request_seq = crate::dap::Envelope::peek(initialize)
        .map(|e| e.seq)
        .unwrap_or(1);
    if writer.send(initialize).await.is_err() {
        return Err(process.start_error("it closed its input at once"));
    }
    let mut early = Vec::new();
    let answer = tokio::time::timeout(INITIALIZE_TIMEOUT, async {
        loop {
            match reader.next_frame().await {
                Ok(Some(Frame::Body(body))) => match check(&mut reader, body) {
                    Inbound::Message { body, envelope }
                        if envelope.request_seq == Some(request_seq)
                            && envelope.command.as_deref() == Some("initialize") =>
                    {
                        return Some((body, envelope.success));
                    }
                    Inbound::Message { body, .. } => early.push(body),
                    other => tracing::warn!(?other, "adapter sent something unreadable at start"),
                },
                Ok(Some(Frame::Error(error))) => {
                    tracing::warn!(%error, "adapter framing error at start")
                }
                Ok(None) | Err(_) => return None,
            }
        }
    })
    .await;
    let (body, success) = match answer {
        Ok(Some(answer)) => answer,
        Ok(None) => return Err(process.start_error("it exited before answering `initialize`")),
        Err(_) => return Err(process.start_error("it did not answer `initialize`")),
    };
    let response: Value = serde_json::from_slice(&body).unwrap_or_default();
    if success != Some(true) {
        let message = response
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Err(process.start_error(&format!("it refused `initialize`: {message}")));
    }
    let capabilities = match response.get("body") {
        Some(Value::Object(body)) => body.clone(),
        _ => Map::new(),
    };
    Ok(StartedAdapter {
        process,
        reader,
        writer,
        capabilities,
        early,
    })
}
