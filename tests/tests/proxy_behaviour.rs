//! How `kbridge dap` behaves at the edges: malformed input, a missing debugger, a bad
//! configuration, and every way a session can end (disconnect then SIGKILL, client EOF,
//! SIGTERM, TCP server mode), each checked for teardown of the session's private files.

use kbridge_tests::dap_client::{initialize_arguments, DapClient, WAIT};
use kbridge_tests::{kbridge_bin, programs, temp_dir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The per-session private directories kbridge created under `tmp`.
fn session_dirs(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp.join("kbridge").join("sessions"))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Waits until `path` is gone (the guardian removes it), failing after [`WAIT`].
async fn wait_removed(path: &Path) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} was never removed",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn probe_launch() -> Value {
    let source = programs::source_dir().join("env_probe.py");
    json!({"type": "bridge", "request": "launch", "name": "probe", "debugger": "debugpy",
           "program": source, "console": "internalConsole"})
}

/// Launches the probe without breakpoints; returns once the session dir exists.
async fn launch_running(client: &mut DapClient, tmp: &Path) -> PathBuf {
    client.request("initialize", initialize_arguments()).await;
    let launch = client.send_request("launch", probe_launch()).await;
    client.event("initialized").await;
    client.request("configurationDone", json!({})).await;
    let response = client.response_to(launch).await;
    assert_eq!(response["success"], true, "{response}");
    let dirs = session_dirs(tmp);
    assert_eq!(dirs.len(), 1, "one private session directory: {dirs:?}");
    dirs[0].clone()
}

