//! SQL answer encoders: Arrow record batches to the exact bytes CnosDB answers `/api/v1/sql`
//! with, in the format the `Accept` header negotiates.
//!
//! One file per format: `csv` (CSV and TSV), `json` (a JSON array, and the row objects ND-JSON
//! shares), `ndjson`, `table` (arrow's pretty box); `scalar` holds the value text they share
//! (floats, timestamps, dates). Every byte rule is documented where it is implemented and
//! pinned by the byte-exact tests in `format/tests.rs`.
//!
//! One [`Encoder`] serves whole and streamed answers alike. A caller appends `begin`, every
//! batch, then `finish` into one buffer for a `Content-Length` answer; a chunked answer sends
//! what each call appended as one chunk (skipping calls that appended nothing: an empty chunk
//! would end the body). Invariants:
//! - whatever the batch boundaries, the concatenated output is the same bytes as for one batch
//!   (the JSON array stays one array across chunks, the CSV header is written once);
//! - a column a format cannot represent (nested types in CSV/TSV) fails the answer before any
//!   byte of it is written: `begin` writes nothing, the first `batch` or `finish` fails;
//! - a table answer is held whole until `finish` (its box needs every row's width), bounded by
//!   a byte limit; the other formats keep nothing between calls.
//!
//! Where arrow-rs 59's own writers differ from CnosDB's arrow-rs 42 bytes (float notation,
//! `[]` for no rows, date and time defaults), the CSV and JSON writers are our own code over
//! the typed arrays, which is also faster than going through arrow's display per value.

mod csv;
mod json;
mod ndjson;
mod scalar;
mod table;
#[cfg(test)]
mod tests;

use std::fmt;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;

/// The most a table answer may hold before it is rendered, unless the caller sets another
/// bound with [`Encoder::with_table_bytes_max`].
pub const TABLE_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// An answer format of `/api/v1/sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Csv,
    Tsv,
    Json,
    NdJson,
    Table,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::Tsv => "text/tsv",
            Format::Json => "application/json",
            Format::NdJson => "application/nd-json",
            Format::Table => "text/table",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csv => "CSV",
            Format::Tsv => "TSV",
            Format::Json => "JSON",
            Format::NdJson => "ND-JSON",
            Format::Table => "table",
        })
    }
}

/// Why an answer cannot be encoded. `NotAcceptable` is a bad request (400 `040005`); the
/// others fail the query's answer (422 `040007`, CnosDB's "Fetch result").
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "Accept {0:?} names none of text/csv, text/tsv, application/json, application/nd-json, \
         text/table"
    )]
    NotAcceptable(String),
    #[error("Fetch result: column {column:?} of type {data_type} has no {format} form")]
    Unsupported {
        column: String,
        data_type: DataType,
        format: Format,
    },
    #[error("Fetch result: column {column:?} of type {data_type}: {source}")]
    Value {
        column: String,
        data_type: DataType,
        source: ArrowError,
    },
    #[error(
        "Fetch result: a table answer is held whole before it is drawn and this one passed \
         {bytes_max} bytes; ask for CSV or JSON, or narrow the query"
    )]
    TableTooLarge { bytes_max: usize },
    #[error("Fetch result: drawing the table: {0}")]
    Table(ArrowError),
    #[error("Fetch result: a batch has {found} columns, the answer's schema {expected}")]
    ColumnCount { expected: usize, found: usize },
    #[error("internal: answer encoder used after finish")]
    AfterFinish,
}

/// Our formats with the media types that name each, in the order a wildcard (`*/*`, `text/*`,
/// `application/*`) prefers them when it admits several equally.
const MEDIA_TYPES: [(Format, &[(&str, &str)]); 5] = [
    (Format::Csv, &[("text", "csv"), ("application", "csv")]),
    (Format::Json, &[("application", "json"), ("text", "json")]),
    (
        Format::NdJson,
        &[
            ("application", "nd-json"),
            ("text", "nd-json"),
            ("application", "x-ndjson"),
            ("application", "ndjson"),
        ],
    ),
    (Format::Tsv, &[("text", "tsv"), ("application", "tsv")]),
    (
        Format::Table,
        &[("text", "table"), ("application", "table")],
    ),
];

/// One well-formed element of an `Accept` value; `q` in thousandths (0..=1000).
#[derive(Debug, Clone, Copy)]
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: u16,
}

