//! [`LiveCluster`]: cluster data from the current kubeconfig, for the language server.
//!
//! Requests never wait on the cluster: [`ClusterData::snapshot`] returns what the cache
//! holds (nothing, for a scope not fetched yet) and asks the background task for it. That
//! task, owned by the [`LiveCluster`] and cancelled when it is dropped, fetches each scope
//! an editor asked about ([`fetch::snapshot`], bounded by [`FETCH_TIMEOUT`]), then again
//! every 30 s; a failed fetch is retried after a backoff (2 s doubling to 60 s) and leaves
//! the cached snapshot as it was — stale data or none, never a guess. A scope nobody asked
//! about for 10 minutes is dropped ([`Timing`]). Each new snapshot moves the
//! [`ClusterData::changes`] counter, so the server checks the open documents again
//! (docs/lsp.md, "Cluster data").

pub mod fetch;

use super::cluster::{ClusterData, Scope, Snapshot};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long one look at the cluster may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// When the background task fetches.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often a scope in use is fetched again.
    pub refresh_every: Duration,
    /// The wait after a first failure, doubled after each further one; also how fresh
    /// data must be for a new ask not to fetch again.
    pub first_backoff: Duration,
    /// The longest wait between failed fetches.
    pub max_backoff: Duration,
    /// A scope not asked about for this long is no longer refreshed (nor kept).
    pub forget_after: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            refresh_every: Duration::from_secs(30),
            first_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
        }
    }
}

type Cache = Arc<Mutex<HashMap<Scope, Arc<Snapshot>>>>;

/// Cluster data from the kubeconfig, cached and refreshed in the background.
pub struct LiveCluster {
    cache: Cache,
    asks: mpsc::UnboundedSender<Scope>,
    changes: watch::Receiver<u64>,
    _stop: DropGuard,
}

impl LiveCluster {
    /// Starts the background task (on the current tokio runtime) that reads the cluster
    /// with [`fetch::snapshot`].
    pub fn start() -> LiveCluster {
        let fetch = |scope: Scope| async move {
            match tokio::time::timeout(FETCH_TIMEOUT, fetch::snapshot(&scope)).await {
                Ok(result) => result,
                Err(_) => Err(fetch::FetchError::Timeout(FETCH_TIMEOUT.as_secs())),
            }
        };
        Self::start_with(fetch, Timing::default())
    }

    /// Like [`LiveCluster::start`] with another way to fetch a scope, and other timing
    /// (tests).
    pub fn start_with<F, Fut>(fetch: F, timing: Timing) -> LiveCluster
    where
        F: Fn(Scope) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Snapshot, fetch::FetchError>> + Send + 'static,
    {
        let cache: Cache = Arc::default();
        let (asks, asked) = mpsc::unbounded_channel();
        let (changed, changes) = watch::channel(0);
        let stop = CancellationToken::new();
        let refresher = Refresher {
            cache: cache.clone(),
            changed,
            wanted: HashMap::new(),
            timing,
        };
        tokio::spawn(refresher.run(asked, fetch, stop.clone()));
        LiveCluster {
            cache,
            asks,
            changes,
            _stop: stop.drop_guard(),
        }
    }
}

impl ClusterData for LiveCluster {
    fn snapshot(&self, scope: &Scope) -> Arc<Snapshot> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(scope)
            .cloned();
        match cached {
            Some(snapshot) => snapshot,
            None => {
                self.refresh(scope);
                Arc::new(Snapshot {
                    contexts: fetch::contexts(),
                    ..Snapshot::default()
                })
            }
        }
    }

    fn refresh(&self, scope: &Scope) {
        // The task ends only with `self`; a send can fail only while dropping.
        let _ = self.asks.send(scope.clone());
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }
}

/// When a scope is fetched next, and how long to wait after the next failure.
struct Wanted {
    due: Instant,
    backoff: Duration,
    asked: Instant,
    fetched: Option<Instant>,
}

/// The background task's state.
struct Refresher {
    cache: Cache,
    changed: watch::Sender<u64>,
    wanted: HashMap<Scope, Wanted>,
    timing: Timing,
}

