//! One positioned tree for the documents the server reads — YAML
//! (`KubernetesLocalProcessConfig.yaml`, built in [`super::yaml`]) and JSONC (`launch.json`,
//! converted here from the reader in `adapter/src/jsonc.rs`) — so diagnostics, completion and
//! hover walk both the same way and point at exact byte spans.

use crate::jsonc;
use std::ops::Range;

/// A value and the bytes it spans in the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// From the value's first byte to just past its last.
    pub span: Range<usize>,
    /// What the value is.
    pub value: Value,
}

/// The shapes of values.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A mapping / object, entries in file order.
    Map(Vec<Entry>),
    /// A sequence / array.
    List(Vec<Node>),
    /// Anything else.
    Scalar(Scalar),
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key's text.
    pub key: String,
    /// The bytes of the key as written (quotes included).
    pub key_span: Range<usize>,
    /// The value.
    pub value: Node,
}

/// A scalar: its text and what kind of value it reads as.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The value after unquoting and unescaping.
    pub text: String,
    /// What the value reads as.
    pub kind: ScalarKind,
    /// The byte offset of `text`'s first character in the document when the text appears
    /// there character for character (no escapes, no folding), so a token inside it can
    /// be pointed at exactly.
    pub text_start: Option<usize>,
}

/// What a scalar reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    /// A quoted string (or, in JSON, any string).
    String,
    /// An unquoted YAML scalar that is not a number, boolean or null.
    Plain,
    /// A number.
    Number,
    /// `true` / `false`.
    Bool,
    /// `null`, `~` or nothing.
    Null,
}

impl Node {
    /// The entries, if this is a map.
    pub fn entries(&self) -> &[Entry] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The value of the last entry named `key` (later keys win, as the parsers read them).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// The scalar, if this is one.
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(scalar) => Some(scalar),
            _ => None,
        }
    }

    /// The text of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        self.scalar()
            .filter(|s| s.kind != ScalarKind::Null)
            .map(|s| s.text.as_str())
    }

    /// The byte span of `text[range]` of this scalar in the document: exact when the
    /// text appears there as is, else the whole value.
    pub fn span_within(&self, range: Range<usize>) -> Range<usize> {
        match self.scalar().and_then(|s| s.text_start) {
            Some(start) => start + range.start..start + range.end,
            None => self.span.clone(),
        }
    }

    /// The innermost node or key whose span holds `offset`, with the path of keys and
    /// indexes that leads to it.
    pub fn find(&self, offset: usize) -> Option<Found<'_>> {
        let mut path = Vec::new();
        let mut node = self;
        'descend: loop {
            match &node.value {
                Value::Map(entries) => {
                    for entry in entries {
                        if entry.key_span.start <= offset && offset <= entry.key_span.end {
                            path.push(Step::Key(entry.key.clone()));
                            return Some(Found::Key { path, entry });
                        }
                        if contains(&entry.value.span, offset) {
                            path.push(Step::Key(entry.key.clone()));
                            node = &entry.value;
                            continue 'descend;
                        }
                    }
                }
                Value::List(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if contains(&item.span, offset) {
                            path.push(Step::Index(i));
                            node = item;
                            continue 'descend;
                        }
                    }
                }
                Value::Scalar(_) => {}
            }
            return contains(&node.span, offset).then_some(Found::Value { path, node });
        }
    }
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset <= span.end
}

/// One step from a node to a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The value of a key.
    Key(String),
    /// An element of a list.
    Index(usize),
}

/// What [`Node::find`] found.
#[derive(Debug)]
pub enum Found<'a> {
    /// A key; the path ends with it.
    Key {
        /// Keys and indexes from the root to the key.
        path: Vec<Step>,
        /// The entry whose key it is.
        entry: &'a Entry,
    },
    /// A value.
    Value {
        /// Keys and indexes from the root to the value.
        path: Vec<Step>,
        /// The value.
        node: &'a Node,
    },
}

/// Converts a JSONC value of `text` (whose spans it holds) into the tree.
pub fn from_jsonc(text: &str, node: &jsonc::Node) -> Node {
    let span = node.span.clone();
    let value = match &node.kind {
        jsonc::Kind::Object(members) => Value::Map(
            members
                .iter()
                .map(|member| Entry {
                    key: member.key.clone(),
                    key_span: member.start..json_string_end(text, member.start),
                    value: from_jsonc(text, &member.value),
                })
                .collect(),
        ),
        jsonc::Kind::Array(items) => {
            Value::List(items.iter().map(|i| from_jsonc(text, &i.value)).collect())
        }
        jsonc::Kind::String(s) => {
            let raw = text.get(span.start + 1..span.end.saturating_sub(1));
            Value::Scalar(Scalar {
                text: s.clone(),
                kind: ScalarKind::String,
                text_start: (raw == Some(s.as_str())).then_some(span.start + 1),
            })
        }
        jsonc::Kind::Number(n) => scalar(n.to_string(), ScalarKind::Number),
        jsonc::Kind::Bool(b) => scalar(b.to_string(), ScalarKind::Bool),
        jsonc::Kind::Null => scalar(String::new(), ScalarKind::Null),
    };
    Node { span, value }
}

fn scalar(text: String, kind: ScalarKind) -> Value {
    Value::Scalar(Scalar {
        text,
        kind,
        text_start: None,
    })
}

/// Just past the closing quote of the JSON string whose opening quote is at `start`.
fn json_string_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonc_keys_and_strings_keep_exact_spans() {
        let text = "{ // c\n  \"bridge\": {\"namespce\": \"to\\\"do\", \"service\": \"api\"}\n}";
        let root = from_jsonc(text, &jsonc::parse(text).expect("ok").expect("value"));
        let bridge = root.get("bridge").expect("bridge");
        let typo = &bridge.entries()[0];
        assert_eq!(&text[typo.key_span.clone()], "\"namespce\"");
        // An escaped string points at its whole value; a plain one at its characters.
        assert_eq!(typo.value.span_within(0..2), typo.value.span);
        let service = bridge.get("service").expect("service");
        assert_eq!(&text[service.span_within(0..3)], "api");
        let at = text.find("api").expect("api");
        match root.find(at) {
            Some(Found::Value { path, node }) => {
                assert_eq!(
                    path,
                    [Step::Key("bridge".into()), Step::Key("service".into())]
                );
                assert_eq!(node.as_str(), Some("api"));
            }
            other => panic!("found {other:?}"),
        }
    }
}
