//! A cluster session once it is up: what it gives the debuggee (environment, hosts file),
//! its tasks (which end with it), and after teardown the wait until the swapped workload
//! serves with its own pods again.

use super::connection::Cluster;
use super::outbound::ForwardedService;
use super::settle;
use super::setup::{Names, Outbound, Running};
use super::target::WorkloadKind;
use crate::env::EnvLayers;
use crate::session::hosts_file::HostsEntry;
use crate::session::{BoxFuture, BridgeSession, SessionId, Settled};
use std::path::PathBuf;
use std::time::Duration;

/// A live cluster session.
pub struct ClusterSession {
    id: SessionId,
    env: EnvLayers,
    /// Its tasks: dropping the session (a launch that failed after setup) stops them too.
    running: Running,
    /// Services reachable locally.
    pub forwarded: Vec<ForwardedService>,
    /// Hosts entries for them.
    pub hosts: Vec<HostsEntry>,
    hosts_file: Option<PathBuf>,
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
            id,
            env: outbound.env,
            running,
            forwarded: outbound.forwarded,
            hosts: names.entries,
            hosts_file: names.hosts_file,
            swapped,
        }
    }
}

impl BridgeSession for ClusterSession {
    fn id(&self) -> &SessionId {
        &self.id
    }

    fn environment(&self) -> EnvLayers {
        self.env.clone()
    }

    fn hosts_file(&self) -> Option<PathBuf> {
        self.hosts_file.clone()
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
