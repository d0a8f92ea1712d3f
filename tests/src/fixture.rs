//! The cluster of an end-to-end test (`docs/architecture.md`, "Test clusters").
//!
//! [`TestCluster::start_demo`] gives a test the sample apps (`todo-api` ×2, `stats-api`)
//! rolled out in [`TestCluster::namespace`], on one of two clusters:
//!
//! - by default, a fresh `kube-fixture serve --demo` process with its own state directory,
//!   apps in namespace `todo`, stopped (and cleaned up) when the handle is dropped;
//! - with `KBRIDGE_TEST_KUBECONFIG=/path/kubeconfig`, that (real) cluster: a namespace of
//!   the test's own, `kbt-<tag>-<6 hex>`, deleted when the handle is dropped
//!   (see [`crate::real`]).
//!
//! Tests pass the namespace explicitly everywhere (`-n NS` to kubectl and kbridge,
//! `bridge.namespace`, kube clients' default namespace), never relying on the kubeconfig's.
//! The few checks that need what only kube-fixture has (its ingress controller) are guarded
//! by [`TestCluster::skip_on_real`], which says what is skipped and why.

use crate::real;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// Which cluster a [`TestCluster`] is.
enum Backend {
    /// A kube-fixture process of this test's own.
    Fixture {
        child: Child,
        /// Its ingress controller, `http://127.0.0.1:PORT`, if it printed one.
        ingress_url: Option<String>,
    },
    /// The cluster of `KBRIDGE_TEST_KUBECONFIG`, shared with other tests (and runs).
    Real,
}

/// A cluster with the sample apps rolled out in `namespace`.
pub struct TestCluster {
    /// Where the sample apps run: `todo` on kube-fixture, `kbt-<tag>-<6 hex>` on a real
    /// cluster. Pass it to everything that takes a namespace.
    pub namespace: String,
    /// A directory of this test's own: kube-fixture's state directory, or a fresh
    /// temporary directory on a real cluster (ServiceAccount kubeconfigs and the like).
    pub dir: PathBuf,
    /// The admin kubeconfig: `DIR/kubeconfig` on kube-fixture, `KBRIDGE_TEST_KUBECONFIG`
    /// on a real cluster. Its default namespace is not `namespace` on a real cluster.
    pub kubeconfig: PathBuf,
    /// The API server URL, as the kubeconfig writes it.
    pub url: String,
    backend: Backend,
    /// Namespaces besides `namespace` that this test made (deleted with it on a real cluster).
    extra_namespaces: Mutex<Vec<String>>,
}

impl TestCluster {
    /// The sample apps, rolled out, on kube-fixture or on `KBRIDGE_TEST_KUBECONFIG`'s
    /// cluster; `tag` names the state directory or namespace. Fails with the build
    /// command if binaries are missing.
    pub fn start_demo(tag: &str) -> TestCluster {
        let cluster = match real::kubeconfig_from_env() {
            Some(kubeconfig) => Self::real(tag, kubeconfig),
            None => Self::fixture(tag),
        };
        // The sample apps serving, as a developer finds a cluster: a test that starts a
        // session at once must not race the apps' own first rollout.
        for deployment in ["todo-api", "stats-api"] {
            cluster.rollout_status(deployment);
        }
        cluster
    }

