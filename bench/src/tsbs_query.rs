//! TSBS "devops" queries over the cpu-only data of [`crate::tsbs`], as SQL for chronoshard.
//!
//! The eight query types follow TSBS's definitions (`cmd/tsbs_generate_queries/uses/devops` and
//! the TimescaleDB generator, whose table layout matches ours: one wide `cpu` table with the tags
//! as columns): which metrics (always the *first* N of the ten, as TSBS's
//! `GetCPUMetricsSlice`), how many random distinct hosts, how long a random window, and which
//! bucket. Only the dialect differs: DataFusion's `date_bin(INTERVAL ..., time)` stands in for
//! `date_trunc` (both align to the epoch for minutes and hours), `hostname IN (...)` for TSBS's
//! chain of `OR`s, and the windows are those of current TSBS (12 h for double-groupby and
//! high-cpu; older TSBS used 24 h).
//!
//! Invariants:
//! - a query is a pure function of `(seed, type, index)`: the same seed gives the same SQL for
//!   query N of a type whatever other types run beside it and however many clients share them;
//! - every window lies inside the data's span `[start, last row + interval)`; a window longer
//!   than the span is the whole span (TSBS would refuse to generate such a query);
//! - window starts are whole seconds after the span's start, so the SQL stays readable;
//! - host names are `host_0 .. host_{scale-1}`, distinct within a query; a type that wants
//!   more hosts than the scale has (8 hosts at scale 5) takes all of them.
//!
//! Time literals are RFC 3339 strings compared to `time` (`time >= '2016-01-01T00:00:00Z'`):
//! checked against the real server (DataFusion 55), which casts them to the column's
//! `Timestamp(ns)`; `to_timestamp(...)` works too but adds nothing.

use std::fmt::{self, Write as _};

use crate::tsbs::{Rng, TsbsConfig, TsbsError};

const NS_PER_S: i64 = 1_000_000_000;
const NS_PER_MINUTE: i64 = 60 * NS_PER_S;
const NS_PER_HOUR: i64 = 60 * NS_PER_MINUTE;

/// The ten cpu fields in TSBS order; `*_N` queries use the first N.
pub const METRICS: [&str; 10] = [
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

/// One of TSBS's cpu-only query types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryType {
    /// `single-groupby-1-1-1`: max of 1 metric, 1 host, 1 hour, by minute.
    SingleGroupby1Metric1Host,
    /// `single-groupby-5-8-1`: max of 5 metrics, 8 hosts, 1 hour, by minute.
    SingleGroupby5Metrics8Hosts,
    /// `cpu-max-all-1`: max of all 10 metrics, 1 host, 8 hours, by hour.
    CpuMaxAll1,
    /// `double-groupby-1`: avg of 1 metric, all hosts, 12 hours, by hour and host.
    DoubleGroupby1,
    /// `double-groupby-all`: avg of all 10 metrics, all hosts, 12 hours, by hour and host.
    DoubleGroupbyAll,
    /// `high-cpu-1`: every row of 1 host over 12 hours with `usage_user > 90`.
    HighCpu1,
    /// `lastpoint`: the last row of every host.
    Lastpoint,
    /// `groupby-orderby-limit`: max(usage_user) of the last 5 minutes before a random end.
    GroupbyOrderbyLimit,
}

/// Why a `--types` list was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown query type {name:?} (known: all, {known})", known = QueryType::names())]
pub struct UnknownType {
    pub name: String,
}

impl QueryType {
    /// Every type, in TSBS's documentation order.
    pub const ALL: [QueryType; 8] = [
        QueryType::SingleGroupby1Metric1Host,
        QueryType::SingleGroupby5Metrics8Hosts,
        QueryType::CpuMaxAll1,
        QueryType::DoubleGroupby1,
        QueryType::DoubleGroupbyAll,
        QueryType::HighCpu1,
        QueryType::Lastpoint,
        QueryType::GroupbyOrderbyLimit,
    ];

