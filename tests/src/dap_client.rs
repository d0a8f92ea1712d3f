//! An editor-side DAP client for tests. Its framing is written here on purpose, not
//! borrowed from the proxy, so a codec bug cannot hide behind itself.

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long any single wait may take before the test fails (a guard against hangs,
/// not a performance assertion; a launch on a real cluster may pull images first).
pub const WAIT: Duration = Duration::from_secs(180);

/// A client connected to `kbridge dap`.
pub struct DapClient {
    /// The proxy process, when the client started it.
    pub child: Option<Child>,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    rx: mpsc::UnboundedReceiver<Value>,
    backlog: VecDeque<Value>,
    next_seq: i64,
    /// Every message received, in order, for assertions on sequence numbers.
    pub received: Vec<Value>,
}

/// Reads framed messages from `reader` and sends them on `tx`.
fn spawn_reader(reader: impl AsyncRead + Send + Unpin + 'static, tx: mpsc::UnboundedSender<Value>) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader);
        loop {
            let mut length = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(value) = line.strip_prefix("Content-Length:") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
            let Some(length) = length else { return };
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
            match serde_json::from_slice(&body) {
                Ok(value) => {
                    if tx.send(value).is_err() {
                        return;
                    }
                }
                Err(e) => panic!(
                    "proxy sent invalid JSON: {e}: {}",
                    String::from_utf8_lossy(&body)
                ),
            }
        }
    });
}

impl DapClient {
    /// Starts `kbridge dap [args]` with `envs` and talks to it over stdio.
    pub fn spawn(args: &[&str], envs: &[(&str, &Path)]) -> DapClient {
        let mut command = Command::new(crate::kbridge_bin());
        command
            .arg("dap")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start kbridge dap");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::unbounded_channel();
        spawn_reader(stdout, tx);
        DapClient {
            child: Some(child),
            writer: Box::new(stdin),
            rx,
            backlog: VecDeque::new(),
            next_seq: 1,
            received: Vec::new(),
        }
    }

    /// Connects to a `kbridge dap --port` server.
    pub async fn connect(address: &str) -> DapClient {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect to kbridge");
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        spawn_reader(read, tx);
        DapClient {
            child: None,
            writer: Box::new(write),
            rx,
            backlog: VecDeque::new(),
            next_seq: 1,
            received: Vec::new(),
        }
    }

