//! Fuzz target `dap_envelope`: what the proxy reads from and edits in a DAP message body
//! (`adapter/src/dap/envelope.rs`, `adapter/src/dap/splice.rs`).
//!
//! Properties checked for every input body:
//! - `Envelope::peek` and `salvage_request` never panic;
//! - a body `peek` accepts is a JSON object whose `type`, `seq`, `command`, `event`,
//!   `request_seq` and `success` are what `peek` reported;
//! - in such a body, `set_number` finds the top-level `seq` (and `request_seq` when there
//!   is one) and replaces its value only: the result still peeks, has the new number, and
//!   every other field is unchanged; and `FrameWriter::enqueue_replacing` with the range
//!   `value_range` finds writes exactly the body `set_number` builds.

#![no_main]

use kbridge_fuzz::block_on;
use kbridge_fuzz::dap::codec::{decimal, Frame, FrameReader, FrameWriter};
use kbridge_fuzz::dap::envelope::{salvage_request, Envelope, MessageKind};
use kbridge_fuzz::dap::splice::{set_number, value_range};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// Whether serde_json refused only what JSON's grammar allows but `serde_json::Value`
/// cannot hold: a number beyond `f64`, an escaped lone surrogate (`"\ud800"`). `peek`
/// skips such values, as it should; the text is made UTF-8 first, so a bad code point can
/// only come from an escape.
fn valid_but_unreadable(error: &serde_json::Error) -> bool {
    let message = error.to_string();
    [
        "number out of range",
        "surrogate",
        "hex escape",
        "unicode code point",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// The body as a JSON object (read as editors read DAP: bytes that are not UTF-8 as
/// U+FFFD, which is what `peek` does too), or `None` for valid JSON that
/// `serde_json::Value` cannot hold.
fn object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_str(&String::from_utf8_lossy(body)) {
        Ok(Value::Object(map)) => Some(map),
        Err(e) if valid_but_unreadable(&e) => None,
        other => panic!("peek accepted a body serde_json reads as {other:?}"),
    }
}

fn check_set_number(body: &[u8], field: &str, value: i64) {
    let before = object(body).expect("read before");
    let out = set_number(body, field, value)
        .unwrap_or_else(|| panic!("set_number found no top-level `{field}`"));
    let range = value_range(body, field).expect("value_range finds what set_number does");
    let mut wire = Vec::new();
    let mut digits = [0u8; 20];
    let mut writer = FrameWriter::new(&mut wire);
    block_on(writer.enqueue_replacing(body, range, decimal(value, &mut digits)))
        .expect("in-memory write");
    block_on(writer.flush()).expect("in-memory write");
    drop(writer);
    match block_on(FrameReader::new(&wire[..]).next_frame()).expect("in-memory read") {
        Some(Frame::Body(written)) => assert_eq!(&written[..], &out[..], "written while replacing"),
        other => panic!("read back {other:?}"),
    }
    let after_envelope = Envelope::peek(&out).expect("the edited body still peeks");
    let mut after = object(&out).expect("read before, so readable after");
    assert_eq!(
        after.get(field),
        Some(&Value::from(value)),
        "`{field}` after"
    );
    let mut before = before;
    before.remove(field);
    after.remove(field);
    assert_eq!(after, before, "fields other than `{field}` changed");
    let expected = Envelope::peek(body).expect("peeked before");
    match field {
        "seq" => assert_eq!(after_envelope.seq, value),
        _ => assert_eq!(after_envelope.request_seq, Some(value)),
    }
    assert_eq!(after_envelope.kind, expected.kind);
    assert_eq!(after_envelope.command, expected.command);
}

fuzz_target!(|data: &[u8]| {
    let _ = salvage_request(data);
    let Ok(envelope) = Envelope::peek(data) else {
        return;
    };
    let Some(map) = object(data) else {
        return;
    };
    let kind = match envelope.kind {
        MessageKind::Request => "request",
        MessageKind::Response => "response",
        MessageKind::Event => "event",
    };
    assert_eq!(map.get("type").and_then(Value::as_str), Some(kind));
    assert_eq!(map.get("seq").and_then(Value::as_i64), Some(envelope.seq));
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
    assert_eq!(text("command"), envelope.command);
    assert_eq!(text("event"), envelope.event);
    assert_eq!(
        map.get("request_seq").and_then(Value::as_i64),
        envelope.request_seq
    );
    assert_eq!(
        map.get("success").and_then(Value::as_bool),
        envelope.success
    );

    let value = (envelope.seq ^ 0x5a5a).wrapping_mul(31);
    check_set_number(data, "seq", value);
    if envelope.request_seq.is_some() {
        check_set_number(data, "request_seq", value.wrapping_add(1));
    }
});
