//! Taking a workload over and giving it back. The target container in the pod template
//! is replaced by the agent (same name, env, envFrom, volume mounts, ports, resources;
//! probes and lifecycle hooks swapped for the agent's health endpoint, unless
//! `enableFeatures` keeps them: [`KeptHandlers`], `docs/identity.md`), and the original
//! container is kept in `kbridge.dev/*` annotations on the workload, so anyone — this
//! session's guardian, `kbridge restore`, the in-cluster restorer — can put it back.

use super::connection::Cluster;
use super::errors::{is_conflict, is_not_found, ClusterError};
use super::target::{ResolvedTarget, WorkloadKind};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, ObjectFieldSelector, Probe,
    SecretKeySelector,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kbridge_protocol::contract::agent_pod;
use kbridge_protocol::contract::labels::ANNOTATION_ORIGINAL_POD;
use kbridge_protocol::contract::readiness::{LocalReadiness, READINESS_ENV, READINESS_PATH};
use kbridge_protocol::contract::restore::{
    agent_pod, original_pod, recreatable_pod, restore_patch, RestoreRecord,
};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The agent's health port, where kubelet probes go.
pub const AGENT_HEALTH_PORT: i32 = agent_pod::HEALTH_PORT as i32;
/// The agent's control port, which kbridge port-forwards to.
pub const AGENT_CONTROL_PORT: u16 = agent_pod::CONTROL_PORT;
/// How often the kubelet probes an agent's (and the isolation router's) `/healthz`. A pod
/// is Ready at the first successful probe, and the first probe races the agent's start:
/// when it comes before the agent listens, the pod turns Ready one period later, which
/// the whole setup waits for. One second, the least Kubernetes allows, bounds that loss;
/// a probe per second of a local HTTP handler costs nothing worth saving.
pub const AGENT_PROBE_PERIOD_SECONDS: i32 = 1;
/// How often a write that met a 409 Conflict is read and tried again.
const CONFLICT_RETRIES: usize = 5;
/// How long a deleted Pod may take to terminate before a swap or restore gives up.
const POD_GONE_TIMEOUT: Duration = Duration::from_secs(90);
pub use agent_pod::TOKEN_KEY;

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
    /// The container's own probes and hooks the agent keeps (`enableFeatures`).
    pub kept: KeptHandlers,
}

/// What of the original container's probes and lifecycle hooks the agent keeps, as
/// `enableFeatures: [Probes, LifecycleHooks]` ask and the agent image allows
/// (`session/cluster/setup/features.rs` decides; `docs/identity.md` says why).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeptHandlers {
    /// The readiness check the agent carries out against the local process, with the
    /// original probe (for its timing).
    pub readiness: Option<(LocalReadiness, Probe)>,
    /// The lifecycle hooks kept.
    pub lifecycle: Option<Lifecycle>,
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
    if let Some((check, _)) = &plan.kept.readiness {
        kbridge_env.push(EnvVar {
            name: READINESS_ENV.into(),
            value: serde_json::to_string(check).ok(),
            ..Default::default()
        });
    }
    env.append(&mut kbridge_env);
    let health = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(AGENT_HEALTH_PORT),
            ..Default::default()
        }),
        period_seconds: Some(AGENT_PROBE_PERIOD_SECONDS),
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
        // What the namespace's PodSecurity level accepted for the app is kept for the agent.
        security_context: original.security_context.clone(),
        readiness_probe: Some(readiness_probe(&plan.kept, &health)),
        liveness_probe: Some(health),
        lifecycle: plan.kept.lifecycle.clone(),
        ..Default::default()
    }
}

/// The agent's health, or — with a kept readiness check — the agent's path that carries it
/// out against the local process, at the original probe's pace.
fn readiness_probe(kept: &KeptHandlers, health: &Probe) -> Probe {
    let Some((_, original)) = &kept.readiness else {
        return health.clone();
    };
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(READINESS_PATH.into()),
            port: IntOrString::Int(AGENT_HEALTH_PORT),
            ..Default::default()
        }),
        initial_delay_seconds: original.initial_delay_seconds,
        period_seconds: original.period_seconds,
        timeout_seconds: original.timeout_seconds,
        success_threshold: original.success_threshold,
        failure_threshold: original.failure_threshold,
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
        .ok_or_else(|| ClusterError::InvalidTarget("the workload has no pod template".into()))?;
    let agent = serde_json::to_value(agent).map_err(ClusterError::encoding)?;
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
    let resource = kind.template_resource().ok_or_else(|| {
        ClusterError::InvalidTarget(format!(
            "a bare {} cannot be swapped in place yet",
            kind.name()
        ))
    })?;
    Ok(cluster.dynamic_api(&resource))
}

