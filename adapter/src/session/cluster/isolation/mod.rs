//! Isolation (`isolateAs`, DESIGN §9): only requests marked for this session come to it;
//! everyone else keeps using the original pods, which are never modified.
//!
//! [`join`] finds the Service in front of the target, registers the session on it, puts the
//! shared router in front of it (`<svc>-kbridge-router`, with `<svc>-kbridge-origin`
//! selecting the original pods), starts the session's clone `<workload>-kbridge-<name>`
//! running the agent, and copies the namespace's Ingresses with hosts `<name>.<host>`.
//! [`leave`] undoes one session's part; the last session out puts the Service's selector
//! back exactly and removes the router. Both work from what is in the cluster alone, so
//! they are idempotent and `kbridge restore` can clean up after a crash ([`leave_all`]);
//! [`isolated`] lists what is isolated, for `kbridge status`.
//!
//! Labels and annotations (on top of `app.kubernetes.io/managed-by=kbridge`):
//! - Service: `kbridge.dev/original-selector` (JSON), `kbridge.dev/isolated-sessions`
//!   (JSON map route name → session id);
//! - clone Deployment and its pods, Ingress copies: `kbridge.dev/route-for=<svc>`,
//!   `kbridge.dev/route-as=<name>`, `kbridge.dev/session=<id>`;
//! - router objects and pods: `kbridge.dev/router-for=<svc>`.

pub mod clone;
pub mod ingress;
pub mod names;
pub mod router;
pub mod routes;

pub use names::generated_name;
pub use routes::effective_selector;

use super::connection::Cluster;
use super::errors::{is_not_found, ClusterError};
use super::rollout::{is_ready, runs_our_agent};
use super::target::{choose_container, label_selector, resolve, ResolvedTarget, WorkloadKind};
use super::workload::SwapPlan;
use clone::{clone_deployment, clone_selector, workload_selector, CloneSource};
use futures::StreamExt;
use ingress::IngressCopy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::NamespaceResourceScope;
use kbridge_config::Target;
use kbridge_protocol::contract::restore::RestoreRecord;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::Resource;
use names::{check_route_name, label_value, origin_name, router_name};
use routes::{state_of, Labels};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The keys isolation puts on what it creates: the cluster contract's, which the router
/// and the in-cluster restorer read too.
pub use kbridge_protocol::contract::labels::{
    ANNOTATION_PREFIX, LABEL_MANAGED_BY, LABEL_ROUTER_FOR, LABEL_ROUTE_AS, LABEL_ROUTE_FOR,
    LABEL_SESSION,
};
/// The header that routes a request to a session.
pub const ROUTE_HEADER: &str = "kubernetes-route-as";

/// How often a Service update that met a 409 Conflict is read and tried again.
const CONFLICT_RETRIES: usize = 10;

/// What [`join`] needs beyond the target.
#[derive(Debug, Clone)]
pub struct IsolationPlan {
    /// Session id.
    pub session: String,
    /// `user@host`.
    pub owner: String,
    /// The agent image (also the router's).
    pub agent_image: String,
    /// Name of the Secret holding the session token; the clone and the Ingress copies are
    /// its dependents when it exists, so deleting it removes them.
    pub token_secret: String,
    /// Seconds without kbridge before the agent considers itself abandoned.
    pub idle_restore_secs: u64,
    /// How long the router and the clone may take to become ready.
    pub ready_timeout: Duration,
}

impl IsolationPlan {
    /// The same plan as the swap of a non-isolated session takes (for the clone's agent).
    pub fn swap_plan(&self) -> SwapPlan {
        SwapPlan {
            session: self.session.clone(),
            owner: self.owner.clone(),
            agent_image: self.agent_image.clone(),
            token_secret: self.token_secret.clone(),
            idle_restore_secs: self.idle_restore_secs,
        }
    }
}

/// What [`join`] set up for a session.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The route name.
    pub route_as: String,
    /// The session id.
    pub session: String,
    /// The isolated Service.
    pub service: String,
    /// The clone Deployment.
    pub clone: String,
    /// Labels selecting the clone's pods.
    pub clone_selector: Labels,
    /// The clone's Ready pods (the agents to tunnel to).
    pub clone_pods: Vec<String>,
    /// The router Deployment.
    pub router: String,
    /// The Service selecting the original pods.
    pub origin: String,
    /// The session's Ingress copies.
    pub ingresses: Vec<IngressCopy>,
    /// The URL to open, when an Ingress was copied (`http://alice.todo.example.com/`).
    pub url: Option<String>,
}

