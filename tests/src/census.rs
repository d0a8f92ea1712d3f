//! A census of everything a kbridge session can leave behind, on this machine and in the
//! test's namespace: taken before a test and again after it, the two must be equal, and
//! [`Census::diff`] says what is not, line by line.
//!
//! What is counted, per [`Scope`] (the test's cluster, namespace and the `TMPDIR`s its
//! kbridge processes ran with):
//! - **kbridge processes**: every process whose environment has one of the scope's
//!   `TMPDIR`s (kbridge, its guardian, `ns-exec`, the bridged command, a background
//!   `connect`), by command line;
//! - **fds**: every open file descriptor, of any process, into the scope's state
//!   directories; on kube-fixture also the fixture's own descriptors by kind (namespace
//!   handles, pod log files, pipes, port-forward connections to agents on :7311);
//! - **network namespaces** (kube-fixture): the pods' distinct network namespaces and the
//!   veths on the fixture's bridge (on a real cluster they belong to the node's runtime,
//!   counted through the pods);
//! - **hosts entries**: `/etc/hosts` blocks of the scope's sessions (ids taken from their
//!   log files);
//! - **state files**: everything under `$TMPDIR/kbridge` except the log files, which are
//!   kept on purpose (`docs/architecture.md`, "Local state"), and the `sessions/` and `live/` directories themselves;
//! - **cluster objects**: Leases, Secrets, Roles, RoleBindings, ServiceAccounts, Jobs and
//!   ConfigMaps labelled `app.kubernetes.io/managed-by=kbridge` or named `kbridge-*`;
//!   every Deployment's and StatefulSet's images, `kbridge.dev/*` annotations and rollout
//!   counts; every Service's selector and `kbridge.dev/*` annotations; pods by image.

use crate::fixture::TestCluster;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a census looks at.
pub struct Scope {
    namespace: String,
    client: kube::Client,
    state_dirs: Vec<PathBuf>,
    fixture_pid: Option<u32>,
}

impl Scope {
    /// The test's namespace on `cluster`, and kbridge processes run with `TMPDIR` in
    /// `tmpdirs` (their state directories are `TMPDIR/kbridge`).
    pub async fn new(cluster: &TestCluster, tmpdirs: &[&Path]) -> Scope {
        Scope {
            namespace: cluster.namespace.clone(),
            client: crate::cluster::client_for(cluster).await,
            state_dirs: tmpdirs.iter().map(|p| p.to_path_buf()).collect(),
            fixture_pid: cluster.fixture_pid(),
        }
    }

    /// Adds a `TMPDIR` (a test that starts kbridge with a fresh one per run).
    pub fn add_tmpdir(&mut self, tmpdir: &Path) {
        self.state_dirs.push(tmpdir.to_path_buf());
    }

    /// The scope's kube client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn state_roots(&self) -> Vec<PathBuf> {
        self.state_dirs.iter().map(|d| d.join("kbridge")).collect()
    }
}

/// Section → item → value (a count or a description).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census(pub BTreeMap<&'static str, BTreeMap<String, String>>);

impl Census {
    /// Counts everything in `scope` now.
    pub async fn take(scope: &Scope) -> Census {
        let mut census = Census::default();
        let procs = processes();
        census.local(scope, &procs);
        if let Some(pid) = scope.fixture_pid {
            census.fixture(pid, &procs);
        }
        census.cluster(scope).await;
        census
    }

    fn put(&mut self, section: &'static str, item: impl Into<String>, value: impl Into<String>) {
        self.0
            .entry(section)
            .or_default()
            .insert(item.into(), value.into());
    }

    fn count(&mut self, section: &'static str, item: impl Into<String>) {
        let entry = self
            .0
            .entry(section)
            .or_default()
            .entry(item.into())
            .or_insert_with(|| "0".into());
        *entry = (entry.parse::<u64>().unwrap_or(0) + 1).to_string();
    }

