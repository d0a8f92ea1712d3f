//! One proxied debug session: the loop that routes messages between the editor and the
//! real adapter, intercepts the few that need kbridge (`initialize`, `launch`/`attach`,
//! `restart`, `disconnect`, reverse requests), and owns every task and process of the
//! session, so ending the loop ends all of them.

use super::client::ClientSink;
use super::reader::{self, Inbound};
use super::rewrite;
use super::setup::{self, LaunchError, LaunchInput, Prepared, StartedAdapter};
use crate::dap::{outgoing, splice, Envelope, FrameReader, FrameWriter, MessageKind};
use crate::debugger::capabilities;
use crate::debugger::process::ProgramOutput;
use crate::debugger::{self, AdapterProcess, AdapterSpec};
use crate::error_kind::ErrorKind;
use crate::session::{BridgeSession, Guardian, SessionEvent, SessionId};
use bytes::Bytes;
use kbridge_config::{BridgeSettings, DebuggerChoice, EnvVars, Preset};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long the adapter may take to answer `disconnect` before the proxy answers it.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the adapter may take to exit once its input is closed.
const ADAPTER_EXIT_GRACE: Duration = Duration::from_secs(3);

/// Settings shared by every session of a `kbridge dap` process.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// `--debugger`: start this adapter at `initialize`.
    pub debugger: Option<Preset>,
    /// The target flags (`--service`, `--namespace`, …): `bridge` keys every launch's
    /// configuration may override.
    pub bridge: BridgeSettings,
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was torn down.
    Clean,
    /// Teardown reported failures (already logged and shown to the user).
    TeardownFailed(Vec<String>),
}

/// The running debug adapter: its process, its input, the messages it sends and the
/// debuggee output it relays.
struct Debugger {
    spec: AdapterSpec,
    process: AdapterProcess,
    writer: FrameWriter<Box<dyn AsyncWrite + Send + Unpin>>,
    messages: mpsc::Receiver<Inbound>,
    program_output: Option<mpsc::UnboundedReceiver<ProgramOutput>>,
    /// A `disconnect` it has and has not answered yet: the request's `seq`, and when the
    /// proxy answers it instead.
    disconnect: Option<(i64, Instant)>,
    _reader: JoinHandle<()>,
}

impl Debugger {
    /// Starts reading the adapter's messages.
    fn connect(
        spec: AdapterSpec,
        mut process: AdapterProcess,
        reader: FrameReader<Box<dyn AsyncRead + Send + Unpin>>,
        writer: FrameWriter<Box<dyn AsyncWrite + Send + Unpin>>,
    ) -> Debugger {
        let (tx, messages) = mpsc::channel(256);
        let reader_task = reader::spawn(reader, tx);
        let program_output = process.program_output.take();
        tracing::info!(adapter = %spec.name, pid = ?process.pid(), "adapter connected");
        Debugger {
            spec,
            process,
            writer,
            messages,
            program_output,
            disconnect: None,
            _reader: reader_task,
        }
    }

    /// The `--debugger` adapter, started at `initialize`; the error is for the user.
    async fn start(preset: Preset) -> Result<Debugger, String> {
        let spec = debugger::resolve(&DebuggerChoice::Preset(preset)).map_err(|e| e.to_string())?;
        let (process, streams) = debugger::process::start(&spec, None)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Debugger::connect(
            spec,
            process,
            FrameReader::new(streams.reader),
            FrameWriter::new(streams.writer),
        ))
    }

    async fn enqueue(&mut self, body: &[u8]) {
        if let Err(error) = self.writer.enqueue(body).await {
            tracing::warn!(%error, "cannot write to the adapter");
        }
    }
}

/// The open bridge session and what it gave the debuggee.
struct ActiveSession {
    session: Box<dyn BridgeSession>,
    guardian: Guardian,
    env: EnvVars,
}

/// Client messages waiting for the adapter to have the launch request.
type Held = VecDeque<(Bytes, Envelope)>;

/// The client's `initialize` request, which a launch replays to an adapter it starts,
/// and the adapter started for it with `--debugger`.
struct Initialization {
    request: Bytes,
    debugger: Option<Debugger>,
}

