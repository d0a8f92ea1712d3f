//! `kbridge doctor`: what kbridge can find on this machine, and what to do about what
//! it cannot.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kbridge::debugger::{self, presets::install_hint};
use kbridge::image::push::resolve;
use kbridge::image::reference::ImageReference;
use kbridge::image::registry::RegistryError;
use kbridge::jsonc;
use kbridge::session::cluster::connection::Cluster;
use kbridge::session::cluster::setup::agent_image;
use kbridge::session::registry;
use kbridge_config::{DebuggerChoice, LaunchConfig, Preset};
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::path::Path;
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
    /// `--agent-image`; else the images `.vscode/launch.json` names, else
    /// `KBRIDGE_AGENT_IMAGE`, else the built-in default.
    pub image: Option<String>,
    /// `--insecure`: plain http to the image's registry.
    pub insecure: bool,
}

/// Where the project's debug configurations are, relative to the working directory.
const LAUNCH_JSON: &str = ".vscode/launch.json";

/// The agent images a session would use: `--agent-image` if given; else each image the
/// `type: bridge` configurations of `.vscode/launch.json` name (`bridge.agentImage`,
/// nested or flat), with the configurations that name it, and the default image if some
/// bridged configuration names none (or there is no launch.json).
fn images_to_check(check: &ImageCheck, dir: &Path) -> Vec<(String, String)> {
    if let Some(image) = &check.image {
        return vec![(image.clone(), "--agent-image".into())];
    }
    let (named, unnamed) = launch_json_images(&dir.join(LAUNCH_JSON));
    let mut images: Vec<(String, String)> = named
        .into_iter()
        .map(|(image, configs)| (image, format!("{LAUNCH_JSON}: {}", configs.join(", "))))
        .collect();
    if images.is_empty() || !unnamed.is_empty() {
        let why = match std::env::var("KBRIDGE_AGENT_IMAGE") {
            Ok(v) if !v.trim().is_empty() => "KBRIDGE_AGENT_IMAGE",
            _ => "the default",
        };
        let why = match unnamed.is_empty() {
            true => why.to_string(),
            false => format!("{why}, for {LAUNCH_JSON}: {}", unnamed.join(", ")),
        };
        images.push((agent_image(None), why));
    }
    images
}

/// Configuration names by the agent image they name, and the bridged configurations that
/// name none. A missing file is no configuration; an unreadable or invalid one is said and
/// skipped, since doctor checks what it can.
fn launch_json_images(path: &Path) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut named: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unnamed = Vec::new();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return (named, unnamed),
        Err(error) => {
            println!("  unknown  {}: cannot read it ({error})", path.display());
            return (named, unnamed);
        }
    };
    let document = match jsonc::parse(&text) {
        Ok(Some(node)) => node.to_value(),
        Ok(None) => return (named, unnamed),
        Err(error) => {
            println!(
                "  unknown  {}: {error}; its agent images are not checked",
                path.display()
            );
            return (named, unnamed);
        }
    };
    let configurations = document["configurations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (index, arguments) in configurations.iter().enumerate() {
        if arguments["type"] != "bridge" {
            continue;
        }
        let name = arguments["name"].as_str().map_or_else(
            || format!("configuration {}", index + 1),
            |n| format!("'{n}'"),
        );
        match LaunchConfig::from_arguments(arguments) {
            Ok(config) => match config.bridge.and_then(|b| b.agent_image) {
                Some(image) => named.entry(image).or_default().push(name),
                None => unnamed.push(name),
            },
            Err(error) => println!("  invalid  {}: {name}: {error}", path.display()),
        }
    }
    (named, unnamed)
}

/// Checks that each agent image a session would use resolves in its registry (see
/// [`images_to_check`]); returns whether all did.
async fn agent_image_checks(check: &ImageCheck) -> bool {
    println!("\nAgent image:");
    let dir = std::env::current_dir().unwrap_or_default();
    let mut all_ok = true;
    for (image, why) in images_to_check(check, &dir) {
        all_ok &= agent_image_check(&image, &why, check.insecure).await;
    }
    all_ok
}

