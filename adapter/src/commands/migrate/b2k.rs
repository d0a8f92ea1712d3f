//! What Bridge to Kubernetes (and before it "Local Process with Kubernetes" and Azure Dev
//! Spaces) wrote into a workspace: the task types of its VS Code extension, the compound
//! task it made when a configuration already had a `preLaunchTask`, and the placeholder
//! launch configuration that opened its wizard.

use serde_json::{Map, Value};

/// Task types that opened a connection (the extension's `taskDefinitions`).
pub const CONNECT_TASK_TYPES: [&str; 4] = [
    "bridge-to-kubernetes.resource",
    "bridge-to-kubernetes.service",
    "local-process-with-kubernetes.service",
    "dev-spaces.connect.service",
];

/// Labels of the tasks that ran a connect task and then the configuration's own
/// `preLaunchTask` (`dependsOn: [connect, original]`, `dependsOrder: sequence`).
pub const COMPOUND_LABELS: [&str; 3] = [
    "bridge-to-kubernetes.compound",
    "local-process-with-kubernetes.compound",
    "dev-spaces.connect.compound",
];

/// Launch configuration types that only opened the extension's configuration wizard.
pub const WIZARD_CONFIGURATION_TYPES: [&str; 3] = [
    "bridge-to-kubernetes.configuration",
    "local-process-with-kubernetes.configuration",
    "dev-spaces-connect-configuration",
];

/// VS Code task keys with no meaning once the task is gone.
const TASK_HOUSEKEEPING_KEYS: [&str; 10] = [
    "label",
    "type",
    "problemMatcher",
    "presentation",
    "group",
    "detail",
    "icon",
    "hide",
    "runOptions",
    "isBackground",
];

/// What a connect task bridged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `resourceType: service` (or the older `service` key).
    Service(String),
    /// `resourceType: pod`.
    Pod(String),
}

/// A key of a task that kbridge does not carry over as it is, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIssue {
    /// The task key.
    pub key: String,
    /// What happened to it and what the user should do.
    pub advice: String,
}

/// A connect task, read.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectTask {
    /// Its label, which `preLaunchTask` and `dependsOn` name.
    pub label: String,
    /// Its task type.
    pub task_type: String,
    /// The Service or Pod.
    pub resource: Resource,
    /// Local ports the program listens on, in the order of the container's ports.
    pub ports: Vec<u16>,
    /// The routing name (`isolateAs`), when isolated.
    pub isolate_as: Option<String>,
    /// `targetCluster`: a cluster name of the kubeconfig (not a context name).
    pub target_cluster: Option<String>,
    /// `targetNamespace`.
    pub target_namespace: Option<String>,
    /// `targetContainer`.
    pub target_container: Option<String>,
    /// `useKubernetesServiceEnvironmentVariables`.
    pub use_service_env_vars: bool,
    /// Tasks it ran first (its own `dependsOn`).
    pub depends_on: Vec<String>,
    /// Keys not carried over.
    pub issues: Vec<KeyIssue>,
}

/// A compound task: runs a connect task and the configuration's original `preLaunchTask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompoundTask {
    /// Its label.
    pub label: String,
    /// The labels it runs, in order.
    pub depends_on: Vec<String>,
}

/// A task of Bridge to Kubernetes.
#[derive(Debug, Clone, PartialEq)]
pub enum B2kTask {
    /// It opened the connection.
    Connect(Box<ConnectTask>),
    /// It ran the connection and another task.
    Compound(CompoundTask),
}

/// A Bridge to Kubernetes task that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A connect task without `label`.
    #[error("a `{task_type}` task has no `label`, so no configuration can name it")]
    NoLabel {
        /// Its type.
        task_type: String,
    },
    /// Neither `resource` nor `service`.
    #[error(
        "task `{label}` names no target: it needs `resource` and `resourceType`, or `service`"
    )]
    NoTarget {
        /// Its label.
        label: String,
    },
    /// A `resourceType` other than service or pod.
    #[error(
        "task `{label}` has `resourceType: {found}`; Bridge to Kubernetes knew `service` and `pod`"
    )]
    ResourceType {
        /// Its label.
        label: String,
        /// What it says.
        found: String,
    },
}

