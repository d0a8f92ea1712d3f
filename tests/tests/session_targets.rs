//! Targets beyond a Deployment, and mistakes that must stop a session before it changes
//! anything: a StatefulSet, a bare Pod (recreated, then recreated as it was), a missing RBAC
//! permission, an unknown token in the config file.

use k8s_openapi::api::core::v1::Pod;
use kbridge_tests::cluster::{client_for, eventually, namespace_snapshot, snapshot_diff};
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, kbridge_bin, temp_dir};
use kube::api::Api;
use std::path::Path;
use std::process::{Command, Output};

fn kbridge(kubeconfig: &Path, tmp: &Path, args: &[&str]) -> Output {
    Command::new(kbridge_bin())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("TMPDIR", tmp)
        .output()
        .expect("run kbridge")
}

/// `kubectl apply` of `manifest` with `${NS}` replaced by the test's namespace.
fn apply(fixture: &TestCluster, tmp: &Path, name: &str, manifest: &str) {
    let path = tmp.join(format!("{name}.yaml"));
    std::fs::write(&path, manifest.replace("${NS}", &fixture.namespace)).expect("write manifest");
    fixture.kubectl(&["apply", "-f", &path.to_string_lossy()]);
}

const EXTRA: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: counter, namespace: ${NS}}
spec:
  serviceName: counter
  replicas: 1
  selector: {matchLabels: {app: counter}}
  template:
    metadata: {labels: {app: counter}}
    spec:
      containers:
      - name: counter
        image: kbridge-samples/stats-api:1.0
        env: [{name: COUNTER_MODE, value: stateful}]
        ports: [{name: http, containerPort: 8081}]
---
apiVersion: v1
kind: Pod
metadata: {name: solo, namespace: ${NS}, labels: {app: solo}, annotations: {team: blue}}
spec:
  containers:
  - name: solo
    image: kbridge-samples/stats-api:1.0
    env: [{name: SOLO_MODE, value: bare}]
    ports: [{name: http, containerPort: 8081}]
---
apiVersion: v1
kind: Service
metadata: {name: solo, namespace: ${NS}}
spec:
  selector: {app: solo}
  ports: [{name: http, port: 80, targetPort: http}]
