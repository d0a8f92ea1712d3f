//! Isolation on the test cluster (`docs/architecture.md`, "Isolation"): two sessions isolate `todo-api` at once
//! through one shared router; the original Deployment is never touched; requests without a
//! route go to the original pods; a request routed to a session (by header, or through a
//! copied Ingress with the `alice.` host) reaches that session's agent and, over a real
//! agent tunnel, the "laptop" — here a responder in this test; the last session out leaves
//! the namespace exactly as it was. A workload without a Service is refused untouched.
//! On a real cluster (no ingress controller) the request through the Ingress copy is
//! skipped; the copy itself is checked through the API on both.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kbridge::session::cluster::connection::Cluster;
use kbridge::session::cluster::isolation::{
    self, Isolation, IsolationPlan, LABEL_ROUTER_FOR, LABEL_ROUTE_FOR,
};
use kbridge::session::cluster::target::{resolve, ResolvedTarget, WorkloadKind};
use kbridge::session::cluster::tunnels;
use kbridge_config::Target;
use kbridge_tests::agent_image;
use kbridge_tests::fixture::TestCluster;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "todo.example.test";

/// A kube connection whose namespace (`cluster.namespace`) is the test's.
async fn connect(fixture: &TestCluster) -> Cluster {
    Cluster::connect_with(Some(&fixture.kubeconfig), None, Some(&fixture.namespace))
        .await
        .expect("connect")
}

async fn token_secret(cluster: &Cluster, session: &str, token: &str) -> String {
    let name = format!("kbridge-{session}");
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([("token".to_string(), token.to_string())])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("token secret");
    name
}

fn plan(session: &str, secret: &str) -> IsolationPlan {
    IsolationPlan {
        session: session.into(),
        owner: format!("{session}@ci"),
        agent_image: agent_image(),
        token_secret: secret.into(),
        idle_restore_secs: 60,
        ready_timeout: Duration::from_secs(180),
    }
}

/// An object as a user would compare it: without what the API server changes by itself.
fn normalized<T: k8s_openapi::serde::Serialize>(object: &T) -> Value {
    let mut value = serde_json::to_value(object).expect("json");
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = value["metadata"].as_object_mut() {
        for key in ["resourceVersion", "generation", "managedFields"] {
            meta.remove(key);
        }
        // The Deployment controller annotates its revision whenever it gets to it.
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("deployment.kubernetes.io/revision");
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    value
}

async fn list_of<K>(cluster: &Cluster, kind: &str, into: &mut BTreeMap<String, Value>)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let list = Api::<K>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default())
        .await
        .expect("list");
    for item in list.items {
        let value = normalized(&item);
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        into.insert(format!("{kind}/{name}"), value);
    }
}

/// Services, Deployments, Ingresses, ServiceAccounts, Roles and RoleBindings of the
/// test's namespace.
async fn snapshot(cluster: &Cluster) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    list_of::<Service>(cluster, "service", &mut all).await;
    list_of::<Deployment>(cluster, "deployment", &mut all).await;
    list_of::<Ingress>(cluster, "ingress", &mut all).await;
    list_of::<ServiceAccount>(cluster, "serviceaccount", &mut all).await;
    list_of::<Role>(cluster, "role", &mut all).await;
    list_of::<RoleBinding>(cluster, "rolebinding", &mut all).await;
    all
}

fn assert_same(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>, when: &str) {
    let names = |m: &BTreeMap<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(after), names(before), "{when}: the same objects");
    for (name, value) in before {
        assert_eq!(&after[name], value, "{when}: {name} is as it was");
    }
}

/// One HTTP/1.1 request over a fresh connection: `(status, headers and body)`.
async fn http(
    addr: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let attempt = async {
        let mut tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        tcp.read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
        Ok((status, text))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| format!("{addr}: no answer in 10s"))?
}

/// Retries `request` until `accept` holds (120s), returning the last answer either way.
async fn eventually<F, Fut>(
    mut request: F,
    accept: impl Fn(&(u16, String)) -> bool,
) -> Result<(u16, String), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(u16, String), String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let answer = request().await;
        if answer.as_ref().is_ok_and(&accept) || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn cluster_ip(cluster: &Cluster, name: &str) -> String {
    let service = Api::<Service>::namespaced(cluster.client.clone(), &cluster.namespace)
        .get(name)
        .await
        .expect("service");
    let ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    format!("{ip}:80")
}