impl Isolation {
    /// The header line that routes a request to this session: `kubernetes-route-as: alice`.
    pub fn header(&self) -> String {
        format!("{ROUTE_HEADER}: {}", self.route_as)
    }

    /// The Host prefix that routes a request to this session: `alice.`.
    pub fn host_prefix(&self) -> String {
        format!("{}.", self.route_as)
    }

    /// What to tell the user.
    pub fn summary(&self) -> String {
        let via = self
            .url
            .as_ref()
            .map(|u| format!(" or open {u}"))
            .unwrap_or_default();
        format!(
            "isolated as '{}' on service '{}': requests with header '{}' (or a Host starting with '{}'){via} come to this session; all others go to the original pods",
            self.route_as,
            self.service,
            self.header(),
            self.host_prefix()
        )
    }

    /// The target the rest of the session works on: the clone (one replica) instead of
    /// the original workload, so the rollout wait and the tunnels reach the clone's agent.
    pub fn clone_target(&self, original: &ResolvedTarget) -> ResolvedTarget {
        ResolvedTarget {
            kind: WorkloadKind::Deployment,
            name: self.clone.clone(),
            pods: self.clone_pods.clone(),
            selector: self.clone_selector.clone(),
            replicas: 1,
            ..original.clone()
        }
    }
}

fn api<K>(cluster: &Cluster) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    Api::namespaced(cluster.client.clone(), &cluster.namespace)
}

fn api_error(
    cluster: &Cluster,
    error: kube::Error,
    verb: &'static str,
    resource: &'static str,
) -> ClusterError {
    cluster.api_error(error, verb, resource)
}

fn resource_of(kind: &str) -> &'static str {
    match kind {
        "ServiceAccount" => "serviceaccounts",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Service" => "services",
        "Ingress" => "ingresses",
        "Pod" => "pods",
        "Secret" => "secrets",
        _ => "deployments",
    }
}

fn resource<K: Resource>() -> &'static str
where
    K::DynamicType: Default,
{
    resource_of(&K::kind(&K::DynamicType::default()))
}

/// Creates `object`; one that already exists is left as it is (a retried join).
async fn create<K>(cluster: &Cluster, object: &K) -> Result<(), ClusterError>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match api::<K>(cluster)
        .create(&PostParams::default(), object)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(api_error(cluster, error, "create", resource::<K>())),
    }
}

/// Deletes `name`; one that is already gone is fine.
async fn delete<K>(cluster: &Cluster, name: &str) -> Result<(), ClusterError>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match api::<K>(cluster)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(api_error(cluster, error, "delete", resource::<K>())),
    }
}

/// Names of the objects of kind `K` carrying `labels`.
async fn names_with<K>(cluster: &Cluster, labels: &Labels) -> Result<Vec<String>, ClusterError>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let list = api::<K>(cluster)
        .list_metadata(&ListParams::default().labels(&label_selector(labels)))
        .await
        .map_err(|e| api_error(cluster, e, "list", resource::<K>()))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect())
}

/// Reads the Service, computes a patch from it and sends it, again on 409; `None` when the
/// Service does not exist. Returns the Service as it is afterwards.
async fn update_service(
    cluster: &Cluster,
    name: &str,
    mut patch_of: impl FnMut(&Service) -> Result<Option<Value>, ClusterError>,
) -> Result<Option<Service>, ClusterError> {
    let services = api::<Service>(cluster);
    for _ in 0..CONFLICT_RETRIES {
        let Some(service) = services
            .get_opt(name)
            .await
            .map_err(|e| api_error(cluster, e, "get", "services"))?
        else {
            return Ok(None);
        };
        let Some(patch) = patch_of(&service)? else {
            return Ok(Some(service));
        };
        match services
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => return Ok(Some(updated)),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(api_error(cluster, error, "patch", "services")),
        }
    }
    Err(ClusterError::Unsupported(format!(
        "service '{name}' kept changing while kbridge updated it; try again"
    )))
}

/// What the clone takes from the workload besides the pod spec.
struct TemplateMeta {
    labels: Labels,
    annotations: BTreeMap<String, String>,
    /// A StatefulSet's `volumeClaimTemplates` names.
    claims: Vec<String>,
}

