//! Registry credentials where `docker login` and `podman login` leave them.
//!
//! Files, first match wins: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/…`), `$DOCKER_CONFIG/config.json`
//! (`~/.docker/config.json`). In each: a `credHelpers` entry for the registry, else an
//! `auths` entry (`auth`: base64 of `USER:PASSWORD`, or `identitytoken`; podman's keys
//! may name a repository namespace, the longest match wins), else `credsStore`. A helper
//! is run as `docker-credential-<name> get` with the server's address on its input.
//! Secrets are never logged or shown: [`Credentials`]'s `Debug` leaves them out.

use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long a credential helper may take (some ask the desktop's keychain).
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why credentials that are configured could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The file is not the JSON `docker login` writes.
    #[error("{path} is not a valid credentials file: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        error: serde_json::Error,
    },
    /// An `auth` entry that is not base64 of `USER:PASSWORD`.
    #[error("{path}: the `auth` entry for {key} is not base64 of USER:PASSWORD; run `docker login {key}` again")]
    BadAuth {
        /// The file.
        path: PathBuf,
        /// The entry's key.
        key: String,
    },
    /// The credential helper could not be started or did not finish.
    #[error(
        "cannot run the credential helper docker-credential-{helper} (named in {path}): {detail}"
    )]
    HelperStart {
        /// The helper's name.
        helper: String,
        /// The file that names it.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The helper answered something other than its JSON.
    #[error("the credential helper docker-credential-{helper} failed for {server}: {detail}")]
    HelperFailed {
        /// The helper's name.
        helper: String,
        /// The server asked about.
        server: String,
        /// Its message (never the secret: only its stderr, or the JSON error).
        detail: String,
    },
}

/// What is presented to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A password (or a personal access token used as one).
    Password(String),
    /// An OAuth2 refresh token (`identitytoken`, or a helper's `<token>` user).
    IdentityToken(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Password(_) => "Password(<redacted>)",
            Secret::IdentityToken(_) => "IdentityToken(<redacted>)",
        })
    }
}

/// A user's credentials for one registry, and where they came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (empty for an identity token).
    pub username: String,
    /// The secret.
    pub secret: Secret,
    /// Where they were found (a file, or `docker-credential-NAME`), for messages.
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `Authorization` value for HTTP Basic, when the secret is a password.
    pub fn basic_authorization(&self) -> Option<String> {
        match &self.secret {
            Secret::Password(password) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{password}", self.username))
            )),
            Secret::IdentityToken(_) => None,
        }
    }
}

/// The credentials files looked at, in order (whether or not they exist).
pub fn files() -> Vec<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let home = env("HOME").map(PathBuf::from);
    let mut files = Vec::new();
    files.extend(env("REGISTRY_AUTH_FILE").map(PathBuf::from));
    files.extend(env("XDG_RUNTIME_DIR").map(|d| Path::new(&d).join("containers/auth.json")));
    let config_home = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    files.extend(config_home.map(|d| d.join("containers/auth.json")));
    let docker = env("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".docker")));
    files.extend(docker.map(|d| d.join("config.json")));
    files
}

/// The credentials for `registry` (as written in the image reference) and `repository`,
/// or `None` when none are configured.
pub async fn lookup(
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, CredentialError> {
    for path in files() {
        let Some(file) = read_file(&path)? else {
            continue;
        };
        if let Some(found) = from_file(&file, &path, registry, repository).await? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// A credentials file: docker's `config.json` or containers' `auth.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

fn read_file(path: &Path) -> Result<Option<AuthFile>, CredentialError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(CredentialError::Read {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| CredentialError::Parse {
            path: path.to_path_buf(),
            error,
        })
}

async fn from_file(
    file: &AuthFile,
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, CredentialError> {
    let hosts = host_aliases(registry);
    if let Some(helper) = hosts.iter().find_map(|h| file.cred_helpers.get(*h)) {
        return run_helper(helper, path, registry).await;
    }
    let entries: BTreeMap<String, &AuthEntry> = file
        .auths
        .iter()
        .map(|(key, entry)| (normalize_key(key), entry))
        .collect();
    for key in lookup_keys(&hosts, repository) {
        if let Some(entry) = entries.get(&key) {
            if let Some(found) = from_entry(entry, path, &key)? {
                return Ok(Some(found));
            }
        }
    }
    match &file.creds_store {
        Some(helper) if !helper.is_empty() => run_helper(helper, path, registry).await,
        _ => Ok(None),
    }
}

fn from_entry(
    entry: &AuthEntry,
    path: &Path,
    key: &str,
) -> Result<Option<Credentials>, CredentialError> {
    let source = path.display().to_string();
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.trim().is_empty() => {
            let bad = || CredentialError::BadAuth {
                path: path.to_path_buf(),
                key: key.to_string(),
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (user, password) = decoded.split_once(':').ok_or_else(bad)?;
            (user.to_string(), password.to_string())
        }
        (_, Some(user), Some(password)) => (user.clone(), password.clone()),
        _ => (String::new(), String::new()),
    };
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials {
            username,
            secret: Secret::IdentityToken(token.clone()),
            source,
        }));
    }
    if username.is_empty() && password.is_empty() {
        // `{}`: a placeholder docker writes when a credsStore holds the secret.
        return Ok(None);
    }
    Ok(Some(Credentials {
        username,
        secret: Secret::Password(password),
        source,
    }))
}

/// The answer of `docker-credential-NAME get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

async fn run_helper(
    helper: &str,
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, CredentialError> {
    let program = format!("docker-credential-{helper}");
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let start_error = |detail: String| CredentialError::HelperStart {
        helper: helper.to_string(),
        path: path.to_path_buf(),
        detail,
    };
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| start_error(format!("{program}: {e} (is it installed and on PATH?)")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .await
            .map_err(|e| start_error(e.to_string()))?;
    }
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| start_error(format!("no answer in {}s", HELPER_TIMEOUT.as_secs())))?
        .map_err(|e| start_error(e.to_string()))?;
    let failed = |detail: String| CredentialError::HelperFailed {
        helper: helper.to_string(),
        server: server.to_string(),
        detail,
    };
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        // The helpers' own words for "not logged in to this server".
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(failed(text.trim().to_string()));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| failed("its answer is not the JSON it should print".into()))?;
    let secret = if answer.username == "<token>" {
        Secret::IdentityToken(answer.secret)
    } else {
        Secret::Password(answer.secret)
    };
    Ok(Some(Credentials {
        username: answer.username,
        secret,
        source: program,
    }))
}

