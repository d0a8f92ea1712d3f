//! `KubernetesLocalProcessConfig.yaml` as Bridge to Kubernetes defined it: which volumes
//! to download and which extra environment entries to build from tokens.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "KubernetesLocalProcessConfig.yaml")]
pub struct LocalProcessConfig {
    /// File format version; `0.1` is the only one defined.
    #[serde(default)]
    pub version: Option<String>,
    /// Optional features: `Probes`, `LifecycleHooks`, `ManagedIdentity`.
    #[serde(default)]
    pub enable_features: Vec<Feature>,
    /// Volumes to download, by name (wildcards allowed), and where to put them.
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    /// Extra environment entries; values may contain `$(volumeMounts:NAME)`,
    /// `$(services:SVC[.NS][:PORTS])` and `$(externalEndpoints:HOST:PORTS)` tokens.
    #[serde(default)]
    pub env: Vec<EnvEntry>,
}

/// Optional features of the file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Feature {
    /// Keep the container's readiness probe, carried out by the agent against the local
    /// process (liveness and startup probes stay the agent's own; exec probes cannot run in
    /// the agent image).
    Probes,
    /// Keep the container's lifecycle hooks the agent can run: `sleep`, and `preStop`
    /// `httpGet` (exec hooks cannot run in the agent image).
    LifecycleHooks,
    /// Reach the cloud metadata server (169.254.169.254: Azure IMDS, GKE metadata server,
    /// AWS IMDS) from the local process through the agent, and point the SDKs' variables
    /// at it.
    ManagedIdentity,
}

impl Feature {
    /// The name the file uses.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Probes => "Probes",
            Feature::LifecycleHooks => "LifecycleHooks",
            Feature::ManagedIdentity => "ManagedIdentity",
        }
    }
}

/// One `volumeMounts` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// Volume name; `*` and `?` wildcards allowed.
    pub name: String,
    /// Local directory to download into; default: a private temporary directory.
    #[serde(default)]
    pub local_path: Option<String>,
    /// Whether environment values that are paths into this volume (e.g.
    /// `CONFIG_PATH=/etc/app/conf.yaml` with the volume at `/etc/app`) point at its local
    /// copy; default `true`. With `false` they keep the pod's path, and the volume is
    /// downloaded only when `localPath` asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_env_paths: Option<bool>,
}

impl VolumeMount {
    /// A `volumeMounts` entry that only names a volume to download.
    pub fn named(name: impl Into<String>) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            local_path: None,
            rewrite_env_paths: None,
        }
    }

    /// Whether this entry asks for the volume to be downloaded (an entry that only turns
    /// `rewriteEnvPaths` off does not).
    pub fn downloads(&self) -> bool {
        self.local_path.is_some() || self.rewrite_env_paths != Some(false)
    }
}

/// One `env` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvEntry {
    /// Variable name.
    pub name: String,
    /// Value: text mixed with tokens. Required unless `rewritePath: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `false`: the pod's value of this variable is kept as it is even when it is a path
    /// into one of the container's volumes (which kbridge otherwise downloads and points
    /// the variable at). Given without `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_path: Option<bool>,
}

impl EnvEntry {
    /// An entry setting `name` to `value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> EnvEntry {
        EnvEntry {
            name: name.into(),
            value: Some(value.into()),
            rewrite_path: None,
        }
    }

    /// Whether the entry keeps the pod's value untouched (`rewritePath: false`).
    pub fn keeps_pod_path(&self) -> bool {
        self.rewrite_path == Some(false)
    }
}

/// The highest file format version kbridge reads, as Bridge to Kubernetes defined it.
pub const SUPPORTED_VERSION: f64 = 0.1;

