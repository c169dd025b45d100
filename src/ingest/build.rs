//! Splitting parsed lines into one columnar `WriteBatch` per owner shard.
//!
//! Per line: hash the series key, pick the owner, find or add the series in that owner's table
//! batch (looked up by hash, so a known series costs no allocation), convert the timestamp, and
//! append one row: every field column gets a value or `None`, so all columns stay row-aligned.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use chronoshard_shard::batch::{FieldColumn, FieldValues, SeriesKey, TableBatch, WriteBatch};

use super::{convert_time, IngestError, RouteCtx, Routed};
use crate::lp::{FieldValue, Line, ParsedBatch};
use crate::mesh::{owner_of, series_hash};

/// Splits `parsed` by owner shard. The catalog must already hold every table and column.
pub fn route_rows(parsed: &ParsedBatch<'_>, ctx: &RouteCtx<'_>) -> Result<Routed, IngestError> {
    let db = ctx.catalog.database(ctx.tenant, ctx.database)?;
    let mut builders: Vec<HashMap<String, TableBuilder>> =
        (0..ctx.shards).map(|_| HashMap::new()).collect();
    let now = convert_time(ctx.now_ns, super::WritePrecision::Nanos, db.precision).unwrap_or(0);
    let mut rows = 0;
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for line in parsed.lines() {
        tags.clear();
        tags.extend(line.tags());
        let hash = series_hash(ctx.tenant, ctx.database, line.measurement(), &tags);
        let time = match line.timestamp() {
            None => now,
            Some(ts) => convert_time(ts, ctx.precision, db.precision).ok_or(
                IngestError::TimestampOverflow {
                    line: line.line_no(),
                    ts,
                    precision: ctx.precision,
                },
            )?,
        };
        let shard = &mut builders[owner_of(hash, ctx.shards)];
        let table = match shard.get_mut(line.measurement()) {
            Some(t) => t,
            None => shard.entry(line.measurement().to_string()).or_default(),
        };
        table.push(&line, hash, &tags, time);
        rows += 1;
    }
    let per_shard = builders
        .into_iter()
        .map(|tables| WriteBatch {
            tables: tables
                .into_iter()
                .map(|(name, b)| b.finish(ctx.tenant, ctx.database, name))
                .collect(),
        })
        .collect();
    Ok(Routed { per_shard, rows })
}

#[derive(Default)]
struct TableBuilder {
    series: Vec<SeriesKey>,
    /// Series hash → index of the first series with that hash in `series`; more series with
    /// the same hash (a 64-bit collision) go to `collisions`.
    by_hash: HashMap<u64, u32, BuildHasherDefault<HashIsKey>>,
    collisions: Vec<u32>,
    series_of_row: Vec<u32>,
    time: Vec<i64>,
    fields: Vec<FieldColumn>,
    field_index: HashMap<String, usize>,
    /// Column of each field position of the previous row: the usual next row has the same
    /// fields in the same order, found with one compare instead of a map lookup.
    field_hint: Vec<usize>,
}

impl TableBuilder {
    fn push(&mut self, line: &Line<'_>, hash: u64, tags: &[(&str, &str)], time: i64) {
        let sidx = self.series_index(hash, tags);
        self.series_of_row.push(sidx);
        self.time.push(time);
        for f in &mut self.fields {
            push_none(&mut f.values);
        }
        let rows = self.time.len();
        for (pos, (name, value)) in line.fields().enumerate() {
            let hinted = self.field_hint.get(pos).copied();
            let i = match hinted {
                Some(i) if self.fields[i].name == name => i,
                _ => {
                    let i = match self.field_index.get(name) {
                        Some(&i) => i,
                        None => self.add_field(name, &value, rows),
                    };
                    if pos < self.field_hint.len() {
                        self.field_hint[pos] = i;
                    } else {
                        self.field_hint.push(i);
                    }
                    i
                }
            };
            set_last(&mut self.fields[i].values, value);
        }
    }

    fn series_index(&mut self, hash: u64, tags: &[(&str, &str)]) -> u32 {
        let same = |s: &SeriesKey| {
            s.hash == hash
                && s.tags.len() == tags.len()
                && s.tags
                    .iter()
                    .zip(tags)
                    .all(|((a, b), (c, d))| a == c && b == d)
        };
        if let Some(&i) = self.by_hash.get(&hash) {
            if same(&self.series[i as usize]) {
                return i;
            }
            if let Some(&j) = self
                .collisions
                .iter()
                .find(|&&j| same(&self.series[j as usize]))
            {
                return j;
            }
        }
        let i = self.series.len() as u32;
        self.series.push(SeriesKey {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            hash,
        });
        match self.by_hash.entry(hash) {
            Entry::Occupied(_) => self.collisions.push(i),
            Entry::Vacant(v) => {
                v.insert(i);
            }
        }
        i
    }

    /// Adds a field column holding `rows` absent values (the current row's is set next).
    fn add_field(&mut self, name: &str, value: &FieldValue<'_>, rows: usize) -> usize {
        let mut values = FieldValues::empty(super::value_type(value));
        for _ in 0..rows {
            push_none(&mut values);
        }
        self.fields.push(FieldColumn {
            name: name.to_string(),
            values,
        });
        self.field_index
            .insert(name.to_string(), self.fields.len() - 1);
        self.fields.len() - 1
    }

    fn finish(self, tenant: &str, database: &str, table: String) -> TableBatch {
        TableBatch {
            tenant: tenant.to_string(),
            database: database.to_string(),
            table,
            series: self.series,
            series_of_row: self.series_of_row,
            time: self.time,
            fields: self.fields,
        }
    }
}

fn push_none(values: &mut FieldValues) {
    match values {
        FieldValues::Float(v) => v.push(None),
        FieldValues::Integer(v) => v.push(None),
        FieldValues::Unsigned(v) => v.push(None),
        FieldValues::String(v) => v.push(None),
        FieldValues::Boolean(v) => v.push(None),
    }
}

/// Sets the last row's value. The catalog check guarantees the column's type matches; a
/// mismatch here would be a bug, and leaves the value absent rather than panicking.
fn set_last(values: &mut FieldValues, value: FieldValue<'_>) {
    match (values, value) {
        (FieldValues::Float(v), FieldValue::Float(x)) => set(v, x),
        (FieldValues::Integer(v), FieldValue::Integer(x)) => set(v, x),
        (FieldValues::Unsigned(v), FieldValue::Unsigned(x)) => set(v, x),
        (FieldValues::String(v), FieldValue::String(x)) => set(v, x.to_string()),
        (FieldValues::Boolean(v), FieldValue::Boolean(x)) => set(v, x),
        _ => debug_assert!(false, "field type checked against the catalog"),
    }
}

fn set<T>(v: &mut [Option<T>], x: T) {
    if let Some(last) = v.last_mut() {
        *last = Some(x);
    }
}

/// Series hashes are already well mixed: the map uses them as they are.
#[derive(Default)]
struct HashIsKey(u64);

impl Hasher for HashIsKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
