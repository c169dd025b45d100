//! Segments: immutable Parquet files holding one table's points of one time partition, sorted
//! by series then time, written once by a flush and read by scans.
//!
//! # What a segment file holds
//!
//! One Parquet file (arrow-rs `parquet`, zstd pages) with, in this order:
//!
//! - `time`: `INT64`, not null: the point's time in the database's precision.
//! - `_series_id`: `INT32` (unsigned): the series' ordinal within this file, 0, 1, ... in the
//!   order the series appear (sorted by their packed tags), so a run of equal ids is one series.
//! - `_series_hash`: `INT64` (unsigned): the series' routing hash (the one that chose the shard).
//! - one `BYTE_ARRAY` (UTF-8) column per tag, sorted by tag name, null where a series lacks the
//!   tag; dictionary-encoded.
//! - one column per field, in the memtable's column order, typed (`DOUBLE`, `INT64`, unsigned
//!   `INT64`, `BYTE_ARRAY` UTF-8, `BOOLEAN`), null where the point has no value.
//!
//! Times and integers are delta-encoded (`DELTA_BINARY_PACKED`), floats byte-stream-split, tags
//! and the series columns dictionary-encoded (a series is one run). The file's key-value
//! metadata names the table (`chronoshard.tenant`, `chronoshard.database`, `chronoshard.table`),
//! lists the tag columns (`chronoshard.tags`, a JSON array) and the format version
//! (`chronoshard.segment` = `1`). Any Parquet reader can read the file; the `_series_*` columns
//! are ours, the rest is the table as SQL shows it (time as an integer).
//!
//! # Writing and reading
//!
//! `encode` turns one table's points of a time range, taken from a frozen memtable (merged:
//! one point per (series, time)), into the file's bytes in memory; `write_file` writes them
//! with aligned (`O_DIRECT`) writes, cuts the file to its exact length and syncs it. `read`
//! fetches only the footer and the column chunks a scan needs (the footer says where they are)
//! and `decode` turns them back into write batches, which the engine inserts into a read-only
//! memtable: scans read flushed data exactly as they read unflushed data.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float64Array, Float64Builder, Int64Array,
    Int64Builder, RecordBatch, StringArray, StringBuilder, UInt32Array, UInt32Builder, UInt64Array,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, Length};
use parquet::schema::types::ColumnPath;

use crate::batch::{FieldColumn, FieldValues, SeriesKey, TableBatch, ValueType};
use crate::io::{align_up, IoError, Storage, StorageFile};
use crate::memtable::{ColumnValues, SeriesRef, TableScan};
use crate::scan::arrow_type;

/// Rows per Arrow batch handed to the Parquet writer: one `write` encodes them in one go, and
/// the shard's reactor waits meanwhile, so it stays a few milliseconds of work.
const BATCH_ROWS: usize = 8192;
/// Rows per batch read back (decoded and inserted between two yields).
const READ_BATCH_ROWS: usize = 16_384;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1 << 17;
/// Bytes read from a file's end first: the footer of a segment is usually smaller.
const TAIL_GUESS_BYTES: u64 = 64 * 1024;
const FORMAT_VERSION: &str = "1";
const ZSTD_LEVEL: i32 = 1;

/// Key-value metadata key of the column chunks' CRC-32C (JSON: per row group, per column).
const CHUNK_CRC_KEY: &str = "chronoshard.chunk_crc32c";

/// The footer of a Parquet file's bytes: its metadata, their length and the magic.
fn footer(bytes: &[u8]) -> Option<&[u8]> {
    let n = bytes.len();
    let len_bytes: [u8; 4] = bytes.get(n.checked_sub(8)?..n - 4)?.try_into().ok()?;
    let meta_len = u32::from_le_bytes(len_bytes) as usize;
    bytes.get(n.checked_sub(meta_len + 8)?..)
}

