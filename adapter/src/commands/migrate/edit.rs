//! Changes to a JSONC text by byte span: replace a value, add a member after another,
//! remove a member or an array element with its comma, its comment lines and its line.
//! Everything else in the file (comments, blank lines, indentation, trailing commas)
//! stays as it was.

use super::jsonc::{Item, Member, Node};
use std::ops::Range;

/// One change: the bytes of `range` become `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// What is replaced (empty for an insertion).
    pub range: Range<usize>,
    /// What replaces it.
    pub text: String,
}

/// Two edits touch the same bytes: a bug in whoever planned them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two changes overlap at bytes {first:?} and {second:?}")]
pub struct OverlapError {
    /// The earlier edit's range.
    pub first: Range<usize>,
    /// The later edit's range.
    pub second: Range<usize>,
}

/// `text` with every edit applied. Insertions at the same offset keep their order.
pub fn apply(text: &str, mut edits: Vec<Edit>) -> Result<String, OverlapError> {
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out = String::with_capacity(text.len() + 256);
    let mut at = 0;
    for edit in &edits {
        if edit.range.start < at {
            return Err(OverlapError {
                first: edit.range.start..at,
                second: edit.range.clone(),
            });
        }
        out.push_str(&text[at..edit.range.start]);
        out.push_str(&edit.text);
        at = edit.range.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// An entry of an object or array: where it starts, where its value ends, its comma.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The first byte (a member's key, an element's value).
    pub start: usize,
    /// Just past the value.
    pub end: usize,
    /// The comma after the value, if any.
    pub comma: Option<usize>,
}

impl From<&Member> for Entry {
    fn from(member: &Member) -> Entry {
        Entry {
            start: member.start,
            end: member.value.span.end,
            comma: member.comma,
        }
    }
}

impl From<&Item> for Entry {
    fn from(item: &Item) -> Entry {
        Entry {
            start: item.value.span.start,
            end: item.value.span.end,
            comma: item.comma,
        }
    }
}

/// Replaces a value.
pub fn replace(node: &Node, text: impl Into<String>) -> Edit {
    Edit {
        range: node.span.clone(),
        text: text.into(),
    }
}

/// The start of the line holding `pos`.
fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind('\n').map_or(0, |i| i + 1)
}

/// The whitespace before the first character of the line holding `pos`.
pub fn indent_at(text: &str, pos: usize) -> &str {
    let start = line_start(text, pos);
    let rest = &text[start..];
    &rest[..rest.len() - rest.trim_start_matches([' ', '\t']).len()]
}

/// Whether only whitespace stands between the start of its line and `pos`.
fn starts_line(text: &str, pos: usize) -> bool {
    text[line_start(text, pos)..pos]
        .chars()
        .all(|c| c == ' ' || c == '\t')
}

/// From `pos`, past spaces and one `//` or `/* */` comment that stays on this line, to
/// the newline that ends it (`Some(offset of '\n')`), or None when code follows on the line.
fn end_of_line(text: &str, pos: usize) -> Option<usize> {
    let mut at =
        pos + (text[pos..].len() - text[pos..].trim_start_matches([' ', '\t', '\r']).len());
    let rest = &text[at..];
    if rest.starts_with("//") {
        return Some(rest.find('\n').map_or(text.len(), |i| at + i));
    }
    if rest.starts_with("/*") {
        let close = rest.find("*/")? + 2;
        if rest[..close].contains('\n') {
            return None;
        }
        at += close;
        at += text[at..].len() - text[at..].trim_start_matches([' ', '\t', '\r']).len();
    }
    match text[at..].chars().next() {
        Some('\n') | None => Some(at),
        Some(_) => None,
    }
}