/// Picks the answer format for an `Accept` header (RFC 9110 §12.5.1).
///
/// Absent or empty means CSV. Otherwise the header is a list of media ranges, each with
/// optional parameters: `q` weighs it (a malformed q drops the element), the rest (`charset`
/// and such) are ignored, and names compare case-insensitively. Our formats are named by
/// `text/` or `application/` plus `csv`, `tsv`, `json`, `nd-json` or `table`; `application/
/// x-ndjson` and `application/ndjson` also mean ND-JSON. Each format takes the q of the most
/// specific range that covers it (exact, then `type/*`, then `*/*` or a bare `*`), and the
/// format with the highest q > 0 wins; ties go to the range listed first, then to the order
/// CSV, JSON, ND-JSON, TSV, table, so `*/*`, `text/*` and `application/*` give CSV unless CSV
/// is excluded with `q=0`. No format with q > 0 is [`FormatError::NotAcceptable`].
pub fn negotiate(accept: Option<&str>) -> Result<Format, FormatError> {
    let Some(header) = accept.filter(|h| h.split(',').any(|e| !e.trim().is_empty())) else {
        return Ok(Format::Csv);
    };
    let ranges = parse_accept(header);
    let mut best: Option<(Format, u16, usize)> = None;
    for (format, names) in MEDIA_TYPES {
        let Some((q, index)) = weight(&ranges, names) else {
            continue;
        };
        let better = best.is_none_or(|(_, best_q, best_index)| {
            q > best_q || (q == best_q && index < best_index)
        });
        if q > 0 && better {
            best = Some((format, q, index));
        }
    }
    best.map(|(format, _, _)| format)
        .ok_or_else(|| FormatError::NotAcceptable(header.to_string()))
}

/// The q a format gets and the index of the range that gave it: the most specific range
/// covering any of its media types, the first of equally specific ones.
fn weight(ranges: &[MediaRange<'_>], names: &[(&str, &str)]) -> Option<(u16, usize)> {
    let mut best: Option<(u8, u16, usize)> = None;
    for (index, range) in ranges.iter().enumerate() {
        let specificity = names
            .iter()
            .filter_map(|(kind, subtype)| {
                let kind_matches = range.kind.eq_ignore_ascii_case(kind);
                if kind_matches && range.subtype.eq_ignore_ascii_case(subtype) {
                    Some(2)
                } else if kind_matches && range.subtype == "*" {
                    Some(1)
                } else if range.kind == "*" && range.subtype == "*" {
                    Some(0)
                } else {
                    None
                }
            })
            .max();
        if let Some(s) = specificity.filter(|&s| best.is_none_or(|(b, _, _)| s > b)) {
            best = Some((s, range.q, index));
        }
    }
    best.map(|(_, q, index)| (q, index))
}

/// The well-formed media ranges of an `Accept` value, in order. Empty elements, elements
/// without a `type/subtype` and elements with a malformed q are skipped; a bare `*` (sent by
/// some old clients) is taken as `*/*`.
fn parse_accept(header: &str) -> Vec<MediaRange<'_>> {
    let mut ranges = Vec::new();
    'elements: for element in header.split(',') {
        let mut parts = element.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let (kind, subtype) = match media.split_once('/') {
            Some((kind, subtype)) => (kind.trim(), subtype.trim()),
            None if media == "*" => ("*", "*"),
            None => continue,
        };
        if kind.is_empty() || subtype.is_empty() {
            continue;
        }
        let mut q = 1000;
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("q") {
                match parse_qvalue(value.trim()) {
                    Some(parsed) => q = parsed,
                    None => continue 'elements,
                }
                // Parameters after q are accept-extensions, not media-type parameters.
                break;
            }
        }
        ranges.push(MediaRange { kind, subtype, q });
    }
    ranges
}