    /// One line per difference: `+ section: item = value` (new), `- …` (gone),
    /// `~ section: item: before → after` (changed).
    pub fn diff(&self, after: &Census) -> Vec<String> {
        let empty = BTreeMap::new();
        let sections: BTreeSet<&&str> = self.0.keys().chain(after.0.keys()).collect();
        let mut lines = Vec::new();
        for section in sections {
            let old = self.0.get(*section).unwrap_or(&empty);
            let new = after.0.get(*section).unwrap_or(&empty);
            for (item, value) in new {
                match old.get(item) {
                    None => lines.push(format!("+ {section}: {item} = {value}")),
                    Some(was) if was != value => {
                        lines.push(format!("~ {section}: {item}: {was} → {value}"))
                    }
                    _ => {}
                }
            }
            for (item, value) in old {
                if !new.contains_key(item) {
                    lines.push(format!("- {section}: {item} = {value}"));
                }
            }
        }
        lines
    }

    /// The items of a section (empty if none).
    pub fn section(&self, name: &str) -> BTreeMap<String, String> {
        self.0.get(name).cloned().unwrap_or_default()
    }

    /// This machine's side: kbridge processes, fds into the state dirs, hosts entries,
    /// state files.
    fn local(&mut self, scope: &Scope, procs: &[Proc]) {
        let tmpdirs: Vec<String> = scope
            .state_dirs
            .iter()
            .map(|d| format!("TMPDIR={}", d.display()))
            .collect();
        let roots = scope.state_roots();
        for proc in procs {
            if proc.pid == std::process::id() {
                continue;
            }
            if let Ok(environ) = std::fs::read(format!("/proc/{}/environ", proc.pid)) {
                let ours = environ
                    .split(|b| *b == 0)
                    .any(|v| tmpdirs.iter().any(|t| t.as_bytes() == v));
                if ours {
                    let mut line = proc.cmdline.clone();
                    line.truncate(160);
                    self.count("kbridge processes", line);
                }
            }
            for (_, target) in fds(proc.pid) {
                if roots
                    .iter()
                    .any(|r| target.starts_with(&*r.to_string_lossy()))
                {
                    self.count("fds into state dirs", format!("{} → {target}", proc.comm));
                }
            }
        }
        let mut ids = BTreeSet::new();
        for root in &roots {
            walk(root, root, &mut |relative, kind| {
                let name = relative.to_string_lossy().into_owned();
                if let Some(stem) = name.strip_suffix(".log").filter(|s| !s.contains('/')) {
                    // Logs are kept on purpose; their names give the sessions' ids.
                    ids.insert(stem.trim_start_matches("dap-").to_string());
                    return;
                }
                if name == "sessions" || name == "live" {
                    return;
                }
                self.put("state files", format!("{}/{name}", root.display()), kind);
            });
        }
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        for line in hosts.lines() {
            if line.starts_with("# kbridge session ") && ids.iter().any(|id| line.contains(id)) {
                self.count("hosts entries", line);
            }
        }
    }

