//! Service environment variables as the kubelet writes them (`X_SERVICE_HOST`,
//! `X_SERVICE_PORT`, `X_PORT_80_TCP_ADDR`, …), pointed at the local endpoints that
//! forward to each Service, so code that reads them reaches the cluster.

use kbridge_config::EnvVars;
use std::net::IpAddr;

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name, if any.
    pub name: Option<String>,
    /// The port number.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// The variables for `service` reachable at `address`, in the kubelet's order.
pub fn links(service: &str, address: IpAddr, ports: &[ServicePort]) -> EnvVars {
    let mut env = EnvVars::new();
    let Some(first) = ports.first() else {
        return env;
    };
    let prefix = service.to_ascii_uppercase().replace('-', "_");
    env.set(format!("{prefix}_SERVICE_HOST"), Some(address.to_string()));
    env.set(
        format!("{prefix}_SERVICE_PORT"),
        Some(first.port.to_string()),
    );
    for port in ports {
        if let Some(name) = &port.name {
            let name = name.to_ascii_uppercase().replace('-', "_");
            env.set(
                format!("{prefix}_SERVICE_PORT_{name}"),
                Some(port.port.to_string()),
            );
        }
    }
    let url = |port: &ServicePort| {
        format!(
            "{}://{address}:{}",
            port.protocol.to_ascii_lowercase(),
            port.port
        )
    };
    env.set(format!("{prefix}_PORT"), Some(url(first)));
    for port in ports {
        let protocol = port.protocol.to_ascii_uppercase();
        let base = format!("{prefix}_PORT_{}_{protocol}", port.port);
        env.set(base.clone(), Some(url(port)));
        env.set(format!("{base}_PROTO"), Some(protocol.to_ascii_lowercase()));
        env.set(format!("{base}_PORT"), Some(port.port.to_string()));
        env.set(format!("{base}_ADDR"), Some(address.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_kubelet_naming() {
        let ports = [
            ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: "TCP".into(),
            },
            ServicePort {
                name: Some("grpc-api".into()),
                port: 9090,
                protocol: "TCP".into(),
            },
        ];
        let env = links("stats-api", "127.1.0.1".parse().expect("ip"), &ports);
        let expected = [
            ("STATS_API_SERVICE_HOST", "127.1.0.1"),
            ("STATS_API_SERVICE_PORT", "80"),
            ("STATS_API_SERVICE_PORT_HTTP", "80"),
            ("STATS_API_SERVICE_PORT_GRPC_API", "9090"),
            ("STATS_API_PORT", "tcp://127.1.0.1:80"),
            ("STATS_API_PORT_80_TCP", "tcp://127.1.0.1:80"),
            ("STATS_API_PORT_80_TCP_PROTO", "tcp"),
            ("STATS_API_PORT_80_TCP_PORT", "80"),
            ("STATS_API_PORT_80_TCP_ADDR", "127.1.0.1"),
            ("STATS_API_PORT_9090_TCP", "tcp://127.1.0.1:9090"),
        ];
        for (name, value) in expected {
            assert_eq!(env.get(name), Some(Some(value)), "{name}");
        }
        assert!(links("empty", "127.1.0.2".parse().expect("ip"), &[]).is_empty());
    }
}
