//! One field column: typed values, an optional validity bitmap, and the growth policy that lets
//! `insert` know, before it changes anything, how many bytes a batch adds. A table keeps one per
//! field over all its rows; a scan builds one per field of a series.
//!
//! Invariants:
//! - A column may be shorter than the rows it belongs to ("ragged"): rows past its end are
//!   null. A field that stops arriving costs nothing, and a trailing null costs no write.
//! - `validity: None` means every stored value is present. The bitmap appears the first time a
//!   null must be stored inside the column; it is LSB-first in 64-bit words (Arrow's bit order),
//!   and its bits at or past the stored length are zero.
//! - A null slot holds the type's default value, so the value slice stays dense and can be
//!   handed to an Arrow builder as it is.
//! - For a batch, vectors grow only through `reserve`, to a capacity the caller chose (the
//!   policy `grown_capacity`, or a table block's fixed size) before anything is written, and
//!   `growth_bytes` computes exactly what `reserve` will allocate. The writes that follow stay
//!   inside the reserved capacity.

use std::mem::size_of;

use crate::batch::ValueType;

/// The smallest capacity a growing vector gets: series with a handful of points and tables with
/// a handful of rows are common (high cardinality), so this stays small.
const MIN_CAPACITY: usize = 4;

/// The capacity a vector of capacity `capacity` gets so it holds `needed` items: unchanged if
/// they fit, else grown by half (and at least to `needed`). 1.5x rather than 2x: memtable
/// memory is the bound writes wait on, and slack is memory not holding data.
pub(super) fn grown_capacity(capacity: usize, needed: usize) -> usize {
    if needed <= capacity {
        capacity
    } else {
        needed.max(capacity + capacity / 2).max(MIN_CAPACITY)
    }
}

/// Grows `v` to `grown_capacity(v.capacity(), needed)`.
pub(super) fn reserve_for<T>(v: &mut Vec<T>, needed: usize) {
    let target = grown_capacity(v.capacity(), needed);
    if target > v.capacity() {
        v.reserve_exact(target - v.len());
    }
}

/// Grows `v` to hold at least `capacity` items, allocating exactly that if it must grow.
fn reserve_exactly<T>(v: &mut Vec<T>, capacity: usize) {
    if capacity > v.capacity() {
        v.reserve_exact(capacity - v.len());
    }
}

fn reserve_string(s: &mut String, needed: usize) {
    let target = grown_capacity(s.capacity(), needed);
    if target > s.capacity() {
        s.reserve_exact(target - s.len());
    }
}

/// Bitmap words needed for `rows` bits.
pub(super) fn words_for(rows: usize) -> usize {
    rows.div_ceil(64)
}

fn bit(words: &[u64], i: usize) -> bool {
    words.get(i / 64).is_some_and(|w| (w >> (i % 64)) & 1 == 1)
}

fn set_bit(words: &mut Vec<u64>, i: usize) {
    let w = i / 64;
    if w >= words.len() {
        words.resize(w + 1, 0);
    }
    words[w] |= 1 << (i % 64);
}

/// A bitmap with the first `len` bits set and room for `capacity_rows` bits.
fn all_valid(len: usize, capacity_rows: usize) -> Vec<u64> {
    let mut words = Vec::with_capacity(words_for(capacity_rows.max(len)));
    words.resize(len / 64, u64::MAX);
    if len % 64 != 0 {
        words.push((1u64 << (len % 64)) - 1);
    }
    words
}

/// Creates the bitmap (all stored values valid) if the column has none yet.
fn ensure_validity(validity: &mut Option<Vec<u64>>, len: usize, capacity_rows: usize) {
    if validity.is_none() {
        *validity = Some(all_valid(len, capacity_rows));
    }
}

/// Stores `value` at `row` of a column's `values` and `validity`: overwrites if the row is
/// stored, else pads nulls up to it and appends.
#[inline]
pub(super) fn put_at<T: Copy + Default>(
    values: &mut Vec<T>,
    validity: &mut Option<Vec<u64>>,
    row: usize,
    value: T,
) {
    if row == values.len() && validity.is_none() {
        // The in-order append of a column without nulls: the hot path.
        values.push(value);
        return;
    }
    put_slow(values, validity, row, value);
}

#[cold]
fn put_slow<T: Copy + Default>(
    values: &mut Vec<T>,
    validity: &mut Option<Vec<u64>>,
    row: usize,
    value: T,
) {
    if row < values.len() {
        values[row] = value;
    } else {
        if row > values.len() {
            ensure_validity(validity, values.len(), values.capacity());
            values.resize(row, T::default());
        }
        values.push(value);
    }
    if let Some(words) = validity {
        set_bit(words, row);
    }
}

