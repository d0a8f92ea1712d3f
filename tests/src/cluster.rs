//! Helpers for tests against the test cluster (kube-fixture or a real one): a kube client,
//! plain HTTP calls to ClusterIPs, a snapshot of a namespace's objects to prove a session left nothing behind,
//! and finding kbridge's own processes (to kill them the way a crash would).

use crate::fixture::TestCluster;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

/// A free local TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// GET `path` over plain HTTP/1.0; returns the body.
pub fn http_get(host: &str, port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// A client for the test cluster, default namespace the test's (`fixture.namespace`).
pub async fn client_for(fixture: &TestCluster) -> kube::Client {
    kbridge::session::cluster::connection::Cluster::connect_with(
        Some(&fixture.kubeconfig),
        None,
        Some(&fixture.namespace),
    )
    .await
    .expect("connect")
    .client
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Every object of the kinds a session may touch in `namespace`, as JSON, without what
/// Kubernetes itself changes (resourceVersion, generation, status, timestamps, uid) — so
/// `before == after` means the session left the namespace exactly as it found it. Pods
/// are left out: a rollout replaces them by design.
pub async fn namespace_snapshot(client: &kube::Client, namespace: &str) -> Value {
    let kinds = [
        resource("apps", "v1", "Deployment", "deployments"),
        resource("apps", "v1", "StatefulSet", "statefulsets"),
        resource("", "v1", "Service", "services"),
        resource("", "v1", "Secret", "secrets"),
        resource("", "v1", "ConfigMap", "configmaps"),
        resource("", "v1", "ServiceAccount", "serviceaccounts"),
        resource("coordination.k8s.io", "v1", "Lease", "leases"),
        resource("batch", "v1", "Job", "jobs"),
        resource("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        resource(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
        ),
        resource("networking.k8s.io", "v1", "Ingress", "ingresses"),
    ];
    let mut snapshot = serde_json::Map::new();
    for ar in kinds {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        let mut objects = serde_json::Map::new();
        for object in api.list(&ListParams::default()).await.expect("list").items {
            let mut value = serde_json::to_value(&object).expect("json");
            if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                for volatile in [
                    "resourceVersion",
                    "generation",
                    "uid",
                    "creationTimestamp",
                    "managedFields",
                ] {
                    meta.remove(volatile);
                }
                // The Deployment controller records its revision; a rollout and its
                // rollback legitimately move it.
                if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                    a.remove("deployment.kubernetes.io/revision");
                }
                // Taken right after start, the controller may not have annotated yet.
                if meta
                    .get("annotations")
                    .and_then(Value::as_object)
                    .is_some_and(|a| a.is_empty())
                {
                    meta.remove("annotations");
                }
            }
            if let Some(o) = value.as_object_mut() {
                o.remove("status");
            }
            let name = object.metadata.name.clone().unwrap_or_default();
            objects.insert(name, value);
        }
        snapshot.insert(ar.plural.clone(), Value::Object(objects));
    }
    json!(snapshot)
}

/// The names (in `snapshot` order) that differ between two snapshots, for readable failures.
pub fn snapshot_diff(before: &Value, after: &Value) -> Vec<String> {
    let mut differences = Vec::new();
    let empty = serde_json::Map::new();
    for (kind, objects) in before.as_object().unwrap_or(&empty) {
        let later = after[kind].as_object().unwrap_or(&empty);
        for (name, value) in objects.as_object().unwrap_or(&empty) {
            match later.get(name) {
                None => differences.push(format!("{kind}/{name} is gone")),
                Some(v) if v != value => differences.push(format!("{kind}/{name} changed: {v}")),
                _ => {}
            }
        }
        for name in later.keys() {
            if !objects.as_object().unwrap_or(&empty).contains_key(name) {
                differences.push(format!("{kind}/{name} was left behind"));
            }
        }
    }
    differences
}

/// Every process on the machine: its pid and its `/proc/<pid>` directory.
pub fn proc_dirs() -> impl Iterator<Item = (u32, std::path::PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((pid, entry.path()))
        })
}

/// Pids of processes whose command line contains every one of `words`.
pub fn pids_with(words: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for (pid, dir) in proc_dirs() {
        let Ok(raw) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if words.iter().all(|w| args.iter().any(|a| a.contains(w))) {
            found.push(pid);
        }
    }
    found
}

/// SIGKILLs a process, as a crash or an editor force-quit would.
pub fn kill9(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `namespace` is exactly as in `before` (see [`namespace_snapshot`]).
pub async fn restored_to(client: &kube::Client, namespace: &str, before: &Value, limit: Duration) {
    let mut last = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        last = snapshot_diff(before, &namespace_snapshot(client, namespace).await);
        if last.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("namespace {namespace} is not back as it was after {limit:?}: {last:#?}");
}

/// A `kbridge connect` running in the background, its session up.
pub struct Connected {
    /// The `kbridge connect` process.
    pub child: std::process::Child,
    /// The session id it printed.
    pub id: String,
    /// Its stderr lines, read on a thread so the pipe never fills.
    _stderr: std::sync::mpsc::Receiver<String>,
}

impl Connected {
    /// The laptop is gone: the guardian first (it would start the teardown the moment
    /// kbridge is gone), then kbridge, both without a word.
    pub fn crash(&mut self) {
        let guardians = pids_with(&["guard", &self.id]);
        assert!(!guardians.is_empty(), "session {} has a guardian", self.id);
        for pid in guardians {
            kill9(pid);
        }
        kill9(self.child.id());
        let _ = self.child.wait();
    }

    /// Ends the session as Ctrl-C in a terminal would (SIGTERM); it must exit cleanly.
    pub fn stop(&mut self) {
        std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "kbridge connect ended cleanly: {status:?}"
        );
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kbridge connect ARGS` on `fixture` (with `TMPDIR=tmp` and `envs`) and waits
/// until it says its session is up. ARGS name the namespace (`--namespace`).
pub fn connect(
    fixture: &TestCluster,
    tmp: &std::path::Path,
    envs: &[(&str, &str)],
    args: &[&str],
) -> Connected {
    use std::io::BufRead;
    let mut child = std::process::Command::new(crate::kbridge_bin())
        .arg("connect")
        .args(args)
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", tmp)
        .envs(envs.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kbridge connect");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let id = loop {
        let line = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                if std::time::Instant::now() < deadline =>
            {
                continue
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                // Whatever it said last, so the failure explains itself.
                seen.extend(rx.try_iter().map(|l| l + "\n"));
                panic!("kbridge connect {args:?} did not come up ({status:?}): {seen}");
            }
        };
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("session ").nth(1) {
            if let Some(id) = rest.strip_suffix(" is up; press Ctrl-C to end it") {
                break id.to_string();
            }
        }
    };
    Connected {
        child,
        id,
        _stderr: rx,
    }
}
