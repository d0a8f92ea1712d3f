//! A small JSONC reader (JSON with `//` and `/* */` comments and trailing commas, as VS
//! Code writes `launch.json` and `tasks.json`) that keeps the byte span of every value,
//! member and comma, so `kbridge migrate` (`adapter/src/commands/migrate/edit.rs`) can change
//! a file in place and leave its comments and formatting alone, and `kbridge lsp` can point
//! at the exact key or value a diagnostic is about.

use serde_json::Value;
use std::ops::Range;

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 128;

/// Why a file is not JSONC, and where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct JsoncError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What was expected or found.
    pub message: String,
}

/// A value and the bytes it spans in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// From the first byte of the value to just past its last.
    pub span: Range<usize>,
    /// What the value is.
    pub kind: Kind,
}

/// The kinds of JSON values; objects and arrays keep their entries' positions.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `{…}`, members in file order (a repeated key is kept twice, as written).
    Object(Vec<Member>),
    /// `[…]`.
    Array(Vec<Item>),
    /// A string, unescaped.
    String(String),
    /// A number, as serde_json reads its text.
    Number(serde_json::Number),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// One `"key": value` of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The key, unescaped.
    pub key: String,
    /// Where the key's opening quote is: the member starts here.
    pub start: usize,
    /// The value.
    pub value: Node,
    /// The byte offset of the comma after the value, if there is one.
    pub comma: Option<usize>,
}

/// One element of an array.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The element.
    pub value: Node,
    /// The byte offset of the comma after it, if there is one.
    pub comma: Option<usize>,
}

impl Node {
    /// The member named `key` (the last one when a key is repeated, as VS Code reads it).
    pub fn member(&self, key: &str) -> Option<&Member> {
        match &self.kind {
            Kind::Object(members) => members.iter().rev().find(|m| m.key == key),
            _ => None,
        }
    }

    /// The value of the member named `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.member(key).map(|m| &m.value)
    }

    /// The elements, if this is an array.
    pub fn items(&self) -> &[Item] {
        match &self.kind {
            Kind::Array(items) => items,
            _ => &[],
        }
    }

    /// The members, if this is an object.
    pub fn members(&self) -> &[Member] {
        match &self.kind {
            Kind::Object(members) => members,
            _ => &[],
        }
    }

    /// The value as serde_json holds it (comments dropped).
    pub fn to_value(&self) -> Value {
        match &self.kind {
            Kind::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|m| (m.key.clone(), m.value.to_value()))
                    .collect(),
            ),
            Kind::Array(items) => Value::Array(items.iter().map(|i| i.value.to_value()).collect()),
            Kind::String(s) => Value::String(s.clone()),
            Kind::Number(n) => Value::Number(n.clone()),
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Null => Value::Null,
        }
    }
}

/// Reads `text`. `Ok(None)` when it holds nothing but whitespace and comments.
pub fn parse(text: &str) -> Result<Option<Node>, JsoncError> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: if text.starts_with('\u{feff}') { 3 } else { 0 },
    };
    parser.skip_trivia()?;
    if parser.pos == parser.bytes.len() {
        return Ok(None);
    }
    let node = parser.value(0)?;
    parser.skip_trivia()?;
    if parser.pos < parser.bytes.len() {
        return Err(parser.error("unexpected text after the end of the document"));
    }
    Ok(Some(node))
}

