//! The isolation record (`docs/architecture.md`, "Isolation") shared by kbridge (`join`/`leave`, `kbridge restore`)
//! and the in-cluster restorer (`kbridge-agent restore-watch --isolation SVC/NAME`): the
//! names of what isolation creates, and the isolated Service's own bookkeeping, kept on the
//! Service so that any kbridge — this session, another developer's, `kbridge restore` after
//! a crash, the restorer in the cluster — can read it: the original selector
//! (`kbridge.dev/original-selector`, JSON) and the sessions that joined
//! (`kbridge.dev/isolated-sessions`, JSON map route name → session id).
//!
//! Everything here is pure: the functions turn the Service as read into the merge patch to
//! send, carrying its `resourceVersion` so that a concurrent change makes the API answer
//! 409 and the caller reads again. Because every party computes its patches here, a leave
//! by kbridge, by `kbridge restore` and by the restorer puts the Service back identically.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use serde_json::{json, Map, Value};

use super::labels::{
    ANNOTATION_ORIGINAL_SELECTOR, ANNOTATION_PREFIX, ANNOTATION_SESSIONS, LABEL_MANAGED_BY,
    MANAGED_BY_KBRIDGE,
};
use super::restore::AgentObservation;
use crate::status::SessionState;

/// Longest name of a Service (a DNS-1035 label) and of a label value.
pub const MAX_LABEL: usize = 63;
/// Longest name of most other objects (a DNS-1123 subdomain).
pub const MAX_NAME: usize = 253;

/// Labels, as in a selector.
pub type Labels = BTreeMap<String, String>;

/// Why the isolation record of a Service cannot be used or changed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsolationRecordError {
    /// An annotation holds something other than a JSON object of strings.
    #[error("annotation {key} of service '{service}' is not a JSON object of strings ({reason}); fix or remove it (`kubectl annotate service {service} {key}-`)")]
    BadAnnotation {
        /// The Service.
        service: String,
        /// The annotation key.
        key: &'static str,
        /// The JSON error.
        reason: String,
    },
    /// Another session holds the route name.
    #[error("the route name '{route_as}' is already used on service '{service}' by kbridge session {holder}; choose another `isolateAs` (or run `kbridge restore` if that session is gone)")]
    RouteTaken {
        /// The Service.
        service: String,
        /// The route name asked for.
        route_as: String,
        /// The session holding it.
        holder: String,
    },
    /// The Service selects nothing, so there is nothing to put a router in front of.
    #[error("service '{service}' has no selector, so kbridge cannot put a router in front of it; isolation needs a Service that selects the workload's pods")]
    NoSelector {
        /// The Service.
        service: String,
    },
}

// ---------------------------------------------------------------------------------------
// Names.

/// `name` if it fits in `max` characters, else its start and a short hash of the whole,
/// so long names stay unique and valid.
pub fn fit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let tag = format!("{:08x}", hash & 0xffff_ffff);
    let head: String = name.chars().take(max - tag.len() - 1).collect();
    format!("{}-{tag}", head.trim_end_matches('-'))
}

/// The session's clone of the workload: `<workload>-kbridge-<name>`.
pub fn clone_name(workload: &str, route_as: &str) -> String {
    fit(&format!("{workload}-kbridge-{route_as}"), MAX_LABEL)
}

/// The shared router Deployment (and its ServiceAccount, Role, RoleBinding):
/// `<svc>-kbridge-router`.
pub fn router_name(service: &str) -> String {
    fit(&format!("{service}-kbridge-router"), MAX_LABEL)
}

/// The Service that selects the original pods while the router fronts the Service:
/// `<svc>-kbridge-origin`.
pub fn origin_name(service: &str) -> String {
    fit(&format!("{service}-kbridge-origin"), MAX_LABEL)
}

/// A session's copy of an Ingress: `<ingress>-kbridge-<name>`.
pub fn ingress_copy_name(ingress: &str, route_as: &str) -> String {
    fit(&format!("{ingress}-kbridge-{route_as}"), MAX_NAME)
}

/// A session id as a label value (at most 63 characters of `A-Za-z0-9-_.`).
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cut = fit(&mapped, MAX_LABEL);
    cut.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

