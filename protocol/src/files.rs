//! File download: a stream opened with a `download` header
//! ([`crate::wire::StreamHeader::Download`]) gets a [`crate::wire::Reply`], then, when it is
//! ok, the requested files or whole mounts as one tar stream (modes, symlinks and mtimes
//! kept). This is the client's end: it unpacks the stream into a private 0700 directory.
//!
//! Entry names are the absolute paths without their leading `/`, so `/etc/config/app.yaml`
//! arrives as `DEST/etc/config/app.yaml` and several paths never collide.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::io::SyncIoBridge;

use crate::mux::TunnelStream;

/// What a finished download moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownloadSummary {
    /// Bytes of tar stream received.
    pub bytes: u64,
}

/// Counts bytes read, for the summary.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: io::Read> io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Creates `dir` (and parents) and makes it private (0700).
#[cfg(unix)]
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates `dir` (and parents). Windows has no modes: the directory is as private as the
/// one it is made in (kbridge's state lives in the user's own `%TEMP%`; see
/// `docs/portability.md`).
#[cfg(not(unix))]
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Client side: unpacks the tar stream into `dest` (created 0700), keeping modes.
pub async fn unpack(stream: TunnelStream, dest: &Path) -> io::Result<DownloadSummary> {
    create_private_dir(dest)?;
    let count = Arc::new(AtomicU64::new(0));
    let reader = Counting {
        inner: SyncIoBridge::new(stream),
        count: count.clone(),
    };
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        archive.set_unpack_xattrs(false);
        // `unpack` refuses entries that would land outside `dest` (`..`, absolute, via links).
        archive.unpack(&dest)
    })
    .await
    .map_err(io::Error::other)??;
    Ok(DownloadSummary {
        bytes: count.load(Ordering::Relaxed),
    })
}