    /// Waits (`kubectl rollout status`, bounded) until Deployment `name` of the test's
    /// namespace has rolled out.
    pub fn rollout_status(&self, name: &str) {
        let args = [
            "-n",
            &self.namespace,
            "rollout",
            "status",
            &format!("deployment/{name}"),
            &format!("--timeout={}", real::ROLLOUT_TIMEOUT),
        ];
        let output = self.kubectl_output(&args);
        if !output.status.success() {
            // What kept the rollout from finishing, while the namespace still shows it.
            let pods = self.kubectl_output(&["-n", &self.namespace, "get", "pods", "-o", "wide"]);
            let events = self.kubectl_output(&["-n", &self.namespace, "get", "events"]);
            panic!(
                "kubectl {args:?} failed: {}\npods:\n{}\nevents:\n{}",
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&pods.stdout),
                String::from_utf8_lossy(&events.stdout),
            );
        }
    }

    /// The target flags of a session on todo-api in the test's namespace, with the test's
    /// agent image.
    pub fn todo_api_target(&self) -> Vec<String> {
        vec![
            "--namespace".into(),
            self.namespace.clone(),
            "--service".into(),
            "todo-api".into(),
            "--agent-image".into(),
            crate::agent_image(),
        ]
    }

    /// `kube-fixture serve --demo` with a state directory of its own.
    fn fixture(tag: &str) -> TestCluster {
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
        let mut ingress_url = None;
        // `ingress <url>` comes before the final `ready <url>` line.
        let url = loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read ready line");
            assert!(n > 0, "kube-fixture exited before it got ready");
            if let Some(u) = line.trim().strip_prefix("ready ") {
                break u.to_string();
            }
            if let Some(u) = line.trim().strip_prefix("ingress ") {
                ingress_url = Some(u.to_string());
            }
        };
        TestCluster {
            namespace: "todo".into(),
            kubeconfig: dir.join("kubeconfig"),
            dir,
            url,
            backend: Backend::Fixture { child, ingress_url },
            extra_namespaces: Mutex::new(Vec::new()),
        }
    }

    /// A namespace of this test's own on the real cluster, the sample apps applied in it.
    fn real(tag: &str, kubeconfig: PathBuf) -> TestCluster {
        assert!(
            kubeconfig.is_file(),
            "{} names {}, which is not a file",
            real::KUBECONFIG_ENV,
            kubeconfig.display()
        );
        let dir = crate::temp_dir(&format!("cluster-{tag}"));
        let url = real::server_of(&real::admin_view(&kubeconfig));
        let namespace = real::namespace_name(tag);
        let cluster = TestCluster {
            namespace,
            dir,
            kubeconfig,
            url,
            backend: Backend::Real,
            extra_namespaces: Mutex::new(Vec::new()),
        };
        // From here on, dropping `cluster` (also by a panic) deletes the namespace. Created
        // from a file, which kubectl sends as JSON (`kubectl create namespace NAME` sends
        // protobuf, which kube-fixture does not read; this also runs against kube-fixture).
        let namespace_file = cluster.dir.join("namespace.json");
        std::fs::write(
            &namespace_file,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": cluster.namespace},
            })
            .to_string(),
        )
        .expect("write the namespace manifest");
        cluster.kubectl(&["create", "-f", &namespace_file.to_string_lossy()]);
        // Pods are refused until the namespace's `default` ServiceAccount exists.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !cluster.kubectl_ok(&["-n", &cluster.namespace, "get", "serviceaccount", "default"]) {
            assert!(
                std::time::Instant::now() < deadline,
                "namespace {} got no default ServiceAccount in 60s",
                cluster.namespace
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        let manifest = std::fs::read_to_string(real::demo_manifest_path()).expect("todo.yaml");
        let path = cluster.dir.join("todo.yaml");
        std::fs::write(
            &path,
            real::manifest_for_namespace(&manifest, &cluster.namespace),
        )
        .expect("write the sample apps' manifest");
        cluster.kubectl(&[
            "-n",
            &cluster.namespace,
            "apply",
            "-f",
            &path.to_string_lossy(),
        ]);
        cluster
    }

    /// The kube-fixture process (its pods' processes are its descendants); `None` on a
    /// real cluster.
    pub fn fixture_pid(&self) -> Option<u32> {
        match &self.backend {
            Backend::Fixture { child, .. } => Some(child.id()),
            Backend::Real => None,
        }
    }

    /// Whether this is a real cluster (`KBRIDGE_TEST_KUBECONFIG`), not kube-fixture.
    pub fn is_real(&self) -> bool {
        matches!(self.backend, Backend::Real)
    }

    /// On a real cluster, says `skipped on a real cluster: <reason>` and returns true: the
    /// caller leaves out the part that needs kube-fixture (`if c.skip_on_real(..) { return; }`).
    /// On kube-fixture, returns false.
    pub fn skip_on_real(&self, reason: &str) -> bool {
        if self.is_real() {
            eprintln!("skipped on a real cluster: {reason}");
        }
        self.is_real()
    }

    /// kube-fixture's ingress controller, `http://127.0.0.1:PORT` (serves every Ingress);
    /// `None` on a real cluster, which has none.
    pub fn ingress_url(&self) -> Option<&str> {
        match &self.backend {
            Backend::Fixture { ingress_url, .. } => ingress_url.as_deref(),
            Backend::Real => None,
        }
    }

    /// A name for a second namespace this test creates itself (`<namespace>-<suffix>`);
    /// on a real cluster it is deleted together with the test's namespace.
    pub fn extra_namespace(&self, suffix: &str) -> String {
        let name = format!("{}-{}", self.namespace, real::sanitize_tag(suffix));
        assert!(name.len() <= 63, "namespace name too long: {name}");
        self.extra_namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        name
    }

    /// Requests a 24 h token for ServiceAccount `ns/name` (`kubectl create token`, a
    /// TokenRequest, as the admin) and writes `DIR/kubeconfig-sa-NS-NAME`: the admin's
    /// server and CA, that token, default namespace `ns`. The ServiceAccount must exist;
    /// RBAC then decides what it may do.
    pub fn kubeconfig_for_service_account(&self, ns: &str, name: &str) -> PathBuf {
        let token = self
            .kubectl(&["create", "token", name, "-n", ns, "--duration=24h"])
            .trim()
            .to_string();
        assert!(
            !token.is_empty(),
            "kubectl create token {name} -n {ns}: no token"
        );
        let config =
            real::service_account_kubeconfig(&real::admin_view(&self.kubeconfig), ns, name, &token);
        let kubeconfig = self.dir.join(format!("kubeconfig-sa-{ns}-{name}"));
        std::fs::write(
            &kubeconfig,
            serde_json::to_string_pretty(&config).expect("kubeconfig JSON"),
        )
        .expect("write ServiceAccount kubeconfig");
        kubeconfig
    }

    /// Stops (`down`) or restarts the cluster's API server, keeping everything else —
    /// pods, Services, the stored state — running. kube-fixture simulates it (SIGUSR1 /
    /// SIGUSR2); on a real cluster `scripts/real-cluster.sh api-stop`/`api-start` stops
    /// and restarts the kube-apiserver process, which every test on that cluster shares:
    /// a test that calls this must be alone in its test binary.
    pub fn api_outage(&self, down: bool) {
        let status = match &self.backend {
            Backend::Fixture { child, .. } => Command::new("kill")
                .arg(if down { "-USR1" } else { "-USR2" })
                .arg(child.id().to_string())
                .status(),
            Backend::Real => Command::new("bash")
                .arg(crate::repo_root().join("scripts/real-cluster.sh"))
                .arg(if down { "api-stop" } else { "api-start" })
                .stdin(Stdio::null())
                .status(),
        };
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "cannot {} the API server: {status:?}",
            if down { "stop" } else { "restart" }
        );
    }

    /// The image of the first container in todo-api's pod template: the app's own
    /// (`kbridge-samples/todo-api:1.0`) unless a session holds the Deployment.
    pub fn todo_api_template_image(&self) -> String {
        self.kubectl(&[
            "-n",
            &self.namespace,
            "get",
            "deploy/todo-api",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    }

    /// Runs the built `kbridge ARGS` against this cluster (its kubeconfig in `KUBECONFIG`),
    /// with `tmp` as `TMPDIR` so the session's local state stays in the test's directory.
    pub fn kbridge(&self, tmp: &std::path::Path, args: &[&str]) -> std::process::Output {
        Command::new(crate::kbridge_bin())
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("TMPDIR", tmp)
            .output()
            .expect("run kbridge")
    }

    /// Runs `kubectl --kubeconfig KUBECONFIG ARGS` (pass `-n` yourself); returns stdout,
    /// panicking with stderr on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = self.kubectl_output(args);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Whether `kubectl ARGS` succeeds (its output is dropped).
    fn kubectl_ok(&self, args: &[&str]) -> bool {
        self.kubectl_output(args).status.success()
    }

    fn kubectl_output(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        match &mut self.backend {
            Backend::Fixture { child, .. } => {
                // SIGTERM lets it remove its pods, namespaces and links.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let _ = child.wait();
            }
            Backend::Real => {
                // Best effort, without waiting for the namespace to finish terminating.
                let extra = std::mem::take(
                    self.extra_namespaces
                        .get_mut()
                        .unwrap_or_else(|e| e.into_inner()),
                );
                for namespace in std::iter::once(self.namespace.clone()).chain(extra) {
                    let _ = self.kubectl_output(&[
                        "delete",
                        "namespace",
                        &namespace,
                        "--wait=false",
                        "--ignore-not-found",
                    ]);
                }
            }
        }
    }
}
