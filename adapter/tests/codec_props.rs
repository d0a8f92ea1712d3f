//! Property tests for the DAP `Content-Length` codec: chunking, arbitrary input, resynchronisation.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use kbridge::dap::codec::{Frame, FrameReader, FrameWriter};
use proptest::prelude::*;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, ReadBuf};

/// Hands out the input one chunk per read, the way a socket or pipe delivers it, optionally
/// returning `Pending` before each chunk so the reader's wake-up path is exercised too.
struct ChunkedReader {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    next_size: usize,
    pend_between: bool,
    pended: bool,
}

impl ChunkedReader {
    fn new(data: Vec<u8>, sizes: Vec<usize>, pend_between: bool) -> Self {
        assert!(sizes.iter().all(|&s| s > 0));
        ChunkedReader {
            data,
            pos: 0,
            sizes,
            next_size: 0,
            pend_between,
            pended: false,
        }
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.data.len() {
            return Poll::Ready(Ok(()));
        }
        if this.pend_between && !this.pended {
            this.pended = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pended = false;
        let size = this.sizes[this.next_size % this.sizes.len()];
        this.next_size += 1;
        let n = size.min(buf.remaining()).min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// How a test frame's header is spelled; all are valid per the DAP base protocol.
#[derive(Debug, Clone, Copy)]
enum HeaderStyle {
    /// Whatever `FrameWriter` writes, so the writer is checked against the reader.
    Writer,
    Lowercase,
    NoSpace,
    PaddedValue,
    ContentTypeFirst,
    ContentTypeAfter,
}

fn header_style() -> impl Strategy<Value = HeaderStyle> {
    prop_oneof![
        3 => Just(HeaderStyle::Writer),
        1 => Just(HeaderStyle::Lowercase),
        1 => Just(HeaderStyle::NoSpace),
        1 => Just(HeaderStyle::PaddedValue),
        1 => Just(HeaderStyle::ContentTypeFirst),
        1 => Just(HeaderStyle::ContentTypeAfter),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

fn frame(rt: &tokio::runtime::Runtime, body: &[u8], style: HeaderStyle) -> Vec<u8> {
    let n = body.len();
    let header = match style {
        HeaderStyle::Writer => {
            let mut out = Vec::new();
            rt.block_on(FrameWriter::new(&mut out).send(body))
                .expect("write to memory");
            return out;
        }
        HeaderStyle::Lowercase => format!("content-length: {n}\r\n\r\n"),
        HeaderStyle::NoSpace => format!("Content-Length:{n}\r\n\r\n"),
        HeaderStyle::PaddedValue => format!("Content-Length:   {n}  \r\n\r\n"),
        HeaderStyle::ContentTypeFirst => format!(
            "Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: {n}\r\n\r\n"
        ),
        HeaderStyle::ContentTypeAfter => format!(
            "Content-Length: {n}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n"
        ),
    };
    let mut out = header.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Reads to the end, failing (instead of hanging) if the reader yields more frames than
/// it could if every frame consumed at least one byte.
fn read_all(
    rt: &tokio::runtime::Runtime,
    input: Vec<u8>,
    sizes: Vec<usize>,
    pend_between: bool,
) -> Result<Vec<Frame>, TestCaseError> {
    let limit = input.len() + 1;
    let mut reader = FrameReader::new(ChunkedReader::new(input, sizes, pend_between));
    rt.block_on(async {
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().await.expect("in-memory read") {
            frames.push(frame);
            prop_assert!(
                frames.len() <= limit,
                "reader produced more than {limit} frames: it does not terminate"
            );
        }
        Ok(frames)
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        // Header-looking text inside a body must not confuse the framing.
        "Content-Length: [0-9]{1,4}\r\n\r\n".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,12}", inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// A JSON body: an arbitrary value, or a DAP-shaped event, sometimes larger than the
/// reader's initial 16 KiB buffer.
fn json_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (json_value(), any::<bool>()).prop_map(|(value, pretty)| {
            if pretty {
                serde_json::to_vec_pretty(&value).expect("serialise")
            } else {
                serde_json::to_vec(&value).expect("serialise")
            }
        }),
        1 => (any::<u32>(), 0usize..40_000).prop_map(|(seq, len)| {
            let event = json!({
                "seq": seq,
                "type": "event",
                "event": "output",
                "body": {"category": "stdout", "output": "é".repeat(len / 2)},
            });
            serde_json::to_vec(&event).expect("serialise")
        }),
    ]
}

/// Chunk sizes to cycle through: byte-by-byte, small or large reads.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        prop::collection::vec(1usize..=3, 1..16),
        prop::collection::vec(1usize..=64, 1..16),
        prop::collection::vec(1usize..=20_000, 1..16),
    ]
}

/// Bytes biased towards what confuses a header parser: token characters, colons, CR/LF,
/// digits and fragments of real headers.
fn wire_noise() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8),
        "[A-Za-z-]{1,12}".prop_map(String::into_bytes),
        "[0-9]{1,12}".prop_map(String::into_bytes),
        Just(b":".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"Content-Type: application/vscode-jsonrpc".to_vec()),
        Just(b"Content-Len".to_vec()),
        Just(b"{\"seq\":1}".to_vec()),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn contains_header_name(bytes: &[u8]) -> bool {
    bytes
        .windows(b"content-length".len())
        .any(|w| w.eq_ignore_ascii_case(b"content-length"))
}

fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Body(body) => format!("Body({:?})", String::from_utf8_lossy(body)),
        Frame::Error(error) => format!("Error({error})"),
    }
}

/// 256 cases keeps the run to seconds; `PROPTEST_CASES=N` digs deeper locally.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config())]

