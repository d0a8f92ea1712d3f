//! From what the user named (a Service, a workload or a Pod) to what kbridge takes over:
//! the owning workload, its pods, and the one container to replace. Several replicas and
//! sidecars are normal; only ambiguity is an error, and the error lists the choices.

use super::connection::Cluster;
use super::errors::{is_not_found, ClusterError};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kbridge_config::Target;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;

/// Kinds of workload a session can take over: the cluster contract's, which
/// `bridge.workload`, `kbridge restore` and the in-cluster restorer parse too. Resolution
/// yields one, so the cluster layer names it from here.
pub use kbridge_protocol::contract::WorkloadKind;

/// A container port of the target container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPort {
    /// The container port.
    pub port: u16,
    /// Its name, if any.
    pub name: Option<String>,
    /// `TCP`, `UDP`, `SCTP`.
    pub protocol: String,
}

/// The resolved target.
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    /// The namespace.
    pub namespace: String,
    /// What owns the pods.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
    /// The container kbridge replaces.
    pub container: Container,
    /// The Service the user named, if they named one.
    pub service: Option<Service>,
    /// The pods running now.
    pub pods: Vec<String>,
    /// The pod template (or the bare pod's spec).
    pub pod_spec: PodSpec,
    /// Labels that select the workload's pods.
    pub selector: BTreeMap<String, String>,
    /// Desired replicas (1 for a bare pod).
    pub replicas: usize,
}

impl ResolvedTarget {
    /// `kind/name`.
    pub fn workload(&self) -> String {
        format!("{}/{}", self.kind.name(), self.name)
    }

    /// The target container's TCP ports.
    pub fn ports(&self) -> Vec<TargetPort> {
        self.container
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(TargetPort {
                    port: u16::try_from(p.container_port).ok()?,
                    name: p.name.clone(),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                })
            })
            .collect()
    }
}

/// Resolves `target` in the cluster's namespace; `container` is `bridge.container`.
pub async fn resolve(
    cluster: &Cluster,
    target: &Target,
    container: Option<&str>,
) -> Result<ResolvedTarget, ClusterError> {
    let resolver = Resolver { cluster };
    let (kind, name, service) = match target {
        Target::Service(name) => {
            let service: Service = resolver.get("service", "services", name).await?;
            let (kind, workload) = resolver.owner_of_service(&service).await?;
            (kind, workload, Some(service))
        }
        Target::Workload { kind, name } => (*kind, name.clone(), None),
        Target::Pod(name) => {
            let pod: Pod = resolver.get("pod", "pods", name).await?;
            let (kind, workload) = resolver.owner_of_pod(&pod).await?;
            (kind, workload, None)
        }
    };
    let (pod_spec, selector, replicas) = resolver.template(kind, &name).await?;
    let container = choose_container(
        &pod_spec,
        container,
        service.as_ref(),
        &format!("{}/{name}", kind.name()),
    )?;
    let pods = resolver.pods(kind, &name, &selector).await?;
    Ok(ResolvedTarget {
        namespace: cluster.namespace.clone(),
        kind,
        name,
        container,
        service,
        pods,
        pod_spec,
        selector,
        replicas,
    })
}

struct Resolver<'a> {
    cluster: &'a Cluster,
}

