//! `kbridge targets`: the Services a session could bridge, with their ports — what
//! editor clients offer in their "configure" pickers, without a Kubernetes client of
//! their own.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kbridge::session::cluster::connection::Cluster;
use kube::api::ListParams;
use serde_json::{json, Value};
use std::process::ExitCode;

/// Prints the namespace's Services as a table, or as JSON with `json`.
pub async fn run(
    context: Option<&str>,
    namespace: Option<&str>,
    json_output: bool,
) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::connect(context, namespace).await?;
    let services = cluster.list::<Service>(&ListParams::default()).await?;
    let targets: Vec<Value> = services
        .iter()
        // Services without a selector have no pods kbridge could take over.
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|spec| spec.selector.as_ref())
                .is_some_and(|sel| !sel.is_empty())
        })
        .map(|s| {
            let ports: Vec<Value> = s
                .spec
                .iter()
                .flat_map(|spec| spec.ports.iter().flatten())
                .map(|p| {
                    let mut port = json!({"port": p.port});
                    if let Some(name) = &p.name {
                        port["name"] = json!(name);
                    }
                    port["targetPort"] = match &p.target_port {
                        Some(IntOrString::Int(n)) => json!(n),
                        Some(IntOrString::String(name)) => json!(name),
                        None => json!(p.port),
                    };
                    port
                })
                .collect();
            json!({"namespace": cluster.namespace, "service": s.metadata.name, "ports": ports})
        })
        .collect();
    if json_output {
        println!("{}", serde_json::to_string_pretty(&targets)?);
    } else if targets.is_empty() {
        println!(
            "no services with a selector in namespace '{}'",
            cluster.namespace
        );
    } else {
        println!("{:<16} {:<28} PORTS", "NAMESPACE", "SERVICE");
        for t in &targets {
            let ports: Vec<String> = t["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}→{}",
                        p["port"],
                        p["targetPort"].to_string().trim_matches('"')
                    )
                })
                .collect();
            println!(
                "{:<16} {:<28} {}",
                t["namespace"].as_str().unwrap_or_default(),
                t["service"].as_str().unwrap_or_default(),
                ports.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
