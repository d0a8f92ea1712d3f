//! Workload identity from the local process as in the pod (`docs/identity.md`).
//!
//! Identities that come as files — Azure Workload Identity's `AZURE_FEDERATED_TOKEN_FILE`,
//! AWS IRSA's `AWS_WEB_IDENTITY_TOKEN_FILE`, EKS Pod Identity's
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` — are projected tokens in the pod's volumes:
//! `env_paths` copies them and `token_refresh` keeps them fresh. Identities that come from
//! an HTTP endpoint only the pod's network reaches (EKS Pod Identity's credentials
//! endpoint, the GKE metadata server, Azure IMDS) are this module's: [`plan`] reads which
//! endpoints the pod's environment names (or `ManagedIdentity` asks for), [`listen`] gives
//! each a local address whose connections an agent carries into the pod's network, and
//! [`forward`] points the variables the SDKs read at those addresses.

pub mod listen;
pub mod plan;

use crate::session::cluster::addresses::AddressBook;
use crate::session::cluster::tunnels::Agents;
use plan::{Endpoint, Plan};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A variable now pointing at a local address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityEndpoint {
    /// Variable name.
    pub name: String,
    /// The pod's value (`None`: added by `ManagedIdentity`).
    pub pod_value: Option<String>,
    /// The value the local process gets.
    pub local_value: String,
    /// What the agent dials, `HOST:PORT`.
    pub endpoint: String,
}

/// What [`forward`] did.
#[derive(Debug, Default)]
pub struct Forwarded {
    /// Variables pointing at local addresses now.
    pub endpoints: Vec<IdentityEndpoint>,
    /// Lines for the user: variables kept and endpoints that got no address, with why.
    pub notes: Vec<String>,
}

/// What [`forward`] needs of the session: its address book, agents, tasks, cancellation.
pub struct Session<'a> {
    /// Where local addresses come from (shared with the forwarded Services).
    pub book: &'a mut AddressBook,
    /// The agents that carry connections.
    pub agents: Agents,
    /// The session's tasks.
    pub tasks: &'a TaskTracker,
    /// The session's end.
    pub cancel: CancellationToken,
}

/// Binds a local address for every endpoint of `plan` and starts carrying its connections;
/// returns the rewritten variables. An endpoint that cannot be bound leaves its variables as
/// the pod has them, and says why.
pub async fn forward(plan: &Plan, session: Session<'_>) -> Forwarded {
    let mut forwarded = Forwarded::default();
    for kept in &plan.kept {
        forwarded
            .notes
            .push(format!("{} kept as in the pod: {}", kept.name, kept.reason));
    }
    let mut local: BTreeMap<Endpoint, SocketAddr> = BTreeMap::new();
    for endpoint in plan.endpoints() {
        match listen::bind(session.book, &endpoint).await {
            Ok((listener, address)) => {
                listen::serve(
                    listener,
                    endpoint.clone(),
                    session.agents.clone(),
                    session.tasks,
                    session.cancel.clone(),
                );
                local.insert(endpoint, address);
            }
            Err(error) => forwarded.notes.push(format!(
                "identity endpoint {endpoint} is not reachable locally: {error}"
            )),
        }
    }
    for rewrite in &plan.rewrites {
        let Some(address) = local.get(&rewrite.endpoint) else {
            continue;
        };
        forwarded.endpoints.push(IdentityEndpoint {
            name: rewrite.name.clone(),
            pod_value: rewrite.pod_value.clone(),
            local_value: rewrite.value_at(&address.to_string()),
            endpoint: rewrite.endpoint.to_string(),
        });
    }
    forwarded
}

/// The startup summary's line for `endpoints`, if there are any.
pub fn summary(endpoints: &[IdentityEndpoint]) -> Option<String> {
    if endpoints.is_empty() {
        return None;
    }
    let list: Vec<String> = endpoints
        .iter()
        .map(|e| {
            format!(
                "{} → {} ({} from the pod{})",
                e.name,
                e.local_value,
                e.endpoint,
                if e.pod_value.is_none() {
                    ", added for ManagedIdentity"
                } else {
                    ""
                }
            )
        })
        .collect();
    Some(format!(
        "identity endpoints reached through the agent: {}",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_get_local_addresses_and_variables_point_there() {
        let env = BTreeMap::from([
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_string(),
                "http://169.254.170.23/v1/credentials".to_string(),
            ),
            (
                "IDENTITY_ENDPOINT".to_string(),
                "https://x.example/token".to_string(),
            ),
        ]);
        let plan = plan::plan(&env, true, &[]);
        let mut book = AddressBook::seeded("identity-test");
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let forwarded = forward(
            &plan,
            Session {
                book: &mut book,
                agents: Agents::default(),
                tasks: &tasks,
                cancel: cancel.clone(),
            },
        )
        .await;
        let aws = forwarded
            .endpoints
            .iter()
            .find(|e| e.name == "AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .expect("rewritten");
        assert!(aws.local_value.starts_with("http://127.1."), "{aws:?}");
        assert!(aws.local_value.ends_with("/v1/credentials"), "{aws:?}");
        let gce = forwarded
            .endpoints
            .iter()
            .find(|e| e.name == "GCE_METADATA_HOST")
            .expect("added for ManagedIdentity");
        assert_eq!(gce.endpoint, "169.254.169.254:80");
        // The listener is there: a connection is accepted (and dropped: no agent).
        let address: SocketAddr = gce.local_value.parse().expect("host:port");
        tokio::net::TcpStream::connect(address)
            .await
            .expect("listening");
        assert!(forwarded
            .notes
            .iter()
            .any(|n| n.contains("IDENTITY_ENDPOINT")));
        let line = summary(&forwarded.endpoints).expect("summary");
        assert!(line.contains("added for ManagedIdentity"), "{line}");
        cancel.cancel();
        tasks.close();
        tasks.wait().await;
    }
}
