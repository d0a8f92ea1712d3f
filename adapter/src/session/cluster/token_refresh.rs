//! Projected service-account tokens copied for the environment (`env_paths.rs`) stay
//! valid for as long as the session lives: each local copy is replaced, at the same path,
//! by the token the pod holds once the kubelet has rotated it.
//!
//! Why re-read the pod's file through an agent rather than ask for a token ourselves
//! (TokenRequest): the file is exactly what the process would read in the pod — same
//! audience, expiry, issuer, and bound to the pod — for any projected source, and it needs
//! no permission beyond the session's own (`create serviceaccounts/token` is a grant to
//! act as the ServiceAccount, which developers often lack). The kubelet rotates the file
//! once the token is past 80% of its lifetime; so the copy is checked from that point on,
//! more often as expiry nears, until the new token arrives.
//!
//! The copy is written to a temporary file in its own directory and renamed over the old
//! one, so a reader never sees a partial token; it is 0600 inside the session's 0700
//! directory, and goes away with that directory at teardown. Token bytes are never logged.

use super::tunnels::Agents;
use crate::session::{EventSink, SessionEvent};
use base64::Engine;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One token file kept fresh.
#[derive(Debug, Clone)]
pub struct TokenFile {
    /// Its path in the pod.
    pub pod_path: String,
    /// Its local copy (what the variable points at).
    pub local: PathBuf,
    /// Where its downloads are unpacked before they replace the copy.
    pub staging: PathBuf,
}

/// Why a token could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// No agent tunnel is up to read the pod's file through.
    #[error("no agent is connected")]
    NoAgent,
    /// The agent could not send the file.
    #[error("cannot read {path} in the pod: {source}")]
    Download {
        /// The in-pod path.
        path: String,
        /// The client's error.
        source: kbridge_protocol::ClientError,
    },
    /// The local copy could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A token's validity, from its JWT claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// `iat` (or `nbf`), seconds since the epoch.
    pub issued: i64,
    /// `exp`, seconds since the epoch.
    pub expires: i64,
}

/// Reads `iat`/`exp` from a JWT's payload without checking its signature (the copy is
/// the pod's own token; kbridge only needs to know when it turns stale). `None` for a
/// token that is not a JWT or carries no expiry.
pub fn lifetime_of(token: &[u8]) -> Option<Lifetime> {
    let text = std::str::from_utf8(token).ok()?.trim();
    let payload = text.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let expires = claims.get("exp")?.as_i64()?;
    let issued = claims
        .get("iat")
        .or_else(|| claims.get("nbf"))
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(expires);
    Some(Lifetime { issued, expires })
}

/// How often an opaque token (no expiry to read) is re-read.
const OPAQUE_EVERY: Duration = Duration::from_secs(60);
/// The longest wait between checks once a token is due.
const DUE_EVERY_MAX: Duration = Duration::from_secs(30);

/// How long to wait before looking at the pod's token again, `now` in seconds since the
/// epoch: until 80% of its lifetime, then a tenth of what remains (1 s to 30 s), and every
/// 30 s once it has expired.
pub fn next_check(lifetime: Option<Lifetime>, now: i64) -> Duration {
    let Some(Lifetime { issued, expires }) = lifetime else {
        return OPAQUE_EVERY;
    };
    let due = issued + (expires - issued).max(0) * 8 / 10;
    if now < due {
        return Duration::from_secs(u64::try_from(due - now).unwrap_or(1));
    }
    if now >= expires {
        // The pod's file was not rotated in time (a `subPath` mount never is): keep
        // looking, without hammering the agent.
        return DUE_EVERY_MAX;
    }
    let tenth = u64::try_from((expires - now) / 10).unwrap_or(0);
    Duration::from_secs(tenth).clamp(Duration::from_secs(1), DUE_EVERY_MAX)
}

/// The wait after `failures` failed attempts in a row: 2 s, doubling up to 30 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(DUE_EVERY_MAX)
}

