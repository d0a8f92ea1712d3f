//! `kbridge run`, `env` and `connect` on the test cluster: a plain command gets the
//! pod's environment and reaches Services by name, its exit code comes back, and every
//! command leaves the workload as it was.

use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, kbridge_bin, temp_dir};
use std::process::Command;

/// `kbridge connect` to todo-api, writing the session's environment to `env_file`.
fn connect(
    fixture: &TestCluster,
    tmp: &std::path::Path,
    env_file: &std::path::Path,
    stderr: std::process::Stdio,
) -> std::process::Child {
    Command::new(kbridge_bin())
        .arg("connect")
        .args(fixture.todo_api_target())
        .arg("--env-file")
        .arg(env_file)
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", tmp)
        .stderr(stderr)
        .spawn()
        .expect("start kbridge connect")
}

#[test]
fn run_gives_a_command_the_cluster_and_its_exit_code() {
    let fixture = TestCluster::start_demo("cli-run");
    let tmp = temp_dir("cli-run");
    let script = format!(
        "import os, urllib.request, sys\n\
print('key', os.environ['API_KEY'])\n\
print('stats', urllib.request.urlopen('http://stats-api.{}/stats', timeout=10).read().decode())\n\
sys.exit(3)\n",
        fixture.namespace
    );
    let target = fixture.todo_api_target();
    let mut args = vec!["run"];
    args.extend(target.iter().map(String::as_str));
    args.extend(["--hosts", "namespace", "--", "python3", "-c", &script]);
    let output = fixture.kbridge(&tmp, &args);
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
    assert_eq!(
        fixture.todo_api_template_image(),
        "kbridge-samples/todo-api:1.0"
    );
}

#[test]
fn env_prints_the_rewritten_environment() {
    let fixture = TestCluster::start_demo("cli-env");
    let tmp = temp_dir("cli-env");
    let target = fixture.todo_api_target();
    let mut args = vec!["env"];
    args.extend(target.iter().map(String::as_str));
    args.extend(["--format", "json"]);
    let output = fixture.kbridge(&tmp, &args);
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
    assert_eq!(
        fixture.todo_api_template_image(),
        "kbridge-samples/todo-api:1.0"
    );
}

#[test]
fn connect_holds_the_session_until_sigterm() {
    let fixture = TestCluster::start_demo("cli-connect");
    let tmp = temp_dir("cli-connect");
    let env_file = tmp.join("session.env");
    let mut child = connect(&fixture, &tmp, &env_file, std::process::Stdio::piped());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while !env_file.exists() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the session did not come up");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        fixture.todo_api_template_image(),
        agent_image(),
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
    assert_eq!(
        fixture.todo_api_template_image(),
        "kbridge-samples/todo-api:1.0"
    );
}

#[test]
fn targets_lists_services_with_their_ports() {
    let fixture = TestCluster::start_demo("cli-targets");
    let tmp = temp_dir("cli-targets");
    let ns = fixture.namespace.as_str();
    let output = fixture.kbridge(&tmp, &["targets", "-n", ns, "--output", "json"]);
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
    assert_eq!(todo["namespace"], ns);
    // The named target port `http` is resolved through the pods' container ports, so an
    // editor can propose the port the app listens on.
    assert_eq!(
        todo["ports"],
        serde_json::json!([{"port": 80, "name": "http", "targetPort": 8080, "targetPortName": "http"}])
    );
    // From a context whose namespace has none of them, every namespace's are listed.
    let all = fixture.kbridge(&tmp, &["targets", "--all-namespaces", "--output", "json"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).expect("json");
    assert!(
        all.as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["service"] == "todo-api" && t["namespace"] == ns)),
        "{all}"
    );
    let typo = fixture.kbridge(&tmp, &["targets", "-n", ns, "--context", "nope"]);
    assert!(!typo.status.success());
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("nope"),
        "a bad context is named"
    );
}

