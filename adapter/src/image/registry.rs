//! A client for one repository of a registry, through the OCI distribution API: blob
//! existence and monolithic upload (`POST /v2/<name>/blobs/uploads/`, then `PUT
//! <location>?digest=`), manifest `PUT` and `HEAD`.
//!
//! Logins are answered as the registry asks (see `auth.rs`), with the credentials
//! `credentials.rs` finds, looked up only once a registry asks for them. Connection
//! failures, 429 and 5xx answers are retried with backoff; a 401 is answered once by
//! logging in, and a second one is an error that says what to run.

use super::auth::{self, Challenge, TokenError};
use super::credentials::{self, CredentialError, Credentials};
use super::reference::ImageReference;
use super::transport::{Request, Response, Transport, TransportError};
use http::{HeaderValue, Method, StatusCode, Uri};
use std::time::Duration;

/// The manifest types a `HEAD` accepts (single images and multi-platform indexes).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached, after retrying.
    #[error("cannot reach the registry {registry} at {url}: {detail}{hint}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// The URL tried.
        url: String,
        /// What went wrong last.
        detail: String,
        /// What to try (plain http for a registry without TLS).
        hint: &'static str,
    },
    /// The registry wants a login and none is configured.
    #[error("the registry {registry} asks for a login and no credentials for it were found (looked in {looked}): run `docker login {registry}` or `podman login {registry}`, then try again")]
    LoginNeeded {
        /// The registry.
        registry: String,
        /// The files looked in.
        looked: String,
    },
    /// The registry (or its token endpoint) refused the credentials.
    #[error("the registry {registry} refused the credentials of user '{username}' from {source_name}: run `docker login {registry}` (or `podman login {registry}`) with the right password, then try again")]
    Refused {
        /// The registry.
        registry: String,
        /// The user named.
        username: String,
        /// Where the credentials came from.
        source_name: String,
    },
    /// Logged in, but not allowed to do this.
    #[error("the registry {registry} does not allow {action} {repository} ({status}{message}); check that the account may {action_verb} this repository")]
    Denied {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// `pulling from` or `pushing to`.
        action: &'static str,
        /// `pull from` or `push to`.
        action_verb: &'static str,
        /// The status.
        status: StatusCode,
        /// The registry's message, `: …` or empty.
        message: String,
    },
    /// Credentials are configured but could not be read.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The token endpoint failed.
    #[error("logging in to {registry}: {problem}")]
    Token {
        /// The registry.
        registry: String,
        /// What went wrong.
        problem: TokenError,
    },
    /// The registry answered something the protocol does not allow here.
    #[error("the registry {registry} answered {status} to {what}{message}")]
    Unexpected {
        /// The registry.
        registry: String,
        /// The request, in words.
        what: String,
        /// The status.
        status: StatusCode,
        /// The registry's message, `: …` or empty.
        message: String,
    },
}

/// What the client will do in the repository: the token scope asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    Pull,
    /// Read and write.
    Push,
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// Tries after the first, for failures that may pass.
    pub retries: u32,
    /// The first wait; each next one is twice as long.
    pub first_backoff: Duration,
    /// The limit for one request (uploads get the size-scaled limit on top).
    pub timeout: Duration,
}

impl Patience {
    /// For pushing: several tries over a few seconds.
    pub const PUSH: Patience = Patience {
        retries: 3,
        first_backoff: Duration::from_millis(500),
        timeout: Duration::from_secs(60),
    };
    /// For a quick check (`kbridge doctor`): one try, a short limit.
    pub const CHECK: Patience = Patience {
        retries: 0,
        first_backoff: Duration::from_millis(500),
        timeout: Duration::from_secs(10),
    };
}

/// A repository of a registry, logged in to as needed.
pub struct Registry {
    transport: Transport,
    reference: ImageReference,
    base: String,
    access: Access,
    patience: Patience,
    authorization: Option<HeaderValue>,
    credentials: Option<Option<Credentials>>,
    report: fn(&str),
}

