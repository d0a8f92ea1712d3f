//! Phase 4, running: the session's own tasks start, all under one cancellation token and
//! one task tracker that the live session owns — the Lease heartbeat (from kbridge, never
//! from the debuggee, so a process paused on a breakpoint keeps its session), the watch
//! for someone else changing the workload, and the relay of tunnel notices to the user.

use super::takeover::TakenOver;
use crate::session::cluster::connection::Cluster;
use crate::session::cluster::drift;
use crate::session::cluster::lease;
use crate::session::cluster::reachability::{Outcome, Reachability};
use crate::session::cluster::tunnels::{Agents, TunnelNotice};
use crate::session::cluster::workload;
use crate::session::{EventSink, SessionEvent};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The session's tasks and what they share.
pub(crate) struct Running {
    /// Ends every task of the session.
    pub cancel: CancellationToken,
    /// Every task of the session, to wait for at close.
    pub tasks: TaskTracker,
    /// Whether the API server answers; one notice when that changes.
    pub reachability: Reachability,
    /// The agents' tunnels, by pod, with their traffic counters.
    pub agents: Agents,
    /// Where tunnels and forwarders send what the user should read.
    pub notices: UnboundedSender<TunnelNotice>,
    /// The user's progress and notices.
    pub events: EventSink,
}

/// Starts the session's background tasks.
pub(super) fn start(
    cluster: &Cluster,
    session: &str,
    taken: &TakenOver,
    events: &EventSink,
) -> Running {
    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    let running = Running {
        notices: relay_notices(events, &tasks, cancel.clone()),
        cancel,
        tasks,
        reachability: Reachability::new(
            events.clone(),
            taken.target.workload(),
            taken.plan.idle_restore_secs,
        ),
        agents: Agents::default(),
        events: events.clone(),
    };
    if let Some(lease) = &taken.lease {
        running.heartbeat(cluster, lease, session);
    }
    if taken.route_as.is_none() {
        // Someone else changing the workload meanwhile (a deploy, a GitOps sync) is told
        // at once; teardown then keeps their changes.
        let agent = serde_json::to_value(workload::agent_container(
            &taken.target.container,
            &taken.plan,
        ))
        .unwrap_or_default();
        drift::watch(
            cluster,
            &taken.target,
            agent,
            events.clone(),
            &running.tasks,
            running.cancel.clone(),
        );
    }
    running
}

impl Running {
    /// Renews the session's Lease until the session ends, reporting whether the API
    /// server answered; one warning while renewals fail.
    fn heartbeat(&self, cluster: &Cluster, lease: &str, session: &str) {
        let (cluster, lease, session) = (cluster.clone(), lease.to_string(), session.to_string());
        let (cancel, reachability) = (self.cancel.clone(), self.reachability.clone());
        self.tasks.spawn(async move {
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(lease::RENEW_EVERY) => {}
                }
                let renewed = lease::renew(&cluster, &lease, &session).await;
                reachability.report(Outcome::of_cluster(&renewed));
                match renewed {
                    Err(error) if !failing && !reachability.is_unreachable() => {
                        tracing::warn!(%error, "cannot renew the session's lease");
                        failing = true;
                    }
                    Err(_) => {}
                    Ok(()) => failing = false,
                }
            }
        });
    }
}

/// A session dropped without `close` (a launch that failed after the cluster side was
/// up, or a setup phase that failed after this one) still stops its tasks: the Lease
/// heartbeat, tunnels and forwarders end with it. The guardian undoes the cluster changes
/// either way.
impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A channel whose notices reach the user as [`SessionEvent::Notice`]s, until the session
/// ends (the session itself holds a sender, so the channel alone would never close).
fn relay_notices(
    events: &EventSink,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> UnboundedSender<TunnelNotice> {
    let (notice_tx, mut notice_rx) = tokio::sync::mpsc::unbounded_channel::<TunnelNotice>();
    let events = events.clone();
    tasks.spawn(async move {
        loop {
            // Notices already sent are delivered before the end is noticed.
            let notice = tokio::select! {
                biased;
                notice = notice_rx.recv() => notice,
                _ = cancel.cancelled() => return,
            };
            let Some(TunnelNotice::Notice(text)) = notice else {
                return;
            };
            let _ = events.send(SessionEvent::Notice(text));
        }
    });
    notice_tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_notice_relay_delivers_then_ends_with_the_session_though_senders_remain() {
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        let notices = relay_notices(&events, &tasks, cancel.clone());
        notices
            .send(TunnelNotice::Notice("agent lost".into()))
            .expect("relay listening");
        cancel.cancel();
        tasks.close();
        // The sender is still alive (the session holds one): only the cancellation can end
        // the relay. Bounded so a relay that never ends fails here instead of hanging.
        tokio::time::timeout(std::time::Duration::from_secs(10), tasks.wait())
            .await
            .expect("the relay ends when the session does");
        assert!(
            matches!(received.try_recv(), Ok(SessionEvent::Notice(text)) if text == "agent lost")
        );
        drop(notices);
    }
}