    /// TSBS's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            QueryType::SingleGroupby1Metric1Host => "single-groupby-1-1-1",
            QueryType::SingleGroupby5Metrics8Hosts => "single-groupby-5-8-1",
            QueryType::CpuMaxAll1 => "cpu-max-all-1",
            QueryType::DoubleGroupby1 => "double-groupby-1",
            QueryType::DoubleGroupbyAll => "double-groupby-all",
            QueryType::HighCpu1 => "high-cpu-1",
            QueryType::Lastpoint => "lastpoint",
            QueryType::GroupbyOrderbyLimit => "groupby-orderby-limit",
        }
    }

    fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|t| t.name()).collect();
        names.join(", ")
    }

    /// Parses a comma-separated list of names (or `all`), dropping repeats, keeping the order.
    pub fn parse_list(list: &str) -> Result<Vec<QueryType>, UnknownType> {
        let mut types = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let picked: &[QueryType] = if name.eq_ignore_ascii_case("all") {
                &Self::ALL
            } else {
                let found = Self::ALL
                    .iter()
                    .find(|t| t.name().eq_ignore_ascii_case(name));
                std::slice::from_ref(found.ok_or_else(|| UnknownType {
                    name: name.to_owned(),
                })?)
            };
            for t in picked {
                if !types.contains(t) {
                    types.push(*t);
                }
            }
        }
        if types.is_empty() {
            return Err(UnknownType { name: list.into() });
        }
        Ok(types)
    }

    /// Position in [`QueryType::ALL`], which also separates the types' random streams.
    fn index(self) -> u64 {
        Self::ALL.iter().position(|&t| t == self).unwrap_or(0) as u64
    }
}

impl fmt::Display for QueryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A half-open time range `[start_ns, end_ns)`, in ns since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start_ns: i64,
    pub end_ns: i64,
}

impl TimeWindow {
    /// The span of a data set: its first timestamp up to one interval past its last row, as
    /// TSBS's `--timestamp-end` (so one day of data at 10 s is exactly 24 hours).
    pub fn of_data(cfg: &TsbsConfig) -> Result<Self, TsbsError> {
        let last_ns = cfg.last_timestamp()?;
        Ok(Self {
            start_ns: cfg.start_ns,
            end_ns: last_ns.saturating_add(cfg.interval_ns.max(1)),
        })
    }

    pub fn len_ns(&self) -> i128 {
        i128::from(self.end_ns) - i128::from(self.start_ns)
    }

    pub fn contains(&self, inner: &TimeWindow) -> bool {
        self.start_ns <= inner.start_ns
            && inner.start_ns <= inner.end_ns
            && inner.end_ns <= self.end_ns
    }
}

/// One generated query, with the parameters drawn for it (for tests and `--print-sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub query_type: QueryType,
    pub sql: String,
    /// Host numbers named in the `WHERE` clause (empty when the query spans all hosts).
    pub hosts: Vec<u64>,
    /// The random window (for groupby-orderby-limit only its end is used); `None` for lastpoint.
    pub window: Option<TimeWindow>,
}

/// Generates the queries of a data set: `query(type, index)` is deterministic for a seed.
#[derive(Debug, Clone)]
pub struct QueryGenerator {
    seed: u64,
    scale: u64,
    span: TimeWindow,
}

impl QueryGenerator {
    /// Queries over the data `cfg` describes (its scale and time span), drawn from `seed`.
    pub fn new(cfg: &TsbsConfig, seed: u64) -> Result<Self, TsbsError> {
        Ok(Self {
            seed,
            scale: cfg.scale.max(1),
            span: TimeWindow::of_data(cfg)?,
        })
    }

    pub fn span(&self) -> TimeWindow {
        self.span
    }

