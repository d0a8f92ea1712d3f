//! Target resolution against the test cluster's sample apps: a Service leads to its
//! Deployment and container, names that do not exist get "did you mean", and an
//! unreachable cluster says so.

use kbridge::session::cluster::connection::Cluster;
use kbridge::session::cluster::target::{resolve, WorkloadKind};
use kbridge_config::Target;
use kbridge_tests::fixture::TestCluster;

#[tokio::test(flavor = "multi_thread")]
async fn service_workload_and_pod_resolve_to_the_deployment() {
    let fixture = TestCluster::start_demo("target");
    let cluster = Cluster::connect_with(Some(&fixture.kubeconfig), None, Some(&fixture.namespace))
        .await
        .expect("connect to the test cluster");
    let by_service = resolve(&cluster, &Target::Service("todo-api".into()), None)
        .await
        .expect("service resolves");
    assert_eq!(by_service.kind, WorkloadKind::Deployment);
    assert_eq!(by_service.workload(), "deployment/todo-api");
    assert_eq!(by_service.container.name, "api");
    assert_eq!(by_service.ports()[0].port, 8080);
    assert_eq!(
        by_service.pods.len(),
        2,
        "both replicas: {:?}",
        by_service.pods
    );

    let pod = by_service.pods[0].clone();
    let by_pod = resolve(&cluster, &Target::Pod(pod), None)
        .await
        .expect("pod resolves");
    assert_eq!(by_pod.workload(), "deployment/todo-api");

    let by_workload = resolve(
        &cluster,
        &Target::Workload {
            kind: WorkloadKind::Deployment,
            name: "stats-api".into(),
        },
        None,
    )
    .await
    .expect("workload resolves");
    assert_eq!(by_workload.service.as_ref().map(|_| ()), None);
    assert_eq!(
        by_workload.container.name,
        by_workload.pod_spec.containers[0].name
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_get_clear_errors() {
    let fixture = TestCluster::start_demo("target-errors");
    let ns = fixture.namespace.as_str();
    let cluster = Cluster::connect_with(Some(&fixture.kubeconfig), None, Some(ns))
        .await
        .expect("connect to the test cluster");
    let err = resolve(&cluster, &Target::Service("todo-ap".into()), None)
        .await
        .expect_err("typo");
    assert_eq!(
        err.to_string(),
        format!("service 'todo-ap' not found in namespace '{ns}'; did you mean 'todo-api'?")
    );
    let err = resolve(&cluster, &Target::Service("todo-api".into()), Some("apj"))
        .await
        .expect_err("no such container");
    assert!(
        err.to_string()
            .contains("no container 'apj'; its containers are: api"),
        "{err}"
    );

    // A cluster that is not there: the error says so instead of hanging or panicking.
    let dead = std::fs::read_to_string(&fixture.kubeconfig)
        .expect("kubeconfig")
        .replace(&fixture.url, "https://127.0.0.1:9");
    let dead_path = fixture.dir.join("dead-kubeconfig");
    std::fs::write(&dead_path, dead).expect("write");
    let cluster = Cluster::connect_with(Some(&dead_path), None, Some(ns))
        .await
        .expect("config loads");
    let err = resolve(&cluster, &Target::Service("todo-api".into()), None)
        .await
        .expect_err("unreachable");
    assert!(err.to_string().contains("cannot be reached"), "{err}");
}
