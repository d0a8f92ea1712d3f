//! The client side of the proxy: every message to the editor goes through here and
//! gets the next sequence number.

use super::seq::SeqMap;
use crate::dap::codec::decimal;
use crate::dap::{outgoing, splice, FrameWriter};
use serde_json::Value;
use tokio::io::AsyncWrite;

/// The editor's end.
pub struct ClientSink {
    writer: FrameWriter<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Numbering and reverse-request map.
    pub seq: SeqMap,
}

impl ClientSink {
    /// Wraps the editor's input stream.
    pub fn new(writer: Box<dyn AsyncWrite + Send + Unpin>) -> Self {
        ClientSink {
            writer: FrameWriter::new(writer),
            seq: SeqMap::default(),
        }
    }

    /// Forwards a message from the adapter with a new `seq`; returns that number. The
    /// number is replaced as the message is written, without a copy of it first.
    pub async fn forward(&mut self, body: &[u8]) -> std::io::Result<i64> {
        let seq = self.seq.next_to_client();
        let mut digits = [0u8; 20];
        match splice::value_range(body, "seq") {
            Some(range) => {
                let number = decimal(seq, &mut digits);
                self.writer.enqueue_replacing(body, range, number).await?
            }
            None => self.writer.enqueue(body).await?,
        }
        Ok(seq)
    }

    /// Sends what [`ClientSink::forward`] buffered.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush().await
    }

    /// Sends a message the proxy built (flushing what was buffered before it).
    pub async fn send(&mut self, message: &Value) -> std::io::Result<i64> {
        let seq = self.seq.next_to_client();
        self.writer.send(&outgoing::with_seq(message, seq)).await?;
        Ok(seq)
    }

    /// Sends a message the proxy built, numbered by the caller (reverse requests).
    pub async fn send_numbered(&mut self, message: &Value, seq: i64) -> std::io::Result<()> {
        self.writer.send(&outgoing::with_seq(message, seq)).await
    }
}

impl ClientSink {
    /// Sends bytes that already carry a number from [`SeqMap::next_to_client`].
    pub async fn send_numbered_raw(&mut self, body: &[u8]) -> std::io::Result<()> {
        self.writer.send(body).await
    }
}
