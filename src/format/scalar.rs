//! Text of single values shared by the CSV/TSV and JSON writers: integers, floats, timestamps
//! and dates, appended straight to the answer buffer without intermediate strings.
//!
//! The formats are CnosDB 2.4's (arrow-rs 42), which chronoshard reproduces byte for byte:
//! - floats in CSV are lexical-core's: shortest round-trip digits, always with a fraction
//!   (`56.0`), scientific from 10^10 up and below 10^-5 (`1.0e10`, `1.5e-6`), `NaN`, `inf`;
//! - floats in JSON are serde_json's (ryu): `56.0`, scientific from 10^16 up and below 10^-5
//!   (`1e16`, `1.5e-6`); non-finite values are not JSON and are left out by the caller;
//! - timestamps without a zone are `YYYY-MM-DDTHH:MM:SS` plus, in CSV, always nine fractional
//!   digits, and in JSON chrono's `Debug` fraction (none, 3, 6 or 9 digits);
//! - years outside 0..=9999 carry a sign and at least four digits, as chrono prints them.
//!
//! Shortest digits come from the standard library's `{:e}`, which (like ryu and dragonbox)
//! yields the shortest digit string that reads back to the same float.

use std::fmt::{self, Write as _};

use arrow::datatypes::TimeUnit;

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// Appends the decimal digits of `value`.
pub(super) fn push_int(out: &mut Vec<u8>, value: i128) {
    if value < 0 {
        out.push(b'-');
    }
    let mut rest = value.unsigned_abs();
    // 39 digits hold u128::MAX.
    let mut digits = [0u8; 39];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `value` zero-padded to `width` digits.
fn push_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut rest = value;
    let mut start = digits.len();
    while rest > 0 {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let start = start.min(digits.len() - width.min(digits.len()));
    out.extend_from_slice(&digits[start..]);
}

/// A float type whose shortest decimal form we can print.
pub(super) trait Float: Copy + fmt::LowerExp {
    fn is_nan(self) -> bool;
    fn is_infinite(self) -> bool;
    fn is_sign_negative(self) -> bool;
}

impl Float for f32 {
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn is_infinite(self) -> bool {
        f32::is_infinite(self)
    }
    fn is_sign_negative(self) -> bool {
        f32::is_sign_negative(self)
    }
}

impl Float for f64 {
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn is_infinite(self) -> bool {
        f64::is_infinite(self)
    }
    fn is_sign_negative(self) -> bool {
        f64::is_sign_negative(self)
    }
}

/// The shortest round-trip digits of a finite float: `0.d1d2d3… × 10^(exp + 1)`, i.e. `exp`
/// is the power of ten of the first digit.
struct Shortest {
    negative: bool,
    digits: [u8; 40],
    len: usize,
    exp: i32,
}

/// A fixed-capacity `fmt::Write` target, so `{:e}` needs no heap allocation.
struct StackText {
    bytes: [u8; 48],
    len: usize,
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Shortest {
    /// Splits std's `{:e}` text (`-6.326195071473769e-1`, `1e20`, `0e0`) into digits and
    /// exponent. `None` only if the text does not fit 48 bytes, which no f32/f64 reaches.
    fn of<F: Float>(value: F) -> Option<Self> {
        let mut text = StackText {
            bytes: [0; 48],
            len: 0,
        };
        write!(text, "{value:e}").ok()?;
        let text = &text.bytes[..text.len];
        let (mantissa, exp) = text.split_at(text.iter().position(|&b| b == b'e')?);
        let exp: i32 = std::str::from_utf8(&exp[1..]).ok()?.parse().ok()?;
        let mut shortest = Shortest {
            negative: value.is_sign_negative(),
            digits: [0; 40],
            len: 0,
            exp,
        };
        for &b in mantissa.iter().filter(|b| b.is_ascii_digit()) {
            *shortest.digits.get_mut(shortest.len)? = b;
            shortest.len += 1;
        }
        Some(shortest)
    }

    fn digits(&self) -> &[u8] {
        &self.digits[..self.len]
    }
}

/// Appends `value` as lexical-core (arrow-csv 42, so CnosDB's CSV) writes it.
pub(super) fn push_float_lexical<F: Float>(out: &mut Vec<u8>, value: F) {
    if value.is_nan() {
        return out.extend_from_slice(b"NaN");
    }
    if value.is_infinite() {
        let text: &[u8] = if value.is_sign_negative() {
            b"-inf"
        } else {
            b"inf"
        };
        return out.extend_from_slice(text);
    }
    let Some(s) = Shortest::of(value) else {
        return out.extend_from_slice(format!("{value:e}").as_bytes());
    };
    if s.negative {
        out.push(b'-');
    }
    let digits = s.digits();
    if s.exp < -5 || s.exp > 9 {
        out.push(digits[0]);
        out.push(b'.');
        match &digits[1..] {
            [] => out.push(b'0'),
            rest => out.extend_from_slice(rest),
        }
        out.push(b'e');
        push_int(out, s.exp.into());
    } else if s.exp >= 0 {
        let int_len = s.exp as usize + 1;
        for i in 0..int_len {
            out.push(digits.get(i).copied().unwrap_or(b'0'));
        }
        out.push(b'.');
        match digits.get(int_len..) {
            Some(rest) if !rest.is_empty() => out.extend_from_slice(rest),
            _ => out.push(b'0'),
        }
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (-s.exp - 1) as usize, b'0');
        out.extend_from_slice(digits);
    }
}

/// Appends a finite `value` as serde_json (ryu; arrow-json 42, so CnosDB's JSON) writes an
/// f64. Returns false, appending nothing, for NaN and infinities, which JSON cannot hold.
pub(super) fn push_float_json<F: Float>(out: &mut Vec<u8>, value: F) -> bool {
    if value.is_nan() || value.is_infinite() {
        return false;
    }
    let Some(s) = Shortest::of(value) else {
        out.extend_from_slice(format!("{value:e}").as_bytes());
        return true;
    };
    if s.negative {
        out.push(b'-');
    }
    let digits = s.digits();
    let n = digits.len() as i32;
    // As in ryu: the value is digits × 10^k and 10^(kk-1) <= |value| < 10^kk.
    let kk = s.exp + 1;
    let k = kk - n;
    if (0..=16).contains(&kk) && k >= 0 {
        out.extend_from_slice(digits);
        out.resize(out.len() + k as usize, b'0');
        out.extend_from_slice(b".0");
    } else if 0 < kk && kk <= 16 {
        let (int, frac) = digits.split_at(kk as usize);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else if -5 < kk && kk <= 0 {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (-kk) as usize, b'0');
        out.extend_from_slice(digits);
    } else {
        out.push(digits[0]);
        if n > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        push_int(out, (kk - 1).into());
    }
    true
}

/// A timestamp split into whole seconds since the epoch and the nanoseconds past them
/// (always non-negative, so instants before 1970 round down as calendars do).
fn split_timestamp(value: i64, unit: TimeUnit) -> (i64, u32) {
    let per_second = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => NANOS_PER_SECOND,
    };
    let seconds = value.div_euclid(per_second);
    let nanos = value.rem_euclid(per_second) * (NANOS_PER_SECOND / per_second);
    (seconds, nanos as u32)
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, exact over the whole i64 range that seconds / 86400 can produce).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `YYYY-MM-DD`; years outside 0..=9999 as chrono's `%Y` does (`+10000`, `-0001`).
fn push_date(out: &mut Vec<u8>, days: i64) {
    let (year, month, day) = civil_from_days(days);
    if (0..=9999).contains(&year) {
        push_padded(out, year as u32, 4);
    } else {
        out.push(if year < 0 { b'-' } else { b'+' });
        let abs = year.unsigned_abs();
        if abs < 1000 {
            push_padded(out, abs as u32, 4);
        } else {
            push_int(out, abs.into());
        }
    }
    out.push(b'-');
    push_padded(out, month, 2);
    out.push(b'-');
    push_padded(out, day, 2);
}

