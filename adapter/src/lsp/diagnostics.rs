//! What is wrong in a document, each finding at the exact key or value it is about:
//! unknown keys, values and tokens (with "did you mean"), wrong value types, a `localPath`
//! kbridge refuses, and — when [`super::cluster::ClusterData`] knows the cluster — names
//! that do not exist there. The checks are `kbridge-config`'s own where it has them
//! (`check_local_path`, `parse_value`, `parse_azds_env`, `LaunchConfig::from_arguments`); a
//! document they still refuse after the positioned checks found nothing gets their message
//! on the line they name, so the server never says less than a launch would.

use super::cluster::{Scope, Snapshot};
use super::documents::{Document, DocumentKind};
use super::schema::{closest, did_you_mean, quoted_list, Schema};
use super::tokens::{tokens, Syntax};
use super::tree::{self, Node, Value};
use crate::jsonc;
use crate::session::cluster::config_file;
use kbridge_config::azds_env::parse_azds_env;
use kbridge_config::local_process::{
    check_local_path, parse_value, LocalProcessConfig, SUPPORTED_VERSION,
};
use kbridge_config::{ConfigError, LaunchConfig};
use lsp_types::{Diagnostic, DiagnosticSeverity};
use std::ops::Range;

/// One finding, before it is placed in lines and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The bytes it is about.
    pub span: Range<usize>,
    /// What is wrong and what to do.
    pub message: String,
    /// An error (a launch would fail) or a warning (it may not do what was meant).
    pub error: bool,
}

impl Finding {
    fn error(span: Range<usize>, message: impl Into<String>) -> Finding {
        Finding {
            span,
            message: message.into(),
            error: true,
        }
    }

    fn warning(span: Range<usize>, message: impl Into<String>) -> Finding {
        Finding {
            error: false,
            ..Finding::error(span, message)
        }
    }
}

/// The diagnostics to publish for `document`, with what is known of the cluster: about
/// `scope` for a config file, about each configuration's own scope in a `launch.json`.
pub fn diagnostics(
    document: &Document,
    scope: &Scope,
    cluster: &dyn Fn(&Scope) -> std::sync::Arc<Snapshot>,
) -> Vec<Diagnostic> {
    let findings = match document.kind {
        DocumentKind::LocalProcessConfig => local_process_config(document, &cluster(scope)),
        DocumentKind::AzdsEnv => azds_env(document, &cluster(scope)),
        DocumentKind::LaunchJson => launch_json(document, cluster),
    };
    findings
        .into_iter()
        .map(|f| Diagnostic {
            range: document.index.range(&document.text, f.span),
            severity: Some(if f.error {
                DiagnosticSeverity::ERROR
            } else {
                DiagnosticSeverity::WARNING
            }),
            source: Some("kbridge".to_string()),
            message: f.message,
            ..Diagnostic::default()
        })
        .collect()
}

