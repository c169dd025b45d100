//! InfluxDB line protocol, as CnosDB 2.x accepts it, parsed from a request body without
//! allocating per line.
//!
//! # What is accepted
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//! ```
//!
//! - Lines end at `\n`, `\r\n` or a lone `\r` (CnosDB's rule; InfluxDB only knows `\n`). Line
//!   numbers count those terminators, including the ones inside quoted string values, so they are
//!   the numbers an editor shows.
//! - Leading whitespace (space, tab, form feed, CR, LF) and blank lines are skipped; a `#` that
//!   starts a line (after that whitespace) makes the line a comment.
//! - One or more spaces separate the measurement (with its tags), the fields and the timestamp.
//!   Tabs are not separators (as in CnosDB): they are ordinary characters inside names. Spaces
//!   and tabs at the end of a line are ignored once a space has ended the last field value.
//! - The measurement ends at the first unescaped `,` (tags follow) or space (fields follow). Tag
//!   keys and field keys end at `=`; tag values at `,` or space. Names and tag values may not be
//!   empty, and an unescaped line terminator in the middle of a line is an error.
//! - Escapes in the measurement: `\,` and `\ `; in tag keys, tag values and field keys also `\=`.
//!   Those lose their backslash. `\\`, `\"` and `\'` are accepted and kept verbatim (both
//!   characters), as CnosDB does; any other backslash sequence is an error (also CnosDB's rule).
//! - Field values:
//!   - `"..."` is a string. It may contain spaces, commas, `=` and line terminators; inside it
//!     `\"` becomes `"` and `\\` becomes `\`, and any other backslash is kept as it is. The
//!     closing quote must be followed by `,`, a space or the end of the line.
//!   - `t T true True TRUE` and `f F false False FALSE` are booleans; other spellings are errors.
//!   - `<digits>i` with an optional `-` is an `i64`, `<digits>u` (no sign) a `u64`; out of range
//!     is an error. Leading zeros are allowed.
//!   - Anything else that starts with `+`, `-` or a digit is an `f64` in the grammar of Rust's
//!     `str::parse::<f64>` (the same as CnosDB's `fast_float`): `1`, `-1.5`, `+1e3`, `1.`,
//!     `-.5`, `-inf`, `+NaN`. Plain `inf` or `nan` do not start with a sign or digit: rejected.
//!   - Any other first character is an error.
//! - The timestamp is an optional `i64` (`-` allowed, no `+`); anything else after the fields, or
//!   anything after the timestamp other than trailing spaces or tabs, is an error.
//!
//! # Where we differ from CnosDB and from InfluxDB
//!
//! | input | CnosDB 2.4 | InfluxDB (`influxdb-line-protocol`) | here |
//! | --- | --- | --- | --- |
//! | repeated tag or field key | keeps the first | keeps the last | error naming the key (our contract) |
//! | `\\` in a name or tag value | kept as `\\` | becomes `\` | kept as `\\` (CnosDB) |
//! | `\x`, other `x`, in a name | error | kept as `\x` | error (CnosDB) |
//! | `\=` in the measurement | error | kept as `\=` | error (CnosDB) |
//! | `\x` inside a string value, `x` not `"` or `\` | error unless `x` is `'` | kept | kept (InfluxDB, compat doc) |
//! | `+1.5`, `1.`, `-inf`, `+nan` | float | error | float (CnosDB) |
//! | `+1i` | error | error | error |
//! | lone `\r` as line end | yes | no | yes (CnosDB) |
//! | empty tag value, empty key | accepted | error | error (InfluxDB) |
//! | space or comma inside an unescaped tag or field key | taken into the key | error | error |
//! | `m f=1 1 m2 f=2 2` | two lines | error | error |
//! | field order | sorted by key | as written | as written; tags sorted by key |
//! | errors reported | the first | each line | every bad line, up to [`MAX_ERRORS`] |
//!
//! The differential test (`lp/tests/differential.rs`) checks us against `influxdb-line-protocol`
//! on random lines from the subset where all three agree.
//!
//! # Representation
//!
//! [`parse`] checks the whole body is UTF-8 once, then works on bytes. It fills a
//! [`ParsedBatch`], which keeps flat vectors: one record per line (measurement, the range of its
//! tags, the range of its fields, timestamp, line number), all tags of all lines in one vector,
//! all fields in another. A string is a span of the body when it needs no unescaping, otherwise
//! it is unescaped into one scratch `String` shared by the whole batch and referred to by range.
//! So a parse allocates only when a vector grows; a batch that is reused (see
//! [`ParsedBatch::recycle`]) stops allocating once it has seen a request as large as the current
//! one. Accessors hand out `&str` and [`FieldValue`]. Errors allocate (their messages), but only
//! for bad lines, and at most [`MAX_ERRORS`] of them.
//!
//! Speed: the scanner skips 8 bytes at a time where no delimiter can be (SWAR), the common number
//! forms (`58i`, `-1.25`, 19-digit timestamps) are parsed in the same pass, and the per-line key
//! checks compare 16-byte prefixes as integers and remember the previous line's key layout
//! (`keys.rs`). `benches/lp_parse.rs` measures it on TSBS lines.
//!
//! Invariants: after a successful parse every line has at least one field; tag keys within a line
//! are unique and sorted by byte order; field keys within a line are unique and in input order;
//! every span lies on character boundaries of the body or the scratch buffer. On any error the
//! batch is left empty, so a caller cannot write part of a bad request.