// ---------------------------------------------------------------------------------------
// The Service's annotations.

/// What the annotations of a Service say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// The selector to restore, once saved.
    pub original_selector: Option<Labels>,
    /// Route name → session id.
    pub sessions: BTreeMap<String, String>,
}

fn name_of(service: &Service) -> String {
    service.metadata.name.clone().unwrap_or_default()
}

fn annotations(service: &Service) -> BTreeMap<String, String> {
    service.metadata.annotations.clone().unwrap_or_default()
}

fn selector(service: &Service) -> Labels {
    service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default()
}

/// Reads the isolation annotations of `service`; malformed JSON is an error naming it.
pub fn state_of(service: &Service) -> Result<ServiceState, IsolationRecordError> {
    let annotations = annotations(service);
    let parse =
        |key: &'static str| -> Result<Option<BTreeMap<String, String>>, IsolationRecordError> {
            annotations
                .get(key)
                .map(|raw| {
                    serde_json::from_str(raw).map_err(|e| IsolationRecordError::BadAnnotation {
                        service: name_of(service),
                        key,
                        reason: e.to_string(),
                    })
                })
                .transpose()
        };
    Ok(ServiceState {
        original_selector: parse(ANNOTATION_ORIGINAL_SELECTOR)?,
        sessions: parse(ANNOTATION_SESSIONS)?.unwrap_or_default(),
    })
}

/// The selector that picks the application's pods: the saved original while the Service
/// is isolated (its live selector then picks the router), else its selector. `None` for a
/// Service without a selector.
pub fn effective_selector(service: &Service) -> Option<Labels> {
    let saved = state_of(service).ok().and_then(|s| s.original_selector);
    saved
        .or_else(|| Some(selector(service)))
        .filter(|s| !s.is_empty())
}

fn metadata_patch(service: &Service) -> Map<String, Value> {
    let mut metadata = Map::new();
    if let Some(version) = &service.metadata.resource_version {
        metadata.insert("resourceVersion".into(), json!(version));
    }
    metadata
}

/// Merge-patch value that turns selector `from` into `to` (keys only in `from` set to null).
fn selector_patch(from: &Labels, to: &Labels) -> Value {
    let mut patch = Map::new();
    for key in from.keys().filter(|k| !to.contains_key(*k)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, value) in to {
        patch.insert(key.clone(), json!(value));
    }
    Value::Object(patch)
}

fn to_json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

/// The patch that adds `route_as` → `session` to the Service (saving its selector on first
/// use); `None` when it is already there. A name another session uses is refused.
pub fn register_patch(
    service: &Service,
    route_as: &str,
    session: &str,
) -> Result<Option<Value>, IsolationRecordError> {
    let state = state_of(service)?;
    let name = name_of(service);
    match state.sessions.get(route_as) {
        Some(holder) if holder == session => return Ok(None),
        Some(holder) => {
            return Err(IsolationRecordError::RouteTaken {
                service: name,
                route_as: route_as.to_string(),
                holder: holder.clone(),
            })
        }
        None => {}
    }
    let mut annotations = Map::new();
    if state.original_selector.is_none() {
        let current = selector(service);
        if current.is_empty() {
            return Err(IsolationRecordError::NoSelector { service: name });
        }
        annotations.insert(
            ANNOTATION_ORIGINAL_SELECTOR.into(),
            json!(to_json(&current)),
        );
    }
    let mut sessions = state.sessions;
    sessions.insert(route_as.to_string(), session.to_string());
    annotations.insert(ANNOTATION_SESSIONS.into(), json!(to_json(&sessions)));
    let mut metadata = metadata_patch(service);
    metadata.insert("annotations".into(), Value::Object(annotations));
    Ok(Some(json!({ "metadata": metadata })))
}

/// The patch that points the Service's selector at the router; `None` when it already
/// does, or when no session is registered any more (the last one left meanwhile).
pub fn switch_patch(
    service: &Service,
    router: &Labels,
) -> Result<Option<Value>, IsolationRecordError> {
    let state = state_of(service)?;
    let current = selector(service);
    if &current == router || state.sessions.is_empty() || state.original_selector.is_none() {
        return Ok(None);
    }
    let metadata = metadata_patch(service);
    Ok(Some(json!({
        "metadata": metadata,
        "spec": {"selector": selector_patch(&current, router)}
    })))
}

