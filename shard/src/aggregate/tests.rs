//! Aggregate tests: a differential test against the scan's rows aggregated the plain way, over
//! random memtables with out-of-order and repeated times and nulls of every shape, with every
//! function, small group tables (groups emitted in pieces), small budgets (many calls), top
//! buckets; and an ignored throughput measurement on the TSBS shape.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampSecondType, UInt64Type};

use super::*;
use crate::scan::scan_memtable;
use crate::scan::tests::{cpu_schema, random_memtable, tsbs_memtable, Rng};

/// A state value, typed, for comparing and merging.
#[derive(Debug, Clone, Copy, PartialEq)]
enum V {
    F(f64),
    I(i64),
    U(u64),
}

impl V {
    fn as_f64(self) -> f64 {
        match self {
            V::F(x) => x,
            V::I(x) => x as f64,
            V::U(x) => x as f64,
        }
    }

    fn add(self, o: V) -> V {
        match (self, o) {
            (V::F(a), V::F(b)) => V::F(a + b),
            (V::I(a), V::I(b)) => V::I(a.wrapping_add(b)),
            (V::U(a), V::U(b)) => V::U(a.wrapping_add(b)),
            other => panic!("mixed types {other:?}"),
        }
    }

    fn greater(self, o: V) -> bool {
        match (self, o) {
            (V::F(a), V::F(b)) => a.total_cmp(&b).is_gt(),
            (V::I(a), V::I(b)) => a > b,
            (V::U(a), V::U(b)) => a > b,
            other => panic!("mixed types {other:?}"),
        }
    }
}

/// One aggregate's state: (count, value), as the functions need.
type St = (u64, Option<V>);

fn merge(function: AggregateFunction, a: St, b: St) -> St {
    use AggregateFunction as F;
    let value = match (a.1, b.1) {
        (None, v) | (v, None) => v,
        (Some(x), Some(y)) => Some(match function {
            F::Sum | F::Avg => x.add(y),
            F::Max if y.greater(x) => y,
            F::Min if x.greater(y) => y,
            F::Max | F::Min => x,
            F::Count => x,
        }),
    };
    (a.0 + b.0, value)
}

type Key = (Vec<Option<String>>, Option<i64>);
type Table = BTreeMap<Key, Vec<St>>;

fn value_at(array: &dyn Array, row: usize) -> Option<V> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Float64 => V::F(array.as_primitive::<Float64Type>().value(row)),
        DataType::Int64 => V::I(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt64 => V::U(array.as_primitive::<UInt64Type>().value(row)),
        _ => return None,
    })
}

fn floor7(times: &[i64], out: &mut Vec<Option<i64>>) -> Result<(), String> {
    out.extend(times.iter().map(|t| Some(t - t.rem_euclid(7))));
    Ok(())
}

/// The expected groups: the scan's rows (already tested against the row model), aggregated
/// one row at a time.
fn expected(m: &Memtable, schema: &TableSchema, req: &AggregateRequest) -> Table {
    let batches = scan_memtable(m, schema, &req.scan).expect("scan");
    let mut table = Table::new();
    for b in &batches {
        let time = b.column(0).as_primitive::<TimestampSecondType>();
        for r in 0..b.num_rows() {
            let tags = req
                .group_tags
                .iter()
                .map(|&t| {
                    let c = b.column(1 + t).as_string::<i32>();
                    (!c.is_null(r)).then(|| c.value(r).to_string())
                })
                .collect();
            let mut bucket = Vec::new();
            if req.bucketed {
                floor7(&[time.value(r)], &mut bucket).expect("bucket");
            }
            let key = (tags, bucket.first().copied().flatten());
            let states: Vec<St> = req
                .aggregates
                .iter()
                .map(|a| {
                    let Some(f) = a.field else {
                        return (1, None);
                    };
                    let column = b.column(1 + schema.tags.len() + f);
                    let present = !column.is_null(r);
                    let v = value_at(column, r).map(|v| match a.function {
                        AggregateFunction::Avg => V::F(v.as_f64()),
                        _ => v,
                    });
                    (u64::from(present), v)
                })
                .collect();
            let entry = table
                .entry(key)
                .or_insert_with(|| vec![(0, None); states.len()]);
            for ((e, s), a) in entry.iter_mut().zip(states).zip(&req.aggregates) {
                *e = merge(a.function, *e, s);
            }
        }
    }
    // Counts carry no value; the rest carry no count but Avg's.
    for states in table.values_mut() {
        for (s, a) in states.iter_mut().zip(&req.aggregates) {
            match a.function {
                AggregateFunction::Count => s.1 = None,
                AggregateFunction::Avg => {}
                _ => s.0 = 0,
            }
        }
    }
    table
}