/// One field value, borrowed from the memtable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    String(&'a str),
    Boolean(bool),
}

impl Value<'_> {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Float(_) => ValueType::Float,
            Value::Integer(_) => ValueType::Integer,
            Value::Unsigned(_) => ValueType::Unsigned,
            Value::String(_) => ValueType::String,
            Value::Boolean(_) => ValueType::Boolean,
        }
    }
}

/// Strings of one column packed in one buffer: value `i` is `data[ends[i - 1]..ends[i]]`
/// (from 0 for `i == 0`). Ends are u32: the planner refuses a batch that would push one table
/// block's buffer past `u32::MAX` bytes (a scan of one series holding more than that in one
/// column is beyond what a memtable holds).
#[derive(Debug, Clone, Default)]
pub(super) struct Strings {
    ends: Vec<u32>,
    data: String,
}

impl Strings {
    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        }
    }

    fn replace(&mut self, row: usize, value: &str) {
        let (start, end) = (self.start(row), self.ends[row] as usize);
        self.data.replace_range(start..end, value);
        let grown = value.len() as i64 - (end - start) as i64;
        for e in &mut self.ends[row..] {
            *e = (i64::from(*e) + grown) as u32;
        }
    }

    fn push(&mut self, value: &str) {
        self.data.push_str(value);
        self.ends.push(self.data.len() as u32);
    }
}

/// The stored values of a column.
#[derive(Debug, Clone)]
pub(super) enum Values {
    Float(Vec<f64>),
    Integer(Vec<i64>),
    Unsigned(Vec<u64>),
    Boolean(Vec<bool>),
    String(Strings),
}

/// The fixed-width value types, so one generic path serves them all.
pub(super) trait Primitive: Copy + Default {
    fn values(values: &mut Values) -> Option<&mut Vec<Self>>;
    fn slice(values: &Values) -> Option<&[Self]>;
    fn wrap(values: Vec<Self>) -> Values;
}

macro_rules! primitive {
    ($t:ty, $variant:ident) => {
        impl Primitive for $t {
            fn values(values: &mut Values) -> Option<&mut Vec<Self>> {
                match values {
                    Values::$variant(v) => Some(v),
                    _ => None,
                }
            }

            fn slice(values: &Values) -> Option<&[Self]> {
                match values {
                    Values::$variant(v) => Some(v),
                    _ => None,
                }
            }

            fn wrap(values: Vec<Self>) -> Values {
                Values::$variant(values)
            }
        }
    };
}
primitive!(f64, Float);
primitive!(i64, Integer);
primitive!(u64, Unsigned);
primitive!(bool, Boolean);

/// One field column: a block of a table column, or a scan's column of one series (see the
/// module docs for its invariants).
#[derive(Debug, Clone)]
pub(super) struct ColumnData {
    values: Values,
    validity: Option<Vec<u64>>,
}

impl ColumnData {
    /// An empty column; allocates nothing.
    pub(super) fn empty(t: ValueType) -> ColumnData {
        let values = match t {
            ValueType::Float => Values::Float(Vec::new()),
            ValueType::Integer => Values::Integer(Vec::new()),
            ValueType::Unsigned => Values::Unsigned(Vec::new()),
            ValueType::Boolean => Values::Boolean(Vec::new()),
            ValueType::String => Values::String(Strings::default()),
        };
        ColumnData {
            values,
            validity: None,
        }
    }

    /// Stored values (nulls inside included); rows past this are null.
    pub(super) fn len(&self) -> usize {
        match &self.values {
            Values::Float(v) => v.len(),
            Values::Integer(v) => v.len(),
            Values::Unsigned(v) => v.len(),
            Values::Boolean(v) => v.len(),
            Values::String(s) => s.ends.len(),
        }
    }

    /// Values the column holds without reallocating.
    pub(super) fn capacity(&self) -> usize {
        match &self.values {
            Values::Float(v) => v.capacity(),
            Values::Integer(v) => v.capacity(),
            Values::Unsigned(v) => v.capacity(),
            Values::Boolean(v) => v.capacity(),
            Values::String(s) => s.ends.capacity(),
        }
    }

    fn value_bytes(&self) -> usize {
        match &self.values {
            Values::Float(_) => size_of::<f64>(),
            Values::Integer(_) => size_of::<i64>(),
            Values::Unsigned(_) => size_of::<u64>(),
            Values::Boolean(_) => size_of::<bool>(),
            Values::String(_) => size_of::<u32>(),
        }
    }

    /// Bytes of the string buffer in use (0 for other types).
    pub(super) fn string_bytes(&self) -> usize {
        match &self.values {
            Values::String(s) => s.data.len(),
            _ => 0,
        }
    }

