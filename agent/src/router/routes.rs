//! The route table (route name → destination) and how it is filled: from the pods labelled
//! `kbridge.dev/route-for=<svc>` through a kube-rs watcher, or from a static list in tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kbridge_protocol::contract::labels::{LABEL_ROUTE_AS, LABEL_ROUTE_FOR};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio_util::sync::CancellationToken;

/// Where a route sends requests: a host, and a port or (`None`) the listen port the request
/// arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    /// Host name or IP address.
    pub host: String,
    /// Fixed port; `None` means "the same port as the listen port".
    pub port: Option<u16>,
}

impl Dest {
    /// `host:port` for a request that arrived on listen port `listen`.
    pub fn addr(&self, listen: u16) -> String {
        let port = self.port.unwrap_or(listen);
        if self.host.contains(':') && !self.host.starts_with('[') {
            // A bare IPv6 pod IP needs brackets to carry a port.
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// The live route table, shared by every connection; replaced whole on each change so a
/// request sees one consistent version.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: RwLock<Arc<BTreeMap<String, Dest>>>,
}

impl RouteTable {
    /// A table holding `routes`.
    pub fn new(routes: BTreeMap<String, Dest>) -> RouteTable {
        RouteTable {
            routes: RwLock::new(Arc::new(routes)),
        }
    }

    /// The current routes (cheap: one `Arc` clone).
    pub fn snapshot(&self) -> Arc<BTreeMap<String, Dest>> {
        match self.routes.read() {
            Ok(r) => r.clone(),
            // A panic elsewhere while holding the lock cannot leave the map half-written
            // (it is swapped whole), so the poisoned value is still good.
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the routes, logging what changed.
    pub fn replace(&self, routes: BTreeMap<String, Dest>) {
        let mut guard = match self.routes.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if **guard != routes {
            tracing::info!(
                routes = %routes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                "route table changed"
            );
            *guard = Arc::new(routes);
        }
    }
}

/// The route a pod provides, if any: `(route name, pod IP)` when the pod is labelled
/// `kbridge.dev/route-for=<service>` and `kbridge.dev/route-as=<name>`, is not being deleted,
/// has a pod IP and its Ready condition is True.
pub fn pod_route(pod: &Pod, service: &str) -> Option<(String, String)> {
    let labels = pod.metadata.labels.as_ref()?;
    if labels.get(LABEL_ROUTE_FOR).map(String::as_str) != Some(service) {
        return None;
    }
    let name = labels.get(LABEL_ROUTE_AS).filter(|n| !n.is_empty())?;
    // A terminating pod may still report Ready for a moment; stop routing to it at once.
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    let ip = status.pod_ip.as_ref().filter(|ip| !ip.is_empty())?;
    Some((name.clone(), ip.clone()))
}

/// A pod that provides a route, as remembered by the watcher.
#[derive(Debug, Clone)]
struct PodRoute {
    name: String,
    ip: String,
    created: Option<k8s_openapi::jiff::Timestamp>,
}

fn pod_entry(pod: &Pod, service: &str) -> Option<PodRoute> {
    let (name, ip) = pod_route(pod, service)?;
    Some(PodRoute {
        name,
        ip,
        created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
    })
}

/// Builds the table from the routing pods. When two pods claim one name (a clone being
/// replaced), the newest wins: it is the one the session's tunnel follows.
fn table_of(pods: &HashMap<String, PodRoute>) -> BTreeMap<String, Dest> {
    let mut best: BTreeMap<String, (&str, &PodRoute)> = BTreeMap::new();
    for (pod_name, r) in pods {
        let newer = match best.get(&r.name) {
            None => true,
            Some((other_name, other)) => {
                (r.created, pod_name.as_str()) > (other.created, *other_name)
            }
        };
        if newer {
            best.insert(r.name.clone(), (pod_name, r));
        }
    }
    best.into_iter()
        .map(|(name, (_, r))| {
            (
                name,
                Dest {
                    host: r.ip.clone(),
                    port: None,
                },
            )
        })
        .collect()
}

/// Keeps `table` equal to the routes of the pods labelled `kbridge.dev/route-for=<service>`
/// in `namespace`, until `cancel` fires. Watch errors are logged and retried with backoff.
pub async fn watch(
    client: kube::Client,
    namespace: &str,
    service: &str,
    table: Arc<RouteTable>,
    cancel: CancellationToken,
) {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().labels(&format!("{LABEL_ROUTE_FOR}={service}"));
    let mut stream = watcher::watcher(pods, config).default_backoff().boxed();
    let mut live: HashMap<String, PodRoute> = HashMap::new();
    let mut initial: HashMap<String, PodRoute> = HashMap::new();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = stream.next() => e,
        };
        let event = match event {
            Some(Ok(e)) => e,
            Some(Err(error)) => {
                tracing::warn!(%error, "pod watch error; the watcher retries");
                continue;
            }
            None => {
                tracing::error!("the pod watch ended; routes are frozen");
                return;
            }
        };
        let key = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
        match event {
            Event::Init => initial.clear(),
            Event::InitApply(pod) => {
                if let Some(r) = pod_entry(&pod, service) {
                    initial.insert(key(&pod), r);
                }
                continue;
            }
            Event::InitDone => live = std::mem::take(&mut initial),
            Event::Apply(pod) => match pod_entry(&pod, service) {
                Some(r) => {
                    live.insert(key(&pod), r);
                }
                None => {
                    live.remove(&key(&pod));
                }
            },
            Event::Delete(pod) => {
                live.remove(&key(&pod));
            }
        }
        table.replace(table_of(&live));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, ip: &str, secs: i64) -> PodRoute {
        PodRoute {
            name: name.into(),
            ip: ip.into(),
            created: k8s_openapi::jiff::Timestamp::from_second(secs).ok(),
        }
    }

    #[test]
    fn newest_pod_wins_a_name() {
        let mut pods = HashMap::new();
        pods.insert("a-1".to_string(), entry("alice", "10.0.0.1", 10));
        pods.insert("a-2".to_string(), entry("alice", "10.0.0.2", 20));
        pods.insert("b-1".to_string(), entry("bob", "10.0.0.3", 5));
        let t = table_of(&pods);
        assert_eq!(t["alice"].host, "10.0.0.2");
        assert_eq!(t["bob"].host, "10.0.0.3");
    }

    #[test]
    fn dest_addr() {
        let d = Dest {
            host: "fd00::1".into(),
            port: None,
        };
        assert_eq!(d.addr(80), "[fd00::1]:80");
        let d = Dest {
            host: "127.0.0.1".into(),
            port: Some(9),
        };
        assert_eq!(d.addr(80), "127.0.0.1:9");
    }
}
