//! `kbridge lsp`: a language server for the bridge configuration —
//! `KubernetesLocalProcessConfig.yaml`, `azds-local.env` and the `"type": "bridge"`
//! configurations of `launch.json` — on stdio. See `docs/lsp.md`.
//!
//! - [`server`]: the loop, the lifecycle, dispatch;
//! - [`documents`]: the open documents and their kinds; [`position`]: offsets ↔ positions;
//! - [`tree`], [`yaml`]: the documents as positioned trees; [`schema`]: what kbridge accepts,
//!   from `kbridge-config`'s JSON Schemas; [`tokens`]: `$(…)` / `${…}` tokens;
//! - [`diagnostics`], [`completion`], [`hover`], [`code_actions`]: the features;
//! - [`cluster`]: what is known of the cluster, behind a trait that never blocks;
//!   [`live`]: that knowledge from the current kubeconfig, refreshed in the background;
//!   [`scope`]: which part of the cluster a document is about.

pub mod cluster;
pub mod code_actions;
pub mod completion;
pub mod diagnostics;
pub mod documents;
pub mod hover;
pub mod live;
pub mod position;
pub mod schema;
pub mod scope;
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
    let cluster = Arc::new(live::LiveCluster::start());
    serve(
        crate::proxy::stdio::input(),
        crate::proxy::stdio::output(),
        cluster,
    )
    .await
}
