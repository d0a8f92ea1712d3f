//! The router's plain-HTTP side port: `GET /healthz` (probes) and `GET /routes` (the live
//! route table as JSON, for `kbridge status` and humans).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::routes::RouteTable;

/// Serves the health port until `cancel` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    service: String,
    table: Arc<RouteTable>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let service = Arc::new(service);
    loop {
        let sock = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "health accept failed");
                    // A persistent error (EMFILE) must not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (service, table, cancel) = (service.clone(), table.clone(), cancel.clone());
        tracker.spawn(async move {
            let svc = service_fn(move |req| {
                let resp = answer(&req, &service, &table);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(sock), svc);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

fn answer(req: &Request<Incoming>, service: &str, table: &RouteTable) -> Response<Full<Bytes>> {
    let (code, ctype, body) = if req.method() != Method::GET && req.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".to_string(),
        )
    } else {
        match req.uri().path() {
            "/healthz" | "/readyz" | "/livez" => (StatusCode::OK, "text/plain", "ok".to_string()),
            "/routes" => (
                StatusCode::OK,
                "application/json",
                routes_json(service, table),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_string(),
            ),
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

/// `{"service":"todo-api","routes":{"alice":"10.0.0.7"}}`.
pub(crate) fn routes_json(service: &str, table: &RouteTable) -> String {
    let routes: serde_json::Map<String, serde_json::Value> = table
        .snapshot()
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string().into()))
        .collect();
    serde_json::json!({ "service": service, "routes": routes }).to_string()
}
