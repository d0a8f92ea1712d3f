//! The agent's configuration, read once from its environment (kbridge sets these variables on
//! the agent container when it swaps it in).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::error::ServerError;
use kbridge_protocol::mounts::Mount;

/// Default control port (the port kbridge port-forwards to).
pub const DEFAULT_CONTROL_PORT: u16 = kbridge_protocol::contract::agent_pod::CONTROL_PORT;
/// Default port of the HTTP health endpoint used by kubelet probes and the restorer.
pub const DEFAULT_HEALTH_PORT: u16 = kbridge_protocol::contract::agent_pod::HEALTH_PORT;
/// Default seconds without a kbridge heartbeat before the agent reports "orphaned".
pub const DEFAULT_IDLE_RESTORE_SECS: u64 = 60;

/// Everything the agent needs to run. Build it with [`AgentConfig::from_vars`] or by hand (tests).
#[derive(Clone)]
pub struct AgentConfig {
    /// Address the control, health and container-port listeners bind (`KBRIDGE_AGENT_BIND`).
    pub bind: IpAddr,
    /// Control port (`KBRIDGE_AGENT_CONTROL_PORT`); 0 picks a free one.
    pub control_port: u16,
    /// Health port (`KBRIDGE_AGENT_HEALTH_PORT`); 0 picks a free one.
    pub health_port: u16,
    /// The original container's ports to accept connections on (`KBRIDGE_AGENT_PORTS`).
    pub ports: Vec<u16>,
    /// The per-session token (`KBRIDGE_SESSION_TOKEN`). Never logged.
    pub token: String,
    /// Dead-man switch threshold (`KBRIDGE_IDLE_RESTORE_SECS`).
    pub idle_restore: Duration,
    /// Pod name reported by `info` (`KBRIDGE_POD_NAME`, else `HOSTNAME`).
    pub pod: Option<String>,
    /// Namespace reported by `info` (`KBRIDGE_POD_NAMESPACE`, else the service-account file).
    pub namespace: Option<String>,
    /// Name of the container the agent replaced (`KBRIDGE_CONTAINER_NAME`).
    pub container: Option<String>,
    /// Variable names always reported by `env` (`KBRIDGE_ENV_KEEP`, comma-separated): kbridge
    /// passes the names the original container's spec sets explicitly, so a spec that sets
    /// `PATH` or `HOME` is still replicated.
    pub env_keep: BTreeSet<String>,
    /// Extra variable names never reported (`KBRIDGE_ENV_EXCLUDE`, comma-separated).
    pub env_exclude: BTreeSet<String>,
    /// The original container's volume mounts (`KBRIDGE_AGENT_MOUNTS`, JSON list of
    /// `{"name", "path", "readOnly"}`); when absent the agent reads `/proc/self/mountinfo`.
    pub mounts: Option<Vec<Mount>>,
    /// Snapshot of the process environment taken at start, which `env` reports from.
    pub environment: Vec<(String, String)>,
    /// The container's readiness probe, to carry out against the local process
    /// (`KBRIDGE_READINESS`, JSON; set with `enableFeatures: [Probes]`).
    pub readiness: Option<kbridge_protocol::contract::readiness::LocalReadiness>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("bind", &self.bind)
            .field("control_port", &self.control_port)
            .field("health_port", &self.health_port)
            .field("ports", &self.ports)
            .field("token", &"<redacted>")
            .field("idle_restore", &self.idle_restore)
            .field("pod", &self.pod)
            .field("namespace", &self.namespace)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

fn list(value: Option<&str>) -> BTreeSet<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_port(name: &str, value: &str) -> Result<u16, ServerError> {
    value
        .trim()
        .parse()
        .map_err(|_| ServerError::Config(format!("{name}={value:?} is not a TCP port number")))
}

impl AgentConfig {
    /// A configuration for tests and embedding: loopback, ephemeral ports, no container ports.
    pub fn new(token: impl Into<String>) -> Self {
        AgentConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            control_port: 0,
            health_port: 0,
            ports: Vec::new(),
            token: token.into(),
            idle_restore: Duration::from_secs(DEFAULT_IDLE_RESTORE_SECS),
            pod: None,
            namespace: None,
            container: None,
            env_keep: BTreeSet::new(),
            env_exclude: BTreeSet::new(),
            mounts: None,
            environment: Vec::new(),
            readiness: None,
        }
    }

