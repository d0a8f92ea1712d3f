//! The cluster target as Helix can give it, through the real `kbridge dap` and debugpy
//! without a cluster: flat `bridge.*` launch keys and `kbridge dap`'s target flags. A bad
//! value is refused naming the key or flag; empty values (unanswered prompts) and flags
//! without a target leave a local session. The bridged cases run on the fixture cluster
//! in `editor-clients/helix/test_languages.py`.

use kbridge_tests::dap_client::{initialize_arguments, DapClient};
use kbridge_tests::{kbridge_bin, programs, temp_dir};
use serde_json::{json, Value};

fn probe_launch() -> Value {
    let source = programs::source_dir().join("env_probe.py");
    json!({"request": "launch", "program": source, "console": "internalConsole"})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_flat_value_is_refused_naming_the_key() {
    let tmp = temp_dir("flat-bad");
    let mut client = DapClient::spawn(&["--debugger", "debugpy"], &[("TMPDIR", &tmp)]);
    client.request("initialize", initialize_arguments()).await;
    for (key, value, detail) in [
        ("bridge.ports", json!("8080:http"), "`http`"),
        (
            "bridge.servce",
            json!("todo-api"),
            "did you mean `bridge.service`?",
        ),
        ("bridge.hosts", json!("etc"), "`namespace`"),
    ] {
        let mut launch = probe_launch();
        launch[key] = value;
        let response = client.request("launch", launch).await;
        assert_eq!(response["success"], false, "{response}");
        let message = response["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`{key}`")) && message.contains(detail),
            "{message}"
        );
        assert_eq!(response["body"]["error"]["id"], 7306, "{response}");
    }
    client.request("disconnect", json!({})).await;
    assert_eq!(client.exit_code().await, Some(0));
}

#[test]
fn a_bad_target_flag_stops_kbridge_dap_at_start_naming_the_flag() {
    let output = std::process::Command::new(kbridge_bin())
        .args(["dap", "--debugger", "debugpy", "--service", "todo-api"])
        .args(["--ports", "8080", "--ports", "9090:http"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kbridge dap");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`--ports`") && stderr.contains("`http`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unanswered_prompts_and_flags_without_a_target_debug_locally() {
    let tmp = temp_dir("flat-local");
    let mut client = DapClient::spawn(
        &[
            "--debugger",
            "debugpy",
            "--namespace",
            "todo",
            "--ports",
            "8080",
        ],
        &[("TMPDIR", &tmp)],
    );
    client.request("initialize", initialize_arguments()).await;
    // Helix leaves `{1}` empty when the service prompt is not answered.
    let mut launch = probe_launch();
    launch["bridge.service"] = json!("");
    launch["bridge.namespace"] = json!("");
    launch["env"] = json!({"KBRIDGE_TEST_VAR": "from-launch"});
    let seq = client.send_request("launch", launch).await;
    client.event("initialized").await;
    client.request("configurationDone", json!({})).await;
    let response = client.response_to(seq).await;
    assert_eq!(response["success"], true, "{response}");
    // debugpy may send the printed line in pieces; the joined output holds it whole.
    client
        .wait_for_output("probe from-launch native <unset>")
        .await;
    client.event("terminated").await;
    client.request("disconnect", json!({})).await;
    assert_eq!(client.exit_code().await, Some(0));
}
