//! A table column stored in blocks of `BLOCK_ROWS` rows, so it grows without ever copying:
//! a `Vec` of all of a table's values would reallocate and copy as it grows, and with columns
//! of tens of megabytes those copies (and the fresh pages they touch) were a large share of
//! ingest time in profiles. Block 0 grows like a vector up to `BLOCK_ROWS` (a small table stays small); later
//! blocks are allocated at full size once.
//!
//! Invariants: row `r` lives in block `r / BLOCK_ROWS` at `r % BLOCK_ROWS`. Blocks, like any
//! `ColumnData`, may be ragged (rows past a block's end are null), and so may the block list
//! (rows of missing blocks are null).

use std::mem::size_of;
use std::ops::Range;

use super::column::{grown_capacity, ColumnData, Primitive, Value};
use crate::batch::ValueType;

/// Rows per block: 64 KiB of 8-byte values.
pub(super) const BLOCK_ROWS: usize = 8192;
const BLOCK_SHIFT: u32 = BLOCK_ROWS.trailing_zeros();
const BLOCK_MASK: usize = BLOCK_ROWS - 1;
const _: () = assert!(BLOCK_ROWS.is_power_of_two());

/// The part of a write of consecutive rows that falls in one block.
#[derive(Debug, Clone)]
pub(super) struct Span {
    pub(super) block: usize,
    /// Offset in the block of the first row.
    pub(super) offset: usize,
    /// Which of the written values fall in this block.
    pub(super) values: Range<usize>,
}

/// Splits a write of `len` values at rows `start..start + len` by block.
pub(super) fn spans(start: usize, len: usize) -> impl Iterator<Item = Span> {
    let mut done = 0;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let row = start + done;
        let offset = row & BLOCK_MASK;
        let n = (BLOCK_ROWS - offset).min(len - done);
        let span = Span {
            block: row >> BLOCK_SHIFT,
            offset,
            values: done..done + n,
        };
        done += n;
        Some(span)
    })
}

/// What one write needs of one block.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlockNeed {
    pub(super) block: usize,
    /// Offset of the first row written.
    pub(super) offset: usize,
    /// Values the block must hold (one past the last value written).
    pub(super) rows: usize,
    pub(super) string_bytes: usize,
    /// Whether the write has a null before its last value.
    pub(super) has_none: bool,
}

/// The capacity block `block` gets so it holds `needed` rows.
fn block_capacity(block: usize, capacity: usize, needed: usize) -> usize {
    if needed <= capacity {
        capacity
    } else if block == 0 {
        grown_capacity(capacity, needed).min(BLOCK_ROWS)
    } else {
        BLOCK_ROWS
    }
}

#[derive(Debug)]
pub(super) struct BlockColumn {
    value_type: ValueType,
    blocks: Vec<ColumnData>,
}

impl BlockColumn {
    pub(super) fn empty(value_type: ValueType) -> BlockColumn {
        BlockColumn {
            value_type,
            blocks: Vec::new(),
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * size_of::<ColumnData>()
            + self
                .blocks
                .iter()
                .map(ColumnData::heap_bytes)
                .sum::<usize>()
    }

    /// The bytes `reserve(need)` will allocate, or None if the block's strings would pass
    /// `u32::MAX` bytes (the width of their offsets).
    pub(super) fn growth_bytes(&self, need: &BlockNeed) -> Option<usize> {
        let absent = ColumnData::empty(self.value_type);
        let data = self.blocks.get(need.block).unwrap_or(&absent);
        if data.string_bytes() + need.string_bytes > u32::MAX as usize {
            return None;
        }
        let list = if need.block < self.blocks.len() {
            0
        } else {
            let cap = self.blocks.capacity();
            (grown_capacity(cap, need.block + 1) - cap) * size_of::<ColumnData>()
        };
        let capacity = block_capacity(need.block, data.capacity(), need.rows);
        let may_store_null = need.has_none || data.len() < need.offset;
        Some(list + data.growth_bytes(capacity, need.string_bytes, may_store_null))
    }

    /// Makes room for a write (the bytes `growth_bytes` counted).
    pub(super) fn reserve(&mut self, need: &BlockNeed) {
        if need.block >= self.blocks.len() {
            super::column::reserve_for(&mut self.blocks, need.block + 1);
            while self.blocks.len() <= need.block {
                self.blocks.push(ColumnData::empty(self.value_type));
            }
        }
        let data = &mut self.blocks[need.block];
        let capacity = block_capacity(need.block, data.capacity(), need.rows);
        data.reserve(capacity, need.string_bytes);
    }

    /// Writes a batch field at rows `start..` (nulls leave a row as it is); false if the
    /// column holds another type. The blocks written must have been reserved.
    pub(super) fn write_rows<T: Primitive>(&mut self, start: usize, values: &[Option<T>]) -> bool {
        for span in spans(start, values.len()) {
            let Some(data) = self.blocks.get_mut(span.block) else {
                // Reserve creates every block a value goes to; a span of nulls needs none.
                debug_assert!(values[span.values].iter().all(Option::is_none));
                continue;
            };
            if !data.write_rows(span.offset, &values[span.values]) {
                return false;
            }
        }
        true
    }

    /// `write_rows` for strings.
    pub(super) fn write_strs(&mut self, start: usize, values: &[Option<String>]) -> bool {
        for span in spans(start, values.len()) {
            let Some(data) = self.blocks.get_mut(span.block) else {
                debug_assert!(values[span.values].iter().all(Option::is_none));
                continue;
            };
            if !data.write_strs(span.offset, &values[span.values]) {
                return false;
            }
        }
        true
    }

    /// The value at `row`.
    pub(super) fn get(&self, row: usize) -> Option<Value<'_>> {
        let block = self.blocks.get(row >> BLOCK_SHIFT)?;
        block.view(BLOCK_ROWS).get(row & BLOCK_MASK)
    }

    /// The values at `rows`, if the column has type `T` and a value at every row asked for
    /// in blocks without nulls: the fast gather of a scan.
    pub(super) fn gather_dense<T: Primitive>(&self, rows: &[u32]) -> Option<Vec<T>> {
        rows.iter()
            .map(|&r| {
                let r = r as usize;
                let block = self.blocks.get(r >> BLOCK_SHIFT)?;
                block.dense::<T>()?.get(r & BLOCK_MASK).copied()
            })
            .collect()
    }
}
