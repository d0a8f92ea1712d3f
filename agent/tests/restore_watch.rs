//! `restore-watch` end to end against a minimal fake Kubernetes API: a real agent process goes
//! orphaned, and the restorer sends the merge patch that puts the original container back.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kbridge_agent::restore_watch::{run_with_client, AgentSource, WatchOptions};
use kbridge_protocol::contract::labels::ANNOTATION_SESSION;
use kbridge_protocol::contract::restore::RestoreRecord;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const PATH: &str = "/apis/apps/v1/namespaces/todo/deployments/todo-api";

#[derive(Default)]
struct FakeApi {
    object: Option<Value>,
    patches: Vec<(String, Value)>,
}

fn record() -> RestoreRecord {
    RestoreRecord {
        session: "s-123".into(),
        owner: "alice@laptop".into(),
        started: "2026-12-01T13:00:00Z".into(),
        original_container: json!({"name": "api", "image": "todo-api:1"}),
        agent_container: None,
    }
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "todo-api", "namespace": "todo", "resourceVersion": "42",
                     "annotations": record().to_annotations()},
        "spec": {"template": {"spec": {"containers": [
            {"name": "api", "image": "kbridge/agent:dev"},
            {"name": "sidecar", "image": "envoy"}
        ]}}}
    })
}

/// Answers GET and PATCH of one deployment over HTTP/1.1 keep-alive.
async fn fake_api(state: Arc<Mutex<FakeApi>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_conn(s, state.clone()));
        }
    });
    url
}

async fn serve_conn(mut s: TcpStream, state: Arc<Mutex<FakeApi>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let mut parts = head.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = path.split('?').next().unwrap_or("");
        let content_type = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        let (code, resp) = {
            let mut st = state.lock().unwrap();
            match (method, path == PATH, st.object.clone()) {
                ("GET", true, Some(o)) => (200, o),
                ("PATCH", true, Some(mut o)) => {
                    let patch: Value = serde_json::from_slice(&body).unwrap();
                    st.patches.push((content_type, patch.clone()));
                    o["metadata"]["annotations"] = json!({});
                    o["spec"] = patch["spec"].clone();
                    st.object = Some(o.clone());
                    (200, o)
                }
                _ => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
            }
        };
        let body = resp.to_string();
        let out = format!(
            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn options(agent: &AgentProcess, session: &str) -> WatchOptions {
    WatchOptions {
        agents: AgentSource::Address(agent.health.to_string()),
        lease: None,
        secret: None,
        namespace: "todo".into(),
        workload: "deployment/todo-api".into(),
        session: session.into(),
        interval: Duration::from_millis(100),
        unreachable_grace: Duration::from_secs(60),
    }
}

async fn client(url: &str) -> kube::Client {
    let config = kube::Config::new(url.parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_watch_restores_an_orphaned_workload() {
    let state = Arc::new(Mutex::new(FakeApi {
        object: Some(deployment()),
        patches: Vec::new(),
    }));
    let url = fake_api(state.clone()).await;
    // Nobody ever connects to this agent: it turns orphaned after a second.
    let agent = AgentProcess::start(&[("KBRIDGE_IDLE_RESTORE_SECS", "1".into())]).await;
    let outcome = tokio::time::timeout(
        GUARD,
        run_with_client(
            client(&url).await,
            options(&agent, "s-123"),
            CancellationToken::new(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(outcome.contains("restored"), "{outcome}");

    let st = state.lock().unwrap();
    assert_eq!(st.patches.len(), 1);
    let (ct, patch) = &st.patches[0];
    assert_eq!(ct, "application/merge-patch+json");
    assert_eq!(patch["metadata"]["resourceVersion"], "42");
    assert_eq!(
        patch["metadata"]["annotations"][ANNOTATION_SESSION],
        Value::Null
    );
    let containers = patch["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers[0], json!({"name": "api", "image": "todo-api:1"}));
    assert_eq!(containers[1]["image"], "envoy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_watch_leaves_other_sessions_and_restored_workloads_alone() {
    let state = Arc::new(Mutex::new(FakeApi {
        object: Some(deployment()),
        patches: Vec::new(),
    }));
    let url = fake_api(state.clone()).await;
    let agent = AgentProcess::start(&[("KBRIDGE_IDLE_RESTORE_SECS", "1".into())]).await;
    // The workload belongs to another session now.
    let outcome = run_with_client(
        client(&url).await,
        options(&agent, "s-old"),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(outcome.contains("s-123"), "{outcome}");
    // The workload is gone.
    state.lock().unwrap().object = None;
    let outcome = run_with_client(
        client(&url).await,
        options(&agent, "s-123"),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(outcome.contains("no longer exists"), "{outcome}");
    assert!(state.lock().unwrap().patches.is_empty());
}
