//! `Content-Length` framing. The reader never panics on input: a bad header, an
//! oversized length or a truncated body yields a [`FrameError`] and the reader
//! resynchronises on the next `Content-Length:` header, so the next well-formed
//! message still gets through.

use bytes::{Buf, Bytes, BytesMut};
use std::ops::Range;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bodies larger than this are refused; no DAP message comes near it.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// A header block longer than this is garbage, not a header.
const MAX_HEADER_BYTES: usize = 8 * 1024;
const HEADER_NAME: &[u8] = b"content-length:";

/// Why some bytes on the wire were not a message. The first field names the protocol
/// the reader speaks (`DAP`, `LSP`: both use this framing), so messages say which it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header block had no usable `Content-Length`.
    #[error(
        "malformed {0} header {1:?}: expected `Content-Length: <bytes>` followed by an empty line"
    )]
    BadHeader(&'static str, String),
    /// The announced body is larger than [`MAX_BODY_BYTES`].
    #[error("{0} message of {1} bytes refused (limit {MAX_BODY_BYTES} bytes)")]
    TooLarge(&'static str, u64),
    /// Bytes that are not a header at all were skipped.
    #[error("skipped {1} bytes of garbage between {0} messages")]
    Garbage(&'static str, usize),
}

/// One read result: a complete body, or a framing error the reader recovered from.
#[derive(Debug)]
pub enum Frame {
    /// A complete message body (not yet checked to be JSON).
    Body(Bytes),
    /// A framing problem; reading can go on.
    Error(FrameError),
}

/// Reads `Content-Length` frames (DAP's, or LSP's: [`FrameReader::for_protocol`]) from a
/// byte stream.
pub struct FrameReader<R> {
    inner: R,
    /// The protocol named in errors.
    protocol: &'static str,
    buf: BytesMut,
    /// Set after an oversized length: discard input until the next header.
    resyncing: bool,
    eof: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a byte stream of DAP messages.
    pub fn new(inner: R) -> Self {
        Self::for_protocol(inner, "DAP")
    }

    /// Wraps a byte stream of `protocol`'s messages (`"LSP"`), named so in errors.
    pub fn for_protocol(inner: R, protocol: &'static str) -> Self {
        FrameReader {
            inner,
            protocol,
            buf: BytesMut::with_capacity(16 * 1024),
            resyncing: false,
            eof: false,
        }
    }

    /// Puts bytes back in front of the unread input. Used when a body turned out to hold
    /// the start of the next message (its sender announced more bytes than it wrote).
    pub fn unread(&mut self, bytes: &[u8]) {
        let mut joined = BytesMut::with_capacity(bytes.len() + self.buf.len());
        joined.extend_from_slice(bytes);
        joined.extend_from_slice(&self.buf);
        self.buf = joined;
    }

    /// The next frame, or `None` at a clean end of input. Bytes left over at the end
    /// (a truncated message) are reported once as an error before `None`.
    pub async fn next_frame(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.parse_buffered() {
                return Ok(Some(frame));
            }
            if self.eof {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let leftover = self.buf.len();
                self.buf.clear();
                return Ok(Some(Frame::Error(FrameError::Garbage(
                    self.protocol,
                    leftover,
                ))));
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                self.eof = true;
            }
        }
    }

    /// Tries to take one frame out of the buffer without reading more.
    fn parse_buffered(&mut self) -> Option<Frame> {
        if self.resyncing {
            match find_header_start(&self.buf, 0) {
                Some(at) => {
                    self.buf.advance(at);
                    self.resyncing = false;
                }
                None => {
                    // Keep a tail that might be the start of a header split across reads.
                    let keep = HEADER_NAME.len().min(self.buf.len());
                    self.buf.advance(self.buf.len() - keep);
                    return None;
                }
            }
        }
        match header_shape(&self.buf) {
            HeaderShape::NeedMore if self.buf.len() <= MAX_HEADER_BYTES => return None,
            HeaderShape::Header => {}
            HeaderShape::NeedMore | HeaderShape::Garbage => {
                // Not a header: skip to the next `Content-Length:`. When none is buffered
                // yet, look for it alone from here on (keeping a tail that may be the
                // start of one split across reads), so that where reading resumes does
                // not depend on how the bytes arrived.
                let skip = match find_header_start(&self.buf, 1) {
                    Some(at) => at,
                    None => {
                        self.resyncing = true;
                        self.buf.len().saturating_sub(HEADER_NAME.len())
                    }
                };
                if skip == 0 {
                    return None;
                }
                self.buf.advance(skip);
                return Some(Frame::Error(FrameError::Garbage(self.protocol, skip)));
            }
        }
        // A header block longer than the limit is refused whether or not its end has
        // arrived yet (without it, the block is longer than what is buffered).
        let header_end = match find(&self.buf, b"\r\n\r\n") {
            Some(end) if end + 4 <= MAX_HEADER_BYTES => end,
            found => {
                if found.is_some() || self.buf.len() >= MAX_HEADER_BYTES {
                    let header = String::from_utf8_lossy(&self.buf[..64]).into_owned();
                    self.buf.advance(1);
                    self.resyncing = true;
                    return Some(Frame::Error(FrameError::BadHeader(self.protocol, header)));
                }
                return None;
            }
        };
        let length = match parse_content_length(self.protocol, &self.buf[..header_end]) {
            Ok(length) => length,
            Err(error) => {
                // Garbage glued to the front of a real header (`noteContent-Length: 9`, or
                // `warning: x` with no line end) spoils the whole block; skip only up to
                // that header so its message still gets through.
                let skip = find_header_start(&self.buf[..header_end], 1).unwrap_or(header_end + 4);
                self.buf.advance(skip);
                return Some(Frame::Error(error));
            }
        };
        if length > MAX_BODY_BYTES as u64 {
            self.buf.advance(header_end + 4);
            self.resyncing = true;
            return Some(Frame::Error(FrameError::TooLarge(self.protocol, length)));
        }
        let length = length as usize;
        let total = header_end + 4 + length;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return None;
        }
        self.buf.advance(header_end + 4);
        Some(Frame::Body(self.buf.split_to(length).freeze()))
    }
}

