//! Reading the volume mounts the container sees, and recursive listings of them, for the
//! `mounts` and `list` control methods (the messages are [`kbridge_protocol::mounts`]).

use std::path::{Path, PathBuf};

use kbridge_protocol::mounts::{ListEntry, Listing, Mount};

/// Kernel and runtime filesystems that are never a pod volume.
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "devtmpfs",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "pstore",
    "hugetlbfs",
    "fusectl",
    "configfs",
    "binfmt_misc",
    "autofs",
    "nsfs",
    "overlay",
];

/// Parses `/proc/self/mountinfo` content into the mounts that can be pod volumes.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let (left, right) = match line.split_once(" - ") {
            Some(x) => x,
            None => continue,
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let (Some(path), Some(opts)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let fs_type = right.split(' ').next().unwrap_or("");
        let path = unescape(path);
        if path == "/"
            || PSEUDO_FS.contains(&fs_type)
            || ["/proc", "/sys", "/dev"]
                .iter()
                .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        {
            continue;
        }
        out.push(Mount {
            name: None,
            path,
            read_only: opts.split(',').any(|o| o == "ro"),
            fs_type: Some(fs_type.to_string()),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The container's mounts: as configured by kbridge, else as the kernel reports them.
pub fn current_mounts(configured: Option<&[Mount]>) -> std::io::Result<Vec<Mount>> {
    match configured {
        Some(m) => Ok(m.to_vec()),
        None => Ok(parse_mountinfo(&std::fs::read_to_string(
            "/proc/self/mountinfo",
        )?)),
    }
}

/// Lists `root` recursively (symlinks are reported, not followed), up to `max` entries.
pub fn list(root: &Path, max: usize) -> std::io::Result<Listing> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries = Vec::new();
    let mut truncated = false;
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    let meta = std::fs::metadata(root)?;
    if !meta.is_dir() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        entries.push(ListEntry {
            path: name,
            kind: "file".into(),
            size: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
            target: None,
        });
        stack.clear();
    }
    'walk: while let Some(rel) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(root.join(&rel))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        children.sort();
        let mut subdirs = Vec::new();
        for name in children {
            if entries.len() >= max {
                truncated = true;
                break 'walk;
            }
            let rel_child = rel.join(&name);
            let full = root.join(&rel_child);
            let m = std::fs::symlink_metadata(&full)?;
            let ft = m.file_type();
            let (kind, target) = if ft.is_symlink() {
                (
                    "symlink",
                    std::fs::read_link(&full)
                        .ok()
                        .map(|t| t.to_string_lossy().into_owned()),
                )
            } else if ft.is_dir() {
                subdirs.push(rel_child.clone());
                ("dir", None)
            } else if ft.is_file() {
                ("file", None)
            } else {
                ("other", None)
            };
            entries.push(ListEntry {
                path: rel_child.to_string_lossy().into_owned(),
                kind: kind.into(),
                size: if ft.is_dir() { 0 } else { m.len() },
                mode: m.permissions().mode() & 0o7777,
                target,
            });
        }
        // Reverse so the stack pops them in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(Listing {
        root: root.to_string_lossy().into_owned(),
        entries,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_keeps_volumes_and_drops_system_mounts() {
        let text = "\
22 1 0:21 / / rw,relatime - overlay overlay rw
23 22 0:22 / /proc rw,nosuid - proc proc rw
24 22 0:23 / /dev rw,nosuid - tmpfs tmpfs rw
30 22 8:1 /pods/x/volumes/config /etc/config ro,relatime - ext4 /dev/sda1 rw
31 22 0:40 / /var/run/secrets/kubernetes.io/serviceaccount ro,relatime - tmpfs tmpfs rw
32 22 8:1 /x /data\\040dir rw - ext4 /dev/sda1 rw
";
        let m = parse_mountinfo(text);
        let paths: Vec<&str> = m.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/data dir",
                "/etc/config",
                "/var/run/secrets/kubernetes.io/serviceaccount"
            ]
        );
        assert!(m[1].read_only);
        assert!(!m[0].read_only);
    }

    #[test]
    fn listing_is_recursive_and_bounded() {
        let dir = std::env::temp_dir().join(format!("kbridge-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f.txt"), "hi").unwrap();
        std::fs::write(dir.join("z.txt"), "z").unwrap();
        std::os::unix::fs::symlink("z.txt", dir.join("link")).unwrap();
        let l = list(&dir, 100).unwrap();
        let paths: Vec<&str> = l.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "link", "z.txt", "a/b", "a/b/f.txt"]);
        assert_eq!(l.entries[1].target.as_deref(), Some("z.txt"));
        let l = list(&dir, 2).unwrap();
        assert!(l.truncated);
        assert_eq!(l.entries.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
