//! Undoing only what is still kbridge's: a three-way merge of one container.
//!
//! A session replaces a container of a pod template with the agent. While it runs,
//! someone else may change that container — a deploy (`kubectl apply` of the next
//! version), `kubectl set env`, a GitOps controller. Putting the saved original back
//! would silently revert their change. Instead, with three versions of the container —
//! the **original** (saved at swap), the **agent** kbridge put in, and the **current**
//! one — restore takes, field by field:
//!
//! - the original's value where the current one is still what kbridge set (or what the
//!   API server defaulted from it),
//! - the current value where someone else set it.
//!
//! Environment variables are merged the same way one by one (by name): kbridge's own
//! `KBRIDGE_*` variables go, a variable someone changed or added stays.
//!
//! "Still what kbridge set" is [`ours`]: every field kbridge wrote is there with the
//! same value; fields the API server adds when it defaults a container (a probe's
//! `timeoutSeconds`, a port's `protocol`, `fieldRef.apiVersion`) do not count as changes.

use serde_json::{Map, Value};

/// Container fields the API server fills in when they are not given; when kbridge's
/// agent container left them out, their current values are the server's, not someone's.
const DEFAULTED: &[&str] = &[
    "imagePullPolicy",
    "terminationMessagePath",
    "terminationMessagePolicy",
];

/// Whether `current` is still what kbridge wrote as `written`: every field of `written`
/// is in `current` with the same value (recursively); fields only in `current` are the
/// API server's defaults. A `null` in `written` means "absent".
pub fn ours(written: &Value, current: Option<&Value>) -> bool {
    match (written, current) {
        (Value::Null, None | Some(Value::Null)) => true,
        (_, None) => false,
        (Value::Object(w), Some(Value::Object(c))) => w.iter().all(|(k, v)| ours(v, c.get(k))),
        (Value::Array(w), Some(Value::Array(c))) => {
            w.len() == c.len() && w.iter().zip(c).all(|(w, c)| ours(w, Some(c)))
        }
        (w, Some(c)) => w == c,
    }
}

/// The container to put back: `original` where `current` is still `agent` (see the
/// module doc), `current` where someone else changed it.
pub fn merge_container(original: &Value, agent: &Value, current: &Value) -> Value {
    let empty = Map::new();
    let o = original.as_object().unwrap_or(&empty);
    let a = agent.as_object().unwrap_or(&empty);
    let c = current.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    let keys: Vec<&String> = o.keys().chain(a.keys()).chain(c.keys()).collect();
    for key in keys {
        if out.contains_key(key) || key == "env" {
            continue;
        }
        let theirs = match a.get(key) {
            Some(written) => !ours(written, c.get(key)),
            // kbridge left the field out: a current value is the server's default, or
            // someone's.
            None => c.contains_key(key) && !DEFAULTED.contains(&key.as_str()),
        };
        let pick = if theirs { c.get(key) } else { o.get(key) };
        if let Some(value) = pick {
            out.insert(key.clone(), value.clone());
        }
    }
    let env = merge_env(o.get("env"), a.get("env"), c.get("env"));
    if !env.is_empty() {
        out.insert("env".into(), Value::Array(env));
    }
    Value::Object(out)
}

/// [`merge_container`] for the `env` list, variable by variable: the original's order,
/// then variables someone else added.
fn merge_env(
    original: Option<&Value>,
    agent: Option<&Value>,
    current: Option<&Value>,
) -> Vec<Value> {
    let list = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let (original, agent, current) = (list(original), list(agent), list(current));
    let find = |list: &[Value], name: &str| -> Option<Value> {
        list.iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            .cloned()
    };
    let name_of = |e: &Value| e.get("name").and_then(Value::as_str).map(str::to_string);
    let mut merged = Vec::new();
    for entry in &original {
        let Some(name) = name_of(entry) else { continue };
        let now = find(&current, &name);
        let still_ours = find(&agent, &name).is_some_and(|w| ours(&w, now.as_ref()));
        match (still_ours, now) {
            (true, _) => merged.push(entry.clone()),
            // Someone removed it: keep it removed.
            (false, None) => {}
            (false, Some(theirs)) => merged.push(theirs),
        }
    }
    for entry in &current {
        let Some(name) = name_of(entry) else { continue };
        if find(&original, &name).is_some() {
            continue;
        }
        let kbridges = find(&agent, &name).is_some_and(|w| ours(&w, Some(entry)));
        if !kbridges {
            merged.push(entry.clone());
        }
    }
    merged
}

