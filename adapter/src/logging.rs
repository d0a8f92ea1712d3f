//! Logs go to `$TMPDIR/kbridge/<name>.log` (never to stdout, which may carry DAP), at
//! the level in `KBRIDGE_LOG` (default `info`). Values of environment variables are
//! never logged, only names.
//!
//! Logging must never hurt the session it describes. Each file is capped at
//! [`MAX_LOG_BYTES`]: past that it is renamed to `<name>.log.1` (replacing the previous
//! one) and a fresh file begins, so a long session on a flaky network keeps at most twice
//! the cap on disk. A write that fails (a full disk, a removed directory) drops that line
//! and nothing else: no error reaches the user's terminal or the debugger.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use tracing_subscriber::EnvFilter;

/// Size at which a log file is rotated.
pub const MAX_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// The default filter. kube-client logs every failed HTTP request at ERROR level itself;
/// kbridge reports those failures with context (and once per outage, not per retry).
const DEFAULT_FILTER: &str = "info,kube_client::client::builder=off";

/// Starts logging to the named file; returns its path. Logging is best effort: kbridge
/// works without it.
pub fn init(name: &str) -> Option<PathBuf> {
    let dir = crate::session::state_root();
    if let Err(error) = crate::session::local::create_private_dir(&dir) {
        eprintln!(
            "kbridge: cannot create log directory {}: {error}; continuing without a log",
            dir.display()
        );
        return None;
    }
    let path = dir.join(format!("{name}.log"));
    let file = CappedFile::open(&path, MAX_LOG_BYTES).ok()?;
    let filter =
        EnvFilter::try_from_env("KBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init()
        .is_ok();
    installed.then_some(path)
}

/// An append-only log file that rotates at a size cap and swallows write errors.
#[derive(Debug)]
pub struct CappedFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    cap: u64,
}

impl CappedFile {
    /// Opens (appending to) `path`, rotating it once it holds `cap` bytes.
    pub fn open(path: &Path, cap: u64) -> std::io::Result<CappedFile> {
        let file = append(path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(CappedFile {
            path: path.to_path_buf(),
            file: Some(file),
            written,
            cap,
        })
    }

    /// Moves the full file aside as `<path>.1` and starts an empty one.
    fn rotate(&mut self) {
        self.file = None;
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::rename(&self.path, &old);
        self.file = append(&self.path).ok();
        self.written = 0;
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for CappedFile {
    /// Always reports the whole buffer written: a line that cannot be written is dropped.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written >= self.cap {
            self.rotate();
        }
        if let Some(file) = &mut self.file {
            if file.write_all(buf).is_ok() {
                self.written += buf.len() as u64;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(file) = &mut self.file {
            let _ = file.flush();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kbridge-log-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn a_full_file_is_rotated_and_at_most_two_remain() {
        let dir = scratch("rotate");
        let path = dir.join("s.log");
        let mut log = CappedFile::open(&path, 100).expect("open");
        for i in 0..50 {
            writeln!(log, "line {i:02} of the log, 28 b").expect("write");
        }
        let current = std::fs::metadata(&path).expect("current").len();
        let previous = std::fs::metadata(dir.join("s.log.1"))
            .expect("rotated")
            .len();
        assert!(current <= 100 + 28, "current file {current} bytes");
        assert!(previous <= 100 + 28, "rotated file {previous} bytes");
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 2);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with("line 49 of the log, 28 b\n"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn appending_counts_what_the_file_already_holds() {
        let dir = scratch("append");
        let path = dir.join("s.log");
        std::fs::write(&path, vec![b'x'; 90]).expect("seed");
        let mut log = CappedFile::open(&path, 100).expect("open");
        log.write_all(&[b'y'; 20]).expect("write");
        log.write_all(b"z").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"z");
        assert_eq!(
            std::fs::metadata(dir.join("s.log.1")).expect("old").len(),
            110
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_vanished_directory_drops_lines_without_an_error() {
        let dir = scratch("vanish");
        let path = dir.join("s.log");
        let mut log = CappedFile::open(&path, 10).expect("open");
        std::fs::remove_dir_all(&dir).expect("remove");
        for _ in 0..5 {
            assert_eq!(log.write(b"0123456789ab").expect("never an error"), 12);
        }
        log.flush().expect("never an error");
        assert!(!dir.exists());
    }
}
