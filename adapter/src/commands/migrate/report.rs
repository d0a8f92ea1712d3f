//! What `kbridge migrate` tells the user: a unified diff of each changed file (stdout,
//! so `patch -p1` or `git apply` can take it, and `patch -R` undo it) and one line per
//! finding (stderr), each naming the file and line.

use std::fmt;
use std::path::Path;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// Above this many line pairs the diff is one hunk replacing the whole file.
const MAX_LCS_CELLS: usize = 16_000_000;

/// How a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A configuration became a bridge configuration.
    Migrated,
    /// A task or configuration was removed.
    Removed,
    /// Something was left as it is, and why.
    Kept,
    /// The user has something to do.
    Todo,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Migrated => "migrated",
            Kind::Removed => "removed",
            Kind::Kept => "kept",
            Kind::Todo => "to do",
        })
    }
}

/// One finding: `path:line: kind: text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The file, as shown (relative to the migrated directory).
    pub file: String,
    /// Its 1-based line, when it is about one place.
    pub line: Option<usize>,
    /// How it matters.
    pub kind: Kind,
    /// What happened, or what to do.
    pub text: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}: {}", self.file, self.kind, self.text),
            None => write!(f, "{}: {}: {}", self.file, self.kind, self.text),
        }
    }
}

/// `path` relative to `base` with `/` separators, for messages and diff headers.
pub fn shown(path: &Path, base: &Path) -> String {
    let relative = path.strip_prefix(base).unwrap_or(path);
    relative.to_string_lossy().replace('\\', "/")
}

/// One line of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Gone(&'a str),
    Added(&'a str),
}

/// A unified diff from `before` to `after` with `a/NAME` and `b/NAME` headers; empty when
/// they are equal.
pub fn unified_diff(name: &str, before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    let old: Vec<&str> = before.split_inclusive('\n').collect();
    let new: Vec<&str> = after.split_inclusive('\n').collect();
    let ops = compare(&old, &new);
    let mut out = format!("--- a/{name}\n+++ b/{name}\n");
    for hunk in hunks(&ops) {
        write_hunk(&mut out, &ops, hunk);
    }
    out
}

/// The line operations turning `old` into `new`, by longest common subsequence.
fn compare<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Op<'a>> {
    let (n, m) = (old.len(), new.len());
    if n.saturating_mul(m) > MAX_LCS_CELLS {
        let mut ops: Vec<Op> = old.iter().map(|l| Op::Gone(l)).collect();
        ops.extend(new.iter().map(|l| Op::Added(l)));
        return ops;
    }
    // lcs[i][j]: common lines of old[i..] and new[j..].
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if old[i] == new[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::with_capacity(n + m));
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            ops.push(Op::Same(old[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            ops.push(Op::Gone(old[i]));
            i += 1;
        } else {
            ops.push(Op::Added(new[j]));
            j += 1;
        }
    }
    ops
}

/// Ranges of `ops` to show: each change with its context, close ones merged.
fn hunks(ops: &[Op]) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        if matches!(op, Op::Same(_)) {
            continue;
        }
        let start = index.saturating_sub(CONTEXT);
        let end = (index + 1 + CONTEXT).min(ops.len());
        match out.last_mut() {
            Some(last) if start <= last.end => last.end = end,
            _ => out.push(start..end),
        }
    }
    out
}

fn write_hunk(out: &mut String, ops: &[Op], hunk: std::ops::Range<usize>) {
    // Line numbers where the hunk starts, counted over the ops before it.
    let (mut old_line, mut new_line) = (1, 1);
    for op in &ops[..hunk.start] {
        match op {
            Op::Same(_) => (old_line, new_line) = (old_line + 1, new_line + 1),
            Op::Gone(_) => old_line += 1,
            Op::Added(_) => new_line += 1,
        }
    }
    let shown = &ops[hunk];
    let old_count = shown.iter().filter(|o| !matches!(o, Op::Added(_))).count();
    let new_count = shown.iter().filter(|o| !matches!(o, Op::Gone(_))).count();
    // An empty side starts at the line before, as diff(1) writes it.
    let old_start = if old_count == 0 {
        old_line - 1
    } else {
        old_line
    };
    let new_start = if new_count == 0 {
        new_line - 1
    } else {
        new_line
    };
    out.push_str(&format!(
        "@@ -{old_start},{old_count} +{new_start},{new_count} @@\n"
    ));
    for op in shown {
        let (sign, line) = match op {
            Op::Same(l) => (' ', l),
            Op::Gone(l) => ('-', l),
            Op::Added(l) => ('+', l),
        };
        out.push(sign);
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push_str("\n\\ No newline at end of file\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_in_the_middle_gets_three_lines_of_context() {
        let before = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let after = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        assert_eq!(
            unified_diff(".vscode/launch.json", before, after),
            "--- a/.vscode/launch.json\n+++ b/.vscode/launch.json\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn far_apart_changes_are_separate_hunks_and_a_missing_newline_is_marked() {
        let before = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj";
        let after = "A\nb\nc\nd\ne\nf\ng\nh\ni\nJ";
        let diff = unified_diff("x", before, after);
        assert_eq!(diff.matches("@@ -").count(), 2, "{diff}");
        assert!(diff.contains("@@ -1,4 +1,4 @@\n-a\n+A\n"), "{diff}");
        assert!(
            diff.ends_with("-j\n\\ No newline at end of file\n+J\n\\ No newline at end of file\n"),
            "{diff}"
        );
    }

    #[test]
    fn removed_lines_only() {
        let diff = unified_diff("x", "a\nb\nc\n", "a\nc\n");
        assert!(diff.contains("@@ -1,3 +1,2 @@\n a\n-b\n c\n"), "{diff}");
        assert_eq!(unified_diff("x", "same\n", "same\n"), "");
    }

    #[test]
    fn notes_name_file_and_line() {
        let note = Note {
            file: ".vscode/tasks.json".into(),
            line: Some(7),
            kind: Kind::Todo,
            text: "check it".into(),
        };
        assert_eq!(note.to_string(), ".vscode/tasks.json:7: to do: check it");
    }
}
