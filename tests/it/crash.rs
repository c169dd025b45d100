//! Kill -9 under write load, restart, and check that every acknowledged row is there.
//!
//! Until SQL lands, "there" is read from `/metrics` (rows held per shard): every point written is
//! distinct, so the row count after restart must be at least the acknowledged count and at
//! most the sent count. The query issue switches this to exact checks through SQL.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{metric_sum, signal, Server, ROOT_AUTH};

const WRITERS: usize = 4;
const LINES_PER_BATCH: u64 = 50;

/// Writes distinct points on one keep-alive connection until told to stop or the server dies.
/// Returns (acknowledged rows, sent rows).
fn writer(
    server: std::net::SocketAddr,
    id: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
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
    }
    sent
}

fn one_cycle(mut server: Server, seed: u64) -> Server {
    let before = metric_sum(&server, "chronoshard_memtable_rows{");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..WRITERS)
        .map(|id| {
            let (stop, acked, addr) = (stop.clone(), acked.clone(), server.addr);
            std::thread::spawn(move || writer(addr, id + (seed as usize) * WRITERS, stop, acked))
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
    let after = metric_sum(&server, "chronoshard_memtable_rows{");
    assert!(
        after >= before + acked,
        "lost acknowledged rows: had {before}, acked {acked}, now {after}"
    );
    assert!(
        after <= before + sent,
        "more rows than sent: had {before}, sent {sent}, now {after}"
    );
    server
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
