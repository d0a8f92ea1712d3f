//! The `namespace` hosts mode (Linux, no admin rights): the debug adapter and everything
//! it starts run in a private mount namespace in which `/etc/hosts` is the session's
//! copy, with the cluster names added. The rest of the machine never sees the entries,
//! and nothing needs undoing when the session ends: the namespace dies with its processes.
//!
//! `kbridge ns-exec --hosts FILE -- PROGRAM ARGS…` sets the namespace up and execs
//! PROGRAM; kbridge starts adapters through it. Without root it first enters a new user
//! namespace that maps the caller's own uid and gid, so files keep their owners.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Enters a private mount namespace with `hosts` over `/etc/hosts`, then replaces this
/// process with `program`. Returns only on failure. Must run before any thread starts:
/// the kernel refuses a new user namespace to a multi-threaded process.
pub fn exec_with_hosts(hosts: &Path, program: &OsString, args: &[OsString]) -> io::Error {
    if let Err(error) = enter(hosts) {
        return error;
    }
    std::process::Command::new(program).args(args).exec()
}

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

fn mount(source: Option<&Path>, target: &str, flags: libc::c_ulong) -> io::Result<()> {
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