/// `label` of a task, if it is a string.
pub fn label(task: &Value) -> Option<&str> {
    task.get("label").and_then(Value::as_str)
}

/// Labels a task's `dependsOn` names (a string or a list).
pub fn depends_on(task: &Value) -> Vec<String> {
    match task.get("dependsOn") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads a tasks.json entry: `None` when it is not Bridge to Kubernetes'.
pub fn read_task(task: &Value) -> Option<Result<B2kTask, ShapeError>> {
    let object = task.as_object()?;
    let task_type = object.get("type").and_then(Value::as_str).unwrap_or("");
    if CONNECT_TASK_TYPES.contains(&task_type) {
        return Some(read_connect(object, task_type).map(|task| B2kTask::Connect(Box::new(task))));
    }
    let label = label(task)?;
    let compound = COMPOUND_LABELS.contains(&label) || task_type.ends_with(".compound");
    compound.then(|| {
        Ok(B2kTask::Compound(CompoundTask {
            label: label.to_string(),
            depends_on: depends_on(task),
        }))
    })
}

fn read_connect(task: &Map<String, Value>, task_type: &str) -> Result<ConnectTask, ShapeError> {
    let label = task
        .get("label")
        .and_then(Value::as_str)
        .ok_or_else(|| ShapeError::NoLabel {
            task_type: task_type.into(),
        })?
        .to_string();
    let mut issues = Vec::new();
    let text = |key: &str| {
        task.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let resource = read_resource(task, &label)?;
    let ports = read_ports(task.get("ports"), &mut issues);
    let use_service_env_vars = match task.get("useKubernetesServiceEnvironmentVariables") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            issues.push(KeyIssue {
                key: "useKubernetesServiceEnvironmentVariables".into(),
                advice: format!(
                    "`{other}` is not true or false; left out (kbridge's default is false)"
                ),
            });
            false
        }
    };
    for (key, value) in task {
        if let Some(advice) = unsupported_key(key, value) {
            issues.push(KeyIssue {
                key: key.clone(),
                advice,
            });
        }
    }
    Ok(ConnectTask {
        task_type: task_type.to_string(),
        resource,
        ports,
        isolate_as: text("isolateAs"),
        target_cluster: text("targetCluster"),
        target_namespace: text("targetNamespace"),
        target_container: text("targetContainer"),
        use_service_env_vars,
        depends_on: depends_on(&Value::Object(task.clone())),
        issues,
        label,
    })
}

