//! One proxied debug session: the loop that routes messages between the editor and the
//! real adapter, intercepts the few that need kbridge (`initialize`, `launch`/`attach`,
//! `restart`, `disconnect`, reverse requests), and owns every task and process of the
//! session, so ending the loop ends all of them.

use super::client::ClientSink;
use super::reader::{self, Inbound};
use super::rewrite;
use super::setup::{self, LaunchInput, Prepared, StartedAdapter};
use crate::dap::{outgoing, splice, Envelope, FrameReader, FrameWriter, MessageKind};
use crate::debugger::capabilities;
use crate::debugger::process::ProgramOutput;
use crate::debugger::{self, AdapterProcess, AdapterSpec};
use crate::session::{BridgeSession, Guardian, SessionEvent, SessionId};
use bytes::Bytes;
use kbridge_config::{DebuggerChoice, EnvVars, Preset};
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
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was torn down.
    Clean,
    /// Teardown reported failures (already logged and shown to the user).
    TeardownFailed(Vec<String>),
}

/// The running adapter.
struct Adapter {
    spec: AdapterSpec,
    process: AdapterProcess,
    writer: FrameWriter<Box<dyn AsyncWrite + Send + Unpin>>,
    _reader: JoinHandle<()>,
}

/// The open bridge session and what it gave the debuggee.
struct ActiveSession {
    session: Box<dyn BridgeSession>,
    guardian: Guardian,
    env: EnvVars,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before `launch`/`attach`.
    Configuring,
    /// Setup task running; client messages are held.
    SettingUp,
    /// The adapter has the launch request.
    Running,
    /// The adapter exited; only `disconnect` is left to answer.
    AdapterGone,
}

enum Flow {
    Continue,
    Stop,
}

struct PendingLaunch {
    task: JoinHandle<Result<Prepared, String>>,
    request_seq: i64,
    command: String,
}