    /// Well-formed frames come out whole, in order, with no errors, however the bytes are split.
    #[test]
    fn framed_bodies_survive_any_chunking(
        messages in prop::collection::vec((json_body(), header_style()), 0..8),
        sizes in chunk_sizes(),
        pend_between in any::<bool>(),
    ) {
        let rt = runtime();
        let mut wire = Vec::new();
        for (body, style) in &messages {
            wire.extend(frame(&rt, body, *style));
        }
        let frames = read_all(&rt, wire, sizes, pend_between)?;
        let decoded: Vec<&[u8]> = frames
            .iter()
            .map(|f| match f {
                Frame::Body(body) => Ok(&body[..]),
                Frame::Error(error) => Err(TestCaseError::fail(format!("unexpected error frame: {error}"))),
            })
            .collect::<Result<_, _>>()?;
        let expected: Vec<&[u8]> = messages.iter().map(|(body, _)| &body[..]).collect();
        prop_assert_eq!(decoded, expected);
    }

    /// Any input at all: no panic, and the reader reaches the end.
    #[test]
    fn arbitrary_bytes_never_panic_and_terminate(
        input in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2048),
            wire_noise(),
            (wire_noise(), json_body(), wire_noise()).prop_map(|(a, body, b)| {
                let mut out = a;
                out.extend(format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes());
                out.extend(body);
                out.extend(b);
                out
            }),
        ],
        sizes in chunk_sizes(),
        pend_between in any::<bool>(),
    ) {
        read_all(&runtime(), input, sizes, pend_between)?;
    }

    /// Garbage before a frame costs error frames, never the frame: its body comes out last.
    #[test]
    fn garbage_then_frame_yields_the_frame(
        garbage in prop_oneof![prop::collection::vec(any::<u8>(), 0..512), wire_noise()]
            .prop_filter("garbage must not hold a header name", |g| !contains_header_name(g)),
        body in json_body(),
        style in header_style(),
        sizes in chunk_sizes(),
        pend_between in any::<bool>(),
    ) {
        let rt = runtime();
        let mut wire = garbage;
        wire.extend(frame(&rt, &body, style));
        let frames = read_all(&rt, wire, sizes, pend_between)?;
        let seen: Vec<String> = frames.iter().map(describe).collect();
        let (last, before) = frames.split_last().ok_or_else(|| TestCaseError::fail("no frames at all"))?;
        prop_assert!(
            matches!(last, Frame::Body(b) if b[..] == body[..]),
            "the frame's body is not last: {seen:?}"
        );
        prop_assert!(
            before.iter().all(|f| matches!(f, Frame::Error(_))),
            "garbage produced a body: {seen:?}"
        );
    }
}