/// `KubernetesLocalProcessConfig.yaml`.
pub fn local_process_config(document: &Document, cluster: &Snapshot) -> Vec<Finding> {
    let text = &document.text;
    let root = match super::yaml::parse(text, &document.index) {
        Ok(Some(root)) => root,
        Ok(None) => return Vec::new(),
        Err(error) => {
            let line = document.index.line_span(text, error.line);
            let span = error.offset.min(line.end)..line.end;
            return vec![Finding::error(
                span,
                format!("not valid YAML: {}", error.message),
            )];
        }
    };
    let mut findings: Vec<Finding> = Schema::local_process_config()
        .check(&root)
        .into_iter()
        .map(|p| Finding::error(p.span, p.message))
        .collect();
    if let Some(version) = root.get("version").and_then(Node::as_str) {
        if !version
            .trim()
            .parse::<f64>()
            .is_ok_and(|v| v <= SUPPORTED_VERSION)
        {
            findings.push(Finding::error(
                root.get("version").map_or(0..0, |v| v.span.clone()),
                format!("`version: {version}` is not supported; kbridge reads versions up to {SUPPORTED_VERSION}"),
            ));
        }
    }
    for mount in list(&root, "volumeMounts") {
        if let Some(path) = mount.get("localPath").filter(|p| p.as_str().is_some()) {
            if let Err(message) = check_local_path(path.as_str().unwrap_or_default()) {
                findings.push(Finding::error(path.span.clone(), message));
            }
        }
        if let (Some(name), Some(volumes)) = (mount.get("name"), cluster.volumes.as_ref()) {
            let written = name.as_str().unwrap_or_default();
            let names = || volumes.iter().map(|v| v.name.as_str());
            if !written.is_empty() && !names().any(|n| config_file::wildcard(written, n)) {
                findings.push(Finding::warning(
                    name.span.clone(),
                    format!(
                        "the target container mounts no volume `{written}`{}",
                        did_you_mean(written, names())
                    ),
                ));
            }
        }
    }
    for entry in list(&root, "env") {
        if let Some(value) = entry.get("value") {
            findings.extend(token_findings(value, Syntax::Config, cluster));
        }
    }
    if !findings.iter().any(|f| f.error) {
        if let Err(error) = LocalProcessConfig::parse(text, "KubernetesLocalProcessConfig.yaml") {
            findings.push(on_line(document, error));
        }
    }
    findings
}

/// `azds-local.env`: `NAME=VALUE` lines with `${…}` tokens.
pub fn azds_env(document: &Document, cluster: &Snapshot) -> Vec<Finding> {
    let text = &document.text;
    let mut findings = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let span = document.index.line_span(text, number + 1);
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let before = findings.len();
        if let Some(eq) = raw.find('=') {
            let value = Node {
                span: span.start + eq + 1..span.end,
                value: Value::Scalar(tree::Scalar {
                    text: raw[eq + 1..].to_string(),
                    kind: tree::ScalarKind::String,
                    text_start: Some(span.start + eq + 1),
                }),
            };
            findings.extend(token_findings(&value, Syntax::AzdsEnv, cluster));
        }
        if findings[before..].iter().any(|f| f.error) {
            continue;
        }
        // kbridge-config reads the line on its own: its message, on the whole line.
        if let Err(ConfigError::File { message, .. }) = parse_azds_env(raw, "azds-local.env") {
            let start = span.start + (raw.len() - raw.trim_start().len());
            findings.push(Finding::error(start..span.end, message));
        }
    }
    findings
}

/// Problems with the tokens of one value (an `env` value, or the value of an
/// `azds-local.env` line).
fn token_findings(value: &Node, syntax: Syntax, cluster: &Snapshot) -> Vec<Finding> {
    let Some(text) = value.as_str() else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for token in tokens(text, syntax) {
        let whole = &text[token.span.clone()];
        if let (false, Some(message)) = (token.closed, refused(whole, syntax)) {
            findings.push(Finding::error(
                value.span_within(token.span.clone()),
                message,
            ));
            continue;
        }
        let Some(kind) = token.known_kind(syntax) else {
            let span = if token.kind.is_empty() {
                value.span_within(token.span.clone())
            } else {
                value.span_within(token.kind_span.clone())
            };
            findings.push(Finding::error(
                span,
                format!(
                    "unknown token kind `{}` in `{whole}`; expected {}{}",
                    token.kind,
                    quoted_list(syntax.kinds().iter().copied()),
                    did_you_mean(token.kind, syntax.kinds().iter().copied())
                ),
            ));
            continue;
        };
        let span = value.span_within(token.span.clone());
        if let Some(message) = refused(whole, syntax) {
            findings.push(Finding::error(span, message));
            continue;
        }
        findings.extend(cluster_finding(kind, token.argument, syntax, span, cluster));
    }
    findings
}

/// Why `kbridge-config` refuses a token on its own, if it does.
fn refused(token: &str, syntax: Syntax) -> Option<String> {
    match syntax {
        Syntax::Config => parse_value(token).err(),
        Syntax::AzdsEnv => match parse_azds_env(&format!("A={token}"), "azds-local.env") {
            Err(ConfigError::File { message, .. }) => {
                Some(message.trim_start_matches("`A`: ").to_string())
            }
            _ => None,
        },
    }
}

