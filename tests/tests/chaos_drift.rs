//! Chaos: someone deploys the workload while a session holds it.
//!
//! kbridge must notice within seconds and say who and what, and teardown must keep their
//! changes — undoing only its own — instead of putting the saved original back.

use kbridge_tests::connect::Connect;
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::temp_dir;
use std::time::Duration;

/// The next version of the app: the same program under another image reference, so it
/// runs on kube-fixture and on a real cluster alike.
const NEXT_IMAGE: &str = "docker.io/kbridge-samples/todo-api:1.0";

#[test]
fn a_deploy_during_a_session_is_told_and_kept() {
    let fixture = TestCluster::start_demo("drift");
    let tmp = temp_dir("drift");
    let ns = fixture.namespace.clone();
    let mut session = Connect::todo_api(&fixture, &tmp, &["--port", "18081:8080"], &[]);

    // A configuration change: the agent stays, the session goes on.
    fixture.kubectl(&[
        "-n",
        &ns,
        "set",
        "env",
        "deployment/todo-api",
        "-c",
        "api",
        "LOG_LEVEL=debug-v2",
    ]);
    let took = session.wait_for("the env change notice", Duration::from_secs(10), |s| {
        s.contains("deployment/todo-api was changed during this session")
            && s.contains("env LOG_LEVEL")
    });
    eprintln!("noticed the env change after {took:?}");
    if fixture.is_real() {
        assert!(
            session.stderr().contains("by kubectl-set (Update at "),
            "names who, from managedFields: {}",
            session.stderr()
        );
    }

    // A new image: the session no longer gets traffic, and says so.
    fixture.kubectl(&[
        "-n",
        &ns,
        "set",
        "image",
        "deployment/todo-api",
        &format!("api={NEXT_IMAGE}"),
    ]);
    let took = session.wait_for("the image change notice", Duration::from_secs(10), |s| {
        s.contains(&format!("image (now {NEXT_IMAGE})"))
            && s.contains("requests no longer reach this machine")
    });
    eprintln!("noticed the image change after {took:?}");

    // Teardown keeps their changes and undoes only kbridge's.
    let status = session.terminate();
    assert!(status.success(), "{}", session.stderr());
    let container = |path: &str| {
        fixture.kubectl(&[
            "-n",
            &ns,
            "get",
            "deployment/todo-api",
            "-o",
            &format!("jsonpath={{.spec.template.spec.containers[0].{path}}}"),
        ])
    };
    assert_eq!(container("image"), NEXT_IMAGE, "their image stays");
    let env = container("env[*].name");
    assert!(
        !env.contains("KBRIDGE_"),
        "kbridge's variables are gone: {env}"
    );
    assert_eq!(
        container("env[?(@.name==\"LOG_LEVEL\")].value"),
        "debug-v2",
        "their variable stays"
    );
    assert_eq!(
        container("env[?(@.name==\"STATS_URL\")].value"),
        "http://stats-api/stats",
        "the original's other variables are back"
    );
    assert_eq!(
        container("readinessProbe.httpGet.port"),
        "http",
        "the original probe is back"
    );
    let annotations = fixture.kubectl(&[
        "-n",
        &ns,
        "get",
        "deployment/todo-api",
        "-o",
        "jsonpath={.metadata.annotations}",
    ]);
    assert!(
        !annotations.contains("kbridge.dev/"),
        "kbridge's annotations are gone: {annotations}"
    );
    fixture.rollout_status("todo-api");
}
