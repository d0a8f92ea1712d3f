//! The programs the debuggers run in tests: each reads three environment variables
//! into locals and stops on a line marked `BREAK`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Source directory of the test programs.
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs")
}

/// 1-based line of the `BREAK` marker in a source file.
pub fn break_line(source: &Path) -> i64 {
    let text = std::fs::read_to_string(source).expect("read program source");
    text.lines()
        .position(|line| line.contains("BREAK"))
        .map(|i| i as i64 + 1)
        .expect("program has a BREAK line")
}

/// Builds the C probe with debug info into `out_dir`.
pub fn build_c(out_dir: &Path) -> PathBuf {
    let binary = out_dir.join("env_probe_c");
    let status = Command::new("cc")
        .args(["-g", "-O0", "-o"])
        .arg(&binary)
        .arg(source_dir().join("env_probe.c"))
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed");
    binary
}

/// Builds the Go probe without optimisations into `out_dir`.
pub fn build_go(out_dir: &Path) -> PathBuf {
    let binary = out_dir.join("env_probe_go");
    let status = Command::new("go")
        .args(["build", "-gcflags=all=-N -l", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(source_dir().join("go"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", out_dir.join("gocache"))
        .env("GOPATH", out_dir.join("gopath"))
        .status()
        .expect("run go build");
    assert!(status.success(), "go build failed");
    binary
}
