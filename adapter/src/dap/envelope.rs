//! A cheap look at a message: the envelope fields the proxy routes on, read without
//! building the whole JSON tree (unknown fields are skipped, never kept or changed).

use serde::Deserialize;

/// The DAP message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A request (from the client, or a reverse request from the adapter).
    Request,
    /// A response to a request.
    Response,
    /// An event.
    Event,
}

/// The fields of a message the proxy decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender's sequence number.
    pub seq: i64,
    /// Request, response or event.
    pub kind: MessageKind,
    /// `command` of requests and responses.
    pub command: Option<String>,
    /// `event` of events.
    pub event: Option<String>,
    /// `request_seq` of responses.
    pub request_seq: Option<i64>,
    /// `success` of responses.
    pub success: Option<bool>,
}

/// Why a body is not a DAP message.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON, or not an object.
    #[error("DAP message is not a JSON object: {0}")]
    NotJson(#[from] serde_json::Error),
    /// A JSON object without the protocol's required fields.
    #[error("DAP message lacks {0}")]
    Missing(&'static str),
    /// `type` is not request, response or event.
    #[error("DAP message has unknown type `{0}`")]
    UnknownType(String),
}

#[derive(Deserialize)]
struct RawEnvelope {
    seq: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
    command: Option<String>,
    event: Option<String>,
    request_seq: Option<i64>,
    success: Option<bool>,
}

impl Envelope {
    /// Reads the envelope of a message body; the whole body is checked to be JSON.
    pub fn peek(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        // JSON is UTF-8, but a debugger may put raw bytes of a program's output in a
        // string. The proxy forwards bodies unchanged, so such a message is read as the
        // editor will read it — invalid bytes as U+FFFD — rather than dropped: dropping a
        // response would leave the editor waiting forever. (serde_json does not check the
        // strings it skips, so the replacement is made first, for the whole body.)
        let raw: RawEnvelope = match std::str::from_utf8(body) {
            Ok(text) => serde_json::from_str(text)?,
            Err(_) => serde_json::from_str(&String::from_utf8_lossy(body))?,
        };
        let kind = match raw.kind.as_deref() {
            Some("request") => MessageKind::Request,
            Some("response") => MessageKind::Response,
            Some("event") => MessageKind::Event,
            Some(other) => return Err(EnvelopeError::UnknownType(other.to_string())),
            None => return Err(EnvelopeError::Missing("`type`")),
        };
        let envelope = Envelope {
            seq: raw.seq.ok_or(EnvelopeError::Missing("`seq`"))?,
            kind,
            command: raw.command,
            event: raw.event,
            request_seq: raw.request_seq,
            success: raw.success,
        };
        match kind {
            MessageKind::Request if envelope.command.is_none() => {
                Err(EnvelopeError::Missing("`command` in a request"))
            }
            MessageKind::Response if envelope.request_seq.is_none() => {
                Err(EnvelopeError::Missing("`request_seq` in a response"))
            }
            MessageKind::Event if envelope.event.is_none() => {
                Err(EnvelopeError::Missing("`event` in an event"))
            }
            _ => Ok(envelope),
        }
    }

    /// Whether this is a request with the given command.
    pub fn is_request(&self, command: &str) -> bool {
        self.kind == MessageKind::Request && self.command.as_deref() == Some(command)
    }

    /// Whether this is an event with the given name.
    pub fn is_event(&self, event: &str) -> bool {
        self.kind == MessageKind::Event && self.event.as_deref() == Some(event)
    }
}

/// What can still be told of a broken message: its `seq` and `command`, if a request's
/// text is readable enough. Used to answer a malformed request with an error response.
pub fn salvage_request(body: &[u8]) -> Option<(i64, String)> {
    let text = String::from_utf8_lossy(body);
    if !text.contains("\"request\"") {
        return None;
    }
    let seq = number_after(&text, "\"seq\"")?;
    let command = string_after(&text, "\"command\"")?;
    Some((seq, command))
}

fn value_start<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start().strip_prefix(':')?;
    Some(rest.trim_start())
}

fn number_after(text: &str, key: &str) -> Option<i64> {
    let rest = value_start(text, key)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '-')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn string_after(text: &str, key: &str) -> Option<String> {
    let rest = value_start(text, key)?.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_requests_responses_events() {
        let request = Envelope::peek(
            br#"{"seq":3,"type":"request","command":"launch","arguments":{"x":[1,{"y":2}]}}"#,
        )
        .expect("request");
        assert!(request.is_request("launch"));
        let response = Envelope::peek(
            br#"{"type":"response","seq":0,"request_seq":3,"success":true,"command":"launch"}"#,
        )
        .expect("response");
        assert_eq!(response.request_seq, Some(3));
        assert_eq!(response.success, Some(true));
        let event =
            Envelope::peek(br#"{"seq":1,"type":"event","event":"debugpySockets","body":{}}"#)
                .expect("custom event");
        assert!(event.is_event("debugpySockets"));
    }

    #[test]
    fn rejects_what_is_not_a_message() {
        assert!(matches!(
            Envelope::peek(b"[1,2]"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert!(matches!(
            Envelope::peek(br#"{"seq":1}"#),
            Err(EnvelopeError::Missing(_))
        ));
        assert!(matches!(
            Envelope::peek(br#"{"seq":1,"type":"notice"}"#),
            Err(EnvelopeError::UnknownType(_))
        ));
        assert!(Envelope::peek(br#"{"seq":1,"type":"request"}"#).is_err());
    }

    /// Found by the `dap_envelope` fuzz target: bytes that are not UTF-8 inside a value the
    /// envelope skips were read as JSON, but inside a value it keeps they were not. Now
    /// both are read as an editor reads them (U+FFFD), and the body is forwarded as is.
    #[test]
    fn bodies_with_bytes_that_are_not_utf8_are_read_as_editors_read_them() {
        let body =
            b"{\"seq\":1,\"type\":\"event\",\"event\":\"output\",\"body\":{\"output\":\"\xff\"}}";
        let envelope = Envelope::peek(body).expect("forwarded, not dropped");
        assert_eq!(envelope.event.as_deref(), Some("output"));
        let body = b"{\"seq\":1,\"type\":\"request\",\"command\":\"x\xc3\"}";
        assert_eq!(
            Envelope::peek(body).expect("read").command.as_deref(),
            Some("x\u{fffd}")
        );
        // Bytes that are not UTF-8 outside a string are still not JSON.
        assert!(matches!(
            Envelope::peek(b"{\"seq\":1,\"type\":\"event\"\xff}"),
            Err(EnvelopeError::NotJson(_))
        ));
    }

    #[test]
    fn salvages_seq_and_command_from_broken_requests() {
        let broken = br#"{"seq": 12, "type": "request", "command": "evaluate", "arguments": {"#;
        assert_eq!(salvage_request(broken), Some((12, "evaluate".to_string())));
        assert_eq!(salvage_request(b"garbage"), None);
    }
}