/// The pod template's labels and annotations, read fresh; a workload kbridge made (a
/// router, a clone) or one a non-isolated session holds is refused.
async fn template_metadata(
    cluster: &Cluster,
    target: &ResolvedTarget,
) -> Result<TemplateMeta, ClusterError> {
    let (object_labels, annotations, template) = match target.kind.template_resource() {
        Some(resource) => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &resource);
            let object = api
                .get(&target.name)
                .await
                .map_err(|e| api_error(cluster, e, "get", target.kind.resource()))?;
            let template = object.data.pointer("/spec/template/metadata").cloned();
            let field = |key: &str| -> BTreeMap<String, String> {
                template
                    .as_ref()
                    .and_then(|t| t.get(key))
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default()
            };
            let claims = object
                .data
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.pointer("/metadata/name")?.as_str().map(str::to_string))
                .collect();
            let template = TemplateMeta {
                labels: field("labels"),
                annotations: field("annotations"),
                claims,
            };
            (
                object.metadata.labels.clone(),
                object.metadata.annotations.clone().unwrap_or_default(),
                template,
            )
        }
        None => {
            let pod = api::<Pod>(cluster)
                .get(&target.name)
                .await
                .map_err(|e| api_error(cluster, e, "get", "pods"))?;
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let annotations = pod.metadata.annotations.clone().unwrap_or_default();
            (
                pod.metadata.labels.clone(),
                annotations.clone(),
                TemplateMeta {
                    labels,
                    annotations,
                    claims: Vec::new(),
                },
            )
        }
    };
    if let Some(service) = object_labels.as_ref().and_then(|l| l.get(LABEL_ROUTER_FOR)) {
        return Err(ClusterError::Unsupported(format!(
            "{} is kbridge's isolation router for service '{service}' (another session isolates it); name the application's workload instead (--workload KIND/NAME)",
            target.workload()
        )));
    }
    if routes::made_by_kbridge(object_labels.as_ref()) {
        return Err(ClusterError::Unsupported(format!(
            "{} was made by kbridge (a session's clone); name the application's workload instead",
            target.workload()
        )));
    }
    if let Ok(Some(held)) = RestoreRecord::from_annotations(&annotations) {
        return Err(ClusterError::Unsupported(format!(
            "{} is bridged without isolation by {} (session {}); wait for that session to end, or run `kbridge restore {}` if it is gone",
            target.workload(),
            held.owner,
            held.session,
            target.workload()
        )));
    }
    Ok(template)
}

