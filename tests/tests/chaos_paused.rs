//! Chaos (issue 12): a debuggee paused on a breakpoint for five minutes, five times its
//! session's `idleRestoreSeconds` (60). Heartbeats come from kbridge, never from the
//! debuggee (`docs/architecture.md`, "Crash safety"), so nothing may be restored meanwhile: the agents stay, the Lease
//! stays fresh, the restorer waits. The request that hit the breakpoint is answered by the
//! local process after `continue`, new requests flow to it too, and disconnect leaves the
//! census as it was.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kbridge_tests::census::{assert_nothing_left, Census, Scope};
use kbridge_tests::cluster::free_port;
use kbridge_tests::dap_client::{initialize_arguments, DapClient};
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, programs, temp_dir};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// How long the debuggee stays paused.
const PAUSE: Duration = Duration::from_secs(300);
/// The session's `idleRestoreSeconds`.
const IDLE_RESTORE_SECS: u64 = 60;

/// GET / from `ip:80`, waiting up to `wait` for the answer (a request held at a
/// breakpoint is answered only after `continue`); the body.
fn get(ip: &str, wait: Duration) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect((ip, 80))?;
    stream.set_read_timeout(Some(wait))?;
    write!(stream, "GET / HTTP/1.0\r\nHost: todo-api\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// Retries [`get`] until the local process answers (the tunnel and the debuggee may still
/// be starting); panics after two minutes of failed attempts.
fn answered_by_local(ip: String, wait: Duration) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match get(&ip, wait) {
            Ok(body) if body.contains("served_by") => {
                return serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
            }
            other if Instant::now() < deadline => {
                let _ = other;
                std::thread::sleep(Duration::from_millis(300));
            }
            other => panic!("no answer from the bridged service: {other:?}"),
        }
    }
}

/// What the cluster says about the session while the debuggee is paused; panics naming
/// whatever was restored or went stale.
async fn assert_still_bridged(client: &kube::Client, ns: &str, paused_for: Duration) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment =
        serde_json::to_value(deployments.get("todo-api").await.expect("deployment")).expect("json");
    let image = deployment
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        image,
        agent_image(),
        "paused {paused_for:?}: the agent is still in todo-api's template"
    );
    assert!(
        deployment
            .pointer("/metadata/annotations/kbridge.dev~1session")
            .is_some(),
        "paused {paused_for:?}: the session's annotation is still there: {}",
        deployment["metadata"]["annotations"]
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let ready_agents = pods
        .list(&ListParams::default().labels("app=todo-api"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let p = serde_json::to_value(p).unwrap_or_default();
            p.pointer("/spec/containers/0/image")
                .and_then(Value::as_str)
                == Some(agent_image().as_str())
                && p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .count();
    assert_eq!(ready_agents, 2, "paused {paused_for:?}: both agents Ready");
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get("kbridge-deployment-todo-api")
        .await
        .unwrap_or_else(|e| panic!("paused {paused_for:?}: the session's Lease is gone: {e}"));
    let renewed = lease
        .spec
        .and_then(|s| s.renew_time)
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    let age = k8s_openapi::jiff::Timestamp::now().as_second() - renewed;
    assert!(
        age <= 30,
        "paused {paused_for:?}: the Lease is fresh (renewed {age} s ago; it lasts 30 s)"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let restorers = jobs
        .list(&ListParams::default())
        .await
        .expect("jobs")
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("kbridge-restorer-"))
        })
        .filter(|j| {
            // A restorer that finished would have restored (or given up).
            serde_json::to_value(j).unwrap_or_default()["status"]["succeeded"]
                .as_i64()
                .unwrap_or(0)
                == 0
        })
        .count();
    assert_eq!(
        restorers, 1,
        "paused {paused_for:?}: the restorer still waits"
    );
}

/// The debuggee is stopped at a breakpoint (by a request from the cluster) for five
/// minutes with `idleRestoreSeconds: 60`: the session stays whole all along, the waiting
/// request gets the local process's answer after `continue`, a new one does too, and
/// disconnect leaves nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_debuggee_paused_for_five_minutes_keeps_its_session() {
    let fixture = TestCluster::start_demo("chaos-paused");
    let ns = fixture.namespace.clone();
    let tmp = temp_dir("chaos-paused");
    let scope = Scope::new(&fixture, &[&tmp]).await;
    let client = scope.client().clone();
    let before = Census::take(&scope).await;
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
                "env": {"APP_PORT": local_port.to_string()},
                "bridge": {"namespace": ns, "service": "todo-api", "agentImage": agent_image(),
                           "idleRestoreSeconds": IDLE_RESTORE_SECS,
                           "ports": [{"remote": 8080, "local": local_port}]}
            }),
        )
        .await;
    dap.event("initialized").await;
    let set = dap
        .request(
            "setBreakpoints",
            json!({"source": {"path": source}, "breakpoints": [{"line": programs::break_line(&source)}]}),
        )
        .await;
    assert_eq!(set["success"], true, "{set}");
    dap.request("configurationDone", json!({})).await;
    let launched = dap.response_to(launch).await;
    assert_eq!(launched["success"], true, "launch: {launched}");

    // A client in the cluster's network calls the Service; it waits while the debuggee is
    // paused (its read timeout is longer than the pause).
    let ip = Api::<Service>::namespaced(client.clone(), &ns)
        .get("todo-api")
        .await
        .expect("service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    let waiting = {
        let ip = ip.clone();
        tokio::task::spawn_blocking(move || answered_by_local(ip, PAUSE + Duration::from_secs(120)))
    };
    let stopped = dap.event("stopped").await;
    assert_eq!(stopped["body"]["reason"], "breakpoint", "{stopped}");
    let paused = Instant::now();
    // Checked every 15 s for five minutes: nothing restored, nothing stale.
    let mut checks = 0;
    while paused.elapsed() < PAUSE {
        assert_still_bridged(&client, &ns, paused.elapsed()).await;
        assert!(
            !waiting.is_finished(),
            "the paused request is still waiting"
        );
        checks += 1;
        tokio::time::sleep(Duration::from_secs(15).min(PAUSE.saturating_sub(paused.elapsed())))
            .await;
    }
    assert_still_bridged(&client, &ns, paused.elapsed()).await;
    eprintln!(
        "paused {:?}: {checks} checks, still bridged",
        paused.elapsed()
    );

    // No more stops, then continue: the waiting request is answered by the local process.
    let cleared = dap
        .request(
            "setBreakpoints",
            json!({"source": {"path": source}, "breakpoints": []}),
        )
        .await;
    assert_eq!(cleared["success"], true, "{cleared}");
    let thread = stopped["body"]["threadId"].as_i64().unwrap_or(1);
    let resumed = dap.request("continue", json!({"threadId": thread})).await;
    assert_eq!(resumed["success"], true, "{resumed}");
    let seen = waiting.await.expect("the paused request");
    assert_eq!(seen["served_by"], "local", "{seen}");
    assert_eq!(seen["api_key"], "s3cr3t-from-cluster", "{seen}");
    let again = tokio::task::spawn_blocking(move || answered_by_local(ip, Duration::from_secs(30)))
        .await
        .expect("a new request");
    assert_eq!(again["served_by"], "local", "{again}");

    let bye = dap
        .request(
            "disconnect",
            json!({"restart": false, "terminateDebuggee": true}),
        )
        .await;
    assert_eq!(bye["success"], true, "{bye}");
    assert_eq!(dap.exit_code().await, Some(0));
    assert_nothing_left(
        &scope,
        &before,
        Duration::from_secs(120),
        "the debug session",
    )
    .await;
}
