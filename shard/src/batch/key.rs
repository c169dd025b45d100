//! A series key packed in one buffer.
//!
//! The tags are stored as the WAL writes them (`tag_count` u32 LE, then per tag `key` and
//! `value` each as u32 LE length + UTF-8 bytes, keys strictly ascending), so a key costs one
//! allocation, two keys compare with one `memcmp`, and encoding a batch copies the bytes as they
//! are. Every constructor validates, so reading the tags back cannot fail.

use std::fmt;

use super::BatchError;

/// A series: its tags sorted by key (no duplicate keys), and the hash of the full series key
/// (tenant, database, table, tags) that chose its owner shard.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub hash: u64,
    packed: Box<[u8]>,
}

impl SeriesKey {
    /// A key from tags already sorted by key with no key twice (the caller's invariant; a
    /// batch's `check` verifies it before the batch is written).
    pub fn new<'a>(hash: u64, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> SeriesKey {
        let mut packed = Vec::with_capacity(64);
        packed.extend_from_slice(&0u32.to_le_bytes());
        let mut n: u32 = 0;
        for (k, v) in tags {
            put_str(&mut packed, k);
            put_str(&mut packed, v);
            n += 1;
        }
        packed[..4].copy_from_slice(&n.to_le_bytes());
        SeriesKey {
            hash,
            packed: packed.into_boxed_slice(),
        }
    }

    /// Takes the packed form as the WAL stores it, validating every length and string;
    /// `at` is the offset of `bytes` in the record, for errors.
    pub fn from_packed(hash: u64, bytes: &[u8], at: usize) -> Result<SeriesKey, BatchError> {
        let len = packed_len(bytes, at)?;
        if len != bytes.len() {
            return Err(BatchError::Trailing(bytes.len() - len));
        }
        Ok(SeriesKey::from_valid(hash, bytes))
    }

    /// `bytes` already passed `packed_len` exactly.
    pub(super) fn from_valid(hash: u64, bytes: &[u8]) -> SeriesKey {
        SeriesKey {
            hash,
            packed: bytes.into(),
        }
    }

    /// The packed bytes (the WAL's byte form of the tags).
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }

    /// The tags, sorted by key.
    pub fn tags(&self) -> Tags<'_> {
        Tags {
            rest: self.packed.get(4..).unwrap_or_default(),
        }
    }

    pub fn tag_count(&self) -> usize {
        read_u32(&self.packed, 0).unwrap_or(0) as usize
    }

    /// The value of tag `key`, if the series has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        for (k, v) in self.tags() {
            match k.cmp(key) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Some(v),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// Whether the keys are strictly ascending.
    pub fn tags_sorted(&self) -> bool {
        let mut previous: Option<&str> = None;
        for (k, _) in self.tags() {
            if previous.is_some_and(|p| p >= k) {
                return false;
            }
            previous = Some(k);
        }
        true
    }

    /// Heap bytes the key holds.
    pub fn heap_bytes(&self) -> usize {
        self.packed.len()
    }
}

impl fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesKey")
            .field("hash", &self.hash)
            .field("tags", &self.tags().collect::<Vec<_>>())
            .finish()
    }
}

/// Iterator over a key's (tag key, tag value) pairs.
pub struct Tags<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Tags<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let k = self.string()?;
        let v = self.string()?;
        Some((k, v))
    }
}

impl<'a> Tags<'a> {
    fn string(&mut self) -> Option<&'a str> {
        let n = read_u32(self.rest, 0)? as usize;
        let raw = self.rest.get(4..4 + n)?;
        self.rest = &self.rest[4 + n..];
        // Validated when the key was made; never fails.
        std::str::from_utf8(raw).ok()
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Length of the packed key at the start of `bytes` (validated: lengths in range, UTF-8);
/// `at` is the offset of `bytes` in the record, for errors.
pub(super) fn packed_len(bytes: &[u8], at: usize) -> Result<usize, BatchError> {
    let truncated = |pos: usize, wanted: usize| BatchError::Truncated {
        offset: at + pos,
        wanted: wanted - (bytes.len() - pos),
    };
    let n = read_u32(bytes, 0).ok_or_else(|| truncated(0, 4))? as usize;
    if n.saturating_mul(8) > bytes.len() - 4 {
        return Err(truncated(0, n.saturating_mul(8).saturating_add(4)));
    }
    let mut pos = 4;
    for _ in 0..2 * n {
        let len = read_u32(bytes, pos).ok_or_else(|| truncated(pos, 4))? as usize;
        let start = pos + 4;
        let raw = bytes
            .get(start..start.saturating_add(len))
            .ok_or_else(|| truncated(start, len))?;
        if std::str::from_utf8(raw).is_err() {
            return Err(BatchError::Utf8 { offset: at + start });
        }
        pos = start + len;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let k = SeriesKey::new(5, [("host", "a"), ("rack", "1")]);
        assert_eq!(k.tags().collect::<Vec<_>>(), [("host", "a"), ("rack", "1")]);
        assert_eq!(k.tag_count(), 2);
        assert_eq!(k.tag("rack"), Some("1"));
        assert_eq!(k.tag("dc"), None);
        assert_eq!(k.tag("zone"), None);
        assert!(k.tags_sorted());
        let back = SeriesKey::from_packed(5, k.packed(), 0).unwrap();
        assert_eq!(back, k);
        let empty = SeriesKey::new(1, []);
        assert_eq!(empty.tags().count(), 0);
        assert_eq!(empty.packed(), [0, 0, 0, 0]);
    }

    #[test]
    fn unsorted_detected() {
        assert!(!SeriesKey::new(0, [("b", "1"), ("a", "2")]).tags_sorted());
        assert!(!SeriesKey::new(0, [("a", "1"), ("a", "2")]).tags_sorted());
    }

    #[test]
    fn corrupt_packed_refused() {
        let k = SeriesKey::new(5, [("host", "a")]);
        let p = k.packed();
        for cut in 0..p.len() {
            assert!(
                matches!(
                    SeriesKey::from_packed(5, &p[..cut], 10),
                    Err(BatchError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut bad = p.to_vec();
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert_eq!(
            SeriesKey::from_packed(5, &bad, 10),
            Err(BatchError::Utf8 { offset: 10 + last })
        );
        let mut huge = p.to_vec();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(SeriesKey::from_packed(5, &huge, 0).is_err());
    }
}
