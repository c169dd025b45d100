//! Applying a planned insert. Nothing here can fail: the plan has checked types and limits and
//! counted the bytes. The steps: add the new columns and series, append each field of the batch
//! to its table column (one sequential copy per field), then append each series' entries.
//!
//! Fields are written in batch order, so if a batch names a field twice the later column wins
//! where it has a value.

use super::column::reserve_for;
use super::plan::Plan;
use super::table::{Entry, Table};
use crate::batch::{FieldValues, TableBatch};

/// What an insert changed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Applied {
    /// Bytes of the table's structures and touched series, before and after.
    pub(super) bytes_before: usize,
    pub(super) bytes_after: usize,
    pub(super) series: usize,
}

pub(super) fn apply(table: &mut Table, batch: &TableBatch, plan: &Plan) -> Applied {
    debug_assert_eq!(
        table.rows, plan.rows_before,
        "the plan is for this table state"
    );
    let bytes_before = touched_bytes(table, plan, false);
    let added = plan.columns.iter().filter(|c| c.is_new);
    table.add_columns(added.map(|c| {
        let field = &batch.fields[c.field];
        (field.name.as_str(), c.value_type)
    }));
    table.reserve_series(plan.new_series);
    for slot in plan.slots.iter().filter(|s| s.is_new) {
        let i = table.add_series(batch.series[slot.batch_series as usize].clone());
        debug_assert_eq!(i, slot.series, "new series indexes follow slot order");
    }
    for (p, need) in &plan.needs {
        table.data[plan.columns[*p as usize].index as usize].reserve(need);
    }
    for (field, &p) in batch.fields.iter().zip(&plan.field_column) {
        let data = &mut table.data[plan.columns[p as usize].index as usize];
        let stored = match &field.values {
            FieldValues::Float(v) => data.write_rows(plan.rows_before, v),
            FieldValues::Integer(v) => data.write_rows(plan.rows_before, v),
            FieldValues::Unsigned(v) => data.write_rows(plan.rows_before, v),
            FieldValues::Boolean(v) => data.write_rows(plan.rows_before, v),
            FieldValues::String(v) => data.write_strs(plan.rows_before, v),
        };
        debug_assert!(stored, "the plan checked the column type");
    }
    append_entries(table, batch, plan);
    table.rows += batch.rows();
    Applied {
        bytes_before,
        bytes_after: touched_bytes(table, plan, true),
        series: plan.new_series,
    }
}

/// Entries a strict series may re-sort at its end to stay strict after a write arrived out of
/// order: a bound on the work one insert does per series.
const RESORT_MAX: usize = 1024;

/// Appends each row's (time, row) entry to its series, one series at a time.
fn append_entries(table: &mut Table, batch: &TableBatch, plan: &Plan) {
    for (s, slot) in plan.slots.iter().enumerate() {
        let series = &mut table.series[slot.series as usize];
        let (was_strict, len_before) = (series.strict, series.entries.len());
        reserve_for(&mut series.entries, slot.len);
        let rows = plan.rows_of(s);
        series.entries.extend(rows.iter().map(|&r| Entry {
            time: batch.time[r as usize],
            row: (plan.rows_before + r as usize) as u32,
        }));
        series.strict = slot.strict;
        if was_strict && !slot.strict {
            series.strict = restore_order(&mut series.entries, len_before);
        }
        series.last_time = series.entries.last().map_or(i64::MIN, |e| e.time);
        debug_assert_eq!(series.entries.len(), slot.len);
    }
}

/// After entries from `from` on were appended out of order to entries that were strictly
/// increasing before: sorts the end of the series from the first entry the new ones precede,
/// if that end is at most `RESORT_MAX` long, and tells whether the series is strictly
/// increasing again (no time repeats). TSBS-style loads from several connections deliver a
/// series' batches slightly out of order; this keeps such series readable by binary search.
///
/// The sort is stable, so among equal times (which leave the series non-strict) entries stay
/// in arrival order, the order the read-time merge relies on; nothing else depends on the
/// order of entries with different times.
fn restore_order(entries: &mut [Entry], from: usize) -> bool {
    let Some(earliest) = entries[from..].iter().map(|e| e.time).min() else {
        return true;
    };
    let lo = entries[..from].partition_point(|e| e.time < earliest);
    if entries.len() - lo > RESORT_MAX {
        return false;
    }
    entries[lo..].sort_by_key(|e| e.time);
    entries[lo.saturating_sub(1)..]
        .windows(2)
        .all(|w| w[0].time < w[1].time)
}

/// Bytes of the table's own structures and data plus every series the plan touches (new
/// series only once they exist).
fn touched_bytes(table: &Table, plan: &Plan, with_new: bool) -> usize {
    let series = plan
        .slots
        .iter()
        .filter(|s| with_new || !s.is_new)
        .map(|s| table.series[s.series as usize].heap_bytes())
        .sum::<usize>();
    table.own_bytes() + series
}
