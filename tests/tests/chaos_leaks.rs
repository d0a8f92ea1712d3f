//! Chaos (issue 12): many sessions, concurrent sessions, and a full disk under the state
//! directory. Each test takes a census of the machine and the namespace before and after
//! ([`kbridge_tests::census`]) and fails with the difference if anything stayed behind.

use kbridge_tests::census::{assert_nothing_left, settled, Census, Scope};
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{kbridge_bin, temp_dir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The value of `API_KEY` in todo-api's pods (from Secret `todo-secret`).
const API_KEY: &str = "s3cr3t-from-cluster";
/// The original image of todo-api's container.
const TODO_API_IMAGE: &str = "kbridge-samples/todo-api:1.0";

/// `kbridge run` on `service` whose command prints the pod's API_KEY.
fn run_printing_the_key(fixture: &TestCluster, tmp: &Path, service: &str) -> Output {
    Command::new(kbridge_bin())
        .args([
            "run",
            "--namespace",
            &fixture.namespace,
            "--service",
            service,
        ])
        .args(["--agent-image", &kbridge_tests::agent_image()])
        .args(["--", "sh", "-c", "echo KEY=$API_KEY"])
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", tmp)
        .output()
        .expect("run kbridge")
}

/// Asserts a run worked: exit 0, its command saw the pod's secret, teardown finished.
fn assert_bridged(output: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what}: kbridge run failed ({:?}): {stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(&format!("KEY={API_KEY}")),
        "{what}: the command got the pod's environment: {stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("session ended, cluster restored"),
        "{what}: teardown finished: {stderr}"
    );
}

fn summary(times: &[Duration]) -> String {
    let mut sorted = times.to_vec();
    sorted.sort();
    format!(
        "min {:.1} s, median {:.1} s, max {:.1} s",
        sorted[0].as_secs_f64(),
        sorted[sorted.len() / 2].as_secs_f64(),
        sorted[sorted.len() - 1].as_secs_f64()
    )
}

/// Twenty `kbridge run` sessions, one after the other, on the same workload (and the same
/// state directory): each command gets the cluster, each teardown completes, and afterwards
/// the census is exactly as before — no process, fd, netns, hosts entry, state file or
/// cluster object accumulates.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_sessions_in_a_row_leave_nothing_behind() {
    let fixture = TestCluster::start_demo("chaos-twenty");
    let tmp = temp_dir("chaos-twenty");
    let scope = Scope::new(&fixture, &[&tmp]).await;
    let before = Census::take(&scope).await;
    let mut times = Vec::new();
    for round in 1..=20 {
        let started = Instant::now();
        let output = run_printing_the_key(&fixture, &tmp, "todo-api");
        times.push(started.elapsed());
        assert_bridged(&output, &format!("session {round}/20"));
    }
    let settled =
        assert_nothing_left(&scope, &before, Duration::from_secs(180), "20 sessions").await;
    assert_eq!(fixture.todo_api_template_image(), TODO_API_IMAGE);
    eprintln!(
        "20 sessions in a row: {}; census equal {:.1} s after the last",
        summary(&times),
        settled.as_secs_f64()
    );
}

/// A copy of todo-api named `name` (Deployment with one replica, and its Service), from
/// the cluster's own objects so it runs wherever todo-api runs.
fn copy_of_todo_api(fixture: &TestCluster, name: &str) -> Vec<Value> {
    let ns = fixture.namespace.as_str();
    let get = |what: &str| -> Value {
        serde_json::from_str(&fixture.kubectl(&["-n", ns, "get", what, "-o", "json"]))
            .expect("kubectl JSON")
    };
    let labels = json!({ "app": name });
    let mut deployment = get("deployment/todo-api");
    deployment["metadata"] = json!({ "name": name, "labels": labels });
    deployment["spec"]["replicas"] = json!(1);
    deployment["spec"]["selector"] = json!({ "matchLabels": labels });
    deployment["spec"]["template"]["metadata"] = json!({ "labels": labels });
    if let Some(o) = deployment.as_object_mut() {
        o.remove("status");
    }
    let mut service = get("service/todo-api");
    service["metadata"] = json!({ "name": name });
    service["spec"] = json!({
        "selector": labels,
        "ports": service["spec"]["ports"].clone(),
    });
    if let Some(o) = service.as_object_mut() {
        o.remove("status");
    }
    vec![deployment, service]
}