    /// Query number `index` of type `t`.
    pub fn query(&self, t: QueryType, index: u64) -> Query {
        let mut rng = Rng::for_query(self.seed, t.index(), index);
        let (metrics, agg) = match t {
            QueryType::SingleGroupby1Metric1Host => (1, "max"),
            QueryType::SingleGroupby5Metrics8Hosts => (5, "max"),
            QueryType::CpuMaxAll1 => (10, "max"),
            QueryType::DoubleGroupby1 => (1, "avg"),
            QueryType::DoubleGroupbyAll => (10, "avg"),
            _ => (1, "max"),
        };
        let (hosts, window_ns) = match t {
            QueryType::SingleGroupby1Metric1Host => (1, NS_PER_HOUR),
            QueryType::SingleGroupby5Metrics8Hosts => (8, NS_PER_HOUR),
            QueryType::CpuMaxAll1 => (1, 8 * NS_PER_HOUR),
            QueryType::DoubleGroupby1 | QueryType::DoubleGroupbyAll => (0, 12 * NS_PER_HOUR),
            QueryType::HighCpu1 => (1, 12 * NS_PER_HOUR),
            QueryType::GroupbyOrderbyLimit => (0, NS_PER_HOUR),
            QueryType::Lastpoint => (0, 0),
        };
        let window = (t != QueryType::Lastpoint).then(|| self.random_window(&mut rng, window_ns));
        let hosts = random_hosts(&mut rng, self.scale, hosts);
        let sql = match (t, window) {
            (QueryType::Lastpoint, _) | (_, None) => lastpoint_sql(),
            (
                QueryType::SingleGroupby1Metric1Host | QueryType::SingleGroupby5Metrics8Hosts,
                Some(w),
            ) => groupby_time_sql(agg, metrics, &hosts, w, "minute"),
            (QueryType::CpuMaxAll1, Some(w)) => groupby_time_sql(agg, metrics, &hosts, w, "hour"),
            (QueryType::DoubleGroupby1 | QueryType::DoubleGroupbyAll, Some(w)) => {
                double_groupby_sql(metrics, w)
            }
            (QueryType::HighCpu1, Some(w)) => high_cpu_sql(&hosts, w),
            (QueryType::GroupbyOrderbyLimit, Some(w)) => groupby_orderby_limit_sql(w),
        };
        Query {
            query_type: t,
            sql,
            hosts,
            window,
        }
    }

    /// A window of `len_ns` starting a whole number of seconds into the span, or the whole span
    /// when it is not longer than `len_ns` (TSBS's `RandWindow`, which picks any nanosecond).
    fn random_window(&self, rng: &mut Rng, len_ns: i64) -> TimeWindow {
        let span_ns = self.span.len_ns();
        if span_ns <= i128::from(len_ns) {
            return self.span;
        }
        let slack_s = u64::try_from((span_ns - i128::from(len_ns)) / i128::from(NS_PER_S))
            .unwrap_or(u64::MAX - 1);
        let offset_ns = i128::from(rng.below(slack_s + 1)) * i128::from(NS_PER_S);
        // In range: offset_ns + len_ns <= span_ns, and the span is within i64.
        let start_ns =
            i64::try_from(i128::from(self.span.start_ns) + offset_ns).unwrap_or(self.span.start_ns);
        let window = TimeWindow {
            start_ns,
            end_ns: start_ns.saturating_add(len_ns),
        };
        debug_assert!(self.span.contains(&window), "{window:?} in {:?}", self.span);
        window
    }
}

/// `n` distinct host numbers below `scale` (all of them, shuffled, when `n >= scale`), by
/// Floyd's sampling: exactly `n` draws, no retry loop.
fn random_hosts(rng: &mut Rng, scale: u64, n: u64) -> Vec<u64> {
    let n = n.min(scale);
    let mut picked: Vec<u64> = Vec::with_capacity(n as usize);
    for j in scale - n..scale {
        let t = rng.below(j + 1);
        picked.push(if picked.contains(&t) { j } else { t });
    }
    picked
}

fn host_list(hosts: &[u64]) -> String {
    let names: Vec<String> = hosts.iter().map(|h| format!("'host_{h}'")).collect();
    names.join(", ")
}