mod error;
mod keys;
mod parser;
mod token;

#[cfg(test)]
mod tests;

pub use error::{LineError, LineErrorKind, LpErrors};

/// At most this many line errors are collected; parsing stops at the next one.
pub const MAX_ERRORS: usize = 100;

/// The largest body the parser accepts: spans are 31-bit offsets, which keeps them small.
pub const MAX_BODY_BYTES: usize = (1 << 31) - 1;

/// Parses a whole request body into `out`, replacing what it held.
///
/// On success `out` holds every line of the body. On failure `out` is empty and the error lists
/// every bad line (up to [`MAX_ERRORS`]) with its 1-based line number; invalid UTF-8 is reported
/// alone, at the line and byte offset where it starts.
pub fn parse<'a>(body: &'a [u8], out: &mut ParsedBatch<'a>) -> Result<(), LpErrors> {
    out.clear();
    let text = parser::check_body(body, MAX_BODY_BYTES)?;
    out.body = text;
    let result = parser::parse_body(text, out);
    if result.is_err() {
        out.clear();
    }
    result
}

/// A string of the parsed batch: `start..end` of the body, or of the scratch buffer when the
/// top bit of `end` is set. One `u64` (start in the low half) so that it lives in a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span(u64);

/// The bit of the `end` half that says "in the scratch buffer".
const IN_SCRATCH: u64 = 1 << 63;

impl Span {
    fn body(start: usize, end: usize) -> Span {
        Span(start as u64 | (end as u64) << 32)
    }

    fn scratch(start: usize, end: usize) -> Span {
        Span(start as u64 | (end as u64) << 32 | IN_SCRATCH)
    }

    /// (in scratch, start, end).
    fn parts(self) -> (bool, usize, usize) {
        let start = (self.0 & u64::from(u32::MAX)) as usize;
        let end = ((self.0 & !IN_SCRATCH) >> 32) as usize;
        (self.0 & IN_SCRATCH != 0, start, end)
    }
}

/// A field value as stored: strings are spans.
#[derive(Clone, Copy, Debug, PartialEq)]
enum StoredValue {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(Span),
}

/// One line: its tags are `tags[tags_start..tags_end]` of the batch, its fields likewise.
#[derive(Clone, Copy, Debug)]
struct LineRecord {
    measurement: Span,
    /// The measurement and tag set exactly as written (escapes and tag order included).
    raw_key: Span,
    tags_start: u32,
    tags_end: u32,
    fields_start: u32,
    fields_end: u32,
    timestamp: Option<i64>,
    line_no: u32,
}

/// The parsed lines of one body, borrowed from it where no unescaping was needed.
///
/// Create one with `ParsedBatch::default()` and fill it with [`parse`]. To reuse the vectors for
/// the next request (whose body has another lifetime), call [`ParsedBatch::recycle`].
#[derive(Debug, Default)]
pub struct ParsedBatch<'a> {
    body: &'a str,
    lines: Vec<LineRecord>,
    tags: Vec<(Span, Span)>,
    fields: Vec<(Span, StoredValue)>,
    /// Unescaped strings of all lines, back to back.
    scratch: String,
    /// The previous line's key layout and the work vectors of the key checks.
    keys: keys::KeyCache,
}

impl<'a> ParsedBatch<'a> {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.body = "";
        self.lines.clear();
        self.tags.clear();
        self.fields.clear();
        self.scratch.clear();
    }

    /// The same allocations, emptied and free of the old body, ready for another body.
    pub fn recycle<'b>(self) -> ParsedBatch<'b> {
        let mut next = ParsedBatch {
            body: "",
            lines: self.lines,
            tags: self.tags,
            fields: self.fields,
            scratch: self.scratch,
            keys: self.keys,
        };
        next.clear();
        next
    }

    /// Bytes held by the batch's vectors (their capacity), to decide whether to keep it.
    pub fn capacity_bytes(&self) -> usize {
        use std::mem::size_of;
        self.lines.capacity() * size_of::<LineRecord>()
            + self.tags.capacity() * size_of::<(Span, Span)>()
            + self.fields.capacity() * size_of::<(Span, StoredValue)>()
            + self.scratch.capacity()
            + self.keys.capacity_bytes()
    }

    /// Number of lines (comments and blank lines are not lines).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when the body held no line.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Total number of tags over all lines.
    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// Total number of fields over all lines.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// The `index`-th line (0-based, in body order).
    pub fn line(&self, index: usize) -> Option<Line<'_>> {
        self.lines.get(index).map(|record| Line {
            batch: self,
            record,
        })
    }

    /// The lines in body order.
    pub fn lines(&self) -> Lines<'_> {
        Lines {
            batch: self,
            inner: self.lines.iter(),
        }
    }

    fn text(&self, span: Span) -> &str {
        resolve(self.body, &self.scratch, span)
    }

    fn value(&self, value: StoredValue) -> FieldValue<'_> {
        match value {
            StoredValue::Float(v) => FieldValue::Float(v),
            StoredValue::Integer(v) => FieldValue::Integer(v),
            StoredValue::Unsigned(v) => FieldValue::Unsigned(v),
            StoredValue::Boolean(v) => FieldValue::Boolean(v),
            StoredValue::String(s) => FieldValue::String(self.text(s)),
        }
    }
}

