//! The dead-man switch: the agent remembers when kbridge last proved it was alive (a session
//! handshake or a heartbeat from the client library) and reports "orphaned" once that is older
//! than `KBRIDGE_IDLE_RESTORE_SECS`. Traffic from the debuggee never counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kbridge_protocol::status::{SessionState, Status};

/// Shared clock of kbridge's last sign of life.
#[derive(Debug)]
pub struct IdleClock {
    last_seen: Mutex<Instant>,
    threshold: Duration,
    sessions: AtomicUsize,
}

impl IdleClock {
    /// A clock that starts now: an agent nobody ever connects to becomes orphaned too.
    pub fn new(threshold: Duration) -> Self {
        IdleClock {
            last_seen: Mutex::new(Instant::now()),
            threshold,
            sessions: AtomicUsize::new(0),
        }
    }

    /// Records a sign of life from kbridge.
    pub fn touch(&self) {
        if let Ok(mut t) = self.last_seen.lock() {
            *t = Instant::now();
        }
    }

    /// Counts a session in (returns a guard that counts it out when dropped).
    pub fn session(self: &Arc<Self>) -> SessionGuard {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        self.touch();
        SessionGuard(self.clone())
    }

    /// Time since the last sign of life.
    pub fn idle_for(&self) -> Duration {
        self.last_seen
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// The state as of now.
    pub fn state(&self) -> SessionState {
        classify(
            self.idle_for(),
            self.threshold,
            self.sessions.load(Ordering::SeqCst),
        )
    }

    /// The full status as of now.
    pub fn status(&self) -> Status {
        let idle = self.idle_for();
        let sessions = self.sessions.load(Ordering::SeqCst);
        Status {
            health: "ok".into(),
            state: classify(idle, self.threshold, sessions),
            idle_secs: idle.as_secs(),
            idle_restore_secs: self.threshold.as_secs(),
            sessions,
            version: crate::VERSION.into(),
        }
    }
}

/// Keeps a session counted while alive.
pub struct SessionGuard(Arc<IdleClock>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The decision itself, pure so it can be tested without waiting. A connected session that
/// stopped heartbeating (kbridge frozen, port-forward half-dead) is orphaned too.
pub fn classify(idle: Duration, threshold: Duration, sessions: usize) -> SessionState {
    if idle >= threshold {
        SessionState::Orphaned
    } else if sessions > 0 {
        SessionState::Active
    } else {
        SessionState::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let t = Duration::from_secs(60);
        assert_eq!(classify(Duration::from_secs(5), t, 1), SessionState::Active);
        assert_eq!(classify(Duration::from_secs(5), t, 0), SessionState::Idle);
        assert_eq!(
            classify(Duration::from_secs(60), t, 0),
            SessionState::Orphaned
        );
        // Connected but silent for an hour (e.g. kbridge itself stopped): orphaned.
        assert_eq!(
            classify(Duration::from_secs(3600), t, 1),
            SessionState::Orphaned
        );
    }

    #[test]
    fn touch_resets_the_clock() {
        let c = Arc::new(IdleClock::new(Duration::from_secs(60)));
        let g = c.session();
        assert_eq!(c.state(), SessionState::Active);
        drop(g);
        assert_eq!(c.state(), SessionState::Idle);
        assert_eq!(c.status().health, "ok");
    }
}
