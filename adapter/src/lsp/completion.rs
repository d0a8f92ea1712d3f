//! Completion at the cursor, from the text before it (a document being typed rarely
//! parses): keys of the map the cursor is in and allowed values, from the schema; token
//! kinds after `$(` / `${`; and from [`ClusterData`](super::cluster::ClusterData)'s snapshot —
//! which never waits on the cluster — Service names after `$(services:` and volume names
//! after `$(volumeMounts:` (plus the volumes the document itself lists).

use super::cluster::Snapshot;
use super::documents::{Document, DocumentKind};
use super::schema::{Allowed, Schema};
use super::tree::Step;
use lsp_types::{
    CompletionItem, CompletionItemKind, CompletionTextEdit, Documentation, MarkupContent,
    MarkupKind, TextEdit,
};
use std::ops::Range;

/// The characters after which editors should ask for completion by themselves.
pub const TRIGGER_CHARACTERS: [&str; 5] = ["$", "(", "{", ":", "."];

/// The completions at byte `offset` of `document`.
pub fn complete(document: &Document, offset: usize, cluster: &Snapshot) -> Vec<CompletionItem> {
    let text = &document.text;
    let offset = floor_boundary(text, offset);
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let prefix = &text[line_start..offset];
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = line_start..line_end;
    let at = |start: usize| document.index.range(text, line_start + start..offset);
    match document.kind {
        DocumentKind::LocalProcessConfig => {
            if let Some(items) = token_items(prefix, line, "$(", ':', &at, document, cluster) {
                return items;
            }
            yaml_items(&text[..line_start], prefix, cluster)
        }
        DocumentKind::AzdsEnv => {
            if !prefix.contains('=') && !prefix.trim_start().starts_with('#') {
                return env_name_items(cluster);
            }
            token_items(prefix, line, "${", '.', &at, document, cluster).unwrap_or_default()
        }
        DocumentKind::LaunchJson => json_items(&text[..offset], cluster),
    }
}

/// Inside a token: its kinds, or the names its kind takes. `None` when the cursor is not
/// in a token.
fn token_items(
    prefix: &str,
    line: Range<usize>,
    open: &str,
    separator: char,
    at: &dyn Fn(usize) -> lsp_types::Range,
    document: &Document,
    cluster: &Snapshot,
) -> Option<Vec<CompletionItem>> {
    let kinds: &[&str] = if open == "$(" {
        &["volumeMounts", "services", "externalEndpoints"]
    } else {
        &["volumes", "services"]
    };
    if prefix.ends_with('$') {
        return Some(
            kinds
                .iter()
                .map(|k| {
                    edit_item(
                        k,
                        &format!("{}{k}{separator}", &open[1..]),
                        at(prefix.len()),
                        CompletionItemKind::KEYWORD,
                    )
                })
                .collect(),
        );
    }
    let start = prefix.rfind(open)? + 2;
    let inside = &prefix[start..];
    if inside.contains([')', '}']) {
        return None;
    }
    let Some((kind, _)) = inside.split_once(separator) else {
        let items = kinds
            .iter()
            .map(|k| {
                edit_item(
                    k,
                    &format!("{k}{separator}"),
                    at(start),
                    CompletionItemKind::KEYWORD,
                )
            })
            .collect();
        return Some(items);
    };
    let argument_start = start + kind.len() + 1;
    if kind.eq_ignore_ascii_case("services") {
        let argument = &prefix[argument_start..];
        let at_port = |at_byte: usize| at(argument_start + at_byte);
        if let Some(items) = port_items(argument, separator, cluster, &at_port) {
            return Some(items);
        }
    }
    let names: Vec<(String, Option<String>)> = match kind.to_ascii_lowercase().as_str() {
        "services" => cluster
            .services
            .iter()
            .flatten()
            .map(|s| {
                let ports: Vec<String> = s.ports.iter().map(|(p, _)| p.to_string()).collect();
                (
                    s.name.clone(),
                    Some(format!(
                        "Service in {}, ports {}",
                        s.namespace,
                        ports.join(", ")
                    )),
                )
            })
            .collect(),
        "volumemounts" | "volumes" => volume_names(document, line, cluster),
        _ => Vec::new(),
    };
    Some(
        names
            .into_iter()
            .map(|(name, detail)| CompletionItem {
                detail,
                ..edit_item(&name, &name, at(argument_start), CompletionItemKind::VALUE)
            })
            .collect(),
    )
}

