//! The restore contract shared by the adapter, `kbridge restore` and the in-cluster restorer:
//! the restore record the `kbridge.dev/*` annotations hold ([`super::labels`]), the patch that
//! puts a workload back, and the restorer's decision logic (pure, so it is unit-tested).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::labels::{
    ANNOTATION_AGENT_CONTAINER, ANNOTATION_ORIGINAL_CONTAINER, ANNOTATION_ORIGINAL_POD,
    ANNOTATION_OWNER, ANNOTATION_PREFIX, ANNOTATION_SESSION, ANNOTATION_STARTED,
};
use super::restore_merge::merge_container;
use crate::status::SessionState;

/// Every annotation a session writes (and a restore removes).
pub const ALL_ANNOTATIONS: &[&str] = &[
    ANNOTATION_SESSION,
    ANNOTATION_OWNER,
    ANNOTATION_STARTED,
    ANNOTATION_ORIGINAL_CONTAINER,
    ANNOTATION_AGENT_CONTAINER,
    ANNOTATION_ORIGINAL_POD,
];

/// Errors reading or applying a restore record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    /// An annotation is missing although the session annotation is present.
    #[error("annotation '{0}' is missing; the restore record is incomplete")]
    Missing(&'static str),
    /// The original container annotation is not a container object with a name.
    #[error(
        "annotation '{ANNOTATION_ORIGINAL_CONTAINER}' is not a container JSON with a name: {0}"
    )]
    BadContainer(String),
    /// The workload has no pod template containers (not a Deployment/StatefulSet/…).
    #[error(
        "the workload has no spec.template.spec.containers; restore it with 'kbridge restore'"
    )]
    NoTemplate,
}

/// What a session stored so that anyone can undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRecord {
    /// Session id.
    pub session: String,
    /// Owner (`user@host`).
    pub owner: String,
    /// RFC 3339 start time.
    pub started: String,
    /// The original container object from the pod template.
    pub original_container: Value,
    /// The agent container kbridge put in its place (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_container: Option<Value>,
}

impl RestoreRecord {
    /// The name of the swapped container (the agent kept it).
    pub fn container_name(&self) -> Result<&str, RestoreError> {
        self.original_container
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| RestoreError::BadContainer("no \"name\" field".into()))
    }

    /// The annotations that store this record.
    pub fn to_annotations(&self) -> BTreeMap<String, String> {
        let agent = self
            .agent_container
            .as_ref()
            .map(|agent| (ANNOTATION_AGENT_CONTAINER, agent.to_string()));
        [
            (ANNOTATION_SESSION, self.session.clone()),
            (ANNOTATION_OWNER, self.owner.clone()),
            (ANNOTATION_STARTED, self.started.clone()),
            (
                ANNOTATION_ORIGINAL_CONTAINER,
                self.original_container.to_string(),
            ),
        ]
        .into_iter()
        .chain(agent)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Reads a record from annotations: `Ok(None)` when no session holds the workload.
    pub fn from_annotations(a: &BTreeMap<String, String>) -> Result<Option<Self>, RestoreError> {
        let Some(session) = a.get(ANNOTATION_SESSION) else {
            return Ok(None);
        };
        let get = |k: &'static str| a.get(k).cloned().ok_or(RestoreError::Missing(k));
        let raw = get(ANNOTATION_ORIGINAL_CONTAINER)?;
        let original_container: Value =
            serde_json::from_str(&raw).map_err(|e| RestoreError::BadContainer(e.to_string()))?;
        // An unreadable agent record only costs the finer restore, not the restore.
        let agent_container = a
            .get(ANNOTATION_AGENT_CONTAINER)
            .and_then(|raw| serde_json::from_str(raw).ok());
        let rec = RestoreRecord {
            session: session.clone(),
            owner: get(ANNOTATION_OWNER)?,
            started: get(ANNOTATION_STARTED)?,
            original_container,
            agent_container,
        };
        rec.container_name()?;
        Ok(Some(rec))
    }
}

/// Builds the JSON merge patch that restores `workload` (Deployment, StatefulSet, ReplicaSet,
/// DaemonSet as JSON): the original container goes back in place of the agent, the kbridge
/// annotations are removed, and `metadata.resourceVersion` makes the API server refuse the patch
/// (409) if the workload changed since it was read.
///
/// When the record has the agent container, only kbridge's own changes are undone: what
/// someone else changed in the container during the session stays
/// ([`super::restore_merge`]), and a container they removed stays removed. Older records
/// put the original back in any case.
pub fn restore_patch(workload: &Value, record: &RestoreRecord) -> Result<Value, RestoreError> {
    let name = record.container_name()?;
    let containers = workload
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .ok_or(RestoreError::NoTemplate)?;
    let mut replaced = false;
    let mut new: Vec<Value> = containers
        .iter()
        .map(|c| {
            if c.get("name").and_then(Value::as_str) != Some(name) {
                return c.clone();
            }
            replaced = true;
            match &record.agent_container {
                Some(agent) => merge_container(&record.original_container, agent, c),
                None => record.original_container.clone(),
            }
        })
        .collect();
    if !replaced && record.agent_container.is_none() {
        // The agent container vanished (someone edited the workload); put the original back anyway.
        new.push(record.original_container.clone());
    }
    let annotations: serde_json::Map<String, Value> = ALL_ANNOTATIONS
        .iter()
        .map(|k| (k.to_string(), Value::Null))
        .collect();
    let mut metadata = json!({ "annotations": annotations });
    if let Some(rv) = workload.pointer("/metadata/resourceVersion") {
        metadata["resourceVersion"] = rv.clone();
    }
    Ok(json!({
        "metadata": metadata,
        "spec": { "template": { "spec": { "containers": new } } }
    }))
}

