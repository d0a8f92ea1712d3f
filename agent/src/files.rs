//! File download: the agent sends files or whole mounts as a tar stream (modes, symlinks and
//! mtimes kept) and the client unpacks it into a private 0700 directory.
//!
//! Entry names are the absolute paths without their leading `/`, so `/etc/config/app.yaml`
//! arrives as `DEST/etc/config/app.yaml` and several paths never collide.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio_util::io::SyncIoBridge;

use crate::mux::TunnelStream;
use crate::wire::{write_frame, Reply};

/// What a finished download moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownloadSummary {
    /// Bytes of tar stream received.
    pub bytes: u64,
}

/// Checks the requested paths before any byte of tar is sent.
fn validate(paths: &[String]) -> Result<Vec<PathBuf>, Reply> {
    if paths.is_empty() {
        return Err(Reply::error("bad-request", "no path to download"));
    }
    paths
        .iter()
        .map(|p| {
            let path = PathBuf::from(p);
            if !path.is_absolute() {
                return Err(Reply::error(
                    "bad-request",
                    format!("'{p}' is not an absolute path"),
                ));
            }
            if path.parent().is_none() {
                return Err(Reply::error(
                    "bad-request",
                    "refusing to send the whole filesystem; name a mount or files",
                ));
            }
            match std::fs::metadata(&path) {
                Ok(_) => Ok(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Reply::error(
                    "not-found",
                    format!("'{p}' does not exist in the pod"),
                )),
                Err(e) => Err(Reply::error("io", format!("cannot read '{p}': {e}"))),
            }
        })
        .collect()
}

/// A writer that stops accepting bytes once poisoned, so that `tar::Builder`'s drop cannot
/// append an end-of-archive marker after a failure and make a truncated archive look whole.
struct Guarded<W> {
    inner: W,
    poisoned: Arc<AtomicBool>,
}

impl<W: Write> Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(io::Error::other("download aborted"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn build_tar<W: Write>(out: W, paths: &[PathBuf]) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    // Kubernetes' configMap/secret volumes are symlink farms (`..data`); keep them as links.
    b.follow_symlinks(false);
    for path in paths {
        let name = path.strip_prefix("/").unwrap_or(path);
        if std::fs::metadata(path)?.is_dir() {
            b.append_dir_all(name, path)?;
        } else {
            // A named file is wanted for its content even when it is a symlink.
            let mut f = std::fs::File::open(path)?;
            b.append_file(name, &mut f)?;
        }
    }
    b.into_inner()
}

/// Agent side of a download stream whose header was already read.
pub(crate) async fn serve(mut stream: TunnelStream, paths: Vec<String>) {
    let paths = match validate(&paths) {
        Ok(p) => p,
        Err(reply) => {
            if write_frame(&mut stream, &reply).await.is_ok() {
                let _ = stream.shutdown().await;
            }
            return;
        }
    };
    if write_frame(&mut stream, &Reply::ok()).await.is_err() {
        return;
    }
    let poisoned = Arc::new(AtomicBool::new(false));
    let out = Guarded {
        inner: SyncIoBridge::new(stream),
        poisoned: poisoned.clone(),
    };
    let result = tokio::task::spawn_blocking(move || match build_tar(out, &paths) {
        Ok(mut g) => {
            g.flush()?;
            g.inner.shutdown()
        }
        Err(e) => {
            // Dropping the stream without shutdown resets it: the client sees a failed download.
            poisoned.store(true, Ordering::SeqCst);
            Err(e)
        }
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "download aborted"),
        Err(e) => tracing::warn!(error = %e, "download task failed"),
    }
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
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Client side: unpacks the tar stream into `dest` (created 0700), keeping modes.
pub(crate) async fn unpack(stream: TunnelStream, dest: &Path) -> io::Result<DownloadSummary> {
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
