//! `chronoshard-bench http`: a closed-loop HTTP/1.1 load generator.
//!
//! Each worker thread owns a share of the keep-alive connections and drives them in lock step
//! with blocking I/O: it writes one batch (`--pipeline` requests, built once at start-up) to
//! every connection, then reads each connection's responses. A connection error closes the
//! socket, is counted, and the connection reconnects on its next turn; after
//! [`MAX_CONSECUTIVE_ERRORS`] errors in a row it is abandoned. Only responses that complete in
//! the measured window (after the warm-up) count toward throughput and latency; errors are
//! counted over the whole run. The run stops by itself once warm-up plus duration have passed;
//! responses still in flight then are awaited, which a stalled server can stretch by up to one
//! `--timeout-s` per connection of a worker.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use thiserror::Error;

use crate::http_client::{ClientError, Response, ResponseReader};

/// A connection is abandoned after this many errors in a row (connect, write or read).
pub const MAX_CONSECUTIVE_ERRORS: u32 = 100;
/// Upper bound of `--pipeline`.
const MAX_PIPELINE: usize = 1024;
/// Latency histogram range in microseconds (1 us .. 60 s) and precision.
const HIST_MAX_US: u64 = 60_000_000;
const HIST_SIGFIGS: u8 = 3;

/// Flags of `chronoshard-bench http`.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Target: plain http:// to an IP literal or localhost, with optional port and path.
    #[arg(long, default_value = "http://127.0.0.1:8902/api/v1/ping")]
    pub url: String,
    /// Request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// File whose contents are sent as the request body (with Content-Length).
    #[arg(long, value_name = "PATH")]
    pub body_file: Option<PathBuf>,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Number of keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Worker threads the connections are spread over [default: number of cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Warm-up before the measured window, in seconds (excluded from the statistics).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_s: f64,
    /// Requests in flight per connection: write this many back to back, then read the responses.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Connect, read and write timeout per socket operation, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout_s: f64,
    /// Print the summary as one JSON object line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Everything that can go wrong, with the connection and address it happened on.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("bad --url {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("bad --header {header:?}: {reason}")]
    Header {
        header: String,
        reason: &'static str,
    },
    #[error("bad --method {method:?}: not an HTTP token")]
    Method { method: String },
    #[error("bad --{flag}: {reason}")]
    Flag {
        flag: &'static str,
        reason: &'static str,
    },
    #[error("cannot read --body-file {}: {source}", path.display())]
    BodyFile { path: PathBuf, source: io::Error },
    #[error("connection {conn} to {addr}: connect failed: {source}")]
    Connect {
        conn: usize,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("connection {conn} to {addr}: write failed: {source}")]
    Write {
        conn: usize,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("connection {conn} to {addr}: {source}")]
    Response {
        conn: usize,
        addr: SocketAddr,
        source: ClientError,
    },
    #[error("connection {conn} to {addr}: server closed it with {outstanding} pipelined request(s) unanswered")]
    ClosedEarly {
        conn: usize,
        addr: SocketAddr,
        outstanding: usize,
    },
    #[error("cannot start worker thread {thread}: {source}")]
    Spawn { thread: usize, source: io::Error },
    #[error("worker thread {thread} panicked")]
    WorkerPanicked { thread: usize },
    #[error("latency histogram: {0}")]
    Histogram(String),
    #[error("cannot write the summary: {0}")]
    Output(io::Error),
    #[error("no request completed in the measured window ({errors} errors)")]
    NoRequests { errors: u64 },
}

/// Where requests go: the socket address, plus what the request line and Host header need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host[:port]` exactly as written in the URL, for the Host header.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// The validated run configuration.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub url: String,
    pub method: String,
    pub target: Target,
    /// `pipeline` copies of the request, written with one call per batch.
    pub batch: Vec<u8>,
    pub pipeline: usize,
    /// False for HEAD, whose responses carry no body.
    pub expect_body: bool,
    pub connections: usize,
    pub threads: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
}