/// The Service in front of the target: the one the user named, else the only Service
/// (not kbridge's own) whose selector picks the pod template's labels.
pub fn service_for(
    target: &ResolvedTarget,
    services: &[Service],
    template_labels: &Labels,
) -> Result<Service, ClusterError> {
    let ours = |s: &Service| routes::made_by_kbridge(s.metadata.labels.as_ref());
    if let Some(named) = &target.service {
        let name = named.metadata.name.clone().unwrap_or_default();
        return services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name.as_str()) && !ours(s))
            .cloned()
            .ok_or_else(|| ClusterError::NotFound {
                kind: "service",
                name,
                namespace: target.namespace.clone(),
                suggestion: None,
            });
    }
    let fronting: Vec<&Service> = services
        .iter()
        .filter(|s| !ours(s))
        .filter(|s| effective_selector(s).is_some_and(|sel| clone::selects(&sel, template_labels)))
        .collect();
    match fronting.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ClusterError::Unsupported(format!(
            "isolation needs a Service in front of {}, and no Service in namespace '{}' selects its pods ({}); create one, or bridge without `isolateAs`",
            target.workload(),
            target.namespace,
            label_selector(template_labels)
        ))),
        several => Err(ClusterError::Unsupported(format!(
            "several Services select the pods of {} ({}); name the one to isolate with --service",
            target.workload(),
            several
                .iter()
                .filter_map(|s| s.metadata.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Resolves `target` as [`resolve`] does, except that a Service kbridge already isolates
/// (its selector then picks the router) is followed through its saved original selector to
/// the application's workload. Sessions with `isolateAs` should resolve their target with
/// this; plain [`resolve`] would find the router.
pub async fn resolve_target(
    cluster: &Cluster,
    target: &Target,
    container: Option<&str>,
) -> Result<ResolvedTarget, ClusterError> {
    let Target::Service(name) = target else {
        return resolve(cluster, target, container).await;
    };
    let found = api::<Service>(cluster)
        .get_opt(name)
        .await
        .map_err(|e| api_error(cluster, e, "get", "services"))?;
    let Some((service, original)) = found.and_then(|s| {
        let original = state_of(&s).ok()?.original_selector?;
        Some((s, original))
    }) else {
        return resolve(cluster, target, container).await;
    };
    let pod = api::<Pod>(cluster)
        .list(&ListParams::default().labels(&label_selector(&original)))
        .await
        .map_err(|e| api_error(cluster, e, "list", "pods"))?
        .items
        .into_iter()
        .find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !routes::made_by_kbridge(p.metadata.labels.as_ref())
        })
        .ok_or_else(|| {
            ClusterError::Unsupported(format!(
                "service '{name}' is isolated by kbridge, and its original selector ({}) selects no pods; start its workload, or name it with --workload",
                label_selector(&original)
            ))
        })?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let any_container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let mut resolved = resolve(
        cluster,
        &Target::Pod(pod_name),
        Some(container.unwrap_or(&any_container)),
    )
    .await?;
    let mut view = service.clone();
    if let Some(spec) = view.spec.as_mut() {
        spec.selector = Some(original);
    }
    resolved.container = choose_container(
        &resolved.pod_spec,
        container,
        Some(&view),
        &resolved.workload(),
    )?;
    resolved.service = Some(service);
    Ok(resolved)
}

/// The owner reference to the session's Secret, when it exists.
async fn secret_owner(
    cluster: &Cluster,
    secret: &str,
) -> Result<Option<OwnerReference>, ClusterError> {
    let found = api::<Secret>(cluster)
        .get_opt(secret)
        .await
        .map_err(|e| api_error(cluster, e, "get", "secrets"))?;
    Ok(found.and_then(|s| {
        Some(OwnerReference {
            api_version: "v1".into(),
            kind: "Secret".into(),
            name: s.metadata.name?,
            uid: s.metadata.uid?,
            ..Default::default()
        })
    }))
}

/// The name of the Service [`join`] would isolate for `target` (the one named, else the
/// only one selecting its pods), so the session can record its undo step before joining.
pub async fn fronting_service(
    cluster: &Cluster,
    target: &ResolvedTarget,
) -> Result<String, ClusterError> {
    let template = template_metadata(cluster, target).await?;
    let services = api::<Service>(cluster)
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(cluster, e, "list", "services"))?
        .items;
    let service = service_for(target, &services, &template.labels)?;
    Ok(service.metadata.name.unwrap_or_default())
}

/// Isolates `target` for the session as `route_as` (see the module doc). On failure,
/// whatever this call changed is undone before the error is returned; an error before
/// any change (no Service, a route name in use, UDP ports…) changes nothing.
pub async fn join(
    cluster: &Cluster,
    target: &ResolvedTarget,
    route_as: &str,
    plan: &IsolationPlan,
) -> Result<Isolation, ClusterError> {
    check_route_name(route_as)?;
    let template = template_metadata(cluster, target).await?;
    let services = api::<Service>(cluster)
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(cluster, e, "list", "services"))?
        .items;
    let service = service_for(target, &services, &template.labels)?;
    let service_name = service.metadata.name.clone().unwrap_or_default();
    // Everything that can be refused is checked before the first change.
    routes::register_patch(&service, route_as, &plan.session)?;
    let original = effective_selector(&service).ok_or_else(|| {
        ClusterError::Unsupported(format!(
            "service '{service_name}' has no selector, so kbridge cannot put a router in front of it; isolation needs a Service that selects the workload's pods"
        ))
    })?;
    let ports = router::routed_ports(&service, &target.pod_spec)?;
    let mut selectors = vec![original.clone(), workload_selector(target)];
    selectors.extend(
        services
            .iter()
            .filter(|s| !routes::made_by_kbridge(s.metadata.labels.as_ref()))
            .filter_map(effective_selector),
    );
    let source = CloneSource {
        target,
        template_labels: template.labels,
        template_annotations: template.annotations,
        claim_volumes: template.claims,
        selectors,
    };
    let owner = secret_owner(cluster, &plan.token_secret).await?;
    let steps = JoinSteps {
        cluster,
        service: &service_name,
        route_as,
        plan,
        ports: &ports,
        source: &source,
        owner,
    };
    match steps.run().await {
        Ok(isolation) => Ok(isolation),
        Err(error) => {
            if let Err(undo) = leave(cluster, &service_name, route_as, Some(&plan.session)).await {
                tracing::warn!(%undo, "undoing a failed isolation");
            }
            Err(error)
        }
    }
}