/// One piece of an `env` value: text, or a token kbridge replaces with a local value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuePart {
    /// Literal text.
    Text(String),
    /// `$(volumeMounts:NAME)`: the local directory the volume was downloaded to.
    VolumeMount(String),
    /// `$(services:SVC[.NS][:PORTS])`: the local name (or address) of a cluster Service,
    /// whose ports are forwarded.
    Service {
        /// Service name.
        name: String,
        /// Namespace; default: the session's.
        namespace: Option<String>,
        /// Ports to forward; empty means all of the Service's ports.
        ports: Vec<u16>,
    },
    /// `$(externalEndpoints:HOST:PORTS)`: a host outside the cluster reached through it.
    ExternalEndpoint {
        /// Host name or address.
        host: String,
        /// Ports to forward.
        ports: Vec<u16>,
    },
}

impl LocalProcessConfig {
    /// Reads the file's text; `file` names it in errors, which carry the line.
    pub fn parse(text: &str, file: &str) -> Result<LocalProcessConfig, crate::ConfigError> {
        let config: LocalProcessConfig = serde_saphyr::from_str(text).map_err(|error| {
            let rendered = error.to_string();
            crate::ConfigError::File {
                file: file.to_string(),
                line: line_of_error(&rendered),
                message: first_line_message(&rendered),
            }
        })?;
        let at_line = |needle: &str| {
            text.lines()
                .position(|line| line.contains(needle))
                .map_or(0, |i| i + 1)
        };
        if let Some(version) = &config.version {
            let supported = version
                .trim()
                .parse::<f64>()
                .is_ok_and(|v| v <= SUPPORTED_VERSION);
            if !supported {
                return Err(crate::ConfigError::File {
                    file: file.to_string(),
                    line: at_line("version"),
                    message: format!(
                        "`version: {version}` is not supported; kbridge reads versions up to {SUPPORTED_VERSION}"
                    ),
                });
            }
        }
        for mount in &config.volume_mounts {
            if let Some(path) = &mount.local_path {
                let line = text
                    .lines()
                    .position(|l| l.contains("localPath") && l.contains(path.as_str()))
                    .map_or(0, |i| i + 1);
                check_local_path(path).map_err(|message| crate::ConfigError::File {
                    file: file.to_string(),
                    line,
                    message: format!("volumeMounts `{}`: {message}", mount.name),
                })?;
            }
        }
        for entry in &config.env {
            check_env_entry(entry).map_err(|message| crate::ConfigError::File {
                file: file.to_string(),
                line: entry
                    .value
                    .as_deref()
                    .map_or_else(|| at_line(&entry.name), at_line),
                message: format!("env `{}`: {message}", entry.name),
            })?;
        }
        Ok(config)
    }
}

/// An `env` entry sets a value (whose tokens must parse), or keeps the pod's path with
/// `rewritePath: false` — not both, not neither.
fn check_env_entry(entry: &EnvEntry) -> Result<(), String> {
    match (&entry.value, entry.keeps_pod_path()) {
        (Some(_), true) => Err(
            "`rewritePath: false` keeps the pod's value, so `value` cannot be given too; leave one out"
                .into(),
        ),
        (Some(value), false) => parse_value(value).map(|_| ()),
        (None, true) => Ok(()),
        (None, false) => Err(
            "needs a `value` (or `rewritePath: false` to keep the pod's path as it is)".into(),
        ),
    }
}

/// A `localPath` must name a directory outright: an absolute path (`/…`, or `C:\…` on
/// Windows), with no `$(…)` token — tokens are expanded in `env` values only, and a
/// relative path would land wherever kbridge happens to run.
pub fn check_local_path(path: &str) -> Result<(), String> {
    if path.contains("$(") || path.contains("${") {
        return Err(format!(
            "`localPath: {path}` contains a token, but tokens are expanded only in `env` values; give an absolute directory, or leave `localPath` out to download into the session's private directory and use `$(volumeMounts:NAME)` in an `env` value"
        ));
    }
    let bytes = path.as_bytes();
    let windows_drive = bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && (bytes[2] == b'\\' || bytes[2] == b'/');
    if !(path.starts_with('/') || path.starts_with("\\\\") || windows_drive) {
        return Err(format!(
            "`localPath: {path}` must be an absolute path (e.g. /tmp/{path}); leave it out to download into the session's private directory"
        ));
    }
    Ok(())
}

