//! YAML text into the positioned tree of [`super::tree`], read with granit-parser: the
//! parser serde-saphyr (and so `kbridge-config`) reads `KubernetesLocalProcessConfig.yaml`
//! with, so both accept the same files. Only the first document of a stream is kept.

use super::position::LineIndex;
use super::tree::{Entry, Node, Scalar, ScalarKind, Value};
use granit_parser::{Event, Marker, Parser, ScalarStyle, Span};
use std::ops::Range;

/// Why a text is not YAML, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What the parser expected or found.
    pub message: String,
}

/// A collection being read.
enum Open {
    Map {
        start: usize,
        entries: Vec<Entry>,
        key: Option<(String, Range<usize>)>,
    },
    List {
        start: usize,
        items: Vec<Node>,
    },
}

/// Reads `text`. `Ok(None)` when it holds no document (empty, or comments only).
pub fn parse(text: &str, index: &LineIndex) -> Result<Option<Node>, YamlError> {
    let byte = |marker: &Marker| {
        marker
            .byte_offset()
            .unwrap_or_else(|| index.offset_of_line_column(text, marker.line(), marker.col()))
            .min(text.len())
    };
    let mut stack: Vec<Open> = Vec::new();
    let mut root = None;
    for event in Parser::new_from_str(text) {
        let (event, span): (Event, Span) = event.map_err(|error| YamlError {
            offset: byte(error.marker()),
            line: error.marker().line(),
            column: error.marker().col() + 1,
            message: error.info(),
        })?;
        let (start, end) = (byte(&span.start), byte(&span.end));
        let node = match event {
            Event::MappingStart(..) => {
                stack.push(Open::Map {
                    start,
                    entries: Vec::new(),
                    key: None,
                });
                continue;
            }
            Event::SequenceStart(..) => {
                stack.push(Open::List {
                    start,
                    items: Vec::new(),
                });
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => match stack.pop() {
                Some(Open::Map { start, entries, .. }) => Node {
                    span: start..end.max(start),
                    value: Value::Map(entries),
                },
                Some(Open::List { start, items }) => Node {
                    span: start..end.max(start),
                    value: Value::List(items),
                },
                None => continue,
            },
            Event::Scalar(value, style, ..) => scalar(text, &value, style, start..end),
            Event::Alias(..) => Node {
                span: start..end,
                value: Value::Scalar(Scalar {
                    text: String::new(),
                    kind: ScalarKind::Null,
                    text_start: None,
                }),
            },
            Event::DocumentEnd if root.is_some() => break,
            _ => continue,
        };
        match stack.last_mut() {
            Some(Open::Map { entries, key, .. }) => match key.take() {
                None => {
                    let text = node.as_str().unwrap_or_default().to_string();
                    *key = Some((text, node.span));
                }
                Some((key, key_span)) => entries.push(Entry {
                    key,
                    key_span,
                    value: node,
                }),
            },
            Some(Open::List { items, .. }) => items.push(node),
            None => root = root.or(Some(node)),
        }
    }
    Ok(root)
}

/// A scalar event as a node, with its kind as YAML's core schema reads it.
fn scalar(text: &str, value: &str, style: ScalarStyle, span: Range<usize>) -> Node {
    let raw = text.get(span.clone()).unwrap_or_default();
    let (kind, text_start) = match style {
        ScalarStyle::Plain => (plain_kind(value), (raw == value).then_some(span.start)),
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
            let inner = raw.get(1..raw.len().saturating_sub(1));
            (
                ScalarKind::String,
                (inner == Some(value)).then_some(span.start + 1),
            )
        }
        _ => (ScalarKind::String, None),
    };
    Node {
        span,
        value: Value::Scalar(Scalar {
            text: value.to_string(),
            kind,
            text_start,
        }),
    }
}

fn plain_kind(value: &str) -> ScalarKind {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => ScalarKind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => ScalarKind::Bool,
        _ if value.parse::<f64>().is_ok() || value.parse::<i64>().is_ok() => ScalarKind::Number,
        _ => ScalarKind::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        parse(text, &LineIndex::new(text))
            .expect("yaml")
            .expect("a document")
    }

    #[test]
    fn keys_and_values_keep_their_spans() {
        let text = "version: 0.1\nenv:\n  - name: \"A\"\n    value: x$(services:api)  # c\n";
        let root = tree(text);
        assert_eq!(root.entries().len(), 2);
        assert_eq!(&text[root.entries()[1].key_span.clone()], "env");
        let version = root
            .get("version")
            .expect("version")
            .scalar()
            .expect("scalar");
        assert_eq!(version.kind, ScalarKind::Number);
        let Value::List(items) = &root.get("env").expect("env").value else {
            panic!("env is a list");
        };
        let name = items[0].get("name").expect("name");
        assert_eq!(&text[name.span.clone()], "\"A\"");
        assert_eq!(&text[name.span_within(0..1)], "A");
        let value = items[0].get("value").expect("value");
        assert_eq!(&text[value.span_within(1..16)], "$(services:api)");
    }

    #[test]
    fn flow_style_and_errors() {
        let root = tree("env: [{name: a, value: b}]\nvolumeMounts: []\n");
        assert!(root.get("volumeMounts").is_some());
        let text = "env:\n  - name: a\n   value: [\n";
        let error = parse(text, &LineIndex::new(text)).expect_err("not yaml");
        assert!(error.line >= 3, "{error}");
        assert!(parse("# nothing\n", &LineIndex::new("# nothing\n"))
            .expect("yaml")
            .is_none());
    }
}