/// Keeps `file` fresh until `cancel`, as one task of `tasks`. The user is told once when
/// refreshing starts failing, and once when it works again.
pub fn keep_fresh(
    file: TokenFile,
    agents: Agents,
    events: EventSink,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) {
    tasks.spawn(async move {
        let mut current = std::fs::read(&file.local).unwrap_or_default();
        let mut failures = 0u32;
        loop {
            let wait = if failures > 0 {
                backoff(failures)
            } else {
                next_check(lifetime_of(&current), now_secs())
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match refresh_once(&file, &agents, &current).await {
                Ok(token) => {
                    if failures > 0 {
                        notify(
                            &events,
                            format!("the token at {} is refreshed again", file.local.display()),
                        );
                    }
                    failures = 0;
                    current = token;
                }
                Err(error) => {
                    if failures == 0 {
                        notify(
                            &events,
                            format!(
                                "cannot refresh the token at {} ({error}); retrying",
                                file.local.display()
                            ),
                        );
                    }
                    tracing::debug!(%error, path = %file.local.display(), "token refresh failed");
                    failures = failures.saturating_add(1);
                }
            }
        }
    });
}

/// Reads the pod's token and, when it differs from `current`, replaces the local copy.
/// Returns the token the copy now holds.
async fn refresh_once(
    file: &TokenFile,
    agents: &Agents,
    current: &[u8],
) -> Result<Vec<u8>, RefreshError> {
    let (_, agent) = agents.pick().ok_or(RefreshError::NoAgent)?;
    let _ = std::fs::remove_dir_all(&file.staging);
    agent
        .download(std::slice::from_ref(&file.pod_path), &file.staging)
        .await
        .map_err(|source| RefreshError::Download {
            path: file.pod_path.clone(),
            source,
        })?;
    let unpacked = file.staging.join(file.pod_path.trim_start_matches('/'));
    let read = std::fs::read(&unpacked);
    let _ = std::fs::remove_dir_all(&file.staging);
    let token = read.map_err(|source| RefreshError::Write {
        path: unpacked,
        source,
    })?;
    if token != current {
        replace(&file.local, &token).map_err(|source| RefreshError::Write {
            path: file.local.clone(),
            source,
        })?;
        let expires_in = lifetime_of(&token).map(|l| l.expires - now_secs());
        tracing::info!(path = %file.local.display(), ?expires_in, "token refreshed from the pod");
    }
    Ok(token)
}

/// Writes `bytes` to a 0600 temporary file next to `path` and renames it over `path`.
/// The directory must exist: after teardown removed it, nothing is recreated.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.kbridge-new"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&temp)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&temp, path)
}

/// Makes a downloaded token file a private regular file (a Kubernetes volume's `token` is
/// a symlink into `..data/`; the copy becomes the file itself, mode 0600).
pub fn make_private(path: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    replace(path, &bytes)
}

fn notify(events: &EventSink, text: String) {
    let _ = events.send(SessionEvent::Notice(text));
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> Vec<u8> {
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.sig",
            b64(&serde_json::json!({"alg": "RS256"})),
            b64(&claims)
        )
        .into_bytes()
    }

    #[test]
    fn the_lifetime_comes_from_the_claims() {
        let token =
            jwt(serde_json::json!({"aud": ["sts.amazonaws.com"], "iat": 1000, "exp": 1600}));
        assert_eq!(
            lifetime_of(&token),
            Some(Lifetime {
                issued: 1000,
                expires: 1600
            })
        );
        assert_eq!(lifetime_of(b"kf-sa.0123"), None);
        assert_eq!(lifetime_of(&jwt(serde_json::json!({"sub": "x"}))), None);
    }

    #[test]
    fn checks_start_at_80_percent_and_quicken_towards_expiry() {
        let life = Some(Lifetime {
            issued: 1000,
            expires: 1600,
        });
        assert_eq!(next_check(life, 1000), Duration::from_secs(480));
        assert_eq!(next_check(life, 1400), Duration::from_secs(80));
        assert_eq!(next_check(life, 1480), Duration::from_secs(12));
        assert_eq!(next_check(life, 1595), Duration::from_secs(1));
        assert_eq!(next_check(life, 1700), DUE_EVERY_MAX, "expired");
        let long = Some(Lifetime {
            issued: 0,
            expires: 86_400,
        });
        assert_eq!(next_check(long, 80_000), DUE_EVERY_MAX);
        assert_eq!(next_check(None, 0), OPAQUE_EVERY);
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(9), DUE_EVERY_MAX);
    }

    #[test]
    #[cfg(unix)]
    fn a_replaced_token_is_a_private_file_and_leaves_no_temporary_behind() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("kbridge-token-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("..data")).expect("dir");
        std::fs::write(dir.join("..data/token"), b"old").expect("token");
        std::os::unix::fs::symlink("..data/token", dir.join("token")).expect("link");
        make_private(&dir.join("token")).expect("private");
        let meta = std::fs::symlink_metadata(dir.join("token")).expect("meta");
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        replace(&dir.join("token"), b"new").expect("replace");
        assert_eq!(std::fs::read(dir.join("token")).expect("read"), b"new");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with(".kbridge-new")),
            "{names:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
