//! The router shared by every session isolating one Service: `kbridge-agent router` in a
//! Deployment `<svc>-kbridge-router` (with a ServiceAccount, Role and RoleBinding that let
//! it watch pods, which is how it finds the sessions' clones), and the Service
//! `<svc>-kbridge-origin` that selects the original pods, where everything not routed goes.
//! The router listens on the Service's target ports resolved to numbers (named as the
//! target port, so a named `targetPort` keeps working once the Service selects the router).

use super::names::{origin_name, router_name};
use super::routes::Labels;
use super::{LABEL_MANAGED_BY, LABEL_ROUTER_FOR};
use crate::session::cluster::errors::ClusterError;
use crate::session::cluster::pod_security;
use crate::session::cluster::rbac::{rule, Identity};
use crate::session::cluster::target::named_container_port;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kbridge_protocol::contract::labels::MANAGED_BY_KBRIDGE;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

/// The router's default health port (`GET /healthz`, `GET /routes`).
pub const ROUTER_HEALTH_PORT: u16 = kbridge_protocol::contract::agent_pod::HEALTH_PORT;

/// One port the router serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedPort {
    /// The Service port's name.
    pub name: Option<String>,
    /// The number the pods listen on (the resolved target port).
    pub number: u16,
    /// The Service's `targetPort` as written.
    pub target: IntOrString,
}

/// The Service's ports with their target ports resolved against the pod spec; duplicates
/// (two Service ports to one target) appear once. Non-TCP ports are refused: the router
/// forwards TCP only, and switching the selector would cut them off.
pub fn routed_ports(service: &Service, pod: &PodSpec) -> Result<Vec<RoutedPort>, ClusterError> {
    let name = service.metadata.name.clone().unwrap_or_default();
    let mut ports: Vec<RoutedPort> = Vec::new();
    for port in service.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if protocol != "TCP" {
            return Err(ClusterError::InvalidTarget(format!(
                "service '{name}' has a {protocol} port ({}); isolation routes TCP only, so it cannot front this Service",
                port.port
            )));
        }
        let target = port
            .target_port
            .clone()
            .unwrap_or(IntOrString::Int(port.port));
        let number = match &target {
            IntOrString::Int(n) => *n,
            IntOrString::String(port_name) => named_container_port(pod, port_name)
                .ok_or_else(|| {
                    ClusterError::InvalidTarget(format!(
                        "service '{name}' targets port '{port_name}', which no container of the workload names; fix the Service's targetPort"
                    ))
                })?,
        };
        let number = u16::try_from(number).map_err(|_| {
            ClusterError::InvalidTarget(format!(
                "service '{name}' targets port {number}, which is not a TCP port"
            ))
        })?;
        if !ports.iter().any(|p| p.number == number) {
            ports.push(RoutedPort {
                name: port.name.clone(),
                number,
                target,
            });
        }
    }
    if ports.is_empty() {
        return Err(ClusterError::InvalidTarget(format!(
            "service '{name}' has no ports to route"
        )));
    }
    Ok(ports)
}

/// The router's health port: the default unless the application uses it.
pub fn health_port(ports: &[RoutedPort]) -> u16 {
    (ROUTER_HEALTH_PORT..u16::MAX)
        .find(|p| !ports.iter().any(|r| r.number == *p))
        .unwrap_or(ROUTER_HEALTH_PORT)
}

/// Labels of the router's pods, which the isolated Service selects meanwhile.
pub fn router_labels(service: &str) -> Labels {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY_KBRIDGE.to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "router".to_string(),
        ),
        (LABEL_ROUTER_FOR.to_string(), service.to_string()),
    ])
}

fn meta(name: &str, namespace: &str, service: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(router_labels(service)),
        ..Default::default()
    }
}

/// Every object of the router of `service`, ready to create.
#[derive(Debug, Clone)]
pub struct RouterObjects {
    /// Its ServiceAccount, with a Role to get/list/watch pods.
    pub identity: Identity,
    /// The router itself.
    pub deployment: Deployment,
    /// `<svc>-kbridge-origin`.
    pub origin: Service,
}

