//! Server configuration: defaults, the TOML file, `CHRONOSHARD_*` environment variables and flags.
//!
//! Precedence is defaults < file < environment < flags. The environment and flags are merged by
//! clap (a flag beats its env twin), so this module only layers three things: the built-in
//! defaults, the TOML file, and whatever clap found. Every limit the server enforces lives here,
//! with its unit last in its name.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// Name of the config file written into the data directory on first start.
pub const CONFIG_FILE_NAME: &str = "chronoshard.toml";

/// How a shard's write-ahead log makes an append durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalMode {
    /// Acknowledge a write only after the WAL record is fdatasync'd (the default).
    Sync,
    /// Acknowledge once the record is written to the device (O_DIRECT), without waiting for
    /// its fdatasync; fdatasync every `wal_interval_ms`. A power cut can lose the last interval.
    Interval,
    /// Acknowledge once written (O_DIRECT), never fdatasync: a process crash loses nothing
    /// acknowledged, a power cut can lose whatever the device cache held.
    Off,
}

impl fmt::Display for WalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WalMode::Sync => "sync",
            WalMode::Interval => "interval",
            WalMode::Off => "off",
        })
    }
}

impl FromStr for WalMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(WalMode::Sync),
            "interval" => Ok(WalMode::Interval),
            "off" => Ok(WalMode::Off),
            other => Err(format!(
                "unknown WAL mode {other:?} (expected sync, interval or off)"
            )),
        }
    }
}

/// Limits and timeouts of the HTTP front end, per shard unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request head (request line and headers) accepted; past it, 431.
    pub header_bytes_max: usize,
    /// Most headers in one request; past it, 431.
    pub headers_count_max: usize,
    /// Largest `/api/v1/write` body, on the wire and again after decoding; past it, 413.
    pub write_body_bytes_max: usize,
    /// Largest `/api/v1/sql` body, on the wire and again after decoding; past it, 413.
    pub sql_body_bytes_max: usize,
    /// A request head must arrive completely within this time once its first byte is in.
    pub header_read_timeout_ms: u64,
    /// A request body read that makes no progress for this long closes the connection.
    pub body_read_timeout_ms: u64,
    /// A keep-alive connection waiting this long for its next request is closed.
    pub keepalive_idle_timeout_ms: u64,
    /// Open connections per shard; one more is answered 503 and closed.
    pub connections_per_shard_max: usize,
    /// How long a graceful shutdown waits for in-flight requests before exiting anyway.
    pub shutdown_grace_ms: u64,
    /// Hand a newly accepted connection to the shard with the fewest open connections.
    pub balance_connections: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_bytes_max: 64 * 1024,
            headers_count_max: 100,
            write_body_bytes_max: 160 * 1024 * 1024,
            sql_body_bytes_max: 16 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            keepalive_idle_timeout_ms: 75_000,
            connections_per_shard_max: 10_000,
            shutdown_grace_ms: 10_000,
            balance_connections: true,
        }
    }
}

