//! The session's clone of the workload: a Deployment `<workload>-kbridge-<name>` with one
//! replica whose pod template is the target's, with the target container replaced by the
//! agent. Its pod labels are rewritten so that no Service selecting the original pods (the
//! isolated Service's original selector above all) and not the workload's own selector
//! select the clone; instead it carries `kbridge.dev/route-for`, `kbridge.dev/route-as` and
//! `kbridge.dev/session`, which is how the router finds it. The original workload is only
//! read, never changed.

use super::names::{clone_name, label_value};
use super::routes::Labels;
use super::{ANNOTATION_PREFIX, LABEL_MANAGED_BY, LABEL_ROUTE_AS, LABEL_ROUTE_FOR, LABEL_SESSION};
use crate::session::cluster::target::{ResolvedTarget, WorkloadKind};
use crate::session::cluster::workload::{agent_container, SwapPlan};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

/// Annotations on the clone naming what it copies (`deployment/todo-api`) and who runs it
/// (`user@host`).
pub use kbridge_protocol::contract::labels::{ANNOTATION_CLONE_OF, ANNOTATION_CLONE_OWNER};

/// The selector of a session's clone (and of its pods).
pub fn clone_selector(service: &str, route_as: &str) -> Labels {
    BTreeMap::from([
        (LABEL_ROUTE_FOR.to_string(), service.to_string()),
        (LABEL_ROUTE_AS.to_string(), route_as.to_string()),
    ])
}

/// The clone's pod labels: the template's, minus every key of a selector that would
/// otherwise pick the clone (`selectors`: the Service's original selector, the workload's
/// selector, other Services' selectors), plus the route labels and the session.
pub fn clone_labels(
    template: &Labels,
    selectors: &[Labels],
    service: &str,
    route_as: &str,
    session: &str,
) -> Labels {
    let mut labels = template.clone();
    // Drop a selector's keys only when it would match; a selector that already fails on
    // some key leaves the labels (which the app may read) alone. Removing keys never makes
    // another selector match, so one pass is enough.
    for selector in selectors.iter().filter(|s| !s.is_empty()) {
        if selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            for key in selector.keys() {
                labels.remove(key);
            }
        }
    }
    labels.retain(|k, _| !k.starts_with(ANNOTATION_PREFIX));
    labels.extend(clone_selector(service, route_as));
    labels.insert(LABEL_SESSION.into(), label_value(session));
    labels
}

/// Whether `labels` would be selected by `selector` (an empty selector selects nothing,
/// as for a Service).
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// What the clone is built from.
#[derive(Debug, Clone)]
pub struct CloneSource<'a> {
    /// The resolved target.
    pub target: &'a ResolvedTarget,
    /// The pod template's labels and annotations.
    pub template_labels: Labels,
    /// The pod template's annotations.
    pub template_annotations: BTreeMap<String, String>,
    /// Selectors the clone must escape.
    pub selectors: Vec<Labels>,
    /// Volumes a StatefulSet gets from its `volumeClaimTemplates`; the clone, a Deployment,
    /// gets an empty directory for each instead of sharing a replica's claim.
    pub claim_volumes: Vec<String>,
}

/// The clone Deployment of `source` for `route_as`, owned by `owner` (the session's
/// Secret) when given, so deleting the Secret removes it too.
pub fn clone_deployment(
    source: &CloneSource<'_>,
    service: &str,
    route_as: &str,
    plan: &SwapPlan,
    owner: Option<OwnerReference>,
) -> Deployment {
    let target = source.target;
    let labels = clone_labels(
        &source.template_labels,
        &source.selectors,
        service,
        route_as,
        &plan.session,
    );
    let mut spec: PodSpec = target.pod_spec.clone();
    // A bare Pod's or a StatefulSet's identity is not the clone's.
    spec.node_name = None;
    spec.hostname = None;
    spec.subdomain = None;
    for claim in &source.claim_volumes {
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        if !volumes.iter().any(|v| &v.name == claim) {
            volumes.push(Volume {
                name: claim.clone(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            });
        }
    }
    let agent = agent_container(&target.container, plan);
    for container in &mut spec.containers {
        if container.name == target.container.name {
            *container = agent.clone();
        }
    }
    let mut template_annotations = source.template_annotations.clone();
    template_annotations.retain(|k, _| !k.starts_with(ANNOTATION_PREFIX));
    let object_labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), "kbridge".to_string()),
        (LABEL_ROUTE_FOR.to_string(), service.to_string()),
        (LABEL_ROUTE_AS.to_string(), route_as.to_string()),
        (LABEL_SESSION.to_string(), label_value(&plan.session)),
    ]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(clone_name(&target.name, route_as)),
            namespace: Some(target.namespace.clone()),
            labels: Some(object_labels),
            annotations: Some(BTreeMap::from([
                (ANNOTATION_CLONE_OF.to_string(), target.workload()),
                (ANNOTATION_CLONE_OWNER.to_string(), plan.owner.clone()),
            ])),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(clone_selector(service, route_as)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: (!template_annotations.is_empty()).then_some(template_annotations),
                    ..Default::default()
                }),
                spec: Some(spec),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The workload's own pod selector, which the clone must escape (none for a bare Pod,
