//! Reads `envFile` (dotenv syntax) for adapters, and so that its entries keep their
//! place in the precedence whatever the adapter would do with the key.

use kbridge_config::EnvVars;
use std::path::Path;

/// Why an env file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DotenvError {
    /// The file cannot be read.
    #[error("envFile `{path}` cannot be read: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not `NAME=value`.
    #[error("envFile `{path}` line {line}: expected NAME=value, found `{text}`")]
    Syntax {
        /// The path as given.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
}

/// Reads a dotenv file; a relative path is taken from `base` (the launch's `cwd`).
pub fn read(path: &str, base: Option<&Path>) -> Result<EnvVars, DotenvError> {
    let full = match base {
        Some(base) if Path::new(path).is_relative() => base.join(path),
        _ => Path::new(path).to_path_buf(),
    };
    let text = std::fs::read_to_string(&full).map_err(|source| DotenvError::Read {
        path: full.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|(line, text)| DotenvError::Syntax {
        path: full.display().to_string(),
        line,
        text,
    })
}

/// Parses dotenv text: `NAME=value`, optional `export `, `#` comments, single quotes
/// (literal) and double quotes (with `\n`, `\"`, `\\` escapes).
pub fn parse(text: &str) -> Result<EnvVars, (usize, String)> {
    let mut vars = EnvVars::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err((index + 1, raw.to_string()));
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err((index + 1, raw.to_string()));
        }
        vars.set(name, Some(unquote(value.trim())));
    }
    Ok(vars)
}

fn unquote(value: &str) -> String {
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        return value[1..value.len() - 1].to_string();
    }
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        let inner = &value[1..value.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    // Unquoted: a ` #` starts a comment.
    match value.find(" #") {
        Some(at) => value[..at].trim_end().to_string(),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_forms() {
        let vars = parse(
            "# comment\nA=1\nexport B = two words \nC='lit $X'\nD=\"line\\nnext\"\nE=v # note\n\n",
        )
        .expect("valid dotenv");
        assert_eq!(vars.get("A"), Some(Some("1")));
        assert_eq!(vars.get("B"), Some(Some("two words")));
        assert_eq!(vars.get("C"), Some(Some("lit $X")));
        assert_eq!(vars.get("D"), Some(Some("line\nnext")));
        assert_eq!(vars.get("E"), Some(Some("v")));
    }

    #[test]
    fn reports_the_bad_line() {
        let err = parse("A=1\nnot a pair\n").expect_err("bad line");
        assert_eq!(err.0, 2);
    }
}
