//! `enableFeatures: [Probes, LifecycleHooks]`: which of the container's own probes and
//! lifecycle hooks the agent keeps, and — for each one it cannot keep — why, in words the
//! session says at start (`docs/identity.md`, "Probes and lifecycle hooks"). Pure: the
//! container in, the kept handlers and the lines out. (`ManagedIdentity` acts in phase 5,
//! `session/cluster/identity/`.)

use crate::session::cluster::workload::KeptHandlers;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Lifecycle, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kbridge_config::local_process::Feature;
use kbridge_protocol::contract::readiness::{HttpCheck, LocalReadiness};

/// Why exec handlers cannot be kept: said for probes and hooks alike.
const NO_EXEC: &str = "it runs a command inside the container, and the agent image is a static binary on an empty base: no shell, none of your image's tools";

/// The handlers kept for `features`, and the lines that say what that means.
pub(super) fn kept_handlers(
    features: &[Feature],
    container: &Container,
) -> (KeptHandlers, Vec<String>) {
    let mut kept = KeptHandlers::default();
    let mut lines = Vec::new();
    if features.contains(&Feature::Probes) {
        kept.readiness = readiness(container, &mut lines);
        if container.liveness_probe.is_some() {
            lines.push("Probes: the liveness probe is not kept: it would fail while the debugger holds your process at a breakpoint, and the kubelet would then restart the agent and cut the session; the agent's own health stands in".into());
        }
        if container.startup_probe.is_some() {
            lines.push("Probes: the startup probe is not kept: your process starts only once the session is set up, so it would fail first and the kubelet would restart the agent".into());
        }
    }
    if features.contains(&Feature::LifecycleHooks) {
        kept.lifecycle = lifecycle(container, &mut lines);
    }
    (kept, lines)
}

