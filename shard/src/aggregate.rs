//! Aggregation on the shard: grouped counts, sums, minima, maxima and means computed straight
//! from the memtable's series, without building the rows as Arrow batches first.
//!
//! This is the shard's half of a two-phase aggregate (the SQL layer merges the halves of every
//! shard). A query such as TSBS's double-groupby
//! (`SELECT date_bin(INTERVAL '1 hour', time), hostname, avg(usage_user) ... GROUP BY 1, 2`)
//! groups by tags and by a function of time. A tag is constant along a series, so each series
//! is looked up once among the groups of tags, and its points walk in time order through the
//! buckets of the time function: the group of a point changes only when its bucket does. Only
//! the aggregated fields are gathered from the memtable, and no tag string is copied per row.
//!
//! # Output
//!
//! Batches of partial states, one row per group, in the schema `output_schema` gives: the group
//! tags (`Utf8`, null for a series lacking the tag), then the bucket (`Int64`, in the table's
//! time unit, null where the bucket function gave none) if the request has one, then per
//! aggregate its state:
//!
//! | function | state columns |
//! | --- | --- |
//! | `Count` | count (`Int64`, not null): points with a value (every point for `field: None`) |
//! | `Sum` | sum (the field's type, null if no value; integers wrap on overflow) |
//! | `Min`, `Max` | the extreme value (the field's type, null if no value; floats in IEEE total order) |
//! | `Avg` | count (`UInt64`, not null), sum (`Float64`, null if no value) |
//!
//! A group may appear in more than one batch (when `groups_max` groups are held, they are
//! emitted and the table restarts): merging is the caller's, as for any partial aggregate.
//! Values are added chunk by chunk (see "Cost and bounds" for the order); a float sum over
//! several series may differ in its last bits from a row-by-row sum in scan order, as any two
//! orders of float additions may (the order in which shards' states merge is not fixed either).
//!
//! # Top buckets
//!
//! With `top_buckets` (the query keeps only the `n` latest buckets), a point whose bucket is
//! below the `n`-th latest bucket seen so far cannot be in the answer, so each series is read
//! only from that time on: for a bucket function that floors times (`bucket(t) <= t`, and
//! `bucket(b) == b` for a bucket `b`), `bucket(t) >= b` exactly when `t >= b`. The threshold
//! only rises, so every group at or above the final threshold is complete; groups below it may
//! be incomplete and are not emitted at the end (one emitted earlier, when `groups_max` groups
//! filled up, is below the final threshold of its shard and so, as the shard saw `n` buckets
//! above it, below the answer's `n` buckets too). Times below `null_below`, whose bucket may be
//! null (a group that sorts first), are always read.
//!
//! # Cost and bounds
//!
//! Per point: one bucket (computed by the caller's function over a chunk of times), one
//! comparison with the previous point's bucket and, per aggregate, one state update; per
//! series one lookup of its tags. At most `groups_max` groups are held, and one chunk of
//! `CHUNK_POINTS` points is gathered at a time. `advance` stops after about the budget of
//! points it is given, so its caller can yield.
//!
//! Series are taken `GROUP_SERIES` at a time and read in rounds, the next chunk of each in
//! turn. The memtable's field values live in table-wide columns by arrival order, so a series'
//! values are strided across the column (a TSBS batch holds one row per host per timestamp);
//! series written together, read over the same time window, share the column's pages and cache
//! lines, where one long series read alone misses the TLB on nearly every value. (Measured on
//! TSBS data: the gather was about a third of the time, series by series.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, PrimitiveArray, RecordBatch, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Field, Schema, SchemaRef};

use crate::batch::ValueType;
use crate::memtable::{ColumnRef, ColumnValues, Memtable};
use crate::scan::{arrow_type, ScanError, ScanRequest, TableSchema};

/// Points gathered from one series at a time.
pub const CHUNK_POINTS: usize = 512;

/// Series aggregated together, a chunk of each in turn (see `advance`).
pub const GROUP_SERIES: usize = 64;

/// An aggregate function the shard computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunction {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// One aggregate: a function over a field, or `Count` over points (`field: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub function: AggregateFunction,
    /// Index into `TableSchema::fields`.
    pub field: Option<usize>,
}

