//! Exclusive use of a workload: a coordination.k8s.io Lease per workload, held and
//! renewed by the session. Together with the `kbridge.dev/*` annotations it tells a
//! second session who holds the workload and whether that holder is still alive: a Lease
//! not renewed within its duration belongs to a session that is gone.

use super::connection::Cluster;
use super::errors::{is_conflict, ClusterError};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kbridge_protocol::contract::labels::{LABEL_MANAGED_BY, MANAGED_BY_KBRIDGE};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use std::time::Duration;

/// How long a Lease stays valid without renewal.
pub const LEASE_SECONDS: i32 = 30;
/// How often the session renews it.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The Lease name for a workload.
pub fn lease_name(kind: &str, name: &str) -> String {
    format!("kbridge-{kind}-{name}")
}

/// Who holds a workload, per its Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody.
    Free,
    /// A session that renewed in time.
    Alive {
        /// Its id.
        session: String,
    },
    /// A session that stopped renewing: gone.
    Stale {
        /// Its id.
        session: String,
    },
}

fn error(cluster: &Cluster, e: kube::Error, verb: &'static str) -> ClusterError {
    cluster.error_of::<Lease>(e, verb)
}

/// Whether a Lease renewed at `renewed` (seconds since the epoch) with `duration` has run out at `now`.
pub fn expired(renewed: i64, duration: i32, now: i64) -> bool {
    renewed + i64::from(duration) < now
}

/// Reads the holder of `lease`.
pub async fn holder(cluster: &Cluster, lease: &str) -> Result<Holder, ClusterError> {
    let Some(lease) = cluster.get_opt::<Lease>(lease).await? else {
        return Ok(Holder::Free);
    };
    let spec = lease.spec.unwrap_or_default();
    let Some(session) = spec.holder_identity.filter(|h| !h.is_empty()) else {
        return Ok(Holder::Free);
    };
    let renewed = spec
        .renew_time
        .or(spec.acquire_time)
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    let duration = spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS);
    Ok(
        if expired(renewed, duration, Timestamp::now().as_second()) {
            Holder::Stale { session }
        } else {
            Holder::Alive { session }
        },
    )
}

fn spec(session: &str, acquire: bool) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(session.to_string()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        acquire_time: acquire.then(|| now.clone()),
        renew_time: Some(now),
        ..Default::default()
    }
}

/// The refusal when another live session holds the workload.
pub fn in_use(workload: &str, other: &str, namespace: &str) -> String {
    format!(
        "{workload} is in use by kbridge session {other}; wait for it to end (`kbridge status -n {namespace}` shows who holds it)"
    )
}

/// Takes the Lease for `session` (creating it, or taking it over from a stale holder).
/// A live holder that got there first wins: two sessions starting at once do not both
/// take the workload.
pub async fn acquire(
    cluster: &Cluster,
    lease: &str,
    session: &str,
    workload: &str,
) -> Result<(), ClusterError> {
    let object = Lease {
        metadata: ObjectMeta {
            name: Some(lease.to_string()),
            labels: Some([(LABEL_MANAGED_BY.to_string(), MANAGED_BY_KBRIDGE.to_string())].into()),
            ..Default::default()
        },
        spec: Some(spec(session, true)),
    };
    match cluster
        .api::<Lease>()
        .create(&PostParams::default(), &object)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => {
            if let Holder::Alive { session: other } = holder(cluster, lease).await? {
                if other != session {
                    return Err(ClusterError::Conflict(in_use(
                        workload,
                        &other,
                        &cluster.namespace,
                    )));
                }
            }
            write_spec(cluster, lease, session, true).await
        }
        Err(e) => Err(error(cluster, e, "create")),
    }
}

/// Renews the Lease; called every [`RENEW_EVERY`] by the session, never by the debuggee.
pub async fn renew(cluster: &Cluster, lease: &str, session: &str) -> Result<(), ClusterError> {
    write_spec(cluster, lease, session, false).await
}

/// Writes `session` as the holder, renewed now (and acquired now, if `acquire`).
async fn write_spec(
    cluster: &Cluster,
    lease: &str,
    session: &str,
    acquire: bool,
) -> Result<(), ClusterError> {
    let patch = serde_json::json!({"spec": spec(session, acquire)});
    cluster
        .api::<Lease>()
        .patch(lease, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| error(cluster, e, "patch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        assert!(!expired(100, 30, 130));
        assert!(expired(100, 30, 131));
        assert_eq!(
            lease_name("deployment", "todo-api"),
            "kbridge-deployment-todo-api"
        );
    }
}
