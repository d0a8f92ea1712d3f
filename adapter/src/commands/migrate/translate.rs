//! From a Bridge to Kubernetes connect task and the launch configuration that ran it to
//! the pieces of a `"type": "bridge"` configuration: the `debugger` preset for the
//! configuration's own `type`, and the `bridge` block.

use super::b2k::{ConnectTask, KeyIssue, Resource};
use kbridge_config::{IsolateAs, Preset};
use serde_json::{json, Map, Value};

/// The kbridge preset that runs the debugger of a launch configuration `type`, or what
/// to tell the user when there is none.
pub fn preset_for(debug_type: &str) -> Result<Preset, String> {
    Ok(match debug_type {
        "python" | "debugpy" => Preset::Debugpy,
        "node" | "pwa-node" | "node2" => Preset::JsDebug,
        "coreclr" => Preset::Netcoredbg,
        "go" => Preset::Dlv,
        "lldb" => Preset::Codelldb,
        "lldb-dap" | "lldb-vscode" => Preset::LldbDap,
        "cppdbg" | "cppvsdbg" => {
            return Err(format!(
                "`{debug_type}` (Microsoft's C/C++ debugger) has no kbridge preset: change `type` to `bridge` and add `\"debugger\": \"lldb-dap\"` (lldb-dap takes `program`, `args`, `cwd`; check the other keys)"
            ))
        }
        "docker" => {
            return Err(
                "a `docker` configuration debugs inside a local container, which kbridge does not do: make a configuration that runs the program on this machine, then run `kbridge migrate` again".into(),
            )
        }
        other => {
            return Err(format!(
                "no kbridge preset runs the `{other}` debugger: change `type` to `bridge` and add `\"debugger\": {{\"command\": \"<its DAP adapter>\", \"args\": [...], \"type\": \"{other}\"}}` (see `kbridge schema launch`)"
            ))
        }
    })
}

/// A notice about a key of the launch configuration the user should look at.
pub fn launch_key_notes(config: &Value, preset: Preset) -> Vec<KeyIssue> {
    let mut notes = Vec::new();
    if preset == Preset::Dlv && config.get("mode").and_then(Value::as_str) == Some("auto") {
        notes.push(KeyIssue {
            key: "mode".into(),
            advice: "`auto` is resolved by VS Code's Go extension, not by Delve: set `debug` (a package), `exec` (a binary) or `test`".into(),
        });
    }
    notes
}

/// A kubeconfig context with the cluster it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeContext {
    /// The context's name (what `bridge.context` takes).
    pub name: String,
    /// The cluster's name (what Bridge to Kubernetes' `targetCluster` held).
    pub cluster: String,
}

/// The contexts of the user's kubeconfig (`$KUBECONFIG`, else `~/.kube/config`); empty
/// when there is none.
pub fn kube_contexts() -> Vec<KubeContext> {
    let Ok(config) = kube::config::Kubeconfig::read() else {
        return Vec::new();
    };
    config
        .contexts
        .into_iter()
        .filter_map(|named| {
            Some(KubeContext {
                cluster: named.context?.cluster,
                name: named.name,
            })
        })
        .collect()
}

/// What the `bridge` block is built from besides the task.
#[derive(Debug, Clone, Copy)]
pub struct Surroundings<'a> {
    /// The kubeconfig's contexts.
    pub contexts: &'a [KubeContext],
    /// `bridge.config` when the workspace folder has a `KubernetesLocalProcessConfig.yaml`.
    pub config_file: Option<&'a str>,
}

/// The `bridge` block for `task`, and what the user should check.
pub fn bridge_block(
    task: &ConnectTask,
    around: Surroundings<'_>,
) -> (Map<String, Value>, Vec<KeyIssue>) {
    let mut block = Map::new();
    let mut issues = task.issues.clone();
    if let Some(cluster) = &task.target_cluster {
        let (context, issue) = context_for(cluster, around.contexts);
        block.insert("context".into(), json!(context));
        issues.extend(issue);
    }
    if let Some(namespace) = &task.target_namespace {
        block.insert("namespace".into(), json!(namespace));
    }
    match &task.resource {
        Resource::Service(name) => block.insert("service".into(), json!(name)),
        Resource::Pod(name) => block.insert("pod".into(), json!(name)),
    };
    if let Some(container) = &task.target_container {
        block.insert("container".into(), json!(container));
    }
    if !task.ports.is_empty() {
        block.insert("ports".into(), json!(task.ports));
    }
    if task.ports.len() > 1 {
        issues.push(KeyIssue {
            key: "ports".into(),
            advice: format!(
                "Bridge to Kubernetes mapped {:?} to the container's ports in order; kbridge needs each pairing when the container has several ports: write `{{\"remote\": <container port>, \"local\": <port>}}` entries (`kbridge targets` lists the container ports)",
                task.ports
            ),
        });
    }
    if let Some(name) = &task.isolate_as {
        let (value, issue) = routing_name(name);
        block.insert("isolateAs".into(), value);
        issues.extend(issue);
    }
    if task.use_service_env_vars {
        block.insert(
            "useKubernetesServiceEnvironmentVariables".into(),
            json!(true),
        );
    }
    if let Some(path) = around.config_file {
        block.insert("config".into(), json!(path));
    }
    (block, issues)
}

