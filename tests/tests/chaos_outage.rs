//! Chaos: the cluster's API server goes away in the middle of a session and comes back.
//!
//! A laptop on a flaky VPN loses its API server all the time. While it is gone kbridge
//! must stay quiet — a backed-off retry, not a busy loop, and one log line per change
//! rather than one per attempt — tell the user once what it means, and when the API
//! server returns the session carries on: tunnels reconnect, requests reach the local
//! process again, and teardown restores the cluster as usual.
//!
//! On a real cluster this stops the shared kube-apiserver process, so this file holds
//! this one test only (test binaries run one after another).

use kbridge_tests::connect::Connect;
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::temp_dir;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long the API server stays away.
const OUTAGE: Duration = Duration::from_secs(30);

/// CPU time (user + system, seconds) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("clock ticks");
    let per_second: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    // utime and stime are fields 14 and 15 of stat; `fields` starts at field 3.
    (ticks(11) + ticks(12)) / per_second
}

/// Bytes in every file under `dir` (kbridge's logs), recursively.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Waits (250 ms polls, bounded) until `done`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An HTTP/1.0 GET to `ip:8080`: the response, or "" when it cannot connect.
fn ask(ip: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &format!("{ip}:8080").parse().expect("address"),
        Duration::from_secs(2),
    ) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn a_session_rides_out_an_api_server_outage_quietly() {
    let fixture = TestCluster::start_demo("chaos-outage");
    let tmp = temp_dir("chaos-outage");
    // The "local process": answers every connection with a marker.
    let local_port = kbridge_tests::local_marker_server();
    let mut session = Connect::todo_api(
        &fixture,
        &tmp,
        &["--port", &format!("{local_port}:8080")],
        &[],
    );
    let agent_ips = || -> Vec<String> {
        fixture
            .kubectl(&["-n", &fixture.namespace, "get", "pods", "-l", "app=todo-api", "-o",
                "jsonpath={range .items[*]}{.metadata.deletionTimestamp}-{.status.podIP}{\"\\n\"}{end}"])
            .lines()
            .filter_map(|l| l.strip_prefix('-'))
            .filter(|ip| !ip.is_empty())
            .map(str::to_string)
            .collect()
    };
    let ips = agent_ips();
    assert!(!ips.is_empty(), "no agent pods: {}", session.stderr());
    wait_until(
        "a request through the tunnel",
        Duration::from_secs(30),
        || ask(&ips[0]).contains("local-marker"),
    );

    // The outage: measured from kbridge's side.
    let logs = tmp.join("kbridge");
    let (cpu_before, log_before) = (cpu_seconds(session.pid()), bytes_under(&logs));
    fixture.api_outage(true);
    let started = Instant::now();
    std::thread::sleep(OUTAGE);
    let (cpu_during, log_during) = (
        cpu_seconds(session.pid()) - cpu_before,
        bytes_under(&logs).saturating_sub(log_before),
    );
    let outage = started.elapsed();
    fixture.api_outage(false);
    eprintln!(
        "API server down {:.1} s: kbridge used {:.2} s of CPU ({:.1}%) and wrote {} bytes of log",
        outage.as_secs_f64(),
        cpu_during,
        100.0 * cpu_during / outage.as_secs_f64(),
        log_during
    );
    assert!(
        cpu_during < 0.05 * outage.as_secs_f64(),
        "kbridge used {cpu_during:.2} s of CPU in a {outage:?} outage (a retry loop without backoff?)"
    );
    assert!(
        log_during < 100 * 1024,
        "kbridge wrote {log_during} bytes of log in a {outage:?} outage"
    );
    let said = session.stderr();
    assert_eq!(
        said.matches("cannot reach the cluster's API server")
            .count(),
        1,
        "the user is told once that the API server is gone: {said}"
    );

    // Back: the tunnels reconnect and requests reach the local process again.
    wait_until(
        "requests through the tunnel after the outage",
        Duration::from_secs(60),
        || {
            agent_ips()
                .iter()
                .any(|ip| ask(ip).contains("local-marker"))
        },
    );
    wait_until("the all-clear", Duration::from_secs(30), || {
        session
            .stderr()
            .contains("the cluster's API server is reachable again")
    });

    // Teardown as usual.
    let status = session.terminate();
    assert!(status.success(), "{}", session.stderr());
    assert!(
        session.stderr().contains("cluster restored"),
        "teardown completes after the outage: {}",
        session.stderr()
    );
    assert_eq!(
        fixture.todo_api_template_image(),
        "kbridge-samples/todo-api:1.0"
    );
    fixture.rollout_status("todo-api");
}
