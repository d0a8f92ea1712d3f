//! A registry's login challenge (`WWW-Authenticate`) and the answer to it: HTTP Basic
//! with the user's password, or a bearer token from the realm the registry names
//! (Docker's token protocol: `GET realm?service=…&scope=…` with Basic credentials, or
//! `POST` with an identity token as `refresh_token`).

use super::credentials::{Credentials, Secret};
use super::transport::{Request, Transport};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, Uri};
use std::time::Duration;

/// What the registry asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic.
    Basic,
    /// A bearer token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` to name.
        service: Option<String>,
        /// The `scope` the registry said it needs, if it said.
        scope: Option<String>,
    },
}

/// Why no authorization could be had from the token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The realm is not a URL.
    #[error("the registry's token realm '{0}' is not an http(s) URL")]
    Realm(String),
    /// The token endpoint could not be reached.
    #[error("cannot reach the token endpoint {realm}: {detail}")]
    Unreachable {
        /// The realm.
        realm: String,
        /// What went wrong.
        detail: String,
    },
    /// The token endpoint refused the credentials.
    #[error("the token endpoint {realm} refused the credentials ({status})")]
    Refused {
        /// The realm.
        realm: String,
        /// Its status.
        status: StatusCode,
    },
    /// The endpoint answered without a token.
    #[error("the token endpoint {realm} answered {status} without a token")]
    NoToken {
        /// The realm.
        realm: String,
        /// Its status.
        status: StatusCode,
    },
}

/// Parses a `WWW-Authenticate` value (`Basic realm="…"` or
/// `Bearer realm="…",service="…",scope="…"`).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(params);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `key="quoted, with commas",key2=bare` → pairs.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (quoted[..end].to_string(), &quoted[end + 1..]),
                None => (quoted.to_string(), ""),
            }
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        pairs.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',');
    }
    pairs
}

/// Gets a bearer token for `scope` from the challenge's realm, presenting `credentials`
/// when there are any (anonymous tokens are enough for public pulls).
pub async fn fetch_token(
    transport: &Transport,
    timeout: Duration,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    credentials: Option<&Credentials>,
) -> Result<String, TokenError> {
    let base: Uri = realm
        .parse()
        .ok()
        .filter(|u: &Uri| u.scheme().is_some() && u.authority().is_some())
        .ok_or_else(|| TokenError::Realm(realm.to_string()))?;
    let mut query = Vec::new();
    if let Some(service) = service {
        query.push(("service", service));
    }
    query.push(("scope", scope));
    let request = match credentials {
        Some(Credentials {
            secret: Secret::IdentityToken(token),
            ..
        }) => {
            query.extend([
                ("grant_type", "refresh_token"),
                ("client_id", "kbridge"),
                ("refresh_token", token.as_str()),
            ]);
            Request::new(Method::POST, base)
                .header(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                )
                .body(Bytes::from(form(&query)))
        }
        _ => {
            let url =
                with_query(&base, &form(&query)).map_err(|_| TokenError::Realm(realm.into()))?;
            let mut request = Request::new(Method::GET, url);
            if let Some(basic) = credentials.and_then(Credentials::basic_authorization) {
                if let Ok(value) = HeaderValue::from_str(&basic) {
                    request = request.header(http::header::AUTHORIZATION, value);
                }
            }
            request
        }
    };
    let response =
        transport
            .send(&request, timeout)
            .await
            .map_err(|e| TokenError::Unreachable {
                realm: realm.to_string(),
                detail: e.to_string(),
            })?;
    if matches!(
        response.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        return Err(TokenError::Refused {
            realm: realm.to_string(),
            status: response.status,
        });
    }
    let no_token = || TokenError::NoToken {
        realm: realm.to_string(),
        status: response.status,
    };
    if !response.status.is_success() {
        return Err(no_token());
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&response.body).map_err(|_| no_token())?;
    answer
        .get("token")
        .or_else(|| answer.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(no_token)
}

/// `url` with `query` appended to whatever query it has.
pub fn with_query(url: &Uri, query: &str) -> Result<Uri, http::Error> {
    let path = url.path();
    let joined = match url.query() {
        Some(existing) if !existing.is_empty() => format!("{path}?{existing}&{query}"),
        _ => format!("{path}?{query}"),
    };
    let mut parts = url.clone().into_parts();
    parts.path_and_query = Some(joined.parse()?);
    Ok(Uri::from_parts(parts)?)
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b':' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_with_commas_in_quotes() {
        let challenge = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:kbridge/agent:pull,push""#,
        );
        assert_eq!(
            challenge,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:kbridge/agent:pull,push".into()),
            })
        );
    }

    #[test]
    fn basic_and_unknown_schemes() {
        assert_eq!(
            parse_challenge(r#"Basic realm="kbridge-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None, "no realm");
    }

    #[test]
    fn queries_are_appended_and_encoded() {
        let url: Uri = "https://r.example/v2/a/blobs/uploads/abc?_state=xyz"
            .parse()
            .expect("uri");
        let url = with_query(&url, &form(&[("digest", "sha256:00ff")])).expect("join");
        assert_eq!(
            url.to_string(),
            "https://r.example/v2/a/blobs/uploads/abc?_state=xyz&digest=sha256:00ff"
        );
        assert_eq!(
            form(&[("scope", "repository:a/b:pull,push")]),
            "scope=repository:a/b:pull%2Cpush"
        );
    }
}