/// A warning when the cluster is known and has no Service or volume of the token's name.
fn cluster_finding(
    kind: &str,
    argument: &str,
    syntax: Syntax,
    span: Range<usize>,
    cluster: &Snapshot,
) -> Option<Finding> {
    match kind {
        "services" => {
            let (name, namespace, ports) = service_parts(argument, syntax);
            if let Some(namespace) = namespace {
                // Another namespace: only whether it exists is known.
                let known = cluster.namespaces.as_ref()?;
                return (!known.iter().any(|n| n == namespace)).then(|| {
                    Finding::warning(
                        span,
                        format!(
                            "no namespace `{namespace}` in the cluster{}",
                            did_you_mean(namespace, known.iter().map(String::as_str))
                        ),
                    )
                });
            }
            let services = cluster.services.as_ref()?;
            let names = || services.iter().map(|s| s.name.as_str());
            let Some(service) = services.iter().find(|s| s.name == name) else {
                return Some(Finding::warning(
                    span,
                    format!(
                        "no Service `{name}` in the namespace{}",
                        did_you_mean(name, names())
                    ),
                ));
            };
            let has = |port: u16| service.ports.iter().any(|(p, _)| *p == port);
            let missing: Vec<String> = ports
                .into_iter()
                .filter(|p| !has(*p))
                .map(|p| p.to_string())
                .collect();
            (!missing.is_empty()).then(|| {
                let its: Vec<String> = service.ports.iter().map(|(p, _)| p.to_string()).collect();
                Finding::warning(
                    span,
                    format!(
                        "Service `{name}` has no port {}; its ports: {}",
                        missing.join(", "),
                        if its.is_empty() {
                            "none".to_string()
                        } else {
                            its.join(", ")
                        }
                    ),
                )
            })
        }
        _ if kind != "externalEndpoints" => {
            let volumes = cluster.volumes.as_ref()?;
            let name = argument.split('|').next().unwrap_or_default();
            let names = || volumes.iter().map(|v| v.name.as_str());
            let matches = names().any(|n| config_file::wildcard(name, n));
            (!matches).then(|| {
                Finding::warning(
                    span,
                    format!(
                        "the target container mounts no volume `{name}`{}",
                        did_you_mean(name, names())
                    ),
                )
            })
        }
        _ => None,
    }
}

/// A services token's Service name, namespace (when it names one) and ports:
/// `SVC[.NS][:PORT,…]` in the config file, `[NS.]SVC` in `azds-local.env`.
fn service_parts(argument: &str, syntax: Syntax) -> (&str, Option<&str>, Vec<u16>) {
    match syntax {
        Syntax::Config => {
            let (service, ports) = argument.split_once(':').unwrap_or((argument, ""));
            let ports = ports
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            match service.split_once('.') {
                Some((name, namespace)) => (name, Some(namespace), ports),
                None => (service, None, ports),
            }
        }
        Syntax::AzdsEnv => match argument.split_once('.') {
            Some((namespace, name)) => (name, Some(namespace), Vec::new()),
            None => (argument, None, Vec::new()),
        },
    }
}

/// `launch.json`: the `"type": "bridge"` configurations.
pub fn launch_json(
    document: &Document,
    cluster: &dyn Fn(&Scope) -> std::sync::Arc<Snapshot>,
) -> Vec<Finding> {
    let text = &document.text;
    let root = match jsonc::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => return Vec::new(),
        Err(error) => {
            let at = document.index.offset_of_line_column(
                text,
                error.line,
                error.column.saturating_sub(1),
            );
            let line = document.index.line_span(text, error.line);
            return vec![Finding::error(
                at.min(line.end)..line.end.max(at),
                format!("not valid JSON: {}", error.message),
            )];
        }
    };
    let mut findings = Vec::new();
    for item in root
        .get("configurations")
        .map(jsonc::Node::items)
        .unwrap_or_default()
    {
        let configuration = tree::from_jsonc(text, &item.value);
        if configuration.get("type").and_then(Node::as_str) != Some("bridge") {
            continue;
        }
        let mut own = bridge_configuration(&configuration);
        if let Some(bridge) = configuration.get("bridge") {
            own.extend(bridge_cluster_findings(bridge, &cluster(&scope_of(bridge))));
        }
        if !own.iter().any(|f| f.error) {
            if let Err(error) = LaunchConfig::from_arguments(&item.value.to_value()) {
                own.push(at_path(&configuration, error));
            }
        }
        findings.extend(own);
    }
    findings
}

