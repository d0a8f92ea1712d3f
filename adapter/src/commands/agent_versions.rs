//! Doctor's **Agent versions** section: the version of every kbridge agent and isolation
//! router in the namespaces looked at, against this kbridge's. After an upgrade, a session
//! held on this machine (`kbridge connect`, `disconnectAfterDebugging: false`) still runs the
//! old agent until it is started again, and a session that crashed may have left one behind.
//!
//! An agent pod is one with the session token variable (`KBRIDGE_SESSION_TOKEN`, from the
//! session's Secret, adapter/src/session/cluster/workload.rs) or a router's label. Its
//! version is what its `/status` answers on the health port (through a port-forward), else
//! the tag of its image when that is a version, else unknown.

use k8s_openapi::api::core::v1::Pod;
use kbridge::session::cluster::connection::Cluster;
use kbridge::session::cluster::workload::session_secret_name;
use kbridge::session::registry::SessionInfo;
use kbridge_protocol::contract::agent_pod::HEALTH_PORT;
use kbridge_protocol::contract::labels::LABEL_ROUTER_FOR;
use kube::api::{Api, ListParams};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The agent's variable holding the session token; its Secret names the session.
const TOKEN_VARIABLE: &str = "KBRIDGE_SESSION_TOKEN";
/// How long one pod's `/status` may take, port-forward included.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `/status` response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// The request: HTTP/1.1 with `Connection: close`, as the in-cluster restorer sends it.
const STATUS_REQUEST: &[u8] =
    b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// What a kbridge pod in the cluster is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A session's agent (or its isolation clone), with the name of the session's Secret.
    Session {
        /// The Secret its token comes from (`kbridge-<session id>`).
        secret: String,
    },
    /// The isolation router of a Service, shared by every session isolating it.
    Router {
        /// The Service it fronts.
        service: String,
    },
}

/// A kbridge pod found in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPod {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Agent or router.
    pub role: Role,
    /// The image of its kbridge container.
    pub image: String,
}

/// The kbridge pod `pod` is, if it is one.
pub fn agent_pod(pod: &Pod) -> Option<AgentPod> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone()?;
    let containers = &pod.spec.as_ref()?.containers;
    let router_for = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(LABEL_ROUTER_FOR));
    if let Some(service) = router_for {
        let image = containers.first()?.image.clone().unwrap_or_default();
        let role = Role::Router {
            service: service.clone(),
        };
        return Some(AgentPod {
            namespace,
            name,
            role,
            image,
        });
    }
    containers.iter().find_map(|container| {
        let secret = container
            .env
            .iter()
            .flatten()
            .filter(|var| var.name == TOKEN_VARIABLE)
            .find_map(|var| {
                Some(
                    var.value_from
                        .as_ref()?
                        .secret_key_ref
                        .as_ref()?
                        .name
                        .clone(),
                )
            })?;
        Some(AgentPod {
            namespace: namespace.clone(),
            name: name.clone(),
            role: Role::Session { secret },
            image: container.image.clone().unwrap_or_default(),
        })
    })
}

/// The version an image's tag names (`…/agent:0.1.0`, `:v0.1.0`), if it names one.
pub fn version_from_tag(image: &str) -> Option<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let (_, tag) = without_digest.rsplit_once(':')?;
    if tag.contains('/') {
        return None; // `registry:5000/agent`: a port, not a tag.
    }
    let version = tag.strip_prefix('v').unwrap_or(tag);
    let numeric = version.split(['-', '+']).next().unwrap_or_default();
    let is_version = numeric.split('.').count() >= 2
        && numeric
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    is_version.then(|| version.to_string())
}

/// Why an agent's `/status` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The port-forward to the health port could not be opened.
    #[error("no port-forward to port {HEALTH_PORT}: {0}")]
    PortForward(#[source] kube::Error),
    /// The port-forward opened without a stream for the port.
    #[error("the port-forward has no stream for port {HEALTH_PORT}")]
    NoStream,
    /// Reading or writing the stream failed.
    #[error("/status: {0}")]
    Io(#[from] std::io::Error),
    /// No complete answer in time.
    #[error("/status did not answer within {}s", STATUS_TIMEOUT.as_secs())]
    Timeout,
    /// An answer that is not a `/status` with a version.
    #[error("/status answered {0}")]
    BadAnswer(String),
}

/// Whether `response` holds a complete HTTP response: the head, and as many body bytes as
/// its `Content-Length` says (agents always send one).
fn is_complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]);
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| response.len() >= end + 4 + length)
}

