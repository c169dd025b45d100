//! Reading a memtable table as Arrow record batches, for the SQL engine, with the pushdowns
//! DataFusion hands a table scan: projection, time range, tag equality and IN filters, limit.
//!
//! The caller (the shard's query task) passes the table's schema as the catalog knows it
//! (`TableSchema`) and a `ScanRequest`, and pulls batches from `MemtableScan`, an iterator that
//! borrows the memtable and builds one batch per `next()`, or from `ScanCursor`, which holds no
//! borrow between batches (it re-borrows the memtable for each one and resumes at a saved
//! `ScanPosition`) so an async task can yield between batches while writes go on. A large
//! table is never materialized whole.
//!
//! # Output
//!
//! Columns in `SELECT *` order (CnosDB's): `time` (`Timestamp(unit, None)`, not null), then the
//! tags (`Utf8`, nullable), then the fields (`Float64`, `Int64`, `UInt64`, `Utf8`, `Boolean`,
//! nullable); a projection picks and orders columns by index into that order, and may be empty
//! (`count(*)`): its batches have no columns and carry only a row count.
//!
//! Rows come series by series in the memtable's stable order (first arrival), each series'
//! rows in strictly increasing time with equal times already merged by the memtable's scan.
//! Batches pack rows across series boundaries and split a long series, so every batch but the
//! last holds exactly `batch_rows` rows (or what is left of the limit).
//!
//! # Invariants
//!
//! - The catalog's schema is authoritative. A column the memtable has never seen reads as all
//!   null; a memtable column the schema does not name is not read; a projected field whose
//!   memtable type differs from the catalog's is refused (`TypeConflict`) before any batch is
//!   built.
//! - A series lacking a tag reads null in that column, and fails every filter on that tag (SQL:
//!   `NULL = 'x'` and `NULL IN (...)` are not true). An empty list of allowed values matches
//!   nothing. Filters are ANDed.
//! - Only the projected columns are gathered from the memtable (the time column is always read:
//!   the time range needs it). A series that fails a tag filter is skipped before any of its
//!   field columns is gathered; its time range is found by binary search on its sorted times.
//! - After an error the iterator is finished: it returns no more items.
//! - `MemtableScan` is not `Send` (it borrows the shard's memtable and runs on its core); the
//!   batches it yields own their buffers and are.
//!
//! # Costs
//!
//! A series is looked at through its key first (`SeriesRef`): one skipped by a tag filter costs
//! a key compare and nothing else. For the rest only the points inside the time range are
//! gathered, found by binary search in a strictly increasing series, and at most a batch of
//! them at a time, so a long series is gathered chunk by chunk and a narrow time range over a
//! long series costs what it keeps. A series whose writes arrived out of order is sorted and
//! merged over its points in the range (whole, not chunked).
//!
//! Measured (release, TSBS cpu-only shape: 1000 series x 1000 points, 10 tags, 10 i64 fields;
//! `bench_tsbs_scan_rate`): every column about 4.5 M rows/s, time and 2 fields about 30 M
//! rows/s, no columns (`count(*)`) about 400 M rows/s. Most of the time goes to the memtable's
//! gather of field values through row indexes, not to building the Arrow arrays.

#[cfg(test)]
pub(crate) mod tests;

use std::ops::Range;
use std::sync::Arc;

use arrow::array::builder::{BooleanBufferBuilder, NullBufferBuilder};
use arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, PrimitiveArray, RecordBatch, RecordBatchOptions,
    StringArray,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt64Type,
};
use arrow::error::ArrowError;

use crate::batch::{SeriesKey, ValueType};
use crate::memtable::{
    ColumnRef, ColumnValues, Memtable, SeriesRef, SeriesScan, StringValues, TableScan,
};

/// Rows per batch when the caller has no opinion (DataFusion's default batch size).
pub const BATCH_ROWS_DEFAULT: usize = 8192;

/// The most rows one batch may be asked to hold: a bound on the memory one `next()` allocates.
pub const BATCH_ROWS_MAX: usize = 1 << 20;

/// Name of the time column.
pub const TIME_COLUMN: &str = "time";

/// A table's columns as the catalog records them.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// The unit of the table's (database's) timestamps.
    pub time_unit: TimeUnit,
    pub tags: Vec<String>,
    pub fields: Vec<(String, ValueType)>,
}

