//! `chronoshard-bench query`: runs TSBS's cpu-only query types (see [`crate::tsbs_query`]) as SQL
//! against `POST /api/v1/sql` and reports, per type, latency percentiles and rows per answer.
//!
//! The types run one after the other, so each type's latencies are its own. A type runs in two
//! phases over the same `--clients` keep-alive connections (one thread each, blocking I/O):
//! `--warmup` unmeasured queries, then the measured ones, until `--queries` have been issued or
//! `--duration-s` has passed, whichever comes first. Clients take query numbers from a shared
//! counter and [`QueryGenerator::query`] turns a number into SQL, so the queries a run sends
//! depend on the seed only, not on the number of clients. A query is timed from the first byte
//! of the request written to the last byte of the answer; its rows are the CSV answer's lines
//! minus the header (answers are kept up to [`ANSWER_CAPTURE_BYTES`] to count them; our data's
//! values never hold quoted newlines).
//!
//! Anything but a 200 answer is an error: a non-200 answer (its status and the start of its
//! body are kept), or a connection error (connect, write, read; the socket is dropped and the
//! next query reconnects). Failed queries are not retried and not timed. The first error of
//! each type is reported, and the run exits non-zero if any query failed. After
//! [`MAX_CONSECUTIVE_ERRORS`] failures in a row a client gives up on the current type, so a run
//! against a dead or broken server ends by itself; every socket operation has `--timeout-s`.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use thiserror::Error;

use crate::http_client::{ClientError, ResponseReader};
use crate::http_load::{json_string, parse_url, LoadError, Target};
use crate::tsbs::{self, TsbsConfig, TsbsError};
use crate::tsbs_query::{rfc3339, QueryGenerator, QueryType, UnknownType};
use crate::write_load::base64;

/// A client gives up on the current query type after this many failed queries in a row.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 10;
/// Measured queries per type when neither `--queries` nor `--duration-s` is given.
pub const DEFAULT_QUERIES: u64 = 100;
/// Answers are kept up to this size to count their rows; a longer one is counted as truncated
/// (its rows then undercount). TSBS's largest answer at scale 4000, double-groupby-all, is
/// about 12 MB of CSV.
pub const ANSWER_CAPTURE_BYTES: usize = 32 << 20;
/// Upper bounds of the flags.
const MAX_CLIENTS: usize = 1024;
const MAX_QUERIES: u64 = 1_000_000_000;
const MAX_WARMUP: u64 = 1_000_000;
/// Leading bytes of a failed answer shown in the error.
const ERROR_EXCERPT_BYTES: usize = 300;
/// Latency histogram range in microseconds (1 us .. 10 min) and precision.
const HIST_MAX_US: u64 = 600_000_000;
const HIST_SIGFIGS: u8 = 3;

/// Flags of `chronoshard-bench query`.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// Server base URL: plain http:// to an IP literal or localhost, no path.
    #[arg(long, default_value = "http://127.0.0.1:8902")]
    pub url: String,
    /// Database the queries run in (`/api/v1/sql?db=`).
    #[arg(long, default_value = "public")]
    pub db: String,
    /// Query types, comma-separated, or `all`: single-groupby-1-1-1, single-groupby-5-8-1,
    /// cpu-max-all-1, double-groupby-1, double-groupby-all, high-cpu-1, lastpoint,
    /// groupby-orderby-limit.
    #[arg(long, default_value = "all")]
    pub types: String,
    /// Keep-alive connections, one thread each.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Measured queries per type [default: 100 without --duration-s, unbounded with it].
    #[arg(long)]
    pub queries: Option<u64>,
    /// Measured time per type, in seconds (with --queries, whichever ends first).
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Unmeasured queries per type before the measured ones.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Seed of the query parameters (hosts and time windows). The data's own seed changes
    /// neither host names nor time span, so it needs no flag here.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Hosts of the loaded TSBS cpu-only data (as `gen --scale`).
    #[arg(long, default_value_t = 100)]
    pub scale: u64,
    /// First timestamp of the loaded data: RFC 3339, or integer ns since the epoch.
    #[arg(long, default_value = tsbs::DEFAULT_START)]
    pub start: String,
    /// Seconds between two rows of one host in the loaded data.
    #[arg(long, default_value_t = 10)]
    pub interval_s: u64,
    /// Rows of the loaded data [default: one day's worth, scale * 86400 / interval-s].
    #[arg(long)]
    pub rows: Option<u64>,
    /// HTTP Basic auth user.
    #[arg(long, default_value = "root")]
    pub user: String,
    /// HTTP Basic auth password.
    #[arg(long, default_value = "")]
    pub password: String,
    /// Connect, read and write timeout per socket operation, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
    /// Also write the results as one JSON object to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Print one example SQL of each selected type and exit.
    #[arg(long)]
    pub print_sql: bool,
    /// No progress bar (there is none anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Everything that can go wrong, with the client, address, query or file concerned.
