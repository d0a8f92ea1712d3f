//! A task per direction that turns a byte stream into checked messages, so the proxy's
//! main loop only routes. Broken input becomes [`Inbound::Malformed`] and reading goes on.

use crate::dap::codec::{find_embedded_header, Frame, FrameReader};
use crate::dap::envelope::{salvage_request, Envelope};
use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

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

/// Spawns the reader task; it ends when the stream ends or the receiver is dropped.
pub fn spawn<R>(
    mut reader: FrameReader<R>,
    tx: mpsc::Sender<Inbound>,
) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let item = match reader.next_frame().await {
                Ok(Some(Frame::Body(body))) => check(&mut reader, body),
                Ok(Some(Frame::Error(error))) => Inbound::Malformed {
                    error: error.to_string(),
                    salvaged: None,
                },
                Ok(None) => Inbound::Closed(None),
                Err(error) => Inbound::Closed(Some(error.to_string())),
            };
            let closed = matches!(item, Inbound::Closed(_));
            if tx.send(item).await.is_err() || closed {
                return;
            }
        }
    })
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