impl TableSchema {
    /// Columns: `time`, then tags, then fields (see the module docs).
    pub fn arrow_schema(&self) -> SchemaRef {
        let time = Field::new(
            TIME_COLUMN,
            DataType::Timestamp(self.time_unit, None),
            false,
        );
        let tags = self
            .tags
            .iter()
            .map(|t| Field::new(t, DataType::Utf8, true));
        let fields = self
            .fields
            .iter()
            .map(|(name, t)| Field::new(name, arrow_type(*t), true));
        let all: Vec<Field> = std::iter::once(time).chain(tags).chain(fields).collect();
        Arc::new(Schema::new(all))
    }

    /// Columns of `arrow_schema()`.
    pub fn column_count(&self) -> usize {
        1 + self.tags.len() + self.fields.len()
    }
}

/// The Arrow type of a field column.
pub fn arrow_type(t: ValueType) -> DataType {
    match t {
        ValueType::Float => DataType::Float64,
        ValueType::Integer => DataType::Int64,
        ValueType::Unsigned => DataType::UInt64,
        ValueType::String => DataType::Utf8,
        ValueType::Boolean => DataType::Boolean,
    }
}

/// What to read from one table, with the pushdowns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    pub tenant: String,
    pub database: String,
    pub table: String,
    /// Indexes into `TableSchema::arrow_schema()`, in output order; None = every column.
    pub projection: Option<Vec<usize>>,
    /// Inclusive min, exclusive max, in the table's time unit; `(i64::MIN, i64::MAX)` = all.
    pub time_range: (i64, i64),
    /// (tag, allowed values): a row passes if its series' tag equals one of the values.
    pub tag_filters: Vec<(String, Vec<String>)>,
    /// At most this many rows in all.
    pub limit: Option<usize>,
    /// Only each series' latest point in the time range (a series' "last point"): what the
    /// query layer asks for when the plan above keeps only the latest row per group of tags.
    pub last_per_series: bool,
    /// Target rows per batch, 1 to `BATCH_ROWS_MAX`.
    pub batch_rows: usize,
}

impl ScanRequest {
    /// Every row and column of a table, in batches of `BATCH_ROWS_DEFAULT` rows.
    pub fn new(tenant: &str, database: &str, table: &str) -> ScanRequest {
        ScanRequest {
            tenant: tenant.to_string(),
            database: database.to_string(),
            table: table.to_string(),
            projection: None,
            time_range: (i64::MIN, i64::MAX),
            tag_filters: Vec::new(),
            limit: None,
            last_per_series: false,
            batch_rows: BATCH_ROWS_DEFAULT,
        }
    }

    pub(crate) fn table_name(&self) -> String {
        format!("{}.{}.{}", self.tenant, self.database, self.table)
    }
}

/// Why a scan failed; `table` is `tenant.database.table`.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("scan of {table}: projection index {index} is out of range, the table has {columns} columns")]
    Projection {
        table: String,
        index: usize,
        columns: usize,
    },
    #[error("scan of {table}: batch_rows is {batch_rows}, it must be 1 to {BATCH_ROWS_MAX}")]
    BatchRows { table: String, batch_rows: usize },
    #[error("scan of {table}: field {column:?} is {catalog} in the catalog but {memtable} in the memtable")]
    TypeConflict {
        table: String,
        column: String,
        catalog: ValueType,
        memtable: ValueType,
    },
    #[error("scan of {table}: column {column:?}: {source}")]
    Column {
        table: String,
        column: String,
        source: ColumnError,
    },
    #[error("scan of {table}: building a record batch of {rows} rows: {source}")]
    Arrow {
        table: String,
        rows: usize,
        source: ArrowError,
    },
}

/// Why one column of a batch could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ColumnError {
    #[error("a series column holds {found}, the scan expected {expected}")]
    TypeChanged {
        expected: ValueType,
        found: ValueType,
    },
    #[error("validity bitmap of {words} words does not cover {rows} stored values")]
    ShortBitmap { words: usize, rows: usize },
    #[error("{bytes} string bytes in one batch, past Utf8's limit of {}", i32::MAX)]
    StringOverflow { bytes: usize },
    #[error("{0}")]
    Arrow(ArrowError),
}

