//! Row batches: the unit of data that travels from the shard that parsed a write to the shard
//! that owns its series, into that shard's WAL and memtable.
//!
//! A `WriteBatch` holds, per table, the rows of one request that belong to one shard, in columnar
//! form: a time column, a series index per row, and one column per field (absent values are
//! `None`). Series keys carry their tags sorted by key, and the hash that picked the owner shard.
//! `encode`/`decode` give the byte form stored as a WAL record payload (`docs/formats.md`); decode
//! validates every length against the input, so a corrupt record is an error, never a panic.

use std::fmt;

mod delete;
mod key;

pub use delete::Delete;
pub use key::{SeriesKey, Tags};

/// The value type of a column, as the catalog records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
}

impl ValueType {
    fn tag(self) -> u8 {
        match self {
            ValueType::Float => 1,
            ValueType::Integer => 2,
            ValueType::Unsigned => 3,
            ValueType::String => 4,
            ValueType::Boolean => 5,
        }
    }

    /// The type's name as CnosDB's SQL spells it.
    pub fn sql_name(self) -> &'static str {
        match self {
            ValueType::Float => "DOUBLE",
            ValueType::Integer => "BIGINT",
            ValueType::Unsigned => "BIGINT UNSIGNED",
            ValueType::String => "STRING",
            ValueType::Boolean => "BOOLEAN",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// The values of one field column; `None` where a row has no value for the field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValues {
    Float(Vec<Option<f64>>),
    Integer(Vec<Option<i64>>),
    Unsigned(Vec<Option<u64>>),
    String(Vec<Option<String>>),
    Boolean(Vec<Option<bool>>),
}

impl FieldValues {
    pub fn value_type(&self) -> ValueType {
        match self {
            FieldValues::Float(_) => ValueType::Float,
            FieldValues::Integer(_) => ValueType::Integer,
            FieldValues::Unsigned(_) => ValueType::Unsigned,
            FieldValues::String(_) => ValueType::String,
            FieldValues::Boolean(_) => ValueType::Boolean,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            FieldValues::Float(v) => v.len(),
            FieldValues::Integer(v) => v.len(),
            FieldValues::Unsigned(v) => v.len(),
            FieldValues::String(v) => v.len(),
            FieldValues::Boolean(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty column of the given type with room for `rows` values.
    pub fn with_capacity(t: ValueType, rows: usize) -> FieldValues {
        match t {
            ValueType::Float => FieldValues::Float(Vec::with_capacity(rows)),
            ValueType::Integer => FieldValues::Integer(Vec::with_capacity(rows)),
            ValueType::Unsigned => FieldValues::Unsigned(Vec::with_capacity(rows)),
            ValueType::String => FieldValues::String(Vec::with_capacity(rows)),
            ValueType::Boolean => FieldValues::Boolean(Vec::with_capacity(rows)),
        }
    }

    /// An empty column of the given type.
    pub fn empty(t: ValueType) -> FieldValues {
        match t {
            ValueType::Float => FieldValues::Float(Vec::new()),
            ValueType::Integer => FieldValues::Integer(Vec::new()),
            ValueType::Unsigned => FieldValues::Unsigned(Vec::new()),
            ValueType::String => FieldValues::String(Vec::new()),
            ValueType::Boolean => FieldValues::Boolean(Vec::new()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldColumn {
    pub name: String,
    pub values: FieldValues,
}

/// The rows of one table bound for one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct TableBatch {
    pub tenant: String,
    pub database: String,
    pub table: String,
    /// Distinct series of this batch.
    pub series: Vec<SeriesKey>,
    /// Per row: index into `series`.
    pub series_of_row: Vec<u32>,
    /// Per row: timestamp in the database's precision.
    pub time: Vec<i64>,
    /// Every column has one entry per row.
    pub fields: Vec<FieldColumn>,
}

impl TableBatch {
    pub fn rows(&self) -> usize {
        self.time.len()
    }

    /// Checks the shape invariants: one entry per row in every column, valid series indexes,
    /// sorted unique tag keys. Called before a batch is written and after it is decoded.
    pub fn check(&self) -> Result<(), BatchError> {
        let rows = self.rows();
        if self.series_of_row.len() != rows {
            return Err(BatchError::Shape(
                "series_of_row length differs from rows".into(),
            ));
        }
        if let Some(bad) = self
            .series_of_row
            .iter()
            .find(|&&i| i as usize >= self.series.len())
        {
            return Err(BatchError::Shape(format!(
                "series index {bad} out of range"
            )));
        }
        for f in &self.fields {
            if f.values.len() != rows {
                return Err(BatchError::Shape(format!(
                    "field {} has {} values for {rows} rows",
                    f.name,
                    f.values.len()
                )));
            }
        }
        for s in &self.series {
            if !s.tags_sorted() {
                return Err(BatchError::Shape(
                    "series tags not sorted and unique".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Everything one request sends to one shard.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriteBatch {
    pub tables: Vec<TableBatch>,
}

impl WriteBatch {
    pub fn rows(&self) -> usize {
        self.tables.iter().map(TableBatch::rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch decode: truncated at byte {offset} (wanted {wanted} more bytes)")]
    Truncated { offset: usize, wanted: usize },
    #[error("batch decode: unknown {what} tag {tag} at byte {offset}")]
    UnknownTag {
        what: &'static str,
        tag: u8,
        offset: usize,
    },
    #[error("batch decode: invalid UTF-8 at byte {offset}")]
    Utf8 { offset: usize },
    #[error("batch decode: unsupported format version {0}")]
    Version(u8),
    #[error("batch decode: {0} trailing bytes")]
    Trailing(usize),
    #[error("batch shape: {0}")]
    Shape(String),
}

/// Version byte at the start of every encoded batch.
const FORMAT_VERSION: u8 = 1;

/// Encodes a batch (layout in `docs/formats.md`, "Write batch").
pub fn encode(batch: &WriteBatch, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    put_u32(out, batch.tables.len() as u32);
    for t in &batch.tables {
        encode_table(t, out);
    }
}

fn encode_table(t: &TableBatch, out: &mut Vec<u8>) {
    put_str(out, &t.tenant);
    put_str(out, &t.database);
    put_str(out, &t.table);
    put_u32(out, t.series.len() as u32);
    for s in &t.series {
        put_u64(out, s.hash);
        out.extend_from_slice(s.packed());
    }
    put_u32(out, t.rows() as u32);
    for &i in &t.series_of_row {
        put_u32(out, i);
    }
    for &ts in &t.time {
        put_u64(out, ts as u64);
    }
    put_u32(out, t.fields.len() as u32);
    for f in &t.fields {
        put_str(out, &f.name);
        out.push(f.values.value_type().tag());
        encode_values(&f.values, out);
    }
}

/// Each value: a presence byte (0 absent, 1 present), then the value if present.
fn encode_values(values: &FieldValues, out: &mut Vec<u8>) {
    fn each<T>(out: &mut Vec<u8>, vs: &[Option<T>], mut put: impl FnMut(&mut Vec<u8>, &T)) {
        for v in vs {
            match v {
                None => out.push(0),
                Some(x) => {
                    out.push(1);
                    put(out, x);
                }
            }
        }
    }
    match values {
        FieldValues::Float(v) => each(out, v, |o, x| put_u64(o, x.to_bits())),
        FieldValues::Integer(v) => each(out, v, |o, x| put_u64(o, *x as u64)),
        FieldValues::Unsigned(v) => each(out, v, |o, x| put_u64(o, *x)),
        FieldValues::String(v) => each(out, v, |o, x| put_str(o, x)),
        FieldValues::Boolean(v) => each(out, v, |o, x| o.push(u8::from(*x))),
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

/// One WAL record's payload: a write batch or a delete.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Write(WriteBatch),
    Delete(Delete),
}

/// Encodes a delete (layout in `docs/formats.md`, "Delete").
pub fn encode_delete(delete: &Delete, out: &mut Vec<u8>) {
    delete::encode(delete, out);
}

/// Decodes a record written by `encode` or `encode_delete`, by its first byte.
pub fn decode_record(bytes: &[u8]) -> Result<Record, BatchError> {
    if bytes.first() == Some(&delete::DELETE_TAG) {
        let mut r = Reader { bytes, pos: 1 };
        let d = delete::decode(&mut r)?;
        if r.pos != bytes.len() {
            return Err(BatchError::Trailing(bytes.len() - r.pos));
        }
        return Ok(Record::Delete(d));
    }
    decode(bytes).map(Record::Write)
}

/// Decodes a batch written by `encode`, checking every length against the input.
pub fn decode(bytes: &[u8]) -> Result<WriteBatch, BatchError> {
    let mut r = Reader { bytes, pos: 0 };
    let version = r.u8()?;
    if version != FORMAT_VERSION {
        return Err(BatchError::Version(version));
    }
    let n = r.count(4)?;
    let mut tables = Vec::with_capacity(n);
    for _ in 0..n {
        let t = decode_table(&mut r)?;
        t.check()?;
        tables.push(t);
    }
    if r.pos != bytes.len() {
        return Err(BatchError::Trailing(bytes.len() - r.pos));
    }
    Ok(WriteBatch { tables })
}

fn decode_table(r: &mut Reader<'_>) -> Result<TableBatch, BatchError> {
    let (tenant, database, table) = (r.string()?, r.string()?, r.string()?);
    let n_series = r.count(12)?;
    let mut series = Vec::with_capacity(n_series);
    for _ in 0..n_series {
        let hash = r.u64()?;
        let at = r.pos;
        let len = key::packed_len(&r.bytes[at..], at)?;
        series.push(SeriesKey::from_valid(hash, r.take(len)?));
    }
    let rows = r.count(12)?;
    let series_of_row = (0..rows).map(|_| r.u32()).collect::<Result<_, _>>()?;
    let time = (0..rows)
        .map(|_| r.u64().map(|v| v as i64))
        .collect::<Result<_, _>>()?;
    let n_fields = r.count(6)?;
    let mut fields = Vec::with_capacity(n_fields);
    for _ in 0..n_fields {
        let name = r.string()?;
        let at = r.pos;
        let values = match r.u8()? {
            1 => FieldValues::Float(r.options(rows, |r| r.u64().map(f64::from_bits))?),
            2 => FieldValues::Integer(r.options(rows, |r| r.u64().map(|v| v as i64))?),
            3 => FieldValues::Unsigned(r.options(rows, Reader::u64)?),
            4 => FieldValues::String(r.options(rows, Reader::string)?),
            5 => FieldValues::Boolean(r.options(rows, |r| r.u8().map(|b| b != 0))?),
            tag => {
                return Err(BatchError::UnknownTag {
                    what: "value type",
                    tag,
                    offset: at,
                })
            }
        };
        fields.push(FieldColumn { name, values });
    }
    Ok(TableBatch {
        tenant,
        database,
        table,
        series,
        series_of_row,
        time,
        fields,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BatchError> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(BatchError::Truncated {
                offset: self.pos,
                wanted: n - left,
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, BatchError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, BatchError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, BatchError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    /// A count of items each at least `min_item_bytes` long: refused if the input cannot hold
    /// them, so a corrupt count cannot make us allocate without bound.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, BatchError> {
        let at = self.pos;
        let n = self.u32()? as usize;
        let left = self.bytes.len() - self.pos;
        if n.saturating_mul(min_item_bytes.max(1)) > left {
            return Err(BatchError::Truncated {
                offset: at,
                wanted: n * min_item_bytes - left,
            });
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, BatchError> {
        let n = self.u32()? as usize;
        let at = self.pos;
        let raw = self.take(n)?;
        std::str::from_utf8(raw)
            .map(str::to_string)
            .map_err(|_| BatchError::Utf8 { offset: at })
    }

    fn options<T>(
        &mut self,
        rows: usize,
        mut get: impl FnMut(&mut Self) -> Result<T, BatchError>,
    ) -> Result<Vec<Option<T>>, BatchError> {
        let mut out = Vec::with_capacity(rows.min(self.bytes.len() - self.pos));
        for _ in 0..rows {
            let at = self.pos;
            out.push(match self.u8()? {
                0 => None,
                1 => Some(get(self)?),
                tag => {
                    return Err(BatchError::UnknownTag {
                        what: "presence",
                        tag,
                        offset: at,
                    })
                }
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WriteBatch {
        WriteBatch {
            tables: vec![TableBatch {
                tenant: "cnosdb".into(),
                database: "public".into(),
                table: "cpu".into(),
                series: vec![
                    SeriesKey::new(7, [("host", "a"), ("rack", "1")]),
                    SeriesKey::new(9, []),
                ],
                series_of_row: vec![0, 1, 0],
                time: vec![1, -2, 3],
                fields: vec![
                    FieldColumn {
                        name: "f".into(),
                        values: FieldValues::Float(vec![Some(1.5), None, Some(f64::NAN)]),
                    },
                    FieldColumn {
                        name: "i".into(),
                        values: FieldValues::Integer(vec![Some(-1), Some(i64::MAX), None]),
                    },
                    FieldColumn {
                        name: "u".into(),
                        values: FieldValues::Unsigned(vec![None, Some(u64::MAX), Some(0)]),
                    },
                    FieldColumn {
                        name: "s".into(),
                        values: FieldValues::String(vec![
                            Some("x\"y".into()),
                            Some(String::new()),
                            None,
                        ]),
                    },
                    FieldColumn {
                        name: "b".into(),
                        values: FieldValues::Boolean(vec![Some(true), Some(false), None]),
                    },
                ],
            }],
        }
    }

    #[test]
    fn round_trips() {
        let b = sample();
        b.tables[0].check().expect("valid");
        let mut bytes = Vec::new();
        encode(&b, &mut bytes);
        let back = decode(&bytes).expect("decodes");
        // NaN != NaN, so compare the encodings.
        let mut again = Vec::new();
        encode(&back, &mut again);
        assert_eq!(bytes, again);
        assert_eq!(back.rows(), 3);
    }

    #[test]
    fn every_truncation_and_flip_is_an_error_or_a_valid_batch() {
        let mut bytes = Vec::new();
        encode(&sample(), &mut bytes);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            // Must not panic; a flipped value byte may still decode.
            let _ = decode(&b);
        }
    }

    #[test]
    fn delete_records_round_trip_and_refuse_damage() {
        let d = Delete {
            tenant: "cnosdb".into(),
            database: "public".into(),
            table: Some("cpu".into()),
            tag_filters: vec![("host".into(), vec!["a".into(), "b".into()])],
            time: (-5, 100),
        };
        let mut bytes = Vec::new();
        encode_delete(&d, &mut bytes);
        assert_eq!(decode_record(&bytes), Ok(Record::Delete(d.clone())));
        for cut in 0..bytes.len() {
            assert!(decode_record(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = decode_record(&b);
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(decode_record(&trailing), Err(BatchError::Trailing(1)));
        let all = Delete {
            table: None,
            tag_filters: vec![],
            time: (i64::MIN, i64::MAX),
            ..d
        };
        assert!(all.drops_tables());
        let mut bytes = Vec::new();
        encode_delete(&all, &mut bytes);
        assert_eq!(decode_record(&bytes), Ok(Record::Delete(all)));
        let mut bytes = Vec::new();
        encode(&sample(), &mut bytes);
        // The sample holds a NaN (NaN != NaN): compare the re-encoded bytes.
        let Ok(Record::Write(back)) = decode_record(&bytes) else {
            panic!("a write record did not decode as one");
        };
        let mut again = Vec::new();
        encode(&back, &mut again);
        assert_eq!(again, bytes);
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut bytes = vec![FORMAT_VERSION];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(BatchError::Truncated { .. })));
    }
}
