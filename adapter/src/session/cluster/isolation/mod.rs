//! Isolation (`isolateAs`; see `docs/architecture.md`, "Isolation"): only requests marked for this session come to it;
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

use super::connection::{Cluster, Namespaced};
use super::errors::{is_conflict, ClusterError};
use super::pod_wait::{self, runs_our_agent, AgentChecks, Explain, PodWait, Stopped};
use super::rbac::Identity;
use super::target::{choose_container, label_selector, resolve, ResolvedTarget, WorkloadKind};
use super::workload::SwapPlan;
use clone::{clone_deployment, clone_selector, workload_selector, CloneSource};
use ingress::IngressCopy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kbridge_config::Target;
use kbridge_protocol::contract::restore::RestoreRecord;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use names::{check_route_name, label_value, origin_name, router_name};
use routes::{state_of, Labels};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The header that routes a request to a session.
pub use kbridge_protocol::contract::agent_pod::ROUTE_HEADER;
/// The keys isolation puts on what it creates: the cluster contract's, which the router
/// and the in-cluster restorer read too.
pub use kbridge_protocol::contract::labels::{
    ANNOTATION_PREFIX, LABEL_MANAGED_BY, LABEL_ROUTER_FOR, LABEL_ROUTE_AS, LABEL_ROUTE_FOR,
    LABEL_SESSION,
};

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
            kept: Default::default(),
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

/// Deletes `name`; one that is already gone is fine.
async fn delete<K: Namespaced>(cluster: &Cluster, name: &str) -> Result<(), ClusterError> {
    cluster
        .delete_if_exists::<K>(name, &DeleteParams::background())
        .await
        .map(drop)
}

