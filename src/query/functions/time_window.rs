//! CnosDB's `time_window(time, window[, slide[, start]])`: the window a row's time falls in, as
//! a struct `{start, end}` of timestamps in the time column's type (end exclusive).
//!
//! Windows are `window` long and begin every `slide` (default: `window`, a tumbling window),
//! aligned to `start` (default: the epoch): a window begins at `start + k * slide` for every
//! integer k. `window` and `slide` are duration strings (`'10m'`, `'1h'`, `'3d'`, CnosDB's
//! humantime units) or intervals without months, between 1ms and 365d, and whole in the time
//! column's unit; `start` is a timestamp or a timestamp string.
//!
//! A tumbling window is this scalar function, evaluated where DataFusion puts it (on the shards,
//! in the fragment's projection). A sliding window (`slide != window`) puts a row in every
//! window that contains it, so it multiplies rows: the analyzer rule in `time_window/rule.rs`
//! replaces the call by a column of an `Unnest` over [`TimeWindows`], the list of a row's
//! windows. This function itself refuses to run a sliding window (it would have to pick one).
//!
//! Unlike CnosDB 2.4 (whose sliding filter checks only the latest window, so a row can be
//! listed in a window that ends before it), a row is placed exactly in the windows with
//! `start <= time < end`; when `slide > window` a row between two windows is in none and drops
//! out, as in CnosDB.

pub mod rule;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, StructArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type, TimeUnit};
use datafusion::common::{exec_err, plan_datafusion_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::query::ddl::units::parse_duration;

/// The SQL name (DataFusion looks functions up in lower case).
pub const NAME: &str = "time_window";
/// The struct's field names, as CnosDB 2.4 prints them (`{start: ..., end: ...}`).
pub const START: &str = "start";
pub const END: &str = "end";

const NANOS_PER_MS: i128 = 1_000_000;
const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;
/// CnosDB's bounds on window and slide: (0, 365d], and nothing finer than a millisecond.
const DURATION_NS_MIN: i128 = NANOS_PER_MS;
const DURATION_NS_MAX: i128 = 365 * NANOS_PER_DAY;
/// The most windows one row may be in (CnosDB's bound): each is a row after the expansion.
pub const WINDOWS_PER_ROW_MAX: i64 = 100;

/// The function users call (the list form is not registered: only the rule builds it).
pub fn udf() -> ScalarUDF {
    ScalarUDF::from(TimeWindow::new())
}

/// Window geometry in the time column's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub window: i64,
    pub slide: i64,
    /// The origin windows are aligned to.
    pub start: i64,
}

impl Spec {
    pub fn is_tumbling(&self) -> bool {
        self.window == self.slide
    }

    /// How many windows can contain one time: ceil(window / slide).
    pub fn windows_per_row(&self) -> i64 {
        (self.window + self.slide - 1) / self.slide
    }

    /// The latest window start at or before `t`.
    fn last_start(&self, t: i64) -> i128 {
        let t = i128::from(t);
        t - (t - i128::from(self.start)).rem_euclid(i128::from(self.slide))
    }

    /// The tumbling window of `t` (`None` past the timestamp range).
    pub fn window_of(&self, t: i64) -> Option<(i64, i64)> {
        let start = self.last_start(t);
        let end = start + i128::from(self.window);
        Some((i64::try_from(start).ok()?, i64::try_from(end).ok()?))
    }

    /// Every window with `start <= t < end`, latest first (CnosDB's order), into `out`.
    /// False if one of them passes the timestamp range.
    pub fn windows_of(&self, t: i64, out: &mut Vec<(i64, i64)>) -> bool {
        let mut start = self.last_start(t);
        while start + i128::from(self.window) > i128::from(t) {
            let end = start + i128::from(self.window);
            match (i64::try_from(start), i64::try_from(end)) {
                (Ok(s), Ok(e)) => out.push((s, e)),
                _ => return false,
            }
            start -= i128::from(self.slide);
        }
        true
    }
}

fn unit_nanos(unit: TimeUnit) -> i128 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "second",
        TimeUnit::Millisecond => "millisecond",
        TimeUnit::Microsecond => "microsecond",
        TimeUnit::Nanosecond => "nanosecond",
    }
}