pub const TIME_COLUMN: &str = "time";
pub const SERIES_ID_COLUMN: &str = "_series_id";
pub const SERIES_HASH_COLUMN: &str = "_series_hash";

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{0}")]
    Io(#[from] IoError),
    #[error("segment {path}: encoding: {source}")]
    Encode {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("segment {path}: reading Parquet: {source}")]
    Decode {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("segment {path}: {what}")]
    Invalid { path: String, what: String },
}

impl SegmentError {
    fn invalid(path: &str, what: impl Into<String>) -> SegmentError {
        SegmentError::Invalid {
            path: path.to_string(),
            what: what.into(),
        }
    }
}

/// What `encode` wrote: the file's bytes and what the manifest records about them.
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// CRC-32C of the footer (the Parquet metadata, its length and the magic): the manifest
    /// keeps it, so every byte a read relies on is checked (the footer lists each column
    /// chunk's own CRC-32C).
    pub footer_crc32c: u32,
    pub rows: u64,
    pub series: u64,
    pub min_time: i64,
    pub max_time: i64,
}

fn value_type_of(t: &DataType) -> Option<ValueType> {
    Some(match t {
        DataType::Float64 => ValueType::Float,
        DataType::Int64 => ValueType::Integer,
        DataType::UInt64 => ValueType::Unsigned,
        DataType::Utf8 => ValueType::String,
        DataType::Boolean => ValueType::Boolean,
        _ => return None,
    })
}

fn writer_properties(
    scan: &TableScan<'_>,
    tags: &[String],
) -> Result<WriterProperties, serde_json::Error> {
    let tags_json = serde_json::to_string(tags)?;
    let kv = |k: &str, v: &str| KeyValue::new(k.to_string(), v.to_string());
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default(),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_key_value_metadata(Some(vec![
            kv("chronoshard.segment", FORMAT_VERSION),
            kv("chronoshard.tenant", scan.tenant()),
            kv("chronoshard.database", scan.database()),
            kv("chronoshard.table", scan.table()),
            kv("chronoshard.tags", &tags_json),
        ]));
    let path = |name: &str| ColumnPath::new(vec![name.to_string()]);
    props = props
        .set_column_dictionary_enabled(path(TIME_COLUMN), false)
        .set_column_encoding(path(TIME_COLUMN), Encoding::DELTA_BINARY_PACKED);
    for c in scan.columns() {
        match c.value_type {
            ValueType::Integer | ValueType::Unsigned => {
                // Delta, not dictionary: a series' integers move by small steps (a TSBS field
                // takes about 3 bits a point this way, 7 through a dictionary of its values).
                props = props
                    .set_column_dictionary_enabled(path(&c.name), false)
                    .set_column_encoding(path(&c.name), Encoding::DELTA_BINARY_PACKED);
            }
            ValueType::Float => {
                props = props
                    .set_column_dictionary_enabled(path(&c.name), false)
                    .set_column_encoding(path(&c.name), Encoding::BYTE_STREAM_SPLIT);
            }
            ValueType::String | ValueType::Boolean => {}
        }
    }
    Ok(props.build())
}

/// The sorted tag names of the series.
fn tag_names(series: &[SeriesRef<'_>]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in series {
        for (k, _) in s.key().tags() {
            if let Err(at) = names.binary_search_by(|n| n.as_str().cmp(k)) {
                names.insert(at, k.to_string());
            }
        }
    }
    names
}

/// The series of `scan`, sorted by their packed tags (the order segments keep).
pub fn sorted_series<'a>(scan: &TableScan<'a>) -> Vec<SeriesRef<'a>> {
    let mut series: Vec<SeriesRef<'a>> = scan.series_refs_from(0).collect();
    series.sort_by(|a, b| a.key().packed().cmp(b.key().packed()));
    series
}

/// Column builders of one batch.
struct Builders {
    time: Int64Builder,
    id: UInt32Builder,
    hash: UInt64Builder,
    tags: Vec<StringBuilder>,
    fields: Vec<FieldBuilder>,
    rows: usize,
}

