//! Session-level behaviour of the real agent process: authentication, the control channel,
//! health and the dead-man switch, malformed input, SIGTERM, and the agent dying mid-transfer.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kbridge_protocol::wire::{read_frame, write_frame, Reply, StreamHeader};
use kbridge_protocol::{AgentClient, ClientError, ClientOptions, HandshakeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_accepted_and_refused() {
    let agent = AgentProcess::start(&[]).await;

    let tcp = TcpStream::connect(agent.control).await.unwrap();
    let err = AgentClient::connect(tcp, "wrong-token").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Handshake(HandshakeError::BadToken)),
        "{err}"
    );

    // Same length, one byte off: still refused.
    let mut almost = TOKEN.to_string();
    almost.pop();
    almost.push('X');
    let tcp = TcpStream::connect(agent.control).await.unwrap();
    assert!(AgentClient::connect(tcp, &almost).await.is_err());

    // Garbage instead of a handshake: refused, and the agent keeps serving.
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"KBRG",
        b"KBRG\x01\xff\xff",
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    ] {
        let mut s = TcpStream::connect(agent.control).await.unwrap();
        s.write_all(garbage).await.unwrap();
        s.shutdown().await.unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply).await;
    }

    let client = agent.client().await;
    let info = client.info().await.unwrap();
    assert_eq!(info.version, kbridge_agent::VERSION);
    assert_eq!(info.idle_restore_secs, 60);
    client.shutdown().await;

    // Refusals are logged, with the reason but without any token.
    let logs = agent.logs.lock().unwrap().clone();
    assert!(logs.contains("refused a session"), "{logs}");
    assert!(
        logs.contains("KBRIDGE_SESSION_TOKEN does not match"),
        "{logs}"
    );
    for secret in ["wrong-token", TOKEN, almost.as_str()] {
        assert!(!logs.contains(secret), "a token leaked into the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_channel_reports_env_mounts_and_listing() {
    let dir = std::env::temp_dir().join(format!("kbridge-ctl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/a.txt"), "a").unwrap();
    let mounts =
        serde_json::json!([{"name": "config", "path": dir.to_str().unwrap(), "readOnly": true}]);
    let agent = AgentProcess::start(&[
        ("PATH", "/usr/bin".into()),
        ("HOME", "/root".into()),
        ("HOSTNAME", "todo-api-5c9".into()),
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1".into()),
        ("LOG_LEVEL", "debug".into()),
        ("KBRIDGE_POD_NAME", "todo-api-5c9".into()),
        ("KBRIDGE_POD_NAMESPACE", "todo".into()),
        ("KBRIDGE_CONTAINER_NAME", "api".into()),
        ("KBRIDGE_ENV_KEEP", "HOME".into()),
        ("KBRIDGE_AGENT_MOUNTS", mounts.to_string()),
    ])
    .await;
    let client = agent.client().await;

    let info = client.info().await.unwrap();
    assert_eq!(info.pod.as_deref(), Some("todo-api-5c9"));
    assert_eq!(info.namespace.as_deref(), Some("todo"));
    assert_eq!(info.container.as_deref(), Some("api"));

    let env = client.env().await.unwrap().vars;
    assert_eq!(
        env.get("KUBERNETES_SERVICE_HOST").map(String::as_str),
        Some("10.96.0.1")
    );
    assert_eq!(env.get("LOG_LEVEL").map(String::as_str), Some("debug"));
    assert_eq!(
        env.get("HOME").map(String::as_str),
        Some("/root"),
        "kept: the spec set it"
    );
    for hidden in [
        "PATH",
        "HOSTNAME",
        "KBRIDGE_SESSION_TOKEN",
        "KBRIDGE_POD_NAME",
    ] {
        assert!(!env.contains_key(hidden), "{hidden} must not be replicated");
    }

    let m = client.mounts().await.unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].name.as_deref(), Some("config"));

    let listing = client.list(dir.to_str().unwrap()).await.unwrap();
    let paths: Vec<&str> = listing.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["sub", "sub/a.txt"]);

    let err = client.list("/no/such/dir").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Rpc { message, .. } if message.contains("does not exist")),
        "{err}"
    );
    let err = client.list("relative").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Rpc { code: -32602, .. }),
        "{err}"
    );

    let h = client.health().await.unwrap();
    assert_eq!(h.health, "ok");
    client.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_man_switch_reports_orphaned_and_probes_stay_ready() {
    let agent = AgentProcess::start(&[("KBRIDGE_IDLE_RESTORE_SECS", "1".into())]).await;
    // Nobody connected: it becomes orphaned, yet probes still get 200.
    let deadline = Instant::now() + GUARD;
    loop {
        let (code, body) = agent.http_get("/status").await;
        assert_eq!(code, 200);
        if body.contains("\"orphaned\"") {
            break;
        }
        assert!(Instant::now() < deadline, "never orphaned: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = agent.http_get("/healthz").await;
    assert_eq!(code, 200);
    let (code, _) = agent.http_get("/nope").await;
    assert_eq!(code, 404);

    // The client library's own heartbeats bring it back to active and keep it there.
    let client = agent
        .client_with(ClientOptions {
            heartbeat_interval: Some(Duration::from_millis(100)),
            ..ClientOptions::default()
        })
        .await;
    let mut seen_active = 0;
    let deadline = Instant::now() + GUARD;
    while seen_active < 5 {
        let (_, body) = agent.http_get("/status").await;
        if body.contains("\"active\"") {
            seen_active += 1;
        } else {
            seen_active = 0;
        }
        assert!(Instant::now() < deadline, "never active: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // kbridge gone (no more heartbeats): orphaned again.
    client.shutdown().await;
    let deadline = Instant::now() + GUARD;
    loop {
        let (_, body) = agent.http_get("/status").await;
        if body.contains("\"orphaned\"") {
            break;
        }
        assert!(Instant::now() < deadline, "never orphaned again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_do_not_crash_the_agent() {
    let agent = AgentProcess::start(&[]).await;

    // 1. Valid handshake, then bytes that are not yamux frames.
    for garbage in [
        vec![0xffu8; 64],
        vec![0u8; 12],
        b"\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xffpayload".to_vec(),
        random_bytes(4096),
    ] {
        let mut s = TcpStream::connect(agent.control).await.unwrap();
        kbridge_protocol::handshake::client_handshake(&mut s, TOKEN)
            .await
            .unwrap();
        s.write_all(&garbage).await.unwrap();
        s.shutdown().await.unwrap();
        drop(s);
        // Whatever yamux made of it, the agent still answers probes and new sessions.
        let (code, _) = agent.http_get("/healthz").await;
        assert_eq!(code, 200);
    }

    // 2. Valid yamux, malformed stream headers and control messages.
    let client = agent.client().await;
    let mut s = client.open_stream().await.unwrap();
    s.write_all(&5u32.to_be_bytes()).await.unwrap();
    s.write_all(b"{nope").await.unwrap();
    let r: Reply = read_frame(&mut s).await.unwrap();
    assert!(!r.ok);
    assert_eq!(r.code.as_deref(), Some("bad-request"));

    let mut s = client.open_stream().await.unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let r: Reply = read_frame(&mut s).await.unwrap();
    assert!(!r.ok);

    let mut s = client.open_stream().await.unwrap();
    write_frame(&mut s, &StreamHeader::Control).await.unwrap();
    s.write_all(b"this is not json\n{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"nope\"}\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while got.matches('\n').count() < 2 {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("-32700"), "parse error expected: {got}");
    assert!(got.contains("-32601"), "method not found expected: {got}");

    // The same session and new sessions still work.
    assert_eq!(client.health().await.unwrap().health, "ok");
    let again = agent.client().await;
    assert_eq!(again.info().await.unwrap().version, kbridge_agent::VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_transfer_is_a_clear_error() {
    // A server that streams forever.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let chunk = vec![7u8; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    let mut agent = AgentProcess::start(&[]).await;
    let client = agent.client().await;
    let mut stream = client
        .open_outbound("127.0.0.1", addr.port())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    while total < 4 * 1024 * 1024 {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        total += n;
    }
    agent.child.start_kill().unwrap();
    let err = tokio::time::timeout(GUARD, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => panic!("a killed agent must not look like a clean EOF"),
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("the client must not hang");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
        ),
        "{err:?}"
    );
    // Usually "the kbridge session was lost: …"; a reader woken by the teardown itself may
    // instead see its stream reset. Either way an error, never EOF.
    let msg = err.to_string();
    assert!(
        msg.contains("session was lost") || msg.contains("reset"),
        "{msg}"
    );
    tokio::time::timeout(GUARD, client.closed()).await.unwrap();
    let err = client
        .open_outbound("127.0.0.1", addr.port())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::SessionLost(_)), "{err}");
    assert!(client.info().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_streams_and_exits_zero() {
    let echo = echo_server().await;
    let port = free_port().await;
    let mut agent = AgentProcess::start(&[("KBRIDGE_AGENT_PORTS", port.to_string())]).await;
    let client = agent.client().await;
    let mut stream = client
        .open_outbound("127.0.0.1", echo.port())
        .await
        .unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    stream.read_exact(&mut b).await.unwrap();

    let pid = agent.child.id().unwrap();
    let started = Instant::now();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = tokio::time::timeout(GUARD, agent.child.wait())
        .await
        .unwrap()
        .unwrap();
    eprintln!(
        "agent exited {status:?} {:?} after SIGTERM",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(0));
    // Its streams are closed, not hanging, and it no longer accepts.
    let mut rest = Vec::new();
    let r = tokio::time::timeout(GUARD, stream.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(r.is_err() || rest.is_empty());
    tokio::time::timeout(GUARD, client.closed()).await.unwrap();
    assert!(TcpStream::connect(agent.control).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_replaces_the_old_one_and_inbound_needs_a_session() {
    let port = free_port().await;
    let agent = AgentProcess::start(&[("KBRIDGE_AGENT_PORTS", port.to_string())]).await;

    // No session yet: an inbound connection is refused with a reset, not left hanging.
    // (The reset can be so quick that even connect() reports it.)
    if let Ok(mut peer) = TcpStream::connect(agent.ports[0].1).await {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(GUARD, peer.read(&mut b))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }

    // kbridge reconnects (e.g. after a dropped port-forward): the newer session wins.
    let first = agent.client().await;
    let second = agent.client().await;
    tokio::time::timeout(GUARD, first.closed()).await.unwrap();
    assert!(first.close_reason().is_some());
    // The old session's task ends just after its client sees the close: allow it a moment.
    let mut sessions = 0;
    for _ in 0..50 {
        sessions = second.health().await.unwrap().sessions;
        if sessions == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sessions, 1, "only the newer session counts");

    // Inbound connections go to the live session.
    let mut inbound = second.inbound().unwrap();
    let mut peer = TcpStream::connect(agent.ports[0].1).await.unwrap();
    peer.write_all(b"hi").await.unwrap();
    let mut conn = tokio::time::timeout(GUARD, inbound.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.port, port);
    let mut got = [0u8; 2];
    conn.stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hi");
}