/// Keep only the groups of the `n` latest buckets (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopBuckets {
    pub n: usize,
    /// Times below this may have no bucket (a null group, which sorts first): they are always
    /// read, whatever the threshold. `i64::MIN` when every time has a bucket.
    pub null_below: i64,
}

/// What to aggregate, over which rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateRequest {
    /// The rows: table, time range and tag filters (its projection, limit, last-point flag and
    /// batch size are not used).
    pub scan: ScanRequest,
    /// Group keys among the tags: indexes into `TableSchema::tags`.
    pub group_tags: Vec<usize>,
    /// Whether a bucket of time is a group key too (the caller's bucket function gives it).
    pub bucketed: bool,
    pub aggregates: Vec<Aggregate>,
    pub top_buckets: Option<TopBuckets>,
    /// Groups held before they are emitted as a batch; at least 1.
    pub groups_max: usize,
}

/// Why an aggregate request cannot run; the scan's errors otherwise.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error("aggregate over {table}: {reason}")]
    Request { table: String, reason: String },
    #[error("aggregate over {table}: the bucket function failed: {reason}")]
    Bucket { table: String, reason: String },
    #[error(transparent)]
    Scan(#[from] ScanError),
}

/// The caller's function of time: the bucket of every time given, or None for a point that has
/// none. Called over a chunk of strictly increasing times; `out` arrives empty.
pub type BucketFn<'f> = dyn FnMut(&[i64], &mut Vec<Option<i64>>) -> Result<(), String> + 'f;

