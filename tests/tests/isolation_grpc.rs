//! A gRPC-style request (HTTP/2 cleartext with prior knowledge, trailers) routed by header
//! through a real isolated session: client → Service ClusterIP → router → alice's clone →
//! agent tunnel → alice's local h2c server, and the trailers come all the way back.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Service;
use kbridge_tests::cluster::client_for;
use kbridge_tests::fixture::TestCluster;
use kbridge_tests::{agent_image, kbridge_bin, temp_dir};
use kube::api::Api;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// Alice's local gRPC-ish service: echoes the request body, names itself in a header, and
/// ends with `grpc-status: 0` in the trailers.
async fn answer(request: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    let route = request
        .headers()
        .get("kubernetes-route-as")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let body = request.into_body().collect().await?.to_bytes();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = Full::new(body)
        .map_err(|never| match never {})
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .header("x-served-by", format!("alice-local route={route}"))
        .body(body)
        .expect("response"))
}

async fn local_h2c_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service_fn(answer))
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2c_grpc_request_is_routed_by_header_to_the_isolated_session() {
    let fixture = TestCluster::start_demo("isolation-grpc");
    let tmp = temp_dir("isolation-grpc");
    let local = local_h2c_server().await;
    let mut session = Command::new(kbridge_bin())
        .args([
            "connect",
            "--namespace",
            &fixture.namespace,
            "--service",
            "todo-api",
            "--agent-image",
            &agent_image(),
            "--isolate-as",
            "alice",
            "--port",
        ])
        .arg(format!("{local}:8080"))
        .env("KUBECONFIG", &fixture.kubeconfig)
        .env("TMPDIR", &tmp)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kbridge connect");
    let stderr = session.stderr.take().expect("stderr");
    let up = tokio::task::spawn_blocking(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("is up; press Ctrl-C") {
                return Ok(seen);
            }
        }
        Err(seen)
    })
    .await
    .expect("reader");
    if let Err(seen) = up {
        let _ = session.kill();
        panic!("the isolated session did not come up:\n{seen}");
    }

    let client = client_for(&fixture).await;
    let services: Api<Service> = Api::namespaced(client, &fixture.namespace);
    let ip = services
        .get("todo-api")
        .await
        .expect("svc")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("clusterIP");
    let tcp = tokio::net::TcpStream::connect((ip.as_str(), 80))
        .await
        .expect("connect to the Service");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake with the router");
    tokio::spawn(connection);
    for round in 0..3 {
        let message = format!("\0\0\0\0\x05hi-{round}");
        let request = Request::post(format!("http://todo-api/todo.Todos/List{round}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("kubernetes-route-as", "alice")
            .body(Full::new(Bytes::from(message.clone())))
            .expect("request");
        sender.ready().await.expect("ready");
        let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
            .await
            .expect("answered in time")
            .expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-served-by"],
            "alice-local route=alice",
            "routed to alice's local process"
        );
        let collected = response.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned().expect("trailers came back");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(&collected.to_bytes()[..], message.as_bytes());
    }
    Command::new("kill")
        .args(["-TERM", &session.id().to_string()])
        .status()
        .expect("kill");
    assert!(session.wait().expect("wait").success());
}
