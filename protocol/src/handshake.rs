//! The versioned handshake that opens every session, before yamux starts: it carries the
//! per-session token, which the agent compares in constant time.
//!
//! Client → agent: `"KBRG"`, version (u8), token length (u16 BE), token bytes.
//! Agent → client: `"KBRG"`, version (u8), status (u8), message length (u16 BE), UTF-8 message.

use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::HandshakeError;

/// Magic bytes that start both handshake messages.
pub const MAGIC: [u8; 4] = *b"KBRG";
/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u8 = 1;
/// Longest token accepted; bounds what an unauthenticated peer can make the agent buffer.
pub const MAX_TOKEN_LEN: usize = 1024;

/// Status byte of the agent's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Session accepted; yamux starts right after this reply.
    Ok = 0,
    /// The token did not match.
    BadToken = 1,
    /// The client's version is not spoken here.
    UnsupportedVersion = 2,
    /// The client's hello was not a kbridge handshake.
    Malformed = 3,
}

impl Status {
    fn from_byte(b: u8) -> Option<Status> {
        match b {
            0 => Some(Status::Ok),
            1 => Some(Status::BadToken),
            2 => Some(Status::UnsupportedVersion),
            3 => Some(Status::Malformed),
            _ => None,
        }
    }
}

/// What the client presented. Deliberately not `Debug`, so the token cannot end up in a log.
pub struct Hello {
    /// Protocol version offered.
    pub version: u8,
    token: Vec<u8>,
}

impl Hello {
    /// Whether the presented token equals `expected`, compared in constant time.
    pub fn token_matches(&self, expected: &[u8]) -> bool {
        // Lengths are not secret (tokens have a fixed generated length); contents are.
        self.token.len() == expected.len() && bool::from(self.token.ct_eq(expected))
    }
}

/// Client side: sends the hello and waits for the agent's verdict.
pub async fn client_handshake<S>(io: &mut S, token: &str) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let token = token.as_bytes();
    if token.len() > MAX_TOKEN_LEN {
        return Err(HandshakeError::Malformed(format!(
            "token longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut hello = Vec::with_capacity(7 + token.len());
    hello.extend_from_slice(&MAGIC);
    hello.push(PROTOCOL_VERSION);
    hello.extend_from_slice(&(token.len() as u16).to_be_bytes());
    hello.extend_from_slice(token);
    io.write_all(&hello).await?;
    io.flush().await?;

    let mut head = [0u8; 8];
    io.read_exact(&mut head).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            HandshakeError::Malformed("the peer closed the stream during the handshake".into())
        } else {
            HandshakeError::Io(e)
        }
    })?;
    if head[..4] != MAGIC {
        return Err(HandshakeError::Malformed(
            "the peer is not a kbridge agent (wrong magic)".into(),
        ));
    }
    let version = head[4];
    let status = head[5];
    let len = u16::from_be_bytes([head[6], head[7]]) as usize;
    let mut msg = vec![0u8; len];
    io.read_exact(&mut msg).await?;
    let msg = String::from_utf8_lossy(&msg).into_owned();
    match Status::from_byte(status) {
        Some(Status::Ok) if version == PROTOCOL_VERSION => Ok(()),
        Some(Status::Ok) => Err(HandshakeError::UnsupportedVersion {
            theirs: version,
            ours: PROTOCOL_VERSION,
        }),
        Some(Status::BadToken) => Err(HandshakeError::BadToken),
        Some(Status::UnsupportedVersion) => Err(HandshakeError::UnsupportedVersion {
            theirs: version,
            ours: PROTOCOL_VERSION,
        }),
        Some(Status::Malformed) | None => Err(HandshakeError::Refused(msg)),
    }
}

/// Agent side: reads the client's hello. Malformed input is an error; the caller replies.
pub async fn read_hello<S>(io: &mut S) -> Result<Hello, HandshakeError>
where
    S: AsyncRead + Unpin,
{
    let mut head = [0u8; 7];
    io.read_exact(&mut head).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            HandshakeError::Malformed("stream closed before a complete hello".into())
        } else {
            HandshakeError::Io(e)
        }
    })?;
    if head[..4] != MAGIC {
        return Err(HandshakeError::Malformed("wrong magic".into()));
    }
    let version = head[4];
    let len = u16::from_be_bytes([head[5], head[6]]) as usize;
    if len > MAX_TOKEN_LEN {
        return Err(HandshakeError::Malformed(format!(
            "token length {len} exceeds {MAX_TOKEN_LEN}"
        )));
    }
    let mut token = vec![0u8; len];
    io.read_exact(&mut token).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            HandshakeError::Malformed("stream closed inside the token".into())
        } else {
            HandshakeError::Io(e)
        }
    })?;
    Ok(Hello { version, token })
}

/// Agent side: writes the verdict.
pub async fn write_reply<S>(io: &mut S, status: Status, message: &str) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let msg = message.as_bytes();
    let msg = &msg[..msg.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(8 + msg.len());
    out.extend_from_slice(&MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(status as u8);
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    io.write_all(&out).await?;
    io.flush().await
}

/// Generates a fresh random session token (32 bytes, hex) for the adapter to hand to the agent.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn good_token_round_trip() {
        let (mut c, mut s) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let hello = read_hello(&mut s).await.unwrap();
            assert!(hello.token_matches(b"secret"));
            write_reply(&mut s, Status::Ok, "").await.unwrap();
        });
        client_handshake(&mut c, "secret").await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn bad_token_is_reported() {
        let (mut c, mut s) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let hello = read_hello(&mut s).await.unwrap();
            assert!(!hello.token_matches(b"secret"));
            assert!(!hello.token_matches(b"secre"));
            write_reply(&mut s, Status::BadToken, "bad token")
                .await
                .unwrap();
        });
        let err = client_handshake(&mut c, "secreT").await.unwrap_err();
        assert!(matches!(err, HandshakeError::BadToken), "{err}");
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let (mut c, mut s) = tokio::io::duplex(4096);
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let err = read_hello(&mut s).await.err().unwrap();
        assert!(matches!(err, HandshakeError::Malformed(_)));
    }

    #[test]
    fn tokens_are_random_hex() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
