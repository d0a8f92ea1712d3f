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
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready line");
        let url = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("kube-fixture did not get ready: {line:?}"))
            .to_string();
        FixtureCluster {
            child,
            kubeconfig: dir.join("kubeconfig"),
            dir,
            url,
        }
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
