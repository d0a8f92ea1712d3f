//! Benchmark: the same stream of DAP requests sent to a fast adapter directly, through a
//! bare byte relay (the floor: one more process on the path, on kbridge's own I/O, that
//! only copies bytes) and through `kbridge dap`, side by side in one run. Prints per-request latency (p50, p99) of each, the latency kbridge adds, the
//! throughput ratio, and each figure against its goal (added p50 ≤ 15 µs, throughput ≥
//! 0.9 × direct) and against the relay floor, which no proxy process can beat.
//!
//! Run: `cargo build --release -p kbridge && cargo bench -p kbridge-tests --bench dap_proxy`
//! (`KBRIDGE_BENCH_REQUESTS` sets the request count, default 50 000; `KBRIDGE_BENCH_RUNS`
//! the runs, default 3, whose medians are the result).

use kbridge_tests::framing::{read_frame, write_frame};
use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct Peer {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    seq: i64,
}

impl Peer {
    fn start(mut command: Command) -> Peer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start process");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        Peer {
            child,
            input,
            output,
            seq: 0,
        }
    }

    fn write_request(&mut self, command: &str, arguments: &Value) -> i64 {
        self.seq += 1;
        let text =
            json!({"seq": self.seq, "type": "request", "command": command, "arguments": arguments})
                .to_string();
        write_frame(&mut self.input, text.as_bytes()).expect("write");
        self.seq
    }

    fn read_message(&mut self) -> Value {
        let body = read_frame(&mut self.output)
            .expect("read")
            .expect("peer closed");
        serde_json::from_slice(&body).expect("json")
    }

    fn wait_response(&mut self, seq: i64) -> Value {
        loop {
            let message = self.read_message();
            if message["type"] == "response" && message["request_seq"] == seq {
                return message;
            }
        }
    }

    fn request(&mut self, command: &str, arguments: Value) -> Value {
        let seq = self.write_request(command, &arguments);
        self.input.flush().expect("flush");
        self.wait_response(seq)
    }

    fn finish(mut self) {
        self.request("disconnect", json!({}));
        drop(self.input);
        let _ = self.child.wait();
    }
}

fn kbridge_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("kbridge");
    assert!(
        path.exists(),
        "{} missing: run `cargo build --release -p kbridge` first",
        path.display()
    );
    path
}

/// Per-request round trips, one request in flight at a time.
fn latencies(peer: &mut Peer, count: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let (command, arguments) = if i % 2 == 0 {
            ("threads", json!({}))
        } else {
            (
                "evaluate",
                json!({"expression": "x + 1", "frameId": 1, "context": "watch"}),
            )
        };
        let start = Instant::now();
        let response = peer.request(command, arguments);
        samples.push(start.elapsed());
        debug_assert_eq!(response["success"], true);
    }
    samples.sort_unstable();
    samples
}

