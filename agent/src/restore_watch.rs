//! `kbridge-agent restore-watch`: the in-cluster restorer. It polls the agents' `/status` (every
//! replica) and the workload's `kbridge.dev/*` annotations, and puts the workload back — a
//! template patched, a bare Pod recreated — when the agents report "orphaned" (or stay
//! unreachable past the grace period), then removes the session's Lease and Secret.
//!
//! For an isolated session (`--isolation SERVICE/ROUTE_AS`; see `docs/architecture.md`, "Isolation") the agents are the
//! clone's, and "restoring" ends the session's isolation the way kbridge's own leave does,
//! with the same patches ([`kbridge_protocol::contract::isolation_record`]): the route is
//! removed from the Service (the last session out puts the original selector back and
//! deletes the router and the origin Service), then the session's Secret, and with it the
//! clone, the Ingress copies and the restorer's own objects.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use tokio_util::sync::CancellationToken;

use kbridge_protocol::contract::isolation_record::{
    decide_leave, leave_patch, origin_name, router_name, router_removable, IsolationRecordError,
    LeaveDecision,
};
use kbridge_protocol::contract::restore::{
    decide, original_pod, restore_patch, AgentObservation, Decision, RestoreError, RestoreRecord,
};
use kbridge_protocol::contract::WorkloadKind;
use kbridge_protocol::status::SessionState;
use serde_json::Value;

/// Errors that stop the restorer.
#[derive(Debug, thiserror::Error)]
pub enum RestoreWatchError {
    /// Bad command-line values.
    #[error("invalid restore-watch option: {0}")]
    Options(String),
    /// Kubernetes API failure.
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// In-cluster configuration could not be loaded.
    #[error("cannot load in-cluster credentials: {0}")]
    InCluster(String),
    /// The restore record is unusable.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The isolated Service's record is unusable.
    #[error(transparent)]
    Isolation(#[from] IsolationRecordError),
    /// The isolated Service kept changing under the restorer.
    #[error("service '{0}' kept changing while the restorer updated it")]
    Conflicts(String),
    /// Interrupted by a signal.
    #[error("interrupted before the session ended")]
    Cancelled,
}

/// Where the restorer finds the agent(s) whose health decides.
#[derive(Debug, Clone)]
pub enum AgentSource {
    /// One fixed `host:port` health endpoint.
    Address(String),
    /// Every running pod matching a label selector (all replicas of the workload), at this
    /// health port. A bare Pod target is found by name without a selector.
    Pods {
        /// Label selector (`app=todo-api,tier=web`); empty for a bare Pod.
        selector: String,
        /// The agents' health port.
        port: u16,
    },
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The agent(s) to ask.
    pub agents: AgentSource,
    /// Namespace of the workload.
    pub namespace: String,
    /// Workload as `kind/name` (`deployment/todo-api`, `statefulset/db`, `pod/solo`, …).
    pub workload: String,
    /// Session id the restorer was created for.
    pub session: String,
    /// Time between checks.
    pub interval: Duration,
    /// How long an unreachable agent is tolerated before restoring.
    pub unreachable_grace: Duration,
    /// The session's Lease, deleted after restoring.
    pub lease: Option<String>,
    /// The session's Secret, deleted after restoring. kbridge makes the restorer's Job,
    /// ServiceAccount, Role and RoleBinding dependents of it, so this also removes the
    /// restorer itself.
    pub secret: Option<String>,
}

/// What to watch for an isolated session.
#[derive(Debug, Clone)]
pub struct IsolationWatchOptions {
    /// The clone's agent(s) to ask.
    pub agents: AgentSource,
    /// Namespace of the Service.
    pub namespace: String,
    /// The isolated Service.
    pub service: String,
    /// The session's route name (`isolateAs`).
    pub route_as: String,
    /// Session id the restorer was created for (the value registered for `route_as`).
    pub session: String,
    /// Time between checks.
    pub interval: Duration,
    /// How long an unreachable agent is tolerated before leaving.
    pub unreachable_grace: Duration,
    /// The session's Secret, deleted after leaving: the clone, the Ingress copies and the
    /// restorer's Job, ServiceAccount, Role and RoleBinding are its dependents.
    pub secret: Option<String>,
}

/// The longest pause between checks while the API server does not answer.
const MAX_OUTAGE_PAUSE: Duration = Duration::from_secs(30);

/// Rides out an API server that stops answering (a control-plane upgrade, a network
/// partition): the restorer's job is not over when that happens. Checks that fail that
/// way are retried with a pause doubling up to [`MAX_OUTAGE_PAUSE`], logged when the
/// outage starts and when it ends; any other failure still ends the restorer.
struct ApiOutage {
    interval: Duration,
    pause: Duration,
    since: Option<Instant>,
}

impl ApiOutage {
    fn new(interval: Duration) -> ApiOutage {
        ApiOutage {
            interval,
            pause: interval,
            since: None,
        }
    }

