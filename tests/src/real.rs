//! The real-cluster side of the test suite (`docs/architecture.md`, "Test clusters").
//!
//! When `KBRIDGE_TEST_KUBECONFIG` names a kubeconfig, [`crate::fixture::TestCluster`] does
//! not start kube-fixture: every test gets a fresh namespace `kbt-<tag>-<6 hex>` on that
//! cluster, with the sample apps of `fixtures/apps/manifests/todo.yaml` deployed into it
//! (every document but the Namespace, `metadata.namespace` rewritten; image names kept, as
//! the cluster's containerd resolves them through its local registry mirror), and the
//! namespace is deleted when the test ends. Tests never rely on the kubeconfig's default
//! namespace: they pass the handle's `namespace` to kubectl, kbridge and kube clients.
//!
//! This module holds the pieces that do not need a running cluster (names, the manifest
//! rewrite, a ServiceAccount kubeconfig built from the admin one), so they are unit-tested
//! on every run; [`crate::fixture`] runs them.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The environment variable naming a real cluster's kubeconfig; unset or empty means
/// kube-fixture.
pub const KUBECONFIG_ENV: &str = "KBRIDGE_TEST_KUBECONFIG";

/// How long the sample apps may take to roll out on a real cluster (image pulls, real
/// controllers), and the bound for other waits of the same kind.
pub const ROLLOUT_TIMEOUT: &str = "180s";

/// The kubeconfig of the real cluster to test against, if one is named.
pub fn kubeconfig_from_env() -> Option<PathBuf> {
    std::env::var_os(KUBECONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Longest tag part of a test namespace: `kbt-` + 40 + `-` + 6 hex = 51 characters, which
/// leaves room under DNS-1123's 63 for a suffix (see `TestCluster::extra_namespace`).
const TAG_MAX: usize = 40;

/// `tag` as a DNS-1123 label fragment: lower case `[a-z0-9-]`, no runs of `-`, no `-` at
/// either end, at most 40 characters; `test` if nothing is left.
pub fn sanitize_tag(tag: &str) -> String {
    let mut out = String::new();
    for c in tag.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(TAG_MAX);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "test".into()
    } else {
        out
    }
}

/// Six hex digits that differ between calls, processes and runs.
fn random_hex6() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process; time, pid and a counter add the rest.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:06x}", hasher.finish() & 0xff_ffff)
}

/// A fresh namespace name for a test tagged `tag`: `kbt-<tag>-<6 hex>`, ≤ 51 characters.
pub fn namespace_name(tag: &str) -> String {
    format!("kbt-{}-{}", sanitize_tag(tag), random_hex6())
}

/// The sample apps' manifest, `fixtures/apps/manifests/todo.yaml`.
pub fn demo_manifest_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
        .join("apps")
        .join("manifests")
        .join("todo.yaml")
}

/// Splits a YAML stream at its `---` lines.
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push(String::new());
            continue;
        }
        let doc = docs.last_mut().expect("at least one document");
        doc.push_str(line);
        doc.push('\n');
    }
    // A document of comments and blank lines only is no object.
    docs.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// The manifest `text` for namespace `namespace`: every document except the Namespace,
/// with the top-level `metadata.namespace` (block style, as `todo.yaml` writes it) set to
/// `namespace`. Applied with `kubectl apply -n NAMESPACE`, so a document this missed would
/// make kubectl refuse the mismatch rather than land elsewhere.
pub fn manifest_for_namespace(text: &str, namespace: &str) -> String {
    let mut out = Vec::new();
    for doc in documents(text) {
        if doc.lines().any(|l| l.trim_end() == "kind: Namespace") {
            continue;
        }
        let mut in_metadata = false;
        let mut lines = Vec::new();
        for line in doc.lines() {
            let indent = line.len() - line.trim_start().len();
            let content = line.trim();
            if indent == 0 && !content.is_empty() && !content.starts_with('#') {
                in_metadata = content == "metadata:";
            }
            if in_metadata && indent == 2 && content.starts_with("namespace:") {
                lines.push(format!("  namespace: {namespace}"));
            } else {
                lines.push(line.to_string());
            }
        }
        out.push(lines.join("\n"));
    }
    out.join("\n---\n") + "\n"
}

