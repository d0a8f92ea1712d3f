//! A cluster session once it is up: what it gives the debuggee (environment, hosts file),
//! its tasks (which end with it), and after teardown the wait until the swapped workload
//! serves with its own pods again.

use super::connection::Cluster;
use super::outbound::ForwardedService;
use super::settle;
use super::setup::{Names, Outbound, Running};
use super::target::WorkloadKind;
use crate::session::hosts_file::HostsEntry;
use crate::session::{BoxFuture, BridgeSession, SessionFace, SessionId, Settled};
use std::time::Duration;

/// A live cluster session.
pub struct ClusterSession {
    face: SessionFace,
    /// Its tasks: dropping the session (a launch that failed after setup) stops them too.
    running: Running,
    /// Services reachable locally.
    pub forwarded: Vec<ForwardedService>,
    /// Hosts entries for them.
    pub hosts: Vec<HostsEntry>,
    /// The workload whose template the session swapped (not for an isolated session,
    /// which leaves the original pods alone): after teardown, [`BridgeSession::settle`]
    /// waits for its rollout.
    swapped: Option<(Cluster, WorkloadKind, String)>,
}

impl ClusterSession {
    /// The session the setup phases built.
    pub(super) fn new(
        id: SessionId,
        running: Running,
        outbound: Outbound,
        names: Names,
        swapped: Option<(Cluster, WorkloadKind, String)>,
    ) -> ClusterSession {
        ClusterSession {
            face: SessionFace {
                id,
                env: outbound.env,
                hosts_file: names.hosts_file,
            },
            running,
            forwarded: outbound.forwarded,
            hosts: names.entries,
            swapped,
        }
    }
}

impl BridgeSession for ClusterSession {
    fn face(&self) -> &SessionFace {
        &self.face
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.running.cancel.cancel();
            self.running.tasks.close();
            let _ = tokio::time::timeout(Duration::from_secs(3), self.running.tasks.wait()).await;
        })
    }

    fn settle<'a>(
        &'a self,
        bound: Duration,
        progress: &'a (dyn Fn(String) + Send + Sync),
    ) -> BoxFuture<'a, Settled> {
        Box::pin(async move {
            let Some((cluster, kind, name)) = &self.swapped else {
                return Settled::Nothing;
            };
            settle::settled(cluster, *kind, name, bound, progress).await
        })
    }
}