#[derive(Debug, Error)]
pub enum QueryLoadError {
    #[error(transparent)]
    Url(LoadError),
    #[error(transparent)]
    Data(#[from] TsbsError),
    #[error("bad --types: {0}")]
    Types(#[from] UnknownType),
    #[error("bad --{flag}: {reason}")]
    Flag {
        flag: &'static str,
        reason: &'static str,
    },
    #[error("client {client} to {addr}: connect failed: {source}")]
    Connect {
        client: usize,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("client {client} to {addr}: sending {query} #{index} failed: {source}")]
    Send {
        client: usize,
        addr: SocketAddr,
        query: QueryType,
        index: u64,
        source: io::Error,
    },
    #[error("client {client} to {addr}: answer to {query} #{index}: {source}")]
    Response {
        client: usize,
        addr: SocketAddr,
        query: QueryType,
        index: u64,
        source: ClientError,
    },
    #[error("client {client}: {query} #{index}: HTTP {status}: {body}")]
    Status {
        client: usize,
        query: QueryType,
        index: u64,
        status: u16,
        /// The start of the answer's body, lossily decoded.
        body: String,
    },
    #[error("cannot start thread {name}: {source}")]
    Spawn { name: String, source: io::Error },
    #[error("thread {name} panicked")]
    Panicked { name: String },
    #[error("latency histogram: {0}")]
    Histogram(String),
    #[error("cannot write the results: {0}")]
    Output(io::Error),
    #[error("cannot write --json {}: {source}", path.display())]
    Json { path: PathBuf, source: io::Error },
    #[error("{failed} queries failed ({per_type}); the first error of each type is shown above")]
    Failed { failed: u64, per_type: String },
    #[error("no query was answered")]
    NothingAnswered,
}

/// The validated run configuration.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// The SQL endpoint, for reports.
    pub url: String,
    pub target: Target,
    pub db: String,
    pub types: Vec<QueryType>,
    pub clients: usize,
    /// Measured queries per type; `None` when only `duration` bounds the phase.
    pub queries: Option<u64>,
    pub duration: Option<Duration>,
    pub warmup: u64,
    pub seed: u64,
    pub data: TsbsConfig,
    pub generator: QueryGenerator,
    /// Request head up to, not including, `Content-Length`.
    pub head: Vec<u8>,
    pub timeout: Duration,
}

impl QueryConfig {
    /// Validates the flags and builds the fixed part of the request head.
    pub fn from_args(args: &QueryArgs) -> Result<Self, QueryLoadError> {
        let flag = |flag, reason| QueryLoadError::Flag { flag, reason };
        let mut target = parse_url(&args.url).map_err(QueryLoadError::Url)?;
        if target.path != "/" {
            return Err(flag(
                "url",
                "give the server's base URL without a path or query, e.g. http://127.0.0.1:8902",
            ));
        }
        let db_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if args.db.is_empty() || !args.db.chars().all(db_ok) {
            return Err(flag("db", "must be letters, digits, '_', '-' or '.'"));
        }
        if !(1..=MAX_CLIENTS).contains(&args.clients) {
            return Err(flag("clients", "must be between 1 and 1024"));
        }
        let duration = match args.duration_s.map(Duration::try_from_secs_f64) {
            None => None,
            Some(Ok(d)) if !d.is_zero() => Some(d),
            Some(_) => return Err(flag("duration-s", "must be a positive number of seconds")),
        };
        let queries = match (args.queries, duration) {
            (None, None) => Some(DEFAULT_QUERIES),
            (q, _) => q,
        };
        if queries.is_some_and(|q| !(1..=MAX_QUERIES).contains(&q)) {
            return Err(flag("queries", "must be between 1 and 1000000000"));
        }
        if args.warmup > MAX_WARMUP {
            return Err(flag("warmup", "must be at most 1000000"));
        }
        if args.user.contains(':') || args.user.chars().any(char::is_control) {
            return Err(flag("user", "must not contain ':' or control characters"));
        }
        let timeout = match Duration::try_from_secs_f64(args.timeout_s) {
            Ok(d) if !d.is_zero() => d,
            _ => return Err(flag("timeout-s", "must be a positive number of seconds")),
        };
        let start_ns = tsbs::parse_start(&args.start)?;
        let data = TsbsConfig::new(args.scale, 1, start_ns, args.interval_s, args.rows)?;
        target.path = format!("/api/v1/sql?db={}", args.db);
        let auth = base64(format!("{}:{}", args.user, args.password).as_bytes());
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: chronoshard-bench\r\n\
             Authorization: Basic {auth}\r\nAccept: text/csv\r\n\
             Content-Type: text/plain; charset=utf-8\r\n",
            target.path, target.authority
        );
        Ok(Self {
            url: format!("http://{}{}", target.authority, target.path),
            target,
            db: args.db.clone(),
            types: QueryType::parse_list(&args.types)?,
            clients: args.clients,
            queries,
            duration,
            warmup: args.warmup,
            seed: args.seed,
            generator: QueryGenerator::new(&data, args.seed)?,
            data,
            head: head.into_bytes(),
            timeout,
        })
    }