/// serde-saphyr renders "error: line L column C: message" followed by a snippet.
fn line_of_error(rendered: &str) -> usize {
    rendered
        .split("line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

fn first_line_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered);
    // Drop the "error: line L column C: " prefix; the line is reported separately.
    match first
        .split_once(": ")
        .and_then(|(_, rest)| rest.split_once(": "))
    {
        Some((position, message)) if position.starts_with("line ") => message.to_string(),
        _ => first.trim_start_matches("error: ").to_string(),
    }
}

/// Splits an `env` value into text and tokens. Token kinds are matched without regard
/// to case, as Bridge to Kubernetes did (`$(volumemounts:…)` works too).
pub fn parse_value(value: &str) -> Result<Vec<ValuePart>, String> {
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        if start > 0 {
            parts.push(ValuePart::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find(')')
            .ok_or_else(|| format!("token `{}` has no closing `)`", &rest[start..]))?;
        parts.push(parse_token(&after[..end])?);
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(ValuePart::Text(rest.to_string()));
    }
    Ok(parts)
}

fn parse_token(token: &str) -> Result<ValuePart, String> {
    let (kind, argument) = token
        .split_once(':')
        .ok_or_else(|| format!("token `$({token})` is not of the form $(KIND:VALUE)"))?;
    if argument.is_empty() {
        return Err(format!("token `$({token})` has nothing after `{kind}:`"));
    }
    match kind.to_ascii_lowercase().as_str() {
        "volumemounts" => Ok(ValuePart::VolumeMount(argument.to_string())),
        "services" => {
            let (service, ports) = split_ports(argument, token)?;
            let (name, namespace) = match service.split_once('.') {
                Some((name, namespace)) => (name.to_string(), Some(namespace.to_string())),
                None => (service.to_string(), None),
            };
            Ok(ValuePart::Service { name, namespace, ports })
        }
        "externalendpoints" => {
            let (host, ports) = split_ports(argument, token)?;
            if ports.is_empty() {
                return Err(format!("token `$({token})` needs ports: $(externalEndpoints:HOST:PORT[,PORT…])"));
            }
            Ok(ValuePart::ExternalEndpoint { host: host.to_string(), ports })
        }
        _ => Err(format!(
            "unknown token kind `{kind}` in `$({token})`; expected volumeMounts, services or externalEndpoints"
        )),
    }
}

/// `NAME:80,443` → (`NAME`, [80, 443]); `NAME` → (`NAME`, []).
fn split_ports<'a>(argument: &'a str, token: &str) -> Result<(&'a str, Vec<u16>), String> {
    match argument.split_once(':') {
        None => Ok((argument, Vec::new())),
        Some((name, ports)) => {
            let ports = ports
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<u16>()
                        .map_err(|_| format!("`{p}` in `$({token})` is not a port number"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((name, ports))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "version: 0.1
enableFeatures:
  - ManagedIdentity
volumeMounts:
  - name: default-token-*
    localPath: /var/run/secrets/kubernetes.io/serviceaccount
  - name: config
env:
  - name: DB_HOST
    value: $(services:mydb)
  - name: STATS_URL
    value: http://$(services:stats-api.todo:80)/stats
  - name: VAULT
    value: $(externalendpoints:vault.example.com:443,8443)
  - name: CONFIG_PATH
    value: $(volumeMounts:config)/appsettings.json
";

    #[test]
    fn a_local_path_with_a_token_or_relative_is_refused_naming_line_and_key() {
        let text =
            "version: 0.1\nvolumeMounts:\n  - name: cfg\n    localPath: $(volumeMounts:cfg)\n";
        let error = LocalProcessConfig::parse(text, "KubernetesLocalProcessConfig.yaml")
            .expect_err("a token in localPath is refused");
        let message = error.to_string();
        assert!(
            message.starts_with("KubernetesLocalProcessConfig.yaml: line 4: volumeMounts `cfg`: `localPath: $(volumeMounts:cfg)` contains a token"),
            "{message}"
        );
        let relative = "volumeMounts:\n  - name: cfg\n    localPath: conf\n";
        let message = LocalProcessConfig::parse(relative, "f.yaml")
            .expect_err("a relative localPath is refused")
            .to_string();
        assert!(
            message.contains("line 3") && message.contains("must be an absolute path"),
            "{message}"
        );
        for fine in ["/tmp/cfg", "C:\\cfg", "d:/cfg"] {
            assert_eq!(check_local_path(fine), Ok(()), "{fine}");
        }
    }

    #[test]
    fn reads_a_bridge_to_kubernetes_file() {
        let config = LocalProcessConfig::parse(EXAMPLE, "KubernetesLocalProcessConfig.yaml")
            .expect("valid file");
        assert_eq!(config.enable_features, [Feature::ManagedIdentity]);
        assert_eq!(config.volume_mounts[0].name, "default-token-*");
        assert_eq!(config.volume_mounts[1].local_path, None);
        assert_eq!(
            parse_value(config.env[1].value.as_deref().unwrap_or_default()).expect("tokens"),
            [
                ValuePart::Text("http://".into()),
                ValuePart::Service {
                    name: "stats-api".into(),
                    namespace: Some("todo".into()),
                    ports: vec![80]
                },
                ValuePart::Text("/stats".into()),
            ]
        );
        assert_eq!(
            parse_value(config.env[2].value.as_deref().unwrap_or_default()).expect("tokens"),
            [ValuePart::ExternalEndpoint {
                host: "vault.example.com".into(),
                ports: vec![443, 8443]
            }]
        );
    }

    #[test]
    fn unknown_key_names_its_line() {
        let err = LocalProcessConfig::parse("version: 0.1\nvolumeMount:\n  - name: x\n", "K.yaml")
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.starts_with("K.yaml: line 2:"), "{text}");
        assert!(text.contains("volumeMount"), "{text}");
    }

    #[test]
    fn unknown_token_names_line_and_key() {
        let text = "env:\n  - name: A\n    value: ok\n  - name: B\n    value: $(secrets:x)\n";
        let err = LocalProcessConfig::parse(text, "K.yaml").expect_err("unknown token");
        let text = err.to_string();
        assert!(
            text.contains("line 5") && text.contains("env `B`") && text.contains("secrets"),
            "{text}"
        );
    }

    #[test]
    fn env_paths_can_be_kept_per_variable_and_per_volume() {
        let text = "volumeMounts:
  - name: aws-iam-token
    rewriteEnvPaths: false
  - name: config
env:
  - name: GOOGLE_APPLICATION_CREDENTIALS
    rewritePath: false
";
        let config = LocalProcessConfig::parse(text, "K.yaml").expect("valid file");
        assert!(!config.volume_mounts[0].downloads());
        assert!(config.volume_mounts[1].downloads());
        assert!(config.env[0].keeps_pod_path());
        assert_eq!(config.env[0].value, None);

        let both = "env:\n  - name: A\n    value: x\n    rewritePath: false\n";
        let message = LocalProcessConfig::parse(both, "K.yaml")
            .expect_err("value and rewritePath: false")
            .to_string();
        assert!(
            message.contains("line 3") && message.contains("cannot be given too"),
            "{message}"
        );
        let neither = "env:\n  - name: A\n";
        let message = LocalProcessConfig::parse(neither, "K.yaml")
            .expect_err("no value")
            .to_string();
        assert!(
            message.contains("line 2") && message.contains("needs a `value`"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_feature_is_an_error_naming_its_line() {
        let text = "version: 0.1\nenableFeatures:\n  - Probes\n  - Telepathy\n";
        let message = LocalProcessConfig::parse(text, "K.yaml")
            .expect_err("unknown feature")
            .to_string();
        assert!(
            message.starts_with("K.yaml: line 4:") && message.contains("Telepathy"),
            "{message}"
        );
    }

    #[test]
    fn newer_versions_are_refused() {
        let err = LocalProcessConfig::parse("version: 0.2\n", "K.yaml").expect_err("version");
        assert!(err.to_string().contains("0.2"), "{err}");
    }
}
