//! Benchmark: bridge-session setup and teardown on the test cluster (kube-fixture, or the
//! real cluster of `KBRIDGE_TEST_KUBECONFIG` in a namespace of its own), next to the
//! cluster's own floor measured in the same run, plus re-launch on a kept session.
//!
//! - Floor: `kubectl patch` of the same kind of template change kbridge makes (container
//!   `api` → the agent image, its token and ports env, its readiness probe) until
//!   `kubectl rollout status` reports it complete; then the patch back, likewise.
//! - kbridge: `kbridge dap`, `initialize`, then `launch` (echo adapter, which answers at
//!   once) until the launch response; broken down by phase from `KBRIDGE_TIMINGS`.
//!   Teardown: `disconnect` until kbridge exits ("kbridge done") and until the original
//!   template is rolled out again ("cluster back").
//! - Re-launch: `disconnectAfterDebugging: false` keeps the session in a background
//!   `kbridge connect`; later launches reuse it.
//!
//! Floor and kbridge rounds are interleaved; each round's goal is 1.2 × that round's floor +
//! 0.1 s. Goals: teardown ("cluster back") within it in every round; setup within it in 19
//! of 20 rounds (95 %) and never above 2 × the floor; re-launch < 0.1 s.
//!
//! Run (as root, kubectl on PATH):
//! `cargo build --release --workspace --bins && cargo bench -p kbridge-tests --bench session_setup`
//! (`KBRIDGE_BENCH_ROUNDS` sets the rounds, default 20; `KBRIDGE_BENCH_LOGS=DIR` keeps
//! kbridge's logs, at `info`, in DIR).

use kbridge_tests::cluster::pids_with;
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::framing::{read_frame, write_frame};
use kbridge_tests::{agent_image, kbridge_bin, temp_dir};
use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Guard against hangs (not a performance limit).
const WAIT: Duration = Duration::from_secs(180);

/// A DAP client on `kbridge dap`'s stdio; every message is stamped on arrival.
struct Dap {
    child: Child,
    input: ChildStdin,
    rx: Receiver<(Instant, Value)>,
    backlog: Vec<(Instant, Value)>,
    seq: i64,
}

impl Dap {
    fn spawn(kubeconfig: &Path, tmp: &Path, timings: &Path) -> Dap {
        let mut child = Command::new(kbridge_bin())
            .arg("dap")
            .env("KUBECONFIG", kubeconfig)
            .env("TMPDIR", tmp)
            .env("KBRIDGE_TIMINGS", timings)
            .env(
                "KBRIDGE_LOG",
                if std::env::var_os("KBRIDGE_BENCH_LOGS").is_some() {
                    "info"
                } else {
                    "warn"
                },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kbridge dap");
        let input = child.stdin.take().expect("stdin");
        let mut output = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let Ok(Some(body)) = read_frame(&mut output) else {
                return;
            };
            let value: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "kbridge sent invalid JSON: {e}: {}",
                    String::from_utf8_lossy(&body)
                )
            });
            if tx.send((Instant::now(), value)).is_err() {
                return;
            }
        });
        Dap {
            child,
            input,
            rx,
            backlog: Vec::new(),
            seq: 0,
        }
    }

    /// Sends a request; returns its seq and the time it was written.
    fn send(&mut self, command: &str, arguments: Value) -> (i64, Instant) {
        self.seq += 1;
        let text =
            json!({"seq": self.seq, "type": "request", "command": command, "arguments": arguments})
                .to_string();
        let sent = Instant::now();
        write_frame(&mut self.input, text.as_bytes())
            .and_then(|()| self.input.flush())
            .unwrap_or_else(|e| panic!("write {command} to kbridge: {e}"));
        (self.seq, sent)
    }

    /// The first message matching `predicate` (earlier ones are kept), with its arrival time.
    fn wait_for(&mut self, what: &str, predicate: impl Fn(&Value) -> bool) -> (Instant, Value) {
        if let Some(at) = self.backlog.iter().position(|(_, m)| predicate(m)) {
            return self.backlog.remove(at);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((at, message)) if predicate(&message) => return (at, message),
                Ok(other) => self.backlog.push(other),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "timed out after {WAIT:?} waiting for {what}; seen: {:#?}",
                    self.backlog.iter().map(|(_, m)| m).collect::<Vec<_>>()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "kbridge closed its output while we waited for {what}; seen: {:#?}",
                    self.backlog.iter().map(|(_, m)| m).collect::<Vec<_>>()
                ),
            }
        }
    }

    fn response(&mut self, seq: i64, command: &str) -> (Instant, Value) {
        let (at, response) = self.wait_for(&format!("the {command} response"), |m| {
            m["type"] == "response" && m["request_seq"] == seq
        });
        assert_eq!(response["success"], true, "{command} failed: {response}");
        (at, response)
    }

    fn request(&mut self, command: &str, arguments: Value) -> Value {
        let (seq, _) = self.send(command, arguments);
        self.response(seq, command).1
    }

    /// When the first progress or output event for setup step `prefix` arrived.
    fn step_seen(&mut self, prefix: &str) -> Option<Instant> {
        let at = self.backlog.iter().position(|(_, m)| {
            let text = match m["event"].as_str() {
                Some("progressUpdate") => &m["body"]["message"],
                Some("output") => &m["body"]["output"],
                _ => return false,
            };
            text.as_str().is_some_and(|s| s.contains(prefix))
        })?;
        Some(self.backlog[at].0)
    }

    /// Waits for the process to exit (status 0); returns when it did.
    fn exited(mut self) -> Instant {
        drop(self.input);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for kbridge") {
                let at = Instant::now();
                assert!(status.success(), "kbridge dap exited with {status}");
                return at;
            }
            assert!(
                Instant::now() < deadline,
                "kbridge dap did not exit after {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Setup phases, named by the step that begins them, in setup order.
const PHASES: [(&str, &str); 9] = [
    ("connecting", "connect to the API"),
    ("resolving", "resolve, secret, lease"),
    ("session ", "restore a stale session"),
    ("replacing container", "swap patch"),
    ("starting the in-cluster restorer", "restorer Job"),
    ("agent pods ready", "rollout wait"),
    ("opening", "tunnels, pod env"),
    ("forwarding the namespace's services", "services"),
    ("cluster names resolve", "env/hosts"),
];

fn phase_of(step: &str) -> &'static str {
    PHASES
        .iter()
        .find(|(start, _)| step.starts_with(start) || step.ends_with(start))
        .map_or("other steps", |(_, name)| name)
}