/// The cursor's output with duplicate groups merged; also the number of calls it took.
fn actual(
    m: &Memtable,
    schema: &TableSchema,
    req: &AggregateRequest,
    budget: usize,
) -> (Table, usize) {
    let mut cursor = AggregateCursor::new(schema, req.clone()).expect("cursor");
    let mut table = Table::new();
    let mut calls = 0;
    while !cursor.is_done() {
        calls += 1;
        assert!(calls < 100_000, "the cursor ends");
        let Some(b) = cursor.advance(m, budget, &mut floor7).expect("advance") else {
            continue;
        };
        assert_eq!(b.schema(), cursor.schema());
        for r in 0..b.num_rows() {
            let mut c = 0;
            let tags = req
                .group_tags
                .iter()
                .map(|_| {
                    let col = b.column(c).as_string::<i32>();
                    c += 1;
                    (!col.is_null(r)).then(|| col.value(r).to_string())
                })
                .collect();
            let bucket = if req.bucketed {
                c += 1;
                value_at(b.column(c - 1), r).map(|v| match v {
                    V::I(x) => x,
                    other => panic!("bucket {other:?}"),
                })
            } else {
                None
            };
            let states: Vec<St> = req
                .aggregates
                .iter()
                .map(|a| {
                    let first = value_at(b.column(c), r);
                    c += 1;
                    match a.function {
                        AggregateFunction::Count => match first {
                            Some(V::I(n)) => (n as u64, None),
                            other => panic!("count {other:?}"),
                        },
                        AggregateFunction::Avg => {
                            let n = match first {
                                Some(V::U(n)) => n,
                                other => panic!("avg count {other:?}"),
                            };
                            let sum = value_at(b.column(c), r);
                            c += 1;
                            assert_eq!(sum.is_none(), n == 0, "avg's sum is null iff no value");
                            (n, sum)
                        }
                        _ => (0, first),
                    }
                })
                .collect();
            let key = (tags, bucket);
            match table.get_mut(&key) {
                None => {
                    table.insert(key, states);
                }
                Some(held) => {
                    for ((h, s), a) in held.iter_mut().zip(states).zip(&req.aggregates) {
                        *h = merge(a.function, *h, s);
                    }
                }
            }
        }
    }
    (table, calls)
}

fn random_request(rng: &mut Rng) -> AggregateRequest {
    let mut scan = ScanRequest::new("cnosdb", "public", "cpu");
    if rng.below(2) == 0 {
        let a = rng.below(220) as i64 - 10;
        scan.time_range = (a, a + rng.below(220) as i64);
    }
    if rng.below(3) == 0 {
        let tag = ["host", "region", "zone"][rng.below(3) as usize];
        let values = ["h0", "h2", "eu", "us"];
        let allowed = (0..rng.below(3)).map(|_| values[rng.below(4) as usize]);
        scan.tag_filters = vec![(tag.into(), allowed.map(String::from).collect())];
    }
    let functions = [
        AggregateFunction::Count,
        AggregateFunction::Sum,
        AggregateFunction::Min,
        AggregateFunction::Max,
        AggregateFunction::Avg,
    ];
    // Numeric fields of `cpu_schema`: usage (float), count (int), big (unsigned), missing
    // (int, never written); count also over up (bool) and note (string), and over points.
    let aggregates = (0..1 + rng.below(4))
        .map(|_| {
            let function = functions[rng.below(5) as usize];
            let field = match function {
                AggregateFunction::Count => {
                    [None, Some(0), Some(3), Some(4), Some(5)][rng.below(5) as usize]
                }
                // Avg sums as floats: only over values whose sums are exact in any order.
                AggregateFunction::Avg => Some([0, 1, 5][rng.below(3) as usize]),
                _ => Some([0, 1, 2, 5][rng.below(4) as usize]),
            };
            Aggregate { function, field }
        })
        .collect();
    let group_tags = match rng.below(4) {
        0 => vec![],
        1 => vec![0],
        2 => vec![1],
        _ => vec![1, 0, 2],
    };
    let bucketed = rng.below(3) != 0;
    AggregateRequest {
        scan,
        group_tags,
        bucketed,
        aggregates,
        top_buckets: (bucketed && rng.below(3) == 0).then(|| TopBuckets {
            n: 1 + rng.below(4) as usize,
            null_below: i64::MIN,
        }),
        groups_max: [1, 3, 1000][rng.below(3) as usize],
    }
}