/// Marks todo-api as held by `holder` through its Lease, renewed `age` seconds ago.
async fn hold(fixture: &TestCluster, holder: &str, age: i64) {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let client = kbridge_tests::cluster::client_for(fixture).await;
    let renewed = k8s_openapi::jiff::Timestamp::from_second(
        k8s_openapi::jiff::Timestamp::now().as_second() - age,
    )
    .expect("time");
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("kbridge-deployment-todo-api".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(30),
            renew_time: Some(MicroTime(renewed)),
            ..Default::default()
        }),
    };
    kube::Api::<Lease>::namespaced(client, &fixture.namespace)
        .create(&Default::default(), &lease)
        .await
        .expect("create lease");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_holder_is_refused_and_a_stale_one_restored_first() {
    let fixture = TestCluster::start_demo("cli-lease");
    let tmp = temp_dir("cli-lease");
    let ns = fixture.namespace.as_str();
    hold(&fixture, "alice-session", 0).await;
    let target_flags = fixture.todo_api_target();
    let mut args = vec!["run"];
    args.extend(target_flags.iter().map(String::as_str));
    args.extend(["--", "true"]);
    let refused = fixture.kbridge(&tmp, &args);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("in use by kbridge session alice-session"),
        "{stderr}"
    );
    assert_eq!(
        fixture.todo_api_template_image(),
        "kbridge-samples/todo-api:1.0",
        "nothing changed"
    );

    // The holder's kbridge died an hour ago, leaving the workload swapped.
    fixture.kubectl(&["-n", ns, "delete", "lease", "kbridge-deployment-todo-api"]);
    let cluster = kbridge::session::cluster::connection::Cluster::connect_with(
        Some(&fixture.kubeconfig),
        None,
        Some(ns),
    )
    .await
    .expect("connect");
    let target = kbridge::session::cluster::target::resolve(
        &cluster,
        &kbridge_config::Target::Service("todo-api".into()),
        None,
    )
    .await
    .expect("resolve");
    let plan = kbridge::session::cluster::workload::SwapPlan {
        session: "ghost".into(),
        owner: "ghost@gone".into(),
        agent_image: agent_image(),
        token_secret: "kbridge-ghost".into(),
        idle_restore_secs: 60,
        kept: Default::default(),
    };
    // Its agents ran (their token Secret existed) when it died.
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("kbridge-ghost".into()),
            ..Default::default()
        },
        string_data: Some([("token".to_string(), "ghost-token".to_string())].into()),
        ..Default::default()
    };
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(cluster.client.clone(), ns)
        .create(&Default::default(), &secret)
        .await
        .expect("ghost secret");
    kbridge::session::cluster::workload::swap(&cluster, &target, &plan)
        .await
        .expect("ghost swap");
    hold(&fixture, "ghost", 3600).await;
    let output = fixture.kbridge(&tmp, &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("session ghost holding deployment/todo-api is gone"),
        "{stderr}"
    );
    assert_eq!(
        fixture.todo_api_template_image(),
        "kbridge-samples/todo-api:1.0"
    );
    let leases = fixture.kubectl(&["-n", ns, "get", "leases", "-o", "name"]);
    assert!(
        !leases.contains("kbridge-deployment-todo-api"),
        "the session's lease is gone: {leases}"
    );
}

#[test]
fn a_replaced_pod_gets_its_own_tunnel() {
    use std::io::{Read, Write};
    let fixture = TestCluster::start_demo("cli-replaced");
    let tmp = temp_dir("cli-replaced");
    // The "local process": answers every connection with a marker.
    let local_port = kbridge_tests::local_marker_server();
    let env_file = tmp.join("session.env");
    let mapping = format!("{local_port}:8080");
    let mut child = Command::new(kbridge_bin())
        .arg("connect")
        .args(fixture.todo_api_target())
        .args(["--port", &mapping, "--env-file"])
        .arg(&env_file)
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", &tmp)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start kbridge connect");
    let wait_until = |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    };
    wait_until("the session", Box::new(|| env_file.exists()));
    let pods = |f: &TestCluster| {
        f.kubectl(&["-n", &f.namespace, "get", "pods", "-l", "app=todo-api", "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.metadata.deletionTimestamp}-{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"])
    };
    let before = pods(&fixture);
    // A real cluster may still be terminating the original pods when the session is up:
    // the victim must be one the session's ReplicaSet will replace (not being deleted).
    let victim = before
        .lines()
        .find(|l| l.ends_with(" -True"))
        .and_then(|l| l.split(' ').next())
        .expect("a ready pod that is not being deleted")
        .to_string();
    fixture.kubectl(&["-n", &fixture.namespace, "delete", "pod", &victim]);
    let mut replacement_ip = String::new();
    wait_until(
        "a ready replacement pod",
        Box::new(|| {
            let now = pods(&fixture);
            let new = now.lines().find(|l| {
                !before.contains(l.split(' ').next().unwrap_or("-")) && l.ends_with(" -True")
            });
            if let Some(line) = new {
                replacement_ip = line.split(' ').nth(1).unwrap_or_default().to_string();
            }
            !replacement_ip.is_empty()
        }),
    );
    // The replacement's agent accepts on 8080 and must hand the connection to us.
    let ask = |ip: &str| -> String {
        let Ok(mut s) = std::net::TcpStream::connect((ip, 8080)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    wait_until(
        "the replacement's tunnel",
        Box::new(|| ask(&replacement_ip).contains("local-marker")),
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(child.wait().expect("wait").success());
    assert_eq!(
        fixture.todo_api_template_image(),
        "kbridge-samples/todo-api:1.0"
    );
}

#[test]
fn doctor_checks_reachability_and_permissions() {
    let fixture = TestCluster::start_demo("cli-doctor");
    let tmp = temp_dir("cli-doctor");
    // The agent image check: on a real cluster the image CI pushed must resolve in its
    // registry; kube-fixture pulls nothing, so there the image names a loopback port nobody
    // listens on, which doctor reports as unknown without failing (the same on every
    // machine, with or without internet).
    let real_image = std::env::var("KBRIDGE_AGENT_IMAGE")
        .ok()
        .filter(|i| !i.is_empty());
    let image = real_image
        .clone()
        .unwrap_or_else(|| "127.0.0.1:9/kbridge/agent:dev".to_string());
    let output = fixture.kbridge(
        &tmp,
        &["doctor", "-n", &fixture.namespace, "--agent-image", &image],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("reachable (Kubernetes"), "{stdout}");
    let image_line = if real_image.is_some() {
        format!("ok       {image} resolves")
    } else {
        "unknown  cannot reach the registry 127.0.0.1:9".to_string()
    };
    assert!(stdout.contains(&image_line), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "RBAC: every permission a session needs in namespace {}",
            fixture.namespace
        )),
        "{stdout}"
    );
    let dead = std::fs::read_to_string(&fixture.kubeconfig)
        .expect("kubeconfig")
        .replace(&fixture.url, "https://127.0.0.1:9");
    let dead_path = tmp.join("dead-kubeconfig");
    std::fs::write(&dead_path, dead).expect("write");
    let output = Command::new(kbridge_bin())
        .arg("doctor")
        .env("KUBECONFIG", &dead_path)
        .env("TMPDIR", &tmp)
        .output()
        .expect("run doctor");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(stdout.contains("cannot be reached"), "{stdout}");
}