/// Names of the objects of kind `K` carrying `labels`.
async fn names_with<K: Namespaced>(
    cluster: &Cluster,
    labels: &Labels,
) -> Result<Vec<String>, ClusterError> {
    let list = cluster
        .api::<K>()
        .list_metadata(&ListParams::default().labels(&label_selector(labels)))
        .await
        .map_err(|e| cluster.error_of::<K>(e, "list"))?;
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
    let services = cluster.api::<Service>();
    for _ in 0..CONFLICT_RETRIES {
        let Some(service) = cluster.get_opt::<Service>(name).await? else {
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
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(cluster.error_of::<Service>(error, "patch")),
        }
    }
    Err(ClusterError::Conflict(format!(
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
            let object = cluster
                .dynamic_api(&resource)
                .get(&target.name)
                .await
                .map_err(|e| cluster.api_error(e, "get", target.kind.resource()))?;
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
            let pod = cluster
                .api::<Pod>()
                .get(&target.name)
                .await
                .map_err(|e| cluster.error_of::<Pod>(e, "get"))?;
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
        return Err(ClusterError::InvalidTarget(format!(
            "{} is kbridge's isolation router for service '{service}' (another session isolates it); name the application's workload instead (--workload KIND/NAME)",
            target.workload()
        )));
    }
    if routes::made_by_kbridge(object_labels.as_ref()) {
        return Err(ClusterError::InvalidTarget(format!(
            "{} was made by kbridge (a session's clone); name the application's workload instead",
            target.workload()
        )));
    }
    if let Ok(Some(held)) = RestoreRecord::from_annotations(&annotations) {
        return Err(ClusterError::Conflict(format!(
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
        [] => Err(ClusterError::InvalidTarget(format!(
            "isolation needs a Service in front of {}, and no Service in namespace '{}' selects its pods ({}); create one, or bridge without `isolateAs`",
            target.workload(),
            target.namespace,
            label_selector(template_labels)
        ))),
        several => Err(ClusterError::InvalidTarget(format!(
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
    let found = cluster.get_opt::<Service>(name).await?;
    let Some((service, original)) = found.and_then(|s| {
        let original = state_of(&s).ok()?.original_selector?;
        Some((s, original))
    }) else {
        return resolve(cluster, target, container).await;
    };
    let pod = cluster
        .list::<Pod>(&ListParams::default().labels(&label_selector(&original)))
        .await?
        .into_iter()
        .find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !routes::made_by_kbridge(p.metadata.labels.as_ref())
        })
        .ok_or_else(|| {
            ClusterError::InvalidTarget(format!(
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
    let found = cluster.get_opt::<Secret>(secret).await?;
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
    let services = cluster.list::<Service>(&ListParams::default()).await?;
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
    let services = cluster.list::<Service>(&ListParams::default()).await?;
    let service = service_for(target, &services, &template.labels)?;
    let service_name = service.metadata.name.clone().unwrap_or_default();
    // Everything that can be refused is checked before the first change.
    routes::register_patch(&service, route_as, &plan.session)?;
    let original = effective_selector(&service).ok_or_else(|| {
        ClusterError::InvalidTarget(format!(
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
    /// The steps of a join, in order.
    async fn run(&self) -> Result<Isolation, ClusterError> {
        let original = self.register().await?;
        self.start_router(&original).await?;
        let (clone, selector) = self.start_clone().await?;
        let copies = self.copy_ingresses().await?;
        let clone_pods = self.wait_for_clone(&clone, &selector).await?;
        let service = self.service;
        Ok(Isolation {
            route_as: self.route_as.to_string(),
            session: self.plan.session.clone(),
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

    /// The Service went away during the join.
    fn gone(&self) -> ClusterError {
        ClusterError::NotFound {
            kind: "service",
            name: self.service.to_string(),
            namespace: self.cluster.namespace.clone(),
            suggestion: None,
        }
    }

    /// Step 1, register first: a session that leaves meanwhile sees us and keeps the
    /// router. Returns the Service's original selector.
    async fn register(&self) -> Result<Labels, ClusterError> {
        let registered = update_service(self.cluster, self.service, |s| {
            routes::register_patch(s, self.route_as, &self.plan.session)
        })
        .await?
        .ok_or_else(|| self.gone())?;
        effective_selector(&registered).ok_or_else(|| self.gone())
    }

    /// Step 2, the router, ready before the Service points at it, so no request is lost.
    async fn start_router(&self, original: &Labels) -> Result<(), ClusterError> {
        let (cluster, service) = (self.cluster, self.service);
        let objects = router::router_objects(
            service,
            &cluster.namespace,
            original,
            self.ports,
            &self.plan.agent_image,
        );
        objects.identity.create(cluster).await?;
        cluster.create_or_keep(&objects.origin).await?;
        cluster.create_or_keep(&objects.deployment).await?;
        let router_labels = router::router_labels(service);
        let router = router_name(service);
        // The router is shared by the sessions on this Service: no session token to check.
        let checks = AgentChecks {
            kind: WorkloadKind::Deployment,
            workload: &router,
            container: router::CONTAINER,
            agent_image: &self.plan.agent_image,
            token_secret: None,
        };
        wait_ready(
            cluster,
            &router_labels,
            |_| true,
            checks,
            &format!("the router deployment/{router}"),
            self.plan.ready_timeout,
        )
        .await?;
        update_service(cluster, service, |s| {
            routes::switch_patch(s, &router_labels)
        })
        .await?
        .ok_or_else(|| self.gone())?;
        Ok(())
    }

    /// Step 3, the clone (a stale one of an earlier session with this name goes first).
    /// Returns its name and pod selector.
    async fn start_clone(&self) -> Result<(String, Labels), ClusterError> {
        let (cluster, service) = (self.cluster, self.service);
        let selector = clone_selector(service, self.route_as);
        let ours = label_value(&self.plan.session);
        for stale in cluster
            .list::<Deployment>(&ListParams::default().labels(&label_selector(&selector)))
            .await?
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
        cluster.create_or_keep(&deployment).await?;
        Ok((clone, selector))
    }

    /// Step 4, copies of the Ingresses that back the Service, their hosts prefixed with
    /// the route name.
    async fn copy_ingresses(&self) -> Result<Vec<ingress::IngressCopy>, ClusterError> {
        let mut copies = Vec::new();
        for original in self.cluster.list::<Ingress>(&ListParams::default()).await? {
            if routes::made_by_kbridge(original.metadata.labels.as_ref())
                || !ingress::backs_service(&original, self.service)
            {
                continue;
            }
            if let Some(copy) = ingress::ingress_copy(
                &original,
                self.route_as,
                self.service,
                &self.plan.session,
                self.owner.clone(),
            ) {
                self.cluster.create_or_keep(&copy).await?;
                copies.push(ingress::describe(&copy));
            }
        }
        Ok(copies)
    }

    /// Step 5, the clone's agent Ready. Returns its pods.
    async fn wait_for_clone(
        &self,
        clone: &str,
        selector: &Labels,
    ) -> Result<Vec<String>, ClusterError> {
        let container = self.source.target.container.name.as_str();
        let plan = self.plan;
        let checks = AgentChecks {
            kind: WorkloadKind::Deployment,
            workload: clone,
            container,
            agent_image: &plan.agent_image,
            token_secret: Some(&plan.token_secret),
        };
        wait_ready(
            self.cluster,
            selector,
            |pod| runs_our_agent(pod, container, &plan.agent_image, &plan.token_secret),
            checks,
            &format!("the clone deployment/{clone}"),
            plan.ready_timeout,
        )
        .await
    }
}

/// Watches the pods labelled `labels` until one that `wanted` accepts is Ready; returns
/// the Ready ones. An agent image the cluster cannot pull, or pods their controller may not
/// create, end the wait at once (`checks`); on timeout the error says what each pod waits
/// for, with its events.
async fn wait_ready(
    cluster: &Cluster,
    labels: &Labels,
    wanted: impl Fn(&Pod) -> bool + Send + Sync,
    checks: AgentChecks<'_>,
    what: &str,
    timeout: Duration,
) -> Result<Vec<String>, ClusterError> {
    let wait = PodWait {
        selector: label_selector(labels),
        ours: &wanted,
        explain: Explain::AnyContainer,
        wanted: 1,
        exclusive: false,
        agent: Some(checks),
        timeout,
    };
    match pod_wait::wait(cluster, &wait, |_| {}).await {
        Ok(ready) => Ok(ready),
        Err(Stopped::Failed(error)) => Err(error),
        Err(Stopped::TimedOut(seen)) => {
            let pods = seen.into_values().map(|p| {
                let why = if !p.ours {
                    "an older pod of another session".to_string()
                } else if p.ready {
                    "ready".to_string()
                } else {
                    p.waiting.unwrap_or_else(|| "not ready".into())
                };
                (p.name, why)
            });
            Err(ClusterError::Timeout(format!(
                "{what} was not ready after {}s:\n{}\nkbridge undid the isolation; check the agent image (`bridge.agentImage`) and the events above",
                timeout.as_secs(),
                pod_wait::stuck_report(cluster, pods).await
            )))
        }
    }
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
    let current = cluster.get_opt::<Service>(service).await?;
    if !routes::router_removable(current.as_ref())? {
        return Ok(());
    }
    let name = router_name(service);
    delete::<Deployment>(cluster, &name).await?;
    delete::<Service>(cluster, &origin_name(service)).await?;
    Identity::delete(cluster, &name).await
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
    for service in cluster.list::<Service>(&ListParams::default()).await? {
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
    for router in cluster
        .api::<Deployment>()
        .list_metadata(&ListParams::default().labels(LABEL_ROUTER_FOR))
        .await
        .map_err(|e| cluster.error_of::<Deployment>(e, "list"))?
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
    for clone in cluster
        .api::<Deployment>()
        .list_metadata(&ListParams::default().labels(LABEL_ROUTE_FOR))
        .await
        .map_err(|e| cluster.error_of::<Deployment>(e, "list"))?
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