    /// Heap bytes held, by capacity.
    pub(super) fn heap_bytes(&self) -> usize {
        let strings = match &self.values {
            Values::String(s) => s.data.capacity(),
            _ => 0,
        };
        let bitmap = self.validity.as_ref().map_or(0, |w| w.capacity() * 8);
        self.capacity() * self.value_bytes() + strings + bitmap
    }

    /// Grows the column to hold `capacity_rows` values (its bitmap, if any, as many bits) and
    /// `string_bytes` more string bytes without reallocating. The caller picks the capacity
    /// (`grown_capacity`, or a table block's fixed size).
    pub(super) fn reserve(&mut self, capacity_rows: usize, string_bytes: usize) {
        match &mut self.values {
            Values::Float(v) => reserve_exactly(v, capacity_rows),
            Values::Integer(v) => reserve_exactly(v, capacity_rows),
            Values::Unsigned(v) => reserve_exactly(v, capacity_rows),
            Values::Boolean(v) => reserve_exactly(v, capacity_rows),
            Values::String(s) => {
                reserve_exactly(&mut s.ends, capacity_rows);
                let needed = s.data.len() + string_bytes;
                reserve_string(&mut s.data, needed);
            }
        }
        if let Some(words) = &mut self.validity {
            reserve_exactly(words, words_for(capacity_rows));
        }
    }

    /// The bytes `reserve(capacity_rows, string_bytes)` will allocate, plus the bitmap a null
    /// may create if `may_store_null`.
    pub(super) fn growth_bytes(
        &self,
        capacity_rows: usize,
        string_bytes: usize,
        may_store_null: bool,
    ) -> usize {
        let capacity = self.capacity();
        let new_capacity = capacity.max(capacity_rows);
        let mut bytes = (new_capacity - capacity) * self.value_bytes();
        if let Values::String(s) = &self.values {
            bytes +=
                grown_capacity(s.data.capacity(), s.data.len() + string_bytes) - s.data.capacity();
        }
        match &self.validity {
            Some(w) => bytes += (w.capacity().max(words_for(capacity_rows)) - w.capacity()) * 8,
            None if may_store_null => bytes += words_for(new_capacity) * 8,
            None => {}
        }
        bytes
    }

    /// The typed values and the bitmap, if the column holds `T`.
    pub(super) fn typed<T: Primitive>(&mut self) -> Option<(&mut Vec<T>, &mut Option<Vec<u64>>)> {
        Some((T::values(&mut self.values)?, &mut self.validity))
    }

    /// Stores `value` at `row` (see `put_at`). Returns false (and stores nothing) if the
    /// column holds another type.
    pub(super) fn put<T: Primitive>(&mut self, row: usize, value: T) -> bool {
        let Some((values, validity)) = self.typed() else {
            return false;
        };
        put_at(values, validity, row, value);
        true
    }

    /// `put` for strings.
    pub(super) fn put_str(&mut self, row: usize, value: &str) -> bool {
        let Values::String(strings) = &mut self.values else {
            return false;
        };
        if row < strings.ends.len() {
            strings.replace(row, value);
        } else {
            if row > strings.ends.len() {
                let (len, capacity) = (strings.ends.len(), strings.ends.capacity());
                ensure_validity(&mut self.validity, len, capacity);
                let end = strings.ends.last().copied().unwrap_or(0);
                strings.ends.resize(row, end);
            }
            strings.push(value);
        }
        if let Some(words) = &mut self.validity {
            set_bit(words, row);
        }
        true
    }

    /// `put` for any value; false if the types differ.
    pub(super) fn put_value(&mut self, row: usize, value: Value<'_>) -> bool {
        match value {
            Value::Float(v) => self.put(row, v),
            Value::Integer(v) => self.put(row, v),
            Value::Unsigned(v) => self.put(row, v),
            Value::Boolean(v) => self.put(row, v),
            Value::String(v) => self.put_str(row, v),
        }
    }

    /// Writes a batch field at rows `start..start + values.len()` (nulls leave a row as it
    /// is). Returns false (and writes nothing) if the column holds another type.
    pub(super) fn write_rows<T: Primitive>(&mut self, start: usize, values: &[Option<T>]) -> bool {
        let Some((stored, validity)) = self.typed::<T>() else {
            return false;
        };
        let mut done = 0;
        if stored.len() == start && validity.is_none() {
            // The common case, rows in order and no nulls yet: a straight copy up to the
            // first null.
            stored.extend(values.iter().map_while(|v| *v));
            done = stored.len() - start;
        }
        for (i, v) in values.iter().enumerate().skip(done) {
            if let Some(v) = *v {
                put_at(stored, validity, start + i, v);
            }
        }
        true
    }

