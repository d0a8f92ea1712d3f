//! What a real cluster adds to a session's start (`docs/real-cluster.md`):
//! an agent image the cluster cannot pull, a namespace that enforces PodSecurity
//! `restricted`. Each failure must come at once, say what to do, and leave the workload
//! as it was; a workload that meets the policy must bridge as anywhere else.

use kbridge_tests::cluster::{client_for, namespace_snapshot, restored_to};
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, kbridge_bin, temp_dir};
use std::process::{Command, Output};
use std::time::Duration;

/// `kbridge run` bridged to todo-api with `agent_image`, running `sh -c script`.
fn run(fixture: &TestCluster, tag: &str, agent_image: &str, script: &str) -> Output {
    run_with(fixture, tag, agent_image, &[], script)
}

/// [`run`] with more `kbridge run` flags (`extra`) before the command.
fn run_with(
    fixture: &TestCluster,
    tag: &str,
    agent_image: &str,
    extra: &[&str],
    script: &str,
) -> Output {
    Command::new(kbridge_bin())
        .args([
            "run",
            "--namespace",
            &fixture.namespace,
            "--service",
            "todo-api",
        ])
        .args(["--agent-image", agent_image, "--hosts", "off"])
        .args(extra)
        .args(["--", "sh", "-c", script])
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", temp_dir(tag))
        .output()
        .expect("run kbridge")
}

/// Labels the test's namespace with PodSecurity `restricted` (enforced).
fn enforce_restricted(fixture: &TestCluster) {
    fixture.kubectl(&[
        "label",
        "namespace",
        &fixture.namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "--overwrite",
    ]);
}

/// A session with an agent image the cluster cannot pull (`kbridge run` with `extra` flags)
/// must fail at once — on the pull error, not a ready timeout — say which image and how
/// to name another, and leave the namespace as it was.
async fn an_unpullable_agent_image_fails_at_once(tag: &str, extra: &[&str]) {
    let fixture = TestCluster::start_demo(tag);
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, &fixture.namespace).await;
    // Nothing listens on port 1: the pull fails as it does for a registry the cluster
    // cannot reach, or a name nobody pushed.
    let missing = "127.0.0.1:1/kbridge/agent-that-was-never-pushed:0";
    let output = run_with(&fixture, tag, missing, extra, "echo bridged");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the session failed: {stderr}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("bridged"),
        "the command never ran"
    );
    assert!(
        stderr.contains(&format!("cannot pull the agent image '{missing}'"))
            && stderr.contains("--agent-image"),
        "the error names the image and how to provide one: {stderr}"
    );
    // Not a ready timeout's wording: the wait ended on the pull error itself.
    assert!(
        !stderr.contains("were not ready after") && !stderr.contains("was not ready after"),
        "{stderr}"
    );
    assert_eq!(
        fixture.todo_api_template_image(),
        "kbridge-samples/todo-api:1.0"
    );
    restored_to(
        &client,
        &fixture.namespace,
        &before,
        Duration::from_secs(120),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_image_the_cluster_cannot_pull_fails_at_once_and_changes_nothing() {
    an_unpullable_agent_image_fails_at_once("unpullable-agent", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_image_the_cluster_cannot_pull_ends_an_isolated_session_at_once() {
    // The isolation router, the first pod to run the agent image, cannot be pulled.
    an_unpullable_agent_image_fails_at_once("unpullable-isolated", &["--isolate-as", "alice"])
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_that_meets_podsecurity_restricted_bridges_in_a_restricted_namespace() {
    let fixture = TestCluster::start_demo("restricted-ok");
    // What production charts set: non-root, no escalation, no capabilities, seccomp.
    fixture.kubectl(&[
        "-n",
        &fixture.namespace,
        "patch",
        "deployment/todo-api",
        "--type",
        "strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{
            "securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},
            "containers":[{"name":"api","securityContext":{
                "allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}}}"#,
    ]);
    fixture.rollout_status("todo-api");
    enforce_restricted(&fixture);
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, &fixture.namespace).await;

    let output = run(
        &fixture,
        "restricted-ok",
        &agent_image(),
        "echo \"key=$API_KEY\"",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the session worked: {stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("key=s3cr3t-from-cluster"),
        "the command saw the pod's secret: {stderr}"
    );
    restored_to(
        &client,
        &fixture.namespace,
        &before,
        Duration::from_secs(120),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_pods_the_podsecurity_level_refuses_end_the_session_at_once() {
    let fixture = TestCluster::start_demo("restricted-refused");
    if !fixture.is_real() {
        eprintln!("skipped on kube-fixture: it has no PodSecurity admission (fixtures/README.md, differences)");
        return;
    }
    // The app's pods predate the label and keep running; new pods are refused.
    enforce_restricted(&fixture);
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, &fixture.namespace).await;

    let output = run(
        &fixture,
        "restricted-refused",
        &agent_image(),
        "echo bridged",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the session failed: {stderr}");
    assert!(
        stderr.contains("refuses to create the agent pods of deployment/todo-api")
            && stderr.contains("violates PodSecurity")
            && stderr.contains("pod-security.kubernetes.io/enforce"),
        "the error names the policy and what to do: {stderr}"
    );
    assert_eq!(
        fixture.todo_api_template_image(),
        "kbridge-samples/todo-api:1.0"
    );
    restored_to(
        &client,
        &fixture.namespace,
        &before,
        Duration::from_secs(120),
    )
    .await;
}
