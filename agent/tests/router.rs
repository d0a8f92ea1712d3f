//! The isolation router over real sockets: real HTTP upstreams that answer with their identity,
//! the router in-process (and once as the built binary), clients speaking HTTP/1.1, h2c and raw TCP.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kbridge_agent::router::sniff::{sniff, Protocol};
use kbridge_agent::router::{
    pod_route, Dest, RouteSource, Router, RouterConfig, RunningRouter, ROUTE_HEADER,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

const ORIGIN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const T: Duration = Duration::from_secs(10);

/// A real upstream: HTTP/1.1, h2c and raw TCP, each answer naming `id`.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|e| match e {}).boxed()
}

async fn start_upstream(id: &'static str, bind: SocketAddr) -> Upstream {
    let listener = TcpListener::bind(bind).await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(upstream_conn(sock, id));
        }
    });
    Upstream { addr, accepted }
}

async fn upstream_conn(mut sock: TcpStream, id: &'static str) {
    let svc = service_fn(move |req| upstream_handle(req, id));
    match sniff(&sock).await {
        Protocol::Http1 => {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), svc)
                .with_upgrades()
                .await;
        }
        Protocol::H2c => {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(sock), svc)
                .await;
        }
        // Server-speaks-first greeting, then echo.
        Protocol::Raw => {
            if sock
                .write_all(format!("raw:{id}\n").as_bytes())
                .await
                .is_ok()
            {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        }
    }
}