/// `resource` + `resourceType`, or the older `service`.
fn read_resource(task: &Map<String, Value>, label: &str) -> Result<Resource, ShapeError> {
    let text = |key: &str| {
        task.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let kind = text("resourceType").map(str::to_ascii_lowercase);
    match (text("resource"), kind.as_deref(), text("service")) {
        (Some(name), Some("service"), _) => Ok(Resource::Service(name.into())),
        (Some(name), Some("pod"), _) => Ok(Resource::Pod(name.into())),
        (_, Some(other), None) if other != "service" && other != "pod" => {
            Err(ShapeError::ResourceType {
                label: label.into(),
                found: other.into(),
            })
        }
        (_, _, Some(service)) => Ok(Resource::Service(service.into())),
        (Some(name), None, None) => Ok(Resource::Service(name.into())),
        _ => Err(ShapeError::NoTarget {
            label: label.into(),
        }),
    }
}

/// `ports`: numbers; 0 (no port) is dropped, anything else that is not a port is listed.
fn read_ports(ports: Option<&Value>, issues: &mut Vec<KeyIssue>) -> Vec<u16> {
    let items = match ports {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            issues.push(KeyIssue {
                key: "ports".into(),
                advice: format!("`{other}` is not a list of ports; add `bridge.ports` by hand"),
            });
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        let port = item
            .as_u64()
            .or_else(|| item.as_str().and_then(|s| s.trim().parse().ok()));
        match port.map(u16::try_from) {
            Some(Ok(0)) => {}
            Some(Ok(port)) => out.push(port),
            _ => issues.push(KeyIssue {
                key: "ports".into(),
                advice: format!("`{item}` is not a port number; left out"),
            }),
        }
    }
    out
}

/// What to tell the user about a key kbridge does not translate, or None for the keys
/// it does and the task's own housekeeping.
fn unsupported_key(key: &str, value: &Value) -> Option<String> {
    const TRANSLATED: [&str; 12] = [
        "resource",
        "resourceType",
        "service",
        "ports",
        "isolateAs",
        "targetCluster",
        "targetNamespace",
        "targetContainer",
        "useKubernetesServiceEnvironmentVariables",
        "dependsOn",
        "dependsOrder",
        "options",
    ];
    if TRANSLATED.contains(&key) || TASK_HOUSEKEEPING_KEYS.contains(&key) {
        return None;
    }
    Some(match key {
        "useContainers" if value.as_bool() == Some(true) => {
            "running the service in a local container is not supported: kbridge runs your program on this machine under its debugger; the configuration is migrated without it".into()
        }
        "useContainers" => return None,
        _ => format!(
            "unknown key (value `{value}`), not carried over; see `kbridge schema launch` for the `bridge` keys and add its equivalent by hand if it matters"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connect(task: Value) -> ConnectTask {
        match read_task(&task) {
            Some(Ok(B2kTask::Connect(task))) => *task,
            other => panic!("not a connect task: {other:?}"),
        }
    }

    #[test]
    fn a_resource_task_as_the_extension_wrote_it() {
        let task = connect(json!({
            "label": "bridge-to-kubernetes.resource",
            "type": "bridge-to-kubernetes.resource",
            "resource": "todo-api",
            "resourceType": "service",
            "ports": [5000, 0],
            "targetCluster": "aks1",
            "targetNamespace": "todo",
            "useKubernetesServiceEnvironmentVariables": false,
            "isolateAs": "alice-1a2b",
            "targetContainer": "api"
        }));
        assert_eq!(task.resource, Resource::Service("todo-api".into()));
        assert_eq!(task.ports, [5000]);
        assert_eq!(task.isolate_as.as_deref(), Some("alice-1a2b"));
        assert_eq!(task.target_cluster.as_deref(), Some("aks1"));
        assert_eq!(task.target_namespace.as_deref(), Some("todo"));
        assert_eq!(task.target_container.as_deref(), Some("api"));
        assert!(task.issues.is_empty(), "{:?}", task.issues);
    }

    #[test]
    fn older_service_tasks_and_pods() {
        let task = connect(json!({
            "label": "dev-spaces.connect.service", "type": "dev-spaces.connect.service",
            "service": "web", "ports": ["8080"]
        }));
        assert_eq!(task.resource, Resource::Service("web".into()));
        assert_eq!(task.ports, [8080]);
        let pod = connect(json!({
            "label": "x", "type": "bridge-to-kubernetes.resource",
            "resource": "web-5d9f", "resourceType": "Pod", "ports": []
        }));
        assert_eq!(pod.resource, Resource::Pod("web-5d9f".into()));
    }

    #[test]
    fn unknown_and_unsupported_keys_are_listed() {
        let task = connect(json!({
            "label": "b", "type": "bridge-to-kubernetes.resource", "resource": "a",
            "resourceType": "service", "ports": [70000], "useContainers": true,
            "targetNamspace": "typo", "problemMatcher": []
        }));
        let keys: Vec<&str> = task.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["ports", "useContainers", "targetNamspace"]);
    }

    #[test]
    fn compounds_and_broken_tasks() {
        let compound = read_task(&json!({
            "label": "bridge-to-kubernetes.compound",
            "dependsOn": ["bridge-to-kubernetes.resource", "build"],
            "dependsOrder": "sequence"
        }));
        assert_eq!(
            compound,
            Some(Ok(B2kTask::Compound(CompoundTask {
                label: "bridge-to-kubernetes.compound".into(),
                depends_on: vec!["bridge-to-kubernetes.resource".into(), "build".into()],
            })))
        );
        assert!(read_task(&json!({"label": "build", "type": "shell"})).is_none());
        assert!(matches!(
            read_task(
                &json!({"label": "x", "type": "bridge-to-kubernetes.resource", "resourceType": "job", "resource": "j"})
            ),
            Some(Err(ShapeError::ResourceType { .. }))
        ));
        assert!(matches!(
            read_task(&json!({"type": "bridge-to-kubernetes.resource", "service": "s"})),
            Some(Err(ShapeError::NoLabel { .. }))
        ));
    }
}