    /// Measured queries of the whole run, when known up front.
    fn planned_queries(&self) -> Option<u64> {
        match (self.queries, self.duration) {
            (Some(q), None) => Some(q * self.types.len() as u64),
            _ => None,
        }
    }
}

/// Runs `chronoshard-bench query`: prints the table to stdout, writes `--json`, and fails if
/// any query failed.
pub fn run(args: &QueryArgs) -> Result<(), QueryLoadError> {
    let cfg = QueryConfig::from_args(args)?;
    if args.print_sql {
        let text = example_sql(&cfg);
        return io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(QueryLoadError::Output);
    }
    if !cfg.target.addr.ip().is_loopback() {
        eprintln!("warning: {} is not a loopback address", cfg.target.addr);
    }
    let show = !args.no_progress && io::stderr().is_terminal();
    let progress = crate::progress::bar(show, cfg.planned_queries(), "queries", "{msg}");
    let result = run_queries(&cfg, &progress);
    progress.finish_and_clear();
    let summary = result?;
    writeln!(io::stdout().lock(), "{}", summary.text()).map_err(QueryLoadError::Output)?;
    if let Some(path) = &args.json {
        std::fs::write(path, summary.json(&cfg) + "\n").map_err(|source| QueryLoadError::Json {
            path: path.clone(),
            source,
        })?;
    }
    for t in &summary.per_type {
        if let Some(err) = &t.first_error {
            eprintln!("{}: first error: {err}", t.query_type);
        }
    }
    summary.outcome()
}

/// `-- <type>` and one SQL statement per selected type (the first query each type sends).
pub fn example_sql(cfg: &QueryConfig) -> String {
    let mut out = String::new();
    for &t in &cfg.types {
        let q = cfg.generator.query(t, 0);
        let _ = writeln!(out, "-- {t}\n{};", q.sql);
    }
    out
}

/// The counters of one query type: per client and phase, then merged.
#[derive(Debug)]
pub struct TypeStats {
    pub query_type: QueryType,
    /// Latency of every measured query answered 200, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Measured queries answered 200.
    pub count: u64,
    /// Warm-up queries answered 200.
    pub warmup: u64,
    /// Failed queries, warm-up included: non-200 answers and connection errors.
    pub errors: u64,
    /// Rows of the measured answers: sum, smallest, largest.
    pub rows_total: u64,
    pub rows_min: u64,
    pub rows_max: u64,
    /// Measured answers longer than [`ANSWER_CAPTURE_BYTES`], whose rows undercount.
    pub truncated: u64,
    /// Clients that gave up on this type after [`MAX_CONSECUTIVE_ERRORS`] failures in a row.
    pub abandoned: u64,
    /// Length of the measured phase.
    pub elapsed: Duration,
    pub first_error: Option<QueryLoadError>,
}

