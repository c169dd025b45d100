//! Planning an insert: every decision and every byte counted before the memtable changes, so
//! a batch that conflicts, breaks a limit or does not fit leaves no trace.
//!
//! The plan maps each batch field to a table column (checking its type) and each batch series
//! to a "slot": an existing series of the table, or a new one. The batch's rows become table
//! rows `rows_before..rows_before + n` in batch order, and each is appended to its series as a
//! (time, row) entry. A series whose entry times stop being strictly increasing (a duplicate or
//! earlier time) is marked for a sort and merge at read time, unless `apply` restores its order
//! (a late write with a new time, near the series' end). Then the plan counts how far each
//! vector grows, which gives the exact capacities the apply step will reserve, and so the bytes
//! the batch adds.
//!
//! A `Plan` is scratch space kept in the memtable and reused by every insert, so planning
//! allocates nothing once its vectors have grown to the batch sizes seen.

use std::mem::size_of;

use super::blocks::{spans, BlockColumn, BlockNeed};
use super::column::grown_capacity;
use super::table::{key_bytes, same_tags, Entry, SeriesMap, Table};
use super::MemtableError;
use crate::batch::{FieldValues, TableBatch, ValueType};

/// Marks a batch series without a slot yet, and ends a chain of pending slots.
const UNSEEN: u32 = u32::MAX;

/// One series the batch writes to.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    /// Index of the series in the table (for a new series, the index it will get).
    pub(super) series: u32,
    /// The batch series that opened the slot (the key a new series is created from).
    pub(super) batch_series: u32,
    pub(super) is_new: bool,
    /// Entries of the series once the batch is in.
    pub(super) len: usize,
    last_time: i64,
    /// Whether the series' entry times stay strictly increasing.
    pub(super) strict: bool,
    /// Next new slot whose key has the same hash.
    next_pending: u32,
}

/// A table column the batch writes.
#[derive(Debug, Clone)]
pub(super) struct PlanColumn {
    pub(super) index: u32,
    pub(super) value_type: ValueType,
    /// The first batch field naming this column.
    pub(super) field: usize,
    pub(super) is_new: bool,
}

#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Per batch series: its slot, or UNSEEN.
    target: Vec<u32>,
    /// Hash to the newest new slot with that hash, so equal new keys share one series.
    pending: SeriesMap,
    pub(super) slots: Vec<Slot>,
    pub(super) new_series: usize,
    /// Counts plans, so a series can tell whether it has a slot in this one (`Series::slot_in`).
    epoch: u64,
    /// The table's row count before the batch: the batch's row `r` becomes row `rows_before + r`.
    pub(super) rows_before: usize,
    row_slot: Vec<u32>,
    /// Rows grouped by slot (batch order within a slot); slot `s` has
    /// `slot_rows[slot_starts[s]..slot_starts[s + 1]]`.
    slot_rows: Vec<u32>,
    slot_starts: Vec<usize>,
    pub(super) columns: Vec<PlanColumn>,
    /// Per batch field: index into `columns`.
    pub(super) field_column: Vec<u32>,
    /// What the batch needs of each block it writes: (index into `columns`, need).
    pub(super) needs: Vec<(u32, BlockNeed)>,
}

impl Plan {
    /// Plans `batch` against `table` (None: a new table) and returns the bytes it will add to
    /// the table's structures and series.
    pub(super) fn make(
        &mut self,
        table: Option<&Table>,
        batch: &TableBatch,
    ) -> Result<usize, MemtableError> {
        let empty = Table::default();
        let table = table.unwrap_or(&empty);
        self.epoch += 1;
        self.rows_before = table.rows;
        let rows_after = table.rows + batch.rows();
        if u32::try_from(rows_after).is_err() {
            return Err(MemtableError::limit(batch, "rows per table"));
        }
        self.plan_columns(table, batch)?;
        self.plan_rows(table, batch)?;
        self.group_rows_by_slot();
        self.needs.clear();
        for f in 0..batch.fields.len() {
            self.count_field(batch, f);
        }
        let mut bytes = self.table_growth(table, batch)?;
        for slot in &self.slots {
            bytes += slot_growth(table, batch, slot);
        }
        Ok(bytes)
    }

