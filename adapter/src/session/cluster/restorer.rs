//! The in-cluster restorer (`docs/architecture.md`, "Crash safety", third layer): a Job per session running
//! `kbridge-agent restore-watch` under its own ServiceAccount, whose Role allows only what
//! putting this one workload back takes. Job, ServiceAccount, Role and RoleBinding are all
//! dependents of the session's Secret, so deleting the Secret — kbridge at teardown, or the
//! restorer itself once it has restored — removes every one of them.
//!
//! An isolated session (`docs/architecture.md`, "Isolation") gets one too ([`IsolationRestorerPlan`]): it watches the
//! clone's agent and, once it is orphaned, takes the session's route off the Service (the
//! last one out restores the selector and removes the router and the origin Service), then
//! deletes the Secret, which removes the clone and the Ingress copies as well.

use super::connection::Cluster;
use super::errors::ClusterError;
use super::pod_security;
use super::rbac::{rule, Identity};
use super::target::WorkloadKind;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec, Secret};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kbridge_protocol::contract::labels::{LABEL_MANAGED_BY, MANAGED_BY_KBRIDGE};
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

/// Everything the restorer needs to know about the session.
#[derive(Debug, Clone)]
pub struct RestorerPlan {
    /// Session id (the `kbridge.dev/session` annotation it must match).
    pub session: String,
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// The workload's name.
    pub name: String,
    /// Label selector of the agent pods (empty for a bare Pod).
    pub agent_selector: String,
    /// Image holding `kbridge-agent`.
    pub image: String,
    /// Seconds without kbridge before the workload is put back.
    pub idle_restore_secs: u64,
    /// The session's Lease.
    pub lease: String,
}

/// What the restorer of an isolated session needs to know.
#[derive(Debug, Clone)]
pub struct IsolationRestorerPlan {
    /// Session id (the value registered for `route_as` on the Service).
    pub session: String,
    /// The isolated Service.
    pub service: String,
    /// The session's route name.
    pub route_as: String,
    /// Label selector of the clone's pods (its agent).
    pub agent_selector: String,
    /// Image holding `kbridge-agent`.
    pub image: String,
    /// Seconds without kbridge before the session's isolation is ended.
    pub idle_restore_secs: u64,
}

/// How the names of restorers' objects begin.
pub const RESTORER_PREFIX: &str = "kbridge-restorer-";

/// The name shared by the restorer's Job, ServiceAccount, Role and RoleBinding.
pub fn restorer_name(session: &str) -> String {
    format!("{RESTORER_PREFIX}{}", session.replace(['_', '.'], "-"))
}

fn labels(session: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.into(), MANAGED_BY_KBRIDGE.into()),
        ("app.kubernetes.io/component".into(), "restorer".into()),
        (
            kbridge_protocol::contract::labels::LABEL_SESSION.into(),
            session.replace(['_', '.'], "-"),
        ),
    ])
}

/// The least privilege the restorer needs: read and patch (or, for a bare Pod, delete and
/// create) this one workload, find the agent pods, delete this session's Lease and Secret.
pub fn role_rules(plan: &RestorerPlan, secret: &str) -> Vec<PolicyRule> {
    let name = plan.name.as_str();
    let mut rules = match plan.kind {
        WorkloadKind::Pod => vec![
            rule("", "pods", &[name], &["get", "delete"]),
            // A Pod is created without a name check: RBAC cannot restrict `create` by name.
            rule("", "pods", &[], &["create"]),
        ],
        kind => vec![
            rule("apps", kind.resource(), &[name], &["get", "patch"]),
            rule("", "pods", &[], &["list"]),
        ],
    };
    rules.push(rule("", "secrets", &[secret], &["delete"]));
    rules.push(rule(
        "coordination.k8s.io",
        "leases",
        &[&plan.lease],
        &["delete"],
    ));
    rules
}

