//! Segments: a server that flushes after every write answers every query exactly as one that
//! never flushes, deletes included, before and after a restart; its segment files are plain
//! Parquet that the parquet crate alone reads back.

use std::time::{Duration, Instant};

use crate::common::{metric_sum, write, Server};
use crate::sql::sql;

const HOSTS: i64 = 16;

/// Eight writes: in order, then out of order and overwriting, some fields absent.
fn bodies() -> Vec<String> {
    let mut out = Vec::new();
    for round in 0..8i64 {
        let mut body = String::new();
        for host in 0..HOSTS {
            let region = if host % 4 == 3 {
                String::new()
            } else {
                format!(",region=r{}", host % 4)
            };
            for k in 0..10i64 {
                // Rounds 0-3 go forward; 4-7 rewrite earlier times with new values.
                let t = if round < 4 {
                    round * 10 + k
                } else {
                    (round - 4) * 10 + k * 3 % 10
                };
                let mut fields = vec![format!("i={}i", (host * 31 + t * 7 + round) % 101 - 50)];
                if (host + t + round) % 3 != 0 {
                    fields.push(format!("f={}", ((host * 13 + t * round) % 89) as f64 / 4.0));
                }
                if round % 2 == 1 {
                    fields.push(format!("s=\"r{round}\""));
                }
                body.push_str(&format!(
                    "seg,host=h{host:02}{region} {} {}\n",
                    fields.join(","),
                    t * 1_000_000_000
                ));
            }
        }
        out.push(body);
    }
    out
}