/// The `version` of a `/status` answer (agents and routers both put one there).
pub fn version_from_status(response: &[u8]) -> Result<String, StatusError> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| StatusError::BadAnswer("no HTTP response".into()))?;
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(StatusError::BadAnswer(format!("'{status_line}'")));
    }
    let status: serde_json::Value = serde_json::from_str(body.trim())
        .map_err(|error| StatusError::BadAnswer(format!("no JSON ({error})")))?;
    status
        .get("version")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| StatusError::BadAnswer("no version".into()))
}

/// Asks the pod's health endpoint for its version, through a port-forward.
async fn reported_version(pods: &Api<Pod>, name: &str) -> Result<String, StatusError> {
    let ask = async {
        let mut forwarder = pods
            .portforward(name, &[HEALTH_PORT])
            .await
            .map_err(StatusError::PortForward)?;
        let mut stream = forwarder
            .take_stream(HEALTH_PORT)
            .ok_or(StatusError::NoStream)?;
        stream.write_all(STATUS_REQUEST).await?;
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        while !is_complete(&response) && response.len() < MAX_RESPONSE {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                break;
            }
            response.extend_from_slice(&chunk[..read]);
        }
        forwarder.abort();
        version_from_status(&response)
    };
    tokio::time::timeout(STATUS_TIMEOUT, ask)
        .await
        .map_err(|_| StatusError::Timeout)?
}

/// Where a pod's version came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Its `/status` said so.
    Reported(String),
    /// Its image's tag (its `/status` could not be read).
    Tagged(String),
    /// Neither: why `/status` failed.
    Unknown(String),
}

/// One line of the section, and whether it fails doctor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The line, status word first.
    pub line: String,
    /// Something on this machine needs doing: a held session runs another version.
    pub fails: bool,
}

/// The session on this machine whose Secret `secret` in `namespace` is, if any.
fn holder<'a>(local: &'a [SessionInfo], namespace: &str, secret: &str) -> Option<&'a SessionInfo> {
    local
        .iter()
        .find(|info| info.key.namespace == namespace && session_secret_name(&info.id) == secret)
}

/// Judges one pod: its version against `ours`, and what to do about a difference.
pub fn judge(pod: &AgentPod, observed: &Observed, local: &[SessionInfo], ours: &str) -> Finding {
    let what = format!("pod {}/{}", pod.namespace, pod.name);
    let (whose, fix, here) = match &pod.role {
        Role::Router { service } => (
            format!("isolation router of service {service}"),
            format!(
                "it stays until the last session isolating {service} ends; `kbridge status -n {}` lists them",
                pod.namespace
            ),
            false,
        ),
        Role::Session { secret } => match holder(local, &pod.namespace, secret) {
            Some(info) => (
                format!(
                    "{} session {} on this machine, pid {}",
                    if info.held { "held" } else { "live" },
                    info.id,
                    info.pid
                ),
                format!(
                    "end it (`kill {}`) and start it again to run this version's agent",
                    info.pid
                ),
                true,
            ),
            None => (
                format!("session {} not on this machine", secret.trim_start_matches("kbridge-")),
                format!(
                    "another kbridge's, or left by one that crashed: `kbridge status -n {}` names its workload and owner, `kbridge restore KIND/NAME -n {}` puts it back",
                    pod.namespace, pod.namespace
                ),
                false,
            ),
        },
    };
    let (version, source) = match observed {
        Observed::Reported(version) => (version, "reported"),
        Observed::Tagged(version) => (version, "from its image tag"),
        Observed::Unknown(why) => {
            return Finding {
                line: format!(
                    "unknown  {what} ({whose}): version unknown ({why}; image {})",
                    pod.image
                ),
                fails: false,
            }
        }
    };
    if version == ours {
        return Finding {
            line: format!("ok       {what} ({whose}): agent {version}"),
            fails: false,
        };
    }
    Finding {
        line: format!(
            "mismatch {what} ({whose}): agent {version} ({source}), this kbridge {ours}; {fix}"
        ),
        fails: here,
    }
}

