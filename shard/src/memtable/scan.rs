//! Reading a table of the memtable: per series, in first-seen order, the key and its points
//! sorted by time with equal times merged, column by column.
//!
//! A series' entries point at table rows, so a scan gathers: it builds the series' time vector
//! when the series is visited, and each field column only when asked for (a query reading two
//! of ten fields gathers two). A series whose times are strictly increasing (the usual case:
//! in-order appends) is gathered as it is. Any other series is stable-sorted by time and its
//! equal times merged into one point, each field taking the value of the latest write that had
//! it (arrival order survives the stable sort).

use std::cell::OnceCell;

use super::column::{ColumnData, ColumnRef, Value};
use super::table::{Column, Entry, Series, Table};
use crate::batch::{SeriesKey, ValueType};

/// One table's data, for a scan.
#[derive(Debug, Clone, Copy)]
pub struct TableScan<'a> {
    table: &'a Table,
}

impl<'a> TableScan<'a> {
    pub(super) fn new(table: &'a Table) -> TableScan<'a> {
        TableScan { table }
    }

    pub fn tenant(&self) -> &'a str {
        &self.table.tenant
    }

    pub fn database(&self) -> &'a str {
        &self.table.database
    }

    pub fn table(&self) -> &'a str {
        &self.table.name
    }

    /// The table's columns in first-seen order; `SeriesScan::column(i)` is column `i`.
    pub fn columns(&self) -> &'a [Column] {
        &self.table.columns
    }

    pub fn series_count(&self) -> usize {
        self.table.series.len()
    }

    /// Every series, in the order it first arrived (stable across scans of one memtable).
    pub fn series(&self) -> impl ExactSizeIterator<Item = SeriesScan<'a>> + 'a {
        self.series_from(0)
    }

    /// The series from index `start` on (in `series()` order; none past the end). New series
    /// are appended, so an index stays valid while the memtable lives: a scan resumed at an
    /// index skips the series before it without gathering them.
    pub fn series_from(&self, start: usize) -> impl ExactSizeIterator<Item = SeriesScan<'a>> + 'a {
        self.series_refs_from(start).map(|s| s.scan())
    }

    /// Like `series_from`, without gathering anything: each item carries the key, and builds
    /// its points only when asked (`scan`, `scan_range`), so a scan that skips a series by its
    /// tags or its time range pays nothing for it.
    pub fn series_refs_from(
        &self,
        start: usize,
    ) -> impl ExactSizeIterator<Item = SeriesRef<'a>> + 'a {
        let table = self.table;
        let rest = table.series.get(start..).unwrap_or(&[]);
        rest.iter().map(move |series| SeriesRef { table, series })
    }
}

/// One series of a table, before anything of it is gathered.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    table: &'a Table,
    series: &'a Series,
}

impl<'a> SeriesRef<'a> {
    pub fn key(&self) -> &'a SeriesKey {
        &self.series.key
    }

    /// Every point of the series.
    pub fn scan(&self) -> SeriesScan<'a> {
        SeriesScan::new(self.table, self.series, None)
    }

    /// The points with `min <= time < max` only, at most `points_max` of them (the earliest):
    /// a strictly increasing series finds them by binary search and gathers nothing else; any
    /// other one sorts and merges only them (and is never cut short). `is_truncated` on the
    /// answer says whether points in the range were left out.
    pub fn scan_range(&self, min: i64, max: i64, points_max: usize) -> SeriesScan<'a> {
        SeriesScan::new(self.table, self.series, Some((min, max, points_max)))
    }

    /// The latest point with `min <= time < max` alone (none if the range holds none), merged
    /// like any other: a strictly increasing series finds it by binary search.
    pub fn scan_last(&self, min: i64, max: i64) -> SeriesScan<'a> {
        if self.series.strict {
            let all = &self.series.entries;
            let hi = all.partition_point(|e| e.time < max);
            // The latest point before `max`, if it is not before `min`: one point from there.
            let from = match hi.checked_sub(1).map(|i| all[i].time) {
                Some(t) if t >= min => t,
                _ => return SeriesScan::new(self.table, self.series, Some((max, max, 1))),
            };
            return SeriesScan::new(self.table, self.series, Some((from, max, 1)));
        }
        let mut scan = SeriesScan::new(self.table, self.series, Some((min, max, usize::MAX)));
        scan.keep_last();
        scan
    }
}

/// One series of a scan: strictly increasing times, and one column per table column, gathered
/// on first use.
#[derive(Debug, Clone)]
pub struct SeriesScan<'a> {
    table: &'a Table,
    key: &'a SeriesKey,
    time: Vec<i64>,
    /// Table rows of the series' entries, in time order (arrival order among equal times).
    rows: Vec<u32>,
    /// For a series that needed merging: where each point's group of `rows` ends.
    group_ends: Option<Vec<u32>>,
    /// Points of the range asked for follow the last one here (`SeriesRef::scan_range`).
    truncated: bool,
    columns: Vec<OnceCell<ColumnData>>,
}