/// Scans a whole table into batches (see `MemtableScan` for the lazy form).
pub fn scan_memtable(
    memtable: &Memtable,
    schema: &TableSchema,
    req: &ScanRequest,
) -> Result<Vec<RecordBatch>, ScanError> {
    MemtableScan::new(memtable, schema, req)?.collect()
}

/// Where an output column's values come from.
#[derive(Debug, Clone)]
enum Source {
    Time,
    Tag(String),
    /// `memtable`: the memtable's column index, None if the memtable has no such column.
    Field {
        name: String,
        value_type: ValueType,
        memtable: Option<usize>,
    },
}

/// The series being emitted (`index` in the table's series order): the chunk of its points
/// gathered so far (at most a batch of them) and the rows of that chunk not yet emitted.
struct Current<'a> {
    index: usize,
    series_ref: SeriesRef<'a>,
    series: SeriesScan<'a>,
    rows: Range<usize>,
}

impl Current<'_> {
    /// Where the next chunk starts, if the series has points in range after this chunk.
    fn next_chunk_from(&self) -> Option<i64> {
        if !self.series.is_truncated() {
            return None;
        }
        self.series.time().last()?.checked_add(1)
    }
}

/// Where a scan stands between two batches, in terms that survive writes: the index of the next
/// series to read (series are only ever appended) and, within it, the first time not yet
/// emitted (rows are keyed by time, so a row inserted meanwhile lands before or after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanPosition {
    pub series: usize,
    pub time_from: i64,
}

impl ScanPosition {
    pub const START: ScanPosition = ScanPosition {
        series: 0,
        time_from: i64::MIN,
    };
}

/// A lazy scan of one memtable table: each `next()` builds one batch (see the module docs).
pub struct MemtableScan<'a> {
    /// `tenant.database.table`, for errors.
    table: String,
    /// The output schema (projected).
    schema: SchemaRef,
    sources: Vec<Source>,
    /// None: the memtable holds nothing of the table.
    series: Option<Box<dyn Iterator<Item = SeriesRef<'a>> + 'a>>,
    /// The index of the series `series` yields next.
    next_index: usize,
    /// Where the scan started: the first series' rows before `time_from` are skipped.
    start: ScanPosition,
    /// Allowed values sorted, for binary search.
    tag_filters: Vec<(String, Vec<String>)>,
    time_range: (i64, i64),
    last_per_series: bool,
    batch_rows: usize,
    rows_left: usize,
    current: Option<Current<'a>>,
    done: bool,
}

