//! Taking a workload over and giving it back. The target container in the pod template
//! is replaced by the agent (same name, env, envFrom, volume mounts, ports, resources;
//! probes and lifecycle hooks swapped for the agent's health endpoint), and the original
//! container is kept in `kbridge.dev/*` annotations on the workload, so anyone — this
//! session's guardian, `kbridge restore`, the in-cluster restorer — can put it back.

use super::connection::Cluster;
use super::errors::{ClusterError, Request};
use super::target::{ResolvedTarget, WorkloadKind};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kbridge_agent::restore::{restore_patch, RestoreRecord};
use kbridge_agent::restore_watch::workload_resource;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

/// The agent's health port (its default), where kubelet probes go.
pub const AGENT_HEALTH_PORT: i32 = 7312;
/// The agent's control port, which kbridge port-forwards to.
pub const AGENT_CONTROL_PORT: u16 = 7311;
/// How often a write that met a 409 Conflict is read and tried again.
const CONFLICT_RETRIES: usize = 5;
/// The key of the session token in the session's Secret.
pub const TOKEN_KEY: &str = "token";

/// What the swap needs beyond the target.
#[derive(Debug, Clone)]
pub struct SwapPlan {
    /// Session id.
    pub session: String,
    /// `user@host`.
    pub owner: String,
    /// The agent image.
    pub agent_image: String,
    /// Name of the Secret holding the session token.
    pub token_secret: String,
    /// Seconds without kbridge before the cluster restores by itself.
    pub idle_restore_secs: u64,
}

/// The agent container that stands in for `original`.
pub fn agent_container(original: &Container, plan: &SwapPlan) -> Container {
    let mut env = original.env.clone().unwrap_or_default();
    let keep: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    let mounts: Vec<Value> = original
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| json!({"name": m.name, "path": m.mount_path, "readOnly": m.read_only.unwrap_or(false)}))
        .collect();
    let ports: Vec<String> = original
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .map(|p| p.container_port.to_string())
        .collect();
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut kbridge_env = vec![
        EnvVar {
            name: "KBRIDGE_ENV_KEEP".into(),
            value: Some(keep.join(",")),
            ..Default::default()
        },
        EnvVar {
            name: "KBRIDGE_AGENT_PORTS".into(),
            value: Some(ports.join(",")),
            ..Default::default()
        },
        EnvVar {
            name: "KBRIDGE_AGENT_MOUNTS".into(),
            value: Some(Value::Array(mounts).to_string()),
            ..Default::default()
        },
        EnvVar {
            name: "KBRIDGE_CONTAINER_NAME".into(),
            value: Some(original.name.clone()),
            ..Default::default()
        },
        EnvVar {
            name: "KBRIDGE_IDLE_RESTORE_SECS".into(),
            value: Some(plan.idle_restore_secs.to_string()),
            ..Default::default()
        },
        EnvVar {
            name: "KBRIDGE_POD_NAME".into(),
            value_from: Some(field("metadata.name")),
            ..Default::default()
        },
        EnvVar {
            name: "KBRIDGE_POD_NAMESPACE".into(),
            value_from: Some(field("metadata.namespace")),
            ..Default::default()
        },
        EnvVar {
            name: "KBRIDGE_SESSION_TOKEN".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: plan.token_secret.clone(),
                    key: TOKEN_KEY.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    env.append(&mut kbridge_env);
    let health = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(AGENT_HEALTH_PORT),
            ..Default::default()
        }),
        period_seconds: Some(2),
        ..Default::default()
    };
    Container {
        name: original.name.clone(),
        image: Some(plan.agent_image.clone()),
        env: Some(env),
        env_from: original.env_from.clone(),
        volume_mounts: original.volume_mounts.clone(),
        ports: original.ports.clone(),
        resources: original.resources.clone(),
        readiness_probe: Some(health.clone()),
        liveness_probe: Some(health),
        ..Default::default()
    }
}

/// The merge patch that puts the agent in place of `container` and stores the record.
/// Carrying the `resourceVersion` read makes the API refuse it (409) if the workload
/// changed meanwhile, instead of overwriting someone's edit.
pub fn swap_patch(
    workload: &Value,
    agent: &Container,
    record: &RestoreRecord,
) -> Result<Value, ClusterError> {
    let containers = workload
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .ok_or_else(|| ClusterError::Unsupported("the workload has no pod template".into()))?;
    let agent =
        serde_json::to_value(agent).map_err(|e| ClusterError::Unsupported(e.to_string()))?;
    let replaced: Vec<Value> = containers
        .iter()
        .map(|c| {
            if c.get("name") == agent.get("name") {
                agent.clone()
            } else {
                c.clone()
            }
        })
        .collect();
    let mut metadata = json!({"annotations": record.to_annotations()});
    if let Some(version) = workload.pointer("/metadata/resourceVersion") {
        metadata["resourceVersion"] = version.clone();
    }
    Ok(json!({"metadata": metadata, "spec": {"template": {"spec": {"containers": replaced}}}}))
}

