//! Ingress copies: each Ingress of the namespace that sends traffic to the isolated Service
//! is copied as `<ingress>-kbridge-<name>` with every host prefixed `<name>.`, so a browser
//! reaches the session's clone through `alice.<host>` (the router routes on that Host
//! prefix). Rules without a host, wildcard hosts and the default backend are not copied:
//! they would catch traffic that is not the session's.

use super::names::{ingress_copy_name, label_value};
use super::{LABEL_MANAGED_BY, LABEL_ROUTE_AS, LABEL_ROUTE_FOR, LABEL_SESSION};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressSpec, IngressTLS};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

/// Annotation on a copy naming the Ingress it copies.
pub use kbridge_protocol::contract::labels::ANNOTATION_COPY_OF;

/// A session's Ingress copy, as shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressCopy {
    /// The copy's name.
    pub name: String,
    /// The Ingress it copies.
    pub copy_of: String,
    /// Its hosts, each `<name>.<original host>`.
    pub hosts: Vec<String>,
    /// Hosts served over TLS (a subset of `hosts`).
    pub tls_hosts: Vec<String>,
}

fn backend_is(backend: Option<&IngressBackend>, service: &str) -> bool {
    backend
        .and_then(|b| b.service.as_ref())
        .is_some_and(|s| s.name == service)
}

/// Whether `ingress` sends any traffic to `service` (a rule's path or its default backend).
pub fn backs_service(ingress: &Ingress, service: &str) -> bool {
    let Some(spec) = &ingress.spec else {
        return false;
    };
    backend_is(spec.default_backend.as_ref(), service)
        || spec.rules.iter().flatten().any(|rule| {
            rule.http
                .iter()
                .flat_map(|h| h.paths.iter())
                .any(|p| backend_is(Some(&p.backend), service))
        })
}

fn prefixed(host: &str, route_as: &str) -> Option<String> {
    let host = host.trim();
    (!host.is_empty() && !host.contains('*')).then(|| format!("{route_as}.{host}"))
}

/// The session's copy of `ingress` with hosts prefixed `<route_as>.`, or `None` when no
/// rule has a host to prefix.
pub fn ingress_copy(
    ingress: &Ingress,
    route_as: &str,
    service: &str,
    session: &str,
    owner: Option<OwnerReference>,
) -> Option<Ingress> {
    let spec = ingress.spec.as_ref()?;
    let rules: Vec<_> = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|rule| {
            let host = prefixed(rule.host.as_deref()?, route_as)?;
            let mut rule = rule.clone();
            rule.host = Some(host);
            Some(rule)
        })
        .collect();
    if rules.is_empty() {
        return None;
    }
    let tls: Vec<IngressTLS> = spec
        .tls
        .iter()
        .flatten()
        .filter_map(|tls| {
            let hosts: Vec<String> = tls
                .hosts
                .iter()
                .flatten()
                .filter_map(|h| prefixed(h, route_as))
                .collect();
            (!hosts.is_empty()).then(|| IngressTLS {
                hosts: Some(hosts),
                secret_name: tls.secret_name.clone(),
            })
        })
        .collect();
    let name = ingress.metadata.name.clone().unwrap_or_default();
    let mut labels = ingress.metadata.labels.clone().unwrap_or_default();
    labels.extend([
        (LABEL_MANAGED_BY.to_string(), "kbridge".to_string()),
        (LABEL_ROUTE_FOR.to_string(), service.to_string()),
        (LABEL_ROUTE_AS.to_string(), route_as.to_string()),
        (LABEL_SESSION.to_string(), label_value(session)),
    ]);
    let mut annotations = ingress.metadata.annotations.clone().unwrap_or_default();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    annotations.insert(ANNOTATION_COPY_OF.into(), name.clone());
    Some(Ingress {
        metadata: ObjectMeta {
            name: Some(ingress_copy_name(&name, route_as)),
            namespace: ingress.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: spec.ingress_class_name.clone(),
            default_backend: None,
            rules: Some(rules),
            tls: (!tls.is_empty()).then_some(tls),
        }),
        status: None,
    })
}

