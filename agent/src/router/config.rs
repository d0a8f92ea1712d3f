//! Router configuration: the `KBRIDGE_ROUTER_*` variables (also flags of `kbridge-agent router`)
//! parsed into a [`RouterConfig`] the library entry point takes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::routes::Dest;
use super::RouterError;

/// Where the in-cluster namespace is read from when none is given.
pub const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// Default health/routes port.
pub const DEFAULT_HEALTH_PORT: u16 = kbridge_protocol::contract::agent_pod::HEALTH_PORT;

/// How routes are discovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSource {
    /// Watch pods labelled `kbridge.dev/route-for=<service>` with in-cluster credentials.
    Watch {
        /// Namespace to watch; `None` reads [`NAMESPACE_FILE`] at start.
        namespace: Option<String>,
    },
    /// A fixed table (tests, benches, clusterless use); no watcher runs.
    Static(BTreeMap<String, Dest>),
}

/// Everything the router needs.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Name of the Service being fronted (also the `route-for` label value).
    pub service: String,
    /// Ports to listen on; port 0 binds an ephemeral port, which then also counts as "the
    /// listen port" for origin and routes (tests).
    pub ports: Vec<u16>,
    /// Host of the default destination.
    pub origin: String,
    /// Health/routes HTTP port (0 = ephemeral).
    pub health_port: u16,
    /// Address every listener binds.
    pub bind: IpAddr,
    /// Route discovery.
    pub routes: RouteSource,
}

/// `kbridge-agent router` options; each flag falls back to its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct RouterArgs {
    /// Name of the Service the router fronts.
    #[arg(long, env = "KBRIDGE_ROUTER_SERVICE")]
    pub service: String,
    /// Namespace (default: the in-cluster namespace file).
    #[arg(long, env = "KBRIDGE_ROUTER_NAMESPACE")]
    pub namespace: Option<String>,
    /// Comma-separated numeric ports to listen on, e.g. 8080,9090.
    #[arg(long, env = "KBRIDGE_ROUTER_PORTS")]
    pub ports: String,
    /// Host of the default destination (origin), e.g. todo-api-kbridge-origin.
    #[arg(long, env = "KBRIDGE_ROUTER_ORIGIN")]
    pub origin: String,
    /// Port of the health (/healthz) and /routes endpoint.
    #[arg(long, env = "KBRIDGE_ROUTER_HEALTH_PORT", default_value_t = DEFAULT_HEALTH_PORT)]
    pub health_port: u16,
    /// Address to listen on.
    #[arg(long, env = "KBRIDGE_ROUTER_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Fixed routes name=host[:port],... ; disables the pod watcher.
    #[arg(long, env = "KBRIDGE_ROUTER_STATIC_ROUTES")]
    pub static_routes: Option<String>,
}

impl RouterArgs {
    /// Validates the options into a [`RouterConfig`].
    pub fn into_config(self) -> Result<RouterConfig, RouterError> {
        let service = self.service.trim().to_string();
        if service.is_empty() {
            return Err(RouterError::Config(
                "KBRIDGE_ROUTER_SERVICE is empty".into(),
            ));
        }
        let origin = self.origin.trim().to_string();
        if origin.is_empty() {
            return Err(RouterError::Config("KBRIDGE_ROUTER_ORIGIN is empty".into()));
        }
        let ports = parse_ports(&self.ports)?;
        let routes = match self.static_routes.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => RouteSource::Static(parse_static_routes(s)?),
            _ => RouteSource::Watch {
                namespace: self.namespace.filter(|n| !n.trim().is_empty()),
            },
        };
        Ok(RouterConfig {
            service,
            ports,
            origin,
            health_port: self.health_port,
            bind: self.bind,
            routes,
        })
    }
}

/// `8080,9090` → `[8080, 9090]`; duplicates and non-numbers are refused.
pub fn parse_ports(s: &str) -> Result<Vec<u16>, RouterError> {
    let mut ports = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p: u16 = part.parse().map_err(|_| {
            RouterError::Config(format!(
                "KBRIDGE_ROUTER_PORTS: '{part}' is not a port number"
            ))
        })?;
        if ports.contains(&p) && p != 0 {
            return Err(RouterError::Config(format!(
                "KBRIDGE_ROUTER_PORTS: port {p} is listed twice"
            )));
        }
        ports.push(p);
    }
    if ports.is_empty() {
        return Err(RouterError::Config("KBRIDGE_ROUTER_PORTS is empty".into()));
    }
    Ok(ports)
}

/// `alice=127.0.0.1:18080,bob=10.0.0.7` → routes; a missing port means "the listen port".
pub fn parse_static_routes(s: &str) -> Result<BTreeMap<String, Dest>, RouterError> {
    let bad = |part: &str, why: &str| {
        RouterError::Config(format!("KBRIDGE_ROUTER_STATIC_ROUTES: '{part}': {why}"))
    };
    let mut routes = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, dest) = part
            .split_once('=')
            .ok_or_else(|| bad(part, "expected name=host[:port]"))?;
        let (name, dest) = (name.trim(), dest.trim());
        if name.is_empty() || dest.is_empty() {
            return Err(bad(part, "expected name=host[:port]"));
        }
        let dest = parse_dest(dest).ok_or_else(|| bad(part, "bad host[:port]"))?;
        if routes.insert(name.to_string(), dest).is_some() {
            return Err(bad(part, "route name listed twice"));
        }
    }
    Ok(routes)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_dest(s: &str) -> Option<Dest> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if tail.is_empty() => None,
            None => return None,
        };
        return Some(Dest {
            host: host.to_string(),
            port,
        });
    }
    match s.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address without a port.
        Some((host, _)) if host.contains(':') => Some(Dest {
            host: s.to_string(),
            port: None,
        }),
        Some((host, port)) if !host.is_empty() => Some(Dest {
            host: host.to_string(),
            port: Some(port.parse().ok()?),
        }),
        Some(_) => None,
        None => Some(Dest {
            host: s.to_string(),
            port: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_ports("8080, 9090").ok(), Some(vec![8080, 9090]));
        assert!(parse_ports("").is_err());
        assert!(parse_ports("80,http").is_err());
        assert!(parse_ports("80,80").is_err());
    }

    #[test]
    fn static_routes() {
        let r = parse_static_routes("alice=127.0.0.1:18080, bob=10.0.0.7,c=[::1]:9").ok();
        let r = r.unwrap_or_default();
        assert_eq!(r["alice"].addr(1), "127.0.0.1:18080");
        assert_eq!(r["bob"].addr(8080), "10.0.0.7:8080");
        assert_eq!(r["c"].addr(1), "[::1]:9");
        assert!(parse_static_routes("alice").is_err());
        assert!(parse_static_routes("alice=h:x").is_err());
        assert!(parse_static_routes("a=h,a=i").is_err());
    }
}
