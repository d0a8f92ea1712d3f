//! Shared helpers for kbridge's end-to-end tests: finding the built binaries, an
//! editor-side DAP client written independently of the proxy's own codec, and the
//! small programs the debuggers run. Cluster-backed tests run on kube-fixture, or on the
//! real cluster named by `KBRIDGE_TEST_KUBECONFIG` ([`fixture::TestCluster`]).

pub mod census;
pub mod cluster;
pub mod connect;
pub mod dap_client;
pub mod fixture;
pub mod framing;
pub mod programs;
pub mod real;

use std::path::PathBuf;

/// The directory holding the workspace's built binaries (`target/debug` or the
/// `CARGO_TARGET_DIR` equivalent), found from the running test executable.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test-binary> → target/debug
    let deps = exe.parent().expect("deps dir");
    deps.parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| deps.to_path_buf())
}

/// Path of a workspace binary; fails with the command that builds it.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (the README's test command does)",
        path.display()
    );
    path
}

/// The agent image tests ask for: `KBRIDGE_AGENT_IMAGE` when set (a real cluster runs the
/// image CI built and pushed), else `kbridge/agent:dev` (kube-fixture runs any
/// `kbridge/agent` tag as the built `kbridge-agent`).
pub fn agent_image() -> String {
    std::env::var("KBRIDGE_AGENT_IMAGE")
        .ok()
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| "kbridge/agent:dev".to_string())
}

/// The repository's root directory (scripts live under it).
pub fn repo_root() -> PathBuf {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

/// A stand-in for the developer's local process: a TCP server on a free loopback port
/// that answers every connection with an HTTP response whose body is `local-marker`, so a
/// test can tell a request reached this machine. Returns the port; the server runs until
/// the test process ends.
pub fn local_marker_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nlocal-marker");
        }
    });
    port
}

/// The `kbridge` binary.
pub fn kbridge_bin() -> PathBuf {
    workspace_bin("kbridge")
}

/// Whether an executable is on PATH; tests of a debugger that is missing fail with the
/// install command rather than passing silently.
pub fn require_tool(name: &str, install: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(found, "`{name}` is needed by this test: {install}");
}

/// A fresh temporary directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("kbridge-test-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