/// After `$(services:NAME:` (or a `,` in the port list): the Service's ports, from the
/// cluster (none when the Service is unknown). `None` when the cursor is not in a port
/// list.
fn port_items(
    argument: &str,
    separator: char,
    cluster: &Snapshot,
    at: &dyn Fn(usize) -> lsp_types::Range,
) -> Option<Vec<CompletionItem>> {
    if separator != ':' {
        return None;
    }
    let (service, ports) = argument.split_once(':')?;
    let name = service.split('.').next().unwrap_or_default();
    let typed_from = argument.len() - ports.len() + ports.rfind(',').map_or(0, |i| i + 1);
    let known = cluster.services.iter().flatten().find(|s| s.name == name);
    let Some(known) = known else {
        return Some(Vec::new()); // Ports of a Service nobody knows: nothing to offer.
    };
    Some(
        known
            .ports
            .iter()
            .map(|(port, port_name)| CompletionItem {
                detail: port_name.as_ref().map(|n| format!("port `{n}` of {name}")),
                ..edit_item(
                    &port.to_string(),
                    &port.to_string(),
                    at(typed_from),
                    CompletionItemKind::VALUE,
                )
            })
            .collect(),
    )
}

/// Volumes the cluster says the container mounts, then those the document lists (read
/// without the `line` being typed, which rarely parses).
fn volume_names(
    document: &Document,
    line: Range<usize>,
    cluster: &Snapshot,
) -> Vec<(String, Option<String>)> {
    let mut names: Vec<(String, Option<String>)> = cluster
        .volumes
        .iter()
        .flatten()
        .map(|v| {
            (
                v.name.clone(),
                Some(format!("mounted at {} ({})", v.mount_path, v.source)),
            )
        })
        .collect();
    if document.kind == DocumentKind::LocalProcessConfig {
        let text = &document.text;
        let without_line = format!("{}{}", &text[..line.start], &text[line.end..]);
        let index = super::position::LineIndex::new(&without_line);
        if let Ok(Some(root)) = super::yaml::parse(&without_line, &index) {
            if let Some(super::tree::Value::List(mounts)) =
                root.get("volumeMounts").map(|n| &n.value)
            {
                for name in mounts.iter().filter_map(|m| m.get("name")?.as_str()) {
                    if !names.iter().any(|(n, _)| n == name) && !name.contains(['*', '?']) {
                        names.push((name.to_string(), Some("listed in volumeMounts".into())));
                    }
                }
            }
        }
    }
    names
}

/// The target container's environment variable names (an entry of the config file with
/// the same name replaces the pod's value).
fn env_name_items(cluster: &Snapshot) -> Vec<CompletionItem> {
    cluster
        .env_names
        .iter()
        .flatten()
        .map(|name| CompletionItem {
            detail: Some("set in the target container".into()),
            ..item(name, None, CompletionItemKind::VARIABLE)
        })
        .collect()
}