impl TypeStats {
    fn new(query_type: QueryType) -> Result<Self, QueryLoadError> {
        let latency_us = Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIGS)
            .map_err(|e| QueryLoadError::Histogram(e.to_string()))?;
        Ok(Self {
            query_type,
            latency_us,
            count: 0,
            warmup: 0,
            errors: 0,
            rows_total: 0,
            rows_min: u64::MAX,
            rows_max: 0,
            truncated: 0,
            abandoned: 0,
            elapsed: Duration::ZERO,
            first_error: None,
        })
    }

    fn record_answer(&mut self, answer: &Answer, measured: bool) {
        if !measured {
            self.warmup += 1;
            return;
        }
        let us = u64::try_from(answer.latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(us.clamp(1, HIST_MAX_US));
        self.count += 1;
        self.rows_total += answer.rows;
        self.rows_min = self.rows_min.min(answer.rows);
        self.rows_max = self.rows_max.max(answer.rows);
        self.truncated += u64::from(answer.truncated);
    }

    fn record_error(&mut self, err: QueryLoadError) {
        self.errors += 1;
        self.first_error.get_or_insert(err);
    }

    /// Adds `other`'s counters; `self`'s first error stays first.
    fn merge(&mut self, other: TypeStats) -> Result<(), QueryLoadError> {
        self.latency_us
            .add(&other.latency_us)
            .map_err(|e| QueryLoadError::Histogram(format!("{e:?}")))?;
        self.count += other.count;
        self.warmup += other.warmup;
        self.errors += other.errors;
        self.rows_total += other.rows_total;
        self.rows_min = self.rows_min.min(other.rows_min);
        self.rows_max = self.rows_max.max(other.rows_max);
        self.truncated += other.truncated;
        self.abandoned += other.abandoned;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }

    /// Median, p90, p99 and max latency in microseconds (zeros when nothing was recorded).
    pub fn latencies_us(&self) -> [u64; 4] {
        let h = &self.latency_us;
        if h.is_empty() {
            return [0; 4];
        }
        let q = |q| h.value_at_quantile(q);
        [q(0.5), q(0.9), q(0.99), h.max()]
    }

    pub fn queries_per_s(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Mean, smallest and largest rows per answer (zeros when nothing was answered).
    pub fn rows_per_answer(&self) -> (f64, u64, u64) {
        if self.count == 0 {
            return (0.0, 0, 0);
        }
        let mean = self.rows_total as f64 / self.count as f64;
        (mean, self.rows_min, self.rows_max)
    }
}

/// The results of a run, one entry per query type in the order they ran.
#[derive(Debug)]
pub struct QuerySummary {
    pub per_type: Vec<TypeStats>,
}

impl QuerySummary {
    /// A header line and one line per type; latencies in ms with two decimals.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{:<22} {:>7} {:>6} {:>10} {:>9} {:>9} {:>9} {:>10}  rows/answer mean [min..max]",
            "query type", "count", "errors", "median_ms", "p90_ms", "p99_ms", "max_ms", "queries/s"
        );
        for t in &self.per_type {
            let ms = t.latencies_us().map(|us| us as f64 / 1000.0);
            let (mean, min, max) = t.rows_per_answer();
            let _ = write!(
                out,
                "\n{:<22} {:>7} {:>6} {:>10.2} {:>9.2} {:>9.2} {:>9.2} {:>10.1}  {mean:.1} [{min}..{max}]",
                t.query_type.name(),
                t.count,
                t.errors,
                ms[0],
                ms[1],
                ms[2],
                ms[3],
                t.queries_per_s(),
            );
            if t.truncated > 0 {
                let _ = write!(out, " ({} answers too long to count whole)", t.truncated);
            }
        }
        out
    }

    /// The results as one JSON object, with the run's parameters.
    pub fn json(&self, cfg: &QueryConfig) -> String {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "null".to_owned());
        let span = cfg.generator.span();
        let mut out = format!(
            "{{\"url\":{},\"db\":{},\"clients\":{},\"seed\":{},\"warmup\":{},\"queries\":{},\
             \"duration_s\":{},\"data\":{{\"scale\":{},\"rows\":{},\"interval_s\":{},\
             \"start\":{},\"end\":{}}},\"types\":[",
            json_string(&cfg.url),
            json_string(&cfg.db),
            cfg.clients,
            cfg.seed,
            cfg.warmup,
            opt(cfg.queries.map(|q| q.to_string())),
            opt(cfg.duration.map(|d| format!("{:.3}", d.as_secs_f64()))),
            cfg.data.scale,
            cfg.data.rows,
            cfg.data.interval_ns / 1_000_000_000,
            json_string(&rfc3339(span.start_ns)),
            json_string(&rfc3339(span.end_ns)),
        );
        for (i, t) in self.per_type.iter().enumerate() {
            let [p50, p90, p99, max] = t.latencies_us();
            let (mean, min, max_rows) = t.rows_per_answer();
            let first_error = t.first_error.as_ref().map(|e| json_string(&e.to_string()));
            let _ = write!(
                out,
                "{}{{\"type\":{},\"count\":{},\"errors\":{},\"warmup\":{},\"elapsed_s\":{:.3},\
                 \"queries_per_s\":{:.2},\"latency_us\":{{\"median\":{p50},\"p90\":{p90},\
                 \"p99\":{p99},\"max\":{max}}},\"rows\":{{\"total\":{},\"mean\":{mean:.2},\
                 \"min\":{min},\"max\":{max_rows}}},\"truncated_answers\":{},\
                 \"abandoned_clients\":{},\"first_error\":{}}}",
                if i == 0 { "" } else { "," },
                json_string(t.query_type.name()),
                t.count,
                t.errors,
                t.warmup,
                t.elapsed.as_secs_f64(),
                t.queries_per_s(),
                t.rows_total,
                t.truncated,
                t.abandoned,
                opt(first_error),
            );
        }
        out.push_str("]}");
        out
    }

    /// `Err` if any query failed or nothing was answered.
    pub fn outcome(&self) -> Result<(), QueryLoadError> {
        let failed: u64 = self.per_type.iter().map(|t| t.errors).sum();
        if failed > 0 {
            let per_type: Vec<String> = self
                .per_type
                .iter()
                .filter(|t| t.errors > 0)
                .map(|t| format!("{} {}", t.query_type, t.errors))
                .collect();
            return Err(QueryLoadError::Failed {
                failed,
                per_type: per_type.join(", "),
            });
        }
        if self.per_type.iter().all(|t| t.count == 0) {
            return Err(QueryLoadError::NothingAnswered);
        }
        Ok(())
    }
}

