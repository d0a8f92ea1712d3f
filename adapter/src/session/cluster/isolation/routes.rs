//! The isolated Service's own bookkeeping, kept on the Service so that any kbridge — this
//! session, another developer's, `kbridge restore` after a crash — and the in-cluster
//! restorer can read it: the original selector (`kbridge.dev/original-selector`, JSON) and
//! the sessions that joined (`kbridge.dev/isolated-sessions`, JSON map route name →
//! session id). The pure logic lives in the cluster contract
//! ([`kbridge_protocol::contract::isolation_record`]), shared with the restorer
//! (`kbridge-agent restore-watch --isolation`), so every party patches the Service the same
//! way; this module gives it the adapter's error type.

use crate::session::cluster::errors::ClusterError;
use k8s_openapi::api::core::v1::Service;
use kbridge_protocol::contract::isolation_record::{self as record, IsolationRecordError};
use serde_json::Value;

pub use kbridge_protocol::contract::labels::{ANNOTATION_ORIGINAL_SELECTOR, ANNOTATION_SESSIONS};
pub use record::{effective_selector, made_by_kbridge, Labels, LeavePlan, ServiceState};

/// The record's refusal as a [`ClusterError`] of its class, worded as the record words it.
fn classified(error: IsolationRecordError) -> ClusterError {
    let text = error.to_string();
    match error {
        IsolationRecordError::BadAnnotation { .. } => ClusterError::BadRecord(text),
        IsolationRecordError::RouteTaken { .. } => ClusterError::Conflict(text),
        IsolationRecordError::NoSelector { .. } => ClusterError::InvalidTarget(text),
    }
}

/// Reads the isolation annotations of `service`; malformed JSON is an error naming it.
pub fn state_of(service: &Service) -> Result<ServiceState, ClusterError> {
    record::state_of(service).map_err(classified)
}

/// The patch that adds `route_as` → `session` to the Service (saving its selector on first
/// use); `None` when it is already there. A name another session uses is refused.
pub fn register_patch(
    service: &Service,
    route_as: &str,
    session: &str,
) -> Result<Option<Value>, ClusterError> {
    record::register_patch(service, route_as, session).map_err(classified)
}

/// The patch that points the Service's selector at the router; `None` when it already
/// does, or when no session is registered any more (the last one left meanwhile).
pub fn switch_patch(service: &Service, router: &Labels) -> Result<Option<Value>, ClusterError> {
    record::switch_patch(service, router).map_err(classified)
}

/// The patch that removes `route_as` (only if `session` holds it, when given); when it was
/// the last session, the patch also puts the original selector back exactly and removes
/// kbridge's annotations (the whole map when nothing else is left in it).
pub fn leave_patch(
    service: &Service,
    route_as: &str,
    session: Option<&str>,
) -> Result<LeavePlan, ClusterError> {
    record::leave_patch(service, route_as, session).map_err(classified)
}

/// Whether the router and origin Service may go: the Service is gone, or nobody is
/// registered on it and its selector is back.
pub fn router_removable(service: Option<&Service>) -> Result<bool, ClusterError> {
    record::router_removable(service).map_err(classified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    #[test]
    fn errors_are_the_adapters_and_keep_their_message() {
        let broken = Service {
            metadata: ObjectMeta {
                name: Some("todo-api".into()),
                annotations: Some(BTreeMap::from([(
                    ANNOTATION_SESSIONS.to_string(),
                    "{not json".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(ServiceSpec::default()),
            ..Default::default()
        };
        let err = state_of(&broken).expect_err("bad json");
        assert!(matches!(err, ClusterError::BadRecord(_)));
        assert!(err.to_string().contains(ANNOTATION_SESSIONS), "{err}");
        assert!(register_patch(&broken, "a", "s").is_err());
        assert!(leave_patch(&broken, "a", None).is_err());
    }
}
