//! CSV (`text/csv`) and TSV (`text/tsv`) answers: a header line of column names, then one line
//! per row, fields separated by `,` (or a tab) and lines ended by `\n`.
//!
//! The bytes are those of arrow-csv 42 with its defaults, which CnosDB answers with:
//! - a field is quoted (RFC 4180, `"` doubled) only when it holds the delimiter, `"`, `\r` or
//!   `\n`; a row (or header) that is one empty field is written `""` so it is not a blank line,
//!   as the `csv` crate does;
//! - null is the empty field, booleans `true`/`false`, integers plain, floats as lexical-core
//!   writes them (`56.0`, `1.0e10`, `NaN`), dates `%F`;
//! - zone-less timestamps of every unit are `%Y-%m-%dT%H:%M:%S.%9f` (nine fractional digits,
//!   no zone); timestamps with a zone are local time with the offset, `...%.9f%:z`
//!   (`2022-02-06T13:30:00.000000000+08:00`), arrow-csv 42's `DEFAULT_TIMESTAMP_TZ_FORMAT`;
//! - other flat types (decimals, times, durations, binary) go through arrow's display with
//!   arrow-csv 42's options; nested types (lists, structs, maps, unions) have no CSV form and
//!   are refused before any byte is written.
//!
//! The header is written by `begin`, even for an answer with no rows; each batch then appends
//! its rows, so every call's output can go out as one chunk.

use arrow::array::{Array, ArrayAccessor, AsArray, RecordBatch};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::scalar::{self, Float};
use super::{Format, FormatError};

/// arrow-csv 42's defaults, for the types arrow's display formats for us.
const FALLBACK_OPTIONS: FormatOptions<'static> = FormatOptions::new()
    .with_display_error(false)
    .with_null("")
    .with_date_format(Some("%F"))
    .with_time_format(Some("%T"))
    .with_timestamp_format(Some("%FT%H:%M:%S.%9f"))
    .with_timestamp_tz_format(Some("%FT%H:%M:%S.%9f%:z"));

/// Writes one answer as CSV or TSV.
pub(super) struct DelimitedEncoder {
    schema: SchemaRef,
    delimiter: u8,
}

impl DelimitedEncoder {
    pub(super) fn new(schema: SchemaRef, format: Format) -> Self {
        let delimiter = if format == Format::Tsv { b'\t' } else { b',' };
        Self { schema, delimiter }
    }

    /// The first column CSV cannot represent, as the error the answer fails with.
    pub(super) fn unsupported(&self, format: Format) -> Option<FormatError> {
        self.schema
            .fields()
            .iter()
            .find(|field| field.data_type().is_nested())
            .map(|field| FormatError::Unsupported {
                column: field.name().clone(),
                data_type: field.data_type().clone(),
                format,
            })
    }

    /// Appends the header line. A schema without columns has no header (and no rows).
    pub(super) fn begin(&self, out: &mut Vec<u8>) {
        let fields = self.schema.fields();
        if fields.is_empty() {
            return;
        }
        let line_start = out.len();
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            push_field(out, field.name().as_bytes(), self.delimiter);
        }
        end_line(out, line_start);
    }

    /// Appends one line per row of `batch`.
    pub(super) fn batch(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), FormatError> {
        if batch.num_columns() == 0 {
            return Ok(());
        }
        let mut cells = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(array, field)| {
                cell(array.as_ref(), self.delimiter).map_err(|source| FormatError::Value {
                    column: field.name().clone(),
                    data_type: array.data_type().clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let line_start = out.len();
            for (i, cell) in cells.iter_mut().enumerate() {
                if i > 0 {
                    out.push(self.delimiter);
                }
                cell.write(row, out).map_err(|source| {
                    let field = self.schema.field(i);
                    FormatError::Value {
                        column: field.name().clone(),
                        data_type: batch.column(i).data_type().clone(),
                        source,
                    }
                })?;
            }
            end_line(out, line_start);
        }
        Ok(())
    }
}

/// Ends a line; an empty line (one empty field) becomes `""`, as the `csv` crate writes it.
fn end_line(out: &mut Vec<u8>, line_start: usize) {
    if out.len() == line_start {
        out.extend_from_slice(b"\"\"");
    }
    out.push(b'\n');
}

/// Appends `text` as one field, quoted only when it must be.
fn push_field(out: &mut Vec<u8>, text: &[u8], delimiter: u8) {
    let needs_quotes = text
        .iter()
        .any(|&b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r');
    if !needs_quotes {
        return out.extend_from_slice(text);
    }
    out.push(b'"');
    for part in text.split_inclusive(|&b| b == b'"') {
        out.extend_from_slice(part);
        if part.last() == Some(&b'"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

/// One column's writer: appends the field of a row, or nothing when the value is null.
trait Cell {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError>;
}

struct Null;

impl Cell for Null {
    fn write(&mut self, _: usize, _: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
        Ok(())
    }
}

struct Int<'a, T: ArrowPrimitiveType>(&'a arrow::array::PrimitiveArray<T>);

impl<T: ArrowPrimitiveType> Cell for Int<'_, T>
where
    T::Native: Into<i128>,
{
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
        if self.0.is_valid(row) {
            scalar::push_int(out, self.0.value(row).into());
        }
        Ok(())
    }
}

struct Real<'a, T: ArrowPrimitiveType>(&'a arrow::array::PrimitiveArray<T>);

impl<T: ArrowPrimitiveType> Cell for Real<'_, T>
where
    T::Native: Float,
{
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
        if self.0.is_valid(row) {
            scalar::push_float_lexical(out, self.0.value(row));
        }
        Ok(())
    }
}

struct Bool<'a>(&'a arrow::array::BooleanArray);

