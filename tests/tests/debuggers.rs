//! `kbridge dap` in front of real debug adapters (debugpy, lldb-dap, Delve): launch a
//! program, stop at a breakpoint, read variables that hold injected environment, run to
//! the end, disconnect, and see the proxy exit 0. Eager and lazy adapter start both.

use kbridge_tests::dap_client::{initialize_arguments, DapClient};
use kbridge_tests::{programs, require_tool, temp_dir};
use serde_json::{json, Value};
use std::path::Path;

/// Every message the client received is numbered 1, 2, 3, … — whatever the adapter sent.
fn assert_renumbered(received: &[Value]) {
    let seqs: Vec<i64> = received.iter().filter_map(|m| m["seq"].as_i64()).collect();
    assert_eq!(
        seqs.len(),
        received.len(),
        "every message has a seq: {received:#?}"
    );
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len(), "no seq repeats: {seqs:?}");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs increase: {seqs:?}"
    );
}

fn write_env_file(dir: &Path) -> String {
    let path = dir.join("test.env");
    std::fs::write(
        &path,
        "KBRIDGE_FILE_VAR=from-env-file\nKBRIDGE_TEST_VAR=loses-to-env\n",
    )
    .expect("write env file");
    path.display().to_string()
}

async fn initialize(client: &mut DapClient) -> Value {
    let response = client.request("initialize", initialize_arguments()).await;
    assert_eq!(response["success"], true, "initialize: {response}");
    response
}

