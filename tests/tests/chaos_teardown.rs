//! Chaos: what teardown promises. "cluster restored" means the workload serves with its
//! own pods again, not merely that its template was patched back.

use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{kbridge_bin, temp_dir};
use std::process::Command;

/// todo-api's pods, one line each: `<image> <ready> <deletionTimestamp>-` (just `-` when
/// the pod is not being deleted).
fn todo_api_pods(fixture: &TestCluster) -> Vec<String> {
    fixture
        .kubectl(&[
            "-n",
            &fixture.namespace,
            "get",
            "pods",
            "-l",
            "app=todo-api",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image} {.status.conditions[?(@.type==\"Ready\")].status} {.metadata.deletionTimestamp}-{\"\\n\"}{end}",
        ])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn cluster_restored_means_the_original_pods_serve_again() {
    let fixture = TestCluster::start_demo("teardown-ready");
    let tmp = temp_dir("teardown-ready");
    let mut args = vec!["run".to_string()];
    args.extend(fixture.todo_api_target());
    args.extend(["--".into(), "true".into()]);
    let output = Command::new(kbridge_bin())
        .args(&args)
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", &tmp)
        .output()
        .expect("run kbridge");
    // Right after kbridge said so: the pods that stay (agents may still be terminating,
    // out of the Service's endpoints already) are the originals, all Ready.
    let all = todo_api_pods(&fixture);
    let pods: Vec<String> = all.iter().filter(|p| p.ends_with(" -")).cloned().collect();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "session ended, cluster restored: deployment/todo-api serves with its own pods again"
        ),
        "{stderr}"
    );
    assert_eq!(
        pods,
        vec!["kbridge-samples/todo-api:1.0 True -".to_string(); 2],
        "when kbridge says the cluster is restored, the original pods serve, Ready: {all:?}\n{stderr}"
    );
}