struct JoinSteps<'a> {
    cluster: &'a Cluster,
    service: &'a str,
    route_as: &'a str,
    plan: &'a IsolationPlan,
    ports: &'a [router::RoutedPort],
    source: &'a CloneSource<'a>,
    owner: Option<OwnerReference>,
}

impl JoinSteps<'_> {
    async fn run(&self) -> Result<Isolation, ClusterError> {
        let cluster = self.cluster;
        let service = self.service;
        let gone = || ClusterError::NotFound {
            kind: "service",
            name: service.to_string(),
            namespace: cluster.namespace.clone(),
            suggestion: None,
        };
        // 1. Register first: a session that leaves meanwhile sees us and keeps the router.
        let registered = update_service(cluster, service, |s| {
            routes::register_patch(s, self.route_as, &self.plan.session)
        })
        .await?
        .ok_or_else(gone)?;
        let original = effective_selector(&registered).ok_or_else(gone)?;

        // 2. The router, ready before the Service points at it, so no request is lost.
        let objects = router::router_objects(
            service,
            &cluster.namespace,
            &original,
            self.ports,
            &self.plan.agent_image,
        );
        create(cluster, &objects.account).await?;
        create(cluster, &objects.role).await?;
        create(cluster, &objects.binding).await?;
        create(cluster, &objects.origin).await?;
        create(cluster, &objects.deployment).await?;
        let router_labels = router::router_labels(service);
        wait_ready(
            cluster,
            &router_labels,
            |_| true,
            &format!("the router deployment/{}", router_name(service)),
            self.plan.ready_timeout,
        )
        .await?;
        update_service(cluster, service, |s| {
            routes::switch_patch(s, &router_labels)
        })
        .await?
        .ok_or_else(gone)?;

        // 3. The clone (a stale one of an earlier session with this name goes first).
        let selector = clone_selector(service, self.route_as);
        let ours = label_value(&self.plan.session);
        for stale in api::<Deployment>(cluster)
            .list(&ListParams::default().labels(&label_selector(&selector)))
            .await
            .map_err(|e| api_error(cluster, e, "list", "deployments"))?
            .items
        {
            let session = stale
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SESSION));
            if session != Some(&ours) {
                if let Some(name) = &stale.metadata.name {
                    delete::<Deployment>(cluster, name).await?;
                }
            }
        }
        let swap = self.plan.swap_plan();
        let deployment = clone_deployment(
            self.source,
            service,
            self.route_as,
            &swap,
            self.owner.clone(),
        );
        let clone = deployment.metadata.name.clone().unwrap_or_default();
        create(cluster, &deployment).await?;

        // 4. Ingress copies.
        let mut copies = Vec::new();
        for original in api::<Ingress>(cluster)
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error(cluster, e, "list", "ingresses"))?
            .items
        {
            if routes::made_by_kbridge(original.metadata.labels.as_ref())
                || !ingress::backs_service(&original, service)
            {
                continue;
            }
            if let Some(copy) = ingress::ingress_copy(
                &original,
                self.route_as,
                service,
                &self.plan.session,
                self.owner.clone(),
            ) {
                create(cluster, &copy).await?;
                copies.push(ingress::describe(&copy));
            }
        }

        // 5. The clone's agent Ready.
        let container = self.source.target.container.name.clone();
        let plan = self.plan;
        let clone_pods = wait_ready(
            cluster,
            &selector,
            |pod| runs_our_agent(pod, &container, &plan.agent_image, &plan.token_secret),
            &format!("the clone deployment/{clone}"),
            plan.ready_timeout,
        )
        .await?;
        Ok(Isolation {
            route_as: self.route_as.to_string(),
            session: plan.session.clone(),
            service: service.to_string(),
            clone,
            clone_selector: selector,
            clone_pods,
            router: router_name(service),
            origin: origin_name(service),
            url: ingress::url(&copies),
            ingresses: copies,
        })
    }
}

