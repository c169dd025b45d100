//! Kill -9 under write load, restart, and check that every acknowledged row is there.
//!
//! Every point written is distinct, so after the restart `SELECT count(*)` (through SQL, over every
//! shard) must be at least what was acknowledged and at most what was sent, and every writer's
//! acknowledged batches must all be there: for each writer, the batches present are exactly a
//! prefix 0..k with k at least its acknowledged count (a batch is acknowledged only after all
//! its rows are durable on every owner).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{metric_sum, request, signal, Server, ROOT_AUTH};

const WRITERS: usize = 4;
const LINES_PER_BATCH: u64 = 50;

/// Writes distinct points on one keep-alive connection until told to stop or the server dies.
/// Counts acknowledged rows in `acked` and this writer's acknowledged batches in
/// `acked_batches`; returns the rows sent.
fn writer(
    server: std::net::SocketAddr,
    id: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    acked_batches: Arc<AtomicU64>,
) -> u64 {
    let Ok(mut conn) = TcpStream::connect(server) else {
        return 0;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut sent = 0;
    let mut batch = 0u64;
    while !stop.load(Ordering::Relaxed) && batch < 100_000 {
        let body: String = (0..LINES_PER_BATCH)
            .map(|i| format!("crash,w=w{id},s=s{i} v={batch}i {}\n", batch * 1000 + i))
            .collect();
        let req = format!(
            "POST /api/v1/write HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        sent += LINES_PER_BATCH;
        if conn.write_all(req.as_bytes()).is_err() {
            break;
        }
        // Answers to writes are bodiless: the head alone tells the outcome.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return sent,
            }
        }
        if !head.starts_with(b"HTTP/1.1 200 ") {
            return sent;
        }
        acked.fetch_add(LINES_PER_BATCH, Ordering::SeqCst);
        batch += 1;
        acked_batches.store(batch, Ordering::SeqCst);
    }
    sent
}

/// Rows of table `crash` (0 before it exists).
fn rows_held(server: &Server) -> u64 {
    if metric_sum(server, "chronoshard_memtable_rows{")
        + metric_sum(server, "chronoshard_segment_rows{")
        == 0
    {
        return 0;
    }
    sql_count(server, "SELECT count(*) FROM crash")
}

fn one_cycle(mut server: Server, seed: u64) -> Server {
    let before = rows_held(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let per_writer: Vec<Arc<AtomicU64>> = (0..WRITERS).map(|_| Arc::default()).collect();
    let first_id = (seed as usize) * WRITERS;
    let threads: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (stop, acked, addr) = (stop.clone(), acked.clone(), server.addr);
            let mine = per_writer[i].clone();
            std::thread::spawn(move || writer(addr, first_id + i, stop, acked, mine))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200 + seed * 7919 % 800));
    signal(&server.child, libc::SIGKILL);
    let _ = server.child.wait();
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let acked = acked.load(Ordering::SeqCst);
    assert!(acked > 0, "some writes were acknowledged before the kill");
    let server = server.restart();
    let after = rows_held(&server);
    assert!(
        after >= before + acked,
        "lost acknowledged rows: had {before}, acked {acked}, now {after}"
    );
    assert!(
        after <= before + sent,
        "more rows than sent: had {before}, sent {sent}, now {after}"
    );
    for (i, acked_batches) in per_writer.iter().enumerate() {
        let acked_batches = acked_batches.load(Ordering::SeqCst);
        let w = first_id + i;
        let filter = format!("FROM crash WHERE w = 'w{w}'");
        let rows = sql_count(&server, &format!("SELECT count(*) {filter}"));
        let batches = sql_count(&server, &format!("SELECT count(DISTINCT v) {filter}"));
        let top = sql_count(
            &server,
            &format!("SELECT coalesce(max(v), -1) + 1 {filter}"),
        );
        assert!(
            batches >= acked_batches,
            "writer {w}: {acked_batches} batches acknowledged, {batches} present"
        );
        assert_eq!(
            batches, top,
            "writer {w}: the batches present are a prefix 0..{top}"
        );
        assert!(
            rows <= batches * LINES_PER_BATCH,
            "writer {w}: no row beyond its batches"
        );
        assert!(
            rows >= acked_batches * LINES_PER_BATCH,
            "writer {w}: every acknowledged batch is complete"
        );
    }
    server
}

/// The single number a one-cell SQL answer holds.
fn sql_count(server: &Server, query: &str) -> u64 {
    let raw = format!(
        "POST /api/v1/sql HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\nContent-Length: {}\r\n\r\n{query}",
        query.len()
    );
    let r = request(server, raw.as_bytes());
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    let text = r.text();
    let cell = text.lines().nth(1).unwrap_or_default();
    cell.parse()
        .unwrap_or_else(|_| panic!("{query}: not a number: {text:?}"))
}

/// The same with flushes and compactions running all the time (a 64 KiB memtable flush bound,
/// compaction from 3 segments), so kills land in the middle of them too.
#[test]
fn sigkill_during_flushes_and_compactions_loses_no_acknowledged_row() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let config = "memtable_flush_bytes_per_shard = 65536\ncompact_segments = 3\n";
    let mut server = Server::start(config, 2);
    for cycle in 0..4 {
        server = one_cycle(server, (seed + cycle) % 89);
    }
    assert!(
        metric_sum(&server, "chronoshard_segment_rows{") > 0,
        "rows were flushed to segments"
    );
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_row() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let mut server = Server::start("", 2);
    for cycle in 0..3 {
        server = one_cycle(server, (seed + cycle) % 97);
    }
}