";

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_and_a_bare_pod_are_bridged_and_put_back() {
    let fixture = TestCluster::start_demo("targets-kinds");
    let ns = fixture.namespace.as_str();
    let tmp = temp_dir("targets-kinds");
    apply(&fixture, &tmp, "extra", EXTRA);
    let client = client_for(&fixture).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    // Wait for the bare pod to run before taking it over.
    eventually(
        "pod/solo to run",
        std::time::Duration::from_secs(180),
        || async {
            let phase = pods.get("solo").await.ok().and_then(|p| p.status?.phase);
            (phase.as_deref() == Some("Running")).then_some(())
        },
    )
    .await;
    let before = namespace_snapshot(&client, ns).await;
    let solo_before = pods.get("solo").await.expect("solo");

    let image = agent_image();
    let run = |target: &'static [&'static str], script: &'static str| {
        let mut args = vec!["run", "--namespace", ns, "--agent-image", &image];
        args.extend(target);
        args.extend(["--", "sh", "-c", script]);
        kbridge(&fixture.kubeconfig, &tmp, &args)
    };
    let out = run(
        &["--workload", "statefulset/counter"],
        "echo MODE=$COUNTER_MODE",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("MODE=stateful"),
        "{stdout} {stderr}"
    );

    let out = run(&["--pod", "solo"], "echo MODE=$SOLO_MODE");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("MODE=bare"),
        "{stdout} {stderr}"
    );
    assert!(stderr.contains("bridged pod/solo"), "{stderr}");

    let diff = snapshot_diff(&before, &namespace_snapshot(&client, ns).await);
    assert!(diff.is_empty(), "namespace as before: {diff:#?}");
    // The bare Pod is a new object with the old spec, labels and annotations.
    let solo_after = pods.get("solo").await.expect("solo recreated");
    assert_ne!(
        solo_after.metadata.uid, solo_before.metadata.uid,
        "recreated"
    );
    assert_eq!(solo_after.metadata.labels, solo_before.metadata.labels);
    assert_eq!(
        solo_after.metadata.annotations,
        solo_before.metadata.annotations
    );
    let (a, b) = (
        solo_after.spec.expect("spec").containers,
        solo_before.spec.expect("spec").containers,
    );
    assert_eq!(a, b, "the original containers are back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_permission_is_named_and_nothing_changes() {
    let fixture = TestCluster::start_demo("targets-rbac");
    let ns = fixture.namespace.as_str();
    let tmp = temp_dir("targets-rbac");
    // A developer who may read everything, create the session's Secret and Lease, but not
    // patch Deployments.
    apply(
        &fixture,
        &tmp,
        "rbac",
        "apiVersion: v1
kind: ServiceAccount
metadata: {name: dev, namespace: ${NS}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: dev-no-patch, namespace: ${NS}}
rules:
- apiGroups: ['']
  resources: [pods, services, endpoints, secrets, configmaps, serviceaccounts, events]
  verbs: [get, list, watch]
- apiGroups: ['']
  resources: [secrets]
  verbs: [create, delete]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [apps]
  resources: [deployments, replicasets, statefulsets]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dev-no-patch, namespace: ${NS}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev-no-patch}
subjects: [{kind: ServiceAccount, name: dev, namespace: ${NS}}]
",
    );
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, ns).await;
    let restricted = fixture.kubeconfig_for_service_account(ns, "dev");
    let out = kbridge(
        &restricted,
        &tmp,
        &[
            "run",
            "--namespace",
            ns,
            "--service",
            "todo-api",
            "--agent-image",
            &agent_image(),
            "--",
            "true",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("may not patch deployments") && stderr.contains(ns),
        "names the verb and resource: {stderr}"
    );
    let diff = snapshot_diff(&before, &namespace_snapshot(&client, ns).await);
    assert!(diff.is_empty(), "nothing left changed: {diff:#?}");
    // `kbridge doctor` says the same before anyone tries.
    let doctor = kbridge(&restricted, &tmp, &["doctor", "--namespace", ns]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&doctor.stdout),
        String::from_utf8_lossy(&doctor.stderr)
    );
    assert!(
        text.contains("patch") && text.contains("deployments"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_token_in_the_config_file_stops_before_the_cluster_changes() {
    let fixture = TestCluster::start_demo("targets-config");
    let ns = fixture.namespace.as_str();
    let tmp = temp_dir("targets-config");
    let client = client_for(&fixture).await;
    let before = namespace_snapshot(&client, ns).await;
    // `kbridge run` bridged to todo-api with `config` as its config file.
    let run_with = |config: &std::path::Path| {
        let config = config.to_string_lossy();
        let args = ["run", "--namespace", ns, "--service", "todo-api"];
        let args: Vec<&str> = args
            .into_iter()
            .chain(["--config", &config, "--", "true"])
            .collect();
        kbridge(&fixture.kubeconfig, &tmp, &args)
    };
    let config = tmp.join("KubernetesLocalProcessConfig.yaml");
    std::fs::write(
        &config,
        "version: 0.1\nenv:\n  - name: OK\n    value: plain\n  - name: DB\n    value: $(secrets:db)\n",
    )
    .expect("write");
    let out = run_with(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 6") && stderr.contains("secrets") && stderr.contains("`DB`"),
        "names line and key: {stderr}"
    );
    // And the older azds-local.env format, with its own token syntax.
    let azds = tmp.join("azds-local.env");
    std::fs::write(&azds, "GOOD=${services.stats-api}\nBAD=${secrets.db}\n").expect("write");
    let out = run_with(&azds);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("line 2") && stderr.contains("secrets"),
        "{stderr}"
    );
    // A token in `localPath` (tokens belong in `env` values) is refused, naming line and
    // key, and nothing is downloaded into a directory named after the token.
    let config = tmp.join("KubernetesLocalProcessConfig.yaml");
    std::fs::write(
        &config,
        "version: 0.1\nvolumeMounts:\n  - name: config\n    localPath: $(volumeMounts:config)\n",
    )
    .expect("write");
    let out = run_with(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("line 4")
            && stderr.contains("localPath")
            && stderr.contains("tokens are expanded only in `env` values"),
        "{stderr}"
    );
    assert!(
        !tmp.join("$(volumeMounts:config)").exists(),
        "no directory named after the token"
    );
    let diff = snapshot_diff(&before, &namespace_snapshot(&client, ns).await);
    assert!(diff.is_empty(), "nothing changed: {diff:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_file_reaches_a_service_of_another_namespace() {
    let fixture = TestCluster::start_demo("targets-other-ns");
    let tmp = temp_dir("targets-other-ns");
    // A second namespace of the test's own, `<namespace>-shared`.
    let shared = fixture.extra_namespace("shared");
    apply(
        &fixture,
        &tmp,
        "shared",
        &"apiVersion: v1
kind: Namespace
metadata: {name: ${SHARED}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: stats-shared, namespace: ${SHARED}}
spec:
  replicas: 1
  selector: {matchLabels: {app: stats-shared}}
  template:
    metadata: {labels: {app: stats-shared}}
    spec:
      containers:
      - name: stats
        image: kbridge-samples/stats-api:1.0
        ports: [{name: http, containerPort: 8081}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: stats-shared, namespace: ${SHARED}}
spec:
  selector: {app: stats-shared}
  ports: [{name: http, port: 80, targetPort: http}]
"
        .replace("${SHARED}", &shared),
    );
    fixture.kubectl(&[
        "-n",
        &shared,
        "rollout",
        "status",
        "deployment/stats-shared",
        "--timeout=180s",
    ]);
    let config = tmp.join("KubernetesLocalProcessConfig.yaml");
    std::fs::write(
        &config,
        format!("version: 0.1\nenv:\n  - name: SHARED_STATS\n    value: http://$(services:stats-shared.{shared})/stats\n"),
    )
    .expect("write");
    // By the variable, and by the name `stats-shared.<shared>` (hosts mode namespace).
    let script = r#"
import os, time, urllib.request
for url in (os.environ["SHARED_STATS"], "http://stats-shared.${SHARED}/stats"):
    for attempt in range(50):
        try:
            print("answer", urllib.request.urlopen(url, timeout=10).read().decode())
            break
        except Exception as error:
            last = error
            time.sleep(0.2)
    else:
        print("failed", url, last)
"#
    .replace("${SHARED}", &shared);
    let out = kbridge(
        &fixture.kubeconfig,
        &tmp,
        &[
            "run",
            "--namespace",
            &fixture.namespace,
            "--service",
            "todo-api",
            "--agent-image",
            &agent_image(),
            "--hosts",
            "namespace",
            "--config",
            &config.to_string_lossy(),
            "--",
            "python3",
            "-c",
            &script,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout} {stderr}");
    assert_eq!(
        stdout.matches("answer").count(),
        2,
        "both ways reach the other namespace's service: {stdout} {stderr}"
    );
    assert!(!stdout.contains("failed"), "{stdout}");
}
