//! The JSON Schemas `kbridge-config` generates from its types (`config-schema/src/schema.rs`),
//! read as the source of the keys, value types, allowed values and documentation the
//! server checks, completes and explains — so it knows exactly what kbridge accepts, and
//! a key added there is known here without a change.

use super::tree::{Node, ScalarKind, Step, Value};
use kbridge_config::launch::edit_distance;
use serde_json::Value as Json;
use std::ops::Range;

/// A schema and the node of it that describes a document's root.
#[derive(Debug, Clone)]
pub struct Schema {
    root: Json,
    /// Where the document's root is described: `/` for the config file, the `bridge`
    /// property for a launch configuration's block.
    start: String,
    /// Whether scalars of any kind are read as strings, as YAML deserialization does.
    lenient_strings: bool,
}

/// A value that does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The bytes the problem is about.
    pub span: Range<usize>,
    /// What is wrong, and what would be right.
    pub message: String,
}

/// A key or value the schema allows, with its documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The key or value.
    pub name: String,
    /// What it means, from the type's doc comment.
    pub doc: Option<String>,
}

impl Schema {
    /// `KubernetesLocalProcessConfig.yaml`.
    pub fn local_process_config() -> Schema {
        Schema {
            root: kbridge_config::schema::config_schema(),
            start: String::new(),
            lenient_strings: true,
        }
    }

    /// The `bridge` block of a `"type": "bridge"` launch configuration.
    pub fn bridge_block() -> Schema {
        Schema::launch_key("bridge")
    }

    /// The value of top-level `key` of a `"type": "bridge"` launch configuration.
    pub fn launch_key(key: &str) -> Schema {
        Schema {
            root: kbridge_config::schema::launch_schema(),
            start: format!("/properties/{key}"),
            lenient_strings: false,
        }
    }

    /// The documentation of the root (of a launch configuration's key: the key's).
    pub fn doc(&self) -> Option<String> {
        let top = self.top();
        top.get("description")
            .or_else(|| self.resolve(top).get("description"))
            .and_then(Json::as_str)
            .map(str::to_string)
    }

    /// Whether the schema describes anything (the key exists).
    pub fn exists(&self) -> bool {
        self.root.pointer(&self.start).is_some()
    }

    fn top(&self) -> &Json {
        self.root.pointer(&self.start).unwrap_or(&Json::Null)
    }

    /// Follows `$ref`, and an `anyOf` that only adds `null`, to the node that says what
    /// the value is.
    fn resolve<'a>(&'a self, mut node: &'a Json) -> &'a Json {
        for _ in 0..8 {
            if let Some(target) = node.get("$ref").and_then(Json::as_str) {
                node = target
                    .strip_prefix('#')
                    .and_then(|pointer| self.root.pointer(pointer))
                    .unwrap_or(&Json::Null);
                continue;
            }
            let not_null: Vec<&Json> = alternatives(node)
                .iter()
                .filter(|a| a.get("type").and_then(Json::as_str) != Some("null"))
                .collect();
            match not_null.as_slice() {
                [only] if alternatives(node).len() == 2 => node = only,
                _ => return node,
            }
        }
        node
    }

    /// The schema node at `path` from the root (keys and list indexes).
    pub fn at(&self, path: &[Step]) -> Option<&Json> {
        let mut node = self.resolve(self.top());
        for step in path {
            let next = match step {
                Step::Key(key) => node.get("properties").and_then(|p| p.get(key)),
                Step::Index(_) => node.get("items"),
            }?;
            node = self.resolve(next);
        }
        Some(node)
    }

    /// The documentation of the key at the end of `path`, as written on its field.
    pub fn key_doc(&self, path: &[Step]) -> Option<String> {
        let (Step::Key(key), parent) = path.split_last()? else {
            return None;
        };
        let field = self.at(parent)?.get("properties")?.get(key)?;
        field
            .get("description")
            .or_else(|| self.resolve(field).get("description"))
            .and_then(Json::as_str)
            .map(str::to_string)
    }

    /// The keys allowed in the map at `path`.
    pub fn keys(&self, path: &[Step]) -> Vec<Allowed> {
        let Some(properties) = self
            .at(path)
            .and_then(|n| n.get("properties"))
            .and_then(Json::as_object)
        else {
            return Vec::new();
        };
        properties
            .iter()
            .map(|(name, field)| Allowed {
                name: name.clone(),
                doc: field
                    .get("description")
                    .and_then(Json::as_str)
                    .map(str::to_string),
            })
            .collect()
    }

    /// The values allowed at `path` when they are a fixed set (`enableFeatures` entries,
    /// `hosts`).
    pub fn values(&self, path: &[Step]) -> Vec<Allowed> {
        self.at(path).map(|n| self.constants(n)).unwrap_or_default()
    }