impl Registry {
    /// A client for `reference`'s repository, over http when `insecure` or on loopback;
    /// `report` gets a line for each retry.
    pub fn new(
        reference: &ImageReference,
        insecure: bool,
        access: Access,
        patience: Patience,
        report: fn(&str),
    ) -> Registry {
        let scheme = if insecure || reference.is_loopback() {
            "http"
        } else {
            "https"
        };
        Registry {
            transport: Transport::new(),
            reference: reference.clone(),
            base: format!("{scheme}://{}", reference.api_host()),
            access,
            patience,
            authorization: None,
            credentials: None,
            report,
        }
    }

    /// The registry's base URL (`https://host[:port]`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /v2/`: reachable, and logged in if it asks for a login.
    pub async fn ping(&mut self) -> Result<(), RegistryError> {
        let response = self
            .call(Request::new(Method::GET, self.url("/v2/")?))
            .await?;
        if response.status.is_success() {
            Ok(())
        } else {
            Err(self.unexpected("GET /v2/", &response))
        }
    }

    /// Whether the repository has the blob `digest`.
    pub async fn blob_exists(&mut self, digest: &str) -> Result<bool, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", self.reference.repository);
        let response = self
            .call(Request::new(Method::HEAD, self.url(&path)?))
            .await?;
        match response.status {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.unexpected(&format!("HEAD {path}"), &response)),
        }
    }

    /// Uploads `body` as blob `digest` in one request.
    pub async fn upload_blob(
        &mut self,
        digest: &str,
        body: bytes::Bytes,
    ) -> Result<(), RegistryError> {
        let start = format!("/v2/{}/blobs/uploads/", self.reference.repository);
        let response = self
            .call(Request::new(Method::POST, self.url(&start)?))
            .await?;
        if response.status != StatusCode::ACCEPTED {
            return Err(self.unexpected(&format!("POST {start}"), &response));
        }
        let location = response
            .header("location")
            .ok_or_else(|| self.unexpected(&format!("POST {start} (no Location)"), &response))?;
        let location = self.resolve(location)?;
        let url = auth::with_query(&location, &auth::form(&[("digest", digest)]))
            .map_err(|_| self.bad_url(location.to_string()))?;
        let request = Request::new(Method::PUT, url)
            .header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .body(body);
        let response = self.call(request).await?;
        // 201 by the spec; any success from a lenient registry.
        if response.status.is_success() {
            Ok(())
        } else {
            Err(self.unexpected(&format!("the upload of {digest}"), &response))
        }
    }

    /// `PUT`s a manifest under `tag`; returns the digest the registry gives it.
    pub async fn put_manifest(
        &mut self,
        tag: &str,
        media_type: &'static str,
        body: bytes::Bytes,
    ) -> Result<Option<String>, RegistryError> {
        let path = format!("/v2/{}/manifests/{tag}", self.reference.repository);
        let request = Request::new(Method::PUT, self.url(&path)?)
            .header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(media_type),
            )
            .body(body);
        let response = self.call(request).await?;
        if response.status.is_success() {
            Ok(response.header("docker-content-digest").map(str::to_string))
        } else {
            Err(self.unexpected(&format!("PUT {path}"), &response))
        }
    }

    /// `HEAD` of the reference's manifest: its digest when it exists, `None` when the
    /// registry does not know it.
    pub async fn manifest_digest(&mut self) -> Result<Option<String>, RegistryError> {
        let path = format!(
            "/v2/{}/manifests/{}",
            self.reference.repository,
            self.reference.manifest_reference()
        );
        let request = Request::new(Method::HEAD, self.url(&path)?).header(
            http::header::ACCEPT,
            HeaderValue::from_static(MANIFEST_ACCEPT),
        );
        let response = self.call(request).await?;
        match response.status {
            status if status.is_success() => Ok(Some(
                response
                    .header("docker-content-digest")
                    .unwrap_or("(no digest given)")
                    .to_string(),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.unexpected(&format!("HEAD {path}"), &response)),
        }
    }

    /// Sends `request`: retries what may pass, logs in once when asked, and turns a
    /// second 401 or a 403 into an error naming what to do.
    async fn call(&mut self, request: Request) -> Result<Response, RegistryError> {
        let mut logged_in = false;
        loop {
            let response = self.send_with_retries(&request).await?;
            match response.status {
                StatusCode::UNAUTHORIZED if !logged_in => {
                    self.log_in(&response).await?;
                    logged_in = true;
                }
                StatusCode::UNAUTHORIZED if insufficient_scope(&response) => {
                    return Err(self.denied(&response))
                }
                StatusCode::UNAUTHORIZED => return Err(self.refused().await?),
                StatusCode::FORBIDDEN => return Err(self.denied(&response)),
                _ => return Ok(response),
            }
        }
    }

    /// Sends with the current authorization; connection failures, 429 and 5xx are
    /// tried again after a growing wait.
    async fn send_with_retries(&self, request: &Request) -> Result<Response, RegistryError> {
        let mut request = request.clone();
        if let Some(value) = &self.authorization {
            if same_origin(&request.url, &self.base) {
                request
                    .headers
                    .insert(http::header::AUTHORIZATION, value.clone());
            }
        }
        // Uploads get a minute more per 8 MiB.
        let timeout =
            self.patience.timeout + Duration::from_secs(60 * (request.body.len() as u64 >> 23));
        let mut backoff = self.patience.first_backoff;
        let mut attempt = 0;
        loop {
            let outcome = self.transport.send(&request, timeout).await;
            let last = attempt >= self.patience.retries;
            let reason = match outcome {
                Ok(response) if last || !retryable(response.status) => return Ok(response),
                Err(error) if last => return Err(self.unreachable(&request.url, &error)),
                Ok(response) => format!("the registry answered {}", response.status),
                Err(error) => error.to_string(),
            };
            attempt += 1;
            (self.report)(&format!(
                "{} {}: {reason}; trying again in {:.1}s ({attempt}/{})",
                request.method,
                request.url.path(),
                backoff.as_secs_f64(),
                self.patience.retries
            ));
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    /// Answers a 401: Basic with the password, or a token from the realm.
    async fn log_in(&mut self, response: &Response) -> Result<(), RegistryError> {
        let challenge = response
            .header("www-authenticate")
            .and_then(auth::parse_challenge);
        let credentials = self.credentials().await?;
        let value = match challenge {
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| self.scope());
                let token = auth::fetch_token(
                    &self.transport,
                    self.patience.timeout,
                    &realm,
                    service.as_deref(),
                    &scope,
                    credentials.as_ref(),
                )
                .await;
                match token {
                    Ok(token) => format!("Bearer {token}"),
                    Err(TokenError::Refused { .. }) => return Err(self.refused().await?),
                    Err(problem) => {
                        return Err(RegistryError::Token {
                            registry: self.reference.registry.clone(),
                            problem,
                        })
                    }
                }
            }
            // Basic, or a challenge kbridge does not know: Basic is all it can offer.
            _ => match credentials
                .as_ref()
                .and_then(Credentials::basic_authorization)
            {
                Some(basic) => basic,
                None => return Err(self.refused().await?),
            },
        };
        self.authorization = HeaderValue::from_str(&value).ok().map(|mut v| {
            v.set_sensitive(true);
            v
        });
        Ok(())
    }

    /// The credentials for this registry, looked up once.
    async fn credentials(&mut self) -> Result<Option<Credentials>, RegistryError> {
        if self.credentials.is_none() {
            let found =
                credentials::lookup(&self.reference.registry, &self.reference.repository).await?;
            tracing::debug!(registry = %self.reference.registry, found = ?found, "credentials");
            self.credentials = Some(found);
        }
        Ok(self.credentials.clone().flatten())
    }

    /// The error for a refused login: no credentials, or the wrong ones.
    async fn refused(&mut self) -> Result<RegistryError, RegistryError> {
        let registry = self.reference.registry.clone();
        Ok(match self.credentials().await? {
            None => RegistryError::LoginNeeded {
                registry,
                looked: credentials::files()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            Some(found) => RegistryError::Refused {
                registry,
                username: found.username,
                source_name: found.source,
            },
        })
    }

    fn denied(&self, response: &Response) -> RegistryError {
        let (action, action_verb) = match self.access {
            Access::Pull => ("pulling from", "pull from"),
            Access::Push => ("pushing to", "push to"),
        };
        RegistryError::Denied {
            registry: self.reference.registry.clone(),
            repository: self.reference.repository.clone(),
            action,
            action_verb,
            status: response.status,
            message: error_message(&response.body),
        }
    }

    fn unexpected(&self, what: &str, response: &Response) -> RegistryError {
        RegistryError::Unexpected {
            registry: self.reference.registry.clone(),
            what: what.to_string(),
            status: response.status,
            message: error_message(&response.body),
        }
    }

    fn unreachable(&self, url: &Uri, error: &TransportError) -> RegistryError {
        let hint = match (url.scheme_str(), error) {
            (Some("https"), TransportError::Tls { .. }) => {
                " (a registry without TLS needs --insecure)"
            }
            _ => " (is it running, and is the address right?)",
        };
        RegistryError::Unreachable {
            registry: self.reference.registry.clone(),
            url: url.to_string(),
            detail: error.to_string(),
            hint,
        }
    }

    fn bad_url(&self, url: String) -> RegistryError {
        RegistryError::Unexpected {
            registry: self.reference.registry.clone(),
            what: "an upload".into(),
            status: StatusCode::ACCEPTED,
            message: format!(": its Location '{url}' is not a URL"),
        }
    }

    /// The token scope for this client's access.
    fn scope(&self) -> String {
        let actions = match self.access {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        };
        format!("repository:{}:{actions}", self.reference.repository)
    }

    fn url(&self, path: &str) -> Result<Uri, RegistryError> {
        let text = format!("{}{path}", self.base);
        text.parse().map_err(|_| self.bad_url(text))
    }

    /// An upload `Location`: absolute, or a path on the registry.
    fn resolve(&self, location: &str) -> Result<Uri, RegistryError> {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.parse().map_err(|_| self.bad_url(location.into()))
        } else {
            self.url(location)
        }
    }
}

