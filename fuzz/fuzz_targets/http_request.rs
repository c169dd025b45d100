//! Fuzz target: the HTTP/1.1 request reader on arbitrary bytes — the head parser (with the
//! server's default limits), the query-string parser of the head's target, and the chunked body
//! decoder fed the rest of the input in arbitrary pieces.
//!
//! Run from the repository root with `cargo +nightly fuzz run http_request`. Nothing may panic;
//! a parsed head must have consumed no more than the input; the chunked decoder must never
//! report consuming more than it was given, nor produce more than its limit.

#![no_main]

use chronoshard::http::query::Params;
use chronoshard::http::request::{parse_head, ChunkedDecoder, HeadLimits};
use libfuzzer_sys::fuzz_target;

const LIMITS: HeadLimits = HeadLimits {
    header_bytes_max: 16 * 1024,
    headers_count_max: 64,
};
const BODY_LIMIT: usize = 64 * 1024;

fuzz_target!(|input: &[u8]| {
    let rest = match parse_head(input, LIMITS) {
        Ok(Some((head, used))) => {
            assert!(used <= input.len());
            let _ = Params::parse(head.query.as_deref());
            let _ = head.header("content-length");
            let _ = head.header_joined("accept");
            let _ = head.has_no_body();
            &input[used..]
        }
        Ok(None) | Err(_) => input,
    };
    // The first byte (if any) picks the piece size, so splits land anywhere.
    let step = usize::from(rest.first().copied().unwrap_or(1)).max(1);
    let mut decoder = ChunkedDecoder::new(BODY_LIMIT);
    let mut out = Vec::new();
    // What the connection holds but the decoder has not consumed yet.
    let mut pending: Vec<u8> = Vec::new();
    for piece in rest.chunks(step) {
        pending.extend_from_slice(piece);
        match decoder.feed(&pending, &mut out) {
            Ok((used, done)) => {
                assert!(used <= pending.len());
                assert!(out.len() <= BODY_LIMIT);
                pending.drain(..used);
                if done {
                    break;
                }
            }
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
});