/// whose "selector" is all its labels).
pub fn workload_selector(target: &ResolvedTarget) -> Labels {
    match target.kind {
        WorkloadKind::Pod => Labels::new(),
        _ => target.selector.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_clone_escapes_every_selector_that_picks_the_original() {
        let template = labels(&[("app", "todo-api"), ("tier", "web"), ("version", "1")]);
        let service = labels(&[("app", "todo-api")]);
        let workload = labels(&[("app", "todo-api"), ("tier", "web")]);
        let other = labels(&[("version", "1")]);
        let unrelated = labels(&[("app", "stats-api")]);
        let got = clone_labels(
            &template,
            &[service.clone(), workload.clone(), other.clone(), unrelated],
            "todo-api",
            "alice",
            "s.1",
        );
        for selector in [&service, &workload, &other] {
            assert!(!selects(selector, &got), "{selector:?} still picks {got:?}");
        }
        assert_eq!(
            got,
            labels(&[
                // The workload's selector no longer matches once `app` is gone.
                ("tier", "web"),
                ("kbridge.dev/route-for", "todo-api"),
                ("kbridge.dev/route-as", "alice"),
                ("kbridge.dev/session", "s.1"),
            ])
        );
        // A label no selector needs stays for the app to read.
        let kept = clone_labels(
            &labels(&[("app", "x"), ("team", "blue")]),
            &[labels(&[("app", "x")])],
            "x",
            "bob",
            "s",
        );
        assert_eq!(kept.get("team").map(String::as_str), Some("blue"));
        assert!(selects(&clone_selector("x", "bob"), &kept));
        assert!(!selects(&Labels::new(), &kept), "empty selects nothing");
    }

    #[test]
    fn the_clone_runs_the_agent_in_place_of_the_target_container_only() {
        let api = Container {
            name: "api".into(),
            image: Some("todo-api:1".into()),
            ports: Some(vec![ContainerPort {
                container_port: 8080,
                name: Some("http".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let sidecar = Container {
            name: "sidecar".into(),
            image: Some("envoy".into()),
            ..Default::default()
        };
        let target = ResolvedTarget {
            namespace: "todo".into(),
            kind: WorkloadKind::Deployment,
            name: "todo-api".into(),
            container: api.clone(),
            service: None,
            pods: vec![],
            pod_spec: PodSpec {
                containers: vec![api, sidecar.clone()],
                node_name: Some("node-1".into()),
                ..Default::default()
            },
            selector: labels(&[("app", "todo-api")]),
            replicas: 2,
        };
        let plan = SwapPlan {
            session: "s1".into(),
            owner: "alice@laptop".into(),
            agent_image: "kbridge/agent:dev".into(),
            token_secret: "kbridge-s1".into(),
            idle_restore_secs: 60,
            kept: Default::default(),
        };
        let source = CloneSource {
            target: &target,
            template_labels: labels(&[("app", "todo-api")]),
            template_annotations: BTreeMap::new(),
            selectors: vec![workload_selector(&target)],
            claim_volumes: vec!["data".into()],
        };
        let clone = clone_deployment(&source, "todo-api", "alice", &plan, None);
        assert_eq!(
            clone.metadata.name.as_deref(),
            Some("todo-api-kbridge-alice")
        );
        let spec = clone.spec;
        assert_eq!(spec.replicas, Some(1));
        let pod = spec.template.spec.expect("pod spec");
        assert_eq!(pod.node_name, None);
        let volumes = pod.volumes.expect("volumes");
        assert!(
            volumes[0].empty_dir.is_some(),
            "a claim becomes an emptyDir"
        );
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("kbridge/agent:dev")
        );
        assert_eq!(pod.containers[1], sidecar);
        let pod_labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .expect("labels");
        assert!(selects(
            spec.selector.match_labels.as_ref().expect("selector"),
            &pod_labels
        ));
        assert!(!selects(&target.selector, &pod_labels));
    }
}
