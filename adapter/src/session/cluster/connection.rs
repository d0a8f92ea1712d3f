//! The connection to the cluster: a kube client for the context the user chose (or the
//! kubeconfig's current one) and the namespace to work in, the way kubectl picks them.

use super::errors::ClusterError;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client bound to a context and a default namespace.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: kube::Client,
    /// The namespace: `bridge.namespace`, else the context's, else `default`.
    pub namespace: String,
    /// The API server URL, for messages.
    pub url: String,
    /// The context name.
    pub context: Option<String>,
}

impl Cluster {
    /// Connects using `KUBECONFIG`/`~/.kube/config` (or in-cluster config when neither
    /// exists), optionally with another context and namespace.
    pub async fn connect(
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Cluster, ClusterError> {
        Self::connect_with(None, context, namespace).await
    }

    /// Like [`Cluster::connect`], reading the kubeconfig at `kubeconfig` when given.
    pub async fn connect_with(
        kubeconfig: Option<&std::path::Path>,
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Cluster, ClusterError> {
        // rustls needs one process-wide crypto provider; another may already be set.
        let _ = rustls_provider();
        let options = KubeConfigOptions {
            context: context.map(str::to_string),
            ..KubeConfigOptions::default()
        };
        let kubeconfig = match kubeconfig {
            Some(path) => Kubeconfig::read_from(path),
            None => Kubeconfig::read(),
        };
        let (config, context_name) = match kubeconfig {
            Ok(kubeconfig) => {
                let current = context
                    .map(str::to_string)
                    .or_else(|| kubeconfig.current_context.clone());
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| ClusterError::Config(e.to_string()))?;
                (config, current)
            }
            Err(read_error) => match kube::Config::incluster() {
                Ok(config) => (config, None),
                Err(_) => return Err(ClusterError::Config(read_error.to_string())),
            },
        };
        let namespace = namespace
            .map(str::to_string)
            .unwrap_or_else(|| config.default_namespace.clone());
        let url = config.cluster_url.to_string();
        let client =
            kube::Client::try_from(config).map_err(|e| ClusterError::Config(e.to_string()))?;
        Ok(Cluster {
            client,
            namespace,
            url,
            context: context_name,
        })
    }
}

impl Cluster {
    /// A client error from `verb` on `resource` in this cluster's namespace, classified so
    /// that it says what to do (403 names the missing permission, transport errors the URL).
    pub fn api_error(
        &self,
        error: kube::Error,
        verb: &'static str,
        resource: &'static str,
    ) -> ClusterError {
        ClusterError::from_kube(
            error,
            super::errors::Request { verb, resource },
            &self.namespace,
            &self.url,
        )
    }
}

fn rustls_provider() -> Result<(), std::sync::Arc<rustls::crypto::CryptoProvider>> {
    rustls::crypto::ring::default_provider().install_default()
}
