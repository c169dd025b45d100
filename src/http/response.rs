//! Building HTTP/1.1 responses: status line, `Date`, `Content-Length`, the body.
//!
//! Responses are serialized into the connection's output buffer, so pipelined answers leave in
//! one write. A HEAD answer carries the headers of the GET answer and no body.
//!
//! A response may instead carry a `BodyStream` (chunked SQL answers): its head says
//! `Transfer-Encoding: chunked` and the connection writes each `Chunk::Data` as one HTTP chunk
//! as it arrives, then the terminating zero chunk on `Chunk::End`. On `Chunk::Abort`, a silent
//! producer or a passed deadline, the connection is closed without the zero chunk: a client can
//! never mistake a truncated answer for a complete one.

use std::cell::RefCell;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::ApiError;

/// An answer to one request.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<&'static str>,
    /// Extra headers, already valid header text.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// A body produced while it is sent (then `body` is empty): chunked transfer coding.
    pub stream: Option<BodyStream>,
}

/// One piece of a streamed body.
#[derive(Debug)]
pub enum Chunk {
    /// Body bytes (already content-coded); an empty one is skipped.
    Data(Vec<u8>),
    /// The body is complete.
    End,
    /// The body cannot be completed (the reason is logged).
    Abort(String),
}

/// The source of a streamed body: a bounded channel from its producer, so the producer waits
/// while the client is slow and the memory held stays a few chunks.
#[derive(Debug)]
pub struct BodyStream {
    pub chunks: async_channel::Receiver<Chunk>,
    /// The body must be complete by then, else it is aborted.
    pub deadline: Instant,
    /// Dropped with the stream: cancels the producer (say, a query task) when the body ends
    /// early.
    pub guard: Option<Box<dyn std::any::Any>>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: Some(content_type),
            headers: Vec::new(),
            body,
            stream: None,
        }
    }

    /// 200 with an empty body.
    pub fn empty_ok() -> Response {
        Response {
            status: 200,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
            stream: None,
        }
    }

    /// The JSON error answer for `err`, with `Allow` for a 405.
    pub fn from_error(err: &ApiError) -> Response {
        let mut r = Response::new(err.status(), "application/json", err.body());
        r.headers = err.headers();
        r
    }

    /// Appends the serialized response to `out`. `with_body` is false for HEAD requests;
    /// `close` adds `Connection: close`.
    pub fn write_to(&self, out: &mut Vec<u8>, with_body: bool, close: bool) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status_line(self.status).as_bytes());
        out.extend_from_slice(b"\r\nDate: ");
        with_http_date(|d| out.extend_from_slice(d.as_bytes()));
        out.extend_from_slice(b"\r\nServer: chronoshard\r\n");
        if let Some(ct) = self.content_type {
            push_header(out, "Content-Type", ct);
        }
        for (name, value) in &self.headers {
            push_header(out, name, value);
        }
        if self.stream.is_some() {
            push_header(out, "Transfer-Encoding", "chunked");
        } else {
            let mut len = itoa_buf();
            push_header(out, "Content-Length", fmt_usize(&mut len, self.body.len()));
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if with_body {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Appends `data` as one HTTP/1.1 chunk (size in hex, CRLF, data, CRLF); nothing for no data,
/// since an empty chunk would end the body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The zero chunk (no trailers) that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn fmt_usize(buf: &mut [u8; 20], mut n: usize) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Status code and reason phrase.
pub fn status_line(status: u16) -> &'static str {
    match status {
        200 => "200 OK",
        204 => "204 No Content",
        400 => "400 Bad Request",
        401 => "401 Unauthorized",
        404 => "404 Not Found",
        405 => "405 Method Not Allowed",
        413 => "413 Content Too Large",
        422 => "422 Unprocessable Content",
        429 => "429 Too Many Requests",
        431 => "431 Request Header Fields Too Large",
        500 => "500 Internal Server Error",
        503 => "503 Service Unavailable",
        _ => "500 Internal Server Error",
    }
}

thread_local! {
    /// The formatted `Date` of the current second; formatting it per request would cost more
    /// than answering a ping.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

fn with_http_date(f: impl FnOnce(&str)) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        f(&cached.1);
    });
}

/// Appends `s` as a JSON string literal (quoted, escaped).
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_head_and_body() {
        let r = Response::new(200, "application/json", b"{}".to_vec());
        let mut out = Vec::new();
        r.write_to(&mut out, true, false);
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
        assert!(
            text.contains("\r\nContent-Type: application/json\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\nContent-Length: 2\r\n\r\n{}"), "{text}");
    }

    #[test]
    fn head_answer_keeps_length_but_no_body() {
        let r = Response::new(200, "text/plain", b"hello".to_vec());
        let mut out = Vec::new();
        r.write_to(&mut out, false, true);
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn formats_numbers() {
        let mut b = itoa_buf();
        assert_eq!(fmt_usize(&mut b, 0), "0");
        assert_eq!(fmt_usize(&mut b, 1234567), "1234567");
        assert_eq!(fmt_usize(&mut b, usize::MAX), usize::MAX.to_string());
    }

    #[test]
    fn json_escapes_control_characters() {
        let mut s = String::new();
        push_json_string(&mut s, "a\u{1}b");
        assert_eq!(s, "\"a\\u0001b\"");
    }
}