enum FieldBuilder {
    Float(Float64Builder),
    Integer(Int64Builder),
    Unsigned(UInt64Builder),
    String(StringBuilder),
    Boolean(BooleanBuilder),
}

impl Builders {
    fn new(tags: usize, fields: &[crate::memtable::Column]) -> Builders {
        Builders {
            time: Int64Builder::with_capacity(BATCH_ROWS),
            id: UInt32Builder::with_capacity(BATCH_ROWS),
            hash: UInt64Builder::with_capacity(BATCH_ROWS),
            tags: (0..tags).map(|_| StringBuilder::new()).collect(),
            fields: fields
                .iter()
                .map(|c| match c.value_type {
                    ValueType::Float => FieldBuilder::Float(Float64Builder::new()),
                    ValueType::Integer => FieldBuilder::Integer(Int64Builder::new()),
                    ValueType::Unsigned => FieldBuilder::Unsigned(UInt64Builder::new()),
                    ValueType::String => FieldBuilder::String(StringBuilder::new()),
                    ValueType::Boolean => FieldBuilder::Boolean(BooleanBuilder::new()),
                })
                .collect(),
            rows: 0,
        }
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.id.finish()),
            Arc::new(self.hash.finish()),
        ];
        columns.extend(
            self.tags
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        for f in &mut self.fields {
            columns.push(match f {
                FieldBuilder::Float(b) => Arc::new(b.finish()),
                FieldBuilder::Integer(b) => Arc::new(b.finish()),
                FieldBuilder::Unsigned(b) => Arc::new(b.finish()),
                FieldBuilder::String(b) => Arc::new(b.finish()),
                FieldBuilder::Boolean(b) => Arc::new(b.finish()),
            });
        }
        self.rows = 0;
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

fn valid(validity: Option<&[u64]>, stored: usize, i: usize) -> bool {
    i < stored && validity.is_none_or(|w| (w[i / 64] >> (i % 64)) & 1 == 1)
}

/// Appends rows `range` of one gathered series column to a builder.
fn push_field(
    b: &mut FieldBuilder,
    column: crate::memtable::ColumnRef<'_>,
    range: std::ops::Range<usize>,
) {
    let validity = column.validity();
    let values = column.values();
    let stored = values.len();
    macro_rules! prim {
        ($b:expr, $v:expr) => {
            for i in range {
                if valid(validity, stored, i) {
                    $b.append_value($v[i]);
                } else {
                    $b.append_null();
                }
            }
        };
    }
    match (b, values) {
        (FieldBuilder::Float(b), ColumnValues::Float(v)) => prim!(b, v),
        (FieldBuilder::Integer(b), ColumnValues::Integer(v)) => prim!(b, v),
        (FieldBuilder::Unsigned(b), ColumnValues::Unsigned(v)) => prim!(b, v),
        (FieldBuilder::Boolean(b), ColumnValues::Boolean(v)) => prim!(b, v),
        (FieldBuilder::String(b), ColumnValues::String(s)) => {
            for i in range {
                match valid(validity, stored, i).then(|| s.get(i)).flatten() {
                    Some(v) => b.append_value(v),
                    None => b.append_null(),
                }
            }
        }
        // The series has no value of this column at all (a column shorter than its rows
        // reads as empty of the column's own type; anything else cannot happen).
        (FieldBuilder::Float(b), _) => b.append_nulls(range.len()),
        (FieldBuilder::Integer(b), _) => b.append_nulls(range.len()),
        (FieldBuilder::Unsigned(b), _) => b.append_nulls(range.len()),
        (FieldBuilder::Boolean(b), _) => b.append_nulls(range.len()),
        (FieldBuilder::String(b), _) => b.append_nulls(range.len()),
    }
}

/// Encodes one table's points of one time range into a segment, series by series (sorted by
/// `sorted_series`), so a caller can yield between series.
pub struct Encoder {
    path: String,
    schema: SchemaRef,
    tags: Vec<String>,
    writer: ArrowWriter<Vec<u8>>,
    builders: Builders,
    range: (i64, i64),
    rows: u64,
    series: u32,
    min_time: i64,
    max_time: i64,
}

impl Encoder {
    /// An encoder for the points of `scan` with `min <= time < max`; `series` lists every
    /// series that will be pushed (for the tag columns). `path` names the file for errors.
    pub fn new(
        scan: &TableScan<'_>,
        series: &[SeriesRef<'_>],
        range: (i64, i64),
        path: &str,
    ) -> Result<Encoder, SegmentError> {
        let tags = tag_names(series);
        let columns = scan.columns();
        let mut fields = vec![
            Field::new(TIME_COLUMN, DataType::Int64, false),
            Field::new(SERIES_ID_COLUMN, DataType::UInt32, false),
            Field::new(SERIES_HASH_COLUMN, DataType::UInt64, false),
        ];
        fields.extend(tags.iter().map(|t| Field::new(t, DataType::Utf8, true)));
        fields.extend(
            columns
                .iter()
                .map(|c| Field::new(&c.name, arrow_type(c.value_type), true)),
        );
        let schema = Arc::new(Schema::new(fields));
        let props = writer_properties(scan, &tags)
            .map_err(|e| SegmentError::invalid(path, format!("tag names: {e}")))?;
        let writer = ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(props)).map_err(
            |source| SegmentError::Encode {
                path: path.to_string(),
                source,
            },
        )?;
        Ok(Encoder {
            path: path.to_string(),
            builders: Builders::new(tags.len(), columns),
            schema,
            tags,
            writer,
            range,
            rows: 0,
            series: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
        })
    }

    fn encode_err(&self, source: parquet::errors::ParquetError) -> SegmentError {
        SegmentError::Encode {
            path: self.path.clone(),
            source,
        }
    }

    fn write_batch(&mut self) -> Result<(), SegmentError> {
        let batch = self.builders.finish(&self.schema).map_err(|e| {
            self.encode_err(parquet::errors::ParquetError::ArrowError(e.to_string()))
        })?;
        self.writer.write(&batch).map_err(|e| self.encode_err(e))
    }

    /// Adds the series' points in the encoder's time range; returns how many.
    pub fn push(&mut self, s: &SeriesRef<'_>) -> Result<usize, SegmentError> {
        let (min, max) = self.range;
        let points = s.scan_range(min, max, usize::MAX);
        if points.is_empty() {
            return Ok(0);
        }
        let id = self.series;
        self.series += 1;
        let times = points.time();
        self.min_time = self.min_time.min(times[0]);
        self.max_time = self.max_time.max(times[times.len() - 1]);
        let tag_values: Vec<Option<&str>> = self.tags.iter().map(|t| s.key().tag(t)).collect();
        let mut at = 0;
        while at < times.len() {
            let b = &mut self.builders;
            let take = (BATCH_ROWS - b.rows).min(times.len() - at);
            let range = at..at + take;
            b.time.append_slice(&times[range.clone()]);
            for _ in 0..take {
                b.id.append_value(id);
                b.hash.append_value(s.key().hash);
            }
            for (builder, v) in b.tags.iter_mut().zip(&tag_values) {
                for _ in 0..take {
                    builder.append_option(*v);
                }
            }
            for (i, builder) in b.fields.iter_mut().enumerate() {
                push_field(builder, points.column(i), range.clone());
            }
            b.rows += take;
            at += take;
            if b.rows == BATCH_ROWS {
                self.write_batch()?;
            }
        }
        self.rows += times.len() as u64;
        Ok(times.len())
    }

    /// The file's bytes, or None if no point was pushed.
    pub fn finish(mut self) -> Result<Option<Encoded>, SegmentError> {
        if self.rows == 0 {
            return Ok(None);
        }
        if self.builders.rows > 0 {
            self.write_batch()?;
        }
        self.writer.flush().map_err(|e| self.encode_err(e))?;
        // Out of the writer's buffer into the Vec, so the chunks can be read back.
        self.writer
            .sync()
            .map_err(|e| self.encode_err(parquet::errors::ParquetError::External(Box::new(e))))?;
        // Every column chunk's CRC-32C, per row group, in the footer's key-value metadata.
        let written: &Vec<u8> = self.writer.inner();
        let crcs: Vec<Vec<u32>> = self
            .writer
            .flushed_row_groups()
            .iter()
            .map(|rg| {
                rg.columns()
                    .iter()
                    .map(|c| {
                        let (start, len) = c.byte_range();
                        let range = start as usize..(start + len) as usize;
                        written.get(range).map_or(0, crc32c::crc32c)
                    })
                    .collect()
            })
            .collect();
        let crcs = serde_json::to_string(&crcs).unwrap_or_default();
        self.writer
            .append_key_value_metadata(KeyValue::new(CHUNK_CRC_KEY.to_string(), crcs));
        let path = self.path.clone();
        let bytes = self
            .writer
            .into_inner()
            .map_err(|source| SegmentError::Encode { path, source })?;
        let footer_crc32c = footer(&bytes).map_or(0, crc32c::crc32c);
        Ok(Some(Encoded {
            bytes,
            footer_crc32c,
            rows: self.rows,
            series: u64::from(self.series),
            min_time: self.min_time,
            max_time: self.max_time,
        }))
    }
}

/// The Parquet bytes of the points of `series` (sorted, from `sorted_series`) with
/// `min <= time < max`, or None when there are none (`Encoder` in one go).
pub fn encode(
    scan: &TableScan<'_>,
    series: &[SeriesRef<'_>],
    range: (i64, i64),
    path: &str,
) -> Result<Option<Encoded>, SegmentError> {
    let mut encoder = Encoder::new(scan, series, range, path)?;
    for s in series {
        encoder.push(s)?;
    }
    encoder.finish()
}

/// Writes `bytes` as the new file `path` (aligned writes, then cut to the exact length) and
/// syncs it. The caller syncs the directory.
pub async fn write_file<S: Storage>(storage: &S, path: &str, bytes: &[u8]) -> Result<(), IoError> {
    let file = storage.open(path, true).await?;
    let padded = align_up(bytes.len() as u64) as usize;
    // One aligned buffer, written in chunks: the last one padded with zeros, then cut off.
    const CHUNK: usize = 1 << 20;
    let mut at = 0usize;
    while at < padded {
        let end = (at + CHUNK).min(padded);
        let mut chunk = vec![0u8; end - at];
        let have = bytes.len().saturating_sub(at).min(end - at);
        chunk[..have].copy_from_slice(&bytes[at..at + have]);
        file.write_at(at as u64, &chunk).await?;
        at = end;
    }
    file.set_len(bytes.len() as u64).await?;
    file.sync().await
}

/// The byte ranges of a file a scan fetched: the footer and some column chunks. Parquet's
/// reader asks only for ranges inside them (it reads the chunks of the columns and row groups
/// it was told to read).
#[derive(Debug)]
struct Fetched {
    len: u64,
    ranges: BTreeMap<u64, Bytes>,
}

impl Fetched {
    fn slice(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let miss = || {
            parquet::errors::ParquetError::General(format!(
                "bytes {start}..{} of the segment were not fetched",
                start + length as u64
            ))
        };
        let (&at, bytes) = self.ranges.range(..=start).next_back().ok_or_else(miss)?;
        let from = (start - at) as usize;
        if from + length > bytes.len() {
            return Err(miss());
        }
        Ok(bytes.slice(from..from + length))
    }
}

impl Length for Fetched {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Fetched {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let (&at, bytes) = self.ranges.range(..=start).next_back().ok_or_else(|| {
            parquet::errors::ParquetError::General(format!("offset {start} was not fetched"))
        })?;
        let from = ((start - at) as usize).min(bytes.len());
        Ok(bytes::Buf::reader(bytes.slice(from..)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, length)
    }
}

/// A segment's data as read for a scan: the fetched bytes and the decoded footer.
#[derive(Debug)]
pub struct ReadSegment {
    path: String,
    /// The row groups read (those that may match the scan's tag filters).
    row_groups: Vec<usize>,
    /// Whether those are all of them.
    whole: bool,
    fetched: Fetched,
    metadata: ArrowReaderMetadata,
    columns: Vec<usize>,
    tags: Vec<String>,
    tenant: String,
    database: String,
    table: String,
}

/// Whether a row group may hold a row passing every tag filter (`tag IN values`), by its
/// chunk statistics: a filter on a tag the file lacks, or whose column is all null in the row
/// group, or whose values all lie outside the chunk's min..max, rules it out.
fn may_match(
    rg: &parquet::file::metadata::RowGroupMetaData,
    schema: &Schema,
    tag_filters: &[(String, Vec<String>)],
) -> bool {
    tag_filters.iter().all(|(tag, values)| {
        let Some((c, _)) = schema.column_with_name(tag) else {
            return false;
        };
        let Some(stats) = rg.column(c).statistics() else {
            return true;
        };
        if stats.null_count_opt() == Some(rg.num_rows() as u64) {
            return false;
        }
        match (stats.min_bytes_opt(), stats.max_bytes_opt()) {
            (Some(min), Some(max)) => values
                .iter()
                .any(|v| min <= v.as_bytes() && v.as_bytes() <= max),
            _ => true,
        }
    })
}

/// Reads the footer of segment `path` (`len` bytes long) and, of the row groups that may hold
/// rows passing `tag_filters`, the column chunks of the series columns, the tags and the fields
/// named in `fields` (all fields when None).
pub async fn read<S: Storage>(
    storage: &S,
    path: &str,
    (len, footer_crc32c): (u64, u32),
    fields: Option<&[String]>,
    tag_filters: &[(String, Vec<String>)],
) -> Result<ReadSegment, SegmentError> {
    let file = storage.open(path, false).await?;
    if len < 12 {
        return Err(SegmentError::invalid(
            path,
            format!("{len} bytes is too short"),
        ));
    }
    let tail_len = TAIL_GUESS_BYTES.min(len);
    let mut tail = file.read_at(len - tail_len, tail_len as usize).await?;
    if tail.len() as u64 != tail_len {
        return Err(SegmentError::invalid(
            path,
            format!("shorter than the {len} bytes the manifest records"),
        ));
    }
    let footer: [u8; 8] = tail[tail.len() - 8..]
        .try_into()
        .map_err(|_| SegmentError::invalid(path, "no footer"))?;
    if &footer[4..] != b"PAR1" {
        return Err(SegmentError::invalid(
            path,
            "no Parquet footer magic at the end",
        ));
    }
    let meta_len = u64::from(u32::from_le_bytes([
        footer[0], footer[1], footer[2], footer[3],
    ]));
    if meta_len + 12 > len {
        return Err(SegmentError::invalid(
            path,
            format!("footer of {meta_len} bytes in a file of {len}"),
        ));
    }
    if meta_len + 8 > tail_len {
        tail = file
            .read_at(len - meta_len - 8, (meta_len + 8) as usize)
            .await?;
    }
    let footer_bytes = &tail[tail.len() - 8 - meta_len as usize..];
    let found = crc32c::crc32c(footer_bytes);
    if found != footer_crc32c {
        return Err(SegmentError::invalid(
            path,
            format!(
                "footer checksum mismatch over bytes {}..{len}: the manifest has {footer_crc32c:08x}, the file {found:08x}",
                len - meta_len - 8
            ),
        ));
    }
    let meta_bytes = &tail[tail.len() - 8 - meta_len as usize..tail.len() - 8];
    let decode_err = |source| SegmentError::Decode {
        path: path.to_string(),
        source,
    };
    let metadata = ParquetMetaDataReader::decode_metadata(meta_bytes).map_err(decode_err)?;
    let metadata = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())
        .map_err(decode_err)?;
    let kv = |key: &str| -> Option<String> {
        metadata
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|e| e.key == key)?
            .value
            .clone()
    };
    if kv("chronoshard.segment").as_deref() != Some(FORMAT_VERSION) {
        return Err(SegmentError::invalid(
            path,
            "not a chronoshard segment of version 1",
        ));
    }
    let chunk_crcs: Vec<Vec<u32>> = kv(CHUNK_CRC_KEY)
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| SegmentError::invalid(path, "no column chunk checksums in its metadata"))?;
    let tags: Vec<String> = kv("chronoshard.tags")
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| SegmentError::invalid(path, "no tag list in its metadata"))?;
    let schema = metadata.schema();
    let mut columns = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let name = f.name();
        let wanted = i < 3
            || tags.iter().any(|t| t == name)
            || fields.is_none_or(|fs| fs.iter().any(|x| x == name));
        if wanted {
            columns.push(i);
        }
    }
    if columns.len() < 3
        || schema.field(0).name() != TIME_COLUMN
        || schema.field(1).name() != SERIES_ID_COLUMN
        || schema.field(2).name() != SERIES_HASH_COLUMN
    {
        return Err(SegmentError::invalid(
            path,
            "its first columns are not time and series",
        ));
    }
    let mut ranges = BTreeMap::new();
    ranges.insert(
        len - meta_len - 8,
        Bytes::copy_from_slice(&tail[tail.len() - 8 - meta_len as usize..]),
    );
    let parquet_meta = Arc::clone(metadata.metadata());
    let row_groups: Vec<usize> = (0..parquet_meta.num_row_groups())
        .filter(|&i| may_match(parquet_meta.row_group(i), schema, tag_filters))
        .collect();
    // Arrow's root fields map one to one to Parquet leaf columns here (no nested types).
    for &i in &row_groups {
        let rg = parquet_meta.row_group(i);
        for &c in &columns {
            let (start, chunk_len) = rg.column(c).byte_range();
            if start + chunk_len > len {
                return Err(SegmentError::invalid(
                    path,
                    "a column chunk lies past the end",
                ));
            }
            let bytes = file.read_at(start, chunk_len as usize).await?;
            if bytes.len() as u64 != chunk_len {
                return Err(SegmentError::invalid(path, "a column chunk is cut short"));
            }
            let want = chunk_crcs.get(i).and_then(|r| r.get(c)).copied();
            let found = crc32c::crc32c(&bytes);
            if want != Some(found) {
                return Err(SegmentError::invalid(
                    path,
                    format!(
                        "checksum mismatch in row group {i}, column {c} (bytes {start}..{}): stored {}, computed {found:08x}",
                        start + chunk_len,
                        want.map_or("none".to_string(), |w| format!("{w:08x}"))
                    ),
                ));
            }
            ranges.insert(start, Bytes::from(bytes));
        }
    }
    let (tenant, database, table) = (
        kv("chronoshard.tenant").unwrap_or_default(),
        kv("chronoshard.database").unwrap_or_default(),
        kv("chronoshard.table").unwrap_or_default(),
    );
    Ok(ReadSegment {
        path: path.to_string(),
        whole: row_groups.len() == parquet_meta.num_row_groups(),
        row_groups,
        fetched: Fetched { len, ranges },
        metadata,
        columns,
        tags,
        tenant,
        database,
        table,
    })
}

