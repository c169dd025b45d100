//! Per-line key checks: sorting a line's tags by key and finding a repeated tag or field key,
//! without allocating per line.
//!
//! Keys are compared by a 16-byte big-endian prefix first (an integer comparison) and by their
//! bytes only when prefixes tie. When every prefix of a line differs, the prefixes alone decide
//! the order and rule out duplicates. And since clients write many lines with the same keys in
//! the same order, [`KeyCache`] remembers the previous line's prefixes (and, for tags, the sorting
//! permutation): a line whose prefixes match needs neither a sort nor a duplicate check. Only
//! prefixes are cached, never spans, so the cache stays valid across bodies.

use std::cmp::Ordering;

use super::{resolve, Span, StoredValue};

/// Lines with at most this many fields are checked pairwise on prefixes (at most 120
/// comparisons of integers); longer ones by sorting.
const PAIRWISE_FIELDS_MAX: usize = 16;

/// The previous line's key layout, and the work vectors of the checks (reused, never shrunk
/// below the largest line seen).
#[derive(Debug, Default)]
pub(super) struct KeyCache {
    /// Tag key prefixes (`prefix_le`) of the last sorted line, in input order; valid if
    /// pairwise distinct.
    tag_prefixes: Vec<u128>,
    /// `tag_order[k]` is the input index of the tag that sorts `k`-th in that line.
    tag_order: Vec<u32>,
    /// `tag_order` is the identity: the line was sorted already.
    tag_identity: bool,
    tag_valid: bool,
    /// Field key prefixes (`prefix_le`) of the last checked line; valid if pairwise distinct.
    field_prefixes: Vec<u128>,
    field_valid: bool,
    work: Vec<(u128, u32)>,
    tags_tmp: Vec<(Span, Span)>,
}

impl KeyCache {
    /// Bytes held by the cache's vectors.
    pub(super) fn capacity_bytes(&self) -> usize {
        use std::mem::size_of;
        (self.tag_prefixes.capacity() + self.field_prefixes.capacity()) * size_of::<u128>()
            + self.tag_order.capacity() * size_of::<u32>()
            + self.work.capacity() * size_of::<(u128, u32)>()
            + self.tags_tmp.capacity() * size_of::<(Span, Span)>()
    }
}

/// Sorts `tags` by key, in place. Returns the repeated key if a key appears twice.
pub(super) fn sort_tags<'s>(
    body: &'s str,
    scratch: &'s str,
    tags: &mut [(Span, Span)],
    cache: &mut KeyCache,
) -> Result<(), &'s str> {
    if tags.len() < 2 {
        return Ok(());
    }
    let same_layout = cache.tag_valid
        && cache.tag_prefixes.len() == tags.len()
        && tags
            .iter()
            .zip(&cache.tag_prefixes)
            .all(|((k, _), p)| prefix_le(body, scratch, *k) == *p);
    if !same_layout {
        cache.work.clear();
        cache.work.extend(
            tags.iter()
                .enumerate()
                .map(|(i, (k, _))| (prefix(body, scratch, *k), i as u32)),
        );
        sort_new_layout(body, scratch, tags, cache)?;
    }
    if !cache.tag_identity {
        permute(tags, &cache.tag_order, &mut cache.tags_tmp);
    }
    Ok(())
}

/// The slow path of `sort_tags`: sorts `cache.work` (prefix, input index) exactly, rejects a
/// repeated key, and records the layout in the cache.
fn sort_new_layout<'s>(
    body: &'s str,
    scratch: &'s str,
    tags: &[(Span, Span)],
    cache: &mut KeyCache,
) -> Result<(), &'s str> {
    let key_at = |i: u32| {
        tags.get(i as usize)
            .map_or("", |(k, _)| resolve(body, scratch, *k))
    };
    let cmp =
        |a: &(u128, u32), b: &(u128, u32)| a.0.cmp(&b.0).then_with(|| key_at(a.1).cmp(key_at(b.1)));
    cache.tag_valid = false;
    cache.tag_prefixes.clear();
    cache
        .tag_prefixes
        .extend(tags.iter().map(|(k, _)| prefix_le(body, scratch, *k)));
    cache.work.sort_unstable_by(cmp);
    if let Some(w) = cache
        .work
        .windows(2)
        .find(|w| cmp(&w[0], &w[1]) == Ordering::Equal)
    {
        return Err(key_at(w[0].1));
    }
    cache.tag_order.clear();
    cache.tag_order.extend(cache.work.iter().map(|w| w.1));
    cache.tag_identity = cache
        .tag_order
        .iter()
        .enumerate()
        .all(|(k, &i)| k == i as usize);
    cache.tag_valid = cache.work.windows(2).all(|w| w[0].0 != w[1].0);
    Ok(())
}

/// Reorders `tags` so that position `k` holds the tag that was at `order[k]`.
fn permute(tags: &mut [(Span, Span)], order: &[u32], tmp: &mut Vec<(Span, Span)>) {
    tmp.clear();
    tmp.extend_from_slice(tags);
    for (slot, &i) in tags.iter_mut().zip(order) {
        if let Some(tag) = tmp.get(i as usize) {
            *slot = *tag;
        }
    }
}