/// Keys, or allowed values, at a YAML line being typed.
fn yaml_items(before: &str, prefix: &str, cluster: &Snapshot) -> Vec<CompletionItem> {
    let schema = Schema::local_process_config();
    let content = prefix.trim_start();
    let indent = prefix.len() - content.len();
    let (dash, content) = match content.strip_prefix("- ") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, content),
    };
    let column = prefix.len() - content.len();
    let mut path = yaml_path(before, if dash { indent } else { column }, dash);
    if let Some((key, _)) = content.split_once(':') {
        path.push(Step::Key(key.trim().to_string()));
        if key.trim() == "name" && path.first() == Some(&Step::Key("volumeMounts".into())) {
            return cluster
                .volumes
                .iter()
                .flatten()
                .map(|v| {
                    let detail = format!("mounted at {} ({})", v.mount_path, v.source);
                    CompletionItem {
                        detail: Some(detail),
                        ..item(&v.name, None, CompletionItemKind::VALUE)
                    }
                })
                .collect();
        }
        if key.trim() == "name" && path.first() == Some(&Step::Key("env".into())) {
            return env_name_items(cluster);
        }
        return allowed_items(schema.values(&path), CompletionItemKind::ENUM_MEMBER, "");
    }
    let values = schema.values(&path);
    if !values.is_empty() {
        return allowed_items(values, CompletionItemKind::ENUM_MEMBER, "");
    }
    allowed_items(schema.keys(&path), CompletionItemKind::PROPERTY, ": ")
}

/// The keys and list items leading to a line whose content starts at `column`, read
/// from the indentation of the lines before it. `dash`: the line starts a list item.
fn yaml_path(before: &str, mut column: usize, dash: bool) -> Vec<Step> {
    let mut path = Vec::new();
    // After a list item's dash, the parent key may sit at the dash's own column.
    let mut in_list = dash;
    if dash {
        path.push(Step::Index(0));
    }
    for line in before.lines().rev() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if let Some(item) = content.strip_prefix("- ") {
            let item_column = indent + 2 + (item.len() - item.trim_start().len());
            if !in_list && item_column == column {
                path.push(Step::Index(0));
                column = indent;
                in_list = true;
            }
            continue;
        }
        let parent = indent < column || (in_list && indent == column);
        if parent {
            if let Some((key, _)) = content.split_once(':') {
                path.push(Step::Key(key.trim().to_string()));
                column = indent;
                in_list = false;
            }
        }
        if column == 0 && !in_list {
            break;
        }
    }
    path.reverse();
    path
}

/// Keys or values at a point of `launch.json`: in the `bridge` block of a configuration,
/// its keys, and for `hosts`, `service`, `namespace`, `context` their values.
fn json_items(before: &str, cluster: &Snapshot) -> Vec<CompletionItem> {
    let (path, in_key) = json_path(before);
    let bridge = match path.as_slice() {
        [Step::Key(c), Step::Index(_), rest @ ..] if c == "configurations" => rest,
        _ => return Vec::new(),
    };
    let schema = Schema::bridge_block();
    match bridge {
        [Step::Key(b)] if b == "bridge" && in_key => {
            allowed_items(schema.keys(&[]), CompletionItemKind::PROPERTY, "")
        }
        [Step::Key(b), Step::Key(key)] if b == "bridge" && !in_key => {
            let names: Option<Vec<String>> = match key.as_str() {
                "service" => cluster
                    .services
                    .as_ref()
                    .map(|s| s.iter().map(|s| s.name.clone()).collect()),
                "namespace" => cluster.namespaces.clone(),
                "context" => cluster.contexts.clone(),
                _ => None,
            };
            match names {
                Some(names) => names
                    .iter()
                    .map(|n| item(n, None, CompletionItemKind::VALUE))
                    .collect(),
                None => allowed_items(
                    schema.values(&bridge[1..]),
                    CompletionItemKind::ENUM_MEMBER,
                    "",
                ),
            }
        }
        [Step::Key(key)] if key == "debugger" && !in_key => allowed_items(
            Schema::launch_key("debugger").values(&[]),
            CompletionItemKind::ENUM_MEMBER,
            "",
        ),
        _ => Vec::new(),
    }
}