/// Adds `new` (members `"key": value`, or array elements, already indented on their
/// continuation lines) after `entry`, each on a line of its own with `indent` when `entry`
/// ends its line, else on the same line. Commas are added where needed; a trailing comma
/// after `entry` is given to the last of `new` too.
pub fn insert_after(text: &str, entry: Entry, new: &[String], indent: &str) -> Vec<Edit> {
    let insert = |at: usize, text: String| Edit {
        range: at..at,
        text,
    };
    let own_lines = |joined: &str| format!("\n{indent}{joined}");
    let lines = new.join(&format!(",\n{indent}"));
    let inline = new.join(", ");
    match entry.comma {
        Some(comma) => match end_of_line(text, comma + 1) {
            Some(eol) => vec![insert(eol, format!("{},", own_lines(&lines)))],
            None => vec![insert(comma + 1, format!(" {inline},"))],
        },
        None => match end_of_line(text, entry.end) {
            Some(eol) => vec![
                insert(entry.end, ",".into()),
                insert(eol, own_lines(&lines)),
            ],
            None => vec![insert(entry.end, format!(", {inline}"))],
        },
    }
}

/// Removes the entries at `indices` with their commas. An entry alone on its lines goes
/// with those lines, the comment lines right above it and a comment after it on its
/// last line. When the last entry goes and had no comma, the comma of the last entry
/// kept goes too, so a strict JSON file stays strict.
pub fn remove_many(text: &str, entries: &[Entry], indices: &[usize]) -> Vec<Edit> {
    let mut edits: Vec<Edit> = indices
        .iter()
        .filter_map(|&i| entries.get(i))
        .map(|&entry| Edit {
            range: removal_range(text, entry),
            text: String::new(),
        })
        .collect();
    let last_goes = entries
        .len()
        .checked_sub(1)
        .is_some_and(|last| indices.contains(&last));
    if last_goes && entries.last().is_some_and(|e| e.comma.is_none()) {
        let kept = (0..entries.len()).rev().find(|i| !indices.contains(i));
        if let Some(comma) = kept.and_then(|i| entries[i].comma) {
            edits.push(Edit {
                range: comma..comma + 1,
                text: String::new(),
            });
        }
    }
    edits
}

/// The bytes that go with an entry: see [`remove_many`].
fn removal_range(text: &str, entry: Entry) -> Range<usize> {
    let after = entry.comma.map_or(entry.end, |c| c + 1);
    match (starts_line(text, entry.start), end_of_line(text, after)) {
        (true, Some(eol)) => {
            let end = if eol < text.len() { eol + 1 } else { eol };
            comment_lines_above(text, line_start(text, entry.start))..end
        }
        // On a shared line: the spaces after it go too, or (the last entry, with no
        // comma) the spaces before it.
        _ if entry.comma.is_none() => {
            let before = &text[..entry.start];
            let leading = before.len() - before.trim_end_matches([' ', '\t']).len();
            entry.start - leading..after
        }
        _ => {
            let trailing =
                text[after..].len() - text[after..].trim_start_matches([' ', '\t']).len();
            entry.start..after + trailing
        }
    }
}

/// Moves `start` (a line start) up over the comment lines directly above it: `//`
/// lines, and `/* … */` comments that have their lines to themselves.
fn comment_lines_above(text: &str, mut start: usize) -> usize {
    while start > 0 {
        let previous = line_start(text, start - 1);
        let line = text[previous..start - 1].trim();
        if line.starts_with("//") {
            start = previous;
        } else if line.ends_with("*/") {
            let Some(open) = text[..start].rfind("/*") else {
                break;
            };
            if !starts_line(text, open) {
                break;
            }
            start = line_start(text, open);
        } else {
            break;
        }
    }
    start
}