/// A window or slide argument in nanoseconds, checked against CnosDB's bounds.
fn duration_ns(what: &str, value: &ScalarValue) -> Result<i128> {
    let ns = match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            text_ns(s).map_err(|e| plan_datafusion_err!("{NAME}: the {what} is an {e}"))?
        }
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i128::from(v.days) * NANOS_PER_DAY + i128::from(v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i128::from(v.days) * NANOS_PER_DAY + i128::from(v.milliseconds) * NANOS_PER_MS
        }
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
            return plan_err!(
                "{NAME}: the {what} has months, which have no fixed length; give it in days"
            )
        }
        other => {
            return plan_err!(
                "{NAME}: the {what} must be a duration like '10m' or an interval, not {other:?}"
            )
        }
    };
    if !(DURATION_NS_MIN..=DURATION_NS_MAX).contains(&ns) {
        return plan_err!(
            "{NAME}: the {what} must be between 1ms and 365d, found {}",
            describe_ns(ns)
        );
    }
    Ok(ns)
}

/// A duration string: CnosDB's humantime form (`'10m'`, `'1h 30m'`), or one decimal amount
/// with a unit (`'0.5s'`, `'1.5h'`) that comes to a whole number of nanoseconds.
fn text_ns(text: &str) -> std::result::Result<i128, String> {
    let Some((whole, rest)) = text.trim().split_once('.') else {
        return parse_duration(text).map(|d| d.as_nanos() as i128);
    };
    let bad = || format!("invalid duration '{text}'");
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (fraction, unit) = rest.split_at(digits);
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || fraction.is_empty() {
        return Err(bad());
    }
    // The unit's length in nanoseconds, through the same unit table.
    let per = parse_duration(&format!("1{}", unit.trim()))
        .map_err(|_| bad())?
        .as_nanos();
    let scale = 10u128
        .checked_pow(u32::try_from(fraction.len()).map_err(|_| bad())?)
        .ok_or_else(bad)?;
    let whole: u128 = whole.parse().map_err(|_| bad())?;
    let fraction: u128 = fraction.parse().map_err(|_| bad())?;
    let ns = whole
        .checked_mul(per)
        .and_then(|w| fraction.checked_mul(per).map(|f| (w, f)))
        .ok_or_else(bad)?;
    if ns.1 % scale != 0 {
        return Err(format!("{}: finer than a nanosecond", bad()));
    }
    i128::try_from(ns.0 + ns.1 / scale).map_err(|_| bad())
}

/// `1500000ns` reads badly; print the largest exact unit.
fn describe_ns(ns: i128) -> String {
    for (per, unit) in [
        (NANOS_PER_DAY, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (NANOS_PER_MS, "ms"),
        (1_000, "us"),
    ] {
        if ns != 0 && ns % per == 0 {
            return format!("{}{unit}", ns / per);
        }
    }
    format!("{ns}ns")
}

/// Nanoseconds in the column's unit; refuses a duration the unit cannot express.
fn in_unit(what: &str, ns: i128, unit: TimeUnit) -> Result<i64> {
    let per = unit_nanos(unit);
    if ns % per != 0 {
        return plan_err!(
            "{NAME}: the {what} ({}) is not a whole number of {}s, the time column's unit",
            describe_ns(ns),
            unit_name(unit)
        );
    }
    i64::try_from(ns / per).map_err(|_| plan_datafusion_err!("{NAME}: the {what} is too large"))
}

/// The `start` argument in the column's unit (rounded down).
fn origin(value: &ScalarValue, unit: TimeUnit) -> Result<i64> {
    let ns: i128 = match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => string_to_timestamp_nanos(s)
            .map_err(|e| plan_datafusion_err!("{NAME}: the start {s:?} is not a timestamp: {e}"))?
            .into(),
        ScalarValue::TimestampSecond(Some(v), _) => i128::from(*v) * 1_000_000_000,
        ScalarValue::TimestampMillisecond(Some(v), _) => i128::from(*v) * 1_000_000,
        ScalarValue::TimestampMicrosecond(Some(v), _) => i128::from(*v) * 1_000,
        ScalarValue::TimestampNanosecond(Some(v), _) => i128::from(*v),
        other => return plan_err!("{NAME}: the start must be a timestamp, not {other:?}"),
    };
    i64::try_from(ns.div_euclid(unit_nanos(unit)))
        .map_err(|_| plan_datafusion_err!("{NAME}: the start is out of range"))
}