/// The path to the end of `before` (JSONC) and whether a key is being written there.
fn json_path(before: &str) -> (Vec<Step>, bool) {
    enum Frame {
        Object { key: Option<String>, want_key: bool },
        Array { index: usize },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut chars = before.char_indices().peekable();
    let mut string: Option<String> = None;
    while let Some((_, c)) = chars.next() {
        if let Some(s) = string.as_mut() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    let done = string.take().unwrap_or_default();
                    if let Some(Frame::Object {
                        key,
                        want_key: true,
                    }) = stack.last_mut()
                    {
                        *key = Some(done);
                    }
                }
                _ => s.push(c),
            }
            continue;
        }
        match c {
            '"' => string = Some(String::new()),
            '/' if chars.peek().map(|p| p.1) == Some('/') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek().map(|p| p.1) == Some('*') => {
                chars.next();
                let mut star = false;
                for (_, c) in chars.by_ref() {
                    if star && c == '/' {
                        break;
                    }
                    star = c == '*';
                }
            }
            '{' => stack.push(Frame::Object {
                key: None,
                want_key: true,
            }),
            '[' => stack.push(Frame::Array { index: 0 }),
            '}' | ']' => {
                stack.pop();
            }
            ':' => {
                if let Some(Frame::Object { want_key, .. }) = stack.last_mut() {
                    *want_key = false;
                }
            }
            ',' => match stack.last_mut() {
                Some(Frame::Object { key, want_key }) => {
                    *key = None;
                    *want_key = true;
                }
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
    }
    let mut path = Vec::new();
    let mut in_key = false;
    for (i, frame) in stack.iter().enumerate() {
        let last = i + 1 == stack.len();
        match frame {
            Frame::Object { key, want_key } => {
                if last && *want_key {
                    in_key = true;
                } else if let Some(key) = key {
                    path.push(Step::Key(key.clone()));
                }
            }
            Frame::Array { index } => path.push(Step::Index(*index)),
        }
    }
    (path, in_key)
}

fn allowed_items(
    allowed: Vec<Allowed>,
    kind: CompletionItemKind,
    suffix: &str,
) -> Vec<CompletionItem> {
    allowed
        .into_iter()
        .map(|a| CompletionItem {
            insert_text: Some(format!("{}{suffix}", a.name)),
            ..item(&a.name, a.doc, kind)
        })
        .collect()
}

fn item(label: &str, doc: Option<String>, kind: CompletionItemKind) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        documentation: doc.map(|value| {
            Documentation::MarkupContent(MarkupContent {
                kind: MarkupKind::Markdown,
                value,
            })
        }),
        ..CompletionItem::default()
    }
}

/// An item that replaces `range` (from the start of what is being typed to the cursor).
fn edit_item(
    label: &str,
    new_text: &str,
    range: lsp_types::Range,
    kind: CompletionItemKind,
) -> CompletionItem {
    CompletionItem {
        text_edit: Some(CompletionTextEdit::Edit(TextEdit {
            range,
            new_text: new_text.to_string(),
        })),
        filter_text: Some(new_text.to_string()),
        ..item(label, None, kind)
    }
}

