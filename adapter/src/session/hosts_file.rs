//! Hosts entries for cluster names (`svc`, `svc.ns`, `svc.ns.svc.cluster.local`), as a
//! block between marker lines that names its session, so kbridge can add it, remove it,
//! and remove blocks a crashed session left behind, without touching any other line.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

const BEGIN: &str = "# kbridge session ";
const BEGIN_SUFFIX: &str = " begin";
const END_SUFFIX: &str = " end";

/// One address and the names that resolve to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    /// The local address.
    pub address: IpAddr,
    /// Names, most specific last.
    pub names: Vec<String>,
}

/// The names a Service is known by from inside its namespace and from others.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// The machine's hosts file, which the `system` hosts mode edits: `/etc/hosts`, or on
/// Windows `%SystemRoot%\System32\drivers\etc\hosts`.
pub fn system_path() -> PathBuf {
    let root = std::env::var("SystemRoot").ok();
    PathBuf::from(system_path_for(std::env::consts::OS, root.as_deref()))
}

/// [`system_path`] for the system `os` (as `std::env::consts::OS` names it), with
/// `%SystemRoot%` as given (`C:\Windows` when unset).
pub fn system_path_for(os: &str, system_root: Option<&str>) -> String {
    match os {
        "windows" => {
            let root = system_root
                .filter(|r| !r.is_empty())
                .unwrap_or(r"C:\Windows")
                .trim_end_matches('\\');
            format!(r"{root}\System32\drivers\etc\hosts")
        }
        _ => "/etc/hosts".to_string(),
    }
}

/// What a user does when the system hosts file cannot be written on `os`: the elevation
/// that system asks for, or a mode that needs none.
pub fn write_hint(os: &str) -> &'static str {
    match os {
        "linux" => "run with admin rights or use \"hosts\": \"namespace\"",
        "macos" => "run kbridge with sudo, or use \"hosts\": \"off\"",
        "windows" => "run the terminal or editor that starts kbridge as Administrator (and clear the file's read-only attribute if it is set), or use \"hosts\": \"off\"",
        _ => "run kbridge as root, or use \"hosts\": \"off\"",
    }
}

/// The marked block for a session.
pub fn render_block(session: &str, entries: &[HostsEntry]) -> String {
    let mut block = format!("{BEGIN}{session}{BEGIN_SUFFIX}\n");
    for entry in entries {
        let _ = writeln!(block, "{}\t{}", entry.address, entry.names.join(" "));
    }
    let _ = writeln!(block, "{BEGIN}{session}{END_SUFFIX}");
    block
}

/// `text` with the session's block added (replacing an older one of the same session).
pub fn with_block(text: &str, session: &str, entries: &[HostsEntry]) -> String {
    let mut out = without_blocks(text, |s| s == session);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&render_block(session, entries));
    out
}

/// `text` without the blocks whose session `remove` selects; every other line is kept
/// byte for byte. An unterminated block (a crash mid-write) is removed to the end.
pub fn without_blocks(text: &str, remove: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skipping: Option<String> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if let Some(session) = &skipping {
            if trimmed == format!("{BEGIN}{session}{END_SUFFIX}") {
                skipping = None;
            }
            continue;
        }
        if let Some(session) = trimmed
            .strip_prefix(BEGIN)
            .and_then(|rest| rest.strip_suffix(BEGIN_SUFFIX))
        {
            if remove(session) {
                skipping = Some(session.to_string());
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

/// Sessions that have a block in `text`.
pub fn sessions_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            line.trim_end()
                .strip_prefix(BEGIN)
                .and_then(|rest| rest.strip_suffix(BEGIN_SUFFIX))
                .map(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> HostsEntry {
        HostsEntry {
            address: "127.1.0.1".parse().expect("ip"),
            names: service_names("stats-api", "todo"),
        }
    }

    #[test]
    fn add_then_remove_restores_the_file_exactly() {
        let original =
            "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n# a comment\n10.0.0.5 db";
        let added = with_block(original, "s1", &[entry()]);
        assert!(added.contains("127.1.0.1\tstats-api stats-api.todo stats-api.todo.svc stats-api.todo.svc.cluster.local\n"));
        assert_eq!(sessions_in(&added), ["s1"]);
        let removed = without_blocks(&added, |s| s == "s1");
        assert_eq!(removed, format!("{original}\n"));
    }

    #[test]
    fn a_windows_hosts_file_keeps_its_crlf_lines() {
        let original = "# Copyright (c) 1993-2009 Microsoft Corp.\r\n127.0.0.1 localhost\r\n";
        let added = with_block(original, "s1", &[entry()]);
        assert!(added.starts_with(original), "{added:?}");
        assert_eq!(sessions_in(&added), ["s1"]);
        // Markers are found whatever the line end, so a block written with CRLF goes too.
        let crlf = added
            .replace("s1 begin\n", "s1 begin\r\n")
            .replace("s1 end\n", "s1 end\r\n");
        assert_eq!(without_blocks(&crlf, |s| s == "s1"), original);
    }

    #[test]
    fn the_system_hosts_file_per_system() {
        assert_eq!(system_path_for("linux", None), "/etc/hosts");
        assert_eq!(system_path_for("macos", Some(r"C:\Windows")), "/etc/hosts");
        assert_eq!(
            system_path_for("windows", Some(r"D:\WINNT\")),
            r"D:\WINNT\System32\drivers\etc\hosts"
        );
        assert_eq!(
            system_path_for("windows", None),
            r"C:\Windows\System32\drivers\etc\hosts"
        );
        assert_eq!(
            system_path_for("windows", Some("")),
            r"C:\Windows\System32\drivers\etc\hosts"
        );
        assert_eq!(
            system_path().to_string_lossy(),
            system_path_for(
                std::env::consts::OS,
                std::env::var("SystemRoot").ok().as_deref()
            )
        );
    }

    #[test]
    fn a_hosts_file_that_cannot_be_written_says_which_elevation_helps() {
        assert!(write_hint("macos").contains("sudo"));
        assert!(write_hint("windows").contains("as Administrator"));
        assert!(write_hint("linux").contains("\"namespace\""));
        for os in ["macos", "windows", "freebsd"] {
            assert!(write_hint(os).contains("\"hosts\": \"off\""), "{os}");
        }
    }

    #[test]
    fn other_sessions_and_leftovers() {
        let two = with_block(&with_block("base\n", "a", &[entry()]), "b", &[entry()]);
        assert_eq!(sessions_in(&two), ["a", "b"]);
        let only_b = without_blocks(&two, |s| s == "a");
        assert_eq!(sessions_in(&only_b), ["b"]);
        // A block cut short by a crash is still removed.
        let torn = "base\n# kbridge session c begin\n127.1.0.1 x\n";
        assert_eq!(without_blocks(torn, |_| true), "base\n");
        // Re-adding a session replaces its block instead of duplicating it.
        let again = with_block(&two, "a", &[entry()]);
        assert_eq!(sessions_in(&again), ["b", "a"]);
    }
}
