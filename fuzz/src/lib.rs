//! Shared harness for kbridge's fuzz targets.
//!
//! The adapter's wire-level code under test lives in a crate that also pulls in kube and
//! k8s-openapi; building those under sanitizer coverage takes far longer than the
//! targets are worth (a cold build of `kbridge-agent` alone took 14 minutes on two
//! cores). So the few self-contained adapter files the targets need are compiled here
//! directly with `#[path]`, in modules laid out like the product's so their `crate::`
//! and `super::` paths resolve unchanged. Nothing is copied: a change to those files is
//! fuzzed as it is, and a file that moves breaks this build loudly.
//!
//! The agent protocol needs no such trick: `kbridge-protocol` is a plain dependency with
//! only its `wire` feature (the handshake and the stream headers: serde, tokio's I/O
//! traits, `subtle`, `getrandom`), which leaves out yamux and kube.

#![allow(dead_code, unused_imports)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

pub mod cluster;
pub mod dap;
pub mod proxy;

/// Runs a future that never waits: every reader and writer the targets use is in memory.
/// A future that does wait is a bug in the harness, so it panics rather than spins.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory future was not ready"),
    }
}

/// A small deterministic generator (xorshift64*), so that one input always gets the same
/// chunk sizes and a crash reproduces from its input alone.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `data` (FNV-1a) and `salt`.
    pub fn from_data(data: &[u8], salt: u64) -> Rng {
        let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ salt;
        for &byte in data {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(hash | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `1..=max`.
    pub fn size(&mut self, max: usize) -> usize {
        1 + (self.next_u64() % max as u64) as usize
    }
}

/// Cuts `len` bytes into pieces of `1..=max` bytes; returns the piece lengths.
pub fn chunk_lengths(len: usize, rng: &mut Rng, max: usize) -> Vec<usize> {
    let mut pieces = Vec::new();
    let mut left = len;
    while left > 0 {
        let piece = rng.size(max).min(left);
        pieces.push(piece);
        left -= piece;
    }
    pieces
}

/// An in-memory `AsyncRead` that hands its bytes out in the given pieces, at most one
/// piece per read, as a socket does with TCP segments.
#[derive(Debug)]
pub struct ChunkedReader {
    data: Vec<u8>,
    pieces: std::collections::VecDeque<usize>,
    pos: usize,
}

impl ChunkedReader {
    /// Reads `data` in pieces of the given lengths (which must add up to its length).
    pub fn new(data: Vec<u8>, pieces: Vec<usize>) -> ChunkedReader {
        assert_eq!(pieces.iter().sum::<usize>(), data.len());
        ChunkedReader {
            data,
            pieces: pieces.into(),
            pos: 0,
        }
    }

    /// Bytes handed out so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl tokio::io::AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let Some(piece) = self.pieces.front_mut() else {
            return Poll::Ready(Ok(())); // end of input
        };
        let n = (*piece).min(buf.remaining());
        *piece -= n;
        if *piece == 0 {
            self.pieces.pop_front();
        }
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}
