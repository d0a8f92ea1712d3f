//! Code actions, as real edits:
//!
//! - in `KubernetesLocalProcessConfig.yaml`, a `$(volumeMounts:NAME)` token whose volume
//!   `volumeMounts` does not list gets "Add `NAME` to volumeMounts": an entry appended to
//!   the list in the list's own style (block or flow), or the list added when missing;
//! - in `azds-local.env`, "Convert to KubernetesLocalProcessConfig.yaml": the same settings
//!   in the newer format, as `kbridge-config` translates them (`${services.NS.SVC}` →
//!   `$(services:SVC.NS)`, `${volumes.V|PATH}` → a `volumeMounts` entry with `localPath`),
//!   written to a new file next to it. Offered only when the file reads and the YAML file
//!   does not exist yet.
//!
//! See docs/lsp.md, "Code actions".

use super::documents::{Document, DocumentKind};
use super::tokens::{tokens, Syntax};
use super::tree::{Node, Value};
use crate::session::cluster::config_file;
use kbridge_config::azds_env::parse_azds_env;
use kbridge_config::local_process::LocalProcessConfig;
use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, CreateFile, CreateFileOptions,
    DocumentChangeOperation, DocumentChanges, OneOf, OptionalVersionedTextDocumentIdentifier,
    Position, ResourceOp, TextDocumentEdit, TextEdit, Uri, WorkspaceEdit,
};
use std::collections::HashMap;
use std::ops::Range;

/// The name of the file `azds-local.env` is converted into.
pub const YAML_NAME: &str = "KubernetesLocalProcessConfig.yaml";

/// The actions for the bytes `range` of `document` at `uri`.
pub fn actions(uri: &Uri, document: &Document, range: Range<usize>) -> Vec<CodeActionOrCommand> {
    match document.kind {
        DocumentKind::LocalProcessConfig => add_volume_mounts(uri, document, range),
        DocumentKind::AzdsEnv => convert_azds_env(uri, document).into_iter().collect(),
        DocumentKind::LaunchJson => Vec::new(),
    }
    .into_iter()
    .map(CodeActionOrCommand::CodeAction)
    .collect()
}

/// "Add `NAME` to volumeMounts" for each undeclared volume a token in `range` names.
fn add_volume_mounts(uri: &Uri, document: &Document, range: Range<usize>) -> Vec<CodeAction> {
    let Ok(Some(root)) = super::yaml::parse(&document.text, &document.index) else {
        return Vec::new();
    };
    let declared: Vec<&str> = match root.get("volumeMounts").map(|n| &n.value) {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|m| m.get("name")?.as_str())
            .collect(),
        _ => Vec::new(),
    };
    let mut missing: Vec<String> = Vec::new();
    for value in env_values(&root) {
        let Some(text) = value.as_str() else { continue };
        for token in tokens(text, Syntax::Config) {
            let span = value.span_within(token.span.clone());
            let touches = span.start <= range.end && range.start <= span.end;
            let name = token.argument;
            if touches
                && token.closed
                && token.known_kind(Syntax::Config) == Some("volumeMounts")
                && !name.is_empty()
                && !declared.iter().any(|d| config_file::wildcard(d, name))
                && !missing.iter().any(|m| m == name)
            {
                missing.push(name.to_string());
            }
        }
    }
    missing
        .into_iter()
        .map(|name| {
            let edit = volume_mount_edit(document, &root, &name);
            CodeAction {
                title: format!("Add `{name}` to volumeMounts"),
                kind: Some(CodeActionKind::QUICKFIX),
                edit: Some(WorkspaceEdit {
                    changes: Some(HashMap::from([(uri.clone(), vec![edit])])),
                    ..WorkspaceEdit::default()
                }),
                ..CodeAction::default()
            }
        })
        .collect()
}

/// The `value` nodes of the `env` entries.
fn env_values(root: &Node) -> Vec<&Node> {
    match root.get("env").map(|n| &n.value) {
        Some(Value::List(entries)) => entries.iter().filter_map(|e| e.get("value")).collect(),
        _ => Vec::new(),
    }
}

