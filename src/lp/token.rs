//! Leaves of the line-protocol parser: the byte classes that end each kind of token, and the
//! parsing of numbers, booleans and timestamps from a complete token. Pure functions on byte
//! slices; nothing here allocates or knows about lines.

/// Bytes that end a measurement: `,` (tags follow), space, backslash (escape), line ends.
pub const MEASUREMENT: u8 = 1;
/// Bytes that end a tag key or a field key: the above and `=`.
pub const KEY: u8 = 2;
/// Bytes that end a tag value: `,`, space, backslash, line ends.
pub const TAG_VALUE: u8 = 4;
/// Bytes that end an unquoted field value: `,`, space, line ends.
pub const FIELD_VALUE: u8 = 8;
/// Bytes that stop the scan of a quoted string: `"`, backslash, line ends (to count lines).
pub const STRING: u8 = 16;
/// Bytes that end a timestamp: space, tab, line ends.
pub const TIMESTAMP: u8 = 32;
/// Line ends alone: `\n` and `\r`.
pub const EOL: u8 = 64;

const LINE_END: u8 = MEASUREMENT | KEY | TAG_VALUE | FIELD_VALUE | STRING | TIMESTAMP | EOL;

/// For each byte, the set of token kinds it ends.
pub static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    t[b'\n' as usize] = LINE_END;
    t[b'\r' as usize] = LINE_END;
    t[b',' as usize] = MEASUREMENT | KEY | TAG_VALUE | FIELD_VALUE;
    t[b' ' as usize] = MEASUREMENT | KEY | TAG_VALUE | FIELD_VALUE | TIMESTAMP;
    t[b'\\' as usize] = MEASUREMENT | KEY | TAG_VALUE | STRING;
    t[b'=' as usize] = KEY;
    t[b'"' as usize] = STRING;
    t[b'\t' as usize] = TIMESTAMP;
    t
}

/// Index of the first byte at or after `from` whose class intersects `MASK` (or `bytes.len()`).
///
/// Eight bytes at a time (SWAR): every delimiter is below `0x2D` except `=` and `\\`, so a word
/// with no byte below `0x2D` (and no `=` or backslash, when `MASK` has them) holds no delimiter
/// and is skipped whole. The candidates of a word are checked one by one against `CLASS`.
#[inline]
pub fn scan<const MASK: u8>(bytes: &[u8], from: usize) -> usize {
    let mut rest = bytes.get(from..).unwrap_or_default();
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        let w = u64::from_le_bytes(*word);
        let mut flagged = candidates::<MASK>(w);
        while flagged != 0 {
            let k = flagged.trailing_zeros() / 8;
            if CLASS[usize::from((w >> (k * 8)) as u8)] & MASK != 0 {
                return bytes.len() - rest.len() + k as usize;
            }
            flagged &= flagged - 1;
        }
        rest = tail;
    }
    for (k, &b) in rest.iter().enumerate() {
        if CLASS[usize::from(b)] & MASK != 0 {
            return bytes.len() - rest.len() + k;
        }
    }
    bytes.len()
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
const EQUALS_IN: u8 = CLASS[b'=' as usize];
const BACKSLASH_IN: u8 = CLASS[b'\\' as usize];

/// Bytes equal to `=` or `\\` in all bits but those where the two differ (`0x61`): that is
/// `=`, `\\` and six rare bytes (`<`, `]`, `|`, `}`, 0x1C, 0x1D), which the class check rejects.
const EQUALS_OR_BACKSLASH_BITS: u64 = ONES * (!(b'=' ^ b'\\') as u64);

/// High bit set in (at least) the lowest byte of `w` that is below `0x2D`, or `=` or a
/// backslash when `MASK` stops at either; bytes above the lowest flagged one may be flagged
/// spuriously, which `scan` filters out against `CLASS`.
#[inline]
fn candidates<const MASK: u8>(w: u64) -> u64 {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let mut flagged = w.wrapping_sub(ONES * 0x2D) & !w;
    if (EQUALS_IN | BACKSLASH_IN) & MASK != 0 {
        flagged |= zero((w ^ (ONES * u64::from(b'='))) & EQUALS_OR_BACKSLASH_BITS);
    }
    flagged & HIGHS
}

const _: () = {
    // Every byte with a class must be a candidate of `candidates`.
    let mut b = 0;
    while b < 256 {
        assert!(CLASS[b] == 0 || b < 0x2D || b == b'=' as usize || b == b'\\' as usize);
        b += 1;
    }
};

/// `10^n` for the decimal fast path; every one is exact in an `f64`.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Digits up to this many make a mantissa below 2^53, exact in an `f64`.
const EXACT_DIGITS: usize = 15;

