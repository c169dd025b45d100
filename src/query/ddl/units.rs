//! Durations and sizes as CnosDB's `WITH` options write and `DESCRIBE DATABASE` prints them.
//!
//! Durations follow humantime (which CnosDB uses): integer amounts with units `ns us ms s m h d
//! w M y` (and their long names), a month being 30.44 days and a year 365.25 days, printed
//! largest unit first (`3months 8days 16h 19m 12s`). Sizes are an amount with a decimal or
//! binary unit, printed in MiB (`128 MiB`, `286.102294921875 MiB`).

use std::time::Duration;

const MINUTE_S: u64 = 60;
const HOUR_S: u64 = 3_600;
const DAY_S: u64 = 86_400;
const MONTH_S: u64 = 2_630_016;
const YEAR_S: u64 = 31_557_600;

/// Nanoseconds per unit name, or `None` for an unknown unit.
fn unit_nanos(unit: &str) -> Option<u128> {
    const S: u128 = 1_000_000_000;
    let n = match unit {
        "nanos" | "nsec" | "ns" => 1,
        "usec" | "us" | "µs" => 1_000,
        "millis" | "msec" | "ms" => 1_000_000,
        "seconds" | "second" | "secs" | "sec" | "s" => S,
        "minutes" | "minute" | "mins" | "min" | "m" => S * MINUTE_S as u128,
        "hours" | "hour" | "hrs" | "hr" | "h" => S * HOUR_S as u128,
        "days" | "day" | "d" => S * DAY_S as u128,
        "weeks" | "week" | "w" => S * 7 * DAY_S as u128,
        "months" | "month" | "M" => S * MONTH_S as u128,
        "years" | "year" | "y" => S * YEAR_S as u128,
        _ => return None,
    };
    Some(n)
}

/// `'10d'`, `'2y1M'`, `'1h 30m'`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration '{text}': {why}");
    let mut total: u128 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let amount: u128 = rest[..digits]
            .parse()
            .map_err(|_| bad("number too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let per = unit_nanos(unit).ok_or_else(|| bad(&format!("unknown unit {unit:?}")))?;
        total = amount
            .checked_mul(per)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| bad("too large"))?;
        rest = rest[unit_len..].trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("too large"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// humantime's `format_duration`: `1year`, `10days`, `3months 8days 16h 19m 12s`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos() as u64;
    let day_s = secs % YEAR_S % MONTH_S % DAY_S;
    let items: [(u64, &str, bool); 9] = [
        (secs / YEAR_S, "year", true),
        (secs % YEAR_S / MONTH_S, "month", true),
        (secs % YEAR_S % MONTH_S / DAY_S, "day", true),
        (day_s / HOUR_S, "h", false),
        (day_s % HOUR_S / MINUTE_S, "m", false),
        (day_s % MINUTE_S, "s", false),
        (nanos / 1_000_000, "ms", false),
        (nanos / 1_000 % 1_000, "us", false),
        (nanos % 1_000, "ns", false),
    ];
    let mut out = String::new();
    for (value, name, plural) in items {
        if value == 0 {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&value.to_string());
        out.push_str(name);
        if plural && value > 1 {
            out.push('s');
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// `'128MiB'`, `'300M'`, `'1 GiB'`, `'4096'` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size '{text}'");
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let amount: f64 = t[..split].parse().map_err(|_| bad())?;
    let per: u64 = match t[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = amount * per as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Bytes in MiB as CnosDB prints them.
pub fn format_size(bytes: u64) -> String {
    format!("{} MiB", bytes as f64 / (1u64 << 20) as f64)
}
