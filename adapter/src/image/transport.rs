//! One HTTP/1.1 request per connection, over TCP (`http`) or rustls with the system's
//! root certificates (`https`; `SSL_CERT_FILE`/`SSL_CERT_DIR` add a private CA). Enough
//! for a registry client that sends a handful of requests; bodies are in memory.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// The largest response body read (manifests, tokens and error messages are small).
const MAX_RESPONSE: usize = 8 << 20;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The URL has no host or an unknown scheme.
    #[error("'{0}' is not an http or https URL")]
    Url(String),
    /// TCP connection failed (refused, no route, unknown host).
    #[error("cannot connect to {address}: {error}")]
    Connect {
        /// `host:port`.
        address: String,
        /// What the system said.
        error: std::io::Error,
    },
    /// The TLS handshake failed (a plain-http registry, an unknown CA).
    #[error("TLS with {host} failed: {error}")]
    Tls {
        /// The host.
        host: String,
        /// What rustls said.
        error: std::io::Error,
    },
    /// No root certificates could be loaded for https.
    #[error("no trusted root certificates found on this system (install ca-certificates, or set SSL_CERT_FILE)")]
    NoRoots,
    /// The HTTP exchange broke off.
    #[error("HTTP error: {0}")]
    Http(hyper::Error),
    /// The response body was larger than expected.
    #[error("the response body is larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    /// Nothing came back in time.
    #[error("no answer in {0}s")]
    Timeout(u64),
}

/// A request, kept whole so it can be sent again (after a login, or a retry).
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: Uri,
    /// Headers besides `Host` and `Content-Length`.
    pub headers: HeaderMap,
    /// The body (empty for none).
    pub body: Bytes,
}

impl Request {
    /// A request without body or headers.
    pub fn new(method: Method, url: Uri) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (values here are static or built from checked parts).
    pub fn header(mut self, name: http::header::HeaderName, value: HeaderValue) -> Request {
        self.headers.insert(name, value);
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Bytes) -> Request {
        self.body = body;
        self
    }
}

/// An HTTP answer with its whole body.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// A header's value as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends requests.
#[derive(Clone)]
pub struct Transport {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Transport {
    /// A transport trusting the system's root certificates.
    pub fn new() -> Transport {
        let roots = rustls_native_certs::load_native_certs();
        let mut store = rustls::RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(roots.certs);
        let tls = (added > 0)
            .then(|| {
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .ok()
            })
            .flatten()
            .map(|builder| Arc::new(builder.with_root_certificates(store).with_no_client_auth()));
        Transport { tls }
    }

    /// Sends `request` and reads the whole answer, within `timeout`.
    pub async fn send(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .map_err(|_| TransportError::Timeout(timeout.as_secs()))?
    }

    async fn exchange(&self, request: &Request) -> Result<Response, TransportError> {
        let url = &request.url;
        let bad_url = || TransportError::Url(url.to_string());
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad_url()),
        };
        let authority = url.authority().ok_or_else(bad_url)?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let address = format!("{}:{port}", authority.host());
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| TransportError::Connect {
                address: address.clone(),
                error: std::io::ErrorKind::TimedOut.into(),
            })?
            .map_err(|error| TransportError::Connect { address, error })?;
        let http_request = self.http_request(request, authority.as_str())?;
        if https {
            let config = self.tls.clone().ok_or(TransportError::NoRoots)?;
            let name =
                rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| bad_url())?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|error| TransportError::Tls {
                    host: host.to_string(),
                    error,
                })?;
            roundtrip(TokioIo::new(tls), http_request).await
        } else {
            roundtrip(TokioIo::new(tcp), http_request).await
        }
    }

    fn http_request(
        &self,
        request: &Request,
        authority: &str,
    ) -> Result<http::Request<Full<Bytes>>, TransportError> {
        let path = request
            .url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(path)
            .header(http::header::HOST, authority)
            .header(
                http::header::USER_AGENT,
                concat!("kbridge/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(headers) = builder.headers_mut() {
            headers.extend(request.headers.clone());
        }
        if request.method == Method::PUT || request.method == Method::POST {
            builder = builder.header(http::header::CONTENT_LENGTH, request.body.len());
        }
        builder
            .body(Full::new(request.body.clone()))
            .map_err(|_| TransportError::Url(request.url.to_string()))
    }
}

impl Default for Transport {
    fn default() -> Transport {
        Transport::new()
    }
}

async fn roundtrip<S>(
    io: TokioIo<S>,
    request: http::Request<Full<Bytes>>,
) -> Result<Response, TransportError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(TransportError::Http)?;
    let driver = tokio::spawn(connection);
    let head_only = request.method() == Method::HEAD;
    let response = sender
        .send_request(request)
        .await
        .map_err(TransportError::Http)?;
    let (parts, body) = response.into_parts();
    let body = if head_only {
        Bytes::new()
    } else {
        Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|error| match error.downcast::<hyper::Error>() {
                Ok(error) => TransportError::Http(*error),
                Err(_) => TransportError::TooLarge,
            })?
            .to_bytes()
    };
    driver.abort();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