/// `agg(m) AS agg_m` for the first `n` metrics (TSBS's `getSelectClausesAggMetrics`).
fn agg_columns(agg: &str, n: usize, alias_prefix: &str) -> String {
    let cols: Vec<String> = METRICS[..n]
        .iter()
        .map(|m| format!("{agg}({m}) AS {alias_prefix}{m}"))
        .collect();
    cols.join(", ")
}

/// single-groupby-* and cpu-max-all-*: per-bucket maxima of a few hosts over a window.
fn groupby_time_sql(
    agg: &str,
    metrics: usize,
    hosts: &[u64],
    w: TimeWindow,
    bucket: &str,
) -> String {
    format!(
        "SELECT date_bin(INTERVAL '1 {bucket}', time) AS {bucket}, {} FROM cpu \
         WHERE hostname IN ({}) AND time >= '{}' AND time < '{}' \
         GROUP BY {bucket} ORDER BY {bucket}",
        agg_columns(agg, metrics, &format!("{agg}_")),
        host_list(hosts),
        rfc3339(w.start_ns),
        rfc3339(w.end_ns),
    )
}

/// double-groupby-*: hourly means per host (TSBS's CTE over `tags_id` flattened, since our
/// hostname is a column of `cpu`).
fn double_groupby_sql(metrics: usize, w: TimeWindow) -> String {
    format!(
        "SELECT date_bin(INTERVAL '1 hour', time) AS hour, hostname, {} FROM cpu \
         WHERE time >= '{}' AND time < '{}' \
         GROUP BY hour, hostname ORDER BY hour, hostname",
        agg_columns("avg", metrics, "mean_"),
        rfc3339(w.start_ns),
        rfc3339(w.end_ns),
    )
}

fn high_cpu_sql(hosts: &[u64], w: TimeWindow) -> String {
    format!(
        "SELECT * FROM cpu WHERE usage_user > 90.0 AND time >= '{}' AND time < '{}' \
         AND hostname IN ({})",
        rfc3339(w.start_ns),
        rfc3339(w.end_ns),
        host_list(hosts),
    )
}

/// TSBS's TimescaleDB form without a tags table. DataFusion 55 plans `DISTINCT ON` (checked on
/// the real server: one row per host, the newest), so no window-function rewrite is needed.
fn lastpoint_sql() -> String {
    "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC".to_owned()
}