#[tokio::test(flavor = "multi_thread")]
async fn debugpy_eager_start_injects_env() {
    require_tool("python3", "install Python 3");
    let dir = temp_dir("debugpy-eager");
    let source = programs::source_dir().join("env_probe.py");
    let mut client = DapClient::spawn(&["--debugger", "debugpy"], &[("TMPDIR", &dir)]);
    let init = initialize(&mut client).await;
    assert_eq!(
        init["body"]["supportsTerminateRequest"], true,
        "debugpy's own answer: {init}"
    );
    let launch = json!({
        "type": "bridge", "request": "launch", "name": "probe", "debugger": "debugpy",
        "program": source, "console": "internalConsole", "justMyCode": true,
        "env": {"KBRIDGE_TEST_VAR": "from-user-env"}, "envFile": write_env_file(&dir)
    });
    let values = client
        .debug_to_breakpoint(
            launch,
            &source,
            programs::break_line(&source),
            &["user_var", "grpc_resolver", "file_var"],
        )
        .await;
    assert_eq!(values, ["'from-user-env'", "'native'", "'from-env-file'"]);
    assert_eq!(client.exit_code().await, Some(0));
    assert_renumbered(&client.received);
    assert!(
        client
            .received
            .iter()
            .any(|m| m["event"] == "debugpySockets" && m["body"].is_object()),
        "debugpy's custom event passes through"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn debugpy_lazy_start_user_env_beats_grpc_default() {
    require_tool("python3", "install Python 3");
    let dir = temp_dir("debugpy-lazy");
    let source = programs::source_dir().join("env_probe.py");
    let mut client = DapClient::spawn(&[], &[("TMPDIR", &dir)]);
    let init = initialize(&mut client).await;
    assert_eq!(
        init["body"]["supportsConfigurationDoneRequest"], true,
        "answered from kbridge's table: {init}"
    );
    let launch = json!({
        "type": "bridge", "request": "launch", "name": "probe", "debugger": "debugpy",
        "program": source, "console": "internalConsole",
        "env": {"KBRIDGE_TEST_VAR": "lazy", "GRPC_DNS_RESOLVER": "ares"}
    });
    let values = client
        .debug_to_breakpoint(
            launch,
            &source,
            programs::break_line(&source),
            &["user_var", "grpc_resolver", "file_var"],
        )
        .await;
    assert_eq!(values, ["'lazy'", "'ares'", "'<unset>'"]);
    let capabilities = client
        .received
        .iter()
        .find(|m| m["event"] == "capabilities")
        .expect("a capabilities event tells what the real adapter supports");
    assert_eq!(
        capabilities["body"]["capabilities"]["supportsTerminateRequest"],
        true
    );
    assert!(
        client
            .received
            .iter()
            .any(|m| m["event"] == "progressStart")
            && client.received.iter().any(|m| m["event"] == "progressEnd"),
        "progress reported to a client that supports it"
    );
    assert_eq!(client.exit_code().await, Some(0));
    assert_renumbered(&client.received);
}

#[tokio::test(flavor = "multi_thread")]
async fn debugpy_run_in_terminal_reverse_request_is_mapped_and_gets_env() {
    require_tool("python3", "install Python 3");
    let dir = temp_dir("debugpy-terminal");
    let source = programs::source_dir().join("env_probe.py");
    let mut client = DapClient::spawn(&["--debugger", "debugpy"], &[("TMPDIR", &dir)]);
    let mut arguments = initialize_arguments();
    arguments["supportsRunInTerminalRequest"] = json!(true);
    let init = client.request("initialize", arguments).await;
    assert_eq!(init["success"], true);
    let launch = json!({
        "type": "bridge", "request": "launch", "name": "probe", "debugger": "debugpy",
        "program": source, "console": "integratedTerminal",
        "env": {"KBRIDGE_TEST_VAR": "in-terminal"}
    });
    // The client answers runInTerminal with its own seq numbering; the proxy must map
    // that answer back to debugpy's request, or debugpy never launches the program.
    let values = client
        .debug_to_breakpoint(
            launch,
            &source,
            programs::break_line(&source),
            &["user_var", "grpc_resolver"],
        )
        .await;
    assert_eq!(values, ["'in-terminal'", "'native'"]);
    let request = client
        .received
        .iter()
        .find(|m| m["command"] == "runInTerminal")
        .expect("runInTerminal seen");
    assert_eq!(
        request["arguments"]["env"]["GRPC_DNS_RESOLVER"], "native",
        "{request}"
    );
    assert_eq!(client.exit_code().await, Some(0));
    assert_renumbered(&client.received);
}

#[tokio::test(flavor = "multi_thread")]
async fn lldb_dap_gets_env_as_a_list() {
    require_tool("cc", "apt-get install gcc");
    let dir = temp_dir("lldb");
    let binary = programs::build_c(&dir);
    let source = programs::source_dir().join("env_probe.c");
    let mut client = DapClient::spawn(&["--debugger", "lldb-dap"], &[("TMPDIR", &dir)]);
    initialize(&mut client).await;
    let launch = json!({
        "type": "bridge", "request": "launch", "name": "probe", "program": binary,
        "env": {"KBRIDGE_TEST_VAR": "from-user-env"}, "envFile": write_env_file(&dir)
    });
    let values = client
        .debug_to_breakpoint(
            launch,
            &source,
            programs::break_line(&source),
            &["user_var", "grpc_resolver", "file_var"],
        )
        .await;
    assert!(values[0].ends_with("\"from-user-env\""), "{values:?}");
    assert!(values[1].ends_with("\"native\""), "{values:?}");
    assert!(values[2].ends_with("\"from-env-file\""), "{values:?}");
    assert_eq!(client.exit_code().await, Some(0));
    assert_renumbered(&client.received);
}

#[tokio::test(flavor = "multi_thread")]
async fn dlv_over_tcp_lazy_start() {
    require_tool("go", "apt-get install golang-go");
    require_tool(
        "dlv",
        "go install github.com/go-delve/delve/cmd/dlv@v1.27.2 (as .ci/run does)",
    );
    let dir = temp_dir("dlv");
    let binary = programs::build_go(&dir);
    let source = programs::source_dir().join("go").join("main.go");
    let mut client = DapClient::spawn(&[], &[("TMPDIR", &dir)]);
    initialize(&mut client).await;
    let launch = json!({
        "type": "bridge", "request": "launch", "name": "probe", "debugger": "dlv",
        "mode": "exec", "program": binary,
        "env": {"KBRIDGE_TEST_VAR": "from-user-env"}, "envFile": write_env_file(&dir)
    });
    let values = client
        .debug_to_breakpoint(
            launch,
            &source,
            programs::break_line(&source),
            &["userVar", "grpcResolver", "fileVar"],
        )
        .await;
    assert_eq!(
        values,
        ["\"from-user-env\"", "\"native\"", "\"from-env-file\""]
    );
    assert_eq!(client.exit_code().await, Some(0));
    assert_renumbered(&client.received);
}
