//! Chaos: an agent pod goes away (eviction, node drain, `kubectl delete pod`) while a
//! request it carries is still being answered by the local process.
//!
//! The request in flight must fail cleanly — the caller's connection ends promptly,
//! with no partial answer — and the next request to the Service must succeed (through
//! the other replica, and the replacement pod gets its own tunnel).

use kbridge_tests::connect::Connect;
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::temp_dir;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long the local process takes to answer `/slow`: far longer than the agent's
/// shutdown, so the request is still in flight when its pod goes.
const SLOW: Duration = Duration::from_secs(30);

/// An HTTP/1.0 GET of `path` to `addr`: the whole response ("" when the connection
/// ended without one) and how long it took.
fn get(addr: &str, path: &str, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().expect("address"), limit) else {
        return (String::new(), started.elapsed());
    };
    let _ = s.set_read_timeout(Some(limit));
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_request_in_flight_when_its_agent_pod_goes_fails_cleanly_and_the_next_succeeds() {
    let fixture = TestCluster::start_demo("agent-loss");
    let tmp = temp_dir("agent-loss");
    let ns = fixture.namespace.clone();
    // The local process: `/slow` is answered after SLOW, anything else at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let local_port = listener.local_addr().expect("addr").port();
    let (slow_arrived, slow_seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let slow_arrived = slow_arrived.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let n = stream.read(&mut buf).unwrap_or(0);
                if String::from_utf8_lossy(&buf[..n]).contains("/slow") {
                    let _ = slow_arrived.send(());
                    std::thread::sleep(SLOW);
                }
                let _ =
                    stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nlocal-marker");
            });
        }
    });
    let _session = Connect::todo_api(
        &fixture,
        &tmp,
        &["--port", &format!("{local_port}:8080")],
        &[],
    );
    let pods = fixture.kubectl(&[
        "-n",
        &ns,
        "get",
        "pods",
        "-l",
        "app=todo-api",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.metadata.deletionTimestamp}-{\"\\n\"}{end}",
    ]);
    let (victim, ip) = pods
        .lines()
        .filter(|l| l.ends_with(" -"))
        .find_map(|l| {
            let mut parts = l.split(' ');
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .expect("an agent pod that is not being deleted");

    // A request in flight through the victim's agent.
    let in_flight = {
        let addr = format!("{ip}:8080");
        std::thread::spawn(move || get(&addr, "/slow", Duration::from_secs(60)))
    };
    slow_seen
        .recv_timeout(Duration::from_secs(30))
        .expect("the slow request reached the local process");
    fixture.kubectl(&["-n", &ns, "delete", "pod", &victim, "--wait=false"]);
    let (answer, took) = in_flight.join().expect("client thread");
    eprintln!("the request in flight ended after {took:?} with {answer:?}");
    assert!(
        took < SLOW - Duration::from_secs(10),
        "the caller's connection ends promptly when its agent goes, not when the local process answers: {took:?}"
    );
    assert!(
        answer.is_empty(),
        "a request cut off gets no partial answer: {answer:?}"
    );

    // The next request to the Service reaches the local process.
    let service_ip = fixture.kubectl(&[
        "-n",
        &ns,
        "get",
        "service",
        "todo-api",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    loop {
        let (answer, _) = get(&format!("{service_ip}:80"), "/", Duration::from_secs(5));
        if answer.contains("local-marker") {
            break;
        }
        failures += 1;
        assert!(
            Instant::now() < deadline,
            "no request through the Service succeeded within 30 s of losing an agent ({failures} attempts)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("requests through the Service that failed before one succeeded: {failures}");
}
