//! Benchmark: bulk throughput from a pod to this machine, three ways side by side in one run:
//!
//! - **direct**: a TCP connection to the pod's IP (the floor: no tunnel at all; pod
//!   addresses are reachable from the node on both test clusters);
//! - **kubectl port-forward** to the same pod, through the API server and the kubelet
//!   (on the real cluster, kubectl built from the same sources; kube-fixture has no SPDY,
//!   so there it is left out and said so);
//! - **kbridge**: the outbound tunnel of a held session (`kbridge connect`): a local address
//!   for Service stats-api, each connection carried by the agent over its port-forward.
//!
//! Each round downloads `KBRIDGE_BENCH_BYTES` (default 128 MiB) from stats-api's
//! `/bulk/<bytes>` on each path, interleaved; the medians and the ratios are printed.
//!
//! Run (as root, kubectl on PATH; `KBRIDGE_TEST_KUBECONFIG` and `KBRIDGE_AGENT_IMAGE` for a
//! real cluster, as `scripts/test-real-cluster.sh` sets them):
//! `cargo build --release --workspace --bins && cargo bench -p kbridge-tests --bench tunnel_throughput`
//! (`KBRIDGE_BENCH_ROUNDS` sets the rounds, default 5).

use kbridge_tests::cluster::{connect, free_port};
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, temp_dir};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Downloads `/bulk/<bytes>` from `addr`; returns MiB/s, from connect to the last byte.
fn download(addr: &str, bytes: u64) -> f64 {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    write!(
        stream,
        "GET /bulk/{bytes} HTTP/1.0\r\nHost: stats-api\r\n\r\n"
    )
    .expect("request");
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => panic!("reading from {addr}: {e}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        total > bytes,
        "{addr}: got {total} bytes of {bytes} and headers"
    );
    bytes as f64 / (1024.0 * 1024.0) / elapsed
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// `kubectl port-forward pod/NAME LOCAL:8081`, once it says it forwards.
fn port_forward(cluster: &TestCluster, pod: &str, local: u16) -> Child {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["-n", &cluster.namespace, "port-forward"])
        .arg(format!("pod/{pod}"))
        .arg(format!("{local}:8081"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kubectl port-forward");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("read kubectl's first line");
    assert!(line.contains("Forwarding from"), "kubectl said: {line}");
    // It prints a line per connection: keep reading, or it dies on a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    child
}

fn main() {
    let bytes = env_number("KBRIDGE_BENCH_BYTES", 128 * 1024 * 1024);
    let rounds = env_number("KBRIDGE_BENCH_ROUNDS", 5).max(1);
    let cluster = TestCluster::start_demo("tunnel-bench");
    let ns = cluster.namespace.clone();

    let pods: Value = serde_json::from_str(&cluster.kubectl(&[
        "-n",
        &ns,
        "get",
        "pods",
        "-l",
        "app=stats-api",
        "-o",
        "json",
    ]))
    .expect("pods JSON");
    let pod = &pods["items"][0];
    let pod_name = pod["metadata"]["name"]
        .as_str()
        .expect("pod name")
        .to_string();
    let pod_ip = pod["status"]["podIP"].as_str().expect("pod IP").to_string();
    let direct = format!("{pod_ip}:8081");

    let tmp = temp_dir("tunnel-bench");
    let env_file = tmp.join("session.env");
    let image = agent_image();
    let mut session = connect(
        &cluster,
        &tmp,
        &[("KBRIDGE_LOG", "warn")],
        &[
            "--namespace",
            &ns,
            "--service",
            "todo-api",
            "--hosts",
            "off",
            "--agent-image",
            &image,
            "--env-file",
            &env_file.to_string_lossy(),
        ],
    );
    let env = std::fs::read_to_string(&env_file).expect("the session's env file");
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("{name} in {env}"))
    };
    let through_kbridge = format!(
        "{}:{}",
        var("STATS_API_SERVICE_HOST"),
        var("STATS_API_SERVICE_PORT")
    );

    let forward_port = free_port();
    let mut forward = cluster
        .is_real()
        .then(|| port_forward(&cluster, &pod_name, forward_port));
    let through_forward = format!("127.0.0.1:{forward_port}");

    println!(
        "tunnel throughput, {} MiB per download, {rounds} rounds, {} cluster",
        bytes / (1024 * 1024),
        if cluster.is_real() {
            "real"
        } else {
            "kube-fixture"
        }
    );
    // Warm up each path once (connection setup, page cache, the agent's first dial).
    download(&direct, bytes / 8);
    download(&through_kbridge, bytes / 8);
    if forward.is_some() {
        download(&through_forward, bytes / 8);
    }
    let (mut d, mut f, mut k) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        d.push(download(&direct, bytes));
        if forward.is_some() {
            f.push(download(&through_forward, bytes));
        }
        k.push(download(&through_kbridge, bytes));
        println!(
            "round {round}: direct {:.0} MiB/s, kubectl port-forward {}, kbridge {:.0} MiB/s",
            d[d.len() - 1],
            f.last().map_or("n/a".into(), |v| format!("{v:.0} MiB/s")),
            k[k.len() - 1]
        );
    }
    let (d, k) = (median(d), median(k));
    println!(
        "median: direct {d:.0} MiB/s, kbridge {k:.0} MiB/s ({:.2}x direct)",
        k / d
    );
    if f.is_empty() {
        println!("kubectl port-forward: not measured (kube-fixture serves no SPDY port-forward; run on the real cluster)");
    } else {
        let f = median(f);
        println!(
            "median: kubectl port-forward {f:.0} MiB/s ({:.2}x direct); kbridge / kubectl port-forward = {:.2}x",
            f / d,
            k / f
        );
    }
    if let Some(child) = forward.as_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    session.stop();
}