    /// The batch rows of slot `slot`, in batch order.
    pub(super) fn rows_of(&self, slot: usize) -> &[u32] {
        &self.slot_rows[self.slot_starts[slot]..self.slot_starts[slot + 1]]
    }

    fn plan_columns(&mut self, table: &Table, batch: &TableBatch) -> Result<(), MemtableError> {
        self.columns.clear();
        self.field_column.clear();
        let mut added = 0;
        for (f, field) in batch.fields.iter().enumerate() {
            let written = field.values.value_type();
            // Linear: a batch has few fields, and this runs once per field per batch.
            let seen = self
                .columns
                .iter()
                .position(|c| batch.fields[c.field].name == field.name);
            let p = match seen {
                Some(p) => p,
                None => {
                    let (index, value_type, is_new) = match table.column(&field.name) {
                        Some((index, value_type)) => (index, value_type, false),
                        None => {
                            added += 1;
                            let index = to_u32(
                                table.columns.len() + added - 1,
                                batch,
                                "columns per table",
                            )?;
                            (index, written, true)
                        }
                    };
                    self.columns.push(PlanColumn {
                        index,
                        value_type,
                        field: f,
                        is_new,
                    });
                    self.columns.len() - 1
                }
            };
            let held = self.columns[p].value_type;
            if held != written {
                return Err(MemtableError::TypeConflict {
                    tenant: batch.tenant.clone(),
                    database: batch.database.clone(),
                    table: batch.table.clone(),
                    column: field.name.clone(),
                    held,
                    written,
                });
            }
            self.field_column.push(p as u32);
        }
        Ok(())
    }

    fn plan_rows(&mut self, table: &Table, batch: &TableBatch) -> Result<(), MemtableError> {
        self.target.clear();
        self.target.resize(batch.series.len(), UNSEEN);
        self.pending.clear();
        self.slots.clear();
        self.new_series = 0;
        self.row_slot.clear();
        for (&b, &t) in batch.series_of_row.iter().zip(&batch.time) {
            let Some(&(mut slot)) = self.target.get(b as usize) else {
                let what = format!("series index {b} out of range");
                return Err(MemtableError::shape(batch, what));
            };
            if slot == UNSEEN {
                slot = self.open_slot(table, batch, b)?;
                self.target[b as usize] = slot;
            }
            let s = &mut self.slots[slot as usize];
            if s.len > 0 && t <= s.last_time {
                s.strict = false;
            }
            s.last_time = t;
            s.len += 1;
            self.row_slot.push(slot);
        }
        Ok(())
    }

    /// The slot of batch series `b`: its existing series, a new series already opened by an
    /// equal key in this batch, or a new series.
    fn open_slot(
        &mut self,
        table: &Table,
        batch: &TableBatch,
        b: u32,
    ) -> Result<u32, MemtableError> {
        let key = &batch.series[b as usize];
        let slot = to_u32(self.slots.len(), batch, "series per batch")?;
        if let Some((series, found)) = table.find_series(key) {
            // A batch that lists one key twice gets one slot for it.
            if let Some(earlier) = found.slot_in(self.epoch) {
                return Ok(earlier);
            }
            found.set_slot(self.epoch, slot);
            self.slots.push(Slot {
                series,
                batch_series: b,
                is_new: false,
                len: found.entries.len(),
                last_time: found.last_time,
                strict: found.strict,
                next_pending: UNSEEN,
            });
            return Ok(slot);
        }
        let mut at = self.pending.get(&key.hash).copied().unwrap_or(UNSEEN);
        while at != UNSEEN {
            let other = &self.slots[at as usize];
            if same_tags(&batch.series[other.batch_series as usize], key) {
                return Ok(at);
            }
            at = other.next_pending;
        }
        let series = to_u32(
            table.series.len() + self.new_series,
            batch,
            "series per table",
        )?;
        self.new_series += 1;
        let next_pending = self.pending.insert(key.hash, slot).unwrap_or(UNSEEN);
        self.slots.push(Slot {
            series,
            batch_series: b,
            is_new: true,
            len: 0,
            last_time: i64::MIN,
            strict: true,
            next_pending,
        });
        Ok(slot)
    }

