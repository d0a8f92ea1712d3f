//! `azds-local.env`, the file Azure Dev Spaces read before `KubernetesLocalProcessConfig.yaml`
//! existed: `NAME=VALUE` lines whose values carry `${volumes.NAME}`, `${volumes.NAME|PATH}`,
//! `${services.SVC}` and `${services.NS.SVC}`. It is translated into the newer format, so the
//! rest of kbridge knows one configuration only.

use crate::local_process::{parse_value, EnvEntry, LocalProcessConfig, ValuePart, VolumeMount};
use crate::ConfigError;

/// Whether `path` names an `azds-local.env` style file rather than a YAML one.
pub fn is_azds_env(path: &str) -> bool {
    let name = std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path);
    name.ends_with(".env")
}

/// Reads an `azds-local.env` file; `file` names it in errors, which carry the line.
pub fn parse_azds_env(text: &str, file: &str) -> Result<LocalProcessConfig, ConfigError> {
    let mut config = LocalProcessConfig::default();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |message: String| ConfigError::File {
            file: file.to_string(),
            line: index + 1,
            message,
        };
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| error(format!("`{line}` is not NAME=VALUE")))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(error(format!("`{name}` is not a variable name")));
        }
        let value = translate_value(value.trim(), &mut config.volume_mounts)
            .map_err(|m| error(format!("`{name}`: {m}")))?;
        config.env.push(EnvEntry::new(name, value));
    }
    Ok(config)
}

/// Rewrites `${…}` tokens into the `$(…)` tokens of `KubernetesLocalProcessConfig.yaml`,
/// adding a `volumeMounts` entry for each `${volumes.NAME|PATH}`. The result must read back
/// as the same text and tokens: anything else is refused here, before a session starts.
fn translate_value(value: &str, mounts: &mut Vec<VolumeMount>) -> Result<String, String> {
    let mut out = String::new();
    let mut meant = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        push_text(&mut out, &mut meant, &rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("token `{}` has no closing `}}`", &rest[start..]))?;
        let token = &after[..end];
        let (translated, part) = translate_token(token, mounts)?;
        if parse_value(&translated).ok().as_deref() != Some(std::slice::from_ref(&part)) {
            return Err(format!(
                "token `${{{token}}}` cannot be carried over: as `{translated}` it would mean \
                 something else (a `:`, `)` or second `.` in a name)"
            ));
        }
        out.push_str(&translated);
        meant.push(part);
        rest = &after[end + 1..];
    }
    push_text(&mut out, &mut meant, rest);
    if parse_value(&out).ok() != Some(meant) {
        return Err(
            "`$(` in the text would be read as a KubernetesLocalProcessConfig.yaml token"
                .to_string(),
        );
    }
    Ok(out)
}

/// Appends literal text to the translation and to what it is meant to read as.
fn push_text(out: &mut String, meant: &mut Vec<ValuePart>, piece: &str) {
    out.push_str(piece);
    match meant.last_mut() {
        Some(ValuePart::Text(last)) => last.push_str(piece),
        _ if !piece.is_empty() => meant.push(ValuePart::Text(piece.to_string())),
        _ => {}
    }
}

