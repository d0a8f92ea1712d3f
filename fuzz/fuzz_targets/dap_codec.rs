//! Fuzz target `dap_codec`: DAP `Content-Length` framing (`adapter/src/dap/codec.rs`) and
//! the proxy's reader on top of it (`check` in `adapter/src/proxy/reader.rs`, which hands
//! back the tail of a body that holds the next message's header).
//!
//! Properties checked for every input:
//! - reading the input as a byte stream never panics and always ends, whatever the
//!   chunking (one read, small reads, large reads);
//! - the messages read do not depend on the chunking: the same bodies, in order;
//! - framing is lossless: the input cut into bodies (any bytes, empty ones too), written
//!   with `FrameWriter` (some with a range replaced while writing, as the proxy renumbers
//!   `seq`, some larger than the writer's buffer) and read back in random chunks, gives
//!   exactly those bodies and no framing error.

#![no_main]

use kbridge_fuzz::dap::codec::{Frame, FrameReader, FrameWriter};
use kbridge_fuzz::proxy::reader::{check, Inbound};
use kbridge_fuzz::{block_on, chunk_lengths, ChunkedReader, Rng};
use libfuzzer_sys::fuzz_target;

/// Reads `data` as the proxy does; returns the bodies of the messages, in order.
fn messages(data: &[u8], pieces: Vec<usize>) -> Vec<Vec<u8>> {
    let mut reader = FrameReader::new(ChunkedReader::new(data.to_vec(), pieces));
    let mut out = Vec::new();
    // Every frame consumes input (a frame put back by `check` is shorter than the body it
    // came from), so there are fewer frames than twice the input's bytes plus one.
    for _ in 0..=2 * data.len() + 1 {
        let frame = block_on(reader.next_frame()).expect("in-memory read");
        match frame {
            None => return out,
            Some(Frame::Body(body)) => {
                if let Inbound::Message { body, .. } = check(&mut reader, body) {
                    out.push(body.to_vec());
                }
            }
            Some(Frame::Error(_)) => {}
        }
    }
    panic!("the reader did not reach the end of {} bytes", data.len());
}

fn round_trip(data: &[u8], rng: &mut Rng) {
    let mut bodies: Vec<&[u8]> = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let len = (rng.next_u64() % 64).min(rest.len() as u64) as usize;
        bodies.push(&rest[..len]);
        rest = &rest[len..];
    }
    // Every fourth body goes out with a range replaced; in one input of sixteen the second
    // is larger than the writer's buffer (read back in larger pieces, to keep the target fast).
    let large = vec![b'L'; 70 * 1024];
    let mut wrote_large = false;
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut wire = Vec::new();
    {
        let mut writer = FrameWriter::new(&mut wire);
        for (i, body) in bodies.iter().enumerate() {
            let body: &[u8] = if i == 1 && rng.next_u64() % 16 == 0 {
                wrote_large = true;
                &large
            } else {
                body
            };
            if i % 4 == 3 {
                let start = (rng.next_u64() % (body.len() as u64 + 1)) as usize;
                let end = start + (rng.next_u64() % ((body.len() - start) as u64 + 1)) as usize;
                let with = &data[..(rng.next_u64() % 24).min(data.len() as u64) as usize];
                block_on(writer.enqueue_replacing(body, start..end, with))
                    .expect("in-memory write");
                expected.push([&body[..start], with, &body[end..]].concat());
            } else {
                if i % 2 == 0 {
                    block_on(writer.send(body)).expect("in-memory write");
                } else {
                    block_on(writer.enqueue(body)).expect("in-memory write");
                }
                expected.push(body.to_vec());
            }
        }
        block_on(writer.flush()).expect("in-memory write");
    }
    let pieces = chunk_lengths(wire.len(), rng, if wrote_large { 4096 } else { 40 });
    let mut reader = FrameReader::new(ChunkedReader::new(wire, pieces));
    for (i, body) in expected.iter().enumerate() {
        match block_on(reader.next_frame()).expect("in-memory read") {
            Some(Frame::Body(read)) => assert_eq!(&read[..], &body[..], "body {i}"),
            other => panic!("body {i} of {}: read {other:?}", expected.len()),
        }
    }
    let end = block_on(reader.next_frame()).expect("in-memory read");
    assert!(end.is_none(), "after the last body: {end:?}");
}

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::from_data(data, 0);
    let whole = messages(
        data,
        if data.is_empty() {
            vec![]
        } else {
            vec![data.len()]
        },
    );
    // Reads of a few bytes cost the reader a scan of what it holds each time; past a few
    // KiB (the 8 KiB header limit needs such inputs) somewhat larger reads keep the target
    // fast enough to explore.
    let small_max = if data.len() <= 2048 { 16 } else { 200 };
    let small = messages(data, chunk_lengths(data.len(), &mut rng, small_max));
    assert_eq!(small, whole, "small reads changed the messages");
    let large = messages(data, chunk_lengths(data.len(), &mut rng, 4096));
    assert_eq!(large, whole, "large reads changed the messages");
    round_trip(data, &mut rng);
});