async fn upstream_handle(
    mut req: Request<Incoming>,
    id: &'static str,
) -> Result<Response<Body>, Infallible> {
    let route_as = req
        .headers()
        .get(ROUTE_HEADER)
        .cloned()
        .unwrap_or(HeaderValue::from_static("-"));
    let mut resp = match req.uri().path() {
        // Answers at once, then echoes each request chunk as it arrives.
        "/stream" => {
            let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
            let mut body = req.into_body();
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"first\n"))))
                    .await;
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(Ok(Frame::data(data))).await.is_err() {
                            return;
                        }
                    }
                }
            });
            Response::new(StreamBody::new(rx).boxed())
        }
        // gRPC-like: echo the message, then trailers (one echoing the request's trailer).
        "/pkg.Svc/Call" => {
            let collected = match req.into_body().collect().await {
                Ok(c) => c,
                Err(_) => return Ok(Response::new(full("bad body"))),
            };
            let req_trailer = collected
                .trailers()
                .and_then(|t| t.get("x-req-trailer").cloned())
                .unwrap_or(HeaderValue::from_static("none"));
            let data = collected.to_bytes();
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            trailers.insert("x-req-trailer", req_trailer);
            let frames = vec![
                Ok::<_, BoxError>(Frame::data(data)),
                Ok(Frame::trailers(trailers)),
            ];
            Response::new(StreamBody::new(futures::stream::iter(frames)).boxed())
        }
        // Answers at once, then sends its body in four pieces 30 ms apart: a response
        // still streaming when the router would park an idle connection.
        "/trickle" => {
            let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
            tokio::spawn(async move {
                for _ in 0..4 {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    if tx
                        .send(Ok(Frame::data(Bytes::from_static(b"t"))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            Response::new(StreamBody::new(rx).boxed())
        }
        // Answers after a pause: a request in flight during shutdown.
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Response::new(full(format!("slow {id}")))
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    if io.write_all(format!("{id}\n").as_bytes()).await.is_ok() {
                        let mut buf = [0u8; 1024];
                        while let Ok(n) = io.read(&mut buf).await {
                            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("connection", HeaderValue::from_static("upgrade"));
            r.headers_mut()
                .insert("upgrade", HeaderValue::from_static("websocket"));
            r
        }
        _ => {
            let _ = req.into_body().collect().await;
            Response::new(full(id))
        }
    };
    resp.headers_mut()
        .insert("x-served-by", HeaderValue::from_static(id));
    resp.headers_mut().insert("x-route-as", route_as);
    Ok(resp)
}

/// Router on 127.0.0.1:P, origin on 127.0.0.2:P, routes on their own ports.
struct Setup {
    router: RunningRouter,
    port: u16,
    addr: SocketAddr,
    origin: Upstream,
    alice: Upstream,
    bob: Upstream,
}

fn dest(addr: SocketAddr) -> Dest {
    Dest {
        host: addr.ip().to_string(),
        port: Some(addr.port()),
    }
}

async fn setup() -> Setup {
    let local = |p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p);
    let alice = start_upstream("alice", local(0)).await;
    let bob = start_upstream("bob", local(0)).await;
    let mut routes = BTreeMap::new();
    routes.insert("alice".to_string(), dest(alice.addr));
    routes.insert("bob".to_string(), dest(bob.addr));
    // Nothing listens on port 9 of 127.0.0.1 (discard is not run here).
    routes.insert(
        "dave".to_string(),
        Dest {
            host: "127.0.0.1".into(),
            port: Some(9),
        },
    );
    let router = Router::start(RouterConfig {
        service: "todo-api".into(),
        ports: vec![0],
        origin: ORIGIN_IP.to_string(),
        health_port: 0,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        routes: RouteSource::Static(routes),
    })
    .await
    .expect("router starts");
    let (port, addr) = router.port_addrs[0];
    let origin = start_upstream("origin", SocketAddr::new(IpAddr::V4(ORIGIN_IP), port)).await;
    Setup {
        router,
        port,
        addr,
        origin,
        alice,
        bob,
    }
}

async fn h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Body> {
    let tcp = TcpStream::connect(addr).await.expect("connect router");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn.with_upgrades());
    sender
}

async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Body>,
    headers: &[(&'static str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::get("/id");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", "todo-api");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    sender.ready().await.expect("connection ready");
    let resp = tokio::time::timeout(T, sender.send_request(req.body(full("")).expect("request")))
        .await
        .expect("in time")
        .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn keep_alive_requests_are_routed_one_by_one_over_pooled_upstreams() {
    let s = setup().await;
    let mut tasks = Vec::new();
    for c in 0..5 {
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            let mut sender = h1(addr).await;
            let mut misroutes = 0;
            for i in 0..200 {
                let (want, hdr): (&str, Vec<(&'static str, &str)>) = match (i + c) % 3 {
                    0 => ("alice", vec![(ROUTE_HEADER, "alice")]),
                    1 => ("bob", vec![("Kubernetes-Route-As", "bob")]),
                    _ => ("origin", vec![]),
                };
                let (status, _, body) = get(&mut sender, &hdr).await;
                if status != StatusCode::OK || body != want {
                    misroutes += 1;
                }
            }
            misroutes
        }));
    }
    let mut misroutes = 0;
    for t in tasks {
        misroutes += t.await.expect("client task");
    }
    assert_eq!(misroutes, 0, "1000 requests, none misrouted");
    let upstream_conns = s.alice.accepted.load(Ordering::SeqCst)
        + s.bob.accepted.load(Ordering::SeqCst)
        + s.origin.accepted.load(Ordering::SeqCst);
    eprintln!("upstream connections for 1000 requests: {upstream_conns}");
    assert!(
        upstream_conns <= 30,
        "upstream connections are pooled: {upstream_conns} for 1000 requests"
    );
    s.router.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn host_prefix_routes_and_adds_the_header() {
    let s = setup().await;
    let mut sender = h1(s.addr).await;
    let (_, headers, body) = get(&mut sender, &[("host", "alice.todo.example.com:8080")]).await;
    assert_eq!(body, "alice");
    assert_eq!(
        headers["x-route-as"], "alice",
        "the upstream saw the header"
    );
    // An unknown header name goes to the origin, whatever the Host says.
    let (_, headers, body) = get(
        &mut sender,
        &[(ROUTE_HEADER, "carol"), ("host", "bob.todo.example.com")],
    )
    .await;
    assert_eq!(body, "origin");
    assert_eq!(headers["x-route-as"], "carol", "passed on unchanged");
    // A plain Host goes to the origin without a header.
    let (_, headers, body) = get(&mut sender, &[("host", "todo-api:8080")]).await;
    assert_eq!(body, "origin");
    assert_eq!(headers["x-route-as"], "-");
    s.router.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn unknown_route_goes_to_origin_and_a_dead_destination_is_a_502() {
    let s = setup().await;
    let mut sender = h1(s.addr).await;
    let (status, _, body) = get(&mut sender, &[(ROUTE_HEADER, "nobody")]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "origin"));
    let (status, _, body) = get(&mut sender, &[(ROUTE_HEADER, "dave")]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.contains("dave") && body.contains("127.0.0.1:9"),
        "{body}"
    );
    // The client connection survives a 502.
    let (_, _, body) = get(&mut sender, &[(ROUTE_HEADER, "bob")]).await;
    assert_eq!(body, "bob");
    // A route removed from the table is gone at once.
    let mut routes = (*s.router.routes()).clone();
    routes.remove("bob");
    s.router.set_routes(routes);
    let (_, _, body) = get(&mut sender, &[(ROUTE_HEADER, "bob")]).await;
    assert_eq!(body, "origin");
    s.router.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn h2c_grpc_like_request_routed_by_header_with_trailers() {
    let s = setup().await;
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for (route, want) in [
        (Some("bob"), "bob"),
        (None, "origin"),
        (Some("alice"), "alice"),
    ] {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-req-trailer", HeaderValue::from_static("t1"));
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"\0\0\0\0\x05hello"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut req = Request::post("http://todo-api:50051/pkg.Svc/Call")
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(r) = route {
            req = req.header(ROUTE_HEADER, r);
        }
        let req = req
            .body(StreamBody::new(futures::stream::iter(frames)).boxed())
            .expect("request");
        sender.ready().await.expect("ready");
        let resp = tokio::time::timeout(T, sender.send_request(req))
            .await
            .expect("in time")
            .expect("response");
        assert_eq!(resp.headers()["x-served-by"], want);
        let collected = resp.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned().expect("trailers arrive");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(
            trailers["x-req-trailer"], "t1",
            "request trailers reached {want}"
        );
        assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x05hello");
    }
    s.router.shutdown(Duration::from_secs(1)).await;
}

/// Sends chunks one at a time and reads each echo back before sending the next: neither the
/// request nor the response can be buffered whole by the router.
async fn streaming_round_trip(response_first: bool, h2: bool, addr: SocketAddr) {
    let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let req = Request::post(if h2 {
        "http://todo-api/stream"
    } else {
        "/stream"
    })
    .header("host", "todo-api")
    .header(ROUTE_HEADER, "alice")
    .body(StreamBody::new(rx).boxed())
    .expect("request");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let resp = if h2 {
        let (mut s, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        tokio::spawn(async move { s.send_request(req).await })
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        tokio::spawn(async move { s.send_request(req).await })
    };
    if !response_first {
        tx.send(Ok(Frame::data(Bytes::from_static(b"early\n"))))
            .await
            .expect("send");
    }
    let resp = tokio::time::timeout(T, resp)
        .await
        .expect("response head before the request body is complete")
        .expect("task")
        .expect("response");
    assert_eq!(resp.headers()["x-served-by"], "alice");
    let mut body = resp.into_body();
    assert_eq!(&next_data(&mut body).await[..], b"first\n");
    if !response_first {
        assert_eq!(&next_data(&mut body).await[..], b"early\n");
    }
    for i in 0..3 {
        let chunk = Bytes::from(format!("chunk {i}\n"));
        tx.send(Ok(Frame::data(chunk.clone()))).await.expect("send");
        assert_eq!(
            next_data(&mut body).await,
            chunk,
            "echo arrives while the upload is open"
        );
    }
    drop(tx);
}

/// The next non-empty data chunk of a response body.
async fn next_data(body: &mut Incoming) -> Bytes {
    loop {
        let frame = tokio::time::timeout(T, body.frame())
            .await
            .expect("chunk in time")
            .expect("a chunk")
            .expect("frame");
        if let Ok(d) = frame.into_data() {
            if !d.is_empty() {
                return d;
            }
        }
    }
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let s = setup().await;
    streaming_round_trip(true, false, s.addr).await;
    streaming_round_trip(false, false, s.addr).await;
    streaming_round_trip(true, true, s.addr).await;
    s.router.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn raw_tcp_and_server_speaks_first_go_to_origin() {
    let s = setup().await;
    // Not HTTP: bytes go through both ways.
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(b"\x00\x01hello raw").await.expect("write");
    let mut buf = vec![0u8; 64];
    let want = b"raw:origin\n\x00\x01hello raw";
    let mut got = Vec::new();
    while got.len() < want.len() {
        let n = tokio::time::timeout(T, c.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed early: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got[..], want);
    // Silent client: the origin's greeting arrives after the sniff gives up (~300 ms).
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    let started = std::time::Instant::now();
    let mut line = [0u8; 11];
    tokio::time::timeout(T, c.read_exact(&mut line))
        .await
        .expect("greeting in time")
        .expect("greeting");
    assert_eq!(&line, b"raw:origin\n");
    assert!(started.elapsed() < Duration::from_secs(2));
    s.router.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn pipelined_requests_are_each_routed() {
    let s = setup().await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    // Three requests in one write, before any response.
    c.write_all(
        b"GET /id HTTP/1.1\r\nHost: a\r\nkubernetes-route-as: bob\r\n\r\n\
          GET /id HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /id HTTP/1.1\r\nHost: a\r\nkubernetes-route-as: alice\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut all = String::new();
    tokio::time::timeout(T, c.read_to_string(&mut all))
        .await
        .expect("in time")
        .expect("read");
    let bodies: Vec<&str> = all
        .split("HTTP/1.1 200 OK")
        .skip(1)
        .filter_map(|r| r.split("\r\n\r\n").nth(1))
        .collect();
    assert_eq!(bodies, ["bob", "origin", "alice"], "{all}");
    s.router.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let s = setup().await;
    let mut sender = h1(s.addr).await;
    let req = Request::get("/slow")
        .header("host", "todo-api")
        .header(ROUTE_HEADER, "alice")
        .body(full(""))
        .expect("request");
    let pending = tokio::spawn(async move {
        let resp = sender.send_request(req).await?;
        resp.into_body().collect().await.map(|c| c.to_bytes())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = s.addr;
    s.router.shutdown(Duration::from_secs(3)).await;
    let body = pending
        .await
        .expect("task")
        .expect("the response completes");
    assert_eq!(&body[..], b"slow alice");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn websocket_upgrade_is_routed_by_header_then_spliced() {
    let s = setup().await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: todo-api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nkubernetes-route-as: bob\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(T, c.read_exact(&mut byte))
            .await
            .expect("in time")
            .expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    let mut hello = [0u8; 4];
    tokio::time::timeout(T, c.read_exact(&mut hello))
        .await
        .expect("in time")
        .expect("greeting");
    assert_eq!(&hello, b"bob\n");
    c.write_all(b"ping").await.expect("write");
    let mut pong = [0u8; 4];
    tokio::time::timeout(T, c.read_exact(&mut pong))
        .await
        .expect("in time")
        .expect("echo");
    assert_eq!(&pong, b"ping");
    s.router.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn health_and_routes_endpoints() {
    let s = setup().await;
    let mut sender = h1(s.router.health_addr).await;
    let resp = sender
        .send_request(Request::get("/healthz").body(full("")).expect("req"))
        .await
        .expect("healthz");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        &resp.into_body().collect().await.expect("body").to_bytes()[..],
        b"ok"
    );
    sender.ready().await.expect("ready");
    let resp = sender
        .send_request(Request::get("/routes").body(full("")).expect("req"))
        .await
        .expect("routes");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["service"], "todo-api");
    assert_eq!(v["routes"]["alice"], s.alice.addr.to_string());
    assert_eq!(v["routes"]["bob"], s.bob.addr.to_string());
    assert!(s.port > 0);
    s.router.shutdown(Duration::from_secs(1)).await;
}

fn pod(
    labels: serde_json::Value,
    ready: &str,
    ip: Option<&str>,
) -> k8s_openapi::api::core::v1::Pod {
    let mut status = serde_json::json!({
        "conditions": [{"type": "Ready", "status": ready}],
    });
    if let Some(ip) = ip {
        status["podIP"] = ip.into();
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "labels": labels},
        "status": status,
    }))
    .expect("pod")
}

#[test]
fn pod_to_route() {
    let both =
        serde_json::json!({"kbridge.dev/route-for": "todo-api", "kbridge.dev/route-as": "alice"});
    assert_eq!(
        pod_route(&pod(both.clone(), "True", Some("10.0.0.7")), "todo-api"),
        Some(("alice".to_string(), "10.0.0.7".to_string()))
    );
    assert_eq!(
        pod_route(&pod(both.clone(), "False", Some("10.0.0.7")), "todo-api"),
        None
    );
    assert_eq!(
        pod_route(&pod(both.clone(), "True", None), "todo-api"),
        None
    );
    assert_eq!(
        pod_route(&pod(both.clone(), "True", Some("10.0.0.7")), "stats-api"),
        None
    );
    let no_as = serde_json::json!({"kbridge.dev/route-for": "todo-api"});
    assert_eq!(
        pod_route(&pod(no_as, "True", Some("10.0.0.7")), "todo-api"),
        None
    );
    let no_for = serde_json::json!({"kbridge.dev/route-as": "alice"});
    assert_eq!(
        pod_route(&pod(no_for, "True", Some("10.0.0.7")), "todo-api"),
        None
    );
    let mut deleting = pod(both, "True", Some("10.0.0.7"));
    deleting.metadata.deletion_timestamp =
        serde_json::from_value(serde_json::json!("2026-01-01T00:00:00Z")).ok();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(pod_route(&deleting, "todo-api"), None);
}

#[tokio::test]
async fn the_binary_serves_and_exits_cleanly_on_sigterm() {
    let alice = start_upstream("alice", "127.0.0.1:0".parse().expect("addr")).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kbridge-agent"))
        .arg("router")
        .env("KBRIDGE_ROUTER_SERVICE", "todo-api")
        .env("KBRIDGE_ROUTER_PORTS", "0")
        .env("KBRIDGE_ROUTER_ORIGIN", ORIGIN_IP.to_string())
        .env("KBRIDGE_ROUTER_HEALTH_PORT", "0")
        .env("KBRIDGE_ROUTER_BIND", "127.0.0.1")
        .env(
            "KBRIDGE_ROUTER_STATIC_ROUTES",
            format!("alice={}", alice.addr),
        )
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn router");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout);
    let mut line = String::new();
    tokio::time::timeout(
        T,
        tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line),
    )
    .await
    .expect("ready line in time")
    .expect("ready line");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("json ready line");
    assert_eq!(ready["event"], "ready");
    let addr: SocketAddr = ready["ports"]
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .expect("a port");
    let health: SocketAddr = ready["health"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("health");
    let mut sender = h1(addr).await;
    let (_, headers, body) = get(&mut sender, &[("host", "alice.todo-api.example")]).await;
    assert_eq!(
        (body.as_str(), &headers["x-route-as"]),
        ("alice", &HeaderValue::from_static("alice"))
    );
    let mut hs = h1(health).await;
    let (status, _, body) = {
        let resp = hs
            .send_request(Request::get("/healthz").body(full("")).expect("req"))
            .await
            .expect("healthz");
        let status = resp.status();
        (
            status,
            (),
            resp.into_body().collect().await.expect("body").to_bytes(),
        )
    };
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(T, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
}

/// Longer than the router waits before it parks an idle keep-alive connection.
const PAST_PARKING: Duration = Duration::from_millis(100);

/// Reads one HTTP/1.1 response from `c`: its head, and its body (Content-Length or
/// chunked). Fails on end of input: the connection must stay open.
async fn read_response(c: &mut TcpStream) -> (String, String) {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(T, c.read(&mut byte))
            .await
            .expect("response in time")
            .expect("read");
        assert_eq!(n, 1, "the router closed the connection; so far: {data:?}");
        data.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&data).to_lowercase();
    let mut body = Vec::new();
    if let Some(length) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        body.resize(length, 0);
        c.read_exact(&mut body).await.expect("body");
    } else {
        // Chunked: size line, data, CRLF; a zero size ends it (no trailers here).
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                c.read_exact(&mut byte).await.expect("chunk size");
                line.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(text.trim(), 16).expect("chunk size");
            let mut chunk = vec![0u8; size + 2];
            c.read_exact(&mut chunk).await.expect("chunk");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// Sends one request on `c` and reads its response.
async fn ask(c: &mut TcpStream, route_as: &str, path: &str) -> (String, String) {
    c.write_all(request(route_as, path).as_bytes())
        .await
        .expect("write");
    read_response(c).await
}

fn request(route_as: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: todo-api\r\nkubernetes-route-as: {route_as}\r\n\r\n")
}

#[tokio::test]
async fn an_idle_keep_alive_connection_serves_its_next_requests() {
    let s = setup().await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    for route_as in ["bob", "alice", "-", "bob"] {
        let (head, body) = ask(&mut c, route_as, "/id").await;
        let expected = if route_as == "-" { "origin" } else { route_as };
        assert_eq!(body, expected, "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        // Idle long enough to be parked before the next request.
        tokio::time::sleep(PAST_PARKING).await;
    }
    // One connection to each upstream was enough: the router's pool outlived the parking.
    assert_eq!(s.bob.accepted.load(Ordering::SeqCst), 1);
    s.router.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_request_begun_before_parking_is_completed_after_it() {
    let s = setup().await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    assert_eq!(ask(&mut c, "bob", "/id").await.1, "bob");
    // The next request's first bytes reach the router's HTTP parser, then nothing more
    // until the connection has been parked: they must survive it.
    let next = request("alice", "/id");
    let (first, rest) = next.split_at(12);
    c.write_all(first.as_bytes()).await.expect("write");
    tokio::time::sleep(PAST_PARKING).await;
    c.write_all(rest.as_bytes()).await.expect("write");
    assert_eq!(read_response(&mut c).await.1, "alice");
    // And a head split while parked.
    tokio::time::sleep(PAST_PARKING).await;
    let next = request("bob", "/id");
    let (first, rest) = next.split_at(20);
    c.write_all(first.as_bytes()).await.expect("write");
    tokio::time::sleep(PAST_PARKING).await;
    c.write_all(rest.as_bytes()).await.expect("write");
    assert_eq!(read_response(&mut c).await.1, "bob");
    s.router.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_response_streaming_past_the_idle_wait_keeps_its_connection() {
    let s = setup().await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    // Its head is answered at once; its body takes 120 ms, past the idle wait.
    let (head, body) = ask(&mut c, "alice", "/trickle").await;
    assert_eq!(body, "tttt", "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(ask(&mut c, "bob", "/id").await.1, "bob");
    s.router.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_parked_connection_closes_when_the_router_shuts_down() {
    let s = setup().await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    assert_eq!(ask(&mut c, "bob", "/id").await.1, "bob");
    tokio::time::sleep(PAST_PARKING).await;
    s.router.shutdown(Duration::from_secs(1)).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(T, c.read_to_end(&mut rest))
        .await
        .expect("the connection is closed in time");
    assert!(read.is_err() || rest.is_empty(), "{rest:?}");
}