impl<'a> MemtableScan<'a> {
    /// Checks the request against the schema and the memtable; builds nothing yet.
    pub fn new(
        memtable: &'a Memtable,
        schema: &TableSchema,
        req: &ScanRequest,
    ) -> Result<MemtableScan<'a>, ScanError> {
        MemtableScan::resume(memtable, schema, req, ScanPosition::START)
    }

    /// Like `new`, starting at `start` (a `position()` of an earlier scan of the same request).
    pub fn resume(
        memtable: &'a Memtable,
        schema: &TableSchema,
        req: &ScanRequest,
        start: ScanPosition,
    ) -> Result<MemtableScan<'a>, ScanError> {
        let scan = memtable.scan(&req.tenant, &req.database, &req.table);
        MemtableScan::resume_on(scan, schema, req, start)
    }

    /// Like `resume`, over a table already found (None: nothing of it is held), e.g. several
    /// layers of it merged (`memtable::Layered`).
    pub fn resume_on(
        scan: Option<TableScan<'a>>,
        schema: &TableSchema,
        req: &ScanRequest,
        start: ScanPosition,
    ) -> Result<MemtableScan<'a>, ScanError> {
        let table = req.table_name();
        if req.batch_rows == 0 || req.batch_rows > BATCH_ROWS_MAX {
            return Err(ScanError::BatchRows {
                table,
                batch_rows: req.batch_rows,
            });
        }
        let (indexes, output) = project(schema, req.projection.as_deref(), &table)?;
        let memtable_columns = scan.map(|s| s.columns()).unwrap_or_default();
        let sources = indexes
            .iter()
            .map(|&i| source_of(schema, i, memtable_columns, &table))
            .collect::<Result<Vec<_>, _>>()?;
        let tag_filters = req
            .tag_filters
            .iter()
            .map(|(tag, values)| {
                let mut values = values.clone();
                values.sort_unstable();
                (tag.clone(), values)
            })
            .collect();
        let (min, max) = req.time_range;
        Ok(MemtableScan {
            table,
            schema: output,
            sources,
            series: scan.map(|s| {
                Box::new(s.series_refs_from(start.series)) as Box<dyn Iterator<Item = _> + 'a>
            }),
            next_index: start.series,
            start,
            tag_filters,
            time_range: req.time_range,
            last_per_series: req.last_per_series,
            batch_rows: req.batch_rows,
            rows_left: req.limit.unwrap_or(usize::MAX),
            current: None,
            done: min >= max,
        })
    }

    /// The schema of every batch this scan yields.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Where the next batch would start.
    pub fn position(&self) -> ScanPosition {
        match &self.current {
            Some(c) if !c.rows.is_empty() => ScanPosition {
                series: c.index,
                time_from: c.series.time()[c.rows.start],
            },
            Some(c) => match c.next_chunk_from() {
                Some(time_from) => ScanPosition {
                    series: c.index,
                    time_from,
                },
                None => ScanPosition {
                    series: self.next_index,
                    time_from: i64::MIN,
                },
            },
            None => ScanPosition {
                series: self.next_index,
                time_from: i64::MIN,
            },
        }
    }

    /// The next series that passes the tag filters and has rows in the time range.
    fn next_series(&mut self) -> Option<Current<'a>> {
        let series = self.series.as_mut()?;
        for s in series {
            let index = self.next_index;
            self.next_index += 1;
            if !passes(s.key(), &self.tag_filters) {
                continue;
            }
            let mut range = self.time_range;
            if index == self.start.series {
                range.0 = range.0.max(self.start.time_from);
            }
            // Only the points in range are gathered (binary search on the series' times), and
            // at most a batch of them at a time: a long series is gathered chunk by chunk.
            let series = if self.last_per_series {
                s.scan_last(range.0, range.1)
            } else {
                s.scan_range(range.0, range.1, self.batch_rows)
            };
            if !series.is_empty() {
                let rows = 0..series.len();
                return Some(Current {
                    index,
                    series_ref: s,
                    series,
                    rows,
                });
            }
        }
        None
    }

    /// Makes `current` hold rows to emit (the next chunk of its series, or the next series);
    /// false when the scan has nothing left.
    fn refill(&mut self) -> bool {
        if let Some(c) = &mut self.current {
            if !c.rows.is_empty() {
                return true;
            }
            if let Some(from) = c.next_chunk_from() {
                let chunk = c
                    .series_ref
                    .scan_range(from, self.time_range.1, self.batch_rows);
                if !chunk.is_empty() {
                    c.rows = 0..chunk.len();
                    c.series = chunk;
                    return true;
                }
            }
        }
        self.current = self.next_series();
        self.current.is_some()
    }

    /// Builds the next batch, or None when nothing is left.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ScanError> {
        let target = self.batch_rows.min(self.rows_left);
        let mut builders: Vec<Builder> = self
            .sources
            .iter()
            .map(|s| Builder::new(s, target))
            .collect();
        let mut rows = 0;
        while rows < target {
            if !self.refill() {
                break;
            }
            let Some(current) = self.current.as_mut() else {
                break;
            };
            let take = (target - rows).min(current.rows.len());
            let range = current.rows.start..current.rows.start + take;
            for (builder, source) in builders.iter_mut().zip(&self.sources) {
                builder
                    .push(&current.series, range.clone())
                    .map_err(|e| column_error(&self.table, source, e))?;
            }
            current.rows.start += take;
            rows += take;
        }
        if rows == 0 {
            return Ok(None);
        }
        self.rows_left -= rows;
        self.finish_batch(builders, rows).map(Some)
    }

    fn finish_batch(&self, builders: Vec<Builder>, rows: usize) -> Result<RecordBatch, ScanError> {
        let mut columns = Vec::with_capacity(builders.len());
        for ((builder, source), field) in builders
            .into_iter()
            .zip(&self.sources)
            .zip(self.schema.fields())
        {
            let array = builder
                .finish(field.data_type())
                .map_err(|e| column_error(&self.table, source, e))?;
            debug_assert_eq!(array.len(), rows, "every column has every row");
            columns.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema(), columns, &options).map_err(|source| {
            ScanError::Arrow {
                table: self.table.clone(),
                rows,
                source,
            }
        })
    }
}