/// What [`leave_patch`] decided.
#[derive(Debug, Clone, PartialEq)]
pub struct LeavePlan {
    /// The patch to send, `None` when there is nothing to change.
    pub patch: Option<Value>,
    /// Whether the Service is back to its original state after it (no session left), so
    /// the router and the origin Service can go.
    pub last: bool,
    /// The session that held the route name, if any did.
    pub removed: Option<String>,
}

/// The patch that removes `route_as` (only if `session` holds it, when given); when it was
/// the last session, the patch also puts the original selector back exactly and removes
/// kbridge's annotations (the whole map when nothing else is left in it).
pub fn leave_patch(
    service: &Service,
    route_as: &str,
    session: Option<&str>,
) -> Result<LeavePlan, IsolationRecordError> {
    let state = state_of(service)?;
    let mut sessions = state.sessions.clone();
    let removed = match sessions.get(route_as) {
        Some(holder) if session.is_none_or(|s| s == holder) => sessions.remove(route_as),
        _ => None,
    };
    if !sessions.is_empty() {
        let patch = removed.as_ref().map(|_| {
            let mut metadata = metadata_patch(service);
            metadata.insert(
                "annotations".into(),
                json!({ ANNOTATION_SESSIONS: to_json(&sessions) }),
            );
            json!({ "metadata": metadata })
        });
        return Ok(LeavePlan {
            patch,
            last: false,
            removed,
        });
    }
    let ours = |k: &String| k == ANNOTATION_ORIGINAL_SELECTOR || k == ANNOTATION_SESSIONS;
    let current = annotations(service);
    if !current.keys().any(ours) {
        // Not isolated (any more): nothing to put back.
        return Ok(LeavePlan {
            patch: None,
            last: true,
            removed,
        });
    }
    let mut metadata = metadata_patch(service);
    if current.keys().all(ours) {
        metadata.insert("annotations".into(), Value::Null);
    } else {
        metadata.insert(
            "annotations".into(),
            json!({ ANNOTATION_ORIGINAL_SELECTOR: null, ANNOTATION_SESSIONS: null }),
        );
    }
    let mut patch = json!({ "metadata": metadata });
    if let Some(original) = &state.original_selector {
        let now = selector(service);
        if &now != original {
            patch["spec"] = json!({ "selector": selector_patch(&now, original) });
        }
    }
    Ok(LeavePlan {
        patch: Some(patch),
        last: true,
        removed,
    })
}

/// Whether the router and the origin Service of a Service may be deleted: the Service is
/// gone, or no session is registered on it and its selector is back (nobody joined
/// meanwhile).
pub fn router_removable(service: Option<&Service>) -> Result<bool, IsolationRecordError> {
    let Some(service) = service else {
        return Ok(true);
    };
    let state = state_of(service)?;
    Ok(state.sessions.is_empty() && state.original_selector.is_none())
}

/// Whether an object is one kbridge made (its `app.kubernetes.io/managed-by` label, or a
/// `kbridge.dev/` label).
pub fn made_by_kbridge(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| {
        l.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_KBRIDGE)
            || l.keys().any(|k| k.starts_with(ANNOTATION_PREFIX))
    })
}

// ---------------------------------------------------------------------------------------
// The restorer's decision.

/// What the restorer of an isolated session should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveDecision {
    /// Keep watching.
    Wait,
    /// End the session's isolation ([`leave_patch`] with the session id).
    Leave,
    /// Nothing left to do: the Service is gone, or the route is not this session's (any
    /// more).
    Done(String),
}