/// Requests per second with up to `window` requests in flight.
fn throughput(peer: &mut Peer, count: usize, window: usize) -> f64 {
    let start = Instant::now();
    let mut sent = 0;
    let mut answered = 0;
    while answered < count {
        while sent < count && sent - answered < window {
            peer.write_request("threads", &json!({}));
            sent += 1;
        }
        peer.input.flush().expect("flush");
        let message = peer.read_message();
        if message["type"] == "response" {
            answered += 1;
        }
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// The floor's relay: started as this benchmark's own executable with
/// `KBRIDGE_BENCH_RELAY=<adapter>`, it runs the adapter and copies bytes both ways
/// without looking at them, on the I/O kbridge uses (one tokio thread, pipes polled with
/// epoll): what any process in the middle costs, before it does any DAP work.
fn relay(adapter: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn copy(
        mut from: impl tokio::io::AsyncRead + Unpin,
        mut to: impl tokio::io::AsyncWrite + Unpin,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut child = tokio::process::Command::new(adapter)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the adapter");
        let to_adapter = child.stdin.take().expect("stdin");
        let from_adapter = child.stdout.take().expect("stdout");
        // The editor side exactly as `kbridge dap` opens it.
        let (input, output) = (
            kbridge::proxy::stdio::input(),
            kbridge::proxy::stdio::output(),
        );
        tokio::join!(copy(input, to_adapter), copy(from_adapter, output));
        let _ = child.wait().await;
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One run's figures of one path.
#[derive(Clone, Copy)]
struct Figures {
    p50: f64,
    p99: f64,
    rate: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// `kbridge dap` (the binary given) on the echo adapter, launched.
fn through_kbridge(
    kbridge: &std::path::Path,
    adapter: &std::path::Path,
    tmp: &std::path::Path,
) -> Peer {
    let mut command = Command::new(kbridge);
    command
        .arg("dap")
        .env("TMPDIR", tmp)
        .env("KBRIDGE_LOG", "warn");
    let mut proxied = Peer::start(command);
    proxied.request("initialize", init());
    let launch = proxied.request(
        "launch",
        json!({"type": "bridge", "request": "launch",
               "debugger": {"command": adapter, "type": "echo"}}),
    );
    assert_eq!(launch["success"], true, "launch through kbridge: {launch}");
    proxied
}

fn init() -> Value {
    json!({"clientID": "bench", "adapterID": "bridge", "linesStartAt1": true, "columnsStartAt1": true})
}

/// One run: every path measured interleaved in slices, so machine noise hits all alike.
fn run(
    count: usize,
    adapter: &std::path::Path,
    baseline: Option<&std::path::Path>,
) -> Vec<Figures> {
    let mut direct = Peer::start(Command::new(adapter));
    direct.request("initialize", init());
    direct.request("launch", json!({"type": "echo", "request": "launch"}));

    let mut relayed = Peer::start({
        let mut c = Command::new(std::env::current_exe().expect("bench path"));
        c.env("KBRIDGE_BENCH_RELAY", adapter);
        c
    });
    relayed.request("initialize", init());
    relayed.request("launch", json!({"type": "echo", "request": "launch"}));

    let tmp = std::env::temp_dir().join(format!("kbridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let mut peers = vec![
        direct,
        relayed,
        through_kbridge(&kbridge_binary(), adapter, &tmp),
    ];
    if let Some(baseline) = baseline {
        peers.push(through_kbridge(baseline, adapter, &tmp));
    }
    for peer in &mut peers {
        latencies(peer, 1000);
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); peers.len()];
    let slices = 10;
    for _ in 0..slices {
        for (peer, samples) in peers.iter_mut().zip(&mut samples) {
            samples.extend(latencies(peer, count / slices));
        }
    }
    let mut figures = Vec::new();
    for samples in &mut samples {
        samples.sort_unstable();
        figures.push(Figures {
            p50: micros(percentile(samples, 0.5)),
            p99: micros(percentile(samples, 0.99)),
            rate: 0.0,
        });
    }
    // Throughput in slices too, round-robin.
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    for _ in 0..5 {
        for (peer, rates) in peers.iter_mut().zip(&mut rates) {
            rates.push(throughput(peer, count / 5, 64));
        }
    }
    for (figures, rates) in figures.iter_mut().zip(&mut rates) {
        figures.rate = median(rates);
    }
    for peer in peers {
        peer.finish();
    }
    let _ = std::fs::remove_dir_all(&tmp);
    figures
}

fn main() {
    if let Ok(adapter) = std::env::var("KBRIDGE_BENCH_RELAY") {
        relay(&adapter);
        return;
    }
    let count: usize = std::env::var("KBRIDGE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let runs: usize = std::env::var("KBRIDGE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let baseline = std::env::var_os("KBRIDGE_BENCH_BASELINE").map(PathBuf::from);
    let adapter = PathBuf::from(env!("CARGO_BIN_EXE_echo-adapter"));
    let mut names = vec!["direct", "through a bare relay", "through kbridge"];
    if baseline.is_some() {
        names.push("through the baseline");
    }
    let mut all: Vec<Vec<Figures>> = Vec::new();
    println!("kbridge dap overhead, {count} requests (threads/evaluate) per path and run, echo adapter, {runs} runs");
    if let Some(b) = &baseline {
        println!("baseline: {}", b.display());
    }
    println!(
        "{:<6}{:<22}{:>12}{:>12}{:>16}",
        "run", "", "p50 (µs)", "p99 (µs)", "throughput/s"
    );
    for i in 0..runs {
        let figures = run(count, &adapter, baseline.as_deref());
        for (name, f) in names.iter().zip(&figures) {
            println!(
                "{:<6}{name:<22}{:>12.1}{:>12.1}{:>16.0}",
                i + 1,
                f.p50,
                f.p99,
                f.rate
            );
        }
        all.push(figures);
    }
    // Per-run differences and ratios, then their medians: a run's paths saw the same noise.
    let per_run =
        |f: &dyn Fn(&[Figures]) -> f64| median(&mut all.iter().map(|r| f(r)).collect::<Vec<_>>());
    println!("medians of {runs} runs:");
    for (path, name) in names.iter().enumerate() {
        println!(
            "{:<6}{name:<22}{:>12.1}{:>12.1}{:>16.0}",
            "",
            per_run(&|f| f[path].p50),
            per_run(&|f| f[path].p99),
            per_run(&|f| f[path].rate)
        );
    }
    let floor_p50 = per_run(&|f| f[1].p50 - f[0].p50);
    let floor_ratio = per_run(&|f| f[1].rate / f[0].rate);
    println!(
        "a bare relay adds p50 {floor_p50:.1} µs and gets {floor_ratio:.2}x direct's throughput: no process on the path can do better on this machine"
    );
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    for (path, name) in names.iter().enumerate().skip(2) {
        let added_p50 = per_run(&|f| f[path].p50 - f[0].p50);
        let added_p99 = per_run(&|f| f[path].p99 - f[0].p99);
        let ratio = per_run(&|f| f[path].rate / f[0].rate);
        println!("{name}:");
        println!(
            "  added latency p50 {added_p50:.1} µs, p99 {added_p99:.1} µs; goal p50 <= 15 µs: {:.2}x the goal, {}; {:.2}x the relay floor",
            added_p50 / 15.0,
            verdict(added_p50 <= 15.0),
            added_p50 / floor_p50
        );
        println!(
            "  throughput {ratio:.2}x direct; goal >= 0.9x: {:.2}x the goal, {}; {:.2}x the relay floor's {floor_ratio:.2}x",
            ratio / 0.9,
            verdict(ratio >= 0.9),
            ratio / floor_ratio
        );
    }
}
