//! Per-stream headers: every yamux stream starts with one length-prefixed JSON frame that says
//! what the stream is for, and client-opened streams get one frame back saying whether it worked.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest header frame accepted; headers are small, so anything larger is an attack or a bug.
pub const MAX_FRAME: usize = 1 << 20;

/// What a stream carries. Sent as the first frame of every stream by whoever opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum StreamHeader {
    /// Client → agent: the JSON-RPC 2.0 control channel (newline-delimited messages follow).
    Control,
    /// Client → agent: dial `host:port` from inside the cluster and splice the stream to it.
    Outbound {
        /// IP address or DNS name.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Client → agent: send these paths as a tar stream.
    Download {
        /// Absolute paths of files or directories (directories are sent recursively).
        paths: Vec<String>,
    },
    /// Agent → client: a connection accepted on a container port. The client answers with one
    /// byte (0 = accepted) instead of a frame, so the peer's first bytes need no extra round trip.
    Inbound {
        /// Container port the connection arrived on.
        port: u16,
        /// Address of the peer that connected.
        peer: String,
    },
}

/// The agent's answer to a client-opened stream header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    /// Whether the request was accepted; data follows only then.
    pub ok: bool,
    /// Machine-readable failure reason (`refused`, `unresolvable`, `timeout`, `unreachable`,
    /// `not-found`, `bad-request`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human-readable failure explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Reply {
    /// A successful reply.
    pub fn ok() -> Self {
        Reply {
            ok: true,
            code: None,
            message: None,
        }
    }

    /// A failed reply with a code and a message.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Reply {
            ok: false,
            code: Some(code.to_string()),
            message: Some(message.into()),
        }
    }
}

/// Byte the client writes on an inbound stream to accept it.
pub const INBOUND_ACCEPT: u8 = 0;

/// Writes one frame: a big-endian u32 length, then that many bytes of JSON.
pub async fn write_frame<W, T>(w: &mut W, value: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await
}

/// Reads one frame written by [`write_frame`]; oversized or non-JSON frames are `InvalidData`.
pub async fn read_frame<R, T>(r: &mut R) -> std::io::Result<T>
where
    R: AsyncRead + Unpin,
    T: serde::de::DeserializeOwned,
{
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("header frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad header frame: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let h = StreamHeader::Outbound {
            host: "stats-api".into(),
            port: 80,
        };
        write_frame(&mut a, &h).await.unwrap();
        let got: StreamHeader = read_frame(&mut b).await.unwrap();
        assert_eq!(got, h);
    }

    #[tokio::test]
    async fn oversized_frame_is_rejected() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = read_frame::<_, StreamHeader>(&mut b).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
