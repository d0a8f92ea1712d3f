//! Whether the cluster's API server answers, as a live session's background loops see it.
//!
//! A session keeps talking to the API server after setup: tunnels are port-forwards
//! through it, a watch follows replaced pods, the Lease is renewed. When the API server
//! goes away (a VPN drop, a control-plane upgrade) every one of those loops fails, again
//! and again until it returns. Each loop backs off on its own; this module turns their
//! reports into *transitions*: one log line and one notice for the user when the API
//! server stops answering (what it means, what happens next) and one when it answers
//! again — never a line per retry.

use super::errors::ClusterError;
use crate::session::{EventSink, SessionEvent};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// What one request of a background loop found out about the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The API server answered (with success or with an API error: it is there).
    Answered,
    /// The request did not reach it: connection refused, reset, timed out, TLS failed.
    Unreachable(String),
}

impl Outcome {
    /// Classifies a kube client result.
    pub fn of_kube<T>(result: &Result<T, kube::Error>) -> Outcome {
        match result {
            Err(error) => Outcome::of_kube_error(error),
            Ok(_) => Outcome::Answered,
        }
    }

    fn of_kube_error(error: &kube::Error) -> Outcome {
        match error {
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                Outcome::Unreachable(error.to_string())
            }
            _ => Outcome::Answered,
        }
    }

    /// Classifies one of kbridge's own cluster results.
    pub fn of_cluster<T>(result: &Result<T, ClusterError>) -> Outcome {
        match result {
            Err(ClusterError::Unreachable { reason, .. }) => Outcome::Unreachable(reason.clone()),
            _ => Outcome::Answered,
        }
    }

    /// Classifies an item of a `kube::runtime` watcher stream.
    pub fn of_watch<T>(item: &Result<T, kube::runtime::watcher::Error>) -> Outcome {
        use kube::runtime::watcher::Error;
        match item {
            Err(
                Error::InitialListFailed(e) | Error::WatchStartFailed(e) | Error::WatchFailed(e),
            ) => Outcome::of_kube_error(e),
            _ => Outcome::Answered,
        }
    }
}

/// The state every background loop of a session reports to (cheap to clone).
#[derive(Clone)]
pub struct Reachability {
    since: Arc<Mutex<Option<(Instant, SystemTime)>>>,
    events: EventSink,
    /// What the notices say the consequences are about (`deployment/todo-api`).
    workload: String,
    idle_restore_secs: u64,
}

impl Reachability {
    /// Starts out reachable (setup just talked to the API server).
    pub fn new(events: EventSink, workload: String, idle_restore_secs: u64) -> Reachability {
        Reachability {
            since: Arc::new(Mutex::new(None)),
            events,
            workload,
            idle_restore_secs,
        }
    }

    /// Whether the API server is currently considered unreachable.
    pub fn is_unreachable(&self) -> bool {
        self.since.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Records what a request found; on a change, logs it and tells the user.
    pub fn report(&self, outcome: Outcome) {
        let Ok(mut since) = self.since.lock() else {
            return;
        };
        match (outcome, *since) {
            (Outcome::Unreachable(reason), None) => {
                *since = Some((Instant::now(), SystemTime::now()));
                tracing::warn!(%reason, "cluster API server unreachable; retrying with backoff");
                self.tell(self.gone_notice(&reason));
            }
            (Outcome::Answered, Some((started, _))) => {
                *since = None;
                let secs = started.elapsed().as_secs();
                tracing::info!(
                    unreachable_for_secs = secs,
                    "cluster API server reachable again"
                );
                self.tell(format!(
                    "the cluster's API server is reachable again (after {secs} s); tunnels reconnect and the session goes on"
                ));
            }
            _ => {}
        }
    }

    fn gone_notice(&self, reason: &str) -> String {
        format!(
            "cannot reach the cluster's API server ({reason}). Requests to {workload} cannot reach this machine until it is back; kbridge keeps retrying, with backoff. If it stays away for more than {idle} s, the in-cluster restorer puts {workload} back once it returns",
            workload = self.workload,
            idle = self.idle_restore_secs,
        )
    }

    fn tell(&self, text: String) {
        let _ = self.events.send(SessionEvent::Notice(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> (
        Reachability,
        tokio::sync::mpsc::UnboundedReceiver<SessionEvent>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Reachability::new(tx, "deployment/api".into(), 60), rx)
    }

    fn notices(rx: &mut tokio::sync::mpsc::UnboundedReceiver<SessionEvent>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(SessionEvent::Notice(text)) = rx.try_recv() {
            out.push(text);
        }
        out
    }

    #[test]
    fn an_outage_is_told_once_however_many_retries_fail() {
        let (reach, mut rx) = tracker();
        reach.report(Outcome::Answered);
        assert!(notices(&mut rx).is_empty(), "no news while it answers");
        for _ in 0..100 {
            reach.report(Outcome::Unreachable("connection refused".into()));
        }
        let told = notices(&mut rx);
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("cannot reach the cluster's API server (connection refused)"));
        assert!(told[0].contains("more than 60 s"), "{}", told[0]);
        assert!(reach.is_unreachable());
    }

    #[test]
    fn the_return_is_told_once_and_a_new_outage_again() {
        let (reach, mut rx) = tracker();
        reach.report(Outcome::Unreachable("reset".into()));
        reach.report(Outcome::Answered);
        reach.report(Outcome::Answered);
        reach.report(Outcome::Unreachable("refused".into()));
        let told = notices(&mut rx);
        assert_eq!(told.len(), 3, "{told:?}");
        assert!(told[1].starts_with("the cluster's API server is reachable again"));
        assert!(told[2].contains("(refused)"));
    }

    #[test]
    fn api_errors_mean_the_server_is_there() {
        let status = kube::core::Status::failure("no", "Forbidden").with_code(403);
        let forbidden: Result<(), kube::Error> = Err(kube::Error::Api(Box::new(status)));
        assert_eq!(Outcome::of_kube(&forbidden), Outcome::Answered);
        let refused: Result<(), kube::Error> = Err(kube::Error::Service("refused".into()));
        assert!(matches!(
            Outcome::of_kube(&refused),
            Outcome::Unreachable(_)
        ));
        let watch: Result<(), kube::runtime::watcher::Error> = Err(
            kube::runtime::watcher::Error::WatchFailed(kube::Error::Service("reset".into())),
        );
        assert!(matches!(Outcome::of_watch(&watch), Outcome::Unreachable(_)));
    }
}