/// Parses the header block (without its final empty line).
fn parse_content_length(protocol: &'static str, header: &[u8]) -> Result<u64, FrameError> {
    let bad = || FrameError::BadHeader(protocol, String::from_utf8_lossy(header).into_owned());
    let text = std::str::from_utf8(header).map_err(|_| bad())?;
    let mut length = None;
    for line in text.split("\r\n") {
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<u64>().map_err(|_| bad())?);
        }
        // Other headers (Content-Type) are allowed by the spec and ignored.
    }
    length.ok_or_else(bad)
}

enum HeaderShape {
    Header,
    Garbage,
    NeedMore,
}

/// Whether the buffer starts like a header line (`Token-Name:`).
fn header_shape(buf: &[u8]) -> HeaderShape {
    for (i, &byte) in buf.iter().enumerate() {
        match byte {
            b':' if i > 0 => return HeaderShape::Header,
            b'A'..=b'Z' | b'a'..=b'z' => {}
            b'0'..=b'9' | b'-' if i > 0 => {}
            _ => return HeaderShape::Garbage,
        }
    }
    HeaderShape::NeedMore
}

/// Position of the next `Content-Length:` at or after `from`.
fn find_header_start(haystack: &[u8], from: usize) -> Option<usize> {
    if haystack.len() < HEADER_NAME.len() {
        return None;
    }
    (from..=haystack.len() - HEADER_NAME.len())
        .find(|&i| haystack[i..i + HEADER_NAME.len()].eq_ignore_ascii_case(HEADER_NAME))
}