    fn constants(&self, node: &Json) -> Vec<Allowed> {
        if let Some(values) = node.get("enum").and_then(Json::as_array) {
            return values
                .iter()
                .filter_map(Json::as_str)
                .map(|v| Allowed {
                    name: v.to_string(),
                    doc: None,
                })
                .collect();
        }
        let mut found = Vec::new();
        for alternative in alternatives(node) {
            let alternative = self.resolve(alternative);
            match alternative.get("const").and_then(Json::as_str) {
                Some(name) => found.push(Allowed {
                    name: name.to_string(),
                    doc: alternative
                        .get("description")
                        .and_then(Json::as_str)
                        .map(str::to_string),
                }),
                // A named set among the alternatives (`debugger`: a preset, or an object).
                None if alternative.get("oneOf").is_some() => {
                    found.extend(self.constants(alternative))
                }
                None => {}
            }
        }
        found
    }

    /// Whether the node allows a fixed set of values and nothing else.
    fn is_constant_set(&self, node: &Json) -> bool {
        let choices = alternatives(node);
        node.get("enum").is_some()
            || (!choices.is_empty()
                && choices
                    .iter()
                    .all(|c| self.resolve(c).get("const").is_some()))
    }

    /// Every way `node` does not fit the schema, each at the key or value concerned.
    pub fn check(&self, node: &Node) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.check_at(node, self.top(), &mut problems);
        problems
    }

    fn check_at(&self, node: &Node, schema: &Json, problems: &mut Vec<Problem>) {
        let schema = self.resolve(schema);
        if self.is_constant_set(schema) {
            return self.check_constant(node, &self.constants(schema), problems);
        }
        let choices = alternatives(schema);
        if !choices.is_empty() {
            let fitting = choices
                .iter()
                .map(|c| self.resolve(c))
                .find(|c| self.fits_type(node, c));
            return match fitting {
                Some(choice) => self.check_at(node, choice, problems),
                None => problems.push(self.type_problem(node, choices)),
            };
        }
        if !self.fits_type(node, schema) {
            return problems.push(self.type_problem(node, std::slice::from_ref(schema)));
        }
        match &node.value {
            Value::Map(entries) => self.check_map(node, entries, schema, problems),
            Value::List(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for item in items {
                        self.check_at(item, item_schema, problems);
                    }
                }
            }
            Value::Scalar(_) => check_range(node, schema, problems),
        }
    }

    fn check_map(
        &self,
        node: &Node,
        entries: &[super::tree::Entry],
        schema: &Json,
        problems: &mut Vec<Problem>,
    ) {
        let properties = schema.get("properties").and_then(Json::as_object);
        let closed = schema.get("additionalProperties") == Some(&Json::Bool(false));
        for entry in entries {
            match properties.and_then(|p| p.get(&entry.key)) {
                Some(field) => self.check_at(&entry.value, field, problems),
                None if closed => {
                    let known: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    problems.push(Problem {
                        span: entry.key_span.clone(),
                        message: format!(
                            "unknown key `{}`; expected one of {}{}",
                            entry.key,
                            quoted_list(known.iter().copied()),
                            did_you_mean(&entry.key, known.iter().copied())
                        ),
                    });
                }
                None => {}
            }
        }
        let required = schema.get("required").and_then(Json::as_array);
        for key in required.into_iter().flatten().filter_map(Json::as_str) {
            if !entries.iter().any(|e| e.key == key) {
                let span = entries
                    .first()
                    .map_or(node.span.clone(), |e| e.key_span.clone());
                problems.push(Problem {
                    span,
                    message: format!("this entry needs `{key}`"),
                });
            }
        }
    }

    fn check_constant(&self, node: &Node, allowed: &[Allowed], problems: &mut Vec<Problem>) {
        let names = || allowed.iter().map(|a| a.name.as_str());
        match node.as_str() {
            Some(value) if names().any(|n| n == value) => {}
            Some(value) if self.lenient_strings || node_kind(node) == "string" => {
                problems.push(Problem {
                    span: node.span.clone(),
                    message: format!(
                        "unknown value `{value}`; expected one of {}{}",
                        quoted_list(names()),
                        did_you_mean(value, names())
                    ),
                })
            }
            _ => problems.push(Problem {
                span: node.span.clone(),
                message: format!(
                    "expected one of {}, found {}",
                    quoted_list(names()),
                    node_kind(node)
                ),
            }),
        }
    }

    /// Whether the node is of (one of) the schema's `type`s.
    fn fits_type(&self, node: &Node, schema: &Json) -> bool {
        let types: Vec<&str> = match schema.get("type") {
            Some(Json::String(t)) => vec![t.as_str()],
            Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
            // A set of constants (a preset name) is text.
            None if self.is_constant_set(schema) => vec!["string"],
            _ => return true,
        };
        let kind = node_kind(node);
        types.iter().any(|t| {
            *t == kind
                || (*t == "number" && kind == "integer")
                || (*t == "string" && self.lenient_strings && is_scalar_not_null(node))
        })
    }

    fn type_problem(&self, node: &Node, choices: &[Json]) -> Problem {
        let mut wanted: Vec<String> = Vec::new();
        for choice in choices {
            let choice = self.resolve(choice);
            match choice.get("type") {
                Some(Json::String(t)) => wanted.push(t.clone()),
                Some(Json::Array(ts)) => {
                    wanted.extend(ts.iter().filter_map(Json::as_str).map(str::to_string))
                }
                _ => {}
            }
        }
        wanted.retain(|t| t != "null");
        wanted.dedup();
        let wanted: Vec<String> = wanted.iter().map(|t| type_name(t).to_string()).collect();
        Problem {
            span: node.span.clone(),
            message: format!(
                "expected {}, found {}",
                wanted.join(" or "),
                type_name(node_kind(node))
            ),
        }
    }
}