/// A pod as far as [`wait_ready`] is concerned: ready (and the right one), or why not.
fn pod_state(pod: &Pod, wanted: &impl Fn(&Pod) -> bool) -> Option<(String, Result<(), String>)> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let name = pod.metadata.name.clone()?;
    if !wanted(pod) {
        return Some((name, Err("an older pod of another session".into())));
    }
    if is_ready(pod) {
        return Some((name, Ok(())));
    }
    let status = pod.status.as_ref();
    let why = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .find_map(|c| {
            let state = c.state.as_ref()?;
            state
                .waiting
                .as_ref()
                .map(|w| {
                    format!(
                        "{}{}",
                        w.reason.clone().unwrap_or_default(),
                        w.message
                            .as_ref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    )
                })
                .or_else(|| {
                    state
                        .terminated
                        .as_ref()
                        .map(|t| format!("terminated ({})", t.reason.clone().unwrap_or_default()))
                })
        })
        .or_else(|| status.and_then(|s| s.phase.clone()))
        .unwrap_or_else(|| "not ready".into());
    Some((name, Err(why)))
}

/// Watches the pods labelled `labels` until one that `wanted` accepts is Ready; returns
/// the Ready ones. On timeout the error says what each pod waits for, with its events.
async fn wait_ready(
    cluster: &Cluster,
    labels: &Labels,
    wanted: impl Fn(&Pod) -> bool,
    what: &str,
    timeout: Duration,
) -> Result<Vec<String>, ClusterError> {
    let pods = api::<Pod>(cluster);
    let config = watcher::Config::default().labels(&label_selector(labels));
    let mut stream = watcher::watcher(pods, config).boxed();
    let mut seen: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    let mut initial = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let event = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(error))) => {
                tracing::warn!(%error, "pod watch error; the watcher retries");
                continue;
            }
            Ok(None) => {
                return Err(ClusterError::Unsupported(
                    "the pod watch ended unexpectedly".into(),
                ))
            }
            Err(_) => return Err(not_ready(cluster, what, &seen, timeout).await),
        };
        match event {
            WatchEvent::Init => initial.clear(),
            WatchEvent::InitApply(pod) => {
                if let Some((name, state)) = pod_state(&pod, &wanted) {
                    initial.insert(name, state);
                }
            }
            WatchEvent::InitDone => seen = std::mem::take(&mut initial),
            WatchEvent::Apply(pod) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                match pod_state(&pod, &wanted) {
                    Some((_, state)) => seen.insert(name, state),
                    None => seen.remove(&name),
                };
            }
            WatchEvent::Delete(pod) => {
                seen.remove(&pod.metadata.name.clone().unwrap_or_default());
            }
        }
        let ready: Vec<String> = seen
            .iter()
            .filter(|(_, s)| s.is_ok())
            .map(|(n, _)| n.clone())
            .collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
    }
}

async fn not_ready(
    cluster: &Cluster,
    what: &str,
    seen: &BTreeMap<String, Result<(), String>>,
    timeout: Duration,
) -> ClusterError {
    let events = api::<Event>(cluster);
    let mut lines = Vec::new();
    for (pod, state) in seen {
        let mut line = format!(
            "pod {pod}: {}",
            state.clone().err().unwrap_or_else(|| "ready".into())
        );
        let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
        if let Ok(list) = events.list(&params).await {
            for event in list.items.iter().rev().take(3) {
                line.push_str(&format!(
                    "\n    {} {}: {}",
                    event.type_.clone().unwrap_or_default(),
                    event.reason.clone().unwrap_or_default(),
                    event.message.clone().unwrap_or_default()
                ));
            }
        }
        lines.push(line);
    }
    ClusterError::Unsupported(format!(
        "{what} was not ready after {}s:\n{}\nkbridge undid the isolation; check the agent image (`bridge.agentImage`) and the events above",
        timeout.as_secs(),
        if lines.is_empty() {
            "no pods were created".to_string()
        } else {
            lines.join("\n")
        }
    ))
}

/// What [`leave`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveOutcome {
    /// The session whose route was removed, if one was registered.
    pub removed: Option<String>,
    /// Whether it was the last one: the Service's selector is back and the router gone.
    pub last: bool,
}