/// A debugpy session stopped on entry, so the debuggee is alive; returns the client and
/// the session's private directory.
async fn stopped_on_entry(tag: &str) -> (DapClient, PathBuf) {
    let tmp = temp_dir(tag);
    let mut client = DapClient::spawn(&["--debugger", "debugpy"], &[("TMPDIR", &tmp)]);
    client.request("initialize", initialize_arguments()).await;
    let mut launch = probe_launch();
    launch["stopOnEntry"] = json!(true);
    let launch_seq = client.send_request("launch", launch).await;
    client.event("initialized").await;
    client.request("configurationDone", json!({})).await;
    client.response_to(launch_seq).await;
    client.event("stopped").await;
    let session_dir = session_dirs(&tmp).pop().expect("session dir");
    (client, session_dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_get_errors_and_the_next_message_works() {
    let tmp = temp_dir("malformed");
    let mut client = DapClient::spawn(&[], &[("TMPDIR", &tmp)]);
    // A header without a length, then a body that is not JSON.
    client.send_raw(b"Content-Length: lots\r\n\r\n").await;
    client.send_raw(b"Content-Length: 8\r\n\r\nnot json").await;
    // A broken request whose seq and command can still be read gets an error response.
    let broken = br#"{"seq": 41, "type": "request", "command": "threads", oops}"#;
    client
        .send_raw(format!("Content-Length: {}\r\n\r\n", broken.len()).as_bytes())
        .await;
    client.send_raw(broken).await;
    // An oversized length, then garbage the proxy must skip.
    client
        .send_raw(b"Content-Length: 999999999999\r\n\r\n{\"never\": ")
        .await;
    // A truncated body: it announces more bytes than it has, so it swallows the start
    // of the next (valid) message, which must still be read.
    client
        .send_raw(b"Content-Length: 60\r\n\r\n{\"seq\":5,\"type\":\"request\"")
        .await;
    let init = client.request("initialize", initialize_arguments()).await;
    assert_eq!(init["success"], true, "initialize after garbage: {init}");
    let error = client.response_to(41).await;
    assert_eq!(error["success"], false);
    assert_eq!(error["command"], "threads");
    let complaints = client
        .backlog()
        .iter()
        .filter(|m| m["event"] == "output" && m["body"]["category"] == "important")
        .count();
    assert!(
        complaints >= 4,
        "each malformed input is reported: {:#?}",
        client.backlog()
    );
    let bye = client.request("disconnect", json!({})).await;
    assert_eq!(bye["success"], true);
    assert_eq!(client.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_debugger_fails_launch_with_how_to_fix() {
    let tmp = temp_dir("missing");
    let mut client = DapClient::spawn(&[], &[("TMPDIR", &tmp)]);
    client.request("initialize", initialize_arguments()).await;
    let response = client
        .request(
            "launch",
            json!({"type": "bridge", "request": "launch",
            "debugger": {"command": "kbridge-no-such-adapter", "type": "x"}}),
        )
        .await;
    assert_eq!(response["success"], false);
    let message = response["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("kbridge-no-such-adapter") && message.contains("not on PATH"),
        "{message}"
    );
    assert_eq!(response["body"]["error"]["showUser"], true);
    // The class of the failure, for editors that act on it: a stable id and its name.
    assert_eq!(response["body"]["error"]["id"], 7313, "{response}");
    assert_eq!(response["body"]["error"]["variables"]["kind"], "debugger");
    assert!(session_dirs(&tmp).is_empty(), "nothing left behind");
    client.request("disconnect", json!({})).await;
    assert_eq!(client.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_names_the_key() {
    let tmp = temp_dir("badconfig");
    let mut client = DapClient::spawn(&["--debugger", "debugpy"], &[("TMPDIR", &tmp)]);
    client.request("initialize", initialize_arguments()).await;
    let mut launch = probe_launch();
    launch["bridge"] = json!({"namespce": "todo"});
    let response = client.request("launch", launch).await;
    assert_eq!(response["success"], false);
    let message = response["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("bridge.namespce") && message.contains("did you mean `namespace`?"),
        "{message}"
    );
    assert_eq!(response["body"]["error"]["id"], 7306, "{response}");
    assert_eq!(response["body"]["error"]["variables"]["kind"], "invalid");
    let mut launch = probe_launch();
    launch["debugger"] = json!("lldb-dap");
    let response = client.request("launch", launch).await;
    assert!(
        response["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--debugger debugpy"),
        "conflict between flag and configuration is explained: {response}"
    );
    client.request("disconnect", json!({})).await;
    assert_eq!(client.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn teardown_survives_sigkill_right_after_disconnect_response() {
    let tmp = temp_dir("sigkill");
    // The guardian waits before undoing, so the proxy is surely dead by then: teardown
    // that lived in the proxy would never happen.
    let mut client = DapClient::spawn(
        &["--debugger", "debugpy"],
        &[
            ("TMPDIR", &tmp),
            ("KBRIDGE_TEST_TEARDOWN_DELAY_MS", Path::new("1500")),
        ],
    );
    let session_dir = launch_running(&mut client, &tmp).await;
    client.event("terminated").await;
    let bye = client.request("disconnect", json!({})).await;
    assert_eq!(bye["success"], true);
    // What VS Code does: kill the adapter as soon as `disconnect` is answered.
    client
        .child
        .as_mut()
        .expect("child")
        .start_kill()
        .expect("SIGKILL kbridge");
    client.exit_code().await;
    wait_removed(&session_dir).await;
    let log = std::fs::read_dir(tmp.join("kbridge"))
        .expect("log dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        log.contains("teardown complete"),
        "guardian logged its teardown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_eof_tears_down_and_stops_the_adapter() {
    let tmp = temp_dir("eof");
    let mut client = DapClient::spawn(&["--debugger", "debugpy"], &[("TMPDIR", &tmp)]);
    let session_dir = launch_running(&mut client, &tmp).await;
    client.close().await;
    assert_eq!(client.exit_code().await, Some(0));
    wait_removed(&session_dir).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn adapter_crash_is_reported_and_torn_down() {
    let (mut client, session_dir) = stopped_on_entry("crash").await;
    let proxy_pid = client.child.as_ref().and_then(|c| c.id()).expect("pid");
    // Kill debugpy's adapter process, the proxy's direct child.
    let status = std::process::Command::new("pkill")
        .args([
            "-KILL",
            "-P",
            &proxy_pid.to_string(),
            "-f",
            "debugpy.adapter",
        ])
        .status()
        .expect("pkill");
    assert!(status.success(), "the adapter process was found and killed");
    let report = client
        .wait_for("crash report", |m| {
            m["event"] == "output"
                && m["body"]["category"] == "important"
                && m["body"]["output"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("exited unexpectedly")
        })
        .await;
    assert!(report["body"]["output"]
        .as_str()
        .unwrap_or_default()
        .contains("debugpy"));
    client.event("terminated").await;
    wait_removed(&session_dir).await;
    let threads = client.request("threads", json!({})).await;
    assert_eq!(
        threads["success"], false,
        "requests after the crash get an error"
    );
    let bye = client.request("disconnect", json!({})).await;
    assert_eq!(bye["success"], true);
    assert_eq!(client.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_sends_terminated_and_tears_down() {
    let (mut client, session_dir) = stopped_on_entry("sigterm").await;
    let pid = client.child.as_ref().and_then(|c| c.id()).expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    client.event("terminated").await;
    assert_eq!(client.exit_code().await, Some(0));
    assert!(!session_dir.exists(), "teardown finished before exit");
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_mode_serves_sessions_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let tmp = temp_dir("tcp");
    let mut server = tokio::process::Command::new(kbridge_bin())
        .args(["dap", "--port", "0", "--debugger", "debugpy"])
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start server");
    let stdout = server.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("server announces its port")
        .expect("read")
        .expect("a line");
    let address = line
        .strip_prefix("kbridge: listening on ")
        .expect("listening line")
        .to_string();
    let source = programs::source_dir().join("env_probe.py");
    for round in 0..2 {
        let mut client = DapClient::connect(&address).await;
        client.request("initialize", initialize_arguments()).await;
        let mut launch = probe_launch();
        launch["env"] = json!({"KBRIDGE_TEST_VAR": format!("tcp-{round}")});
        let values = client
            .debug_to_breakpoint(
                launch,
                &source,
                programs::break_line(&source),
                &["user_var"],
            )
            .await;
        assert_eq!(values, [format!("'tcp-{round}'")]);
    }
    let pid = server.id().expect("pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    let status = tokio::time::timeout(WAIT, server.wait())
        .await
        .expect("server exits")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !session_dirs(&tmp).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "sessions torn down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