fn api(cluster: &Cluster, kind: WorkloadKind) -> Result<Api<DynamicObject>, ClusterError> {
    let resource = workload_resource(kind.name()).ok_or_else(|| {
        ClusterError::Unsupported(format!(
            "a bare {} cannot be swapped in place yet",
            kind.name()
        ))
    })?;
    Ok(Api::namespaced_with(
        cluster.client.clone(),
        &cluster.namespace,
        &resource,
    ))
}

fn kube_error(cluster: &Cluster, error: kube::Error, verb: &'static str) -> ClusterError {
    ClusterError::from_kube(
        error,
        Request {
            verb,
            resource: "workloads",
        },
        &cluster.namespace,
        &cluster.url,
    )
}

/// Replaces the target container by the agent; returns the record stored.
pub async fn swap(
    cluster: &Cluster,
    target: &ResolvedTarget,
    plan: &SwapPlan,
) -> Result<RestoreRecord, ClusterError> {
    let api = api(cluster, target.kind)?;
    let original = serde_json::to_value(&target.container)
        .map_err(|e| ClusterError::Unsupported(e.to_string()))?;
    let record = RestoreRecord {
        session: plan.session.clone(),
        owner: plan.owner.clone(),
        started: k8s_openapi::jiff::Timestamp::now().to_string(),
        original_container: original,
    };
    let agent = agent_container(&target.container, plan);
    // Controllers update the workload's status all the time; a 409 only means "read it
    // again", as long as the template itself is what we resolved.
    for _ in 0..CONFLICT_RETRIES {
        let workload = api
            .get(&target.name)
            .await
            .map_err(|e| kube_error(cluster, e, "get"))?;
        let annotations = workload.metadata.annotations.clone().unwrap_or_default();
        if let Ok(Some(held)) = RestoreRecord::from_annotations(&annotations) {
            return Err(ClusterError::Unsupported(format!(
                "{} is already bridged by {} (session {}, since {}); wait for it to end, or run `kbridge restore {}` if that session is gone",
                target.workload(),
                held.owner,
                held.session,
                held.started,
                target.workload()
            )));
        }
        let value = serde_json::to_value(&workload)
            .map_err(|e| ClusterError::Unsupported(e.to_string()))?;
        let patch = swap_patch(&value, &agent, &record)?;
        match api
            .patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(record),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(kube_error(cluster, error, "patch")),
        }
    }
    Err(ClusterError::Unsupported(format!(
        "{} kept changing while kbridge tried to update it; try again",
        target.workload()
    )))
}

/// What [`restore`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The original container is back.
    Restored {
        /// The session that had it.
        session: String,
    },
    /// Nothing to do: not bridged, bridged by another session, or gone.
    NothingToDo(String),
}

/// Puts a workload back from its annotations; with `session`, only if that session
/// holds it. Retries when someone changes the workload in between.
pub async fn restore(
    cluster: &Cluster,
    kind: WorkloadKind,
    name: &str,
    session: Option<&str>,
) -> Result<RestoreOutcome, ClusterError> {
    let api = api(cluster, kind)?;
    for _ in 0..CONFLICT_RETRIES {
        let Some(workload) = api
            .get_opt(name)
            .await
            .map_err(|e| kube_error(cluster, e, "get"))?
        else {
            return Ok(RestoreOutcome::NothingToDo(format!(
                "{}/{name} no longer exists",
                kind.name()
            )));
        };
        let annotations = workload.metadata.annotations.clone().unwrap_or_default();
        let record = RestoreRecord::from_annotations(&annotations)
            .map_err(|e| ClusterError::Unsupported(format!("{}/{name}: {e}", kind.name())))?;
        let Some(record) = record else {
            return Ok(RestoreOutcome::NothingToDo(format!(
                "{}/{name} is not bridged",
                kind.name()
            )));
        };
        if session.is_some_and(|s| s != record.session) {
            return Ok(RestoreOutcome::NothingToDo(format!(
                "{}/{name} is held by another session ({})",
                kind.name(),
                record.session
            )));
        }
        let value = serde_json::to_value(&workload)
            .map_err(|e| ClusterError::Unsupported(e.to_string()))?;
        let patch =
            restore_patch(&value, &record).map_err(|e| ClusterError::Unsupported(e.to_string()))?;
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                return Ok(RestoreOutcome::Restored {
                    session: record.session,
                })
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(kube_error(cluster, error, "patch")),
        }
    }
    Err(ClusterError::Unsupported(format!(
        "{}/{name} kept changing while kbridge restored it; run `kbridge restore` again",
        kind.name()
    )))
}

