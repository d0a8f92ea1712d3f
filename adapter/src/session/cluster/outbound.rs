//! Outbound: each cluster Service gets a local address (127.1.x.y) and listeners on its
//! ports; a connection to one is carried through an agent, which dials the Service from
//! inside the cluster (its ClusterIP; the name for ExternalName and headless Services).

use super::addresses::AddressBook;
use super::route_header::{splice_rewriting, RouteHeaderRewriter};
use super::service_links::{self, ServicePort};
use super::tunnels::{Agents, TunnelNotice};
use crate::session::hosts_file::{service_names, HostsEntry};
use k8s_openapi::api::core::v1::Service;
use kbridge_config::EnvVars;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Ports Bridge to Kubernetes let a Service keep unforwarded, e.g. `"445,23"`.
pub const IGNORE_PORTS_ANNOTATION: &str = "bridgetokubernetes/ignore-ports";

/// A Service as forwarded locally.
#[derive(Debug, Clone)]
pub struct ForwardedService {
    /// Service name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The local address.
    pub address: IpAddr,
    /// (service port, local port actually bound).
    pub ports: Vec<(u16, u16)>,
    /// What the agent dials.
    pub destination: String,
}

impl ForwardedService {
    /// Hosts entries for its names.
    pub fn hosts_entry(&self) -> HostsEntry {
        HostsEntry {
            address: self.address,
            names: service_names(&self.name, &self.namespace),
        }
    }

    /// `X_SERVICE_HOST`, `X_PORT_…` pointing here.
    pub fn env(&self, all_ports: &[ServicePort]) -> EnvVars {
        let ports: Vec<ServicePort> = all_ports
            .iter()
            .filter_map(|p| {
                let local = self.ports.iter().find(|(remote, _)| *remote == p.port)?.1;
                Some(ServicePort {
                    port: local,
                    ..p.clone()
                })
            })
            .collect();
        service_links::links(&self.name, self.address, &ports)
    }
}

/// The TCP ports of a Service, minus those annotated to be ignored.
pub fn service_ports(service: &Service) -> Vec<ServicePort> {
    let ignored: Vec<u16> = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(IGNORE_PORTS_ANNOTATION))
        .map(|list| {
            list.split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            (protocol == "TCP" && !ignored.contains(&port)).then(|| ServicePort {
                name: p.name.clone(),
                port,
                protocol,
            })
        })
        .collect()
}

/// Where the agent should connect for a Service.
fn destination(service: &Service, namespace: &str) -> String {
    let spec = service.spec.as_ref();
    let name = service.metadata.name.clone().unwrap_or_default();
    match spec.and_then(|s| s.type_.as_deref()) {
        Some("ExternalName") => spec.and_then(|s| s.external_name.clone()).unwrap_or(name),
        _ => match spec.and_then(|s| s.cluster_ip.clone()) {
            Some(ip) if !ip.is_empty() && ip != "None" => ip,
            // Headless: the cluster's DNS name resolves to the pods.
            _ => format!("{name}.{namespace}.svc.cluster.local"),
        },
    }
}

/// Binds every port of a Service on one local address. An address another session (or
/// program) already uses is given up for the next one, so every port keeps its number.
async fn bind_all(
    name: &str,
    namespace: &str,
    ports: &[ServicePort],
    book: &mut AddressBook,
    notices: &tokio::sync::mpsc::UnboundedSender<TunnelNotice>,
) -> Option<(IpAddr, Vec<TcpListener>)> {
    let mut address = IpAddr::V4(book.address(namespace, name).ok()?);
    'addresses: for _ in 0..32 {
        let mut listeners = Vec::new();
        for port in ports {
            match TcpListener::bind(SocketAddr::new(address, port.port)).await {
                Ok(listener) => listeners.push(listener),
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                    address = IpAddr::V4(book.reassign(namespace, name).ok()?);
                    continue 'addresses;
                }
                Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                    // Ports below 1024 need admin rights; take any port and let the
                    // environment variables say which.
                    let listener = TcpListener::bind(SocketAddr::new(address, 0)).await.ok()?;
                    let _ = notices.send(TunnelNotice::Notice(format!(
                        "{name}:{} is forwarded on {} instead (ports below 1024 need admin rights); the {}_SERVICE_* variables point there",
                        port.port,
                        listener.local_addr().ok()?,
                        name.to_ascii_uppercase().replace('-', "_")
                    )));
                    listeners.push(listener);
                }
                Err(error) => {
                    let _ = notices.send(TunnelNotice::Notice(format!(
                        "cannot forward {name}:{}: {error}",
                        port.port
                    )));
                    return None;
                }
            }
        }
        return Some((address, listeners));
    }
    let _ = notices.send(TunnelNotice::Notice(format!(
        "cannot forward {name}: no free local address"
    )));
    None
}

