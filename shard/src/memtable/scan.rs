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

/// `$e` with `T` the Rust type of a primitive value type; None for strings (no dense form).
macro_rules! by_primitive {
    ($value_type:expr, |$t:ident| $e:expr) => {
        match $value_type {
            ValueType::Float => {
                type $t = f64;
                $e
            }
            ValueType::Integer => {
                type $t = i64;
                $e
            }
            ValueType::Unsigned => {
                type $t = u64;
                $e
            }
            ValueType::Boolean => {
                type $t = bool;
                $e
            }
            ValueType::String => None,
        }
    };
}

use super::column::{ColumnData, ColumnRef, Value};
use super::table::{Column, Entry, Series, Table};
use crate::batch::{SeriesKey, ValueType};

/// One table's data, for a scan: one memtable's table, or several layers of it merged
/// (`Layered`).
#[derive(Debug, Clone, Copy)]
pub struct TableScan<'a> {
    /// The table itself, or with layers the newest layer's (for its names).
    table: &'a Table,
    layered: Option<&'a Layered<'a>>,
}

impl<'a> TableScan<'a> {
    pub(super) fn new(table: &'a Table) -> TableScan<'a> {
        TableScan {
            table,
            layered: None,
        }
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
        match self.layered {
            Some(l) => &l.columns,
            None => &self.table.columns,
        }
    }

    pub fn series_count(&self) -> usize {
        match self.layered {
            Some(l) => l.union.len(),
            None => self.table.series.len(),
        }
    }

    /// Every series, in the order it first arrived (stable across scans of one memtable).
    pub fn series(&self) -> impl Iterator<Item = SeriesScan<'a>> + 'a {
        self.series_from(0)
    }

    /// The series from index `start` on (in `series()` order; none past the end). New series
    /// are appended, so an index stays valid while the memtable lives: a scan resumed at an
    /// index skips the series before it without gathering them.
    pub fn series_from(&self, start: usize) -> impl Iterator<Item = SeriesScan<'a>> + 'a {
        self.series_refs_from(start).map(|s| s.scan())
    }

    /// Like `series_from`, without gathering anything: each item carries the key, and builds
    /// its points only when asked (`scan`, `scan_range`), so a scan that skips a series by its
    /// tags or its time range pays nothing for it.
    pub fn series_refs_from(&self, start: usize) -> impl Iterator<Item = SeriesRef<'a>> + 'a {
        let table = self.table;
        let (rest, layered) = match self.layered {
            Some(l) => (&[][..], Some((l, start..l.union.len().max(start)))),
            None => (table.series.get(start..).unwrap_or(&[]), None),
        };
        let plain = rest.iter().map(move |series| SeriesRef {
            table,
            series,
            layered: None,
        });
        let merged = layered.into_iter().flat_map(|(l, range)| {
            range.filter_map(move |u| {
                let (table, series) = l.first(u)?;
                Some(SeriesRef {
                    table,
                    series,
                    layered: Some((l, u)),
                })
            })
        });
        plain.chain(merged)
    }
}

/// One series of a table, before anything of it is gathered.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    /// With layers: the oldest layer holding the series, and its series there.
    table: &'a Table,
    series: &'a Series,
    /// The layers and the series' index in their union.
    layered: Option<(&'a Layered<'a>, usize)>,
}