/// The groups of the `n` latest buckets.
fn top_only(table: &Table, n: usize) -> Table {
    let mut buckets: Vec<i64> = table.keys().filter_map(|(_, b)| *b).collect();
    buckets.sort_unstable();
    buckets.dedup();
    let Some(&threshold) = buckets.iter().rev().nth(n - 1).or(buckets.first()) else {
        return Table::new();
    };
    table
        .iter()
        .filter(|((_, b), _)| b.is_none_or(|b| b >= threshold))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn differential_against_the_scan() {
    let schema = cpu_schema();
    let (mut groups, mut multi_call, mut tops) = (0, 0, 0);
    for seed in 1..=8u64 {
        let m = random_memtable(seed * 0x9e37_79b9);
        let mut rng = Rng(seed * 31);
        for _ in 0..60 {
            let req = random_request(&mut rng);
            let budget = [1, 7, usize::MAX][rng.below(3) as usize];
            let want = expected(&m, &schema, &req);
            let (got, calls) = actual(&m, &schema, &req, budget);
            multi_call += usize::from(calls > 1);
            match req.top_buckets {
                None => assert_eq!(got, want, "{req:?}"),
                Some(t) => {
                    tops += 1;
                    let want = top_only(&want, t.n);
                    // Groups below the threshold may come out incomplete; none at or above it.
                    assert_eq!(top_only(&got, t.n), want, "{req:?}");
                }
            }
            groups += want.len();
        }
    }
    assert!(
        groups > 1000 && multi_call > 50 && tops > 20,
        "the requests exercise groups ({groups}), resumed calls ({multi_call}), top ({tops})"
    );
}

#[test]
fn bad_requests_are_refused_with_context() {
    let schema = cpu_schema();
    let base = AggregateRequest {
        scan: ScanRequest::new("cnosdb", "public", "cpu"),
        group_tags: vec![],
        bucketed: false,
        aggregates: vec![Aggregate {
            function: AggregateFunction::Sum,
            field: Some(4),
        }],
        top_buckets: None,
        groups_max: 10,
    };
    let text = |req: AggregateRequest| {
        AggregateCursor::new(&schema, req)
            .expect_err("refused")
            .to_string()
    };
    let t = text(base.clone());
    assert!(
        t.contains("cnosdb.public.cpu") && t.contains("numeric"),
        "{t}"
    );
    let mut r = base.clone();
    r.aggregates[0].field = Some(99);
    assert!(text(r).contains("field 99"));
    let mut r = base.clone();
    r.aggregates[0].field = Some(0);
    r.group_tags = vec![7];
    assert!(text(r).contains("group tag 7"));
    let mut r = base.clone();
    r.aggregates[0].field = Some(0);
    r.groups_max = 0;
    assert!(text(r).contains("groups_max"));
    let mut r = base;
    r.aggregates[0].field = Some(0);
    r.top_buckets = Some(TopBuckets {
        n: 2,
        null_below: i64::MIN,
    });
    assert!(text(r).contains("top buckets"));
}

/// A failing bucket function fails the call, naming the table.
#[test]
fn bucket_errors_carry_the_table() {
    let schema = cpu_schema();
    let m = random_memtable(5);
    let req = AggregateRequest {
        scan: ScanRequest::new("cnosdb", "public", "cpu"),
        group_tags: vec![0],
        bucketed: true,
        aggregates: vec![Aggregate {
            function: AggregateFunction::Count,
            field: None,
        }],
        top_buckets: None,
        groups_max: 10,
    };
    let mut cursor = AggregateCursor::new(&schema, req).expect("cursor");
    let e = cursor
        .advance(&m, usize::MAX, &mut |_, _| Err("overflow".to_string()))
        .expect_err("fails");
    assert!(e.to_string().contains("cnosdb.public.cpu") && e.to_string().contains("overflow"));
}

/// Throughput on the TSBS shape (`cargo test --release -p chronoshard-shard -- --ignored
/// bench_tsbs_aggregate_rate --nocapture`).
#[test]
#[ignore]
fn bench_tsbs_aggregate_rate() {
    let (m, schema) = tsbs_memtable(1000, 2000);
    let hour = |times: &[i64], out: &mut Vec<Option<i64>>| -> Result<(), String> {
        out.extend(times.iter().map(|t| Some(t - t.rem_euclid(3600))));
        Ok(())
    };
    let req = AggregateRequest {
        scan: ScanRequest::new("cnosdb", "public", "cpu"),
        group_tags: vec![2],
        bucketed: true,
        aggregates: vec![Aggregate {
            function: AggregateFunction::Avg,
            field: Some(0),
        }],
        top_buckets: None,
        groups_max: 1 << 16,
    };
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let mut cursor = AggregateCursor::new(&schema, req.clone()).expect("cursor");
        let mut rows = 0;
        while !cursor.is_done() {
            let mut f = hour;
            if let Some(b) = cursor.advance(&m, 1 << 16, &mut f).expect("advance") {
                rows += b.num_rows();
            }
        }
        std::hint::black_box(rows);
        best = best.min(start.elapsed().as_secs_f64());
    }
    let points = 1000.0 * 2000.0;
    println!(
        "avg by (hostname, hour) over 2M points: {:.1} ms, {:.1} M points/s",
        best * 1e3,
        points / best / 1e6
    );
}