/// The whole configuration, as the TOML file spells it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address every shard binds with SO_REUSEPORT. Port 0 picks a free port once for all shards.
    pub http_addr: SocketAddr,
    /// Root of everything on disk; created on first start.
    pub data_dir: PathBuf,
    /// Number of shards (one pinned thread each); 0 means one per usable core.
    pub shards: usize,
    /// WAL durability mode.
    pub wal_mode: WalMode,
    /// Sync period for `wal_mode = "interval"`.
    pub wal_interval_ms: u64,
    /// Size of each preallocated WAL segment file (a multiple of 4096).
    pub wal_segment_bytes: u64,
    /// Memory one shard's memtable may hold; past it writes wait, then get 429.
    pub memtable_bytes_per_shard_max: usize,
    /// How long a write waits for memtable room before it is answered 429.
    pub memtable_full_wait_ms: u64,
    /// A shard's memtable holding this many bytes is flushed to segments.
    pub memtable_flush_bytes_per_shard: usize,
    /// A memtable this old (since its first write) is flushed; 0: never by age.
    pub memtable_flush_age_ms: u64,
    /// Memory of decoded segments each shard keeps for queries.
    pub segment_cache_bytes_per_shard: usize,
    /// A table partition with this many segments is compacted into one (0: never).
    pub compact_segments: usize,
    /// Rows one compaction merges at most (it holds them all in memory).
    pub compact_rows_max: u64,
    /// A SQL statement running longer is cancelled and answered 500.
    pub query_timeout_ms: u64,
    /// Whether passwords are checked (off: the user must exist, the password is ignored).
    pub auth: bool,
    /// Memory each shard registers with io_uring for storage I/O. All shards together must fit
    /// under RLIMIT_MEMLOCK, which the server tries to raise at start.
    pub io_memory_bytes_per_shard: usize,
    /// Log filter (tracing's env-filter syntax), overridden by `RUST_LOG`.
    pub log: String,
    pub http: HttpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8902)),
            data_dir: PathBuf::from("./data"),
            shards: 0,
            wal_mode: WalMode::Sync,
            wal_interval_ms: 100,
            wal_segment_bytes: 64 << 20,
            memtable_bytes_per_shard_max: 1 << 30,
            memtable_full_wait_ms: 5_000,
            memtable_flush_bytes_per_shard: 512 << 20,
            memtable_flush_age_ms: 900_000,
            segment_cache_bytes_per_shard: 256 << 20,
            compact_segments: 4,
            compact_rows_max: 4_000_000,
            query_timeout_ms: 300_000,
            auth: false,
            io_memory_bytes_per_shard: 2 * 1024 * 1024,
            log: "info".to_string(),
            http: HttpConfig::default(),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing default config file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses a TOML document; keys it leaves out keep their defaults.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Reads a TOML file; keys it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Rejects values the server cannot run with, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        let checks: [(&str, bool); 12] = [
            (
                "memtable_flush_bytes_per_shard must be > 0",
                self.memtable_flush_bytes_per_shard > 0,
            ),
            ("query_timeout_ms must be > 0", self.query_timeout_ms > 0),
            (
                "wal_segment_bytes must be a positive multiple of 4096",
                self.wal_segment_bytes > 0 && self.wal_segment_bytes % 4096 == 0,
            ),
            (
                "memtable_bytes_per_shard_max must be at least 1 MiB",
                self.memtable_bytes_per_shard_max >= 1 << 20,
            ),
            (
                "http.header_bytes_max must be at least 1024",
                h.header_bytes_max >= 1024,
            ),
            (
                "http.headers_count_max must be at least 8",
                h.headers_count_max >= 8,
            ),
            (
                "http.write_body_bytes_max must be > 0",
                h.write_body_bytes_max > 0,
            ),
            (
                "http.sql_body_bytes_max must be > 0",
                h.sql_body_bytes_max > 0,
            ),
            (
                "http.header_read_timeout_ms must be > 0",
                h.header_read_timeout_ms > 0,
            ),
            (
                "http.body_read_timeout_ms must be > 0",
                h.body_read_timeout_ms > 0,
            ),
            (
                "http.connections_per_shard_max must be > 0",
                h.connections_per_shard_max > 0,
            ),
            ("wal_interval_ms must be > 0", self.wal_interval_ms > 0),
        ];
        for (message, ok) in checks {
            if !ok {
                return Err(ConfigError::Invalid(message.to_string()));
            }
        }
        if self.io_memory_bytes_per_shard < 64 * 1024 {
            return Err(ConfigError::Invalid(
                "io_memory_bytes_per_shard must be at least 65536".to_string(),
            ));
        }
        Ok(())
    }

    /// Shard count after resolving 0 to the number of usable cores.
    pub fn shard_count(&self, usable_cores: usize) -> usize {
        if self.shards == 0 {
            usable_cores.max(1)
        } else {
            self.shards
        }
    }
}

