//! The open documents: which kind each is (by file name), and its text as the editor has
//! it, kept up to date from `didChange` (whole or incremental).

use super::position::LineIndex;
use lsp_types::{TextDocumentContentChangeEvent, Uri};
use std::collections::HashMap;

/// The files the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// `KubernetesLocalProcessConfig.yaml` (any path ending so).
    LocalProcessConfig,
    /// `azds-local.env`.
    AzdsEnv,
    /// `launch.json` (`.vscode/launch.json`): its `"type": "bridge"` configurations.
    LaunchJson,
}

impl DocumentKind {
    /// The kind of the document at `uri`, from its file name; `None` for other files,
    /// which the server ignores.
    pub fn of(uri: &Uri) -> Option<DocumentKind> {
        let path = uri.as_str().split(['?', '#']).next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or(path);
        if name.ends_with("KubernetesLocalProcessConfig.yaml") {
            Some(DocumentKind::LocalProcessConfig)
        } else if name == "azds-local.env" {
            Some(DocumentKind::AzdsEnv)
        } else if name == "launch.json" {
            Some(DocumentKind::LaunchJson)
        } else {
            None
        }
    }
}

/// One open document.
#[derive(Debug, Clone)]
pub struct Document {
    /// What it is.
    pub kind: DocumentKind,
    /// The editor's version of it.
    pub version: i32,
    /// Its text.
    pub text: String,
    /// Where its lines start.
    pub index: LineIndex,
}

impl Document {
    /// A document as opened.
    pub fn new(kind: DocumentKind, version: i32, text: String) -> Document {
        Document {
            kind,
            version,
            index: LineIndex::new(&text),
            text,
        }
    }

    /// Applies the changes of one `didChange`, in order.
    pub fn apply(&mut self, version: i32, changes: Vec<TextDocumentContentChangeEvent>) {
        for change in changes {
            match change.range {
                None => self.text = change.text,
                Some(range) => {
                    let start = self.index.offset(&self.text, range.start);
                    let end = self.index.offset(&self.text, range.end).max(start);
                    self.text.replace_range(start..end, &change.text);
                }
            }
            self.index = LineIndex::new(&self.text);
        }
        self.version = version;
    }
}

/// The open documents the server knows, by URI.
#[derive(Debug, Default)]
pub struct Documents {
    open: HashMap<String, Document>,
}

impl Documents {
    /// Records an opened document; other files are ignored (`false`).
    pub fn open(&mut self, uri: &Uri, version: i32, text: String) -> bool {
        let Some(kind) = DocumentKind::of(uri) else {
            return false;
        };
        self.open
            .insert(uri.as_str().to_string(), Document::new(kind, version, text));
        true
    }

    /// The document at `uri`, if it is open and one the server knows.
    pub fn get(&self, uri: &Uri) -> Option<&Document> {
        self.open.get(uri.as_str())
    }

    /// The document at `uri`, to change.
    pub fn get_mut(&mut self, uri: &Uri) -> Option<&mut Document> {
        self.open.get_mut(uri.as_str())
    }

    /// The URIs of the open documents.
    pub fn uris(&self) -> impl Iterator<Item = Uri> + '_ {
        self.open.keys().filter_map(|uri| uri.parse().ok())
    }

    /// Forgets a closed document; whether it was known.
    pub fn close(&mut self, uri: &Uri) -> bool {
        self.open.remove(uri.as_str()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lsp_types::{Position, Range};

    fn uri(text: &str) -> Uri {
        text.parse().expect("uri")
    }

    #[test]
    fn kinds_come_from_the_file_name() {
        let kind = |u: &str| DocumentKind::of(&uri(u));
        assert_eq!(
            kind("file:///w/api/KubernetesLocalProcessConfig.yaml"),
            Some(DocumentKind::LocalProcessConfig)
        );
        assert_eq!(
            kind("file:///w/api/dev.KubernetesLocalProcessConfig.yaml"),
            Some(DocumentKind::LocalProcessConfig)
        );
        assert_eq!(
            kind("file:///w/azds-local.env"),
            Some(DocumentKind::AzdsEnv)
        );
        assert_eq!(
            kind("file:///w/.vscode/launch.json"),
            Some(DocumentKind::LaunchJson)
        );
        assert_eq!(kind("file:///w/tasks.json"), None);
        assert_eq!(kind("untitled:Untitled-1"), None);
    }

    #[test]
    fn incremental_and_full_changes_apply_in_order() {
        let mut document = Document::new(DocumentKind::AzdsEnv, 1, "A=1\nB=2\n".to_string());
        let at = |line, character| Position::new(line, character);
        document.apply(
            2,
            vec![
                TextDocumentContentChangeEvent {
                    range: Some(Range::new(at(1, 2), at(1, 3))),
                    range_length: None,
                    text: "22".to_string(),
                },
                TextDocumentContentChangeEvent {
                    range: Some(Range::new(at(2, 0), at(2, 0))),
                    range_length: None,
                    text: "C=3".to_string(),
                },
            ],
        );
        assert_eq!(document.text, "A=1\nB=22\nC=3");
        assert_eq!(document.version, 2);
        document.apply(
            3,
            vec![TextDocumentContentChangeEvent {
                range: None,
                range_length: None,
                text: "X=1".to_string(),
            }],
        );
        assert_eq!(document.text, "X=1");
    }
}