    /// A counting sort of the rows by slot, so `apply` appends one series' entries at a time.
    fn group_rows_by_slot(&mut self) {
        self.slot_starts.clear();
        self.slot_starts.resize(self.slots.len() + 1, 0);
        for &s in &self.row_slot {
            self.slot_starts[s as usize + 1] += 1;
        }
        for s in 1..self.slot_starts.len() {
            self.slot_starts[s] += self.slot_starts[s - 1];
        }
        self.slot_rows.clear();
        self.slot_rows.resize(self.row_slot.len(), 0);
        // Fill each slot from its end, walking the rows backwards, so batch order survives.
        for (r, &s) in self.row_slot.iter().enumerate().rev() {
            let end = &mut self.slot_starts[s as usize + 1];
            *end -= 1;
            self.slot_rows[*end] = r as u32;
        }
        // Each slot_starts[s + 1] now holds the start of slot s; shift them into place.
        self.slot_starts.remove(0);
        self.slot_starts.push(self.row_slot.len());
    }

    /// Bytes the table's structures and column data grow by.
    fn table_growth(&self, table: &Table, batch: &TableBatch) -> Result<usize, MemtableError> {
        let added = self.columns.iter().filter(|c| c.is_new);
        let names = added
            .clone()
            .map(|c| batch.fields[c.field].name.len())
            .sum();
        let mut bytes = table.growth_bytes(added.count(), names, self.new_series);
        for (p, need) in &self.needs {
            let c = &self.columns[*p as usize];
            let absent = BlockColumn::empty(c.value_type);
            let data = table.data.get(c.index as usize).unwrap_or(&absent);
            bytes += data
                .growth_bytes(need)
                .ok_or_else(|| MemtableError::limit(batch, "string bytes per column block"))?;
        }
        Ok(bytes)
    }

    /// Records what batch field `f` needs of the blocks its rows fall in.
    fn count_field(&mut self, batch: &TableBatch, f: usize) {
        let p = self.field_column[f];
        // Only a field named twice can meet needs already recorded for its column.
        let repeat = self.columns[p as usize].field != f;
        match &batch.fields[f].values {
            FieldValues::Float(v) => self.count_values(p, repeat, v, |_| 0),
            FieldValues::Integer(v) => self.count_values(p, repeat, v, |_| 0),
            FieldValues::Unsigned(v) => self.count_values(p, repeat, v, |_| 0),
            FieldValues::Boolean(v) => self.count_values(p, repeat, v, |_| 0),
            FieldValues::String(v) => self.count_values(p, repeat, v, String::len),
        }
    }

    fn count_values<T>(
        &mut self,
        p: u32,
        repeat: bool,
        values: &[Option<T>],
        bytes_of: impl Fn(&T) -> usize,
    ) {
        for span in spans(self.rows_before, values.len()) {
            let values = &values[span.values];
            let Some(last) = values.iter().rposition(Option::is_some) else {
                continue; // no value in this block: it needs nothing
            };
            let need = BlockNeed {
                block: span.block,
                offset: span.offset,
                rows: span.offset + last + 1,
                string_bytes: values.iter().flatten().map(&bytes_of).sum(),
                has_none: values[..last].iter().any(Option::is_none),
            };
            let earlier = if repeat {
                let mut needs = self.needs.iter_mut();
                needs.find(|(q, n)| *q == p && n.block == need.block)
            } else {
                None
            };
            match earlier {
                Some((_, n)) => {
                    n.offset = n.offset.min(need.offset);
                    n.rows = n.rows.max(need.rows);
                    n.string_bytes += need.string_bytes;
                    n.has_none |= need.has_none;
                }
                None => self.needs.push((p, need)),
            }
        }
    }
}

/// Bytes a slot's series grows by: its entries, and the key of a new series.
fn slot_growth(table: &Table, batch: &TableBatch, slot: &Slot) -> usize {
    if slot.is_new {
        let key = &batch.series[slot.batch_series as usize];
        grown_capacity(0, slot.len) * size_of::<Entry>() + key_bytes(key)
    } else {
        let capacity = table.series[slot.series as usize].entries.capacity();
        (grown_capacity(capacity, slot.len) - capacity) * size_of::<Entry>()
    }
}

fn to_u32(n: usize, batch: &TableBatch, what: &'static str) -> Result<u32, MemtableError> {
    u32::try_from(n)
        .ok()
        .filter(|&n| n != UNSEEN)
        .ok_or_else(|| MemtableError::limit(batch, what))
}
