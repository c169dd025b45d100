//! The shard aggregate (a partial aggregate computed from each shard's series): every query
//! here is asked twice, once as written (EXPLAIN shows `ShardAggregateExec`) and once with an
//! always-true filter the scan cannot take, which leaves the aggregate to DataFusion; the two
//! answers must be byte for byte the same. The data has nulls, every numeric type, series
//! lacking a tag, out-of-order writes and overwrites, spread over both shards.

use crate::common::{write, Server};
use crate::sql::sql;

const HOSTS: i64 = 24;
const SECONDS: i64 = 600;

fn load(s: &Server) {
    let mut body = String::new();
    for host in 0..HOSTS {
        // Every fourth host has no region; f is absent on some points; times step by 7 s.
        let region = match host % 4 {
            3 => String::new(),
            r => format!(",region=r{r}"),
        };
        for t in (0..SECONDS).step_by(7) {
            let mut fields = vec![
                format!("i={}i", (host * 37 + t * 11) % 201 - 100),
                format!("u={}u", host * 1_000 + t),
            ];
            if (host + t) % 5 != 0 {
                fields.push(format!("f={}", ((host * 13 + t) % 97) as f64 / 8.0));
            }
            body.push_str(&format!(
                "agg,host=h{host:02}{region} {} {}\n",
                fields.join(","),
                t * 1_000_000_000
            ));
        }
    }
    let r = write(s, "", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    // Out of order, overwriting, and a point with only f.
    let extra = "agg,host=h01,region=r1 i=5000i,f=0.5 3000000000\n\
                 agg,host=h02,region=r2 i=-7i 14000000000\n\
                 agg,host=h05,region=r1 f=99.25 599000000000\n";
    let r = write(s, "", extra);
    assert_eq!(r.status, 200, "{}", r.text());
}

fn answer(s: &Server, query: &str) -> String {
    let r = sql(s, "", None, query);
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r.text()
}

fn plan(s: &Server, query: &str) -> String {
    answer(s, &format!("EXPLAIN {query}"))
}

/// Asks `query` (which contains `WHERE {w}`) with the pushable filter `pushed` and with it plus
/// a filter that keeps the aggregate off the shards; returns the answer.
fn both_ways(s: &Server, query: &str, pushed: &str) -> String {
    let fast = query.replace("{w}", pushed);
    let slow = query.replace(
        "{w}",
        &format!("{pushed} AND coalesce(length(host), 0) >= 0"),
    );
    let fast_plan = plan(s, &fast);
    assert!(
        fast_plan.contains("ShardAggregateExec"),
        "{fast}\n{fast_plan}"
    );
    let slow_plan = plan(s, &slow);
    assert!(
        !slow_plan.contains("ShardAggregateExec"),
        "{slow}\n{slow_plan}"
    );
    let got = answer(s, &fast);
    assert_eq!(got, answer(s, &slow), "{fast}");
    assert!(got.lines().count() > 1, "{fast}: {got}");
    got
}

#[test]
fn shard_aggregates_answer_as_datafusion_does() {
    let s = Server::start("", 2);
    load(&s);
    let all_time = "time >= '1970-01-01T00:00:00Z'";
    both_ways(
        &s,
        "SELECT date_bin(INTERVAL '1 minute', time) AS m, host, count(*), count(f), sum(i), \
         min(f), max(u), avg(i), avg(f), sum(u), min(i), max(f) FROM agg WHERE {w} \
         GROUP BY m, host ORDER BY m, host",
        "time >= '1970-01-01T00:01:10Z' AND time < '1970-01-01T00:08:00Z'",
    );
    let per_region = both_ways(
        &s,
        "SELECT region, count(*), sum(u), min(i), max(f), avg(f) FROM agg WHERE {w} \
         GROUP BY region ORDER BY region",
        all_time,
    );
    assert!(
        per_region.contains("\n,"),
        "the hosts without a region: {per_region}"
    );
    both_ways(
        &s,
        "SELECT count(*), count(f), sum(i), avg(f), min(u), max(i) FROM agg WHERE {w}",
        "host IN ('h01', 'h03', 'h07', 'h22')",
    );
    both_ways(
        &s,
        "SELECT date_trunc('minute', time) AS m, region, count(f), avg(u) FROM agg \
         WHERE {w} GROUP BY m, region ORDER BY m, region",
        "region = 'r1' OR region = 'r2'",
    );
    // A tag filter that matches nothing: the header alone, both ways.
    let query = "SELECT host, count(*) FROM agg WHERE host = 'nobody' GROUP BY host";
    assert!(plan(&s, query).contains("ShardAggregateExec"));
    assert_eq!(answer(&s, query), "host,count(*)\n");
}

#[test]
fn latest_buckets_are_read_from_the_series_ends() {
    let s = Server::start("", 2);
    load(&s);
    let query = "SELECT date_bin(INTERVAL '30 seconds', time) AS b, max(f), count(*) FROM agg \
                 WHERE {w} GROUP BY b ORDER BY b DESC LIMIT 3";
    let fast = query.replace("{w}", "time < '1970-01-01T00:09:50Z'");
    assert!(
        plan(&s, &fast).contains("latest 3 buckets"),
        "{}",
        plan(&s, &fast)
    );
    let got = both_ways(&s, query, "time < '1970-01-01T00:09:50Z'");
    assert_eq!(got.lines().count(), 4, "{got}");
    assert!(got.contains("1970-01-01T00:09:30.000000000"), "{got}");

    // With a tag as a second key: the rows of the latest buckets, in order.
    let query = "SELECT date_bin(INTERVAL '1 minute', time) AS m, region, max(i), avg(f) \
                 FROM agg WHERE {w} GROUP BY m, region ORDER BY m DESC, region LIMIT 7";
    let fast = query.replace("{w}", "time >= '1970-01-01T00:00:00Z'");
    assert!(
        plan(&s, &fast).contains("latest 7 buckets"),
        "{}",
        plan(&s, &fast)
    );
    let got = both_ways(&s, query, "time >= '1970-01-01T00:00:00Z'");
    assert_eq!(got.lines().count(), 8, "{got}");

    // Ascending order, or a limit on an aggregate, is not a latest-buckets question.
    let ascending = "SELECT date_bin(INTERVAL '1 minute', time) AS m, max(i) FROM agg \
                     GROUP BY m ORDER BY m LIMIT 2";
    let p = plan(&s, ascending);
    assert!(
        p.contains("ShardAggregateExec") && !p.contains("latest"),
        "{p}"
    );
    let by_value = "SELECT date_bin(INTERVAL '1 minute', time) AS m, max(i) AS x FROM agg \
                    GROUP BY m ORDER BY x DESC LIMIT 2";
    assert!(
        !plan(&s, by_value).contains("latest"),
        "{}",
        plan(&s, by_value)
    );
    // HAVING may drop the latest buckets: no shortcut.
    let having = "SELECT date_bin(INTERVAL '1 minute', time) AS m, max(i) FROM agg \
                  GROUP BY m HAVING max(i) > 90 ORDER BY m DESC LIMIT 2";
    assert!(!plan(&s, having).contains("latest"), "{}", plan(&s, having));
    let slow = "SELECT date_bin(INTERVAL '1 minute', time) AS m, max(i) FROM agg \
                WHERE coalesce(length(host), 0) >= 0 \
                GROUP BY m HAVING max(i) > 90 ORDER BY m DESC LIMIT 2";
    assert_eq!(answer(&s, having), answer(&s, slow));
}