/// Phase durations from a `KBRIDGE_TIMINGS` file: each step lasts until the next one.
fn phases(timings: &Path) -> Vec<(&'static str, Duration)> {
    let text = std::fs::read_to_string(timings)
        .unwrap_or_else(|e| panic!("{} not written by kbridge: {e}", timings.display()));
    let steps: Vec<(f64, String)> = text
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad KBRIDGE_TIMINGS line {line:?}: {e}"));
            (
                v["ms"].as_f64().expect("ms"),
                v["step"].as_str().expect("step").to_string(),
            )
        })
        .collect();
    assert!(
        steps.last().is_some_and(|(_, s)| s == "session ready"),
        "KBRIDGE_TIMINGS does not end with `session ready`: {text}"
    );
    let mut out: Vec<(&'static str, Duration)> = Vec::new();
    for pair in steps.windows(2) {
        let name = phase_of(&pair[0].1);
        let took = Duration::from_secs_f64((pair[1].0 - pair[0].0).max(0.0) / 1000.0);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, d)) => *d += took,
            None => out.push((name, took)),
        }
    }
    out.push((
        "session ready",
        Duration::from_secs_f64(steps.last().map_or(0.0, |s| s.0) / 1000.0),
    ));
    out
}

/// One kbridge launch, timed.
struct Launched {
    dap: Dap,
    /// `launch` written → launch response.
    total: Duration,
    /// `launch` written → the first setup step's progress event.
    before_setup: Option<Duration>,
}

fn launch(fixture: &TestCluster, tmp: &Path, timings: &Path, keep: bool) -> Launched {
    let _ = std::fs::remove_file(timings);
    let mut dap = Dap::spawn(&fixture.kubeconfig, tmp, timings);
    dap.request(
        "initialize",
        json!({"clientID": "bench", "adapterID": "bridge", "linesStartAt1": true,
               "columnsStartAt1": true, "supportsProgressReporting": true}),
    );
    let mut bridge = json!({"namespace": fixture.namespace, "service": "todo-api",
                            "agentImage": agent_image(), "hosts": "off"});
    if keep {
        bridge["disconnectAfterDebugging"] = json!(false);
    }
    let (seq, sent) = dap.send(
        "launch",
        json!({"type": "bridge", "request": "launch", "name": "bench",
               "debugger": {"command": env!("CARGO_BIN_EXE_echo-adapter"), "type": "echo"},
               "bridge": bridge}),
    );
    let (answered, _) = dap.response(seq, "launch");
    let before_setup = dap
        .step_seen("connecting to the cluster")
        .map(|at| at.saturating_duration_since(sent));
    Launched {
        dap,
        total: answered - sent,
        before_setup,
    }
}

