//! Fuzz target `route_header`: the outbound route-header rewriter
//! (`adapter/src/session/cluster/route_header.rs`), which sees the local process's bytes to
//! the cluster in whatever pieces TCP delivers them.
//!
//! Properties checked for every input:
//! - feeding it never panics, in one piece or in random pieces;
//! - the output does not depend on the pieces;
//! - the output is the input with only `kubernetes-route-as: NAME\r\n` lines added, each
//!   at the end of a header block (right before the empty line that ends it), never
//!   twice at one place, and no more of them than there are request lines;
//! - nothing is held back for ever: after `finish` every byte has been passed on.

#![no_main]

use kbridge_fuzz::cluster::route_header::RouteHeaderRewriter;
use kbridge_fuzz::{chunk_lengths, Rng};
use libfuzzer_sys::fuzz_target;

/// The route name the rewriter adds (any name would do).
const ROUTE: &str = "fz-9d2c41e7b3";

fn run(input: &[u8], pieces: &[usize]) -> Vec<u8> {
    let mut rewriter = RouteHeaderRewriter::new(ROUTE);
    let mut out = Vec::new();
    let mut from = 0;
    for &piece in pieces {
        rewriter.feed(&input[from..from + piece], &mut out);
        from += piece;
    }
    rewriter.finish(&mut out);
    assert!(rewriter.is_raw(), "not raw after finish");
    out
}

fuzz_target!(|input: &[u8]| {
    let line = format!("kubernetes-route-as: {ROUTE}\r\n").into_bytes();
    let whole = run(input, &[input.len()]);
    let mut rng = Rng::from_data(input, 0);
    for max in [3, 64, 1500] {
        let pieces = chunk_lengths(input.len(), &mut rng, max);
        assert!(
            run(input, &pieces) == whole,
            "pieces of up to {max} bytes changed the output"
        );
    }

    // Align the output with the input. An added line starts with `k` and goes right
    // before a line end, so where the output has the route line and the input another
    // byte, the line was added; anywhere else the two must agree byte for byte (an input
    // that carries the same line itself is matched as input).
    let mut added_at = Vec::new();
    let (mut i, mut j) = (0, 0);
    while j < whole.len() {
        if whole[j..].starts_with(&line) && input.get(i) != Some(&whole[j]) {
            added_at.push(i);
            j += line.len();
        } else {
            assert!(
                input.get(i) == Some(&whole[j]),
                "output byte {j} is not input byte {i}"
            );
            i += 1;
            j += 1;
        }
    }
    assert!(i == input.len(), "input from byte {i} on was not passed on");
    let request_lines = input
        .windows(8)
        .filter(|w| w.starts_with(b" HTTP/1."))
        .count();
    assert!(
        added_at.len() <= request_lines,
        "more route lines than requests"
    );
    for pair in added_at.windows(2) {
        assert!(pair[0] != pair[1], "two route lines at one place");
    }
    for &at in &added_at {
        let before = &input[..at];
        let after = &input[at..];
        assert!(
            before.ends_with(b"\n"),
            "a route line not after a header line"
        );
        assert!(
            after.starts_with(b"\r\n") || after.starts_with(b"\n"),
            "a route line not before the end of a header block"
        );
    }
});
