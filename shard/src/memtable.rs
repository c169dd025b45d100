//! The memtable: a shard's recent writes in memory, grouped by table and series, until a flush
//! turns them into segments.
//!
//! One memtable per shard, used only by that shard's core: no locks, no atomics. Rows arrive as
//! `TableBatch`es (already in the WAL); `insert` files them under (tenant, database, table) →
//! series → points, and `scan` reads a table back, per series, sorted by time, column by column.
//!
//! # Layout
//!
//! Per table: columns interned to indexes in first-seen order; every row's field values in
//! table-wide typed columns (`Vec<f64>`-like blocks of 8192 rows, packed strings, a validity
//! bitmap only once a null must be stored), rows numbered in arrival order; and the series, in
//! first-seen order, found through a hash index keyed by the hash the key carries (one probe and
//! a tag compare). Each series is a vector of (time, row) entries plus a flag saying whether its
//! times are strictly increasing.
//!
//! Why: ingest is the hot path, and a TSBS batch holds five rows for each of a thousand series.
//! Per-series columns would make every batch touch eleven thousand scattered vector tails, each
//! a cache and TLB miss (measured: three to four times slower). Here a batch field is one
//! sequential copy into its table column, and the only scattered write is one 16-byte entry per
//! row, into series tails that stay in cache. In-order appends are O(1) amortised and nothing is
//! allocated per row; blocks mean a column never reallocates and copies as it grows. Reads pay
//! instead: a scan gathers a series' values through its entries, column by column and only for
//! the columns asked for, into per-series columnar output (`SeriesScan`: times, then one dense
//! value slice plus optional bitmap per column, ready for Arrow builders).
//!
//! # Invariants
//!
//! - Equal (series, time) points merge field by field: the later write wins per field, fields
//!   the later write lacks keep their values (CnosDB's rule; a later row of the same batch is a
//!   later write). Every write is appended; a strictly increasing series that gets a write out
//!   of order re-sorts its last entries at once (at most `RESORT_MAX` of them, in `apply`) and
//!   stays strict if no time repeats. A series whose times stop being strictly increasing is
//!   sorted (stably, so arrival order decides among equal times) and merged when read.
//! - A column's type never changes. A batch whose field type differs from the column's is
//!   refused with `TypeConflict`, and an insert is all-or-nothing: it is planned entirely (types,
//!   limits, bytes) before anything changes (`plan`), then applied without failure (`apply`).
//! - `bytes()` is the memory held by data and indexes, counted from vector capacities, key and
//!   string lengths, and hash-map bucket estimates; the insert scratch space is not counted. The
//!   planner predicts the exact capacities an insert will reserve, so an insert that would pass
//!   `bytes_max` is refused with `Full` before it changes anything, and `bytes()` never exceeds
//!   `bytes_max` (up to the hash-map estimates).
//!
//! # Flushing
//!
//! A memtable only grows: duplicates and overwritten points are held until they are merged on
//! the way out. A full one is frozen with `take`, which leaves an empty memtable (same bound)
//! taking writes while the frozen one is scanned into segments and then dropped: that drop is
//! what frees the memory. Until then scans must read both. The caller of an `insert` refused
//! with `Full` waits for a flush and retries, and past a deadline answers 429; a batch whose own
//! size passes `bytes_max` will never fit (see `MemtableError::Full`).

mod apply;
mod blocks;
mod column;
mod plan;
mod scan;
mod table;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::mem::size_of;

use crate::batch::{BatchError, Delete, TableBatch, ValueType};
use plan::Plan;
use table::Table;

pub use column::{ColumnRef, ColumnValues, StringValues, Value};
pub use scan::{Layered, SeriesRef, SeriesScan, TableScan, Union};
pub use table::Column;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemtableError {
    #[error(
        "memtable: column {column:?} of table {tenant}.{database}.{table} holds {held}, the \
         write has {written}; nothing of the batch was applied"
    )]
    TypeConflict {
        tenant: String,
        database: String,
        table: String,
        column: String,
        held: ValueType,
        written: ValueType,
    },
    /// The batch would take the memtable past `bytes_max`. If `batch_bytes > bytes_max` it
    /// cannot fit even in an empty memtable.
    #[error(
        "memtable full: holds {bytes} of {bytes_max} bytes and the batch needs {batch_bytes} \
         more; nothing was applied"
    )]
    Full {
        bytes: usize,
        bytes_max: usize,
        batch_bytes: usize,
    },
    #[error("memtable: malformed batch for table {tenant}.{database}.{table}: {source}")]
    Batch {
        tenant: String,
        database: String,
        table: String,
        source: BatchError,
    },
    #[error("memtable: table {tenant}.{database}.{table} would pass the limit on {what}")]
    Limit {
        tenant: String,
        database: String,
        table: String,
        what: &'static str,
    },
}

impl MemtableError {
    fn shape(batch: &TableBatch, what: String) -> MemtableError {
        MemtableError::Batch {
            tenant: batch.tenant.clone(),
            database: batch.database.clone(),
            table: batch.table.clone(),
            source: BatchError::Shape(what),
        }
    }