/// kbridge's own field manager on the workloads it changes, so `managedFields` tells
/// kbridge's changes from everyone else's (see `drift`).
pub const FIELD_MANAGER: &str = "kbridge";

fn field_manager() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// The Secret that holds a session's token (and, for a bare Pod, the original Pod).
pub fn session_secret_name(session: &str) -> String {
    format!("kbridge-{}", session.replace(['_', '.'], "-"))
}

/// The key of the original bare Pod in the session's Secret: between deleting the Pod and
/// creating it again, the Pod's own annotations do not exist.
pub const ORIGINAL_POD_KEY: &str = "original-pod";

/// Replaces the target container by the agent; returns the record stored.
pub async fn swap(
    cluster: &Cluster,
    target: &ResolvedTarget,
    plan: &SwapPlan,
) -> Result<RestoreRecord, ClusterError> {
    if target.kind == WorkloadKind::Pod {
        return swap_bare_pod(cluster, target, plan).await;
    }
    let api = api(cluster, target.kind)?;
    let original = serde_json::to_value(&target.container).map_err(ClusterError::encoding)?;
    let agent = agent_container(&target.container, plan);
    let record = RestoreRecord {
        session: plan.session.clone(),
        owner: plan.owner.clone(),
        started: k8s_openapi::jiff::Timestamp::now().to_string(),
        original_container: original,
        agent_container: Some(serde_json::to_value(&agent).map_err(ClusterError::encoding)?),
    };
    // Controllers update the workload's status all the time; a 409 only means "read it
    // again", as long as the template itself is what we resolved.
    for _ in 0..CONFLICT_RETRIES {
        let workload = api
            .get(&target.name)
            .await
            .map_err(|e| cluster.api_error(e, "get", target.kind.resource()))?;
        let annotations = workload.metadata.annotations.clone().unwrap_or_default();
        if let Ok(Some(held)) = RestoreRecord::from_annotations(&annotations) {
            return Err(ClusterError::Conflict(format!(
                "{} is already bridged by {} (session {}, since {}); wait for it to end, or run `kbridge restore {}` if that session is gone",
                target.workload(),
                held.owner,
                held.session,
                held.started,
                target.workload()
            )));
        }
        let value = serde_json::to_value(&workload).map_err(ClusterError::encoding)?;
        let patch = swap_patch(&value, &agent, &record)?;
        match api
            .patch(&target.name, &field_manager(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(record),
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(cluster.api_error(error, "patch", target.kind.resource())),
        }
    }
    Err(ClusterError::Conflict(format!(
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
    if kind == WorkloadKind::Pod {
        return restore_bare_pod(cluster, name, session).await;
    }
    let api = api(cluster, kind)?;
    for _ in 0..CONFLICT_RETRIES {
        let Some(workload) = api
            .get_opt(name)
            .await
            .map_err(|e| cluster.api_error(e, "get", kind.resource()))?
        else {
            return Ok(RestoreOutcome::NothingToDo(format!(
                "{}/{name} no longer exists",
                kind.name()
            )));
        };
        let annotations = workload.metadata.annotations.clone().unwrap_or_default();
        let record = RestoreRecord::from_annotations(&annotations)
            .map_err(|e| ClusterError::BadRecord(format!("{}/{name}: {e}", kind.name())))?;
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
        let value = serde_json::to_value(&workload).map_err(ClusterError::encoding)?;
        let patch =
            restore_patch(&value, &record).map_err(|e| ClusterError::BadRecord(e.to_string()))?;
        match api
            .patch(name, &field_manager(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                return Ok(RestoreOutcome::Restored {
                    session: record.session,
                })
            }
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(cluster.api_error(error, "patch", kind.resource())),
        }
    }
    Err(ClusterError::Conflict(format!(
        "{}/{name} kept changing while kbridge restored it; run `kbridge restore` again",
        kind.name()
    )))
}

fn record_of(
    annotations: &BTreeMap<String, String>,
    what: &str,
) -> Result<Option<RestoreRecord>, ClusterError> {
    RestoreRecord::from_annotations(annotations)
        .map_err(|e| ClusterError::BadRecord(format!("{what}: {e}")))
}

/// A bare Pod has no template to patch: it is deleted and created again with the agent,
/// the original kept in an annotation of the new Pod and in the session's Secret.
async fn swap_bare_pod(
    cluster: &Cluster,
    target: &ResolvedTarget,
    plan: &SwapPlan,
) -> Result<RestoreRecord, ClusterError> {
    let pods = cluster.api::<Pod>();
    let name = &target.name;
    let pod = pods
        .get(name)
        .await
        .map_err(|e| cluster.api_error(e, "get", "pods"))?;
    if let Some(held) = record_of(
        &pod.metadata.annotations.clone().unwrap_or_default(),
        &format!("pod/{name}"),
    )? {
        return Err(ClusterError::Conflict(format!(
            "pod/{name} is already bridged by {} (session {}, since {}); wait for it to end, or run `kbridge restore pod/{name}` if that session is gone",
            held.owner, held.session, held.started
        )));
    }
    let original = serde_json::to_value(&pod).map_err(ClusterError::encoding)?;
    let record = RestoreRecord {
        session: plan.session.clone(),
        owner: plan.owner.clone(),
        started: k8s_openapi::jiff::Timestamp::now().to_string(),
        original_container: serde_json::to_value(&target.container)
            .map_err(ClusterError::encoding)?,
        // A bare Pod is recreated from the stored original, not merged.
        agent_container: None,
    };
    let agent = serde_json::to_value(agent_container(&target.container, plan))
        .map_err(ClusterError::encoding)?;
    let replacement = agent_pod(&original, &agent, &record)
        .map_err(|e| ClusterError::InvalidTarget(format!("pod/{name}: {e}")))?;
    let replacement: Pod = serde_json::from_value(replacement).map_err(ClusterError::encoding)?;
    let keep = recreatable_pod(&original);
    let secrets = cluster.api::<Secret>();
    let stored = json!({"stringData": {ORIGINAL_POD_KEY: keep.to_string()}});
    secrets
        .patch(
            &plan.token_secret,
            &PatchParams::default(),
            &Patch::Merge(&stored),
        )
        .await
        .map_err(|e| cluster.api_error(e, "patch", "secrets"))?;
    delete_pod_and_wait(cluster, &pods, name, pod.metadata.uid.clone()).await?;
    if let Err(error) = pods.create(&PostParams::default(), &replacement).await {
        // Put the original back at once rather than leave the service without its pod.
        let original: Pod = serde_json::from_value(keep).map_err(ClusterError::encoding)?;
        let _ = pods.create(&PostParams::default(), &original).await;
        return Err(cluster.api_error(error, "create", "pods"));
    }
    Ok(record)
}

/// Deletes a Pod (only the one with `uid`) and waits until its name is free again.
async fn delete_pod_and_wait(
    cluster: &Cluster,
    pods: &Api<Pod>,
    name: &str,
    uid: Option<String>,
) -> Result<(), ClusterError> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(name, &params).await {
        Ok(_) => {}
        Err(error) if is_not_found(&error) => return Ok(()),
        Err(error) => return Err(cluster.api_error(error, "delete", "pods")),
    }
    let deadline = tokio::time::Instant::now() + POD_GONE_TIMEOUT;
    while pods
        .get_opt(name)
        .await
        .map_err(|e| cluster.api_error(e, "get", "pods"))?
        .is_some()
    {
        if tokio::time::Instant::now() > deadline {
            return Err(ClusterError::Timeout(format!(
                "pod/{name} is still terminating after {}s; check `kubectl describe pod {name}` (a finalizer?)",
                POD_GONE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Puts a bare Pod back: the agent Pod deleted, the original created again — from the agent
/// Pod's annotation or, when a crash left no Pod at all, from the session's Secret.
async fn restore_bare_pod(
    cluster: &Cluster,
    name: &str,
    session: Option<&str>,
) -> Result<RestoreOutcome, ClusterError> {
    let pods = cluster.api::<Pod>();
    let current = pods
        .get_opt(name)
        .await
        .map_err(|e| cluster.api_error(e, "get", "pods"))?;
    let (original, held_by) = match current {
        Some(pod) => {
            let annotations = pod.metadata.annotations.clone().unwrap_or_default();
            let Some(record) = record_of(&annotations, &format!("pod/{name}"))? else {
                return Ok(RestoreOutcome::NothingToDo(format!(
                    "pod/{name} is not bridged"
                )));
            };
            if session.is_some_and(|s| s != record.session) {
                return Ok(RestoreOutcome::NothingToDo(format!(
                    "pod/{name} is held by another session ({})",
                    record.session
                )));
            }
            let original = original_pod(&annotations)
                .map_err(|e| ClusterError::BadRecord(format!("pod/{name}: {e}")))?;
            delete_pod_and_wait(cluster, &pods, name, pod.metadata.uid.clone()).await?;
            (original, record.session)
        }
        None => {
            let Some(session) = session else {
                return Ok(RestoreOutcome::NothingToDo(format!(
                    "pod/{name} no longer exists"
                )));
            };
            let secrets = cluster.api::<Secret>();
            let stored = secrets
                .get_opt(&session_secret_name(session))
                .await
                .map_err(|e| cluster.api_error(e, "get", "secrets"))?
                .and_then(|s| s.data?.get(ORIGINAL_POD_KEY).cloned())
                .and_then(|raw| serde_json::from_slice::<Value>(&raw.0).ok());
            match stored {
                Some(original) => (original, session.to_string()),
                None => {
                    return Ok(RestoreOutcome::NothingToDo(format!(
                        "pod/{name} no longer exists"
                    )))
                }
            }
        }
    };
    let original: Pod = serde_json::from_value(original)
        .map_err(|e| ClusterError::BadRecord(format!("the stored pod/{name} is not a Pod: {e}")))?;
    cluster.create_or_keep(&original).await?;
    Ok(RestoreOutcome::Restored { session: held_by })
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
            .map_err(|e| cluster.api_error(e, "list", kind.resource()))?;
        for object in list.items {
            // A Deployment's ReplicaSets carry copies of its annotations (the Deployment
            // controller copies them): only the Deployment itself is bridged.
            let controlled = object
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true));
            if controlled {
                continue;
            }
            let annotations = object.metadata.annotations.clone().unwrap_or_default();
            if let Ok(Some(record)) = RestoreRecord::from_annotations(&annotations) {
                found.push((kind, object.metadata.name.unwrap_or_default(), record));
            }
        }
    }
    let pods = cluster.api::<Pod>();
    for pod in pods
        .list(&ListParams::default())
        .await
        .map_err(|e| cluster.api_error(e, "list", "pods"))?
        .items
    {
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        // Pods of a bridged template carry no record; only a recreated bare Pod does.
        if !annotations.contains_key(ANNOTATION_ORIGINAL_POD) {
            continue;
        }
        if let Ok(Some(record)) = RestoreRecord::from_annotations(&annotations) {
            found.push((
                WorkloadKind::Pod,
                pod.metadata.name.unwrap_or_default(),
                record,
            ));
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
            kept: KeptHandlers::default(),
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
    fn kept_readiness_and_hooks_reach_the_agent_container() {
        let original = original();
        let check = LocalReadiness {
            port: 8080,
            http: None,
        };
        let probe = Probe {
            period_seconds: Some(3),
            failure_threshold: Some(2),
            ..Default::default()
        };
        let hooks = Lifecycle {
            pre_stop: Some(k8s_openapi::api::core::v1::LifecycleHandler {
                sleep: Some(k8s_openapi::api::core::v1::SleepAction { seconds: 5 }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let plan = SwapPlan {
            kept: KeptHandlers {
                readiness: Some((check.clone(), probe)),
                lifecycle: Some(hooks.clone()),
            },
            ..plan()
        };
        let agent = agent_container(&original, &plan);
        let readiness = agent.readiness_probe.expect("readiness");
        let get = readiness.http_get.expect("http");
        assert_eq!(get.path.as_deref(), Some(READINESS_PATH));
        assert_eq!(get.port, IntOrString::Int(AGENT_HEALTH_PORT));
        assert_eq!(
            (readiness.period_seconds, readiness.failure_threshold),
            (Some(3), Some(2))
        );
        let liveness = agent.liveness_probe.expect("liveness");
        assert_eq!(
            liveness.http_get.and_then(|g| g.path).as_deref(),
            Some("/healthz"),
            "liveness stays the agent's own"
        );
        assert_eq!(agent.lifecycle, Some(hooks));
        let env = agent.env.expect("env");
        let value = env
            .iter()
            .find(|e| e.name == READINESS_ENV)
            .and_then(|e| e.value.clone())
            .expect("readiness check for the agent");
        assert_eq!(
            serde_json::from_str::<LocalReadiness>(&value).expect("json"),
            check
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
            agent_container: None,
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
