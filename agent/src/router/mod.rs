//! `kbridge-agent router`: the isolation router (`docs/architecture.md`, "Isolation") that fronts a Service and sends each
//! request to the session it is routed as, or to the original pods.
//!
//! # Contract (kbridge creates the objects; this module serves them)
//!
//! kbridge runs `kbridge-agent router` in a Deployment `<svc>-kbridge-router`, points the
//! Service's selector at it, and creates a Service `<svc>-kbridge-origin` selecting the original
//! pods (its port P forwards to their port P). Each session's clone pod carries the labels
//! `kbridge.dev/route-for=<svc>` and `kbridge.dev/route-as=<name>`.
//!
//! Configuration (environment variables, each also a flag of `kbridge-agent router`):
//!
//! | variable | flag | meaning |
//! |---|---|---|
//! | `KBRIDGE_ROUTER_SERVICE` (required) | `--service` | the Service fronted (the `route-for` value) |
//! | `KBRIDGE_ROUTER_NAMESPACE` | `--namespace` | default: `/var/run/secrets/kubernetes.io/serviceaccount/namespace` |
//! | `KBRIDGE_ROUTER_PORTS` (required) | `--ports` | comma-separated numeric listen ports (the Service's target ports), e.g. `8080,9090` |
//! | `KBRIDGE_ROUTER_ORIGIN` (required) | `--origin` | host of the default destination, e.g. `todo-api-kbridge-origin`; listen port P → `ORIGIN:P` |
//! | `KBRIDGE_ROUTER_HEALTH_PORT` | `--health-port` | default 7312; plain HTTP `GET /healthz` → 200 `ok`, `GET /routes` → `{"service":"todo-api","routes":{"alice":"10.0.0.7"}}` |
//! | `KBRIDGE_ROUTER_BIND` | `--bind` | default `0.0.0.0` |
//! | `KBRIDGE_ROUTER_STATIC_ROUTES` | `--static-routes` | `alice=127.0.0.1:18080,bob=10.0.0.8` (name=host\[:port\], port defaulting to the listen port); **disables the pod watcher** (tests, benches, clusterless use) |
//!
//! Routes: a kube-rs watcher (in-cluster credentials; RBAC get/list/watch on pods) follows pods
//! with label selector `kbridge.dev/route-for=<svc>`; a pod not being deleted, with condition
//! Ready=True, a podIP and label `kbridge.dev/route-as=<name>` makes route `<name>` → podIP, on
//! the same port P the request arrived on. Not ready or deleted: the route is gone at once. Two
//! pods with one name: the newest wins.
//!
//! Routing, per request (not per connection):
//! - HTTP/1.1 (keep-alive and pipelining) and h2c with prior knowledge (gRPC; each stream on its
//!   own, upstream also h2c, trailers passed through): header `kubernetes-route-as: <name>` with
//!   a known name → that route; an unknown name → origin; no header and a Host (`:authority`)
//!   starting with `<name>.` for a known name → that route, and the header is added to the
//!   forwarded request; otherwise origin.
//! - Bodies stream both ways; HTTP/1.1 `Upgrade` (WebSocket) is routed by the upgrade request,
//!   then the connections are spliced. Upstream HTTP/1.1 connections are pooled per destination;
//!   h2c uses one multiplexed connection per destination.
//! - Anything not HTTP (first bytes neither `METHOD ` nor the h2 preface), or a client silent for
//!   300 ms (server-speaks-first protocols), is spliced as raw TCP to `ORIGIN:P`.
//! - A destination that cannot be reached: HTTP 502 naming it; raw TCP: the client is closed.
//! - SIGTERM: listeners close, requests in flight get a short grace, exit 0.
//!
//! On start the binary prints one JSON line on stdout:
//! `{"event":"ready","ports":{"8080":"0.0.0.0:8080"},"health":"0.0.0.0:7312"}`.

pub mod config;
mod health;
mod parked;
pub mod proxy;
pub mod routes;
pub mod sniff;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{RouteSource, RouterArgs, RouterConfig};
pub use proxy::{choose, Choice, ROUTE_HEADER};
pub use routes::{pod_route, Dest, RouteTable};

/// How often dead and stale pooled upstream connections are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// Errors that stop the router from starting.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A configuration value is missing or invalid.
    #[error("invalid router configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address that was asked for.
        addr: String,
        /// Underlying failure.
        source: std::io::Error,
    },
    /// In-cluster credentials or namespace could not be loaded.
    #[error("cannot load in-cluster credentials: {0}")]
    InCluster(String),
    /// The Kubernetes client could not be built.
    #[error("kubernetes client error: {0}")]
    Kube(#[from] kube::Error),
}

