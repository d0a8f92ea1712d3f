//! Crash safety of isolated sessions (`docs/architecture.md`, "Crash safety" and "Isolation") on the test cluster: two
//! `kbridge connect --isolate-as` sessions share `todo-api`'s router; when one of them is
//! SIGKILLed together with its guardian, its in-cluster restorer takes its route off the
//! Service while the other keeps working, and when the last one dies too, the namespace
//! ends up exactly as it was before either started.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Secret, Service};
use kbridge::session::cluster::workload::session_secret_name;
use kbridge_tests::cluster::{
    self, client_for, eventually, namespace_snapshot, restored_to, Connected,
};
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, temp_dir};
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const SESSIONS: &str = "kbridge.dev/isolated-sessions";

/// `kbridge connect --isolate-as ROUTE_AS` for todo-api, its inbound going to `local_port`.
fn connect(fixture: &TestCluster, tmp: &Path, route_as: &str, local_port: u16) -> Connected {
    let mapping = format!("{local_port}:8080");
    cluster::connect(
        fixture,
        tmp,
        &[("KBRIDGE_IDLE_RESTORE_SECS", "3")],
        &[
            "--namespace",
            &fixture.namespace,
            "--service",
            "todo-api",
            "--agent-image",
            &agent_image(),
            "--isolate-as",
            route_as,
            "--port",
            &mapping,
        ],
    )
}

/// The "local process" of a developer: answers every request with `<who> answers`.
fn laptop(who: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let body = format!("{who} answers");
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// GET `path` from `ip:80` over HTTP/1.0, with `kubernetes-route-as: <route>` if given;
/// the body, or `None` on any failure.
async fn get(ip: &str, path: &str, route: Option<&str>) -> Option<String> {
    let (ip, path) = (ip.to_string(), path.to_string());
    let route = route.map(str::to_string);
    tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect((ip.as_str(), 80))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let header = route
            .map(|r| format!("kubernetes-route-as: {r}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: todo-api\r\n{header}\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default())
    })
    .await
    .ok()?
    .ok()
}

/// Waits until `path` (routed as `route`) answers with a body ending in `ending`.
async fn answers(ip: &str, path: &str, route: Option<&str>, ending: &str) -> String {
    eventually(
        &format!("{path} routed as {route:?} to answer '...{ending}'"),
        Duration::from_secs(120),
        || async move { get(ip, path, route).await.filter(|b| b.ends_with(ending)) },
    )
    .await
}

async fn service(client: &kube::Client, ns: &str) -> Service {
    Api::<Service>::namespaced(client.clone(), ns)
        .get("todo-api")
        .await
        .expect("service/todo-api")
}

/// The Service's isolated sessions (route name → session id).
async fn registered(client: &kube::Client, ns: &str) -> BTreeMap<String, String> {
    service(client, ns)
        .await
        .metadata
        .annotations
        .and_then(|a| a.get(SESSIONS).cloned())
        .map(|raw| serde_json::from_str(&raw).expect("sessions JSON"))
        .unwrap_or_default()
}

async fn names<K>(client: &kube::Client, ns: &str) -> Vec<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .filter_map(|o| o.meta().name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_isolated_session_loses_its_route_and_the_last_one_restores_the_service() {
    let fixture = TestCluster::start_demo("isolation-crash-restorer");
    let ns = fixture.namespace.as_str();
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, ns).await;
    let ip = service(&client, ns)
        .await
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    // Two developers, each with their own machine (registry) and local process.
    let mut alice = connect(
        &fixture,
        &temp_dir("isolation-crash-alice"),
        "alice",
        laptop("alice"),
    );
    let mut bob = connect(
        &fixture,
        &temp_dir("isolation-crash-bob"),
        "bob",
        laptop("bob"),
    );
    assert_eq!(
        registered(&client, ns).await,
        BTreeMap::from([
            ("alice".to_string(), alice.id.clone()),
            ("bob".to_string(), bob.id.clone())
        ])
    );
    let jobs = names::<Job>(&client, ns).await;
    for session in [&alice.id, &bob.id] {
        assert!(
            jobs.iter()
                .any(|j| j.starts_with("kbridge-restorer-") && j.contains(session.as_str())),
            "a restorer Job watches session {session}: {jobs:?}"
        );
    }
    answers(&ip, "/todos", Some("alice"), "alice answers").await;
    answers(&ip, "/todos", Some("bob"), "bob answers").await;
    answers(&ip, "/healthz", None, "ok").await;

    // Bob's laptop dies: the restorer in the cluster takes his route away, alone.
    bob.crash();
    let bob_secret = session_secret_name(&bob.id);
    let started = Instant::now();
    eventually(
        "bob's route, clone, Secret and restorer to go",
        Duration::from_secs(180),
        || async {
            let sessions = registered(&client, ns).await;
            let deployments = names::<Deployment>(&client, ns).await;
            let secrets = names::<Secret>(&client, ns).await;
            let jobs = names::<Job>(&client, ns).await;
            (!sessions.contains_key("bob")
                && !deployments.iter().any(|d| d == "todo-api-kbridge-bob")
                && !secrets.contains(&bob_secret)
                && !jobs.iter().any(|j| j.contains(bob.id.as_str())))
            .then_some(())
        },
    )
    .await;
    eprintln!(
        "bob's route removed by the cluster {:?} after he died",
        started.elapsed()
    );
    assert_eq!(
        registered(&client, ns).await,
        BTreeMap::from([("alice".to_string(), alice.id.clone())]),
        "alice stays registered"
    );
    let deployments = names::<Deployment>(&client, ns).await;
    for still in ["todo-api-kbridge-alice", "todo-api-kbridge-router"] {
        assert!(
            deployments.iter().any(|d| d == still),
            "{still} remains: {deployments:?}"
        );
    }
    assert!(
        names::<Service>(&client, ns)
            .await
            .iter()
            .any(|s| s == "todo-api-kbridge-origin"),
        "the origin Service remains"
    );
    assert!(
        names::<Secret>(&client, ns)
            .await
            .contains(&session_secret_name(&alice.id)),
        "alice's Secret remains"
    );
    // Alice still gets her requests; bob's header now reaches the original pods, as does
    // a request without a route.
    answers(&ip, "/todos", Some("alice"), "alice answers").await;
    answers(&ip, "/healthz", Some("bob"), "ok").await;
    answers(&ip, "/healthz", None, "ok").await;

    // Alice's laptop dies too: the last one out puts the Service back exactly.
    alice.crash();
    let started = Instant::now();
    restored_to(&client, ns, &before, Duration::from_secs(180)).await;
    eprintln!(
        "the service restored by the cluster {:?} after the last session died",
        started.elapsed()
    );
    answers(&ip, "/healthz", Some("alice"), "ok").await;
}