/// `minimum`/`maximum` of an integer (ports are 0–65535).
fn check_range(node: &Node, schema: &Json, problems: &mut Vec<Problem>) {
    let Some(number) = node.scalar().and_then(|s| s.text.parse::<f64>().ok()) else {
        return;
    };
    let below = schema
        .get("minimum")
        .and_then(Json::as_f64)
        .is_some_and(|m| number < m);
    let above = schema
        .get("maximum")
        .and_then(Json::as_f64)
        .is_some_and(|m| number > m);
    if below || above {
        problems.push(Problem {
            span: node.span.clone(),
            message: format!(
                "{number} is out of range ({}–{})",
                schema.get("minimum").unwrap_or(&Json::Null),
                schema.get("maximum").unwrap_or(&Json::Null)
            ),
        });
    }
}

fn alternatives(node: &Json) -> &[Json] {
    node.get("anyOf")
        .or_else(|| node.get("oneOf"))
        .and_then(Json::as_array)
        .map_or(&[], Vec::as_slice)
}

fn is_scalar_not_null(node: &Node) -> bool {
    node.scalar().is_some_and(|s| s.kind != ScalarKind::Null)
}

/// The JSON Schema type name of a node.
fn node_kind(node: &Node) -> &'static str {
    match &node.value {
        Value::Map(_) => "object",
        Value::List(_) => "array",
        Value::Scalar(s) => match s.kind {
            ScalarKind::String | ScalarKind::Plain => "string",
            ScalarKind::Number if !s.text.contains(['.', 'e', 'E']) => "integer",
            ScalarKind::Number => "number",
            ScalarKind::Bool => "boolean",
            ScalarKind::Null => "null",
        },
    }
}

/// What a user calls a JSON Schema type.
fn type_name(kind: &str) -> &str {
    match kind {
        "object" => "a map of keys",
        "array" => "a list",
        "string" => "text",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "nothing",
        other => other,
    }
}

/// "; did you mean `x`?" when a candidate is close to `word`, as `kbridge-config` suggests
/// for launch configurations.
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    closest(word, candidates).map_or_else(String::new, |c| format!("; did you mean `{c}`?"))
}

/// The candidate closest to `word`, if it is close enough to be what was meant.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .min()
        .filter(|(distance, _)| *distance <= 2.max(word.len() / 3))
        .map(|(_, candidate)| candidate)
}

/// `` `a`, `b`, `c` ``.
pub fn quoted_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsp::position::LineIndex;

    fn problems(text: &str) -> Vec<(String, String)> {
        let root = crate::lsp::yaml::parse(text, &LineIndex::new(text))
            .expect("yaml")
            .expect("document");
        Schema::local_process_config()
            .check(&root)
            .into_iter()
            .map(|p| (text[p.span].to_string(), p.message))
            .collect()
    }

    #[test]
    fn unknown_keys_values_and_types_are_found_where_they_are() {
        let found = problems(
            "version: 0.1\nvolumeMount: []\nenableFeatures: [Probe, LifecycleHooks]\nenv:\n  - name: A\n    valeu: x\n",
        );
        // `value` is not required on its own: `rewritePath: false` may stand instead, which
        // the parser checks (and the server shows once the keys are right).
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, "volumeMount");
        assert!(
            found[0].1.contains("did you mean `volumeMounts`?"),
            "{found:?}"
        );
        assert_eq!(found[1].0, "Probe");
        assert!(found[1].1.contains("did you mean `Probes`?"), "{found:?}");
        assert_eq!(found[2].0, "valeu");
        assert!(found[2].1.contains("did you mean `value`?"), "{found:?}");
        let found = problems("env: {A: b}\nvolumeMounts:\n  - name: [x]\n");
        assert_eq!(found[0].0, "{A: b}");
        assert!(
            found[0].1.contains("expected a list, found a map"),
            "{found:?}"
        );
        assert!(
            found[1].1.contains("expected text, found a list"),
            "{found:?}"
        );
    }

    #[test]
    fn documentation_and_allowed_values_come_from_the_types() {
        let schema = Schema::local_process_config();
        let doc = schema
            .key_doc(&[
                Step::Key("volumeMounts".into()),
                Step::Index(0),
                Step::Key("localPath".into()),
            ])
            .expect("doc");
        assert!(doc.contains("Local directory"), "{doc}");
        let features = schema.values(&[Step::Key("enableFeatures".into()), Step::Index(0)]);
        assert_eq!(features.len(), 3);
        let bridge = Schema::bridge_block();
        assert!(bridge.keys(&[]).iter().any(|k| k.name == "namespace"));
        assert!(bridge
            .values(&[Step::Key("hosts".into())])
            .iter()
            .any(|v| v.name == "namespace"));
    }
}