impl Iterator for MemtableScan<'_> {
    type Item = Result<RecordBatch, ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rows_left == 0 {
            return None;
        }
        let result = self.next_batch();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result.transpose()
    }
}

/// A scan that holds no borrow of the memtable between batches, for a caller that must yield
/// (an async task: the shard's writes borrow the memtable mutably in between).
///
/// Each `next_batch` borrows the memtable afresh, resumes at the saved `ScanPosition` and builds
/// one batch. Consistency: every row present for the whole scan is read exactly once; a row
/// written while the scan is paused may or may not appear (it does when it lands after the
/// position; rows deleted meanwhile are not read). Series are never removed from a table, only
/// their entries, so a position stays valid; a table dropped mid-scan ends the scan. The
/// table must be the same one for the whole scan (the position indexes its series): the engine's
/// reads (`Engine::open_read`) pin their layers, so a flush during a scan does not change them.
///
/// Cost: resuming finds the current series' next point by binary search and gathers one batch
/// of points from there (an out-of-order series is sorted again over what is left of it).
#[derive(Debug)]
pub struct ScanCursor {
    schema: TableSchema,
    request: ScanRequest,
    output: SchemaRef,
    position: ScanPosition,
    done: bool,
}

impl ScanCursor {
    /// Checks the request against the schema (the memtable is checked per batch).
    pub fn new(schema: &TableSchema, request: &ScanRequest) -> Result<ScanCursor, ScanError> {
        let table = request.table_name();
        if request.batch_rows == 0 || request.batch_rows > BATCH_ROWS_MAX {
            return Err(ScanError::BatchRows {
                table,
                batch_rows: request.batch_rows,
            });
        }
        let (_, output) = project(schema, request.projection.as_deref(), &table)?;
        Ok(ScanCursor {
            schema: schema.clone(),
            request: request.clone(),
            output,
            position: ScanPosition::START,
            done: request.limit == Some(0),
        })
    }

    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    /// The fields the scan reads (None: every field).
    pub fn read_fields(&self) -> Option<Vec<String>> {
        let first_field = 1 + self.schema.tags.len();
        let projection = self.request.projection.as_ref()?;
        Some(
            projection
                .iter()
                .filter_map(|&i| i.checked_sub(first_field))
                .filter_map(|f| self.schema.fields.get(f).map(|(name, _)| name.clone()))
                .collect(),
        )
    }

    /// Builds the next batch from `memtable`, or None when the scan is over (and stays over).
    pub fn next_batch(&mut self, memtable: &Memtable) -> Result<Option<RecordBatch>, ScanError> {
        let r = &self.request;
        let scan = memtable.scan(&r.tenant, &r.database, &r.table);
        self.next_batch_on(scan)
    }

    /// Like `next_batch`, over a table already found (see `MemtableScan::resume_on`). Every
    /// call of one cursor must see the same table (the same layers).
    pub fn next_batch_on(
        &mut self,
        scan: Option<TableScan<'_>>,
    ) -> Result<Option<RecordBatch>, ScanError> {
        if self.done {
            return Ok(None);
        }
        let batch = MemtableScan::resume_on(scan, &self.schema, &self.request, self.position)
            .and_then(|mut scan| {
                let batch = scan.next().transpose()?;
                self.position = scan.position();
                Ok(batch)
            });
        let batch = match batch {
            Ok(Some(b)) => b,
            other => {
                self.done = true;
                return other;
            }
        };
        if let Some(limit) = self.request.limit.as_mut() {
            *limit -= batch.num_rows();
            self.done = *limit == 0;
        }
        Ok(Some(batch))
    }
}

/// The indexes of the output columns into `schema.arrow_schema()`, checked, and the output
/// schema.
fn project(
    schema: &TableSchema,
    projection: Option<&[usize]>,
    table: &str,
) -> Result<(Vec<usize>, SchemaRef), ScanError> {
    let full = schema.arrow_schema();
    let columns = full.fields().len();
    let indexes: Vec<usize> = match projection {
        Some(p) => p.to_vec(),
        None => (0..columns).collect(),
    };
    if let Some(&index) = indexes.iter().find(|&&i| i >= columns) {
        return Err(ScanError::Projection {
            table: table.to_string(),
            index,
            columns,
        });
    }
    let output = full.project(&indexes).map_err(|source| ScanError::Arrow {
        table: table.to_string(),
        rows: 0,
        source,
    })?;
    Ok((indexes, Arc::new(output)))
}

