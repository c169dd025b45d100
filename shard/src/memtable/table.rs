//! One table of the memtable: its columns (names interned to indexes, first-seen order), the
//! field values of every row it holds, column by column, and its series (first-seen order),
//! each a list of (time, row) entries pointing into those columns.
//!
//! Why rows live in table-wide columns rather than in per-series vectors: a TSBS batch brings
//! five rows for each of a thousand series. Per-series columns make each batch touch 11 000
//! separate vector tails (one per series and field), each a cache and TLB miss; table-wide
//! columns take a batch field as one sequential copy, and the only scattered write left is one
//! 16-byte entry per row, into a thousand tails that stay in cache. Reads pay instead: a scan
//! gathers a series' values by row (`scan`), once per column it is asked for.
//!
//! Invariants:
//! - `columns[i]` never changes type; `column_index[name] == i`; `data[i]` holds column `i`'s
//!   values by row number (rows it does not hold are null).
//! - Rows are numbered in arrival order; every row is referenced by exactly one entry of one
//!   series. Entries with equal times are in arrival order; entries with different times may
//!   have been re-sorted by time (a strict series restoring its order after a late write).
//! - Series are found by the hash their key carries (the hash that chose this shard, so it is a
//!   function of the key): `series_index` maps a hash to the newest series with it, and each
//!   series links to the previous one with the same hash, so a collision costs a tag comparison,
//!   never a wrong merge. No two series have equal keys.
//! - `Series::strict` is true iff the series' entry times are strictly increasing (no duplicate
//!   time, no time out of order), so a scan needs neither a sort nor a merge.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::size_of;

use super::blocks::BlockColumn;
use super::column::{grown_capacity, reserve_for};
use crate::batch::{SeriesKey, ValueType};

/// A column of a table: its name and value type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub value_type: ValueType,
}

/// Ends a chain of series sharing a hash.
pub(super) const NO_SERIES: u32 = u32::MAX;

/// Hashes the u64 series hash for the index: a multiply-xorshift finaliser, because the hash
/// that arrives need not be well mixed in the low bits a hash table uses.
#[derive(Debug, Default)]
pub(super) struct SeriesHasher(u64);

impl Hasher for SeriesHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        let x = (v ^ (v >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        self.0 = x ^ (x >> 29);
    }
}

pub(super) type SeriesMap = HashMap<u64, u32, BuildHasherDefault<SeriesHasher>>;

/// Estimated bytes of a std `HashMap` whose `capacity()` is `capacity`: its buckets (a power
/// of two, 7/8 of them usable) times an entry plus one control byte.
pub(super) fn map_bytes(capacity: usize, entry_bytes: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    buckets_for(capacity) * (entry_bytes + 1)
}

fn buckets_for(capacity: usize) -> usize {
    match capacity {
        0..4 => 4,
        4..8 => 8,
        _ => (capacity * 8 / 7).next_power_of_two(),
    }
}

/// The `capacity()` a std `HashMap` with `len` entries and capacity `capacity` has after
/// `reserve(additional)` (hashbrown's policy: grow to fit, at least doubling the buckets).
pub(super) fn map_capacity_after(len: usize, capacity: usize, additional: usize) -> usize {
    if len + additional <= capacity {
        return capacity;
    }
    let buckets = buckets_for((len + additional).max(capacity + 1));
    if buckets < 8 {
        buckets - 1
    } else {
        buckets / 8 * 7
    }
}

const COLUMN_ENTRY_BYTES: usize = size_of::<(String, u32)>();
const SERIES_ENTRY_BYTES: usize = size_of::<(u64, u32)>();

/// Heap bytes of a series key (by length: a cloned key has no spare capacity).
pub(super) fn key_bytes(key: &SeriesKey) -> usize {
    key.heap_bytes()
}

/// Whether two keys have the same tags: one compare of their packed bytes.
pub(super) fn same_tags(a: &SeriesKey, b: &SeriesKey) -> bool {
    same_bytes(a.packed(), b.packed())
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word(chunk: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        u64::from_ne_bytes(w)
    }
    if a.len() != b.len() {
        return false;
    }
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a8.remainder(), b8.remainder());
    a8.zip(b8).all(|(x, y)| word(x) == word(y)) && a_rest.iter().zip(b_rest).all(|(x, y)| x == y)
}

/// One point of a series: its time and the table row holding its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) time: i64,
    pub(super) row: u32,
}

#[derive(Debug)]
pub(super) struct Series {
    pub(super) key: SeriesKey,
    key_bytes: usize,
    pub(super) entries: Vec<Entry>,
    /// Time of the last entry (kept here, beside the key the lookup just compared, so planning
    /// a batch does not wait for the entries' tail to come from memory).
    pub(super) last_time: i64,
    pub(super) strict: bool,
    next_same_hash: u32,
    /// Planning scratch: (plan epoch, slot) of the last plan that gave this series a slot.
    planned: Cell<(u64, u32)>,
}

impl Series {
    /// The slot plan `epoch` gave this series, if any.
    pub(super) fn slot_in(&self, epoch: u64) -> Option<u32> {
        let (e, slot) = self.planned.get();
        (e == epoch).then_some(slot)
    }

    pub(super) fn set_slot(&self, epoch: u64, slot: u32) {
        self.planned.set((epoch, slot));
    }

