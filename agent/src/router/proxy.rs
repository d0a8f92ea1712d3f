//! Serves one accepted connection: sniffs it, then routes each HTTP/1.1 request or h2c stream
//! to a session's pod or to the origin (pooled upstream connections, streamed bodies, upgrades
//! spliced), or splices non-HTTP bytes to the origin.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1 as client1, http2 as client2};
use hyper::server::conn::{http1 as server1, http2 as server2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::parked::{self, ParkedIo, Turn, PARK_AFTER};
use super::routes::{Dest, RouteTable};
use super::sniff::{sniff, Protocol};

/// The routing header (Bridge to Kubernetes' name, so existing propagation keeps working).
pub use kbridge_protocol::contract::agent_pod::ROUTE_HEADER;

/// Body type of every response the router produces.
pub(crate) type Body = BoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Time to establish an upstream TCP connection before answering 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle upstream HTTP/1.1 connections kept per destination.
const MAX_IDLE_PER_DEST: usize = 32;
/// An idle upstream connection older than this is closed rather than reused: servers commonly
/// close idle keep-alive connections after 60 s or more, and reusing one they are about to
/// close loses the request.
const IDLE_EXPIRY: Duration = Duration::from_secs(30);

/// Where a request goes, as decided from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// A session's route, chosen by header (`by_host == false`) or Host prefix.
    Route {
        /// Route name.
        name: String,
        /// True when the Host/`:authority` prefix chose it (the header must then be added).
        by_host: bool,
    },
    /// No (known) route: the origin.
    Origin,
}

/// Picks the route for a request: a known `kubernetes-route-as` value, else a Host (or
/// `:authority`) starting with `<name>.` for a known name (longest name wins), else origin.
pub fn choose(headers: &HeaderMap, uri: &Uri, routes: &BTreeMap<String, Dest>) -> Choice {
    if let Some(v) = headers.get(ROUTE_HEADER).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if routes.contains_key(v) {
            return Choice::Route {
                name: v.to_string(),
                by_host: false,
            };
        }
        // An unknown name goes to the origin (as Bridge to Kubernetes did), even if the Host
        // names a route: the header is the more deliberate signal.
        return Choice::Origin;
    }
    let host = uri
        .authority()
        .map(|a| a.host())
        .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let host = host.as_bytes();
    let mut best: Option<&str> = None;
    for name in routes.keys() {
        let n = name.as_bytes();
        if host.len() > n.len()
            && host[..n.len()].eq_ignore_ascii_case(n)
            && host[n.len()] == b'.'
            && best.is_none_or(|b| b.len() < n.len())
        {
            best = Some(name);
        }
    }
    match best {
        Some(name) => Choice::Route {
            name: name.to_string(),
            by_host: true,
        },
        None => Choice::Origin,
    }
}

/// State shared by every connection of one router.
pub(crate) struct Shared {
    pub(crate) origin: Dest,
    pub(crate) table: Arc<RouteTable>,
    pub(crate) pool: Pool,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

/// Serves one accepted connection that arrived on listen port `port`.
///
/// The future stays small while a connection waits (the task of every idle keep-alive
/// connection holds one): what serving a request needs is boxed while it runs.
pub(crate) async fn serve(sock: TcpStream, port: u16, shared: Arc<Shared>) {
    let _ = sock.set_nodelay(true);
    let proto = tokio::select! {
        _ = shared.cancel.cancelled() => return,
        p = Box::pin(sniff(&sock)) => p,
    };
    match proto {
        Protocol::Raw => Box::pin(raw(sock, port, &shared)).await,
        Protocol::Http1 => serve_h1(sock, port, shared).await,
        Protocol::H2c => Box::pin(serve_h2(sock, port, shared)).await,
    }
}

/// Serves HTTP/1.x requests, parking the connection between them ([`parked`]).
async fn serve_h1(sock: TcpStream, port: u16, shared: Arc<Shared>) {
    let turn = Arc::new(Turn::default());
    let mut io = ParkedIo::new(sock, turn.clone());
    loop {
        if !io.has_input() {
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                readable = io.readable() => if readable.is_err() { return },
            }
        }
        match Box::pin(serve_h1_until_parked(io, port, &shared, &turn)).await {
            Some(parked) => io = parked,
            None => return,
        }
    }
}