/// Checks that `image` (named by `why`) resolves in its registry (a `HEAD` of its manifest
/// with the user's registry credentials). Returns false when the registry says it cannot
/// be pulled; a registry this machine cannot reach is reported but passes, since the
/// cluster may reach registries this machine does not.
async fn agent_image_check(image: &str, why: &str, insecure: bool) -> bool {
    let reference = match ImageReference::parse(image) {
        Ok(reference) => reference,
        Err(error) => {
            println!("  invalid  {error} (from {why})");
            return false;
        }
    };
    let fix = format!(
        "push it with `kbridge agent push {reference}`, or name an image the cluster can pull with --agent-image, `bridge.agentImage` or KBRIDGE_AGENT_IMAGE"
    );
    match resolve(&reference, insecure).await {
        Ok(Some(digest)) => {
            println!("  ok       {reference} resolves ({digest}) (from {why})");
            true
        }
        Ok(None) => {
            println!("  missing  {reference} (from {why}): the registry has no such image; {fix}");
            false
        }
        Err(error @ RegistryError::Unreachable { .. }) => {
            println!("  unknown  {error} (from {why}). The cluster may still reach it; if sessions cannot pull the agent, {fix}");
            true
        }
        Err(error) => {
            println!("  failed   {error} (from {why})");
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
    let image_ok = agent_image_checks(image).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("kbridge-doctor-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch dir");
            Scratch(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn project(tag: &str, launch_json: &str) -> Scratch {
        let dir = Scratch::new(tag);
        std::fs::create_dir_all(dir.path().join(".vscode")).expect(".vscode");
        std::fs::write(dir.path().join(LAUNCH_JSON), launch_json).expect("launch.json");
        dir
    }

    #[test]
    fn the_flag_wins_over_launch_json() {
        let dir = project(
            "flag",
            r#"{"configurations": [{"type": "bridge", "name": "a", "bridge": {"agentImage": "r/a:1"}}]}"#,
        );
        let check = ImageCheck {
            image: Some("r/flag:1".into()),
            insecure: false,
        };
        assert_eq!(
            images_to_check(&check, dir.path()),
            [("r/flag:1".to_string(), "--agent-image".to_string())]
        );
    }

    #[test]
    fn each_image_launch_json_names_is_checked_with_its_configurations() {
        let dir = project(
            "each",
            r#"{
              // JSONC, as VS Code writes it
              "configurations": [
                {"type": "bridge", "name": "api", "bridge": {"service": "a", "agentImage": "r/agent:1"}},
                {"type": "bridge", "name": "helix", "bridge.service": "b", "bridge.agentImage": "r/agent:1"},
                {"type": "bridge", "name": "worker", "bridge": {"service": "c", "agentImage": "r/agent:2"}},
                {"type": "python", "name": "not bridged", "bridge": {"agentImage": "r/ignored:0"}},
              ]
            }"#,
        );
        let images = images_to_check(&ImageCheck::default(), dir.path());
        assert_eq!(
            images,
            [
                (
                    "r/agent:1".to_string(),
                    format!("{LAUNCH_JSON}: 'api', 'helix'")
                ),
                ("r/agent:2".to_string(), format!("{LAUNCH_JSON}: 'worker'")),
            ]
        );
    }

    #[test]
    fn a_configuration_without_an_image_adds_the_default() {
        let dir = project(
            "default",
            r#"{"configurations": [
                {"type": "bridge", "name": "api", "bridge": {"agentImage": "r/agent:1"}},
                {"type": "bridge", "name": "plain", "bridge": {"service": "a"}}
            ]}"#,
        );
        let images = images_to_check(&ImageCheck::default(), dir.path());
        assert_eq!(images.len(), 2, "{images:?}");
        assert_eq!(images[1].0, agent_image(None));
        assert!(
            images[1]
                .1
                .ends_with(&format!("for {LAUNCH_JSON}: 'plain'")),
            "{images:?}"
        );
    }

    #[test]
    fn no_launch_json_checks_the_default() {
        let dir = Scratch::new("none");
        let images = images_to_check(&ImageCheck::default(), dir.path());
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].0, agent_image(None));
    }
}