/// Workloads in the cluster's namespace that a session holds: `(kind, name, record)`.
pub async fn bridged(
    cluster: &Cluster,
) -> Result<Vec<(WorkloadKind, String, RestoreRecord)>, ClusterError> {
    let mut found = Vec::new();
    for kind in [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::ReplicaSet,
    ] {
        let list = api(cluster, kind)?
            .list(&ListParams::default())
            .await
            .map_err(|e| kube_error(cluster, e, "list"))?;
        for object in list.items {
            let annotations = object.metadata.annotations.clone().unwrap_or_default();
            if let Ok(Some(record)) = RestoreRecord::from_annotations(&annotations) {
                found.push((kind, object.metadata.name.unwrap_or_default(), record));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, Lifecycle, VolumeMount};

    fn plan() -> SwapPlan {
        SwapPlan {
            session: "s1".into(),
            owner: "alice@laptop".into(),
            agent_image: "kbridge/agent:dev".into(),
            token_secret: "kbridge-s1".into(),
            idle_restore_secs: 60,
        }
    }

    fn original() -> Container {
        Container {
            name: "api".into(),
            image: Some("todo-api:1".into()),
            command: Some(vec!["/app".into()]),
            env: Some(vec![EnvVar {
                name: "LOG_LEVEL".into(),
                value: Some("info".into()),
                ..Default::default()
            }]),
            ports: Some(vec![ContainerPort {
                container_port: 8080,
                name: Some("http".into()),
                ..Default::default()
            }]),
            volume_mounts: Some(vec![VolumeMount {
                name: "config".into(),
                mount_path: "/etc/todo".into(),
                ..Default::default()
            }]),
            readiness_probe: Some(Probe {
                period_seconds: Some(1),
                ..Default::default()
            }),
            lifecycle: Some(Lifecycle::default()),
            ..Default::default()
        }
    }

    #[test]
    fn agent_keeps_what_the_app_would_see_and_drops_its_probes() {
        let agent = agent_container(&original(), &plan());
        assert_eq!(agent.name, "api");
        assert_eq!(agent.image.as_deref(), Some("kbridge/agent:dev"));
        assert_eq!(agent.command, None, "the agent image's own entrypoint runs");
        assert_eq!(agent.volume_mounts, original().volume_mounts);
        assert_eq!(agent.ports, original().ports);
        assert!(agent.lifecycle.is_none());
        let probe = agent.readiness_probe.expect("agent health probe");
        assert_eq!(
            probe.http_get.expect("http").port,
            IntOrString::Int(AGENT_HEALTH_PORT)
        );
        let env = agent.env.expect("env");
        let value = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(value("LOG_LEVEL").as_deref(), Some("info"));
        assert_eq!(value("KBRIDGE_ENV_KEEP").as_deref(), Some("LOG_LEVEL"));
        assert_eq!(value("KBRIDGE_AGENT_PORTS").as_deref(), Some("8080"));
        let token = env
            .iter()
            .find(|e| e.name == "KBRIDGE_SESSION_TOKEN")
            .expect("token");
        assert_eq!(
            token
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|s| s.name.as_str()),
            Some("kbridge-s1")
        );
    }

    #[test]
    fn swap_then_restore_patches_round_trip() {
        let workload = json!({
            "metadata": {"name": "todo-api", "resourceVersion": "7"},
            "spec": {"template": {"spec": {"containers": [
                serde_json::to_value(original()).expect("json"),
                {"name": "sidecar", "image": "envoy"}
            ]}}}
        });
        let record = RestoreRecord {
            session: "s1".into(),
            owner: "alice@laptop".into(),
            started: "2026-12-01T00:00:00Z".into(),
            original_container: serde_json::to_value(original()).expect("json"),
        };
        let patch =
            swap_patch(&workload, &agent_container(&original(), &plan()), &record).expect("swap");
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        let containers = patch["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers");
        assert_eq!(containers[0]["image"], "kbridge/agent:dev");
        assert_eq!(
            containers[1]["name"], "sidecar",
            "sidecars stay as they are"
        );
        let mut swapped = workload.clone();
        swapped["spec"] = patch["spec"].clone();
        let back = restore_patch(&swapped, &record).expect("restore");
        assert_eq!(
            back["spec"]["template"]["spec"]["containers"],
            workload["spec"]["template"]["spec"]["containers"]
        );
    }
}