/// The checks of one `"type": "bridge"` configuration that need no cluster.
fn bridge_configuration(configuration: &Node) -> Vec<Finding> {
    let mut findings = Vec::new();
    for key in ["bridge", "debugger"] {
        if let Some(value) = configuration.get(key) {
            let problems = Schema::launch_key(key).check(value);
            findings.extend(
                problems
                    .into_iter()
                    .map(|p| Finding::error(p.span, p.message)),
            );
        }
    }
    let bridge_keys = Schema::bridge_block().keys(&[]);
    for entry in configuration.entries() {
        // Flat `bridge.KEY` keys (for editors whose templates cannot nest) name a bridge key.
        let Some(flat) = entry.key.strip_prefix("bridge.") else {
            continue;
        };
        let known =
            Schema::launch_key(&entry.key).exists() || bridge_keys.iter().any(|k| k.name == flat);
        if !known {
            let names = bridge_keys.iter().map(|k| k.name.as_str());
            findings.push(Finding::warning(
                entry.key_span.clone(),
                format!(
                    "`{}` names no bridge key{}",
                    entry.key,
                    closest(flat, names)
                        .map(|c| format!("; did you mean `bridge.{c}`?"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    findings
}

/// Where a `bridge` block points in the cluster.
pub fn scope_of(bridge: &Node) -> Scope {
    // An empty value (being typed) names nothing.
    let get = |key: &str| {
        bridge
            .get(key)
            .and_then(Node::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let target = get("service")
        .map(|s| format!("service/{s}"))
        .or_else(|| get("workload"))
        .or_else(|| get("pod").map(|p| format!("pod/{p}")));
    Scope {
        context: get("context"),
        namespace: get("namespace"),
        target,
        container: get("container"),
    }
}

/// Names in a `bridge` block the cluster, when known, does not have.
fn bridge_cluster_findings(bridge: &Node, cluster: &Snapshot) -> Vec<Finding> {
    let checks: [(&str, Option<Vec<&str>>, &str); 3] = [
        (
            "context",
            cluster
                .contexts
                .as_ref()
                .map(|c| c.iter().map(String::as_str).collect()),
            "no context `{}` in the kubeconfig",
        ),
        (
            "namespace",
            cluster
                .namespaces
                .as_ref()
                .map(|c| c.iter().map(String::as_str).collect()),
            "no namespace `{}` in the cluster",
        ),
        (
            "service",
            cluster
                .services
                .as_ref()
                .map(|c| c.iter().map(|s| s.name.as_str()).collect()),
            "no Service `{}` in the namespace",
        ),
    ];
    let mut findings = Vec::new();
    for (key, known, message) in checks {
        let (Some(node), Some(known)) = (bridge.get(key), known) else {
            continue;
        };
        let Some(name) = node.as_str().filter(|n| !n.is_empty()) else {
            continue;
        };
        if !known.contains(&name) {
            findings.push(Finding::warning(
                node.span.clone(),
                format!(
                    "{}{}",
                    message.replace("{}", name),
                    did_you_mean(name, known.iter().copied())
                ),
            ));
        }
    }
    findings
}

/// `kbridge-config`'s error for a configuration, at the key its path names.
fn at_path(configuration: &Node, error: ConfigError) -> Finding {
    let (path, message) = match &error {
        ConfigError::Invalid { path, message } => (path.as_str(), message.clone()),
        ConfigError::Conflict(message) => ("bridge", message.clone()),
        ConfigError::File { message, .. } => ("", message.clone()),
        // Only `kbridge dap`'s command line makes these; shown on the configuration if ever.
        ConfigError::Flag { flag, message } => ("", format!("{flag}: {message}")),
    };
    let mut node = configuration;
    let mut span = configuration.span.clone();
    for step in path.split(['.', '[']).filter(|s| !s.is_empty()) {
        let next = match step.strip_suffix(']').and_then(|i| i.parse::<usize>().ok()) {
            Some(index) => match &node.value {
                Value::List(items) => items.get(index),
                _ => None,
            },
            None => node
                .entries()
                .iter()
                .rev()
                .find(|e| e.key == step)
                .map(|e| {
                    span = e.key_span.clone();
                    &e.value
                }),
        };
        let Some(next) = next else { break };
        node = next;
        if !matches!(node.value, Value::Map(_)) {
            span = node.span.clone();
        }
    }
    Finding::error(span, message)
}

/// A `kbridge-config` file error on the line it names (the whole line).
fn on_line(document: &Document, error: ConfigError) -> Finding {
    let (line, message) = match error {
        ConfigError::File { line, message, .. } => (line, message),
        other => (0, other.to_string()),
    };
    let span = if line == 0 {
        0..document.index.line_span(&document.text, 1).end
    } else {
        document.index.line_span(&document.text, line)
    };
    Finding::error(span, message)
}

/// The elements of the list under `key`.
fn list<'a>(root: &'a Node, key: &str) -> &'a [Node] {
    match root.get(key).map(|n| &n.value) {
        Some(Value::List(items)) => items,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsp::cluster::{ServiceInfo, VolumeInfo};

    fn found(kind: DocumentKind, text: &str, cluster: &Snapshot) -> Vec<(String, String, bool)> {
        let document = Document::new(kind, 1, text.to_string());
        let findings = match kind {
            DocumentKind::LocalProcessConfig => local_process_config(&document, cluster),
            DocumentKind::AzdsEnv => azds_env(&document, cluster),
            DocumentKind::LaunchJson => {
                let cluster = cluster.clone();
                launch_json(&document, &move |_| std::sync::Arc::new(cluster.clone()))
            }
        };
        findings
            .into_iter()
            .map(|f| (text[f.span].to_string(), f.message, f.error))
            .collect()
    }

    fn cluster() -> Snapshot {
        Snapshot {
            services: Some(vec![ServiceInfo {
                name: "stats-api".into(),
                namespace: "todo".into(),
                ports: vec![(80, Some("http".into()))],
            }]),
            volumes: Some(vec![VolumeInfo {
                name: "config".into(),
                mount_path: "/etc/todo".into(),
                source: "configMap todo-config".into(),
            }]),
            ..Snapshot::default()
        }
    }

    #[test]
    fn config_file_findings_point_at_the_key_value_or_token() {
        let text = "version: 0.1\nvolumeMounts:\n  - name: config\n    localPath: $(volumeMounts:config)\nenv:\n  - name: A\n    value: \"http://$(service:stats-api)/x\"\n  - name: B\n    value: $(externalEndpoints:vault)\n";
        let found = found(DocumentKind::LocalProcessConfig, text, &Snapshot::default());
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, "$(volumeMounts:config)");
        assert!(found[0].1.contains("contains a token"), "{found:?}");
        assert_eq!(found[1].0, "service");
        assert!(found[1].1.contains("did you mean `services`?"), "{found:?}");
        assert_eq!(found[2].0, "$(externalEndpoints:vault)");
        assert!(found[2].1.contains("needs ports"), "{found:?}");
    }

    #[test]
    fn a_clean_file_has_no_findings_and_the_cluster_adds_warnings() {
        let text = "version: 0.1\nenableFeatures: [Probes]\nvolumeMounts:\n  - name: config\nenv:\n  - name: A\n    value: $(services:stats-api)\n  - name: B\n    value: $(volumeMounts:config)/a\n";
        assert_eq!(
            found(DocumentKind::LocalProcessConfig, text, &Snapshot::default()),
            []
        );
        assert_eq!(
            found(DocumentKind::LocalProcessConfig, text, &cluster()),
            []
        );
        let typo = text.replace("services:stats-api", "services:stats-ap");
        let found = found(DocumentKind::LocalProcessConfig, &typo, &cluster());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "$(services:stats-ap)");
        assert!(
            found[0].1.contains("did you mean `stats-api`?") && !found[0].2,
            "{found:?}"
        );
    }

    #[test]
    fn cluster_facts_are_checked_only_when_known() {
        let text = "volumeMounts:\n  - name: confg\n  - name: conf*\nenv:\n  - name: A\n    value: $(services:stats-api:8080) $(services:db.prodution) $(services:stats-api:80)\n";
        let mut known = cluster();
        known.namespaces = Some(vec!["todo".into(), "production".into()]);
        let quiet = found(DocumentKind::LocalProcessConfig, text, &Snapshot::default());
        let found = found(DocumentKind::LocalProcessConfig, text, &known);
        let spans: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            spans,
            [
                "confg",
                "$(services:stats-api:8080)",
                "$(services:db.prodution)"
            ],
            "{found:?}"
        );
        assert!(found[0].1.contains("did you mean `config`?"), "{found:?}");
        assert!(
            found[1].1.contains("has no port 8080; its ports: 80"),
            "{found:?}"
        );
        assert!(
            found[2].1.contains("did you mean `production`?"),
            "{found:?}"
        );
        assert!(
            found.iter().all(|f| !f.2),
            "warnings, not errors: {found:?}"
        );
        // Nothing known: nothing said.
        assert_eq!(quiet, []);
    }

    #[test]
    fn yaml_errors_and_newer_versions() {
        let found1 = found(
            DocumentKind::LocalProcessConfig,
            "env:\n  - name: a\n   value: [\n",
            &Snapshot::default(),
        );
        assert_eq!(found1.len(), 1);
        assert!(found1[0].1.starts_with("not valid YAML"), "{found1:?}");
        let found2 = found(
            DocumentKind::LocalProcessConfig,
            "version: 0.2\n",
            &Snapshot::default(),
        );
        assert_eq!(found2[0].0, "0.2");
    }

    #[test]
    fn azds_env_lines_are_checked_one_by_one() {
        let text = "# c\nA=${volume.x}/y\nB=${volumes.v|rel}\nno equals\nC=${services.ns.db}\n";
        let found = found(DocumentKind::AzdsEnv, text, &Snapshot::default());
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, "volume");
        assert!(found[0].1.contains("did you mean `volumes`?"), "{found:?}");
        assert_eq!(found[1].0, "${volumes.v|rel}");
        assert!(found[1].1.contains("absolute"), "{found:?}");
        assert_eq!(found[2].0, "no equals");
    }

    #[test]
    fn launch_json_bridge_configurations_only() {
        let text = r#"{
  // comments are fine
  "configurations": [
    {"type": "python", "bridge": {"whatever": 1}},
    {"type": "bridge", "debugger": "debugpi", "bridge.namespce": "x",
     "bridge": {"namespce": "todo", "hosts": "etc", "ports": [70000], "service": "a", "pod": "b"}},
    {"type": "bridge", "bridge": {"service": "a", "pod": "b"}},
  ]
}"#;
        let found = found(DocumentKind::LaunchJson, text, &Snapshot::default());
        let shown: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            shown,
            [
                "\"namespce\"",
                "\"etc\"",
                "70000",
                "\"debugpi\"",
                "\"bridge.namespce\"",
                "\"bridge\""
            ],
            "{found:?}"
        );
        assert!(
            found[0].1.contains("did you mean `namespace`?"),
            "{found:?}"
        );
        assert!(found[3].1.contains("did you mean `debugpy`?"), "{found:?}");
        assert!(
            found[4].1.contains("did you mean `bridge.namespace`?"),
            "{found:?}"
        );
        assert!(found[5].1.contains("more than once"), "{found:?}");
    }
}