    /// Writes raw bytes (for malformed-input tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write to proxy");
        self.writer.flush().await.expect("flush to proxy");
    }

    /// Writes one framed JSON message.
    pub async fn send(&mut self, message: &Value) {
        let body = serde_json::to_vec(message).expect("json");
        let mut frame = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        frame.extend(body);
        self.send_raw(&frame).await;
    }

    /// Sends a request without waiting; returns its seq.
    pub async fn send_request(&mut self, command: &str, arguments: Value) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.send(
            &json!({"seq": seq, "type": "request", "command": command, "arguments": arguments}),
        )
        .await;
        seq
    }

    /// Sends a request and waits for its response.
    pub async fn request(&mut self, command: &str, arguments: Value) -> Value {
        let seq = self.send_request(command, arguments).await;
        self.response_to(seq).await
    }

    /// Waits for the response to `seq`.
    pub async fn response_to(&mut self, seq: i64) -> Value {
        self.wait_for(&format!("response to {seq}"), |m| {
            m["type"] == "response" && m["request_seq"] == seq
        })
        .await
    }

    /// Waits for an event.
    pub async fn event(&mut self, name: &str) -> Value {
        self.wait_for(&format!("event {name}"), |m| {
            m["type"] == "event" && m["event"] == name
        })
        .await
    }

    /// Waits for the first message matching `predicate`, keeping the others.
    pub async fn wait_for(&mut self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        if let Some(at) = self.backlog.iter().position(&predicate) {
            return self.backlog.remove(at).expect("position is valid");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for {what}; backlog: {:#?}", self.backlog)
                })
                .unwrap_or_else(|| {
                    panic!(
                        "proxy closed the connection while waiting for {what}; backlog: {:#?}",
                        self.backlog
                    )
                });
            self.received.push(message.clone());
            if predicate(&message) {
                return message;
            }
            self.backlog.push_back(message);
        }
    }

    /// Waits until the `output` events' text, joined, contains `needle` (a debugger may split
    /// one printed line over several events); returns the text joined so far.
    pub async fn wait_for_output(&mut self, needle: &str) -> String {
        let mut text = String::new();
        while !text.contains(needle) {
            let what = format!("output containing {needle:?} (so far {text:?})");
            let event = self
                .wait_for(&what, |m| {
                    m["event"] == "output" && m["body"]["category"] != "telemetry"
                })
                .await;
            text.push_str(event["body"]["output"].as_str().unwrap_or_default());
        }
        text
    }

    /// Answers the adapter's `runInTerminal` reverse request the way an editor does:
    /// runs the command with the given cwd and env and replies with its process id.
    /// Returns the request as received.
    pub async fn serve_run_in_terminal(&mut self) -> Value {
        let request = self
            .wait_for("runInTerminal request", |m| {
                m["type"] == "request" && m["command"] == "runInTerminal"
            })
            .await;
        let arguments = &request["arguments"];
        let args: Vec<String> = arguments["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut command = std::process::Command::new(&args[0]);
        command
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(cwd) = arguments["cwd"].as_str() {
            command.current_dir(cwd);
        }
        if let Some(env) = arguments["env"].as_object() {
            for (name, value) in env {
                match value.as_str() {
                    Some(value) => command.env(name, value),
                    None => command.env_remove(name),
                };
            }
        }
        let mut child = command.spawn().expect("run the runInTerminal command");
        let pid = child.id();
        // Reap it when it ends, as a terminal would.
        std::thread::spawn(move || child.wait());
        let seq = self.next_seq;
        self.next_seq += 1;
        self.send(
            &json!({"seq": seq, "type": "response", "request_seq": request["seq"],
            "success": true, "command": "runInTerminal", "body": {"processId": pid}}),
        )
        .await;
        request
    }

    /// Every message seen so far (received and still in the backlog).
    pub fn backlog(&self) -> &VecDeque<Value> {
        &self.backlog
    }

    /// Closes the proxy's input (editor went away).
    pub async fn close(&mut self) {
        let _ = self.writer.shutdown().await;
        // A pipe closes only when its last handle is dropped.
        self.writer = Box::new(tokio::io::sink());
    }

    /// Waits for the proxy process to exit; returns its exit code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        let child = self.child.as_mut().expect("client started the proxy");
        tokio::time::timeout(WAIT, child.wait())
            .await
            .expect("proxy did not exit")
            .expect("wait for proxy")
            .code()
    }

    /// Runs to the breakpoint at `line` of `source`, reads `variables` from the top frame's
    /// locals, then continues to the end and disconnects. Returns the variables' values.
    pub async fn debug_to_breakpoint(
        &mut self,
        launch: Value,
        source: &Path,
        line: i64,
        variables: &[&str],
    ) -> Vec<String> {
        let in_terminal = launch["console"] == "integratedTerminal";
        let launch_seq = self.send_request("launch", launch).await;
        if in_terminal {
            self.serve_run_in_terminal().await;
        }
        self.event("initialized").await;
        let breakpoints = self
            .request(
                "setBreakpoints",
                json!({"source": {"path": source}, "breakpoints": [{"line": line}]}),
            )
            .await;
        assert_eq!(
            breakpoints["success"], true,
            "setBreakpoints: {breakpoints}"
        );
        let done = self.request("configurationDone", json!({})).await;
        assert_eq!(done["success"], true, "configurationDone: {done}");
        let launched = self.response_to(launch_seq).await;
        assert_eq!(launched["success"], true, "launch: {launched}");
        let stopped = self.event("stopped").await;
        let thread = stopped["body"]["threadId"].as_i64().unwrap_or(1);
        let stack = self
            .request(
                "stackTrace",
                json!({"threadId": thread, "startFrame": 0, "levels": 1}),
            )
            .await;
        let frame = stack["body"]["stackFrames"][0]["id"].clone();
        let scopes = self.request("scopes", json!({"frameId": frame})).await;
        let mut values = vec![String::new(); variables.len()];
        for scope in scopes["body"]["scopes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let reference = scope["variablesReference"].clone();
            if reference == 0 {
                continue;
            }
            let listed = self
                .request("variables", json!({"variablesReference": reference}))
                .await;
            for variable in listed["body"]["variables"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                if let Some(i) = variables.iter().position(|v| variable["name"] == *v) {
                    if values[i].is_empty() {
                        values[i] = variable["value"].as_str().unwrap_or_default().to_string();
                    }
                }
            }
        }
        let resumed = self.request("continue", json!({"threadId": thread})).await;
        assert_eq!(resumed["success"], true, "continue: {resumed}");
        self.event("terminated").await;
        let disconnected = self.request("disconnect", json!({})).await;
        assert_eq!(disconnected["success"], true, "disconnect: {disconnected}");
        values
    }
}

/// The `initialize` arguments VS Code sends, trimmed to what matters.
pub fn initialize_arguments() -> Value {
    json!({
        "clientID": "kbridge-tests", "clientName": "kbridge tests", "adapterID": "bridge",
        "pathFormat": "path", "linesStartAt1": true, "columnsStartAt1": true,
        "supportsVariableType": true, "supportsRunInTerminalRequest": false,
        "supportsProgressReporting": true, "locale": "en"
    })
}