/// The source of column `index` of `schema.arrow_schema()`.
fn source_of(
    schema: &TableSchema,
    index: usize,
    memtable_columns: &[crate::memtable::Column],
    table: &str,
) -> Result<Source, ScanError> {
    if index == 0 {
        return Ok(Source::Time);
    }
    if let Some(tag) = schema.tags.get(index - 1) {
        return Ok(Source::Tag(tag.clone()));
    }
    let (name, value_type) = &schema.fields[index - 1 - schema.tags.len()];
    let memtable = memtable_columns.iter().position(|c| c.name == *name);
    if let Some(held) = memtable.map(|i| memtable_columns[i].value_type) {
        if held != *value_type {
            return Err(ScanError::TypeConflict {
                table: table.to_string(),
                column: name.clone(),
                catalog: *value_type,
                memtable: held,
            });
        }
    }
    Ok(Source::Field {
        name: name.clone(),
        value_type: *value_type,
        memtable,
    })
}

fn column_error(table: &str, source: &Source, e: ColumnError) -> ScanError {
    let column = match source {
        Source::Time => TIME_COLUMN,
        Source::Tag(name) | Source::Field { name, .. } => name,
    };
    ScanError::Column {
        table: table.to_string(),
        column: column.to_string(),
        source: e,
    }
}

/// The value of `tag` in a key (tags are sorted by name).
fn tag_value<'k>(key: &'k SeriesKey, tag: &str) -> Option<&'k str> {
    key.tag(tag)
}

/// Whether a series passes every filter (allowed values sorted).
pub(crate) fn passes(key: &SeriesKey, filters: &[(String, Vec<String>)]) -> bool {
    filters.iter().all(|(tag, allowed)| {
        tag_value(key, tag).is_some_and(|v| allowed.binary_search_by(|a| a.as_str().cmp(v)).is_ok())
    })
}

/// One output column of the batch being built.
enum Builder {
    Time(Vec<i64>),
    Tag {
        tag: String,
        strings: Strings,
    },
    /// A column the memtable lacks: only a row count.
    Null(usize),
    /// A field the memtable holds, its column `column`.
    Field {
        column: usize,
        value_type: ValueType,
        values: Values,
    },
}

enum Values {
    Float(Primitives<Float64Type>),
    Integer(Primitives<Int64Type>),
    Unsigned(Primitives<UInt64Type>),
    Boolean(Booleans),
    String(Strings),
}

impl Builder {
    fn new(source: &Source, rows: usize) -> Builder {
        match source {
            Source::Time => Builder::Time(Vec::with_capacity(rows)),
            Source::Tag(tag) => Builder::Tag {
                tag: tag.clone(),
                strings: Strings::new(rows),
            },
            Source::Field { memtable: None, .. } => Builder::Null(0),
            Source::Field {
                memtable: Some(column),
                value_type,
                ..
            } => Builder::Field {
                column: *column,
                value_type: *value_type,
                values: match value_type {
                    ValueType::Float => Values::Float(Primitives::new(rows)),
                    ValueType::Integer => Values::Integer(Primitives::new(rows)),
                    ValueType::Unsigned => Values::Unsigned(Primitives::new(rows)),
                    ValueType::Boolean => Values::Boolean(Booleans::new(rows)),
                    ValueType::String => Values::String(Strings::new(rows)),
                },
            },
        }
    }

    /// Appends rows `range` of `series`.
    fn push(&mut self, series: &SeriesScan<'_>, range: Range<usize>) -> Result<(), ColumnError> {
        match self {
            Builder::Time(times) => times.extend_from_slice(&series.time()[range]),
            Builder::Tag { tag, strings } => {
                strings.push_repeated(tag_value(series.key(), tag), range.len())?;
            }
            Builder::Null(rows) => *rows += range.len(),
            Builder::Field {
                column,
                value_type,
                values,
            } => values.push(*value_type, series.column(*column), range)?,
        }
        Ok(())
    }