/// The geometry of a call whose window arguments are the constants `args[1..]`.
pub fn spec(unit: TimeUnit, args: &[&ScalarValue]) -> Result<Spec> {
    let (window, slide, start) = match args {
        [window] => (window, None, None),
        [window, slide] => (window, Some(slide), None),
        [window, slide, start] => (window, Some(slide), Some(start)),
        _ => return plan_err!("{NAME}(time, window[, slide[, start]]) takes 2 to 4 arguments"),
    };
    let window = in_unit("window", duration_ns("window", window)?, unit)?;
    let slide = match slide {
        Some(s) => in_unit("slide", duration_ns("slide", s)?, unit)?,
        None => window,
    };
    let start = match start {
        Some(s) => origin(s, unit)?,
        None => 0,
    };
    let spec = Spec {
        window,
        slide,
        start,
    };
    if spec.windows_per_row() > WINDOWS_PER_ROW_MAX {
        return plan_err!(
            "{NAME}: this slide puts every row in up to {} windows; at most \
             {WINDOWS_PER_ROW_MAX} are allowed",
            spec.windows_per_row()
        );
    }
    Ok(spec)
}

/// The unit of the time argument, or a planning error for anything but a timestamp.
fn time_unit(t: &DataType) -> Result<TimeUnit> {
    match t {
        DataType::Timestamp(unit, _) => Ok(*unit),
        other => plan_err!("{NAME}: the first argument must be a timestamp, not {other}"),
    }
}

/// `Struct{start, end}` of the time column's type.
pub fn window_type(time: &DataType) -> DataType {
    DataType::Struct(window_fields(time))
}

fn window_fields(time: &DataType) -> Fields {
    Fields::from(vec![
        Field::new(START, time.clone(), false),
        Field::new(END, time.clone(), false),
    ])
}

/// Checks argument types: a timestamp, then durations (strings or intervals), then a start.
fn check_types(arg_types: &[DataType]) -> Result<Vec<DataType>> {
    let Some((time, rest)) = arg_types.split_first() else {
        return plan_err!("{NAME}(time, window[, slide[, start]]) takes 2 to 4 arguments");
    };
    time_unit(time)?;
    if rest.is_empty() || rest.len() > 3 {
        return plan_err!("{NAME}(time, window[, slide[, start]]) takes 2 to 4 arguments");
    }
    for (i, t) in rest.iter().enumerate() {
        let ok = match i {
            0 | 1 => matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Interval(_)
            ),
            _ => matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Timestamp(..)
            ),
        };
        if !ok {
            let what = ["window", "slide", "start"][i];
            return plan_err!("{NAME}: the {what} cannot be of type {t}");
        }
    }
    Ok(arg_types.to_vec())
}

/// The constant window arguments of an invocation, or an error naming the one that is not.
fn scalar_args(args: &[ColumnarValue]) -> Result<Vec<&ScalarValue>> {
    args.iter()
        .map(|a| match a {
            ColumnarValue::Scalar(s) => Ok(s),
            ColumnarValue::Array(_) => {
                exec_err!("{NAME}: window, slide and start must be constants")
            }
        })
        .collect()
}

/// The time argument as i64 values in its unit.
fn times(arg: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let array = arg.to_array(rows)?;
    Ok(cast(&array, &DataType::Int64)?)
}

/// The user-facing function (tumbling windows; sliding ones are rewritten before execution).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    signature: Signature,
}

