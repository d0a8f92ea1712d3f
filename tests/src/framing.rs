//! Blocking `Content-Length` framing, as DAP and LSP share it, for the benchmarks and the
//! echo adapter that talk to a child process over pipes. (The async DAP client of
//! [`crate::dap_client`] reads the same frames with tokio.)

use std::io::{self, BufRead, Write};

/// Reads one frame's body; `Ok(None)` at end of input (or a header block with no
/// `Content-Length`, which ends the conversation as well).
pub fn read_frame(input: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let Some(length) = length else {
        return Ok(None);
    };
    let mut body = vec![0; length];
    input.read_exact(&mut body)?;
    Ok(Some(body))
}

/// Writes `body` as one frame (not flushed: the caller flushes when a burst is done).
pub fn write_frame(output: &mut impl Write, body: &[u8]) -> io::Result<()> {
    write!(output, "Content-Length: {}\r\n\r\n", body.len())?;
    output.write_all(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_of_input_is_none() {
        let mut wire = Vec::new();
        write_frame(&mut wire, br#"{"a":1}"#).expect("write");
        write_frame(&mut wire, b"{}").expect("write");
        let mut input = io::Cursor::new(wire);
        assert_eq!(
            read_frame(&mut input).expect("read").as_deref(),
            Some(&br#"{"a":1}"#[..])
        );
        assert_eq!(
            read_frame(&mut input).expect("read").as_deref(),
            Some(&b"{}"[..])
        );
        assert_eq!(read_frame(&mut input).expect("read"), None);
    }

    #[test]
    fn a_header_block_without_length_ends_the_conversation() {
        let mut input = io::Cursor::new(b"X-Other: 1\r\n\r\n{}".to_vec());
        assert_eq!(read_frame(&mut input).expect("read"), None);
    }
}
