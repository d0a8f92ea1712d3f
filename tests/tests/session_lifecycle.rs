//! A bridge session's whole life on the test cluster: a request stops at a breakpoint in
//! the local program, a paused debuggee keeps its session past the idle timeout, disconnect
//! leaves the namespace exactly as it was, a killed kbridge is put right by the in-cluster
//! restorer (or by `kbridge restore` alone), a held session is reused and described, and a
//! dropped tunnel comes back.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kbridge_tests::cluster::{
    self, client_for, eventually, free_port, http_get, kill9, namespace_snapshot, pids_with,
    restored_to, Connected,
};
use kbridge_tests::dap_client::{initialize_arguments, DapClient};
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, kbridge_bin, programs, temp_dir};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

async fn cluster_ip(client: &kube::Client, ns: &str, service: &str) -> String {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    services
        .get(service)
        .await
        .expect("svc")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("clusterIP")
}

async fn session_annotation(client: &kube::Client, ns: &str) -> Option<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .get("todo-api")
        .await
        .expect("get")
        .metadata
        .annotations?
        .get("kbridge.dev/session")
        .cloned()
}

async fn restorer_jobs(client: &kube::Client, ns: &str) -> Vec<String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.list(&ListParams::default())
        .await
        .expect("jobs")
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .filter(|n| n.starts_with("kbridge-restorer-"))
        .collect()
}

