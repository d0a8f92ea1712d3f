//! Turns a byte stream into checked messages for the proxy's loop, which reads both of its
//! streams itself (no task and channel per direction: each message used to cost two task
//! hand-offs). Broken input becomes [`Inbound::Malformed`] and reading goes on.

use crate::dap::codec::{find_embedded_header, Frame, FrameReader};
use crate::dap::envelope::{salvage_request, Envelope};
use bytes::Bytes;
use tokio::io::AsyncRead;

/// What a reader task delivers.
#[derive(Debug)]
pub enum Inbound {
    /// A well-formed message: its bytes and envelope.
    Message {
        /// The body exactly as received.
        body: Bytes,
        /// Its routing fields.
        envelope: Envelope,
    },
    /// Input that was not a message; reading continues after it.
    Malformed {
        /// What was wrong.
        error: String,
        /// `seq` and `command` of a broken request, when they can be read.
        salvaged: Option<(i64, String)>,
    },
    /// The stream ended (with the I/O error, if any).
    Closed(Option<String>),
}

/// The next message, reading input as needed. Cancel-safe: dropped before it completes
/// (the proxy's loop waits on several streams at once), it loses nothing.
pub async fn next<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> Inbound {
    match reader.next_frame().await {
        Ok(Some(frame)) => inbound(reader, frame),
        Ok(None) => Inbound::Closed(None),
        Err(error) => Inbound::Closed(Some(error.to_string())),
    }
}

/// The next message if it is already buffered, without reading.
pub fn next_buffered<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> Option<Inbound> {
    let frame = reader.next_buffered()?;
    Some(inbound(reader, frame))
}

fn inbound<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>, frame: Frame) -> Inbound {
    match frame {
        Frame::Body(body) => check(reader, body),
        Frame::Error(error) => Inbound::Malformed {
            error: error.to_string(),
            salvaged: None,
        },
    }
}

/// Checks a body is a DAP message. A body that is not JSON but holds a `Content-Length:`
/// header was cut short by its sender: the bytes from that header on go back to the
/// reader, so the next message is not lost.
pub fn check<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>, body: Bytes) -> Inbound {
    match Envelope::peek(&body) {
        Ok(envelope) => Inbound::Message { body, envelope },
        Err(error) => {
            let (own, error) = match find_embedded_header(&body) {
                Some(at) => {
                    reader.unread(&body[at..]);
                    (body.slice(..at), format!("truncated DAP message (its Content-Length was larger than its body): {error}"))
                }
                None => (body, error.to_string()),
            };
            Inbound::Malformed {
                error,
                salvaged: salvage_request(&own),
            }
        }
    }
}
