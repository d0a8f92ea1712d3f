//! The route header on outbound requests (isolation, see `docs/architecture.md`): in an
//! isolated session, plain
//! HTTP/1.x requests the local process sends into the cluster get
//! `kubernetes-route-as: <route name>` when they don't carry that header already, so two
//! services one developer isolates call each other without changing code.
//!
//! [`RouteHeaderRewriter`] sees the local→cluster bytes of one connection, as they come
//! (any TCP chunking): it holds back at most one header block (or one chunk-size or
//! trailer line), never a body. What is not an HTTP/1.x request (TLS, HTTP/2, any other
//! protocol) passes through untouched, and so does everything after a header block too
//! big to hold, a `CONNECT` or `Upgrade` request, or framing it cannot follow.

use kbridge_protocol::contract::agent_pod::ROUTE_HEADER;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest header block (request line included) held back to be rewritten; a bigger one
/// is passed on unchanged, and so is the rest of the connection.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Longest method token a request line may start with.
const MAX_METHOD: usize = 32;
/// What follows the request target in an HTTP/1.x request line.
const VERSION_PREFIX: &[u8] = b" HTTP/1.";

/// Where the stream is in the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line (empty lines between requests are passed on).
    RequestStart,
    /// An HTTP/1.x request line has begun; the header block is being held.
    /// `scanned`: bytes of it whose lines are complete and not the end.
    Headers { scanned: usize },
    /// `remaining` bytes of a body with a Content-Length (or of one chunk's data).
    Body { remaining: u64, chunked: bool },
    /// A chunk-size line (`1a;ext=x\r\n`).
    ChunkSize { scanned: usize },
    /// The line ending after a chunk's data.
    ChunkEnd { scanned: usize },
    /// Trailer lines after the last chunk, up to an empty line.
    Trailers { scanned: usize },
    /// Everything from here on passes through unchanged.
    Raw,
}

/// A streaming rewriter for the local→cluster direction of one connection.
#[derive(Debug)]
pub struct RouteHeaderRewriter {
    /// `kubernetes-route-as: NAME\r\n`.
    line: Vec<u8>,
    state: State,
    /// Bytes received but not yet passed on (a partial header block or line).
    held: Vec<u8>,
}

/// What the first bytes of a request say.
#[derive(Debug, PartialEq, Eq)]
enum Sniff {
    NeedMore,
    NotHttp1,
    Http1,
}

impl RouteHeaderRewriter {
    /// A rewriter adding `kubernetes-route-as: route_as`.
    pub fn new(route_as: &str) -> Self {
        RouteHeaderRewriter {
            line: format!("{ROUTE_HEADER}: {route_as}\r\n").into_bytes(),
            state: State::RequestStart,
            held: Vec::new(),
        }
    }

    /// Whether everything from here on passes through unchanged.
    pub fn is_raw(&self) -> bool {
        self.state == State::Raw
    }