    fn finish(self, data_type: &DataType) -> Result<ArrayRef, ColumnError> {
        match self {
            Builder::Time(times) => time_array(times, data_type),
            Builder::Tag { strings, .. } => strings.finish(),
            Builder::Null(rows) => Ok(new_null_array(data_type, rows)),
            Builder::Field { values, .. } => match values {
                Values::Float(b) => b.finish(),
                Values::Integer(b) => b.finish(),
                Values::Unsigned(b) => b.finish(),
                Values::Boolean(b) => b.finish(),
                Values::String(b) => b.finish(),
            },
        }
    }
}

impl Values {
    fn push(
        &mut self,
        expected: ValueType,
        column: ColumnRef<'_>,
        range: Range<usize>,
    ) -> Result<(), ColumnError> {
        let validity = column.validity();
        match (self, column.values()) {
            (Values::Float(b), ColumnValues::Float(v)) => b.push(v, validity, range),
            (Values::Integer(b), ColumnValues::Integer(v)) => b.push(v, validity, range),
            (Values::Unsigned(b), ColumnValues::Unsigned(v)) => b.push(v, validity, range),
            (Values::Boolean(b), ColumnValues::Boolean(v)) => b.push(v, validity, range),
            (Values::String(b), ColumnValues::String(v)) => b.push_values(v, validity, range),
            (_, found) => Err(ColumnError::TypeChanged {
                expected,
                found: found.value_type(),
            }),
        }
    }
}

fn time_array(times: Vec<i64>, data_type: &DataType) -> Result<ArrayRef, ColumnError> {
    fn build<T: ArrowPrimitiveType<Native = i64>>(
        times: Vec<i64>,
    ) -> Result<ArrayRef, ColumnError> {
        let array = PrimitiveArray::<T>::try_new(ScalarBuffer::from(times), None)
            .map_err(ColumnError::Arrow)?;
        Ok(Arc::new(array))
    }
    match data_type {
        DataType::Timestamp(TimeUnit::Second, None) => build::<TimestampSecondType>(times),
        DataType::Timestamp(TimeUnit::Millisecond, None) => {
            build::<TimestampMillisecondType>(times)
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            build::<TimestampMicrosecondType>(times)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, None) => build::<TimestampNanosecondType>(times),
        other => Err(ColumnError::Arrow(ArrowError::SchemaError(format!(
            "the time column cannot be {other}"
        )))),
    }
}

/// Splits `range` of a series column with `stored` stored values into the stored part and the
/// count of null rows past it.
fn split_stored(stored: usize, range: Range<usize>) -> (Range<usize>, usize) {
    let end = range.end.min(stored);
    let start = range.start.min(end);
    (start..end, range.len() - (end - start))
}

/// Appends the validity of stored values `stored` (None: all valid).
fn push_validity(
    nulls: &mut NullBufferBuilder,
    validity: Option<&[u64]>,
    stored: Range<usize>,
) -> Result<(), ColumnError> {
    let Some(words) = validity else {
        nulls.append_n_non_nulls(stored.len());
        return Ok(());
    };
    if stored.is_empty() {
        return Ok(());
    }
    let (first, last) = (stored.start / 64, stored.end.div_ceil(64));
    let Some(words) = words.get(first..last) else {
        return Err(ColumnError::ShortBitmap {
            words: words.len(),
            rows: stored.end,
        });
    };
    // Little-endian bytes of LSB-first words are Arrow's LSB-first byte bitmap.
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let bits = BooleanBuffer::new(
        Buffer::from_vec(bytes),
        stored.start - first * 64,
        stored.len(),
    );
    nulls.append_buffer(&NullBuffer::new(bits));
    Ok(())
}

struct Primitives<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    nulls: NullBufferBuilder,
}