/// The proxy state for one editor connection.
pub struct Engine {
    options: ProxyOptions,
    session_id: SessionId,
    client: ClientSink,
    client_rx: mpsc::Receiver<Inbound>,
    _client_reader: JoinHandle<()>,
    adapter: Option<Adapter>,
    adapter_rx: Option<mpsc::Receiver<Inbound>>,
    program_output: Option<mpsc::UnboundedReceiver<ProgramOutput>>,
    phase: Phase,
    initialize: Option<Bytes>,
    client_supports_progress: bool,
    told_capabilities: Option<Map<String, Value>>,
    held: VecDeque<(Bytes, Envelope)>,
    launch: Option<PendingLaunch>,
    active: Option<ActiveSession>,
    events_tx: mpsc::UnboundedSender<SessionEvent>,
    events_rx: mpsc::UnboundedReceiver<SessionEvent>,
    progress_id: Option<String>,
    terminated_sent: bool,
    disconnect: Option<(i64, Instant)>,
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
            adapter: None,
            adapter_rx: None,
            program_output: None,
            phase: Phase::Configuring,
            initialize: None,
            client_supports_progress: false,
            told_capabilities: None,
            held: VecDeque::new(),
            launch: None,
            active: None,
            events_tx,
            events_rx,
            progress_id: None,
            terminated_sent: false,
            disconnect: None,
            shutdown,
        }
    }

    /// Runs the session to its end and tears it down.
    pub async fn run(mut self) -> Outcome {
        tracing::info!(session = %self.session_id, "proxy session started");
        loop {
            let disconnect_deadline = self.disconnect.map(|(_, deadline)| deadline);
            let flow = tokio::select! {
                _ = self.shutdown.changed() => self.on_shutdown().await,
                inbound = self.client_rx.recv() => match inbound {
                    Some(inbound) => self.on_client(inbound).await,
                    None => Ok(Flow::Stop),
                },
                inbound = recv_or_pending(self.adapter_rx.as_mut()) => {
                    self.on_adapter(inbound.unwrap_or(Inbound::Closed(None))).await
                }
                output = recv_unbounded_or_pending(self.program_output.as_mut()) => match output {
                    Some(line) => self.send(&outgoing::output(line.category, &line.text)).await,
                    None => {
                        self.program_output = None;
                        Ok(Flow::Continue)
                    }
                },
                Some(event) = self.events_rx.recv() => self.on_session_event(event).await,
                result = async { (&mut self.launch.as_mut().expect("guarded by if").task).await }, if self.launch.is_some() => {
                    self.on_setup_done(result).await
                }
                _ = tokio::time::sleep_until(disconnect_deadline.unwrap_or_else(Instant::now)), if disconnect_deadline.is_some() => {
                    self.on_disconnect_timeout().await
                }
            };
            // Flush once no input is waiting: a burst goes out in few writes, a lone
            // message at once.
            let idle = self.client_rx.is_empty()
                && self.adapter_rx.as_ref().is_none_or(|rx| rx.is_empty());
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
        if let Some(adapter) = self.adapter.as_mut() {
            if let Err(error) = adapter.writer.flush().await {
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
    ) -> std::io::Result<Flow> {
        self.send(&outgoing::error_response(request_seq, command, message))
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
        match (self.phase, self.adapter.as_mut()) {
            (Phase::AdapterGone, _) => {
                if envelope.kind == MessageKind::Request {
                    let command = envelope.command.unwrap_or_default();
                    self.respond_error(
                        envelope.seq,
                        &command,
                        "the debug adapter is no longer running",
                    )
                    .await?;
                }
                Ok(Flow::Continue)
            }
            (Phase::Running | Phase::Configuring, Some(adapter)) => {
                if let Err(error) = adapter.writer.enqueue(&body).await {
                    tracing::warn!(%error, "cannot write to the adapter");
                }
                Ok(Flow::Continue)
            }
            _ => {
                self.held.push_back((body, envelope));
                Ok(Flow::Continue)
            }
        }
    }

    async fn on_initialize(&mut self, body: Bytes, envelope: Envelope) -> std::io::Result<Flow> {
        let message: Value = serde_json::from_slice(&body).unwrap_or_default();
        self.client_supports_progress =
            message["arguments"]["supportsProgressReporting"] == json!(true);
        self.initialize = Some(body.clone());
        if self.adapter.is_none() {
            if let Some(preset) = self.options.debugger {
                // Eager start: the adapter answers `initialize` itself.
                match debugger::resolve(&DebuggerChoice::Preset(preset)) {
                    Ok(spec) => match debugger::process::start(&spec, None).await {
                        Ok((process, streams)) => {
                            self.install_adapter(
                                spec,
                                process,
                                FrameReader::new(streams.reader),
                                FrameWriter::new(streams.writer),
                            );
                        }
                        Err(error) => {
                            return self.fail_initialize(&envelope, &error.to_string()).await
                        }
                    },
                    Err(error) => return self.fail_initialize(&envelope, &error.to_string()).await,
                }
            }
        }
        if self.adapter.is_some() {
            return self.forward_to_adapter(body, envelope).await;
        }
        // Lazy start: answer now, learn the real capabilities at `launch`.
        let told = capabilities::baseline();
        self.told_capabilities = Some(told.clone());
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
        self.respond_error(envelope.seq, "initialize", error).await
    }

    fn install_adapter(
        &mut self,
        spec: AdapterSpec,
        mut process: AdapterProcess,
        reader: FrameReader<Box<dyn AsyncRead + Send + Unpin>>,
        writer: FrameWriter<Box<dyn AsyncWrite + Send + Unpin>>,
    ) {
        let (tx, rx) = mpsc::channel(256);
        let reader_task = reader::spawn(reader, tx);
        self.program_output = process.program_output.take();
        self.adapter_rx = Some(rx);
        tracing::info!(adapter = %spec.name, pid = ?process.pid(), "adapter connected");
        self.adapter = Some(Adapter {
            spec,
            process,
            writer,
            _reader: reader_task,
        });
    }

    async fn on_launch(&mut self, body: Bytes, envelope: Envelope) -> std::io::Result<Flow> {
        let command = envelope.command.clone().unwrap_or_default();
        if self.phase != Phase::Configuring {
            return self
                .respond_error(
                    envelope.seq,
                    &command,
                    "this debug session has already been launched",
                )
                .await;
        }
        let message: Value = match serde_json::from_slice(&body) {
            Ok(message) => message,
            Err(error) => {
                return self
                    .respond_error(envelope.seq, &command, &error.to_string())
                    .await
            }
        };
        if self.client_supports_progress {
            let id = format!("kbridge-{}", self.session_id);
            self.send(&outgoing::progress_start(&id, "kbridge", "connecting…"))
                .await?;
            self.progress_id = Some(id);
        }
        let input = LaunchInput {
            message,
            running: self.adapter.as_ref().map(|a| a.spec.clone()),
            flag: self.options.debugger,
            initialize: self.initialize.clone(),
            session_id: self.session_id.clone(),
            events: self.events_tx.clone(),
        };
        self.launch = Some(PendingLaunch {
            task: tokio::spawn(setup::prepare(input)),
            request_seq: envelope.seq,
            command,
        });
        self.phase = Phase::SettingUp;
        Ok(Flow::Continue)
    }

    async fn on_session_event(&mut self, event: SessionEvent) -> std::io::Result<Flow> {
        match event {
            SessionEvent::Step(step) => {
                tracing::info!(%step, "setup step");
                if let Some(id) = self.progress_id.clone() {
                    self.send(&outgoing::progress_update(&id, &step, None))
                        .await?;
                }
                self.console("console", &step).await
            }
            SessionEvent::Notice(notice) => self.console("console", &notice).await,
        }
    }

    async fn end_progress(&mut self, message: &str) -> std::io::Result<()> {
        if let Some(id) = self.progress_id.take() {
            self.send(&outgoing::progress_end(&id, message)).await?;
        }
        Ok(())
    }

    async fn on_setup_done(
        &mut self,
        result: Result<Result<Prepared, String>, tokio::task::JoinError>,
    ) -> std::io::Result<Flow> {
        let Some(launch) = self.launch.take() else {
            return Ok(Flow::Continue);
        };
        let prepared = match result {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(message)) => return self.fail_launch(&launch, &message).await,
            Err(error) => {
                return self
                    .fail_launch(&launch, &format!("internal error during launch: {error}"))
                    .await
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
        if let Some(StartedAdapter {
            process,
            reader,
            writer,
            capabilities: actual,
            early,
        }) = adapter
        {
            let told = self.told_capabilities.clone().unwrap_or_default();
            let changed = capabilities::changed(&told, &actual);
            self.install_adapter(spec.clone(), process, reader, writer);
            if !changed.is_empty() {
                self.send(&outgoing::capabilities(changed)).await?;
            }
            for body in early {
                self.client.forward(&body).await?;
            }
        }
        tracing::info!(session = %session.id(), adapter = %spec.name, "launch ready");
        self.active = Some(ActiveSession {
            session,
            guardian,
            env,
        });
        self.end_progress("connected").await?;
        self.phase = Phase::Running;
        if let Some(adapter) = self.adapter.as_mut() {
            if let Err(error) = adapter.writer.send(&request).await {
                tracing::warn!(%error, "cannot write the launch request to the adapter");
            }
        }
        while let Some((body, envelope)) = self.held.pop_front() {
            self.forward_to_adapter(body, envelope).await?;
        }
        Ok(Flow::Continue)
    }

    async fn fail_launch(
        &mut self,
        launch: &PendingLaunch,
        message: &str,
    ) -> std::io::Result<Flow> {
        tracing::error!(error = %message, "launch failed");
        self.end_progress("failed").await?;
        self.console("important", &format!("launch failed: {message}"))
            .await?;
        self.respond_error(launch.request_seq, &launch.command, message)
            .await?;
        self.phase = Phase::Configuring;
        // Held requests can no longer be served.
        while let Some((_, envelope)) = self.held.pop_front() {
            if envelope.kind == MessageKind::Request {
                let command = envelope.command.unwrap_or_default();
                self.respond_error(envelope.seq, &command, "the launch failed")
                    .await?;
            }
        }
        Ok(Flow::Continue)
    }

    fn rewrite_restart(&self, body: &Bytes) -> Option<Bytes> {
        let active = self.active.as_ref()?;
        let spec = &self.adapter.as_ref()?.spec;
        let mut message: Value = serde_json::from_slice(body).ok()?;
        rewrite::request(&mut message, spec, &active.env);
        serde_json::to_vec(&message).ok().map(Bytes::from)
    }

    async fn on_disconnect(&mut self, body: Bytes, envelope: Envelope) -> std::io::Result<Flow> {
        if let Some(launch) = self.launch.take() {
            // Cancelling setup drops its adapter (killed) and its guardian handle (the
            // guardian sees its input close and undoes what was done).
            launch.task.abort();
            self.end_progress("cancelled").await?;
            self.respond_error(
                launch.request_seq,
                &launch.command,
                "cancelled: the editor disconnected",
            )
            .await?;
        }
        match self.adapter.as_mut() {
            Some(adapter) if self.phase != Phase::AdapterGone => {
                if adapter.writer.send(&body).await.is_ok() {
                    self.disconnect = Some((envelope.seq, Instant::now() + DISCONNECT_TIMEOUT));
                    return Ok(Flow::Continue);
                }
                self.send(&outgoing::response(envelope.seq, "disconnect", json!({})))
                    .await?;
                Ok(Flow::Stop)
            }
            _ => {
                self.send(&outgoing::response(envelope.seq, "disconnect", json!({})))
                    .await?;
                Ok(Flow::Stop)
            }
        }
    }

    async fn on_disconnect_timeout(&mut self) -> std::io::Result<Flow> {
        if let Some((seq, _)) = self.disconnect.take() {
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
                        self.told_capabilities = Some(told.clone());
                    }
                }
                let answers_disconnect =
                    matches!(self.disconnect, Some((seq, _)) if envelope.request_seq == Some(seq));
                self.client.forward(&body).await?;
                if answers_disconnect {
                    self.disconnect = None;
                    return Ok(Flow::Stop);
                }
                Ok(Flow::Continue)
            }
            MessageKind::Request => {
                let client_seq = self.client.seq.next_to_client();
                self.client.seq.open_reverse(client_seq, envelope.seq);
                let env = self.active.as_ref().map(|a| &a.env);
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
        self.adapter_rx = None;
        let Some(mut adapter) = self.adapter.take() else {
            return Ok(Flow::Continue);
        };
        if let Some((seq, _)) = self.disconnect.take() {
            self.send(&outgoing::response(seq, "disconnect", json!({})))
                .await?;
            self.adapter = Some(adapter);
            return Ok(Flow::Stop);
        }
        let status = adapter.process.finish(ADAPTER_EXIT_GRACE).await;
        let tail = adapter.process.stderr_tail();
        tracing::error!(?status, ?error, %tail, "the adapter exited unexpectedly");
        let mut text = format!(
            "the debug adapter ({}) exited unexpectedly{}",
            adapter.spec.name,
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
        self.phase = Phase::AdapterGone;
        // Undo the session now: the user may leave the editor's session open for long.
        if let Some(active) = self.active.take() {
            let outcome = teardown(active).await;
            if let Outcome::TeardownFailed(failures) = outcome {
                self.console(
                    "important",
                    &format!("teardown incomplete: {}", failures.join("; ")),
                )
                .await?;
            }
        }
        Ok(Flow::Continue)
    }

    // ----- the end -----------------------------------------------------------------

    /// Closes the adapter's input (debugpy does not exit otherwise), tears the session
    /// down through the guardian and waits for the adapter to exit.
    async fn finish(mut self) -> Outcome {
        if let Some(launch) = self.launch.take() {
            launch.task.abort();
        }
        let adapter_done = async {
            if let Some(mut adapter) = self.adapter.take() {
                if let Err(error) = adapter.writer.close().await {
                    tracing::debug!(%error, "adapter input already closed");
                }
                let status = adapter.process.finish(ADAPTER_EXIT_GRACE).await;
                tracing::info!(?status, "adapter exited");
            }
        };
        let session_done = async {
            match self.active.take() {
                Some(active) => teardown(active).await,
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