/// `value` as pretty JSON whose lines after the first are indented by `indent`, with
/// `unit` per level; arrays of plain values stay on one line (`[5000, 5001]`).
pub fn pretty(value: &serde_json::Value, indent: &str, unit: &str) -> String {
    use serde_json::Value;
    let inner = format!("{indent}{unit}");
    match value {
        Value::Object(map) if !map.is_empty() => {
            let members: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{inner}{}: {}", quote(k), pretty(v, &inner, unit)))
                .collect();
            format!("{{\n{}\n{indent}}}", members.join(",\n"))
        }
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
            let items: Vec<String> = items
                .iter()
                .map(|v| format!("{inner}{}", pretty(v, &inner, unit)))
                .collect();
            format!("[\n{}\n{indent}]", items.join(",\n"))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(Value::to_string).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// A string as a JSON literal.
pub fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::jsonc::{self, Node};
    use super::*;

    fn doc(text: &str) -> Node {
        jsonc::parse(text).expect("parses").expect("value")
    }

    fn entries(node: &Node) -> Vec<Entry> {
        if node.members().is_empty() {
            node.items().iter().map(Entry::from).collect()
        } else {
            node.members().iter().map(Entry::from).collect()
        }
    }

    fn removed(text: &str, index: usize) -> String {
        let node = doc(text);
        apply(text, remove_many(text, &entries(&node), &[index])).expect("applies")
    }

    #[test]
    fn removing_a_member_takes_its_line_and_comment_lines() {
        let text = "{\n  \"a\": 1,\n  // why b\n  \"b\": 2, // b!\n  \"c\": 3\n}\n";
        assert_eq!(removed(text, 1), "{\n  \"a\": 1,\n  \"c\": 3\n}\n");
        let block = "[\n  1, /* one */\n  /* two,\n     the second */\n  2,\n  3\n]";
        assert_eq!(removed(block, 1), "[\n  1, /* one */\n  3\n]");
    }

    #[test]
    fn removing_the_last_member_takes_the_comma_before_it() {
        let text = "{\n  \"a\": 1,\n  \"b\": {\n    \"x\": [1]\n  }\n}";
        assert_eq!(removed(text, 1), "{\n  \"a\": 1\n}");
        let trailing = "{\n  \"a\": 1,\n  \"b\": 2,\n}";
        assert_eq!(removed(trailing, 1), "{\n  \"a\": 1,\n}");
    }

    #[test]
    fn removing_inline_entries_keeps_the_line() {
        assert_eq!(removed("[1, 2, 3]", 1), "[1, 3]");
        assert_eq!(removed("[1, 2, 3]", 2), "[1, 2]");
        assert_eq!(removed("{\"a\": 1, \"b\": 2}", 0), "{\"b\": 2}");
    }

    #[test]
    fn inserting_after_a_member_keeps_comments_and_style() {
        let text = "{\n    \"type\": \"python\", // py\n    \"x\": 1\n}";
        let node = doc(text);
        let edits = insert_after(
            text,
            Entry::from(&node.members()[0]),
            &["\"d\": 1".into()],
            "    ",
        );
        assert_eq!(
            apply(text, edits).expect("applies"),
            "{\n    \"type\": \"python\", // py\n    \"d\": 1,\n    \"x\": 1\n}"
        );
        let last = insert_after(
            text,
            Entry::from(&node.members()[1]),
            &["\"e\": 2".into(), "\"f\": 3".into()],
            "    ",
        );
        assert_eq!(
            apply(text, last).expect("applies"),
            "{\n    \"type\": \"python\", // py\n    \"x\": 1,\n    \"e\": 2,\n    \"f\": 3\n}"
        );
        let inline = "{\"a\": 1}";
        let node = doc(inline);
        let edits = insert_after(
            inline,
            Entry::from(&node.members()[0]),
            &["\"b\": 2".into()],
            "",
        );
        assert_eq!(
            apply(inline, edits).expect("applies"),
            "{\"a\": 1, \"b\": 2}"
        );
    }

    #[test]
    fn removing_the_last_two_takes_the_comma_of_the_one_kept() {
        let text = "[\n  1,\n  2,\n  3\n]";
        let node = doc(text);
        let edits = remove_many(text, &entries(&node), &[1, 2]);
        assert_eq!(apply(text, edits).expect("applies"), "[\n  1\n]");
    }

    #[test]
    fn overlapping_edits_are_refused() {
        let edits = vec![
            Edit {
                range: 0..3,
                text: String::new(),
            },
            Edit {
                range: 2..4,
                text: String::new(),
            },
        ];
        assert!(apply("abcdef", edits).is_err());
    }

    #[test]
    fn pretty_indents_continuation_lines() {
        let value = serde_json::json!({"service": "a", "ports": [1, 2], "m": [{"remote": 1}]});
        assert_eq!(
            pretty(&value, "    ", "  "),
            "{\n      \"service\": \"a\",\n      \"ports\": [1, 2],\n      \"m\": [\n        {\n          \"remote\": 1\n        }\n      ]\n    }"
        );
    }
}