/// An agent an older kbridge left behind: a pod whose health endpoint answers `/status` as
/// kbridge-agent 0.0.9 would, with its token from a session's Secret, as agents have.
const OLD_AGENT: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: kbridge-old-session}
stringData: {token: old}
---
apiVersion: v1
kind: Pod
metadata: {name: old-agent}
spec:
  containers:
  - name: api
    image: busybox
    command: [python3, -c, "import http.server, json\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        body = json.dumps({'health': 'ok', 'state': 'orphaned', 'idleSecs': 900, 'idleRestoreSecs': 60, 'sessions': 0, 'version': '0.0.9'}).encode()\n        self.send_response(200)\n        self.send_header('Content-Length', str(len(body)))\n        self.end_headers()\n        self.wfile.write(body)\nhttp.server.HTTPServer(('0.0.0.0', 7312), H).serve_forever()\n"]
    env:
    - name: KBRIDGE_SESSION_TOKEN
      valueFrom: {secretKeyRef: {name: kbridge-old-session, key: token}}
"#;

#[test]
fn doctor_reports_agent_versions_of_a_held_session_and_a_leftover() {
    let fixture = TestCluster::start_demo("cli-doctor-versions");
    // The stand-in old agent is a python3 HTTP server: kube-fixture runs it as a process,
    // a real cluster would need an image with python3, and none can be pulled here.
    if fixture.skip_on_real("the stand-in old agent needs an image with python3") {
        return;
    }
    let tmp = temp_dir("cli-doctor-versions");
    let env_file = tmp.join("session.env");
    let mut held = connect(&fixture, &tmp, &env_file, std::process::Stdio::null());
    let manifest = tmp.join("old-agent.yaml");
    std::fs::write(&manifest, OLD_AGENT).expect("write manifest");
    let manifest = manifest.to_string_lossy().into_owned();
    fixture.kubectl(&["-n", &fixture.namespace, "apply", "-f", &manifest]);

    // Until the session is up and the old agent answers (or three minutes pass).
    let old_line = format!(
        "mismatch pod {}/old-agent (session old-session not on this machine): agent 0.0.9 (reported), this kbridge {}",
        fixture.namespace,
        env!("CARGO_PKG_VERSION")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let (output, stdout) = loop {
        let output = fixture.kbridge(&tmp, &["doctor", "-n", &fixture.namespace]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if (env_file.exists() && stdout.contains(&old_line)) || std::time::Instant::now() > deadline
        {
            break (output, stdout);
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    };
    Command::new("kill")
        .args(["-TERM", &held.id().to_string()])
        .status()
        .expect("kill");
    let ended = held.wait().expect("wait");

    assert!(stdout.contains("\nAgent versions:\n"), "{stdout}");
    assert!(stdout.contains(&old_line), "{stdout}");
    assert!(
        stdout.contains("kbridge restore KIND/NAME"),
        "says how to put it back: {stdout}"
    );
    let held_ok = format!("ok       pod {}/todo-api-", fixture.namespace);
    let held_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(held_ok.trim_start()))
        .collect();
    assert!(
        !held_lines.is_empty(),
        "the held session's agents: {stdout}"
    );
    for line in &held_lines {
        assert!(
            line.contains("(held session ")
                && line.contains(&format!("on this machine, pid {})", held.id()))
                && line.ends_with(&format!("agent {}", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
    }
    assert!(
        output.status.success(),
        "a leftover of someone else's does not fail doctor: {stdout}"
    );
    assert!(ended.success());
}