/// Ends `route_as`'s isolation of `service` (only `session`'s, when given): its clone and
/// Ingress copies are deleted and it is removed from the Service; the last session out
/// puts the original selector back exactly and deletes the router and the origin Service.
/// Works from the cluster's state alone: safe twice, after a crash, or for a join that
/// failed halfway.
pub async fn leave(
    cluster: &Cluster,
    service: &str,
    route_as: &str,
    session: Option<&str>,
) -> Result<LeaveOutcome, ClusterError> {
    let mut labels = clone_selector(service, route_as);
    if let Some(session) = session {
        labels.insert(LABEL_SESSION.into(), label_value(session));
    }
    for name in names_with::<Deployment>(cluster, &labels).await? {
        delete::<Deployment>(cluster, &name).await?;
    }
    for name in names_with::<Ingress>(cluster, &labels).await? {
        delete::<Ingress>(cluster, &name).await?;
    }
    let mut plan = None;
    let after = update_service(cluster, service, |s| {
        let decided = routes::leave_patch(s, route_as, session)?;
        let patch = decided.patch.clone();
        plan = Some(decided);
        Ok(patch)
    })
    .await?;
    let (removed, last) = match (&after, plan) {
        (None, _) => (None, true),
        (Some(_), Some(plan)) => (plan.removed, plan.last),
        (Some(_), None) => (None, false),
    };
    if last {
        remove_router(cluster, service).await?;
    }
    Ok(LeaveOutcome { removed, last })
}

/// Deletes the router of `service` and its origin Service, unless a session joined
/// meanwhile.
async fn remove_router(cluster: &Cluster, service: &str) -> Result<(), ClusterError> {
    let current = api::<Service>(cluster)
        .get_opt(service)
        .await
        .map_err(|e| api_error(cluster, e, "get", "services"))?;
    if !routes::router_removable(current.as_ref())? {
        return Ok(());
    }
    let name = router_name(service);
    delete::<Deployment>(cluster, &name).await?;
    delete::<Service>(cluster, &origin_name(service)).await?;
    delete::<RoleBinding>(cluster, &name).await?;
    delete::<Role>(cluster, &name).await?;
    delete::<ServiceAccount>(cluster, &name).await?;
    Ok(())
}

/// An isolated Service, for `kbridge status` and `kbridge restore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolatedService {
    /// The Service.
    pub service: String,
    /// Route name → session id (empty for a router left behind by a crash).
    pub sessions: BTreeMap<String, String>,
    /// The selector it will get back.
    pub original_selector: Option<Labels>,
    /// Route names of the clones that exist (`kbridge.dev/route-as`).
    pub clones: Vec<String>,
}

/// The Services of the namespace that are isolated, with their sessions; also those
/// with a router or clones but no record (a join or leave cut short), which [`leave_all`]
/// cleans up.
pub async fn isolated(cluster: &Cluster) -> Result<Vec<IsolatedService>, ClusterError> {
    let entry = |name: &str| IsolatedService {
        service: name.to_string(),
        sessions: BTreeMap::new(),
        original_selector: None,
        clones: Vec::new(),
    };
    let mut result: BTreeMap<String, IsolatedService> = BTreeMap::new();
    for service in api::<Service>(cluster)
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(cluster, e, "list", "services"))?
        .items
    {
        let name = service.metadata.name.clone().unwrap_or_default();
        let Ok(state) = state_of(&service) else {
            continue;
        };
        if state.sessions.is_empty() && state.original_selector.is_none() {
            continue;
        }
        let mut item = entry(&name);
        item.sessions = state.sessions;
        item.original_selector = state.original_selector;
        result.insert(name, item);
    }
    for router in api::<Deployment>(cluster)
        .list_metadata(&ListParams::default().labels(LABEL_ROUTER_FOR))
        .await
        .map_err(|e| api_error(cluster, e, "list", "deployments"))?
        .items
    {
        if let Some(svc) = router
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_ROUTER_FOR))
        {
            let item = result.get(svc).cloned().unwrap_or_else(|| entry(svc));
            result.insert(svc.clone(), item);
        }
    }
    for clone in api::<Deployment>(cluster)
        .list_metadata(&ListParams::default().labels(LABEL_ROUTE_FOR))
        .await
        .map_err(|e| api_error(cluster, e, "list", "deployments"))?
        .items
    {
        let labels = clone.metadata.labels.unwrap_or_default();
        if let (Some(svc), Some(route)) = (labels.get(LABEL_ROUTE_FOR), labels.get(LABEL_ROUTE_AS))
        {
            let mut item = result.get(svc).cloned().unwrap_or_else(|| entry(svc));
            if !item.clones.contains(route) {
                item.clones.push(route.clone());
            }
            result.insert(svc.clone(), item);
        }
    }
    Ok(result.into_values().collect())
}

