//! `kbridge lsp`: a language server for the bridge configuration —
//! `KubernetesLocalProcessConfig.yaml`, `azds-local.env` and the `"type": "bridge"`
//! configurations of `launch.json` — on stdio. See `docs/lsp.md`.
//!
//! - [`server`]: the loop, the lifecycle, dispatch;
//! - [`documents`]: the open documents and their kinds; [`position`]: offsets ↔ positions;
//! - [`tree`], [`yaml`]: the documents as positioned trees; [`schema`]: what kbridge accepts,
//!   from `kbridge-config`'s JSON Schemas; [`tokens`]: `$(…)` / `${…}` tokens;
//! - [`diagnostics`], [`completion`], [`hover`]: the features;
//! - [`cluster`]: what is known of the cluster, behind a trait that never blocks.

pub mod cluster;
pub mod completion;
pub mod diagnostics;
pub mod documents;
pub mod hover;
pub mod position;
pub mod schema;
pub mod server;
pub mod tokens;
pub mod tree;
pub mod yaml;

pub use server::{serve, Exit, LspError};
use std::sync::Arc;

/// Serves the editor on stdin/stdout until it says `exit` or closes the connection. Logs
/// go to stderr, which editors show in their language server log.
pub async fn run_stdio() -> Result<Exit, LspError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "kbridge lsp");
    let cluster = Arc::new(cluster::NoCluster);
    serve(
        crate::proxy::stdio::input(),
        crate::proxy::stdio::output(),
        cluster,
    )
    .await
}