/// The least privilege the restorer of an isolated session needs, exactly what
/// `restore-watch --isolation` calls: read and patch the Service; list pods to find the
/// clone's agent; delete the origin Service, the router Deployment and its ServiceAccount,
/// Role and RoleBinding (the last session out), and this session's Secret (which takes the
/// clone and the Ingress copies with it).
pub fn isolation_role_rules(plan: &IsolationRestorerPlan, secret: &str) -> Vec<PolicyRule> {
    use kbridge_protocol::contract::isolation_record::{origin_name, router_name};
    let router = router_name(&plan.service);
    let rbac = "rbac.authorization.k8s.io";
    vec![
        rule("", "services", &[&plan.service], &["get", "patch"]),
        rule("", "services", &[&origin_name(&plan.service)], &["delete"]),
        rule("", "pods", &[], &["list"]),
        rule("apps", "deployments", &[&router], &["delete"]),
        rule("", "serviceaccounts", &[&router], &["delete"]),
        rule(rbac, "roles", &[&router], &["delete"]),
        rule(rbac, "rolebindings", &[&router], &["delete"]),
        rule("", "secrets", &[secret], &["delete"]),
    ]
}

fn env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// Creates the restorer's objects, each owned by `secret`. Idempotent per session: an
/// object that already exists (a retried start) is left as it is.
pub async fn create(
    cluster: &Cluster,
    plan: &RestorerPlan,
    secret: &Secret,
) -> Result<(), ClusterError> {
    let secret_name = secret.metadata.name.clone().unwrap_or_default();
    let vars = vec![
        env(
            "KBRIDGE_RESTORE_WORKLOAD",
            format!("{}/{}", plan.kind.name(), plan.name),
        ),
        env("KBRIDGE_RESTORE_LEASE", plan.lease.clone()),
    ];
    let common = Common {
        session: &plan.session,
        image: &plan.image,
        agent_selector: &plan.agent_selector,
        idle_restore_secs: plan.idle_restore_secs,
    };
    let rules = role_rules(plan, &secret_name);
    create_objects(cluster, &common, rules, vars, secret).await
}

/// Creates the restorer of an isolated session (`restore-watch --isolation SVC/NAME`),
/// each object owned by `secret`; idempotent like [`create`].
pub async fn create_for_isolation(
    cluster: &Cluster,
    plan: &IsolationRestorerPlan,
    secret: &Secret,
) -> Result<(), ClusterError> {
    let secret_name = secret.metadata.name.clone().unwrap_or_default();
    let vars = vec![env(
        "KBRIDGE_RESTORE_ISOLATION",
        format!("{}/{}", plan.service, plan.route_as),
    )];
    let common = Common {
        session: &plan.session,
        image: &plan.image,
        agent_selector: &plan.agent_selector,
        idle_restore_secs: plan.idle_restore_secs,
    };
    let rules = isolation_role_rules(plan, &secret_name);
    create_objects(cluster, &common, rules, vars, secret).await
}

/// What both kinds of restorer are told the same way.
struct Common<'a> {
    session: &'a str,
    image: &'a str,
    agent_selector: &'a str,
    idle_restore_secs: u64,
}

