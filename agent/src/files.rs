//! The agent's end of a file download ([`kbridge_protocol::files`]): it checks the requested
//! paths, answers the header, and sends the files or whole mounts as a tar stream (modes,
//! symlinks and mtimes kept) that the client unpacks.
//!
//! Entry names are the absolute paths without their leading `/`, so `/etc/config/app.yaml`
//! arrives as `DEST/etc/config/app.yaml` and several paths never collide.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kbridge_protocol::wire::{write_frame, Reply};
use kbridge_protocol::TunnelStream;
use tokio::io::AsyncWriteExt;
use tokio_util::io::SyncIoBridge;

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
