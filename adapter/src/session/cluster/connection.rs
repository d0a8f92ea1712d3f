//! The connection to the cluster: a kube client for the context the user chose (or the
//! kubeconfig's current one) and the namespace to work in, the way kubectl picks them.
//!
//! Cluster code reaches the API through [`Cluster`]: [`Cluster::api`] for the session's
//! namespace (and [`Cluster::api_in`], [`Cluster::dynamic_api`]), and the typed helpers
//! ([`Cluster::get_opt`], [`Cluster::list`], [`Cluster::create_or_keep`],
//! [`Cluster::delete_if_exists`]) that classify every client error with
//! [`ClusterError::from_kube`], naming the verb and the resource. Code that calls an `Api`
//! itself maps its errors with [`Cluster::api_error`] or [`Cluster::error_of`].

use super::errors::{is_conflict, is_not_found, ClusterError};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

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
        self.api_error_in(&self.namespace, error, verb, resource)
    }

    /// [`Cluster::api_error`] for a request in another namespace (an [`Cluster::api_in`]).
    pub fn api_error_in(
        &self,
        namespace: &str,
        error: kube::Error,
        verb: &'static str,
        resource: &'static str,
    ) -> ClusterError {
        ClusterError::from_kube(
            error,
            super::errors::Request { verb, resource },
            namespace,
            &self.url,
        )
    }
}

/// A namespaced object kind with a compile-time resource name (`deployments`, `leases`, …):
/// every `k8s_openapi` type kbridge creates, reads or deletes.
pub trait Namespaced:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + k8s_openapi::Resource
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
{
}

impl<K> Namespaced for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
{
}

impl Cluster {
    /// The API of kind `K` in this cluster's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The API of kind `K` in `namespace` (errors from it name `namespace` themselves:
    /// see [`ClusterError::from_kube`]).
    pub fn api_in<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The API of a kind known at run time (a workload kind) in this cluster's namespace.
    pub fn dynamic_api(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, resource)
    }

    /// [`Cluster::api_error`] for `verb` on kind `K`, whose resource name it knows.
    pub fn error_of<K: k8s_openapi::Resource>(
        &self,
        error: kube::Error,
        verb: &'static str,
    ) -> ClusterError {
        self.api_error(error, verb, K::URL_PATH_SEGMENT)
    }

    /// Reads `name`; `None` when it does not exist.
    pub async fn get_opt<K: Namespaced>(&self, name: &str) -> Result<Option<K>, ClusterError> {
        self.api::<K>()
            .get_opt(name)
            .await
            .map_err(|e| self.error_of::<K>(e, "get"))
    }

    /// Lists the objects of kind `K` that `params` select.
    pub async fn list<K: Namespaced>(&self, params: &ListParams) -> Result<Vec<K>, ClusterError> {
        Ok(self
            .api::<K>()
            .list(params)
            .await
            .map_err(|e| self.error_of::<K>(e, "list"))?
            .items)
    }

    /// Creates `object`; one that already exists (a retried step) is left as it is.
    pub async fn create_or_keep<K: Namespaced>(&self, object: &K) -> Result<(), ClusterError> {
        match self.api::<K>().create(&PostParams::default(), object).await {
            Ok(_) => Ok(()),
            Err(error) if is_conflict(&error) => Ok(()),
            Err(error) => Err(self.error_of::<K>(error, "create")),
        }
    }

    /// Deletes `name`; one that is already gone is fine. Whether it was there.
    pub async fn delete_if_exists<K: Namespaced>(
        &self,
        name: &str,
        params: &DeleteParams,
    ) -> Result<bool, ClusterError> {
        match self.api::<K>().delete(name, params).await {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(self.error_of::<K>(error, "delete")),
        }
    }
}

fn rustls_provider() -> Result<(), std::sync::Arc<rustls::crypto::CryptoProvider>> {
    rustls::crypto::ring::default_provider().install_default()
}