impl TimeWindow {
    fn new() -> TimeWindow {
        TimeWindow {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// CnosDB names the column after its upper-case function name: `TIME_WINDOW(m.time,...)`.
fn column_name(args: &[Expr]) -> Result<String> {
    let names: Vec<String> = args.iter().map(|a| a.schema_name().to_string()).collect();
    Ok(format!("TIME_WINDOW({})", names.join(",")))
}

/// Checks the constant arguments at planning time, when DataFusion shows them.
fn check_constants(args: &ReturnFieldArgs) -> Result<DataType> {
    let time = args
        .arg_fields
        .first()
        .map(|f| f.data_type().clone())
        .ok_or_else(|| plan_datafusion_err!("{NAME}: missing the time argument"))?;
    let unit = time_unit(&time)?;
    let constants: Option<Vec<&ScalarValue>> = args.scalar_arguments[1..].iter().copied().collect();
    if let Some(constants) = constants {
        spec(unit, &constants)?;
    }
    Ok(time)
}

impl ScalarUDFImpl for TimeWindow {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        column_name(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(window_type(time_arg(arg_types)?))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let time = check_constants(&args)?;
        Ok(Arc::new(Field::new(NAME, window_type(&time), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let time_type = args.arg_fields[0].data_type().clone();
        let spec = spec(time_unit(&time_type)?, &scalar_args(&args.args[1..])?)?;
        if !spec.is_tumbling() {
            return exec_err!(
                "{NAME}: a sliding window reached execution without being expanded (a bug)"
            );
        }
        let times = times(&args.args[0], args.number_rows)?;
        let values = times.as_primitive::<Int64Type>();
        let mut starts = Vec::with_capacity(values.len());
        let mut ends = Vec::with_capacity(values.len());
        for (i, &t) in values.values().iter().enumerate() {
            // A null time gets a null window; its slot still needs a value.
            let (s, e) = match values.is_null(i) {
                true => (0, 0),
                false => spec.window_of(t).ok_or_else(|| {
                    plan_datafusion_err!("{NAME}: the window of {t} is out of range")
                })?,
            };
            starts.push(s);
            ends.push(e);
        }
        let array = windows_array(&time_type, starts, ends, values.nulls().cloned())?;
        Ok(ColumnarValue::Array(array))
    }
}

/// A `Struct{start, end}` array of the time type from i64 bounds.
fn windows_array(
    time: &DataType,
    starts: Vec<i64>,
    ends: Vec<i64>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef> {
    let starts = cast(&datafusion::arrow::array::Int64Array::from(starts), time)?;
    let ends = cast(&datafusion::arrow::array::Int64Array::from(ends), time)?;
    Ok(Arc::new(StructArray::try_new(
        window_fields(time),
        vec![starts, ends],
        nulls,
    )?))
}

/// `List<Struct{start, end}>`: every window of a row (the sliding form, unnested by the rule).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimeWindows {
    signature: Signature,
}

impl TimeWindows {
    pub fn new() -> TimeWindows {
        TimeWindows {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn list_type(time: &DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(window_type(time), false)))
}

impl ScalarUDFImpl for TimeWindows {
    fn name(&self) -> &str {
        "time_windows"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(list_type(time_arg(arg_types)?))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let time = check_constants(&args)?;
        Ok(Arc::new(Field::new(
            "time_windows",
            list_type(&time),
            false,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let time_type = args.arg_fields[0].data_type().clone();
        let spec = spec(time_unit(&time_type)?, &scalar_args(&args.args[1..])?)?;
        let times = times(&args.args[0], args.number_rows)?;
        let values = times.as_primitive::<Int64Type>();
        let per_row = usize::try_from(spec.windows_per_row()).unwrap_or(1);
        let mut windows = Vec::with_capacity(values.len() * per_row);
        let mut offsets = Vec::with_capacity(values.len() + 1);
        offsets.push(0i32);
        for (i, &t) in values.values().iter().enumerate() {
            // A row without a time is in no window (CnosDB filters it out).
            if !values.is_null(i) && !spec.windows_of(t, &mut windows) {
                return exec_err!("{NAME}: a window of {t} is out of range");
            }
            let end = i32::try_from(windows.len())
                .map_err(|_| plan_datafusion_err!("{NAME}: too many windows in one batch"))?;
            offsets.push(end);
        }
        let (starts, ends) = windows.into_iter().unzip();
        let structs = windows_array(&time_type, starts, ends, None)?;
        let item = Arc::new(Field::new_list_field(window_type(&time_type), false));
        let list = ListArray::try_new(item, OffsetBuffer::new(offsets.into()), structs, None)?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// The type of the time argument (the first), which both functions' answers are built from.
fn time_arg(arg_types: &[DataType]) -> Result<&DataType> {
    arg_types
        .first()
        .ok_or_else(|| plan_datafusion_err!("{NAME}: missing the time argument"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_ms(window: &str, slide: Option<&str>, start: Option<&str>) -> Result<Spec> {
        let w = ScalarValue::from(window);
        let s = slide.map(ScalarValue::from);
        let o = start.map(ScalarValue::from);
        let mut args = vec![&w];
        args.extend(s.as_ref());
        args.extend(o.as_ref());
        spec(TimeUnit::Millisecond, &args)
    }

    #[test]
    fn tumbling_windows_align_to_the_epoch_or_the_start() {
        let s = spec_ms("10ms", None, None).unwrap();
        assert!(s.is_tumbling());
        assert_eq!(s.window_of(0), Some((0, 10)));
        assert_eq!(s.window_of(9), Some((0, 10)));
        assert_eq!(s.window_of(10), Some((10, 20)));
        // Before the epoch: floor, not truncation toward zero.
        assert_eq!(s.window_of(-1), Some((-10, 0)));
        let s = spec_ms("10ms", Some("10ms"), Some("1970-01-01T00:00:00.003Z")).unwrap();
        assert!(s.is_tumbling());
        assert_eq!(s.window_of(2), Some((-7, 3)));
        assert_eq!(s.window_of(3), Some((3, 13)));
    }

    #[test]
    fn sliding_windows_hold_exactly_the_rows_inside_them() {
        // 10ms windows every 6ms start at ..., -6, 0, 6, 12, ...
        let s = spec_ms("10ms", Some("6ms"), None).unwrap();
        assert_eq!(s.windows_per_row(), 2);
        let of = |t| {
            let mut out = Vec::new();
            assert!(s.windows_of(t, &mut out));
            out
        };
        assert_eq!(of(0), vec![(0, 10), (-6, 4)]);
        // CnosDB 2.4 also lists (-6, 4) for 5 and (0, 10) for 10; neither contains the row.
        assert_eq!(of(5), vec![(0, 10)]);
        assert_eq!(of(10), vec![(6, 16)]);
        assert_eq!(of(15), vec![(12, 22), (6, 16)]);
        // A slide longer than the window leaves gaps: [0, 3), [5, 8), [10, 13).
        let gaps = spec_ms("3ms", Some("5ms"), None).unwrap();
        let mut out = Vec::new();
        assert!(gaps.windows_of(4, &mut out));
        assert!(out.is_empty());
        assert!(gaps.windows_of(8, &mut out));
        assert!(out.is_empty());
        assert!(gaps.windows_of(11, &mut out));
        assert_eq!(out, vec![(10, 13)]);
    }

    #[test]
    fn bad_durations_are_planning_errors() {
        let err = |w: &str, s: Option<&str>| spec_ms(w, s, None).unwrap_err().to_string();
        assert!(err("0ms", None).contains("between 1ms and 365d, found 0ns"));
        assert!(err("366d", None).contains("between 1ms and 365d, found 366d"));
        assert!(err("3ms", Some("1us")).contains("the slide must be between 1ms and 365d"));
        assert!(err("10", None).contains("invalid duration"));
        assert!(err("3ms", Some("0.001ms")).contains("found 1us"));
        assert!(err("1.x5s", None).contains("invalid duration"));
        assert_eq!(spec_ms("0.5s", None, None).unwrap().window, 500);
        assert_eq!(spec_ms("1.25h", None, None).unwrap().window, 4_500_000);
        assert!(err("1500us", None).contains("not a whole number of milliseconds"));
        assert!(err("1s", Some("1ms")).contains("1000 windows"));
        let nanos = spec(TimeUnit::Nanosecond, &[&ScalarValue::from("1500us")]).unwrap();
        assert_eq!(nanos.window, 1_500_000);
        assert_eq!(
            spec_ms("365d", None, None).unwrap().window,
            365 * 86_400_000
        );
    }
}