    fn limit(batch: &TableBatch, what: &'static str) -> MemtableError {
        MemtableError::Limit {
            tenant: batch.tenant.clone(),
            database: batch.database.clone(),
            table: batch.table.clone(),
            what,
        }
    }
}

/// Checks the batch invariants the memtable's indexing relies on: one entry per row in every
/// column (series indexes are checked as rows are planned). Not the full `TableBatch::check`:
/// batches are checked where they are made and where the WAL decodes them, and the rest of it
/// (sorted tags) is the producer's invariant, which the memtable does not rely on; scanning
/// every tag of every series again costs more than a tenth of an insert.
fn check_lengths(batch: &TableBatch) -> Result<(), MemtableError> {
    let rows = batch.rows();
    if batch.series_of_row.len() != rows {
        let what = format!(
            "{} series indexes for {rows} rows",
            batch.series_of_row.len()
        );
        return Err(MemtableError::shape(batch, what));
    }
    if let Some(f) = batch.fields.iter().find(|f| f.values.len() != rows) {
        let what = format!(
            "field {} has {} values for {rows} rows",
            f.name,
            f.values.len()
        );
        return Err(MemtableError::shape(batch, what));
    }
    Ok(())
}

/// A table's identity and columns, as `Memtable::tables` lists them.
#[derive(Debug, Clone, Copy)]
pub struct TableInfo<'a> {
    pub tenant: &'a str,
    pub database: &'a str,
    pub table: &'a str,
    /// In first-seen order.
    pub columns: &'a [Column],
}

/// Tenant → database → table → index into `Memtable::tables`. Nested so a lookup borrows the
/// batch's names instead of building a key.
type TableIndex = HashMap<String, HashMap<String, HashMap<String, usize>>>;

/// Estimated bytes of a table beyond what `Table::own_bytes` counts: the struct, its three names
/// and their entries in the nested index.
fn new_table_bytes(tenant: &str, database: &str, table: &str) -> usize {
    const INDEX_ENTRY_BYTES: usize = 64;
    size_of::<Table>() + 2 * (tenant.len() + database.len() + table.len()) + 3 * INDEX_ENTRY_BYTES
}

#[derive(Debug)]
pub struct Memtable {
    bytes_max: usize,
    bytes: usize,
    rows: usize,
    series: usize,
    tables: Vec<Table>,
    index: TableIndex,
    /// Reused by every insert; not counted in `bytes`.
    plan: Plan,
}

impl Memtable {
    /// An empty memtable that refuses inserts past `bytes_max` bytes.
    pub fn new(bytes_max: usize) -> Memtable {
        Memtable {
            bytes_max,
            bytes: 0,
            rows: 0,
            series: 0,
            tables: Vec::new(),
            index: TableIndex::new(),
            plan: Plan::default(),
        }
    }

    /// Adds the rows of `batch`, all or nothing (see the module docs for merge rules). An empty
    /// batch changes nothing.
    pub fn insert(&mut self, batch: &TableBatch) -> Result<(), MemtableError> {
        check_lengths(batch)?;
        if batch.rows() == 0 {
            return Ok(());
        }
        let found = self.find_table(&batch.tenant, &batch.database, &batch.table);
        let mut plan = std::mem::take(&mut self.plan);
        let result = self.plan_and_apply(found, batch, &mut plan);
        self.plan = plan;
        result
    }

    fn plan_and_apply(
        &mut self,
        found: Option<usize>,
        batch: &TableBatch,
        plan: &mut Plan,
    ) -> Result<(), MemtableError> {
        let batch_bytes = self.planned_bytes(found, batch, plan)?;
        if self.bytes.saturating_add(batch_bytes) > self.bytes_max {
            return Err(MemtableError::Full {
                bytes: self.bytes,
                bytes_max: self.bytes_max,
                batch_bytes,
            });
        }
        let t = match found {
            Some(t) => t,
            None => self.add_table(batch),
        };
        let applied = apply::apply(&mut self.tables[t], batch, plan);
        debug_assert!(
            applied.bytes_after >= applied.bytes_before
                && applied.bytes_after - applied.bytes_before <= batch_bytes,
            "the plan counts every byte an insert adds: {applied:?}, planned {batch_bytes}"
        );
        self.bytes = (self.bytes + applied.bytes_after).saturating_sub(applied.bytes_before);
        self.rows += batch.rows();
        self.series += applied.series;
        Ok(())
    }

    /// The bytes `insert(batch)` would add if called now, or the error it would return other
    /// than `Full` (the bound is not consulted). Changes nothing: it lets a caller admit a batch,
    /// or refuse a conflicting one, before the batch goes to the WAL. An insert in between can
    /// shift the answer a little (it may grow a vector this batch would have grown).
    pub fn insert_bytes(&mut self, batch: &TableBatch) -> Result<usize, MemtableError> {
        check_lengths(batch)?;
        if batch.rows() == 0 {
            return Ok(0);
        }
        let found = self.find_table(&batch.tenant, &batch.database, &batch.table);
        let mut plan = std::mem::take(&mut self.plan);
        let result = self.planned_bytes(found, batch, &mut plan);
        self.plan = plan;
        result
    }