/// Five `kbridge run` at once on five workloads (copies of todo-api) from one machine
/// (one state directory): every command gets its pod's environment, every workload is
/// restored, and the census is exactly as before.
#[tokio::test(flavor = "multi_thread")]
async fn five_concurrent_runs_on_five_workloads_leave_nothing_behind() {
    let fixture = TestCluster::start_demo("chaos-five");
    let ns = fixture.namespace.clone();
    let names: Vec<String> = (1..=5).map(|i| format!("todo-api-c{i}")).collect();
    let manifest = fixture.dir.join("copies.json");
    let items: Vec<Value> = names
        .iter()
        .flat_map(|n| copy_of_todo_api(&fixture, n))
        .collect();
    std::fs::write(
        &manifest,
        json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )
    .expect("write the copies' manifest");
    // kube-fixture serves no OpenAPI schema for kubectl's client-side validation.
    fixture.kubectl(&[
        "-n",
        &ns,
        "apply",
        "--validate=false",
        "-f",
        &manifest.to_string_lossy(),
    ]);
    for name in &names {
        fixture.rollout_status(name);
    }
    let tmp = temp_dir("chaos-five");
    let scope = Scope::new(&fixture, &[&tmp]).await;
    let before = Census::take(&scope).await;
    let started = Instant::now();
    let runs: Vec<_> = names
        .iter()
        .map(|name| {
            let (tmp, name) = (tmp.clone(), name.clone());
            let kubeconfig: PathBuf = fixture.kubeconfig.clone();
            let ns = ns.clone();
            std::thread::spawn(move || {
                let begun = Instant::now();
                let output = Command::new(kbridge_bin())
                    .args(["run", "--namespace", &ns, "--service", &name])
                    .args(["--agent-image", &kbridge_tests::agent_image()])
                    .args(["--", "sh", "-c", "echo KEY=$API_KEY"])
                    .env("KUBECONFIG", kubeconfig)
                    .env("TMPDIR", tmp)
                    .output()
                    .expect("run kbridge");
                (name, output, begun.elapsed())
            })
        })
        .collect();
    let mut times = Vec::new();
    for run in runs {
        let (name, output, took) = run.join().expect("run thread");
        assert_bridged(&output, &name);
        times.push(took);
    }
    let wall = started.elapsed();
    let settled = assert_nothing_left(
        &scope,
        &before,
        Duration::from_secs(180),
        "5 concurrent runs",
    )
    .await;
    eprintln!(
        "5 concurrent runs: {} each, {:.1} s in all; census equal {:.1} s after",
        summary(&times),
        wall.as_secs_f64(),
        settled.as_secs_f64()
    );
}

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("run mount (this test needs root)");
        assert!(
            status.success(),
            "mount a {size} tmpfs on {}",
            path.display()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds it open: detach it so the machine is not left with it.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// The state directory (`$TMPDIR/kbridge`, where the logs go too: the two are not
/// separable) on a filesystem that is already full. Two sessions, one with the default
/// hosts mode (which writes the debuggee's hosts copy into the state directory) and one
/// with `--hosts off`: each must work (its command gets the cluster), tear down completely
/// (census), and let logging fail quietly — at most one line about it on stderr. Every
/// problem of both is listed before the test fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_log_filesystem_degrades_logging_quietly() {
    let fixture = TestCluster::start_demo("chaos-fullfs");
    let tmp = temp_dir("chaos-fullfs");
    let _mounted = Tmpfs::mount(&tmp, "64k");
    // Fill it: write until the filesystem refuses.
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(tmp.join("filler")).expect("create filler");
        let block = [0u8; 4096];
        let full = loop {
            if let Err(error) = filler.write_all(&block) {
                break error;
            }
        };
        assert_eq!(
            full.raw_os_error(),
            Some(28),
            "ENOSPC when the tmpfs is full: {full}"
        );
    }
    let scope = Scope::new(&fixture, &[&tmp]).await;
    let before = Census::take(&scope).await;
    let mut problems = Vec::new();
    for hosts in ["auto", "off"] {
        let output = Command::new(kbridge_bin())
            .arg("run")
            .args(fixture.todo_api_target())
            .args(["--hosts", hosts, "--", "sh", "-c", "echo KEY=$API_KEY"])
            .env("KUBECONFIG", &fixture.kubeconfig)
            .env("TMPDIR", &tmp)
            .output()
            .expect("run kbridge");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!(
            "--hosts {hosts} with a full state directory: {:?}; stderr:\n{stderr}",
            output.status
        );
        if !output.status.success() || !stdout.contains(&format!("KEY={API_KEY}")) {
            problems.push(format!(
                "--hosts {hosts}: the session did not work ({:?}): {}",
                output.status,
                stderr.lines().last().unwrap_or_default()
            ));
        }
        let complaints: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                ["error", "cannot", "no space", "failed", "unable"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .collect();
        if complaints.len() > 1 {
            problems.push(format!(
                "--hosts {hosts}: {} lines of complaints on stderr (at most one): {complaints:#?}",
                complaints.len()
            ));
        }
        if let Err(diff) = settled(&scope, &before, Duration::from_secs(120)).await {
            problems.push(format!(
                "--hosts {hosts}: left behind (census before → after):\n  {}",
                diff.join("\n  ")
            ));
        }
        if fixture.todo_api_template_image() != TODO_API_IMAGE {
            problems.push(format!("--hosts {hosts}: todo-api not restored"));
        }
    }
    assert!(
        problems.is_empty(),
        "with a full state directory:\n{}",
        problems.join("\n")
    );
}
