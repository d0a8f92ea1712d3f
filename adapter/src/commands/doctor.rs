//! `kbridge doctor`: what kbridge can find on this machine, and what to do about what
//! it cannot.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kbridge::debugger::{self, presets::install_hint};
use kbridge::image::push::resolve;
use kbridge::image::reference::ImageReference;
use kbridge::image::registry::RegistryError;
use kbridge::session::cluster::connection::Cluster;
use kbridge::session::cluster::setup::agent_image;
use kbridge::session::registry;
use kbridge_config::{DebuggerChoice, Preset};
use kube::api::{Api, PostParams};
use std::process::ExitCode;

use super::agent_versions;

/// What a session does in the namespace: (verb, group, resource).
const NEEDED: [(&str, &str, &str); 9] = [
    ("get", "", "services"),
    ("list", "", "pods"),
    ("watch", "", "pods"),
    ("create", "", "pods/portforward"),
    ("get", "apps", "deployments"),
    ("patch", "apps", "deployments"),
    ("create", "", "secrets"),
    ("create", "coordination.k8s.io", "leases"),
    ("list", "", "events"),
];

/// Checks the cluster of the current (or given) context: reachable, and may kbridge do
/// what a session needs there? Returns the cluster when it answered, and whether
/// everything passed.
async fn cluster_checks(context: Option<&str>, namespace: Option<&str>) -> (Option<Cluster>, bool) {
    println!("\nKubernetes:");
    let cluster = match Cluster::connect(context, namespace).await {
        Ok(cluster) => cluster,
        Err(error) => {
            println!("  missing  {error}");
            return (None, false);
        }
    };
    let allowed_all = access_checks(&cluster).await;
    (Some(cluster), allowed_all)
}

/// Reachable, and may kbridge do what a session needs in the namespace? Returns whether
/// both hold.
async fn access_checks(cluster: &Cluster) -> bool {
    let context = cluster
        .context
        .clone()
        .unwrap_or_else(|| "(in-cluster)".into());
    match cluster.client.apiserver_version().await {
        Ok(version) => println!(
            "  ok       context {context}: {} reachable (Kubernetes {}.{})",
            cluster.url, version.major, version.minor
        ),
        Err(error) => {
            println!(
                "  failed   context {context}: {} cannot be reached: {error}",
                cluster.url
            );
            return false;
        }
    }
    let reviews: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let mut allowed_all = true;
    for (verb, group, resource) in NEEDED {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (resource, None),
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(cluster.namespace.clone()),
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    subresource: subresource.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let what = match &subresource {
            Some(sub) => format!("{verb} {resource}/{sub}"),
            None => format!("{verb} {resource}"),
        };
        match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => {
                allowed_all = false;
                println!(
                    "  denied   {what} in namespace {} (ask for a Role that allows it)",
                    cluster.namespace
                );
            }
            Err(error) => {
                allowed_all = false;
                println!("  unknown  {what}: cannot ask the API server ({error})");
            }
        }
    }
    if allowed_all {
        println!(
            "  ok       RBAC: every permission a session needs in namespace {}",
            cluster.namespace
        );
    }
    allowed_all
}

/// Which agent image to check, and how to reach its registry.
#[derive(Debug, Clone, Default)]
pub struct ImageCheck {
    /// `--agent-image`; else `KBRIDGE_AGENT_IMAGE`, else the built-in default.
    pub image: Option<String>,
    /// `--insecure`: plain http to the registry.
    pub insecure: bool,
}

/// Checks that the agent image resolves in its registry (a `HEAD` of its manifest with
/// the user's registry credentials). Returns false when the registry says it cannot be
/// pulled; a registry this machine cannot reach is reported but passes, since the
/// cluster may reach registries this machine does not.
async fn agent_image_check(check: &ImageCheck) -> bool {
    println!("\nAgent image:");
    let image = agent_image(check.image.as_deref());
    let reference = match ImageReference::parse(&image) {
        Ok(reference) => reference,
        Err(error) => {
            println!("  invalid  {error}");
            return false;
        }
    };
    let fix = format!(
        "push it with `kbridge agent push {reference}`, or name an image the cluster can pull with --agent-image, `bridge.agentImage` or KBRIDGE_AGENT_IMAGE"
    );
    match resolve(&reference, check.insecure).await {
        Ok(Some(digest)) => {
            println!("  ok       {reference} resolves ({digest})");
            true
        }
        Ok(None) => {
            println!("  missing  {reference}: the registry has no such image; {fix}");
            false
        }
        Err(error @ RegistryError::Unreachable { .. }) => {
            println!("  unknown  {error}. The cluster may still reach it; if sessions cannot pull the agent, {fix}");
            true
        }
        Err(error) => {
            println!("  failed   {error}");
            false
        }
    }
}

/// Prints the checks; exit code 0 when a debugger is usable, the cluster and agent image
/// checks pass, and no session on this machine runs an agent of another version.
pub async fn run(context: Option<&str>, namespace: Option<&str>, image: &ImageCheck) -> ExitCode {
    println!("kbridge {}", env!("CARGO_PKG_VERSION"));
    println!("\nDebuggers:");
    let mut found = 0;
    for preset in Preset::ALL {
        match debugger::resolve(&DebuggerChoice::Preset(preset)) {
            Ok(spec) => {
                found += 1;
                let args = spec.args.join(" ");
                println!(
                    "  ok       {:<11} {} {args}",
                    preset.name(),
                    spec.program.display()
                );
            }
            Err(_) => println!(
                "  missing  {:<11} {}",
                preset.name(),
                install_hint(Some(preset))
            ),
        }
    }
    let (cluster, cluster_ok) = cluster_checks(context, namespace).await;
    let image_ok = agent_image_check(image).await;
    let sessions: Vec<_> = registry::list()
        .await
        .into_iter()
        .map(|(_, info)| info)
        .collect();
    let versions_ok = match &cluster {
        Some(cluster) if cluster_ok => agent_versions::check(cluster, &sessions).await,
        _ => true,
    };
    println!("\nLogs: {}", kbridge::session::state_root().display());
    if found == 0 {
        println!("\nNo debugger found: install one of the above.");
        return ExitCode::FAILURE;
    }
    if !cluster_ok {
        println!("\nThe cluster checks failed: see above. Local debugging (no `bridge` target) still works.");
        return ExitCode::FAILURE;
    }
    if !image_ok {
        println!("\nThe agent image check failed: see above.");
        return ExitCode::FAILURE;
    }
    if !versions_ok {
        println!("\nA session on this machine runs an agent of another version: see above.");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