/// What the user sees of a copy.
pub fn describe(copy: &Ingress) -> IngressCopy {
    let spec = copy.spec.clone().unwrap_or_default();
    IngressCopy {
        name: copy.metadata.name.clone().unwrap_or_default(),
        copy_of: copy
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_COPY_OF).cloned())
            .unwrap_or_default(),
        hosts: spec
            .rules
            .iter()
            .flatten()
            .filter_map(|r| r.host.clone())
            .collect(),
        tls_hosts: spec
            .tls
            .iter()
            .flatten()
            .flat_map(|t| t.hosts.iter().flatten().cloned())
            .collect(),
    }
}

/// The URL to show the user: the first copied host (`https` when TLS covers it).
pub fn url(copies: &[IngressCopy]) -> Option<String> {
    copies.iter().find_map(|c| {
        let host = c.hosts.first()?;
        let scheme = if c.tls_hosts.contains(host) {
            "https"
        } else {
            "http"
        };
        Some(format!("{scheme}://{host}/"))
    })
}

/// Labels of a session's copies, for finding them again.
pub fn copy_selector(service: &str, route_as: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_ROUTE_FOR.to_string(), service.to_string()),
        (LABEL_ROUTE_AS.to_string(), route_as.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress() -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "todo", "labels": {"team": "blue"},
                "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/"}},
            "spec": {
                "ingressClassName": "nginx",
                "defaultBackend": {"service": {"name": "todo-api", "port": {"number": 80}}},
                "tls": [{"hosts": ["todo.example.com", "*.example.com"], "secretName": "tls"}],
                "rules": [
                    {"host": "todo.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "todo-api", "port": {"name": "http"}}}},
                        {"path": "/stats", "pathType": "Prefix",
                         "backend": {"service": {"name": "stats-api", "port": {"number": 80}}}}
                    ]}},
                    {"http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "todo-api", "port": {"number": 80}}}}]}},
                    {"host": "*.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "todo-api", "port": {"number": 80}}}}]}}
                ]
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
        }))
        .expect("an ingress")
    }

    #[test]
    fn hosts_are_prefixed_and_hostless_rules_dropped() {
        let original = ingress();
        assert!(backs_service(&original, "todo-api"));
        assert!(backs_service(&original, "stats-api"));
        assert!(!backs_service(&original, "other"));
        let copy = ingress_copy(&original, "alice", "todo-api", "s1", None).expect("a copy");
        assert_eq!(copy.metadata.name.as_deref(), Some("web-kbridge-alice"));
        let labels = copy.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get("team").map(String::as_str), Some("blue"));
        assert_eq!(
            labels.get("kbridge.dev/route-as").map(String::as_str),
            Some("alice")
        );
        let annotations = copy.metadata.annotations.clone().expect("annotations");
        assert_eq!(
            annotations.get(ANNOTATION_COPY_OF).map(String::as_str),
            Some("web")
        );
        assert!(annotations.contains_key("nginx.ingress.kubernetes.io/rewrite-target"));
        let spec = copy.spec.clone().expect("spec");
        assert_eq!(spec.default_backend, None);
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let rules = spec.rules.expect("rules");
        assert_eq!(rules.len(), 1, "hostless and wildcard rules are not copied");
        assert_eq!(rules[0].host.as_deref(), Some("alice.todo.example.com"));
        assert_eq!(rules[0].http.as_ref().map(|h| h.paths.len()), Some(2));
        assert_eq!(copy.status, None);
        let shown = describe(&copy);
        assert_eq!(shown.hosts, ["alice.todo.example.com"]);
        assert_eq!(shown.tls_hosts, ["alice.todo.example.com"]);
        assert_eq!(
            url(&[shown]).as_deref(),
            Some("https://alice.todo.example.com/")
        );
    }

    #[test]
    fn an_ingress_without_hosts_gets_no_copy() {
        let mut hostless = ingress();
        if let Some(spec) = hostless.spec.as_mut() {
            spec.rules = spec
                .rules
                .take()
                .map(|r| r.into_iter().filter(|r| r.host.is_none()).collect());
        }
        assert!(ingress_copy(&hostless, "alice", "todo-api", "s1", None).is_none());
        assert_eq!(url(&[]), None);
    }
}