impl Resolver<'_> {
    fn error(
        &self,
        error: kube::Error,
        verb: &'static str,
        resource: &'static str,
    ) -> ClusterError {
        self.cluster.api_error(error, verb, resource)
    }

    /// Gets an object; a 404 becomes an error with the closest existing name.
    async fn get<K>(
        &self,
        kind: &'static str,
        resource: &'static str,
        name: &str,
    ) -> Result<K, ClusterError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let api: Api<K> = self.cluster.api();
        match api.get(name).await {
            Ok(object) => Ok(object),
            Err(error) if is_not_found(&error) => {
                let names: Vec<String> = match api.list_metadata(&ListParams::default()).await {
                    Ok(list) => list
                        .items
                        .into_iter()
                        .filter_map(|o| o.metadata.name)
                        .collect(),
                    Err(_) => Vec::new(),
                };
                Err(ClusterError::NotFound {
                    kind,
                    name: name.to_string(),
                    namespace: self.cluster.namespace.clone(),
                    suggestion: closest(name, &names),
                })
            }
            Err(error) => Err(self.error(error, "get", resource)),
        }
    }

    async fn owner_of_service(
        &self,
        service: &Service,
    ) -> Result<(WorkloadKind, String), ClusterError> {
        let name = service.metadata.name.clone().unwrap_or_default();
        let selector = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ClusterError::InvalidTarget(format!(
                "service '{name}' has no selector, so no pods to take over; name the workload instead (--workload KIND/NAME)"
            )))?;
        let pods: Api<Pod> = self.cluster.api();
        let list = pods
            .list(&ListParams::default().labels(&label_selector(&selector)))
            .await
            .map_err(|e| self.error(e, "list", "pods"))?;
        let mut owners = Vec::new();
        for pod in &list.items {
            let owner = self.owner_of_pod(pod).await?;
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        match owners.len() {
            1 => Ok(owners.remove(0)),
            0 => Err(ClusterError::InvalidTarget(format!(
                "service '{name}' selects no pods ({}); start its workload first, or name it with --workload",
                label_selector(&selector)
            ))),
            _ => Err(ClusterError::InvalidTarget(format!(
                "service '{name}' selects pods of several workloads ({}); choose one with --workload",
                owners
                    .iter()
                    .map(|(k, n)| format!("{}/{n}", k.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    async fn owner_of_pod(&self, pod: &Pod) -> Result<(WorkloadKind, String), ClusterError> {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        match controller(pod.metadata.owner_references.as_deref()) {
            None => Ok((WorkloadKind::Pod, pod_name)),
            Some(owner) if owner.kind == "StatefulSet" => Ok((WorkloadKind::StatefulSet, owner.name.clone())),
            Some(owner) if owner.kind == "ReplicaSet" => {
                let replica_set: ReplicaSet = self.get("replicaset", "replicasets", &owner.name).await?;
                match controller(replica_set.metadata.owner_references.as_deref()) {
                    Some(parent) if parent.kind == "Deployment" => Ok((WorkloadKind::Deployment, parent.name.clone())),
                    Some(parent) => Err(ClusterError::InvalidTarget(format!(
                        "pod '{pod_name}' belongs to {} '{}', which kbridge cannot take over yet",
                        parent.kind, parent.name
                    ))),
                    None => Ok((WorkloadKind::ReplicaSet, owner.name.clone())),
                }
            }
            Some(owner) => Err(ClusterError::InvalidTarget(format!(
                "pod '{pod_name}' belongs to {} '{}', which kbridge cannot take over (supported: Deployment, StatefulSet, ReplicaSet, bare Pod)",
                owner.kind, owner.name
            ))),
        }
    }

    /// The pod template and pod selector of a workload (a bare pod's own spec and labels).
    async fn template(
        &self,
        kind: WorkloadKind,
        name: &str,
    ) -> Result<(PodSpec, BTreeMap<String, String>, usize), ClusterError> {
        let count = |replicas: Option<i32>| usize::try_from(replicas.unwrap_or(1)).unwrap_or(1);
        let missing =
            || ClusterError::InvalidTarget(format!("{}/{name} has no pod template", kind.name()));
        match kind {
            WorkloadKind::Deployment => {
                let d: Deployment = self.get("deployment", kind.resource(), name).await?;
                let spec = d.spec;
                Ok((
                    spec.template.spec.ok_or_else(missing)?,
                    spec.selector.match_labels.unwrap_or_default(),
                    count(spec.replicas),
                ))
            }
            WorkloadKind::StatefulSet => {
                let s: StatefulSet = self.get("statefulset", kind.resource(), name).await?;
                let spec = s.spec;
                Ok((
                    spec.template.spec.ok_or_else(missing)?,
                    spec.selector.match_labels.unwrap_or_default(),
                    count(spec.replicas),
                ))
            }
            WorkloadKind::ReplicaSet => {
                let r: ReplicaSet = self.get("replicaset", kind.resource(), name).await?;
                let spec = r.spec;
                let template = spec.template.and_then(|t| t.spec).ok_or_else(missing)?;
                Ok((
                    template,
                    spec.selector.match_labels.unwrap_or_default(),
                    count(spec.replicas),
                ))
            }
            WorkloadKind::Pod => {
                let p: Pod = self.get("pod", kind.resource(), name).await?;
                Ok((
                    p.spec.ok_or_else(missing)?,
                    p.metadata.labels.unwrap_or_default(),
                    1,
                ))
            }
        }
    }

    async fn pods(
        &self,
        kind: WorkloadKind,
        name: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, ClusterError> {
        if kind == WorkloadKind::Pod {
            return Ok(vec![name.to_string()]);
        }
        let pods: Api<Pod> = self.cluster.api();
        let list = pods
            .list(&ListParams::default().labels(&label_selector(selector)))
            .await
            .map_err(|e| self.error(e, "list", "pods"))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect())
    }
}

fn controller(owners: Option<&[OwnerReference]>) -> Option<&OwnerReference> {
    owners?.iter().find(|o| o.controller == Some(true))
}

/// `a=1,b=2`.
pub fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The container to replace: the one named, else the one serving the Service's target
/// ports, else the only one.
pub fn choose_container(
    spec: &PodSpec,
    named: Option<&str>,
    service: Option<&Service>,
    workload: &str,
) -> Result<Container, ClusterError> {
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    if let Some(named) = named {
        return spec
            .containers
            .iter()
            .find(|c| c.name == named)
            .cloned()
            .ok_or_else(|| {
                ClusterError::InvalidTarget(format!(
                    "{workload} has no container '{named}'; its containers are: {}",
                    names.join(", ")
                ))
            });
    }
    if spec.containers.len() == 1 {
        return Ok(spec.containers[0].clone());
    }
    if let Some(service) = service {
        let targets: Vec<IntOrString> = service
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .map(|p| p.target_port.clone().unwrap_or(IntOrString::Int(p.port)))
            .collect();
        let serving: Vec<&Container> = spec
            .containers
            .iter()
            .filter(|c| {
                c.ports.iter().flatten().any(|p| {
                    targets.iter().any(|t| match t {
                        IntOrString::Int(n) => *n == p.container_port,
                        IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
                    })
                })
            })
            .collect();
        if serving.len() == 1 {
            return Ok(serving[0].clone());
        }
    }
    Err(ClusterError::InvalidTarget(format!(
        "{workload} has several containers ({}); say which one to replace with `bridge.container` (--container)",
        names.join(", ")
    )))
}

/// The number of the container port called `name` in `pod`, as Kubernetes resolves a
/// Service's named `targetPort`.
pub fn named_container_port(pod: &PodSpec, name: &str) -> Option<i32> {
    pod.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .map(|p| p.container_port)
}

/// The existing name closest to `wanted`, if it is close enough to be a typo.
pub fn closest(wanted: &str, names: &[String]) -> Option<String> {
    names
        .iter()
        .map(|n| (kbridge_config::launch::edit_distance(wanted, n), n))
        .filter(|(d, _)| *d <= 3.max(wanted.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, ServicePort, ServiceSpec};

    fn container(name: &str, port: i32) -> Container {
        Container {
            name: name.into(),
            ports: Some(vec![ContainerPort {
                container_port: port,
                name: Some(format!("p{port}")),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn spec() -> PodSpec {
        PodSpec {
            containers: vec![container("api", 8080), container("envoy", 15001)],
            ..Default::default()
        }
    }

    fn service(target: IntOrString) -> Service {
        Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    port: 80,
                    target_port: Some(target),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sidecars_are_told_apart_by_the_service_port() {
        let by_number = choose_container(
            &spec(),
            None,
            Some(&service(IntOrString::Int(8080))),
            "deployment/x",
        )
        .expect("the api container serves 8080");
        assert_eq!(by_number.name, "api");
        let by_name = choose_container(
            &spec(),
            None,
            Some(&service(IntOrString::String("p15001".into()))),
            "deployment/x",
        )
        .expect("named port");
        assert_eq!(by_name.name, "envoy");
    }

    #[test]
    fn ambiguity_and_typos_list_the_choices() {
        let err = choose_container(&spec(), None, None, "deployment/x").expect_err("ambiguous");
        assert!(err.to_string().contains("api, envoy"), "{err}");
        let err = choose_container(&spec(), Some("apj"), None, "deployment/x")
            .expect_err("no such container");
        assert!(err.to_string().contains("no container 'apj'"), "{err}");
        assert_eq!(
            closest("todo-ap", &["todo-api".into(), "stats-api".into()]),
            Some("todo-api".into())
        );
        assert_eq!(closest("zzzzzzzz", &["todo-api".into()]), None);
    }
}
