//! The route header on outbound requests (`docs/architecture.md`, "Isolation"): in a session isolated as `alice`,
//! plain HTTP requests the local process sends to a cluster Service carry
//! `kubernetes-route-as: alice`, unless they set the header themselves; a session that is
//! not isolated adds nothing.

use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, kbridge_bin, temp_dir};
use std::process::Command;

/// GETs stats-api's `/headers` by name, with `argv[1]` as the route header when given,
/// and prints the JSON answer.
const SCRIPT: &str = "import sys, urllib.request\n\
req = urllib.request.Request('http://stats-api/headers')\n\
if len(sys.argv) > 1:\n    req.add_header('Kubernetes-Route-As', sys.argv[1])\n\
print(urllib.request.urlopen(req, timeout=10).read().decode())\n";

/// Runs the script through `kbridge run` (`isolate_as` given or not) and returns the
/// headers stats-api saw.
fn headers_seen(
    fixture: &TestCluster,
    isolate_as: Option<&str>,
    sent_route: Option<&str>,
) -> serde_json::Value {
    let tmp = temp_dir("isolation-outbound");
    let image = agent_image();
    let mut args = vec![
        "run",
        "--namespace",
        &fixture.namespace,
        "--service",
        "todo-api",
        "--agent-image",
        &image,
    ];
    if let Some(name) = isolate_as {
        args.extend(["--isolate-as", name]);
    }
    args.extend(["--hosts", "namespace", "--", "python3", "-c", SCRIPT]);
    args.extend(sent_route);
    let output = Command::new(kbridge_bin())
        .args(&args)
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", &tmp)
        .output()
        .expect("run kbridge");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stdout} {stderr}");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the script: {stdout} {stderr}"));
    let answer: serde_json::Value = serde_json::from_str(line).expect("stats-api JSON");
    answer["headers"].clone()
}

#[test]
fn isolated_sessions_mark_outbound_requests() {
    let fixture = TestCluster::start_demo("isolation-outbound");

    let isolated = headers_seen(&fixture, Some("alice"), None);
    assert_eq!(
        isolated["kubernetes-route-as"], "alice",
        "the isolated session adds its route: {isolated}"
    );

    let own = headers_seen(&fixture, Some("alice"), Some("bob"));
    assert_eq!(
        own["kubernetes-route-as"], "bob",
        "a route the process sets is kept as it is: {own}"
    );

    let plain = headers_seen(&fixture, None, None);
    assert!(
        plain.get("kubernetes-route-as").is_none(),
        "a session that is not isolated adds nothing: {plain}"
    );
    assert_eq!(plain["host"], "stats-api", "{plain}");
}
