//! `kbridge restore`: puts back workloads a session left modified, from the
//! `kbridge.dev/*` annotations alone — no local state needed, so it works after a crash,
//! from another machine, or for a colleague's abandoned session.

use anyhow::{bail, Context};
use kbridge::session::cluster::connection::Cluster;
use kbridge::session::cluster::isolation;
use kbridge::session::cluster::target::WorkloadKind;
use kbridge::session::cluster::workload::{self, RestoreOutcome};
use std::process::ExitCode;

/// Restores `workload` (`KIND/NAME`) or, with `all`, every bridged workload of the namespace.
pub async fn run(
    context: Option<&str>,
    namespace: Option<&str>,
    workload: Option<&str>,
    all: bool,
) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::connect(context, namespace).await?;
    let targets: Vec<(WorkloadKind, String)> = match (workload, all) {
        (Some(_), true) => bail!("give either a workload or --all, not both"),
        (None, false) => {
            bail!("say what to restore: a workload (e.g. deployment/todo-api) or --all")
        }
        (Some(workload), false) => vec![parse_workload(workload)?],
        (None, true) => workload::bridged(&cluster)
            .await?
            .into_iter()
            .map(|(kind, name, _)| (kind, name))
            .collect(),
    };
    // Isolation (`docs/architecture.md`, "Isolation") changed Services, not workloads: `--all` ends every isolation of
    // the namespace too, restoring each Service's selector and removing routers and clones.
    let isolated = if all {
        isolation::isolated(&cluster).await?
    } else {
        Vec::new()
    };
    for service in &isolated {
        let ended = isolation::leave_all(&cluster, &service.service)
            .await
            .with_context(|| format!("ending the isolation of service {}", service.service))?;
        println!(
            "restored service {} (ended isolation of: {})",
            service.service,
            if ended.is_empty() {
                "a router without sessions".to_string()
            } else {
                ended.join(", ")
            }
        );
    }
    if targets.is_empty() && isolated.is_empty() {
        println!("nothing to restore in namespace '{}'", cluster.namespace);
    }
    for (kind, name) in targets {
        let outcome = workload::restore(&cluster, kind, &name, None)
            .await
            .with_context(|| format!("restoring {}/{name}", kind.name()))?;
        match outcome {
            RestoreOutcome::Restored { session } => {
                println!(
                    "restored {}/{name} (was held by session {session})",
                    kind.name()
                );
                remove_session_objects(&cluster, kind, &name, &session).await;
            }
            RestoreOutcome::NothingToDo(why) => println!("{why}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The session's Lease and Secret go too; the restorer's Job, ServiceAccount, Role and
/// RoleBinding are owned by the Secret and follow it.
async fn remove_session_objects(cluster: &Cluster, kind: WorkloadKind, name: &str, session: &str) {
    use k8s_openapi::api::{coordination::v1::Lease, core::v1::Secret};
    use kube::api::DeleteParams;
    let lease = kbridge::session::cluster::lease::lease_name(kind.name(), name);
    let secret = workload::session_secret_name(session);
    for (what, result) in [
        (
            "lease",
            cluster
                .delete_if_exists::<Lease>(&lease, &DeleteParams::default())
                .await,
        ),
        (
            "secret",
            cluster
                .delete_if_exists::<Secret>(&secret, &DeleteParams::background())
                .await,
        ),
    ] {
        match result {
            Ok(true) => println!("  removed the session's {what}"),
            Ok(false) => {}
            Err(e) => eprintln!("  could not remove the session's {what}: {e}"),
        }
    }
}

fn parse_workload(text: &str) -> anyhow::Result<(WorkloadKind, String)> {
    let (kind, name) = text
        .split_once('/')
        .with_context(|| format!("'{text}' is not KIND/NAME, e.g. deployment/todo-api"))?;
    let Some(kind) = WorkloadKind::parse(kind) else {
        bail!(
            "cannot restore a '{}': kbridge swaps deployments, statefulsets, replicasets and bare pods",
            kind.to_ascii_lowercase()
        )
    };
    Ok((kind, name.to_string()))
}