impl Cell for Bool<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
        if self.0.is_valid(row) {
            let text: &[u8] = if self.0.value(row) { b"true" } else { b"false" };
            out.extend_from_slice(text);
        }
        Ok(())
    }
}

struct Text<A> {
    array: A,
    delimiter: u8,
}

impl<'a, A: ArrayAccessor<Item = &'a str>> Cell for Text<A> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
        if self.array.is_valid(row) {
            push_field(out, self.array.value(row).as_bytes(), self.delimiter);
        }
        Ok(())
    }
}

struct Timestamp<'a> {
    array: &'a dyn Array,
    values: &'a [i64],
    unit: TimeUnit,
}

impl Cell for Timestamp<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
        if self.array.is_valid(row) {
            scalar::push_timestamp_csv(out, self.values[row], self.unit);
        }
        Ok(())
    }
}

struct Date<'a>(&'a arrow::array::PrimitiveArray<Date32Type>);

impl Cell for Date<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
        if self.0.is_valid(row) {
            scalar::push_date32(out, self.0.value(row));
        }
        Ok(())
    }
}

/// A dictionary column: the value its key points at, or nothing for a null key.
struct Dictionary<'a> {
    array: &'a dyn Array,
    keys: Vec<usize>,
    values: Box<dyn Cell + 'a>,
}

impl Cell for Dictionary<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
        if self.array.is_valid(row) {
            self.values.write(self.keys[row], out)?;
        }
        Ok(())
    }
}

/// Any other flat type, through arrow's display; `text` is reused across rows.
struct Formatted<'a> {
    array: &'a dyn Array,
    formatter: ArrayFormatter<'a>,
    text: String,
    delimiter: u8,
}

impl Cell for Formatted<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
        if self.array.is_valid(row) {
            self.text.clear();
            self.formatter.value(row).write(&mut self.text)?;
            push_field(out, self.text.as_bytes(), self.delimiter);
        }
        Ok(())
    }
}

/// The writer for one column. Nested types never get here (`unsupported` refused them).
fn cell<'a>(
    array: &'a dyn Array,
    delimiter: u8,
) -> Result<Box<dyn Cell + 'a>, arrow::error::ArrowError> {
    Ok(match array.data_type() {
        DataType::Null => Box::new(Null),
        DataType::Boolean => Box::new(Bool(array.as_boolean())),
        DataType::Int8 => Box::new(Int(array.as_primitive::<Int8Type>())),
        DataType::Int16 => Box::new(Int(array.as_primitive::<Int16Type>())),
        DataType::Int32 => Box::new(Int(array.as_primitive::<Int32Type>())),
        DataType::Int64 => Box::new(Int(array.as_primitive::<Int64Type>())),
        DataType::UInt8 => Box::new(Int(array.as_primitive::<UInt8Type>())),
        DataType::UInt16 => Box::new(Int(array.as_primitive::<UInt16Type>())),
        DataType::UInt32 => Box::new(Int(array.as_primitive::<UInt32Type>())),
        DataType::UInt64 => Box::new(Int(array.as_primitive::<UInt64Type>())),
        DataType::Float32 => Box::new(Real(array.as_primitive::<Float32Type>())),
        DataType::Float64 => Box::new(Real(array.as_primitive::<Float64Type>())),
        DataType::Utf8 => Box::new(Text {
            array: array.as_string::<i32>(),
            delimiter,
        }),
        DataType::LargeUtf8 => Box::new(Text {
            array: array.as_string::<i64>(),
            delimiter,
        }),
        DataType::Utf8View => Box::new(Text {
            array: array.as_string_view(),
            delimiter,
        }),
        DataType::Date32 => Box::new(Date(array.as_primitive::<Date32Type>())),
        DataType::Timestamp(unit, None) => Box::new(Timestamp {
            array,
            values: timestamp_values(array, *unit),
            unit: *unit,
        }),
        DataType::Dictionary(_, _) => match array.as_any_dictionary_opt() {
            Some(dictionary) => Box::new(Dictionary {
                array,
                keys: dictionary.normalized_keys(),
                values: cell(dictionary.values().as_ref(), delimiter)?,
            }),
            None => formatted(array, delimiter)?,
        },
        _ => formatted(array, delimiter)?,
    })
}

fn formatted<'a>(
    array: &'a dyn Array,
    delimiter: u8,
) -> Result<Box<dyn Cell + 'a>, arrow::error::ArrowError> {
    Ok(Box::new(Formatted {
        array,
        formatter: ArrayFormatter::try_new(array, &FALLBACK_OPTIONS)?,
        text: String::new(),
        delimiter,
    }))
}

/// The raw i64 values of a timestamp array of any unit.
pub(super) fn timestamp_values(array: &dyn Array, unit: TimeUnit) -> &[i64] {
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().values(),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().values(),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().values(),
    }
}