    /// `write_rows` for strings.
    pub(super) fn write_strs(&mut self, start: usize, values: &[Option<String>]) -> bool {
        if !matches!(self.values, Values::String(_)) {
            return false;
        }
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                self.put_str(start + i, v);
            }
        }
        true
    }

    /// A column of the given values, none null.
    pub(super) fn from_values<T: Primitive>(values: Vec<T>) -> ColumnData {
        ColumnData {
            values: T::wrap(values),
            validity: None,
        }
    }

    /// The values, if of type `T` and none null (ragged tail aside).
    pub(super) fn dense<T: Primitive>(&self) -> Option<&[T]> {
        if self.validity.is_some() {
            return None;
        }
        T::slice(&self.values)
    }

    /// A read view as a column of `rows` rows.
    pub(super) fn view(&self, rows: usize) -> ColumnRef<'_> {
        let values = match &self.values {
            Values::Float(v) => ColumnValues::Float(v),
            Values::Integer(v) => ColumnValues::Integer(v),
            Values::Unsigned(v) => ColumnValues::Unsigned(v),
            Values::Boolean(v) => ColumnValues::Boolean(v),
            Values::String(s) => ColumnValues::String(StringValues {
                ends: &s.ends,
                data: &s.data,
            }),
        };
        ColumnRef {
            rows,
            values,
            validity: self.validity.as_deref(),
        }
    }
}

/// One column of one series as a scan sees it, ready for an Arrow builder: `rows()` rows, of
/// which the first `values().len()` are stored (dense, nulls hold the type's default) and the
/// rest are null. `validity()` is `None` when every stored value is present, else an LSB-first
/// bitmap over the stored values (Arrow's bit order, 64-bit words).
#[derive(Debug, Clone, Copy)]
pub struct ColumnRef<'a> {
    rows: usize,
    values: ColumnValues<'a>,
    validity: Option<&'a [u64]>,
}

impl<'a> ColumnRef<'a> {
    /// Rows of the series (stored values plus the null tail).
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn values(&self) -> ColumnValues<'a> {
        self.values
    }

    pub fn validity(&self) -> Option<&'a [u64]> {
        self.validity
    }

    pub fn value_type(&self) -> ValueType {
        self.values.value_type()
    }

    pub fn is_valid(&self, row: usize) -> bool {
        row < self.values.len() && self.validity.is_none_or(|w| bit(w, row))
    }

    pub fn get(&self, row: usize) -> Option<Value<'a>> {
        if !self.is_valid(row) {
            return None;
        }
        Some(match self.values {
            ColumnValues::Float(v) => Value::Float(v[row]),
            ColumnValues::Integer(v) => Value::Integer(v[row]),
            ColumnValues::Unsigned(v) => Value::Unsigned(v[row]),
            ColumnValues::Boolean(v) => Value::Boolean(v[row]),
            ColumnValues::String(s) => Value::String(s.get(row)?),
        })
    }
}

/// The stored values of a column, by type.
#[derive(Debug, Clone, Copy)]
pub enum ColumnValues<'a> {
    Float(&'a [f64]),
    Integer(&'a [i64]),
    Unsigned(&'a [u64]),
    Boolean(&'a [bool]),
    String(StringValues<'a>),
}

impl ColumnValues<'_> {
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Float(v) => v.len(),
            ColumnValues::Integer(v) => v.len(),
            ColumnValues::Unsigned(v) => v.len(),
            ColumnValues::Boolean(v) => v.len(),
            ColumnValues::String(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn value_type(&self) -> ValueType {
        match self {
            ColumnValues::Float(_) => ValueType::Float,
            ColumnValues::Integer(_) => ValueType::Integer,
            ColumnValues::Unsigned(_) => ValueType::Unsigned,
            ColumnValues::Boolean(_) => ValueType::Boolean,
            ColumnValues::String(_) => ValueType::String,
        }
    }
}

/// Packed strings: value `i` is `data()[ends()[i - 1]..ends()[i]]` (from 0 for `i == 0`), the
/// shape of an Arrow string array's offsets without the leading zero.
#[derive(Debug, Clone, Copy)]
pub struct StringValues<'a> {
    ends: &'a [u32],
    data: &'a str,
}

impl<'a> StringValues<'a> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn ends(&self) -> &'a [u32] {
        self.ends
    }

    pub fn data(&self) -> &'a str {
        self.data
    }

    /// Value `i` (a null slot reads as ""); None if out of range.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.data.get(start..end)
    }
}
