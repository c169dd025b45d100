//! `chronoshard-bench write`: posts line protocol to a server as fast as it takes it.
//!
//! One producer thread cuts the rows into batches of `--batch-lines` lines, either generating
//! them on the fly with [`crate::tsbs`] or reading them from `--file`, and hands them over
//! through a bounded queue ([`QUEUE_BATCHES_PER_CONNECTION`] batches per connection), so memory
//! stays small whatever `--rows` is and the generator runs ahead of the network. Each of the
//! `--connections` threads owns one keep-alive blocking `TcpStream`: it takes a batch, gzips it
//! if asked, and POSTs it with HTTP Basic auth, timing the request from the first byte written to
//! the last byte of the response (read with [`crate::http_client::ResponseReader`]).
//!
//! A non-2xx answer fails its batch (not retried): the status is counted and the first
//! [`MAX_PRINTED_BODIES`] answer bodies go to stderr. A connection error (connect, write, read)
//! is counted, the socket is dropped and the batch is retried on a new connection, at most
//! [`MAX_ATTEMPTS`] times (so a batch may land twice if only its response was lost). After
//! [`MAX_CONSECUTIVE_ERRORS`] connection errors in a row a connection thread gives up; when all
//! have, the producer stops, so a run against a dead server ends by itself.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use flate2::write::GzEncoder;
use flate2::Compression;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use thiserror::Error;

use crate::http_client::{ClientError, Response, ResponseReader};
use crate::http_load::{json_string, parse_url, LoadError, Target};
use crate::tsbs::{self, Generator, TsbsConfig, TsbsError};

/// Tries per batch when the connection fails (connect, write or read).
pub const MAX_ATTEMPTS: u32 = 3;
/// A connection thread gives up after this many connection errors in a row.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 10;
/// Bodies of the first this many non-2xx answers are printed to stderr.
pub const MAX_PRINTED_BODIES: usize = 3;
/// Batches the producer may run ahead, per connection.
pub const QUEUE_BATCHES_PER_CONNECTION: usize = 2;
/// Default `--rows` when generating.
pub const DEFAULT_ROWS: u64 = 10_000_000;
/// Leading bytes of each answer body kept for error reports.
const BODY_CAPTURE: usize = 512;
/// Pause before retrying on a new connection.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Latency histogram range in microseconds (1 us .. 10 min) and precision.
const HIST_MAX_US: u64 = 600_000_000;
const HIST_SIGFIGS: u8 = 3;

/// Flags of `chronoshard-bench write`.
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// Write endpoint: plain http:// to an IP literal or localhost.
    #[arg(long, default_value = "http://127.0.0.1:8902/api/v1/write?db=public")]
    pub url: String,
    /// Keep-alive connections, one thread each.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Lines per POST.
    #[arg(long, default_value_t = 5000)]
    pub batch_lines: usize,
    /// Gzip each body (fast level) and send `Content-Encoding: gzip`.
    #[arg(long)]
    pub gzip: bool,
    /// Rows to send [default: 10000000 when generating, the whole file with --file].
    #[arg(long)]
    pub rows: Option<u64>,
    /// Hosts of the generated TSBS cpu-only data.
    #[arg(long, default_value_t = 1000)]
    pub scale: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First timestamp of the generated data: RFC 3339, or integer ns since the epoch.
    #[arg(long, default_value = tsbs::DEFAULT_START)]
    pub start: String,
    /// Seconds between two generated rows of one host.
    #[arg(long, default_value_t = 10)]
    pub interval_s: u64,
    /// Send the lines of this file instead of generating data (blank lines are skipped).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// HTTP Basic auth user.
    #[arg(long, default_value = "root")]
    pub user: String,
    /// HTTP Basic auth password.
    #[arg(long, default_value = "")]
    pub password: String,
    /// Server process id: report its CPU seconds (utime + stime from /proc) per million rows.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Connect, read and write timeout per socket operation, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
    /// Print the summary as one JSON object line instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (there is none anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Everything that can go wrong, with the connection, address, file or process concerned.