    fn planned_bytes(
        &self,
        found: Option<usize>,
        batch: &TableBatch,
        plan: &mut Plan,
    ) -> Result<usize, MemtableError> {
        let mut bytes = plan.make(found.map(|t| &self.tables[t]), batch)?;
        if found.is_none() {
            bytes += new_table_bytes(&batch.tenant, &batch.database, &batch.table);
        }
        Ok(bytes)
    }

    fn find_table(&self, tenant: &str, database: &str, table: &str) -> Option<usize> {
        self.index.get(tenant)?.get(database)?.get(table).copied()
    }

    fn add_table(&mut self, batch: &TableBatch) -> usize {
        let t = self.tables.len();
        self.tables
            .push(Table::new(&batch.tenant, &batch.database, &batch.table));
        self.index
            .entry(batch.tenant.clone())
            .or_default()
            .entry(batch.database.clone())
            .or_default()
            .insert(batch.table.clone(), t);
        self.bytes += new_table_bytes(&batch.tenant, &batch.database, &batch.table);
        t
    }

    /// Removes the points `delete` matches and returns how many entries went. Whole tables
    /// (a delete without filters over all time: DROP TABLE / DATABASE) are dropped with their
    /// memory; a filtered delete removes entries, while the column values they pointed to stay
    /// (unreachable) until the memtable is flushed, so `bytes()` does not shrink.
    pub fn delete(&mut self, delete: &Delete) -> usize {
        let matches = |t: &Table| {
            t.tenant == delete.tenant
                && t.database == delete.database
                && delete.table.as_deref().is_none_or(|name| t.name == name)
        };
        if delete.drops_tables() {
            let mut removed = 0;
            let mut kept = Vec::with_capacity(self.tables.len());
            for t in std::mem::take(&mut self.tables) {
                if matches(&t) {
                    removed += t.series.iter().map(|s| s.entries.len()).sum::<usize>();
                    self.series -= t.series.len();
                    self.bytes = self.bytes.saturating_sub(table_bytes(&t));
                } else {
                    kept.push(t);
                }
            }
            self.tables = kept;
            self.rebuild_index();
            self.rows = self.rows.saturating_sub(removed);
            return removed;
        }
        let (min, max) = delete.time;
        let mut removed = 0;
        for t in self.tables.iter_mut().filter(|t| matches(t)) {
            for s in &mut t.series {
                let passes = delete.tag_filters.iter().all(|(tag, values)| {
                    s.key
                        .tag(tag)
                        .is_some_and(|v| values.binary_search_by(|x| x.as_str().cmp(v)).is_ok())
                });
                if !passes {
                    continue;
                }
                let before = s.entries.len();
                s.entries.retain(|e| e.time < min || e.time >= max);
                removed += before - s.entries.len();
            }
        }
        self.rows = self.rows.saturating_sub(removed);
        removed
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        for (i, t) in self.tables.iter().enumerate() {
            self.index
                .entry(t.tenant.clone())
                .or_default()
                .entry(t.database.clone())
                .or_default()
                .insert(t.name.clone(), i);
        }
    }

    /// A table's data for reading; None if the memtable holds nothing of it.
    pub fn scan(&self, tenant: &str, database: &str, table: &str) -> Option<TableScan<'_>> {
        let t = self.find_table(tenant, database, table)?;
        Some(TableScan::new(&self.tables[t]))
    }

    /// Every table held, in first-seen order, with its columns.
    pub fn tables(&self) -> impl ExactSizeIterator<Item = TableInfo<'_>> + '_ {
        self.tables.iter().map(|t| TableInfo {
            tenant: &t.tenant,
            database: &t.database,
            table: &t.name,
            columns: &t.columns,
        })
    }

    /// Freezes this memtable for flushing: returns its contents and leaves it empty, with the
    /// same bound, ready for writes.
    pub fn take(&mut self) -> Memtable {
        std::mem::replace(self, Memtable::new(self.bytes_max))
    }

    /// Estimated bytes held (see the module docs).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Rows stored: every row inserted, including writes to a (series, time) already held,
    /// which a scan merges. So this bounds the distinct points from above.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Series held, over all tables.
    pub fn series_count(&self) -> usize {
        self.series
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// `bytes()` counted from scratch, to check the running count.
    #[cfg(test)]
    fn bytes_recount(&self) -> usize {
        self.tables.iter().map(table_bytes).sum()
    }
}

/// The bytes a table accounts for in `Memtable::bytes`.
fn table_bytes(t: &Table) -> usize {
    new_table_bytes(&t.tenant, &t.database, &t.name)
        + t.own_bytes()
        + t.series
            .iter()
            .map(table::Series::heap_bytes)
            .sum::<usize>()
}