fn floor_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsp::cluster::ServiceInfo;

    fn labels(kind: DocumentKind, text_with_cursor: &str, cluster: &Snapshot) -> Vec<String> {
        let offset = text_with_cursor.find('|').expect("cursor");
        let text = text_with_cursor.replace('|', "");
        let document = Document::new(kind, 1, text);
        complete(&document, offset, cluster)
            .into_iter()
            .map(|i| i.label)
            .collect()
    }

    fn cluster() -> Snapshot {
        Snapshot {
            services: Some(vec![ServiceInfo {
                name: "stats-api".into(),
                namespace: "todo".into(),
                ports: vec![(80, None)],
            }]),
            namespaces: Some(vec!["todo".into()]),
            ..Snapshot::default()
        }
    }

    #[test]
    fn yaml_keys_follow_the_indentation() {
        let none = Snapshot::default();
        let k = DocumentKind::LocalProcessConfig;
        assert!(labels(k, "version: 0.1\nvol|", &none).contains(&"volumeMounts".to_string()));
        assert_eq!(
            labels(k, "volumeMounts:\n  - name: a\n    lo|", &none),
            ["name", "localPath", "rewriteEnvPaths"]
        );
        assert_eq!(
            labels(k, "env:\n- n|", &none),
            ["name", "value", "rewritePath"]
        );
        assert_eq!(
            labels(k, "enableFeatures:\n  - |", &none),
            ["Probes", "LifecycleHooks", "ManagedIdentity"]
        );
    }

    #[test]
    fn tokens_complete_kinds_and_cluster_names() {
        let k = DocumentKind::LocalProcessConfig;
        let text = "volumeMounts:\n  - name: config\nenv:\n  - name: A\n    value: x$(|";
        assert_eq!(
            labels(k, text, &cluster()),
            ["volumeMounts", "services", "externalEndpoints"]
        );
        assert_eq!(labels(k, &text.replace("$(|", "$|"), &cluster()).len(), 3);
        assert_eq!(
            labels(k, &text.replace("$(|", "$(services:st|"), &cluster()),
            ["stats-api"]
        );
        assert_eq!(
            labels(k, &text.replace("$(|", "$(volumeMounts:|"), &cluster()),
            ["config"]
        );
        assert_eq!(
            labels(
                k,
                &text.replace("$(|", "$(services:stats-api:|"),
                &cluster()
            ),
            ["80"]
        );
        assert_eq!(
            labels(
                k,
                &text.replace("$(|", "$(services:stats-api.todo:8|"),
                &cluster()
            ),
            ["80"]
        );
        assert_eq!(
            labels(k, &text.replace("$(|", "$(services:nope:|"), &cluster()),
            Vec::<String>::new()
        );
        assert_eq!(
            labels(DocumentKind::AzdsEnv, "A=${services.|", &cluster()),
            ["stats-api"]
        );
        assert_eq!(
            labels(DocumentKind::AzdsEnv, "A=${|", &cluster()),
            ["volumes", "services"]
        );
    }

    #[test]
    fn env_names_and_mounted_volumes_come_from_the_cluster() {
        let known = Snapshot {
            env_names: Some(vec!["API_KEY".into(), "LOG_LEVEL".into()]),
            volumes: Some(vec![crate::lsp::cluster::VolumeInfo {
                name: "config".into(),
                mount_path: "/etc/todo".into(),
                source: "configMap `todo-config`".into(),
            }]),
            ..Snapshot::default()
        };
        let k = DocumentKind::LocalProcessConfig;
        assert_eq!(
            labels(k, "env:\n  - name: |", &known),
            ["API_KEY", "LOG_LEVEL"]
        );
        assert_eq!(labels(k, "volumeMounts:\n  - name: |", &known), ["config"]);
        assert_eq!(
            labels(DocumentKind::AzdsEnv, "A=1\nLO|", &known),
            ["API_KEY", "LOG_LEVEL"]
        );
        assert_eq!(
            labels(k, "env:\n  - name: |", &Snapshot::default()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn launch_json_completes_the_bridge_block() {
        let k = DocumentKind::LaunchJson;
        let head = "{\"configurations\": [{\"type\": \"python\"}, // c\n {\"type\": \"bridge\", \"bridge\": {";
        assert!(labels(k, &format!("{head}\"|"), &cluster()).contains(&"namespace".to_string()));
        assert_eq!(
            labels(k, &format!("{head}\"service\": \"|"), &cluster()),
            ["stats-api"]
        );
        assert_eq!(
            labels(
                k,
                &format!("{head}\"namespace\": \"x\", \"hosts\": \"|"),
                &cluster()
            ),
            ["auto", "namespace", "system", "off"]
        );
        assert!(
            labels(k, "{\"configurations\": [{\"debugger\": \"|", &cluster())
                .contains(&"debugpy".to_string())
        );
        assert_eq!(
            labels(k, "{\"other\": {\"|", &cluster()),
            Vec::<String>::new()
        );
    }
}