#[derive(Debug, Error)]
pub enum WriteError {
    #[error(transparent)]
    Url(LoadError),
    #[error(transparent)]
    Data(#[from] TsbsError),
    #[error("bad --{flag}: {reason}")]
    Flag {
        flag: &'static str,
        reason: &'static str,
    },
    #[error("cannot open --file {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read --file {} after {lines} lines: {source}", path.display())]
    Read {
        path: PathBuf,
        lines: u64,
        source: io::Error,
    },
    #[error("connection {conn} to {addr}: connect failed: {source}")]
    Connect {
        conn: usize,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("connection {conn} to {addr}: sending batch {batch} failed: {source}")]
    Send {
        conn: usize,
        addr: SocketAddr,
        batch: u64,
        source: io::Error,
    },
    #[error("connection {conn} to {addr}: response to batch {batch}: {source}")]
    Response {
        conn: usize,
        addr: SocketAddr,
        batch: u64,
        source: ClientError,
    },
    #[error("gzip of batch {batch} failed: {source}")]
    Gzip { batch: u64, source: io::Error },
    #[error("cannot start thread {name}: {source}")]
    Spawn { name: String, source: io::Error },
    #[error("thread {name} panicked")]
    Panicked { name: String },
    #[error("latency histogram: {0}")]
    Histogram(String),
    #[error("cannot read the CPU time of --pid {pid} from {path}: {reason}")]
    ProcStat {
        pid: u32,
        path: String,
        reason: String,
    },
    #[error("cannot write the summary: {0}")]
    Output(io::Error),
    #[error("incomplete run: {written} of {produced} rows written ({failed_batches} failed batches, {abandoned} connections gave up)")]
    Incomplete {
        written: u64,
        produced: u64,
        failed_batches: u64,
        abandoned: u64,
    },
}

/// Where the rows come from.
#[derive(Debug, Clone)]
pub enum Source {
    Generate(TsbsConfig),
    File {
        path: PathBuf,
        max_rows: Option<u64>,
    },
}

/// The validated run configuration.
#[derive(Debug, Clone)]
pub struct WriteConfig {
    pub url: String,
    pub target: Target,
    pub connections: usize,
    pub batch_lines: usize,
    pub gzip: bool,
    pub source: Source,
    /// Request head up to, not including, `Content-Length`.
    pub head: Vec<u8>,
    pub timeout: Duration,
    pub pid: Option<u32>,
}

impl WriteConfig {
    /// Validates the flags and builds the fixed part of the request head.
    pub fn from_args(args: &WriteArgs) -> Result<Self, WriteError> {
        let target = parse_url(&args.url).map_err(WriteError::Url)?;
        let flag = |flag, reason| WriteError::Flag { flag, reason };
        if !(1..=4096).contains(&args.connections) {
            return Err(flag("connections", "must be between 1 and 4096"));
        }
        if !(1..=10_000_000).contains(&args.batch_lines) {
            return Err(flag("batch-lines", "must be between 1 and 10000000"));
        }
        if args.user.contains(':') || args.user.chars().any(char::is_control) {
            return Err(flag("user", "must not contain ':' or control characters"));
        }
        let timeout = match Duration::try_from_secs_f64(args.timeout_s) {
            Ok(d) if !d.is_zero() => d,
            _ => return Err(flag("timeout-s", "must be a positive number of seconds")),
        };
        let source = match &args.file {
            Some(path) => Source::File {
                path: path.clone(),
                max_rows: args.rows,
            },
            None => {
                let start_ns = tsbs::parse_start(&args.start)?;
                let rows = Some(args.rows.unwrap_or(DEFAULT_ROWS));
                let t = TsbsConfig::new(args.scale, args.seed, start_ns, args.interval_s, rows)?;
                Source::Generate(t)
            }
        };
        let auth = base64(format!("{}:{}", args.user, args.password).as_bytes());
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: chronoshard-bench\r\n\
             Authorization: Basic {auth}\r\nContent-Type: text/plain; charset=utf-8\r\n",
            target.path, target.authority
        );
        if args.gzip {
            head.push_str("Content-Encoding: gzip\r\n");
        }
        Ok(Self {
            url: args.url.clone(),
            target,
            connections: args.connections,
            batch_lines: args.batch_lines,
            gzip: args.gzip,
            source,
            head: head.into_bytes(),
            timeout,
            pid: args.pid,
        })
    }

    /// Rows the run will send, when known up front.
    pub fn planned_rows(&self) -> Option<u64> {
        match &self.source {
            Source::Generate(t) => Some(t.rows),
            Source::File { max_rows, .. } => *max_rows,
        }
    }
}

/// Standard base64 with padding (RFC 4648), for the Basic auth header.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs `chronoshard-bench write` and prints the summary to stdout.
pub fn run(args: &WriteArgs) -> Result<(), WriteError> {
    let cfg = WriteConfig::from_args(args)?;
    if !cfg.target.addr.ip().is_loopback() {
        eprintln!("warning: {} is not a loopback address", cfg.target.addr);
    }
    let show = !args.no_progress && io::stderr().is_terminal();
    wait_ready(&cfg);
    let progress = crate::progress::bar(show, cfg.planned_rows(), "rows", "eta {eta}");
    let result = run_write(&cfg, &progress);
    progress.finish_and_clear();
    let summary = result?;
    let line = if args.json {
        summary.json(&cfg)
    } else {
        summary.text()
    };
    writeln!(io::stdout().lock(), "{line}").map_err(WriteError::Output)?;
    if let Some(err) = &summary.stats.first_error {
        eprintln!("first connection error: {err}");
    }
    let s = &summary.stats;
    if s.rows_ok < summary.produced_rows || s.rows_ok == 0 {
        return Err(WriteError::Incomplete {
            written: s.rows_ok,
            produced: summary.produced_rows,
            failed_batches: s.failed_batches,
            abandoned: s.abandoned,
        });
    }
    Ok(())
}

/// A run's counters: per connection thread, then merged.
#[derive(Debug)]
pub struct WriteStats {
    /// Request latency of every answered request (2xx or not), in microseconds.
    pub latency_us: Histogram<u64>,
    pub batches_ok: u64,
    pub rows_ok: u64,
    /// Uncompressed body bytes of the batches answered 2xx.
    pub body_bytes_ok: u64,
    /// Body bytes put on the wire (compressed if --gzip), retries included.
    pub wire_body_bytes: u64,
    /// Count of each non-2xx status.
    pub http_errors: BTreeMap<u16, u64>,
    pub connection_errors: u64,
    /// Batches not written: non-2xx answer or out of attempts.
    pub failed_batches: u64,
    /// Connection threads that gave up.
    pub abandoned: u64,
    pub first_error: Option<WriteError>,
}