    /// Takes the next bytes from the local process; appends what to send on to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.state == State::Raw {
            out.extend_from_slice(input);
            return;
        }
        if self.held.is_empty() {
            let used = self.process(input, out);
            self.held.extend_from_slice(&input[used..]);
        } else {
            let mut held = std::mem::take(&mut self.held);
            held.extend_from_slice(input);
            let used = self.process(&held, out);
            held.drain(..used);
            self.held = held;
        }
    }

    /// The local process closed its side: whatever is held goes on unchanged.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
        self.state = State::Raw;
    }

    /// Consumes what it can of `data`, returns how much; the rest is an incomplete
    /// header block or line (smaller than the limits).
    fn process(&mut self, data: &[u8], out: &mut Vec<u8>) -> usize {
        let mut pos = 0;
        loop {
            let rest = &data[pos..];
            let advanced = match self.state {
                State::Raw => {
                    out.extend_from_slice(rest);
                    return data.len();
                }
                State::RequestStart => self.request_start(rest, out),
                State::Headers { scanned } => self.headers(rest, scanned, out),
                State::Body { remaining, chunked } => self.body(rest, remaining, chunked, out),
                State::ChunkSize { scanned }
                | State::ChunkEnd { scanned }
                | State::Trailers { scanned } => self.line(rest, scanned, out),
            };
            match advanced {
                Advance::By(used) => pos += used,
                Advance::Wait(used) => return pos + used,
            }
        }
    }

    /// Between requests: blank lines pass; the next bytes decide whether this is HTTP/1.
    fn request_start(&mut self, rest: &[u8], out: &mut Vec<u8>) -> Advance {
        let blank = rest
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        out.extend_from_slice(&rest[..blank]);
        let request = &rest[blank..];
        if request.is_empty() {
            return Advance::Wait(blank);
        }
        match sniff(request) {
            Sniff::Http1 => self.state = State::Headers { scanned: 0 },
            Sniff::NotHttp1 => self.state = State::Raw,
            Sniff::NeedMore if request.len() >= MAX_HEADER_BLOCK => self.state = State::Raw,
            Sniff::NeedMore => return Advance::Wait(blank),
        }
        Advance::By(blank)
    }

    /// A request's header block: passed on whole, the route header added before its blank
    /// line unless the request has one.
    fn headers(&mut self, rest: &[u8], scanned: usize, out: &mut Vec<u8>) -> Advance {
        match header_block_end(rest, scanned) {
            Ok((_, end)) if end > MAX_HEADER_BLOCK => self.state = State::Raw,
            Ok((blank_at, end)) => {
                let block = &rest[..end];
                let request = parse_head(&block[..blank_at]);
                out.extend_from_slice(&block[..blank_at]);
                if !request.has_route {
                    out.extend_from_slice(&self.line);
                }
                out.extend_from_slice(&block[blank_at..]);
                self.state = request.next_state();
                return Advance::By(end);
            }
            Err(_) if rest.len() > MAX_HEADER_BLOCK => self.state = State::Raw,
            Err(scanned) => {
                self.state = State::Headers { scanned };
                return Advance::Wait(0);
            }
        }
        Advance::By(0)
    }

    /// A body (or a chunk's data) of known length: passed on as it comes.
    fn body(&mut self, rest: &[u8], remaining: u64, chunked: bool, out: &mut Vec<u8>) -> Advance {
        let take = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(rest.len());
        out.extend_from_slice(&rest[..take]);
        let remaining = remaining - take as u64;
        if remaining > 0 {
            self.state = State::Body { remaining, chunked };
            return Advance::Wait(take);
        }
        self.state = if chunked {
            State::ChunkEnd { scanned: 0 }
        } else {
            State::RequestStart
        };
        Advance::By(take)
    }

    /// A line of chunked framing: a chunk size, the end of a chunk's data, or a trailer.
    fn line(&mut self, rest: &[u8], scanned: usize, out: &mut Vec<u8>) -> Advance {
        let Some(newline) = rest[scanned..].iter().position(|b| *b == b'\n') else {
            if rest.len() > MAX_HEADER_BLOCK {
                self.state = State::Raw;
                return Advance::By(0);
            }
            let scanned = rest.len();
            self.state = match self.state {
                State::ChunkSize { .. } => State::ChunkSize { scanned },
                State::ChunkEnd { .. } => State::ChunkEnd { scanned },
                _ => State::Trailers { scanned },
            };
            return Advance::Wait(0);
        };
        let end = scanned + newline + 1;
        if end > MAX_HEADER_BLOCK {
            self.state = State::Raw;
            return Advance::By(0);
        }
        let line = trim_line_end(&rest[..end]);
        out.extend_from_slice(&rest[..end]);
        self.state = match self.state {
            State::ChunkSize { .. } => match chunk_size(line) {
                Some(0) => State::Trailers { scanned: 0 },
                Some(size) => State::Body {
                    remaining: size,
                    chunked: true,
                },
                None => State::Raw,
            },
            State::ChunkEnd { .. } if line.is_empty() => State::ChunkSize { scanned: 0 },
            State::ChunkEnd { .. } => State::Raw,
            _ if line.is_empty() => State::RequestStart,
            _ => State::Trailers { scanned: 0 },
        };
        Advance::By(end)
    }
}