/// The 1-based line and column of byte `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> JsoncError {
        let (line, column) = line_col(self.text, self.pos);
        JsoncError {
            line,
            column,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), JsoncError> {
        loop {
            match (self.peek(), self.bytes.get(self.pos + 1)) {
                (Some(b' ' | b'\t' | b'\r' | b'\n'), _) => self.pos += 1,
                (Some(b'/'), Some(b'/')) => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.pos += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let start = self.pos;
                    match self.text[self.pos + 2..].find("*/") {
                        Some(end) => self.pos += 2 + end + 2,
                        None => {
                            self.pos = start;
                            return Err(self.error("a `/*` comment is never closed"));
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, JsoncError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested more than {MAX_DEPTH} levels deep")));
        }
        let start = self.pos;
        let kind = match self.peek() {
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => Kind::String(self.string()?),
            Some(b't') => self.word("true", Kind::Bool(true))?,
            Some(b'f') => self.word("false", Kind::Bool(false))?,
            Some(b'n') => self.word("null", Kind::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => return Err(self.error(format!("expected a value, found {}", self.found()))),
            None => return Err(self.error("expected a value, found the end of the file")),
        };
        Ok(Node {
            span: start..self.pos,
            kind,
        })
    }

    /// What is at the current position, for messages.
    fn found(&self) -> String {
        match self.text[self.pos..].chars().next() {
            Some(c) => format!("`{c}`"),
            None => "the end of the file".into(),
        }
    }

    fn word(&mut self, word: &str, kind: Kind) -> Result<Kind, JsoncError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(kind)
        } else {
            Err(self.error(format!("expected a value, found {}", self.found())))
        }
    }

    fn number(&mut self) -> Result<Kind, JsoncError> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        match serde_json::from_str::<serde_json::Number>(&self.text[start..self.pos]) {
            Ok(n) => Ok(Kind::Number(n)),
            Err(_) => {
                self.pos = start;
                Err(self.error("malformed number"))
            }
        }
    }

    fn string(&mut self) -> Result<String, JsoncError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(c) = rest.chars().next() else {
                self.pos = start;
                return Err(self.error("a string is never closed"));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\\' => {
                    self.pos += 1;
                    out.push(self.escape()?);
                }
                '\n' => return Err(self.error("a string runs past the end of its line")),
                c => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    /// The character of an escape; the backslash is already read.
    fn escape(&mut self) -> Result<char, JsoncError> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                return self.unicode_escape();
            }
            _ => return Err(self.error("unknown escape in a string")),
        };
        self.pos += 1;
        Ok(c)
    }

    /// `\uXXXX`, with a following low surrogate when the first is a high one.
    fn unicode_escape(&mut self) -> Result<char, JsoncError> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.text[self.pos..].starts_with("\\u") {
                return Err(self.error("a \\u escape lacks its low surrogate"));
            }
            self.pos += 2;
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.error("a \\u escape has a malformed surrogate pair"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.error("a \\u escape names no character"))
    }

    fn hex4(&mut self) -> Result<u32, JsoncError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("a \\u escape needs four hex digits"))?;
        let value = u32::from_str_radix(digits, 16)
            .map_err(|_| self.error("a \\u escape needs four hex digits"))?;
        self.pos += 4;
        Ok(value)
    }

    /// After a value in an object or array: the comma's offset, or None before `close`.
    fn separator(&mut self, close: u8, what: &str) -> Result<Option<usize>, JsoncError> {
        self.skip_trivia()?;
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(Some(self.pos - 1))
            }
            Some(c) if c == close => Ok(None),
            _ => Err(self.error(format!(
                "expected `,` or `{}` after {what}, found {}",
                close as char,
                self.found()
            ))),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Kind, JsoncError> {
        self.pos += 1;
        let mut members = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Kind::Object(members));
                }
                Some(b'"') => {}
                _ => {
                    return Err(self.error(format!(
                        "expected a key in quotes or `}}`, found {}",
                        self.found()
                    )))
                }
            }
            let start = self.pos;
            let key = self.string()?;
            self.skip_trivia()?;
            if self.peek() != Some(b':') {
                return Err(self.error(format!("expected `:` after key \"{key}\"")));
            }
            self.pos += 1;
            self.skip_trivia()?;
            let value = self.value(depth + 1)?;
            let comma = self.separator(b'}', &format!("the value of \"{key}\""))?;
            members.push(Member {
                key,
                start,
                value,
                comma,
            });
            if comma.is_none() {
                self.pos += 1;
                return Ok(Kind::Object(members));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Kind, JsoncError> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(Kind::Array(items));
            }
            let value = self.value(depth + 1)?;
            let comma = self.separator(b']', "an array element")?;
            items.push(Item { value, comma });
            if comma.is_none() {
                self.pos += 1;
                return Ok(Kind::Array(items));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(text: &str) -> Node {
        parse(text).expect("parses").expect("has a value")
    }

    #[test]
    fn comments_and_trailing_commas_are_read_as_vs_code_does() {
        let text = "\u{feff}// top\n{\n  /* block */ \"a\": [1, 2.5, -3e2,], // end\n  \"b\": {\"c\": \"x\\u00e9\\n\", \"d\": null, \"e\": true,},\n}\n";
        let node = doc(text);
        assert_eq!(
            node.to_value(),
            json!({"a": [1, 2.5, -300.0], "b": {"c": "x\u{e9}\n", "d": null, "e": true}})
        );
        let a = node.member("a").expect("a");
        assert_eq!(&text[a.start..a.start + 3], "\"a\"");
        assert_eq!(&text[a.value.span.clone()], "[1, 2.5, -3e2,]");
        assert_eq!(a.comma.map(|c| &text[c..=c]), Some(","));
        assert!(node
            .get("b")
            .and_then(|b| b.member("e"))
            .and_then(|e| e.comma)
            .is_some());
    }

    #[test]
    fn errors_name_line_and_column() {
        let error = parse("{\n  \"a\": 1\n  \"b\": 2\n}").expect_err("missing comma");
        assert_eq!((error.line, error.column), (3, 3));
        assert!(error.message.contains("expected `,` or `}`"), "{error}");
        let error = parse("{\"a\": /* open").expect_err("open comment");
        assert_eq!(error.line, 1);
        assert!(error.message.contains("never closed"), "{error}");
        assert!(parse("[1] x").is_err());
        assert!(parse("{'a': 1}").is_err());
        assert!(parse("\"\\ud800\"").is_err());
    }

    #[test]
    fn only_comments_is_no_document() {
        assert_eq!(parse("  // nothing\n/* here */\n"), Ok(None));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let text = "[".repeat(10_000);
        assert!(parse(&text)
            .expect_err("too deep")
            .message
            .contains("nested"));
    }

    #[test]
    fn a_repeated_key_reads_as_the_last() {
        assert_eq!(
            doc("{\"a\": 1, \"a\": 2}").get("a").map(Node::to_value),
            Some(json!(2))
        );
    }
}