impl WriteStats {
    fn new() -> Result<Self, WriteError> {
        let latency_us = Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIGS)
            .map_err(|e| WriteError::Histogram(e.to_string()))?;
        Ok(Self {
            latency_us,
            batches_ok: 0,
            rows_ok: 0,
            body_bytes_ok: 0,
            wire_body_bytes: 0,
            http_errors: BTreeMap::new(),
            connection_errors: 0,
            failed_batches: 0,
            abandoned: 0,
            first_error: None,
        })
    }

    /// All non-2xx answers plus all connection errors.
    pub fn errors(&self) -> u64 {
        self.http_errors.values().sum::<u64>() + self.connection_errors
    }

    fn merge(&mut self, other: WriteStats) -> Result<(), WriteError> {
        self.latency_us
            .add(&other.latency_us)
            .map_err(|e| WriteError::Histogram(format!("{e:?}")))?;
        self.batches_ok += other.batches_ok;
        self.rows_ok += other.rows_ok;
        self.body_bytes_ok += other.body_bytes_ok;
        self.wire_body_bytes += other.wire_body_bytes;
        for (status, n) in other.http_errors {
            *self.http_errors.entry(status).or_default() += n;
        }
        self.connection_errors += other.connection_errors;
        self.failed_batches += other.failed_batches;
        self.abandoned += other.abandoned;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}

/// The merged result of a run.
#[derive(Debug)]
pub struct WriteSummary {
    pub stats: WriteStats,
    pub elapsed: Duration,
    /// Rows the producer queued (all of them unless every connection gave up).
    pub produced_rows: u64,
    /// CPU seconds the `--pid` process used during the run.
    pub server_cpu_s: Option<f64>,
}

impl WriteSummary {
    fn per_s(&self, v: u64) -> f64 {
        v as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// p50, p99, p999 and max latency in milliseconds (zeros when nothing was recorded).
    fn latencies_ms(&self) -> [f64; 4] {
        let h = &self.stats.latency_us;
        if h.is_empty() {
            return [0.0; 4];
        }
        let q = |q| h.value_at_quantile(q) as f64 / 1000.0;
        [q(0.5), q(0.99), q(0.999), h.max() as f64 / 1000.0]
    }

    fn server_cpu_per_million_rows(&self) -> Option<f64> {
        let cpu = self.server_cpu_s?;
        (self.stats.rows_ok > 0).then(|| cpu * 1e6 / self.stats.rows_ok as f64)
    }

    /// `400x3,503x1`, or `-` without HTTP errors.
    fn statuses(&self) -> String {
        let parts: Vec<String> = self
            .stats
            .http_errors
            .iter()
            .map(|(s, n)| format!("{s}x{n}"))
            .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(",")
        }
    }

    /// The one-line text summary.
    pub fn text(&self) -> String {
        let s = &self.stats;
        let [p50, p99, p999, max] = self.latencies_ms();
        let mut line = format!(
            "rows/s {:.0}  rows {}  MB/s {:.1}  batches {}  errors {} (http {} [{}], connection {})  \
             elapsed_s {:.3}  latency_ms p50 {p50:.3} p99 {p99:.3} p999 {p999:.3} max {max:.3}",
            self.per_s(s.rows_ok),
            s.rows_ok,
            self.per_s(s.body_bytes_ok) / 1e6,
            s.batches_ok + s.failed_batches,
            s.errors(),
            s.errors() - s.connection_errors,
            self.statuses(),
            s.connection_errors,
            self.elapsed.as_secs_f64(),
        );
        if let Some(cpu) = self.server_cpu_s {
            let per_m = self.server_cpu_per_million_rows().unwrap_or(0.0);
            line.push_str(&format!(
                "  server_cpu_s {cpu:.2}  server_cpu_s_per_million_rows {per_m:.3}"
            ));
        }
        line
    }

    /// The summary as one JSON object, with the run's parameters.
    pub fn json(&self, cfg: &WriteConfig) -> String {
        let s = &self.stats;
        let [p50, p99, p999, max] = self.latencies_ms();
        let statuses: Vec<String> = s
            .http_errors
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        let opt = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.3}"));
        format!(
            "{{\"url\":{},\"connections\":{},\"batch_lines\":{},\"gzip\":{},\"rows\":{},\
             \"rows_per_s\":{:.1},\"mb_per_s\":{:.3},\"wire_mb_per_s\":{:.3},\"batches\":{},\
             \"failed_batches\":{},\"errors\":{},\"http_errors\":{{{}}},\"connection_errors\":{},\
             \"abandoned_connections\":{},\"elapsed_s\":{:.3},\"latency_ms\":{{\"p50\":{p50:.3},\
             \"p99\":{p99:.3},\"p999\":{p999:.3},\"max\":{max:.3}}},\"server_cpu_s\":{},\
             \"server_cpu_s_per_million_rows\":{}}}",
            json_string(&cfg.url),
            cfg.connections,
            cfg.batch_lines,
            cfg.gzip,
            s.rows_ok,
            self.per_s(s.rows_ok),
            self.per_s(s.body_bytes_ok) / 1e6,
            self.per_s(s.wire_body_bytes) / 1e6,
            s.batches_ok + s.failed_batches,
            s.failed_batches,
            s.errors(),
            statuses.join(","),
            s.connection_errors,
            s.abandoned,
            self.elapsed.as_secs_f64(),
            opt(self.server_cpu_s),
            opt(self.server_cpu_per_million_rows()),
        )
    }
}

