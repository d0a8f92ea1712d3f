//! A `kbridge connect` session held by a test: started against a [`TestCluster`] with
//! its stderr in a file (so the test can read what kbridge told the user while it runs),
//! ended with SIGTERM, and killed if the test fails half-way — a failed test must not
//! leave a session retrying against a cluster that is gone.

use crate::fixture::TestCluster;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `kbridge connect`.
pub struct Connect {
    child: Child,
    stderr_path: PathBuf,
    /// Where the session's environment is written once it is up.
    pub env_file: PathBuf,
}

impl Connect {
    /// Starts `kbridge connect` on todo-api with `args` added (ports, …) and `env` set,
    /// with `tmp` as its TMPDIR; waits (bounded) until the session is up.
    pub fn todo_api(
        fixture: &TestCluster,
        tmp: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Connect {
        let env_file = tmp.join("session.env");
        let stderr_path = tmp.join("kbridge.stderr");
        let child = Command::new(crate::kbridge_bin())
            .arg("connect")
            .args(fixture.todo_api_target())
            .args(args)
            .arg("--env-file")
            .arg(&env_file)
            .env("KUBECONFIG", &fixture.kubeconfig)
            .env("TMPDIR", tmp)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("start kbridge connect");
        let connect = Connect {
            child,
            stderr_path,
            env_file,
        };
        connect.wait_for("the session", Duration::from_secs(180), |_| {
            connect.env_file.exists()
        });
        connect
    }

    /// kbridge's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What kbridge has written on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Polls (every 100 ms, at most `limit`) until `done` holds for stderr so far;
    /// returns how long that took, or panics naming `what` with stderr.
    pub fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> Duration {
        let started = Instant::now();
        while !done(&self.stderr()) {
            assert!(
                started.elapsed() < limit,
                "timed out waiting for {what}: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        started.elapsed()
    }

    /// Ends the session as a user's Ctrl-C or a process manager would (SIGTERM) and
    /// waits for kbridge to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        self.child.wait().expect("wait for kbridge")
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