/// The schema of the batches `AggregateCursor` yields (see the module docs).
pub fn output_schema(
    schema: &TableSchema,
    req: &AggregateRequest,
) -> Result<SchemaRef, AggregateError> {
    let table = req.scan.table_name();
    let fail = |reason: String| AggregateError::Request {
        table: table.clone(),
        reason,
    };
    let mut fields = Vec::new();
    for &t in &req.group_tags {
        let name = schema
            .tags
            .get(t)
            .ok_or_else(|| fail(format!("group tag {t} of {} tags", schema.tags.len())))?;
        fields.push(Field::new(name, DataType::Utf8, true));
    }
    if req.bucketed {
        fields.push(Field::new("bucket", DataType::Int64, true));
    }
    for (i, a) in req.aggregates.iter().enumerate() {
        let field = match a.field {
            None => None,
            Some(f) => Some(schema.fields.get(f).ok_or_else(|| {
                fail(format!(
                    "aggregate {i}: field {f} of {}",
                    schema.fields.len()
                ))
            })?),
        };
        let numeric = field.and_then(|(_, t)| {
            matches!(
                t,
                ValueType::Float | ValueType::Integer | ValueType::Unsigned
            )
            .then(|| arrow_type(*t))
        });
        let name = |s: &str| format!("{i}_{s}");
        match (a.function, field, numeric) {
            (AggregateFunction::Count, _, _) => {
                fields.push(Field::new(name("count"), DataType::Int64, false));
            }
            (AggregateFunction::Sum, _, Some(t)) => fields.push(Field::new(name("sum"), t, true)),
            (AggregateFunction::Min, _, Some(t)) => fields.push(Field::new(name("min"), t, true)),
            (AggregateFunction::Max, _, Some(t)) => fields.push(Field::new(name("max"), t, true)),
            (AggregateFunction::Avg, _, Some(_)) => {
                fields.push(Field::new(name("count"), DataType::UInt64, false));
                fields.push(Field::new(name("sum"), DataType::Float64, true));
            }
            (function, _, None) => {
                return Err(fail(format!(
                    "aggregate {i}: {function:?} needs a numeric field, got {:?}",
                    field.map(|(n, t)| format!("{n} ({t})"))
                )))
            }
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// The running state of one aggregate, one slot per group.
enum State {
    Count(Vec<i64>),
    SumF(Vec<f64>, Vec<bool>),
    SumI(Vec<i64>, Vec<bool>),
    SumU(Vec<u64>, Vec<bool>),
    ExtremeF(Vec<f64>, Vec<bool>, bool),
    ExtremeI(Vec<i64>, Vec<bool>, bool),
    ExtremeU(Vec<u64>, Vec<bool>, bool),
    Avg(Vec<u64>, Vec<f64>),
}

impl State {
    fn new(function: AggregateFunction, field: Option<ValueType>) -> State {
        use AggregateFunction as F;
        match (function, field) {
            (F::Count, _) => State::Count(Vec::new()),
            (F::Sum, Some(ValueType::Float)) => State::SumF(Vec::new(), Vec::new()),
            (F::Sum, Some(ValueType::Unsigned)) => State::SumU(Vec::new(), Vec::new()),
            (F::Sum, _) => State::SumI(Vec::new(), Vec::new()),
            (F::Min | F::Max, Some(ValueType::Float)) => {
                State::ExtremeF(Vec::new(), Vec::new(), function == F::Max)
            }
            (F::Min | F::Max, Some(ValueType::Unsigned)) => {
                State::ExtremeU(Vec::new(), Vec::new(), function == F::Max)
            }
            (F::Min | F::Max, _) => State::ExtremeI(Vec::new(), Vec::new(), function == F::Max),
            (F::Avg, _) => State::Avg(Vec::new(), Vec::new()),
        }
    }

    /// Makes room for `slots` groups.
    fn grow(&mut self, slots: usize) {
        match self {
            State::Count(c) => c.resize(slots, 0),
            State::SumF(v, s) | State::ExtremeF(v, s, _) => {
                v.resize(slots, 0.0);
                s.resize(slots, false);
            }
            State::SumI(v, s) | State::ExtremeI(v, s, _) => {
                v.resize(slots, 0);
                s.resize(slots, false);
            }
            State::SumU(v, s) | State::ExtremeU(v, s, _) => {
                v.resize(slots, 0);
                s.resize(slots, false);
            }
            State::Avg(c, v) => {
                c.resize(slots, 0);
                v.resize(slots, 0.0);
            }
        }
    }

    fn clear(&mut self) {
        self.grow(0);
    }

    /// Adds the values of `column` (None: count every point) at `points` into `slots`.
    fn update(&mut self, column: Option<ColumnRef<'_>>, slots: &[u32]) {
        let Some(column) = column else {
            if let State::Count(c) = self {
                for &s in slots {
                    c[s as usize] += 1;
                }
            }
            return;
        };
        // Values past the stored ones are null; a validity bitmap marks nulls among them.
        let each = 0..column.values().len().min(slots.len());
        let valid = |p: usize| column.is_valid(p);
        let all_valid = column.validity().is_none();
        match (self, column.values()) {
            (State::Count(c), _) => {
                for p in each {
                    if all_valid || valid(p) {
                        c[slots[p] as usize] += 1;
                    }
                }
            }
            (State::SumF(v, seen), ColumnValues::Float(x)) => {
                for p in each {
                    if all_valid || valid(p) {
                        let s = slots[p] as usize;
                        v[s] += x[p];
                        seen[s] = true;
                    }
                }
            }
            (State::SumI(v, seen), ColumnValues::Integer(x)) => {
                for p in each {
                    if all_valid || valid(p) {
                        let s = slots[p] as usize;
                        v[s] = v[s].wrapping_add(x[p]);
                        seen[s] = true;
                    }
                }
            }
            (State::SumU(v, seen), ColumnValues::Unsigned(x)) => {
                for p in each {
                    if all_valid || valid(p) {
                        let s = slots[p] as usize;
                        v[s] = v[s].wrapping_add(x[p]);
                        seen[s] = true;
                    }
                }
            }
            (State::ExtremeF(v, seen, max), ColumnValues::Float(x)) => {
                let want = if *max {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Less
                };
                for p in each {
                    if all_valid || valid(p) {
                        let s = slots[p] as usize;
                        if !seen[s] || x[p].total_cmp(&v[s]) == want {
                            v[s] = x[p];
                            seen[s] = true;
                        }
                    }
                }
            }
            (State::ExtremeI(v, seen, max), ColumnValues::Integer(x)) => {
                extreme(v, seen, *max, x, each, slots, all_valid, valid)
            }
            (State::ExtremeU(v, seen, max), ColumnValues::Unsigned(x)) => {
                extreme(v, seen, *max, x, each, slots, all_valid, valid)
            }
            (State::Avg(c, v), values) => {
                let as_f64 = |p: usize| match values {
                    ColumnValues::Float(x) => Some(x[p]),
                    ColumnValues::Integer(x) => Some(x[p] as f64),
                    ColumnValues::Unsigned(x) => Some(x[p] as f64),
                    _ => None,
                };
                for p in each {
                    if all_valid || valid(p) {
                        if let Some(x) = as_f64(p) {
                            let s = slots[p] as usize;
                            c[s] += 1;
                            v[s] += x;
                        }
                    }
                }
            }
            // The column's type was checked against the catalog's when the cursor resolved it.
            _ => {}
        }
    }

    /// The state columns of the first `slots` groups, keeping those `keep` marks.
    fn finish(&self, keep: &[bool]) -> Vec<ArrayRef> {
        fn prim<T: ArrowPrimitiveType>(
            v: &[T::Native],
            seen: Option<&[bool]>,
            keep: &[bool],
        ) -> ArrayRef {
            let values: Vec<T::Native> = v
                .iter()
                .zip(keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| *x)
                .collect();
            let nulls = seen.map(|s| {
                NullBuffer::from(
                    s.iter()
                        .zip(keep)
                        .filter(|(_, k)| **k)
                        .map(|(x, _)| *x)
                        .collect::<Vec<bool>>(),
                )
            });
            Arc::new(PrimitiveArray::<T>::new(values.into(), nulls))
        }
        use arrow::datatypes::{Float64Type as F, Int64Type as I, UInt64Type as U};
        match self {
            State::Count(c) => vec![prim::<I>(c, None, keep)],
            State::SumF(v, s) | State::ExtremeF(v, s, _) => vec![prim::<F>(v, Some(s), keep)],
            State::SumI(v, s) | State::ExtremeI(v, s, _) => vec![prim::<I>(v, Some(s), keep)],
            State::SumU(v, s) | State::ExtremeU(v, s, _) => vec![prim::<U>(v, Some(s), keep)],
            State::Avg(c, v) => {
                let seen: Vec<bool> = c.iter().map(|&n| n > 0).collect();
                vec![prim::<U>(c, None, keep), prim::<F>(v, Some(&seen), keep)]
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn extreme<T: Copy + Ord>(
    v: &mut [T],
    seen: &mut [bool],
    max: bool,
    x: &[T],
    each: std::ops::Range<usize>,
    slots: &[u32],
    all_valid: bool,
    valid: impl Fn(usize) -> bool,
) {
    for p in each {
        if all_valid || valid(p) {
            let s = slots[p] as usize;
            if !seen[s] || (max && x[p] > v[s]) || (!max && x[p] < v[s]) {
                v[s] = x[p];
                seen[s] = true;
            }
        }
    }
}

/// A multiply-xorshift hasher for group keys (small integers, no adversary: the keys are our
/// own group numbers and bucket values).
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let x = (self.0 ^ (self.0 >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
}

type KeyMap<K> = HashMap<K, u32, BuildHasherDefault<KeyHasher>>;

/// The groups held: their tag values, buckets, and where their states are.
#[derive(Default)]
struct Groups {
    /// Distinct tag-value tuples (of the group tags) seen, by number.
    tag_sets: HashMap<Vec<Option<String>>, u32>,
    tag_values: Vec<Vec<Option<String>>>,
    /// (tag set, bucket) -> slot.
    slots: KeyMap<(u32, Option<i64>)>,
    /// Per slot: its tag set and bucket.
    keys: Vec<(u32, Option<i64>)>,
}

/// A series of the group in progress.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Index in the table's series.
    series: usize,
    /// Its points before this time are done.
    from: i64,
    tag_set: u32,
    /// Top buckets only: the times below `TopBuckets::null_below` are done.
    low_done: bool,
}

/// Where an aggregate over a memtable stands between calls (see the module docs).
pub struct AggregateCursor {
    schema: TableSchema,
    request: AggregateRequest,
    output: SchemaRef,
    /// The next series (index in the table) not yet in a group.
    next_series: usize,
    /// The group of series being aggregated, chunk by chunk, each from its next time.
    pending: Vec<Pending>,
    groups: Groups,
    states: Vec<State>,
    /// Distinct buckets seen, the latest `n` kept (`top_buckets` only), ascending.
    top: Vec<i64>,
    done: bool,
    /// Reused per chunk.
    buckets: Vec<Option<i64>>,
    chunk_slots: Vec<u32>,
}

impl std::fmt::Debug for AggregateCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateCursor")
            .field("request", &self.request)
            .field("next_series", &self.next_series)
            .field("groups", &self.groups.keys.len())
            .field("done", &self.done)
            .finish()
    }
}

impl AggregateCursor {
    /// Checks the request against the schema (the memtable is checked on every call).
    pub fn new(
        schema: &TableSchema,
        mut request: AggregateRequest,
    ) -> Result<Self, AggregateError> {
        // Allowed tag values sorted once, for `passes`' binary search.
        for (_, values) in &mut request.scan.tag_filters {
            values.sort_unstable();
        }
        let output = output_schema(schema, &request)?;
        if request.groups_max == 0 {
            return Err(AggregateError::Request {
                table: request.scan.table_name(),
                reason: "groups_max must be at least 1".to_string(),
            });
        }
        if request
            .top_buckets
            .is_some_and(|t| t.n == 0 || !request.bucketed)
        {
            return Err(AggregateError::Request {
                table: request.scan.table_name(),
                reason: "top buckets need a bucket and n of at least 1".to_string(),
            });
        }
        let states = request
            .aggregates
            .iter()
            .map(|a| State::new(a.function, a.field.map(|f| schema.fields[f].1)))
            .collect();
        let (min, max) = request.scan.time_range;
        Ok(AggregateCursor {
            schema: schema.clone(),
            output,
            next_series: 0,
            pending: Vec::new(),
            groups: Groups::default(),
            states,
            top: Vec::new(),
            done: min >= max,
            request,
            buckets: Vec::new(),
            chunk_slots: Vec::new(),
        })
    }

    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    /// The request it runs.
    pub fn request(&self) -> &AggregateRequest {
        &self.request
    }

    /// The fields the aggregates read.
    pub fn read_fields(&self) -> Option<Vec<String>> {
        let mut names: Vec<String> = Vec::new();
        for a in &self.request.aggregates {
            if let Some((name, _)) = a.field.and_then(|f| self.schema.fields.get(f)) {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        Some(names)
    }

    /// True once every point has been aggregated and every group emitted.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Aggregates about `budget` more points of `memtable` (whole chunks), bucketing times with
    /// `bucket` (unused without a bucket). Returns a batch when `groups_max` groups filled up or
    /// the table is done (then `is_done`), else None: call again.
    pub fn advance(
        &mut self,
        memtable: &Memtable,
        budget: usize,
        bucket: &mut BucketFn<'_>,
    ) -> Result<Option<RecordBatch>, AggregateError> {
        let r = &self.request.scan;
        let scan = memtable.scan(&r.tenant, &r.database, &r.table);
        self.advance_on(scan, budget, bucket)
    }

    /// Like `advance`, over a table already found (None: nothing of it is held), e.g. several
    /// layers of it merged. Every call of one cursor must see the same table (the same layers).
    pub fn advance_on(
        &mut self,
        scan: Option<crate::memtable::TableScan<'_>>,
        budget: usize,
        bucket: &mut BucketFn<'_>,
    ) -> Result<Option<RecordBatch>, AggregateError> {
        if self.done {
            return Ok(None);
        }
        let table = self.request.scan.table_name();
        let Some(scan) = scan else {
            return self.finish_all();
        };
        // Memtable column of each aggregate's field, checked against the catalog's type.
        let columns = scan.columns();
        let mut sources: Vec<Option<Option<usize>>> = Vec::new();
        for a in &self.request.aggregates {
            let Some(f) = a.field else {
                sources.push(None);
                continue;
            };
            let (name, value_type) = &self.schema.fields[f];
            let held = columns.iter().position(|c| c.name == *name);
            if let Some(i) = held {
                if columns[i].value_type != *value_type {
                    return Err(ScanError::TypeConflict {
                        table,
                        column: name.clone(),
                        catalog: *value_type,
                        memtable: columns[i].value_type,
                    }
                    .into());
                }
            }
            sources.push(Some(held));
        }
        let (min, max) = self.request.scan.time_range;
        let mut spent = 0;
        loop {
            if self.pending.is_empty() && !self.take_group(&scan) {
                return self.finish_all();
            }
            // One round: the next chunk of every series of the group, in series order. Series
            // written together have neighbouring rows, so the group's chunks of one time
            // window gather from the same pages and cache lines.
            let mut i = 0;
            while i < self.pending.len() {
                let Pending {
                    series,
                    from,
                    tag_set,
                    ..
                } = self.pending[i];
                let Some(s) = scan.series_refs_from(series).next() else {
                    self.pending.remove(i);
                    continue;
                };
                let mut from = from.max(min);
                if let Some(t) = self.request.top_buckets {
                    if !self.pending[i].low_done {
                        // The times that may have no bucket, read once and never skipped.
                        self.pending[i].low_done = true;
                        let hi = t.null_below.min(max);
                        while from < hi {
                            let chunk = s.scan_range(from, hi, CHUNK_POINTS);
                            if chunk.is_empty() {
                                break;
                            }
                            self.aggregate_chunk(&chunk, tag_set, &sources, bucket, &table)?;
                            spent += chunk.len();
                            match chunk.time().last().and_then(|t| t.checked_add(1)) {
                                Some(next) if chunk.is_truncated() => from = next,
                                _ => break,
                            }
                        }
                        from = from.max(hi);
                    }
                    if let Some(&lowest) = self.top.first() {
                        if self.top.len() >= t.n {
                            from = from.max(lowest);
                        }
                    }
                }
                let chunk = s.scan_range(from, max, CHUNK_POINTS);
                let points = chunk.len();
                if points > 0 {
                    self.aggregate_chunk(&chunk, tag_set, &sources, bucket, &table)?;
                    spent += points;
                }
                match chunk.time().last().and_then(|t| t.checked_add(1)) {
                    Some(next) if chunk.is_truncated() => {
                        self.pending[i].from = next;
                        i += 1;
                    }
                    _ => {
                        self.pending.remove(i);
                    }
                }
            }
            if self.groups.keys.len() >= self.request.groups_max {
                return self.emit(false).map(Some);
            }
            if spent >= budget {
                return Ok(None);
            }
        }
    }

    /// Starts the next group of series that pass the tag filters; false when none is left.
    fn take_group(&mut self, scan: &crate::memtable::TableScan<'_>) -> bool {
        for s in scan.series_refs_from(self.next_series) {
            let series = self.next_series;
            self.next_series += 1;
            let key = s.key();
            if !crate::scan::passes(key, &self.request.scan.tag_filters) {
                continue;
            }
            let values: Vec<Option<String>> = self
                .request
                .group_tags
                .iter()
                .map(|&t| key.tag(&self.schema.tags[t]).map(str::to_string))
                .collect();
            let next = self.groups.tag_values.len() as u32;
            let tag_set = match self.groups.tag_sets.get(&values) {
                Some(&n) => n,
                None => {
                    self.groups.tag_sets.insert(values.clone(), next);
                    self.groups.tag_values.push(values);
                    next
                }
            };
            self.pending.push(Pending {
                series,
                from: i64::MIN,
                tag_set,
                low_done: false,
            });
            // With top buckets one series at a time: the first one read whole raises the
            // threshold the others start from.
            let group = if self.request.top_buckets.is_some() {
                1
            } else {
                GROUP_SERIES
            };
            if self.pending.len() >= group {
                break;
            }
        }
        !self.pending.is_empty()
    }

    /// Adds one chunk of one series to the groups.
    fn aggregate_chunk(
        &mut self,
        chunk: &crate::memtable::SeriesScan<'_>,
        tag_set: u32,
        sources: &[Option<Option<usize>>],
        bucket: &mut BucketFn<'_>,
        table: &str,
    ) -> Result<(), AggregateError> {
        let points = chunk.len();
        self.buckets.clear();
        if self.request.bucketed {
            bucket(chunk.time(), &mut self.buckets).map_err(|reason| AggregateError::Bucket {
                table: table.to_string(),
                reason,
            })?;
            if self.buckets.len() != points {
                return Err(AggregateError::Bucket {
                    table: table.to_string(),
                    reason: format!("{} buckets for {points} times", self.buckets.len()),
                });
            }
            if let Some(n) = self.request.top_buckets {
                note_top(&mut self.top, &self.buckets, n.n);
            }
        }
        // The slot of every point: a lookup only where the bucket changes.
        self.chunk_slots.clear();
        let mut last: Option<(Option<i64>, u32)> = None;
        for p in 0..points {
            let b = if self.request.bucketed {
                self.buckets[p]
            } else {
                None
            };
            let slot = match last {
                Some((lb, slot)) if lb == b => slot,
                _ => {
                    let next = self.groups.keys.len() as u32;
                    let slot = *self.groups.slots.entry((tag_set, b)).or_insert(next);
                    if slot == next {
                        self.groups.keys.push((tag_set, b));
                    }
                    slot
                }
            };
            last = Some((b, slot));
            self.chunk_slots.push(slot);
        }
        let slots = self.groups.keys.len();
        for state in &mut self.states {
            state.grow(slots);
        }
        for (state, source) in self.states.iter_mut().zip(sources) {
            let column = match source {
                None => None,
                Some(Some(i)) => Some(chunk.column(*i)),
                // The memtable never saw the field: every value is null.
                Some(None) => continue,
            };
            state.update(column, &self.chunk_slots);
        }
        Ok(())
    }

    fn finish_all(&mut self) -> Result<Option<RecordBatch>, AggregateError> {
        self.done = true;
        if self.groups.keys.is_empty() {
            return Ok(None);
        }
        self.emit(true).map(Some)
    }

    /// The groups held as one batch (at the end, only those at or above the top threshold);
    /// the table starts afresh.
    fn emit(&mut self, at_end: bool) -> Result<RecordBatch, AggregateError> {
        let threshold = match self.request.top_buckets {
            Some(t) if at_end && self.top.len() >= t.n => self.top.first().copied(),
            _ => None,
        };
        let keep: Vec<bool> = self
            .groups
            .keys
            .iter()
            .map(|(_, b)| match (threshold, b) {
                (Some(t), Some(b)) => *b >= t,
                _ => true,
            })
            .collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for t in 0..self.request.group_tags.len() {
            let values: StringArray = self
                .groups
                .keys
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|((set, _), _)| self.groups.tag_values[*set as usize][t].as_deref())
                .collect();
            columns.push(Arc::new(values));
        }
        if self.request.bucketed {
            let values: Int64Array = self
                .groups
                .keys
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|((_, b), _)| *b)
                .collect();
            columns.push(Arc::new(values));
        }
        for state in &mut self.states {
            columns.extend(state.finish(&keep));
            state.clear();
        }
        let rows = keep.iter().filter(|k| **k).count();
        self.groups.slots.clear();
        self.groups.keys.clear();
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema(), columns, &options).map_err(|source| {
            ScanError::Arrow {
                table: self.request.scan.table_name(),
                rows,
                source,
            }
            .into()
        })
    }
}

/// Adds the distinct buckets of a chunk to `top`, the `n` latest distinct buckets, ascending.
fn note_top(top: &mut Vec<i64>, buckets: &[Option<i64>], n: usize) {
    let mut last = None;
    for b in buckets.iter().flatten() {
        if last == Some(*b) {
            continue;
        }
        last = Some(*b);
        if top.len() >= n && *b <= top[0] {
            continue;
        }
        if let Err(at) = top.binary_search(b) {
            top.insert(at, *b);
            if top.len() > n {
                top.remove(0);
            }
        }
    }
}

#[cfg(test)]
mod tests;
