//! JSON Schemas generated from the types, so editors validate and complete the same
//! keys kbridge accepts. The checked-in copies under `schema/` are tested for staleness.

use crate::launch::LaunchConfig;
use crate::local_process::LocalProcessConfig;

/// The schema of a `"type": "bridge"` launch configuration.
pub fn launch_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(LaunchConfig)).unwrap_or_default()
}

/// The schema of `KubernetesLocalProcessConfig.yaml`.
pub fn config_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(LocalProcessConfig)).unwrap_or_default()
}

/// Pretty JSON with a trailing newline, the form the checked-in files have.
pub fn to_file_text(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(file: &str, schema: serde_json::Value) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schema")
            .join(file);
        let expected = to_file_text(&schema);
        if std::env::var_os("KBRIDGE_UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &expected).expect("write schema");
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == expected,
            "{} is stale: regenerate with `KBRIDGE_UPDATE_SCHEMAS=1 cargo test -p kbridge-config`",
            path.display()
        );
    }

    #[test]
    fn launch_schema_file_is_current() {
        check("launch.json", launch_schema());
    }

    #[test]
    fn config_schema_file_is_current() {
        check("config.json", config_schema());
    }

    #[test]
    fn launch_schema_describes_bridge_and_debugger() {
        let schema = launch_schema();
        let text = schema.to_string();
        for key in [
            "bridge",
            "debugger",
            "isolateAs",
            "disconnectAfterDebugging",
            "lldb-dap",
        ] {
            assert!(text.contains(key), "schema lacks {key}");
        }
    }
}
