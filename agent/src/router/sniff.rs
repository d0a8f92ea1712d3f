//! Tells HTTP/1.x, h2c (prior knowledge) and anything else apart from a connection's first
//! bytes, by peeking (the bytes stay in the socket for whoever serves the connection).

use std::time::Duration;

use tokio::net::TcpStream;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// An HTTP/1.x request line (`METHOD SP ...`).
    Http1,
    /// The HTTP/2 connection preface.
    H2c,
    /// Anything else, including a client that says nothing (server-speaks-first protocols).
    Raw,
}

/// The HTTP/2 preface's first line; enough to be sure.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// Longest method token accepted before the space (`UPDATEREDIRECTREF` is 17).
const MAX_METHOD: usize = 20;
/// Bytes peeked: enough for either decision.
const PEEK: usize = 24;
/// A client that sent nothing in this time is waiting for the server to speak.
pub const SILENT_CLIENT: Duration = Duration::from_millis(300);
/// A client that sent a partial prefix gets this long to finish it.
const PARTIAL_PREFIX: Duration = Duration::from_secs(5);
/// Pause between peeks while a prefix is incomplete: peek returns at once while any byte is
/// buffered, so without a pause the wait would spin.
const REPEEK: Duration = Duration::from_millis(2);

/// Classifies a prefix, or `None` if more bytes are needed.
pub fn classify(bytes: &[u8]) -> Option<Protocol> {
    if bytes.is_empty() {
        return None;
    }
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Protocol::H2c);
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b == b' ' {
            return Some(if i > 0 {
                Protocol::Http1
            } else {
                Protocol::Raw
            });
        }
        // Methods in use are upper-case tokens, some with '-' or '_' (M-SEARCH).
        if !(b.is_ascii_uppercase() || b == b'-' || b == b'_') || i >= MAX_METHOD {
            return Some(Protocol::Raw);
        }
    }
    None
}

/// Peeks at `sock` until [`classify`] decides, the client stays silent for
/// [`SILENT_CLIENT`], or it closes.
pub async fn sniff(sock: &TcpStream) -> Protocol {
    let mut buf = [0u8; PEEK];
    let start = tokio::time::Instant::now();
    let mut seen = 0;
    loop {
        let limit = if seen == 0 {
            SILENT_CLIENT
        } else {
            PARTIAL_PREFIX
        };
        let Some(left) = limit.checked_sub(start.elapsed()) else {
            return Protocol::Raw;
        };
        match tokio::time::timeout(left, sock.peek(&mut buf)).await {
            Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return Protocol::Raw,
            Ok(Ok(n)) => {
                if let Some(p) = classify(&buf[..n]) {
                    return p;
                }
                if n == PEEK {
                    return Protocol::Raw;
                }
                if n == seen {
                    tokio::time::sleep(REPEEK).await;
                }
                seen = n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1"), Some(Protocol::Http1));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nSM"), Some(Protocol::H2c));
        assert_eq!(classify(b"PRI * HT"), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"\x16\x03\x01"), Some(Protocol::Raw));
        assert_eq!(classify(b"get / "), Some(Protocol::Raw));
        assert_eq!(classify(b" GET"), Some(Protocol::Raw));
        assert_eq!(classify(b"SSH-2.0-OpenSSH"), Some(Protocol::Raw));
        assert_eq!(classify(b"AAAAAAAAAAAAAAAAAAAAAAAA"), Some(Protocol::Raw));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn first_bytes() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                any::<Vec<u8>>(),
                ("[A-Z_-]{0,22}", "[ -~]{0,6}").prop_map(|(m, r)| format!("{m} {r}").into_bytes()),
                (0..=H2_PREFACE.len(), any::<Vec<u8>>())
                    .prop_map(|(n, rest)| { [&H2_PREFACE[..n], &rest[..]].concat() }),
            ]
        }

        proptest! {
            /// Bytes arrive one at a time while the router peeks: a decision, once made,
            /// stays the same as more bytes come, it is made within 21 bytes, and HTTP/1
            /// means an upper-case method and a space.
            #[test]
            fn a_decision_holds_as_bytes_arrive(bytes in first_bytes()) {
                let mut decided = None;
                for n in 0..=bytes.len() {
                    let now = classify(&bytes[..n]);
                    if decided.is_some() {
                        prop_assert_eq!(now, decided, "changed at {} bytes", n);
                    }
                    decided = now;
                    if n > MAX_METHOD {
                        prop_assert!(now.is_some(), "undecided after {} bytes", n);
                    }
                    if now == Some(Protocol::Http1) {
                        let method = bytes.iter().take_while(|b| **b != b' ').count();
                        prop_assert!((1..=MAX_METHOD).contains(&method));
                        prop_assert!(bytes[..method].iter().all(|b| b.is_ascii_uppercase() || b"-_".contains(b)));
                    }
                }
            }
        }
    }
}