/// The readiness probe as the agent carries it out, or why not.
fn readiness(container: &Container, lines: &mut Vec<String>) -> Option<(LocalReadiness, Probe)> {
    let Some(probe) = &container.readiness_probe else {
        lines.push(format!(
            "Probes: container '{}' has no readiness probe; the agent's health stands in",
            container.name
        ));
        return None;
    };
    let check = if let Some(get) = &probe.http_get {
        let port = port_of(&get.port, container, lines)?;
        if get.scheme.as_deref() == Some("HTTPS") {
            lines.push(format!("Probes: the HTTPS readiness probe on port {port} is checked as a TCP connection your process accepts (the agent has no TLS client)"));
            LocalReadiness { port, http: None }
        } else {
            LocalReadiness {
                port,
                http: Some(http_check(get)),
            }
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        LocalReadiness {
            port: port_of(&tcp.port, container, lines)?,
            http: None,
        }
    } else if let Some(grpc) = &probe.grpc {
        let port = u16::try_from(grpc.port).ok()?;
        lines.push(format!("Probes: the gRPC readiness probe on port {port} is checked as a TCP connection your process accepts (the agent does not speak gRPC health checking)"));
        LocalReadiness { port, http: None }
    } else {
        lines.push(format!(
            "Probes: the exec readiness probe is not kept: {NO_EXEC}; the agent's health stands in"
        ));
        return None;
    };
    lines.push(format!(
        "Probes: readiness follows your process (port {}): while it is stopped, or paused at a breakpoint for longer than {} s, the pod is not Ready and leaves the Service's endpoints, so requests go to other ready pods or fail",
        check.port,
        probe.period_seconds.unwrap_or(10) * probe.failure_threshold.unwrap_or(3)
    ));
    Some((check, probe.clone()))
}

fn http_check(get: &HTTPGetAction) -> HttpCheck {
    HttpCheck {
        path: get
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into()),
        headers: get
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port_of(port: &IntOrString, container: &Container, lines: &mut Vec<String>) -> Option<u16> {
    let found = match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    };
    if found.is_none() {
        lines.push(format!(
            "Probes: the readiness probe's port {port:?} is not a port of container '{}'; the agent's health stands in",
            container.name
        ));
    }
    found
}

/// The hooks kept: `sleep` always, `httpGet` for `preStop` on a port the agent listens
/// on; the others are said, with why.
fn lifecycle(container: &Container, lines: &mut Vec<String>) -> Option<Lifecycle> {
    let Some(hooks) = &container.lifecycle else {
        lines.push(format!(
            "LifecycleHooks: container '{}' has no lifecycle hooks",
            container.name
        ));
        return None;
    };
    let ports: Vec<i32> = container
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    let mut keep = |hook: &Option<LifecycleHandler>, name: &str| -> Option<LifecycleHandler> {
        let handler = hook.as_ref()?;
        let why_not = if handler.sleep.is_some() {
            None
        } else if let Some(get) = &handler.http_get {
            if name == "postStart" {
                Some("it runs when the agent starts, before your process runs, and a failed postStart hook makes the kubelet kill the container".to_string())
            } else if !matches!(&get.port, IntOrString::Int(p) if ports.contains(p))
                && !matches!(&get.port, IntOrString::String(_))
            {
                Some("its port is not one the agent listens on (only the container's ports reach your process)".to_string())
            } else {
                None
            }
        } else if handler.exec.is_some() {
            Some(NO_EXEC.to_string())
        } else {
            Some("the kubelet runs only exec, httpGet and sleep hooks".to_string())
        };
        match why_not {
            None => {
                lines.push(format!(
                    "LifecycleHooks: the {name} hook is kept{}",
                    if handler.http_get.is_some() {
                        " (its request reaches your process through the agent)"
                    } else {
                        ""
                    }
                ));
                Some(handler.clone())
            }
            Some(why) => {
                lines.push(format!(
                    "LifecycleHooks: the {name} hook is not kept: {why}"
                ));
                None
            }
        }
    };
    let kept = Lifecycle {
        post_start: keep(&hooks.post_start, "postStart"),
        pre_stop: keep(&hooks.pre_stop, "preStop"),
        stop_signal: None,
    };
    (kept.post_start.is_some() || kept.pre_stop.is_some()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, ExecAction, GRPCAction, SleepAction, TCPSocketAction,
    };

    fn container(readiness: Option<Probe>, lifecycle: Option<Lifecycle>) -> Container {
        Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8081,
                ..Default::default()
            }]),
            readiness_probe: readiness,
            liveness_probe: Some(Probe::default()),
            lifecycle,
            ..Default::default()
        }
    }

    fn http_probe(port: IntOrString) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port,
                ..Default::default()
            }),
            period_seconds: Some(2),
            failure_threshold: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn named_http_readiness_is_kept_and_liveness_is_not() {
        let c = container(Some(http_probe(IntOrString::String("http".into()))), None);
        let (kept, lines) = kept_handlers(&[Feature::Probes], &c);
        let (check, probe) = kept.readiness.expect("kept");
        assert_eq!(check.port, 8081);
        assert_eq!(check.http.expect("http").path, "/healthz");
        assert_eq!(probe.period_seconds, Some(2));
        let text = lines.join("\n");
        assert!(text.contains("leaves the Service's endpoints"), "{text}");
        assert!(
            text.contains("paused at a breakpoint for longer than 2 s"),
            "{text}"
        );
        assert!(text.contains("liveness probe is not kept"), "{text}");
        assert!(kept.lifecycle.is_none(), "LifecycleHooks not asked");
    }

    #[test]
    fn exec_grpc_tcp_and_unknown_ports() {
        let exec = Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        };
        let (kept, lines) = kept_handlers(&[Feature::Probes], &container(Some(exec), None));
        assert!(kept.readiness.is_none());
        assert!(lines.join(" ").contains("no shell"), "{lines:?}");

        let grpc = Probe {
            grpc: Some(GRPCAction {
                port: 9090,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (kept, _) = kept_handlers(&[Feature::Probes], &container(Some(grpc), None));
        assert_eq!(kept.readiness.expect("kept").0.http, None);

        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(8081),
                host: None,
            }),
            ..Default::default()
        };
        let (kept, _) = kept_handlers(&[Feature::Probes], &container(Some(tcp), None));
        assert_eq!(kept.readiness.expect("kept").0.port, 8081);

        let unknown = http_probe(IntOrString::String("metrics".into()));
        let (kept, lines) = kept_handlers(&[Feature::Probes], &container(Some(unknown), None));
        assert!(kept.readiness.is_none());
        assert!(
            lines.join(" ").contains("not a port of container"),
            "{lines:?}"
        );
    }

    #[test]
    fn hooks_sleep_and_pre_stop_http_are_kept_post_start_http_and_exec_are_not() {
        let http = |port: i32| LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some("/drain".into()),
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            ..Default::default()
        };
        let hooks = Lifecycle {
            post_start: Some(http(8081)),
            pre_stop: Some(http(8081)),
            stop_signal: None,
        };
        let (kept, lines) =
            kept_handlers(&[Feature::LifecycleHooks], &container(None, Some(hooks)));
        let kept = kept.lifecycle.expect("preStop kept");
        assert!(kept.post_start.is_none() && kept.pre_stop.is_some());
        assert!(
            lines.join(" ").contains("postStart hook is not kept"),
            "{lines:?}"
        );

        let hooks = Lifecycle {
            post_start: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sh".into()]),
                }),
                ..Default::default()
            }),
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 3 }),
                ..Default::default()
            }),
            stop_signal: None,
        };
        let (kept, lines) =
            kept_handlers(&[Feature::LifecycleHooks], &container(None, Some(hooks)));
        let kept = kept.lifecycle.expect("sleep kept");
        assert!(kept.post_start.is_none());
        assert_eq!(
            kept.pre_stop.and_then(|h| h.sleep).map(|s| s.seconds),
            Some(3)
        );
        assert!(lines.join(" ").contains("no shell"), "{lines:?}");

        let (kept, lines) = kept_handlers(
            &[Feature::LifecycleHooks],
            &container(
                None,
                Some(Lifecycle {
                    pre_stop: Some(http(9999)),
                    ..Default::default()
                }),
            ),
        );
        assert!(kept.lifecycle.is_none());
        assert!(
            lines.join(" ").contains("not one the agent listens on"),
            "{lines:?}"
        );
    }
}