impl<'a> SeriesScan<'a> {
    /// The points of `series` with `min <= time < max` (at most `points_max` of them if the
    /// series is strict), or every point when `range` is None.
    fn new(
        table: &'a Table,
        series: &'a Series,
        range: Option<(i64, i64, usize)>,
    ) -> SeriesScan<'a> {
        let all = &series.entries;
        let mut truncated = false;
        let (time, rows, group_ends) = if series.strict {
            let entries = match range {
                None => &all[..],
                Some((min, max, points_max)) => {
                    let lo = all.partition_point(|e| e.time < min);
                    let hi = all.partition_point(|e| e.time < max).max(lo);
                    let cut = hi.min(lo.saturating_add(points_max.max(1)));
                    truncated = cut < hi;
                    &all[lo..cut]
                }
            };
            let time = entries.iter().map(|e| e.time).collect();
            (time, entries.iter().map(|e| e.row).collect(), None)
        } else {
            let entries: Vec<&Entry> = match range {
                None => all.iter().collect(),
                Some((min, max, _)) => all
                    .iter()
                    .filter(|e| e.time >= min && e.time < max)
                    .collect(),
            };
            let mut order: Vec<u32> = (0..entries.len() as u32).collect();
            order.sort_by_key(|&i| entries[i as usize].time);
            let mut time: Vec<i64> = Vec::new();
            let mut ends = Vec::new();
            for (k, &i) in order.iter().enumerate() {
                let t = entries[i as usize].time;
                match (time.last(), ends.last_mut()) {
                    (Some(&last), Some(end)) if last == t => *end = k as u32 + 1,
                    _ => {
                        time.push(t);
                        ends.push(k as u32 + 1);
                    }
                }
            }
            let rows = order.iter().map(|&i| entries[i as usize].row).collect();
            (time, rows, Some(ends))
        };
        SeriesScan {
            table,
            key: &series.key,
            time,
            rows,
            group_ends,
            truncated,
            columns: vec![OnceCell::new(); table.columns.len()],
        }
    }

    pub fn key(&self) -> &'a SeriesKey {
        self.key
    }

    /// Drops every point but the latest.
    fn keep_last(&mut self) {
        let points = self.time.len();
        if points <= 1 {
            return;
        }
        let from = match &self.group_ends {
            Some(ends) => ends[points - 2] as usize,
            None => self.rows.len() - 1,
        };
        self.time.drain(..points - 1);
        self.rows.drain(..from);
        if let Some(ends) = &mut self.group_ends {
            *ends = vec![self.rows.len() as u32];
        }
    }

    /// Whether the range this was built for holds points after the last one here.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Points of the series.
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// Times, strictly increasing.
    pub fn time(&self) -> &[i64] {
        &self.time
    }

    /// Table column `i` for this series, gathered on first use.
    ///
    /// # Panics
    /// If `i` is not below the table's column count.
    pub fn column(&self, i: usize) -> ColumnRef<'_> {
        let data = self.columns[i].get_or_init(|| self.gather(i));
        data.view(self.len())
    }

    /// The value of column `column` at point `row`.
    pub fn value(&self, row: usize, column: usize) -> Option<Value<'_>> {
        self.column(column).get(row)
    }

    /// Point `row` as one value per table column, in column order.
    pub fn row(&self, row: usize) -> Vec<Option<Value<'_>>> {
        (0..self.columns.len())
            .map(|c| self.value(row, c))
            .collect()
    }

    fn gather(&self, i: usize) -> ColumnData {
        let data = &self.table.data[i];
        let value_type = self.table.columns[i].value_type;
        if self.group_ends.is_none() {
            let dense = match value_type {
                ValueType::Float => data
                    .gather_dense::<f64>(&self.rows)
                    .map(ColumnData::from_values),
                ValueType::Integer => data
                    .gather_dense::<i64>(&self.rows)
                    .map(ColumnData::from_values),
                ValueType::Unsigned => data
                    .gather_dense::<u64>(&self.rows)
                    .map(ColumnData::from_values),
                ValueType::Boolean => data
                    .gather_dense::<bool>(&self.rows)
                    .map(ColumnData::from_values),
                ValueType::String => None,
            };
            if let Some(dense) = dense {
                return dense;
            }
        }
        let mut out = ColumnData::empty(value_type);
        out.reserve(self.len(), 0);
        let mut start = 0;
        for (point, end) in self.group_ends() {
            // The group's latest write with a value wins.
            let rows = &self.rows[start..end];
            if let Some(v) = rows.iter().rev().find_map(|&r| data.get(r as usize)) {
                out.put_value(point, v);
            }
            start = end;
        }
        out
    }

    /// (point, end in `rows` of its group), for every point.
    fn group_ends(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let ends = self.group_ends.as_deref();
        (0..self.len()).map(move |p| (p, ends.map_or(p + 1, |e| e[p] as usize)))
    }
}