/// Builds the router of `service` (its original selector `original`, ports `ports`).
pub fn router_objects(
    service: &str,
    namespace: &str,
    original: &Labels,
    ports: &[RoutedPort],
    image: &str,
) -> RouterObjects {
    let name = router_name(service);
    let identity = Identity::new(
        &meta(&name, namespace, service),
        vec![rule("", "pods", &[], &["get", "list", "watch"])],
    );
    let deployment = Deployment {
        metadata: meta(&name, namespace, service),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(router_labels(service)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(router_labels(service)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.clone()),
                    // Not part of the application: no service links in its environment.
                    enable_service_links: Some(false),
                    security_context: Some(pod_security::restricted_pod()),
                    containers: vec![router_container(service, namespace, ports, image)],
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    };
    RouterObjects {
        identity,
        deployment,
        origin: origin_service(service, namespace, original, ports),
    }
}

/// The router's container: `kbridge-agent router`, configured by environment, with the
/// routed ports and a health port that its probes use.
/// The router pod's one container.
pub const CONTAINER: &str = "router";

fn router_container(
    service: &str,
    namespace: &str,
    ports: &[RoutedPort],
    image: &str,
) -> Container {
    let health = health_port(ports);
    let env = |k: &str, v: String| EnvVar {
        name: k.into(),
        value: Some(v),
        ..Default::default()
    };
    let numbers: Vec<String> = ports.iter().map(|p| p.number.to_string()).collect();
    let probe = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(i32::from(health)),
            ..Default::default()
        }),
        period_seconds: Some(crate::session::cluster::workload::AGENT_PROBE_PERIOD_SECONDS),
        ..Default::default()
    };
    let mut container_ports: Vec<ContainerPort> = ports
        .iter()
        .map(|p| ContainerPort {
            container_port: i32::from(p.number),
            name: match &p.target {
                IntOrString::String(n) => Some(n.clone()),
                IntOrString::Int(_) => None,
            },
            protocol: Some("TCP".into()),
            ..Default::default()
        })
        .collect();
    container_ports.push(ContainerPort {
        container_port: i32::from(health),
        name: Some("kbridge-health".into()),
        protocol: Some("TCP".into()),
        ..Default::default()
    });
    Container {
        name: CONTAINER.into(),
        image: Some(image.to_string()),
        args: Some(vec!["router".into()]),
        env: Some(vec![
            env("KBRIDGE_ROUTER_SERVICE", service.to_string()),
            env("KBRIDGE_ROUTER_NAMESPACE", namespace.to_string()),
            env("KBRIDGE_ROUTER_PORTS", numbers.join(",")),
            env("KBRIDGE_ROUTER_ORIGIN", origin_name(service)),
            env("KBRIDGE_ROUTER_HEALTH_PORT", health.to_string()),
        ]),
        ports: Some(container_ports),
        readiness_probe: Some(probe.clone()),
        liveness_probe: Some(probe),
        security_context: Some(pod_security::restricted_container()),
        ..Default::default()
    }
}

/// `<svc>-kbridge-origin`: the Service's original selector and ports, which the router
/// sends requests without a session's route to.
fn origin_service(
    service: &str,
    namespace: &str,
    original: &Labels,
    ports: &[RoutedPort],
) -> Service {
    Service {
        metadata: meta(&origin_name(service), namespace, service),
        spec: Some(ServiceSpec {
            selector: Some(original.clone()),
            ports: Some(
                ports
                    .iter()
                    .map(|p| ServicePort {
                        name: p.name.clone(),
                        port: i32::from(p.number),
                        target_port: Some(p.target.clone()),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "todo-api"},
            "spec": {"selector": {"app": "todo-api"}, "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "alt", "port": 81, "targetPort": 8080},
                {"name": "admin", "port": 9000}
            ]}
        }))
        .expect("a service")
    }

    fn pod() -> PodSpec {
        serde_json::from_value(json!({"containers": [
            {"name": "api", "ports": [{"name": "http", "containerPort": 8080}]}
        ]}))
        .expect("a pod spec")
    }

    #[test]
    fn target_ports_resolve_to_numbers_once() {
        let ports = routed_ports(&service(), &pod()).expect("ports");
        assert_eq!(
            ports,
            [
                RoutedPort {
                    name: Some("http".into()),
                    number: 8080,
                    target: IntOrString::String("http".into())
                },
                RoutedPort {
                    name: Some("admin".into()),
                    number: 9000,
                    target: IntOrString::Int(9000)
                },
            ]
        );
        let mut udp = service();
        if let Some(p) = udp.spec.as_mut().and_then(|s| s.ports.as_mut()) {
            p[0].protocol = Some("UDP".into());
        }
        let err = routed_ports(&udp, &pod()).expect_err("udp");
        assert!(err.to_string().contains("UDP"), "{err}");
        let err = routed_ports(&service(), &PodSpec::default()).expect_err("unnamed");
        assert!(err.to_string().contains("'http'"), "{err}");
        assert_eq!(health_port(&ports), 7312);
        let busy = [RoutedPort {
            name: None,
            number: 7312,
            target: IntOrString::Int(7312),
        }];
        assert_eq!(health_port(&busy), 7313);
    }

    #[test]
    fn the_router_follows_the_contract() {
        let original = BTreeMap::from([("app".to_string(), "todo-api".to_string())]);
        let ports = routed_ports(&service(), &pod()).expect("ports");
        let objects = router_objects("todo-api", "todo", &original, &ports, "kbridge/agent:dev");
        let value = serde_json::to_value(&objects.deployment).expect("json");
        let container = &value["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["args"], json!(["router"]));
        let env: BTreeMap<String, String> = container["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_string(),
                    e["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(env["KBRIDGE_ROUTER_PORTS"], "8080,9000");
        assert_eq!(env["KBRIDGE_ROUTER_ORIGIN"], "todo-api-kbridge-origin");
        assert_eq!(env["KBRIDGE_ROUTER_SERVICE"], "todo-api");
        assert_eq!(
            container["ports"][0],
            json!({"containerPort": 8080, "name": "http", "protocol": "TCP"})
        );
        assert_eq!(container["readinessProbe"]["httpGet"]["port"], 7312);
        assert_eq!(
            value["spec"]["template"]["spec"]["serviceAccountName"],
            "todo-api-kbridge-router"
        );
        let origin = serde_json::to_value(&objects.origin).expect("json");
        assert_eq!(origin["metadata"]["name"], "todo-api-kbridge-origin");
        assert_eq!(origin["spec"]["selector"], json!({"app": "todo-api"}));
        assert_eq!(
            origin["spec"]["ports"][0],
            json!({"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"})
        );
        let verbs = &objects.identity.role.rules.as_ref().expect("rules")[0].verbs;
        assert_eq!(verbs, &["get", "list", "watch"]);
    }
}
