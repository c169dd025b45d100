//! A minimal HTTP/1.1 response reader for the load generator.
//!
//! It parses the status line and the few headers that matter for framing and connection reuse
//! (`Content-Length`, `Transfer-Encoding: chunked`, `Connection`), then reads and discards the
//! body. One fixed buffer per connection is reused for every response, so reading a response
//! allocates nothing; bytes that arrive past the end of one response (pipelining) stay in the
//! buffer for the next call. Optionally the first bytes of each body are kept (see
//! [`ResponseReader::capture_body`]), so callers can show what an error answer said.

use std::io::{self, Read};

use thiserror::Error;

/// Read buffer size per connection; also the limit on a response head and on a chunk-size line.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;

/// At most this many `1xx` interim responses are skipped before the final one.
const MAX_INTERIM_RESPONSES: usize = 8;

/// Why a response could not be read.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The socket read failed (including read timeouts).
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection before sending any byte of the response.
    #[error("connection closed by the server before the response")]
    Closed,
    /// The peer closed the connection in the middle of a response.
    #[error("connection closed by the server in the middle of a response")]
    Truncated,
    /// The bytes received are not a valid HTTP/1.x response.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// A response head or chunk-size line does not fit in the read buffer.
    #[error("response {what} does not fit in the {limit}-byte read buffer")]
    TooLarge { what: &'static str, limit: usize },
}

/// What the load generator needs to know about one complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The status code of the final (non-`1xx`) response.
    pub status: u16,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
    /// Bytes this response occupied on the wire: interim responses, head, body and chunk framing.
    pub bytes: u64,
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD request, `1xx`, `204`, `304`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// The parsed parts of a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
}

/// Reads responses from one connection into a reused buffer.
#[derive(Debug)]
pub struct ResponseReader {
    buf: Box<[u8]>,
    /// First unconsumed byte in `buf`.
    start: usize,
    /// One past the last received byte in `buf`.
    end: usize,
    /// Bytes consumed since the reader was made (used to size each response).
    consumed: u64,
    /// At most this many leading body bytes of each response are kept in `captured`.
    capture_limit: usize,
    /// The leading body bytes of the last response read.
    captured: Vec<u8>,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_BUFFER_SIZE)
    }
}

