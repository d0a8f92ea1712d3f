//! `kbridge dap`: the Debug Adapter Protocol proxy, over stdio or a TCP port.

pub mod client;
pub mod engine;
pub mod reader;
pub mod rewrite;
pub mod seq;
pub mod setup;
pub mod stdio;

pub use engine::{Engine, Outcome, ProxyOptions};

use tokio::sync::watch;

/// Serves one session on stdin/stdout, the way editors launch adapters.
pub async fn serve_stdio(options: ProxyOptions, shutdown: watch::Receiver<bool>) -> Outcome {
    let engine = Engine::new(options, stdio::input(), stdio::output(), shutdown);
    engine.run().await
}

/// Serves every connection on `listener` as its own session until `shutdown`, then
/// waits for the sessions to tear down.
pub async fn serve_tcp(
    options: ProxyOptions,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> Outcome {
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::info!(%peer, "editor connected");
                    let _ = stream.set_nodelay(true);
                    let (read, write) = stream.into_split();
                    let engine = Engine::new(options.clone(), Box::new(read), Box::new(write), shutdown.clone());
                    sessions.spawn(engine.run());
                }
                Err(error) => tracing::warn!(%error, "accept failed"),
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    let mut failures = Vec::new();
    while let Some(result) = sessions.join_next().await {
        if let Ok(Outcome::TeardownFailed(mut f)) = result {
            failures.append(&mut f);
        }
    }
    if failures.is_empty() {
        Outcome::Clean
    } else {
        Outcome::TeardownFailed(failures)
    }
}