/// CPU seconds (user + system) the process `pid` has used so far, from `/proc/PID/stat`.
pub fn server_cpu_seconds(pid: u32) -> Result<f64, WriteError> {
    let path = format!("/proc/{pid}/stat");
    let fail = |reason: String| WriteError::ProcStat {
        pid,
        path: path.clone(),
        reason,
    };
    let stat = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
    let ticks = stat_cpu_ticks(&stat).ok_or_else(|| fail("unexpected format".into()))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line; the name may hold `)` and spaces.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_ascii_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a system configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// One batch of lines, the unit of a POST.
#[derive(Debug)]
struct Batch {
    seq: u64,
    body: Vec<u8>,
    lines: u64,
}

/// Runs the producer and the connection threads; returns when every batch is done.
/// How long `run_write` waits for a server that answers writes with 503 (replaying its WAL).
const READY_WAIT: Duration = Duration::from_secs(120);

/// Waits until an empty write is answered with anything but 503: a server answers `/ping`
/// while it replays its WAL, but refuses writes with 503 until every shard is ready, and a
/// load started too early would count its first batches as errors. A refused connection (a
/// server still starting) is waited for too; a server still not ready after `READY_WAIT` is
/// left to the load itself to report.
fn wait_ready(cfg: &WriteConfig) {
    let deadline = Instant::now() + READY_WAIT;
    let mut probe = cfg.head.clone();
    probe.extend_from_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n");
    while Instant::now() < deadline {
        let status = (|| -> io::Result<Vec<u8>> {
            let mut conn = TcpStream::connect_timeout(&cfg.target.addr, READY_POLL)?;
            conn.set_read_timeout(Some(Duration::from_secs(5)))?;
            conn.write_all(&probe)?;
            let mut head = [0u8; 12];
            conn.read_exact(&mut head)?;
            Ok(head.to_vec())
        })();
        match status {
            Ok(head) if !head.starts_with(b"HTTP/1.1 503") => return,
            _ => thread::sleep(READY_POLL),
        }
    }
}

const READY_POLL: Duration = Duration::from_millis(100);

pub fn run_write(cfg: &WriteConfig, progress: &ProgressBar) -> Result<WriteSummary, WriteError> {
    let cpu_before = cfg.pid.map(server_cpu_seconds).transpose()?;
    let started = Instant::now();
    let depth = cfg.connections * QUEUE_BATCHES_PER_CONNECTION;
    let (batch_tx, batch_rx) = sync_channel::<Batch>(depth);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(depth + cfg.connections);
    let printed = AtomicUsize::new(0);
    let (produced, per_conn) = thread::scope(|scope| {
        let producer = spawn(scope, "write-producer".into(), move || {
            produce(cfg, &batch_tx, &free_rx)
        })?;
        let queue = Arc::new(Mutex::new(batch_rx));
        let mut handles = Vec::with_capacity(cfg.connections);
        for id in 0..cfg.connections {
            let ctx = Ctx {
                cfg,
                progress,
                printed: &printed,
                recycle: free_tx.clone(),
            };
            let queue = Arc::clone(&queue);
            let name = format!("write-conn-{id}");
            handles.push(spawn(scope, name, move || consume(&ctx, id, &queue))?);
        }
        // Only the connection threads may hold the queue: when they all stop, the producer does.
        drop(queue);
        let per_conn: Vec<Result<WriteStats, WriteError>> = handles.into_iter().map(join).collect();
        Ok::<_, WriteError>((join(producer), per_conn))
    })?;
    let elapsed = started.elapsed();
    let mut stats = WriteStats::new()?;
    for s in per_conn {
        stats.merge(s?)?;
    }
    let server_cpu_s = match (cfg.pid, cpu_before) {
        (Some(pid), Some(before)) => Some(server_cpu_seconds(pid)? - before),
        _ => None,
    };
    Ok(WriteSummary {
        stats,
        elapsed,
        produced_rows: produced?,
        server_cpu_s,
    })
}

type Handle<'scope, T> = (
    String,
    thread::ScopedJoinHandle<'scope, Result<T, WriteError>>,
);

fn spawn<'scope, 'env, T: Send + 'scope>(
    scope: &'scope thread::Scope<'scope, 'env>,
    name: String,
    f: impl FnOnce() -> Result<T, WriteError> + Send + 'scope,
) -> Result<Handle<'scope, T>, WriteError> {
    let handle = thread::Builder::new()
        .name(name.clone())
        .spawn_scoped(scope, f)
        .map_err(|source| WriteError::Spawn {
            name: name.clone(),
            source,
        })?;
    Ok((name, handle))
}

fn join<T>((name, handle): Handle<'_, T>) -> Result<T, WriteError> {
    handle.join().map_err(|_| WriteError::Panicked { name })?
}

/// Fills the queue until the source is exhausted or nobody consumes any more; returns the rows
/// handed over.
fn produce(
    cfg: &WriteConfig,
    queue: &SyncSender<Batch>,
    free: &Receiver<Vec<u8>>,
) -> Result<u64, WriteError> {
    let next_buffer = || {
        let mut buf = free.try_recv().unwrap_or_default();
        buf.clear();
        buf
    };
    let mut rows = 0;
    let mut seq = 0;
    let mut hand_over = |body: Vec<u8>, lines: u64| {
        let sent = queue.send(Batch { seq, body, lines }).is_ok();
        seq += 1;
        rows += if sent { lines } else { 0 };
        sent
    };
    match &cfg.source {
        Source::Generate(t) => {
            let mut generator = Generator::new(t)?;
            loop {
                let mut body = next_buffer();
                let lines = generator.fill(&mut body, cfg.batch_lines);
                if lines == 0 || !hand_over(body, lines as u64) {
                    break;
                }
            }
        }
        Source::File { path, max_rows } => {
            let file = File::open(path).map_err(|source| WriteError::Open {
                path: path.clone(),
                source,
            })?;
            let mut lines = LineBatcher::new(file, path, max_rows.unwrap_or(u64::MAX));
            loop {
                let mut body = next_buffer();
                let n = lines.next_batch(&mut body, cfg.batch_lines)?;
                if n == 0 || !hand_over(body, n) {
                    break;
                }
            }
        }
    }
    Ok(rows)
}

