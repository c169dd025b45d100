//! JSON (`application/json`) answers: one array of row objects across the whole answer, and the
//! row objects themselves, which ND-JSON shares.
//!
//! The array is opened by `begin`, objects are separated by `,` across batch boundaries, and
//! `finish` closes it, so a chunked answer still concatenates to one valid JSON document (CnosDB
//! formats each chunk as its own array, `[..][..]`; our contract fixes that). No rows give `[]`
//! (arrow-json 42 wrote nothing); there is no trailing newline.
//!
//! Row objects are as arrow-json 42 wrote them: keys are the column names in column order, a
//! key whose value is null is left out (so is a NaN or infinite float, which JSON cannot
//! hold), integers and booleans are bare, floats as serde_json writes f64 (`56.0`), strings
//! escaped as serde_json does, zone-less timestamps as strings in chrono's `Debug` form
//! (`2022-02-06T05:30:00`, `1970-01-01T00:00:00.000000001`), dates `YYYY-MM-DD`. Zoned
//! timestamps and other flat types are strings from arrow's display with default options
//! (RFC 3339 with offset for zoned timestamps); decimals are bare numbers. Lists become JSON
//! arrays (a null element is `null`), structs nested objects (null members left out), maps
//! objects keyed by the map key's text.
//!
//! One deliberate difference: a Float32 value prints its own shortest digits (`0.1`), where
//! arrow-json 42 rounded it to three decimals through f64, which loses data. (CnosDB stores
//! fields as f64, so only casts produce Float32.)

use arrow::array::{Array, ArrayAccessor, AsArray, OffsetSizeTrait, RecordBatch};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, SchemaRef, TimeUnit, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::csv::timestamp_values;
use super::scalar::{self, Float};
use super::FormatError;

/// arrow 42's `array_value_to_string` options, for the types arrow's display formats for us.
const FALLBACK_OPTIONS: FormatOptions<'static> = FormatOptions::new().with_display_error(false);

/// Writes the rows of an answer as JSON objects; `rows` counts those written so far.
pub(super) struct Objects {
    schema: SchemaRef,
    /// `"name":` for every column, escaped once.
    keys: Vec<Vec<u8>>,
    rows: u64,
}

impl Objects {
    pub(super) fn new(schema: SchemaRef) -> Self {
        let keys = schema.fields().iter().map(|f| key(f.name())).collect();
        Self {
            schema,
            keys,
            rows: 0,
        }
    }

    /// Appends one object per row: `separator` before every object but the answer's first,
    /// `terminator` after each.
    pub(super) fn batch(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<u8>,
        separator: &[u8],
        terminator: &[u8],
    ) -> Result<(), FormatError> {
        let schema = &self.schema;
        let context = |i: usize, source| FormatError::Value {
            column: schema.field(i).name().clone(),
            data_type: batch.column(i).data_type().clone(),
            source,
        };
        let mut values = Vec::with_capacity(batch.num_columns());
        for (i, array) in batch.columns().iter().enumerate() {
            values.push(value(array.as_ref()).map_err(|e| context(i, e))?);
        }
        for row in 0..batch.num_rows() {
            if self.rows > 0 {
                out.extend_from_slice(separator);
            }
            out.push(b'{');
            let mut members = 0;
            for (i, value) in values.iter_mut().enumerate() {
                let mark = out.len();
                if members > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&self.keys[i]);
                if value.write(row, out).map_err(|e| context(i, e))? {
                    members += 1;
                } else {
                    out.truncate(mark);
                }
            }
            out.push(b'}');
            out.extend_from_slice(terminator);
            self.rows += 1;
        }
        Ok(())
    }
}

/// Writes one answer as a single JSON array.
pub(super) struct ArrayEncoder {
    objects: Objects,
}

impl ArrayEncoder {
    pub(super) fn new(schema: SchemaRef) -> Self {
        Self {
            objects: Objects::new(schema),
        }
    }

    pub(super) fn begin(&self, out: &mut Vec<u8>) {
        out.push(b'[');
    }

    pub(super) fn batch(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        self.objects.batch(batch, out, b",", b"")
    }

    pub(super) fn finish(&self, out: &mut Vec<u8>) {
        out.push(b']');
    }
}

/// `"name":`, escaped.
fn key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 3);
    push_string(&mut key, name);
    key.push(b':');
    key
}