/// What `kubectl config view --raw --minify --flatten -o json` prints for `kubeconfig`:
/// the current context's cluster (server, CA data inlined), user and context.
pub fn admin_view(kubeconfig: &Path) -> Value {
    let output = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "config",
            "view",
            "--raw",
            "--minify",
            "--flatten",
            "-o",
            "json",
        ])
        .output()
        .expect("run kubectl config view");
    assert!(
        output.status.success(),
        "kubectl config view of {} failed: {}",
        kubeconfig.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kubectl config view JSON")
}

/// The API server URL of the current context in `view` (see [`admin_view`]).
pub fn server_of(view: &Value) -> String {
    view["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap_or_else(|| panic!("no server in the kubeconfig's current context: {view}"))
        .to_string()
}

/// A kubeconfig (JSON, which kubectl and kube-rs read as YAML) for ServiceAccount
/// `ns/name` with `token`: the admin's cluster entry from `view` (server, CA data, TLS
/// settings), that token as the user, default namespace `ns`.
pub fn service_account_kubeconfig(view: &Value, ns: &str, name: &str, token: &str) -> Value {
    let cluster = view["clusters"][0]["cluster"].clone();
    assert!(
        cluster.is_object(),
        "no cluster entry in the admin kubeconfig: {view}"
    );
    let user = format!("system:serviceaccount:{ns}:{name}");
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test-cluster", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "test-cluster", "context": {
            "cluster": "test-cluster", "user": user, "namespace": ns
        }}],
        "current-context": "test-cluster",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_become_dns_labels() {
        assert_eq!(sanitize_tag("bridge-off"), "bridge-off");
        assert_eq!(
            sanitize_tag("Isolation_Crash  Restorer!"),
            "isolation-crash-restorer"
        );
        assert_eq!(sanitize_tag("--x--"), "x");
        assert_eq!(sanitize_tag("§§"), "test");
        let long = sanitize_tag(&"ab-".repeat(40));
        assert!(long.len() <= TAG_MAX && !long.ends_with('-'), "{long}");
        let name = namespace_name(&"Very-Long_Tag".repeat(10));
        assert!(name.len() <= 51, "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert!(name.starts_with("kbt-very-long-tag") && !name.ends_with('-'));
        assert_ne!(namespace_name("a"), namespace_name("a"), "unique per call");
    }

    #[test]
    fn the_demo_manifest_moves_to_the_test_namespace() {
        let text = std::fs::read_to_string(demo_manifest_path()).expect("todo.yaml");
        let moved = manifest_for_namespace(&text, "kbt-x-abcdef");
        assert!(!moved.contains("kind: Namespace"), "{moved}");
        assert!(!moved.contains("namespace: todo"), "{moved}");
        let docs = documents(&moved);
        assert_eq!(docs.len(), documents(&text).len() - 1, "{moved}");
        for doc in &docs {
            assert!(
                doc.contains("\n  namespace: kbt-x-abcdef\n"),
                "every object names the namespace: {doc}"
            );
        }
        // Images and everything else unchanged.
        assert!(moved.contains("image: kbridge-samples/todo-api:1.0"));
        assert!(moved.contains("image: kbridge-samples/stats-api:1.0"));
        assert!(moved.contains("STATS_URL, value: \"http://stats-api/stats\""));
        assert!(moved.contains("secretKeyRef: {name: todo-secret, key: api-key}"));
    }

    #[test]
    fn a_service_account_kubeconfig_keeps_the_admin_cluster_entry() {
        let view = json!({"clusters": [{"name": "c", "cluster": {
            "server": "https://198.18.0.1:6443", "certificate-authority-data": "Q0E="}}]});
        assert_eq!(server_of(&view), "https://198.18.0.1:6443");
        let config = service_account_kubeconfig(&view, "ns1", "dev", "tok");
        assert_eq!(
            config["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(config["users"][0]["user"]["token"], "tok");
        assert_eq!(config["users"][0]["name"], "system:serviceaccount:ns1:dev");
        assert_eq!(config["contexts"][0]["context"]["namespace"], "ns1");
        assert_eq!(config["current-context"], "test-cluster");
    }
}