/// One `${…}` token as a newer token, and what that token is meant to read as.
fn translate_token(
    token: &str,
    mounts: &mut Vec<VolumeMount>,
) -> Result<(String, ValuePart), String> {
    let (kind, argument) = token
        .split_once('.')
        .ok_or_else(|| format!("token `${{{token}}}` is not of the form ${{KIND.VALUE}}"))?;
    if argument.is_empty() {
        return Err(format!("token `${{{token}}}` has nothing after `{kind}.`"));
    }
    match kind.to_ascii_lowercase().as_str() {
        "volumes" => {
            let (volume, local_path) = match argument.split_once('|') {
                Some((volume, path)) => {
                    crate::local_process::check_local_path(path)?;
                    (volume, Some(path.to_string()))
                }
                None => (argument, None),
            };
            if let Some(existing) = mounts.iter_mut().find(|m| m.name == volume) {
                if existing.local_path.is_none() {
                    existing.local_path = local_path;
                }
            } else {
                mounts.push(VolumeMount {
                    local_path,
                    ..VolumeMount::named(volume)
                });
            }
            Ok((
                format!("$(volumeMounts:{volume})"),
                ValuePart::VolumeMount(volume.to_string()),
            ))
        }
        // `${services.NS.SVC}` names the namespace first; the newer token puts it second.
        "services" => Ok(match argument.split_once('.') {
            Some((namespace, service)) => (
                format!("$(services:{service}.{namespace})"),
                ValuePart::Service {
                    name: service.to_string(),
                    namespace: Some(namespace.to_string()),
                    ports: Vec::new(),
                },
            ),
            None => (
                format!("$(services:{argument})"),
                ValuePart::Service {
                    name: argument.to_string(),
                    namespace: None,
                    ports: Vec::new(),
                },
            ),
        }),
        _ => Err(format!(
            "unknown token kind `{kind}` in `${{{token}}}`; expected volumes or services"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "# downloads the whitelist volume
WHITELIST_PATH=${volumes.whitelist}/whitelist

KUBERNETES_IN_CLUSTER_CONFIG_OVERWRITE=${volumes.default-token-*|/var/run/secrets/kubernetes.io/serviceaccount}
MYAPP1_SERVICE_HOST=${services.myapp1}
MYAPP2_SERVICE_HOST=${services.mynamespace.myapp2}
PLAIN=value with = sign
";

    #[test]
    fn reads_the_dev_spaces_format() {
        assert!(is_azds_env("/src/azds-local.env") && !is_azds_env("K.yaml"));
        let config = parse_azds_env(EXAMPLE, "azds-local.env").expect("valid file");
        assert_eq!(config.volume_mounts.len(), 2);
        assert_eq!(config.volume_mounts[0].name, "whitelist");
        assert_eq!(config.volume_mounts[0].local_path, None);
        assert_eq!(
            config.volume_mounts[1].local_path.as_deref(),
            Some("/var/run/secrets/kubernetes.io/serviceaccount")
        );
        assert_eq!(
            config.env[0].value.as_deref(),
            Some("$(volumeMounts:whitelist)/whitelist")
        );
        assert_eq!(
            parse_value(config.env[3].value.as_deref().unwrap_or_default()).expect("tokens"),
            [ValuePart::Service {
                name: "myapp2".into(),
                namespace: Some("mynamespace".into()),
                ports: vec![]
            }]
        );
        assert_eq!(config.env[4].value.as_deref(), Some("value with = sign"));
    }

    #[test]
    fn mistakes_name_their_line() {
        let err = parse_azds_env("A=1\nB=${secrets.x}\n", "azds-local.env").expect_err("token");
        let text = err.to_string();
        assert!(
            text.contains("line 2") && text.contains("secrets"),
            "{text}"
        );
        let err = parse_azds_env("A=1\n\nno equals sign\n", "azds-local.env").expect_err("line");
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = parse_azds_env("A=${volumes.x\n", "azds-local.env").expect_err("unclosed");
        assert!(err.to_string().contains("closing"), "{err}");
    }

    /// Found by the `local_process_config` fuzz target: these were accepted, then read as
    /// other tokens (or not at all) once the session had already changed the cluster.
    #[test]
    fn values_the_newer_format_would_read_differently_are_refused() {
        for (line, why) in [
            // A `:` would become a port list.
            ("HOST=${services.ns.api:80}", "services"),
            // A `)` would end the token early.
            ("DIR=${volumes.a)b}", "volumes"),
            // A dotted Service name would swap name and namespace.
            ("HOST=${services.ns.api.v2}", "services"),
            // `$(` in the text would become a token of the newer format.
            ("CMD=run $(services:db) now", "$("),
            ("CMD=$(unclosed", "$("),
        ] {
            let err = parse_azds_env(line, "azds-local.env").expect_err(line);
            let text = err.to_string();
            assert!(
                text.contains("line 1") && text.contains(why),
                "{line}: {text}"
            );
        }
        let ok = parse_azds_env(
            "A=$ (x) ${services.ns.api}:80 $${volumes.v}",
            "azds-local.env",
        )
        .expect("plain `$`, `(` and `:` in the text are fine");
        assert_eq!(
            ok.env[0].value.as_deref(),
            Some("$ (x) $(services:api.ns):80 $$(volumeMounts:v)")
        );
    }
}
