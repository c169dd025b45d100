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
///
/// A line whose measurement and tag set are byte-for-byte those of an earlier line of the body
/// (the usual case: a batch holds each series several times) reuses that line's owner and series
/// through one hash-map probe on the raw text; only a new raw key pays for sorting, hashing and
/// comparing its tags.
pub fn route_rows(parsed: &ParsedBatch<'_>, ctx: &RouteCtx<'_>) -> Result<Routed, IngestError> {
    let db = ctx.catalog.database(ctx.tenant, ctx.database)?;
    let now = convert_time(ctx.now_ns, super::WritePrecision::Nanos, db.precision).unwrap_or(0);
    let mut builders: Vec<(usize, TableBuilder)> = Vec::new();
    let mut builder_of: HashMap<(usize, &str), usize> = HashMap::new();
    let mut known: HashMap<&str, (usize, u32), BuildHasherDefault<WordHasher>> = HashMap::default();
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for line in parsed.lines() {
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
        let (b, series) = match known.get(line.raw_key()) {
            Some(&found) => found,
            None => {
                tags.clear();
                tags.extend(line.tags());
                let hash = series_hash(ctx.tenant, ctx.database, line.measurement(), &tags);
                let shard = owner_of(hash, ctx.shards);
                let b = *builder_of
                    .entry((shard, line.measurement()))
                    .or_insert_with(|| {
                        // Bodies usually hold one table: the first builders per shard reserve
                        // their share of the lines; later ones (many tables) grow as needed,
                        // so reservations stay within twice the body's rows.
                        let expect = match builders.len() < ctx.shards {
                            true => parsed.len() / ctx.shards.max(1) + 1,
                            false => 0,
                        };
                        builders.push((shard, TableBuilder::new(line.measurement(), expect)));
                        builders.len() - 1
                    });
                let series = builders[b].1.series_index(hash, &tags);
                known.insert(line.raw_key(), (b, series));
                (b, series)
            }
        };
        builders[b].1.push(&line, series, time);
    }
    let rows = parsed.len();
    let mut per_shard: Vec<WriteBatch> = (0..ctx.shards).map(|_| WriteBatch::default()).collect();
    for (shard, b) in builders {
        per_shard[shard]
            .tables
            .push(b.finish(ctx.tenant, ctx.database));
    }
    Ok(Routed { per_shard, rows })
}

struct TableBuilder {
    table: String,
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
    /// Rows this builder is likely to get (the body's lines over the shards): reserved up front
    /// so columns do not grow by copying.
    expect: usize,
}

impl TableBuilder {
    fn new(table: &str, expect: usize) -> TableBuilder {
        TableBuilder {
            table: table.to_string(),
            series: Vec::new(),
            by_hash: HashMap::default(),
            collisions: Vec::new(),
            series_of_row: Vec::with_capacity(expect),
            time: Vec::with_capacity(expect),
            fields: Vec::new(),
            field_index: HashMap::new(),
            field_hint: Vec::new(),
            expect,
        }
    }

    /// Appends one row of `series` (an index from `series_index`).
    fn push(&mut self, line: &Line<'_>, series: u32, time: i64) {
        self.series_of_row.push(series);
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
            s.hash == hash && s.tag_count() == tags.len() && s.tags().eq(tags.iter().copied())
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
        self.series.push(SeriesKey::new(hash, tags.iter().copied()));
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
        let mut values = FieldValues::with_capacity(super::value_type(value), self.expect);
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

    fn finish(self, tenant: &str, database: &str) -> TableBatch {
        TableBatch {
            tenant: tenant.to_string(),
            database: database.to_string(),
            table: self.table,
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

/// Hashes raw series keys eight bytes at a time (std's SipHash costs more than the rest of a
/// known line's routing). Not collision-resistant against chosen input, which only costs a
/// slower probe: equality is still checked on the full key.
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(w) ^ (bytes.len() as u64) << 56);
    }
}

impl WordHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(31);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::Catalog;
    use crate::ingest::WritePrecision;
    use crate::lp;

    fn route(body: &str, shards: usize) -> Routed {
        let mut parsed = ParsedBatch::default();
        lp::parse(body.as_bytes(), &mut parsed).expect("parses");
        let catalog = Arc::new(Catalog::bootstrap(shards));
        let ctx = RouteCtx {
            tenant: "cnosdb",
            database: "public",
            precision: WritePrecision::Nanos,
            catalog: &catalog,
            shards,
            now_ns: 77,
        };
        route_rows(&parsed, &ctx).expect("routes")
    }

    #[test]
    fn tag_order_and_raw_text_do_not_split_a_series() {
        let r = route(
            "m,a=1,b=2 v=1 1\nm,b=2,a=1 v=2 2\nm,a=1,b=2 v=3 3\nm,a=1,b=3 w=1i\n",
            2,
        );
        assert_eq!(r.rows, 4);
        let tables: Vec<&TableBatch> = r.per_shard.iter().flat_map(|b| &b.tables).collect();
        let series: usize = tables.iter().map(|t| t.series.len()).sum();
        assert_eq!(series, 2, "{tables:#?}");
        let first = tables
            .iter()
            .find(|t| {
                t.series
                    .iter()
                    .any(|s| s.tags().nth(1).is_some_and(|t| t.1 == "2"))
            })
            .expect("series a=1,b=2");
        assert_eq!(first.time, [1, 2, 3]);
        assert_eq!(first.series_of_row, [0, 0, 0]);
        let other = tables
            .iter()
            .find(|t| {
                t.series
                    .iter()
                    .any(|s| s.tags().nth(1).is_some_and(|t| t.1 == "3"))
            })
            .expect("series a=1,b=3");
        assert!(
            other.time.contains(&77),
            "missing timestamp gets the server time"
        );
        for t in &tables {
            t.check().expect("well-formed batch");
        }
    }

    #[test]
    fn rows_split_by_owner_and_columns_stay_aligned() {
        let body: String = (0..100)
            .map(|i| format!("cpu,host=h{i} a={i}i,b=1.5\ncpu,host=h{i} b=2.5 9\n"))
            .collect();
        let r = route(&body, 2);
        assert_eq!(r.rows, 200);
        let mut total = 0;
        for (shard, batch) in r.per_shard.iter().enumerate() {
            for t in &batch.tables {
                t.check().expect("aligned");
                for s in &t.series {
                    assert_eq!(owner_of(s.hash, 2), shard);
                }
                total += t.rows();
            }
        }
        assert_eq!(total, 200);
    }
}
