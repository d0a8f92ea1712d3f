//! `kbridge lsp` over pipes, as an editor runs it: the built binary, a client written here
//! independently of the server's own framing, and every document kind — the lifecycle
//! (exit code 0 after `shutdown`, 1 without), diagnostics on open and change, completion,
//! hover, code actions, and a server that survives garbage and unknown requests. The
//! cluster features run against the test cluster ([`TestCluster`]): live completion,
//! hover and diagnostics, a held session's addresses, and a cluster that is unreachable or
//! never answers (requests still answered at once, diagnostics quiet about the cluster).

use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{kbridge_bin, temp_dir};
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
    /// A server that finds no cluster (its `KUBECONFIG` names no file).
    fn start() -> Client {
        Client::start_with(
            std::path::Path::new("/nonexistent/kubeconfig"),
            &temp_dir("lsp"),
        )
    }

    /// A server using `kubeconfig`, with `tmp` as `TMPDIR` (where live sessions are found).
    fn start_with(kubeconfig: &std::path::Path, tmp: &std::path::Path) -> Client {
        let mut child = Command::new(kbridge_bin())
            .arg("lsp")
            .env("KUBECONFIG", kubeconfig)
            .env("TMPDIR", tmp)
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

    /// Publishes for `uri` until one satisfies `done` (cluster data arrives in the
    /// background and the server publishes again), within `secs`.
    fn diagnostics_until(
        &self,
        uri: &str,
        secs: u64,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let message = self
                .incoming
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no fitting diagnostics for {uri} within {secs} s"));
            if message["method"] == "textDocument/publishDiagnostics"
                && message["params"]["uri"] == uri
            {
                let found = message["params"]["diagnostics"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if done(&found) {
                    return found;
                }
            }
        }
    }

    /// The labels of a completion at `line`:`character` of `uri`, with the whole response.
    fn completion(&mut self, uri: &str, line: u32, character: u32) -> (Vec<String>, Value) {
        let (response, _) = self.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}),
        );
        let labels = response["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["label"].as_str().map(str::to_string))
            .collect();
        (labels, response)
    }

    /// The Markdown of a hover at `line`:`character` of `uri` (empty when none).
    fn hover(&mut self, uri: &str, line: u32, character: u32) -> String {
        let (response, _) = self.request(
            "textDocument/hover",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}),
        );
        response["result"]["contents"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
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
    // A document that is not open has no actions.
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

fn messages(found: &[Value]) -> Vec<String> {
    found
        .iter()
        .map(|d| d["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A workspace as a developer has it: `.vscode/launch.json` bridging todo-api in the
/// test's namespace, and `api/KubernetesLocalProcessConfig.yaml` (written by the test).
fn workspace(cluster: &TestCluster, tag: &str) -> std::path::PathBuf {
    let dir = temp_dir(tag);
    std::fs::create_dir_all(dir.join(".vscode")).expect("mkdir");
    std::fs::create_dir_all(dir.join("api")).expect("mkdir");
    std::fs::write(
        dir.join(".vscode/launch.json"),
        format!(
            "{{\"configurations\": [{{\"type\": \"bridge\", \"name\": \"api\", \"debugger\": \"debugpy\",\n  \"bridge\": {{\"namespace\": \"{}\", \"service\": \"todo-api\"}}}}]}}\n",
            cluster.namespace
        ),
    )
    .expect("write launch.json");
    dir
}

fn uri_of(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

#[test]
fn live_cluster_completion_hover_and_diagnostics() {
    let cluster = TestCluster::start_demo("lsp-live");
    let dir = workspace(&cluster, "lsp-live");
    let mut client = Client::start_with(&cluster.kubeconfig, &dir);
    client.initialize();
    let config = uri_of(&dir.join("api/KubernetesLocalProcessConfig.yaml"));
    let text = "volumeMounts:\n  - name: confg\nenv:\n  - name: STATS\n    value: http://$(services:stats-apx)/ $(services:stats-api:8080)\n  - name: CFG\n    value: $(volumeMounts:config)/config.yaml\n";
    client.open(&config, text);
    // First without cluster data (the fetch runs in the background), then with it.
    let found = client.diagnostics_until(&config, 30, |found| {
        messages(found).iter().any(|m| m.contains("no Service"))
    });
    let messages = messages(&found);
    let ranges: Vec<_> = found.iter().map(range).collect();
    assert_eq!(found.len(), 3, "{messages:?}");
    assert!(
        ranges.contains(&(1, 10, 1, 15))
            && messages
                .iter()
                .any(|m| m.contains("mounts no volume `confg`; did you mean `config`?")),
        "{messages:?} {ranges:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m
                .contains("no Service `stats-apx` in the namespace; did you mean `stats-api`?")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Service `stats-api` has no port 8080; its ports: 80")),
        "{messages:?}"
    );
    assert!(
        found.iter().all(|d| d["severity"] == 2),
        "cluster facts are warnings: {found:?}"
    );

    // Completion from the warm cache, in a file being typed next to it (same scope):
    // Services, the container's volumes, its env names.
    let typing = uri_of(&dir.join("api/dev.KubernetesLocalProcessConfig.yaml"));
    client.open(
        &typing,
        "volumeMounts:\n  - name: \nenv:\n  - name: \n    value: $(services:stats-api:\n",
    );
    client.diagnostics(&typing);
    let (services, _) = client.completion(&typing, 4, 22);
    assert!(
        services.contains(&"stats-api".to_string()) && services.contains(&"todo-api".to_string()),
        "{services:?}"
    );
    let (ports, response) = client.completion(&typing, 4, 32);
    assert_eq!(ports, ["80"], "{response}");
    let (volumes, response) = client.completion(&typing, 1, 10);
    assert_eq!(volumes, ["config"], "{response}");
    assert!(
        response.to_string().contains("mounted at /etc/todo"),
        "{response}"
    );
    let (names, response) = client.completion(&typing, 3, 10);
    for name in ["API_KEY", "LOG_LEVEL", "STATS_URL"] {
        assert!(names.contains(&name.to_string()), "{name}: {response}");
    }
    // Secret values are never shown.
    assert!(!response.to_string().contains("s3cr3t"), "{response}");

    // Hover: a volume's mount path and source, a Service's ports.
    let volume = client.hover(&config, 6, 16);
    assert!(
        volume.contains("mounted at `/etc/todo`") && volume.contains("configMap `todo-config`"),
        "{volume}"
    );
    let service = client.hover(&config, 4, 50);
    assert!(
        service.contains("In the cluster: ports 80 (http)"),
        "{service}"
    );
    assert!(
        !service.contains("In live session"),
        "no session runs: {service}"
    );

    // launch.json: namespaces and contexts of the kubeconfig; an unknown namespace.
    let launch = uri_of(&dir.join(".vscode/launch.json"));
    let launch_text = format!(
        "{{\"configurations\": [{{\"type\": \"bridge\", \"bridge\": {{\"namespace\": \"{}x\", \"context\": \"\", \"service\": \"todo-api\"}}}}]}}\n",
        cluster.namespace
    );
    client.open(&launch, &launch_text);
    let found = client.diagnostics_until(&launch, 30, |found| {
        self::messages(found)
            .iter()
            .any(|m| m.contains("no namespace"))
    });
    assert!(
        self::messages(&found)[0].contains(&format!("did you mean `{}`?", cluster.namespace)),
        "{found:?}"
    );
    let namespace_at = launch_text
        .find(&format!("{}x", cluster.namespace))
        .expect("ns") as u32;
    let (namespaces, _) = client.completion(&launch, 0, namespace_at);
    assert!(namespaces.contains(&cluster.namespace), "{namespaces:?}");
    let context_at = launch_text.find("\"context\": \"").expect("context") as u32 + 12;
    let (contexts, _) = client.completion(&launch, 0, context_at);
    let current = cluster.kubectl(&["config", "current-context"]);
    assert!(
        contexts.contains(&current.trim().to_string()),
        "{contexts:?} {current}"
    );
    client.request("shutdown", Value::Null);
    client.notify("exit", Value::Null);
    assert_eq!(client.exit_code(), Some(0));
}

/// A kubeconfig like `cluster`'s whose server is `server`.
fn kubeconfig_with_server(
    cluster: &TestCluster,
    server: &str,
    into: &std::path::Path,
) -> std::path::PathBuf {
    let original = std::fs::read_to_string(&cluster.kubeconfig).expect("kubeconfig");
    let path = into.join("kubeconfig");
    std::fs::write(&path, original.replace(&cluster.url, server)).expect("write kubeconfig");
    path
}

#[test]
fn an_unreachable_or_silent_cluster_never_delays_answers_nor_adds_diagnostics() {
    let cluster = TestCluster::start_demo("lsp-down");
    // A port nothing listens on, and one that accepts connections and never answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_url = format!("https://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("https://{}", silent.local_addr().expect("addr"));
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            keep.lock().expect("lock").push(stream);
        }
    });
    for (tag, server) in [("closed", closed_url), ("silent", silent_url)] {
        let dir = workspace(&cluster, &format!("lsp-down-{tag}"));
        let kubeconfig = kubeconfig_with_server(&cluster, &server, &dir);
        let mut client = Client::start_with(&kubeconfig, &dir);
        client.initialize();
        let config = uri_of(&dir.join("api/KubernetesLocalProcessConfig.yaml"));
        client.open(
            &config,
            "volumeMounts:\n  - name: nope\nenv:\n  - name: A\n    value: $(services:nope) $(volumeMounts:nope)\n  - name: B\n    value: $(services:n\n",
        );
        // The document's own problem (the token being typed) only: no cluster facts.
        let found = client.diagnostics(&config);
        assert_eq!(found.len(), 1, "{tag}: {found:?}");
        assert!(
            found[0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("no closing"),
            "{tag}: {found:?}"
        );
        let started = std::time::Instant::now();
        for _ in 0..20 {
            let (labels, response) = client.completion(&config, 6, 23);
            assert_eq!(labels, Vec::<String>::new(), "{tag}: {response}");
        }
        let hover = client.hover(&config, 4, 15);
        assert!(hover.contains("Service `nope`"), "{tag}: {hover}");
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(2),
            "{tag}: 21 requests took {elapsed:?}"
        );
        // Still quiet after the fetch failed (or while it hangs): nothing new published.
        std::thread::sleep(Duration::from_secs(3));
        let (_, before) = client.request("shutdown", Value::Null);
        assert_eq!(before, Vec::<Value>::new(), "{tag}");
        client.notify("exit", Value::Null);
        assert_eq!(client.exit_code(), Some(0), "{tag}");
    }
}

/// A `kbridge connect` child, ended (Ctrl-C, so it restores the cluster) when dropped,
/// also when the test fails.
struct Connect(Child);

impl Drop for Connect {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[test]
fn hover_shows_the_address_a_held_session_gives_a_service() {
    let cluster = TestCluster::start_demo("lsp-held");
    let dir = workspace(&cluster, "lsp-held");
    let env_file = dir.join("session.env");
    let _connect = Connect(
        Command::new(kbridge_bin())
            .arg("connect")
            .args(cluster.todo_api_target())
            .arg("--env-file")
            .arg(&env_file)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("TMPDIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kbridge connect"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !env_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no session within 180 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let session_env = std::fs::read_to_string(&env_file).expect("env file");

    let mut client = Client::start_with(&cluster.kubeconfig, &dir);
    client.initialize();
    let config = uri_of(&dir.join("api/KubernetesLocalProcessConfig.yaml"));
    client.open(
        &config,
        "env:\n  - name: STATS\n    value: $(services:stats-api)\n",
    );
    client.diagnostics(&config);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let hover = loop {
        let hover = client.hover(&config, 2, 20);
        if hover.contains("In live session") || std::time::Instant::now() > deadline {
            break hover;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let address = hover
        .split("**`")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_default()
        .to_string();
    assert!(address.starts_with("127.1."), "{hover}");
    assert!(
        hover.contains(&format!("`{address}:80` (port 80)")),
        "{hover}"
    );
    // The address the session gives stats-api.
    assert!(
        session_env.contains(&format!("STATS_API_SERVICE_HOST=\"{address}\"")),
        "{address}: {session_env}"
    );
    client.request("shutdown", Value::Null);
    client.notify("exit", Value::Null);
    assert_eq!(client.exit_code(), Some(0));
}

#[test]
fn code_actions_add_a_volume_mount_and_convert_azds_env() {
    let dir = temp_dir("lsp-actions");
    let mut client = Client::start();
    client.initialize();
    let config = uri_of(&dir.join("KubernetesLocalProcessConfig.yaml"));
    let text = "volumeMounts:\n  - name: config\nenv:\n  - name: CA\n    value: $(volumeMounts:certs)/ca.pem\n";
    client.open(&config, text);
    client.diagnostics(&config);
    let (response, _) = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": config}, "range": {"start": {"line": 4, "character": 15}, "end": {"line": 4, "character": 15}}, "context": {"diagnostics": []}}),
    );
    let actions = response["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(actions.len(), 1, "{response}");
    assert_eq!(actions[0]["title"], "Add `certs` to volumeMounts");
    assert_eq!(actions[0]["kind"], "quickfix");
    let edit = &actions[0]["edit"]["changes"][&config][0];
    assert_eq!(
        edit["range"],
        json!({"start": {"line": 1, "character": 16}, "end": {"line": 1, "character": 16}}),
        "{edit}"
    );
    assert_eq!(edit["newText"], "\n  - name: certs");
    // Elsewhere in the file: no action.
    let (none, _) = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": config}, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 3}}, "context": {"diagnostics": []}}),
    );
    assert_eq!(none["result"], json!([]), "{none}");

    let env = uri_of(&dir.join("azds-local.env"));
    client.open(
        &env,
        "DB=${services.data.db}\nCFG=${volumes.config|/tmp/cfg}/app.json\n",
    );
    client.diagnostics(&env);
    let (response, _) = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": env}, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "context": {"diagnostics": []}}),
    );
    let action = &response["result"][0];
    assert_eq!(
        action["title"], "Convert to KubernetesLocalProcessConfig.yaml",
        "{response}"
    );
    let changes = &action["edit"]["documentChanges"];
    assert_eq!(changes[0]["kind"], "create", "{changes}");
    assert_eq!(changes[0]["uri"], config);
    let yaml = changes[1]["edits"][0]["newText"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        yaml,
        "# Converted from azds-local.env by kbridge lsp.\nversion: 0.1\nvolumeMounts:\n  - name: \"config\"\n    localPath: \"/tmp/cfg\"\nenv:\n  - name: \"DB\"\n    value: \"$(services:db.data)\"\n  - name: \"CFG\"\n    value: \"$(volumeMounts:config)/app.json\"\n"
    );
    // Once the YAML file exists, there is nothing to convert into.
    std::fs::write(dir.join("KubernetesLocalProcessConfig.yaml"), yaml).expect("write");
    let (response, _) = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": env}, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "context": {"diagnostics": []}}),
    );
    assert_eq!(response["result"], json!([]), "{response}");
}
