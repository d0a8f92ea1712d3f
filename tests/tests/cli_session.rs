//! `kbridge run`, `env` and `connect` on the fixture cluster: a plain command gets the
//! pod's environment and reaches Services by name, its exit code comes back, and every
//! command leaves the workload as it was.

use kbridge_tests::fixture::FixtureCluster;
use kbridge_tests::{kbridge_bin, temp_dir};
use std::process::{Command, Output};

const TARGET: [&str; 6] = [
    "--namespace",
    "todo",
    "--service",
    "todo-api",
    "--agent-image",
    "kbridge/agent:dev",
];

fn kbridge(fixture: &FixtureCluster, tmp: &std::path::Path, args: &[&str]) -> Output {
    Command::new(kbridge_bin())
        .args(args)
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", tmp)
        .output()
        .expect("run kbridge")
}

fn template_image(fixture: &FixtureCluster) -> String {
    fixture.kubectl(&[
        "-n",
        "todo",
        "get",
        "deploy/todo-api",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

#[test]
fn run_gives_a_command_the_cluster_and_its_exit_code() {
    let fixture = FixtureCluster::start_demo("cli-run");
    let tmp = temp_dir("cli-run");
    let script = "import os, urllib.request, sys\n\
print('key', os.environ['API_KEY'])\n\
print('stats', urllib.request.urlopen('http://stats-api.todo/stats', timeout=10).read().decode())\n\
sys.exit(3)\n";
    let mut args = vec!["run"];
    args.extend(TARGET);
    args.extend(["--hosts", "namespace", "--", "python3", "-c", script]);
    let output = kbridge(&fixture, &tmp, &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "the command's exit code: {stdout} {stderr}"
    );
    assert!(
        stdout.contains("key s3cr3t-from-cluster"),
        "{stdout} {stderr}"
    );
    assert!(
        stdout.contains("\"service\":\"stats-api\""),
        "{stdout} {stderr}"
    );
    assert!(
        stderr.contains("session ended, cluster restored"),
        "{stderr}"
    );
    assert_eq!(template_image(&fixture), "kbridge-samples/todo-api:1.0");
}

#[test]
fn env_prints_the_rewritten_environment() {
    let fixture = FixtureCluster::start_demo("cli-env");
    let tmp = temp_dir("cli-env");
    let mut args = vec!["env"];
    args.extend(TARGET);
    args.extend(["--format", "json"]);
    let output = kbridge(&fixture, &tmp, &args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let env: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(env["API_KEY"], "s3cr3t-from-cluster");
    assert_eq!(env["GRPC_DNS_RESOLVER"], "native");
    let host = env["STATS_API_SERVICE_HOST"].as_str().unwrap_or_default();
    assert!(
        host.starts_with("127.1."),
        "service links point at local endpoints: {env}"
    );
    assert!(
        env.get("PATH").is_none() && env.get("HOSTNAME").is_none(),
        "no image variables: {env}"
    );
    assert_eq!(template_image(&fixture), "kbridge-samples/todo-api:1.0");
}

#[test]
fn connect_holds_the_session_until_sigterm() {
    let fixture = FixtureCluster::start_demo("cli-connect");
    let tmp = temp_dir("cli-connect");
    let env_file = tmp.join("session.env");
    let mut child = Command::new(kbridge_bin())
        .arg("connect")
        .args(TARGET)
        .arg("--env-file")
        .arg(&env_file)
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", &tmp)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kbridge connect");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !env_file.exists() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the session did not come up");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        template_image(&fixture),
        "kbridge/agent:dev",
        "bridged while connected"
    );
    let text = std::fs::read_to_string(&env_file).expect("env file");
    assert!(text.contains("API_KEY=\"s3cr3t-from-cluster\""), "{text}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let status = child.wait().expect("wait");
    assert!(status.success());
    assert_eq!(template_image(&fixture), "kbridge-samples/todo-api:1.0");
}

#[test]
fn targets_lists_services_with_their_ports() {
    let fixture = FixtureCluster::start_demo("cli-targets");
    let tmp = temp_dir("cli-targets");
    let output = kbridge(
        &fixture,
        &tmp,
        &["targets", "-n", "todo", "--output", "json"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let targets: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let todo = targets
        .as_array()
        .and_then(|t| t.iter().find(|t| t["service"] == "todo-api"))
        .cloned()
        .expect("todo-api listed");
    assert_eq!(todo["namespace"], "todo");
    assert_eq!(
        todo["ports"],
        serde_json::json!([{"port": 80, "name": "http", "targetPort": "http"}])
    );
    let typo = kbridge(
        &fixture,
        &tmp,
        &["targets", "-n", "todo", "--context", "nope"],
    );
    assert!(!typo.status.success());
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("nope"),
        "a bad context is named"
    );
}