/// A launch whose setup task runs; the client's messages are held meanwhile.
struct PendingLaunch {
    task: JoinHandle<Result<Prepared, LaunchError>>,
    request_seq: i64,
    command: String,
    held: Held,
    /// The editor's progress indicator for the setup, when it shows them.
    progress_id: Option<String>,
}

/// Where one editor connection is, with what is valid there.
#[expect(
    clippy::large_enum_variant,
    reason = "one per editor connection, held in place"
)]
enum State {
    /// Before `initialize`: no adapter runs yet.
    AwaitingInitialize { held: Held },
    /// Before `launch`/`attach`.
    Initialized { init: Initialization, held: Held },
    /// Setting the session up.
    Launching {
        launch: PendingLaunch,
        /// What the launch started from, and returns to if it fails or is cancelled.
        init: Option<Initialization>,
    },
    /// The adapter has the launch request.
    Running {
        debugger: Debugger,
        session: ActiveSession,
    },
    /// The adapter exited; only `disconnect` is left to answer (and the debuggee's last
    /// output to relay).
    Ended {
        program_output: Option<mpsc::UnboundedReceiver<ProgramOutput>>,
    },
}

/// What the main loop waits on in a state, besides the client and the session's events.
struct Sources<'a> {
    messages: Option<&'a mut mpsc::Receiver<Inbound>>,
    program_output: Option<&'a mut mpsc::UnboundedReceiver<ProgramOutput>>,
    setup: Option<&'a mut JoinHandle<Result<Prepared, LaunchError>>>,
}

impl State {
    /// Before a launch, or back there after one failed or was cancelled.
    fn configuring(init: Option<Initialization>, held: Held) -> State {
        match init {
            Some(init) => State::Initialized { init, held },
            None => State::AwaitingInitialize { held },
        }
    }

    fn debugger(&self) -> Option<&Debugger> {
        match self {
            State::Initialized { init, .. } => init.debugger.as_ref(),
            State::Launching { init, .. } => init.as_ref().and_then(|i| i.debugger.as_ref()),
            State::Running { debugger, .. } => Some(debugger),
            State::AwaitingInitialize { .. } | State::Ended { .. } => None,
        }
    }

    fn debugger_mut(&mut self) -> Option<&mut Debugger> {
        match self {
            State::Initialized { init, .. } => init.debugger.as_mut(),
            State::Launching { init, .. } => init.as_mut().and_then(|i| i.debugger.as_mut()),
            State::Running { debugger, .. } => Some(debugger),
            State::AwaitingInitialize { .. } | State::Ended { .. } => None,
        }
    }

