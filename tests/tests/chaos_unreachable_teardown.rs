//! Chaos: the session ends while the cluster's API server is unreachable.
//!
//! kbridge cannot undo its changes in the cluster then. It must say so in words — what
//! is left, who puts it back (the in-cluster restorer) and the command that does it by
//! hand — and exit promptly; once the API server is back, the restorer restores.
//!
//! On a real cluster this stops the shared kube-apiserver process, so this file holds
//! this one test only (test binaries run one after another).

use kbridge_tests::connect::Connect;
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::temp_dir;
use std::time::{Duration, Instant};

/// Brings the API server back if the test fails while it is down.
struct Outage<'a>(&'a TestCluster, bool);

impl Outage<'_> {
    fn end(&mut self) {
        if self.1 {
            self.0.api_outage(false);
            self.1 = false;
        }
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

#[test]
fn teardown_without_the_cluster_explains_and_the_restorer_restores() {
    let fixture = TestCluster::start_demo("unreachable-teardown");
    let tmp = temp_dir("unreachable-teardown");
    // The restorer acts after 10 s without kbridge.
    let mut session = Connect::todo_api(
        &fixture,
        &tmp,
        &["--port", "18080:8080"],
        &[("KBRIDGE_IDLE_RESTORE_SECS", "10")],
    );

    fixture.api_outage(true);
    let mut outage = Outage(&fixture, true);
    let asked = Instant::now();
    let status = session.terminate();
    let took = asked.elapsed();
    let said = session.stderr();
    eprintln!("teardown without the cluster took {took:?}:\n{said}");
    assert!(
        !status.success(),
        "an incomplete teardown is not a success: {said}"
    );
    assert!(took < Duration::from_secs(20), "a prompt exit: {took:?}");
    let ns = &fixture.namespace;
    for expected in [
        "the cluster's API server cannot be reached",
        &format!("deployment/todo-api in namespace {ns} still runs kbridge's agent"),
        &format!("kbridge restore -n {ns} deployment/todo-api"),
        "in-cluster restorer puts it back by itself",
    ] {
        assert!(said.contains(expected), "says `{expected}`: {said}");
    }
    assert_eq!(
        said.matches("cannot delete").count(),
        0,
        "no list of raw client errors: {said}"
    );

    // The API server returns: the in-cluster restorer puts the workload back.
    outage.end();
    let deadline = Instant::now() + Duration::from_secs(120);
    while fixture.todo_api_template_image() != "kbridge-samples/todo-api:1.0" {
        assert!(
            Instant::now() < deadline,
            "the restorer did not restore todo-api within 120 s of the API server's return"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    fixture.rollout_status("todo-api");
    eprintln!(
        "restored by the in-cluster restorer {:?} after kbridge exited",
        asked.elapsed()
    );
}
