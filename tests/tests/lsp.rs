//! `kbridge lsp` over pipes, as an editor runs it: the built binary, a client written here
//! independently of the server's own framing, and every document kind — the lifecycle
//! (exit code 0 after `shutdown`, 1 without), diagnostics on open and change, completion,
//! hover, and a server that survives garbage and unknown requests.

use kbridge_tests::kbridge_bin;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// A language client speaking to a `kbridge lsp` child.
struct Client {
    child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(kbridge_bin())
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kbridge lsp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, incoming) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(value) = line.strip_prefix("Content-Length: ") {
                        length = value.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; length.expect("a Content-Length header")];
                reader.read_exact(&mut body).expect("body");
                let message = serde_json::from_slice(&body).expect("the server sends JSON");
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        Client {
            child,
            stdin,
            incoming,
            next_id: 1,
        }
    }

    fn write_raw(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        self.write_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its response; notifications before it are returned too.
    fn request(&mut self, method: &str, params: Value) -> (Value, Vec<Value>) {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let mut before = Vec::new();
        loop {
            let message = self.next();
            if message.get("id") == Some(&json!(id)) {
                return (message, before);
            }
            before.push(message);
        }
    }

    fn next(&self) -> Value {
        self.incoming
            .recv_timeout(Duration::from_secs(10))
            .expect("a message from kbridge lsp within 10 s")
    }

    /// The next `publishDiagnostics` for `uri`.
    fn diagnostics(&self, uri: &str) -> Vec<Value> {
        loop {
            let message = self.next();
            if message["method"] == "textDocument/publishDiagnostics"
                && message["params"]["uri"] == uri
            {
                return message["params"]["diagnostics"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
            }
        }
    }

    fn initialize(&mut self) -> Value {
        let (response, _) = self.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "capabilities": {}}),
        );
        self.notify("initialized", json!({}));
        response
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "", "version": 1, "text": text}}),
        );
    }

    fn exit_code(mut self) -> Option<i32> {
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("kbridge lsp did not exit within 5 s");
    }
}

fn range(diagnostic: &Value) -> (u64, u64, u64, u64) {
    let r = &diagnostic["range"];
    let n = |v: &Value| v.as_u64().expect("a number");
    (
        n(&r["start"]["line"]),
        n(&r["start"]["character"]),
        n(&r["end"]["line"]),
        n(&r["end"]["character"]),
    )
}

const CONFIG: &str = "file:///work/api/KubernetesLocalProcessConfig.yaml";

#[test]
fn lifecycle_survives_garbage_and_exits_0_after_shutdown() {
    let mut client = Client::start();
    let response = client.initialize();
    let capabilities = &response["result"]["capabilities"];
    assert_eq!(capabilities["textDocumentSync"]["change"], 2, "{response}");
    assert_eq!(capabilities["hoverProvider"], true);
    assert_eq!(capabilities["codeActionProvider"], true);
    let triggers = capabilities["completionProvider"]["triggerCharacters"].to_string();
    assert!(
        triggers.contains("\"$\"") && triggers.contains("\"(\"") && triggers.contains("\":\""),
        "{triggers}"
    );
    assert_eq!(response["result"]["serverInfo"]["name"], "kbridge");

    // Garbage between messages, a body that is not JSON, a message that is neither.
    client.write_raw(b"garbage\r\n");
    client.write_raw(b"Content-Length: 9\r\n\r\n{not json");
    client.send(json!({"jsonrpc": "2.0"}));
    let (unknown, _) = client.request("textDocument/rename", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    let (bad, _) = client.request("textDocument/hover", json!({"textDocument": 3}));
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let (actions, _) = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": CONFIG}, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "context": {"diagnostics": []}}),
    );
    assert_eq!(actions["result"], json!([]));

    let (shutdown, _) = client.request("shutdown", Value::Null);
    assert_eq!(shutdown["result"], Value::Null, "{shutdown}");
    let (after, _) = client.request("textDocument/hover", json!({}));
    assert_eq!(after["error"]["code"], -32600, "{after}");
    client.notify("exit", Value::Null);
    assert_eq!(client.exit_code(), Some(0));
}