impl ReadSegment {
    /// Whether every row group was read (none was ruled out by the tag filters).
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// The segment's rows as write batches (one per Parquet batch read), series keys rebuilt
    /// from the tag columns and the stored hash, in file order: decoded one batch per `next`,
    /// so a caller can yield in between.
    pub fn batches(
        self,
    ) -> Result<impl Iterator<Item = Result<TableBatch, SegmentError>>, SegmentError> {
        let path = self.path.clone();
        let schema = self.metadata.schema().clone();
        let mask = ProjectionMask::roots(
            self.metadata.metadata().file_metadata().schema_descr(),
            self.columns.iter().copied(),
        );
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(self.fetched, self.metadata)
                .with_projection(mask)
                .with_row_groups(self.row_groups)
                .with_batch_size(READ_BATCH_ROWS)
                .build()
                .map_err(|source| SegmentError::Decode {
                    path: path.clone(),
                    source,
                })?;
        let projected: Vec<Field> = self
            .columns
            .iter()
            .map(|&i| schema.field(i).clone())
            .collect();
        let (tags, tenant, database, table) = (self.tags, self.tenant, self.database, self.table);
        Ok(reader.map(move |batch| {
            let batch = batch.map_err(|e| SegmentError::Decode {
                path: path.clone(),
                source: parquet::errors::ParquetError::ArrowError(e.to_string()),
            })?;
            to_table_batch(&batch, &projected, &tags, (&tenant, &database, &table))
                .map_err(|what| SegmentError::invalid(&path, what))
        }))
    }
}

