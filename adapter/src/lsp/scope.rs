//! Which part of the cluster a document is about ([`Scope`]). A `launch.json` says it
//! itself, configuration by configuration (`bridge.context`, `namespace`, `service` …). A
//! `KubernetesLocalProcessConfig.yaml` or `azds-local.env` does not: its scope is that of
//! the `"type": "bridge"` configuration of the nearest `.vscode/launch.json` above it — the
//! editor's copy when open, else the file on disk — preferring the configuration whose
//! `bridge.config` names this file, else the first that names a target (docs/lsp.md,
//! "Cluster data").

use super::cluster::Scope;
use super::diagnostics::scope_of;
use super::tree::{self, Node};
use crate::jsonc;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One `"type": "bridge"` configuration of a `launch.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfiguration {
    /// Its bytes in the file.
    pub span: Range<usize>,
    /// `bridge.config` as written.
    pub config: Option<String>,
    /// Where its `bridge` block points.
    pub scope: Scope,
}

/// The bridge configurations of a `launch.json` text (none when it does not parse).
pub fn bridge_configurations(text: &str) -> Vec<BridgeConfiguration> {
    let Ok(Some(root)) = jsonc::parse(text) else {
        return Vec::new();
    };
    root.get("configurations")
        .map(jsonc::Node::items)
        .unwrap_or_default()
        .iter()
        .map(|item| tree::from_jsonc(text, &item.value))
        .filter(|c| c.get("type").and_then(Node::as_str) == Some("bridge"))
        .filter_map(|configuration| {
            let bridge = configuration.get("bridge")?;
            Some(BridgeConfiguration {
                span: configuration.span.clone(),
                config: bridge
                    .get("config")
                    .and_then(Node::as_str)
                    .map(str::to_string),
                scope: scope_of(bridge),
            })
        })
        .collect()
}

/// The scope at byte `offset` of a `launch.json`: its enclosing bridge configuration's.
pub fn in_launch_json(text: &str, offset: usize) -> Scope {
    bridge_configurations(text)
        .into_iter()
        .find(|c| c.span.contains(&offset))
        .map(|c| c.scope)
        .unwrap_or_default()
}

/// The scope of the config file at `path`, from the nearest `.vscode/launch.json` above
/// it; `open` gives the editor's text of a file when it has one.
pub fn for_config_file(path: &Path, open: &dyn Fn(&Path) -> Option<String>) -> Scope {
    for workspace in path.ancestors().skip(1) {
        let launch = workspace.join(".vscode").join("launch.json");
        let Some(text) = open(&launch).or_else(|| std::fs::read_to_string(&launch).ok()) else {
            continue;
        };
        let configurations = bridge_configurations(&text);
        let naming_this = configurations.iter().find(|c| {
            c.config
                .as_deref()
                .is_some_and(|p| resolve(workspace, p) == path)
        });
        let with_target = configurations.iter().find(|c| c.scope.target.is_some());
        if let Some(found) = naming_this.or(with_target) {
            return found.scope.clone();
        }
    }
    Scope::default()
}

/// `bridge.config` as a path: `${workspaceFolder}` and relative paths from the workspace.
fn resolve(workspace: &Path, written: &str) -> PathBuf {
    let written = written
        .strip_prefix("${workspaceFolder}/")
        .unwrap_or(written);
    workspace.join(written)
}

/// The local path of a `file:` URI (percent escapes decoded); `None` for other schemes.
pub fn file_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    let bytes = rest.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    Some(PathBuf::from(String::from_utf8(decoded).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAUNCH: &str = r#"{
  // two bridge configurations and another
  "configurations": [
    {"type": "python", "bridge": {"service": "nope"}},
    {"type": "bridge", "bridge": {"namespace": "todo", "service": "todo-api"}},
    {"type": "bridge", "bridge": {"namespace": "todo", "workload": "deployment/stats-api",
      "config": "${workspaceFolder}/stats/KubernetesLocalProcessConfig.yaml"}},
  ]
}"#;

    #[test]
    fn launch_json_scopes_follow_the_cursor() {
        let at = LAUNCH.find("todo-api").expect("in text");
        assert_eq!(
            in_launch_json(LAUNCH, at).target.as_deref(),
            Some("service/todo-api")
        );
        let at = LAUNCH.find("stats-api").expect("in text");
        assert_eq!(
            in_launch_json(LAUNCH, at).target.as_deref(),
            Some("deployment/stats-api")
        );
        assert_eq!(in_launch_json(LAUNCH, 3), Scope::default());
    }

    #[test]
    fn config_files_take_the_configuration_naming_them_else_the_first_target() {
        let open =
            |path: &Path| (path == Path::new("/w/.vscode/launch.json")).then(|| LAUNCH.to_string());
        let named = for_config_file(
            Path::new("/w/stats/KubernetesLocalProcessConfig.yaml"),
            &open,
        );
        assert_eq!(named.target.as_deref(), Some("deployment/stats-api"));
        let other = for_config_file(Path::new("/w/api/azds-local.env"), &open);
        assert_eq!(other.target.as_deref(), Some("service/todo-api"));
        assert_eq!(other.namespace.as_deref(), Some("todo"));
        let outside = for_config_file(
            Path::new("/elsewhere/x/KubernetesLocalProcessConfig.yaml"),
            &|_: &Path| None,
        );
        assert_eq!(outside, Scope::default());
    }

    #[test]
    fn file_uris_decode() {
        assert_eq!(
            file_path("file:///w/my%20app/a.yaml"),
            Some(PathBuf::from("/w/my app/a.yaml"))
        );
        assert_eq!(file_path("untitled:1"), None);
    }
}
