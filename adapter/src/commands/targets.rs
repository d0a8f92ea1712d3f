//! `kbridge targets`: the Services a session could bridge, with their ports — what
//! editor clients offer in their "configure" pickers, without a Kubernetes client of
//! their own.

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kbridge::session::cluster::connection::Cluster;
use kbridge::session::cluster::isolation::clone;
use kbridge::session::cluster::target::named_container_port;
use kube::api::ListParams;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Prints the namespace's Services (or every namespace's, with `all_namespaces`) as a
/// table, or as JSON with `json`.
pub async fn run(
    context: Option<&str>,
    namespace: Option<&str>,
    all_namespaces: bool,
    json_output: bool,
) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::connect(context, namespace).await?;
    let mut targets = Vec::new();
    for scoped in super::namespaces(&cluster, all_namespaces).await? {
        targets.extend(targets_in(&scoped).await?);
    }
    if json_output {
        println!("{}", serde_json::to_string_pretty(&targets)?);
    } else if targets.is_empty() && all_namespaces {
        println!("no services with a selector in any namespace");
    } else if targets.is_empty() {
        println!(
            "no services with a selector in namespace '{}' (`--all-namespaces` lists every namespace's)",
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

/// The Services of the cluster's namespace that select pods, with their ports.
async fn targets_in(cluster: &Cluster) -> anyhow::Result<Vec<Value>> {
    let services = cluster.list::<Service>(&ListParams::default()).await?;
    let pods = cluster.list::<Pod>(&ListParams::default()).await?;
    Ok(services
        .iter()
        .filter_map(|s| {
            // Services without a selector have no pods kbridge could take over.
            let selector = s
                .spec
                .as_ref()?
                .selector
                .as_ref()
                .filter(|sel| !sel.is_empty())?;
            let selected: Vec<&Pod> = pods.iter().filter(|p| selects(selector, p)).collect();
            let ports: Vec<Value> = s
                .spec
                .iter()
                .flat_map(|spec| spec.ports.iter().flatten())
                .map(|p| port_json(p, &selected))
                .collect();
            Some(
                json!({"namespace": cluster.namespace, "service": s.metadata.name, "ports": ports}),
            )
        })
        .collect())
}

/// Whether a Service's `selector` selects `pod`.
fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let no_labels = BTreeMap::new();
    clone::selects(selector, pod.metadata.labels.as_ref().unwrap_or(&no_labels))
}

/// One Service port: `targetPort` as the container port number. A named target port is
/// resolved through the selected pods' container ports, as Kubernetes resolves it (its
/// name kept as `targetPortName`); with no pod to resolve it by, the name stays.
fn port_json(port: &ServicePort, pods: &[&Pod]) -> Value {
    let mut out = json!({"port": port.port});
    if let Some(name) = &port.name {
        out["name"] = json!(name);
    }
    out["targetPort"] = match &port.target_port {
        Some(IntOrString::Int(n)) => json!(n),
        Some(IntOrString::String(name)) => match named_port(name, pods) {
            Some(number) => {
                out["targetPortName"] = json!(name);
                json!(number)
            }
            None => json!(name),
        },
        None => json!(port.port),
    };
    out
}

/// The number of the container port called `name` in the first pod that has one.
fn named_port(name: &str, pods: &[&Pod]) -> Option<i32> {
    pods.iter()
        .filter_map(|p| p.spec.as_ref())
        .find_map(|spec| named_container_port(spec, name))
}