/// Appends a Date32 value (days since the epoch) as `YYYY-MM-DD`, arrow's `%F`.
pub(super) fn push_date32(out: &mut Vec<u8>, days: i32) {
    push_date(out, days.into());
}

/// Appends `YYYY-MM-DDTHH:MM:SS`, returning the nanoseconds past that second.
fn push_datetime_seconds(out: &mut Vec<u8>, value: i64, unit: TimeUnit) -> u32 {
    let (seconds, nanos) = split_timestamp(value, unit);
    push_date(out, seconds.div_euclid(SECONDS_PER_DAY));
    let of_day = seconds.rem_euclid(SECONDS_PER_DAY) as u32;
    out.push(b'T');
    push_padded(out, of_day / 3600, 2);
    out.push(b':');
    push_padded(out, of_day / 60 % 60, 2);
    out.push(b':');
    push_padded(out, of_day % 60, 2);
    nanos
}

/// Appends a zone-less timestamp as arrow-csv 42 writes it: `%Y-%m-%dT%H:%M:%S.%9f`.
pub(super) fn push_timestamp_csv(out: &mut Vec<u8>, value: i64, unit: TimeUnit) {
    let nanos = push_datetime_seconds(out, value, unit);
    out.push(b'.');
    push_padded(out, nanos, 9);
}

/// Appends a zone-less timestamp as chrono's `NaiveDateTime` `Debug` (arrow 42's display, so
/// CnosDB's JSON) writes it: no fraction when whole, else 3, 6 or 9 digits.
pub(super) fn push_timestamp_json(out: &mut Vec<u8>, value: i64, unit: TimeUnit) {
    let nanos = push_datetime_seconds(out, value, unit);
    if nanos == 0 {
        return;
    }
    out.push(b'.');
    if nanos % 1_000_000 == 0 {
        push_padded(out, nanos / 1_000_000, 3);
    } else if nanos % 1_000 == 0 {
        push_padded(out, nanos / 1_000, 6);
    } else {
        push_padded(out, nanos, 9);
    }
}