/// Disconnects; returns the time from `disconnect` written until kbridge exited.
fn disconnect(mut dap: Dap) -> Duration {
    let (seq, sent) = dap.send(
        "disconnect",
        json!({"restart": false, "terminateDebuggee": true}),
    );
    dap.response(seq, "disconnect");
    dap.exited() - sent
}

fn rollout_status(fixture: &TestCluster) {
    fixture.rollout_status("todo-api");
}

fn template(fixture: &TestCluster) -> Value {
    let out = fixture.kubectl(&[
        "-n",
        &fixture.namespace,
        "get",
        "deployment",
        "todo-api",
        "-o",
        "json",
    ]);
    let deployment: Value = serde_json::from_str(&out).expect("Deployment JSON");
    deployment["spec"]["template"].clone()
}

/// Waits until the Deployment runs its original template on exactly its 2 ready pods,
/// with no session objects (restorer Job, Lease, Secret) left over.
fn settle(fixture: &TestCluster, original: &Value) {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        rollout_status(fixture);
        let pods: Value = serde_json::from_str(&fixture.kubectl(&[
            "-n",
            &fixture.namespace,
            "get",
            "pods",
            "-l",
            "app=todo-api",
            "-o",
            "json",
        ]))
        .expect("pods JSON");
        let pods = pods["items"].as_array().cloned().unwrap_or_default();
        let ready = pods
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .count();
        let leftovers: Vec<String> = fixture
            .kubectl(&[
                "-n",
                &fixture.namespace,
                "get",
                "jobs,leases,secrets",
                "-o",
                "name",
            ])
            .lines()
            .filter(|n| n.contains("kbridge"))
            .map(String::from)
            .collect();
        let current = template(fixture);
        if &current == original && pods.len() == 2 && ready == 2 && leftovers.is_empty() {
            return;
        }
        last = format!(
            "template original: {}, pods: {}, ready: {ready}, leftovers: {leftovers:?}",
            &current == original,
            pods.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("todo-api did not settle back to its original state: {last}");
}

/// The floor: the same kind of template change by `kubectl patch`, until rolled out.
fn floor(fixture: &TestCluster) -> (Duration, Duration) {
    let swap = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "api",
        "image": agent_image(),
        "env": [{"name": "KBRIDGE_SESSION_TOKEN", "value": "floor-benchmark"},
                {"name": "KBRIDGE_AGENT_PORTS", "value": "8080"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 7312}, "periodSeconds": 1}
    }]}}}});
    let back = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "api",
        "image": "kbridge-samples/todo-api:1.0",
        "env": [{"name": "KBRIDGE_SESSION_TOKEN", "$patch": "delete"},
                {"name": "KBRIDGE_AGENT_PORTS", "$patch": "delete"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
    }]}}}});
    let patch = |p: &Value| {
        fixture.kubectl(&[
            "-n",
            &fixture.namespace,
            "patch",
            "deployment",
            "todo-api",
            "--type=strategic",
            "-p",
            &p.to_string(),
        ]);
    };
    let started = Instant::now();
    patch(&swap);
    rollout_status(fixture);
    let setup = started.elapsed();
    let started = Instant::now();
    patch(&back);
    rollout_status(fixture);
    (setup, started.elapsed())
}

/// The background `kbridge connect` holding this run's kept session: this cluster's
/// kubeconfig and this run's TMPDIR (a real cluster's kubeconfig may be shared).
fn held_session(fixture: &TestCluster, tmp: &Path) -> u32 {
    let kubeconfig = fixture.kubeconfig.to_string_lossy().into_owned();
    let tmpdir = format!("TMPDIR={}", tmp.display());
    let ours: Vec<u32> = pids_with(&["connect", "--background"])
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| {
                let environ = String::from_utf8_lossy(&e);
                environ.contains(&kubeconfig) && environ.split('\0').any(|v| v == tmpdir)
            })
        })
        .collect();
    assert_eq!(ours.len(), 1, "one held session for this fixture: {ours:?}");
    ours[0]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    assert!(n > 0, "no samples");
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// The round with the largest `value`, as the row of that round's figure.
fn pick_worst<R>(rounds: &[R], value: fn(&R) -> Duration) -> Duration {
    rounds.iter().map(value).max().expect("rounds")
}

