//! The product end to end on the test cluster (kube-fixture or a real one): an editor-side client launches a
//! program through `kbridge dap` with `bridge.service`; requests to the Service reach
//! the local program, which sees the pod's secret env and reaches another Service
//! through the rewritten service variables; disconnect puts the cluster back.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kbridge_tests::cluster::client_for;
use kbridge_tests::dap_client::{initialize_arguments, DapClient};
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, programs, temp_dir};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// GET / over plain HTTP/1.0; returns the body.
fn http_get(host: &str, port: u16) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(stream, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn service_traffic_reaches_the_local_program_and_disconnect_restores() {
    bridged_round_trip("off").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_namespace_mode_resolves_service_names_for_the_debuggee() {
    let seen = bridged_round_trip("namespace").await;
    assert_eq!(
        seen["stats_by_name"]["service"], "stats-api",
        "http://stats-api/stats by name: {seen}"
    );
    let hosts = std::fs::read_to_string("/etc/hosts").expect("read /etc/hosts");
    assert!(
        !hosts.contains("kbridge session"),
        "the machine's hosts file is untouched"
    );
}

/// Runs the bridged app through a session in `hosts` mode; returns what it answered.
async fn bridged_round_trip(hosts: &str) -> Value {
    let fixture = TestCluster::start_demo(&format!("bridge-{hosts}"));
    let ns = fixture.namespace.as_str();
    let client = client_for(&fixture).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let before = serde_json::to_value(
        deployments
            .get("todo-api")
            .await
            .expect("get")
            .spec
            .template,
    )
    .expect("json");

    let tmp = temp_dir("bridge");
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
                "debugger": "debugpy", "program": programs::source_dir().join("bridged_app.py"),
                "console": "internalConsole",
                "env": {"APP_PORT": local_port.to_string(), "CHECK_BY_NAME": if hosts == "off" { "" } else { "1" }},
                "bridge": {"namespace": ns, "service": "todo-api", "hosts": hosts,
                           "agentImage": agent_image(),
                           "ports": [{"remote": 8080, "local": local_port}]}
            }),
        )
        .await;
    dap.event("initialized").await;
    dap.request("configurationDone", json!({})).await;
    let launched = dap.response_to(launch).await;
    assert_eq!(launched["success"], true, "launch: {launched}");
    let notice = dap
        .wait_for("bridged notice", |m| {
            m["event"] == "output"
                && m["body"]["output"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("bridged deployment/todo-api")
        })
        .await;
    assert!(
        notice["body"]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("2 replica(s)"),
        "{notice}"
    );

    // A client in the cluster's network calls the Service: its ClusterIP, port 80.
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let cluster_ip = services
        .get("todo-api")
        .await
        .expect("svc")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("clusterIP");
    let mut body = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline {
        match http_get(&cluster_ip, 80) {
            Ok(text) if text.contains("served_by") => {
                body = text;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let seen: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(seen["served_by"], "local");
    assert_eq!(
        seen["api_key"], "s3cr3t-from-cluster",
        "the pod's secret env var"
    );
    assert_eq!(seen["log_level"], "info", "the pod's plain env var");
    assert_eq!(seen["grpc"], "native");
    assert_eq!(
        seen["stats"]["service"], "stats-api",
        "stats-api reached through the tunnel: {seen}"
    );

    // What VS Code sends when the user stops a launched program.
    let bye = dap
        .request(
            "disconnect",
            json!({"restart": false, "terminateDebuggee": true}),
        )
        .await;
    assert_eq!(bye["success"], true);
    assert_eq!(dap.exit_code().await, Some(0));
    let after = serde_json::to_value(
        deployments
            .get("todo-api")
            .await
            .expect("get")
            .spec
            .template,
    )
    .expect("json");
    assert_eq!(after, before, "the pod template is exactly as it was");
    let secrets: Api<Secret> = Api::namespaced(client, ns);
    let left: Vec<String> = secrets
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .filter(|n| n.starts_with("kbridge-"))
        .collect();
    assert!(left.is_empty(), "session secret deleted: {left:?}");
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_service_fails_the_launch_with_its_class_and_a_suggestion() {
    let fixture = TestCluster::start_demo("bridge-unknown");
    let ns = fixture.namespace.clone();
    let tmp = temp_dir("bridge-unknown");
    let mut dap = DapClient::spawn(
        &[],
        &[("TMPDIR", &tmp), ("KUBECONFIG", &fixture.kubeconfig)],
    );
    dap.request("initialize", initialize_arguments()).await;
    let response = dap
        .request(
            "launch",
            json!({
                "type": "bridge", "request": "launch", "debugger": "debugpy",
                "program": programs::source_dir().join("bridged_app.py"),
                "bridge": {"namespace": ns, "service": "todo-ap", "agentImage": agent_image()}
            }),
        )
        .await;
    assert_eq!(response["success"], false, "{response}");
    let message = response["body"]["error"]["format"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("service 'todo-ap' not found")
            && message.contains("did you mean 'todo-api'?"),
        "{message}"
    );
    assert_eq!(response["body"]["error"]["id"], 7303, "{response}");
    assert_eq!(response["body"]["error"]["variables"]["kind"], "notFound");
    dap.request("disconnect", json!({})).await;
    assert_eq!(dap.exit_code().await, Some(0));
}