/// The decision of the restorer watching session `session` isolated as `route_as`, given
/// the Service as read (`None` when it does not exist) and what the clone's agent says.
/// `unreachable_grace` is how long an unreachable agent is tolerated (a clone pod being
/// rescheduled may be briefly unreachable while kbridge is fine).
pub fn decide_leave(
    service: Option<&Service>,
    route_as: &str,
    session: &str,
    agent: AgentObservation,
    unreachable_grace: Duration,
) -> Result<LeaveDecision, IsolationRecordError> {
    let Some(service) = service else {
        return Ok(LeaveDecision::Done("the service no longer exists".into()));
    };
    match state_of(service)?.sessions.get(route_as) {
        None => {
            return Ok(LeaveDecision::Done(format!(
                "route '{route_as}' is no longer registered on service '{}'",
                name_of(service)
            )))
        }
        Some(holder) if holder != session => {
            return Ok(LeaveDecision::Done(format!(
                "route '{route_as}' now belongs to session {holder}"
            )))
        }
        Some(_) => {}
    }
    Ok(match agent {
        AgentObservation::State(SessionState::Orphaned) => LeaveDecision::Leave,
        AgentObservation::State(_) => LeaveDecision::Wait,
        AgentObservation::Unreachable(d) if d >= unreachable_grace => LeaveDecision::Leave,
        AgentObservation::Unreachable(_) => LeaveDecision::Wait,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn service(selector: Labels, annotations: Option<Labels>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("todo-api".into()),
                resource_version: Some("9".into()),
                annotations,
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(selector),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Applies a JSON merge patch (RFC 7386), as the API server does.
    fn merge(target: &mut Value, patch: &Value) {
        match patch {
            Value::Object(p) => {
                if !target.is_object() {
                    *target = json!({});
                }
                for (k, v) in p {
                    if v.is_null() {
                        target.as_object_mut().map(|t| t.remove(k));
                    } else {
                        let slot = target
                            .as_object_mut()
                            .map(|t| t.entry(k.clone()).or_insert(Value::Null));
                        if let Some(slot) = slot {
                            merge(slot, v);
                        }
                    }
                }
            }
            other => *target = other.clone(),
        }
    }

    fn apply(service: &Service, patch: &Value) -> Service {
        let mut value = serde_json::to_value(service).expect("json");
        let mut patch = patch.clone();
        if let Some(m) = patch["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        merge(&mut value, &patch);
        serde_json::from_value(value).expect("a service")
    }

    #[test]
    fn sessions_join_and_leave_in_any_order_and_the_last_restores_exactly() {
        let original = service(labels(&[("app", "todo-api"), ("tier", "web")]), None);
        let router = labels(&[("kbridge.dev/router-for", "todo-api")]);

        let patch = register_patch(&original, "alice", "s-a")
            .expect("ok")
            .expect("a patch");
        assert_eq!(patch["metadata"]["resourceVersion"], "9", "guarded");
        let joined = apply(&original, &patch);
        let switched = apply(
            &joined,
            &switch_patch(&joined, &router).expect("ok").expect("patch"),
        );
        assert_eq!(
            switched.spec.as_ref().and_then(|s| s.selector.clone()),
            Some(router.clone())
        );
        assert_eq!(effective_selector(&switched), effective_selector(&original));
        assert_eq!(
            switch_patch(&switched, &router).expect("ok"),
            None,
            "already"
        );
        assert!(!router_removable(Some(&switched)).expect("ok"));

        let both = apply(
            &switched,
            &register_patch(&switched, "bob", "s-b")
                .expect("ok")
                .expect("patch"),
        );
        assert_eq!(
            register_patch(&both, "bob", "s-b").expect("ok"),
            None,
            "idempotent"
        );
        let taken = register_patch(&both, "bob", "s-c").expect_err("name taken");
        assert!(taken.to_string().contains("s-b"), "{taken}");
        assert_eq!(
            state_of(&both).expect("state").sessions,
            labels(&[("alice", "s-a"), ("bob", "s-b")])
        );

        // Someone else's session id does not remove alice.
        let wrong = leave_patch(&both, "alice", Some("s-x")).expect("ok");
        assert_eq!((wrong.patch, wrong.last), (None, false));

        let first = leave_patch(&both, "alice", Some("s-a")).expect("ok");
        assert!(!first.last);
        assert_eq!(first.removed.as_deref(), Some("s-a"));
        let one_left = apply(&both, &first.patch.expect("patch"));
        assert_eq!(
            one_left.spec.as_ref().and_then(|s| s.selector.clone()),
            Some(router)
        );

        let last = leave_patch(&one_left, "bob", None).expect("ok");
        assert!(last.last);
        let restored = apply(&one_left, &last.patch.expect("patch"));
        assert_eq!(
            serde_json::to_value(&restored).expect("json"),
            serde_json::to_value(&original).expect("json"),
            "selector back exactly, no annotations map left"
        );
        assert!(router_removable(Some(&restored)).expect("ok"));
        assert!(router_removable(None).expect("ok"));
        let again = leave_patch(&restored, "bob", None).expect("ok");
        assert_eq!((again.patch, again.last), (None, true), "idempotent");
    }

    #[test]
    fn other_annotations_are_kept_and_bad_json_is_named() {
        let original = service(labels(&[("app", "x")]), Some(labels(&[("team", "blue")])));
        let joined = apply(
            &original,
            &register_patch(&original, "alice", "s")
                .expect("ok")
                .expect("p"),
        );
        let back = apply(
            &joined,
            &leave_patch(&joined, "alice", Some("s"))
                .expect("ok")
                .patch
                .expect("p"),
        );
        assert_eq!(back.metadata.annotations, original.metadata.annotations);

        let broken = service(
            labels(&[("app", "x")]),
            Some(labels(&[(ANNOTATION_SESSIONS, "{not json")])),
        );
        let err = state_of(&broken).expect_err("bad json");
        assert!(err.to_string().contains(ANNOTATION_SESSIONS), "{err}");
        let no_selector = service(Labels::new(), None);
        let err = register_patch(&no_selector, "a", "s").expect_err("no selector");
        assert!(err.to_string().contains("no selector"), "{err}");
    }

    #[test]
    fn the_restorer_leaves_only_its_own_orphaned_route() {
        let original = service(labels(&[("app", "todo-api")]), None);
        let joined = apply(
            &original,
            &register_patch(&original, "bob", "s-b")
                .expect("ok")
                .expect("p"),
        );
        let grace = Duration::from_secs(60);
        let st = AgentObservation::State;
        let decide = |s: Option<&Service>, session: &str, o| {
            decide_leave(s, "bob", session, o, grace).expect("ok")
        };
        assert_eq!(
            decide(Some(&joined), "s-b", st(SessionState::Active)),
            LeaveDecision::Wait
        );
        assert_eq!(
            decide(Some(&joined), "s-b", st(SessionState::Idle)),
            LeaveDecision::Wait
        );
        assert_eq!(
            decide(Some(&joined), "s-b", st(SessionState::Orphaned)),
            LeaveDecision::Leave
        );
        assert_eq!(
            decide(
                Some(&joined),
                "s-b",
                AgentObservation::Unreachable(Duration::from_secs(5))
            ),
            LeaveDecision::Wait
        );
        assert_eq!(
            decide(Some(&joined), "s-b", AgentObservation::Unreachable(grace)),
            LeaveDecision::Leave
        );
        // Another session holds the name now, kbridge already left, or the Service is gone.
        for (s, session) in [
            (Some(&joined), "s-other"),
            (Some(&original), "s-b"),
            (None, "s-b"),
        ] {
            assert!(matches!(
                decide(s, session, st(SessionState::Orphaned)),
                LeaveDecision::Done(_)
            ));
        }
    }

    #[test]
    fn object_names_fit_their_limits() {
        assert_eq!(clone_name("todo-api", "alice"), "todo-api-kbridge-alice");
        assert_eq!(router_name("todo-api"), "todo-api-kbridge-router");
        assert_eq!(origin_name("todo-api"), "todo-api-kbridge-origin");
        assert_eq!(ingress_copy_name("web", "bob"), "web-kbridge-bob");
        let long = origin_name(&"s".repeat(63));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, origin_name(&format!("{}t", "s".repeat(62))));
        assert_eq!(label_value("1764.59_x/y"), "1764.59_x-y");
        assert!(label_value(&"9".repeat(80)).len() <= 63);
    }

    #[test]
    fn only_kbridge_objects_are_recognized() {
        assert!(made_by_kbridge(Some(&labels(&[(
            "app.kubernetes.io/managed-by",
            "kbridge"
        )]))));
        assert!(made_by_kbridge(Some(&labels(&[(
            "kbridge.dev/router-for",
            "x"
        )]))));
        assert!(!made_by_kbridge(Some(&labels(&[("app", "x")]))));
        assert!(!made_by_kbridge(None));
    }
}
