//! Router benchmark: HTTP/1.1 keep-alive latency straight to an upstream vs through the
//! `kbridge-agent router` binary (interleaved), and the router's RSS idle vs 1000 idle clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};

const WARMUP: usize = 1_000;
const SAMPLES: usize = 10_000;
const IDLE_CLIENTS: usize = 1_000;

type Sender = SendRequest<Empty<Bytes>>;

/// Connections the upstream accepted (the router's pool should keep this small).
static UPSTREAM_CONNS: AtomicUsize = AtomicUsize::new(0);

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            UPSTREAM_CONNS.fetch_add(1, Ordering::Relaxed);
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        b"hello from upstream\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    addr
}

async fn connect(addr: SocketAddr) -> Sender {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// One request/response; returns its latency.
async fn once(sender: &mut Sender, route: Option<&str>) -> Duration {
    let mut req = Request::get("/").header("host", "todo-api");
    if let Some(r) = route {
        req = req.header("kubernetes-route-as", r);
    }
    let req = req.body(Empty::new()).expect("request");
    let start = Instant::now();
    sender.ready().await.expect("ready");
    let resp = sender.send_request(req).await.expect("response");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let took = start.elapsed();
    assert_eq!(&body[..], b"hello from upstream\n");
    took
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let up = upstream().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kbridge-agent"))
        .arg("router")
        .env("KBRIDGE_ROUTER_SERVICE", "todo-api")
        .env("KBRIDGE_ROUTER_PORTS", "0")
        .env("KBRIDGE_ROUTER_ORIGIN", "127.0.0.1")
        .env("KBRIDGE_ROUTER_HEALTH_PORT", "0")
        .env("KBRIDGE_ROUTER_BIND", "127.0.0.1")
        .env("KBRIDGE_ROUTER_STATIC_ROUTES", format!("alice={up}"))
        .env("KBRIDGE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the router binary");
    let pid = child.id().expect("pid");
    let mut out = tokio::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).await.expect("ready line");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready json");
    let router: SocketAddr = ready["ports"]
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .expect("router port");
    let rss_start = rss_kib(pid);

    let mut direct = connect(up).await;
    let mut routed = connect(router).await;
    for _ in 0..WARMUP {
        once(&mut direct, None).await;
        once(&mut routed, Some("alice")).await;
    }
    let (mut d, mut r) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for _ in 0..SAMPLES {
        d.push(once(&mut direct, None).await);
        r.push(once(&mut routed, Some("alice")).await);
    }
    d.sort();
    r.sort();
    // One is the direct client's own connection.
    let pooled = UPSTREAM_CONNS.load(Ordering::Relaxed) - 1;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = rss_kib(pid);

    // 1000 clients, each one request then idle on its keep-alive connection.
    let mut idle = Vec::with_capacity(IDLE_CLIENTS);
    for _ in 0..IDLE_CLIENTS / 100 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.push(tokio::spawn(async move {
                let mut s = connect(router).await;
                once(&mut s, Some("alice")).await;
                s
            }));
        }
        for b in batch {
            idle.push(b.await.expect("client"));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_loaded = rss_kib(pid);
    // Every idle connection still works.
    for s in idle.iter_mut().step_by(97) {
        once(s, Some("alice")).await;
    }

    println!();
    println!(
        "kbridge-agent router, HTTP/1.1 keep-alive, {SAMPLES} interleaved request/response pairs"
    );
    println!("| path | p50 µs | p99 µs | mean µs |");
    println!("|---|---|---|---|");
    for (name, v) in [("direct to upstream", &d), ("through the router", &r)] {
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            us(pct(v, 0.5)),
            us(pct(v, 0.99)),
            us(mean)
        );
    }
    println!(
        "| added by the router | {:.1} | {:.1} | |",
        us(pct(&r, 0.5)) - us(pct(&d, 0.5)),
        us(pct(&r, 0.99)) - us(pct(&d, 0.99))
    );
    println!(
        "upstream connections the router opened for {} requests: {pooled}",
        WARMUP + SAMPLES
    );
    println!();
    println!("| router RSS | KiB |");
    println!("|---|---|");
    println!("| at start | {rss_start} |");
    println!("| idle after the latency run | {rss_idle} |");
    println!("| with {IDLE_CLIENTS} idle keep-alive clients | {rss_loaded} |");
    println!(
        "| per idle connection | {:.1} |",
        rss_loaded.saturating_sub(rss_idle) as f64 / IDLE_CLIENTS as f64
    );
    drop(idle);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(Ok(status)) => println!("\nrouter exit after SIGTERM: {status}"),
        _ => println!("\nrouter did not exit within 10 s of SIGTERM"),
    }
}
