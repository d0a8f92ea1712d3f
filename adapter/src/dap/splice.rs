//! Edits of one top-level field of a JSON object in place, leaving every other byte as
//! it was. The proxy renumbers `seq` and remaps `request_seq` this way, so field order,
//! unknown fields and number formatting of everything else survive untouched.

use bytes::{Bytes, BytesMut};

/// Replaces the value of top-level `field` with `value` (a JSON number). Returns `None`
/// when the body is not an object or has no such field; the body must be valid JSON,
/// which [`super::Envelope::peek`] has already checked.
pub fn set_number(body: &[u8], field: &str, value: i64) -> Option<Bytes> {
    let (start, end) = find_top_level_value(body, field)?;
    let number = value.to_string();
    let mut out = BytesMut::with_capacity(body.len() + number.len());
    out.extend_from_slice(&body[..start]);
    out.extend_from_slice(number.as_bytes());
    out.extend_from_slice(&body[end..]);
    Some(out.freeze())
}

/// Byte range of the value of top-level `field`, to replace as [`set_number`] does while
/// writing (`FrameWriter::enqueue_replacing`); the same conditions as there.
pub fn value_range(body: &[u8], field: &str) -> Option<std::ops::Range<usize>> {
    find_top_level_value(body, field).map(|(start, end)| start..end)
}

/// Byte range of the value of a top-level key.
fn find_top_level_value(body: &[u8], field: &str) -> Option<(usize, usize)> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(body, i);
        if body.get(i) != Some(&b'"') {
            return None; // `}` of an empty object, or not an object
        }
        let key_end = skip_string(body, i)?;
        let key = &body[i..key_end];
        i = skip_ws(body, key_end);
        if body.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(body, i + 1);
        let value_end = skip_value(body, value_start)?;
        if key_is(key, field) {
            return Some((value_start, value_end));
        }
        i = skip_ws(body, value_end);
        match body.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

/// Whether the quoted JSON string `key` says `field`, escapes (`"s\u0065q"`) included.
fn key_is(key: &[u8], field: &str) -> bool {
    let raw = &key[1..key.len() - 1];
    if raw.contains(&b'\\') {
        serde_json::from_slice::<String>(key).is_ok_and(|k| k == field)
    } else {
        raw == field.as_bytes()
    }
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while matches!(body.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Index just past the string starting at `i` (which is a `"`).
fn skip_string(body: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match body.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Index just past the value starting at `i`.
fn skip_value(body: &[u8], mut i: usize) -> Option<usize> {
    match body.get(i)? {
        b'"' => skip_string(body, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match body.get(i)? {
                    b'"' => {
                        i = skip_string(body, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            while !matches!(
                body.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_top_level_field() {
        let body = br#"{"body":{"seq":99,"s":"\"seq\":1"},"seq" : 0,"zeta":1.50,"type":"event"}"#;
        let out = set_number(body, "seq", 42).expect("seq present");
        assert_eq!(
            &out[..],
            br#"{"body":{"seq":99,"s":"\"seq\":1"},"seq" : 42,"zeta":1.50,"type":"event"}"#
        );
    }

    /// Found with the `dap_envelope` fuzz target's check: a key spelled with an escape is
    /// the same key to a JSON reader, and was left with its old number.
    #[test]
    fn finds_a_key_written_with_escapes() {
        let body = br#"{"s\u0065q":1,"type":"event","event":"x","\"seq\"":2}"#;
        let out = set_number(body, "seq", 9).expect("seq present");
        assert_eq!(
            &out[..],
            br#"{"s\u0065q":9,"type":"event","event":"x","\"seq\"":2}"#
        );
    }

    #[test]
    fn missing_field_or_non_object_gives_none() {
        assert!(set_number(br#"{"a":[1,2,{"seq":1}]}"#, "seq", 1).is_none());
        assert!(set_number(b"[1]", "seq", 1).is_none());
        assert!(set_number(b"{}", "seq", 1).is_none());
    }
}
