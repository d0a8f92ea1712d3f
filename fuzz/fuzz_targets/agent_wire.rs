//! Fuzz target `agent_wire`: what the agent and the adapter decode from each other before
//! and around yamux (`protocol/src/handshake.rs`, `protocol/src/wire.rs`). The first input byte
//! picks the decoder, the rest is what the peer sent, read in random chunks.
//!
//! Properties checked for every input:
//! - 0, the agent reading a client's hello: never panics; accepts exactly a hello with the
//!   magic, a token length of at most `MAX_TOKEN_LEN` and that many token bytes; the token
//!   it keeps matches those bytes and nothing else;
//! - 1, the client reading the agent's verdict: never panics; succeeds exactly on the
//!   magic, this protocol version and status 0 with its whole message; and the hello it
//!   sent first is the documented layout;
//! - 2 and 3, a stream header or reply frame: never panics; accepts exactly a frame within
//!   `MAX_FRAME` whose JSON is a header (reply), reads no byte past it, and what it
//!   accepted writes back as a frame that reads as the same value.

#![no_main]

use kbridge_fuzz::{block_on, chunk_lengths, ChunkedReader, Rng};
use kbridge_protocol::handshake::{
    client_handshake, read_hello, MAGIC, MAX_TOKEN_LEN, PROTOCOL_VERSION,
};
use kbridge_protocol::wire::{read_frame, write_frame, Reply, StreamHeader, MAX_FRAME};
use kbridge_protocol::HandshakeError;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

const TOKEN: &str = "c2f1b9e07d6a4c3e8b5f0a1d2e3c4b5a";

fn reader(data: &[u8], rng: &mut Rng) -> ChunkedReader {
    ChunkedReader::new(data.to_vec(), chunk_lengths(data.len(), rng, 9))
}

fn hello(data: &[u8], rng: &mut Rng) {
    let mut io = reader(data, rng);
    let result = block_on(read_hello(&mut io));
    let token_len = (data.len() >= 7).then(|| usize::from(u16::from_be_bytes([data[5], data[6]])));
    let well_formed = data.len() >= 7
        && data[..4] == MAGIC
        && token_len.is_some_and(|len| len <= MAX_TOKEN_LEN && data.len() >= 7 + len);
    match result {
        Ok(hello) => {
            assert!(well_formed, "accepted a malformed hello");
            let len = token_len.unwrap_or_default();
            let token = &data[7..7 + len];
            assert_eq!(hello.version, data[4]);
            assert!(
                hello.token_matches(token),
                "the token read is not the token sent"
            );
            let mut other = token.to_vec();
            match other.first_mut() {
                Some(byte) => *byte ^= 1,
                None => other.push(0),
            }
            assert!(!hello.token_matches(&other), "another token matched");
            assert_eq!(io.consumed(), 7 + len, "read past the hello");
        }
        Err(HandshakeError::Malformed(_)) => assert!(!well_formed, "refused a good hello"),
        Err(other) => panic!("read_hello from memory failed with {other:?}"),
    }
}

fn verdict(data: &[u8], rng: &mut Rng) {
    let mut sent = Vec::new();
    let mut io = tokio::io::join(reader(data, rng), &mut sent);
    let result = block_on(client_handshake(&mut io, TOKEN));
    drop(io);
    let mut expected = MAGIC.to_vec();
    expected.push(PROTOCOL_VERSION);
    expected.extend_from_slice(&(TOKEN.len() as u16).to_be_bytes());
    expected.extend_from_slice(TOKEN.as_bytes());
    assert_eq!(sent, expected, "the hello sent");
    let complete =
        data.len() >= 8 && data.len() >= 8 + usize::from(u16::from_be_bytes([data[6], data[7]]));
    let accepted = complete && data[..4] == MAGIC && data[4] == PROTOCOL_VERSION && data[5] == 0;
    match result {
        Ok(()) => assert!(accepted, "accepted a bad verdict"),
        Err(error) => {
            assert!(!accepted, "refused a good verdict: {error}");
            if data.len() < 8 || data[..4] != MAGIC {
                assert!(matches!(error, HandshakeError::Malformed(_)), "{error:?}");
            }
        }
    }
}

fn frame<T>(data: &[u8], rng: &mut Rng)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let mut io = reader(data, rng);
    let result = block_on(read_frame::<_, T>(&mut io));
    let len = (data.len() >= 4)
        .then(|| u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize);
    let Ok(value) = result else {
        return;
    };
    let len = len.expect("a frame from fewer than 4 bytes");
    assert!(len <= MAX_FRAME, "accepted a frame of {len} bytes");
    assert_eq!(io.consumed(), 4 + len, "read past the frame");
    let parsed: T = serde_json::from_slice(&data[4..4 + len]).expect("the body is the value");
    assert_eq!(parsed, value);
    let mut written = Vec::new();
    block_on(write_frame(&mut written, &value)).expect("in-memory write");
    let mut io = reader(&written, rng);
    let again: T = block_on(read_frame(&mut io)).expect("a written frame reads back");
    assert_eq!(again, value);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let mut rng = Rng::from_data(data, u64::from(selector));
    match selector % 4 {
        0 => hello(data, &mut rng),
        1 => verdict(data, &mut rng),
        2 => frame::<StreamHeader>(data, &mut rng),
        _ => frame::<Reply>(data, &mut rng),
    }
});
