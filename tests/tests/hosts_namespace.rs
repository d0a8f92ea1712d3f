//! The `namespace` hosts mode: a program started through `kbridge ns-exec` resolves the
//! session's names, the rest of the machine does not, and no admin rights are needed.

use kbridge_tests::{kbridge_bin, temp_dir};
use std::process::Command;

fn hosts_file() -> std::path::PathBuf {
    let dir = temp_dir("hostsns");
    let path = dir.join("hosts");
    std::fs::write(
        &path,
        "127.0.0.1 localhost\n127.1.0.7 kbridge-test-svc kbridge-test-svc.todo\n",
    )
    .expect("write hosts copy");
    // Readable by the unprivileged user of the second test.
    for p in [&dir, &path] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    path
}

fn resolve_inside(prefix: &[&str], hosts: &std::path::Path, name: &str) -> String {
    let output = Command::new(prefix.first().copied().unwrap_or("env"))
        .args(prefix.iter().skip(1))
        .arg(kbridge_bin())
        .args(["ns-exec", "--hosts"])
        .arg(hosts)
        .args(["--", "getent", "hosts", name])
        .output()
        .expect("run kbridge ns-exec");
    assert!(
        output.status.success(),
        "ns-exec failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn names_resolve_inside_and_not_outside() {
    let hosts = hosts_file();
    let inside = resolve_inside(&[], &hosts, "kbridge-test-svc.todo");
    assert!(inside.starts_with("127.1.0.7"), "{inside}");
    let outside = Command::new("getent")
        .args(["hosts", "kbridge-test-svc.todo"])
        .output()
        .expect("getent");
    assert!(
        !outside.status.success(),
        "the machine's own resolution is untouched"
    );
}

#[test]
fn works_without_root() {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    let is_root = std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0);
    assert!(
        is_root,
        "this test drops to `nobody` and needs to start as root (CI runs as root)"
    );
    let hosts = hosts_file();
    let inside = resolve_inside(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &hosts,
        "kbridge-test-svc",
    );
    assert!(inside.starts_with("127.1.0.7"), "{inside}");
}
