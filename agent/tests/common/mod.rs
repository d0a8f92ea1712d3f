//! Shared helpers of the integration tests: start the real `kbridge-agent` binary as a local
//! process, connect the library's client to it over TCP, and make random payloads.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kbridge_protocol::{AgentClient, ClientOptions};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// Upper bound for anything that could hang; a guard against hangs, not a performance check.
pub const GUARD: Duration = Duration::from_secs(120);

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A running agent process.
pub struct AgentProcess {
    pub child: Child,
    /// Everything the agent logged so far (stderr).
    pub logs: Arc<Mutex<String>>,
    pub control: SocketAddr,
    pub health: SocketAddr,
    pub ports: Vec<(u16, SocketAddr)>,
}

impl AgentProcess {
    /// Starts the agent with the test token and extra environment.
    pub async fn start(extra: &[(&str, String)]) -> AgentProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kbridge-agent"));
        cmd.env_clear()
            .env("KBRIDGE_SESSION_TOKEN", TOKEN)
            .env("KBRIDGE_AGENT_BIND", "127.0.0.1")
            .env("KBRIDGE_AGENT_CONTROL_PORT", "0")
            .env("KBRIDGE_AGENT_HEALTH_PORT", "0")
            .env("KBRIDGE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start kbridge-agent");
        let stdout = child.stdout.take().expect("stdout");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = err_lines.next_line().await {
                // Echo for humans running with --nocapture, keep for assertions.
                eprintln!("[agent] {l}");
                sink.lock().unwrap().push_str(&(l + "\n"));
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(GUARD, lines.next_line())
            .await
            .expect("agent ready in time")
            .expect("read stdout")
            .expect("agent printed its ready line");
        let v: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        assert_eq!(v["event"], "ready");
        let addr = |s: &serde_json::Value| s.as_str().unwrap().parse::<SocketAddr>().unwrap();
        let ports = v["ports"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, a)| (k.parse().unwrap(), addr(a)))
            .collect();
        // Keep draining stdout so the agent never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        AgentProcess {
            child,
            logs,
            control: addr(&v["control"]),
            health: addr(&v["health"]),
            ports,
        }
    }

    /// Connects the library client with the right token.
    pub async fn client(&self) -> AgentClient {
        self.client_with(ClientOptions::default()).await
    }

    pub async fn client_with(&self, opts: ClientOptions) -> AgentClient {
        let tcp = TcpStream::connect(self.control).await.expect("connect");
        tcp.set_nodelay(true).unwrap();
        AgentClient::connect_with(tcp, TOKEN, opts)
            .await
            .expect("session")
    }

    /// GET a path on the health port; returns (status code, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.health).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
        (code, body)
    }
}

/// A port that was free a moment ago.
pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::fill(&mut v).unwrap();
    v
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// An echo server on loopback: echoes until EOF, then half-closes.
pub async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}