/// `targetCluster` is a cluster name; `bridge.context` wants a context using it.
fn context_for(cluster: &str, contexts: &[KubeContext]) -> (String, Option<KeyIssue>) {
    if contexts.iter().any(|c| c.name == cluster) {
        return (cluster.to_string(), None);
    }
    let using: Vec<&KubeContext> = contexts.iter().filter(|c| c.cluster == cluster).collect();
    match using.as_slice() {
        [only] => (only.name.clone(), None),
        [] => (
            cluster.to_string(),
            Some(KeyIssue {
                key: "targetCluster".into(),
                advice: format!(
                    "no context of your kubeconfig uses cluster `{cluster}`: `bridge.context` is set to `{cluster}`; change it to the context's name (`kubectl config get-contexts`)"
                ),
            }),
        ),
        several => (
            several[0].name.clone(),
            Some(KeyIssue {
                key: "targetCluster".into(),
                advice: format!(
                    "contexts {} all use cluster `{cluster}`: `bridge.context` is set to `{}`; pick the one you mean",
                    several.iter().map(|c| format!("`{}`", c.name)).collect::<Vec<_>>().join(", "),
                    several[0].name
                ),
            }),
        ),
    }
}

/// `isolateAs` as kbridge takes it: Bridge to Kubernetes allowed names that are not DNS
/// labels; those are turned into one, and the user told the new name.
fn routing_name(name: &str) -> (Value, Option<KeyIssue>) {
    if serde_json::from_value::<IsolateAs>(json!(name)).is_ok() {
        return (json!(name), None);
    }
    let mut label: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    label.truncate(40);
    let label = label.trim_matches('-').to_string();
    if label.is_empty() {
        return (
            json!(true),
            Some(KeyIssue {
                key: "isolateAs".into(),
                advice: format!("`{name}` cannot be a routing name: set to `true` (kbridge picks `<user>-<4 hex>` and shows it)"),
            }),
        );
    }
    let advice = format!(
        "`{name}` is not a DNS label: the routing name is now `{label}` (requests carry `kubernetes-route-as: {label}`, or a host starting with `{label}.`)"
    );
    (
        json!(label),
        Some(KeyIssue {
            key: "isolateAs".into(),
            advice,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(resource: Resource) -> ConnectTask {
        ConnectTask {
            label: "bridge-to-kubernetes.resource".into(),
            task_type: "bridge-to-kubernetes.resource".into(),
            resource,
            ports: vec![5000],
            isolate_as: None,
            target_cluster: None,
            target_namespace: Some("todo".into()),
            target_container: None,
            use_service_env_vars: false,
            depends_on: Vec::new(),
            issues: Vec::new(),
        }
    }

    const NONE: Surroundings<'static> = Surroundings {
        contexts: &[],
        config_file: None,
    };

    #[test]
    fn debug_types_map_to_presets() {
        assert_eq!(preset_for("python"), Ok(Preset::Debugpy));
        assert_eq!(preset_for("debugpy"), Ok(Preset::Debugpy));
        assert_eq!(preset_for("node"), Ok(Preset::JsDebug));
        assert_eq!(preset_for("pwa-node"), Ok(Preset::JsDebug));
        assert_eq!(preset_for("coreclr"), Ok(Preset::Netcoredbg));
        assert_eq!(preset_for("go"), Ok(Preset::Dlv));
        assert_eq!(preset_for("lldb"), Ok(Preset::Codelldb));
        assert!(preset_for("java")
            .unwrap_err()
            .contains("\"type\": \"java\""));
        assert!(preset_for("cppdbg").unwrap_err().contains("lldb-dap"));
    }

    #[test]
    fn a_service_block_in_kbridge_keys() {
        let mut task = task(Resource::Service("todo-api".into()));
        task.isolate_as = Some("alice-1a2b".into());
        task.use_service_env_vars = true;
        let around = Surroundings {
            config_file: Some("${workspaceFolder}/KubernetesLocalProcessConfig.yaml"),
            ..NONE
        };
        let (block, issues) = bridge_block(&task, around);
        assert_eq!(
            Value::Object(block),
            json!({
                "namespace": "todo", "service": "todo-api", "ports": [5000],
                "isolateAs": "alice-1a2b", "useKubernetesServiceEnvironmentVariables": true,
                "config": "${workspaceFolder}/KubernetesLocalProcessConfig.yaml"
            })
        );
        assert!(issues.is_empty());
        let block: kbridge_config::BridgeSettings =
            serde_json::from_value(Value::Object(bridge_block(&task, around).0))
                .expect("kbridge reads the block");
        assert_eq!(block.service.as_deref(), Some("todo-api"));
    }

    #[test]
    fn target_cluster_becomes_the_context_using_it() {
        let contexts = [
            KubeContext {
                name: "dev".into(),
                cluster: "aks1".into(),
            },
            KubeContext {
                name: "prod".into(),
                cluster: "aks2".into(),
            },
            KubeContext {
                name: "prod-admin".into(),
                cluster: "aks2".into(),
            },
        ];
        assert_eq!(context_for("aks1", &contexts), ("dev".into(), None));
        assert_eq!(context_for("dev", &contexts), ("dev".into(), None));
        let (name, issue) = context_for("aks2", &contexts);
        assert_eq!(name, "prod");
        assert!(issue.expect("ambiguous").advice.contains("prod-admin"));
        let (name, issue) = context_for("gone", &contexts);
        assert_eq!(name, "gone");
        assert!(issue.is_some());
    }

    #[test]
    fn routing_names_become_dns_labels() {
        assert_eq!(routing_name("alice-1a2b"), (json!("alice-1a2b"), None));
        let (value, issue) = routing_name("Alice_Smith");
        assert_eq!(value, json!("alice-smith"));
        assert!(issue.expect("renamed").advice.contains("alice-smith"));
        assert_eq!(routing_name("__").0, json!(true));
    }

    #[test]
    fn several_ports_ask_for_pairs() {
        let mut pod = task(Resource::Pod("web-1".into()));
        pod.ports = vec![5000, 5001];
        let (block, issues) = bridge_block(&pod, NONE);
        assert_eq!(block.get("pod"), Some(&json!("web-1")));
        assert_eq!(issues.len(), 1);
    }
}