/// Whether a failure may pass if tried again.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// A 401 that says the login worked but does not reach far enough.
fn insufficient_scope(response: &Response) -> bool {
    response
        .header("www-authenticate")
        .is_some_and(|v| v.contains("insufficient_scope"))
}

/// Whether `url` is on the registry itself (credentials go nowhere else).
fn same_origin(url: &Uri, base: &str) -> bool {
    let origin = match (url.scheme_str(), url.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        _ => return false,
    };
    origin == base
}

/// `: CODE message; …` from an OCI error body, or empty.
fn error_message(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let errors: Vec<String> = value
        .get("errors")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
            format!("{code} {message}").trim().to_string()
        })
        .filter(|e| !e.is_empty())
        .collect();
    if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_error_bodies_are_summarised() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_message(body), ": MANIFEST_UNKNOWN manifest unknown");
        assert_eq!(error_message(b"<html>"), "");
    }

    #[test]
    fn credentials_stay_on_the_registry() {
        let on: Uri = "https://r.example:5000/v2/a/blobs/uploads/x"
            .parse()
            .expect("uri");
        let off: Uri = "https://storage.example/upload/x".parse().expect("uri");
        assert!(same_origin(&on, "https://r.example:5000"));
        assert!(!same_origin(&off, "https://r.example:5000"));
    }

    #[test]
    fn loopback_registries_are_spoken_to_over_http() {
        let local = ImageReference::parse("127.0.0.1:5000/kbridge/agent:dev").expect("ref");
        let remote = ImageReference::parse("ghcr.io/kbridge/agent:dev").expect("ref");
        let hub = ImageReference::parse("kbridge/agent:dev").expect("ref");
        let client = |r: &ImageReference, insecure| {
            Registry::new(r, insecure, Access::Pull, Patience::CHECK, |_| {})
                .base_url()
                .to_string()
        };
        assert_eq!(client(&local, false), "http://127.0.0.1:5000");
        assert_eq!(client(&remote, false), "https://ghcr.io");
        assert_eq!(client(&remote, true), "http://ghcr.io");
        assert_eq!(client(&hub, false), "https://registry-1.docker.io");
    }
}