impl<T: ArrowPrimitiveType> Primitives<T> {
    fn new(rows: usize) -> Primitives<T> {
        Primitives {
            values: Vec::with_capacity(rows),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    fn push(
        &mut self,
        values: &[T::Native],
        validity: Option<&[u64]>,
        range: Range<usize>,
    ) -> Result<(), ColumnError> {
        let (stored, tail) = split_stored(values.len(), range);
        push_validity(&mut self.nulls, validity, stored.clone())?;
        self.values.extend_from_slice(&values[stored]);
        self.values
            .resize(self.values.len() + tail, T::Native::default());
        self.nulls.append_n_nulls(tail);
        Ok(())
    }

    fn finish(mut self) -> Result<ArrayRef, ColumnError> {
        let array =
            PrimitiveArray::<T>::try_new(ScalarBuffer::from(self.values), self.nulls.finish())
                .map_err(ColumnError::Arrow)?;
        Ok(Arc::new(array))
    }
}

struct Booleans {
    values: BooleanBufferBuilder,
    nulls: NullBufferBuilder,
}

impl Booleans {
    fn new(rows: usize) -> Booleans {
        Booleans {
            values: BooleanBufferBuilder::new(rows),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    fn push(
        &mut self,
        values: &[bool],
        validity: Option<&[u64]>,
        range: Range<usize>,
    ) -> Result<(), ColumnError> {
        let (stored, tail) = split_stored(values.len(), range);
        push_validity(&mut self.nulls, validity, stored.clone())?;
        self.values.append_slice(&values[stored]);
        self.values.append_n(tail, false);
        self.nulls.append_n_nulls(tail);
        Ok(())
    }

    fn finish(mut self) -> Result<ArrayRef, ColumnError> {
        // Equal lengths by construction: every push appends as many values as validity bits.
        debug_assert_eq!(self.values.len(), self.nulls.len());
        Ok(Arc::new(BooleanArray::new(
            self.values.finish(),
            self.nulls.finish(),
        )))
    }
}

/// A Utf8 column under construction: `offsets` starts with 0, as Arrow's does.
struct Strings {
    offsets: Vec<i32>,
    data: Vec<u8>,
    nulls: NullBufferBuilder,
}

impl Strings {
    fn new(rows: usize) -> Strings {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Strings {
            offsets,
            data: Vec::new(),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    /// The offset after `extra` more bytes, if Utf8's i32 offsets can hold it.
    fn end_after(&self, extra: usize) -> Result<i32, ColumnError> {
        let bytes = self.data.len().saturating_add(extra);
        i32::try_from(bytes).map_err(|_| ColumnError::StringOverflow { bytes })
    }

    /// Appends `value` (None: null) `rows` times: a tag column.
    fn push_repeated(&mut self, value: Option<&str>, rows: usize) -> Result<(), ColumnError> {
        let Some(value) = value else {
            let end = self.end_after(0)?;
            self.offsets.resize(self.offsets.len() + rows, end);
            self.nulls.append_n_nulls(rows);
            return Ok(());
        };
        let total = value.len().saturating_mul(rows);
        self.end_after(total)?;
        // Fits in i32: the final offset, data.len() + total, was checked above.
        let (base, len) = (self.data.len() as i32, value.len() as i32);
        self.offsets
            .extend((1..=rows as i32).map(|k| base + k * len));
        // Copy the value once, then double what is written: a few large copies instead of
        // one small copy per row.
        let start = self.data.len();
        self.data.reserve(total);
        if rows > 0 {
            self.data.extend_from_slice(value.as_bytes());
        }
        while self.data.len() - start < total {
            let written = self.data.len() - start;
            self.data
                .extend_from_within(start..start + written.min(total - written));
        }
        self.nulls.append_n_non_nulls(rows);
        Ok(())
    }

    /// Appends rows `range` of a string field column.
    fn push_values(
        &mut self,
        values: StringValues<'_>,
        validity: Option<&[u64]>,
        range: Range<usize>,
    ) -> Result<(), ColumnError> {
        let (stored, tail) = split_stored(values.len(), range);
        push_validity(&mut self.nulls, validity, stored.clone())?;
        if !stored.is_empty() {
            let ends = &values.ends()[stored.clone()];
            let from = match stored.start {
                0 => 0,
                i => values.ends()[i - 1] as usize,
            };
            let to = ends.last().map_or(from, |&e| e as usize);
            self.end_after(to - from)?;
            // Fits: every new offset is at most data.len() + (to - from), checked above.
            let base = self.data.len() as i64 - from as i64;
            self.data
                .extend_from_slice(&values.data().as_bytes()[from..to]);
            self.offsets
                .extend(ends.iter().map(|&e| (base + i64::from(e)) as i32));
        }
        let end = self.end_after(0)?;
        self.offsets.resize(self.offsets.len() + tail, end);
        self.nulls.append_n_nulls(tail);
        Ok(())
    }

    fn finish(mut self) -> Result<ArrayRef, ColumnError> {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        let array = StringArray::try_new(offsets, Buffer::from_vec(self.data), self.nulls.finish())
            .map_err(ColumnError::Arrow)?;
        Ok(Arc::new(array))
    }
}