/// Runs every selected type in turn over one set of clients.
pub fn run_queries(
    cfg: &QueryConfig,
    progress: &ProgressBar,
) -> Result<QuerySummary, QueryLoadError> {
    let mut clients: Vec<Client> = (0..cfg.clients).map(Client::new).collect();
    let mut per_type = Vec::with_capacity(cfg.types.len());
    for &t in &cfg.types {
        progress.set_message(t.name());
        for client in &mut clients {
            client.consecutive_errors = 0;
        }
        let warmup = Phase {
            first_index: 0,
            count: Some(cfg.warmup),
            duration: None,
            measured: false,
        };
        let measured = Phase {
            first_index: cfg.warmup,
            count: cfg.queries,
            duration: cfg.duration,
            measured: true,
        };
        // Merged into the warm-up's counters so that an error of the warm-up stays the first.
        let mut stats = run_phase(cfg, t, &mut clients, &warmup, progress)?;
        let measured = run_phase(cfg, t, &mut clients, &measured, progress)?;
        let elapsed = measured.elapsed;
        stats.merge(measured)?;
        stats.elapsed = elapsed;
        per_type.push(stats);
    }
    Ok(QuerySummary { per_type })
}

/// Which queries a phase sends and whether they are measured.
#[derive(Debug, Clone, Copy)]
struct Phase {
    /// Query number of the phase's first query.
    first_index: u64,
    /// At most this many queries; `None` leaves the bound to `duration`.
    count: Option<u64>,
    duration: Option<Duration>,
    measured: bool,
}

/// One phase of one type: every client on its own thread, sharing the query counter.
fn run_phase(
    cfg: &QueryConfig,
    t: QueryType,
    clients: &mut [Client],
    phase: &Phase,
    progress: &ProgressBar,
) -> Result<TypeStats, QueryLoadError> {
    debug_assert!(
        phase.count.is_some() || phase.duration.is_some(),
        "unbounded phase"
    );
    let next = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = phase.duration.map(|d| started + d);
    let per_client = thread::scope(|scope| {
        let mut handles = Vec::with_capacity(clients.len());
        for client in clients.iter_mut() {
            let name = format!("query-client-{}", client.id);
            let next = &next;
            let handle = thread::Builder::new()
                .name(name.clone())
                .spawn_scoped(scope, move || {
                    client.run(cfg, t, phase, next, deadline, progress)
                })
                .map_err(|source| QueryLoadError::Spawn {
                    name: name.clone(),
                    source,
                })?;
            handles.push((name, handle));
        }
        let joined: Vec<Result<TypeStats, QueryLoadError>> = handles
            .into_iter()
            .map(|(name, h)| h.join().map_err(|_| QueryLoadError::Panicked { name })?)
            .collect();
        Ok::<_, QueryLoadError>(joined)
    })?;
    let mut stats = TypeStats::new(t)?;
    stats.elapsed = started.elapsed();
    for s in per_client {
        stats.merge(s?)?;
    }
    Ok(stats)
}

/// One answered query.
#[derive(Debug)]
struct Answer {
    status: u16,
    latency: Duration,
    rows: u64,
    truncated: bool,
}

/// One keep-alive connection and its reused buffers; it outlives the phases and types.
struct Client {
    id: usize,
    stream: Option<TcpStream>,
    reader: ResponseReader,
    request: Vec<u8>,
    consecutive_errors: u32,
}

impl Client {
    fn new(id: usize) -> Self {
        let mut reader = ResponseReader::default();
        reader.capture_body(ANSWER_CAPTURE_BYTES);
        Self {
            id,
            stream: None,
            reader,
            request: Vec::with_capacity(4096),
            consecutive_errors: 0,
        }
    }