/// What someone else changed in a container kbridge wrote as `agent`: field names, and
/// `env NAME` for variables, for the user.
pub fn changes(agent: &Value, current: &Value) -> Vec<String> {
    let empty = Map::new();
    let a = agent.as_object().unwrap_or(&empty);
    let c = current.as_object().unwrap_or(&empty);
    let mut changed = Vec::new();
    for (key, written) in a {
        if key == "env" || ours(written, c.get(key)) {
            continue;
        }
        changed.push(match (key.as_str(), c.get(key)) {
            ("image", Some(Value::String(image))) => format!("image (now {image})"),
            _ => key.clone(),
        });
    }
    for key in c.keys() {
        if !a.contains_key(key) && !DEFAULTED.contains(&key.as_str()) {
            changed.push(key.clone());
        }
    }
    let no_env = Vec::new();
    let env = |v: &Map<String, Value>| {
        v.get("env")
            .and_then(Value::as_array)
            .unwrap_or(&no_env)
            .clone()
    };
    let (a_env, c_env) = (env(a), env(c));
    let name_of = |e: &Value| {
        e.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    for entry in &c_env {
        let name = name_of(entry);
        let written = a_env.iter().find(|w| name_of(w) == name);
        if !written.is_some_and(|w| ours(w, Some(entry))) {
            changed.push(format!("env {name}"));
        }
    }
    for entry in &a_env {
        let name = name_of(entry);
        if !c_env.iter().any(|e| name_of(e) == name) {
            changed.push(format!("env {name} (removed)"));
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn original() -> Value {
        json!({
            "name": "api",
            "image": "todo-api:1.0",
            "imagePullPolicy": "IfNotPresent",
            "args": ["--serve"],
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "MODE", "value": "prod"}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "timeoutSeconds": 1},
            "terminationMessagePath": "/dev/termination-log"
        })
    }

    /// What kbridge writes: the original's env plus its own, its image and probe, no args.
    fn agent() -> Value {
        json!({
            "name": "api",
            "image": "kbridge/agent:dev",
            "env": [
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "MODE", "value": "prod"},
                {"name": "KBRIDGE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            ],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 9091}, "periodSeconds": 2}
        })
    }

    /// The agent as the API server keeps it: with its defaults filled in.
    fn defaulted(mut agent: Value) -> Value {
        agent["imagePullPolicy"] = json!("IfNotPresent");
        agent["terminationMessagePath"] = json!("/dev/termination-log");
        agent["readinessProbe"]["timeoutSeconds"] = json!(1);
        agent["readinessProbe"]["httpGet"]["scheme"] = json!("HTTP");
        agent["env"][2]["valueFrom"]["fieldRef"]["apiVersion"] = json!("v1");
        agent
    }

    #[test]
    fn untouched_the_original_comes_back_exactly() {
        let current = defaulted(agent());
        assert!(ours(&agent(), Some(&current)));
        assert_eq!(merge_container(&original(), &agent(), &current), original());
        assert!(
            changes(&agent(), &current).is_empty(),
            "{:?}",
            changes(&agent(), &current)
        );
    }

    #[test]
    fn a_deploy_of_a_new_image_and_env_is_kept() {
        let mut current = defaulted(agent());
        current["image"] = json!("todo-api:2.0");
        current["env"][0]["value"] = json!("debug-v2");
        let merged = merge_container(&original(), &agent(), &current);
        assert_eq!(merged["image"], "todo-api:2.0");
        assert_eq!(
            merged["env"],
            json!([{"name": "LOG_LEVEL", "value": "debug-v2"}, {"name": "MODE", "value": "prod"}]),
            "kbridge's variable goes, theirs stays"
        );
        assert_eq!(
            merged["args"],
            json!(["--serve"]),
            "what kbridge removed comes back"
        );
        assert_eq!(merged["readinessProbe"], original()["readinessProbe"]);
        assert_eq!(
            changes(&agent(), &current),
            ["image (now todo-api:2.0)", "env LOG_LEVEL"]
        );
    }

    #[test]
    fn added_and_removed_variables_and_fields_stay_so() {
        let mut current = defaulted(agent());
        current["env"] = json!([
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "KBRIDGE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}},
            {"name": "FEATURE_X", "value": "on"}
        ]);
        current["command"] = json!(["/bin/new"]);
        let merged = merge_container(&original(), &agent(), &current);
        assert_eq!(
            merged["env"],
            json!([{"name": "LOG_LEVEL", "value": "info"}, {"name": "FEATURE_X", "value": "on"}])
        );
        assert_eq!(merged["command"], json!(["/bin/new"]));
        assert_eq!(merged["image"], "todo-api:1.0");
        assert_eq!(
            changes(&agent(), &current),
            ["command", "env FEATURE_X", "env MODE (removed)"]
        );
    }

    #[test]
    fn ours_ignores_defaults_but_not_changes() {
        assert!(ours(&json!({"a": 1}), Some(&json!({"a": 1, "b": 2}))));
        assert!(!ours(&json!({"a": 1}), Some(&json!({"a": 2}))));
        assert!(!ours(&json!([1, 2]), Some(&json!([1]))));
        assert!(!ours(&json!({"a": 1}), None));
        assert!(ours(&Value::Null, None));
    }
}