/// The ServiceAccount, Role, RoleBinding and Job of a restorer running `restore-watch`
/// with the common settings plus `vars`, each owned by `secret`.
async fn create_objects(
    cluster: &Cluster,
    common: &Common<'_>,
    rules: Vec<PolicyRule>,
    mut vars: Vec<EnvVar>,
    secret: &Secret,
) -> Result<(), ClusterError> {
    let (session, image) = (common.session, common.image);
    let name = restorer_name(session);
    let secret_name = secret.metadata.name.clone().unwrap_or_default();
    vars.extend([
        env("KBRIDGE_RESTORE_NAMESPACE", cluster.namespace.clone()),
        env(
            "KBRIDGE_RESTORE_AGENT_SELECTOR",
            common.agent_selector.to_string(),
        ),
        env("KBRIDGE_SESSION_ID", session.to_string()),
        env(
            "KBRIDGE_IDLE_RESTORE_SECS",
            common.idle_restore_secs.to_string(),
        ),
        env("KBRIDGE_RESTORE_SECRET", secret_name.clone()),
    ]);
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Secret".into(),
        name: secret_name,
        uid: secret.metadata.uid.clone().unwrap_or_default(),
        ..Default::default()
    };
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(labels(session)),
        owner_references: Some(vec![owner]),
        ..Default::default()
    };
    let identity = Identity::new(&meta, rules);
    let job = Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(20),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(session)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.clone()),
                    restart_policy: Some("OnFailure".into()),
                    // Not a service of the application: no service links in its environment.
                    enable_service_links: Some(false),
                    security_context: Some(pod_security::restricted_pod()),
                    containers: vec![Container {
                        name: "restorer".into(),
                        image: Some(image.to_string()),
                        args: Some(vec!["restore-watch".into()]),
                        env: Some(vars),
                        security_context: Some(pod_security::restricted_container()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    identity.create(cluster).await?;
    cluster.create_or_keep(&job).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(kind: WorkloadKind) -> RestorerPlan {
        RestorerPlan {
            session: "1764590000-123-42".into(),
            kind,
            name: "todo-api".into(),
            agent_selector: "app=todo-api".into(),
            image: "kbridge/agent:dev".into(),
            idle_restore_secs: 60,
            lease: "kbridge-deployment-todo-api".into(),
        }
    }

    #[test]
    fn the_role_names_every_object_it_may_change() {
        let rules = role_rules(&plan(WorkloadKind::Deployment), "kbridge-s");
        let patch = &rules[0];
        assert_eq!(
            patch.resources.as_deref(),
            Some(&["deployments".into()][..])
        );
        assert_eq!(
            patch.resource_names.as_deref(),
            Some(&["todo-api".into()][..])
        );
        assert_eq!(patch.verbs, ["get", "patch"]);
        // Nothing cluster-wide and nothing unnamed but listing pods.
        for r in &rules {
            assert!(!r.verbs.iter().any(|v| v == "*"));
            if r.resource_names.is_none() {
                assert_eq!(r.verbs, ["list"]);
            }
        }
        let pod_rules = role_rules(&plan(WorkloadKind::Pod), "kbridge-s");
        assert!(
            pod_rules
                .iter()
                .any(|r| r.verbs == ["create"]
                    && r.resources.as_deref() == Some(&["pods".into()][..]))
        );
    }

    #[test]
    fn an_isolated_sessions_role_names_only_its_service_router_and_secret() {
        let plan = IsolationRestorerPlan {
            session: "1764590000-123-42".into(),
            service: "todo-api".into(),
            route_as: "bob".into(),
            agent_selector: "kbridge.dev/route-for=todo-api,kbridge.dev/route-as=bob".into(),
            image: "kbridge/agent:dev".into(),
            idle_restore_secs: 60,
        };
        let rules = isolation_role_rules(&plan, "kbridge-s");
        let find = |resource: &str, verb: &str| -> Vec<String> {
            rules
                .iter()
                .filter(|r| r.resources.as_deref() == Some(&[resource.to_string()][..]))
                .filter(|r| r.verbs.iter().any(|v| v == verb))
                .flat_map(|r| r.resource_names.clone().unwrap_or_else(|| vec!["*".into()]))
                .collect()
        };
        assert_eq!(find("services", "get"), ["todo-api"]);
        assert_eq!(find("services", "patch"), ["todo-api"]);
        assert_eq!(find("services", "delete"), ["todo-api-kbridge-origin"]);
        for kind in ["deployments", "serviceaccounts", "roles", "rolebindings"] {
            assert_eq!(find(kind, "delete"), ["todo-api-kbridge-router"], "{kind}");
        }
        assert_eq!(find("secrets", "delete"), ["kbridge-s"]);
        assert_eq!(find("pods", "list"), ["*"]);
        for r in &rules {
            assert!(!r.verbs.iter().any(|v| v == "*" || v == "create"));
            if r.resource_names.is_none() {
                assert_eq!(r.verbs, ["list"]);
            }
        }
    }

    #[test]
    fn names_are_valid_object_names() {
        let name = restorer_name("1764590000-123.42_x");
        assert_eq!(name, "kbridge-restorer-1764590000-123-42-x");
    }
}