async fn pods(cluster: &Cluster, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

async fn original_pod_names(cluster: &Cluster) -> Vec<String> {
    pods(cluster, "app=todo-api")
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// The router's route table, from its `/routes` endpoint.
async fn routes(cluster: &Cluster) -> Result<Value, String> {
    let router = pods(cluster, &format!("{LABEL_ROUTER_FOR}=todo-api")).await;
    let ip = router
        .first()
        .and_then(|p| p.status.as_ref()?.pod_ip.clone())
        .ok_or("no router pod IP")?;
    let (_, text) = http(&format!("{ip}:7312"), "router", "/routes", &[]).await?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).map_err(|e| format!("{e}: {text}"))
}

/// Plays the developer's machine: attaches to the clone's agent like a session does and
/// answers every inbound connection with `hello from <who>'s laptop`, reporting each request.
async fn laptop(
    cluster: &Cluster,
    isolation: &Isolation,
    token: &str,
    who: &'static str,
) -> (tokio::sync::mpsc::UnboundedReceiver<String>, impl Drop) {
    let pod = isolation.clone_pods.first().expect("a clone pod").clone();
    let (client, forwarder) = tunnels::connect(cluster, &pod, token)
        .await
        .expect("attach to the clone's agent");
    let mut inbound = client.inbound().expect("inbound connections");
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let _keep = (client, forwarder);
        while let Some(mut connection) = inbound.next().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match connection.stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = seen.send(String::from_utf8_lossy(&head).into_owned());
                let body = format!("hello from {who}'s laptop");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = connection.stream.write_all(response.as_bytes()).await;
                let _ = connection.stream.shutdown().await;
            });
        }
    });
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    (requests, Abort(task))
}

async fn create_ingress(cluster: &Cluster) {
    let ingress: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "todo-web", "namespace": cluster.namespace},
        "spec": {"rules": [{"host": HOST, "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "todo-api", "port": {"name": "http"}}}
        }]}}]}
    }))
    .expect("an ingress");
    Api::<Ingress>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &ingress)
        .await
        .expect("create the ingress");
}

