//! Scan tests: batches compared as printed tables, each pushdown and its edges, a differential
//! test against the memtable's own row reads, and an ignored throughput measurement.

use arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int64Array, StringArray, UInt64Array,
};
use arrow::datatypes::TimestampSecondType;
use arrow::util::pretty::pretty_format_batches;

use super::*;
use crate::batch::{FieldColumn, FieldValues, TableBatch};
use crate::memtable::Value;

const TENANT: &str = "cnosdb";
const DB: &str = "public";

fn key(tags: &[(&str, &str)]) -> SeriesKey {
    let mut tags: Vec<(String, String)> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tags.sort();
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for (k, v) in &tags {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    SeriesKey::new(hash, tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn push_value(values: &mut FieldValues, v: Option<Value<'_>>) {
    match (values, v) {
        (FieldValues::Float(c), Some(Value::Float(x))) => c.push(Some(x)),
        (FieldValues::Integer(c), Some(Value::Integer(x))) => c.push(Some(x)),
        (FieldValues::Unsigned(c), Some(Value::Unsigned(x))) => c.push(Some(x)),
        (FieldValues::String(c), Some(Value::String(x))) => c.push(Some(x.to_string())),
        (FieldValues::Boolean(c), Some(Value::Boolean(x))) => c.push(Some(x)),
        (FieldValues::Float(c), None) => c.push(None),
        (FieldValues::Integer(c), None) => c.push(None),
        (FieldValues::Unsigned(c), None) => c.push(None),
        (FieldValues::String(c), None) => c.push(None),
        (FieldValues::Boolean(c), None) => c.push(None),
        (c, v) => panic!("test builds {v:?} into {:?}", c.value_type()),
    }
}

/// One written row: (tags, time, fields).
pub(crate) type Row<'a> = (&'a [(&'a str, &'a str)], i64, &'a [(&'a str, Value<'a>)]);

/// A batch of table `table` holding `rows`, in order.
pub(crate) fn batch(table: &str, rows: &[Row<'_>]) -> TableBatch {
    let mut b = TableBatch {
        tenant: TENANT.into(),
        database: DB.into(),
        table: table.into(),
        series: Vec::new(),
        series_of_row: Vec::new(),
        time: Vec::new(),
        fields: Vec::new(),
    };
    for (tags, time, fields) in rows {
        let series = key(tags);
        let s = match b.series.iter().position(|k| *k == series) {
            Some(s) => s,
            None => {
                b.series.push(series);
                b.series.len() - 1
            }
        };
        let before = b.rows();
        for (name, v) in *fields {
            if !b.fields.iter().any(|f| f.name == *name) {
                let mut values = FieldValues::empty(v.value_type());
                (0..before).for_each(|_| push_value(&mut values, None));
                b.fields.push(FieldColumn {
                    name: name.to_string(),
                    values,
                });
            }
        }
        for f in &mut b.fields {
            let v = fields.iter().find(|(n, _)| *n == f.name).map(|(_, v)| *v);
            push_value(&mut f.values, v);
        }
        b.series_of_row.push(s as u32);
        b.time.push(*time);
    }
    b
}

pub(crate) fn cpu_schema() -> TableSchema {
    TableSchema {
        time_unit: TimeUnit::Second,
        tags: vec!["host".into(), "region".into(), "zone".into()],
        fields: vec![
            ("usage".into(), ValueType::Float),
            ("count".into(), ValueType::Integer),
            ("big".into(), ValueType::Unsigned),
            ("up".into(), ValueType::Boolean),
            ("note".into(), ValueType::String),
            ("missing".into(), ValueType::Integer),
        ],
    }
}

const A: &[(&str, &str)] = &[("host", "a"), ("region", "eu")];
const B: &[(&str, &str)] = &[("host", "b")];
const C: &[(&str, &str)] = &[("region", "us"), ("host", "c")];

/// Three series (b has no region), out-of-order and duplicate times, every field type, nulls,
/// and a field (`missing`) the memtable never sees.
fn cpu() -> Memtable {
    let mut m = Memtable::new(usize::MAX);
    let first = batch(
        "cpu",
        &[
            (A, 30, &[("usage", Value::Float(3.0))]),
            (
                A,
                10,
                &[("usage", Value::Float(1.0)), ("count", Value::Integer(1))],
            ),
            (B, 15, &[("big", Value::Unsigned(7))]),
            (
                C,
                40,
                &[
                    ("usage", Value::Float(4.0)),
                    ("note", Value::String("hello")),
                ],
            ),
        ],
    );
    let second = batch(
        "cpu",
        &[
            (A, 20, &[("usage", Value::Float(2.0))]),
            (A, 10, &[("count", Value::Integer(11))]),
            (
                B,
                5,
                &[("note", Value::String("x")), ("up", Value::Boolean(true))],
            ),
            (
                C,
                50,
                &[("count", Value::Integer(5)), ("up", Value::Boolean(false))],
            ),
        ],
    );
    m.insert(&first).expect("insert");
    m.insert(&second).expect("insert");
    m
}

fn request() -> ScanRequest {
    ScanRequest::new(TENANT, DB, "cpu")
}

fn scan(m: &Memtable, req: &ScanRequest) -> Vec<RecordBatch> {
    scan_memtable(m, &cpu_schema(), req).expect("scan")
}

pub(crate) fn pretty(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).expect("format").to_string()
}

fn rows_of(batches: &[RecordBatch]) -> Vec<usize> {
    batches.iter().map(RecordBatch::num_rows).collect()
}

/// Asserts the printed table, comparing trimmed lines so the expectation can be indented.
#[track_caller]
fn assert_table(batches: &[RecordBatch], expected: &str) {
    let expected: Vec<&str> = expected.trim().lines().map(str::trim).collect();
    let got = pretty(batches);
    let got: Vec<&str> = got.lines().map(str::trim).collect();
    assert_eq!(got, expected, "\n{}", got.join("\n"));
}

#[test]
fn schema_is_time_tags_fields() {
    let schema = cpu_schema().arrow_schema();
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{} {} {}", f.name(), f.data_type(), f.is_nullable()))
        .collect();
    assert_eq!(
        columns,
        [
            "time Timestamp(s) false",
            "host Utf8 true",
            "region Utf8 true",
            "zone Utf8 true",
            "usage Float64 true",
            "count Int64 true",
            "big UInt64 true",
            "up Boolean true",
            "note Utf8 true",
            "missing Int64 true",
        ]
    );
    assert_eq!(cpu_schema().column_count(), columns.len());
}

#[test]
fn full_scan_sorts_merges_and_fills_nulls() {
    let batches = scan(&cpu(), &request());
    assert_eq!(rows_of(&batches), [7]);
    assert_table(
        &batches,
        "
        +---------------------+------+--------+------+-------+-------+-----+-------+-------+---------+
        | time                | host | region | zone | usage | count | big | up    | note  | missing |
        +---------------------+------+--------+------+-------+-------+-----+-------+-------+---------+
        | 1970-01-01T00:00:10 | a    | eu     |      | 1.0   | 11    |     |       |       |         |
        | 1970-01-01T00:00:20 | a    | eu     |      | 2.0   |       |     |       |       |         |
        | 1970-01-01T00:00:30 | a    | eu     |      | 3.0   |       |     |       |       |         |
        | 1970-01-01T00:00:05 | b    |        |      |       |       |     | true  | x     |         |
        | 1970-01-01T00:00:15 | b    |        |      |       |       | 7   |       |       |         |
        | 1970-01-01T00:00:40 | c    | us     |      | 4.0   |       |     |       | hello |         |
        | 1970-01-01T00:00:50 | c    | us     |      |       | 5     |     | false |       |         |
        +---------------------+------+--------+------+-------+-------+-----+-------+-------+---------+
        ",
    );
    // Null, not an empty string: the region of b, the zone of everyone, `missing`.
    let b = &batches[0];
    assert_eq!(b.column(2).null_count(), 2);
    assert_eq!(b.column(3).null_count(), 7);
    assert_eq!(b.column(9).null_count(), 7);
    assert_eq!(b.column(0).null_count(), 0);
}

#[test]
fn projection_builds_only_the_asked_columns_in_order() {
    let mut req = request();
    req.projection = Some(vec![8, 0, 2, 4]);
    let m = cpu();
    let batches = scan(&m, &req);
    assert_eq!(batches[0].schema().fields().len(), 4);
    assert_table(
        &batches,
        "
        +-------+---------------------+--------+-------+
        | note  | time                | region | usage |
        +-------+---------------------+--------+-------+
        |       | 1970-01-01T00:00:10 | eu     | 1.0   |
        |       | 1970-01-01T00:00:20 | eu     | 2.0   |
        |       | 1970-01-01T00:00:30 | eu     | 3.0   |
        | x     | 1970-01-01T00:00:05 |        |       |
        |       | 1970-01-01T00:00:15 |        |       |
        | hello | 1970-01-01T00:00:40 | us     | 4.0   |
        |       | 1970-01-01T00:00:50 | us     |       |
        +-------+---------------------+--------+-------+
        ",
    );
    let scan = MemtableScan::new(&m, &cpu_schema(), &req).expect("scan");
    assert_eq!(scan.schema(), batches[0].schema());
}

#[test]
fn empty_projection_yields_row_counts() {
    let mut req = request();
    req.projection = Some(Vec::new());
    req.batch_rows = 3;
    let batches = scan(&cpu(), &req);
    assert_eq!(rows_of(&batches), [3, 3, 1]);
    assert!(batches.iter().all(|b| b.num_columns() == 0));
}

#[test]
fn time_range_min_is_inclusive_max_exclusive() {
    let m = cpu();
    let times = |range: (i64, i64)| -> Vec<i64> {
        let mut req = request();
        req.time_range = range;
        req.projection = Some(vec![0]);
        scan(&m, &req)
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<TimestampSecondType>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    assert_eq!(times((10, 30)), [10, 20, 15]);
    assert_eq!(times((11, 40)), [20, 30, 15]);
    assert_eq!(times((i64::MIN, 10)), [5]);
    assert_eq!(times((50, i64::MAX)), [50]);
    assert_eq!(times((20, 20)), Vec::<i64>::new());
    assert_eq!(times((30, 10)), Vec::<i64>::new());
    assert_eq!(times((51, i64::MAX)), Vec::<i64>::new());
    assert_eq!(times((i64::MIN, i64::MAX)).len(), 7);
}

fn hosts(m: &Memtable, filters: &[(&str, &[&str])]) -> Vec<String> {
    let mut req = request();
    req.projection = Some(vec![1]);
    req.tag_filters = filters
        .iter()
        .map(|(t, vs)| (t.to_string(), vs.iter().map(|v| v.to_string()).collect()))
        .collect();
    scan(m, &req)
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or("NULL").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn tag_filters_equality_in_and_missing_tags() {
    let m = cpu();
    assert_eq!(hosts(&m, &[("host", &["a"])]), ["a", "a", "a"]);
    assert_eq!(
        hosts(&m, &[("host", &["c", "a"])]),
        ["a", "a", "a", "c", "c"]
    );
    assert_eq!(
        hosts(&m, &[("host", &["c", "nope", "b"])]),
        ["b", "b", "c", "c"]
    );
    // b has no region: it fails region = anything.
    assert_eq!(
        hosts(&m, &[("region", &["eu", "us"])]),
        ["a", "a", "a", "c", "c"]
    );
    // Filters AND.
    assert_eq!(
        hosts(&m, &[("region", &["eu", "us"]), ("host", &["b", "c"])]),
        ["c", "c"]
    );
    assert!(hosts(&m, &[("host", &[])]).is_empty());
    assert!(hosts(&m, &[("zone", &["z"])]).is_empty());
    assert!(hosts(&m, &[("no_such_tag", &["a"])]).is_empty());
    assert!(hosts(&m, &[("host", &["A"])]).is_empty(), "case matters");
}

#[test]
fn column_unknown_to_the_memtable_is_all_null() {
    let mut req = request();
    req.projection = Some(vec![9, 3]);
    req.batch_rows = 4;
    let batches = scan(&cpu(), &req);
    assert_eq!(rows_of(&batches), [4, 3]);
    for b in &batches {
        assert_eq!(b.column(0).data_type(), &DataType::Int64);
        assert_eq!(b.column(0).null_count(), b.num_rows());
        assert_eq!(b.column(1).null_count(), b.num_rows());
    }
}

#[test]
fn limit_stops_early() {
    let m = cpu();
    let with = |limit: Option<usize>, batch_rows: usize| {
        let mut req = request();
        req.limit = limit;
        req.batch_rows = batch_rows;
        rows_of(&scan(&m, &req))
    };
    assert_eq!(with(Some(3), 2), [2, 1]);
    assert_eq!(with(Some(4), 2), [2, 2]);
    assert_eq!(with(Some(1), 8192), [1]);
    assert_eq!(with(Some(0), 8192), Vec::<usize>::new());
    assert_eq!(with(Some(100), 8192), [7]);
    assert_eq!(with(None, 8192), [7]);

    let mut req = request();
    req.limit = Some(4);
    req.projection = Some(vec![0, 1]);
    assert_table(
        &scan(&m, &req),
        "
        +---------------------+------+
        | time                | host |
        +---------------------+------+
        | 1970-01-01T00:00:10 | a    |
        | 1970-01-01T00:00:20 | a    |
        | 1970-01-01T00:00:30 | a    |
        | 1970-01-01T00:00:05 | b    |
        +---------------------+------+
        ",
    );
}

#[test]
fn batch_rows_splits_series_and_packs_across_them() {
    let m = cpu();
    let whole = pretty(&scan(&m, &request()));
    for batch_rows in 1..=8 {
        let mut req = request();
        req.batch_rows = batch_rows;
        let batches = scan(&m, &req);
        let mut expected = vec![batch_rows; 7 / batch_rows];
        if 7 % batch_rows != 0 {
            expected.push(7 % batch_rows);
        }
        assert_eq!(rows_of(&batches), expected, "batch_rows {batch_rows}");
        assert_eq!(pretty(&batches), whole, "batch_rows {batch_rows}");
    }
}

#[test]
fn empty_or_unknown_table_yields_no_batches() {
    let m = cpu();
    for (tenant, db, table) in [
        (TENANT, DB, "mem"),
        (TENANT, "other", "cpu"),
        ("other", DB, "cpu"),
    ] {
        let req = ScanRequest::new(tenant, db, table);
        let mut scan = MemtableScan::new(&m, &cpu_schema(), &req).expect("scan");
        assert_eq!(scan.schema(), cpu_schema().arrow_schema());
        assert!(scan.next().is_none());
        assert!(scan.next().is_none(), "fused");
    }
    let empty = Memtable::new(1 << 20);
    assert!(scan(&empty, &request()).is_empty());
    // A table whose only rows are outside the range.
    let mut req = request();
    req.time_range = (1000, 2000);
    assert!(scan(&m, &req).is_empty());
}

#[test]
fn bad_requests_are_refused_with_context() {
    let m = cpu();
    let mut req = request();
    req.projection = Some(vec![0, 10]);
    let err = scan_memtable(&m, &cpu_schema(), &req).expect_err("projection");
    assert!(matches!(
        err,
        ScanError::Projection {
            index: 10,
            columns: 10,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "scan of cnosdb.public.cpu: projection index 10 is out of range, the table has 10 columns"
    );

    for batch_rows in [0, BATCH_ROWS_MAX + 1] {
        let mut req = request();
        req.batch_rows = batch_rows;
        let err = scan_memtable(&m, &cpu_schema(), &req).expect_err("batch_rows");
        assert!(matches!(err, ScanError::BatchRows { .. }), "{err}");
    }

    let mut schema = cpu_schema();
    schema.fields[0].1 = ValueType::Integer;
    let err = scan_memtable(&m, &schema, &request()).expect_err("type conflict");
    assert_eq!(
        err.to_string(),
        "scan of cnosdb.public.cpu: field \"usage\" is BIGINT in the catalog but DOUBLE in the \
         memtable"
    );
    // A conflicting column that is not projected is not read, so not refused.
    let mut req = request();
    req.projection = Some(vec![0, 5]);
    assert_eq!(
        rows_of(&scan_memtable(&m, &schema, &req).expect("scan")),
        [7]
    );
}

#[test]
fn every_time_unit_is_a_timestamp() {
    for unit in [
        TimeUnit::Second,
        TimeUnit::Millisecond,
        TimeUnit::Microsecond,
        TimeUnit::Nanosecond,
    ] {
        let mut schema = cpu_schema();
        schema.time_unit = unit;
        let batches = scan_memtable(&cpu(), &schema, &request()).expect("scan");
        assert_eq!(
            batches[0].column(0).data_type(),
            &DataType::Timestamp(unit, None)
        );
    }
}

/// A tiny deterministic generator.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A `Row` whose slices are owned.
type OwnedRow<'a> = (Vec<(&'a str, &'a str)>, i64, Vec<(&'a str, Value<'a>)>);

const WORDS: [&str; 5] = ["", "a", "bb", "ccc", "héllo"];

/// Random writes over 12 series: times repeat and arrive out of order, every field is often
/// absent (so bitmaps and null tails appear), in several batches.
pub(crate) fn random_memtable(seed: u64) -> Memtable {
    let mut rng = Rng(seed);
    let mut m = Memtable::new(usize::MAX);
    let hosts: Vec<String> = (0..4).map(|h| format!("h{h}")).collect();
    let regions = ["eu", "us"];
    for _ in 0..6 {
        let mut rows: Vec<OwnedRow<'_>> = Vec::new();
        for _ in 0..80 {
            let h = rng.below(4) as usize;
            let mut tags = vec![("host", hosts[h].as_str())];
            match rng.below(3) {
                0 => {}
                r => tags.push(("region", regions[r as usize - 1])),
            }
            let mut fields = Vec::new();
            let maybe = |rng: &mut Rng| rng.below(3) != 0;
            if maybe(&mut rng) {
                fields.push(("usage", Value::Float(rng.below(1000) as f64 / 8.0)));
            }
            if maybe(&mut rng) {
                fields.push(("count", Value::Integer(rng.below(100) as i64 - 50)));
            }
            if maybe(&mut rng) {
                fields.push(("big", Value::Unsigned(rng.next())));
            }
            if maybe(&mut rng) {
                fields.push(("up", Value::Boolean(rng.below(2) == 0)));
            }
            if maybe(&mut rng) {
                fields.push(("note", Value::String(WORDS[rng.below(5) as usize])));
            }
            rows.push((tags, rng.below(200) as i64, fields));
        }
        let rows: Vec<Row<'_>> = rows
            .iter()
            .map(|(t, time, f)| (t.as_slice(), *time, f.as_slice()))
            .collect();
        m.insert(&batch("cpu", &rows)).expect("insert");
    }
    m
}

/// One cell as text, None for null.
fn cell(array: &dyn Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    let any = array.as_any();
    Some(match array.data_type() {
        DataType::Timestamp(_, _) => {
            format!("{}", array.as_primitive::<TimestampSecondType>().value(row))
        }
        DataType::Utf8 => any.downcast_ref::<StringArray>()?.value(row).to_string(),
        DataType::Float64 => format!("{:?}", any.downcast_ref::<Float64Array>()?.value(row)),
        DataType::Int64 => format!("{}", any.downcast_ref::<Int64Array>()?.value(row)),
        DataType::UInt64 => format!("{}", any.downcast_ref::<UInt64Array>()?.value(row)),
        DataType::Boolean => format!("{}", any.downcast_ref::<BooleanArray>()?.value(row)),
        other => panic!("unexpected type {other}"),
    })
}

fn value_text(v: Value<'_>) -> String {
    match v {
        Value::Float(x) => format!("{x:?}"),
        Value::Integer(x) => x.to_string(),
        Value::Unsigned(x) => x.to_string(),
        Value::String(x) => x.to_string(),
        Value::Boolean(x) => x.to_string(),
    }
}

/// The rows a request should yield, read point by point through the memtable's row API.
fn model(m: &Memtable, schema: &TableSchema, req: &ScanRequest) -> Vec<Vec<Option<String>>> {
    let Some(table) = m.scan(&req.tenant, &req.database, &req.table) else {
        return Vec::new();
    };
    let columns = table.columns();
    let mut out = Vec::new();
    for s in table.series() {
        let tag = |t: &str| s.key().tag(t).map(str::to_string);
        let pass = req
            .tag_filters
            .iter()
            .all(|(t, allowed)| tag(t).is_some_and(|v| allowed.contains(&v)));
        let in_range = |t: i64| t >= req.time_range.0 && t < req.time_range.1;
        let last = s.time().iter().rposition(|&t| in_range(t));
        for (p, &time) in s.time().iter().enumerate() {
            if !pass || !in_range(time) || (req.last_per_series && Some(p) != last) {
                continue;
            }
            let mut row = vec![Some(time.to_string())];
            row.extend(schema.tags.iter().map(|t| tag(t)));
            row.extend(schema.fields.iter().map(|(name, _)| {
                let c = columns.iter().position(|c| c.name == *name)?;
                s.value(p, c).map(value_text)
            }));
            out.push(match &req.projection {
                Some(p) => p.iter().map(|&i| row[i].clone()).collect(),
                None => row,
            });
        }
    }
    out.truncate(req.limit.unwrap_or(usize::MAX));
    out
}

fn cells(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(b.columns().iter().map(|c| cell(c, r)).collect());
        }
    }
    out
}

/// (series columns with a validity bitmap, series columns with a null tail) in a memtable.
fn null_shapes(m: &Memtable) -> (usize, usize) {
    let (mut bitmaps, mut tails) = (0, 0);
    if let Some(table) = m.scan(TENANT, DB, "cpu") {
        for s in table.series() {
            for c in 0..table.columns().len() {
                let column = s.column(c);
                bitmaps += usize::from(column.validity().is_some());
                tails += usize::from(column.values().len() < column.rows());
            }
        }
    }
    (bitmaps, tails)
}

#[test]
fn differential_against_row_reads() {
    let schema = cpu_schema();
    let (mut bitmaps, mut tails, mut rows_seen) = (0, 0, 0);
    for seed in 1..=8u64 {
        let m = random_memtable(seed * 0x9e37_79b9);
        let (b, t) = null_shapes(&m);
        (bitmaps, tails) = (bitmaps + b, tails + t);
        let mut rng = Rng(seed);
        for _ in 0..40 {
            let mut req = request();
            req.batch_rows = 1 + rng.below(150) as usize;
            if rng.below(2) == 0 {
                let a = rng.below(220) as i64 - 10;
                req.time_range = (a, a + rng.below(220) as i64);
            }
            if rng.below(3) == 0 {
                req.limit = Some(rng.below(400) as usize);
            }
            req.last_per_series = rng.below(4) == 0;
            if rng.below(2) == 0 {
                let n = rng.below(6) as usize;
                req.projection = Some((0..n).map(|_| rng.below(10) as usize).collect());
            }
            if rng.below(3) == 0 {
                let tag = ["host", "region", "zone"][rng.below(3) as usize];
                let values = ["h0", "h2", "eu", "us"];
                let allowed = (0..rng.below(3)).map(|_| values[rng.below(4) as usize]);
                req.tag_filters = vec![(tag.into(), allowed.map(String::from).collect())];
            }
            let batches = scan_memtable(&m, &schema, &req).expect("scan");
            let resumed = cursor_scan(&m, &schema, &req);
            assert_eq!(rows_of(&resumed), rows_of(&batches), "{req:?}");
            assert_eq!(cells(&resumed), cells(&batches), "{req:?}");
            let rows = rows_of(&batches);
            assert!(
                rows.iter().rev().skip(1).all(|&r| r == req.batch_rows),
                "only the last batch is short: {rows:?} ({req:?})"
            );
            rows_seen += rows.iter().sum::<usize>();
            if req.projection.as_ref().is_none_or(|p| !p.is_empty()) {
                assert_eq!(cells(&batches), model(&m, &schema, &req), "{req:?}");
            } else {
                let total: usize = rows.iter().sum();
                assert_eq!(total, model(&m, &schema, &req).len(), "{req:?}");
            }
        }
    }
    assert!(
        bitmaps > 0 && tails > 0 && rows_seen > 1000,
        "the data exercises bitmaps ({bitmaps}), null tails ({tails}) and rows ({rows_seen})"
    );
}

/// The TSBS cpu-only shape: `series` hosts with 10 tags, 10 integer fields, `points` points
/// each 10 s apart, written in rounds of 5 points per host (as TSBS batches arrive).
pub(crate) fn tsbs_memtable(series: usize, points: usize) -> (Memtable, TableSchema) {
    const TAGS: [&str; 10] = [
        "arch",
        "datacenter",
        "hostname",
        "os",
        "rack",
        "region",
        "service",
        "service_environment",
        "service_version",
        "team",
    ];
    const FIELDS: [&str; 10] = [
        "usage_user",
        "usage_system",
        "usage_idle",
        "usage_nice",
        "usage_iowait",
        "usage_irq",
        "usage_softirq",
        "usage_steal",
        "usage_guest",
        "usage_guest_nice",
    ];
    let mut rng = Rng(7);
    let keys: Vec<SeriesKey> = (0..series)
        .map(|h| {
            let values: Vec<String> = (0..TAGS.len())
                .map(|i| match i {
                    2 => format!("host_{h}"),
                    _ => format!("{}_{}", TAGS[i], (h * (i + 3)) % 17),
                })
                .collect();
            let tags: Vec<(&str, &str)> = TAGS
                .iter()
                .zip(&values)
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            key(&tags)
        })
        .collect();
    let mut m = Memtable::new(usize::MAX);
    for round in 0..points.div_ceil(5) {
        let per_host = (points - round * 5).min(5);
        let rows = per_host * series;
        let b = TableBatch {
            tenant: TENANT.into(),
            database: DB.into(),
            table: "cpu".into(),
            series: keys.clone(),
            series_of_row: (0..rows).map(|r| (r % series) as u32).collect(),
            time: (0..rows)
                .map(|r| ((round * 5 + r / series) * 10) as i64)
                .collect(),
            fields: FIELDS
                .iter()
                .map(|f| FieldColumn {
                    name: f.to_string(),
                    values: FieldValues::Integer(
                        (0..rows).map(|_| Some(rng.below(100) as i64)).collect(),
                    ),
                })
                .collect(),
        };
        m.insert(&b).expect("insert");
    }
    let schema = TableSchema {
        time_unit: TimeUnit::Second,
        tags: TAGS.iter().map(|t| t.to_string()).collect(),
        fields: FIELDS
            .iter()
            .map(|f| (f.to_string(), ValueType::Integer))
            .collect(),
    };
    (m, schema)
}

/// Best of `tries` full passes: (seconds, rows, batches).
fn time_scan(
    m: &Memtable,
    schema: &TableSchema,
    req: &ScanRequest,
    tries: usize,
) -> (f64, usize, usize) {
    let mut best = f64::MAX;
    let (mut rows, mut batches) = (0, 0);
    for _ in 0..tries {
        let start = std::time::Instant::now();
        (rows, batches) = (0, 0);
        for b in MemtableScan::new(m, schema, req).expect("scan") {
            let b = b.expect("batch");
            rows += b.num_rows();
            batches += 1;
            std::hint::black_box(&b);
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    (best, rows, batches)
}

#[test]
#[ignore = "benchmark: cargo test -p chronoshard-shard --release scan -- --ignored --nocapture"]
fn bench_tsbs_scan_rate() {
    let (m, schema) = tsbs_memtable(1000, 1000);
    assert_eq!(m.rows(), 1_000_000);
    let time_and_fields = std::iter::once(0).chain(11..21).collect();
    let cases = [
        ("all 21 columns", None),
        ("time + 10 fields (no tags)", Some(time_and_fields)),
        ("time + 2 fields", Some(vec![0, 11, 13])),
        ("2 fields", Some(vec![11, 13])),
        ("count(*) (no columns)", Some(Vec::new())),
    ];
    for (name, projection) in cases {
        let mut req = ScanRequest::new(TENANT, DB, "cpu");
        req.projection = projection;
        let (secs, rows, batches) = time_scan(&m, &schema, &req, 5);
        assert_eq!(rows, 1_000_000);
        println!(
            "memtable scan, TSBS cpu-only (1000 series x 1000 points, 10 tags, 10 i64 fields), \
             {name}: {rows} rows in {batches} batches, best of 5 {:.1} ms = {:.1} M rows/s \
             ({:.0} ns/row)",
            secs * 1e3,
            rows as f64 / secs / 1e6,
            secs * 1e9 / rows as f64,
        );
    }
    let mut req = ScanRequest::new(TENANT, DB, "cpu");
    req.tag_filters = vec![("hostname".into(), vec!["host_7".into(), "host_700".into()])];
    req.projection = Some(vec![0, 11, 13]);
    let (secs, rows, _) = time_scan(&m, &schema, &req, 5);
    assert_eq!(rows, 2000);
    println!(
        "memtable scan, same table, hostname IN (2 hosts), time + 2 fields: {rows} rows in \
         {:.2} ms (the other 998 series skipped)",
        secs * 1e3
    );
}

/// Every batch of a `ScanCursor`, each built from a fresh borrow.
fn cursor_scan(m: &Memtable, schema: &TableSchema, req: &ScanRequest) -> Vec<RecordBatch> {
    let mut cursor = ScanCursor::new(schema, req).expect("cursor");
    let mut out = Vec::new();
    while let Some(b) = cursor.next_batch(m).expect("batch") {
        out.push(b);
    }
    assert!(cursor.next_batch(m).expect("over").is_none(), "stays over");
    out
}

/// Rows written between two batches of a cursor appear when they land after its position, and
/// nothing is read twice.
#[test]
fn cursor_sees_later_series_and_later_times() {
    let schema = cpu_schema();
    let mut m = cpu();
    let mut req = request();
    req.batch_rows = 1;
    req.projection = Some(vec![0, 1]);
    let mut cursor = ScanCursor::new(&schema, &req).expect("cursor");
    let first = cursor.next_batch(&m).expect("batch").expect("a row");
    let late = [("host", "zz")];
    let rows: [Row<'_>; 2] = [
        (&late, 1_000, &[("usage", Value::Float(1.0))]),
        (A, 25, &[("usage", Value::Float(2.5))]),
    ];
    m.insert(&batch("cpu", &rows)).expect("insert");
    let mut all = vec![first];
    while let Some(b) = cursor.next_batch(&m).expect("batch") {
        all.push(b);
    }
    let whole = scan_memtable(&m, &schema, &req).expect("scan");
    assert_eq!(cells(&all), cells(&whole));
}

/// `last_per_series` keeps each series' latest point in the time range, found by binary search
/// in an in-order series and after the merge in an out-of-order one.
#[test]
fn last_per_series_keeps_the_latest_point_in_range() {
    let schema = cpu_schema();
    let mut m = Memtable::new(usize::MAX);
    let (a, b) = ([("host", "a")], [("host", "b")]);
    let rows: [Row<'_>; 6] = [
        (&a, 10, &[("usage", Value::Float(1.0))]),
        (&a, 20, &[("usage", Value::Float(2.0))]),
        (&a, 30, &[("usage", Value::Float(3.0))]),
        (&b, 30, &[("usage", Value::Float(7.0))]),
        (&b, 10, &[("usage", Value::Float(5.0))]),
        (&b, 30, &[("count", Value::Integer(9))]),
    ];
    m.insert(&batch("cpu", &rows)).expect("insert");
    let mut req = request();
    req.last_per_series = true;
    req.projection = Some(vec![0, 1, 4, 5]);
    let text =
        |m: &Memtable, req: &ScanRequest| cells(&scan_memtable(m, &schema, req).expect("scan"));
    let row = |t: &str, h: &str, usage: &str, count: Option<&str>| {
        vec![
            Some(t.into()),
            Some(h.into()),
            Some(usage.into()),
            count.map(String::from),
        ]
    };
    // b's two writes at 30 merge: usage from the first, count from the second.
    assert_eq!(
        text(&m, &req),
        vec![
            row("30", "a", "3.0", None),
            row("30", "b", "7.0", Some("9"))
        ]
    );
    req.time_range = (0, 25);
    assert_eq!(
        text(&m, &req),
        vec![row("20", "a", "2.0", None), row("10", "b", "5.0", None)]
    );
    req.time_range = (21, 30);
    assert_eq!(text(&m, &req), Vec::<Vec<Option<String>>>::new());
    req.time_range = (i64::MIN, i64::MAX);
    req.tag_filters = vec![("host".into(), vec!["b".into()])];
    assert_eq!(text(&m, &req), vec![row("30", "b", "7.0", Some("9"))]);
}
