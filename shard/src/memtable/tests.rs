//! Memtable tests: merge semantics, all-or-nothing refusals, byte accounting, reads, a
//! differential test against a plain model, and an ignored ingest benchmark.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::batch::{Delete, FieldColumn, FieldValues, SeriesKey};

const TENANT: &str = "cnosdb";
const DB: &str = "public";

fn key(tags: &[(&str, &str)]) -> SeriesKey {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for (k, v) in tags {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    SeriesKey::new(hash, tags.iter().copied())
}

fn tag_list(key: &SeriesKey) -> Vec<(String, String)> {
    key.tags()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn empty_batch(table: &str) -> TableBatch {
    TableBatch {
        tenant: TENANT.into(),
        database: DB.into(),
        table: table.into(),
        series: Vec::new(),
        series_of_row: Vec::new(),
        time: Vec::new(),
        fields: Vec::new(),
    }
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

/// Appends a row to a batch, adding the series and field columns it needs.
fn add_row(b: &mut TableBatch, series: &SeriesKey, time: i64, fields: &[(&str, Value<'_>)]) {
    let s = match b.series.iter().position(|k| k == series) {
        Some(s) => s,
        None => {
            b.series.push(series.clone());
            b.series.len() - 1
        }
    };
    let rows = b.rows();
    for (name, v) in fields {
        if !b.fields.iter().any(|f| f.name == *name) {
            let mut values = FieldValues::empty(v.value_type());
            for _ in 0..rows {
                push_value(&mut values, None);
            }
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
    b.time.push(time);
}

/// All points of a table as (tags, time, row values), in scan order.
type Dump = Vec<(Vec<(String, String)>, i64, Vec<Option<String>>)>;

fn dump(m: &Memtable, table: &str) -> Dump {
    let scan = m.scan(TENANT, DB, table).expect("table exists");
    let mut out = Vec::new();
    for s in scan.series() {
        assert!(
            s.time().windows(2).all(|w| w[0] < w[1]),
            "times strictly increase"
        );
        for (i, &t) in s.time().iter().enumerate() {
            let row = s
                .row(i)
                .iter()
                .map(|v| v.map(|v| format!("{v:?}")))
                .collect();
            out.push((tag_list(s.key()), t, row));
        }
    }
    out
}

fn point(m: &Memtable, table: &str, series: &SeriesKey, time: i64) -> Vec<Option<String>> {
    dump(m, table)
        .into_iter()
        .find(|(tags, t, _)| *tags == tag_list(series) && *t == time)
        .map(|(_, _, row)| row)
        .expect("point exists")
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn check_bytes(m: &Memtable) {
    assert_eq!(
        m.bytes(),
        m.bytes_recount(),
        "running byte count matches a recount"
    );
    assert!(m.bytes() <= m.bytes_max());
}

const BIG: usize = 1 << 30;

#[test]
fn later_write_wins_per_field_across_batches() {
    // CnosDB: `m0,ta=ta f0=1,f1=true 2` then `m0,ta=ta f0=2 2` → (2.0, true).
    let mut m = Memtable::new(BIG);
    let k = key(&[("ta", "ta")]);
    let mut b = empty_batch("m0");
    add_row(
        &mut b,
        &k,
        2,
        &[("f0", Value::Float(1.0)), ("f1", Value::Boolean(true))],
    );
    m.insert(&b).expect("insert");
    let mut b = empty_batch("m0");
    add_row(&mut b, &k, 2, &[("f0", Value::Float(2.0))]);
    m.insert(&b).expect("insert");
    assert_eq!(
        point(&m, "m0", &k, 2),
        vec![s("Float(2.0)"), s("Boolean(true)")]
    );
    assert_eq!(
        m.rows(),
        2,
        "both writes are held until a read or flush merges them"
    );
    assert_eq!(dump(&m, "m0").len(), 1);
    check_bytes(&m);
}

#[test]
fn later_row_of_one_batch_wins_per_field() {
    let mut m = Memtable::new(BIG);
    let k = key(&[("host", "a")]);
    let mut b = empty_batch("cpu");
    add_row(
        &mut b,
        &k,
        5,
        &[("x", Value::Integer(1)), ("y", Value::Integer(10))],
    );
    add_row(&mut b, &k, 5, &[("x", Value::Integer(2))]);
    add_row(&mut b, &k, 5, &[("z", Value::String("late"))]);
    add_row(&mut b, &k, 6, &[("x", Value::Integer(3))]);
    m.insert(&b).expect("insert");
    let rows = dump(&m, "cpu");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].2,
        vec![s("Integer(2)"), s("Integer(10)"), s("String(\"late\")")]
    );
    assert_eq!(rows[1].2, vec![s("Integer(3)"), None, None]);
    assert_eq!(m.rows(), 4);
}

#[test]
fn out_of_order_times_are_sorted_and_merged_on_read() {
    let mut m = Memtable::new(BIG);
    let k = key(&[("host", "a")]);
    let mut b = empty_batch("cpu");
    add_row(
        &mut b,
        &k,
        30,
        &[("x", Value::Integer(30)), ("s", Value::String("thirty"))],
    );
    add_row(&mut b, &k, 10, &[("x", Value::Integer(10))]);
    add_row(&mut b, &k, 20, &[("s", Value::String("twenty"))]);
    m.insert(&b).expect("insert");
    let mut b = empty_batch("cpu");
    add_row(&mut b, &k, 10, &[("s", Value::String("ten"))]);
    add_row(&mut b, &k, 30, &[("x", Value::Integer(31))]);
    add_row(&mut b, &k, 5, &[("x", Value::Integer(5))]);
    add_row(&mut b, &k, 10, &[("x", Value::Integer(11))]);
    m.insert(&b).expect("insert");
    let got: Vec<_> = dump(&m, "cpu")
        .into_iter()
        .map(|(_, t, row)| (t, row))
        .collect();
    assert_eq!(
        got,
        vec![
            (5, vec![s("Integer(5)"), None]),
            (10, vec![s("Integer(11)"), s("String(\"ten\")")]),
            (20, vec![None, s("String(\"twenty\")")]),
            (30, vec![s("Integer(31)"), s("String(\"thirty\")")]),
        ]
    );
    assert_eq!(m.rows(), 7);
    check_bytes(&m);
}

#[test]
fn type_conflict_applies_nothing() {
    let mut m = Memtable::new(BIG);
    let (a, c) = (key(&[("host", "a")]), key(&[("host", "c")]));
    let mut b = empty_batch("cpu");
    add_row(&mut b, &a, 1, &[("x", Value::Integer(1))]);
    m.insert(&b).expect("insert");
    let (bytes, rows) = (m.bytes(), m.rows());
    let mut bad = empty_batch("cpu");
    add_row(&mut bad, &a, 1, &[("y", Value::Float(9.0))]);
    add_row(&mut bad, &c, 2, &[("x", Value::Float(1.5))]);
    let err = m.insert(&bad).expect_err("conflict");
    assert_eq!(
        err,
        MemtableError::TypeConflict {
            tenant: TENANT.into(),
            database: DB.into(),
            table: "cpu".into(),
            column: "x".into(),
            held: ValueType::Integer,
            written: ValueType::Float,
        }
    );
    assert!(err.to_string().contains("BIGINT"), "{err}");
    assert_eq!((m.bytes(), m.rows(), m.series_count()), (bytes, rows, 1));
    let info: Vec<_> = m.tables().collect();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].columns.len(), 1, "column y was not added");
    assert_eq!(dump(&m, "cpu").len(), 1);
}

#[test]
fn type_conflict_inside_one_batch_applies_nothing() {
    let mut m = Memtable::new(BIG);
    let k = key(&[("host", "a")]);
    let mut b = empty_batch("new_table");
    add_row(&mut b, &k, 1, &[("x", Value::Integer(1))]);
    b.fields.push(FieldColumn {
        name: "x".into(),
        values: FieldValues::String(vec![Some("one".into())]),
    });
    assert!(matches!(
        m.insert(&b),
        Err(MemtableError::TypeConflict { .. })
    ));
    assert!(m.is_empty());
    assert_eq!(m.bytes(), 0);
    assert!(m.scan(TENANT, DB, "new_table").is_none());
}

#[test]
fn full_applies_nothing_and_bytes_grow_monotonically() {
    let mut m = Memtable::new(64 * 1024);
    let mut last = m.bytes();
    let mut inserted = 0;
    let err = loop {
        let mut b = empty_batch("cpu");
        for i in 0..50 {
            let k = key(&[("host", &format!("h{}", i % 7))]);
            add_row(
                &mut b,
                &k,
                inserted + i,
                &[("v", Value::Float(1.0)), ("s", Value::String("abc"))],
            );
        }
        let before = (m.bytes(), m.rows(), m.series_count());
        match m.insert(&b) {
            Ok(()) => {
                // Never shrinks; may stay put while rows fill spare vector capacity.
                assert!(m.bytes() >= last, "bytes never shrink on insert");
                last = m.bytes();
                inserted += 50;
                check_bytes(&m);
            }
            Err(e) => {
                assert_eq!(
                    (m.bytes(), m.rows(), m.series_count()),
                    before,
                    "nothing applied"
                );
                break e;
            }
        }
    };
    let MemtableError::Full {
        bytes,
        bytes_max,
        batch_bytes,
    } = err
    else {
        panic!("expected Full, got {err}");
    };
    assert_eq!((bytes, bytes_max), (m.bytes(), 64 * 1024));
    assert!(bytes + batch_bytes > bytes_max);
    assert!(inserted > 0);
    assert_eq!(m.rows() as i64, inserted);
    check_bytes(&m);
    // The bound counts honestly: data of 50 rows × (8 + 8 + 3 + 4) bytes, plus slack.
    assert!(
        m.bytes() >= inserted as usize * 23,
        "{} bytes for {inserted} rows",
        m.bytes()
    );
}

#[test]
fn a_batch_larger_than_the_bound_is_refused_on_an_empty_memtable() {
    let mut m = Memtable::new(100);
    let mut b = empty_batch("cpu");
    add_row(
        &mut b,
        &key(&[("host", "a")]),
        1,
        &[("v", Value::Integer(1))],
    );
    let err = m.insert(&b).expect_err("too big");
    assert!(
        matches!(err, MemtableError::Full { bytes: 0, bytes_max: 100, batch_bytes } if batch_bytes > 100)
    );
    assert!(m.is_empty());
    assert_eq!(m.tables().count(), 0);
}

#[test]
fn many_series_and_hash_collisions() {
    let mut m = Memtable::new(BIG);
    for round in 0..3 {
        let mut b = empty_batch("cpu");
        for i in 0..5000 {
            let mut k = key(&[
                ("host", &format!("h{i}")),
                ("rack", &format!("r{}", i % 10)),
            ]);
            if i % 100 < 3 {
                k.hash = 42; // a forced collision: three series per hundred share a hash
            }
            add_row(&mut b, &k, round, &[("v", Value::Integer(i * 10 + round))]);
        }
        m.insert(&b).expect("insert");
    }
    assert_eq!(m.series_count(), 5000);
    assert_eq!(m.rows(), 15000);
    let scan = m.scan(TENANT, DB, "cpu").expect("table");
    assert_eq!(scan.series_count(), 5000);
    for (i, series) in scan.series().enumerate() {
        assert_eq!(
            series.key().tag("host").unwrap_or_default(),
            format!("h{i}"),
            "first-seen order"
        );
        assert_eq!(series.time(), &[0, 1, 2]);
        let ColumnValues::Integer(v) = series.column(0).values() else {
            panic!("integer column")
        };
        let i = i as i64;
        assert_eq!(v, &[i * 10, i * 10 + 1, i * 10 + 2]);
        assert!(series.column(0).validity().is_none());
    }
    check_bytes(&m);
}

#[test]
fn equal_keys_in_one_batch_share_a_series() {
    // A batch listing one key twice, rows alternating between the two entries.
    let k = key(&[("host", "a")]);
    let batch = |times: [i64; 2]| {
        let mut b = empty_batch("cpu");
        b.series = vec![k.clone(), k.clone()];
        b.series_of_row = vec![0, 1];
        b.time = times.to_vec();
        b.fields.push(FieldColumn {
            name: "v".into(),
            values: FieldValues::Integer(vec![Some(times[0]), Some(times[1])]),
        });
        b
    };
    let mut m = Memtable::new(BIG);
    m.insert(&batch([1, 2])).expect("insert, new series");
    m.insert(&batch([3, 4])).expect("insert, existing series");
    assert_eq!(m.series_count(), 1);
    let points: Vec<_> = dump(&m, "cpu")
        .into_iter()
        .map(|(_, t, v)| (t, v))
        .collect();
    let want: Vec<_> = (1..=4)
        .map(|t| (t, vec![Some(format!("Integer({t})"))]))
        .collect();
    assert_eq!(points, want);
    check_bytes(&m);
}

#[test]
fn string_fields_and_nulls_in_columns() {
    let mut m = Memtable::new(BIG);
    let k = key(&[("host", "a")]);
    let mut b = empty_batch("log");
    add_row(
        &mut b,
        &k,
        1,
        &[("msg", Value::String("hello")), ("n", Value::Unsigned(1))],
    );
    add_row(&mut b, &k, 2, &[("n", Value::Unsigned(2))]);
    add_row(
        &mut b,
        &k,
        3,
        &[("msg", Value::String("wörld")), ("n", Value::Unsigned(3))],
    );
    add_row(&mut b, &k, 3, &[("msg", Value::String("w"))]);
    add_row(&mut b, &k, 4, &[("msg", Value::String(""))]);
    m.insert(&b).expect("insert");
    let scan = m.scan(TENANT, DB, "log").expect("table");
    let series = scan.series().next().expect("one series");
    let msg = series.column(0);
    assert_eq!(msg.rows(), 4);
    let got: Vec<_> = (0..4).map(|i| msg.get(i)).collect();
    assert_eq!(
        got,
        vec![
            Some(Value::String("hello")),
            None,
            Some(Value::String("w")),
            Some(Value::String(""))
        ]
    );
    let ColumnValues::String(sv) = msg.values() else {
        panic!("strings")
    };
    assert_eq!(sv.data(), "hellow");
    assert_eq!(sv.ends(), &[5, 5, 6, 6]);
    assert_eq!(msg.validity(), Some(&[0b1101u64][..]));
    let n = series.column(1);
    assert_eq!(
        n.values().len(),
        3,
        "ragged: the trailing null is not stored"
    );
    assert_eq!(n.get(3), None);
    assert_eq!(n.get(2), Some(Value::Unsigned(3)));
    check_bytes(&m);
}

#[test]
fn a_column_new_to_an_existing_series_reads_null_before() {
    let mut m = Memtable::new(BIG);
    let k = key(&[("host", "a")]);
    let mut b = empty_batch("cpu");
    add_row(&mut b, &k, 1, &[("a", Value::Integer(1))]);
    add_row(&mut b, &k, 2, &[("a", Value::Integer(2))]);
    m.insert(&b).expect("insert");
    let mut b = empty_batch("cpu");
    add_row(&mut b, &k, 3, &[("b", Value::Boolean(false))]);
    m.insert(&b).expect("insert");
    let rows: Vec<_> = dump(&m, "cpu").into_iter().map(|(_, _, r)| r).collect();
    assert_eq!(
        rows,
        vec![
            vec![s("Integer(1)"), None],
            vec![s("Integer(2)"), None],
            vec![None, s("Boolean(false)")]
        ]
    );
    check_bytes(&m);
}

#[test]
fn empty_batch_changes_nothing() {
    let mut m = Memtable::new(BIG);
    let mut b = empty_batch("cpu");
    b.series.push(key(&[("host", "a")]));
    b.fields.push(FieldColumn {
        name: "x".into(),
        values: FieldValues::Integer(Vec::new()),
    });
    m.insert(&b).expect("empty insert");
    assert!(m.is_empty());
    assert_eq!((m.bytes(), m.series_count(), m.tables().count()), (0, 0, 0));
    assert!(m.scan(TENANT, DB, "cpu").is_none());
}

#[test]
fn scan_of_an_unknown_table_is_none() {
    let mut m = Memtable::new(BIG);
    let mut b = empty_batch("cpu");
    add_row(&mut b, &key(&[]), 1, &[("x", Value::Integer(1))]);
    m.insert(&b).expect("insert");
    assert!(m.scan(TENANT, DB, "mem").is_none());
    assert!(m.scan(TENANT, "other", "cpu").is_none());
    assert!(m.scan("other", DB, "cpu").is_none());
    assert!(m.scan(TENANT, DB, "cpu").is_some());
}

#[test]
fn tables_list_columns_in_first_seen_order() {
    let mut m = Memtable::new(BIG);
    let k = key(&[("host", "a")]);
    let mut b = empty_batch("cpu");
    add_row(
        &mut b,
        &k,
        1,
        &[("z", Value::Float(1.0)), ("a", Value::String("x"))],
    );
    m.insert(&b).expect("insert");
    let mut b = empty_batch("mem");
    add_row(&mut b, &k, 1, &[("used", Value::Unsigned(1))]);
    m.insert(&b).expect("insert");
    let mut b = empty_batch("cpu");
    add_row(
        &mut b,
        &k,
        2,
        &[("m", Value::Boolean(true)), ("z", Value::Float(2.0))],
    );
    m.insert(&b).expect("insert");
    let tables: Vec<_> = m
        .tables()
        .map(|t| {
            let cols: Vec<_> = t
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.value_type))
                .collect();
            (t.tenant, t.database, t.table, cols)
        })
        .collect();
    assert_eq!(
        tables,
        vec![
            (
                TENANT,
                DB,
                "cpu",
                vec![
                    ("z", ValueType::Float),
                    ("a", ValueType::String),
                    ("m", ValueType::Boolean)
                ]
            ),
            (TENANT, DB, "mem", vec![("used", ValueType::Unsigned)]),
        ]
    );
}

#[test]
fn malformed_batch_is_refused() {
    let mut m = Memtable::new(BIG);
    let mut b = empty_batch("cpu");
    add_row(&mut b, &key(&[]), 1, &[("x", Value::Integer(1))]);
    b.series_of_row[0] = 7;
    assert!(matches!(m.insert(&b), Err(MemtableError::Batch { .. })));
    assert!(m.is_empty());
}

#[test]
fn take_leaves_an_empty_memtable_with_the_same_bound() {
    let mut m = Memtable::new(BIG);
    let mut b = empty_batch("cpu");
    add_row(&mut b, &key(&[]), 1, &[("x", Value::Integer(1))]);
    m.insert(&b).expect("insert");
    let frozen = m.take();
    assert!(m.is_empty());
    assert_eq!((m.bytes(), m.bytes_max(), m.tables().count()), (0, BIG, 0));
    assert_eq!(frozen.rows(), 1);
    assert!(frozen.bytes() > 0);
    m.insert(&b).expect("insert after take");
    assert_eq!(m.rows(), 1);
}

/// A tiny deterministic generator (xorshift64*), so the differential test needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The shape of a random workload for `check_against_model`.
#[derive(Debug, Clone, Copy)]
struct Workload {
    batches: usize,
    rows_max: u64,
    hosts: u64,
    /// None: every row gets the next time (series stay strictly increasing). Some(n): times
    /// drawn from n values, so duplicates and disorder abound.
    times: Option<u64>,
    /// Out of 3: how many rows in 3 have a given field.
    fill: u64,
}

/// Inserts random batches and compares a full scan with a plain model of the merge rules.
fn check_against_model(seed: u64, w: Workload) {
    const NAMES: [&str; 4] = ["i", "f", "s", "b"];
    let words = ["", "a", "bb", "ccc", "dé"];
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut m = Memtable::new(BIG);
    // (host, time) → column → value: the model of merge semantics.
    let mut model: BTreeMap<(String, i64), HashMap<&str, String>> = BTreeMap::new();
    let mut clock = 0;
    for _ in 0..w.batches {
        let mut b = empty_batch("t");
        for _ in 0..rng.below(w.rows_max + 1) {
            let host = format!("h{}", rng.below(w.hosts));
            clock += 1;
            let time = w.times.map_or(clock, |n| rng.below(n) as i64 - 10);
            let mut fields = Vec::new();
            for (c, name) in NAMES.iter().enumerate() {
                if rng.below(3) >= w.fill {
                    continue;
                }
                let x = rng.below(1000);
                let v = match c {
                    0 => Value::Integer(x as i64),
                    1 => Value::Float(x as f64),
                    2 => Value::String(words[x as usize % words.len()]),
                    _ => Value::Boolean(x % 2 == 0),
                };
                fields.push((*name, v));
            }
            let point = model.entry((host.clone(), time)).or_default();
            for (name, v) in &fields {
                point.insert(name, format!("{v:?}"));
            }
            add_row(&mut b, &key(&[("host", &host)]), time, &fields);
        }
        m.insert(&b).expect("insert");
        check_bytes(&m);
    }
    let Some(info) = m.tables().next() else {
        assert!(model.is_empty());
        return;
    };
    let columns: Vec<&str> = info.columns.iter().map(|c| c.name.as_str()).collect();
    let mut got: Vec<_> = dump(&m, "t")
        .into_iter()
        .map(|(tags, t, row)| ((tags[0].1.clone(), t), row))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<_> = model
        .iter()
        .map(|(k, point)| {
            let row = columns
                .iter()
                .map(|c| point.get(c).cloned())
                .collect::<Vec<_>>();
            (k.clone(), row)
        })
        .collect();
    assert_eq!(got.len(), want.len(), "seed {seed} {w:?}");
    assert!(
        got == want,
        "seed {seed} {w:?}: scan differs from the model"
    );
}

#[test]
fn matches_a_plain_model_with_duplicates_and_disorder() {
    let w = Workload {
        batches: 20,
        rows_max: 40,
        hosts: 5,
        times: Some(30),
        fill: 2,
    };
    for seed in 1..=30 {
        check_against_model(seed, w);
    }
}

#[test]
fn matches_a_plain_model_across_column_blocks() {
    // Over 8192 rows, so table columns span several blocks, with and without disorder.
    let w = Workload {
        batches: 8,
        rows_max: 5000,
        hosts: 50,
        times: Some(2000),
        fill: 2,
    };
    check_against_model(1, w);
    let w = Workload { times: None, ..w };
    check_against_model(2, w);
    let w = Workload {
        times: None,
        fill: 3,
        ..w
    };
    check_against_model(3, w);
}

#[test]
fn insert_bytes_predicts_and_changes_nothing() {
    let mut m = Memtable::new(BIG);
    for round in 0..50 {
        let mut b = empty_batch("cpu");
        for i in 0..(round * 7 % 300) {
            let host = format!("h{}", i % 40);
            let fields = [("v", Value::Integer(i)), ("s", Value::String("some text"))];
            add_row(&mut b, &key(&[("host", &host)]), round * 1000 + i, &fields);
        }
        let predicted = m.insert_bytes(&b).expect("fits");
        assert_eq!(m.insert_bytes(&b), Ok(predicted), "asking changes nothing");
        let before = m.bytes();
        m.insert(&b).expect("insert");
        assert!(m.bytes() - before <= predicted, "round {round}");
    }
    let mut bad = empty_batch("cpu");
    add_row(&mut bad, &key(&[]), 1, &[("v", Value::Float(1.0))]);
    let (bytes, rows) = (m.bytes(), m.rows());
    assert!(matches!(
        m.insert_bytes(&bad),
        Err(MemtableError::TypeConflict { .. })
    ));
    assert_eq!((m.bytes(), m.rows()), (bytes, rows));
}

/// One TSBS cpu-only batch: 1000 hosts with 10 tags each, 10 integer fields, 5000 rows (each
/// host 5 points 10 s apart). `set_times` moves it to round `n`.
fn tsbs_batch() -> TableBatch {
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
    let mut b = empty_batch("cpu");
    for h in 0..1000usize {
        let tags: Vec<(String, String)> = TAGS
            .iter()
            .enumerate()
            .map(|(i, k)| match i {
                2 => (k.to_string(), format!("host_{h}")),
                _ => (k.to_string(), format!("{k}_{}", (h * (i + 3)) % 17)),
            })
            .collect();
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        b.series.push(key(&tags));
    }
    let rows = 5000;
    b.series_of_row = (0..rows).map(|r| (r % 1000) as u32).collect();
    b.time = vec![0; rows];
    b.fields = FIELDS
        .iter()
        .map(|f| FieldColumn {
            name: f.to_string(),
            values: FieldValues::Integer((0..rows).map(|_| Some(rng.below(100) as i64)).collect()),
        })
        .collect();
    b
}

fn set_times(b: &mut TableBatch, n: usize) {
    for (r, t) in b.time.iter_mut().enumerate() {
        *t = ((n * 5 + r / 1000) * 10_000_000_000) as i64;
    }
}

#[test]
#[ignore = "benchmark: cargo test -p chronoshard-shard --release -- --ignored --nocapture"]
fn bench_tsbs_insert_rate() {
    const BATCHES: usize = 400;
    let mut batch = tsbs_batch();
    let rows = BATCHES * batch.rows();
    let mut best = f64::MAX;
    let mut m = Memtable::new(usize::MAX);
    for _ in 0..5 {
        m = Memtable::new(usize::MAX);
        let mut spent = std::time::Duration::ZERO;
        for n in 0..BATCHES {
            // Untimed: the batch is rewritten in place, so it is in cache as it would be right
            // after parsing and the WAL append.
            set_times(&mut batch, n);
            let start = std::time::Instant::now();
            m.insert(&batch).expect("insert");
            spent += start.elapsed();
        }
        best = best.min(spent.as_secs_f64());
    }
    assert_eq!(m.rows(), rows);
    let start = std::time::Instant::now();
    let scan = m.scan(TENANT, DB, "cpu").expect("table");
    let mut values = 0;
    for series in scan.series() {
        for c in 0..scan.columns().len() {
            values += series.column(c).values().len();
        }
    }
    let scan_s = start.elapsed().as_secs_f64();
    assert_eq!(values, rows * 10);
    println!(
        "memtable insert, TSBS cpu-only shape (1000 series x 10 tags, 10 i64 fields, \
         5000-row batches), best of 5: {rows} rows in {:.1} ms = {:.2} M rows/s ({:.0} ns/row); \
         {:.1} bytes/row held; full scan (gather all columns) {:.1} ms = {:.0} ns/row",
        best * 1e3,
        rows as f64 / best / 1e6,
        best * 1e9 / rows as f64,
        m.bytes() as f64 / rows as f64,
        scan_s * 1e3,
        scan_s * 1e9 / rows as f64,
    );
}

fn delete(table: Option<&str>, tags: &[(&str, &[&str])], time: (i64, i64)) -> Delete {
    Delete {
        tenant: TENANT.into(),
        database: DB.into(),
        table: table.map(str::to_string),
        tag_filters: tags
            .iter()
            .map(|(t, vs)| (t.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect(),
        time,
    }
}

#[test]
fn deletes_remove_matching_points_and_drops_free_tables() {
    let mut m = Memtable::new(BIG);
    let (a, b) = (key(&[("host", "a")]), key(&[("host", "b")]));
    let mut cpu = empty_batch("cpu");
    for t in 0..30 {
        add_row(&mut cpu, &a, t, &[("v", Value::Integer(t))]);
        add_row(&mut cpu, &b, t, &[("v", Value::Integer(-t))]);
    }
    m.insert(&cpu).expect("insert cpu");
    let mut mem = empty_batch("mem");
    add_row(&mut mem, &a, 5, &[("free", Value::Float(1.5))]);
    m.insert(&mem).expect("insert mem");
    assert_eq!(m.rows(), 61);

    // host=a, 10 <= time < 20: ten points of one series go.
    assert_eq!(
        m.delete(&delete(Some("cpu"), &[("host", &["a"])], (10, 20))),
        10
    );
    let d = dump(&m, "cpu");
    assert_eq!(d.len(), 50);
    assert!(d
        .iter()
        .all(|(tags, t, _)| tags[0].1 == "b" || !(10..20).contains(t)));
    assert_eq!(m.rows(), 51);
    // A tag value not in the filter, a tag the series lacks: nothing.
    assert_eq!(
        m.delete(&delete(Some("cpu"), &[("host", &["c"])], (0, 100))),
        0
    );
    assert_eq!(
        m.delete(&delete(Some("cpu"), &[("dc", &["a"])], (0, 100))),
        0
    );
    // No tag filter, a time range, every table of the database.
    assert_eq!(m.delete(&delete(None, &[], (25, i64::MAX))), 10);
    assert_eq!(dump(&m, "mem").len(), 1);
    check_bytes(&m);

    // DROP TABLE: the table and its memory go; the other table stays.
    let before = m.bytes();
    assert_eq!(
        m.delete(&delete(Some("cpu"), &[], (i64::MIN, i64::MAX))),
        40
    );
    assert!(m.scan(TENANT, DB, "cpu").is_none());
    assert!(m.bytes() < before);
    assert_eq!(m.series_count(), 1);
    assert_eq!(m.rows(), 1);
    check_bytes(&m);
    assert_eq!(point(&m, "mem", &a, 5), vec![s("Float(1.5)")]);

    // The table comes back empty, with a new type for its column.
    let mut again = empty_batch("cpu");
    add_row(&mut again, &a, 1, &[("v", Value::Float(2.0))]);
    m.insert(&again).expect("recreated table takes a new type");
    assert_eq!(dump(&m, "cpu").len(), 1);
    check_bytes(&m);

    // DROP DATABASE.
    assert_eq!(m.delete(&delete(None, &[], (i64::MIN, i64::MAX))), 2);
    assert!(m.is_empty());
    assert_eq!(m.tables().len(), 0);
    check_bytes(&m);
}

/// Whether every series of the first table is strict, and its times as stored.
fn strictness(m: &Memtable) -> Vec<(bool, Vec<i64>)> {
    m.tables[0]
        .series
        .iter()
        .map(|s| (s.strict, s.entries.iter().map(|e| e.time).collect()))
        .collect()
}

#[test]
fn late_writes_near_the_end_keep_a_series_strict() {
    let mut m = Memtable::new(BIG);
    let k = key(&[("host", "a")]);
    // Batches of a series arriving out of order, as from several connections: still strict,
    // stored sorted, and read the same as ever.
    for start in [20, 0, 30, 10] {
        let mut b = empty_batch("cpu");
        for t in start..start + 5 {
            add_row(&mut b, &k, t * 10, &[("x", Value::Integer(t))]);
        }
        m.insert(&b).expect("insert");
    }
    let mut points: Vec<i64> = [20, 0, 30, 10].iter().flat_map(|s| *s..s + 5).collect();
    points.sort_unstable();
    let expected: Vec<i64> = points.iter().map(|t| t * 10).collect();
    assert_eq!(strictness(&m), vec![(true, expected)]);
    let got: Vec<(i64, Vec<Option<String>>)> = dump(&m, "cpu")
        .into_iter()
        .map(|(_, t, row)| (t, row))
        .collect();
    let want: Vec<_> = points
        .iter()
        .map(|t| (t * 10, vec![Some(format!("Integer({t})"))]))
        .collect();
    assert_eq!(got, want);
    check_bytes(&m);

    // A repeated time makes it non-strict (merged on read, later write winning).
    let mut b = empty_batch("cpu");
    add_row(&mut b, &k, 100, &[("x", Value::Integer(-1))]);
    m.insert(&b).expect("insert");
    assert!(!strictness(&m)[0].0);
    assert_eq!(point(&m, "cpu", &k, 100), vec![s("Integer(-1)")]);

    // A write earlier than the last RESORT_MAX entries is not re-sorted: non-strict too.
    let mut m = Memtable::new(BIG);
    let mut b = empty_batch("cpu");
    for t in 1..=2000 {
        add_row(&mut b, &k, t, &[("x", Value::Integer(t))]);
    }
    m.insert(&b).expect("insert");
    let mut b = empty_batch("cpu");
    add_row(&mut b, &k, 0, &[("x", Value::Integer(0))]);
    m.insert(&b).expect("insert");
    assert!(!strictness(&m)[0].0);
    let times: Vec<i64> = dump(&m, "cpu").iter().map(|(_, t, _)| *t).collect();
    assert_eq!(times, (0..=2000).collect::<Vec<i64>>());
}