/// A field key that appears more than once in `fields`, if any.
pub(super) fn duplicate_field<'s>(
    body: &'s str,
    scratch: &'s str,
    fields: &[(Span, StoredValue)],
    cache: &mut KeyCache,
) -> Option<&'s str> {
    if fields.len() < 2 {
        return None;
    }
    if cache.field_valid
        && cache.field_prefixes.len() == fields.len()
        && fields
            .iter()
            .zip(&cache.field_prefixes)
            .all(|((k, _), p)| prefix_le(body, scratch, *k) == *p)
    {
        return None;
    }
    cache.field_prefixes.clear();
    cache
        .field_prefixes
        .extend(fields.iter().map(|(k, _)| prefix_le(body, scratch, *k)));
    cache.work.clear();
    cache.work.extend(
        fields
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (prefix(body, scratch, *k), i as u32)),
    );
    let key_at = |i: u32| {
        fields
            .get(i as usize)
            .map_or("", |(k, _)| resolve(body, scratch, *k))
    };
    let (distinct, duplicate) = find_duplicate(&mut cache.work, key_at);
    cache.field_valid = distinct && duplicate.is_none();
    duplicate
}

/// Over (prefix, index) pairs: whether all prefixes differ, and a repeated key. Few keys are
/// compared pairwise, many after sorting `prints`.
fn find_duplicate<'s>(
    prints: &mut [(u128, u32)],
    key_at: impl Fn(u32) -> &'s str,
) -> (bool, Option<&'s str>) {
    if prints.len() <= PAIRWISE_FIELDS_MAX {
        let mut distinct = true;
        for (i, a) in prints.iter().enumerate() {
            for b in prints.get(i + 1..).unwrap_or_default() {
                if a.0 == b.0 {
                    distinct = false;
                    if key_at(a.1) == key_at(b.1) {
                        return (false, Some(key_at(a.1)));
                    }
                }
            }
        }
        return (distinct, None);
    }
    let cmp =
        |a: &(u128, u32), b: &(u128, u32)| a.0.cmp(&b.0).then_with(|| key_at(a.1).cmp(key_at(b.1)));
    prints.sort_unstable_by(cmp);
    let distinct = prints.windows(2).all(|w| w[0].0 != w[1].0);
    let duplicate = prints
        .windows(2)
        .find(|w| cmp(&w[0], &w[1]) == Ordering::Equal)
        .map(|w| key_at(w[0].1));
    (distinct, duplicate)
}

/// The first 16 bytes of the key at `span`, big-endian and zero-padded. Keys compare like their
/// prefixes whenever the prefixes differ, so ordering by prefix and then by bytes is exact.
fn prefix(body: &str, scratch: &str, span: Span) -> u128 {
    let (bytes, len) = raw_prefix(body, scratch, span);
    u128::from_be_bytes(bytes) & KEEP_HIGH[len]
}

/// The same 16 bytes as `prefix`, in the cheaper little-endian order: equal exactly when the
/// prefixes are equal, which is all the cache needs.
fn prefix_le(body: &str, scratch: &str, span: Span) -> u128 {
    let (bytes, len) = raw_prefix(body, scratch, span);
    u128::from_le_bytes(bytes) & KEEP_LOW[len]
}

/// 16 bytes from the key's start, and how many of them (at most 16) belong to the key.
#[inline]
fn raw_prefix(body: &str, scratch: &str, span: Span) -> ([u8; 16], usize) {
    let (in_scratch, start, end) = span.parts();
    let buf = if in_scratch { scratch } else { body }.as_bytes();
    let len = end.saturating_sub(start).min(16);
    // Usually 16 bytes can be read from the key's start (the rest of the line follows it); the
    // caller masks off the bytes past the key.
    match buf.get(start..).and_then(|rest| rest.first_chunk::<16>()) {
        Some(w) => (*w, len),
        None => {
            let mut w = [0u8; 16];
            for (d, s) in w.iter_mut().zip(buf.get(start..end).unwrap_or_default()) {
                *d = *s;
            }
            (w, len)
        }
    }
}

/// `KEEP_HIGH[n]` keeps the first `n` bytes of a big-endian `u128`.
static KEEP_HIGH: [u128; 17] = {
    let mut masks = [0u128; 17];
    let mut n = 1;
    while n <= 16 {
        masks[n] = !(u128::MAX >> (n * 8 - 1) >> 1);
        n += 1;
    }
    masks
};

/// `KEEP_LOW[n]` keeps the first `n` bytes of a little-endian `u128`.
static KEEP_LOW: [u128; 17] = {
    let mut masks = [0u128; 17];
    let mut n = 1;
    while n <= 16 {
        masks[n] = u128::MAX >> (128 - n * 8);
        n += 1;
    }
    masks
};