    /// Sends queries of one phase until its count or deadline is reached, or this client has
    /// failed [`MAX_CONSECUTIVE_ERRORS`] times in a row.
    fn run(
        &mut self,
        cfg: &QueryConfig,
        t: QueryType,
        phase: &Phase,
        next: &AtomicU64,
        deadline: Option<Instant>,
        progress: &ProgressBar,
    ) -> Result<TypeStats, QueryLoadError> {
        let mut stats = TypeStats::new(t)?;
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                stats.abandoned += 1;
                break;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            if phase.count.is_some_and(|c| i >= c) {
                break;
            }
            let index = phase.first_index + i;
            let query = cfg.generator.query(t, index);
            match self.ask(cfg, t, index, &query.sql) {
                Ok(answer) if answer.status == 200 => {
                    self.consecutive_errors = 0;
                    stats.record_answer(&answer, phase.measured);
                }
                Ok(answer) => {
                    self.consecutive_errors += 1;
                    stats.record_error(QueryLoadError::Status {
                        client: self.id,
                        query: t,
                        index,
                        status: answer.status,
                        body: self.body_excerpt(),
                    });
                }
                Err(err) => {
                    self.stream = None;
                    self.consecutive_errors += 1;
                    stats.record_error(err);
                }
            }
            if phase.measured {
                progress.inc(1);
            }
        }
        Ok(stats)
    }

    /// Posts one SQL statement on the current connection (opened if needed) and reads the
    /// whole answer; the latency ends with its last byte, before its rows are counted.
    fn ask(
        &mut self,
        cfg: &QueryConfig,
        query: QueryType,
        index: u64,
        sql: &str,
    ) -> Result<Answer, QueryLoadError> {
        let (client, addr) = (self.id, cfg.target.addr);
        let stream = match self.stream.take() {
            Some(stream) => stream,
            None => {
                self.reader.reset();
                connect(cfg, client)?
            }
        };
        let stream = self.stream.insert(stream);
        self.request.clear();
        self.request.extend_from_slice(&cfg.head);
        // Writing into a Vec cannot fail.
        let _ = write!(self.request, "Content-Length: {}\r\n\r\n", sql.len());
        self.request.extend_from_slice(sql.as_bytes());
        let started = Instant::now();
        stream
            .write_all(&self.request)
            .map_err(|source| QueryLoadError::Send {
                client,
                addr,
                query,
                index,
                source,
            })?;
        let resp =
            self.reader
                .read_response(stream, true)
                .map_err(|source| QueryLoadError::Response {
                    client,
                    addr,
                    query,
                    index,
                    source,
                })?;
        let latency = started.elapsed();
        if !resp.keep_alive {
            self.stream = None;
        }
        let body = self.reader.body_prefix();
        Ok(Answer {
            status: resp.status,
            latency,
            rows: csv_rows(body),
            truncated: body.len() >= ANSWER_CAPTURE_BYTES,
        })
    }

    /// The start of the last answer's body, for an error report.
    fn body_excerpt(&self) -> String {
        let body = self.reader.body_prefix();
        let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_EXCERPT_BYTES)]);
        let mut excerpt = text.trim_end().to_owned();
        if body.len() > ERROR_EXCERPT_BYTES {
            excerpt.push_str("...");
        }
        excerpt
    }
}

/// Rows of a CSV answer: its lines minus the header (a last line without `\n` counts; an empty
/// answer has none).
pub fn csv_rows(body: &[u8]) -> u64 {
    let newlines = body.iter().filter(|&&b| b == b'\n').count() as u64;
    let unterminated = u64::from(body.last().is_some_and(|&b| b != b'\n'));
    (newlines + unterminated).saturating_sub(1)
}

