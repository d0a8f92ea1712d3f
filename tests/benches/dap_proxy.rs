//! Benchmark: the same stream of DAP requests sent to a fast adapter directly and
//! through `kbridge dap`, side by side in one run. Prints per-request latency (p50,
//! p99) of each, the latency kbridge adds, and the throughput ratio.
//!
//! Run: `cargo build --release -p kbridge && cargo bench -p kbridge-tests --bench dap_proxy`
//! (`KBRIDGE_BENCH_REQUESTS` sets the request count, default 50 000).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
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
        write!(self.input, "Content-Length: {}\r\n\r\n{text}", text.len()).expect("write");
        self.seq
    }

    fn read_message(&mut self) -> Value {
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.output.read_line(&mut line).expect("read header");
            assert!(!line.is_empty(), "peer closed");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length:") {
                length = v.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        self.output.read_exact(&mut body).expect("read body");
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let count: usize = std::env::var("KBRIDGE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let adapter = PathBuf::from(env!("CARGO_BIN_EXE_echo-adapter"));
    let init = json!({"clientID": "bench", "adapterID": "bridge", "linesStartAt1": true, "columnsStartAt1": true});

    let mut direct = Peer::start(Command::new(&adapter));
    direct.request("initialize", init.clone());
    direct.request("launch", json!({"type": "echo", "request": "launch"}));

    let tmp = std::env::temp_dir().join(format!("kbridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let mut command = Command::new(kbridge_binary());
    command
        .arg("dap")
        .env("TMPDIR", &tmp)
        .env("KBRIDGE_LOG", "warn");
    let mut proxied = Peer::start(command);
    proxied.request("initialize", init);
    let launch = proxied.request(
        "launch",
        json!({"type": "bridge", "request": "launch",
               "debugger": {"command": adapter, "type": "echo"}}),
    );
    assert_eq!(launch["success"], true, "launch through kbridge: {launch}");

    // Warm up both, then measure them interleaved in slices so machine noise hits both.
    latencies(&mut direct, 1000);
    latencies(&mut proxied, 1000);
    let mut direct_samples = Vec::new();
    let mut proxied_samples = Vec::new();
    let slices = 10;
    for _ in 0..slices {
        direct_samples.extend(latencies(&mut direct, count / slices));
        proxied_samples.extend(latencies(&mut proxied, count / slices));
    }
    direct_samples.sort_unstable();
    proxied_samples.sort_unstable();
    let direct_rate = throughput(&mut direct, count, 64);
    let proxied_rate = throughput(&mut proxied, count, 64);

    println!("kbridge dap overhead, {count} requests (threads/evaluate), echo adapter, one run");
    println!(
        "{:<22}{:>12}{:>12}{:>16}",
        "", "p50 (µs)", "p99 (µs)", "throughput/s"
    );
    for (name, samples, rate) in [
        ("direct", &direct_samples, direct_rate),
        ("through kbridge", &proxied_samples, proxied_rate),
    ] {
        println!(
            "{name:<22}{:>12.1}{:>12.1}{:>16.0}",
            micros(percentile(samples, 0.5)),
            micros(percentile(samples, 0.99)),
            rate
        );
    }
    println!(
        "added latency: p50 {:.1} µs, p99 {:.1} µs; throughput ratio {:.2}x",
        micros(percentile(&proxied_samples, 0.5)) - micros(percentile(&direct_samples, 0.5)),
        micros(percentile(&proxied_samples, 0.99)) - micros(percentile(&direct_samples, 0.99)),
        proxied_rate / direct_rate
    );
    direct.finish();
    proxied.finish();
    let _ = std::fs::remove_dir_all(&tmp);
}
