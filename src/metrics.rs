//! Per-shard counters, summed when `/metrics` is scraped.
//!
//! Each shard writes only its own `ShardMetrics` (relaxed atomics on a cache line of their own,
//! so there is no sharing on the hot path); a scrape on any shard reads all of them. This keeps
//! the thread-per-core rule (no shard waits on another) while letting any shard answer a scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use chronoshard_shard::engine::EngineStats;

use crate::http::route::{Route, ALL};

/// Status codes counted one by one; anything else is counted as "other".
pub const STATUSES: [u16; 12] = [200, 204, 400, 401, 404, 405, 413, 422, 429, 431, 500, 503];
const STATUS_SLOTS: usize = STATUSES.len() + 1;
/// Route slots: every route, plus one for requests that never reached a route.
const ROUTE_SLOTS: usize = ALL.len() + 1;

#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardMetrics {
    pub connections_accepted: AtomicU64,
    pub connections_rejected: AtomicU64,
    /// Gauge: incremented on accept, decremented on close, by the owning shard only.
    pub connections_open: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Engine gauges, set by the owning shard after each write.
    pub memtable_rows: AtomicU64,
    pub memtable_series: AtomicU64,
    pub memtable_bytes: AtomicU64,
    pub wal_appends: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub segments: AtomicU64,
    pub segment_bytes: AtomicU64,
    pub segment_rows: AtomicU64,
    pub flushes: AtomicU64,
    requests: [[AtomicU64; STATUS_SLOTS]; ROUTE_SLOTS],
}

impl ShardMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Publishes the engine's current figures.
    pub fn record_engine(&self, stats: &EngineStats) {
        self.memtable_rows.store(stats.rows, Relaxed);
        self.memtable_series.store(stats.series, Relaxed);
        self.memtable_bytes.store(stats.memtable_bytes, Relaxed);
        self.wal_appends.store(stats.wal_appends, Relaxed);
        self.wal_syncs.store(stats.wal_syncs, Relaxed);
        self.segments.store(stats.segments, Relaxed);
        self.segment_bytes.store(stats.segment_bytes, Relaxed);
        self.segment_rows.store(stats.segment_rows, Relaxed);
        self.flushes.store(stats.flushes, Relaxed);
    }

    /// Counts one answered request. `route` is `None` for requests refused before routing.
    pub fn record_request(&self, route: Option<Route>, status: u16) {
        let r = route.map_or(ALL.len(), Route::index);
        let s = STATUSES
            .iter()
            .position(|&x| x == status)
            .unwrap_or(STATUSES.len());
        self.requests[r][s].fetch_add(1, Relaxed);
    }
}

/// A scalar series: name, Prometheus type, help text, and where each shard keeps it.
type Scalar = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardMetrics) -> &AtomicU64,
);

fn sum(shards: &[&ShardMetrics], f: impl Fn(&ShardMetrics) -> &AtomicU64) -> u64 {
    shards.iter().map(|m| f(m).load(Relaxed)).sum()
}

/// Renders the Prometheus text exposition (format 0.0.4) of all shards together.
pub fn render(shards: &[&ShardMetrics]) -> String {
    let mut out = String::with_capacity(2048);
    let engine: [Scalar; 10] = [
        ("chronoshard_http_connections_open", "gauge", "Connections open now on the shard.", |m| &m.connections_open),
        ("chronoshard_memtable_rows", "gauge", "Rows written into the shard's memtable; rewrites of a held (series, time) count again until merged.", |m| &m.memtable_rows),
        ("chronoshard_memtable_series", "gauge", "Series held in the shard's memtable.", |m| &m.memtable_series),
        ("chronoshard_memtable_bytes", "gauge", "Estimated bytes held in the shard's memtable.", |m| &m.memtable_bytes),
        ("chronoshard_wal_appends_total", "counter", "WAL records appended by the shard.", |m| &m.wal_appends),
        ("chronoshard_wal_syncs_total", "counter", "WAL fdatasyncs of the shard (group commits, interval syncs and the one at open).", |m| &m.wal_syncs),
        ("chronoshard_segments", "gauge", "Live segments (Parquet files) of the shard.", |m| &m.segments),
        ("chronoshard_segment_bytes", "gauge", "Bytes of the shard's live segments.", |m| &m.segment_bytes),
        ("chronoshard_segment_rows", "gauge", "Points held in the shard's live segments (before tombstones).", |m| &m.segment_rows),
        ("chronoshard_flushes_total", "counter", "Memtable flushes the shard completed since start.", |m| &m.flushes),
    ];
    for (name, kind, help, f) in engine {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, m) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", f(m).load(Relaxed));
        }
    }
    let http: [Scalar; 4] = [
        (
            "chronoshard_http_connections_accepted_total",
            "counter",
            "TCP connections accepted.",
            |m| &m.connections_accepted,
        ),
        (
            "chronoshard_http_connections_rejected_total",
            "counter",
            "Connections refused with 503 over the per-shard limit.",
            |m| &m.connections_rejected,
        ),
        (
            "chronoshard_http_received_bytes_total",
            "counter",
            "Bytes read from clients.",
            |m| &m.bytes_in,
        ),
        (
            "chronoshard_http_sent_bytes_total",
            "counter",
            "Bytes written to clients.",
            |m| &m.bytes_out,
        ),
    ];
    for (name, kind, help, f) in http {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {}", sum(shards, f));
    }
    let name = "chronoshard_http_requests_total";
    let _ = writeln!(out, "# HELP {name} Requests answered, by route and status.");
    let _ = writeln!(out, "# TYPE {name} counter");
    for r in 0..ROUTE_SLOTS {
        let route = ALL.get(r).map_or("other", |x| x.label());
        for s in 0..STATUS_SLOTS {
            let n: u64 = shards.iter().map(|m| m.requests[r][s].load(Relaxed)).sum();
            if n == 0 {
                continue;
            }
            let status = STATUSES.get(s).map_or("other".to_string(), u16::to_string);
            let _ = writeln!(out, "{name}{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
    }
    let _ = writeln!(out, "# HELP chronoshard_shards Shards (cores) serving.\n# TYPE chronoshard_shards gauge\nchronoshard_shards {}", shards.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_shards() {
        let a = ShardMetrics::default();
        let b = ShardMetrics::default();
        a.record_request(Some(Route::Ping), 200);
        b.record_request(Some(Route::Ping), 200);
        b.record_request(None, 404);
        b.record_request(Some(Route::Sql), 418);
        ShardMetrics::add(&a.bytes_in, 10);
        ShardMetrics::add(&b.bytes_in, 5);
        let text = render(&[&a, &b]);
        assert!(
            text.contains("chronoshard_http_requests_total{route=\"ping\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("chronoshard_http_requests_total{route=\"other\",status=\"404\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("chronoshard_http_requests_total{route=\"sql\",status=\"other\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("chronoshard_http_received_bytes_total 15\n"),
            "{text}"
        );
        assert!(text.contains("chronoshard_shards 2\n"), "{text}");
    }
}