/// Opens one connection: TCP_NODELAY, read and write timeouts.
fn connect(cfg: &QueryConfig, client: usize) -> Result<TcpStream, QueryLoadError> {
    let addr = cfg.target.addr;
    let wrap = |source| QueryLoadError::Connect {
        client,
        addr,
        source,
    };
    let stream = TcpStream::connect_timeout(&addr, cfg.timeout).map_err(wrap)?;
    stream.set_nodelay(true).map_err(wrap)?;
    stream.set_read_timeout(Some(cfg.timeout)).map_err(wrap)?;
    stream.set_write_timeout(Some(cfg.timeout)).map_err(wrap)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{header, Answer as Reply, TestServer};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    /// A CSV answer with a header and three rows.
    const CSV_OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 23\r\n\r\n\
        minute,max\na,1\nb,2\nc,3\n";
    const UNPLANNABLE: &[u8] = b"HTTP/1.1 422 Unprocessable Entity\r\nContent-Length: 30\r\n\r\n\
        {\"error\":\"no DISTINCT ON here\"";

    /// How the test server answers.
    #[derive(Debug, Clone, Copy)]
    enum Mode {
        Ok,
        /// 422 for lastpoint (`DISTINCT ON`), 200 for the rest.
        RejectLastpoint,
        /// Closes the connection unanswered on the first N requests, then answers 200.
        DropFirst(usize),
    }

    #[derive(Debug, Default)]
    struct Seen {
        requests: AtomicUsize,
        sql: Mutex<Vec<String>>,
        heads: Mutex<Vec<String>>,
    }

    fn start_server(mode: Mode) -> TestServer<Seen> {
        TestServer::start(Seen::default(), move |seen, head, body| {
            let nth = seen.requests.fetch_add(1, Ordering::SeqCst);
            seen.heads.lock().expect("heads").push(head.to_owned());
            let sql = String::from_utf8(body.to_vec()).expect("utf-8 SQL");
            let lastpoint = sql.contains("DISTINCT ON");
            seen.sql.lock().expect("sql").push(sql);
            match mode {
                Mode::DropFirst(n) if nth < n => Reply::Drop,
                Mode::RejectLastpoint if lastpoint => Reply::Send(UNPLANNABLE),
                _ => Reply::Send(CSV_OK),
            }
        })
    }

    fn args(addr: SocketAddr) -> QueryArgs {
        QueryArgs {
            url: format!("http://{addr}"),
            db: "public".into(),
            types: "single-groupby-1-1-1,lastpoint".into(),
            clients: 3,
            queries: Some(10),
            duration_s: None,
            warmup: 2,
            seed: 5,
            scale: 10,
            start: tsbs::DEFAULT_START.into(),
            interval_s: 10,
            rows: Some(20_000),
            user: "root".into(),
            password: String::new(),
            timeout_s: 5.0,
            json: None,
            print_sql: false,
            no_progress: true,
        }
    }

    fn run_with(a: &QueryArgs) -> (QueryConfig, QuerySummary) {
        let cfg = QueryConfig::from_args(a).expect("config");
        let summary = run_queries(&cfg, &ProgressBar::hidden()).expect("run");
        (cfg, summary)
    }

    #[test]
    fn counts_latencies_and_rows_are_booked_per_type() {
        let server = start_server(Mode::Ok);
        let (cfg, sum) = run_with(&args(server.addr));
        let types: Vec<QueryType> = sum.per_type.iter().map(|t| t.query_type).collect();
        assert_eq!(
            types,
            [QueryType::SingleGroupby1Metric1Host, QueryType::Lastpoint]
        );
        for t in &sum.per_type {
            assert_eq!(
                (t.count, t.warmup, t.errors),
                (10, 2, 0),
                "{:?}",
                t.first_error
            );
            assert_eq!(t.latency_us.len(), 10, "one latency per measured answer");
            let [p50, p90, p99, max] = t.latencies_us();
            assert!(
                1 <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
                "{p50} {max}"
            );
            assert!(max < 5_000_000 && t.elapsed.as_micros() as u64 >= p50);
            assert_eq!((t.rows_total, t.rows_min, t.rows_max), (30, 3, 3));
            assert_eq!(t.rows_per_answer(), (3.0, 3, 3));
            assert!(t.queries_per_s() > 0.0);
        }
        assert!(sum.outcome().is_ok());
        assert_eq!(server.state.requests.load(Ordering::SeqCst), 24);
        assert!(server.accepted() <= 3, "keep-alive across phases and types");
        // Exactly the generator's queries 0..12 of each type, whatever client sent them.
        let mut want: Vec<String> = cfg
            .types
            .iter()
            .flat_map(|&t| (0..12).map(move |i| (t, i)))
            .map(|(t, i)| cfg.generator.query(t, i).sql)
            .collect();
        let mut got = server.state.sql.lock().expect("sql").clone();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        for head in server.state.heads.lock().expect("heads").iter() {
            assert!(
                head.starts_with("POST /api/v1/sql?db=public HTTP/1.1\r\n"),
                "{head}"
            );
            assert_eq!(header(head, "authorization"), Some("Basic cm9vdDo="));
            assert_eq!(header(head, "accept"), Some("text/csv"));
        }
        let text = sum.text();
        let line: Vec<&str> = text
            .lines()
            .nth(1)
            .expect("a line")
            .split_whitespace()
            .collect();
        assert_eq!(line[..3], ["single-groupby-1-1-1", "10", "0"], "{text}");
        assert_eq!(line[line.len() - 2..], ["3.0", "[3..3]"], "{text}");
    }

    #[test]
    fn non_200_answers_count_as_errors_with_status_and_body() {
        let server = start_server(Mode::RejectLastpoint);
        let mut a = args(server.addr);
        (a.clients, a.queries, a.warmup) = (2, Some(6), 1);
        let (cfg, sum) = run_with(&a);
        let (ok, bad) = (&sum.per_type[0], &sum.per_type[1]);
        assert_eq!((ok.count, ok.errors, ok.rows_total), (6, 0, 18));
        assert_eq!((bad.count, bad.warmup, bad.errors), (0, 0, 7));
        assert!(bad.latency_us.is_empty(), "failed queries are not timed");
        match &bad.first_error {
            Some(QueryLoadError::Status {
                status,
                body,
                query,
                ..
            }) => {
                assert_eq!((*status, *query), (422, QueryType::Lastpoint));
                assert_eq!(body, "{\"error\":\"no DISTINCT ON here\"");
            }
            other => panic!("want a 422 status error, got {other:?}"),
        }
        let err = sum.outcome().expect_err("failed queries fail the run");
        assert_eq!(
            err.to_string(),
            "7 queries failed (lastpoint 7); the first error of each type is shown above"
        );
        let json = sum.json(&cfg);
        assert!(
            json.contains("\"type\":\"lastpoint\",\"count\":0,\"errors\":7,"),
            "{json}"
        );
        assert!(
            json.contains("HTTP 422: {\\\"error\\\":\\\"no DISTINCT ON here\\\""),
            "{json}"
        );
        assert!(json.contains("\"first_error\":null}"), "{json}");
    }

    #[test]
    fn dropped_connections_are_errors_and_the_client_reconnects() {
        let server = start_server(Mode::DropFirst(2));
        let mut a = args(server.addr);
        (a.types, a.clients, a.queries, a.warmup) = ("high-cpu-1".into(), 1, Some(5), 0);
        let (_, sum) = run_with(&a);
        let t = &sum.per_type[0];
        assert_eq!((t.count, t.errors, t.latency_us.len()), (3, 2, 3));
        assert!(
            matches!(
                t.first_error,
                Some(QueryLoadError::Response {
                    index: 0,
                    source: ClientError::Closed,
                    ..
                })
            ),
            "{:?}",
            t.first_error
        );
        assert_eq!(server.accepted(), 3);
    }

    #[test]
    fn a_duration_bounds_the_measured_phase() {
        let server = start_server(Mode::Ok);
        let mut a = args(server.addr);
        (a.types, a.queries, a.duration_s, a.clients) = ("lastpoint".into(), None, Some(0.3), 2);
        let started = Instant::now();
        let (cfg, sum) = run_with(&a);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(cfg.queries, None);
        let t = &sum.per_type[0];
        assert!(t.count > 0 && t.errors == 0, "{:?}", t.first_error);
        assert_eq!(t.latency_us.len(), t.count);
        assert!(t.elapsed >= Duration::from_millis(300), "{:?}", t.elapsed);
        let (_, sum) = run_with(&QueryArgs {
            queries: Some(4),
            ..a
        });
        assert_eq!(sum.per_type[0].count, 4, "whichever bound comes first");
    }

    #[test]
    fn a_dead_server_ends_the_run_by_itself() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let mut a = args(addr);
        a.queries = Some(1_000_000);
        let started = Instant::now();
        let (_, sum) = run_with(&a);
        assert!(started.elapsed() < Duration::from_secs(10));
        for t in &sum.per_type {
            let errors = u64::from(MAX_CONSECUTIVE_ERRORS) * 3;
            assert_eq!((t.count, t.errors, t.abandoned), (0, errors, 3));
            let err = t.first_error.as_ref().expect("error").to_string();
            assert!(
                err.contains("connect failed") && err.contains(&addr.to_string()),
                "{err}"
            );
        }
        assert!(sum.outcome().is_err());
    }

    #[test]
    fn config_validation_and_request_head() {
        let addr: SocketAddr = "127.0.0.1:8902".parse().expect("addr");
        let cfg = QueryConfig::from_args(&args(addr)).expect("valid");
        assert_eq!(cfg.url, "http://127.0.0.1:8902/api/v1/sql?db=public");
        let head = String::from_utf8_lossy(&cfg.head).into_owned();
        assert!(head.starts_with("POST /api/v1/sql?db=public HTTP/1.1\r\nHost: 127.0.0.1:8902\r\n"));
        assert!(
            head.contains("\r\nAuthorization: Basic cm9vdDo=\r\n"),
            "{head}"
        );
        let mut a = args(addr);
        (a.queries, a.types) = (None, "all".into());
        let cfg = QueryConfig::from_args(&a).expect("defaults");
        assert_eq!((cfg.queries, cfg.types.len()), (Some(DEFAULT_QUERIES), 8));
        assert_eq!(cfg.planned_queries(), Some(800));
        let breakers: [fn(&mut QueryArgs); 11] = [
            |a| a.url = "http://127.0.0.1:8902/api/v1/sql".into(),
            |a| a.url = "https://127.0.0.1/".into(),
            |a| a.db = "pub lic".into(),
            |a| a.clients = 0,
            |a| a.queries = Some(0),
            |a| a.duration_s = Some(0.0),
            |a| a.types = "lastpoint,bogus".into(),
            |a| a.user = "a:b".into(),
            |a| a.timeout_s = -1.0,
            |a| a.scale = 0,
            |a| a.start = "soon".into(),
        ];
        for (i, brk) in breakers.iter().enumerate() {
            let mut a = args(addr);
            brk(&mut a);
            assert!(QueryConfig::from_args(&a).is_err(), "breaker {i}");
        }
    }

    #[test]
    fn example_sql_has_one_statement_per_type() {
        let addr: SocketAddr = "127.0.0.1:8902".parse().expect("addr");
        let mut a = args(addr);
        a.types = "all".into();
        let cfg = QueryConfig::from_args(&a).expect("config");
        let text = example_sql(&cfg);
        let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("-- ")).collect();
        let names: Vec<String> = QueryType::ALL.iter().map(|t| format!("-- {t}")).collect();
        assert_eq!(headers, names);
        assert_eq!(text.matches(";\n").count(), 8);
        assert_eq!(
            text,
            example_sql(&QueryConfig::from_args(&a).expect("config"))
        );
    }

    #[test]
    fn csv_row_counting() {
        assert_eq!(csv_rows(b""), 0);
        assert_eq!(csv_rows(b"a,b\n"), 0);
        assert_eq!(csv_rows(b"a,b"), 0);
        assert_eq!(csv_rows(b"a,b\n1,2\n3,4\n"), 2);
        assert_eq!(csv_rows(b"a,b\r\n1,2\r\n3,4"), 2);
    }
}
