//! The fixture cluster for end-to-end tests: `kube-fixture serve --demo` as a real
//! process with its own state directory, stopped (and cleaned up) when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running fixture cluster with the sample apps (namespace `todo`).
pub struct FixtureCluster {
    child: Child,
    /// Its state directory.
    pub dir: PathBuf,
    /// `DIR/kubeconfig`.
    pub kubeconfig: PathBuf,
    /// The API server URL.
    pub url: String,
    /// The fixture's ingress controller, `http://127.0.0.1:PORT` (serves every Ingress).
    pub ingress_url: String,
}

impl FixtureCluster {
    /// Starts the demo cluster; fails with the build command if binaries are missing.
    pub fn start_demo(tag: &str) -> FixtureCluster {
        let dir = crate::temp_dir(&format!("cluster-{tag}"));
        let mut child = Command::new(crate::workspace_bin("kube-fixture"))
            .args(["serve", "--demo", "--state-dir"])
            .arg(&dir)
            .arg("--agent-bin")
            .arg(crate::workspace_bin("kbridge-agent"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kube-fixture");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut ingress_url = String::new();
        // `ingress <url>` comes before the final `ready <url>` line.
        let url = loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read ready line");
            assert!(n > 0, "kube-fixture exited before it got ready");
            if let Some(u) = line.trim().strip_prefix("ready ") {
                break u.to_string();
            }
            if let Some(u) = line.trim().strip_prefix("ingress ") {
                ingress_url = u.to_string();
            }
        };
        let fixture = FixtureCluster {
            child,
            kubeconfig: dir.join("kubeconfig"),
            dir,
            url,
            ingress_url,
        };
        // The sample apps serving, as a developer finds a cluster: a test that starts a
        // session at once must not race the apps' own first rollout.
        for deployment in ["deployment/todo-api", "deployment/stats-api"] {
            fixture.kubectl(&[
                "-n",
                "todo",
                "rollout",
                "status",
                deployment,
                "--timeout=120s",
            ]);
        }
        fixture
    }

    /// The ingress controller's URL (also in `DIR/ingress`).
    pub fn ingress_url(&self) -> &str {
        &self.ingress_url
    }

    /// Requests a token for ServiceAccount `ns/name` (TokenRequest, as the admin) and
    /// writes `DIR/kubeconfig-sa-NS-NAME`: same server and CA, that token, default
    /// namespace `ns`. The ServiceAccount must exist; RBAC then decides what it may do.
    pub fn kubeconfig_for_service_account(&self, ns: &str, name: &str) -> PathBuf {
        let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token");
        let body = self.dir.join(format!("tokenrequest-{ns}-{name}.json"));
        std::fs::write(&body, r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":86400}}"#)
            .expect("write TokenRequest body");
        let out = self.kubectl(&["create", "--raw", &path, "-f", &body.to_string_lossy()]);
        let tr: serde_json::Value = serde_json::from_str(&out).expect("TokenRequest JSON");
        let token = tr["status"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in TokenRequest answer: {out}"));
        let user = format!("system:serviceaccount:{ns}:{name}");
        let kubeconfig = self.dir.join(format!("kubeconfig-sa-{ns}-{name}"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-fixture\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\ncontexts:\n- name: kube-fixture\n  context:\n    cluster: kube-fixture\n    user: {user}\n    namespace: {ns}\ncurrent-context: kube-fixture\nusers:\n- name: {user}\n  user:\n    token: {token}\n",
            url = self.url,
            ca = self.dir.join("ca.crt").display(),
        );
        std::fs::write(&kubeconfig, text).expect("write ServiceAccount kubeconfig");
        kubeconfig
    }

    /// Runs `kubectl` against the cluster; returns stdout, panicking with stderr on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for FixtureCluster {
    fn drop(&mut self) {
        // SIGTERM lets it remove its pods, namespaces and links.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
