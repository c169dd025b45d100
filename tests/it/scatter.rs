//! Plan fragments on the shards: exact aggregates over series spread across two shards,
//! compared with values computed here from the rows written; the plan shape EXPLAIN shows; a
//! large result streamed from the shards' lazy scans.

use crate::common::{write, Server};
use crate::sql::sql;

const HOSTS: i64 = 400;
const POINTS: i64 = 50;
const REGIONS: i64 = 4;

/// One row written: (host, region, seconds, v).
type Row = (i64, i64, i64, i64);

/// `HOSTS` series in `REGIONS` regions, `POINTS` points 1 s apart; v is unique per row.
fn load(s: &Server) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut body = String::new();
    for host in 0..HOSTS {
        for t in 0..POINTS {
            let (region, v) = (host % REGIONS, host * POINTS + t - 3_000);
            rows.push((host, region, t, v));
            body.push_str(&format!(
                "m,host=h{host:03},region=r{region} v={v}i {}\n",
                t * 1_000_000_000
            ));
        }
    }
    let r = write(s, "", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    rows
}

/// The CSV answer's data lines, each split into fields.
fn csv(s: &Server, query: &str) -> Vec<Vec<String>> {
    let r = sql(s, "", None, query);
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r.text()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

fn int(field: &str) -> i64 {
    field
        .parse()
        .unwrap_or_else(|_| panic!("{field:?} is not an integer"))
}

#[test]
fn aggregates_on_the_shards_are_exact() {
    let s = Server::start("", 2);
    let rows = load(&s);
    let vs: Vec<i64> = rows.iter().map(|r| r.3).collect();
    let (n, sum) = (vs.len() as i64, vs.iter().sum::<i64>());
    let all = csv(&s, "SELECT count(*), sum(v), min(v), max(v), avg(v) FROM m");
    let row = &all[0];
    assert_eq!(int(&row[0]), n);
    assert_eq!(int(&row[1]), sum);
    assert_eq!(int(&row[2]), *vs.iter().min().expect("rows"));
    assert_eq!(int(&row[3]), *vs.iter().max().expect("rows"));
    let avg: f64 = row[4].parse().expect("avg is a number");
    assert_eq!(avg, sum as f64 / n as f64);

    let per_region = csv(
        &s,
        "SELECT region, count(*), sum(v), max(v) FROM m GROUP BY region ORDER BY region",
    );
    assert_eq!(per_region.len(), REGIONS as usize);
    for (region, got) in per_region.iter().enumerate() {
        let mine: Vec<i64> = rows
            .iter()
            .filter(|r| r.1 == region as i64)
            .map(|r| r.3)
            .collect();
        assert_eq!(got[0], format!("r{region}"));
        assert_eq!(int(&got[1]), mine.len() as i64);
        assert_eq!(int(&got[2]), mine.iter().sum::<i64>());
        assert_eq!(int(&got[3]), *mine.iter().max().expect("rows"));
    }

    let per_bin = csv(
        &s,
        "SELECT date_bin(INTERVAL '10 seconds', time) AS b, count(*), sum(v) FROM m \
         WHERE host IN ('h001', 'h002', 'h399') GROUP BY b ORDER BY b",
    );
    assert_eq!(per_bin.len(), (POINTS / 10) as usize);
    for (bin, got) in per_bin.iter().enumerate() {
        let bin = bin as i64;
        let mine: Vec<i64> = rows
            .iter()
            .filter(|r| [1, 2, 399].contains(&r.0) && r.2 / 10 == bin)
            .map(|r| r.3)
            .collect();
        assert_eq!(
            got[0],
            format!("1970-01-01T00:00:{:02}.000000000", bin * 10)
        );
        assert_eq!(int(&got[1]), mine.len() as i64);
        assert_eq!(int(&got[2]), mine.iter().sum::<i64>());
    }

    let latest = csv(
        &s,
        "SELECT time, host, v FROM m ORDER BY time DESC, host LIMIT 5",
    );
    let mut mine = rows.clone();
    mine.sort_by_key(|r| (-r.2, r.0));
    let expected: Vec<Vec<String>> = mine[..5]
        .iter()
        .map(|r| {
            vec![
                format!("1970-01-01T00:00:{:02}.000000000", r.2),
                format!("h{:03}", r.0),
                r.3.to_string(),
            ]
        })
        .collect();
    assert_eq!(latest, expected);

    // Plans whose fragment stops below a non-exchange (a full sort, a join) still answer exactly.
    let sorted = csv(&s, "SELECT v FROM m WHERE region = 'r1' ORDER BY v DESC");
    let mut mine: Vec<i64> = rows.iter().filter(|r| r.1 == 1).map(|r| r.3).collect();
    mine.sort_unstable_by(|a, b| b.cmp(a));
    let got: Vec<i64> = sorted.iter().map(|r| int(&r[0])).collect();
    assert_eq!(got, mine);
    let joined = csv(
        &s,
        "SELECT count(*), sum(a.v - b.v) FROM m a JOIN m b ON a.host = b.host AND a.time = b.time",
    );
    assert_eq!(joined, vec![vec![n.to_string(), "0".to_string()]]);

    let filtered = csv(
        &s,
        "SELECT count(*) FROM m WHERE v % 7 = 0 AND region = 'r2'",
    );
    let mine = rows.iter().filter(|r| r.3 % 7 == 0 && r.1 == 2).count();
    assert_eq!(int(&filtered[0][0]), mine as i64);
}

/// EXPLAIN's plan text (the `physical_plan` row).
fn explain(s: &Server, query: &str) -> String {
    let r = sql(
        s,
        "",
        Some("application/nd-json"),
        &format!("EXPLAIN {query}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let line = text
        .lines()
        .find(|l| l.contains("\"physical_plan\""))
        .unwrap_or_else(|| panic!("no physical plan in {text}"));
    line.replace("\\n", "\n")
}

#[test]
fn explain_shows_the_fragment_under_the_gather() {
    let s = Server::start("", 2);
    load(&s);
    let plan = explain(&s, "SELECT region, count(*) FROM m GROUP BY region");
    let at = |needle: &str| {
        plan.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in\n{plan}"))
    };
    let gather = at("ShardGatherExec: shards=2, path=fragment");
    assert!(at("ShardAggregateExec: table=m") > gather, "{plan}");
    assert!(at("CoalescePartitionsExec") < gather, "{plan}");
    // With a filter the scan cannot take, DataFusion's partial aggregate runs on the shards.
    let plan = explain(
        &s,
        "SELECT region, count(*) FROM m WHERE v % 2 = 0 GROUP BY region",
    );
    let at = |needle: &str| {
        plan.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in\n{plan}"))
    };
    let gather = at("ShardGatherExec: shards=2, path=fragment");
    assert!(at("AggregateExec: mode=Partial") > gather, "{plan}");
    assert!(at("FilterExec") > gather, "{plan}");
    assert!(at("ShardScanExec: table=m") > gather, "{plan}");

    let topk = explain(&s, "SELECT time, v FROM m ORDER BY time DESC LIMIT 3");
    let gather = topk.find("ShardGatherExec").expect("a gather");
    assert!(topk.contains("path=fragment"), "{topk}");
    assert!(
        topk.find("SortExec: TopK(fetch=3)").expect("TopK") > gather,
        "{topk}"
    );

    // EXPLAIN ANALYZE runs the fragments on the shards and reports their metrics.
    let r = sql(
        &s,
        "",
        Some("application/nd-json"),
        "EXPLAIN ANALYZE SELECT region, count(*) FROM m WHERE v % 2 = 0 GROUP BY region",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("ShardGatherExec"), "{}", r.text());
    let text = r.text();
    let line = |needle: &str| {
        text.split("\\n")
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in {text}"))
            .to_string()
    };
    assert!(
        line("ShardScanExec").contains("output_rows=20.00 K"),
        "{text}"
    );
    assert!(line("mode=Partial").contains("output_rows=8"), "{text}");
    let r = sql(
        &s,
        "",
        Some("application/nd-json"),
        "EXPLAIN ANALYZE SELECT region, count(*) FROM m GROUP BY region",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let line = text
        .split("\\n")
        .find(|l| l.contains("ShardAggregateExec"))
        .unwrap_or_else(|| panic!("no shard aggregate in {text}"));
    assert!(line.contains("output_rows=8"), "{text}");

    // A full sort is not run on the shards: only the scan is, and EXPLAIN says why.
    let sorted = explain(&s, "SELECT time, v FROM m ORDER BY v");
    assert!(sorted.contains("path=fallback (SortExec"), "{sorted}");
}

/// Series and points per series of `load_big`: 300k rows.
pub const BIG_SERIES: i64 = 100;
pub const BIG_PER_SERIES: i64 = 3_000;

/// Table `big`: `BIG_SERIES` series `h<n>`, v = n * BIG_PER_SERIES + t, unique 0..300k.
pub fn load_big(s: &Server) {
    for chunk in 0..4 {
        let mut body = String::new();
        for host in (chunk * BIG_SERIES / 4)..((chunk + 1) * BIG_SERIES / 4) {
            for t in 0..BIG_PER_SERIES {
                let v = host * BIG_PER_SERIES + t;
                body.push_str(&format!("big,host=h{host} v={v}i {t}\n"));
            }
        }
        let r = write(s, "", &body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// Checks a CSV answer of `SELECT host, v FROM big`: every row exactly once.
pub fn check_big_csv(text: &str) {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("host,v"));
    let mut seen = vec![false; (BIG_SERIES * BIG_PER_SERIES) as usize];
    for line in lines {
        let (_, v) = line.split_once(',').expect("two fields");
        let v = int(v) as usize;
        assert!(!seen[v], "row {v} twice");
        seen[v] = true;
    }
    assert!(seen.iter().all(|&x| x), "every row arrives");
}

#[test]
fn a_large_result_arrives_whole() {
    let s = Server::start("", 2);
    load_big(&s);
    let started = std::time::Instant::now();
    let r = sql(&s, "", None, "SELECT host, v FROM big");
    assert_eq!(r.status, 200, "{}", r.text());
    eprintln!("300k rows as one CSV body in {:?}", started.elapsed());
    check_big_csv(&r.text());
}

/// A lastpoint query (latest row per tag group) reads only each series' latest point, and
/// answers exactly what the full scan answers: checked against values computed here, with
/// out-of-order and overwriting writes and groups made of several series on both shards.
#[test]
fn last_point_per_group_reads_one_point_per_series() {
    let s = Server::start("", 2);
    let rows = load(&s);
    // Out of order and overwriting: host 7 gets an older point, host 8 a rewrite of its latest
    // with a new v, host 9 a newer point without v (v stays null there).
    let extra = "m,host=h007,region=r3 v=-1i 1000000\n\
                 m,host=h008,region=r0 v=777777i 49000000000\n\
                 m,host=h009,region=r1 w=1i 59000000000\n";
    let r = write(&s, "", extra);
    assert_eq!(r.status, 200, "{}", r.text());
    let explain = sql(
        &s,
        "",
        None,
        "EXPLAIN SELECT DISTINCT ON (host) * FROM m ORDER BY host, time DESC",
    )
    .text();
    assert!(explain.contains("last point per series"), "{explain}");
    let latest = csv(
        &s,
        "SELECT DISTINCT ON (host) host, time, v FROM m ORDER BY host, time DESC",
    );
    assert_eq!(latest.len(), HOSTS as usize);
    for (host, got) in latest.iter().enumerate() {
        let (t, v) = match host {
            8 => (49, "777777".to_string()),
            9 => (59, String::new()),
            _ => (
                POINTS - 1,
                (host as i64 * POINTS + POINTS - 1 - 3_000).to_string(),
            ),
        };
        assert_eq!(got[0], format!("h{host:03}"));
        assert_eq!(
            got[1],
            format!("1970-01-01T00:00:{t:02}.000000000"),
            "host {host}"
        );
        assert_eq!(got[2], v, "host {host}");
    }
    // Per region: groups of 100 series each. The latest time is 49 s in every region but r1
    // (host 9's point at 59 s); v of a tie is any of the tied series', so only time is exact.
    let per_region = csv(
        &s,
        "SELECT DISTINCT ON (region) region, time FROM m ORDER BY region, time DESC",
    );
    let expected: Vec<Vec<String>> = (0..REGIONS)
        .map(|r| {
            let t = if r == 1 { 59 } else { POINTS - 1 };
            vec![
                format!("r{r}"),
                format!("1970-01-01T00:00:{t:02}.000000000"),
            ]
        })
        .collect();
    assert_eq!(per_region, expected);
    // The same question with a filter the scan cannot take reads every point: same answer.
    let full = csv(
        &s,
        "SELECT DISTINCT ON (host) host, time, v FROM m WHERE v IS NULL OR v IS NOT NULL \
         ORDER BY host, time DESC",
    );
    assert_eq!(full, latest);
    assert!(rows.len() > HOSTS as usize);
}
