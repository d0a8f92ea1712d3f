//! Setup progress: each phase's steps go to the editor (DAP progress) or the CLI (a
//! spinner) as [`SessionEvent`]s, and with `KBRIDGE_TIMINGS=FILE` to a file a benchmark
//! reads to break setup time down by step.

use crate::session::{EventSink, SessionEvent};
use std::time::Instant;

/// When this process's session setup began, for the step timings.
static SETUP_STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Marks the start of setup (the first call wins).
pub(super) fn start_clock() {
    SETUP_STARTED.get_or_init(Instant::now);
}

/// Reports a setup step to the user.
pub(super) fn step(events: &EventSink, text: impl Into<String>) {
    let text = text.into();
    record_timing(&text);
    let _ = events.send(SessionEvent::Step(text));
}

/// Tells the user something worth reading (not a step).
pub(super) fn notice(events: &EventSink, text: impl Into<String>) {
    let _ = events.send(SessionEvent::Notice(text.into()));
}

/// With `KBRIDGE_TIMINGS=FILE`, appends `{"ms": …, "step": …}` (ms since setup began).
pub(super) fn record_timing(step: &str) {
    let Some(path) = std::env::var_os("KBRIDGE_TIMINGS") else {
        return;
    };
    let ms = SETUP_STARTED
        .get_or_init(Instant::now)
        .elapsed()
        .as_secs_f64()
        * 1000.0;
    let line = format!("{}\n", serde_json::json!({"ms": ms, "step": step}));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(error) = written {
        tracing::warn!(%error, "cannot write KBRIDGE_TIMINGS");
    }
}