/// Clinger's fast path for `<int>.<frac>`: `int_part` with `int_digits` digits was read before
/// the `.` at `dot`. When all digits fit in 15, mantissa and power of ten are exact and one
/// division rounds correctly, so the result is what a full parser gives. Returns the value and
/// the index after the fraction, or `None` to use the full parser.
#[inline]
pub fn short_decimal(
    bytes: &[u8],
    negative: bool,
    int_part: u64,
    int_digits: usize,
    dot: usize,
) -> Option<(f64, usize)> {
    let mut mantissa = int_part;
    let mut i = dot + 1;
    while let Some(&b) = bytes.get(i) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let frac_digits = i - dot - 1;
    if int_digits + frac_digits > EXACT_DIGITS {
        return None;
    }
    let f = mantissa as f64 / POW10.get(frac_digits)?;
    Some((if negative { -f } else { f }, i))
}

/// `magnitude` with its sign as an `f64`, if the conversion is exact.
#[inline]
pub fn exact_float(negative: bool, magnitude: u64) -> Option<f64> {
    let f = (magnitude < EXACT_F64_INT).then_some(magnitude as f64)?;
    Some(if negative { -f } else { f })
}

/// An integer at `from` in its common short form: an optional `-` and 1 to 19 digits, which
/// cannot overflow a `u64`. Returns (negative, magnitude, index after the digits); `None` when
/// the text does not start that way or has more digits (the general parsers then decide).
#[inline]
pub fn leading_integer(bytes: &[u8], from: usize) -> Option<(bool, u64, usize)> {
    let negative = bytes.get(from) == Some(&b'-');
    let start = from + usize::from(negative);
    let mut i = start;
    let mut v: u64 = 0;
    while let Some(&b) = bytes.get(i) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = v.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let digits = i - start;
    (digits > 0 && digits <= SAFE_DIGITS).then_some((negative, v, i))
}

/// The `i64` of a sign and magnitude, if in range.
#[inline]
pub fn to_i64(negative: bool, magnitude: u64) -> Option<i64> {
    if negative {
        (magnitude <= i64::MIN.unsigned_abs()).then(|| 0i64.wrapping_sub_unsigned(magnitude))
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Index of the first byte at or after `from` that is not `byte` (or `bytes.len()`).
#[inline]
pub fn scan_while(bytes: &[u8], from: usize, byte: u8) -> usize {
    let mut i = from;
    while bytes.get(i) == Some(&byte) {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `from` that is neither a space nor a tab.
#[inline]
pub fn scan_blanks(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(b' ' | b'\t') = bytes.get(i) {
        i += 1;
    }
    i
}

/// True for the bytes that end a line.
#[inline]
pub fn is_line_end(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// Why a number token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberError {
    /// Not a number of the expected shape.
    Invalid,
    /// A well-formed integer outside the range of its type.
    Overflow,
}

/// A parsed numeric field value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
}

/// Parses a whole unquoted numeric field value (its first byte is `+`, `-` or a digit):
/// `<i64>i`, `<u64>u`, or a float.
pub fn number(token: &str) -> Result<Number, NumberError> {
    let bytes = token.as_bytes();
    match bytes.split_last() {
        Some((b'i', head)) => signed(head).map(Number::Integer),
        Some((b'u', head)) => unsigned(head).map(Number::Unsigned),
        _ => float(token).map(Number::Float),
    }
}

/// Largest integer below which every integer converts to `f64` exactly.
const EXACT_F64_INT: u64 = 1 << 53;

/// A float token. Plain integers (the common case in real data) skip the general parser.
fn float(token: &str) -> Result<f64, NumberError> {
    let bytes = token.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if let Some(f) = digits_u64(digits)
        .ok()
        .and_then(|v| exact_float(negative, v))
    {
        return Ok(f);
    }
    token.parse::<f64>().map_err(|_| NumberError::Invalid)
}

/// An `i64`: optional `-`, then one or more ASCII digits.
pub fn signed(bytes: &[u8]) -> Result<i64, NumberError> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, bytes),
    };
    to_i64(negative, digits_u64(digits)?).ok_or(NumberError::Overflow)
}

/// A `u64`: one or more ASCII digits, no sign.
pub fn unsigned(bytes: &[u8]) -> Result<u64, NumberError> {
    digits_u64(bytes)
}

/// Up to this many digits cannot overflow a `u64`.
const SAFE_DIGITS: usize = 19;

/// One or more ASCII digits as a `u64`. Any other byte makes it `Invalid` (even when the digits
/// before it already overflowed), so the error says what is wrong first.
fn digits_u64(bytes: &[u8]) -> Result<u64, NumberError> {
    if bytes.is_empty() {
        return Err(NumberError::Invalid);
    }
    if bytes.len() <= SAFE_DIGITS {
        let mut v: u64 = 0;
        for &b in bytes {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return Err(NumberError::Invalid);
            }
            v = v * 10 + u64::from(d);
        }
        return Ok(v);
    }
    if !bytes.iter().all(u8::is_ascii_digit) {
        return Err(NumberError::Invalid);
    }
    let mut v: u64 = 0;
    for &b in bytes {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(NumberError::Overflow)?;
    }
    Ok(v)
}

/// One of the boolean spellings CnosDB and InfluxDB accept.
pub fn boolean(token: &[u8]) -> Option<bool> {
    match token {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(false),
        _ => None,
    }
}