/// How far one step of [`RouteHeaderRewriter::process`] got.
enum Advance {
    /// Consumed this many bytes; the next state goes on.
    By(usize),
    /// Consumed this many bytes; the rest waits for more input.
    Wait(usize),
}

/// A token character (RFC 9110 `tchar`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `data` starts like `METHOD SP TARGET SP HTTP/1.`.
fn sniff(data: &[u8]) -> Sniff {
    let method = data.iter().take_while(|b| is_tchar(**b)).count();
    if method > MAX_METHOD {
        return Sniff::NotHttp1;
    }
    if method == data.len() {
        return Sniff::NeedMore;
    }
    if method == 0 || data[method] != b' ' {
        return Sniff::NotHttp1;
    }
    let target_start = method + 1;
    let target = data[target_start..]
        .iter()
        .take_while(|b| **b > b' ' && **b != 0x7f)
        .count();
    let after = target_start + target;
    if after == data.len() {
        return Sniff::NeedMore;
    }
    if target == 0 {
        return Sniff::NotHttp1;
    }
    let rest = &data[after..];
    let n = rest.len().min(VERSION_PREFIX.len());
    if rest[..n] != VERSION_PREFIX[..n] {
        Sniff::NotHttp1
    } else if n < VERSION_PREFIX.len() {
        Sniff::NeedMore
    } else {
        Sniff::Http1
    }
}

/// Finds the empty line ending a header block: `Ok((where the empty line starts, where it
/// ends))`, or `Err(how far complete lines go)` to resume from when more comes.
fn header_block_end(data: &[u8], mut scanned: usize) -> Result<(usize, usize), usize> {
    loop {
        let Some(newline) = data[scanned..].iter().position(|b| *b == b'\n') else {
            return Err(scanned);
        };
        let end = scanned + newline + 1;
        // The request line (at 0) is never the empty line.
        if scanned > 0 && trim_line_end(&data[scanned..end]).is_empty() {
            return Ok((scanned, end));
        }
        scanned = end;
    }
}

/// A line without its `\n` or `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `1a;name=value` → 26.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits: &[u8] = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// What a request's head says about the request.
#[derive(Debug, Default)]
struct RequestHead {
    has_route: bool,
    connect: bool,
    upgrade: bool,
    content_length: Vec<Vec<u8>>,
    transfer_encoding: Vec<Vec<u8>>,
}

impl RequestHead {
    /// How the body that follows is framed.
    fn next_state(&self) -> State {
        if self.connect || self.upgrade {
            return State::Raw;
        }
        if !self.transfer_encoding.is_empty() {
            let last = self
                .transfer_encoding
                .iter()
                .flat_map(|v| v.split(|b| *b == b','))
                .map(<[u8]>::trim_ascii)
                .rfind(|t| !t.is_empty());
            return match last {
                Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => {
                    State::ChunkSize { scanned: 0 }
                }
                // A request body whose end cannot be known: leave the rest alone.
                _ => State::Raw,
            };
        }
        if self.content_length.is_empty() {
            return State::RequestStart;
        }
        let mut lengths = self
            .content_length
            .iter()
            .flat_map(|v| v.split(|b| *b == b','))
            .map(|t| {
                let t = t.trim_ascii();
                if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                std::str::from_utf8(t).ok()?.parse::<u64>().ok()
            });
        let Some(Some(first)) = lengths.next() else {
            return State::Raw;
        };
        if !lengths.all(|l| l == Some(first)) {
            return State::Raw;
        }
        if first == 0 {
            State::RequestStart
        } else {
            State::Body {
                remaining: first,
                chunked: false,
            }
        }
    }
}

/// Reads the request line and header fields (the block without its empty line).
fn parse_head(head: &[u8]) -> RequestHead {
    let mut request = RequestHead::default();
    let mut lines = head.split(|b| *b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    request.connect = request_line
        .split(|b| *b == b' ')
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case(b"CONNECT"));
    for line in lines {
        let line = trim_line_end(line);
        // An obsolete continuation line belongs to the field before it.
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(ROUTE_HEADER.as_bytes()) {
            request.has_route = true;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            request.content_length.push(value.to_vec());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            request.transfer_encoding.push(value.to_vec());
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            request.upgrade = true;
        }
    }
    request
}