    fn sources(&mut self) -> Sources<'_> {
        let (debugger, setup, ended_output) = match self {
            State::AwaitingInitialize { .. } => (None, None, None),
            State::Initialized { init, .. } => (init.debugger.as_mut(), None, None),
            State::Launching { launch, init } => (
                init.as_mut().and_then(|i| i.debugger.as_mut()),
                Some(&mut launch.task),
                None,
            ),
            State::Running { debugger, .. } => (Some(debugger), None, None),
            State::Ended { program_output } => (None, None, program_output.as_mut()),
        };
        match debugger {
            Some(debugger) => Sources {
                messages: Some(&mut debugger.messages),
                program_output: debugger.program_output.as_mut(),
                setup,
            },
            None => Sources {
                messages: None,
                program_output: ended_output,
                setup,
            },
        }
    }

    /// Where the debuggee's output comes from in this state.
    fn program_output_slot(
        &mut self,
    ) -> Option<&mut Option<mpsc::UnboundedReceiver<ProgramOutput>>> {
        match self {
            State::Ended { program_output } => Some(program_output),
            other => other.debugger_mut().map(|d| &mut d.program_output),
        }
    }

    /// Keeps the client's `initialize` for a launch to replay; gives the place of an
    /// adapter started for it. None once launched: the adapter answers it.
    fn remember_initialize(&mut self, request: &Bytes) -> Option<&mut Option<Debugger>> {
        if let State::AwaitingInitialize { held } = self {
            let held = std::mem::take(held);
            *self = State::Initialized {
                init: Initialization {
                    request: request.clone(),
                    debugger: None,
                },
                held,
            };
        }
        let init = match self {
            State::Initialized { init, .. } => init,
            State::Launching { init, .. } => init.get_or_insert_with(|| Initialization {
                request: request.clone(),
                debugger: None,
            }),
            State::AwaitingInitialize { .. } | State::Running { .. } | State::Ended { .. } => {
                return None
            }
        };
        init.request = request.clone();
        Some(&mut init.debugger)
    }

    /// Leaves the state before a launch for the launch to carry.
    fn take_configuring(&mut self) -> Option<(Option<Initialization>, Held)> {
        match std::mem::replace(
            self,
            State::Ended {
                program_output: None,
            },
        ) {
            State::AwaitingInitialize { held } => Some((None, held)),
            State::Initialized { init, held } => Some((Some(init), held)),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Ends the pending launch: back to before it, with the adapter started at
    /// `initialize` if it runs.
    fn take_launch(&mut self) -> Option<PendingLaunch> {
        match std::mem::replace(
            self,
            State::Ended {
                program_output: None,
            },
        ) {
            State::Launching { launch, init } => {
                *self = State::configuring(init, Held::new());
                Some(launch)
            }
            other => {
                *self = other;
                None
            }
        }
    }

    fn progress_id(&self) -> Option<&str> {
        match self {
            State::Launching { launch, .. } => launch.progress_id.as_deref(),
            _ => None,
        }
    }
}

enum Flow {
    Continue,
    Stop,
}

/// The proxy state for one editor connection.
pub struct Engine {
    options: ProxyOptions,
    session_id: SessionId,
    client: ClientSink,
    client_rx: mpsc::Receiver<Inbound>,
    _client_reader: JoinHandle<()>,
    state: State,
    /// The capabilities the client was told; a replacement adapter reports changes to them.
    told_capabilities: Map<String, Value>,
    terminated_sent: bool,
    events_tx: mpsc::UnboundedSender<SessionEvent>,
    events_rx: mpsc::UnboundedReceiver<SessionEvent>,
    shutdown: watch::Receiver<bool>,
}

async fn recv_or_pending<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_unbounded_or_pending<T>(rx: Option<&mut mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn join_or_pending<T>(task: Option<&mut JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Whether the client's `initialize` says it shows progress.
fn supports_progress(initialize: Option<&Bytes>) -> bool {
    initialize.is_some_and(|body| {
        let message: Value = serde_json::from_slice(body).unwrap_or_default();
        message["arguments"]["supportsProgressReporting"] == json!(true)
    })
}

const ALREADY_LAUNCHED: &str = "this debug session has already been launched";

impl Engine {
    /// A session over the editor's streams. `shutdown` turning true (SIGTERM, SIGINT)
    /// ends it with teardown.
    pub fn new(
        options: ProxyOptions,
        client_in: Box<dyn AsyncRead + Send + Unpin>,
        client_out: Box<dyn AsyncWrite + Send + Unpin>,
        shutdown: watch::Receiver<bool>,
    ) -> Engine {
        let (client_tx, client_rx) = mpsc::channel(256);
        let client_reader = reader::spawn(FrameReader::new(client_in), client_tx);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Engine {
            options,
            session_id: SessionId::generate(),
            client: ClientSink::new(client_out),
            client_rx,
            _client_reader: client_reader,
            state: State::AwaitingInitialize { held: Held::new() },
            told_capabilities: Map::new(),
            terminated_sent: false,
            events_tx,
            events_rx,
            shutdown,
        }
    }

    /// Runs the session to its end and tears it down.
    pub async fn run(mut self) -> Outcome {
        tracing::info!(session = %self.session_id, "proxy session started");
        loop {
            let disconnect_deadline = self
                .state
                .debugger()
                .and_then(|d| d.disconnect)
                .map(|(_, deadline)| deadline);
            let sources = self.state.sources();
            let flow = tokio::select! {
                _ = self.shutdown.changed() => self.on_shutdown().await,
                inbound = self.client_rx.recv() => match inbound {
                    Some(inbound) => self.on_client(inbound).await,
                    None => Ok(Flow::Stop),
                },
                inbound = recv_or_pending(sources.messages) => {
                    self.on_adapter(inbound.unwrap_or(Inbound::Closed(None))).await
                }
                output = recv_unbounded_or_pending(sources.program_output) => match output {
                    Some(line) => self.send(&outgoing::output(line.category, &line.text)).await,
                    None => {
                        if let Some(slot) = self.state.program_output_slot() {
                            *slot = None;
                        }
                        Ok(Flow::Continue)
                    }
                },
                Some(event) = self.events_rx.recv() => self.on_session_event(event).await,
                result = join_or_pending(sources.setup) => self.on_setup_done(result).await,
                _ = tokio::time::sleep_until(disconnect_deadline.unwrap_or_else(Instant::now)), if disconnect_deadline.is_some() => {
                    self.on_disconnect_timeout().await
                }
            };
            // Flush once no input is waiting: a burst goes out in few writes, a lone
            // message at once.
            let idle = self.client_rx.is_empty()
                && self.state.debugger().is_none_or(|d| d.messages.is_empty());
            let flow = match flow {
                Ok(Flow::Continue) if idle => self.flush().await.map(|()| Flow::Continue),
                other => other,
            };
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => {
                    let _ = self.flush().await;
                    break;
                }
                Err(error) => {
                    tracing::info!(%error, "the editor's connection is gone");
                    break;
                }
            }
        }
        self.finish().await
    }

    /// Sends everything buffered for the client and the adapter.
    async fn flush(&mut self) -> std::io::Result<()> {
        if let Some(debugger) = self.state.debugger_mut() {
            if let Err(error) = debugger.writer.flush().await {
                tracing::warn!(%error, "cannot write to the adapter");
            }
        }
        self.client.flush().await
    }

    /// Sends a proxy-built message to the client.
    async fn send(&mut self, message: &Value) -> std::io::Result<Flow> {
        self.client.send(message).await?;
        Ok(Flow::Continue)
    }

    async fn respond_error(
        &mut self,
        request_seq: i64,
        command: &str,
        message: &str,
        kind: ErrorKind,
    ) -> std::io::Result<Flow> {
        self.send(&outgoing::error_response(
            request_seq,
            command,
            message,
            kind,
        ))
        .await
    }

    async fn console(&mut self, category: &str, text: &str) -> std::io::Result<Flow> {
        self.send(&outgoing::output(category, &format!("kbridge: {text}")))
            .await
    }

    // ----- from the client -------------------------------------------------------

    async fn on_client(&mut self, inbound: Inbound) -> std::io::Result<Flow> {
        let (body, envelope) = match inbound {
            Inbound::Message { body, envelope } => (body, envelope),
            Inbound::Malformed { error, salvaged } => {
                tracing::warn!(%error, "malformed message from the client");
                self.console(
                    "important",
                    &format!("ignored a malformed message from the editor: {error}"),
                )
                .await?;
                if let Some((seq, command)) = salvaged {
                    self.respond_error(
                        seq,
                        &command,
                        &format!("kbridge could not read this request: {error}"),
                        ErrorKind::Invalid,
                    )
                    .await?;
                }
                return Ok(Flow::Continue);
            }
            Inbound::Closed(error) => {
                tracing::info!(?error, "client closed its connection");
                return Ok(Flow::Stop);
            }
        };
        match (envelope.kind, envelope.command.as_deref()) {
            (MessageKind::Request, Some("initialize")) => self.on_initialize(body, envelope).await,
            (MessageKind::Request, Some("launch" | "attach")) => {
                self.on_launch(body, envelope).await
            }
            (MessageKind::Request, Some("disconnect")) => self.on_disconnect(body, envelope).await,
            (MessageKind::Request, Some("restart")) => {
                let body = self.rewrite_restart(&body).unwrap_or(body);
                self.forward_to_adapter(body, envelope).await
            }
            (MessageKind::Response, _) => {
                let request_seq = envelope.request_seq.unwrap_or_default();
                match self.client.seq.close_reverse(request_seq) {
                    Some(adapter_seq) => {
                        let body =
                            splice::set_number(&body, "request_seq", adapter_seq).unwrap_or(body);
                        self.forward_to_adapter(body, envelope).await
                    }
                    None => {
                        tracing::warn!(
                            request_seq,
                            "client answered a request nobody asked; dropped"
                        );
                        Ok(Flow::Continue)
                    }
                }
            }
            _ => self.forward_to_adapter(body, envelope).await,
        }
    }

    /// Forwards to the adapter, or holds the message until the adapter has the launch.
    async fn forward_to_adapter(
        &mut self,
        body: Bytes,
        envelope: Envelope,
    ) -> std::io::Result<Flow> {
        match &mut self.state {
            State::Ended { .. } => {
                if envelope.kind == MessageKind::Request {
                    let command = envelope.command.unwrap_or_default();
                    self.respond_error(
                        envelope.seq,
                        &command,
                        "the debug adapter is no longer running",
                        ErrorKind::Debugger,
                    )
                    .await?;
                }
            }
            State::Running { debugger, .. }
            | State::Initialized {
                init:
                    Initialization {
                        debugger: Some(debugger),
                        ..
                    },
                ..
            } => debugger.enqueue(&body).await,
            State::AwaitingInitialize { held }
            | State::Initialized { held, .. }
            | State::Launching {
                launch: PendingLaunch { held, .. },
                ..
            } => held.push_back((body, envelope)),
        }
        Ok(Flow::Continue)
    }

    async fn on_initialize(&mut self, body: Bytes, envelope: Envelope) -> std::io::Result<Flow> {
        let Some(slot) = self.state.remember_initialize(&body) else {
            return self.forward_to_adapter(body, envelope).await;
        };
        if slot.is_none() {
            if let Some(preset) = self.options.debugger {
                // Eager start: the adapter answers `initialize` itself.
                match Debugger::start(preset).await {
                    Ok(debugger) => *slot = Some(debugger),
                    Err(error) => return self.fail_initialize(&envelope, &error).await,
                }
            }
        }
        if slot.is_some() {
            return self.forward_to_adapter(body, envelope).await;
        }
        // Lazy start: answer now, learn the real capabilities at `launch`.
        let told = capabilities::baseline();
        self.told_capabilities = told.clone();
        self.send(&outgoing::response(
            envelope.seq,
            "initialize",
            Value::Object(told),
        ))
        .await
    }

    async fn fail_initialize(&mut self, envelope: &Envelope, error: &str) -> std::io::Result<Flow> {
        tracing::error!(%error, "cannot start the debugger");
        self.console("important", error).await?;
        self.respond_error(envelope.seq, "initialize", error, ErrorKind::Debugger)
            .await
    }

    /// One session per connection: a second `launch`/`attach` is refused.
    async fn refuse_second_launch(
        &mut self,
        envelope: &Envelope,
        command: &str,
    ) -> std::io::Result<Flow> {
        self.respond_error(envelope.seq, command, ALREADY_LAUNCHED, ErrorKind::Conflict)
            .await
    }

    async fn on_launch(&mut self, body: Bytes, envelope: Envelope) -> std::io::Result<Flow> {
        let command = envelope.command.clone().unwrap_or_default();
        let initialize = match &self.state {
            State::AwaitingInitialize { .. } => None,
            State::Initialized { init, .. } => Some(init.request.clone()),
            State::Launching { .. } | State::Running { .. } | State::Ended { .. } => {
                return self.refuse_second_launch(&envelope, &command).await
            }
        };
        let message: Value = match serde_json::from_slice(&body) {
            Ok(message) => message,
            Err(error) => {
                return self
                    .respond_error(
                        envelope.seq,
                        &command,
                        &error.to_string(),
                        ErrorKind::Invalid,
                    )
                    .await
            }
        };
        let progress_id = if supports_progress(initialize.as_ref()) {
            let id = format!("kbridge-{}", self.session_id);
            self.send(&outgoing::progress_start(&id, "kbridge", "connecting…"))
                .await?;
            Some(id)
        } else {
            None
        };
        let Some((init, held)) = self.state.take_configuring() else {
            return self.refuse_second_launch(&envelope, &command).await;
        };
        let input = LaunchInput {
            message,
            running: init
                .as_ref()
                .and_then(|i| i.debugger.as_ref())
                .map(|d| d.spec.clone()),
            flag: self.options.debugger,
            flag_settings: self.options.bridge.clone(),
            initialize,
            session_id: self.session_id.clone(),
            events: self.events_tx.clone(),
        };
        self.state = State::Launching {
            launch: PendingLaunch {
                task: tokio::spawn(setup::prepare(input)),
                request_seq: envelope.seq,
                command,
                held,
                progress_id,
            },
            init,
        };
        Ok(Flow::Continue)
    }

    async fn on_session_event(&mut self, event: SessionEvent) -> std::io::Result<Flow> {
        match event {
            SessionEvent::Step(step) => {
                tracing::info!(%step, "setup step");
                if let Some(id) = self.state.progress_id().map(str::to_string) {
                    self.send(&outgoing::progress_update(&id, &step, None))
                        .await?;
                }
                self.console("console", &step).await
            }
            SessionEvent::Notice(notice) => self.console("console", &notice).await,
        }
    }

    async fn end_progress(&mut self, id: Option<&str>, message: &str) -> std::io::Result<()> {
        if let Some(id) = id {
            self.send(&outgoing::progress_end(id, message)).await?;
        }
        Ok(())
    }

    async fn on_setup_done(
        &mut self,
        result: Result<Result<Prepared, LaunchError>, tokio::task::JoinError>,
    ) -> std::io::Result<Flow> {
        let (mut launch, init) = match std::mem::replace(
            &mut self.state,
            State::Ended {
                program_output: None,
            },
        ) {
            State::Launching { launch, init } => (launch, init),
            other => {
                self.state = other;
                return Ok(Flow::Continue);
            }
        };
        let prepared = match result {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(error)) => {
                self.state = State::configuring(init, Held::new());
                return self
                    .fail_launch(&launch, &error.to_string(), error.kind())
                    .await;
            }
            Err(error) => {
                self.state = State::configuring(init, Held::new());
                let message = format!("internal error during launch: {error}");
                return self.fail_launch(&launch, &message, ErrorKind::Api).await;
            }
        };
        let Prepared {
            spec,
            adapter,
            session,
            guardian,
            env,
            request,
        } = prepared;
        let session = ActiveSession {
            session,
            guardian,
            env,
        };
        let started_at_initialize = init.and_then(|init| init.debugger);
        let (debugger, changed, early) = match (adapter, started_at_initialize) {
            // A new adapter (the one started at `initialize`, if any, is stopped).
            (
                Some(StartedAdapter {
                    process,
                    reader,
                    writer,
                    capabilities: actual,
                    early,
                }),
                _,
            ) => {
                let changed = capabilities::changed(&self.told_capabilities, &actual);
                let debugger = Debugger::connect(spec.clone(), process, reader, writer);
                (debugger, changed, early)
            }
            (None, Some(debugger)) => (debugger, Map::new(), Vec::new()),
            (None, None) => {
                // The adapter started at `initialize` exited during setup.
                self.state = State::Ended {
                    program_output: None,
                };
                self.fail_launch(
                    &launch,
                    "the debug adapter is no longer running",
                    ErrorKind::Debugger,
                )
                .await?;
                return self.end_session(session).await;
            }
        };
        self.state = State::Running { debugger, session };
        if !changed.is_empty() {
            self.send(&outgoing::capabilities(changed)).await?;
        }
        for body in early {
            self.client.forward(&body).await?;
        }
        tracing::info!(session = %self.session_id, adapter = %spec.name, "launch ready");
        self.end_progress(launch.progress_id.as_deref(), "connected")
            .await?;
        if let Some(debugger) = self.state.debugger_mut() {
            if let Err(error) = debugger.writer.send(&request).await {
                tracing::warn!(%error, "cannot write the launch request to the adapter");
            }
        }
        while let Some((body, envelope)) = launch.held.pop_front() {
            self.forward_to_adapter(body, envelope).await?;
        }
        Ok(Flow::Continue)
    }

    /// Tells the client the launch failed; the state is already back to before it.
    async fn fail_launch(
        &mut self,
        launch: &PendingLaunch,
        message: &str,
        kind: ErrorKind,
    ) -> std::io::Result<Flow> {
        tracing::error!(error = %message, "launch failed");
        self.end_progress(launch.progress_id.as_deref(), "failed")
            .await?;
        self.console("important", &format!("launch failed: {message}"))
            .await?;
        self.respond_error(launch.request_seq, &launch.command, message, kind)
            .await?;
        // Held requests can no longer be served.
        for (_, envelope) in &launch.held {
            if envelope.kind == MessageKind::Request {
                let command = envelope.command.clone().unwrap_or_default();
                self.respond_error(envelope.seq, &command, "the launch failed", kind)
                    .await?;
            }
        }
        Ok(Flow::Continue)
    }

    fn rewrite_restart(&self, body: &Bytes) -> Option<Bytes> {
        let State::Running { debugger, session } = &self.state else {
            return None;
        };
        let mut message: Value = serde_json::from_slice(body).ok()?;
        rewrite::request(&mut message, &debugger.spec, &session.env);
        serde_json::to_vec(&message).ok().map(Bytes::from)
    }

    async fn on_disconnect(&mut self, body: Bytes, envelope: Envelope) -> std::io::Result<Flow> {
        if let Some(launch) = self.state.take_launch() {
            // Cancelling setup drops its adapter (killed) and its guardian handle (the
            // guardian sees its input close and undoes what was done).
            launch.task.abort();
            self.end_progress(launch.progress_id.as_deref(), "cancelled")
                .await?;
            self.respond_error(
                launch.request_seq,
                &launch.command,
                "cancelled: the editor disconnected",
                ErrorKind::Cancelled,
            )
            .await?;
        }
        if let Some(debugger) = self.state.debugger_mut() {
            if debugger.writer.send(&body).await.is_ok() {
                debugger.disconnect = Some((envelope.seq, Instant::now() + DISCONNECT_TIMEOUT));
                return Ok(Flow::Continue);
            }
        }
        self.send(&outgoing::response(envelope.seq, "disconnect", json!({})))
            .await?;
        Ok(Flow::Stop)
    }

    async fn on_disconnect_timeout(&mut self) -> std::io::Result<Flow> {
        let pending = self
            .state
            .debugger_mut()
            .and_then(|debugger| debugger.disconnect.take());
        if let Some((seq, _)) = pending {
            tracing::warn!("the adapter did not answer `disconnect` in time");
            self.send(&outgoing::response(seq, "disconnect", json!({})))
                .await?;
        }
        Ok(Flow::Stop)
    }

    async fn on_shutdown(&mut self) -> std::io::Result<Flow> {
        tracing::info!("signal received: ending the session");
        if !self.terminated_sent {
            self.terminated_sent = true;
            self.send(&outgoing::terminated()).await?;
        }
        Ok(Flow::Stop)
    }

    // ----- from the adapter ------------------------------------------------------

    async fn on_adapter(&mut self, inbound: Inbound) -> std::io::Result<Flow> {
        let (body, envelope) = match inbound {
            Inbound::Message { body, envelope } => (body, envelope),
            Inbound::Malformed { error, .. } => {
                tracing::warn!(%error, "malformed message from the adapter");
                self.console(
                    "important",
                    &format!("the debug adapter sent a malformed message: {error}"),
                )
                .await?;
                return Ok(Flow::Continue);
            }
            Inbound::Closed(error) => return self.on_adapter_exit(error).await,
        };
        match envelope.kind {
            MessageKind::Response => {
                if envelope.command.as_deref() == Some("initialize")
                    && envelope.success == Some(true)
                {
                    // What the client now believes; a replacement adapter reports changes to it.
                    let response: Value = serde_json::from_slice(&body).unwrap_or_default();
                    if let Some(Value::Object(told)) = response.get("body") {
                        self.told_capabilities = told.clone();
                    }
                }
                let answers_disconnect = matches!(
                    self.state.debugger().and_then(|d| d.disconnect),
                    Some((seq, _)) if envelope.request_seq == Some(seq)
                );
                self.client.forward(&body).await?;
                if answers_disconnect {
                    if let Some(debugger) = self.state.debugger_mut() {
                        debugger.disconnect = None;
                    }
                    return Ok(Flow::Stop);
                }
                Ok(Flow::Continue)
            }
            MessageKind::Request => {
                let client_seq = self.client.seq.next_to_client();
                self.client.seq.open_reverse(client_seq, envelope.seq);
                let env = match &self.state {
                    State::Running { session, .. } => Some(&session.env),
                    _ => None,
                };
                match (envelope.command.as_deref(), env) {
                    (Some("runInTerminal"), Some(env)) => {
                        let mut message: Value = serde_json::from_slice(&body).unwrap_or_default();
                        rewrite::run_in_terminal(&mut message, env);
                        self.client.send_numbered(&message, client_seq).await?;
                    }
                    _ => {
                        let body = splice::set_number(&body, "seq", client_seq).unwrap_or(body);
                        self.client.send_numbered_raw(&body).await?;
                    }
                }
                Ok(Flow::Continue)
            }
            MessageKind::Event => {
                if envelope.is_event("terminated") {
                    self.terminated_sent = true;
                }
                self.client.forward(&body).await?;
                Ok(Flow::Continue)
            }
        }
    }

    async fn on_adapter_exit(&mut self, error: Option<String>) -> std::io::Result<Flow> {
        let Some(debugger) = self.state.debugger_mut() else {
            return Ok(Flow::Continue);
        };
        if let Some((seq, _)) = debugger.disconnect.take() {
            self.send(&outgoing::response(seq, "disconnect", json!({})))
                .await?;
            return Ok(Flow::Stop);
        }
        let status = debugger.process.finish(ADAPTER_EXIT_GRACE).await;
        let tail = debugger.process.stderr_tail();
        tracing::error!(?status, ?error, %tail, "the adapter exited unexpectedly");
        let mut text = format!(
            "the debug adapter ({}) exited unexpectedly{}",
            debugger.spec.name,
            status.map(|s| format!(" ({s})")).unwrap_or_default()
        );
        if !tail.is_empty() {
            text.push_str(&format!(":\n{tail}"));
        }
        self.console("important", &text).await?;
        if !self.terminated_sent {
            self.terminated_sent = true;
            self.send(&outgoing::terminated()).await?;
        }
        match std::mem::replace(
            &mut self.state,
            State::Ended {
                program_output: None,
            },
        ) {
            State::Running { debugger, session } => {
                self.state = State::Ended {
                    program_output: debugger.program_output,
                };
                // Undo the session now: the user may leave the editor's session open for long.
                return self.end_session(session).await;
            }
            State::Initialized { init, .. } => {
                self.state = State::Ended {
                    program_output: init.debugger.and_then(|d| d.program_output),
                };
            }
            // Setup goes on: it starts an adapter of its own when it can.
            State::Launching { launch, mut init } => {
                if let Some(init) = init.as_mut() {
                    init.debugger = None;
                }
                self.state = State::Launching { launch, init };
            }
            other @ (State::AwaitingInitialize { .. } | State::Ended { .. }) => self.state = other,
        }
        Ok(Flow::Continue)
    }

    /// Has the guardian undo the session now, telling the user what could not be undone.
    async fn end_session(&mut self, session: ActiveSession) -> std::io::Result<Flow> {
        if let Outcome::TeardownFailed(failures) = teardown(session).await {
            self.console(
                "important",
                &format!("teardown incomplete: {}", failures.join("; ")),
            )
            .await?;
        }
        Ok(Flow::Continue)
    }

    // ----- the end -----------------------------------------------------------------

    /// Closes the adapter's input (debugpy does not exit otherwise), tears the session
    /// down through the guardian and waits for the adapter to exit.
    async fn finish(mut self) -> Outcome {
        let (debugger, session) = match std::mem::replace(
            &mut self.state,
            State::Ended {
                program_output: None,
            },
        ) {
            State::AwaitingInitialize { .. } | State::Ended { .. } => (None, None),
            State::Initialized { init, .. } => (init.debugger, None),
            State::Launching { launch, init } => {
                launch.task.abort();
                (init.and_then(|init| init.debugger), None)
            }
            State::Running { debugger, session } => (Some(debugger), Some(session)),
        };
        let adapter_done = async {
            if let Some(mut debugger) = debugger {
                if let Err(error) = debugger.writer.close().await {
                    tracing::debug!(%error, "adapter input already closed");
                }
                let status = debugger.process.finish(ADAPTER_EXIT_GRACE).await;
                tracing::info!(?status, "adapter exited");
            }
        };
        let session_done = async {
            match session {
                Some(session) => teardown(session).await,
                None => Outcome::Clean,
            }
        };
        let ((), outcome) = tokio::join!(adapter_done, session_done);
        tracing::info!(session = %self.session_id, ?outcome, "proxy session ended");
        outcome
    }
}

/// Stops the session's tasks and has the guardian undo its changes.
async fn teardown(mut active: ActiveSession) -> Outcome {
    active.session.close().await;
    match active.guardian.teardown().await {
        Ok(failures) if failures.is_empty() => Outcome::Clean,
        Ok(failures) => Outcome::TeardownFailed(failures),
        Err(error) => Outcome::TeardownFailed(vec![error.to_string()]),
    }
}
