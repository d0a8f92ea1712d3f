//! The `namespace` hosts mode (Linux, no admin rights): the debug adapter and everything
//! it starts run in a private mount namespace in which `/etc/hosts` is the session's
//! copy, with the cluster names added. The rest of the machine never sees the entries,
//! and nothing needs undoing when the session ends: the namespace dies with its processes.
//!
//! `kbridge ns-exec --hosts FILE -- PROGRAM ARGS…` sets the namespace up and execs
//! PROGRAM; kbridge starts adapters through it. Without root it first enters a new user
//! namespace that maps the caller's own uid and gid, so files keep their owners.
//!
//! Mount and user namespaces are Linux's alone: elsewhere the mode is refused with
//! [`UNAVAILABLE`] and `auto` never picks it (`docs/portability.md`).

use std::ffi::OsString;
use std::io;
use std::path::Path;

/// Whether this system has the `namespace` hosts mode at all.
pub const AVAILABLE: bool = cfg!(target_os = "linux");

/// Why the `namespace` hosts mode is refused where [`AVAILABLE`] is false.
pub const UNAVAILABLE: &str = "the `namespace` hosts mode (a private /etc/hosts in a Linux mount namespace) is not available on this system, use `hosts: system` or `hosts: off`";

/// Enters a private mount namespace with `hosts` over `/etc/hosts`, then replaces this
/// process with `program`. Returns only on failure. Must run before any thread starts:
/// the kernel refuses a new user namespace to a multi-threaded process.
#[cfg(target_os = "linux")]
pub fn exec_with_hosts(hosts: &Path, program: &OsString, args: &[OsString]) -> io::Error {
    use std::os::unix::process::CommandExt;
    if let Err(error) = enter(hosts) {
        return error;
    }
    std::process::Command::new(program).args(args).exec()
}

/// Off Linux there is no private mount namespace: always the [`UNAVAILABLE`] error.
#[cfg(not(target_os = "linux"))]
pub fn exec_with_hosts(hosts: &Path, program: &OsString, args: &[OsString]) -> io::Error {
    let _ = (hosts, program, args);
    io::Error::new(io::ErrorKind::Unsupported, UNAVAILABLE)
}

#[cfg(target_os = "linux")]
fn enter(hosts: &Path) -> io::Result<()> {
    // SAFETY: plain syscalls on a single-threaded process; no memory is shared.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let flags = if uid == 0 {
        libc::CLONE_NEWNS
    } else {
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS
    };
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(flags) } != 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(
            error.kind(),
            format!("cannot create a private mount namespace ({error}); use \"hosts\": \"system\" or \"off\""),
        ));
    }
    if uid != 0 {
        std::fs::write("/proc/self/setgroups", "deny")?;
        std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
        std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    }
    // Keep our mounts from propagating back to the host's namespace.
    mount(None, "/", libc::MS_REC | libc::MS_PRIVATE)?;
    mount(Some(hosts), "/etc/hosts", libc::MS_BIND)
}

#[cfg(target_os = "linux")]
fn mount(source: Option<&Path>, target: &str, flags: libc::c_ulong) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let to_c = |bytes: &[u8]| {
        CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let source = source.map(|s| to_c(s.as_os_str().as_bytes())).transpose()?;
    let target_c = to_c(target.as_bytes())?;
    let none = c"none";
    // SAFETY: all pointers are valid NUL-terminated strings or null, alive for the call.
    let result = unsafe {
        libc::mount(
            source.as_ref().map_or(none.as_ptr(), |s| s.as_ptr()),
            target_c.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        let error = io::Error::last_os_error();
        Err(io::Error::new(
            error.kind(),
            format!("cannot mount over {target}: {error}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_modes_that_work_instead() {
        assert!(UNAVAILABLE.contains("`hosts: system` or `hosts: off`"));
        assert_eq!(AVAILABLE, std::env::consts::OS == "linux");
    }

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn off_linux_ns_exec_fails_with_the_refusal() {
        let error = exec_with_hosts(Path::new("hosts"), &"echo".into(), &[]);
        assert_eq!(error.kind(), io::ErrorKind::Unsupported);
        assert_eq!(error.to_string(), UNAVAILABLE);
    }
}