fn groupby_orderby_limit_sql(w: TimeWindow) -> String {
    format!(
        "SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user) FROM cpu \
         WHERE time < '{}' GROUP BY minute ORDER BY minute DESC LIMIT 5",
        rfc3339(w.end_ns),
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.fffffffff]Z` for ns since the epoch (the fraction only when not 0).
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(NS_PER_S);
    let frac_ns = ns.rem_euclid(NS_PER_S);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac_ns != 0 {
        let _ = write!(out, ".{frac_ns:09}");
    }
    out.push('Z');
    out
}

/// The proleptic Gregorian date of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, the inverse of the `days_from_civil` that [`crate::tsbs`] parses with).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsbs::{parse_start, DEFAULT_START_NS};
    use std::collections::HashSet;

    fn gen_for(scale: u64, rows: u64, seed: u64) -> QueryGenerator {
        let cfg = TsbsConfig::new(scale, 1, DEFAULT_START_NS, 10, Some(rows)).expect("config");
        QueryGenerator::new(&cfg, seed).expect("generator")
    }

    /// The `host_N` numbers an SQL text names.
    fn named_hosts(sql: &str) -> Vec<u64> {
        sql.split("'host_")
            .skip(1)
            .map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().expect("host number")
            })
            .collect()
    }

    /// The time literals an SQL text compares `time` with, in order.
    fn time_literals(sql: &str) -> Vec<i64> {
        sql.split("time ")
            .skip(1)
            .filter_map(|rest| rest.split_once('\'').map(|(_, r)| r))
            .filter_map(|r| r.split_once('\'').map(|(lit, _)| lit))
            .map(|lit| parse_start(lit).expect("RFC 3339 literal"))
            .collect()
    }

    #[test]
    fn deterministic_per_seed_and_independent_of_other_types() {
        let a = gen_for(100, 100 * 8640, 7);
        let b = gen_for(100, 100 * 8640, 7);
        let other = gen_for(100, 100 * 8640, 8);
        for t in QueryType::ALL {
            let first: Vec<Query> = (0..20).map(|i| a.query(t, i)).collect();
            let again: Vec<Query> = (0..20).rev().map(|i| b.query(t, i)).rev().collect();
            assert_eq!(first, again, "{t}: same seed, any order, same SQL");
            if t != QueryType::Lastpoint {
                let distinct: HashSet<&str> = first.iter().map(|q| q.sql.as_str()).collect();
                assert!(distinct.len() > 10, "{t}: parameters vary with the index");
                let differs = (0..20).any(|i| other.query(t, i).sql != first[i as usize].sql);
                assert!(differs, "{t}: another seed draws other parameters");
            }
        }
        assert_eq!(
            a.query(QueryType::CpuMaxAll1, 3),
            gen_for(100, 100 * 8640, 7).query(QueryType::CpuMaxAll1, 3)
        );
    }

    #[test]
    fn windows_stay_inside_the_data_span() {
        // One day, a bit over an hour, and shorter than an hour (whole span expected).
        for (rows, scale) in [(50 * 8640, 50), (20 * 400, 20), (3 * 100, 3), (1, 1)] {
            let g = gen_for(scale, rows, 3);
            let span = g.span();
            for t in QueryType::ALL {
                for i in 0..200 {
                    let q = g.query(t, i);
                    let Some(w) = q.window else {
                        assert_eq!(t, QueryType::Lastpoint);
                        continue;
                    };
                    assert!(span.contains(&w), "{t} #{i}: {w:?} outside {span:?}");
                    let want_ns = match t {
                        QueryType::CpuMaxAll1 => 8 * NS_PER_HOUR,
                        QueryType::DoubleGroupby1
                        | QueryType::DoubleGroupbyAll
                        | QueryType::HighCpu1 => 12 * NS_PER_HOUR,
                        _ => NS_PER_HOUR,
                    };
                    let want = i128::from(want_ns).min(span.len_ns());
                    assert_eq!(w.len_ns(), want, "{t} #{i}");
                    assert_eq!((w.start_ns - span.start_ns) % NS_PER_S, 0, "whole seconds");
                    for lit in time_literals(&q.sql) {
                        assert!(lit == w.start_ns || lit == w.end_ns, "{}", q.sql);
                        assert!((span.start_ns..=span.end_ns).contains(&lit), "{}", q.sql);
                    }
                }
            }
        }
        let day = gen_for(10, 10 * 8640, 1).span();
        assert_eq!(day.start_ns, DEFAULT_START_NS);
        assert_eq!(day.len_ns(), i128::from(24 * NS_PER_HOUR));
    }

    #[test]
    fn hosts_are_distinct_and_within_scale() {
        for scale in [1u64, 3, 8, 9, 1000] {
            let g = gen_for(scale, scale * 1000, 11);
            let mut seen = HashSet::new();
            for t in QueryType::ALL {
                for i in 0..300 {
                    let q = g.query(t, i);
                    let want = match t {
                        QueryType::SingleGroupby5Metrics8Hosts => 8.min(scale),
                        QueryType::SingleGroupby1Metric1Host
                        | QueryType::CpuMaxAll1
                        | QueryType::HighCpu1 => 1,
                        _ => 0,
                    };
                    assert_eq!(q.hosts.len() as u64, want, "{t} at scale {scale}");
                    assert_eq!(named_hosts(&q.sql), q.hosts, "{}", q.sql);
                    let distinct: HashSet<_> = q.hosts.iter().collect();
                    assert_eq!(distinct.len(), q.hosts.len(), "{}", q.sql);
                    assert!(q.hosts.iter().all(|&h| h < scale), "{}", q.sql);
                    seen.extend(q.hosts);
                }
            }
            if scale <= 9 {
                assert_eq!(seen.len() as u64, scale, "every host gets picked");
            }
        }
    }

    #[test]
    fn sql_of_each_type() {
        let g = gen_for(100, 100 * 8640, 1);
        let q = |t| g.query(t, 0);
        let one = q(QueryType::SingleGroupby1Metric1Host);
        let (w, h) = (one.window.expect("window"), one.hosts[0]);
        assert_eq!(
            one.sql,
            format!(
                "SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user) AS \
                 max_usage_user FROM cpu WHERE hostname IN ('host_{h}') AND time >= '{}' AND \
                 time < '{}' GROUP BY minute ORDER BY minute",
                rfc3339(w.start_ns),
                rfc3339(w.end_ns)
            )
        );
        let five = q(QueryType::SingleGroupby5Metrics8Hosts).sql;
        assert!(
            five.contains("max(usage_iowait) AS max_usage_iowait FROM cpu"),
            "{five}"
        );
        assert!(!five.contains("usage_irq"), "{five}");
        let all = q(QueryType::CpuMaxAll1).sql;
        assert!(
            all.starts_with("SELECT date_bin(INTERVAL '1 hour', time) AS hour, max(usage_user)")
        );
        assert!(
            all.contains("max(usage_guest_nice) AS max_usage_guest_nice FROM"),
            "{all}"
        );
        assert!(all.ends_with("GROUP BY hour ORDER BY hour"), "{all}");
        let dg = q(QueryType::DoubleGroupby1).sql;
        assert!(
            dg.contains(
                "hour, hostname, avg(usage_user) AS mean_usage_user FROM cpu WHERE time >= '"
            ),
            "{dg}"
        );
        assert!(
            dg.ends_with("GROUP BY hour, hostname ORDER BY hour, hostname"),
            "{dg}"
        );
        assert_eq!(
            q(QueryType::DoubleGroupbyAll).sql.matches("avg(").count(),
            10
        );
        let hc = q(QueryType::HighCpu1).sql;
        assert!(
            hc.starts_with("SELECT * FROM cpu WHERE usage_user > 90.0 AND time >= '"),
            "{hc}"
        );
        assert_eq!(
            q(QueryType::Lastpoint).sql,
            "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC"
        );
        let gol = q(QueryType::GroupbyOrderbyLimit);
        let end = rfc3339(gol.window.expect("window").end_ns);
        assert!(
            gol.sql.contains(&format!(
                "WHERE time < '{end}' GROUP BY minute ORDER BY minute DESC LIMIT 5"
            )),
            "{}",
            gol.sql
        );
    }

    #[test]
    fn type_lists() {
        assert_eq!(QueryType::parse_list("all"), Ok(QueryType::ALL.to_vec()));
        assert_eq!(
            QueryType::parse_list(" lastpoint,high-cpu-1,lastpoint "),
            Ok(vec![QueryType::Lastpoint, QueryType::HighCpu1])
        );
        for t in QueryType::ALL {
            assert_eq!(QueryType::parse_list(t.name()), Ok(vec![t]));
        }
        let err = QueryType::parse_list("lastpoint,nope").expect_err("unknown");
        assert_eq!(err.name, "nope");
        assert!(err.to_string().contains("single-groupby-5-8-1"), "{err}");
        assert!(QueryType::parse_list(" , ").is_err());
    }

    #[test]
    fn rfc3339_round_trips_through_the_data_parser() {
        for ns in [
            0,
            DEFAULT_START_NS,
            DEFAULT_START_NS + 3_599 * NS_PER_S,
            951_827_400 * NS_PER_S,
            -1,
            1_500_000_000_123_456_789,
            i64::MAX,
        ] {
            let text = rfc3339(ns);
            assert_eq!(parse_start(&text), Ok(ns), "{text}");
        }
        assert_eq!(rfc3339(DEFAULT_START_NS), "2016-01-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(rfc3339(951_782_400 * NS_PER_S), "2000-02-29T00:00:00Z");
    }
}
