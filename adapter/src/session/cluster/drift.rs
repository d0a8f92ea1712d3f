//! Someone else changing the swapped workload during a session.
//!
//! A deploy, `kubectl set env`, or a GitOps controller syncing the workload back to Git
//! can change the container kbridge replaced while a session runs. The user must hear of
//! it at once — who did it (from `managedFields`), what changed, and whether requests
//! still reach their machine — and teardown then undoes only kbridge's own changes
//! (`kbridge_protocol::contract::restore_merge`). Workloads a GitOps controller manages get
//! a warning when the session starts: the controller may revert the swap at its next sync.

use super::connection::Cluster;
use super::target::ResolvedTarget;
use super::workload::FIELD_MANAGER;
use crate::session::{EventSink, SessionEvent};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kbridge_protocol::contract::restore_merge;
use kube::api::DynamicObject;
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::Value;
use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The GitOps controller that manages a workload, from the labels and annotations Argo
/// CD and Flux put on what they apply.
pub fn gitops_controller(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Option<&'static str> {
    let has = |map: &BTreeMap<String, String>, key: &str| map.contains_key(key);
    if has(labels, "argocd.argoproj.io/instance")
        || has(annotations, "argocd.argoproj.io/tracking-id")
    {
        return Some("Argo CD");
    }
    if labels.keys().any(|k| {
        k.starts_with("kustomize.toolkit.fluxcd.io/") || k.starts_with("helm.toolkit.fluxcd.io/")
    }) {
        return Some("Flux");
    }
    None
}

/// The warning for a workload a GitOps controller manages.
pub fn gitops_warning(workload: &str, controller: &str) -> String {
    format!(
        "{workload} is managed by {controller}, which may put its pod template back at its next sync and end this session's traffic; pause the sync for it meanwhile, or use isolation (`isolateAs`), which leaves the workload alone"
    )
}

/// Who last changed a workload's pod template other than kbridge, from its
/// `managedFields`: `(manager, operation, time)`.
pub fn who_changed_template(entries: &[ManagedFieldsEntry]) -> Option<(String, String, String)> {
    entries
        .iter()
        .filter(|e| e.manager.as_deref() != Some(FIELD_MANAGER) && e.subresource.is_none())
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:template"))
                .is_some()
        })
        .max_by_key(|e| e.time.as_ref().map(|t| t.0))
        .map(|e| {
            (
                e.manager.clone().unwrap_or_else(|| "someone".into()),
                e.operation.clone().unwrap_or_default(),
                e.time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            )
        })
}

/// What to tell the user when the container kbridge wrote as `agent` is now `current`.
pub fn drift_notice(
    workload: &str,
    agent: &Value,
    current: &Value,
    who: Option<(String, String, String)>,
) -> Option<String> {
    let changed = restore_merge::changes(agent, current);
    if changed.is_empty() {
        return None;
    }
    let by = match who {
        Some((manager, operation, time)) => format!(" by {manager} ({operation} at {time})"),
        None => " by someone else".into(),
    };
    let agent_gone = agent.get("image") != current.get("image");
    Some(format!(
        "{workload} was changed during this session{by}: {}. {}At the end kbridge keeps those changes and undoes only its own",
        changed.join(", "),
        if agent_gone {
            "Its pods no longer run kbridge's agent: requests no longer reach this machine. "
        } else {
            ""
        }
    ))
}

/// Watches the swapped workload for the session: warns once if a GitOps controller
/// manages it, and tells the user of each new change someone else makes to the
/// container kbridge swapped (`agent`, as kbridge wrote it).
pub fn watch(
    cluster: &Cluster,
    target: &ResolvedTarget,
    agent: Value,
    events: EventSink,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) {
    let Some(resource) = target.kind.template_resource() else {
        return; // a bare Pod: recreated, not patched, and its spec cannot change that way
    };
    let api = cluster.dynamic_api(&resource);
    let workload = target.workload();
    let (name, container) = (target.name.clone(), target.container.name.clone());
    tasks.spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut objects = watcher(api, config)
            .default_backoff()
            .applied_objects()
            .boxed();
        let mut warned_gitops = false;
        let mut told: Option<String> = None;
        let tell = |text: String| {
            tracing::warn!(%text, "the swapped workload");
            let _ = events.send(SessionEvent::Notice(text));
        };
        loop {
            let object = tokio::select! {
                _ = cancel.cancelled() => return,
                next = objects.next() => match next {
                    Some(Ok(object)) => object,
                    Some(Err(_)) => continue, // the watcher retries with backoff
                    None => return,
                },
            };
            if !warned_gitops {
                warned_gitops = true;
                let meta = &object.metadata;
                let (labels, annotations) = (
                    meta.labels.clone().unwrap_or_default(),
                    meta.annotations.clone().unwrap_or_default(),
                );
                if let Some(controller) = gitops_controller(&labels, &annotations) {
                    tell(gitops_warning(&workload, controller));
                }
            }
            let Some(current) = container_of(&object, &container) else {
                continue;
            };
            let entries = object
                .metadata
                .managed_fields
                .as_deref()
                .unwrap_or_default();
            let notice = drift_notice(&workload, &agent, &current, who_changed_template(entries));
            if let Some(notice) = notice.filter(|n| told.as_ref() != Some(n)) {
                tell(notice.clone());
                told = Some(notice);
            }
        }
    });
}