/// Ends every session's isolation of `service` and removes its router (`kbridge restore`);
/// returns the route names removed.
pub async fn leave_all(cluster: &Cluster, service: &str) -> Result<Vec<String>, ClusterError> {
    let found = isolated(cluster)
        .await?
        .into_iter()
        .find(|s| s.service == service);
    let Some(found) = found else {
        return Ok(Vec::new());
    };
    let mut routes: Vec<String> = found.sessions.keys().cloned().collect();
    for clone in found.clones {
        if !routes.contains(&clone) {
            routes.push(clone);
        }
    }
    for route in &routes {
        leave(cluster, service, route, None).await?;
    }
    if routes.is_empty() {
        // A router without sessions: put the Service back (if it was switched) and clean up.
        update_service(cluster, service, |s| {
            Ok(routes::leave_patch(s, "", None)?.patch)
        })
        .await?;
        remove_router(cluster, service).await?;
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use serde_json::json;

    fn target(service: Option<Service>) -> ResolvedTarget {
        ResolvedTarget {
            namespace: "todo".into(),
            kind: WorkloadKind::Deployment,
            name: "todo-api".into(),
            container: Container::default(),
            service,
            pods: vec![],
            pod_spec: PodSpec::default(),
            selector: BTreeMap::from([("app".into(), "todo-api".into())]),
            replicas: 2,
        }
    }

    fn service(name: &str, selector: Value, labels: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": selector}
        }))
        .expect("a service")
    }

    #[test]
    fn the_service_in_front_is_found_by_its_original_selector() {
        let labels = BTreeMap::from([("app".to_string(), "todo-api".to_string())]);
        let isolated = service(
            "todo-api",
            json!({"kbridge.dev/router-for": "todo-api"}),
            json!({}),
        );
        let mut isolated = isolated;
        isolated.metadata.annotations = Some(BTreeMap::from([(
            routes::ANNOTATION_ORIGINAL_SELECTOR.to_string(),
            r#"{"app":"todo-api"}"#.to_string(),
        )]));
        let origin = service(
            "todo-api-kbridge-origin",
            json!({"app": "todo-api"}),
            json!({"app.kubernetes.io/managed-by": "kbridge"}),
        );
        let other = service("stats-api", json!({"app": "stats-api"}), json!({}));
        let all = [origin.clone(), isolated.clone(), other.clone()];
        let found = service_for(&target(None), &all, &labels).expect("found");
        assert_eq!(found.metadata.name.as_deref(), Some("todo-api"));

        let err =
            service_for(&target(None), std::slice::from_ref(&other), &labels).expect_err("none");
        assert!(err.to_string().contains("needs a Service"), "{err}");
        let twin = service("todo-web", json!({"app": "todo-api"}), json!({}));
        let err = service_for(&target(None), &[isolated, twin], &labels).expect_err("two");
        assert!(err.to_string().contains("todo-api, todo-web"), "{err}");
        let named = service_for(&target(Some(other.clone())), &all, &labels).expect("named");
        assert_eq!(named.metadata.name.as_deref(), Some("stats-api"));
    }

    #[test]
    fn the_summary_names_the_header_and_the_url() {
        let isolation = Isolation {
            route_as: "alice".into(),
            session: "s".into(),
            service: "todo-api".into(),
            clone: "todo-api-kbridge-alice".into(),
            clone_selector: clone_selector("todo-api", "alice"),
            clone_pods: vec!["todo-api-kbridge-alice-1".into()],
            router: "todo-api-kbridge-router".into(),
            origin: "todo-api-kbridge-origin".into(),
            ingresses: vec![],
            url: Some("http://alice.todo.example.com/".into()),
        };
        let text = isolation.summary();
        assert!(text.contains("kubernetes-route-as: alice"), "{text}");
        assert!(text.contains("http://alice.todo.example.com/"), "{text}");
        let clone = isolation.clone_target(&target(None));
        assert_eq!(clone.name, "todo-api-kbridge-alice");
        assert_eq!(clone.replicas, 1);
        assert_eq!(clone.selector, isolation.clone_selector);
    }
}
