//! `kbridge status`: the sessions on this machine and the workloads marked as bridged in
//! the cluster, with who holds them and since when.

use kbridge::session::cluster::connection::Cluster;
use kbridge::session::cluster::{isolation, workload};
use kbridge::session::registry;
use std::process::ExitCode;

/// Prints local sessions, then bridged workloads of the namespace (or all namespaces).
pub async fn run(
    context: Option<&str>,
    namespace: Option<&str>,
    all_namespaces: bool,
) -> anyhow::Result<ExitCode> {
    print_local_sessions().await;
    let cluster = Cluster::connect(context, namespace).await?;
    let scoped = super::namespaces(&cluster, all_namespaces).await?;
    print_bridged_workloads(&scoped).await?;
    print_isolated_services(&scoped).await?;
    Ok(ExitCode::SUCCESS)
}

/// The sessions running on this machine, from their live sockets.
async fn print_local_sessions() {
    let live = registry::list().await;
    if live.is_empty() {
        println!("Sessions on this machine: none");
        return;
    }
    println!("Sessions on this machine:");
    for (_, info) in &live {
        println!(
            "  {:<24} pid {:<8} {:<32} namespace {:<16} since {}{}",
            info.id,
            info.pid,
            info.workload,
            info.key.namespace,
            info.started,
            if info.held {
                "  (held: launches of this target reuse it)"
            } else {
                ""
            }
        );
    }
}

/// Workloads whose container a session swapped, from their restore records.
async fn print_bridged_workloads(namespaces: &[Cluster]) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for scoped in namespaces {
        let ns = &scoped.namespace;
        for (kind, name, record) in workload::bridged(scoped).await? {
            rows.push(format!(
                "{ns:<16} {:<32} {:<28} {:<20} {}",
                format!("{}/{name}", kind.name()),
                record.session,
                record.owner,
                record.started
            ));
        }
    }
    if rows.is_empty() {
        println!("Bridged workloads: none");
        return Ok(());
    }
    println!(
        "{:<16} {:<32} {:<28} {:<20} STARTED",
        "NAMESPACE", "WORKLOAD", "SESSION", "OWNER"
    );
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

/// Services isolated by sessions, with how to route to each session.
async fn print_isolated_services(namespaces: &[Cluster]) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for scoped in namespaces {
        let ns = &scoped.namespace;
        for service in isolation::isolated(scoped).await? {
            if service.sessions.is_empty() {
                rows.push(format!(
                    "{ns:<16} {:<24} (router left without sessions: run `kbridge restore --all -n {ns}`)",
                    service.service
                ));
            }
            for (route_as, session) in &service.sessions {
                rows.push(format!(
                    "{ns:<16} {:<24} {:<16} {:<28} header '{}: {route_as}' or Host prefix '{route_as}.'",
                    service.service,
                    route_as,
                    session,
                    isolation::ROUTE_HEADER
                ));
            }
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    println!(
        "\n{:<16} {:<24} {:<16} {:<28} ROUTE",
        "NAMESPACE", "ISOLATED SERVICE", "ISOLATED AS", "SESSION"
    );
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
