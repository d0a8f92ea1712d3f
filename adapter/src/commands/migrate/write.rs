//! `--write`: every changed file is replaced as a whole or not at all. Each new text is
//! first written beside its file (and the old text kept as `FILE.b2k.bak`); only when
//! all are written are they renamed over the originals. A failure before that removes
//! what was written; a failed rename puts back the files already replaced.

use super::plan::FileChange;
use std::path::{Path, PathBuf};

/// The suffix of the copy kept of each file before it is rewritten.
pub const BACKUP_SUFFIX: &str = ".b2k.bak";

/// Why `--write` did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file differs from what was read at the start.
    #[error("{0} changed while kbridge migrate ran; nothing was written, run it again")]
    Changed(String),
    /// A backup or new text could not be written beside the file.
    #[error("cannot write next to {path}: {source}; nothing was changed")]
    Stage {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A new text could not replace its file.
    #[error("cannot replace {path}: {source}; the files already replaced were put back, nothing is half-changed")]
    Commit {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The backup path of `path`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}

/// The temporary file the new text of `path` is written to.
fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.kbridge-migrate.tmp"))
}

/// Writes `contents` to `path` and flushes it to disk, with `like`'s permissions.
fn write_synced(path: &Path, contents: &str, like: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(contents.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(like) {
        file.set_permissions(meta.permissions())?;
    }
    file.sync_all()
}

/// Replaces every file of `changes` with its new text, or none of them.
pub fn write_all(changes: &[FileChange]) -> Result<(), WriteError> {
    for change in changes {
        let now = std::fs::read_to_string(&change.path).unwrap_or_default();
        if now != change.before {
            return Err(WriteError::Changed(change.shown.clone()));
        }
    }
    let mut staged: Vec<PathBuf> = Vec::new();
    for change in changes {
        let stage = || -> std::io::Result<()> {
            write_synced(&backup_path(&change.path), &change.before, &change.path)?;
            write_synced(&staging_path(&change.path), &change.after, &change.path)
        };
        if let Err(source) = stage() {
            for path in staged.iter().chain([&change.path]) {
                let _ = std::fs::remove_file(staging_path(path));
                let _ = std::fs::remove_file(backup_path(path));
            }
            return Err(WriteError::Stage {
                path: change.shown.clone(),
                source,
            });
        }
        staged.push(change.path.clone());
    }
    for (done, change) in changes.iter().enumerate() {
        if let Err(source) = std::fs::rename(staging_path(&change.path), &change.path) {
            for earlier in &changes[..done] {
                let _ = std::fs::rename(backup_path(&earlier.path), &earlier.path);
            }
            for later in &changes[done..] {
                let _ = std::fs::remove_file(staging_path(&later.path));
                let _ = std::fs::remove_file(backup_path(&later.path));
            }
            return Err(WriteError::Commit {
                path: change.shown.clone(),
                source,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &Path, before: &str, after: &str) -> FileChange {
        FileChange {
            path: path.to_path_buf(),
            shown: path.display().to_string(),
            before: before.into(),
            after: after.into(),
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kbridge-write-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn all_files_are_replaced_and_backed_up() {
        let dir = scratch("ok");
        let (a, b) = (dir.join("launch.json"), dir.join("tasks.json"));
        std::fs::write(&a, "old a").expect("write");
        std::fs::write(&b, "old b").expect("write");
        write_all(&[change(&a, "old a", "new a"), change(&b, "old b", "new b")]).expect("writes");
        assert_eq!(std::fs::read_to_string(&a).expect("read"), "new a");
        assert_eq!(std::fs::read_to_string(&b).expect("read"), "new b");
        assert_eq!(
            std::fs::read_to_string(backup_path(&a)).expect("read"),
            "old a"
        );
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 4, "no temporary file left: {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_changed_meanwhile_stops_everything() {
        let dir = scratch("changed");
        let (a, b) = (dir.join("launch.json"), dir.join("tasks.json"));
        std::fs::write(&a, "old a").expect("write");
        std::fs::write(&b, "edited b").expect("write");
        let error = write_all(&[change(&a, "old a", "new a"), change(&b, "old b", "new b")])
            .expect_err("b changed");
        assert!(matches!(error, WriteError::Changed(_)), "{error}");
        assert_eq!(std::fs::read_to_string(&a).expect("read"), "old a");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_rename_puts_back_the_files_already_replaced() {
        let dir = scratch("rollback");
        let a = dir.join("launch.json");
        std::fs::write(&a, "old a").expect("write");
        // A directory where the second file's staging copy would be renamed over a
        // directory that is not empty: rename fails.
        let b = dir.join("tasks.json");
        std::fs::create_dir_all(b.join("x")).expect("mkdir");
        let mut broken = change(&b, "", "new b");
        broken.before = std::fs::read_to_string(&b).unwrap_or_default();
        let error = write_all(&[change(&a, "old a", "new a"), broken]).expect_err("rename fails");
        assert!(matches!(error, WriteError::Commit { .. }), "{error}");
        assert_eq!(std::fs::read_to_string(&a).expect("read"), "old a");
        assert!(!staging_path(&a).exists() && !staging_path(&b).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