/// Cuts a file into batches of whole, non-blank lines, each ending in `\n`.
struct LineBatcher<'a> {
    reader: BufReader<File>,
    path: &'a PathBuf,
    remaining: u64,
    read: u64,
}

impl<'a> LineBatcher<'a> {
    fn new(file: File, path: &'a PathBuf, max_rows: u64) -> Self {
        Self {
            reader: BufReader::with_capacity(1 << 20, file),
            path,
            remaining: max_rows,
            read: 0,
        }
    }

    /// Appends up to `max` lines to `body`; returns how many (0 at the end).
    fn next_batch(&mut self, body: &mut Vec<u8>, max: usize) -> Result<u64, WriteError> {
        let mut lines = 0;
        while lines < max as u64 && self.remaining > 0 {
            let before = body.len();
            let n = self
                .reader
                .read_until(b'\n', body)
                .map_err(|source| WriteError::Read {
                    path: self.path.clone(),
                    lines: self.read,
                    source,
                })?;
            if n == 0 {
                break;
            }
            if body[before..].trim_ascii().is_empty() {
                body.truncate(before);
                continue;
            }
            if body.last() != Some(&b'\n') {
                body.push(b'\n');
            }
            lines += 1;
            self.read += 1;
            self.remaining -= 1;
        }
        Ok(lines)
    }
}

/// What a connection thread shares with the run.
struct Ctx<'a> {
    cfg: &'a WriteConfig,
    progress: &'a ProgressBar,
    /// Non-2xx answer bodies printed so far (over all connections).
    printed: &'a AtomicUsize,
    /// Spent batch buffers go back to the producer through this.
    recycle: SyncSender<Vec<u8>>,
}

/// One connection thread: takes batches until the queue ends or the connection gives up.
fn consume(
    ctx: &Ctx<'_>,
    id: usize,
    queue: &Mutex<Receiver<Batch>>,
) -> Result<WriteStats, WriteError> {
    let mut stats = WriteStats::new()?;
    let mut conn = Conn::new(id);
    loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(batch) = next else {
            break;
        };
        conn.deliver(ctx, &batch, &mut stats)?;
        ctx.progress.inc(batch.lines);
        // A full recycle queue just means the producer has spare buffers already.
        let _ = ctx.recycle.try_send(batch.body);
        if conn.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
            stats.abandoned += 1;
            break;
        }
    }
    Ok(stats)
}

/// One keep-alive connection and its reused buffers.
struct Conn {
    id: usize,
    stream: Option<TcpStream>,
    reader: ResponseReader,
    head: Vec<u8>,
    gzipped: Vec<u8>,
    consecutive_errors: u32,
}

impl Conn {
    fn new(id: usize) -> Self {
        let mut reader = ResponseReader::default();
        reader.capture_body(BODY_CAPTURE);
        Self {
            id,
            stream: None,
            reader,
            head: Vec::with_capacity(512),
            gzipped: Vec::new(),
            consecutive_errors: 0,
        }
    }

    /// Posts one batch, retrying on new connections; only a gzip failure is an `Err`.
    fn deliver(
        &mut self,
        ctx: &Ctx<'_>,
        batch: &Batch,
        stats: &mut WriteStats,
    ) -> Result<(), WriteError> {
        let mut gzipped = std::mem::take(&mut self.gzipped);
        let body = if ctx.cfg.gzip {
            gzip_into(&batch.body, &mut gzipped).map_err(|source| WriteError::Gzip {
                batch: batch.seq,
                source,
            })?;
            &gzipped
        } else {
            &batch.body
        };
        let mut delivered = false;
        for attempt in 1..=MAX_ATTEMPTS {
            stats.wire_body_bytes += body.len() as u64;
            match self.post(ctx.cfg, batch.seq, body) {
                Ok((resp, latency)) => {
                    self.answered(ctx, batch, resp, latency, stats);
                    delivered = (200..300).contains(&resp.status);
                    break;
                }
                Err(err) => {
                    self.stream = None;
                    self.consecutive_errors += 1;
                    stats.connection_errors += 1;
                    stats.first_error.get_or_insert(err);
                    if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS || attempt == MAX_ATTEMPTS
                    {
                        stats.failed_batches += 1;
                        break;
                    }
                    thread::sleep(RETRY_PAUSE);
                }
            }
        }
        if delivered {
            stats.batches_ok += 1;
            stats.rows_ok += batch.lines;
            stats.body_bytes_ok += batch.body.len() as u64;
        }
        self.gzipped = gzipped;
        Ok(())
    }

