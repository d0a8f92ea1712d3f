//! Fuzz target `local_process_config`: the two config file formats a session reads before
//! it changes anything in the cluster (`config-schema/src/local_process.rs`,
//! `config-schema/src/azds_env.rs`). Every input is read as both.
//!
//! Properties checked for every UTF-8 input:
//! - neither parser panics;
//! - an error names the file and a line that exists (or 0, for unknown);
//! - a file either parser accepts is one the session can apply: every `env` value splits
//!   into text and tokens (`parse_value`), so no mistake surfaces after the cluster changed;
//! - `azds-local.env`: one entry per `NAME=VALUE` line, named as in the file, and each
//!   `${…}` token becomes one token of the newer format, of the same kind; a volume token
//!   names a volume the translation lists in `volumeMounts`.

#![no_main]

use kbridge_config::azds_env::parse_azds_env;
use kbridge_config::local_process::{parse_value, LocalProcessConfig, ValuePart};
use kbridge_config::ConfigError;
use libfuzzer_sys::fuzz_target;

/// Lines as YAML counts them (`\r\n`, `\n` or a lone `\r` ends one) and as
/// `azds-local.env` does (`str::lines`).
fn line_count(text: &str, yaml: bool) -> usize {
    if yaml {
        text.replace("\r\n", "\n").matches(['\r', '\n']).count() + 1
    } else {
        text.lines().count()
    }
}

fn check_error(error: &ConfigError, text: &str, name: &str, yaml: bool) {
    match error {
        ConfigError::File { file, line, .. } => {
            assert_eq!(file, name);
            let lines = line_count(text, yaml);
            assert!(*line <= lines + 1, "line {line} of a {lines}-line file");
        }
        other => panic!("{name}: not a file error: {other:?}"),
    }
}

fn yaml(text: &str) {
    let name = "KubernetesLocalProcessConfig.yaml";
    match LocalProcessConfig::parse(text, name) {
        Ok(config) => {
            for value in config.env.iter().filter_map(|e| e.value.as_deref()) {
                parse_value(value).expect("an accepted value splits into tokens");
            }
        }
        Err(error) => check_error(&error, text, name, true),
    }
}

/// The `${…}` tokens of an `azds-local.env` value: from `${` to the next `}`.
fn tokens_of(value: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("an accepted token is closed");
        tokens.push(&after[..end]);
        rest = &after[end + 1..];
    }
    tokens
}

fn azds(text: &str) {
    let name = "azds-local.env";
    let config = match parse_azds_env(text, name) {
        Ok(config) => config,
        Err(error) => return check_error(&error, text, name, false),
    };
    let lines: Vec<(&str, &str)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').expect("an accepted line has `=`"))
        .collect();
    assert_eq!(config.env.len(), lines.len(), "one entry per line");
    for (entry, (line_name, source)) in config.env.iter().zip(lines) {
        assert_eq!(entry.name, line_name.trim());
        let value = entry.value.as_deref().unwrap_or_default();
        let parts = parse_value(value)
            .unwrap_or_else(|e| panic!("`{source}` became `{value}`, which does not parse: {e}"));
        let tokens: Vec<&ValuePart> = parts
            .iter()
            .filter(|p| !matches!(p, ValuePart::Text(_)))
            .collect();
        let source_kinds: Vec<String> = tokens_of(source)
            .iter()
            .map(|t| t.split('.').next().unwrap_or_default().to_ascii_lowercase())
            .collect();
        let kinds: Vec<&str> = tokens
            .iter()
            .map(|p| match p {
                ValuePart::VolumeMount(_) => "volumes",
                ValuePart::Service { .. } => "services",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, source_kinds, "`{source}` became `{value}`");
        for token in tokens {
            if let ValuePart::VolumeMount(volume) = token {
                assert!(
                    config.volume_mounts.iter().any(|m| &m.name == volume),
                    "`{source}` became `{value}`: no volume `{volume}`"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    yaml(text);
    azds(text);
});