/// Runs `chronoshard-bench http` and prints the summary to stdout.
pub fn run(args: &HttpArgs) -> Result<(), LoadError> {
    let cfg = LoadConfig::from_args(args)?;
    if !cfg.target.addr.ip().is_loopback() {
        eprintln!("warning: {} is not a loopback address", cfg.target.addr);
    }
    let summary = run_load(&cfg)?;
    let line = if args.json {
        summary.json(&cfg)
    } else {
        summary.text()
    };
    writeln!(io::stdout().lock(), "{line}").map_err(LoadError::Output)?;
    if let Some(err) = &summary.stats.first_error {
        eprintln!("first error: {err}");
    }
    if summary.stats.abandoned > 0 {
        eprintln!(
            "{} connection(s) abandoned after {MAX_CONSECUTIVE_ERRORS} consecutive errors",
            summary.stats.abandoned
        );
    }
    if summary.stats.requests == 0 {
        return Err(LoadError::NoRequests {
            errors: summary.stats.errors,
        });
    }
    Ok(())
}

impl LoadConfig {
    /// Validates the flags, reads the body file and builds the request bytes.
    pub fn from_args(args: &HttpArgs) -> Result<Self, LoadError> {
        let target = parse_url(&args.url)?;
        if args.method.is_empty() || !args.method.bytes().all(is_token_byte) {
            return Err(LoadError::Method {
                method: args.method.clone(),
            });
        }
        let headers = args
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        let body = match &args.body_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| LoadError::BodyFile {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let request = build_request(&args.method, &target, &headers, body.as_deref());
        let pipeline = check_range("pipeline", args.pipeline, 1, MAX_PIPELINE)?;
        let connections = check_range("connections", args.connections, 1, 1_000_000)?;
        let cores = thread::available_parallelism().map_or(1, usize::from);
        let threads = check_range("threads", args.threads.unwrap_or(cores), 1, 4096)?;
        Ok(Self {
            url: args.url.clone(),
            method: args.method.clone(),
            target,
            batch: request.repeat(pipeline),
            pipeline,
            expect_body: args.method != "HEAD",
            connections,
            threads: threads.min(connections),
            warmup: seconds("warmup-s", args.warmup_s, true)?,
            duration: seconds("duration-s", args.duration_s, false)?,
            timeout: seconds("timeout-s", args.timeout_s, false)?,
        })
    }
}

fn check_range(flag: &'static str, v: usize, lo: usize, hi: usize) -> Result<usize, LoadError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(LoadError::Flag {
            flag,
            reason: "out of range",
        })
    }
}

fn seconds(flag: &'static str, v: f64, zero_ok: bool) -> Result<Duration, LoadError> {
    let reason = "must be a finite number of seconds, >= 0 for warm-up and > 0 otherwise";
    match Duration::try_from_secs_f64(v) {
        Ok(d) if zero_ok || !d.is_zero() => Ok(d),
        _ => Err(LoadError::Flag { flag, reason }),
    }
}

/// Parses `http://HOST[:PORT][/PATH][?QUERY]` where HOST is an IP literal or `localhost`.
pub fn parse_url(url: &str) -> Result<Target, LoadError> {
    let fail = |reason| LoadError::Url {
        url: url.to_owned(),
        reason,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("only plain http:// URLs are supported"))?;
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(fail(
            "the path must not contain spaces or control characters",
        ));
    }
    let addr = parse_authority(authority).map_err(fail)?;
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    Ok(Target {
        addr,
        authority: authority.to_owned(),
        path,
    })
}

fn parse_authority(authority: &str) -> Result<SocketAddr, &'static str> {
    let (ip, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, port) = rest.split_once(']').ok_or("unclosed [ in the host")?;
        let ip: Ipv6Addr = host.parse().map_err(|_| "bad IPv6 address")?;
        (IpAddr::V6(ip), port)
    } else {
        let (host, port) = authority
            .find(':')
            .map_or((authority, ""), |i| authority.split_at(i));
        let ip = if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse()
                .map_err(|_| "the host must be an IP address or localhost")?
        };
        (IpAddr::V4(ip), port)
    };
    let port = match port {
        "" => 80,
        p => p
            .strip_prefix(':')
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or("bad port")?,
    };
    if port == 0 {
        return Err("port 0 is not a valid target");
    }
    Ok(SocketAddr::new(ip, port))
}