fn goal(floor: Duration) -> Duration {
    floor.mul_f64(1.2) + Duration::from_millis(100)
}

fn yes(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "NO"
    }
}

fn main() {
    let rounds: usize = std::env::var("KBRIDGE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(1);
    let fixture = TestCluster::start_demo("bench-setup");
    let tmp: PathBuf = temp_dir("bench-setup");
    let timings = tmp.join("timings.jsonl");
    rollout_status(&fixture);
    let original = template(&fixture);
    settle(&fixture, &original);

    struct Round {
        floor_setup: Duration,
        floor_teardown: Duration,
        setup: Duration,
        kbridge_done: Duration,
        cluster_back: Duration,
        phases: Vec<(&'static str, Duration)>,
    }
    let mut results = Vec::new();
    for round in 0..rounds {
        settle(&fixture, &original);
        let (floor_setup, floor_teardown) = floor(&fixture);
        settle(&fixture, &original);
        let launched = launch(&fixture, &tmp, &timings, false);
        let mut phases = phases(&timings);
        let ready = phases.pop().expect("session ready").1;
        let before = launched.before_setup.unwrap_or_else(|| {
            panic!("round {round}: no progress event for `connecting to the cluster`")
        });
        phases.insert(0, ("launch → setup starts", before));
        phases.push((
            "session ready → response",
            launched.total.saturating_sub(before + ready),
        ));
        let started = Instant::now();
        let kbridge_done = disconnect(launched.dap);
        rollout_status(&fixture);
        let cluster_back = started.elapsed();
        results.push(Round {
            floor_setup,
            floor_teardown,
            setup: launched.total,
            kbridge_done,
            cluster_back,
            phases,
        });
    }

    // Kept session: the first launch starts a background `kbridge connect`; the next
    // launches (fresh `kbridge dap` processes) reuse it.
    settle(&fixture, &original);
    let first = launch(&fixture, &tmp, &timings, true);
    let first_launch = first.total;
    disconnect(first.dap);
    let mut relaunches = Vec::new();
    for _ in 0..rounds {
        let again = launch(&fixture, &tmp, &timings, true);
        relaunches.push(again.total);
        disconnect(again.dap);
    }
    let held = held_session(&fixture, &tmp);
    Command::new("kill")
        .args(["-TERM", &held.to_string()])
        .status()
        .expect("kill the held session");
    settle(&fixture, &original);

    println!(
        "bridge session setup/teardown on {} (todo-api, 2 replicas), {rounds} rounds, interleaved",
        if fixture.is_real() {
            format!("a real cluster, namespace {}", fixture.namespace)
        } else {
            "kube-fixture".to_string()
        }
    );
    println!(
        "{:<7}{:>12}{:>12}{:>8}{:>10}{:>6} | {:>12}{:>12}{:>12}{:>8}",
        "round",
        "floor set",
        "kbridge set",
        "ratio",
        "goal",
        "met",
        "floor tear",
        "kb done",
        "cluster bk",
        "met"
    );
    let row = |name: &str, fs: Duration, s: Duration, ft: Duration, kd: Duration, cb: Duration| {
        println!(
            "{name:<7}{:>11.3}s{:>11.3}s{:>7.2}x{:>9.3}s{:>6} | {:>11.3}s{:>11.3}s{:>11.3}s{:>8}",
            secs(fs),
            secs(s),
            secs(s) / secs(fs),
            secs(goal(fs)),
            yes(s <= goal(fs)),
            secs(ft),
            secs(kd),
            secs(cb),
            yes(cb <= goal(ft))
        );
    };
    for (i, r) in results.iter().enumerate() {
        row(
            &format!("{}", i + 1),
            r.floor_setup,
            r.setup,
            r.floor_teardown,
            r.kbridge_done,
            r.cluster_back,
        );
    }
    let pick = |f: fn(&Round) -> Duration| median(&results.iter().map(f).collect::<Vec<_>>());
    row(
        "median",
        pick(|r| r.floor_setup),
        pick(|r| r.setup),
        pick(|r| r.floor_teardown),
        pick(|r| r.kbridge_done),
        pick(|r| r.cluster_back),
    );
    let max = |f: fn(&Round) -> Duration| pick_worst(&results, f);
    println!(
        "{:<7}{:>11.3}s{:>11.3}s{:>24} | {:>11.3}s{:>11.3}s{:>11.3}s",
        "max",
        secs(max(|r| r.floor_setup)),
        secs(max(|r| r.setup)),
        "",
        secs(max(|r| r.floor_teardown)),
        secs(max(|r| r.kbridge_done)),
        secs(max(|r| r.cluster_back)),
    );
    println!(
        "(each round's goal is 1.2 × its floor + 0.1 s; the teardown goal applies to `cluster back`, disconnect → original template rolled out)"
    );
    let n = results.len();
    let setup_within = results
        .iter()
        .filter(|r| r.setup <= goal(r.floor_setup))
        .count();
    let setup_worst = results
        .iter()
        .map(|r| secs(r.setup) / secs(r.floor_setup))
        .fold(0.0, f64::max);
    let teardown_within = results
        .iter()
        .filter(|r| r.cluster_back <= goal(r.floor_teardown))
        .count();
    let teardown_worst = results
        .iter()
        .map(|r| secs(r.cluster_back) / secs(goal(r.floor_teardown)))
        .fold(0.0, f64::max);
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let setup_ratio = secs(pick(|r| r.setup)) / secs(goal(pick(|r| r.floor_setup)));
    println!(
        "goal setup: within 1.2 × floor + 0.1 s in ≥ 95 % of rounds, none above 2 × floor: {setup_within}/{n} within; median {:.3}s = {setup_ratio:.2}× its goal; worst {setup_worst:.2}× floor: {}",
        secs(pick(|r| r.setup)),
        verdict(setup_within * 20 >= n * 19 && setup_worst <= 2.0)
    );
    let teardown_ratio = secs(pick(|r| r.cluster_back)) / secs(goal(pick(|r| r.floor_teardown)));
    println!(
        "goal teardown (cluster back): within 1.2 × floor + 0.1 s in every round: {teardown_within}/{n} within; median {:.3}s = {teardown_ratio:.2}× its goal; worst {teardown_worst:.2}× its goal: {}",
        secs(pick(|r| r.cluster_back)),
        verdict(teardown_within == n)
    );

    for (i, r) in results.iter().enumerate() {
        if r.setup > goal(r.floor_setup) {
            let (name, took) = r
                .phases
                .iter()
                .max_by_key(|(_, d)| *d)
                .copied()
                .unwrap_or(("?", Duration::ZERO));
            println!(
                "round {}: setup {:.3}s above its goal; longest phase {name} {:.3}s",
                i + 1,
                secs(r.setup),
                secs(took)
            );
        }
    }
    println!("kbridge setup by phase (median of {rounds}):");
    let mut names: Vec<&'static str> = Vec::new();
    for r in &results {
        for (name, _) in &r.phases {
            if !names.contains(name) {
                names.push(name);
            }
        }
    }
    for name in names {
        let samples: Vec<Duration> = results
            .iter()
            .map(|r| {
                r.phases
                    .iter()
                    .filter(|(n, _)| *n == name)
                    .map(|(_, d)| *d)
                    .sum()
            })
            .collect();
        println!("  {name:<28}{:>9.3}s", secs(median(&samples)));
    }
    let relaunch = median(&relaunches);
    println!(
        "kept session: first launch {:.3}s; re-launch median {:.3}s of {} (min {:.3}s, max {:.3}s), goal < 0.100s: {}",
        secs(first_launch),
        secs(relaunch),
        relaunches.len(),
        secs(*relaunches.iter().min().expect("samples")),
        secs(*relaunches.iter().max().expect("samples")),
        verdict(relaunch < Duration::from_millis(100))
    );
    if let Some(keep) = std::env::var_os("KBRIDGE_BENCH_LOGS") {
        let keep = PathBuf::from(keep);
        let _ = std::fs::create_dir_all(&keep);
        let logs = tmp.join("kbridge");
        for entry in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
            let _ = std::fs::copy(entry.path(), keep.join(entry.file_name()));
        }
        println!("kbridge's logs: {}", keep.display());
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