/// A Pod as it can be created again: what its author wrote (name, labels, annotations without
/// kbridge's, spec), without what the API server and the scheduler filled in (uid,
/// resourceVersion, status, `nodeName` — the scheduler picks a node again).
pub fn recreatable_pod(pod: &Value) -> Value {
    let mut metadata = serde_json::Map::new();
    for key in ["name", "namespace", "labels", "annotations", "finalizers"] {
        if let Some(v) = pod.pointer(&format!("/metadata/{key}")) {
            metadata.insert(key.into(), v.clone());
        }
    }
    if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
        annotations.retain(|k, _| !k.starts_with(ANNOTATION_PREFIX));
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    let mut spec = pod.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let Value::Object(spec) = &mut spec {
        spec.remove("nodeName");
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// The Pod that replaces bare Pod `original`: the same Pod with `agent` in place of the
/// container of the same name, carrying the restore record and the original Pod itself.
pub fn agent_pod(
    original: &Value,
    agent: &Value,
    record: &RestoreRecord,
) -> Result<Value, RestoreError> {
    let keep = recreatable_pod(original);
    let mut pod = keep.clone();
    let name = agent
        .get("name")
        .ok_or_else(|| RestoreError::BadContainer("the agent container has no name".into()))?;
    let containers = pod
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
        .ok_or(RestoreError::NoTemplate)?;
    for c in containers.iter_mut() {
        if c.get("name") == Some(name) {
            *c = agent.clone();
        }
    }
    let mut annotations = record.to_annotations();
    annotations.insert(ANNOTATION_ORIGINAL_POD.into(), keep.to_string());
    let merged = pod["metadata"]
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain(annotations.into_iter().map(|(k, v)| (k, Value::String(v))))
        .collect::<serde_json::Map<_, _>>();
    pod["metadata"]["annotations"] = Value::Object(merged);
    Ok(pod)
}

/// The original Pod stored on an agent Pod kbridge created, ready to create.
pub fn original_pod(agent_pod: &BTreeMap<String, String>) -> Result<Value, RestoreError> {
    let raw = agent_pod
        .get(ANNOTATION_ORIGINAL_POD)
        .ok_or(RestoreError::Missing(ANNOTATION_ORIGINAL_POD))?;
    let pod: Value =
        serde_json::from_str(raw).map_err(|e| RestoreError::BadContainer(e.to_string()))?;
    if pod.pointer("/spec/containers").is_none() {
        return Err(RestoreError::NoTemplate);
    }
    Ok(pod)
}

/// What the restorer saw of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentObservation {
    /// The agent answered `/status` with this state.
    State(SessionState),
    /// The agent did not answer, for this long already.
    Unreachable(Duration),
}

/// What the restorer should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Keep watching.
    Wait,
    /// Put the workload back from this record.
    Restore(RestoreRecord),
    /// Nothing left to do (the workload is already restored or belongs to another session).
    Done(String),
}

