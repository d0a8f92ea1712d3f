//! Hover: on a key, its documentation from the schema; on a token, what it becomes in a
//! session (with what the cluster snapshot knows: a Service's ports, a volume's mount path
//! and source — never a secret's value); on a fixed value, what it means.

use super::cluster::Snapshot;
use super::documents::{Document, DocumentKind};
use super::schema::Schema;
use super::tokens::{explain, token_at, Syntax};
use super::tree::{self, Found, Node, Step};
use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind};
use std::ops::Range;

/// The hover at byte `offset` of `document`, if there is something to say.
pub fn hover(document: &Document, offset: usize, cluster: &Snapshot) -> Option<Hover> {
    let (span, markdown) = match document.kind {
        DocumentKind::LocalProcessConfig => {
            let root = super::yaml::parse(&document.text, &document.index).ok()??;
            in_tree(&root, offset, &Schema::local_process_config(), cluster)?
        }
        DocumentKind::AzdsEnv => azds_line(document, offset, cluster)?,
        DocumentKind::LaunchJson => {
            let root = crate::jsonc::parse(&document.text).ok()??;
            launch_json(&tree::from_jsonc(&document.text, &root), offset)?
        }
    };
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: markdown,
        }),
        range: Some(document.index.range(&document.text, span)),
    })
}

/// A key's documentation, or a token or fixed value in a value, under `schema`.
fn in_tree(
    root: &Node,
    offset: usize,
    schema: &Schema,
    cluster: &Snapshot,
) -> Option<(Range<usize>, String)> {
    match root.find(offset)? {
        Found::Key { path, entry } => Some((entry.key_span.clone(), schema.key_doc(&path)?)),
        Found::Value { path, node } => {
            let text = node.as_str()?;
            let start = node.scalar()?.text_start;
            if let Some(relative) = start.and_then(|s| offset.checked_sub(s)) {
                if let Some(token) = token_at(text, Syntax::Config, relative) {
                    let markdown = explain(&token, Syntax::Config, cluster);
                    return Some((node.span_within(token.span), markdown));
                }
            }
            let meaning = schema.values(&path).into_iter().find(|v| v.name == text)?;
            Some((node.span.clone(), meaning.doc?))
        }
    }
}

/// A token in an `azds-local.env` line.
fn azds_line(
    document: &Document,
    offset: usize,
    cluster: &Snapshot,
) -> Option<(Range<usize>, String)> {
    let text = &document.text;
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = &text[line_start..line_end];
    let value_start = line_start + line.find('=')? + 1;
    let value = &text[value_start..line_end];
    let token = token_at(value, Syntax::AzdsEnv, offset.checked_sub(value_start)?)?;
    let span = value_start + token.span.start..value_start + token.span.end;
    Some((span, explain(&token, Syntax::AzdsEnv, cluster)))
}

/// A key of a launch configuration kbridge reads.
fn launch_json(root: &Node, offset: usize) -> Option<(Range<usize>, String)> {
    let Found::Key { path, entry } = root.find(offset)? else {
        return None;
    };
    let doc = match path.as_slice() {
        [Step::Key(c), Step::Index(_), Step::Key(b), rest @ ..]
            if c == "configurations" && b == "bridge" && !rest.is_empty() =>
        {
            Schema::bridge_block().key_doc(rest)
        }
        [Step::Key(c), Step::Index(_), Step::Key(key)] if c == "configurations" => {
            let schema = Schema::launch_key(key);
            schema.exists().then(|| schema.doc()).flatten()
        }
        _ => None,
    }?;
    Some((entry.key_span.clone(), doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsp::cluster::VolumeInfo;

    fn shown(kind: DocumentKind, text: &str, at: &str, cluster: &Snapshot) -> Option<String> {
        let document = Document::new(kind, 1, text.to_string());
        let offset = text.find(at).expect("in text") + 1;
        hover(&document, offset, cluster).map(|h| match h.contents {
            HoverContents::Markup(m) => m.value,
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn keys_tokens_and_values_are_explained() {
        let text = "enableFeatures: [Probes]\nvolumeMounts:\n  - name: config\n    localPath: /tmp/c\nenv:\n  - name: A\n    value: http://$(services:stats-api)/ $(volumeMounts:config)\n";
        let k = DocumentKind::LocalProcessConfig;
        let none = Snapshot::default();
        assert!(shown(k, text, "localPath", &none)
            .expect("doc")
            .contains("Local directory"));
        assert!(shown(k, text, "$(services", &none)
            .expect("token")
            .contains("127.1.0.x"));
        assert!(shown(k, text, "Probes", &none)
            .expect("value")
            .contains("probes"));
        let cluster = Snapshot {
            volumes: Some(vec![VolumeInfo {
                name: "config".into(),
                mount_path: "/etc/todo".into(),
                source: "configMap todo-config".into(),
            }]),
            ..Snapshot::default()
        };
        let volume = shown(k, text, "$(volumeMounts", &cluster).expect("volume");
        assert!(
            volume.contains("/etc/todo") && volume.contains("configMap todo-config"),
            "{volume}"
        );
        assert!(
            shown(DocumentKind::AzdsEnv, "A=x${services.db}", "${", &none)
                .expect("env")
                .contains("`db`")
        );
        let launch =
            "{\"configurations\": [{\"type\": \"bridge\", \"bridge\": {\"isolateAs\": true}}]}";
        assert!(shown(DocumentKind::LaunchJson, launch, "isolateAs", &none)
            .expect("doc")
            .contains("Route only"));
    }
}