/// Entry point of the router.
pub struct Router;

/// A started router; [`RunningRouter::shutdown`] stops it.
pub struct RunningRouter {
    /// Listen port P → address actually bound (P is the bound port when 0 was asked).
    pub port_addrs: Vec<(u16, SocketAddr)>,
    /// Address of the health/routes listener.
    pub health_addr: SocketAddr,
    table: Arc<RouteTable>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), RouterError> {
    let err = |source| RouterError::Bind {
        addr: addr.to_string(),
        source,
    };
    let l = TcpListener::bind(addr).await.map_err(err)?;
    let local = l.local_addr().map_err(err)?;
    Ok((l, local))
}

impl Router {
    /// Binds every listener, starts route discovery and serves until shut down.
    pub async fn start(config: RouterConfig) -> Result<RunningRouter, RouterError> {
        let (health, health_addr) = bind(SocketAddr::new(config.bind, config.health_port)).await?;
        let mut listeners = Vec::new();
        for &p in &config.ports {
            let (l, addr) = bind(SocketAddr::new(config.bind, p)).await?;
            listeners.push((addr.port(), l, addr));
        }
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let table = match &config.routes {
            RouteSource::Static(routes) => Arc::new(RouteTable::new(routes.clone())),
            RouteSource::Watch { namespace } => {
                let table = Arc::new(RouteTable::new(BTreeMap::new()));
                let namespace = match namespace {
                    Some(n) => n.clone(),
                    None => std::fs::read_to_string(config::NAMESPACE_FILE)
                        .map(|s| s.trim().to_string())
                        .map_err(|e| {
                            RouterError::InCluster(format!(
                                "no KBRIDGE_ROUTER_NAMESPACE and cannot read {}: {e}",
                                config::NAMESPACE_FILE
                            ))
                        })?,
                };
                let kube_config =
                    kube::Config::incluster().map_err(|e| RouterError::InCluster(e.to_string()))?;
                let client = kube::Client::try_from(kube_config)?;
                let (service, t, c) = (config.service.clone(), table.clone(), cancel.clone());
                tracing::info!(%namespace, service = %config.service, "watching route pods");
                tracker
                    .spawn(async move { routes::watch(client, &namespace, &service, t, c).await });
                table
            }
        };
        let shared = Arc::new(proxy::Shared {
            origin: Dest {
                host: config.origin.clone(),
                port: None,
            },
            table: table.clone(),
            pool: proxy::Pool::default(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
        });
        tracker.spawn(health::serve(
            health,
            config.service.clone(),
            table.clone(),
            cancel.clone(),
            tracker.clone(),
        ));
        let mut port_addrs = Vec::new();
        for (port, listener, addr) in listeners {
            port_addrs.push((port, addr));
            tracker.spawn(accept_loop(listener, port, shared.clone()));
        }
        let sweeper = shared.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = sweeper.cancel.cancelled() => return,
                    _ = tick.tick() => sweeper.pool.sweep(),
                }
            }
        });
        Ok(RunningRouter {
            port_addrs,
            health_addr,
            table,
            cancel,
            tracker,
        })
    }
}

async fn accept_loop(listener: TcpListener, port: u16, shared: Arc<proxy::Shared>) {
    loop {
        let sock = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(port, error = %e, "accept failed");
                    // A persistent error (EMFILE) must not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        shared
            .tracker
            .spawn(proxy::serve(sock, port, shared.clone()));
    }
}

impl RunningRouter {
    /// The current route table.
    pub fn routes(&self) -> Arc<BTreeMap<String, Dest>> {
        self.table.snapshot()
    }

    /// Replaces the route table (tests; the watcher does this in a cluster).
    pub fn set_routes(&self, routes: BTreeMap<String, Dest>) {
        self.table.replace(routes);
    }

    /// Stops accepting, lets requests in flight finish for up to `grace`, then returns
    /// (whatever is still running is abandoned with the runtime).
    pub async fn shutdown(self, grace: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::info!("grace period over; dropping the remaining connections");
        }
    }
}

/// Runs a router until `stop` resolves, then shuts it down with `grace`; `ready` gets the
/// started router's addresses first.
pub async fn run(
    config: RouterConfig,
    stop: impl std::future::Future<Output = ()>,
    grace: Duration,
    ready: impl FnOnce(&RunningRouter),
) -> Result<(), RouterError> {
    let router = Router::start(config).await?;
    ready(&router);
    stop.await;
    router.shutdown(grace).await;
    Ok(())
}