/// The edit that adds `- name: NAME` to `volumeMounts`.
fn volume_mount_edit(document: &Document, root: &Node, name: &str) -> TextEdit {
    let text = &document.text;
    let at = |offset: usize| document.index.range(text, offset..offset).start;
    let insert = |offset: usize, new_text: String| TextEdit {
        range: lsp_types::Range::new(at(offset), at(offset)),
        new_text,
    };
    let entry = root.entries().iter().find(|e| e.key == "volumeMounts");
    let Some(entry) = entry else {
        // No list yet: a new one at the end of the file.
        let newline = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        return insert(
            text.len(),
            format!("{newline}volumeMounts:\n  - name: {name}\n"),
        );
    };
    let node = &entry.value;
    let written = &text[node.span.clone()];
    match &node.value {
        // Flow style: `[]` or `[{name: a}]`; the entry goes before the `]`.
        Value::List(items) if written.starts_with('[') => {
            let close = node.span.end.saturating_sub(1);
            let separator = if items.is_empty() { "" } else { ", " };
            insert(close, format!("{separator}{{name: {name}}}"))
        }
        // Block style: after the last item's last line, at the first item's indentation.
        Value::List(items) if !items.is_empty() => {
            let first_line = line_start(text, items[0].span.start);
            let indent: String = text[first_line..]
                .chars()
                .take_while(|c| *c == ' ')
                .collect();
            // A block item's span may run on to the next line; its text ends sooner.
            let last = items.last().map_or(node.span.clone(), |i| i.span.clone());
            let last_end = last.start + text[last].trim_end().len();
            let end = text[last_end..]
                .find('\n')
                .map_or(text.len(), |i| last_end + i);
            insert(end, format!("\n{indent}- name: {name}"))
        }
        // `volumeMounts:` with nothing (or a scalar) after it: the list under the key.
        _ => {
            let end = text[entry.key_span.end..]
                .find('\n')
                .map_or(text.len(), |i| entry.key_span.end + i);
            let key_line = line_start(text, entry.key_span.start);
            let indent = " ".repeat(entry.key_span.start - key_line + 2);
            TextEdit {
                range: lsp_types::Range::new(at(entry.key_span.end), at(end)),
                new_text: format!(":\n{indent}- name: {name}"),
            }
        }
    }
}

fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}

/// "Convert to KubernetesLocalProcessConfig.yaml": a new file next to `azds-local.env`.
fn convert_azds_env(uri: &Uri, document: &Document) -> Option<CodeAction> {
    let config = parse_azds_env(&document.text, "azds-local.env").ok()?;
    let target: Uri = sibling(uri.as_str(), YAML_NAME)?.parse().ok()?;
    if let Some(path) = super::scope::file_path(target.as_str()) {
        if path.exists() {
            return None;
        }
    }
    let yaml = to_yaml(&config);
    let operations = vec![
        DocumentChangeOperation::Op(ResourceOp::Create(CreateFile {
            uri: target.clone(),
            options: Some(CreateFileOptions {
                overwrite: Some(false),
                ignore_if_exists: Some(false),
            }),
            annotation_id: None,
        })),
        DocumentChangeOperation::Edit(TextDocumentEdit {
            text_document: OptionalVersionedTextDocumentIdentifier {
                uri: target,
                version: None,
            },
            edits: vec![OneOf::Left(TextEdit {
                range: lsp_types::Range::new(Position::new(0, 0), Position::new(0, 0)),
                new_text: yaml,
            })],
        }),
    ];
    Some(CodeAction {
        title: format!("Convert to {YAML_NAME}"),
        kind: Some(CodeActionKind::REFACTOR_REWRITE),
        edit: Some(WorkspaceEdit {
            document_changes: Some(DocumentChanges::Operations(operations)),
            ..WorkspaceEdit::default()
        }),
        ..CodeAction::default()
    })
}

/// `uri` with its last path segment replaced by `name`.
fn sibling(uri: &str, name: &str) -> Option<String> {
    let (dir, _) = uri.rsplit_once('/')?;
    Some(format!("{dir}/{name}"))
}