    /// kube-fixture's side: pod processes, its own fds by kind, pod network namespaces.
    fn fixture(&mut self, fixture: u32, procs: &[Proc]) {
        let mut children: BTreeMap<u32, Vec<&Proc>> = BTreeMap::new();
        for proc in procs {
            children.entry(proc.ppid).or_default().push(proc);
        }
        let mut queue = vec![fixture];
        let mut netns = BTreeSet::new();
        let own_netns = std::fs::read_link(format!("/proc/{fixture}/ns/net")).ok();
        while let Some(pid) = queue.pop() {
            for child in children.get(&pid).into_iter().flatten() {
                queue.push(child.pid);
                self.count("pod processes (kube-fixture)", child.comm.clone());
                if let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/net", child.pid)) {
                    if Some(&ns) != own_netns.as_ref() {
                        netns.insert(ns);
                    }
                }
            }
        }
        self.put(
            "network namespaces (kube-fixture)",
            "distinct pod network namespaces",
            netns.len().to_string(),
        );
        if let Some(bridge) = fixture_bridge(fixture) {
            let veths = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
                .map(|d| d.count())
                .unwrap_or(0);
            self.put(
                "network namespaces (kube-fixture)",
                format!("veths on bridge {bridge}"),
                veths.to_string(),
            );
        }
        let tcp = tcp_sockets(fixture);
        for (_, target) in fds(fixture) {
            let kind = if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
            {
                match tcp.get(inode) {
                    Some(s) if s.state == "0A" => format!("tcp listening on :{}", s.local_port),
                    // Connections to its API server (the test's own client among them)
                    // come and go; what a session could leak is a port-forward to an agent.
                    Some(s) if s.remote_port == 7311 => {
                        format!("port-forward to an agent :7311 (tcp state {})", s.state)
                    }
                    Some(_) => continue,
                    None => "socket (not tcp)".into(),
                }
            } else if target.contains("/pods/") && target.ends_with(".log") {
                "pod log file".into()
            } else if let Some((kind, _)) = target.split_once(":[") {
                kind.to_string()
            } else if let Some(kind) = target.strip_prefix("anon_inode:") {
                format!("anon_inode {kind}")
            } else {
                target
            };
            self.count("kube-fixture fds", kind);
        }
    }

    /// The namespace's side.
    async fn cluster(&mut self, scope: &Scope) {
        for (group, kind, plural) in [
            ("coordination.k8s.io", "Lease", "leases"),
            ("", "Secret", "secrets"),
            ("rbac.authorization.k8s.io", "Role", "roles"),
            ("rbac.authorization.k8s.io", "RoleBinding", "rolebindings"),
            ("", "ServiceAccount", "serviceaccounts"),
            ("batch", "Job", "jobs"),
            ("", "ConfigMap", "configmaps"),
        ] {
            for object in list(scope, group, kind, plural).await {
                let name = object.metadata.name.clone().unwrap_or_default();
                let managed = object
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app.kubernetes.io/managed-by"))
                    .is_some_and(|v| v == "kbridge");
                if managed || name.starts_with("kbridge-") {
                    let deleting = object.metadata.deletion_timestamp.is_some();
                    self.put(
                        "kbridge objects",
                        format!("{plural}/{name}"),
                        if deleting { "terminating" } else { "present" },
                    );
                }
            }
        }
        for (kind, plural) in [
            ("Deployment", "deployments"),
            ("StatefulSet", "statefulsets"),
        ] {
            for object in list(scope, "apps", kind, plural).await {
                let value = serde_json::to_value(&object).unwrap_or_default();
                let name = object.metadata.name.clone().unwrap_or_default();
                let images: Vec<&str> = value
                    .pointer("/spec/template/spec/containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["image"].as_str())
                    .collect();
                let status = |field: &str| value["status"][field].as_i64().unwrap_or(0);
                self.put(
                    "workloads",
                    format!("{plural}/{name}"),
                    format!(
                        "images {images:?}; kbridge annotations {:?}; {} wanted, {} updated, {} ready, {} in all",
                        kbridge_annotations(&object.metadata),
                        value["spec"]["replicas"].as_i64().unwrap_or(1),
                        status("updatedReplicas"),
                        status("readyReplicas"),
                        status("replicas"),
                    ),
                );
            }
        }
        for object in list(scope, "", "Service", "services").await {
            let value = serde_json::to_value(&object).unwrap_or_default();
            self.put(
                "services",
                object.metadata.name.clone().unwrap_or_default(),
                format!(
                    "selector {}; kbridge annotations {:?}",
                    value["spec"]["selector"],
                    kbridge_annotations(&object.metadata)
                ),
            );
        }
        for object in list(scope, "", "Pod", "pods").await {
            let value = serde_json::to_value(&object).unwrap_or_default();
            let images: Vec<&str> = value
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c["image"].as_str())
                .collect();
            let deleting = if object.metadata.deletion_timestamp.is_some() {
                " (terminating)"
            } else {
                ""
            };
            self.count("pods by image", format!("{images:?}{deleting}"));
        }
    }
}

