//! Logs go to `$TMPDIR/kbridge/<name>.log` (never to stdout, which may carry DAP), at
//! the level in `KBRIDGE_LOG` (default `info`). Values of environment variables are
//! never logged, only names.

use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

/// Starts logging to the named file; returns its path. Logging is best effort: kbridge
/// works without it.
pub fn init(name: &str) -> Option<PathBuf> {
    let dir = crate::session::state_root();
    if let Err(error) = crate::session::local::create_private_dir(&dir) {
        eprintln!(
            "kbridge: cannot create log directory {}: {error}",
            dir.display()
        );
        return None;
    }
    let path = dir.join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let filter = EnvFilter::try_from_env("KBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init()
        .is_ok();
    installed.then_some(path)
}
