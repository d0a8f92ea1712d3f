//! Chaos (issue 12): `kbridge connect` SIGKILLed at each step of its setup, alone or together
//! with its guardian. Whatever step it died at, the workload must come back (template
//! image, rollout complete) and nothing of kbridge may stay — checked with a census of the
//! machine and the namespace taken before and after ([`kbridge_tests::census`]).
//!
//! Each test prints a table (phase × outcome) to stderr; run with `--nocapture` to see it.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kbridge_tests::census::{self, Census, Scope};
use kbridge_tests::cluster::kill9;
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, kbridge_bin, temp_dir};
use kube::api::{Api, ListParams};
use kube::runtime::{watcher, WatchStreamExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// `KBRIDGE_IDLE_RESTORE_SECS` for every session here: small, so a restorer that has to act
/// acts within the test.
const IDLE_RESTORE_SECS: u64 = 10;
/// The guardian's test hook (`KBRIDGE_TEST_TEARDOWN_DELAY_MS`): it waits this long before
/// undoing, so the test can record what the cluster looked like at the kill. Subtracted
/// from the times the tables show.
const TEARDOWN_DELAY: Duration = Duration::from_millis(1500);
/// The original image of todo-api's container (the sample app's manifest).
const TODO_API_IMAGE: &str = "kbridge-samples/todo-api:1.0";

/// How a phase of the setup is recognised.
#[derive(Clone, Copy)]
enum Trigger {
    /// kbridge printed a progress line containing this (`kbridge: <step>`, one per step
    /// without a tty). Each is printed right after the step before it finished.
    Line(&'static str),
    /// The session's token Secret appeared (a watch on the namespace): no progress line
    /// falls between creating it and taking the Lease.
    SecretCreated,
}

/// The setup steps, in the order kbridge takes them (`adapter/src/session/cluster/session.rs`):
/// Secret → Lease → template patched → restorer (ServiceAccount, Role, RoleBinding, Job) →
/// rollout → tunnels → up.
const PHASES: [(&str, Trigger); 6] = [
    ("session Secret exists", Trigger::SecretCreated),
    // Printed after the Lease is acquired, just before the template patch.
    ("Lease exists", Trigger::Line("replacing container")),
    // Printed after the patch, before the restorer's objects are created.
    (
        "template patched",
        Trigger::Line("starting the in-cluster restorer"),
    ),
    // The first rollout report comes after the restorer's Job was created.
    ("restorer Job exists", Trigger::Line("0/2 agent pods ready")),
    (
        "rollout: 1/2 agent pods Ready",
        Trigger::Line("1/2 agent pods ready"),
    ),
    (
        "tunnels open, session up",
        Trigger::Line("is up; press Ctrl-C"),
    ),
];

/// A `kbridge connect` on todo-api whose stderr lines arrive on a channel.
struct Session {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    tmp: PathBuf,
}

impl Session {
    fn start(fixture: &TestCluster, tmp: &Path) -> Session {
        let mut child = Command::new(kbridge_bin())
            .arg("connect")
            .args(fixture.todo_api_target())
            .env("KUBECONFIG", &fixture.kubeconfig)
            .env("TMPDIR", tmp)
            .env("KBRIDGE_IDLE_RESTORE_SECS", IDLE_RESTORE_SECS.to_string())
            .env(
                "KBRIDGE_TEST_TEARDOWN_DELAY_MS",
                TEARDOWN_DELAY.as_millis().to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kbridge connect");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Session {
            child,
            lines,
            seen: Vec::new(),
            tmp: tmp.to_path_buf(),
        }
    }

    /// The next stderr line, or a panic with everything kbridge said if it ended first.
    async fn next_line(&mut self, waiting_for: &str) -> String {
        let next = tokio::time::timeout(Duration::from_secs(180), self.lines.recv()).await;
        match next {
            Ok(Some(line)) => {
                self.seen.push(line.clone());
                line
            }
            Ok(None) => panic!(
                "kbridge ended ({:?}) before {waiting_for}; it said:\n{}",
                self.child.try_wait(),
                self.seen.join("\n")
            ),
            Err(_) => panic!(
                "no progress from kbridge for 180 s while waiting for {waiting_for}; it said:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Waits for a progress line containing `needle`.
    async fn wait_line(&mut self, needle: &str) {
        while !self.next_line(needle).await.contains(needle) {}
    }

    /// Waits for the session's token Secret (managed by kbridge, not a restorer's).
    async fn wait_secret(&mut self, client: &kube::Client, ns: &str) {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=kbridge");
        let mut created = watcher(secrets, config).applied_objects().boxed();
        loop {
            tokio::select! {
                secret = created.next() => match secret {
                    Some(Ok(s)) if s.metadata.name.as_deref().is_some_and(|n| n.starts_with("kbridge-")) => return,
                    Some(_) => {}
                    None => panic!("the Secret watch ended"),
                },
                _ = self.next_line("the session Secret") => {}
            }
        }
    }

    /// SIGKILL, as a crash or `kill -9` would; no chance to tear down.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The session's log (kbridge's and its guardian's lines), all logs of its TMPDIR.
    fn log(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.tmp.join("kbridge"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "log") {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        text
    }

    /// The pids of this session's guardian (`kbridge guard --session ID`, in its own
    /// process group, with the session's TMPDIR).
    fn guardians(&self) -> Vec<u32> {
        let tmpdir = format!("TMPDIR={}", self.tmp.display());
        kbridge_tests::cluster::pids_with(&["guard", "--session"])
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|e| e.split(|b| *b == 0).any(|v| v == tmpdir.as_bytes()))
                    .unwrap_or(false)
            })
            .collect()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the cluster held when kbridge was killed (read while the guardian waits out its
/// test delay): which of the session's objects existed and how far the rollout was.
struct AtKill {
    secret: bool,
    lease: bool,
    patched: bool,
    job: bool,
    agents_ready: usize,
}

impl AtKill {
    async fn read(client: &kube::Client, ns: &str) -> AtKill {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let managed = ListParams::default().labels("app.kubernetes.io/managed-by=kbridge");
        let secret = !secrets
            .list(&managed)
            .await
            .expect("secrets")
            .items
            .is_empty();
        let lease = leases
            .get_opt("kbridge-deployment-todo-api")
            .await
            .expect("lease")
            .is_some();
        let image = template_image(&deployments).await;
        let job = jobs
            .list(&ListParams::default())
            .await
            .expect("jobs")
            .items
            .iter()
            .any(|j| {
                j.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("kbridge-restorer-"))
            });
        let agents_ready = pods
            .list(&ListParams::default().labels("app=todo-api"))
            .await
            .expect("pods")
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.spec.as_ref().is_some_and(|s| {
                    s.containers
                        .iter()
                        .any(|c| c.image.as_deref() == Some(agent_image().as_str()))
                })
            })
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        AtKill {
            secret,
            lease,
            patched: image.as_deref() == Some(agent_image().as_str()),
            job,
            agents_ready,
        }
    }

    fn describe(&self) -> String {
        let mark = |present: bool, name: &str| {
            if present {
                name.to_string()
            } else {
                format!("no {name}")
            }
        };
        format!(
            "{}, {}, {}, {}, {}/2 agents Ready",
            mark(self.secret, "secret"),
            mark(self.lease, "lease"),
            if self.patched { "patched" } else { "unpatched" },
            mark(self.job, "job"),
            self.agents_ready
        )
    }
}

/// The image of todo-api's first container in its pod template.
async fn template_image(deployments: &Api<Deployment>) -> Option<String> {
    let deployment = deployments
        .get("todo-api")
        .await
        .expect("deployment/todo-api");
    serde_json::to_value(&deployment)
        .expect("json")
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(|i| i.as_str().map(str::to_string))
}

/// One row of a table.
struct Row {
    phase: String,
    at_kill: String,
    by: String,
    took: Option<Duration>,
    /// The cell passed: restored in time, nothing left.
    ok: bool,
    leftovers: Vec<String>,
}

/// The cells that did not pass, each with what it left behind.
fn failed_cells(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{}: {}\n    {}", r.phase, r.by, r.leftovers.join("\n    ")))
        .collect()
}

fn print_table(title: &str, times: &str, cluster: &TestCluster, rows: &[Row]) {
    let on = if cluster.is_real() {
        "real cluster"
    } else {
        "kube-fixture"
    };
    let mut out = format!("\n{title} ({on}; idleRestoreSeconds {IDLE_RESTORE_SECS}; {times})\n");
    out.push_str(&format!(
        "| {:<31} | {:<58} | {:<40} | {:>10} |\n|{}|{}|{}|{}|\n",
        "killed at",
        "cluster at the kill",
        "outcome",
        "restored",
        "-".repeat(33),
        "-".repeat(60),
        "-".repeat(42),
        "-".repeat(12)
    ));
    for row in rows {
        let took = row
            .took
            .map(|t| format!("{:.1} s", t.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "| {:<31} | {:<58} | {:<40} | {:>10} |\n",
            row.phase, row.at_kill, row.by, took
        ));
    }
    eprintln!("{out}");
}

/// Who put the workload back, from the session's log: the guardian logs the outcome of its
/// RestoreWorkload step (`Restored {…}` when it patched the template back itself).
fn restored_by(log: &str, patched_at_kill: bool) -> &'static str {
    let guardian_ran = log.contains("kbridge went away without tearing down");
    if log.contains("outcome=Restored {") {
        "guardian"
    } else if guardian_ran && !patched_at_kill {
        "guardian (template was never patched)"
    } else if patched_at_kill {
        "restorer (the guardian found nothing)"
    } else {
        "nobody needed (nothing had changed)"
    }
}

/// Whether a census difference is in the cluster (rather than on this machine).
fn in_cluster(line: &str) -> bool {
    ["kbridge objects", "workloads", "services", "pods by image"]
        .iter()
        .any(|section| line[2..].starts_with(section))
}

/// After a cell that was not restored, puts the namespace back so later phases can run
/// (`kbridge restore`, and the session's objects deleted).
fn repair(fixture: &TestCluster) {
    let ns = fixture.namespace.as_str();
    let _ = Command::new(kbridge_bin())
        .args(["restore", "--namespace", ns, "--all"])
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", temp_dir("chaos-repair"))
        .output();
    for kind in [
        "jobs",
        "leases",
        "secrets",
        "roles",
        "rolebindings",
        "serviceaccounts",
    ] {
        let _ = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&fixture.kubeconfig)
            .args([
                "-n",
                ns,
                "delete",
                kind,
                "-l",
                "app.kubernetes.io/managed-by=kbridge",
            ])
            .output();
    }
    let _ = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&fixture.kubeconfig)
        .args([
            "-n",
            ns,
            "delete",
            "lease",
            "kbridge-deployment-todo-api",
            "--ignore-not-found",
        ])
        .output();
    fixture.rollout_status("todo-api");
}