/// Appends `text` as a JSON string, escaped as serde_json escapes: `"`, `\`, the short forms
/// `\b \f \n \r \t`, other control characters as `\u00xx`; everything else verbatim.
pub(super) fn push_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if short.is_empty() {
            let unicode = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ];
            out.extend_from_slice(&unicode);
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// One array's JSON writer.
trait Value {
    /// Appends the JSON value at `row` and returns true, or appends nothing and returns false
    /// when there is none: a null, or a float JSON cannot hold.
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError>;
}

struct Null;

impl Value for Null {
    fn write(&mut self, _: usize, _: &mut Vec<u8>) -> Result<bool, ArrowError> {
        Ok(false)
    }
}

struct Int<'a, T: ArrowPrimitiveType>(&'a arrow::array::PrimitiveArray<T>);

impl<T: ArrowPrimitiveType> Value for Int<'_, T>
where
    T::Native: Into<i128>,
{
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        let valid = self.0.is_valid(row);
        if valid {
            scalar::push_int(out, self.0.value(row).into());
        }
        Ok(valid)
    }
}

struct Real<'a, T: ArrowPrimitiveType>(&'a arrow::array::PrimitiveArray<T>);

impl<T: ArrowPrimitiveType> Value for Real<'_, T>
where
    T::Native: Float,
{
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        Ok(self.0.is_valid(row) && scalar::push_float_json(out, self.0.value(row)))
    }
}

struct Bool<'a>(&'a arrow::array::BooleanArray);

impl Value for Bool<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        let valid = self.0.is_valid(row);
        if valid {
            let text: &[u8] = if self.0.value(row) { b"true" } else { b"false" };
            out.extend_from_slice(text);
        }
        Ok(valid)
    }
}

struct Text<A>(A);

impl<'a, A: ArrayAccessor<Item = &'a str>> Value for Text<A> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        let valid = self.0.is_valid(row);
        if valid {
            push_string(out, self.0.value(row));
        }
        Ok(valid)
    }
}

struct Timestamp<'a> {
    array: &'a dyn Array,
    values: &'a [i64],
    unit: TimeUnit,
}

impl Value for Timestamp<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        let valid = self.array.is_valid(row);
        if valid {
            out.push(b'"');
            scalar::push_timestamp_json(out, self.values[row], self.unit);
            out.push(b'"');
        }
        Ok(valid)
    }
}

struct Date<'a>(&'a arrow::array::PrimitiveArray<Date32Type>);

impl Value for Date<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        let valid = self.0.is_valid(row);
        if valid {
            out.push(b'"');
            scalar::push_date32(out, self.0.value(row));
            out.push(b'"');
        }
        Ok(valid)
    }
}

/// A dictionary: the value its key points at; a null key has none.
struct Dictionary<'a> {
    array: &'a dyn Array,
    keys: Vec<usize>,
    values: Box<dyn Value + 'a>,
}

impl Value for Dictionary<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        if self.array.is_null(row) {
            return Ok(false);
        }
        self.values.write(self.keys[row], out)
    }
}

/// A list of any kind: its elements' values as a JSON array, a missing element as `null`.
struct List<'a> {
    array: &'a dyn Array,
    /// Element range of every row: `offsets[row]..offsets[row + 1]`.
    offsets: Vec<usize>,
    elements: Box<dyn Value + 'a>,
}

impl Value for List<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        if self.array.is_null(row) {
            return Ok(false);
        }
        out.push(b'[');
        for (n, element) in (self.offsets[row]..self.offsets[row + 1]).enumerate() {
            if n > 0 {
                out.push(b',');
            }
            if !self.elements.write(element, out)? {
                out.extend_from_slice(b"null");
            }
        }
        out.push(b']');
        Ok(true)
    }
}

/// A struct: a nested object of its members, null members left out as at the top level.
struct Struct<'a> {
    array: &'a dyn Array,
    keys: Vec<Vec<u8>>,
    members: Vec<Box<dyn Value + 'a>>,
}

impl Value for Struct<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        if self.array.is_null(row) {
            return Ok(false);
        }
        out.push(b'{');
        let mut written = 0;
        for (key, member) in self.keys.iter().zip(self.members.iter_mut()) {
            let mark = out.len();
            if written > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            if member.write(row, out)? {
                written += 1;
            } else {
                out.truncate(mark);
            }
        }
        out.push(b'}');
        Ok(true)
    }
}