impl<'a> SeriesRef<'a> {
    pub fn key(&self) -> &'a SeriesKey {
        &self.series.key
    }

    /// The earliest and latest time held (deleted points aside), without gathering: O(1) for
    /// a strict series. None if it holds no point.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        let bounds = |s: &Series| -> Option<(i64, i64)> {
            let e = &s.entries;
            if s.strict {
                return Some((e.first()?.time, e.last()?.time));
            }
            let min = e.iter().map(|x| x.time).min()?;
            let max = e.iter().map(|x| x.time).max()?;
            Some((min, max))
        };
        match self.layered {
            None => bounds(self.series),
            Some((l, u)) => (0..l.tables.len())
                .filter_map(|layer| l.series_in(u, layer).and_then(bounds))
                .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1))),
        }
    }

    /// Every point of the series.
    pub fn scan(&self) -> SeriesScan<'a> {
        if let Some((l, u)) = self.layered {
            return SeriesScan::layered(l, u, None, (self.table, self.series));
        }
        SeriesScan::new(self.table, self.series, None)
    }

    /// The points with `min <= time < max` only, at most `points_max` of them (the earliest):
    /// a strictly increasing series finds them by binary search and gathers nothing else; any
    /// other one sorts and merges only them (and is never cut short). `is_truncated` on the
    /// answer says whether points in the range were left out.
    pub fn scan_range(&self, min: i64, max: i64, points_max: usize) -> SeriesScan<'a> {
        if let Some((l, u)) = self.layered {
            return SeriesScan::layered(l, u, Some((min, max)), (self.table, self.series));
        }
        SeriesScan::new(self.table, self.series, Some((min, max, points_max)))
    }

    /// The latest point with `min <= time < max` alone (none if the range holds none), merged
    /// like any other: a strictly increasing series finds it by binary search.
    pub fn scan_last(&self, min: i64, max: i64) -> SeriesScan<'a> {
        if let Some((l, u)) = self.layered {
            // The latest time in range over the layers (a binary search in each strict one),
            // then only the writes at that time, merged.
            let latest = (0..l.tables.len())
                .filter_map(|layer| {
                    let s = l.series_in(u, layer)?;
                    let all = &s.entries;
                    if s.strict {
                        let hi = all.partition_point(|e| e.time < max);
                        let t = all.get(hi.checked_sub(1)?)?.time;
                        return (t >= min).then_some(t);
                    }
                    all.iter()
                        .map(|e| e.time)
                        .filter(|&t| t >= min && t < max)
                        .max()
                })
                .max();
            let range = match latest {
                Some(t) => (t, t.saturating_add(1)),
                None => (max, max),
            };
            return SeriesScan::layered(l, u, Some(range), (self.table, self.series));
        }
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
    /// With layers: the layers, and per entry of `rows` the layer it is a row of.
    layers: Option<(&'a Layered<'a>, Vec<u16>)>,
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
            layers: None,
        }
    }

    /// Union series `u` of `layered`, merged over its layers: every layer's points with
    /// `min <= time < max` (all with None), sorted by time (stably: older layers first, then
    /// arrival order), equal times merged with the newest write winning per field. Never
    /// truncated.
    fn layered(
        layered: &'a Layered<'a>,
        u: usize,
        range: Option<(i64, i64)>,
        (table, series): (&'a Table, &'a Series),
    ) -> SeriesScan<'a> {
        let key_of = series;
        let (min, max) = range.unwrap_or((i64::MIN, i64::MAX));
        let mut entries: Vec<(Entry, u16)> = Vec::new();
        for layer in 0..layered.tables.len() {
            // Same key or nothing: a table dropped and written again since the union was built
            // must not lend another series' points.
            let Some(series) = layered
                .series_in(u, layer)
                .filter(|s| super::table::same_tags(&s.key, &key_of.key))
            else {
                continue;
            };
            let all = &series.entries;
            if series.strict {
                let lo = all.partition_point(|e| e.time < min);
                let hi = all.partition_point(|e| e.time < max).max(lo);
                entries.extend(all[lo..hi].iter().map(|&e| (e, layer as u16)));
            } else {
                entries.extend(
                    all.iter()
                        .filter(|e| e.time >= min && e.time < max)
                        .map(|&e| (e, layer as u16)),
                );
            }
        }
        entries.sort_by_key(|(e, _)| e.time);
        let mut time: Vec<i64> = Vec::with_capacity(entries.len());
        let mut ends = Vec::with_capacity(entries.len());
        for (k, (e, _)) in entries.iter().enumerate() {
            match (time.last(), ends.last_mut()) {
                (Some(&last), Some(end)) if last == e.time => *end = k as u32 + 1,
                _ => {
                    time.push(e.time);
                    ends.push(k as u32 + 1);
                }
            }
        }
        let rows = entries.iter().map(|(e, _)| e.row).collect();
        let row_layers = entries.iter().map(|&(_, l)| l).collect();
        // No time twice: nothing to merge (the usual case: layers hold different times).
        let merged = time.len() < entries.len();
        SeriesScan {
            table,
            key: &series.key,
            time,
            rows,
            group_ends: merged.then_some(ends),
            truncated: false,
            columns: vec![OnceCell::new(); layered.columns.len()],
            layers: Some((layered, row_layers)),
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
        if let Some((_, row_layers)) = &mut self.layers {
            row_layers.drain(..from);
        }
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
        if let Some((layered, row_layers)) = &self.layers {
            return self.gather_layered(layered, row_layers, i);
        }
        let data = &self.table.data[i];
        let value_type = self.table.columns[i].value_type;
        if self.group_ends.is_none() {
            let dense = by_primitive!(value_type, |T| data
                .gather_dense::<T>(&self.rows)
                .map(ColumnData::from_values));
            if let Some(dense) = dense {
                return dense;
            }
        }
        self.merged(value_type, |k| data.get(self.rows[k] as usize))
    }

    /// A column built point by point: each point takes the value of its group's latest write
    /// that has one (`value_at(k)`: the value of entry `k` of `rows`, if any).
    fn merged<'v>(
        &self,
        value_type: ValueType,
        value_at: impl Fn(usize) -> Option<Value<'v>>,
    ) -> ColumnData {
        let mut out = ColumnData::empty(value_type);
        out.reserve(self.len(), 0);
        let mut start = 0;
        for (point, end) in self.group_ends() {
            if let Some(v) = (start..end).rev().find_map(&value_at) {
                out.put_value(point, v);
            }
            start = end;
        }
        out
    }

    /// Union column `i` over the layers: per point the newest write with a value.
    fn gather_layered(&self, layered: &Layered<'_>, row_layers: &[u16], i: usize) -> ColumnData {
        let value_type = layered.columns[i].value_type;
        if self.group_ends.is_none() {
            let dense = by_primitive!(value_type, |T| self
                .gather_runs::<T>(layered, row_layers, i));
            if let Some(dense) = dense {
                return dense;
            }
        }
        self.merged(value_type, |k| {
            let layer = row_layers[k] as usize;
            let column = layered.maps[layer][i]?;
            layered.tables[layer].data[column as usize].get(self.rows[k] as usize)
        })
    }

    /// Without merges: column `i` gathered densely, one run of rows of one layer at a time;
    /// None if some run has nulls or a layer lacks the column (the general path handles it).
    fn gather_runs<T: super::column::Primitive>(
        &self,
        layered: &Layered<'_>,
        row_layers: &[u16],
        i: usize,
    ) -> Option<ColumnData> {
        let mut out: Vec<T> = Vec::with_capacity(self.rows.len());
        let mut start = 0;
        while start < self.rows.len() {
            let layer = row_layers[start];
            let end = start
                + row_layers[start..]
                    .iter()
                    .take_while(|&&l| l == layer)
                    .count();
            let column = layered.maps[layer as usize][i]?;
            let data = &layered.tables[layer as usize].data[column as usize];
            out.extend(data.gather_dense::<T>(&self.rows[start..end])?);
            start = end;
        }
        Some(ColumnData::from_values(out))
    }

    /// (point, end in `rows` of its group), for every point.
    fn group_ends(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let ends = self.group_ends.as_deref();
        (0..self.len()).map(move |p| (p, ends.map_or(p + 1, |e| e[p] as usize)))
    }
}