/// Copies `from` to `to` through `rewriter`, then shuts `to`'s writing side; returns the
/// bytes written to `to`, counted into `written` as they go.
pub async fn copy_rewriting<R, W>(
    from: &mut R,
    to: &mut W,
    rewriter: &mut RouteHeaderRewriter,
    written: &mut u64,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut input = vec![0u8; 16 * 1024];
    let mut output = Vec::with_capacity(16 * 1024);
    loop {
        let n = from.read(&mut input).await?;
        output.clear();
        if n == 0 {
            rewriter.finish(&mut output);
        } else {
            rewriter.feed(&input[..n], &mut output);
        }
        if !output.is_empty() {
            to.write_all(&output).await?;
            *written += output.len() as u64;
        }
        if n == 0 {
            to.flush().await?;
            to.shutdown().await?;
            return Ok(());
        }
    }
}

/// Copies `from` to `to` unchanged, then shuts `to`'s writing side.
async fn copy_counting<R, W>(from: &mut R, to: &mut W, written: &mut u64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.flush().await?;
            to.shutdown().await?;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        *written += n as u64;
    }
}

/// Splices a local connection and a tunnel stream as `copy_bidirectional` does, the
/// local→remote half going through `rewriter`. Returns (bytes sent to `remote`, bytes
/// received from it), counted even when the connection ends in an error.
pub async fn splice_rewriting<L, T>(
    local: L,
    remote: T,
    mut rewriter: RouteHeaderRewriter,
) -> (u64, u64)
where
    L: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut local_read, mut local_write) = tokio::io::split(local);
    let (mut remote_read, mut remote_write) = tokio::io::split(remote);
    let (mut sent, mut received) = (0u64, 0u64);
    {
        let up = copy_rewriting(&mut local_read, &mut remote_write, &mut rewriter, &mut sent);
        let down = copy_counting(&mut remote_read, &mut local_write, &mut received);
        tokio::pin!(up, down);
        // Both halves run to their end; an error on either ends the connection.
        tokio::select! {
            result = &mut up => {
                if result.is_ok() {
                    let _ = down.await;
                }
            }
            result = &mut down => {
                if result.is_ok() {
                    let _ = up.await;
                }
            }
        }
    }
    (sent, received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROUTE: &str = "kubernetes-route-as: alice\r\n";

    /// Feeds `input` cut at `cuts` (positions, any order) and returns the output.
    fn run(input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut rewriter = RouteHeaderRewriter::new("alice");
        let mut out = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([input.len()]) {
            rewriter.feed(&input[from..cut], &mut out);
            from = cut;
        }
        rewriter.finish(&mut out);
        out
    }

    /// Every split into two and three pieces, plus one byte at a time.
    fn check_all_cuts(input: &[u8], expected: &[u8]) {
        let whole = run(input, &[]);
        assert_eq!(
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(expected)
        );
        let ones: Vec<usize> = (0..input.len()).collect();
        assert_eq!(run(input, &ones), expected, "one byte at a time");
        for a in 0..=input.len() {
            assert_eq!(run(input, &[a]), expected, "cut at {a}");
        }
        for a in (0..=input.len()).step_by(7) {
            for b in (a..=input.len()).step_by(5) {
                assert_eq!(run(input, &[a, b]), expected, "cuts at {a}, {b}");
            }
        }
    }

    fn simple_get() -> (Vec<u8>, Vec<u8>) {
        (
            b"GET /headers HTTP/1.1\r\nHost: stats-api\r\nAccept: */*\r\n\r\n".to_vec(),
            format!("GET /headers HTTP/1.1\r\nHost: stats-api\r\nAccept: */*\r\n{ROUTE}\r\n")
                .into_bytes(),
        )
    }

    /// A mix of requests with their expected rewrites, for pipelining.
    fn corpus() -> Vec<(Vec<u8>, Vec<u8>)> {
        let body_like_headers = "Host: x\r\n\r\nGET / HTTP/1.1\r\nA: b\r\n\r\n";
        vec![
            simple_get(),
            // Already routed (any case): unchanged.
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nKubernetes-Route-As: bob\r\n\r\n".to_vec(),
                b"GET / HTTP/1.1\r\nHost: a\r\nKubernetes-Route-As: bob\r\n\r\n".to_vec(),
            ),
            (
                b"GET / HTTP/1.0\r\nKUBERNETES-ROUTE-AS:bob\r\n\r\n".to_vec(),
                b"GET / HTTP/1.0\r\nKUBERNETES-ROUTE-AS:bob\r\n\r\n".to_vec(),
            ),
            // A body that looks like headers and a request.
            (
                format!(
                    "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body_like_headers}",
                    body_like_headers.len()
                )
                .into_bytes(),
                format!(
                    "POST /x HTTP/1.1\r\nContent-Length: {}\r\n{ROUTE}\r\n{body_like_headers}",
                    body_like_headers.len()
                )
                .into_bytes(),
            ),
            // Chunked, with extensions and trailers, data that looks like a chunk line.
            (
                b"POST /c HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n5;x=y\r\n0\r\n\r\n\r\nA\r\nGET / HTTP\r\n0\r\nX-Sum: 1\r\nKubernetes-Route-As: no\r\n\r\n".to_vec(),
                format!("POST /c HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n{ROUTE}\r\n5;x=y\r\n0\r\n\r\n\r\nA\r\nGET / HTTP\r\n0\r\nX-Sum: 1\r\nKubernetes-Route-As: no\r\n\r\n").into_bytes(),
            ),
            // Chunked without trailers; Transfer-Encoding beats Content-Length.
            (
                b"PUT /d HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding: chunked\r\n\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n".to_vec(),
                format!("PUT /d HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding: chunked\r\n{ROUTE}\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n").into_bytes(),
            ),
            // Bare LF line endings, an absolute target, a zero Content-Length.
            (
                b"DELETE http://svc/a?b=c HTTP/1.1\nHost: svc\nContent-Length: 0\n\n".to_vec(),
                format!("DELETE http://svc/a?b=c HTTP/1.1\nHost: svc\nContent-Length: 0\n{ROUTE}\n").into_bytes(),
            ),
            // A header name containing the route header's name is not it.
            (
                b"OPTIONS * HTTP/1.1\r\nX-kubernetes-route-as: bob\r\n\r\n".to_vec(),
                format!("OPTIONS * HTTP/1.1\r\nX-kubernetes-route-as: bob\r\n{ROUTE}\r\n")
                    .into_bytes(),
            ),
        ]
    }

    #[test]
    fn adds_the_header_under_every_chunking() {
        for (input, expected) in corpus() {
            check_all_cuts(&input, &expected);
        }
    }

    #[test]
    fn pipelined_requests_each_get_the_header() {
        let (input, expected): (Vec<Vec<u8>>, Vec<Vec<u8>>) = corpus().into_iter().unzip();
        check_all_cuts(&input.concat(), &expected.concat());
        // Empty lines between requests are tolerated and kept.
        let (get, get_out) = simple_get();
        let input = [get.clone(), b"\r\n".to_vec(), get.clone()].concat();
        let expected = [get_out.clone(), b"\r\n".to_vec(), get_out].concat();
        check_all_cuts(&input, &expected);
    }

    #[test]
    fn other_protocols_pass_through() {
        let cases: Vec<&[u8]> = vec![
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03GET / HTTP/1.1\r\n\r\n",
            b"*1\r\n$4\r\nPING\r\n",
            b"GET key\r\nGET / HTTP/1.1\r\n\r\n",
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"GET / HTTP/2\r\n\r\n",
        ];
        for input in cases {
            check_all_cuts(input, input);
        }
    }

    #[test]
    fn connect_and_upgrade_leave_the_rest_alone() {
        let tail = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let input =
            format!("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n{tail}");
        let expected = format!(
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{ROUTE}\r\n{tail}"
        );
        check_all_cuts(input.as_bytes(), expected.as_bytes());
        let input = format!("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n{tail}");
        let expected = format!("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n{ROUTE}\r\n{tail}");
        check_all_cuts(input.as_bytes(), expected.as_bytes());
    }

    #[test]
    fn unknown_framing_leaves_the_rest_alone() {
        let tail = "GET / HTTP/1.1\r\n\r\n";
        for head in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n",
        ] {
            let input = format!("{head}\r\n{tail}");
            let expected = format!("{head}{ROUTE}\r\n{tail}");
            check_all_cuts(input.as_bytes(), expected.as_bytes());
        }
        // A bad chunk size: the line and the rest go on unchanged.
        let input = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{tail}");
        let expected =
            format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n{ROUTE}\r\nzz\r\n{tail}");
        check_all_cuts(input.as_bytes(), expected.as_bytes());
    }

    #[test]
    fn an_oversized_header_block_passes_through() {
        let big = format!(
            "GET / HTTP/1.1\r\nX-Big: {}\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            "a".repeat(MAX_HEADER_BLOCK)
        );
        assert_eq!(run(big.as_bytes(), &[]), big.as_bytes());
        assert_eq!(run(big.as_bytes(), &[10, 70_000]), big.as_bytes());
        let mut rewriter = RouteHeaderRewriter::new("alice");
        let mut out = Vec::new();
        for piece in big.as_bytes().chunks(1000) {
            rewriter.feed(piece, &mut out);
            assert!(rewriter.held.len() <= MAX_HEADER_BLOCK + 1000);
        }
        assert!(rewriter.is_raw());
        rewriter.finish(&mut out);
        assert_eq!(out, big.as_bytes());
    }

    #[test]
    fn bodies_are_not_held() {
        let mut rewriter = RouteHeaderRewriter::new("alice");
        let mut out = Vec::new();
        rewriter.feed(
            b"POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n",
            &mut out,
        );
        rewriter.feed(&[7u8; 4096], &mut out);
        assert!(rewriter.held.is_empty());
        assert!(out.ends_with(&[7u8; 4096]));
        let mut rewriter = RouteHeaderRewriter::new("alice");
        let mut out = Vec::new();
        rewriter.feed(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nF4240\r\n",
            &mut out,
        );
        rewriter.feed(&[7u8; 4096], &mut out);
        assert!(rewriter.held.is_empty());
        assert!(out.ends_with(&[7u8; 4096]));
    }

    #[test]
    fn an_unfinished_request_is_passed_on_at_the_end() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n";
        assert_eq!(run(input, &[3, 20]), input);
    }

    proptest! {
        #[test]
        fn random_pipelines_under_random_chunking(
            picks in proptest::collection::vec(0usize..8, 1..6),
            cuts in proptest::collection::vec(0usize..10_000, 0..40),
        ) {
            let corpus = corpus();
            let input: Vec<u8> = picks.iter().flat_map(|i| corpus[*i].0.clone()).collect();
            let expected: Vec<u8> = picks.iter().flat_map(|i| corpus[*i].1.clone()).collect();
            prop_assert_eq!(run(&input, &cuts), expected);
        }

        #[test]
        fn random_bytes_do_not_depend_on_chunking(
            input in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..10),
        ) {
            let out = run(&input, &cuts);
            prop_assert_eq!(out, run(&input, &[]));
        }
    }

    #[tokio::test]
    async fn splices_both_ways_and_counts() {
        let (local_app, local_end) = tokio::io::duplex(64);
        let (remote_end, mut server) = tokio::io::duplex(64);
        let splice = tokio::spawn(splice_rewriting(
            local_end,
            remote_end,
            RouteHeaderRewriter::new("alice"),
        ));
        let (mut app_read, mut app_write) = tokio::io::split(local_app);
        let (get, get_out) = simple_get();
        app_write.write_all(&get).await.unwrap();
        app_write.shutdown().await.unwrap();
        let mut seen = Vec::new();
        server.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, get_out);
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        server.shutdown().await.unwrap();
        let mut reply = Vec::new();
        app_read.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"HTTP/1.1 200 OK\r\n\r\n");
        let (sent, received) = splice.await.unwrap();
        assert_eq!(sent, get_out.len() as u64);
        assert_eq!(received, 19);
    }
}
