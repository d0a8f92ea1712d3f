//! Byte offsets in a document's text and LSP positions (line, UTF-16 code unit) — the
//! encoding every client supports. Offsets that fall inside a character, or past the end,
//! are clamped rather than trusted: positions come from the client.

use lsp_types::{Position, Range};

/// Where each line of a text starts, to turn byte offsets into positions and back.
#[derive(Debug, Clone)]
pub struct LineIndex {
    /// Byte offset of the first character of each line; `starts[0] == 0`.
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    /// Indexes `text`. Lines end at `\n` (a `\r` before it stays part of the line).
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            starts,
            len: text.len(),
        }
    }

    /// The position of byte `offset` of `text` (the text this index was built from).
    pub fn position(&self, text: &str, offset: usize) -> Position {
        let offset = floor_char_boundary(text, offset.min(self.len));
        let line = self.starts.partition_point(|&start| start <= offset) - 1;
        let start = self.starts[line];
        let character: usize = text[start..offset].chars().map(char::len_utf16).sum();
        Position::new(saturate(line), saturate(character))
    }

    /// The range of bytes `span` of `text`.
    pub fn range(&self, text: &str, span: std::ops::Range<usize>) -> Range {
        Range::new(
            self.position(text, span.start),
            self.position(text, span.end),
        )
    }

    /// The byte offset of `position` in `text`: a line past the end means the end of the
    /// text, a character past the end of its line the end of that line.
    pub fn offset(&self, text: &str, position: Position) -> usize {
        let line = position.line as usize;
        let Some(&start) = self.starts.get(line) else {
            return self.len;
        };
        let end = self.starts.get(line + 1).map_or(self.len, |next| next - 1);
        let mut units = 0usize;
        for (i, c) in text[start..end].char_indices() {
            if units >= position.character as usize {
                return start + i;
            }
            units += c.len_utf16();
        }
        end
    }

    /// The byte offset of the start of 1-based `line` and 0-based `column` in characters,
    /// as YAML parsers and kbridge-config's errors count them.
    pub fn offset_of_line_column(&self, text: &str, line: usize, column: usize) -> usize {
        let Some(&start) = line.checked_sub(1).and_then(|l| self.starts.get(l)) else {
            return self.len;
        };
        text[start..]
            .char_indices()
            .take_while(|(_, c)| *c != '\n')
            .nth(column)
            .map_or_else(|| line_end(text, start), |(i, _)| start + i)
    }

    /// The span of 1-based `line` without its line break (the whole text's end when the
    /// line does not exist).
    pub fn line_span(&self, text: &str, line: usize) -> std::ops::Range<usize> {
        match line.checked_sub(1).and_then(|l| self.starts.get(l)) {
            Some(&start) => start..line_end(text, start),
            None => self.len..self.len,
        }
    }
}

fn line_end(text: &str, start: usize) -> usize {
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    if text[..end].ends_with('\r') {
        end - 1
    } else {
        end
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units_and_round_trip() {
        let text = "a: é😀x\nsecond\n";
        let index = LineIndex::new(text);
        let x = text.find('x').expect("x");
        assert_eq!(index.position(text, x), Position::new(0, 6));
        assert_eq!(index.offset(text, Position::new(0, 6)), x);
        let s = text.find("second").expect("second");
        assert_eq!(index.position(text, s), Position::new(1, 0));
        assert_eq!(index.offset(text, Position::new(1, 99)), s + 6);
        assert_eq!(index.offset(text, Position::new(9, 0)), text.len());
        // Inside the emoji: clamped to its start.
        assert_eq!(
            index
                .position(text, text.find('😀').expect("emoji") + 1)
                .character,
            4
        );
        assert_eq!(index.offset_of_line_column(text, 2, 3), s + 3);
        assert_eq!(index.line_span(text, 2), s..s + 6);
    }
}