impl ResponseReader {
    /// A reader with a buffer of `capacity` bytes (at least 16).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity.max(16)].into_boxed_slice(),
            start: 0,
            end: 0,
            consumed: 0,
            capture_limit: 0,
            captured: Vec::new(),
        }
    }

    /// Keeps up to `limit` leading body bytes of every response (0, the default, keeps none).
    pub fn capture_body(&mut self, limit: usize) {
        self.capture_limit = limit;
        self.captured = Vec::with_capacity(limit);
    }

    /// The leading body bytes of the last response read (empty unless capturing is on).
    pub fn body_prefix(&self) -> &[u8] {
        &self.captured
    }

    /// Forgets buffered bytes, for when the connection is replaced.
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads one complete response from `r`, discarding its body.
    ///
    /// `has_body` is false for responses to HEAD requests, which never carry a body.
    pub fn read_response<R: Read>(
        &mut self,
        r: &mut R,
        has_body: bool,
    ) -> Result<Response, ClientError> {
        let before = self.consumed;
        self.captured.clear();
        for _ in 0..=MAX_INTERIM_RESPONSES {
            let head_len = self.fill_head(r, self.consumed == before)?;
            let head = parse_head(&self.buf[self.start..self.start + head_len], has_body)?;
            self.advance(head_len);
            if (100..200).contains(&head.status) {
                if head.status == 101 {
                    return Err(ClientError::Malformed("unexpected 101 Switching Protocols"));
                }
                continue;
            }
            self.read_body(r, head.framing)?;
            return Ok(Response {
                status: head.status,
                keep_alive: head.keep_alive,
                bytes: self.consumed - before,
            });
        }
        Err(ClientError::Malformed("too many 1xx interim responses"))
    }

    /// Ensures a whole head is buffered at `start`; returns its length including the blank line.
    fn fill_head<R: Read>(&mut self, r: &mut R, fresh: bool) -> Result<usize, ClientError> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(pos) = find(avail, scanned, b"\r\n\r\n") {
                return Ok(pos + 4);
            }
            scanned = avail.len().saturating_sub(3);
            if avail.len() == self.buf.len() {
                return Err(self.too_large("head"));
            }
            match self.fill(r) {
                Err(ClientError::Truncated) if fresh && self.start == self.end => {
                    return Err(ClientError::Closed)
                }
                other => other?,
            }
        }
    }

    /// Ensures a CRLF-terminated line is buffered at `start`; returns its length without CRLF.
    fn fill_line<R: Read>(&mut self, r: &mut R) -> Result<usize, ClientError> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(pos) = find(avail, scanned, b"\r\n") {
                return Ok(pos);
            }
            scanned = avail.len().saturating_sub(1);
            if avail.len() == self.buf.len() {
                return Err(self.too_large("chunk line"));
            }
            self.fill(r)?;
        }
    }

    /// Reads at least one more byte into the buffer, compacting it first if it is full.
    fn fill<R: Read>(&mut self, r: &mut R) -> Result<(), ClientError> {
        if self.start == self.end {
            self.reset();
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(self.too_large("line"));
        }
        loop {
            match r.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(ClientError::Truncated),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }

    /// Marks `n` buffered bytes as consumed.
    fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
        self.consumed += n as u64;
        if self.start == self.end {
            self.reset();
        }
    }

    fn read_body<R: Read>(&mut self, r: &mut R, framing: Framing) -> Result<(), ClientError> {
        match framing {
            Framing::Empty => Ok(()),
            Framing::Length(n) => self.skip(r, n),
            Framing::Chunked => self.read_chunked(r),
            Framing::UntilClose => self.read_until_close(r),
        }
    }

    /// Consumes exactly `n` body bytes, reading more as needed.
    fn skip<R: Read>(&mut self, r: &mut R, mut n: u64) -> Result<(), ClientError> {
        while n > 0 {
            if self.start == self.end {
                self.fill(r)?;
            }
            let avail = self.end - self.start;
            let take = usize::try_from(n).map_or(avail, |n| n.min(avail));
            self.capture(take);
            self.advance(take);
            n -= take as u64;
        }
        Ok(())
    }

    fn read_chunked<R: Read>(&mut self, r: &mut R) -> Result<(), ClientError> {
        loop {
            let len = self.fill_line(r)?;
            let size = parse_chunk_size(&self.buf[self.start..self.start + len])?;
            self.advance(len + 2);
            if size == 0 {
                return self.skip_trailers(r);
            }
            self.skip(r, size)?;
            if self.fill_line(r)? != 0 {
                return Err(ClientError::Malformed("chunk data not followed by CRLF"));
            }
            self.advance(2);
        }
    }

    /// Consumes trailer fields up to and including the blank line that ends a chunked body.
    fn skip_trailers<R: Read>(&mut self, r: &mut R) -> Result<(), ClientError> {
        loop {
            let len = self.fill_line(r)?;
            self.advance(len + 2);
            if len == 0 {
                return Ok(());
            }
        }
    }

    fn read_until_close<R: Read>(&mut self, r: &mut R) -> Result<(), ClientError> {
        loop {
            self.capture(self.end - self.start);
            self.advance(self.end - self.start);
            match self.fill(r) {
                Ok(()) => {}
                Err(ClientError::Truncated) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Keeps the next `n` buffered body bytes, as far as the capture limit allows.
    fn capture(&mut self, n: usize) {
        let take = n.min(self.capture_limit.saturating_sub(self.captured.len()));
        if take > 0 {
            let from = self.start;
            self.captured
                .extend_from_slice(&self.buf[from..from + take]);
        }
    }

    fn too_large(&self, what: &'static str) -> ClientError {
        ClientError::TooLarge {
            what,
            limit: self.buf.len(),
        }
    }
}

/// Position of `needle` in `hay`, searching from `from`.
fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Parses a head (status line, header lines, blank line).
fn parse_head(head: &[u8], has_body: bool) -> Result<Head, ClientError> {
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let (minor, status) = parse_status_line(lines.next().unwrap_or_default())?;
    let mut facts = HeaderFacts::default();
    for line in lines.filter(|l| !l.is_empty()) {
        facts.absorb(line)?;
    }
    let framing = if !has_body || matches!(status, 100..=199 | 204 | 304) {
        Framing::Empty
    } else if facts.transfer_encoding {
        if facts.chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        facts
            .content_length
            .map_or(Framing::UntilClose, Framing::Length)
    };
    let persistent = if minor == 0 {
        facts.keep_alive && !facts.close
    } else {
        !facts.close
    };
    Ok(Head {
        status,
        framing,
        keep_alive: persistent && framing != Framing::UntilClose,
    })
}

/// Parses `HTTP/1.x SSS reason`; returns the minor version and the status code.
fn parse_status_line(line: &[u8]) -> Result<(u8, u16), ClientError> {
    let bad = ClientError::Malformed("bad status line");
    let rest = line.strip_prefix(b"HTTP/1.").ok_or(bad)?;
    let (&minor, rest) = rest
        .split_first()
        .ok_or(ClientError::Malformed("bad status line"))?;
    let code = rest
        .strip_prefix(b" ")
        .and_then(|r| r.get(..3))
        .filter(|c| c.iter().all(u8::is_ascii_digit))
        .filter(|_| rest.get(4).is_none_or(|&b| b == b' '))
        .ok_or(ClientError::Malformed("bad status code"))?;
    if !minor.is_ascii_digit() {
        return Err(ClientError::Malformed("bad HTTP version"));
    }
    let status = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    Ok((minor - b'0', status))
}

/// The header values that affect framing and connection reuse.
#[derive(Debug, Default)]
struct HeaderFacts {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    close: bool,
    keep_alive: bool,
}

impl HeaderFacts {
    fn absorb(&mut self, line: &[u8]) -> Result<(), ClientError> {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(ClientError::Malformed("header line without a colon"))?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_decimal(value)?;
            if self.content_length.is_some_and(|old| old != n) {
                return Err(ClientError::Malformed("conflicting Content-Length headers"));
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
            self.chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_decimal(digits: &[u8]) -> Result<u64, ClientError> {
    let bad = || ClientError::Malformed("bad Content-Length");
    if digits.is_empty() {
        return Err(bad());
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let d = (d as char).to_digit(10).ok_or_else(bad)?;
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or_else(bad)
    })
}

/// Parses a chunk-size line: hex digits, optionally followed by `;extensions`.
fn parse_chunk_size(line: &[u8]) -> Result<u64, ClientError> {
    let bad = || ClientError::Malformed("bad chunk size");
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = line[..end].trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(bad());
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let d = (d as char).to_digit(16).ok_or_else(bad)?;
        Ok(acc * 16 + u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A `Read` that hands out pre-cut pieces, one piece (or less) per call, then EOF.
    struct Pieces(VecDeque<Vec<u8>>);

    impl Pieces {
        fn new(pieces: &[&[u8]]) -> Self {
            Self(pieces.iter().map(|p| p.to_vec()).collect())
        }

        fn bytewise(data: &[u8]) -> Self {
            Self(data.iter().map(|&b| vec![b]).collect())
        }
    }

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some(front) = self.0.front_mut() else {
                return Ok(0);
            };
            let n = front.len().min(out.len());
            out[..n].copy_from_slice(&front[..n]);
            front.drain(..n);
            if front.is_empty() {
                self.0.pop_front();
            }
            Ok(n)
        }
    }

    const LENGTH: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world";
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n";

    fn read_one(data: &[u8], reader: &mut ResponseReader) -> Response {
        let mut src = Pieces::new(&[data]);
        reader.read_response(&mut src, true).expect("response")
    }

    #[test]
    fn content_length_body() {
        let mut reader = ResponseReader::default();
        let resp = read_one(LENGTH, &mut reader);
        assert_eq!(
            resp,
            Response {
                status: 200,
                keep_alive: true,
                bytes: LENGTH.len() as u64
            }
        );
        assert_eq!(reader.start, reader.end, "body fully consumed");
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let mut reader = ResponseReader::default();
        let resp = read_one(CHUNKED, &mut reader);
        assert_eq!(resp.status, 200);
        assert!(resp.keep_alive);
        assert_eq!(resp.bytes, CHUNKED.len() as u64);
    }

    #[test]
    fn split_at_every_byte_boundary() {
        for data in [LENGTH, CHUNKED] {
            for cut in 1..data.len() {
                for capacity in [DEFAULT_BUFFER_SIZE, 68] {
                    let mut reader = ResponseReader::with_capacity(capacity);
                    let mut src = Pieces::new(&[&data[..cut], &data[cut..]]);
                    let resp = reader
                        .read_response(&mut src, true)
                        .expect("split response");
                    assert_eq!(resp.bytes, data.len() as u64, "cut {cut} cap {capacity}");
                    assert_eq!(resp.status, 200);
                }
            }
            let mut reader = ResponseReader::with_capacity(68);
            let resp = reader.read_response(&mut Pieces::bytewise(data), true);
            assert_eq!(resp.expect("bytewise").bytes, data.len() as u64);
        }
    }

    #[test]
    fn two_pipelined_responses_in_one_read() {
        let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnah";
        let mut both = CHUNKED.to_vec();
        both.extend_from_slice(not_found);
        let mut src = Pieces::new(&[&both]);
        let mut reader = ResponseReader::default();
        let first = reader.read_response(&mut src, true).expect("first");
        assert_eq!(first.status, 200);
        assert!(src.0.is_empty(), "everything arrived in one read");
        let second = reader.read_response(&mut src, true).expect("second");
        assert_eq!((second.status, second.bytes), (404, not_found.len() as u64));
        assert!(matches!(
            reader.read_response(&mut src, true),
            Err(ClientError::Closed)
        ));
    }

    #[test]
    fn pipelined_responses_across_buffer_compaction() {
        let mut stream = Vec::new();
        for _ in 0..5 {
            stream.extend_from_slice(LENGTH);
            stream.extend_from_slice(CHUNKED);
        }
        let mut src = Pieces::new(&[&stream[..100], &stream[100..333], &stream[333..]]);
        let mut reader = ResponseReader::with_capacity(80);
        let mut total = 0;
        for _ in 0..10 {
            total += reader.read_response(&mut src, true).expect("resp").bytes;
        }
        assert_eq!(total, stream.len() as u64);
    }

    #[test]
    fn body_capture_is_bounded_and_per_response() {
        let mut reader = ResponseReader::with_capacity(68);
        assert!(read_one(LENGTH, &mut reader).status == 200 && reader.body_prefix().is_empty());
        reader.capture_body(8);
        read_one(LENGTH, &mut reader);
        assert_eq!(reader.body_prefix(), b"hello wo");
        reader.capture_body(100);
        let mut src = Pieces::bytewise(CHUNKED);
        reader.read_response(&mut src, true).expect("chunked");
        assert_eq!(reader.body_prefix(), b"hello 0123456789");
        read_one(b"HTTP/1.1 204 No Content\r\n\r\n", &mut reader);
        assert!(reader.body_prefix().is_empty(), "cleared for each response");
        let data = b"HTTP/1.0 400 Bad\r\n\r\nline 1: bad field";
        read_one(data, &mut reader);
        assert_eq!(reader.body_prefix(), b"line 1: bad field");
    }

    #[test]
    fn no_body_cases() {
        let mut reader = ResponseReader::default();
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        let resp = reader.read_response(&mut Pieces::new(&[head]), false);
        assert_eq!(resp.expect("HEAD").bytes, head.len() as u64);
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(read_one(no_content, &mut reader).status, 204);
        let interim =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
        let resp = read_one(interim, &mut reader);
        assert_eq!((resp.status, resp.bytes), (201, interim.len() as u64));
    }

    #[test]
    fn connection_reuse_rules() {
        let mut reader = ResponseReader::default();
        let cases: [(&[u8], bool); 4] = [
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
            (b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", true),
        ];
        for (data, keep_alive) in cases {
            assert_eq!(read_one(data, &mut reader).keep_alive, keep_alive);
        }
    }

    #[test]
    fn body_until_close() {
        let data = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nsome body of unknown length";
        let mut src = Pieces::new(&[&data[..20], &data[20..40], &data[40..]]);
        let mut reader = ResponseReader::with_capacity(32);
        let resp = reader.read_response(&mut src, true).expect("until close");
        assert_eq!((resp.keep_alive, resp.bytes), (false, data.len() as u64));
    }

    #[test]
    fn errors() {
        let mut reader = ResponseReader::default();
        let mut check = |data: &[u8], want: fn(&ClientError) -> bool| {
            reader.reset();
            let err = reader.read_response(&mut Pieces::new(&[data]), true);
            let err = err.expect_err("should fail");
            assert!(
                want(&err),
                "{err:?} for {:?}",
                String::from_utf8_lossy(data)
            );
        };
        check(b"", |e| matches!(e, ClientError::Closed));
        check(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", |e| {
            matches!(e, ClientError::Truncated)
        });
        check(b"HTTP/1.1 200 OK\r\nContent-", |e| {
            matches!(e, ClientError::Truncated)
        });
        check(b"SMTP 220 hi\r\n\r\n", |e| {
            matches!(e, ClientError::Malformed(_))
        });
        check(b"HTTP/1.1 2000 OK\r\n\r\n", |e| {
            matches!(e, ClientError::Malformed(_))
        });
        check(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", |e| {
            matches!(e, ClientError::Malformed(_))
        });
        check(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            |e| matches!(e, ClientError::Malformed(_)),
        );
        check(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
            |e| matches!(e, ClientError::Malformed(_)),
        );
        let mut small = ResponseReader::with_capacity(16);
        let err = small.read_response(&mut Pieces::new(&[LENGTH]), true);
        assert!(matches!(err, Err(ClientError::TooLarge { .. })));
    }
}