/// The text of `span`. Spans are made by the parser on character boundaries, so the fallback to
/// `""` is never taken; it keeps the accessors free of panics.
fn resolve<'s>(body: &'s str, scratch: &'s str, span: Span) -> &'s str {
    let (in_scratch, start, end) = span.parts();
    let text = if in_scratch { scratch } else { body };
    text.get(start..end).unwrap_or_default()
}

/// A typed field value. Strings are already unescaped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue<'a> {
    /// A number without suffix: `1`, `-1.5`, `1e3`.
    Float(f64),
    /// `<n>i`.
    Integer(i64),
    /// `<n>u`.
    Unsigned(u64),
    /// A quoted string.
    String(&'a str),
    /// One of the boolean spellings.
    Boolean(bool),
}

/// One parsed line.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    batch: &'a ParsedBatch<'a>,
    record: &'a LineRecord,
}

impl<'a> Line<'a> {
    /// The measurement (table) name, unescaped.
    pub fn measurement(&self) -> &'a str {
        self.batch.text(self.record.measurement)
    }

    /// The measurement and tag set exactly as written, escapes and tag order included. Equal raw
    /// keys are the same series; different raw keys may still be (tags in another order).
    pub fn raw_key(&self) -> &'a str {
        self.batch.text(self.record.raw_key)
    }

    /// The tags as (key, value), sorted by key, keys unique.
    pub fn tags(&self) -> Tags<'a> {
        let range = self.record.tags_start as usize..self.record.tags_end as usize;
        Tags {
            batch: self.batch,
            inner: self.batch.tags.get(range).unwrap_or_default().iter(),
        }
    }

    /// The value of tag `key`, if the line has it.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        let range = self.record.tags_start as usize..self.record.tags_end as usize;
        let tags = self.batch.tags.get(range).unwrap_or_default();
        let i = tags
            .binary_search_by(|(k, _)| self.batch.text(*k).cmp(key))
            .ok()?;
        tags.get(i).map(|(_, v)| self.batch.text(*v))
    }

    /// The fields as (key, value), in input order, keys unique; never empty.
    pub fn fields(&self) -> Fields<'a> {
        let range = self.record.fields_start as usize..self.record.fields_end as usize;
        Fields {
            batch: self.batch,
            inner: self.batch.fields.get(range).unwrap_or_default().iter(),
        }
    }

    /// Number of tags of this line.
    pub fn tag_count(&self) -> usize {
        (self.record.tags_end - self.record.tags_start) as usize
    }

    /// Number of fields of this line.
    pub fn field_count(&self) -> usize {
        (self.record.fields_end - self.record.fields_start) as usize
    }

    /// The timestamp as written (in the request's precision), if the line has one.
    pub fn timestamp(&self) -> Option<i64> {
        self.record.timestamp
    }

    /// The 1-based line number where this line starts in the body.
    pub fn line_no(&self) -> usize {
        self.record.line_no as usize
    }
}

/// Iterator over the lines of a [`ParsedBatch`].
#[derive(Clone, Debug)]
pub struct Lines<'a> {
    batch: &'a ParsedBatch<'a>,
    inner: std::slice::Iter<'a, LineRecord>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let batch = self.batch;
        self.inner.next().map(|record| Line { batch, record })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Lines<'_> {}

/// Iterator over the (key, value) tags of a [`Line`].
#[derive(Clone, Debug)]
pub struct Tags<'a> {
    batch: &'a ParsedBatch<'a>,
    inner: std::slice::Iter<'a, (Span, Span)>,
}

impl<'a> Iterator for Tags<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let batch = self.batch;
        self.inner
            .next()
            .map(|(k, v)| (batch.text(*k), batch.text(*v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Tags<'_> {}

/// Iterator over the (key, value) fields of a [`Line`].
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    batch: &'a ParsedBatch<'a>,
    inner: std::slice::Iter<'a, (Span, StoredValue)>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, FieldValue<'a>);

    fn next(&mut self) -> Option<(&'a str, FieldValue<'a>)> {
        let batch = self.batch;
        self.inner
            .next()
            .map(|(k, v)| (batch.text(*k), batch.value(*v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Fields<'_> {}