#[test]
fn exit_without_shutdown_is_1_and_so_is_a_closed_input() {
    let mut client = Client::start();
    client.initialize();
    client.notify("exit", Value::Null);
    assert_eq!(client.exit_code(), Some(1));

    let mut client = Client::start();
    client.initialize();
    let Client { child, stdin, .. } = client;
    drop(stdin);
    let mut child = child;
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn diagnostics_for_each_document_kind_on_open_and_change() {
    let mut client = Client::start();
    client.initialize();

    client.open(CONFIG, "version: 0.1\nvolumeMount:\n  - name: config\n");
    let found = client.diagnostics(CONFIG);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(range(&found[0]), (1, 0, 1, 11));
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("did you mean `volumeMounts`?"),
        "{found:?}"
    );
    assert_eq!(found[0]["severity"], 1);
    assert_eq!(found[0]["source"], "kbridge");
    // Incremental: add the `s`; then a relative localPath and an unknown token.
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": CONFIG, "version": 2}, "contentChanges": [
            {"range": {"start": {"line": 1, "character": 11}, "end": {"line": 1, "character": 11}}, "text": "s"}]}),
    );
    assert_eq!(client.diagnostics(CONFIG), Vec::<Value>::new());
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": CONFIG, "version": 3}, "contentChanges": [{"text":
            "volumeMounts:\n  - name: config\n    localPath: conf\nenv:\n  - name: A\n    value: $(service:db)\nenableFeatures: [Probe]\n"}]}),
    );
    let found = client.diagnostics(CONFIG);
    let ranges: Vec<_> = found.iter().map(range).collect();
    assert_eq!(
        ranges,
        [(6, 17, 6, 22), (2, 15, 2, 19), (5, 13, 5, 20)],
        "{found:?}"
    );
    let messages: Vec<&str> = found
        .iter()
        .map(|d| d["message"].as_str().unwrap_or_default())
        .collect();
    assert!(
        messages[0].contains("did you mean `Probes`?"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("must be an absolute path"),
        "{messages:?}"
    );
    assert!(
        messages[2].contains("did you mean `services`?"),
        "{messages:?}"
    );

    let env = "file:///work/api/azds-local.env";
    client.open(env, "# old format\nDB=${service.db}\nOK=${services.db}\n");
    let found = client.diagnostics(env);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(range(&found[0]), (1, 5, 1, 12));

    let launch = "file:///work/api/.vscode/launch.json";
    client.open(
        launch,
        "{\n  // JSONC\n  \"configurations\": [\n    {\"type\": \"python\", \"bridge\": {\"x\": 1}},\n    {\"type\": \"bridge\", \"bridge\": {\"namespce\": \"todo\"}},\n  ]\n}\n",
    );
    let found = client.diagnostics(launch);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(range(&found[0]), (4, 34, 4, 44));
    assert!(found[0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("did you mean `namespace`?"));

    // Other files get nothing: the next message is the response to the next request.
    client.open("file:///work/api/tasks.json", "{\"bridge\": 1}");
    let (_, before) = client.request("shutdown", Value::Null);
    assert_eq!(before, Vec::<Value>::new());
    client.notify("exit", Value::Null);
    assert_eq!(client.exit_code(), Some(0));
}

#[test]
fn completion_and_hover() {
    let mut client = Client::start();
    client.initialize();
    client.open(
        CONFIG,
        "volumeMounts:\n  - name: config\nenv:\n  - name: STATS\n    value: http://$(services:stats-api)/\n  - name: DIR\n    value: $(\n",
    );
    client.diagnostics(CONFIG);
    let at = |line: u32, character: u32| json!({"textDocument": {"uri": CONFIG}, "position": {"line": line, "character": character}});
    let (kinds, _) = client.request("textDocument/completion", at(6, 13));
    let labels: Vec<&str> = kinds["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["label"].as_str())
        .collect();
    assert_eq!(
        labels,
        ["volumeMounts", "services", "externalEndpoints"],
        "{kinds}"
    );
    let (keys, _) = client.request("textDocument/completion", at(1, 4));
    let labels: Vec<&str> = keys["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["label"].as_str())
        .collect();
    assert_eq!(labels, ["name", "localPath", "rewriteEnvPaths"], "{keys}");

    let (token, _) = client.request("textDocument/hover", at(4, 24));
    let text = token["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("Service `stats-api`") && text.contains("127.1.0.x"),
        "{token}"
    );
    assert_eq!(
        token["result"]["range"]["start"],
        json!({"line": 4, "character": 18})
    );
    let (key, _) = client.request("textDocument/hover", at(0, 3));
    let text = key["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("Volumes to download"), "{key}");
    let (nothing, _) = client.request("textDocument/hover", at(3, 0));
    assert_eq!(nothing["result"], Value::Null, "{nothing}");
}