    /// Heap bytes held (the struct itself is counted in the table's series vector).
    pub(super) fn heap_bytes(&self) -> usize {
        self.key_bytes + self.entries.capacity() * size_of::<Entry>()
    }
}

#[derive(Debug, Default)]
pub(super) struct Table {
    pub(super) tenant: String,
    pub(super) database: String,
    pub(super) name: String,
    pub(super) columns: Vec<Column>,
    column_index: HashMap<String, u32>,
    pub(super) data: Vec<BlockColumn>,
    /// Rows held (row numbers are below this).
    pub(super) rows: usize,
    pub(super) series: Vec<Series>,
    series_index: SeriesMap,
}

impl Table {
    pub(super) fn new(tenant: &str, database: &str, name: &str) -> Table {
        Table {
            tenant: tenant.to_string(),
            database: database.to_string(),
            name: name.to_string(),
            ..Table::default()
        }
    }

    /// The index and type of column `name`.
    pub(super) fn column(&self, name: &str) -> Option<(u32, ValueType)> {
        let &i = self.column_index.get(name)?;
        Some((i, self.columns[i as usize].value_type))
    }

    /// Appends columns; the caller has checked that their names are new.
    pub(super) fn add_columns<'a>(
        &mut self,
        added: impl Iterator<Item = (&'a str, ValueType)> + Clone,
    ) {
        let count = added.clone().count();
        let needed = self.columns.len() + count;
        reserve_for(&mut self.columns, needed);
        reserve_for(&mut self.data, needed);
        self.column_index.reserve(count);
        for (name, value_type) in added {
            let i = self.columns.len() as u32;
            self.column_index.insert(name.to_string(), i);
            self.columns.push(Column {
                name: name.to_string(),
                value_type,
            });
            self.data.push(BlockColumn::empty(value_type));
        }
    }

    /// The series with this key.
    pub(super) fn find_series(&self, key: &SeriesKey) -> Option<(u32, &Series)> {
        let mut at = self
            .series_index
            .get(&key.hash)
            .copied()
            .unwrap_or(NO_SERIES);
        while at != NO_SERIES {
            let series = &self.series[at as usize];
            if same_tags(&series.key, key) {
                return Some((at, series));
            }
            at = series.next_same_hash;
        }
        None
    }

    /// Makes room for `additional` series (the policy `growth_bytes` predicts).
    pub(super) fn reserve_series(&mut self, additional: usize) {
        let needed = self.series.len() + additional;
        reserve_for(&mut self.series, needed);
        self.series_index.reserve(additional);
    }

    /// Appends an empty series; the caller has checked that no series has this key.
    pub(super) fn add_series(&mut self, key: SeriesKey) -> u32 {
        let i = self.series.len() as u32;
        let next_same_hash = self.series_index.insert(key.hash, i).unwrap_or(NO_SERIES);
        self.series.push(Series {
            key_bytes: key_bytes(&key),
            key,
            entries: Vec::new(),
            last_time: i64::MIN,
            strict: true,
            next_same_hash,
            planned: Cell::new((0, 0)),
        });
        i
    }

    /// Heap bytes of the table's own structures: column list, index and data, the series
    /// vector (each series' struct) and the series index. The series' own heap bytes and the
    /// table's names are counted elsewhere (`Series::heap_bytes`, the memtable).
    pub(super) fn own_bytes(&self) -> usize {
        let names = self
            .columns
            .iter()
            .map(|c| 2 * c.name.capacity())
            .sum::<usize>();
        let data = self.data.iter().map(BlockColumn::heap_bytes).sum::<usize>();
        self.columns.capacity() * size_of::<Column>()
            + self.data.capacity() * size_of::<BlockColumn>()
            + names
            + data
            + map_bytes(self.column_index.capacity(), COLUMN_ENTRY_BYTES)
            + self.series.capacity() * size_of::<Series>()
            + map_bytes(self.series_index.capacity(), SERIES_ENTRY_BYTES)
    }

    /// How much `own_bytes` grows, column data aside, when `columns` columns (names totalling
    /// `name_bytes`) and `series` series are added.
    pub(super) fn growth_bytes(&self, columns: usize, name_bytes: usize, series: usize) -> usize {
        let columns_cap = self.columns.capacity();
        let data_cap = self.data.capacity();
        let series_cap = self.series.capacity();
        let column_map = self.column_index.capacity();
        let series_map = self.series_index.capacity();
        let column_map_after = map_capacity_after(self.column_index.len(), column_map, columns);
        let series_map_after = map_capacity_after(self.series_index.len(), series_map, series);
        (grown_capacity(columns_cap, self.columns.len() + columns) - columns_cap)
            * size_of::<Column>()
            + (grown_capacity(data_cap, self.data.len() + columns) - data_cap)
                * size_of::<BlockColumn>()
            + 2 * name_bytes
            + map_bytes(column_map_after, COLUMN_ENTRY_BYTES)
            - map_bytes(column_map, COLUMN_ENTRY_BYTES)
            + (grown_capacity(series_cap, self.series.len() + series) - series_cap)
                * size_of::<Series>()
            + map_bytes(series_map_after, SERIES_ENTRY_BYTES)
            - map_bytes(series_map, SERIES_ENTRY_BYTES)
    }
}