/// The series of several layers of one table (say a decoded segment, a frozen memtable and the
/// memtable), matched by key: series `u` of the union is, per layer, that layer's series with
/// the same key, if any. Built once per read (`Union::build`) and reused for every batch of it:
/// positions in a read are union indexes. Series a layer gains after the build are not in the
/// union (a read does not see series created after it began).
#[derive(Debug, Clone, Default)]
pub struct Union {
    layers: usize,
    /// `slots[u * layers + l]`: the index of union series `u` in layer `l`, or `NO_SERIES`.
    slots: Vec<u32>,
    /// Series each layer had at the build.
    counts: Vec<usize>,
}

impl Union {
    /// The union of the series of `layers` (oldest first), in the oldest layer's order, then
    /// each newer layer's new series in its order.
    pub fn build(layers: &[TableScan<'_>]) -> Union {
        use super::table::NO_SERIES;
        let n = layers.len();
        let mut slots: Vec<u32> = Vec::new();
        // `union_of[layer][series]`: the union index of a layer's series.
        let mut union_of: Vec<Vec<u32>> = Vec::with_capacity(n);
        for (l, layer) in layers.iter().enumerate() {
            let mut mine = Vec::with_capacity(layer.table.series.len());
            for (i, series) in layer.table.series.iter().enumerate() {
                let known = layers[..l].iter().zip(&union_of).find_map(|(older, of)| {
                    let (at, _) = older.table.find_series(&series.key)?;
                    of.get(at as usize).copied()
                });
                let u = match known {
                    Some(u) => u as usize,
                    None => {
                        slots.resize(slots.len() + n, NO_SERIES);
                        slots.len() / n - 1
                    }
                };
                slots[u * n + l] = i as u32;
                mine.push(u as u32);
            }
            union_of.push(mine);
        }
        let counts = layers.iter().map(|l| l.table.series.len()).collect();
        Union {
            layers: n,
            slots,
            counts,
        }
    }

    /// Series in the union.
    pub fn len(&self) -> usize {
        self.slots.len().checked_div(self.layers).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u32>()
    }
}

/// Several layers of one table merged for reading (see `Union`): the newest layer's write wins
/// for each (series, time, field). Columns are matched by name; a layer whose column of that
/// name has another type than the newest layer's does not contribute to it.
#[derive(Debug)]
pub struct Layered<'a> {
    tables: Vec<&'a Table>,
    columns: Vec<Column>,
    /// `maps[layer][union column]`: the layer's column index.
    maps: Vec<Vec<Option<u32>>>,
    union: &'a Union,
}

