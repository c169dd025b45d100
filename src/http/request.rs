//! Reading HTTP/1.1 requests: the head through httparse, the body by Content-Length or chunked
//! transfer coding, each under a bound.
//!
//! The reader is generic over `AsyncRead` so the very code a connection runs is what the unit
//! tests drive with a request split at every byte boundary. Timeouts are not its business: the
//! connection wraps the socket in a deadline reader (see `conn`). Invariants: no more than
//! `header_bytes_max` bytes are buffered while looking for the end of a head, and no body grows
//! past the route's limit; a request that both has Content-Length and is chunked is refused, so
//! two servers can never disagree on where it ends.

use std::io;

use futures_lite::{AsyncRead, AsyncReadExt};

use crate::http::error::HttpError;

/// Bytes read from the socket but not consumed yet. Pipelined requests stay here between reads.
pub struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    capacity_max: usize,
}

/// Longest chunk-size line (with extensions) accepted in a chunked body.
const CHUNK_LINE_BYTES_MAX: usize = 1024;
/// Bodies grow in steps of at most this many bytes, so a client claiming a huge Content-Length
/// costs memory only as fast as it really sends.
const BODY_GROW_BYTES: usize = 1 << 20;

impl InBuf {
    /// A buffer that starts at `initial` bytes and may grow to `capacity_max`.
    pub fn new(initial: usize, capacity_max: usize) -> InBuf {
        let initial = initial.min(capacity_max).max(1);
        InBuf {
            data: vec![0; initial],
            start: 0,
            end: 0,
            capacity_max,
        }
    }

