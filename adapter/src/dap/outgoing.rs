//! Messages the proxy writes itself. They are built without `seq`; the client side of
//! the proxy numbers them with everything else it sends, so numbers never collide.

use crate::error_kind::ErrorKind;
use serde_json::{json, Value};

/// A successful response to a client request.
pub fn response(request_seq: i64, command: &str, body: Value) -> Value {
    json!({"type": "response", "request_seq": request_seq, "success": true, "command": command, "body": body})
}

/// A failed response whose message the editor shows to the user; `kind` gives the
/// error's stable id (`body.error.id`) and its name (`body.error.variables.kind`).
pub fn error_response(request_seq: i64, command: &str, message: &str, kind: ErrorKind) -> Value {
    json!({
        "type": "response", "request_seq": request_seq, "success": false, "command": command,
        "message": message,
        "body": {"error": {
            "id": kind.id(), "format": escape_format(message), "showUser": true,
            "variables": {"kind": kind.name()}
        }}
    })
}

/// An event.
pub fn event(name: &str, body: Value) -> Value {
    json!({"type": "event", "event": name, "body": body})
}

/// An `output` event; categories used: `console`, `important`, `stdout`, `stderr`.
pub fn output(category: &str, text: &str) -> Value {
    let mut text = text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    event("output", json!({"category": category, "output": text}))
}

/// `progressStart`.
pub fn progress_start(id: &str, title: &str, message: &str) -> Value {
    event(
        "progressStart",
        json!({"progressId": id, "title": title, "message": message, "cancellable": false}),
    )
}

/// `progressUpdate`.
pub fn progress_update(id: &str, message: &str, percentage: Option<u8>) -> Value {
    let mut body = json!({"progressId": id, "message": message});
    if let Some(p) = percentage {
        body["percentage"] = json!(p);
    }
    event("progressUpdate", body)
}

/// `progressEnd`.
pub fn progress_end(id: &str, message: &str) -> Value {
    event("progressEnd", json!({"progressId": id, "message": message}))
}

/// `terminated`.
pub fn terminated() -> Value {
    event("terminated", json!({}))
}

/// `capabilities` with the capabilities that changed.
pub fn capabilities(changed: serde_json::Map<String, Value>) -> Value {
    event("capabilities", json!({"capabilities": changed}))
}

/// DAP error `format` strings treat `{name}` as a variable: escape literal braces.
fn escape_format(message: &str) -> String {
    message.replace('{', "{{").replace('}', "}}")
}

/// Serialises a proxy-built message with the given `seq` placed first, as adapters do.
pub fn with_seq(message: &Value, seq: i64) -> Vec<u8> {
    let mut ordered = serde_json::Map::new();
    ordered.insert("seq".into(), json!(seq));
    if let Value::Object(fields) = message {
        for (k, v) in fields.iter().filter(|(k, _)| *k != "seq") {
            ordered.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&Value::Object(ordered)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_escapes_braces_and_shows_user() {
        let msg = error_response(4, "launch", "bad {key}", ErrorKind::Denied);
        assert_eq!(msg["body"]["error"]["id"], 7302);
        assert_eq!(msg["body"]["error"]["variables"]["kind"], "denied");
        assert_eq!(msg["body"]["error"]["format"], "bad {{key}}");
        assert_eq!(msg["body"]["error"]["showUser"], true);
        let bytes = with_seq(&msg, 9);
        assert!(bytes.starts_with(br#"{"seq":9,"type":"response""#));
        let renumbered = with_seq(&json!({"seq": 3, "type": "request"}), 12);
        assert_eq!(renumbered, br#"{"seq":12,"type":"request"}"#);
    }
}