/// A map: an object keyed by each entry key's text (strings as they are, other keys through
/// arrow's display), entries in their stored order.
struct Map<'a> {
    array: &'a dyn Array,
    offsets: Vec<usize>,
    keys: ArrayFormatter<'a>,
    key_text: String,
    values: Box<dyn Value + 'a>,
}

impl Value for Map<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        if self.array.is_null(row) {
            return Ok(false);
        }
        out.push(b'{');
        for (n, entry) in (self.offsets[row]..self.offsets[row + 1]).enumerate() {
            if n > 0 {
                out.push(b',');
            }
            self.key_text.clear();
            self.keys.value(entry).write(&mut self.key_text)?;
            push_string(out, &self.key_text);
            out.push(b':');
            if !self.values.write(entry, out)? {
                out.extend_from_slice(b"null");
            }
        }
        out.push(b'}');
        Ok(true)
    }
}

/// Any other type through arrow's display: a JSON string, or a bare number for decimals.
struct Formatted<'a> {
    array: &'a dyn Array,
    formatter: ArrayFormatter<'a>,
    text: String,
    bare: bool,
}

impl Value for Formatted<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        if self.array.is_null(row) {
            return Ok(false);
        }
        self.text.clear();
        self.formatter.value(row).write(&mut self.text)?;
        if self.bare {
            out.extend_from_slice(self.text.as_bytes());
        } else {
            push_string(out, &self.text);
        }
        Ok(true)
    }
}

/// The writer for one array, nested types recursively.
fn value<'a>(array: &'a dyn Array) -> Result<Box<dyn Value + 'a>, ArrowError> {
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
        DataType::Utf8 => Box::new(Text(array.as_string::<i32>())),
        DataType::LargeUtf8 => Box::new(Text(array.as_string::<i64>())),
        DataType::Utf8View => Box::new(Text(array.as_string_view())),
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
                values: value(dictionary.values().as_ref())?,
            }),
            None => formatted(array)?,
        },
        DataType::List(_) => list::<i32>(array)?,
        DataType::LargeList(_) => list::<i64>(array)?,
        DataType::FixedSizeList(_, _) => fixed_size_list(array)?,
        DataType::Struct(_) => structure(array)?,
        DataType::Map(_, _) => map(array)?,
        _ => formatted(array)?,
    })
}

fn list<'a, O: OffsetSizeTrait>(array: &'a dyn Array) -> Result<Box<dyn Value + 'a>, ArrowError> {
    let list = array.as_list::<O>();
    Ok(Box::new(List {
        array,
        offsets: list.value_offsets().iter().map(|o| o.as_usize()).collect(),
        elements: value(list.values().as_ref())?,
    }))
}

fn fixed_size_list(array: &dyn Array) -> Result<Box<dyn Value + '_>, ArrowError> {
    let list = array.as_fixed_size_list();
    // Sliced fixed-size lists slice their values too, so row r starts at r × width.
    let width = list.value_length().max(0) as usize;
    Ok(Box::new(List {
        array,
        offsets: (0..=list.len()).map(|row| row * width).collect(),
        elements: value(list.values().as_ref())?,
    }))
}

fn structure(array: &dyn Array) -> Result<Box<dyn Value + '_>, ArrowError> {
    let structure = array.as_struct();
    let keys = structure.column_names().into_iter().map(key).collect();
    let members = structure
        .columns()
        .iter()
        .map(|member| value(member.as_ref()))
        .collect::<Result<_, _>>()?;
    Ok(Box::new(Struct {
        array,
        keys,
        members,
    }))
}

fn map(array: &dyn Array) -> Result<Box<dyn Value + '_>, ArrowError> {
    let map = array.as_map();
    Ok(Box::new(Map {
        array,
        offsets: map
            .value_offsets()
            .iter()
            .map(|&o| o.max(0) as usize)
            .collect(),
        keys: ArrayFormatter::try_new(map.keys().as_ref(), &FALLBACK_OPTIONS)?,
        key_text: String::new(),
        values: value(map.values().as_ref())?,
    }))
}

fn formatted(array: &dyn Array) -> Result<Box<dyn Value + '_>, ArrowError> {
    let bare = matches!(
        array.data_type(),
        DataType::Decimal32(_, _)
            | DataType::Decimal64(_, _)
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _)
    );
    Ok(Box::new(Formatted {
        array,
        formatter: ArrayFormatter::try_new(array, &FALLBACK_OPTIONS)?,
        text: String::new(),
        bare,
    }))
}