    pub fn available(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.end - self.start, "consumed more than buffered");
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once from `r`, making room first. Returns 0 at end of stream, and an error of kind
    /// `OutOfMemory` when the buffer is at its bound and full.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<usize> {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < self.capacity_max {
                let grown = (self.data.len() * 2).min(self.capacity_max);
                self.data.resize(grown, 0);
            } else {
                return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer full"));
            }
        }
        let n = r.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// Request methods we route on; anything else is kept as text for the 405 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other(String),
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        }
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n` (a request without either header has length 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request line and headers. Header names are lower-cased; values are kept as sent.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    /// Whether the connection stays open after this request (HTTP/1.1 default, 1.0 opt-in).
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header joined with ", " (list headers may be split over several lines).
    pub fn header_joined(&self, name: &str) -> Option<String> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name);
        let first = values.next()?.1.clone();
        Some(values.fold(first, |acc, (_, v)| acc + ", " + v))
    }

    /// True when the request has no body at all.
    pub fn has_no_body(&self) -> bool {
        self.framing == Framing::Length(0)
    }
}

/// Limits the head reader enforces.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub header_bytes_max: usize,
    pub headers_count_max: usize,
}

/// Parses a complete head at the start of `buf`. Returns `None` when more bytes are needed, or
/// the head and the number of bytes it took.
pub fn parse_head(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut storage = vec![httparse::EMPTY_HEADER; limits.headers_count_max];
    let mut req = httparse::Request::new(&mut storage);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= limits.header_bytes_max {
                return Err(HttpError::HeaderTooLarge {
                    limit_bytes: limits.header_bytes_max,
                });
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::TooManyHeaders {
                limit: limits.headers_count_max,
            })
        }
        Err(e) => return Err(HttpError::Malformed(format!("request head: {e}"))),
    };
    if consumed > limits.header_bytes_max {
        return Err(HttpError::HeaderTooLarge {
            limit_bytes: limits.header_bytes_max,
        });
    }
    let head = build_head(&req)?;
    Ok(Some((head, consumed)))
}

fn build_head(req: &httparse::Request<'_, '_>) -> Result<RequestHead, HttpError> {
    let (method, target, version) = match (req.method, req.path, req.version) {
        (Some(m), Some(p), Some(v)) => (m, p, v),
        _ => return Err(HttpError::Malformed("incomplete request line".into())),
    };
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| HttpError::InvalidHeader {
            name: h.name.to_ascii_lowercase(),
            reason: "value is not valid UTF-8".into(),
        })?;
        headers.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    if !path.starts_with('/') {
        return Err(HttpError::Malformed(format!(
            "request target {target:?} is not an absolute path"
        )));
    }
    let mut head = RequestHead {
        method: Method::parse(method),
        path,
        query,
        version_minor: version,
        headers,
        framing: Framing::Length(0),
        keep_alive: version == 1,
        expect_continue: false,
    };
    head.framing = framing_of(&head)?;
    head.keep_alive = keep_alive_of(&head);
    head.expect_continue = expect_of(&head)?;
    Ok(head)
}

fn framing_of(head: &RequestHead) -> Result<Framing, HttpError> {
    let te = head.header_joined("transfer-encoding");
    let mut lengths = head
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str());
    let length = match lengths.next() {
        None => None,
        Some(first) => {
            if lengths.any(|other| other != first) {
                return Err(HttpError::Malformed(
                    "conflicting Content-Length headers".into(),
                ));
            }
            let valid = !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit());
            match first.parse::<u64>() {
                Ok(n) if valid => Some(n),
                _ => {
                    return Err(HttpError::InvalidHeader {
                        name: "content-length".into(),
                        reason: format!("{first:?} is not a byte count"),
                    })
                }
            }
        }
    };
    match (te, length) {
        (Some(_), Some(_)) => Err(HttpError::Malformed(
            "both Transfer-Encoding and Content-Length are present".into(),
        )),
        (Some(te), None) if te.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
        (Some(te), None) => Err(HttpError::InvalidHeader {
            name: "transfer-encoding".into(),
            reason: format!("only \"chunked\" is supported, got {te:?}"),
        }),
        (None, Some(n)) => Ok(Framing::Length(n)),
        (None, None) => Ok(Framing::Length(0)),
    }
}

fn keep_alive_of(head: &RequestHead) -> bool {
    let connection = head.header_joined("connection").unwrap_or_default();
    let has = |token: &str| {
        connection
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if has("close") {
        false
    } else if head.version_minor == 0 {
        has("keep-alive")
    } else {
        true
    }
}

fn expect_of(head: &RequestHead) -> Result<bool, HttpError> {
    match head.header("expect") {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("100-continue") => Ok(head.version_minor == 1),
        Some(v) => Err(HttpError::InvalidHeader {
            name: "expect".into(),
            reason: format!("only 100-continue is supported, got {v:?}"),
        }),
    }
}

/// Reads the next request head, after the caller has seen at least one byte of it (or not: an
/// empty buffer is filled first). Returns `Ok(None)` on a clean end of stream before any byte.
pub async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut InBuf,
    limits: HeadLimits,
) -> Result<Option<RequestHead>, ReadError> {
    loop {
        if !buf.is_empty() {
            if let Some((head, n)) = parse_head(buf.available(), limits)? {
                buf.consume(n);
                return Ok(Some(head));
            }
        }
        let was_empty = buf.is_empty();
        match buf.fill(r).await {
            Ok(0) if was_empty => return Ok(None),
            Ok(0) => return Err(ReadError::Eof),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                return Err(HttpError::HeaderTooLarge {
                    limit_bytes: limits.header_bytes_max,
                }
                .into())
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Why reading a request stopped: the peer (close the connection quietly) or the request
/// (answer with the HTTP error, then close).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed in the middle of a request")]
    Eof,
    #[error("reading request: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// Reads a whole body of the given framing, bounded by `limit_bytes`.
pub async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut InBuf,
    framing: Framing,
    limit_bytes: usize,
) -> Result<Vec<u8>, ReadError> {
    match framing {
        Framing::Length(n) => {
            if n > limit_bytes as u64 {
                return Err(HttpError::BodyTooLarge { limit_bytes }.into());
            }
            read_sized(r, buf, n as usize).await
        }
        Framing::Chunked => read_chunked(r, buf, limit_bytes).await,
    }
}

async fn read_sized<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut InBuf,
    len: usize,
) -> Result<Vec<u8>, ReadError> {
    let from_buf = buf.available().len().min(len);
    let mut body = Vec::with_capacity(len.min(BODY_GROW_BYTES).max(from_buf));
    body.extend_from_slice(&buf.available()[..from_buf]);
    buf.consume(from_buf);
    while body.len() < len {
        let filled = body.len();
        let step = (len - filled).min(BODY_GROW_BYTES);
        body.resize(filled + step, 0);
        let n = r.read(&mut body[filled..]).await?;
        body.truncate(filled + n);
        if n == 0 {
            return Err(ReadError::Eof);
        }
    }
    Ok(body)
}

async fn read_chunked<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut InBuf,
    limit_bytes: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut decoder = ChunkedDecoder::new(limit_bytes);
    let mut body = Vec::new();
    loop {
        let (consumed, done) = decoder.feed(buf.available(), &mut body)?;
        buf.consume(consumed);
        if done {
            return Ok(body);
        }
        match buf.fill(r).await {
            Ok(0) => return Err(ReadError::Eof),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                return Err(HttpError::Malformed("chunk line or trailer too long".into()).into())
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty line.
    Trailer,
    Done,
}

/// Decodes `Transfer-Encoding: chunked` incrementally (RFC 9112 §7.1). Trailers are read and
/// dropped. Lines must end in CRLF.
pub struct ChunkedDecoder {
    state: ChunkState,
    limit_bytes: usize,
    trailer_bytes: usize,
}

impl ChunkedDecoder {
    pub fn new(limit_bytes: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: ChunkState::Size,
            limit_bytes,
            trailer_bytes: 0,
        }
    }

    /// Consumes what it can of `input`, appending data to `out`. Returns bytes consumed and
    /// whether the body is complete.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), HttpError> {
        let mut pos = 0;
        while self.state != ChunkState::Done {
            let rest = &input[pos..];
            let step = match self.state {
                ChunkState::Size => self.size_line(rest, out.len())?,
                ChunkState::Data(left) => Self::data(rest, left, out).map(|(n, left)| {
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    n
                }),
                ChunkState::DataEnd => match line(rest)? {
                    Some((b"", n)) => {
                        self.state = ChunkState::Size;
                        Some(n)
                    }
                    Some(_) => return Err(malformed_chunk("chunk data longer than its size")),
                    None => None,
                },
                ChunkState::Trailer => self.trailer_line(rest)?,
                ChunkState::Done => Some(0),
            };
            match step {
                Some(n) => pos += n,
                None => return Ok((pos, false)),
            }
        }
        Ok((pos, true))
    }

    /// Copies chunk data; `None` when there is no input to take from.
    fn data(rest: &[u8], left: u64, out: &mut Vec<u8>) -> Option<(usize, u64)> {
        if rest.is_empty() {
            return None;
        }
        let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
        out.extend_from_slice(&rest[..take]);
        Some((take, left - take as u64))
    }

    fn size_line(&mut self, rest: &[u8], body_len: usize) -> Result<Option<usize>, HttpError> {
        let Some((text, n)) = line(rest)? else {
            if rest.len() > CHUNK_LINE_BYTES_MAX {
                return Err(malformed_chunk("chunk size line too long"));
            }
            return Ok(None);
        };
        let hex = text.split(|&b| b == b';').next().unwrap_or_default();
        let hex = std::str::from_utf8(hex).map_err(|_| malformed_chunk("bad chunk size"))?;
        let size = u64::from_str_radix(hex.trim(), 16)
            .map_err(|_| malformed_chunk(&format!("bad chunk size {hex:?}")))?;
        if size == 0 {
            self.state = ChunkState::Trailer;
        } else {
            // Checked before the bytes arrive, so an announced giant chunk is refused at once.
            if (body_len as u64).saturating_add(size) > self.limit_bytes as u64 {
                return Err(HttpError::BodyTooLarge {
                    limit_bytes: self.limit_bytes,
                });
            }
            self.state = ChunkState::Data(size);
        }
        Ok(Some(n))
    }

    fn trailer_line(&mut self, rest: &[u8]) -> Result<Option<usize>, HttpError> {
        match line(rest)? {
            Some((b"", n)) => {
                self.state = ChunkState::Done;
                Ok(Some(n))
            }
            Some((_, n)) => {
                self.trailer_bytes += n;
                if self.trailer_bytes > CHUNK_LINE_BYTES_MAX * 8 {
                    return Err(malformed_chunk("trailers too long"));
                }
                Ok(Some(n))
            }
            None => Ok(None),
        }
    }
}

fn malformed_chunk(what: &str) -> HttpError {
    HttpError::Malformed(format!("chunked body: {what}"))
}

/// Splits off one CRLF-terminated line: its content and the bytes it took (with the CRLF).
fn line(input: &[u8]) -> Result<Option<(&[u8], usize)>, HttpError> {
    match input.iter().position(|&b| b == b'\n') {
        None => Ok(None),
        Some(i) if i > 0 && input[i - 1] == b'\r' => Ok(Some((&input[..i - 1], i + 1))),
        Some(_) => Err(malformed_chunk("line not ended by CRLF")),
    }
}

#[cfg(test)]
mod tests;