/// `kbridge connect` for todo-api with `extra` flags.
fn connect(fixture: &TestCluster, tmp: &Path, envs: &[(&str, &str)], extra: &[&str]) -> Connected {
    let target = fixture.todo_api_target();
    let args: Vec<&str> = target
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect();
    cluster::connect(fixture, tmp, envs, &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_stops_at_the_breakpoint_and_disconnect_restores_everything() {
    let fixture = TestCluster::start_demo("lifecycle-dap");
    let ns = fixture.namespace.as_str();
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, ns).await;
    let tmp = temp_dir("lifecycle-dap");
    let config = tmp.join("KubernetesLocalProcessConfig.yaml");
    std::fs::write(
        &config,
        "version: 0.1\nenv:\n  - name: TODO_CONFIG\n    value: $(volumeMounts:config)/config.yaml\n",
    )
    .expect("write config");
    let source = programs::source_dir().join("bridged_app.py");
    let local_port = free_port();
    let mut dap = DapClient::spawn(
        &[],
        &[("TMPDIR", &tmp), ("KUBECONFIG", &fixture.kubeconfig)],
    );
    dap.request("initialize", initialize_arguments()).await;
    let launch = dap
        .send_request(
            "launch",
            json!({
                "type": "bridge", "request": "launch", "name": "todo-api (bridged)",
                "debugger": "debugpy", "program": source, "console": "internalConsole",
                "env": {"APP_PORT": local_port.to_string(), "CHECK_BY_NAME": "1"},
                "bridge": {"namespace": ns, "service": "todo-api", "agentImage": agent_image(),
                           "config": config, "idleRestoreSeconds": 3,
                           "ports": [{"remote": 8080, "local": local_port}]}
            }),
        )
        .await;
    dap.event("initialized").await;
    let line = programs::break_line(&source);
    let set = dap
        .request(
            "setBreakpoints",
            json!({"source": {"path": source}, "breakpoints": [{"line": line}]}),
        )
        .await;
    assert_eq!(set["success"], true, "{set}");
    dap.request("configurationDone", json!({})).await;
    let launched = dap.response_to(launch).await;
    assert_eq!(launched["success"], true, "launch: {launched}");
    assert_eq!(
        restorer_jobs(&client, ns).await.len(),
        1,
        "a restorer Job watches the session"
    );

    // A client in the cluster calls the Service; the local program stops at the breakpoint
    // while the caller waits.
    let ip = cluster_ip(&client, ns, "todo-api").await;
    let caller = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match http_get(&ip, 80, "/") {
                Ok(body) if body.contains("served_by") => return body,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(300)),
                other => panic!("no answer from the bridged service: {other:?}"),
            }
        }
    });
    let stopped = dap.event("stopped").await;
    assert_eq!(stopped["body"]["reason"], "breakpoint", "{stopped}");
    // Paused for longer than the idle timeout (3 s): heartbeats come from kbridge, not
    // from the debuggee, so nothing is restored.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        session_annotation(&client, ns).await.is_some(),
        "still bridged while paused"
    );
    assert_eq!(
        restorer_jobs(&client, ns).await.len(),
        1,
        "the restorer waits"
    );
    let thread = stopped["body"]["threadId"].as_i64().unwrap_or(1);
    let resumed = dap.request("continue", json!({"threadId": thread})).await;
    assert_eq!(resumed["success"], true);
    let body = caller.await.expect("caller");
    let seen: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(seen["served_by"], "local");
    assert_eq!(seen["api_key"], "s3cr3t-from-cluster");
    assert_eq!(seen["grpc"], "native");
    assert!(
        seen["config"]
            .as_str()
            .unwrap_or_default()
            .contains("greeting: hello from the cluster"),
        "the mounted config file, downloaded: {seen}"
    );
    assert_eq!(seen["stats_by_name"]["service"], "stats-api", "{seen}");

    let bye = dap
        .request(
            "disconnect",
            json!({"restart": false, "terminateDebuggee": true}),
        )
        .await;
    assert_eq!(bye["success"], true);
    assert_eq!(dap.exit_code().await, Some(0));
    // Teardown is done when the proxy exits; the Job's pod may take a moment to go.
    restored_to(&client, ns, &before, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_kbridge_is_put_right_by_the_restorer_in_the_cluster() {
    let fixture = TestCluster::start_demo("lifecycle-restorer");
    let ns = fixture.namespace.as_str();
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, ns).await;
    let tmp = temp_dir("lifecycle-restorer");
    let mut session = connect(&fixture, &tmp, &[("KBRIDGE_IDLE_RESTORE_SECS", "3")], &[]);
    assert!(session_annotation(&client, ns).await.is_some());
    assert_eq!(restorer_jobs(&client, ns).await.len(), 1);
    // The laptop is gone: kbridge and its guardian die without a word.
    session.crash();
    let started = Instant::now();
    restored_to(&client, ns, &before, Duration::from_secs(180)).await;
    eprintln!(
        "restored by the cluster {:?} after kbridge died",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_works_from_the_annotations_alone() {
    let fixture = TestCluster::start_demo("lifecycle-restore-cmd");
    let ns = fixture.namespace.as_str();
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, ns).await;
    let tmp = temp_dir("lifecycle-restore-cmd");
    let mut session = connect(&fixture, &tmp, &[("KBRIDGE_RESTORER", "off")], &[]);
    assert!(
        restorer_jobs(&client, ns).await.is_empty(),
        "restorer disabled"
    );
    session.crash();
    assert!(
        session_annotation(&client, ns).await.is_some(),
        "left bridged"
    );
    let status = fixture.kbridge(&tmp, &["status", "--namespace", ns]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("deployment/todo-api"), "{text}");
    let other_tmp = temp_dir("lifecycle-restore-cmd-elsewhere");
    let restore = fixture.kbridge(
        &other_tmp,
        &["restore", "--namespace", ns, "deployment/todo-api"],
    );
    let out = String::from_utf8_lossy(&restore.stdout);
    assert!(
        restore.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    assert!(out.contains("restored deployment/todo-api"), "{out}");
    restored_to(&client, ns, &before, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_session_is_reused_and_described() {
    let fixture = TestCluster::start_demo("lifecycle-held");
    let ns = fixture.namespace.as_str();
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, ns).await;
    let tmp = temp_dir("lifecycle-held");
    let mut session = connect(&fixture, &tmp, &[], &[]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let generation = deployments
        .get("todo-api")
        .await
        .expect("get")
        .metadata
        .generation;

    let diagnostics = fixture.kbridge(&tmp, &["diagnostics", "--json"]);
    let described: Value = serde_json::from_slice(&diagnostics.stdout).expect("diagnostics JSON");
    let me = described
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|d| d["session"]["id"] == session.id.as_str())
        })
        .unwrap_or_else(|| panic!("session listed: {described}"));
    assert_eq!(me["env"]["LOG_LEVEL"], "info");
    let key = me["env"]["API_KEY"].as_str().unwrap_or_default();
    assert!(key.starts_with("<redacted"), "secret redacted: {key}");
    assert!(
        me["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "stats-api")),
        "{me}"
    );
    let tunnels = me["tunnels"].as_array().cloned().unwrap_or_default();
    assert_eq!(tunnels.len(), 2, "one tunnel per replica: {me}");
    assert!(tunnels.iter().all(|t| t["connected"] == true), "{me}");
    let text = fixture.kbridge(&tmp, &["diagnostics"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Tunnels:") && !text.contains("s3cr3t"),
        "{text}"
    );

    // `kbridge run` for the same target reuses it: no rollout, the same environment.
    let started = Instant::now();
    let target = fixture.todo_api_target();
    let mut args = vec!["run"];
    args.extend(target.iter().map(String::as_str));
    args.extend(["--", "sh", "-c", "echo KEY=$API_KEY"]);
    let run = fixture.kbridge(&tmp, &args);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stdout.contains("KEY=s3cr3t-from-cluster"),
        "{stdout} {stderr}"
    );
    assert!(stderr.contains("reusing session"), "{stderr}");
    eprintln!("re-launch on a held session took {took:?}");
    assert_eq!(
        deployments
            .get("todo-api")
            .await
            .expect("get")
            .metadata
            .generation,
        generation,
        "no new rollout"
    );
    assert!(
        session_annotation(&client, ns).await.is_some(),
        "the held session goes on"
    );

    session.stop();
    restored_to(&client, ns, &before, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disconnect_after_debugging_false_keeps_the_session_for_the_next_launch() {
    let fixture = TestCluster::start_demo("lifecycle-keep");
    let ns = fixture.namespace.as_str();
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, ns).await;
    let tmp = temp_dir("lifecycle-keep");
    let source = programs::source_dir().join("env_probe.py");
    let launch = |dap_tmp: &Path| {
        json!({
            "type": "bridge", "request": "launch", "name": "probe", "debugger": "debugpy",
            "program": source, "console": "internalConsole",
            "bridge": {"namespace": ns, "service": "todo-api", "agentImage": agent_image(),
                       "disconnectAfterDebugging": false},
            "cwd": dap_tmp,
        })
    };
    let mut took = Vec::new();
    for round in 0..2 {
        let mut dap = DapClient::spawn(
            &[],
            &[("TMPDIR", &tmp), ("KUBECONFIG", &fixture.kubeconfig)],
        );
        dap.request("initialize", initialize_arguments()).await;
        let started = Instant::now();
        let seq = dap.send_request("launch", launch(&tmp)).await;
        dap.event("initialized").await;
        dap.request("configurationDone", json!({})).await;
        let launched = dap.response_to(seq).await;
        took.push(started.elapsed());
        assert_eq!(launched["success"], true, "round {round}: {launched}");
        let reused = dap
            .wait_for("reuse notice", |m| {
                m["event"] == "output"
                    && m["body"]["output"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("reusing session")
            })
            .await;
        assert!(reused["body"]["output"].as_str().is_some());
        dap.event("terminated").await;
        let bye = dap.request("disconnect", json!({})).await;
        assert_eq!(bye["success"], true);
        assert_eq!(dap.exit_code().await, Some(0));
        assert!(
            session_annotation(&client, ns).await.is_some(),
            "round {round}: the session is kept after the debug session ends"
        );
    }
    eprintln!("first launch {:?}, re-launch {:?}", took[0], took[1]);
    assert!(
        took[1] < took[0],
        "the second launch reuses the held session"
    );
    // The held session is a `kbridge connect` in the background; ending it restores. Ours
    // has this test's kubeconfig and TMPDIR (other tests may share a real cluster's).
    let held = pids_with(&["connect", "--background"]);
    let tmpdir = format!("TMPDIR={}", tmp.display());
    let ours: Vec<u32> = held
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|e| {
                    let environ = String::from_utf8_lossy(&e);
                    environ.contains(&*fixture.kubeconfig.to_string_lossy())
                        && environ.split('\0').any(|v| v == tmpdir)
                })
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(ours.len(), 1, "one held session");
    Command::new("kill")
        .args(["-TERM", &ours[0].to_string()])
        .status()
        .expect("kill");
    restored_to(&client, ns, &before, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_tunnel_reconnects_and_requests_flow_again() {
    let fixture = TestCluster::start_demo("lifecycle-reconnect");
    let client = client_for(&fixture).await;
    let tmp = temp_dir("lifecycle-reconnect");
    // The "local process": answers every connection with a fixed HTTP response.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let local_port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\n\r\nlocal answers");
        }
    });
    let mapping = format!("{local_port}:8080");
    let mut session = connect(&fixture, &tmp, &[], &["--port", &mapping]);
    let ip = cluster_ip(&client, &fixture.namespace, "todo-api").await;
    let ask = |ip: String| async move {
        eventually(
            "an answer from the local process",
            Duration::from_secs(180),
            || {
                let ip = ip.clone();
                async move {
                    tokio::task::spawn_blocking(move || http_get(&ip, 80, "/"))
                        .await
                        .ok()?
                        .ok()
                        .filter(|b| b == "local answers")
                }
            },
        )
        .await
    };
    ask(ip.clone()).await;

    // Cut every tunnel from the cluster's side: the agents die (and their pods restart
    // them), so each port-forward's stream ends under kbridge.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &fixture.namespace);
    let agent_pods: Vec<String> = pods
        .list(&ListParams::default().labels("app=todo-api"))
        .await
        .expect("pods")
        .items
        .into_iter()
        // The agent pods only: on a real cluster the replaced pods may still be terminating.
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.spec.as_ref().is_some_and(|s| {
                    s.containers
                        .iter()
                        .any(|c| c.image.as_deref() == Some(agent_image().as_str()))
                })
        })
        .filter_map(|p| p.metadata.name)
        .collect();
    let mut killed = 0;
    for pod in &agent_pods {
        for pid in pids_with(&["kbridge-agent"]) {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if String::from_utf8_lossy(&environ)
                .split('\0')
                .any(|v| v == format!("KBRIDGE_POD_NAME={pod}"))
            {
                kill9(pid);
                killed += 1;
            }
        }
    }
    assert_eq!(killed, agent_pods.len(), "one agent per pod killed");
    let reconnected = eventually("tunnels back up", Duration::from_secs(180), || {
        let tmp = tmp.clone();
        let kubeconfig = fixture.kubeconfig.clone();
        let id = session.id.clone();
        async move {
            let out = Command::new(kbridge_bin())
                .args(["diagnostics", "--json"])
                .env("KUBECONFIG", kubeconfig)
                .env("TMPDIR", tmp)
                .output()
                .ok()?;
            let all: Value = serde_json::from_slice(&out.stdout).ok()?;
            let me = all
                .as_array()?
                .iter()
                .find(|d| d["session"]["id"] == id.as_str())?
                .clone();
            let tunnels = me["tunnels"].as_array()?.clone();
            tunnels
                .iter()
                .all(|t| t["connected"] == true && t["connects"].as_u64() >= Some(2))
                .then_some(tunnels)
        }
    })
    .await;
    assert_eq!(reconnected.len(), agent_pods.len(), "{reconnected:?}");
    ask(ip).await;
    session.stop();
}