    /// Takes a check's result: what it finished with, `None` to check again, or the
    /// error that ends the restorer.
    fn settle(
        &mut self,
        checked: Result<Option<String>, RestoreWatchError>,
    ) -> Result<Option<String>, RestoreWatchError> {
        match checked {
            Err(error) if is_transient(&error) => {
                if self.since.is_none() {
                    tracing::warn!(%error, "the API server does not answer; retrying with backoff");
                    self.since = Some(Instant::now());
                }
                self.pause = (self.pause * 2).min(MAX_OUTAGE_PAUSE.max(self.interval));
                Ok(None)
            }
            other => {
                if let Some(since) = self.since.take() {
                    tracing::info!(
                        after_secs = since.elapsed().as_secs(),
                        "the API server answers again"
                    );
                }
                self.pause = self.interval;
                other
            }
        }
    }

    /// After a check: what it finished with, or `None` once it is time for the next one
    /// (see [`ApiOutage::settle`]); an error ends the restorer, as does `cancel`.
    async fn after(
        &mut self,
        checked: Result<Option<String>, RestoreWatchError>,
        cancel: &CancellationToken,
    ) -> Result<Option<String>, RestoreWatchError> {
        if let Some(done) = self.settle(checked)? {
            return Ok(Some(done));
        }
        tokio::select! {
            _ = cancel.cancelled() => Err(RestoreWatchError::Cancelled),
            _ = tokio::time::sleep(self.pause) => Ok(None),
        }
    }
}

/// Whether an error means the API server did not answer, or answered "not now".
fn is_transient(error: &RestoreWatchError) -> bool {
    match error {
        RestoreWatchError::Kube(kube::Error::HyperError(_) | kube::Error::Service(_)) => true,
        RestoreWatchError::Kube(kube::Error::Api(status)) => {
            status.code >= 500 || status.code == 429
        }
        _ => false,
    }
}

/// How often a Service update that met a 409 Conflict is read and tried again.
const CONFLICT_RETRIES: usize = 10;

/// Watches with in-cluster credentials until the session ends or the workload is restored;
/// returns what happened.
pub async fn run(
    opts: WatchOptions,
    cancel: CancellationToken,
) -> Result<String, RestoreWatchError> {
    run_with_client(in_cluster_client()?, opts, cancel).await
}

/// A client with the pod's own ServiceAccount credentials.
fn in_cluster_client() -> Result<kube::Client, RestoreWatchError> {
    let config =
        kube::Config::incluster().map_err(|e| RestoreWatchError::InCluster(e.to_string()))?;
    Ok(kube::Client::try_from(config)?)
}

/// The workload as the restorer handles it.
enum Target {
    /// A controller's pod template, restored with a merge patch.
    Template(Api<DynamicObject>),
    /// A bare Pod, recreated.
    Pod(Api<Pod>),
}

/// Like [`run`], with a client built elsewhere (tests, or `kbridge restore` reusing the loop).
pub async fn run_with_client(
    client: kube::Client,
    opts: WatchOptions,
    cancel: CancellationToken,
) -> Result<String, RestoreWatchError> {
    let (kind, name) = opts.workload.split_once('/').ok_or_else(|| {
        RestoreWatchError::Options(format!(
            "workload '{}' is not KIND/NAME (e.g. deployment/todo-api)",
            opts.workload
        ))
    })?;
    let kind: WorkloadKind = kind.parse().map_err(|e| {
        RestoreWatchError::Options(format!("cannot restore {}: {e}", opts.workload))
    })?;
    let target = match kind.template_resource() {
        Some(ar) => Target::Template(Api::namespaced_with(client.clone(), &opts.namespace, &ar)),
        None => Target::Pod(Api::namespaced(client.clone(), &opts.namespace)),
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
    let mut agents = AgentsSeen::default();
    let mut api_outage = ApiOutage::new(opts.interval);
    loop {
        // One check; an API server that does not answer is waited out, not fatal.
        let checked = async {
            let seen = observe(&opts.agents, &pods, kind, name).await;
            let observation = agents.observed(seen);
            let object = target.read(name).await?;
            let annotations = object.as_ref().map(annotations_of);
            match decide(
                &opts.session,
                annotations.as_ref(),
                observation,
                opts.unreachable_grace,
            )? {
                Decision::Done(reason) => return Ok(Some(reason)),
                Decision::Wait => {}
                Decision::Restore(record) => {
                    let object = object.unwrap_or_default();
                    let annotations = annotations.unwrap_or_default();
                    if target.restore(name, &object, &record, &annotations).await? {
                        clean_up(&client, &opts).await;
                        return Ok(Some(format!(
                            "restored {} after session {} was orphaned",
                            opts.workload, record.session
                        )));
                    }
                    tracing::info!("workload changed while restoring; retrying");
                }
            }
            Ok::<_, RestoreWatchError>(None)
        }
        .await;
        if let Some(done) = api_outage.after(checked, &cancel).await? {
            return Ok(done);
        }
    }
}

impl Target {
    /// The object as JSON; `None` when it is gone.
    async fn read(&self, name: &str) -> Result<Option<Value>, kube::Error> {
        Ok(match self {
            Target::Template(api) => api
                .get_opt(name)
                .await?
                .map(|o| serde_json::to_value(&o).unwrap_or_default()),
            Target::Pod(api) => api
                .get_opt(name)
                .await?
                .map(|o| serde_json::to_value(&o).unwrap_or_default()),
        })
    }

    /// Puts the original container (or the original bare Pod) back; `false` when someone
    /// changed the object meanwhile, so it is looked at again rather than overwritten.
    async fn restore(
        &self,
        name: &str,
        object: &Value,
        record: &RestoreRecord,
        annotations: &BTreeMap<String, String>,
    ) -> Result<bool, RestoreWatchError> {
        match self {
            Target::Template(api) => {
                let patch = restore_patch(object, record)?;
                match api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Target::Pod(api) => {
                let original = original_pod(annotations)?;
                recreate_pod(api, name, object, &original).await
            }
        }
    }
}

/// How long the agents have been out of reach, across checks.
#[derive(Debug, Default)]
struct AgentsSeen {
    unreachable_since: Option<Instant>,
}

impl AgentsSeen {
    /// What one check of the agents saw (`None`: no agent answered), as the restore
    /// decision takes it: a state, or how long none has answered.
    fn observed(&mut self, seen: Option<SessionState>) -> AgentObservation {
        match seen {
            Some(state) => {
                self.unreachable_since = None;
                AgentObservation::State(state)
            }
            None => {
                let since = *self.unreachable_since.get_or_insert_with(Instant::now);
                AgentObservation::Unreachable(since.elapsed())
            }
        }
    }
}

/// An object's annotations (none when it has none).
fn annotations_of(object: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(
        object
            .pointer("/metadata/annotations")
            .cloned()
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// Like [`run`], for an isolated session: watches the clone's agents with in-cluster
/// credentials and ends the session's isolation once they are orphaned.
pub async fn run_isolation(
    opts: IsolationWatchOptions,
    cancel: CancellationToken,
) -> Result<String, RestoreWatchError> {
    run_isolation_with_client(in_cluster_client()?, opts, cancel).await
}

/// Like [`run_isolation`], with a client built elsewhere (tests).
pub async fn run_isolation_with_client(
    client: kube::Client,
    opts: IsolationWatchOptions,
    cancel: CancellationToken,
) -> Result<String, RestoreWatchError> {
    if let AgentSource::Pods { selector, .. } = &opts.agents {
        if selector.is_empty() {
            return Err(RestoreWatchError::Options(
                "an isolated session's restorer needs the clone's agent selector".into(),
            ));
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &opts.namespace);
    let mut agents = AgentsSeen::default();
    let mut api_outage = ApiOutage::new(opts.interval);
    loop {
        // One check; an API server that does not answer is waited out, not fatal.
        let checked = async {
            let seen = observe(&opts.agents, &pods, WorkloadKind::Deployment, "").await;
            let observation = agents.observed(seen);
            let service = services.get_opt(&opts.service).await?;
            match decide_leave(
                service.as_ref(),
                &opts.route_as,
                &opts.session,
                observation,
                opts.unreachable_grace,
            )? {
                LeaveDecision::Done(reason) => {
                    // The session's route is gone: kbridge left (and is deleting the Secret,
                    // and this restorer, itself), or an earlier run of this restorer was cut
                    // short after taking the route off. Finish what such a run left undone.
                    remove_router_if_unused(&client, &opts).await?;
                    delete_secret(&client, &opts).await;
                    return Ok(Some(reason));
                }
                LeaveDecision::Wait => {}
                LeaveDecision::Leave => {
                    let last = leave_isolation(&client, &opts).await?;
                    delete_secret(&client, &opts).await;
                    return Ok(Some(format!(
                        "ended the isolation of service {} as '{}' after session {} was orphaned{}",
                        opts.service,
                        opts.route_as,
                        opts.session,
                        if last {
                            "; it was the last one, so the service is back as it was"
                        } else {
                            ""
                        }
                    )));
                }
            }
            Ok::<_, RestoreWatchError>(None)
        }
        .await;
        if let Some(done) = api_outage.after(checked, &cancel).await? {
            return Ok(done);
        }
    }
}

/// Removes the session's route from the Service (resourceVersion-guarded, read again on a
/// 409); the last session out also puts the selector back and deletes the router and the
/// origin Service. Returns whether it was the last.
async fn leave_isolation(
    client: &kube::Client,
    opts: &IsolationWatchOptions,
) -> Result<bool, RestoreWatchError> {
    let services: Api<Service> = Api::namespaced(client.clone(), &opts.namespace);
    let mut last = None;
    for _ in 0..CONFLICT_RETRIES {
        let Some(service) = services.get_opt(&opts.service).await? else {
            last = Some(true);
            break;
        };
        let plan = leave_patch(&service, &opts.route_as, Some(&opts.session))?;
        let Some(patch) = plan.patch else {
            last = Some(plan.last);
            break;
        };
        match services
            .patch(
                &opts.service,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                last = Some(plan.last);
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let last = last.ok_or_else(|| RestoreWatchError::Conflicts(opts.service.clone()))?;
    if last {
        remove_router_if_unused(client, opts).await?;
    }
    Ok(last)
}

/// Deletes the router Deployment, its ServiceAccount, Role and RoleBinding and the origin
/// Service, unless a session is registered on the Service (one joined meanwhile).
async fn remove_router_if_unused(
    client: &kube::Client,
    opts: &IsolationWatchOptions,
) -> Result<(), RestoreWatchError> {
    let services: Api<Service> = Api::namespaced(client.clone(), &opts.namespace);
    let current = services.get_opt(&opts.service).await?;
    if !router_removable(current.as_ref())? {
        return Ok(());
    }
    let ns = &opts.namespace;
    let name = router_name(&opts.service);
    delete_quietly(&Api::<Deployment>::namespaced(client.clone(), ns), &name).await?;
    delete_quietly(&services, &origin_name(&opts.service)).await?;
    delete_quietly(&Api::<RoleBinding>::namespaced(client.clone(), ns), &name).await?;
    delete_quietly(&Api::<Role>::namespaced(client.clone(), ns), &name).await?;
    delete_quietly(
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        &name,
    )
    .await?;
    Ok(())
}

/// Deletes the session's Secret in the background, and with it the clone, the Ingress
/// copies and this restorer's objects. A failure is logged: the route is gone already.
async fn delete_secret(client: &kube::Client, opts: &IsolationWatchOptions) {
    if let Some(secret) = &opts.secret {
        let api: Api<Secret> = Api::namespaced(client.clone(), &opts.namespace);
        if let Err(error) = delete_quietly(&api, secret).await {
            tracing::warn!(%error, %secret, "cannot delete the session's secret");
        }
    }
}

/// Deletes `name` in the background; one already gone is fine.
async fn delete_quietly<K>(api: &Api<K>, name: &str) -> Result<(), RestoreWatchError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The most alive state any agent reports (one active replica keeps the session), or `None`
/// when no agent answers.
async fn observe(
    source: &AgentSource,
    pods: &Api<Pod>,
    kind: WorkloadKind,
    name: &str,
) -> Option<SessionState> {
    let addresses: Vec<String> = match source {
        AgentSource::Address(a) => vec![a.clone()],
        AgentSource::Pods { selector, port } => {
            let found: Vec<Pod> = if selector.is_empty() && kind == WorkloadKind::Pod {
                pods.get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .into_iter()
                    .collect()
            } else {
                match pods.list(&ListParams::default().labels(selector)).await {
                    Ok(list) => list.items,
                    Err(error) => {
                        tracing::info!(%error, "cannot list the agent pods");
                        Vec::new()
                    }
                }
            };
            found
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                .map(|ip| format!("{ip}:{port}"))
                .collect()
        }
    };
    let mut best: Option<SessionState> = None;
    for address in addresses {
        match crate::health::fetch_status(&address).await {
            Ok(status) => {
                best = Some(match (best, status.state) {
                    (Some(SessionState::Active), _) | (_, SessionState::Active) => {
                        SessionState::Active
                    }
                    (Some(SessionState::Idle), _) | (_, SessionState::Idle) => SessionState::Idle,
                    _ => SessionState::Orphaned,
                })
            }
            Err(error) => tracing::info!(agent = %address, %error, "agent unreachable"),
        }
    }
    best
}

/// Deletes the agent Pod and creates `original` in its place. `false` when the Pod changed
/// under us (uid precondition), so the caller looks again.
async fn recreate_pod(
    api: &Api<Pod>,
    name: &str,
    current: &serde_json::Value,
    original: &serde_json::Value,
) -> Result<bool, RestoreWatchError> {
    let uid = current
        .pointer("/metadata/uid")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    // A Pod's name is free only once it is gone (after its grace period, or a finalizer
    // someone else runs): looked at again after a pause that doubles up to 5 s.
    let mut pause = Duration::from_millis(200);
    while api.get_opt(name).await?.is_some() {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    let pod: Pod = serde_json::from_value(original.clone()).map_err(|e| {
        RestoreWatchError::Options(format!("the stored original pod is not a Pod: {e}"))
    })?;
    match api.create(&PostParams::default(), &pod).await {
        Ok(_) => Ok(true),
        // Someone (kbridge restore, the session itself) was quicker.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Removes the session's Lease and Secret (and with the Secret, by owner references, this
/// restorer's Job and its RBAC objects). Failures are logged: the workload is back already.
async fn clean_up(client: &kube::Client, opts: &WatchOptions) {
    if let Some(lease) = &opts.lease {
        let api: Api<Lease> = Api::namespaced(client.clone(), &opts.namespace);
        if let Err(error) = api.delete(lease, &DeleteParams::default()).await {
            tracing::warn!(%error, %lease, "cannot delete the session's lease");
        }
    }
    if let Some(secret) = &opts.secret {
        let api: Api<Secret> = Api::namespaced(client.clone(), &opts.namespace);
        if let Err(error) = api.delete(secret, &DeleteParams::background()).await {
            tracing::warn!(%error, %secret, "cannot delete the session's secret");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_outage_is_waited_out_with_a_growing_pause() {
        let mut outage = ApiOutage::new(Duration::from_secs(2));
        let refused = || {
            Err(RestoreWatchError::Kube(kube::Error::Service(
                "refused".into(),
            )))
        };
        let mut pauses = Vec::new();
        for _ in 0..6 {
            assert_eq!(outage.settle(refused()).expect("waited out"), None);
            pauses.push(outage.pause.as_secs());
        }
        assert_eq!(pauses, [4, 8, 16, 30, 30, 30]);
        assert_eq!(outage.settle(Ok(None)).expect("fine"), None);
        assert_eq!(outage.pause, Duration::from_secs(2), "back to the interval");
        let unavailable = kube::core::Status::failure("etcd", "ServiceUnavailable").with_code(503);
        assert_eq!(
            outage
                .settle(Err(RestoreWatchError::Kube(kube::Error::Api(Box::new(
                    unavailable
                )))))
                .expect("a 503 is waited out"),
            None
        );
        assert_eq!(
            outage.settle(Ok(Some("restored".into()))).expect("done"),
            Some("restored".into())
        );
    }

    #[test]
    fn other_failures_still_end_the_restorer() {
        let mut outage = ApiOutage::new(Duration::from_secs(2));
        let forbidden = kube::core::Status::failure("no", "Forbidden").with_code(403);
        assert!(outage
            .settle(Err(RestoreWatchError::Kube(kube::Error::Api(Box::new(
                forbidden
            )))))
            .is_err());
        assert!(outage
            .settle(Err(RestoreWatchError::Options("bad".into())))
            .is_err());
    }
}