/// The names `registry`'s entries may be filed under (Docker Hub has three).
fn host_aliases(registry: &str) -> Vec<&str> {
    if registry == "docker.io" {
        vec!["docker.io", "index.docker.io", "registry-1.docker.io"]
    } else {
        vec![registry]
    }
}

/// The `auths` keys to try, most specific first: `host/ns/repo`, `host/ns`, `host`.
fn lookup_keys(hosts: &[&str], repository: &str) -> Vec<String> {
    let parts: Vec<&str> = repository.split('/').collect();
    let mut keys = Vec::new();
    for len in (1..=parts.len()).rev() {
        let prefix = parts[..len].join("/");
        keys.extend(hosts.iter().map(|host| format!("{host}/{prefix}")));
    }
    keys.extend(hosts.iter().map(|host| host.to_string()));
    keys
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `quay.io/ns` stays.
fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.trim_end_matches('/');
    let key = key
        .strip_suffix("/v1")
        .or_else(|| key.strip_suffix("/v2"))
        .unwrap_or(key);
    key.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str) -> AuthFile {
        serde_json::from_str(json).expect("json")
    }

    fn found(json: &str, registry: &str, repository: &str) -> Option<Credentials> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime
            .block_on(from_file(
                &file(json),
                Path::new("config.json"),
                registry,
                repository,
            ))
            .expect("lookup")
    }

    #[test]
    fn base64_auth_entries() {
        // "alice:s3cret:with:colons"
        let json = r#"{"auths": {"127.0.0.1:5000": {"auth": "YWxpY2U6czNjcmV0OndpdGg6Y29sb25z"}}}"#;
        let creds = found(json, "127.0.0.1:5000", "kbridge/agent").expect("found");
        assert_eq!(creds.username, "alice");
        assert_eq!(creds.secret, Secret::Password("s3cret:with:colons".into()));
        assert!(found(json, "127.0.0.1:5001", "kbridge/agent").is_none());
        assert!(
            !format!("{creds:?}").contains("s3cret"),
            "Debug hides the secret"
        );
    }

    #[test]
    fn docker_hub_and_url_keys() {
        let json = r#"{"auths": {"https://index.docker.io/v1/": {"auth": "Ym9iOnB3"}}}"#;
        let creds = found(json, "docker.io", "bob/agent").expect("found");
        assert_eq!(creds.username, "bob");
        let json =
            r#"{"auths": {"https://registry.example.com": {"username": "u", "password": "p"}}}"#;
        assert!(found(json, "registry.example.com", "a").is_some());
    }

    #[test]
    fn the_longest_namespace_wins() {
        // "ns:one" and "host:two"
        let json = r#"{"auths": {"quay.io": {"auth": "aG9zdDp0d28="}, "quay.io/team": {"auth": "bnM6b25l"}}}"#;
        assert_eq!(
            found(json, "quay.io", "team/agent").expect("ns").username,
            "ns"
        );
        assert_eq!(
            found(json, "quay.io", "other/agent")
                .expect("host")
                .username,
            "host"
        );
    }

    #[test]
    fn placeholders_and_identity_tokens() {
        let json = r#"{"auths": {"r.example": {}}}"#;
        assert!(found(json, "r.example", "a").is_none());
        let json = r#"{"auths": {"r.example": {"identitytoken": "refresh"}}}"#;
        let creds = found(json, "r.example", "a").expect("token");
        assert_eq!(creds.secret, Secret::IdentityToken("refresh".into()));
        assert_eq!(creds.basic_authorization(), None);
    }

    #[test]
    fn a_missing_helper_is_an_error_naming_it() {
        let json = r#"{"credHelpers": {"r.example": "kbridge-test-no-such-helper"}}"#;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let error = runtime
            .block_on(from_file(
                &file(json),
                Path::new("c.json"),
                "r.example",
                "a",
            ))
            .expect_err("no such helper");
        assert!(
            error
                .to_string()
                .contains("docker-credential-kbridge-test-no-such-helper"),
            "{error}"
        );
    }

    #[test]
    fn bad_base64_is_reported_not_ignored() {
        let json = r#"{"auths": {"r.example": {"auth": "!!!"}}}"#;
        let entry = &file(json).auths["r.example"];
        assert!(matches!(
            from_entry(entry, Path::new("c.json"), "r.example"),
            Err(CredentialError::BadAuth { .. })
        ));
    }
}