fn load(s: &Server, wait_flush: bool) {
    for body in bodies() {
        let r = write(s, "", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        if wait_flush {
            wait_flushed(s);
        }
    }
}

/// Waits until both shards' memtables are empty (flushed).
fn wait_flushed(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_sum(s, "chronoshard_memtable_rows") != 0 {
        assert!(Instant::now() < deadline, "the memtables were not flushed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const QUERIES: &[&str] = &[
    "SELECT * FROM seg ORDER BY host, time",
    "SELECT host, count(*), count(f), sum(i), min(f), max(i), avg(f) FROM seg GROUP BY host ORDER BY host",
    "SELECT date_bin(INTERVAL '10 seconds', time) AS b, region, count(s), max(f) FROM seg \
     WHERE time >= '1970-01-01T00:00:05Z' GROUP BY b, region ORDER BY b, region",
    "SELECT host, time, i FROM seg WHERE host IN ('h01', 'h07') AND time < '1970-01-01T00:00:25Z' ORDER BY host, time",
    "SELECT DISTINCT ON (host) host, time, i, f FROM seg ORDER BY host, time DESC",
    "SELECT count(*) FROM seg WHERE i % 2 = 0",
];

fn answers(s: &Server) -> Vec<String> {
    QUERIES
        .iter()
        .map(|q| {
            let r = sql(s, "", None, q);
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            r.text()
        })
        .collect()
}

/// Fails naming the query and its first differing line.
fn assert_same(got: &[String], want: &[String], what: &str) {
    for ((q, g), w) in QUERIES.iter().zip(got).zip(want) {
        if g != w {
            let line = g
                .lines()
                .zip(w.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(g.lines().count().min(w.lines().count()));
            panic!(
                "{what}: {q}\nfirst difference at line {line}: got {:?}, want {:?} ({} vs {} lines)",
                g.lines().nth(line),
                w.lines().nth(line),
                g.lines().count(),
                w.lines().count()
            );
        }
    }
}

fn delete(s: &Server) {
    for q in [
        "DELETE FROM seg WHERE host = 'h03' AND time >= '1970-01-01T00:00:10Z' AND time < '1970-01-01T00:00:30Z'",
        "DELETE FROM seg WHERE region = 'r2'",
    ] {
        let r = sql(s, "", None, q);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
    }
}

#[test]
fn flushed_data_answers_as_unflushed_data_and_survives_a_restart() {
    let flushing = Server::start(
        "memtable_flush_bytes_per_shard = 1\ncompact_segments = 0\n",
        2,
    );
    let plain = Server::start("", 2);
    load(&flushing, true);
    load(&plain, false);
    assert!(
        metric_sum(&flushing, "chronoshard_segments") >= 8,
        "segments were written"
    );
    assert_eq!(metric_sum(&plain, "chronoshard_segments"), 0);
    let want = answers(&plain);
    assert!(want[0].lines().count() > 600, "{}", want[0]);
    assert_same(&answers(&flushing), &want, "flushed vs memtable");

    delete(&flushing);
    delete(&plain);
    let want = answers(&plain);
    assert_same(&answers(&flushing), &want, "after deletes");

    // A write after the deletes lands in the memtable above the segments.
    let late = "seg,host=h03,region=r3 i=777i 15000000000\n";
    for s in [&flushing, &plain] {
        let r = write(s, "", late);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let want = answers(&plain);
    assert_same(&answers(&flushing), &want, "a write over flushed data");

    let mut flushing = flushing.restart();
    assert_same(&answers(&flushing), &want, "after a restart");
    wait_flushed(&flushing);
    let status = flushing.terminate();
    assert!(status.success(), "{status:?}");
    let flushing = flushing.restart();
    assert_same(
        &answers(&flushing),
        &want,
        "after a flush and a second restart",
    );
}

/// Every segment file opens with the parquet crate alone; together they hold the flushed rows.
#[test]
fn segment_files_are_plain_parquet() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let s = Server::start(
        "memtable_flush_bytes_per_shard = 1\ncompact_segments = 0\n",
        2,
    );
    load(&s, true);
    let mut rows = 0;
    let mut files = 0;
    for shard in 0..2 {
        let dir = s.dir.path().join(format!("data/shard-{shard}/segments"));
        for entry in std::fs::read_dir(&dir).expect("segments dir") {
            let path = entry.expect("entry").path();
            let file = std::fs::File::open(&path).expect("open segment");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("a Parquet file")
                .build()
                .expect("reader");
            for batch in reader {
                let batch = batch.expect("batch");
                let schema = batch.schema();
                assert_eq!(schema.field(0).name(), "time");
                assert!(schema.column_with_name("host").is_some());
                assert!(schema.column_with_name("i").is_some());
                rows += batch.num_rows() as u64;
            }
            files += 1;
        }
    }
    assert!(files >= 8, "{files} files");
    assert_eq!(rows, metric_sum(&s, "chronoshard_segment_rows"));
}

/// With compaction on, the many small segments of one partition become few, and every answer
/// stays the same.
#[test]
fn compacted_segments_answer_as_the_memtable_does() {
    let compacting = Server::start(
        "memtable_flush_bytes_per_shard = 1\ncompact_segments = 3\n",
        2,
    );
    let plain = Server::start("", 2);
    load(&compacting, true);
    load(&plain, false);
    delete(&compacting);
    delete(&plain);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_sum(&compacting, "chronoshard_segments") > 4 {
        assert!(Instant::now() < deadline, "segments were not compacted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let want = answers(&plain);
    assert_same(&answers(&compacting), &want, "compacted vs memtable");
    let compacting = compacting.restart();
    assert_same(&answers(&compacting), &want, "compacted, after a restart");
}

/// Rows older than the database's TTL are never returned, wherever they are held.
#[test]
fn rows_past_the_ttl_are_not_returned() {
    let s = Server::start("memtable_flush_bytes_per_shard = 1\n", 2);
    let r = sql(&s, "", None, "CREATE DATABASE short WITH TTL '1d'");
    assert_eq!(r.status, 200, "{}", r.text());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let day = 86_400_000_000_000i64;
    let body = format!(
        "t,host=a v=1i {}\nt,host=b v=2i {}\nt,host=a v=3i {}\n",
        now - 3 * day,
        now - day / 2,
        now - 60_000_000_000
    );
    let r = write(&s, "db=short", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let count = |s: &Server| {
        let r = sql(s, "db=short", None, "SELECT count(*), sum(v) FROM t");
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    };
    assert_eq!(count(&s), "count(*),sum(t.v)\n2,5\n");
    wait_flushed(&s);
    assert_eq!(count(&s), "count(*),sum(t.v)\n2,5\n", "after a flush");
    let r = sql(&s, "db=short", None, "SELECT host, v FROM t ORDER BY v");
    assert_eq!(r.text(), "host,v\nb,2\na,3\n");
}

/// A flipped byte in a segment on disk fails the queries that read it, with the file and the
/// place named, and never changes an answer; the server starts and serves the rest.
#[test]
fn a_damaged_segment_fails_its_queries_loudly() {
    let mut s = Server::start(
        "memtable_flush_bytes_per_shard = 1\ncompact_segments = 0\n",
        2,
    );
    load(&s, true);
    let r = write(&s, "", "other,host=a v=1i 1\n");
    assert_eq!(r.status, 200, "{}", r.text());
    wait_flushed(&s);
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    let dir = s.dir.path().join("data/shard-0/segments");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("segments")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let victim = &files[0];
    let mut bytes = std::fs::read(victim).expect("read segment");
    // Byte 100 lies in the first column chunk (`time`), which every scan reads.
    bytes[100] ^= 0x55;
    std::fs::write(victim, &bytes).expect("write segment");
    let s = s.restart();
    let r = sql(&s, "", None, "SELECT count(*) FROM seg");
    assert_eq!(r.status, 500, "a damaged segment: {}", r.text());
    assert!(r.text().contains("\"020001\""), "{}", r.text());
    let text = r.text();
    assert!(text.contains("checksum mismatch"), "{text}");
    let name = victim.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(text.contains(name), "{text}");
    let r = sql(&s, "", None, "SELECT count(*) FROM other");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "count(*)\n1\n");
}