/// kbridge alone SIGKILLed at each setup phase: its guardian (which outlives it) puts
/// everything back, quickly; the table shows who restored each cell and how fast. Fails
/// if any cell is not restored within idleRestoreSeconds + 120 s or leaves anything behind.
#[tokio::test(flavor = "multi_thread")]
async fn kbridge_killed_at_each_setup_phase_is_cleaned_up() {
    let fixture = TestCluster::start_demo("chaos-phases");
    let ns = fixture.namespace.clone();
    let mut scope = Scope::new(&fixture, &[]).await;
    let client = scope.client().clone();
    let mut rows = Vec::new();
    for (i, (phase, trigger)) in PHASES.iter().enumerate() {
        let tmp = temp_dir(&format!("chaos-phase-{i}"));
        scope.add_tmpdir(&tmp);
        let before = Census::take(&scope).await;
        let mut session = Session::start(&fixture, &tmp);
        match trigger {
            Trigger::Line(needle) => session.wait_line(needle).await,
            Trigger::SecretCreated => session.wait_secret(&client, &ns).await,
        }
        session.kill();
        let killed = Instant::now();
        let at_kill = AtKill::read(&client, &ns).await;
        let limit = Duration::from_secs(IDLE_RESTORE_SECS + 120);
        let settled = census::settled(&scope, &before, limit).await;
        let took = killed.elapsed().saturating_sub(TEARDOWN_DELAY);
        let image = fixture.todo_api_template_image();
        let leftovers = settled.err().unwrap_or_default();
        let by = if image != TODO_API_IMAGE || leftovers.iter().any(|l| in_cluster(l)) {
            "NOT restored".to_string()
        } else if leftovers.is_empty() {
            restored_by(&session.log(), at_kill.patched).to_string()
        } else {
            format!(
                "{}; LEFT {} local item(s)",
                restored_by(&session.log(), at_kill.patched),
                leftovers.len()
            )
        };
        let ok = leftovers.is_empty() && !by.starts_with("NOT");
        let took = (!by.starts_with("NOT")).then_some(took);
        if by.starts_with("NOT") {
            repair(&fixture);
        }
        rows.push(Row {
            phase: phase.to_string(),
            at_kill: at_kill.describe(),
            by,
            took,
            ok,
            leftovers,
        });
    }
    print_table(
        "kbridge connect SIGKILLed at each setup phase",
        "restored = census as before; time from the kill, the guardian's test delay excluded",
        &fixture,
        &rows,
    );
    let failed = failed_cells(&rows);
    assert!(
        failed.is_empty(),
        "cells not restored, or that left something behind (census before → after):\n{}",
        failed.join("\n")
    );
    for row in &rows {
        assert!(
            row.by.starts_with("guardian"),
            "with the guardian alive it, not the restorer, cleans up: {} → {}",
            row.phase,
            row.by
        );
    }
}

