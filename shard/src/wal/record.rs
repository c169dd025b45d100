//! The byte form of one WAL record, and the check run on every run of records before it is
//! written (layout in `docs/formats.md`, "WAL record"):
//!
//! ```text
//! [len: u32 LE][crc32c: u32 LE over seq+payload][seq: u64 LE][payload: len bytes]
//! ```
//!
//! Records are packed back to back; `len == 0` never starts a record (an empty payload is
//! refused on append), so a zero length is how the log's end (padding, or never written space)
//! shows.

/// Bytes before the payload: length, checksum, sequence number.
pub(crate) const HEADER_BYTES: usize = 16;
const _: () = assert!(HEADER_BYTES == 4 + 4 + 8);

/// The unit of every WAL write: writes cover whole blocks at block-aligned offsets.
pub(crate) const BLOCK_BYTES: usize = 4096;
const _: () = assert!(BLOCK_BYTES % 4096 == 0);
const _: () = assert!(BLOCK_BYTES as u64 % crate::io::IO_ALIGN_BYTES == 0);
const _: () = assert!(BLOCK_BYTES > HEADER_BYTES);

/// A record header as read from disk (not yet validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub len: u32,
    pub crc: u32,
    pub seq: u64,
}

impl Header {
    pub fn parse(bytes: &[u8; HEADER_BYTES]) -> Header {
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[8..16]);
        Header {
            len: word(0),
            crc: word(4),
            seq: u64::from_le_bytes(seq),
        }
    }
}

/// CRC-32C (Castagnoli) of the sequence number (8 bytes LE) followed by the payload.
pub(crate) fn checksum(seq: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload)
}

/// Header and payload of record `seq`. The payload must be non-empty and fit a `u32` length.
pub(crate) fn encode(seq: u64, payload: &[u8]) -> Vec<u8> {
    assert!(
        !payload.is_empty(),
        "empty WAL records are indistinguishable from padding"
    );
    assert!(
        payload.len() <= u32::MAX as usize,
        "WAL record length must fit a u32"
    );
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(seq, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks that `bytes` is exactly a run of valid records with consecutive sequence numbers
/// starting at `first_seq`; returns the last one's. Used to assert what is about to be written.
pub(crate) fn check_run(bytes: &[u8], first_seq: u64) -> Result<u64, String> {
    let mut pos = 0usize;
    let mut seq = first_seq;
    while pos < bytes.len() {
        let Some(head) = bytes.get(pos..pos + HEADER_BYTES) else {
            return Err(format!("truncated header at {pos}"));
        };
        let mut h = [0u8; HEADER_BYTES];
        h.copy_from_slice(head);
        let h = Header::parse(&h);
        let end = pos + HEADER_BYTES + h.len as usize;
        let Some(payload) = bytes.get(pos + HEADER_BYTES..end) else {
            return Err(format!("record at {pos} runs past the run's end"));
        };
        if h.len == 0 || h.seq != seq || h.crc != checksum(h.seq, payload) {
            return Err(format!("bad record at {pos}: {h:?}, expected seq {seq}"));
        }
        pos = end;
        seq += 1;
    }
    if seq == first_seq {
        return Err("empty run".into());
    }
    Ok(seq - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_layout() {
        let r = encode(0x0102_0304_0506_0708, b"abc");
        assert_eq!(&r[0..4], &[3, 0, 0, 0]);
        assert_eq!(&r[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&r[16..], b"abc");
        let crc = crc32c::crc32c(&r[8..]);
        assert_eq!(&r[4..8], &crc.to_le_bytes());
        let mut h = [0u8; HEADER_BYTES];
        h.copy_from_slice(&r[..HEADER_BYTES]);
        assert_eq!(
            Header::parse(&h),
            Header {
                len: 3,
                crc,
                seq: 0x0102_0304_0506_0708
            }
        );
    }

    /// The worked example in `docs/formats.md`.
    #[test]
    fn matches_the_documented_example() {
        let r = encode(1, b"abc");
        let doc = [
            0x03, 0x00, 0x00, 0x00, 0xf4, 0xdd, 0x8f, 0x6b, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x61, 0x62, 0x63,
        ];
        assert_eq!(r, doc);
    }

    #[test]
    fn check_run_accepts_runs_and_rejects_damage() {
        let mut run = encode(5, b"x");
        run.extend(encode(6, &[9u8; 5000]));
        assert_eq!(check_run(&run, 5), Ok(6));
        assert!(check_run(&run, 4).is_err());
        assert!(check_run(&run[..run.len() - 1], 5).is_err());
        let mut bad = run.clone();
        bad[20] ^= 1;
        assert!(check_run(&bad, 5).is_err());
        assert!(check_run(&[], 5).is_err());
    }
}