/// Position of the `Content-Length:` inside a body, if the body holds one: the sign that
/// its sender announced more bytes than it wrote.
pub fn find_embedded_header(body: &[u8]) -> Option<usize> {
    find_header_start(body, 0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Frames are gathered in the writer's buffer up to this size before they are written.
const WRITE_BUFFER: usize = 64 * 1024;

/// Writes DAP frames. Frames are gathered in a buffer (no allocation per frame once it has
/// grown) and written with one call when flushed; a body larger than the buffer is written
/// from where it is, not copied.
pub struct FrameWriter<W: AsyncWrite> {
    inner: W,
    buf: Vec<u8>,
}

/// `value` in decimal, in `buf`; returns the digits (with a `-`).
pub fn decimal(value: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = value.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps a byte sink.
    pub fn new(inner: W) -> Self {
        FrameWriter {
            inner,
            buf: Vec::new(),
        }
    }

    /// Writes one message body with its header and flushes it.
    pub async fn send(&mut self, body: &[u8]) -> std::io::Result<()> {
        self.enqueue(body).await?;
        self.flush().await
    }

    /// Writes one message body with its header, leaving it buffered: the proxy flushes
    /// once it has no more input waiting, so a burst of messages costs few syscalls.
    pub async fn enqueue(&mut self, body: &[u8]) -> std::io::Result<()> {
        self.enqueue_replacing(body, 0..0, &[]).await
    }

    /// [`FrameWriter::enqueue`] of `body` with the bytes in `range` replaced by `with` (a
    /// renumbered `seq`), without building the new body first.
    pub async fn enqueue_replacing(
        &mut self,
        body: &[u8],
        range: Range<usize>,
        with: &[u8],
    ) -> std::io::Result<()> {
        let start = range.start.min(body.len());
        let range = start..range.end.clamp(start, body.len());
        let length = body.len() - range.len() + with.len();
        let mut digits = [0u8; 20];
        let length_text = decimal(length as i64, &mut digits);
        self.buf.extend_from_slice(b"Content-Length: ");
        self.buf.extend_from_slice(length_text);
        self.buf.extend_from_slice(b"\r\n\r\n");
        if length < WRITE_BUFFER {
            self.buf.extend_from_slice(&body[..range.start]);
            self.buf.extend_from_slice(with);
            self.buf.extend_from_slice(&body[range.end..]);
            if self.buf.len() >= WRITE_BUFFER {
                self.write_buffered().await?;
            }
            return Ok(());
        }
        // A large body: what is buffered (its header last), then the body from where it is.
        self.buf.extend_from_slice(&body[..range.start]);
        self.buf.extend_from_slice(with);
        self.write_buffered().await?;
        self.inner.write_all(&body[range.end..]).await
    }

    async fn write_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self.inner.write_all(&self.buf).await;
        self.buf.clear();
        written
    }

    /// Sends what [`FrameWriter::enqueue`] buffered.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.write_buffered().await?;
        self.inner.flush().await
    }

    /// Flushes and closes the write side (the peer sees end of input).
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.inner.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &str) -> Vec<u8> {
        format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    }

    async fn read_all(input: Vec<u8>) -> Vec<Frame> {
        let mut reader = FrameReader::new(&input[..]);
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().await.expect("in-memory read") {
            frames.push(frame);
        }
        frames
    }

    fn bodies(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .filter_map(|f| match f {
                Frame::Body(b) => Some(String::from_utf8_lossy(b).into_owned()),
                Frame::Error(_) => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn reads_consecutive_frames_and_extra_headers() {
        let mut input = frame(r#"{"seq":1}"#);
        input.extend(
            b"Content-Type: application/vscode-jsonrpc\r\ncontent-length: 9\r\n\r\n{\"seq\":2}",
        );
        let frames = read_all(input).await;
        assert_eq!(bodies(&frames), [r#"{"seq":1}"#, r#"{"seq":2}"#]);
        assert_eq!(frames.len(), 2);
    }

    #[tokio::test]
    async fn bad_header_is_reported_and_skipped() {
        let mut input = b"Content-Length: abc\r\n\r\n".to_vec();
        input.extend(frame(r#"{"seq":2}"#));
        let frames = read_all(input).await;
        assert!(matches!(
            frames[0],
            Frame::Error(FrameError::BadHeader("DAP", _))
        ));
        assert_eq!(bodies(&frames), [r#"{"seq":2}"#]);
    }

    #[tokio::test]
    async fn errors_name_the_protocol_the_reader_speaks() {
        let input = b"hello\r\nContent-Length: x\r\n\r\n".to_vec();
        let mut reader = FrameReader::for_protocol(&input[..], "LSP");
        let mut messages = Vec::new();
        while let Some(Frame::Error(error)) = reader.next_frame().await.expect("read") {
            messages.push(error.to_string());
        }
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].contains("between LSP messages"), "{messages:?}");
        assert!(
            messages[1].starts_with("malformed LSP header"),
            "{messages:?}"
        );
        assert!(!messages.concat().contains("DAP"), "{messages:?}");
    }

    #[tokio::test]
    async fn garbage_before_a_header_is_skipped() {
        let mut input = b"hello there\r\n".to_vec();
        input.extend(frame(r#"{"seq":3}"#));
        let frames = read_all(input).await;
        assert!(matches!(
            frames[0],
            Frame::Error(FrameError::Garbage("DAP", 13))
        ));
        assert_eq!(bodies(&frames), [r#"{"seq":3}"#]);
    }

    #[tokio::test]
    async fn garbage_glued_to_a_header_costs_only_the_garbage() {
        let mut input = b"warning: no newline".to_vec();
        input.extend(frame(r#"{"seq":7}"#));
        let frames = read_all(input).await;
        assert!(matches!(
            frames[0],
            Frame::Error(FrameError::BadHeader("DAP", _))
        ));
        assert_eq!(bodies(&frames), [r#"{"seq":7}"#]);
    }

    #[tokio::test]
    async fn huge_length_is_refused_then_resynchronised() {
        let mut input = b"Content-Length: 99999999999\r\n\r\n{\"partial\":".to_vec();
        input.extend(frame(r#"{"seq":4}"#));
        let frames = read_all(input).await;
        assert!(matches!(
            frames[0],
            Frame::Error(FrameError::TooLarge("DAP", 99999999999))
        ));
        assert_eq!(bodies(&frames), [r#"{"seq":4}"#]);
    }

    /// Hands out one piece per read, as a pipe does.
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(piece) = self.0.pop_front() {
                buf.put_slice(&piece);
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Found by the `dap_codec` fuzz target: which messages came through depended on how
    /// the bytes arrived. Small reads left a skip over garbage at an arbitrary byte, where
    /// a header-like line could start; and a header block over the limit was refused only
    /// when it arrived in pieces.
    #[tokio::test]
    async fn read_sizes_do_not_change_the_messages() {
        let long_header = format!(
            "Content-Length: 2\r\nX-Pad: {}\r\n\r\n{{}}",
            "p".repeat(MAX_HEADER_BYTES)
        );
        let cases = [
            b"x[Content-Type: a\r\ncontent-length :2\r\n\r\n{}".to_vec(),
            [long_header.into_bytes(), frame(r#"{"seq":8}"#)].concat(),
        ];
        for input in cases {
            let whole = bodies(&read_all(input.clone()).await);
            let mut reader = FrameReader::new(Pieces(input.iter().map(|b| vec![*b]).collect()));
            let mut frames = Vec::new();
            while let Some(frame) = reader.next_frame().await.expect("in-memory read") {
                frames.push(frame);
            }
            assert_eq!(bodies(&frames), whole);
        }
    }

    #[tokio::test]
    async fn truncated_tail_at_eof_is_reported() {
        let input = b"Content-Length: 50\r\n\r\n{\"seq\":".to_vec();
        let frames = read_all(input).await;
        assert_eq!(frames.len(), 1);
        assert!(matches!(
            frames[0],
            Frame::Error(FrameError::Garbage("DAP", _))
        ));
    }

    #[tokio::test]
    async fn unread_puts_bytes_back_in_front() {
        let input = frame(r#"{"seq":6}"#);
        let mut reader = FrameReader::new(&input[..]);
        reader.unread(&frame(r#"{"seq":5}"#));
        let mut seen = Vec::new();
        while let Some(Frame::Body(b)) = reader.next_frame().await.expect("read") {
            seen.push(String::from_utf8_lossy(&b).into_owned());
        }
        assert_eq!(seen, [r#"{"seq":5}"#, r#"{"seq":6}"#]);
    }

    #[tokio::test]
    async fn writer_replaces_a_range_and_writes_large_bodies_whole() {
        let mut out = Vec::new();
        let mut writer = FrameWriter::new(&mut out);
        writer
            .enqueue_replacing(br#"{"seq":0,"a":1}"#, 7..8, b"-1234")
            .await
            .expect("write");
        let large = vec![b'x'; WRITE_BUFFER + 10];
        writer.enqueue(&large).await.expect("write");
        writer.enqueue(b"{}").await.expect("write");
        writer.flush().await.expect("flush");
        drop(writer);
        let mut expected = b"Content-Length: 19\r\n\r\n{\"seq\":-1234,\"a\":1}".to_vec();
        expected.extend(format!("Content-Length: {}\r\n\r\n", large.len()).as_bytes());
        expected.extend(&large);
        expected.extend(b"Content-Length: 2\r\n\r\n{}");
        assert_eq!(out, expected);
    }

    #[test]
    fn decimals() {
        let mut buf = [0u8; 20];
        for n in [0, 7, 10, 12345, -1, i64::MAX, i64::MIN] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[tokio::test]
    async fn writer_frames_bodies() {
        let mut out = Vec::new();
        let mut writer = FrameWriter::new(&mut out);
        writer.send(br#"{"a":1}"#).await.expect("write");
        drop(writer);
        assert_eq!(out, b"Content-Length: 7\r\n\r\n{\"a\":1}");
    }
}