impl<'a> Layered<'a> {
    /// `layers` (oldest first) as `union` matched them; None if they no longer hold what the
    /// union indexes (a table dropped since: the read ends).
    pub fn new(layers: &[TableScan<'a>], union: &'a Union) -> Option<Layered<'a>> {
        let held = layers
            .iter()
            .zip(&union.counts)
            .all(|(l, &count)| l.table.series.len() >= count);
        if layers.len() != union.layers || layers.is_empty() || !held {
            return None;
        }
        let tables: Vec<&'a Table> = layers.iter().map(|l| l.table).collect();
        let mut columns: Vec<Column> = Vec::new();
        for t in tables.iter().rev() {
            for c in &t.columns {
                if !columns.iter().any(|x| x.name == c.name) {
                    columns.push(c.clone());
                }
            }
        }
        let maps = tables
            .iter()
            .map(|t| {
                columns
                    .iter()
                    .map(|c| match t.column(&c.name) {
                        Some((i, vt)) if vt == c.value_type => Some(i),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        Some(Layered {
            tables,
            columns,
            maps,
            union,
        })
    }

    /// The merged table, for a scan.
    pub fn scan(&'a self) -> TableScan<'a> {
        TableScan {
            table: self.tables[self.tables.len() - 1],
            layered: Some(self),
        }
    }

    fn series_in(&self, u: usize, layer: usize) -> Option<&'a Series> {
        let at = *self.union.slots.get(u * self.union.layers + layer)?;
        if at == super::table::NO_SERIES {
            return None;
        }
        self.tables[layer].series.get(at as usize)
    }

    /// The oldest layer holding union series `u`, and the series there.
    fn first(&self, u: usize) -> Option<(&'a Table, &'a Series)> {
        (0..self.tables.len()).find_map(|l| Some((self.tables[l], self.series_in(u, l)?)))
    }
}