    /// Reads the configuration from a set of environment variables (normally `std::env::vars()`).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ServerError> {
        let environment: Vec<(String, String)> = vars.into_iter().collect();
        let get = |k: &str| {
            environment
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let token = get("KBRIDGE_SESSION_TOKEN")
            .ok_or_else(|| {
                ServerError::Config(
                    "KBRIDGE_SESSION_TOKEN is not set; kbridge sets it when it deploys the agent"
                        .into(),
                )
            })?
            .to_string();
        let bind = match get("KBRIDGE_AGENT_BIND") {
            Some(v) => v.parse().map_err(|_| {
                ServerError::Config(format!("KBRIDGE_AGENT_BIND={v:?} is not an IP address"))
            })?,
            None => IpAddr::from([0, 0, 0, 0]),
        };
        let control_port = match get("KBRIDGE_AGENT_CONTROL_PORT") {
            Some(v) => parse_port("KBRIDGE_AGENT_CONTROL_PORT", v)?,
            None => DEFAULT_CONTROL_PORT,
        };
        let health_port = match get("KBRIDGE_AGENT_HEALTH_PORT") {
            Some(v) => parse_port("KBRIDGE_AGENT_HEALTH_PORT", v)?,
            None => DEFAULT_HEALTH_PORT,
        };
        let mut ports = Vec::new();
        for p in list(get("KBRIDGE_AGENT_PORTS")) {
            // Accept "8080/TCP" as Kubernetes writes ports; only TCP is tunnelled.
            let (num, proto) = p.split_once('/').unwrap_or((&p, "TCP"));
            if !proto.eq_ignore_ascii_case("tcp") {
                return Err(ServerError::Config(format!(
                    "KBRIDGE_AGENT_PORTS: {p:?} is not TCP; only TCP ports can be bridged"
                )));
            }
            ports.push(parse_port("KBRIDGE_AGENT_PORTS", num)?);
        }
        let idle_restore = match get("KBRIDGE_IDLE_RESTORE_SECS") {
            Some(v) => Duration::from_secs(v.trim().parse().map_err(|_| {
                ServerError::Config(format!(
                    "KBRIDGE_IDLE_RESTORE_SECS={v:?} is not a number of seconds"
                ))
            })?),
            None => Duration::from_secs(DEFAULT_IDLE_RESTORE_SECS),
        };
        let mounts = match get("KBRIDGE_AGENT_MOUNTS") {
            Some(v) => Some(serde_json::from_str(v).map_err(|e| {
                ServerError::Config(format!(
                    "KBRIDGE_AGENT_MOUNTS is not a JSON list of {{name, path, readOnly}}: {e}"
                ))
            })?),
            None => None,
        };
        let readiness = match get(kbridge_protocol::contract::readiness::READINESS_ENV) {
            Some(v) => Some(serde_json::from_str(v).map_err(|e| {
                ServerError::Config(format!(
                    "KBRIDGE_READINESS is not a JSON readiness check {{port, http}}: {e}"
                ))
            })?),
            None => None,
        };
        let namespace = get("KBRIDGE_POD_NAMESPACE")
            .map(str::to_string)
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .map(|s| s.trim().to_string())
            });
        Ok(AgentConfig {
            bind,
            control_port,
            health_port,
            ports,
            token,
            idle_restore,
            pod: get("KBRIDGE_POD_NAME")
                .or_else(|| get("HOSTNAME"))
                .map(str::to_string),
            namespace,
            container: get("KBRIDGE_CONTAINER_NAME").map(str::to_string),
            env_keep: list(get("KBRIDGE_ENV_KEEP")),
            env_exclude: list(get("KBRIDGE_ENV_EXCLUDE")),
            mounts,
            environment,
            readiness,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_ports() {
        let c = AgentConfig::from_vars(vars(&[
            ("KBRIDGE_SESSION_TOKEN", "t"),
            ("KBRIDGE_AGENT_PORTS", "8080, 9090/TCP"),
        ]))
        .unwrap();
        assert_eq!(c.control_port, DEFAULT_CONTROL_PORT);
        assert_eq!(c.ports, vec![8080, 9090]);
        assert_eq!(c.bind, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.idle_restore, Duration::from_secs(60));
        assert!(!format!("{c:?}").contains("\"t\""));
    }

    #[test]
    fn readiness_check_is_read_and_a_bad_one_explained() {
        let c = AgentConfig::from_vars(vars(&[
            ("KBRIDGE_SESSION_TOKEN", "t"),
            (
                "KBRIDGE_READINESS",
                r#"{"port": 8080, "http": {"path": "/ready"}}"#,
            ),
        ]))
        .unwrap();
        let check = c.readiness.expect("readiness");
        assert_eq!(check.port, 8080);
        assert_eq!(check.http.map(|h| h.path).as_deref(), Some("/ready"));
        let e = AgentConfig::from_vars(vars(&[
            ("KBRIDGE_SESSION_TOKEN", "t"),
            ("KBRIDGE_READINESS", "8080"),
        ]))
        .err()
        .unwrap();
        assert!(e.to_string().contains("KBRIDGE_READINESS"));
    }

    #[test]
    fn missing_token_and_bad_values_are_explained() {
        let e = AgentConfig::from_vars(vars(&[])).err().unwrap();
        assert!(e.to_string().contains("KBRIDGE_SESSION_TOKEN"));
        let e = AgentConfig::from_vars(vars(&[
            ("KBRIDGE_SESSION_TOKEN", "t"),
            ("KBRIDGE_AGENT_PORTS", "53/UDP"),
        ]))
        .err()
        .unwrap();
        assert!(e.to_string().contains("only TCP"));
    }
}