/// What every forwarded Service of a session shares: its address book, the live agents,
/// the session's tasks and cancellation, where notices go, and the route name of an
/// isolated session (added to outbound HTTP requests).
pub struct Forwarder {
    /// Local addresses handed out so far.
    pub book: AddressBook,
    /// The agents that carry connections.
    pub agents: Agents,
    /// The session's tasks (listeners and connections run there).
    pub tasks: TaskTracker,
    /// Where "cannot bind" and similar notices go.
    pub notices: tokio::sync::mpsc::UnboundedSender<TunnelNotice>,
    /// Stops every listener.
    pub cancel: CancellationToken,
    /// `kubernetes-route-as` value for outbound HTTP, in an isolated session.
    pub route_as: Option<String>,
}

impl Forwarder {
    /// Forwards `service` of `namespace`; `None` when it has no TCP port or no address.
    pub async fn forward(
        &mut self,
        service: &Service,
        namespace: &str,
    ) -> Option<ForwardedService> {
        self.forward_with_route(service, namespace, self.route_as.clone())
            .await
    }

    /// Like [`Forwarder::forward`], with the route header decided by the caller (none for
    /// endpoints outside the cluster).
    pub async fn forward_with_route(
        &mut self,
        service: &Service,
        namespace: &str,
        route_as: Option<String>,
    ) -> Option<ForwardedService> {
        forward(
            service,
            namespace,
            &mut self.book,
            self.agents.clone(),
            &self.tasks,
            self.notices.clone(),
            self.cancel.clone(),
            route_as,
        )
        .await
    }
}

/// Binds the Service's listeners and starts forwarding; returns what was bound. With
/// `route_as` (an isolated session), plain HTTP/1.x requests sent through get the route
/// header when they lack it (`docs/architecture.md`, "Isolation").
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    service: &Service,
    namespace: &str,
    book: &mut AddressBook,
    agents: Agents,
    tasks: &TaskTracker,
    notices: tokio::sync::mpsc::UnboundedSender<TunnelNotice>,
    cancel: CancellationToken,
    route_as: Option<String>,
) -> Option<ForwardedService> {
    let name = service.metadata.name.clone()?;
    let ports = service_ports(service);
    if ports.is_empty() {
        return None;
    }
    let destination = destination(service, namespace);
    let (address, listeners) = bind_all(&name, namespace, &ports, book, &notices).await?;
    let mut bound = Vec::new();
    for (port, listener) in ports.iter().zip(listeners) {
        let local = listener.local_addr().ok()?.port();
        bound.push((port.port, local));
        let agents = agents.clone();
        let destination = destination.clone();
        let remote = port.port;
        let cancel = cancel.clone();
        let conn_tasks = tasks.clone();
        let route_as = route_as.clone();
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = cancel.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let (mut socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, usually: give connections time to end.
                        tracing::debug!(%error, "accept failed; pausing");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let agents = agents.clone();
                let destination = destination.clone();
                let route_as = route_as.clone();
                conn_tasks.spawn(async move {
                    let Some((pod, agent)) = agents.pick() else {
                        tracing::warn!(%peer, "no agent connected; dropping outbound connection");
                        return;
                    };
                    match agent.open_outbound(&destination, remote).await {
                        Ok(mut stream) => {
                            let _ = socket.set_nodelay(true);
                            let (sent, received) = match &route_as {
                                Some(route_as) => {
                                    splice_rewriting(socket, stream, RouteHeaderRewriter::new(route_as))
                                        .await
                                }
                                None => tokio::io::copy_bidirectional(&mut socket, &mut stream)
                                    .await
                                    .unwrap_or_default(),
                            };
                            agents.count_outbound(&pod, sent, received);
                        }
                        Err(error) => tracing::warn!(%destination, remote, %error, "outbound connection failed"),
                    }
                });
            }
        });
    }
    Some(ForwardedService {
        name,
        namespace: namespace.to_string(),
        address,
        ports: bound,
        destination,
    })
}