impl Refresher {
    async fn run<F, Fut>(
        mut self,
        mut asked: mpsc::UnboundedReceiver<Scope>,
        fetch: F,
        stop: CancellationToken,
    ) where
        F: Fn(Scope) -> Fut,
        Fut: Future<Output = Result<Snapshot, fetch::FetchError>>,
    {
        loop {
            let next = self.wanted.values().map(|w| w.due).min();
            let sleep = async {
                match next {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                scope = asked.recv() => match scope {
                    Some(scope) => self.ask(scope),
                    None => return,
                },
                () = sleep => {
                    let Some(scope) = self.due_scope() else { continue };
                    let result = tokio::select! {
                        () = stop.cancelled() => return,
                        result = fetch(scope.clone()) => result,
                    };
                    self.fetched(scope, result);
                }
            }
        }
    }

    /// An editor asked about `scope`: fetch it now unless it is fresh or backing off.
    fn ask(&mut self, scope: Scope) {
        let now = Instant::now();
        let first = self.timing.first_backoff;
        let wanted = self.wanted.entry(scope).or_insert(Wanted {
            due: now,
            backoff: first,
            asked: now,
            fetched: None,
        });
        wanted.asked = now;
        // Fresh enough: a burst of requests (every keystroke) does not hammer the cluster.
        let stale = wanted
            .fetched
            .is_none_or(|at| now.duration_since(at) >= first);
        if stale && wanted.backoff == first {
            wanted.due = wanted.due.min(now);
        }
    }

    /// The scope due first, forgetting those nobody asked about for a while.
    fn due_scope(&mut self) -> Option<Scope> {
        let now = Instant::now();
        let forgotten: Vec<Scope> = self
            .wanted
            .iter()
            .filter(|(_, w)| now.duration_since(w.asked) > self.timing.forget_after)
            .map(|(s, _)| s.clone())
            .collect();
        if !forgotten.is_empty() {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            for scope in forgotten {
                self.wanted.remove(&scope);
                cache.remove(&scope);
            }
        }
        self.wanted
            .iter()
            .filter(|(_, w)| w.due <= now)
            .min_by_key(|(_, w)| w.due)
            .map(|(s, _)| s.clone())
    }

    fn fetched(&mut self, scope: Scope, result: Result<Snapshot, fetch::FetchError>) {
        let now = Instant::now();
        let Some(wanted) = self.wanted.get_mut(&scope) else {
            return;
        };
        match result {
            Ok(snapshot) => {
                wanted.due = now + self.timing.refresh_every;
                wanted.backoff = self.timing.first_backoff;
                wanted.fetched = Some(now);
                let snapshot = Arc::new(snapshot);
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                let same = cache.get(&scope).is_some_and(|old| *old == snapshot);
                cache.insert(scope, snapshot);
                drop(cache);
                if !same {
                    self.changed.send_modify(|n| *n += 1);
                }
            }
            Err(error) => {
                tracing::info!(%error, ?scope, retry_in = ?wanted.backoff, "no cluster data");
                wanted.due = now + wanted.backoff;
                wanted.backoff = (wanted.backoff * 2).min(self.timing.max_backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsp::cluster::ServiceInfo;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The default timing, 100 times faster (10 ms units instead of seconds).
    fn fast() -> Timing {
        Timing {
            refresh_every: Duration::from_millis(300),
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(600),
            forget_after: Duration::from_secs(6),
        }
    }

    fn with_service(name: &str) -> Snapshot {
        Snapshot {
            services: Some(vec![ServiceInfo {
                name: name.into(),
                namespace: "todo".into(),
                ports: vec![],
            }]),
            ..Snapshot::default()
        }
    }

    #[tokio::test]
    async fn answers_at_once_then_from_the_cache_after_a_fetch() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let live = LiveCluster::start_with(
            move |_scope| {
                counted.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(with_service("stats-api"))
                }
            },
            fast(),
        );
        let mut changes = live.changes().expect("changes");
        let scope = Scope::default();
        let asked = std::time::Instant::now();
        assert_eq!(live.snapshot(&scope).services, None, "nothing known yet");
        assert!(
            asked.elapsed() < Duration::from_millis(50),
            "not waited for"
        );
        changes.changed().await.expect("a change");
        assert_eq!(
            live.snapshot(&scope).services.as_ref().map(Vec::len),
            Some(1)
        );
        // Asked again at once: fresh, no second fetch.
        live.refresh(&scope);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Refreshed in the background, without being asked.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_back_off_and_keep_the_cache() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let live = LiveCluster::start_with(
            move |_scope| {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Ok(with_service("first"))
                    } else {
                        Err(fetch::FetchError::Timeout(10))
                    }
                }
            },
            fast(),
        );
        let mut changes = live.changes().expect("changes");
        let scope = Scope::default();
        live.refresh(&scope);
        changes.changed().await.expect("a change");
        // Every refresh from here fails: 300 ms, then 20, 40, 80, 160, 320 ms later —
        // 6 fetches in all by 1 s (a fixed retry every 20 ms would make ~35).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let made = calls.load(Ordering::SeqCst);
        assert!((5..=7).contains(&made), "{made} fetches");
        let snapshot = live.snapshot(&scope);
        assert_eq!(snapshot.services.as_ref().expect("kept")[0].name, "first");
    }

    #[tokio::test]
    async fn dropping_it_stops_the_task() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let live = LiveCluster::start_with(
            move |_scope| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok(Snapshot::default()) }
            },
            fast(),
        );
        live.refresh(&Scope::default());
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(live);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
