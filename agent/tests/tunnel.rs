//! Data streams through the real agent process: inbound and outbound connections at scale with
//! end-to-end SHA-256 checks, half-close and reset semantics, a 1 GiB transfer, unreachable
//! destinations, and file downloads.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::*;
use kbridge_agent::splice::splice;
use kbridge_protocol::ClientError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

const CONNECTIONS: usize = 1000;

/// Sends `data` and reads everything back concurrently; returns what came back.
async fn send_and_collect<S>(stream: S, data: Vec<u8>) -> std::io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        w.write_all(&data).await?;
        w.shutdown().await?;
        Ok::<_, std::io::Error>(w)
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await?;
    let _w = writer.await.map_err(std::io::Error::other)??;
    Ok(back)
}

fn payload(i: usize) -> Vec<u8> {
    // Varying sizes, including tiny and multi-frame ones.
    random_bytes(1 + (i * 7919) % (48 * 1024))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_inbound_connections_arrive_intact() {
    let echo = echo_server().await;
    let port = free_port().await;
    let agent = AgentProcess::start(&[("KBRIDGE_AGENT_PORTS", port.to_string())]).await;
    let client = agent.client().await;
    let mut inbound = client.inbound().unwrap();
    assert!(matches!(client.inbound(), Err(ClientError::InboundTaken)));
    // The adapter's role: each inbound connection goes to the local process (here an echo).
    tokio::spawn(async move {
        while let Some(conn) = inbound.next().await {
            assert_eq!(conn.port, port);
            assert!(conn.peer.ip().is_loopback());
            tokio::spawn(async move {
                let tcp = TcpStream::connect(echo).await.unwrap();
                let _ = splice(tcp, conn.stream).await;
            });
        }
    });

    let (_, agent_addr) = agent.ports[0];
    let barrier = Arc::new(Barrier::new(CONNECTIONS));
    let mut tasks = Vec::new();
    for i in 0..CONNECTIONS {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let data = payload(i);
            let want = sha256(&data);
            let tcp = TcpStream::connect(agent_addr).await.unwrap();
            // All connections are open at once before any data flows.
            barrier.wait().await;
            let back = send_and_collect(tcp, data).await.unwrap();
            assert_eq!(sha256(&back), want, "connection {i} corrupted");
        }));
    }
    for t in tasks {
        tokio::time::timeout(GUARD, t).await.unwrap().unwrap();
    }
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_outbound_connections_arrive_intact() {
    let echo = echo_server().await;
    let agent = AgentProcess::start(&[]).await;
    let client = Arc::new(agent.client().await);
    let barrier = Arc::new(Barrier::new(CONNECTIONS));
    let mut tasks = Vec::new();
    for i in 0..CONNECTIONS {
        let client = client.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let data = payload(i);
            let want = sha256(&data);
            let s = client
                .open_outbound("127.0.0.1", echo.port())
                .await
                .unwrap();
            barrier.wait().await;
            let back = send_and_collect(s, data).await.unwrap();
            assert_eq!(sha256(&back), want, "stream {i} corrupted");
        }));
    }
    for t in tasks {
        tokio::time::timeout(GUARD, t).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_works_both_ways() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        // First connection: read to EOF, then answer (the client half-closed first).
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(format!("got {}", got.len()).as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        // Second connection: the server half-closes first, then keeps reading.
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"hello").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        tx.send(got).unwrap();
    });
    let agent = AgentProcess::start(&[]).await;
    let client = agent.client().await;

    let mut s = client
        .open_outbound("127.0.0.1", addr.port())
        .await
        .unwrap();
    s.write_all(&[1u8; 100_000]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "got 100000");

    let mut s = client
        .open_outbound("127.0.0.1", addr.port())
        .await
        .unwrap();
    let mut first = [0u8; 5];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"hello");
    let mut eof = [0u8; 1];
    assert_eq!(
        s.read(&mut eof).await.unwrap(),
        0,
        "server's FIN arrives as EOF"
    );
    s.write_all(b"late data").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), b"late data");

    // Inbound: the peer half-closes, the local side answers afterwards.
    let port = free_port().await;
    let agent2 = AgentProcess::start(&[("KBRIDGE_AGENT_PORTS", port.to_string())]).await;
    let client2 = agent2.client().await;
    let mut inbound = client2.inbound().unwrap();
    tokio::spawn(async move {
        let mut conn = inbound.next().await.unwrap();
        let mut got = Vec::new();
        conn.stream.read_to_end(&mut got).await.unwrap();
        conn.stream
            .write_all(format!("got {}", got.len()).as_bytes())
            .await
            .unwrap();
        conn.stream.shutdown().await.unwrap();
    });
    let mut peer = TcpStream::connect(agent2.ports[0].1).await.unwrap();
    peer.write_all(&[2u8; 70_000]).await.unwrap();
    peer.shutdown().await.unwrap();
    let mut answer = String::new();
    peer.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "got 70000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_propagate_both_ways() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<std::io::ErrorKind>();
    tokio::spawn(async move {
        // 1: the server resets the connection.
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        s.set_zero_linger().unwrap();
        drop(s);
        // 2: the client resets; the server must see ECONNRESET, not EOF.
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 1024];
        let kind = loop {
            match s.read(&mut buf).await {
                Ok(0) => break std::io::ErrorKind::UnexpectedEof,
                Ok(_) => continue,
                Err(e) => break e.kind(),
            }
        };
        tx.send(kind).unwrap();
    });
    let agent = AgentProcess::start(&[]).await;
    let client = agent.client().await;

    let mut s = client
        .open_outbound("127.0.0.1", addr.port())
        .await
        .unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 16];
    let err = s.read(&mut b).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    let mut s = client
        .open_outbound("127.0.0.1", addr.port())
        .await
        .unwrap();
    s.write_all(b"some bytes").await.unwrap();
    s.flush().await.unwrap();
    s.reset();
    assert_eq!(
        rx.recv().await.unwrap(),
        std::io::ErrorKind::ConnectionReset
    );

    // Inbound: the peer resets; the local side of the tunnel sees a reset, not EOF.
    let port = free_port().await;
    let agent2 = AgentProcess::start(&[("KBRIDGE_AGENT_PORTS", port.to_string())]).await;
    let client2 = agent2.client().await;
    let mut inbound = client2.inbound().unwrap();
    let mut peer = TcpStream::connect(agent2.ports[0].1).await.unwrap();
    peer.write_all(b"abc").await.unwrap();
    let mut conn = inbound.next().await.unwrap();
    let mut b = [0u8; 3];
    conn.stream.read_exact(&mut b).await.unwrap();
    peer.set_zero_linger().unwrap();
    drop(peer);
    let err = conn.stream.read(&mut b).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    // Inbound: the local side resets; the peer sees ECONNRESET, not EOF.
    let mut peer = TcpStream::connect(agent2.ports[0].1).await.unwrap();
    peer.write_all(b"abc").await.unwrap();
    let mut conn = inbound.next().await.unwrap();
    conn.stream.read_exact(&mut b).await.unwrap();
    conn.stream.reset();
    let mut buf = [0u8; 16];
    let err = loop {
        match peer.read(&mut buf).await {
            Ok(0) => panic!("a reset must not arrive as a clean EOF"),
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}

/// True when `data` equals the repeating `pattern` starting at absolute offset `off`.
fn matches_pattern(pattern: &[u8], mut off: usize, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let p = off % pattern.len();
        let n = (pattern.len() - p).min(data.len());
        if data[..n] != pattern[p..p + n] {
            return false;
        }
        data = &data[n..];
        off += n;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gibibyte_transfer_is_intact() {
    const TOTAL: usize = 1 << 30;
    let pattern = Arc::new(random_bytes((1 << 20) + 13));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let p2 = pattern.clone();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0usize;
        let mut ok = true;
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            ok &= matches_pattern(&p2, off, &buf[..n]);
            off += n;
        }
        s.write_all(format!("{off} {ok}").as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let agent = AgentProcess::start(&[]).await;
    let client = agent.client().await;
    let mut s = client
        .open_outbound("127.0.0.1", addr.port())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut sent = 0usize;
    while sent < TOTAL {
        let p = sent % pattern.len();
        let n = (pattern.len() - p).min(TOTAL - sent);
        s.write_all(&pattern[p..p + n]).await.unwrap();
        sent += n;
    }
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "1 GiB through the tunnel in {secs:.1}s ({:.0} MiB/s)",
        1024.0 / secs
    );
    assert_eq!(answer, format!("{TOTAL} true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_destinations_are_reported() {
    let agent = AgentProcess::start(&[]).await;
    let client = agent.client().await;
    let closed = free_port().await;
    match client.open_outbound("127.0.0.1", closed).await {
        Err(ClientError::Outbound { code, message, .. }) => {
            assert_eq!(code, "refused");
            assert!(message.contains("refused"), "{message}");
        }
        other => panic!("expected a refused error, got {other:?}"),
    }
    match client.open_outbound("no-such-service.invalid", 80).await {
        Err(ClientError::Outbound { code, message, .. }) => {
            assert!(
                code == "unresolvable" || code == "timeout",
                "{code}: {message}"
            );
            assert!(message.contains("no-such-service.invalid"), "{message}");
        }
        other => panic!("expected an unresolvable error, got {other:?}"),
    }
    // The session is fine afterwards.
    assert_eq!(client.health().await.unwrap().health, "ok");
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_keeps_content_modes_and_links() {
    let base = std::env::temp_dir().join(format!("kbridge-dl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let vol = base.join("pod/etc/config");
    std::fs::create_dir_all(vol.join("nested/deep")).unwrap();
    std::fs::create_dir_all(vol.join("..2026_12_01")).unwrap();
    let files: [(&str, u32, Vec<u8>); 5] = [
        ("app.yaml", 0o644, b"port: 80\n".to_vec()),
        ("secret.key", 0o600, random_bytes(1024)),
        ("run.sh", 0o755, b"#!/bin/sh\necho hi\n".to_vec()),
        ("readonly.txt", 0o444, b"ro".to_vec()),
        ("nested/deep/blob.bin", 0o640, random_bytes(300 * 1024)),
    ];
    for (name, m, data) in &files {
        let p = vol.join(name);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*m)).unwrap();
    }
    // A configMap-style symlink farm.
    std::fs::write(vol.join("..2026_12_01/cm.yaml"), "cm: 1\n").unwrap();
    std::os::unix::fs::symlink("..2026_12_01", vol.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/cm.yaml", vol.join("cm.yaml")).unwrap();

    let agent = AgentProcess::start(&[]).await;
    let client = agent.client().await;
    let dest = base.join("local/session");
    let vol_str = vol.to_str().unwrap().to_string();
    let single = vol.join("cm.yaml").to_str().unwrap().to_string();
    let summary = client
        .download(std::slice::from_ref(&vol_str), &dest)
        .await
        .unwrap();
    assert!(summary.bytes > 300 * 1024);
    assert_eq!(mode(&dest), 0o700, "download directory must be private");
    let local = dest.join(vol.strip_prefix("/").unwrap());
    for (name, m, data) in &files {
        let p = local.join(name);
        assert_eq!(
            sha256(&std::fs::read(&p).unwrap()),
            sha256(data),
            "{name} content"
        );
        assert_eq!(mode(&p), *m, "{name} mode");
    }
    assert!(std::fs::symlink_metadata(local.join("cm.yaml"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(local.join("cm.yaml")).unwrap(),
        "cm: 1\n"
    );

    // A single named file that is a symlink arrives as its content.
    let dest2 = base.join("local/single");
    client.download(&[single], &dest2).await.unwrap();
    let p = dest2.join(vol.strip_prefix("/").unwrap()).join("cm.yaml");
    assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_file());
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "cm: 1\n");

    let err = client
        .download(&["/no/such/volume".to_string()], &base.join("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::DownloadRefused(m) if m.contains("does not exist")),
        "{err}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}