/// The restorer's decision for session `session`, given the workload's annotations and what the
/// agent says. `unreachable_grace` is how long an unreachable agent is tolerated (the idle
/// threshold: a pod being rescheduled may be briefly unreachable while kbridge is fine).
pub fn decide(
    session: &str,
    annotations: Option<&BTreeMap<String, String>>,
    agent: AgentObservation,
    unreachable_grace: Duration,
) -> Result<Decision, RestoreError> {
    let Some(annotations) = annotations else {
        return Ok(Decision::Done("the workload no longer exists".into()));
    };
    let record = match RestoreRecord::from_annotations(annotations)? {
        None => return Ok(Decision::Done("the workload is already restored".into())),
        Some(r) if r.session != session => {
            return Ok(Decision::Done(format!(
                "the workload now belongs to session {}",
                r.session
            )))
        }
        Some(r) => r,
    };
    Ok(match agent {
        AgentObservation::State(SessionState::Orphaned) => Decision::Restore(record),
        AgentObservation::State(_) => Decision::Wait,
        AgentObservation::Unreachable(d) if d >= unreachable_grace => Decision::Restore(record),
        AgentObservation::Unreachable(_) => Decision::Wait,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(session: &str) -> RestoreRecord {
        RestoreRecord {
            session: session.into(),
            owner: "alice@laptop".into(),
            started: "2026-12-01T13:00:00Z".into(),
            original_container: json!({"name": "api", "image": "todo-api:1", "ports": [{"containerPort": 80}]}),
            agent_container: None,
        }
    }

    #[test]
    fn annotations_round_trip() {
        let r = record("s1");
        let a = r.to_annotations();
        assert_eq!(RestoreRecord::from_annotations(&a).unwrap(), Some(r));
        assert_eq!(
            RestoreRecord::from_annotations(&BTreeMap::new()).unwrap(),
            None
        );
        let mut broken = a.clone();
        broken.remove(ANNOTATION_OWNER);
        assert_eq!(
            RestoreRecord::from_annotations(&broken),
            Err(RestoreError::Missing(ANNOTATION_OWNER))
        );
        let mut broken = a;
        broken.insert(ANNOTATION_ORIGINAL_CONTAINER.into(), "{}".into());
        assert!(RestoreRecord::from_annotations(&broken).is_err());
    }

    #[test]
    fn decisions() {
        let a = record("s1").to_annotations();
        let grace = Duration::from_secs(60);
        let st = |s| AgentObservation::State(s);
        assert_eq!(
            decide("s1", Some(&a), st(SessionState::Active), grace).unwrap(),
            Decision::Wait
        );
        assert_eq!(
            decide("s1", Some(&a), st(SessionState::Idle), grace).unwrap(),
            Decision::Wait
        );
        assert_eq!(
            decide("s1", Some(&a), st(SessionState::Orphaned), grace).unwrap(),
            Decision::Restore(record("s1"))
        );
        assert_eq!(
            decide(
                "s1",
                Some(&a),
                AgentObservation::Unreachable(Duration::from_secs(5)),
                grace
            )
            .unwrap(),
            Decision::Wait
        );
        assert_eq!(
            decide("s1", Some(&a), AgentObservation::Unreachable(grace), grace).unwrap(),
            Decision::Restore(record("s1"))
        );
        // Another session took over, or kbridge already restored: never touch it.
        assert!(matches!(
            decide("s0", Some(&a), st(SessionState::Orphaned), grace).unwrap(),
            Decision::Done(_)
        ));
        assert!(matches!(
            decide(
                "s1",
                Some(&BTreeMap::new()),
                st(SessionState::Orphaned),
                grace
            )
            .unwrap(),
            Decision::Done(_)
        ));
        assert!(matches!(
            decide("s1", None, st(SessionState::Orphaned), grace).unwrap(),
            Decision::Done(_)
        ));
    }

    #[test]
    fn bare_pods_keep_what_their_author_wrote() {
        let original = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "solo", "namespace": "todo", "uid": "u1", "resourceVersion": "7",
                         "labels": {"app": "solo"}, "annotations": {"team": "a"}},
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "api", "image": "todo-api:1"}, {"name": "sidecar", "image": "envoy"}]},
            "status": {"phase": "Running"}
        });
        let agent = json!({"name": "api", "image": "kbridge/agent:dev"});
        let pod = agent_pod(&original, &agent, &record("s1")).unwrap();
        assert_eq!(pod["spec"]["containers"][0], agent);
        assert_eq!(pod["spec"]["containers"][1]["image"], "envoy");
        assert!(pod["metadata"].get("uid").is_none() && pod.get("status").is_none());
        assert_eq!(pod["metadata"]["annotations"]["team"], "a");
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(pod["metadata"]["annotations"].clone()).unwrap();
        assert_eq!(
            RestoreRecord::from_annotations(&annotations).unwrap(),
            Some(record("s1"))
        );
        let back = original_pod(&annotations).unwrap();
        assert_eq!(back, recreatable_pod(&original));
        assert_eq!(back["metadata"]["annotations"], json!({"team": "a"}));
        assert!(back["spec"].get("nodeName").is_none());
        assert_eq!(back["spec"]["containers"][0]["image"], "todo-api:1");
    }

    #[test]
    fn patch_puts_the_original_container_back() {
        let workload = json!({
            "metadata": {"name": "todo-api", "resourceVersion": "42", "annotations": record("s1").to_annotations()},
            "spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "image": "envoy"},
                {"name": "api", "image": "kbridge/agent:dev"}
            ]}}}
        });
        let p = restore_patch(&workload, &record("s1")).unwrap();
        assert_eq!(p["metadata"]["resourceVersion"], "42");
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION_SESSION],
            Value::Null
        );
        let c = p["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["image"], "envoy");
        assert_eq!(c[1]["image"], "todo-api:1");
        assert_eq!(
            restore_patch(&json!({"spec": {}}), &record("s1")),
            Err(RestoreError::NoTemplate)
        );
    }
}