/// The default configuration as a commented TOML document; `chronoshard config` prints it and the
/// first start writes it into the data directory. A unit test checks that it parses to
/// `Config::default()`, so the text cannot drift from the code.
pub fn default_toml() -> String {
    let c = Config::default();
    let h = &c.http;
    format!(
        r#"# chronoshard configuration. Precedence: defaults < this file < CHRONOSHARD_* env < flags.

# Address every shard listens on (SO_REUSEPORT). Flag --http-addr, env CHRONOSHARD_HTTP_ADDR.
http_addr = "{addr}"
# Data directory, created on first start. Flag --data-dir, env CHRONOSHARD_DATA_DIR.
data_dir = "{data_dir}"
# Shards, one pinned thread per shard; 0 = one per usable core. Flag --shards, env CHRONOSHARD_SHARDS.
shards = {shards}
# WAL durability: "sync" (ack after fdatasync), "interval" (sync every wal_interval_ms), "off".
# Flag --wal-mode, env CHRONOSHARD_WAL_MODE.
wal_mode = "{wal_mode}"
wal_interval_ms = {wal_interval_ms}
# Size of each preallocated WAL segment file (a multiple of 4096).
wal_segment_bytes = {wal_segment_bytes}
# Memory one shard's memtable may hold; past it writes wait memtable_full_wait_ms, then get 429.
memtable_bytes_per_shard_max = {memtable_bytes}
memtable_full_wait_ms = {memtable_wait}
# A shard's memtable is flushed to Parquet segments once it holds this many bytes, or this long
# after its first write (0: never by age). While one flushes, a new memtable takes writes.
memtable_flush_bytes_per_shard = {flush_bytes}
memtable_flush_age_ms = {flush_age}
# Memory of decoded segments each shard keeps for queries (least recently used goes first).
segment_cache_bytes_per_shard = {segment_cache}
# A table partition with compact_segments segments is merged into one (0: never), at most
# compact_rows_max rows at a time (a compaction holds them in memory).
compact_segments = {compact_segments}
compact_rows_max = {compact_rows_max}
# A SQL statement running longer is cancelled and answered 500.
query_timeout_ms = {query_timeout_ms}
# Check passwords (false: the user must exist, the password is ignored). Flag --auth, env CHRONOSHARD_AUTH.
auth = {auth}
# io_uring registered-buffer memory per shard; all shards together must fit under RLIMIT_MEMLOCK.
io_memory_bytes_per_shard = {io_memory}
# Log filter (tracing env-filter syntax); RUST_LOG overrides it.
log = "{log}"

[http]
# Largest request head (request line + headers); past it: 431.
header_bytes_max = {header_bytes_max}
# Most headers in one request; past it: 431.
headers_count_max = {headers_count_max}
# Largest body of /api/v1/write, checked on the wire and again after decompression; past it: 413.
write_body_bytes_max = {write_body_bytes_max}
# Largest body of /api/v1/sql, checked on the wire and again after decompression; past it: 413.
sql_body_bytes_max = {sql_body_bytes_max}
# A request head must be complete this long after its first byte, or the connection is closed.
header_read_timeout_ms = {header_read_timeout_ms}
# A body read that makes no progress this long closes the connection.
body_read_timeout_ms = {body_read_timeout_ms}
# An idle keep-alive connection is closed after this long.
keepalive_idle_timeout_ms = {keepalive_idle_timeout_ms}
# Open connections per shard; past it a new connection gets 503 and is closed.
connections_per_shard_max = {connections_per_shard_max}
# On SIGTERM/SIGINT, in-flight requests get this long to finish.
shutdown_grace_ms = {shutdown_grace_ms}
# Hand a new connection to the shard with the fewest open connections (the kernel's SO_REUSEPORT
# spread is a hash, uneven for a few clients).
balance_connections = {balance_connections}
"#,
        addr = c.http_addr,
        data_dir = c.data_dir.display(),
        shards = c.shards,
        wal_mode = c.wal_mode,
        wal_interval_ms = c.wal_interval_ms,
        wal_segment_bytes = c.wal_segment_bytes,
        memtable_bytes = c.memtable_bytes_per_shard_max,
        memtable_wait = c.memtable_full_wait_ms,
        flush_bytes = c.memtable_flush_bytes_per_shard,
        flush_age = c.memtable_flush_age_ms,
        segment_cache = c.segment_cache_bytes_per_shard,
        compact_segments = c.compact_segments,
        compact_rows_max = c.compact_rows_max,
        query_timeout_ms = c.query_timeout_ms,
        auth = c.auth,
        io_memory = c.io_memory_bytes_per_shard,
        log = c.log,
        header_bytes_max = h.header_bytes_max,
        headers_count_max = h.headers_count_max,
        write_body_bytes_max = h.write_body_bytes_max,
        sql_body_bytes_max = h.sql_body_bytes_max,
        header_read_timeout_ms = h.header_read_timeout_ms,
        body_read_timeout_ms = h.body_read_timeout_ms,
        keepalive_idle_timeout_ms = h.keepalive_idle_timeout_ms,
        connections_per_shard_max = h.connections_per_shard_max,
        shutdown_grace_ms = h.shutdown_grace_ms,
        balance_connections = h.balance_connections,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_parses_to_the_defaults() {
        let parsed = Config::from_toml(&default_toml(), Path::new("default")).expect("parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn a_partial_file_keeps_other_defaults() {
        let text = "shards = 3\n[http]\nsql_body_bytes_max = 10\n";
        let c = Config::from_toml(text, Path::new("t")).expect("parses");
        assert_eq!(c.shards, 3);
        assert_eq!(c.http.sql_body_bytes_max, 10);
        assert_eq!(
            c.http.write_body_bytes_max,
            HttpConfig::default().write_body_bytes_max
        );
        assert_eq!(c.wal_mode, WalMode::Sync);
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_path() {
        let err = Config::from_toml("shard = 3\n", Path::new("/etc/x.toml")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/etc/x.toml"), "{text}");
        assert!(text.contains("shard"), "{text}");
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = Config::default();
        c.http.header_read_timeout_ms = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("header_read_timeout_ms"), "{err}");
    }

    #[test]
    fn wal_mode_round_trips() {
        for m in [WalMode::Sync, WalMode::Interval, WalMode::Off] {
            assert_eq!(m.to_string().parse::<WalMode>(), Ok(m));
        }
        assert!("fast".parse::<WalMode>().is_err());
    }
}