/// kbridge and its guardian SIGKILLed together (the laptop is gone): the in-cluster
/// restorer puts the workload back within idleRestoreSeconds + 10 s of the kill — once the
/// session is up, and also half way through the rollout (agents that never had an adapter
/// count as idle from their start) — and nothing of the session stays: in the cluster, the
/// restorer removes it; on this machine, the next kbridge started there.
#[tokio::test(flavor = "multi_thread")]
async fn kbridge_and_its_guardian_killed_together_are_restored_by_the_restorer() {
    let fixture = TestCluster::start_demo("chaos-both");
    let ns = fixture.namespace.clone();
    let mut scope = Scope::new(&fixture, &[]).await;
    let client = scope.client().clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut rows = Vec::new();
    for (i, (phase, needle)) in [
        ("tunnels open, session up", "is up; press Ctrl-C"),
        ("rollout: 1/2 agent pods Ready", "1/2 agent pods ready"),
    ]
    .into_iter()
    .enumerate()
    {
        let tmp = temp_dir(&format!("chaos-both-{i}"));
        scope.add_tmpdir(&tmp);
        let before = Census::take(&scope).await;
        let mut session = Session::start(&fixture, &tmp);
        session.wait_line(needle).await;
        let guardians = session.guardians();
        assert_eq!(
            guardians.len(),
            1,
            "one guardian for the session: {guardians:?}"
        );
        // The guardian first: killed second, it would see kbridge go and tear down.
        kill9(guardians[0]);
        session.kill();
        let killed = Instant::now();
        let at_kill = AtKill::read(&client, &ns).await;
        assert!(at_kill.job, "the restorer's Job existed at the kill");
        // The restorer's deadline: the template back within idleRestoreSeconds + 10 s.
        let deadline = Duration::from_secs(IDLE_RESTORE_SECS + 10);
        let mut template_back = None;
        while killed.elapsed() < deadline + Duration::from_secs(120) {
            let image = template_image(&deployments).await;
            if image.as_deref() == Some(TODO_API_IMAGE) {
                template_back = Some(killed.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Nothing of the session survived on this machine to remove its files (live socket,
        // private directory): the next kbridge to start here does (`kbridge status`).
        let status = Command::new(kbridge_bin())
            .args(["status", "--namespace", &ns])
            .env("KUBECONFIG", &fixture.kubeconfig)
            .env("TMPDIR", &tmp)
            .output()
            .expect("kbridge status");
        assert!(status.status.success(), "kbridge status: {status:?}");
        let settled = census::settled(&scope, &before, Duration::from_secs(180)).await;
        let log = session.log();
        assert!(
            !log.contains("kbridge went away without tearing down"),
            "the guardian died before it could tear down"
        );
        let leftovers = settled.err().unwrap_or_default();
        let by = match template_back {
            _ if leftovers.iter().any(|l| in_cluster(l)) => "NOT restored".to_string(),
            None => "NOT restored (template)".to_string(),
            Some(t) if t > deadline => format!("restorer, too late ({:.1} s)", t.as_secs_f64()),
            Some(_) if !leftovers.is_empty() => {
                format!("restorer; LEFT {} local item(s)", leftovers.len())
            }
            Some(_) => "restorer".to_string(),
        };
        let ok = by == "restorer";
        if by.starts_with("NOT") {
            repair(&fixture);
        }
        rows.push(Row {
            phase: phase.to_string(),
            at_kill: at_kill.describe(),
            by,
            took: template_back,
            ok,
            leftovers,
        });
    }
    print_table(
        "kbridge connect and its guardian SIGKILLed together",
        "restored = template back, from the kill; the census is checked after",
        &fixture,
        &rows,
    );
    let failed = failed_cells(&rows);
    assert!(
        failed.is_empty(),
        "not restored by the restorer within idleRestoreSeconds + 10 s ({} s), or something left behind:\n{}",
        IDLE_RESTORE_SECS + 10,
        failed.join("\n")
    );
}