/// Serves `io` with one hyper connection until it can be parked after a response
/// (`Some`: the socket, to wait on for the next request) or the connection ends.
async fn serve_h1_until_parked(
    io: ParkedIo,
    port: u16,
    shared: &Arc<Shared>,
    turn: &Arc<Turn>,
) -> Option<ParkedIo> {
    turn.begin();
    let svc = {
        let (shared, turn) = (shared.clone(), turn.clone());
        service_fn(move |req: Request<Incoming>| {
            // Called as soon as hyper has the request head.
            turn.begin();
            let parkable = parked::reusable(&req);
            let (shared, turn) = (shared.clone(), turn.clone());
            async move {
                let resp = route_h1(req, port, &shared).await;
                if parkable {
                    turn.done();
                }
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let mut conn = server1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let cancelled = shared.cancel.cancelled();
    let mut cancelled = std::pin::pin!(cancelled);
    // Armed when the connection turns idle, for the request count then; fires after
    // PARK_AFTER and parks the connection if no request came since (else it is armed again
    // for the latest). Requests themselves touch no timer.
    let idle = tokio::time::sleep(PARK_AFTER);
    let mut idle = std::pin::pin!(idle);
    let mut armed: Option<u64> = None;
    let (mut parking, mut stopping) = (false, false);
    let result = std::future::poll_fn(|cx| {
        if !stopping && cancelled.as_mut().poll(cx).is_ready() {
            // Finish the request in flight, then close; an idle connection closes at once.
            stopping = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        let polled = Pin::new(&mut conn).poll(cx);
        if polled.is_ready() || parking || stopping {
            return polled;
        }
        let Some(since) = armed else {
            if let Some(count) = turn.idle() {
                armed = Some(count);
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + PARK_AFTER);
                // Registers the timer's wake-up.
                let _ = idle.as_mut().poll(cx);
            }
            return polled;
        };
        if idle.as_mut().poll(cx).is_pending() {
            return polled;
        }
        match turn.idle() {
            // Idle all along: hyper has no request (the service answered the latest and
            // none came since), so a graceful shutdown closes the connection at once.
            Some(count) if count == since && turn.park(count) => {
                parking = true;
                Pin::new(&mut conn).graceful_shutdown();
                return Pin::new(&mut conn).poll(cx);
            }
            Some(count) => {
                armed = Some(count);
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + PARK_AFTER);
                let _ = idle.as_mut().poll(cx);
            }
            None => armed = None,
        }
        polled
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP/1 client connection ended");
        return None;
    }
    if !parking || stopping {
        return None;
    }
    // None: upgraded (the socket now belongs to the splice).
    let parts = conn.into_parts()?;
    let io = parts.io.into_inner().parked(parts.read_buf);
    parked::return_freed_memory();
    Some(io)
}

async fn serve_h2(sock: TcpStream, port: u16, shared: Arc<Shared>) {
    let cancel = shared.cancel.clone();
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route_h2(req, port, &shared).await) }
    });
    let conn =
        server2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(sock), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "h2c client connection ended");
            }
        }
        _ = cancel.cancelled() => {
            // GOAWAY: streams in flight finish, no new ones are accepted.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves a request's destination: `(label for logs and 502s, host:port)`, adding the
/// routing header when the Host prefix chose the route.
fn resolve(req: &mut Request<Incoming>, port: u16, shared: &Shared) -> (String, String) {
    let routes = shared.table.snapshot();
    match choose(req.headers(), req.uri(), &routes) {
        Choice::Route { name, by_host } => {
            let Some(dest) = routes.get(&name) else {
                return ("origin".into(), shared.origin.addr(port));
            };
            if by_host {
                if let Ok(v) = HeaderValue::from_str(&name) {
                    req.headers_mut()
                        .insert(HeaderName::from_static(ROUTE_HEADER), v);
                }
            }
            (name, dest.addr(port))
        }
        Choice::Origin => ("origin".into(), shared.origin.addr(port)),
    }
}

async fn route_h1(mut req: Request<Incoming>, port: u16, shared: &Shared) -> Response<Body> {
    let (label, addr) = resolve(&mut req, port, shared);
    tracing::debug!(route = %label, %addr, method = %req.method(), uri = %req.uri(), "HTTP/1");
    if is_upgrade(req.headers()) {
        return upgrade(req, &label, &addr, shared).await;
    }
    strip_hop_by_hop(req.headers_mut());
    match shared.pool.send_h1(&addr, req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut());
            resp.map(|b| b.map_err(BoxError::from).boxed())
        }
        Err(e) => bad_gateway(&label, &addr, &e),
    }
}

