//! Taking a workload over and giving it back, on the test cluster: the agent replaces
//! the target container in every replica, a second session is refused with who holds the
//! workload, and both `kbridge restore` and the guardian's undo step put it back exactly.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kbridge::session::cluster::connection::Cluster;
use kbridge::session::cluster::rollout::wait_for_agents;
use kbridge::session::cluster::target::{resolve, ResolvedTarget};
use kbridge::session::cluster::workload::{self, SwapPlan};
use kbridge::session::undo::{run_plan, ClusterAt, ClusterStep, UndoStep};
use kbridge_config::Target;
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, kbridge_bin};
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::time::Duration;

async fn take_over(fixture: &TestCluster, session: &str) -> (Cluster, ResolvedTarget) {
    let cluster = Cluster::connect_with(Some(&fixture.kubeconfig), None, Some(&fixture.namespace))
        .await
        .expect("connect");
    let target = resolve(&cluster, &Target::Service("todo-api".into()), None)
        .await
        .expect("resolve");
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &fixture.namespace);
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("kbridge-{session}")),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            "token".to_string(),
            "test-token".to_string(),
        )])),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("token secret");
    let plan = SwapPlan {
        session: session.into(),
        owner: "tester@ci".into(),
        agent_image: agent_image(),
        token_secret: format!("kbridge-{session}"),
        idle_restore_secs: 60,
        kept: Default::default(),
    };
    workload::swap(&cluster, &target, &plan)
        .await
        .expect("swap");
    let mut steps = Vec::new();
    let ready = wait_for_agents(
        &cluster,
        &target,
        &agent_image(),
        &format!("kbridge-{session}"),
        2,
        Duration::from_secs(180),
        |s| steps.push(s),
    )
    .await
    .expect("agent pods get ready");
    assert_eq!(ready.len(), 2, "both replicas run the agent");
    assert_eq!(
        steps.last().map(String::as_str),
        Some("2/2 agent pods ready"),
        "{steps:?}"
    );
    (cluster, target)
}

async fn template_container(cluster: &Cluster) -> serde_json::Value {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let deployment = deployments.get("todo-api").await.expect("deployment");
    let annotations = deployment.metadata.annotations.clone().unwrap_or_default();
    let mut value =
        serde_json::to_value(&deployment.spec.template.spec.expect("pod spec").containers[0])
            .expect("json");
    value["__kbridge_annotations"] = serde_json::json!(annotations
        .keys()
        .filter(|k| k.starts_with("kbridge.dev/"))
        .collect::<Vec<_>>());
    value
}

#[tokio::test(flavor = "multi_thread")]
async fn swap_refuse_second_session_and_restore_with_the_cli() {
    let fixture = TestCluster::start_demo("swap-cli");
    let (cluster, target) = take_over(&fixture, "session-one").await;
    let swapped = template_container(&cluster).await;
    assert_eq!(swapped["image"], agent_image());
    assert_eq!(
        swapped["volumeMounts"][0]["mountPath"], "/etc/todo",
        "mounts kept"
    );

    let second = SwapPlan {
        session: "session-two".into(),
        owner: "other@ci".into(),
        agent_image: agent_image(),
        token_secret: "kbridge-session-two".into(),
        idle_restore_secs: 60,
        kept: Default::default(),
    };
    let refused = workload::swap(&cluster, &target, &second)
        .await
        .expect_err("already held");
    let message = refused.to_string();
    assert!(
        message.contains("tester@ci") && message.contains("session-one"),
        "{message}"
    );

    let output = std::process::Command::new(kbridge_bin())
        .args(["restore", "-n", &fixture.namespace, "deployment/todo-api"])
        .env("KUBECONFIG", &fixture.kubeconfig)
        .output()
        .expect("run kbridge restore");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("restored deployment/todo-api (was held by session session-one)"),
        "{stdout}"
    );
    let mut original = serde_json::to_value(&target.container).expect("json");
    original["__kbridge_annotations"] = serde_json::json!([]);
    assert_eq!(
        template_container(&cluster).await,
        original,
        "the original container is back, annotations gone"
    );

    let again = std::process::Command::new(kbridge_bin())
        .args(["restore", "-n", &fixture.namespace, "--all"])
        .env("KUBECONFIG", &fixture.kubeconfig)
        .output()
        .expect("run kbridge restore --all");
    let again_out = String::from_utf8_lossy(&again.stdout);
    assert!(
        again_out.contains("nothing to restore"),
        "{again_out} {}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guardian_undo_step_restores_only_its_own_session() {
    let fixture = TestCluster::start_demo("swap-undo");
    let (cluster, target) = take_over(&fixture, "session-a").await;
    let step = |session: &str| {
        UndoStep::from(ClusterStep::RestoreWorkload {
            at: ClusterAt {
                kubeconfig: Some(fixture.kubeconfig.clone()),
                context: None,
                namespace: fixture.namespace.clone(),
            },
            kind: "deployment".into(),
            name: "todo-api".into(),
            session: session.into(),
        })
    };
    // Another session's undo must not touch it.
    assert!(run_plan(&[step("someone-else")]).await.is_empty());
    assert_eq!(template_container(&cluster).await["image"], agent_image());
    assert!(run_plan(&[step("session-a")]).await.is_empty());
    let mut original = serde_json::to_value(&target.container).expect("json");
    original["__kbridge_annotations"] = serde_json::json!([]);
    assert_eq!(template_container(&cluster).await, original);
    // Idempotent: running it again is fine.
    assert!(run_plan(&[step("session-a")]).await.is_empty());
}