/// The configuration as `KubernetesLocalProcessConfig.yaml` text; values are written as
/// double-quoted strings (JSON's escapes are YAML's), so any text reads back the same.
pub fn to_yaml(config: &LocalProcessConfig) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""));
    let mut out = String::from("# Converted from azds-local.env by kbridge lsp.\nversion: 0.1\n");
    if !config.volume_mounts.is_empty() {
        out.push_str("volumeMounts:\n");
        for mount in &config.volume_mounts {
            out.push_str(&format!("  - name: {}\n", quote(&mount.name)));
            if let Some(path) = &mount.local_path {
                out.push_str(&format!("    localPath: {}\n", quote(path)));
            }
        }
    }
    if !config.env.is_empty() {
        out.push_str("env:\n");
        for entry in &config.env {
            out.push_str(&format!("  - name: {}\n", quote(&entry.name)));
            if let Some(value) = &entry.value {
                out.push_str(&format!("    value: {}\n", quote(value)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Uri {
        text.parse().expect("uri")
    }

    /// The text after applying the first action's edit for `name`.
    fn fixed(text: &str) -> Vec<(String, String)> {
        let document = Document::new(DocumentKind::LocalProcessConfig, 1, text.to_string());
        let u = uri("file:///w/KubernetesLocalProcessConfig.yaml");
        actions(&u, &document, 0..text.len())
            .into_iter()
            .map(|action| {
                let CodeActionOrCommand::CodeAction(action) = action else {
                    panic!("an action");
                };
                let (file, edits) = action
                    .edit
                    .and_then(|e| e.changes)
                    .and_then(|c| c.into_iter().next())
                    .expect("an edit of one file");
                assert_eq!(file, u);
                let edit = &edits[0];
                let start = document.index.offset(text, edit.range.start);
                let end = document.index.offset(text, edit.range.end);
                let mut out = text.to_string();
                out.replace_range(start..end, &edit.new_text);
                (action.title, out)
            })
            .collect()
    }

    fn parses_with_mount(text: &str, name: &str) {
        let config = LocalProcessConfig::parse(text, YAML_NAME).expect(text);
        assert!(
            config.volume_mounts.iter().any(|m| m.name == name),
            "{text}"
        );
    }

    #[test]
    fn a_missing_mount_is_added_in_the_lists_style() {
        let env = "env:\n  - name: A\n    value: $(volumeMounts:certs)/ca.pem\n";
        let block = format!("volumeMounts:\n  - name: config\n    localPath: /tmp/c\n{env}");
        let found = fixed(&block);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "Add `certs` to volumeMounts");
        assert_eq!(
            found[0].1,
            format!(
                "volumeMounts:\n  - name: config\n    localPath: /tmp/c\n  - name: certs\n{env}"
            )
        );
        parses_with_mount(&found[0].1, "certs");

        let flow = format!("volumeMounts: [{{name: config}}]\n{env}");
        parses_with_mount(&fixed(&flow)[0].1, "certs");
        let empty = format!("volumeMounts: []\n{env}");
        parses_with_mount(&fixed(&empty)[0].1, "certs");
        let bare = format!("volumeMounts:\n{env}");
        parses_with_mount(&fixed(&bare)[0].1, "certs");
        let none = env.to_string();
        let added = &fixed(&none)[0].1;
        assert!(
            added.ends_with("volumeMounts:\n  - name: certs\n"),
            "{added}"
        );
        parses_with_mount(added, "certs");
    }

    #[test]
    fn declared_or_wildcard_matched_mounts_get_no_action() {
        let text = "volumeMounts:\n  - name: cert*\nenv:\n  - name: A\n    value: $(volumeMounts:certs) $(services:x)\n";
        assert!(fixed(text).is_empty());
    }

    #[test]
    fn azds_env_converts_to_yaml_that_reads_the_same() {
        let text = "# old\nDB=${services.data.db}:5432\nCFG=${volumes.config|/tmp/cfg}/app.json\nPLAIN=a \"quoted\" # value\n";
        let document = Document::new(DocumentKind::AzdsEnv, 1, text.to_string());
        let u = uri("file:///nonexistent-kbridge-test/azds-local.env");
        let found = actions(&u, &document, 0..0);
        assert_eq!(found.len(), 1);
        let CodeActionOrCommand::CodeAction(action) = &found[0] else {
            panic!("an action");
        };
        assert_eq!(action.title, "Convert to KubernetesLocalProcessConfig.yaml");
        let Some(DocumentChanges::Operations(ops)) =
            &action.edit.as_ref().expect("edit").document_changes
        else {
            panic!("operations");
        };
        let DocumentChangeOperation::Op(ResourceOp::Create(create)) = &ops[0] else {
            panic!("create first");
        };
        assert_eq!(
            create.uri.as_str(),
            "file:///nonexistent-kbridge-test/KubernetesLocalProcessConfig.yaml"
        );
        let DocumentChangeOperation::Edit(edit) = &ops[1] else {
            panic!("then the text");
        };
        let OneOf::Left(insert) = &edit.edits[0] else {
            panic!("a text edit");
        };
        let converted = LocalProcessConfig::parse(&insert.new_text, YAML_NAME).expect("yaml");
        let original = parse_azds_env(text, "azds-local.env").expect("env");
        assert_eq!(converted.env, original.env);
        assert_eq!(converted.volume_mounts, original.volume_mounts);
        assert!(
            insert.new_text.contains("$(services:db.data):5432"),
            "{}",
            insert.new_text
        );
        // A file that does not read gets no conversion.
        let broken = Document::new(DocumentKind::AzdsEnv, 1, "no equals\n".into());
        assert!(actions(&u, &broken, 0..0).is_empty());
    }
}