    /// Books an answer; a non-2xx one fails the batch and may be printed.
    fn answered(
        &mut self,
        ctx: &Ctx<'_>,
        batch: &Batch,
        resp: Response,
        latency: Duration,
        stats: &mut WriteStats,
    ) {
        self.consecutive_errors = 0;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        stats.latency_us.saturating_record(us.clamp(1, HIST_MAX_US));
        if !resp.keep_alive {
            self.stream = None;
        }
        if (200..300).contains(&resp.status) {
            return;
        }
        *stats.http_errors.entry(resp.status).or_default() += 1;
        stats.failed_batches += 1;
        if ctx.printed.fetch_add(1, Ordering::Relaxed) < MAX_PRINTED_BODIES {
            let body = String::from_utf8_lossy(self.reader.body_prefix());
            let msg = format!(
                "batch {} ({} lines): HTTP {}: {}",
                batch.seq,
                batch.lines,
                resp.status,
                body.trim_end()
            );
            ctx.progress.suspend(|| eprintln!("{msg}"));
        }
    }

    /// One POST on the current connection (opened if needed): the answer and its latency.
    fn post(
        &mut self,
        cfg: &WriteConfig,
        seq: u64,
        body: &[u8],
    ) -> Result<(Response, Duration), WriteError> {
        let (conn, addr) = (self.id, cfg.target.addr);
        let stream = match self.stream.take() {
            Some(stream) => stream,
            None => {
                self.reader.reset();
                connect(cfg, conn)?
            }
        };
        let stream = self.stream.insert(stream);
        self.head.clear();
        self.head.extend_from_slice(&cfg.head);
        // Writing into a Vec cannot fail.
        let _ = write!(self.head, "Content-Length: {}\r\n\r\n", body.len());
        let started = Instant::now();
        let sent = stream
            .write_all(&self.head)
            .and_then(|()| stream.write_all(body));
        sent.map_err(|source| WriteError::Send {
            conn,
            addr,
            batch: seq,
            source,
        })?;
        let resp =
            self.reader
                .read_response(stream, true)
                .map_err(|source| WriteError::Response {
                    conn,
                    addr,
                    batch: seq,
                    source,
                })?;
        Ok((resp, started.elapsed()))
    }
}

/// Gzips `body` at the fast level into `out` (cleared first).
fn gzip_into(body: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    let mut encoder = GzEncoder::new(std::mem::take(out), Compression::fast());
    encoder.write_all(body)?;
    *out = encoder.finish()?;
    Ok(())
}