/// Splits `Name: value`, rejecting what would break the request or its framing.
pub fn parse_header(header: &str) -> Result<(String, String), LoadError> {
    let fail = |reason| LoadError::Header {
        header: header.to_owned(),
        reason,
    };
    let (name, value) = header
        .split_once(':')
        .ok_or_else(|| fail("expected `Name: value`"))?;
    let value = value.trim();
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(fail("the name must be a non-empty HTTP token"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(fail("the value must not contain CR, LF or NUL"));
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        return Err(fail("body framing is set by the tool (use --body-file)"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Builds the request bytes once: request line, Host (unless given), headers, framing, body.
pub fn build_request(
    method: &str,
    target: &Target,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = format!("{method} {} HTTP/1.1\r\n", target.path);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        let _ = write!(head, "Host: {}\r\n", target.authority);
    }
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let sends_length = body.is_some() || matches!(method, "POST" | "PUT" | "PATCH");
    if sends_length {
        let _ = write!(head, "Content-Length: {}\r\n", body.map_or(0, <[u8]>::len));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body.unwrap_or_default());
    request
}

/// The span of the run whose completions are measured.
#[derive(Debug, Clone, Copy)]
struct Window {
    measure_start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.measure_start && t < self.end
    }
}

/// Counters of one worker thread, merged into the summary at the end.
#[derive(Debug)]
pub struct Stats {
    pub latency_us: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
    pub non2xx: u64,
    pub bytes_read: u64,
    pub abandoned: u64,
    pub first_error: Option<LoadError>,
}

impl Stats {
    fn new() -> Result<Self, LoadError> {
        let latency_us = Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIGS)
            .map_err(|e| LoadError::Histogram(e.to_string()))?;
        Ok(Self {
            latency_us,
            requests: 0,
            errors: 0,
            non2xx: 0,
            bytes_read: 0,
            abandoned: 0,
            first_error: None,
        })
    }

    fn record_response(&mut self, resp: &Response, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(us.clamp(1, HIST_MAX_US));
        self.requests += 1;
        self.bytes_read += resp.bytes;
        if !(200..300).contains(&resp.status) {
            self.non2xx += 1;
        }
    }

    fn record_error(&mut self, err: LoadError) {
        self.errors += 1;
        self.first_error.get_or_insert(err);
    }

    fn merge(&mut self, other: Stats) -> Result<(), LoadError> {
        self.latency_us
            .add(&other.latency_us)
            .map_err(|e| LoadError::Histogram(format!("{e:?}")))?;
        self.requests += other.requests;
        self.errors += other.errors;
        self.non2xx += other.non2xx;
        self.bytes_read += other.bytes_read;
        self.abandoned += other.abandoned;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}

/// The merged result of a run.
#[derive(Debug)]
pub struct Summary {
    pub stats: Stats,
    pub measured: Duration,
}

impl Summary {
    fn requests_per_s(&self) -> f64 {
        self.stats.requests as f64 / self.measured.as_secs_f64()
    }

    fn read_mb_per_s(&self) -> f64 {
        self.stats.bytes_read as f64 / 1e6 / self.measured.as_secs_f64()
    }

    /// p50, p90, p99, p999 and max latency in microseconds (zeros when nothing was recorded).
    fn latencies(&self) -> [u64; 5] {
        let h = &self.stats.latency_us;
        if h.is_empty() {
            return [0; 5];
        }
        let q = |q| h.value_at_quantile(q);
        [q(0.5), q(0.9), q(0.99), q(0.999), h.max()]
    }

    /// The one-line text summary.
    pub fn text(&self) -> String {
        let [p50, p90, p99, p999, max] = self.latencies();
        format!(
            "requests/s {:.1}  requests {}  errors {}  non2xx {}  read MB/s {:.1}  \
             latency_us p50 {p50} p90 {p90} p99 {p99} p999 {p999} max {max}",
            self.requests_per_s(),
            self.stats.requests,
            self.stats.errors,
            self.stats.non2xx,
            self.read_mb_per_s(),
        )
    }

    /// The summary as one JSON object, with the run's parameters.
    pub fn json(&self, cfg: &LoadConfig) -> String {
        let [p50, p90, p99, p999, max] = self.latencies();
        format!(
            "{{\"url\":{},\"method\":{},\"connections\":{},\"threads\":{},\"pipeline\":{},\
             \"duration_s\":{},\"requests_per_s\":{:.1},\"requests\":{},\"errors\":{},\
             \"non2xx\":{},\"read_mb_per_s\":{:.3},\"abandoned_connections\":{},\
             \"latency_us\":{{\"p50\":{p50},\"p90\":{p90},\"p99\":{p99},\"p999\":{p999},\
             \"max\":{max}}}}}",
            json_string(&cfg.url),
            json_string(&cfg.method),
            cfg.connections,
            cfg.threads,
            cfg.pipeline,
            cfg.duration.as_secs_f64(),
            self.requests_per_s(),
            self.stats.requests,
            self.stats.errors,
            self.stats.non2xx,
            self.read_mb_per_s(),
            self.stats.abandoned,
        )
    }
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs the load: spawns the workers, waits for them, merges their statistics.
pub fn run_load(cfg: &LoadConfig) -> Result<Summary, LoadError> {
    let start = Instant::now();
    let window = Window {
        measure_start: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
    };
    let per_thread = thread::scope(|scope| {
        let mut handles = Vec::with_capacity(cfg.threads);
        for t in 0..cfg.threads {
            let ids: Vec<usize> = (t..cfg.connections).step_by(cfg.threads).collect();
            let handle = thread::Builder::new()
                .name(format!("http-load-{t}"))
                .spawn_scoped(scope, move || worker(cfg, ids, window))
                .map_err(|source| LoadError::Spawn { thread: t, source })?;
            handles.push(handle);
        }
        let joined = handles
            .into_iter()
            .enumerate()
            .map(|(thread, h)| h.join().map_err(|_| LoadError::WorkerPanicked { thread })?);
        joined.collect::<Result<Vec<Stats>, LoadError>>()
    })?;
    let mut total = Stats::new()?;
    for stats in per_thread {
        total.merge(stats)?;
    }
    Ok(Summary {
        stats: total,
        measured: cfg.duration,
    })
}

/// One worker: drives its connections in lock step until the window ends or all are abandoned.
fn worker(cfg: &LoadConfig, ids: Vec<usize>, window: Window) -> Result<Stats, LoadError> {
    let mut stats = Stats::new()?;
    let mut conns: Vec<Conn> = ids.into_iter().map(Conn::new).collect();
    while Instant::now() < window.end {
        let mut any_alive = false;
        for conn in conns.iter_mut().filter(|c| c.alive()) {
            any_alive = true;
            conn.send(cfg, &mut stats);
        }
        if !any_alive {
            break;
        }
        for conn in &mut conns {
            conn.receive(cfg, &mut stats, window);
        }
    }
    Ok(stats)
}

/// One client connection and its reconnect bookkeeping.
struct Conn {
    id: usize,
    stream: Option<TcpStream>,
    reader: ResponseReader,
    consecutive_errors: u32,
    /// Responses still expected for the batch written at `sent_at`.
    in_flight: usize,
    sent_at: Instant,
}

impl Conn {
    fn new(id: usize) -> Self {
        Self {
            id,
            stream: None,
            reader: ResponseReader::default(),
            consecutive_errors: 0,
            in_flight: 0,
            sent_at: Instant::now(),
        }
    }

    fn alive(&self) -> bool {
        self.consecutive_errors < MAX_CONSECUTIVE_ERRORS
    }

    /// Connects if needed and writes one batch; failures are counted and close the socket.
    fn send(&mut self, cfg: &LoadConfig, stats: &mut Stats) {
        if self.stream.is_none() {
            match connect(cfg, self.id) {
                Ok(stream) => self.stream = Some(stream),
                Err(err) => return self.fail(stats, err),
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        self.sent_at = Instant::now();
        match stream.write_all(&cfg.batch) {
            Ok(()) => self.in_flight = cfg.pipeline,
            Err(source) => {
                let (conn, addr) = (self.id, cfg.target.addr);
                self.fail(stats, LoadError::Write { conn, addr, source });
            }
        }
    }

    /// Reads the responses to the last batch, recording those that complete in the window.
    fn receive(&mut self, cfg: &LoadConfig, stats: &mut Stats, window: Window) {
        while self.in_flight > 0 {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let (conn, addr) = (self.id, cfg.target.addr);
            match self.reader.read_response(stream, cfg.expect_body) {
                Ok(resp) => {
                    self.in_flight -= 1;
                    self.consecutive_errors = 0;
                    let now = Instant::now();
                    if window.contains(now) {
                        stats.record_response(&resp, now - self.sent_at);
                    }
                    if !resp.keep_alive {
                        self.closed_by_server(cfg, stats);
                    }
                }
                Err(source) => self.fail(stats, LoadError::Response { conn, addr, source }),
            }
        }
    }

    /// The server ended the connection after a response; reconnect on the next turn.
    fn closed_by_server(&mut self, cfg: &LoadConfig, stats: &mut Stats) {
        let outstanding = self.in_flight;
        self.drop_stream();
        if outstanding > 0 {
            let (conn, addr) = (self.id, cfg.target.addr);
            let err = LoadError::ClosedEarly {
                conn,
                addr,
                outstanding,
            };
            self.fail(stats, err);
        }
    }

    fn fail(&mut self, stats: &mut Stats, err: LoadError) {
        self.drop_stream();
        self.consecutive_errors += 1;
        stats.record_error(err);
        if !self.alive() {
            stats.abandoned += 1;
        }
    }

    fn drop_stream(&mut self) {
        self.stream = None;
        self.reader.reset();
        self.in_flight = 0;
    }
}

/// Opens one keep-alive connection: TCP_NODELAY, read and write timeouts.
fn connect(cfg: &LoadConfig, conn: usize) -> Result<TcpStream, LoadError> {
    let addr = cfg.target.addr;
    let wrap = |source| LoadError::Connect { conn, addr, source };
    let stream = TcpStream::connect_timeout(&addr, cfg.timeout).map_err(wrap)?;
    stream.set_nodelay(true).map_err(wrap)?;
    stream.set_read_timeout(Some(cfg.timeout)).map_err(wrap)?;
    stream.set_write_timeout(Some(cfg.timeout)).map_err(wrap)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::Answer;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// How the test server answers each request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Reply {
        Ok,
        Chunked,
        Unavailable,
        CloseEach,
    }

    impl Reply {
        fn bytes(self) -> &'static [u8] {
            match self {
                Reply::Ok => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                Reply::Chunked => {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                }
                Reply::Unavailable => b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy",
                Reply::CloseEach => {
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
                }
            }
        }
    }

    #[derive(Debug, Default)]
    struct Counters {
        requests: AtomicUsize,
        body_bytes: AtomicUsize,
    }

    type TestServer = crate::test_server::TestServer<Counters>;

    /// A server answering every request with `reply`, counting requests and body bytes.
    fn server(reply: Reply) -> TestServer {
        TestServer::start(Counters::default(), move |c, _head, body| {
            c.requests.fetch_add(1, Ordering::SeqCst);
            c.body_bytes.fetch_add(body.len(), Ordering::SeqCst);
            match reply {
                Reply::CloseEach => Answer::SendAndClose(reply.bytes()),
                _ => Answer::Send(reply.bytes()),
            }
        })
    }

    fn count(server: &TestServer, which: fn(&Counters) -> &AtomicUsize) -> usize {
        which(&server.state).load(Ordering::SeqCst)
    }

    fn args(addr: SocketAddr) -> HttpArgs {
        HttpArgs {
            url: format!("http://{addr}/api/v1/ping"),
            method: "GET".into(),
            body_file: None,
            headers: vec!["X-Test: yes".into()],
            connections: 4,
            threads: Some(2),
            duration_s: 0.4,
            warmup_s: 0.1,
            pipeline: 1,
            timeout_s: 2.0,
            json: false,
        }
    }

    fn run_against(server: &TestServer, tweak: impl FnOnce(&mut HttpArgs)) -> Summary {
        let mut a = args(server.addr);
        tweak(&mut a);
        let cfg = LoadConfig::from_args(&a).expect("valid config");
        run_load(&cfg).expect("run")
    }

    #[test]
    fn keep_alive_connections_are_reused() {
        let server = server(Reply::Ok);
        let sum = run_against(&server, |_| {});
        let s = &sum.stats;
        assert_eq!(
            (s.errors, s.non2xx, s.abandoned),
            (0, 0, 0),
            "{:?}",
            s.first_error
        );
        assert!(s.requests > 0);
        assert_eq!(server.accepted(), 4, "one socket per connection");
        assert!(
            count(&server, |c| &c.requests) as u64 >= s.requests,
            "warm-up excluded"
        );
        assert_eq!(s.bytes_read, s.requests * Reply::Ok.bytes().len() as u64);
        assert!(s.latency_us.max() >= 1);
        assert!(
            sum.text().contains("  errors 0  non2xx 0  "),
            "{}",
            sum.text()
        );
    }

    #[test]
    fn pipelined_chunked_responses() {
        let server = server(Reply::Chunked);
        let sum = run_against(&server, |a| a.pipeline = 8);
        let s = &sum.stats;
        assert_eq!(s.errors, 0, "{:?}", s.first_error);
        assert!(s.requests >= 8);
        assert_eq!(server.accepted(), 4);
        assert_eq!(count(&server, |c| &c.requests) % 8, 0, "whole batches only");
    }

    #[test]
    fn non_2xx_statuses_are_counted() {
        let server = server(Reply::Unavailable);
        let s = run_against(&server, |_| {}).stats;
        assert!(s.requests > 0);
        assert_eq!((s.non2xx, s.errors), (s.requests, 0));
    }

    #[test]
    fn server_close_reconnects_without_errors() {
        let server = server(Reply::CloseEach);
        let s = run_against(&server, |a| a.duration_s = 0.2).stats;
        assert_eq!(s.errors, 0, "{:?}", s.first_error);
        assert!(s.requests > 0);
        assert!(server.accepted() as u64 > s.requests);
    }

    #[test]
    fn server_close_with_pipelined_requests_is_an_error() {
        let server = server(Reply::CloseEach);
        let s = run_against(&server, |a| (a.pipeline, a.duration_s) = (2, 0.2)).stats;
        assert!(s.requests > 0 && s.errors > 0);
        let first = s.first_error.expect("an error");
        assert!(
            matches!(first, LoadError::ClosedEarly { outstanding: 1, .. }),
            "{first}"
        );
    }

    #[test]
    fn refused_connections_are_abandoned_and_the_run_ends_early() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let mut a = args(addr);
        (a.connections, a.duration_s) = (3, 20.0);
        let cfg = LoadConfig::from_args(&a).expect("config");
        let started = Instant::now();
        let s = run_load(&cfg).expect("run").stats;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!((s.requests, s.abandoned), (0, 3));
        assert_eq!(s.errors, 3 * u64::from(MAX_CONSECUTIVE_ERRORS));
        let err = s.first_error.expect("error").to_string();
        assert!(
            err.contains(&addr.to_string()) && err.contains("connection"),
            "{err}"
        );
    }

    #[test]
    fn body_file_is_sent_with_content_length() {
        let path =
            std::env::temp_dir().join(format!("chronoshard-bench-{}.body", std::process::id()));
        std::fs::write(&path, b"cpu,host=a usage=1 1\n").expect("write body file");
        let server = server(Reply::Ok);
        let s = run_against(&server, |a| {
            a.method = "POST".into();
            a.body_file = Some(path.clone());
        })
        .stats;
        let _ = std::fs::remove_file(&path);
        assert_eq!(s.errors, 0, "{:?}", s.first_error);
        let requests = count(&server, |c| &c.requests);
        assert_eq!(count(&server, |c| &c.body_bytes), requests * 21);
    }

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8902/api/v1/ping").expect("default url");
        assert_eq!(t.addr, "127.0.0.1:8902".parse().expect("addr"));
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:8902", "/api/v1/ping")
        );
        let t = parse_url("http://localhost?db=x#frag").expect("localhost");
        assert_eq!(t.addr, "127.0.0.1:80".parse().expect("addr"));
        assert_eq!(t.path, "/?db=x");
        let t = parse_url("http://[::1]:9000").expect("v6");
        assert_eq!((t.addr.port(), t.path.as_str()), (9000, "/"));
        for bad in [
            "https://127.0.0.1/",
            "http://example.com/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://127.0.0.1:80x/",
            "http://user@127.0.0.1/",
            "http://[::1/",
            "http://127.0.0.1/a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn headers_and_request_bytes() {
        assert_eq!(
            parse_header("Authorization:  Basic abc ").expect("header"),
            ("Authorization".into(), "Basic abc".into())
        );
        for bad in [
            "NoColon",
            ": v",
            "Bad Name: v",
            "Content-Length: 3",
            "X: a\r\nY: b",
        ] {
            assert!(parse_header(bad).is_err(), "{bad:?} should be rejected");
        }
        let target = parse_url("http://127.0.0.1:8902/write?db=a").expect("url");
        let headers = [("X-A".to_owned(), "1".to_owned())];
        let req = build_request("POST", &target, &headers, Some(b"abc"));
        let want = "POST /write?db=a HTTP/1.1\r\nHost: 127.0.0.1:8902\r\nX-A: 1\r\n\
                    Content-Length: 3\r\n\r\nabc";
        assert_eq!(String::from_utf8_lossy(&req), want);
        let host = [("host".to_owned(), "db.local".to_owned())];
        let req = build_request("GET", &target, &host, None);
        let want = "GET /write?db=a HTTP/1.1\r\nhost: db.local\r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&req), want);
    }

    #[test]
    fn config_validation() {
        let addr: SocketAddr = "127.0.0.1:8902".parse().expect("addr");
        let ok = LoadConfig::from_args(&args(addr)).expect("defaults are valid");
        assert_eq!(
            ok.batch.len(),
            build_request("GET", &ok.target, &[("X-Test".into(), "yes".into())], None).len()
        );
        let mut piped = args(addr);
        (piped.pipeline, piped.method) = (3, "HEAD".into());
        let piped = LoadConfig::from_args(&piped).expect("pipelined");
        assert!(!piped.expect_body);
        assert_eq!(piped.batch.len() % 3, 0);
        let breakers: [fn(&mut HttpArgs); 7] = [
            |a| a.method = "GE T".into(),
            |a| a.pipeline = 0,
            |a| a.connections = 0,
            |a| a.threads = Some(0),
            |a| a.duration_s = 0.0,
            |a| a.warmup_s = -1.0,
            |a| a.timeout_s = f64::NAN,
        ];
        for (i, brk) in breakers.iter().enumerate() {
            let mut a = args(addr);
            brk(&mut a);
            assert!(LoadConfig::from_args(&a).is_err(), "breaker {i}");
        }
    }

    #[test]
    fn json_summary() {
        let addr: SocketAddr = "127.0.0.1:8902".parse().expect("addr");
        let mut a = args(addr);
        a.url = "http://127.0.0.1:8902/\"q\"".into();
        let cfg = LoadConfig::from_args(&a).expect("config");
        let mut stats = Stats::new().expect("stats");
        let resp = Response {
            status: 500,
            keep_alive: true,
            bytes: 1_000_000,
        };
        stats.record_response(&resp, Duration::from_micros(250));
        let sum = Summary {
            stats,
            measured: Duration::from_secs(2),
        };
        let json = sum.json(&cfg);
        assert!(
            json.starts_with("{\"url\":\"http://127.0.0.1:8902/\\\"q\\\"\","),
            "{json}"
        );
        assert!(json.contains("\"requests\":1,\"errors\":0,\"non2xx\":1,\"read_mb_per_s\":0.500"));
        assert!(json.ends_with("\"max\":250}}"), "{json}");
        assert!(sum
            .text()
            .starts_with("requests/s 0.5  requests 1  errors 0  non2xx 1  read MB/s 0.5"));
    }
}