async fn resolve_workload(cluster: &Cluster) -> ResolvedTarget {
    resolve(
        cluster,
        &Target::Workload {
            kind: WorkloadKind::Deployment,
            name: "todo-api".into(),
        },
        None,
    )
    .await
    .expect("resolve deployment/todo-api")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sessions_share_a_router_and_the_last_one_out_restores_everything() {
    let fixture = TestCluster::start_demo("isolation");
    let cluster = connect(&fixture).await;
    create_ingress(&cluster).await;
    let alice_secret = token_secret(&cluster, "alice-session", "alice-token").await;
    let bob_secret = token_secret(&cluster, "bob-session", "bob-token").await;
    let before = snapshot(&cluster).await;
    let originals = original_pod_names(&cluster).await;
    assert_eq!(originals.len(), 2, "{originals:?}");
    let service_ip = cluster_ip(&cluster, "todo-api").await;

    // Alice joins.
    let target = resolve(&cluster, &Target::Service("todo-api".into()), None)
        .await
        .expect("resolve service/todo-api");
    assert_eq!(
        isolation::fronting_service(&cluster, &target)
            .await
            .expect("the Service in front"),
        "todo-api"
    );
    let alice = isolation::join(
        &cluster,
        &target,
        "alice",
        &plan("alice-session", &alice_secret),
    )
    .await
    .expect("alice isolates todo-api");
    assert_eq!(alice.service, "todo-api");
    assert_eq!(alice.clone, "todo-api-kbridge-alice");
    assert_eq!(alice.router, "todo-api-kbridge-router");
    assert_eq!(alice.origin, "todo-api-kbridge-origin");
    assert_eq!(alice.clone_pods.len(), 1, "{alice:?}");
    assert_eq!(
        alice.url.as_deref(),
        Some("http://alice.todo.example.test/")
    );
    assert_eq!(alice.ingresses.len(), 1);
    assert_eq!(alice.ingresses[0].name, "todo-web-kbridge-alice");
    assert!(alice.summary().contains("kubernetes-route-as: alice"));

    let during = snapshot(&cluster).await;
    assert_eq!(
        during["deployment/todo-api"], before["deployment/todo-api"],
        "the original Deployment is untouched"
    );
    assert_eq!(
        original_pod_names(&cluster).await,
        originals,
        "its pods too"
    );
    let clone = &during["deployment/todo-api-kbridge-alice"];
    let container = &clone["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "api");
    assert_eq!(
        container["image"],
        agent_image(),
        "the clone runs the agent"
    );
    assert_eq!(clone["spec"]["replicas"], 1);
    let service = &during["service/todo-api"];
    assert_eq!(
        service["spec"]["selector"],
        json!({"app.kubernetes.io/managed-by": "kbridge", "app.kubernetes.io/component": "router", "kbridge.dev/router-for": "todo-api"}),
        "the Service selects the router"
    );
    assert_eq!(
        service["metadata"]["annotations"]["kbridge.dev/original-selector"],
        r#"{"app":"todo-api"}"#
    );
    assert_eq!(
        service["metadata"]["annotations"]["kbridge.dev/isolated-sessions"],
        r#"{"alice":"alice-session"}"#
    );
    let origin = &during["service/todo-api-kbridge-origin"];
    assert_eq!(origin["spec"]["selector"], json!({"app": "todo-api"}));
    assert_eq!(origin["spec"]["ports"][0]["port"], 8080);
    assert_eq!(origin["spec"]["ports"][0]["targetPort"], "http");
    let original_selector = BTreeMap::from([("app".to_string(), "todo-api".to_string())]);
    let clone_pods = pods(&cluster, &format!("{LABEL_ROUTE_FOR}=todo-api")).await;
    assert_eq!(clone_pods.len(), 1);
    assert!(
        !selects(&original_selector, &clone_pods[0]),
        "the origin Service does not select the clone: {:?}",
        clone_pods[0].metadata.labels
    );
    let copy = &during["ingress/todo-web-kbridge-alice"];
    assert_eq!(copy["spec"]["rules"][0]["host"], "alice.todo.example.test");

    // Traffic: no route → the original pods (through router and origin).
    let plain = eventually(
        || http(&service_ip, "todo-api", "/healthz", &[]),
        |(status, _)| *status == 200,
    )
    .await
    .expect("the Service answers through the router");
    assert!(
        plain.1.ends_with("ok"),
        "the original todo-api answers: {}",
        plain.1
    );
    let table = routes(&cluster).await.expect("router /routes");
    let clone_ip = clone_pods[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("clone pod IP");
    assert_eq!(table["service"], "todo-api");
    assert_eq!(table["routes"]["alice"], clone_ip.as_str(), "{table}");

    // A routed request reaches alice's agent and, through the tunnel, her laptop.
    let (mut alice_requests, alice_laptop) = laptop(&cluster, &alice, "alice-token", "alice").await;
    let routed = eventually(
        || {
            http(
                &service_ip,
                "todo-api",
                "/todos",
                &[("kubernetes-route-as", "alice")],
            )
        },
        |(_, text)| text.ends_with("hello from alice's laptop"),
    )
    .await
    .expect("routed by header");
    assert!(
        routed.1.ends_with("hello from alice's laptop"),
        "{}",
        routed.1
    );
    let seen = alice_requests.recv().await.expect("the laptop saw it");
    assert!(seen.starts_with("GET /todos"), "{seen}");
    let unrouted = http(&service_ip, "todo-api", "/healthz", &[])
        .await
        .expect("plain");
    assert!(
        unrouted.1.ends_with("ok"),
        "others still reach the original: {}",
        unrouted.1
    );

    // Through the copied Ingress: Host alice.<host> → alice; the original host → original.
    if !fixture.skip_on_real(
        "requests through the Ingress copy need kube-fixture's ingress controller (the copy object was checked through the API)",
    ) {
        let ingress = fixture
            .ingress_url()
            .expect("kube-fixture prints its ingress controller's URL")
            .trim_start_matches("http://")
            .to_string();
        let via_copy = eventually(
            || http(&ingress, "alice.todo.example.test", "/from-ingress", &[]),
            |(_, text)| text.ends_with("hello from alice's laptop"),
        )
        .await
        .expect("through the ingress copy");
        assert!(via_copy.1.ends_with("hello from alice's laptop"), "{}", via_copy.1);
        let seen = alice_requests.recv().await.expect("the laptop saw it");
        assert!(seen.starts_with("GET /from-ingress"), "{seen}");
        let via_original = http(&ingress, HOST, "/healthz", &[]).await.expect("original host");
        assert!(via_original.1.ends_with("ok"), "{}", via_original.1);
    }

    // Bob joins too. Plain `resolve` of the Service now finds the router, which join
    // refuses clearly; `isolation::resolve_target` follows the saved original selector.
    let through_service = resolve(&cluster, &Target::Service("todo-api".into()), None).await;
    if let Ok(router_target) = through_service {
        let refused = isolation::join(
            &cluster,
            &router_target,
            "bob",
            &plan("bob-session", &bob_secret),
        )
        .await
        .expect_err("the router is not a target");
        assert!(refused.to_string().contains("router"), "{refused}");
    }
    let bob_target = isolation::resolve_target(&cluster, &Target::Service("todo-api".into()), None)
        .await
        .expect("resolve the isolated service/todo-api");
    assert_eq!(
        bob_target.workload(),
        "deployment/todo-api",
        "not the router"
    );
    assert_eq!(bob_target.container.name, "api");
    let bob = isolation::join(
        &cluster,
        &bob_target,
        "bob",
        &plan("bob-session", &bob_secret),
    )
    .await
    .expect("bob isolates todo-api too");
    assert_eq!(bob.clone, "todo-api-kbridge-bob");
    let taken = isolation::join(
        &cluster,
        &resolve_workload(&cluster).await,
        "bob",
        &plan("carol-session", &bob_secret),
    )
    .await
    .expect_err("bob is taken");
    assert!(taken.to_string().contains("bob-session"), "{taken}");
    let listed = isolation::isolated(&cluster).await.expect("isolated");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0].sessions,
        BTreeMap::from([
            ("alice".to_string(), "alice-session".to_string()),
            ("bob".to_string(), "bob-session".to_string())
        ])
    );
    let table = eventually(
        || async {
            let t = routes(&cluster).await?;
            Ok((200, t.to_string()))
        },
        |(_, t)| t.contains("\"bob\""),
    )
    .await
    .expect("routes");
    assert!(
        table.1.contains("\"alice\"") && table.1.contains("\"bob\""),
        "{}",
        table.1
    );

    // Alice leaves: bob's clone, his Ingress copy and the router stay.
    drop(alice_laptop);
    let out = isolation::leave(&cluster, "todo-api", "alice", Some("alice-session"))
        .await
        .expect("alice leaves");
    assert_eq!(out.removed.as_deref(), Some("alice-session"));
    assert!(!out.last);
    let after_alice = snapshot(&cluster).await;
    assert!(!after_alice.contains_key("deployment/todo-api-kbridge-alice"));
    assert!(!after_alice.contains_key("ingress/todo-web-kbridge-alice"));
    for still in [
        "deployment/todo-api-kbridge-bob",
        "ingress/todo-web-kbridge-bob",
        "deployment/todo-api-kbridge-router",
        "service/todo-api-kbridge-origin",
    ] {
        assert!(after_alice.contains_key(still), "{still} remains");
    }
    assert_eq!(
        after_alice["service/todo-api"]["metadata"]["annotations"]["kbridge.dev/isolated-sessions"],
        r#"{"bob":"bob-session"}"#
    );
    let again = isolation::leave(&cluster, "todo-api", "alice", Some("alice-session"))
        .await
        .expect("leaving twice is fine");
    assert_eq!((again.removed, again.last), (None, false));
    let still_plain = eventually(
        || http(&service_ip, "todo-api", "/healthz", &[]),
        |(status, _)| *status == 200,
    )
    .await
    .expect("still served");
    assert!(still_plain.1.ends_with("ok"));

    // Bob leaves last: everything is as before.
    let out = isolation::leave(&cluster, "todo-api", "bob", Some("bob-session"))
        .await
        .expect("bob leaves");
    assert!(out.last);
    assert_same(
        &before,
        &snapshot(&cluster).await,
        "after the last session left",
    );
    let again = isolation::leave(&cluster, "todo-api", "bob", None)
        .await
        .expect("leaving twice is fine");
    assert_eq!((again.removed, again.last), (None, true));
    assert_same(&before, &snapshot(&cluster).await, "after leaving twice");
    assert!(isolation::isolated(&cluster)
        .await
        .expect("isolated")
        .is_empty());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let mut left = Vec::new();
        for label in [LABEL_ROUTE_FOR, LABEL_ROUTER_FOR] {
            left.extend(
                pods(&cluster, label)
                    .await
                    .into_iter()
                    .filter_map(|p| p.metadata.name),
            );
        }
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kbridge pods left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let back = eventually(
        || {
            http(
                &service_ip,
                "todo-api",
                "/healthz",
                &[("kubernetes-route-as", "alice")],
            )
        },
        |(status, text)| *status == 200 && text.ends_with("ok"),
    )
    .await
    .expect("the Service selects the original pods again");
    assert!(back.1.ends_with("ok"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_without_a_service_is_refused_and_nothing_changes() {
    let fixture = TestCluster::start_demo("isolation-no-service");
    let cluster = connect(&fixture).await;
    let lonely: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "lonely", "namespace": cluster.namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "lonely"}},
            "template": {
                "metadata": {"labels": {"app": "lonely"}},
                "spec": {"containers": [{"name": "stats", "image": "kbridge-samples/stats-api:1.0",
                    "ports": [{"name": "http", "containerPort": 8081}]}]}
            }
        }
    }))
    .expect("a deployment");
    Api::<Deployment>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &lonely)
        .await
        .expect("create lonely");
    let target = resolve(
        &cluster,
        &Target::Workload {
            kind: WorkloadKind::Deployment,
            name: "lonely".into(),
        },
        None,
    )
    .await
    .expect("resolve deployment/lonely");
    let before = snapshot(&cluster).await;
    assert!(isolation::fronting_service(&cluster, &target)
        .await
        .is_err());
    let refused = isolation::join(&cluster, &target, "alice", &plan("s1", "kbridge-s1"))
        .await
        .expect_err("no Service in front");
    let message = refused.to_string();
    assert!(
        message.contains("needs a Service") && message.contains("deployment/lonely"),
        "{message}"
    );
    let bad_name = isolation::join(&cluster, &target, "Alice!", &plan("s1", "kbridge-s1"))
        .await
        .expect_err("bad route name");
    assert!(bad_name.to_string().contains("isolateAs"), "{bad_name}");
    assert_same(&before, &snapshot(&cluster).await, "after the refusals");
    assert!(isolation::isolated(&cluster)
        .await
        .expect("isolated")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_session_is_cleaned_up_from_cluster_state_alone() {
    let fixture = TestCluster::start_demo("isolation-crash");
    let cluster = connect(&fixture).await;
    create_ingress(&cluster).await;
    let secret = token_secret(&cluster, "gone-session", "gone-token").await;
    let before = snapshot(&cluster).await;
    let target = resolve_workload(&cluster).await;
    let isolation = isolation::join(&cluster, &target, "carol", &plan("gone-session", &secret))
        .await
        .expect("carol isolates todo-api");
    assert_eq!(isolation.ingresses.len(), 1);
    // The session dies here without leaving; `kbridge restore` knows only the cluster.
    let listed = isolation::isolated(&cluster).await.expect("isolated");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].service, "todo-api");
    assert_eq!(listed[0].clones, ["carol"]);
    assert_eq!(
        listed[0].original_selector,
        Some(BTreeMap::from([(
            "app".to_string(),
            "todo-api".to_string()
        )]))
    );
    let removed = isolation::leave_all(&cluster, "todo-api")
        .await
        .expect("restore from cluster state");
    assert_eq!(removed, ["carol"]);
    assert_same(&before, &snapshot(&cluster).await, "after leave_all");
    assert!(isolation::leave_all(&cluster, "todo-api")
        .await
        .expect("again")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_that_cannot_finish_undoes_itself() {
    let fixture = TestCluster::start_demo("isolation-undo");
    let cluster = connect(&fixture).await;
    let secret = token_secret(&cluster, "doomed", "doomed-token").await;
    let before = snapshot(&cluster).await;
    let target = resolve_workload(&cluster).await;
    let mut doomed = plan("doomed", &secret);
    doomed.agent_image = "kbridge/no-such-image-anywhere:0".into();
    doomed.ready_timeout = Duration::from_secs(60);
    // The fixture may run any `kbridge/agent` tag, but this image does not exist at all:
    // the pull error ends the wait at once, long before the ready timeout.
    let started = std::time::Instant::now();
    let error = isolation::join(&cluster, &target, "dave", &doomed)
        .await
        .expect_err("nothing can start");
    let message = error.to_string();
    assert!(
        message.contains("cannot pull the agent image 'kbridge/no-such-image-anywhere:0'")
            && message.contains("put back as it was"),
        "{message}"
    );
    assert!(
        started.elapsed() < doomed.ready_timeout,
        "the wait ended on the pull error, not the timeout: {message}"
    );
    assert_same(&before, &snapshot(&cluster).await, "after the failed join");
    let service_ip = cluster_ip(&cluster, "todo-api").await;
    let answer = eventually(
        || http(&service_ip, "todo-api", "/healthz", &[]),
        |(status, _)| *status == 200,
    )
    .await
    .expect("the Service still answers");
    assert!(answer.1.ends_with("ok"));
}