async fn route_h2(mut req: Request<Incoming>, port: u16, shared: &Shared) -> Response<Body> {
    let (label, addr) = resolve(&mut req, port, shared);
    tracing::debug!(route = %label, %addr, method = %req.method(), uri = %req.uri(), "h2c");
    match shared.pool.send_h2(&addr, req).await {
        Ok(resp) => resp.map(|b| b.map_err(BoxError::from).boxed()),
        Err(e) => bad_gateway(&label, &addr, &e),
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes the headers that describe this hop's connection, not the message: forwarding a
/// client's `Connection: close` would close the pooled upstream connection, and an upstream's
/// would close the client's.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in ["connection", "keep-alive", "proxy-connection", "upgrade"] {
        headers.remove(name);
    }
}

/// Sends an `Upgrade` request on a connection of its own and, on 101, splices the two
/// upgraded connections.
async fn upgrade(
    mut req: Request<Incoming>,
    label: &str,
    addr: &str,
    shared: &Shared,
) -> Response<Body> {
    let client_side = hyper::upgrade::on(&mut req);
    let result = async {
        let tcp = connect(addr).await?;
        let (mut sender, conn) = client1::handshake::<_, Incoming>(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upgrade upstream connection ended");
            }
        });
        Ok::<_, BoxError>(sender.send_request(req).await?)
    }
    .await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => return bad_gateway(label, addr, &e),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_side = hyper::upgrade::on(&mut resp);
        let label = label.to_string();
        shared.tracker.spawn(async move {
            match tokio::try_join!(client_side, upstream_side) {
                Ok((c, u)) => {
                    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                        tracing::debug!(route = %label, error = %e, "upgraded connection ended");
                    }
                }
                Err(e) => tracing::debug!(route = %label, error = %e, "upgrade failed"),
            }
        });
    }
    resp.map(|b| b.map_err(BoxError::from).boxed())
}

/// Splices a non-HTTP connection to the origin; if the origin is down, closes the client.
async fn raw(mut sock: TcpStream, port: u16, shared: &Shared) {
    let addr = shared.origin.addr(port);
    match connect(&addr).await {
        Ok(mut up) => {
            if let Err(e) = tokio::io::copy_bidirectional(&mut sock, &mut up).await {
                tracing::debug!(%addr, error = %e, "raw TCP splice ended");
            }
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "origin unreachable; closing a raw TCP connection")
        }
    }
}

async fn connect(addr: &str) -> Result<TcpStream, BoxError> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect timed out after {CONNECT_TIMEOUT:?}"))??;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