/// A qvalue in thousandths: `0`, `1`, `0.5`, `1.000`; also `.5` and more than three
/// decimals (extra digits ignored), which some clients send. `None` if malformed or above 1.
fn parse_qvalue(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if (int.is_empty() && frac.is_empty()) || !matches!(int, "" | "0" | "1") {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut q: u16 = if int == "1" { 1000 } else { 0 };
    for (i, b) in frac.bytes().take(3).enumerate() {
        q += u16::from(b - b'0') * [100, 10, 1][i];
    }
    (q <= 1000).then_some(q)
}

/// The format-specific half of an [`Encoder`].
enum Kind {
    Delimited(csv::DelimitedEncoder),
    Json(json::ArrayEncoder),
    NdJson(ndjson::LinesEncoder),
    Table(table::TableEncoder),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Ready,
    Begun,
    Finished,
}

/// Encodes one answer: `begin`, then `batch` for every record batch, then `finish`, each
/// appending its bytes to `out`.
///
/// `batch` and `finish` begin the answer themselves if `begin` was not called. Each call's
/// output is a well-formed chunk of a streamed answer; their concatenation is the whole answer.
pub struct Encoder {
    format: Format,
    schema: SchemaRef,
    kind: Kind,
    stage: Stage,
}

impl Encoder {
    /// An encoder for an answer with `schema`. A schema the format cannot represent is
    /// reported by the first `batch` or `finish` (and `begin` writes nothing); [`Self::try_new`]
    /// reports it at once.
    pub fn new(format: Format, schema: SchemaRef) -> Self {
        let kind = match format {
            Format::Csv | Format::Tsv => {
                Kind::Delimited(csv::DelimitedEncoder::new(schema.clone(), format))
            }
            Format::Json => Kind::Json(json::ArrayEncoder::new(schema.clone())),
            Format::NdJson => Kind::NdJson(ndjson::LinesEncoder::new(schema.clone())),
            Format::Table => Kind::Table(table::TableEncoder::new(
                schema.clone(),
                TABLE_BYTES_MAX_DEFAULT,
            )),
        };
        Self {
            format,
            schema,
            kind,
            stage: Stage::Ready,
        }
    }

    /// Like [`Self::new`], but fails at once if the format cannot represent a column, so a
    /// streamed answer can still get an error status instead of a broken 200.
    pub fn try_new(format: Format, schema: SchemaRef) -> Result<Self, FormatError> {
        let encoder = Self::new(format, schema);
        match encoder.unsupported() {
            Some(error) => Err(error),
            None => Ok(encoder),
        }
    }

    /// Bounds what a table answer may hold before `finish` draws it (arrow buffer bytes of its
    /// rows); other formats hold nothing and ignore it.
    pub fn with_table_bytes_max(mut self, bytes_max: usize) -> Self {
        if let Kind::Table(table) = &mut self.kind {
            table.set_bytes_max(bytes_max);
        }
        self
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Appends what precedes the rows: the CSV/TSV header line, JSON's `[`.
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        debug_assert_eq!(
            self.stage,
            Stage::Ready,
            "begin called twice or after finish"
        );
        if self.stage != Stage::Ready {
            return;
        }
        self.stage = Stage::Begun;
        if self.unsupported().is_some() {
            return;
        }
        match &self.kind {
            Kind::Delimited(csv) => csv.begin(out),
            Kind::Json(json) => json.begin(out),
            Kind::NdJson(_) | Kind::Table(_) => {}
        }
    }

    /// Appends the rows of `batch` (a table answer keeps them for `finish`).
    pub fn batch(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), FormatError> {
        self.ready_for_more(out)?;
        let expected = self.schema.fields().len();
        if batch.num_columns() != expected {
            return Err(FormatError::ColumnCount {
                expected,
                found: batch.num_columns(),
            });
        }
        match &mut self.kind {
            Kind::Delimited(csv) => csv.batch(batch, out),
            Kind::Json(json) => json.batch(batch, out),
            Kind::NdJson(lines) => lines.batch(batch, out),
            Kind::Table(table) => table.batch(batch),
        }
    }

    /// Appends what follows the rows: JSON's `]`, or the whole table box.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        self.ready_for_more(out)?;
        self.stage = Stage::Finished;
        match &mut self.kind {
            Kind::Json(json) => json.finish(out),
            Kind::Table(table) => table.finish(out)?,
            Kind::Delimited(_) | Kind::NdJson(_) => {}
        }
        Ok(())
    }

    /// Begins the answer if need be; fails after `finish` or if a column is unrepresentable.
    fn ready_for_more(&mut self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        match self.stage {
            Stage::Ready => self.begin(out),
            Stage::Begun => {}
            Stage::Finished => return Err(FormatError::AfterFinish),
        }
        match self.unsupported() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The error for the first column this format cannot represent, if any.
    fn unsupported(&self) -> Option<FormatError> {
        match &self.kind {
            Kind::Delimited(csv) => csv.unsupported(self.format),
            Kind::Json(_) | Kind::NdJson(_) | Kind::Table(_) => None,
        }
    }
}