/// Opens one connection: TCP_NODELAY, read and write timeouts.
fn connect(cfg: &WriteConfig, conn: usize) -> Result<TcpStream, WriteError> {
    let addr = cfg.target.addr;
    let wrap = |source| WriteError::Connect { conn, addr, source };
    let stream = TcpStream::connect_timeout(&addr, cfg.timeout).map_err(wrap)?;
    stream.set_nodelay(true).map_err(wrap)?;
    stream.set_read_timeout(Some(cfg.timeout)).map_err(wrap)?;
    stream.set_write_timeout(Some(cfg.timeout)).map_err(wrap)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{header, Answer, TestServer};
    use flate2::read::GzDecoder;
    use std::io::Read;
    use std::net::TcpListener;

    /// How the test server answers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        /// `200` with `Content-Length: 0`.
        Ok,
        /// This status with a short body.
        Status(u16),
        /// Closes the connection without an answer on the first N requests (over all
        /// connections), then answers 200.
        DropFirst(usize),
    }

    /// What the test server saw.
    #[derive(Debug, Default)]
    struct Seen {
        requests: AtomicUsize,
        lines: Mutex<Vec<String>>,
        authorization: Mutex<Vec<String>>,
        gzip_bodies: AtomicUsize,
        wire_bytes: AtomicUsize,
    }

    type Sink = TestServer<Seen>;

    /// An HTTP/1.1 sink that records every write and answers per `mode`.
    fn start_sink(mode: Mode) -> Sink {
        TestServer::start(Seen::default(), move |seen, head, body| {
            let nth = seen.requests.fetch_add(1, Ordering::SeqCst);
            if matches!(mode, Mode::DropFirst(n) if nth < n) {
                return Answer::Drop;
            }
            record(seen, head, body);
            Answer::Send(match mode {
                Mode::Status(400) => {
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 21\r\n\r\nline 1: missing field"
                }
                Mode::Status(_) => b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy",
                Mode::Ok | Mode::DropFirst(_) => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            })
        })
    }

    fn sorted_lines(sink: &Sink) -> Vec<String> {
        let mut lines = sink.state.lines.lock().expect("lines").clone();
        lines.sort();
        lines
    }

    /// Books one request: its Authorization header and its (decoded) lines.
    fn record(seen: &Seen, head: &str, body: &[u8]) {
        assert!(
            head.starts_with("POST /api/v1/write?db=public HTTP/1.1\r\n"),
            "{head}"
        );
        let auth = header(head, "authorization").unwrap_or("none").to_owned();
        seen.authorization.lock().expect("auth").push(auth);
        seen.wire_bytes.fetch_add(body.len(), Ordering::SeqCst);
        let text = if header(head, "content-encoding") == Some("gzip") {
            seen.gzip_bodies.fetch_add(1, Ordering::SeqCst);
            let mut text = String::new();
            GzDecoder::new(body)
                .read_to_string(&mut text)
                .expect("gzip body decodes");
            text
        } else {
            String::from_utf8(body.to_vec()).expect("utf-8 body")
        };
        assert!(text.ends_with('\n'), "whole lines");
        let mut lines = seen.lines.lock().expect("lines");
        lines.extend(text.lines().map(str::to_owned));
    }

    fn args(addr: SocketAddr) -> WriteArgs {
        WriteArgs {
            url: format!("http://{addr}/api/v1/write?db=public"),
            connections: 3,
            batch_lines: 300,
            gzip: false,
            rows: Some(2500),
            scale: 100,
            seed: 7,
            start: tsbs::DEFAULT_START.into(),
            interval_s: 10,
            file: None,
            user: "root".into(),
            password: String::new(),
            pid: None,
            timeout_s: 5.0,
            json: false,
            no_progress: true,
        }
    }

    fn run_with(a: &WriteArgs) -> WriteSummary {
        let cfg = WriteConfig::from_args(a).expect("config");
        run_write(&cfg, &ProgressBar::hidden()).expect("run")
    }

    fn generated(a: &WriteArgs) -> Vec<String> {
        let Source::Generate(t) = WriteConfig::from_args(a).expect("config").source else {
            panic!("generated source expected");
        };
        let mut lines: Vec<String> = Generator::new(&t).expect("generator").collect();
        lines.sort();
        lines
    }

    #[test]
    fn generated_rows_arrive_complete_with_basic_auth() {
        let sink = start_sink(Mode::Ok);
        let a = args(sink.addr);
        let sum = run_with(&a);
        let s = &sum.stats;
        assert_eq!(s.errors(), 0, "{:?}", s.first_error);
        assert_eq!((s.rows_ok, s.batches_ok, s.failed_batches), (2500, 9, 0));
        assert_eq!((sum.produced_rows, s.latency_us.len()), (2500, 9));
        assert_eq!(sorted_lines(&sink), generated(&a));
        assert_eq!(sink.state.requests.load(Ordering::SeqCst), 9);
        assert!(sink.accepted() <= 3, "keep-alive");
        let auth = sink.state.authorization.lock().expect("auth").clone();
        assert!(auth.iter().all(|h| h == "Basic cm9vdDo="), "{auth:?}");
        let bytes: usize = generated(&a).iter().map(|l| l.len() + 1).sum();
        assert_eq!(s.body_bytes_ok, bytes as u64);
        assert_eq!(s.wire_body_bytes, bytes as u64);
        assert!(sum.text().starts_with("rows/s "), "{}", sum.text());
        assert!(sum.text().contains("  rows 2500  "), "{}", sum.text());
    }

    #[test]
    fn gzip_bodies_decode_to_the_same_rows() {
        let sink = start_sink(Mode::Ok);
        let mut a = args(sink.addr);
        (a.gzip, a.user, a.password, a.connections) = (true, "alice".into(), "s3cr:t".into(), 1);
        let s = run_with(&a).stats;
        assert_eq!((s.errors(), s.rows_ok), (0, 2500), "{:?}", s.first_error);
        assert_eq!(sorted_lines(&sink), generated(&a));
        assert_eq!(sink.state.gzip_bodies.load(Ordering::SeqCst), 9);
        assert_eq!(
            sink.state.wire_bytes.load(Ordering::SeqCst) as u64,
            s.wire_body_bytes
        );
        assert!(s.wire_body_bytes * 3 < s.body_bytes_ok, "compressed");
        let auth = sink.state.authorization.lock().expect("auth").clone();
        let want = format!("Basic {}", base64(b"alice:s3cr:t"));
        assert!(auth.iter().all(|h| *h == want), "{auth:?}");
    }

    #[test]
    fn error_statuses_are_counted_not_retried() {
        let sink = start_sink(Mode::Status(400));
        let mut a = args(sink.addr);
        (a.rows, a.batch_lines) = (Some(1000), 250);
        let sum = run_with(&a);
        let s = &sum.stats;
        assert_eq!((s.rows_ok, s.batches_ok, s.failed_batches), (0, 0, 4));
        assert_eq!(s.http_errors, BTreeMap::from([(400, 4)]));
        assert_eq!((s.connection_errors, s.errors()), (0, 4));
        assert_eq!(sink.state.requests.load(Ordering::SeqCst), 4);
        assert!(
            sum.text()
                .contains("errors 4 (http 4 [400x4], connection 0)"),
            "{}",
            sum.text()
        );
        let sink = start_sink(Mode::Status(503));
        a.url = format!("http://{}/api/v1/write?db=public", sink.addr);
        assert_eq!(run_with(&a).stats.http_errors, BTreeMap::from([(503, 4)]));
    }

    #[test]
    fn dropped_connections_are_retried() {
        let sink = start_sink(Mode::DropFirst(2));
        let mut a = args(sink.addr);
        a.connections = 1;
        let s = run_with(&a).stats;
        assert_eq!((s.rows_ok, s.batches_ok, s.failed_batches), (2500, 9, 0));
        assert_eq!((s.connection_errors, s.errors()), (2, 2));
        assert!(matches!(
            s.first_error,
            Some(WriteError::Response { batch: 0, .. })
        ));
        assert_eq!(sink.state.requests.load(Ordering::SeqCst), 11);
        assert_eq!(sorted_lines(&sink), generated(&a));
    }

    #[test]
    fn a_dead_server_ends_the_run_by_itself() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let mut a = args(addr);
        (a.rows, a.batch_lines) = (Some(DEFAULT_ROWS), 10);
        let started = Instant::now();
        let sum = run_with(&a);
        assert!(started.elapsed() < Duration::from_secs(10));
        let s = &sum.stats;
        assert_eq!((s.rows_ok, s.abandoned), (0, 3));
        assert_eq!(s.connection_errors, 3 * u64::from(MAX_CONSECUTIVE_ERRORS));
        assert!(sum.produced_rows < DEFAULT_ROWS, "the producer stopped");
        let err = s.first_error.as_ref().expect("error").to_string();
        assert!(
            err.contains("connect failed") && err.contains(&addr.to_string()),
            "{err}"
        );
    }

    #[test]
    fn file_source_sends_whole_non_blank_lines() {
        let path =
            std::env::temp_dir().join(format!("chronoshard-write-{}.lp", std::process::id()));
        let text = "m v=1i 1\n\nm v=2i 2\r\n  \nm v=3i 3\nm v=4i 4\nm v=5i 5\nm v=6i 6\nm v=7i 7";
        std::fs::write(&path, text).expect("write file");
        let sink = start_sink(Mode::Ok);
        let mut a = args(sink.addr);
        (a.file, a.rows, a.batch_lines) = (Some(path.clone()), None, 3);
        let s = run_with(&a).stats;
        assert_eq!((s.rows_ok, s.batches_ok), (7, 3), "{:?}", s.first_error);
        a.rows = Some(4);
        let s = run_with(&a).stats;
        let _ = std::fs::remove_file(&path);
        assert_eq!((s.rows_ok, s.batches_ok), (4, 2));
        let lines = sorted_lines(&sink);
        assert_eq!(lines.len(), 11);
        assert_eq!(lines.iter().filter(|l| *l == "m v=2i 2").count(), 2);
        assert_eq!(lines.last().map(String::as_str), Some("m v=7i 7"));
        a.file = Some(path);
        let cfg = WriteConfig::from_args(&a).expect("config");
        let err = run_write(&cfg, &ProgressBar::hidden()).expect_err("missing file");
        assert!(matches!(err, WriteError::Open { .. }), "{err}");
    }

    #[test]
    fn config_validation_and_request_head() {
        let addr: SocketAddr = "127.0.0.1:8902".parse().expect("addr");
        let mut a = args(addr);
        a.gzip = true;
        let cfg = WriteConfig::from_args(&a).expect("valid");
        let head = String::from_utf8_lossy(&cfg.head).into_owned();
        assert!(
            head.starts_with("POST /api/v1/write?db=public HTTP/1.1\r\nHost: 127.0.0.1:8902\r\n")
        );
        assert!(
            head.contains("\r\nAuthorization: Basic cm9vdDo=\r\n"),
            "{head}"
        );
        assert!(head.ends_with("Content-Encoding: gzip\r\n"), "{head}");
        assert_eq!(cfg.planned_rows(), Some(2500));
        let breakers: [fn(&mut WriteArgs); 8] = [
            |a| a.url = "https://127.0.0.1/".into(),
            |a| a.connections = 0,
            |a| a.batch_lines = 0,
            |a| a.user = "a:b".into(),
            |a| a.timeout_s = 0.0,
            |a| a.scale = 0,
            |a| a.start = "soon".into(),
            |a| a.interval_s = 0,
        ];
        for (i, brk) in breakers.iter().enumerate() {
            let mut a = args(addr);
            brk(&mut a);
            assert!(WriteConfig::from_args(&a).is_err(), "breaker {i}");
        }
    }

    #[test]
    fn base64_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("root:", "cm9vdDo="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn proc_stat_cpu_time() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100";
        assert_eq!(stat_cpu_ticks(stat), Some(300));
        assert_eq!(stat_cpu_ticks("42 (x) S 1 2"), None);
        let own = server_cpu_seconds(std::process::id()).expect("own /proc stat");
        assert!(own >= 0.0);
        let err = server_cpu_seconds(u32::MAX).expect_err("no such pid");
        assert!(err.to_string().contains("/proc/4294967295/stat"), "{err}");
    }

    #[test]
    fn summaries() {
        let addr: SocketAddr = "127.0.0.1:8902".parse().expect("addr");
        let cfg = WriteConfig::from_args(&args(addr)).expect("config");
        let mut stats = WriteStats::new().expect("stats");
        (stats.rows_ok, stats.batches_ok, stats.body_bytes_ok) = (2_000_000, 400, 500_000_000);
        stats.wire_body_bytes = 100_000_000;
        stats.failed_batches = 1;
        stats.http_errors.insert(500, 1);
        stats.latency_us.saturating_record(1500);
        let sum = WriteSummary {
            stats,
            elapsed: Duration::from_secs(2),
            produced_rows: 2_000_000,
            server_cpu_s: Some(3.0),
        };
        let text = sum.text();
        assert!(text.starts_with("rows/s 1000000  rows 2000000  MB/s 250.0  batches 401  errors 1 (http 1 [500x1], connection 0)  elapsed_s 2.000  latency_ms p50 1.500"), "{text}");
        assert!(
            text.ends_with("server_cpu_s 3.00  server_cpu_s_per_million_rows 1.500"),
            "{text}"
        );
        let json = sum.json(&cfg);
        assert!(
            json.starts_with(
                "{\"url\":\"http://127.0.0.1:8902/api/v1/write?db=public\",\"connections\":3,"
            ),
            "{json}"
        );
        assert!(json.contains("\"rows_per_s\":1000000.0,\"mb_per_s\":250.000,\"wire_mb_per_s\":50.000,\"batches\":401,\"failed_batches\":1,\"errors\":1,\"http_errors\":{\"500\":1},"), "{json}");
        assert!(
            json.ends_with("\"server_cpu_s\":3.000,\"server_cpu_s_per_million_rows\":1.500}"),
            "{json}"
        );
    }
}