/// The kbridge pods of one namespace.
async fn agent_pods(cluster: &Cluster, namespace: &str) -> Result<Vec<AgentPod>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let list = pods.list(&ListParams::default()).await?;
    Ok(list.items.iter().filter_map(agent_pod).collect())
}

/// What a pod's version is, by `/status`, else by its image tag.
async fn observe(cluster: &Cluster, pod: &AgentPod) -> Observed {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &pod.namespace);
    match reported_version(&pods, &pod.name).await {
        Ok(version) => Observed::Reported(version),
        Err(error) => match version_from_tag(&pod.image) {
            Some(version) => Observed::Tagged(version),
            None => Observed::Unknown(error.to_string()),
        },
    }
}

/// Prints the section for the connected namespace and those of the sessions on this
/// machine (`local`) in the same cluster. Returns false when a session on this machine
/// runs an agent of another version.
pub async fn check(cluster: &Cluster, local: &[SessionInfo]) -> bool {
    println!("\nAgent versions:");
    let ours = env!("CARGO_PKG_VERSION");
    let mut namespaces = vec![cluster.namespace.clone()];
    let url = cluster.url.trim_end_matches('/');
    for info in local {
        if info.key.cluster.trim_end_matches('/') == url
            && !namespaces.contains(&info.key.namespace)
        {
            namespaces.push(info.key.namespace.clone());
        }
    }
    let mut passed = true;
    for namespace in &namespaces {
        let pods = match agent_pods(cluster, namespace).await {
            Ok(pods) => pods,
            Err(error) => {
                println!("  unknown  cannot list pods in namespace {namespace}: {error}");
                continue;
            }
        };
        if pods.is_empty() {
            println!("  ok       no kbridge agents in namespace {namespace}");
        }
        for pod in &pods {
            let finding = judge(pod, &observe(cluster, pod).await, local, ours);
            println!("  {}", finding.line);
            passed &= !finding.fails;
        }
    }
    passed
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbridge::session::registry::TargetKey;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("pod")
    }

    fn session_agent(name: &str, secret: &str, image: &str) -> AgentPod {
        AgentPod {
            namespace: "todo".into(),
            name: name.into(),
            role: Role::Session {
                secret: secret.into(),
            },
            image: image.into(),
        }
    }

    fn local(id: &str, held: bool) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            pid: 4242,
            held,
            key: TargetKey {
                cluster: "https://127.0.0.1:6443".into(),
                namespace: "todo".into(),
                target: "service/todo-api".into(),
                container: None,
            },
            workload: "deployment/todo-api".into(),
            started: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn agents_and_routers_are_found_by_their_token_and_label() {
        let agent = pod(serde_json::json!({
            "metadata": {"name": "todo-api-1", "namespace": "todo"},
            "spec": {"containers": [
                {"name": "sidecar", "image": "envoy"},
                {"name": "api", "image": "ghcr.io/kbridge/agent:0.1.0", "env": [
                    {"name": "KBRIDGE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "KBRIDGE_SESSION_TOKEN", "valueFrom": {"secretKeyRef": {"name": "kbridge-s1", "key": "token"}}}
                ]}
            ]}
        }));
        assert_eq!(
            agent_pod(&agent),
            Some(session_agent(
                "todo-api-1",
                "kbridge-s1",
                "ghcr.io/kbridge/agent:0.1.0"
            ))
        );
        let router = pod(serde_json::json!({
            "metadata": {"name": "r-1", "namespace": "todo", "labels": {"kbridge.dev/router-for": "todo-api"}},
            "spec": {"containers": [{"name": "router", "image": "ghcr.io/kbridge/agent:0.0.9"}]}
        }));
        assert_eq!(
            agent_pod(&router).map(|p| p.role),
            Some(Role::Router {
                service: "todo-api".into()
            })
        );
        let app = pod(serde_json::json!({
            "metadata": {"name": "stats", "namespace": "todo"},
            "spec": {"containers": [{"name": "stats", "image": "stats:1.0", "env": [{"name": "KBRIDGE_SESSION_TOKEN", "value": "literal"}]}]}
        }));
        assert_eq!(agent_pod(&app), None, "a literal token is not a session's");
    }

    #[test]
    fn image_tags_that_are_versions() {
        assert_eq!(
            version_from_tag("ghcr.io/kbridge/agent:0.1.0").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(
            version_from_tag("r:5000/kbridge/agent:v0.2.0-rc.1").as_deref(),
            Some("0.2.0-rc.1")
        );
        assert_eq!(
            version_from_tag("r/agent:0.1.0@sha256:ab").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(version_from_tag("kbridge/agent:dev"), None);
        assert_eq!(version_from_tag("kbridge/agent:1"), None);
        assert_eq!(version_from_tag("registry:5000/kbridge/agent"), None);
        assert_eq!(version_from_tag("kbridge/agent"), None);
    }

    #[test]
    fn status_answers() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 23\r\nConnection: close\r\n\r\n{\"version\":\"0.0.9\"}\n   ";
        assert!(is_complete(ok));
        assert!(!is_complete(&ok[..50]));
        assert_eq!(version_from_status(ok).expect("version"), "0.0.9");
        let missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
        assert!(
            matches!(version_from_status(missing), Err(StatusError::BadAnswer(m)) if m.contains("404"))
        );
        let no_version = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert!(
            matches!(version_from_status(no_version), Err(StatusError::BadAnswer(m)) if m == "no version")
        );
        assert!(version_from_status(b"garbage").is_err());
    }

    #[test]
    fn a_held_session_with_another_agent_version_fails() {
        let pod = session_agent(
            "todo-api-1",
            &session_secret_name("s1"),
            "kbridge/agent:dev",
        );
        let sessions = [local("s1", true)];
        let same = judge(
            &pod,
            &Observed::Reported("0.1.0".into()),
            &sessions,
            "0.1.0",
        );
        assert!(!same.fails);
        assert!(same.line.starts_with("ok       pod todo/todo-api-1 (held session s1 on this machine, pid 4242): agent 0.1.0"), "{}", same.line);
        let old = judge(
            &pod,
            &Observed::Reported("0.0.9".into()),
            &sessions,
            "0.1.0",
        );
        assert!(old.fails);
        assert!(
            old.line
                .starts_with("mismatch pod todo/todo-api-1 (held session s1"),
            "{}",
            old.line
        );
        assert!(
            old.line
                .contains("agent 0.0.9 (reported), this kbridge 0.1.0; end it (`kill 4242`)"),
            "{}",
            old.line
        );
    }

    #[test]
    fn a_leftover_agent_or_router_is_reported_without_failing() {
        let leftover = session_agent("todo-api-2", "kbridge-gone", "ghcr.io/kbridge/agent:0.0.9");
        let finding = judge(
            &leftover,
            &Observed::Tagged("0.0.9".into()),
            &[local("s1", true)],
            "0.1.0",
        );
        assert!(!finding.fails);
        assert!(finding.line.contains("(session gone not on this machine): agent 0.0.9 (from its image tag), this kbridge 0.1.0"), "{}", finding.line);
        assert!(
            finding.line.contains("kbridge restore KIND/NAME -n todo"),
            "{}",
            finding.line
        );
        let router = AgentPod {
            role: Role::Router {
                service: "todo-api".into(),
            },
            ..leftover.clone()
        };
        let finding = judge(&router, &Observed::Reported("0.0.9".into()), &[], "0.1.0");
        assert!(
            !finding.fails
                && finding
                    .line
                    .contains("isolation router of service todo-api")
        );
        let unknown = judge(
            &leftover,
            &Observed::Unknown("timeout".into()),
            &[],
            "0.1.0",
        );
        assert!(
            !unknown.fails && unknown.line.starts_with("unknown  "),
            "{}",
            unknown.line
        );
    }
}