/// Waits (up to `limit`) until a census of `scope` equals `before`; returns how long that
/// took, or the last differences.
pub async fn settled(
    scope: &Scope,
    before: &Census,
    limit: Duration,
) -> Result<Duration, Vec<String>> {
    let started = Instant::now();
    loop {
        let diff = before.diff(&Census::take(scope).await);
        if diff.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(diff);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// [`settled`], panicking with the differences: "`what` left something behind".
pub async fn assert_nothing_left(
    scope: &Scope,
    before: &Census,
    limit: Duration,
    what: &str,
) -> Duration {
    match settled(scope, before, limit).await {
        Ok(took) => took,
        Err(diff) => panic!(
            "{what} left something behind ({limit:?} after it ended); census before → after:\n  {}",
            diff.join("\n  ")
        ),
    }
}

fn kbridge_annotations(meta: &kube::api::ObjectMeta) -> Vec<String> {
    meta.annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("kbridge.dev/"))
        .map(|(k, _)| k.clone())
        .collect()
}

async fn list(scope: &Scope, group: &str, kind: &str, plural: &str) -> Vec<DynamicObject> {
    let version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    let resource = ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: version,
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(scope.client.clone(), &scope.namespace, &resource);
    // A transient API error must not pass for "nothing there": retry, then fail loudly.
    let mut tries = 0;
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => return list.items,
            Err(error) if tries < 5 => {
                tries += 1;
                eprintln!("census: listing {plural} failed ({error}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!(
                "census: cannot list {plural} in {}: {error}",
                scope.namespace
            ),
        }
    }
}

/// A process as /proc shows it.
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// `comm`.
    pub comm: String,
    /// Its arguments joined by spaces.
    pub cmdline: String,
}

/// Every process on the machine.
pub fn processes() -> Vec<Proc> {
    let mut found = Vec::new();
    for (pid, dir) in crate::cluster::proc_dirs() {
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        if state == "Z" || state == "X" {
            continue;
        }
        let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(dir.join("cmdline"))
            .map(|raw| {
                raw.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        found.push(Proc {
            pid,
            ppid,
            comm,
            cmdline,
        });
    }
    found
}

/// The open fds of `pid` and what they point to.
fn fds(pid: u32) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

struct TcpSocket {
    local_port: u16,
    remote_port: u16,
    state: String,
}

/// TCP sockets in `pid`'s network namespace, by inode.
fn tcp_sockets(pid: u32) -> BTreeMap<String, TcpSocket> {
    let mut sockets = BTreeMap::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            let port = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    .unwrap_or(0)
            };
            sockets.insert(
                fields[9].to_string(),
                TcpSocket {
                    local_port: port(fields[1]),
                    remote_port: port(fields[2]),
                    state: fields[3].to_string(),
                },
            );
        }
    }
    sockets
}

/// The fixture's bridge (`kfb<id>`): the one holding the gateway address its pods route
/// through.
fn fixture_bridge(fixture: u32) -> Option<String> {
    let subnets = pod_subnets(fixture);
    std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kfb"))
        .find(|bridge| {
            let addr = std::process::Command::new("ip")
                .args(["-o", "-4", "addr", "show", "dev", bridge])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            subnets
                .iter()
                .any(|subnet| addr.contains(&format!(" {subnet}.")))
        })
}

/// The /24 prefixes (`198.18.12`) of the fixture's pods' addresses, from their routing
/// tables (`/proc/<pid>/net/fib_trie` lists local addresses).
fn pod_subnets(fixture: u32) -> BTreeSet<String> {
    let mut subnets = BTreeSet::new();
    for proc in processes().iter().filter(|p| p.ppid == fixture) {
        let Ok(route) = std::fs::read_to_string(format!("/proc/{}/net/route", proc.pid)) else {
            continue;
        };
        for line in route.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // The default route's gateway (little-endian hex) is the bridge's address.
            if fields.len() > 2 && fields[0] == "eth0" && fields[1] == "00000000" {
                if let Ok(gw) = u32::from_str_radix(fields[2], 16) {
                    let b = gw.to_le_bytes();
                    subnets.insert(format!("{}.{}.{}", b[0], b[1], b[2]));
                }
            }
        }
    }
    subnets
}

/// Calls `visit(relative path, kind)` for everything under `dir`.
fn walk(root: &Path, dir: &Path, visit: &mut dyn FnMut(&Path, &'static str)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let kind = if meta.is_dir() {
            "directory"
        } else if meta.file_type().is_symlink() {
            "symlink"
        } else {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                "socket"
            } else {
                "file"
            }
        };
        visit(&relative, kind);
        if meta.is_dir() {
            walk(root, &path, visit);
        }
    }
}
