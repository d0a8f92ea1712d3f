//! Environment variables as launch configurations write them: an object
//! `{"K": "V"}` (VS Code style) or a list `["K=V"]` (lldb-dap style).

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// Ordered environment variables, as written by the user (later entries win).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvVars {
    entries: Vec<(String, Option<String>)>,
}

impl EnvVars {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing an earlier entry of the same name.
    pub fn set(&mut self, name: impl Into<String>, value: Option<String>) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    /// The value of `name`: `Some(None)` when explicitly unset.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// Whether `name` is present (set or explicitly unset).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// Names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds every entry of `higher`, which wins over what is already here.
    pub fn overlay(&mut self, higher: &EnvVars) {
        for (name, value) in &higher.entries {
            self.set(name.clone(), value.clone());
        }
    }

    /// Reads the object or list form from JSON.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        let mut vars = EnvVars::new();
        match value {
            serde_json::Value::Object(map) => {
                for (name, v) in map {
                    let v = match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        serde_json::Value::Bool(b) => Some(b.to_string()),
                        _ => return Err(format!("the value of `{name}` must be a string or null")),
                    };
                    vars.set(name.clone(), v);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    let text = item
                        .as_str()
                        .ok_or_else(|| "list entries must be strings \"NAME=value\"".to_string())?;
                    let (name, v) = text.split_once('=').ok_or_else(|| {
                        format!("list entry `{text}` is not of the form NAME=value")
                    })?;
                    vars.set(name, Some(v.to_string()));
                }
            }
            _ => {
                return Err(
                    "expected an object {\"NAME\": \"value\"} or a list [\"NAME=value\"]".into(),
                )
            }
        }
        Ok(vars)
    }

    /// The object form `{"NAME": "value" | null}`.
    pub fn to_object(&self) -> serde_json::Value {
        let map = self
            .entries
            .iter()
            .map(|(n, v)| {
                let v = v.as_ref().map_or(serde_json::Value::Null, |s| {
                    serde_json::Value::String(s.clone())
                });
                (n.clone(), v)
            })
            .collect();
        serde_json::Value::Object(map)
    }

    /// The list form `["NAME=value"]`; unset entries cannot be expressed and are left out.
    pub fn to_list(&self) -> serde_json::Value {
        self.entries
            .iter()
            .filter_map(|(n, v)| {
                v.as_ref()
                    .map(|v| serde_json::Value::String(format!("{n}={v}")))
            })
            .collect()
    }
}

impl<'de> Deserialize<'de> for EnvVars {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        EnvVars::from_json(&value).map_err(de::Error::custom)
    }
}

impl Serialize for EnvVars {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_object().serialize(serializer)
    }
}

impl JsonSchema for EnvVars {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EnvVars".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Environment variables: an object {\"NAME\": \"value\"} (null unsets) or a list [\"NAME=value\"].",
            "anyOf": [
                { "type": "object", "additionalProperties": { "type": ["string", "null"] } },
                { "type": "array", "items": { "type": "string", "pattern": "^[^=]+=" } }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_forms_and_keeps_order() {
        let obj = EnvVars::from_json(&json!({"B": "1", "A": null})).expect("object form");
        assert_eq!(obj.names().collect::<Vec<_>>(), ["B", "A"]);
        assert_eq!(obj.get("A"), Some(None));
        let list = EnvVars::from_json(&json!(["X=a=b", "Y="])).expect("list form");
        assert_eq!(list.get("X"), Some(Some("a=b")));
        assert_eq!(list.get("Y"), Some(Some("")));
    }

    #[test]
    fn rejects_malformed_entries_with_a_reason() {
        let err = EnvVars::from_json(&json!(["NOEQUALS"])).expect_err("must fail");
        assert!(err.contains("NOEQUALS"), "{err}");
        let err = EnvVars::from_json(&json!({"A": {"x": 1}})).expect_err("must fail");
        assert!(err.contains("`A`"), "{err}");
    }

    #[test]
    fn overlay_replaces_in_place() {
        let mut low = EnvVars::from_json(&json!({"A": "low", "B": "low"})).expect("env");
        let high = EnvVars::from_json(&json!({"B": "high", "C": "new"})).expect("env");
        low.overlay(&high);
        assert_eq!(
            low.to_object(),
            json!({"A": "low", "B": "high", "C": "new"})
        );
        assert_eq!(low.to_list(), json!(["A=low", "B=high", "C=new"]));
    }
}
