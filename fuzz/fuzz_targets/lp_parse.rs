//! Fuzz target: the line-protocol parser on arbitrary bytes.
//!
//! Run from the repository root with `cargo +nightly fuzz run lp_parse` (see `fuzz/Cargo.toml`).
//! The parser must never panic; on success every accessor must work and every line must keep
//! the invariants the parser promises (at least one field, tags sorted and unique, field keys
//! unique, line numbers non-decreasing); on failure there is at least one error, at most
//! `MAX_ERRORS`, and the batch is empty.

#![no_main]

use chronoshard::lp::{self, ParsedBatch, MAX_ERRORS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let mut batch = ParsedBatch::default();
    match lp::parse(body, &mut batch) {
        Ok(()) => check_lines(&batch),
        Err(e) => {
            assert!(!e.errors.is_empty() && e.errors.len() <= MAX_ERRORS);
            assert!(e.errors.iter().all(|e| e.line_no >= 1));
            assert!(batch.is_empty());
            let _ = e.to_string();
        }
    }
});

fn check_lines(batch: &ParsedBatch<'_>) {
    let mut last_line_no = 0;
    for line in batch.lines() {
        assert!(!line.measurement().is_empty());
        assert!(line.line_no() >= last_line_no.max(1));
        last_line_no = line.line_no();
        let tags: Vec<(&str, &str)> = line.tags().collect();
        assert!(tags.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(tags.iter().all(|(k, v)| !k.is_empty() && !v.is_empty()));
        for (k, v) in &tags {
            assert_eq!(line.tag(k), Some(*v));
        }
        let fields: Vec<_> = line.fields().collect();
        assert!(!fields.is_empty());
        for (i, (k, _)) in fields.iter().enumerate() {
            assert!(!k.is_empty());
            assert!(fields[i + 1..].iter().all(|(other, _)| other != k));
        }
        let _ = line.timestamp();
    }
}