fn downcast<'a, T: 'static>(column: &'a ArrayRef, name: &str) -> Result<&'a T, String> {
    column
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} has type {}", column.data_type()))
}

fn to_table_batch(
    batch: &RecordBatch,
    fields: &[Field],
    tags: &[String],
    (tenant, database, table): (&str, &str, &str),
) -> Result<TableBatch, String> {
    let time = downcast::<Int64Array>(batch.column(0), TIME_COLUMN)?;
    let ids = downcast::<UInt32Array>(batch.column(1), SERIES_ID_COLUMN)?;
    let hashes = downcast::<UInt64Array>(batch.column(2), SERIES_HASH_COLUMN)?;
    if time.null_count() + ids.null_count() + hashes.null_count() > 0 {
        return Err("null in the time or series columns".to_string());
    }
    let mut tag_columns: Vec<(&str, &StringArray)> = Vec::new();
    let mut out_fields = Vec::new();
    for (i, field) in fields.iter().enumerate().skip(3) {
        let column = batch.column(i);
        let name = field.name().as_str();
        if tags.iter().any(|t| t == name) {
            tag_columns.push((name, downcast::<StringArray>(column, name)?));
            continue;
        }
        let value_type = value_type_of(column.data_type())
            .ok_or_else(|| format!("field {name} has type {}", column.data_type()))?;
        let values = match value_type {
            ValueType::Float => {
                FieldValues::Float(downcast::<Float64Array>(column, name)?.iter().collect())
            }
            ValueType::Integer => {
                FieldValues::Integer(downcast::<Int64Array>(column, name)?.iter().collect())
            }
            ValueType::Unsigned => {
                FieldValues::Unsigned(downcast::<UInt64Array>(column, name)?.iter().collect())
            }
            ValueType::Boolean => {
                FieldValues::Boolean(downcast::<BooleanArray>(column, name)?.iter().collect())
            }
            ValueType::String => FieldValues::String(
                downcast::<StringArray>(column, name)?
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect(),
            ),
        };
        out_fields.push(FieldColumn {
            name: name.to_string(),
            values,
        });
    }
    let rows = batch.num_rows();
    let mut series = Vec::new();
    let mut series_of_row = Vec::with_capacity(rows);
    let mut last_id = None;
    for row in 0..rows {
        let id = ids.value(row);
        if last_id != Some(id) {
            last_id = Some(id);
            let tags = tag_columns
                .iter()
                .filter(|(_, a)| a.is_valid(row))
                .map(|(name, a)| (*name, a.value(row)));
            series.push(SeriesKey::new(hashes.value(row), tags));
        }
        series_of_row.push((series.len() - 1) as u32);
    }
    Ok(TableBatch {
        tenant: tenant.to_string(),
        database: database.to_string(),
        table: table.to_string(),
        series,
        series_of_row,
        time: time.values().to_vec(),
        fields: out_fields,
    })
}

/// Reads a whole segment back with the `parquet` crate alone (no chronoshard code), for tests
/// and tools: its Arrow batches.
pub fn read_plain(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))?.build()?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parquet::errors::ParquetError::ArrowError(e.to_string()))
}
