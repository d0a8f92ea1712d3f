//! Router benchmark: HTTP/1.1 keep-alive latency straight to an upstream, through the
//! `kbridge-agent router` binary and through Debian's nginx doing the same routing on the
//! `kubernetes-route-as` header (interleaved, in one run), and each proxy's RSS idle vs with
//! 1000 idle clients. nginx is the peer the router is held to; without `/usr/sbin/nginx` its
//! column is skipped with the reason.
//!
//! `KBRIDGE_BENCH_BASELINE_AGENT=/path/to/kbridge-agent` adds another build's router to the
//! same run (interleaved too), for before/after comparisons on a noisy machine.

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

/// nginx routing like the router: `kubernetes-route-as: alice` to the `alice` upstream,
/// anything else to the origin, keep-alive both ways, one worker, no logging.
struct Nginx {
    child: tokio::process::Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

const NGINX: &str = "/usr/sbin/nginx";

impl Nginx {
    async fn start(upstream: SocketAddr) -> Result<Nginx, String> {
        if !std::path::Path::new(NGINX).exists() {
            return Err(format!(
                "{NGINX} is not installed (apt-get install nginx-light)"
            ));
        }
        let dir =
            std::env::temp_dir().join(format!("kbridge-router-bench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            probe.local_addr().map_err(|e| e.to_string())?.port()
        };
        let d = dir.display();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1;\n\
             pid {d}/nginx.pid; error_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
               uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               upstream origin {{ server {upstream}; keepalive 64; }}\n\
               upstream alice {{ server {upstream}; keepalive 64; }}\n\
               map $http_kubernetes_route_as $route {{ default origin; alice alice; }}\n\
               server {{\n\
                 listen 127.0.0.1:{port}; keepalive_requests 1000000; keepalive_timeout 300s;\n\
                 location / {{ proxy_pass http://$route; proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\"; proxy_set_header Host $host; }}\n\
               }}\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(NGINX)
            .args(["-p", &d.to_string(), "-c"])
            .arg(&conf_path)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting nginx: {e}"))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                return Ok(Nginx { child, addr, dir });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        Err(format!("nginx did not listen on {addr}: {log}"))
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Opens `IDLE_CLIENTS` keep-alive connections to `addr`, one request each, and keeps them.
async fn idle_clients(addr: SocketAddr) -> Vec<Sender> {
    let mut idle = Vec::with_capacity(IDLE_CLIENTS);
    for _ in 0..IDLE_CLIENTS / 100 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.push(tokio::spawn(async move {
                let mut s = connect(addr).await;
                once(&mut s, Some("alice")).await;
                s
            }));
        }
        for b in batch {
            idle.push(b.await.expect("client"));
        }
    }
    idle
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

/// Starts `kbridge-agent router` from `bin`, routing `alice` to `up`; returns the child,
/// its pid and its listening address.
async fn start_router(bin: &str, up: SocketAddr) -> (tokio::process::Child, u32, SocketAddr) {
    let mut child = tokio::process::Command::new(bin)
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
    (child, pid, router)
}

/// RSS added per idle keep-alive client of the proxy at `addr` (process `pid`), in KiB,
/// and the RSS with them; checks every idle connection still works.
async fn per_idle_connection(pid: u32, addr: SocketAddr) -> (f64, u64) {
    let before = rss_kib(pid);
    let mut idle = idle_clients(addr).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    for s in idle.iter_mut().step_by(97) {
        once(s, Some("alice")).await;
    }
    drop(idle);
    (
        after.saturating_sub(before) as f64 / IDLE_CLIENTS as f64,
        after,
    )
}

async fn run() {
    let up = upstream().await;
    let (mut child, pid, router) = start_router(env!("CARGO_BIN_EXE_kbridge-agent"), up).await;
    let baseline = match std::env::var("KBRIDGE_BENCH_BASELINE_AGENT") {
        Ok(bin) => Some(start_router(&bin, up).await),
        Err(_) => None,
    };
    let rss_start = rss_kib(pid);

    let nginx = Nginx::start(up).await;
    let mut direct = connect(up).await;
    let mut routed = connect(router).await;
    let mut via_nginx = match &nginx {
        Ok(n) => Some(connect(n.addr).await),
        Err(_) => None,
    };
    let via_nginx_present = via_nginx.is_some();
    let mut via_baseline = match &baseline {
        Some((_, _, addr)) => Some(connect(*addr).await),
        None => None,
    };
    // Each round sends one request on every path, starting at a different path each time:
    // which path goes right after which changes its latency by several µs on a small
    // machine, so no path keeps one place.
    let mut paths: Vec<(&mut Sender, Option<&str>, Vec<Duration>)> = vec![
        (&mut direct, None, Vec::new()),
        (&mut routed, Some("alice"), Vec::new()),
    ];
    if let Some(s) = via_nginx.as_mut() {
        paths.push((s, Some("alice"), Vec::new()));
    }
    if let Some(s) = via_baseline.as_mut() {
        paths.push((s, Some("alice"), Vec::new()));
    }
    let count = paths.len();
    for round in 0..WARMUP + SAMPLES {
        for k in 0..count {
            let (sender, route, samples) = &mut paths[(round + k) % count];
            let took = once(sender, *route).await;
            if round >= WARMUP {
                samples.push(took);
            }
        }
    }
    let mut samples = paths.into_iter().map(|(_, _, s)| s);
    let mut d = samples.next().expect("direct");
    let mut r = samples.next().expect("router");
    let mut n = if via_nginx_present {
        samples.next().expect("nginx")
    } else {
        Vec::new()
    };
    let mut b = samples.next().unwrap_or_default();
    d.sort();
    r.sort();
    n.sort();
    b.sort();
    // Less the direct client's own connection: what the proxies' pools opened.
    let pooled = UPSTREAM_CONNS.load(Ordering::Relaxed) - 1;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = rss_kib(pid);

    // 1000 clients, each one request then idle on its keep-alive connection.
    let (per_connection, rss_loaded) = per_idle_connection(pid, router).await;
    let baseline_per_connection = match &baseline {
        Some((_, pid, addr)) => Some(per_idle_connection(*pid, *addr).await.0),
        None => None,
    };
    // The same for nginx's one worker.
    let nginx_per_connection = match &nginx {
        Ok(proxy) => Some(per_idle_connection(proxy.pid(), proxy.addr).await.0),
        Err(_) => None,
    };

    println!();
    println!(
        "kbridge-agent router, HTTP/1.1 keep-alive, {SAMPLES} interleaved request/response pairs"
    );
    println!("| path | p50 µs | p99 µs | mean µs |");
    println!("|---|---|---|---|");
    let mut rows = vec![("direct to upstream", &d), ("through the router", &r)];
    if !n.is_empty() {
        rows.push(("through nginx (the peer)", &n));
    }
    if !b.is_empty() {
        rows.push(("through the baseline router", &b));
    }
    for (name, v) in rows {
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            us(pct(v, 0.5)),
            us(pct(v, 0.99)),
            us(mean)
        );
    }
    let router_added = us(pct(&r, 0.5)) - us(pct(&d, 0.5));
    println!(
        "| added by the router | {router_added:.1} | {:.1} | |",
        us(pct(&r, 0.99)) - us(pct(&d, 0.99))
    );
    let nginx_added = (!n.is_empty()).then(|| us(pct(&n, 0.5)) - us(pct(&d, 0.5)));
    if !b.is_empty() {
        println!(
            "| added by the baseline router | {:.1} | {:.1} | |",
            us(pct(&b, 0.5)) - us(pct(&d, 0.5)),
            us(pct(&b, 0.99)) - us(pct(&d, 0.99))
        );
    }
    if let Some(added) = nginx_added {
        println!(
            "| added by nginx | {added:.1} | {:.1} | |",
            us(pct(&n, 0.99)) - us(pct(&d, 0.99))
        );
    }
    println!(
        "upstream connections the proxies opened for {} requests each: {pooled}",
        WARMUP + SAMPLES
    );
    println!();
    println!("| router RSS | KiB |");
    println!("|---|---|");
    println!("| at start | {rss_start} |");
    println!("| idle after the latency run | {rss_idle} |");
    println!("| with {IDLE_CLIENTS} idle keep-alive clients | {rss_loaded} |");
    println!("| per idle connection | {per_connection:.1} |");
    if let Some(per) = baseline_per_connection {
        println!("| the baseline router, per idle connection | {per:.1} |");
    }
    if let Some(per) = nginx_per_connection {
        println!("| nginx, per idle connection | {per:.1} |");
    }
    println!();
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    match (&nginx, nginx_added) {
        (Ok(_), Some(added)) => println!(
            "goal: router's added p50 <= nginx's: {router_added:.1} vs {added:.1} µs ({:.2}x), {}",
            router_added / added,
            verdict(router_added <= added)
        ),
        (Err(why), _) => println!("goal: router's added p50 <= nginx's: not measured: {why}"),
        (Ok(_), None) => println!("goal: router's added p50 <= nginx's: not measured"),
    }
    if let (Some(added), false) = (nginx_added, b.is_empty()) {
        let baseline_added = us(pct(&b, 0.5)) - us(pct(&d, 0.5));
        println!(
            "the baseline router: added p50 {baseline_added:.1} µs ({:.2}x nginx's)",
            baseline_added / added
        );
    }
    println!(
        "goal: <= 4 KiB per idle connection: {per_connection:.1} KiB ({:.2}x), {}",
        per_connection / 4.0,
        verdict(per_connection <= 4.0)
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(Ok(status)) => println!("\nrouter exit after SIGTERM: {status}"),
        _ => println!("\nrouter did not exit within 10 s of SIGTERM"),
    }
}
