//! `kbridge diagnostics`: what each live session on this machine gives its process — the
//! environment (secret values redacted), the env values pointing into the pod's volumes and
//! their local copies, the names that resolve locally, the forwarded services, the inbound
//! ports — and each tunnel's state and traffic.

use kbridge::session::registry;
use serde_json::Value;
use std::process::ExitCode;

/// Asks every live session to describe itself and prints the answers.
pub async fn run(json: bool) -> anyhow::Result<ExitCode> {
    let mut described = Vec::new();
    for (socket, info) in registry::list().await {
        match registry::ask(&socket, "describe").await {
            Ok(description) => described.push(description),
            Err(error) => eprintln!("kbridge: session {} did not answer: {error}", info.id),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&described)?);
        return Ok(ExitCode::SUCCESS);
    }
    if described.is_empty() {
        println!("No live kbridge session on this machine.");
    }
    for d in &described {
        print_text(d);
    }
    Ok(ExitCode::SUCCESS)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Variables whose pod values are paths into volumes: where they point here, or why not.
fn print_env_paths(d: &Value) {
    let rewritten = d["envPaths"].as_array().into_iter().flatten();
    let kept = d["keptPaths"].as_array().into_iter().flatten();
    if d["envPaths"].as_array().is_none_or(Vec::is_empty)
        && d["keptPaths"].as_array().is_none_or(Vec::is_empty)
    {
        return;
    }
    println!("\nEnvironment paths into the pod's volumes (pod → local):");
    for p in rewritten {
        println!(
            "  {} {} → {} (volume {}{})",
            text(&p["name"]),
            text(&p["podPath"]),
            text(&p["localPath"]),
            text(&p["volume"]),
            if p["refreshed"] == Value::Bool(true) {
                ", token refreshed before it expires"
            } else {
                ""
            }
        );
    }
    for k in kept {
        println!(
            "  {} {} kept: {}",
            text(&k["name"]),
            text(&k["podPath"]),
            text(&k["reason"])
        );
    }
}

/// Variables that now point at a local address carried to an identity endpoint.
fn print_identity_endpoints(d: &Value) {
    let Some(endpoints) = d["identityEndpoints"].as_array().filter(|e| !e.is_empty()) else {
        return;
    };
    println!(
        "\nIdentity endpoints reached through the agent (variable: local → in the pod's network):"
    );
    for e in endpoints {
        let pod = match &e["podValue"] {
            Value::Null => " (added by ManagedIdentity)".to_string(),
            value => format!(" (pod's value {})", text(value)),
        };
        println!(
            "  {}={} → {}{pod}",
            text(&e["name"]),
            text(&e["localValue"]),
            text(&e["endpoint"]),
        );
    }
}

fn print_text(d: &Value) {
    let s = &d["session"];
    println!(
        "Session {} (pid {}{}) — {} in namespace {}, since {}",
        text(&s["id"]),
        text(&s["pid"]),
        if s["held"] == Value::Bool(true) {
            ", held by kbridge connect"
        } else {
            ""
        },
        text(&s["workload"]),
        text(&s["key"]["namespace"]),
        text(&s["started"])
    );
    println!("\nEnvironment:");
    if let Some(env) = d["env"].as_object() {
        for (name, value) in env {
            println!("  {name}={}", text(value));
        }
    }
    print_env_paths(d);
    print_identity_endpoints(d);
    println!(
        "\nNames resolve through hosts mode `{}`{}:",
        text(&d["hostsMode"]),
        d["hostsFile"]
            .as_str()
            .map(|f| format!(" (debugger's /etc/hosts: {f})"))
            .unwrap_or_default()
    );
    for service in d["services"].as_array().into_iter().flatten() {
        let ports: Vec<String> = service["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                if p["service"] == p["local"] {
                    text(&p["service"])
                } else {
                    format!("{}→{}", text(&p["service"]), text(&p["local"]))
                }
            })
            .collect();
        let names: Vec<String> = service["names"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        println!(
            "  {:<15} {:<40} ports {}",
            text(&service["address"]),
            names.join(" "),
            ports.join(",")
        );
    }
    println!("\nInbound (container port → local port):");
    for p in d["inbound"].as_array().into_iter().flatten() {
        println!(
            "  {} → localhost:{}",
            text(&p["containerPort"]),
            text(&p["local"])
        );
    }
    println!("\nTunnels:");
    for t in d["tunnels"].as_array().into_iter().flatten() {
        println!(
            "  {:<40} {:<12} connects {:<3} inbound {} conn, {} B in / {} B out; outbound {} conn, {} B sent / {} B received",
            text(&t["pod"]),
            if t["connected"] == Value::Bool(true) { "up" } else { "down" },
            text(&t["connects"]),
            text(&t["inboundConnections"]),
            text(&t["inboundBytesIn"]),
            text(&t["inboundBytesOut"]),
            text(&t["outboundConnections"]),
            text(&t["outboundBytesSent"]),
            text(&t["outboundBytesReceived"]),
        );
    }
    println!();
}
