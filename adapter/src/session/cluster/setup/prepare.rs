//! Phase 1, prepare: everything that can fail before the cluster changes — the config
//! file read, the cluster connected, the target resolved — then the first change, the
//! session's token Secret (its undo step recorded first). Deleting that Secret later takes
//! everything the cluster garbage-collects with it.

use super::progress::step;
use crate::session::cluster::connection::Cluster;
use crate::session::cluster::isolation;
use crate::session::cluster::target::ResolvedTarget;
use crate::session::cluster::undo::ClusterAt;
use crate::session::cluster::workload::{self, TOKEN_KEY};
use crate::session::{EventSink, Guardian, SessionError, SessionRequest};
use k8s_openapi::api::core::v1::Secret;
use kbridge_config::local_process::LocalProcessConfig;
use kbridge_config::Target;
use kbridge_protocol::contract::labels::{LABEL_MANAGED_BY, MANAGED_BY_KBRIDGE};
use kube::api::{ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the later phases start from.
pub(super) struct Prepared {
    /// The connected cluster, in the session's namespace.
    pub cluster: Cluster,
    /// Where undo steps connect to: the same kubeconfig, context and namespace.
    pub at: ClusterAt,
    /// The target as the user named it.
    pub target_spec: Target,
    /// The target as found in the cluster.
    pub target: ResolvedTarget,
    /// `bridge.config`, parsed.
    pub config_file: Option<LocalProcessConfig>,
    /// The token the agents demand of kbridge.
    pub token: String,
    /// The session's Secret holding it.
    pub secret: Secret,
    /// The Secret's name.
    pub secret_name: String,
}

/// Reads, connects and resolves; then creates the session's Secret.
pub(super) async fn prepare(
    request: &SessionRequest,
    events: &EventSink,
    guardian: &Guardian,
) -> Result<Prepared, SessionError> {
    let settings = &request.settings;
    let Some(target_spec) = request.target.clone() else {
        return Err(kbridge_config::ConfigError::invalid(
            "bridge",
            "a cluster session needs a target: set `service`, `pod` or `target`",
        )
        .into());
    };
    // A mistake in the config file stops the session before the cluster changes.
    let config_file = settings
        .config
        .as_deref()
        .map(read_config_file)
        .transpose()?;

    step(events, "connecting to the cluster");
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let cluster = Cluster::connect_with(
        kubeconfig.as_deref(),
        settings.context.as_deref(),
        settings.namespace.as_deref(),
    )
    .await?;
    let at = ClusterAt {
        kubeconfig,
        context: settings.context.clone(),
        namespace: cluster.namespace.clone(),
    };
    step(
        events,
        format!("resolving {target_spec} in namespace {}", cluster.namespace),
    );
    // Through an isolated Service's saved selector, so a session never swaps the router.
    let target =
        isolation::resolve_target(&cluster, &target_spec, settings.container.as_deref()).await?;

    let token = kbridge_protocol::handshake::generate_token().map_err(|e| {
        SessionError::io(
            "no randomness for the session token",
            std::io::Error::other(e.to_string()),
        )
    })?;
    let secret_name = workload::session_secret_name(&request.id.0);
    guardian
        .record(at.delete("secret", &secret_name).into())
        .await?;
    let secret = create_secret(&cluster, &secret_name, &token).await?;
    Ok(Prepared {
        cluster,
        at,
        target_spec,
        target,
        config_file,
        token,
        secret,
        secret_name,
    })
}

/// `KubernetesLocalProcessConfig.yaml`, or an `azds.yaml`-style env file.
fn read_config_file(path: &str) -> Result<LocalProcessConfig, SessionError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SessionError::io(format!("cannot read {path}"), e))?;
    Ok(if kbridge_config::azds_env::is_azds_env(path) {
        kbridge_config::azds_env::parse_azds_env(&text, path)?
    } else {
        LocalProcessConfig::parse(&text, path)?
    })
}

/// The Secret holding the session token; the agents read it, the session's other
/// objects are owned by it.
async fn create_secret(cluster: &Cluster, name: &str, token: &str) -> Result<Secret, SessionError> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                LABEL_MANAGED_BY.into(),
                MANAGED_BY_KBRIDGE.into(),
            )])),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), token.to_string())])),
        ..Default::default()
    };
    let secrets: kube::Api<Secret> =
        kube::Api::namespaced(cluster.client.clone(), &cluster.namespace);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .map_err(|e| cluster.api_error(e, "create", "secrets").into())
}
