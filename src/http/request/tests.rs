//! The request reader fed the same bytes split at every boundary, plus the refusals.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{future::block_on, AsyncRead};

use super::*;

/// Hands out its bytes in the given pieces, one piece per read (or less if the buffer is small).
struct Pieces {
    pieces: Vec<Vec<u8>>,
}

impl Pieces {
    fn split(bytes: &[u8], at: &[usize]) -> Pieces {
        let mut pieces = Vec::new();
        let mut from = 0;
        for &i in at {
            pieces.push(bytes[from..i].to_vec());
            from = i;
        }
        pieces.push(bytes[from..].to_vec());
        pieces.retain(|p| !p.is_empty());
        pieces.reverse();
        Pieces { pieces }
    }
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let Some(mut piece) = self.pieces.pop() else {
            return Poll::Ready(Ok(0));
        };
        let n = piece.len().min(buf.len());
        buf[..n].copy_from_slice(&piece[..n]);
        if n < piece.len() {
            self.pieces.push(piece.split_off(n));
        }
        Poll::Ready(Ok(n))
    }
}

const LIMITS: HeadLimits = HeadLimits {
    header_bytes_max: 8192,
    headers_count_max: 32,
};

/// Reads every request in `reader` to the end, returning (path, body) pairs.
fn read_all(
    reader: &mut Pieces,
    inbuf_initial: usize,
) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
    block_on(async {
        let mut buf = InBuf::new(inbuf_initial, LIMITS.header_bytes_max);
        let mut out = Vec::new();
        while let Some(head) = read_head(reader, &mut buf, LIMITS).await? {
            let body = read_body(reader, &mut buf, head.framing, 1 << 20).await?;
            out.push((head.path.clone(), body));
        }
        Ok(out)
    })
}

fn at_every_boundary(raw: &[u8], expected: &[(&str, &[u8])]) {
    for cut in 0..=raw.len() {
        for initial in [1, 7, 4096] {
            let mut r = Pieces::split(raw, &[cut]);
            let got = read_all(&mut r, initial)
                .unwrap_or_else(|e| panic!("cut at {cut}, buffer {initial}: {e}"));
            let want: Vec<(String, Vec<u8>)> = expected
                .iter()
                .map(|(p, b)| (p.to_string(), b.to_vec()))
                .collect();
            assert_eq!(got, want, "cut at {cut}, buffer {initial}");
        }
    }
    // And one byte at a time.
    let every: Vec<usize> = (1..raw.len()).collect();
    let mut r = Pieces::split(raw, &every);
    assert_eq!(
        read_all(&mut r, 16).expect("byte by byte").len(),
        expected.len()
    );
}

#[test]
fn get_split_everywhere() {
    at_every_boundary(
        b"GET /api/v1/ping HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        &[("/api/v1/ping", b"")],
    );
}

#[test]
fn content_length_body_split_everywhere() {
    at_every_boundary(
        b"POST /api/v1/write?db=public HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
        &[("/api/v1/write", b"hello world")],
    );
}

#[test]
fn chunked_body_split_everywhere() {
    at_every_boundary(
        b"POST /api/v1/sql HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n",
        &[("/api/v1/sql", b"hello world")],
    );
}

#[test]
fn pipelined_requests_split_everywhere() {
    at_every_boundary(
        b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
          POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\nGET /d HTTP/1.1\r\n\r\n",
        &[("/a", b""), ("/b", b"abc"), ("/c", b"xy"), ("/d", b"")],
    );
}

fn first_error(raw: &[u8]) -> ReadError {
    let mut r = Pieces::split(raw, &[]);
    match read_all(&mut r, 4096) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn refusals() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "both",
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "conflicting",
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "content-length",
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            "content-length",
        ),
        (
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "transfer-encoding",
        ),
        (b"GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", "expect"),
        (b"GET nope HTTP/1.1\r\n\r\n", "absolute path"),
        (b"\x00\x01garbage\r\n\r\n", "malformed"),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "chunk size",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n",
            "longer",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n",
            "CRLF",
        ),
    ];
    for (raw, needle) in cases {
        let text = first_error(raw).to_string();
        assert!(
            text.to_lowercase().contains(&needle.to_lowercase()),
            "{:?}: {text}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn oversized_head_and_too_many_headers() {
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 10_000));
    big.extend_from_slice(b"\r\n\r\n");
    assert!(matches!(
        first_error(&big),
        ReadError::Http(HttpError::HeaderTooLarge { .. })
    ));
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..40 {
        many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(matches!(
        first_error(&many),
        ReadError::Http(HttpError::TooManyHeaders { .. })
    ));
}

#[test]
fn body_limits_hold_for_both_framings() {
    let block = |raw: &[u8]| {
        block_on(async {
            let mut r = Pieces::split(raw, &[]);
            let mut buf = InBuf::new(64, 8192);
            let head = read_head(&mut r, &mut buf, LIMITS).await?.expect("a head");
            read_body(&mut r, &mut buf, head.framing, 4).await
        })
    };
    let sized = block(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde");
    assert!(matches!(
        sized,
        Err(ReadError::Http(HttpError::BodyTooLarge { .. }))
    ));
    let chunked = block(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    assert!(matches!(
        chunked,
        Err(ReadError::Http(HttpError::BodyTooLarge { .. }))
    ));
    let fits = block(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
    );
    assert_eq!(fits.expect("fits"), b"abcd");
}

#[test]
fn truncated_body_is_eof() {
    let e = first_error(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    assert!(matches!(e, ReadError::Eof));
    let e = first_error(b"GET / HTTP/1.1\r\nHost");
    assert!(matches!(e, ReadError::Eof));
}

#[test]
fn keep_alive_rules() {
    let head = |raw: &[u8]| {
        parse_head(raw, LIMITS)
            .expect("parses")
            .expect("complete")
            .0
    };
    assert!(head(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
    assert!(!head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    let h = head(b"POST /x?a=1&b HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
    assert!(h.expect_continue);
    assert_eq!(h.query.as_deref(), Some("a=1&b"));
}