fn bad_gateway(label: &str, addr: &str, e: &BoxError) -> Response<Body> {
    tracing::warn!(route = %label, %addr, error = %e, "destination unreachable");
    let text = format!("kbridge router: cannot reach {label} ({addr}): {e}\n");
    let mut resp = Response::new(Full::new(Bytes::from(text)).map_err(BoxError::from).boxed());
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Upstream connections by destination `host:port`: idle HTTP/1.1 connections (reused one
/// request at a time) and one multiplexed h2c connection.
#[derive(Default)]
pub(crate) struct Pool {
    h1: Arc<Mutex<HashMap<String, Vec<IdleH1>>>>,
    h2: Mutex<HashMap<String, H2Slot>>,
}

/// An idle HTTP/1.1 upstream connection and when it became idle.
type IdleH1 = (client1::SendRequest<Incoming>, Instant);
/// The h2c connection to one destination; the async lock serialises connecting.
type H2Slot = Arc<tokio::sync::Mutex<Option<client2::SendRequest<Incoming>>>>;

impl Pool {
    /// Takes a reusable idle connection to `addr`, dropping dead or stale ones.
    fn checkout_h1(&self, addr: &str) -> Option<client1::SendRequest<Incoming>> {
        let mut idle = self.h1.lock().ok()?;
        let list = idle.get_mut(addr)?;
        while let Some((sender, since)) = list.pop() {
            if sender.is_ready() && since.elapsed() < IDLE_EXPIRY {
                return Some(sender);
            }
        }
        None
    }

    /// Returns the connection to the pool once its response has been read to the end (an
    /// HTTP/1.1 connection carries one exchange at a time).
    fn checkin_when_ready(&self, addr: String, mut sender: client1::SendRequest<Incoming>) {
        let idle = self.h1.clone();
        tokio::spawn(async move {
            // Err: the connection closed (or the body was abandoned mid-way): not reusable.
            if sender.ready().await.is_ok() {
                if let Ok(mut idle) = idle.lock() {
                    let list = idle.entry(addr).or_default();
                    if list.len() < MAX_IDLE_PER_DEST {
                        list.push((sender, Instant::now()));
                    }
                }
            }
        });
    }

    /// Drops closed and stale idle connections, and empty destinations (routes come and go).
    pub(crate) fn sweep(&self) {
        if let Ok(mut idle) = self.h1.lock() {
            idle.retain(|_, list| {
                list.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_EXPIRY);
                !list.is_empty()
            });
        }
        if let Ok(mut h2) = self.h2.lock() {
            h2.retain(|_, slot| match slot.try_lock() {
                Ok(s) => s.as_ref().is_some_and(|s| !s.is_closed()),
                // Someone is connecting right now: keep it.
                Err(_) => true,
            });
        }
    }

    async fn send_h1(
        &self,
        addr: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, BoxError> {
        let mut req = req;
        // A pooled connection the server closed an instant ago fails before the request is
        // written; hyper hands the request back and it is sent again on a fresh connection.
        if let Some(mut sender) = self.checkout_h1(addr) {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.checkin_when_ready(addr.to_string(), sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let tcp = connect(addr).await?;
        let (mut sender, conn) = client1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/1 connection ended");
            }
        });
        let resp = sender.send_request(req).await?;
        self.checkin_when_ready(addr.to_string(), sender);
        Ok(resp)
    }

    async fn send_h2(
        &self,
        addr: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, BoxError> {
        let slot = {
            let mut map = self.h2.lock().map_err(|_| "h2 pool lock poisoned")?;
            map.entry(addr.to_string()).or_default().clone()
        };
        let mut req = req;
        // Two tries: the cached connection may have just received GOAWAY.
        for _ in 0..2 {
            let mut sender = {
                let mut cur = slot.lock().await;
                match cur.as_ref() {
                    Some(s) if !s.is_closed() => s.clone(),
                    _ => {
                        let tcp = connect(addr).await?;
                        let (s, conn) =
                            client2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "upstream h2c connection ended");
                            }
                        });
                        *cur = Some(s.clone());
                        s
                    }
                }
            };
            sender.ready().await?;
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(r) => {
                        req = r;
                        *slot.lock().await = None;
                    }
                    None => return Err(e.into_error().into()),
                },
            }
        }
        Err("the upstream h2c connection kept closing".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> BTreeMap<String, Dest> {
        let d = |h: &str| Dest {
            host: h.into(),
            port: None,
        };
        [
            ("alice", d("10.0.0.1")),
            ("bob", d("10.0.0.2")),
            ("bob.x", d("10.0.0.3")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn route(name: &str, by_host: bool) -> Choice {
        Choice::Route {
            name: name.into(),
            by_host,
        }
    }

    #[test]
    fn chooses() {
        let t = table();
        let root = Uri::from_static("/");
        let c = |h: &[(&'static str, &'static str)]| choose(&headers(h), &root, &t);
        assert_eq!(
            c(&[("Kubernetes-Route-As", "alice")]),
            route("alice", false)
        );
        assert_eq!(c(&[("kubernetes-route-as", "carol")]), Choice::Origin);
        assert_eq!(
            c(&[("kubernetes-route-as", "carol"), ("host", "alice.example")]),
            Choice::Origin
        );
        assert_eq!(
            c(&[("host", "alice.example.com:8080")]),
            route("alice", true)
        );
        assert_eq!(c(&[("host", "Bob.x.example")]), route("bob.x", true));
        assert_eq!(c(&[("host", "bob.example")]), route("bob", true));
        assert_eq!(c(&[("host", "alice:8080")]), Choice::Origin);
        assert_eq!(c(&[("host", "alicex.example")]), Choice::Origin);
        assert_eq!(c(&[]), Choice::Origin);
        let h2 = Uri::from_static("http://alice.svc:80/x");
        assert_eq!(choose(&HeaderMap::new(), &h2, &t), route("alice", true));
    }

    #[test]
    fn hop_by_hop() {
        let mut h = headers(&[
            ("connection", "close, x-trace"),
            ("x-trace", "1"),
            ("keep-alive", "timeout=5"),
            ("content-length", "3"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-length"));
        assert!(is_upgrade(&headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
    }

    // Property tests of the per-request decisions, standing in for a fuzz target: the
    // router needs the agent crate, whose kube and k8s-openapi dependencies take too long
    // to build under sanitizer coverage (see fuzz/src/lib.rs).
    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Route names, some of them a dotted extension of another (`bob`, `bob.x`), where
        /// the longest must win.
        fn routes() -> impl Strategy<Value = BTreeMap<String, Dest>> {
            prop::collection::vec(
                ("[a-z][a-z0-9-]{0,4}", prop::option::of("[a-z0-9]{1,3}")),
                0..4,
            )
            .prop_map(|names| {
                let dest = |i: usize| Dest {
                    host: format!("10.0.0.{i}"),
                    port: None,
                };
                let mut routes = BTreeMap::new();
                for (i, (base, ext)) in names.into_iter().enumerate() {
                    if let Some(ext) = ext {
                        routes.insert(format!("{base}.{ext}"), dest(2 * i + 1));
                    }
                    routes.insert(base, dest(2 * i));
                }
                routes
            })
        }

        /// A header value or Host: often a route name in any case, with what may follow.
        fn text(routes: Vec<String>) -> impl Strategy<Value = String> {
            let known = if routes.is_empty() {
                vec!["alice".to_string()]
            } else {
                routes
            };
            prop_oneof![
                (
                    prop::sample::select(known),
                    any::<bool>(),
                    prop::sample::select(vec![
                        "",
                        ".",
                        ".svc",
                        ".x.example:80",
                        "x.y",
                        ":8080",
                        " "
                    ]),
                )
                    .prop_map(|(n, upper, tail)| {
                        let n = if upper { n.to_ascii_uppercase() } else { n };
                        format!("{n}{tail}")
                    }),
                "[ -~]{0,16}",
            ]
        }

        fn case(
        ) -> impl Strategy<Value = (BTreeMap<String, Dest>, Option<String>, Option<String>, bool)>
        {
            routes().prop_flat_map(|routes| {
                let names: Vec<String> = routes.keys().cloned().collect();
                (
                    Just(routes),
                    prop::option::of(text(names.clone())),
                    prop::option::of(text(names)),
                    any::<bool>(),
                )
            })
        }

        fn host_names_route(host: &str, name: &str) -> bool {
            let (host, name) = (host.to_ascii_lowercase(), name.to_ascii_lowercase());
            host.strip_prefix(&name)
                .is_some_and(|rest| rest.starts_with('.'))
        }

        proptest! {
            /// A known `kubernetes-route-as` wins; else the longest route name that the
            /// Host (or an absolute target's authority) starts with, then a dot; else the
            /// origin.
            #[test]
            fn choose_follows_the_header_then_the_longest_host_prefix(
                (routes, header, host, absolute) in case()
            ) {
                let mut headers = HeaderMap::new();
                if let Some(v) = &header {
                    headers.insert(ROUTE_HEADER, HeaderValue::from_str(v).expect("visible ASCII"));
                }
                let mut uri = Uri::from_static("/todos");
                if let Some(h) = &host {
                    match format!("http://{h}/todos").parse::<Uri>() {
                        Ok(u) if absolute => uri = u,
                        _ => {
                            headers.insert(HOST, HeaderValue::from_str(h).expect("visible ASCII"));
                        }
                    }
                }
                let seen_host = uri
                    .authority()
                    .map(|a| a.host().to_string())
                    .or_else(|| host.clone())
                    .unwrap_or_default();
                let matching: Vec<&String> =
                    routes.keys().filter(|n| host_names_route(&seen_host, n)).collect();
                let longest = matching.iter().map(|n| n.len()).max();
                match choose(&headers, &uri, &routes) {
                    Choice::Route { name, by_host: false } => {
                        prop_assert_eq!(header.as_deref().map(str::trim), Some(name.as_str()));
                        prop_assert!(routes.contains_key(&name));
                    }
                    Choice::Route { name, by_host: true } => {
                        prop_assert!(header.is_none(), "the Host chose although a header was sent");
                        prop_assert!(routes.contains_key(&name));
                        prop_assert!(host_names_route(&seen_host, &name), "{} for {}", name, seen_host);
                        prop_assert_eq!(Some(name.len()), longest, "a longer name also matches");
                    }
                    Choice::Origin => match &header {
                        Some(v) => prop_assert!(!routes.contains_key(v.trim())),
                        None => prop_assert!(matching.is_empty(), "{:?} match {}", matching, seen_host),
                    },
                }
            }

            /// What a connection's `Connection` header names, and the hop-by-hop headers,
            /// are removed; every other header stays with all its values.
            #[test]
            fn hop_by_hop_headers_and_only_they_are_stripped(
                fields in prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "connection", "keep-alive", "proxy-connection", "upgrade", "x-trace",
                            "content-length", "te", "host", "kubernetes-route-as",
                        ]),
                        prop_oneof![
                            "[ -~]{0,12}",
                            prop::collection::vec(
                                prop::sample::select(vec![
                                    "close", "Upgrade", "x-trace", "TE", "keep-alive", " host ", "",
                                ]),
                                0..4,
                            )
                            .prop_map(|t| t.join(",")),
                        ],
                    ),
                    0..8,
                )
            ) {
                let mut headers = HeaderMap::new();
                for (name, value) in &fields {
                    headers.append(*name, HeaderValue::from_str(value).expect("visible ASCII"));
                }
                let listed: Vec<String> = fields
                    .iter()
                    .filter(|(n, _)| *n == "connection")
                    .flat_map(|(_, v)| v.split(','))
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect();
                let upgrade = fields.iter().any(|(n, _)| *n == "upgrade")
                    && listed.iter().any(|t| t == "upgrade");
                prop_assert_eq!(is_upgrade(&headers), upgrade);
                let before = headers.clone();
                strip_hop_by_hop(&mut headers);
                for name in before.keys() {
                    let hop = ["connection", "keep-alive", "proxy-connection", "upgrade"]
                        .contains(&name.as_str())
                        || listed.iter().any(|t| t == name.as_str());
                    if hop {
                        prop_assert!(!headers.contains_key(name), "{} kept", name);
                    } else {
                        let kept: Vec<_> = headers.get_all(name).iter().collect();
                        let had: Vec<_> = before.get_all(name).iter().collect();
                        prop_assert_eq!(kept, had, "{} changed", name);
                    }
                }
            }

            /// Any destination makes an address a socket can be given, IPv6 in brackets.
            #[test]
            fn destinations_make_addresses(host in "[0-9a-f:.\\[\\]]{1,20}", port in prop::option::of(any::<u16>()), listen in any::<u16>()) {
                let addr = Dest { host: host.clone(), port }.addr(listen);
                let expected_port = port.unwrap_or(listen);
                let (h, p) = addr.rsplit_once(':').expect("host:port");
                prop_assert_eq!(p, expected_port.to_string());
                prop_assert!(!h.contains(':') || (h.starts_with('[') && h.ends_with(']')) || host.starts_with('['), "{}", addr);
            }
        }
    }
}