/// The container named `name` in a workload's pod template.
fn container_of(object: &DynamicObject, name: &str) -> Option<Value> {
    object
        .data
        .pointer("/spec/template/spec/containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, Time};
    use serde_json::json;

    fn entry(
        manager: &str,
        at: i64,
        template: bool,
        subresource: Option<&str>,
    ) -> ManagedFieldsEntry {
        let fields = if template {
            json!({"f:spec": {"f:template": {"f:spec": {}}}})
        } else {
            json!({"f:metadata": {"f:annotations": {}}})
        };
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            subresource: subresource.map(String::from),
            fields_v1: Some(FieldsV1(fields)),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(at).expect("time"),
            )),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn the_last_template_change_not_by_kbridge_names_who() {
        let entries = [
            entry("kubectl-client-side-apply", 100, true, None),
            entry("kbridge", 200, true, None),
            entry("kube-controller-manager", 300, false, None),
            entry("kube-controller-manager", 400, true, Some("status")),
            entry("kubectl-set", 250, true, None),
        ];
        let (manager, operation, _) = who_changed_template(&entries).expect("someone");
        assert_eq!(
            (manager.as_str(), operation.as_str()),
            ("kubectl-set", "Update")
        );
        assert_eq!(who_changed_template(&entries[1..2]), None);
    }

    #[test]
    fn a_changed_image_means_no_more_traffic() {
        let agent = json!({"name": "api", "image": "kbridge/agent:dev", "env": []});
        let mut current = agent.clone();
        assert_eq!(drift_notice("deployment/api", &agent, &current, None), None);
        current["image"] = json!("todo-api:2.0");
        let notice = drift_notice(
            "deployment/api",
            &agent,
            &current,
            Some((
                "kubectl-set".into(),
                "Update".into(),
                "2026-12-06T14:00:00Z".into(),
            )),
        )
        .expect("a notice");
        assert!(notice.starts_with("deployment/api was changed during this session by kubectl-set (Update at 2026-12-06T14:00:00Z): image (now todo-api:2.0)."), "{notice}");
        assert!(
            notice.contains("requests no longer reach this machine"),
            "{notice}"
        );
        current["image"] = agent["image"].clone();
        current["env"] = json!([{"name": "LOG_LEVEL", "value": "debug"}]);
        let notice = drift_notice("deployment/api", &agent, &current, None).expect("a notice");
        assert!(
            notice.contains("by someone else: env LOG_LEVEL."),
            "{notice}"
        );
        assert!(!notice.contains("no longer reach"), "{notice}");
    }

    #[test]
    fn argo_and_flux_are_recognised() {
        let map = |k: &str| BTreeMap::from([(k.to_string(), "x".to_string())]);
        let none = BTreeMap::new();
        assert_eq!(
            gitops_controller(&map("argocd.argoproj.io/instance"), &none),
            Some("Argo CD")
        );
        assert_eq!(
            gitops_controller(&none, &map("argocd.argoproj.io/tracking-id")),
            Some("Argo CD")
        );
        assert_eq!(
            gitops_controller(&map("kustomize.toolkit.fluxcd.io/name"), &none),
            Some("Flux")
        );
        assert_eq!(
            gitops_controller(&map("helm.toolkit.fluxcd.io/name"), &none),
            Some("Flux")
        );
        assert_eq!(gitops_controller(&map("app"), &none), None);
    }
}
