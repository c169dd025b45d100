//! Engine tests over the simulated disk: flushes and reads across layers agree with one
//! memtable that saw the same writes, segments are plain Parquet, and a crash at any point of a
//! flush loses nothing and duplicates nothing.

use std::rc::Rc;

use arrow::array::RecordBatch;
use futures_lite::future::poll_fn;

use super::*;
use crate::batch::{TableBatch, WriteBatch};
use crate::io::{test_executor, SimStorage};
use crate::memtable::Value;
use crate::scan::tests::{batch, cpu_schema, pretty, Row};
use crate::scan::{ScanCursor, ScanRequest};

const ONE_PARTITION: &dyn Fn(&str, &str) -> i64 = &|_, _| i64::MAX;

fn options() -> EngineOptions {
    EngineOptions::new("sim")
}

/// An engine on a fresh simulated disk.
async fn open_sim() -> (SimStorage, Rc<Engine<SimStorage>>) {
    let storage = SimStorage::new();
    let (engine, _) = Engine::open_on(storage.clone(), options())
        .await
        .expect("open");
    (storage, Rc::new(engine))
}

/// Random rows over 6 series with every field type, duplicate and out-of-order times.
fn random_batch(seed: &mut u64, rows: usize) -> TableBatch {
    const HOSTS: [&[(&str, &str)]; 6] = [
        &[("host", "a"), ("region", "eu")],
        &[("host", "b")],
        &[("host", "c"), ("region", "us")],
        &[("host", "d"), ("region", "eu"), ("zone", "z1")],
        &[("region", "ap")],
        &[("host", "f"), ("zone", "z2")],
    ];
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let notes = ["x", "y", "hello, world"];
    // (series, time, fields) of each row.
    type Owned<'a> = (usize, i64, Vec<(&'a str, Value<'a>)>);
    let mut owned: Vec<Owned<'_>> = Vec::new();
    for _ in 0..rows {
        let host = (next() % 6) as usize;
        let time = (next() % 40) as i64 - 5;
        let mut fields = Vec::new();
        if next() % 2 == 0 {
            fields.push(("usage", Value::Float((next() % 1000) as f64 / 8.0)));
        }
        if next() % 2 == 0 {
            fields.push(("count", Value::Integer((next() % 100) as i64 - 50)));
        }
        if next() % 3 == 0 {
            fields.push(("big", Value::Unsigned(next() % 7)));
        }
        if next() % 3 == 0 {
            fields.push(("up", Value::Boolean(next() % 2 == 0)));
        }
        if next() % 4 == 0 {
            fields.push(("note", Value::String(notes[(next() % 3) as usize])));
        }
        if fields.is_empty() {
            fields.push(("count", Value::Integer(0)));
        }
        owned.push((host, time, fields));
    }
    let rows: Vec<Row<'_>> = owned
        .iter()
        .map(|(h, t, f)| (HOSTS[*h], *t, f.as_slice()))
        .collect();
    batch("cpu", &rows)
}

/// Every row of table `cpu` through a read of `engine`, as a printed table.
async fn read_all(engine: &Rc<Engine<SimStorage>>) -> String {
    let request = ScanRequest::new("cnosdb", "public", "cpu");
    read_with(engine, &request).await
}

async fn read_with(engine: &Rc<Engine<SimStorage>>, request: &ScanRequest) -> String {
    let mut cursor = ScanCursor::new(&cpu_schema(), request).expect("cursor");
    let id = engine.open_read(
        ("cnosdb", "public", "cpu"),
        request.time_range,
        None,
        &request.tag_filters,
    );
    let mut out: Vec<RecordBatch> = Vec::new();
    loop {
        let step = poll_fn(|cx| engine.with_read(id, cx.waker(), |s| cursor.next_batch_on(s)));
        match step.await.expect("read step").expect("scan") {
            Some(b) => out.push(b),
            None => break,
        }
    }
    engine.close_read(id);
    sorted(&out)
}

/// The same rows from one plain memtable.
fn expected(m: &Memtable) -> String {
    expected_with(m, &ScanRequest::new("cnosdb", "public", "cpu"))
}

fn expected_with(m: &Memtable, request: &ScanRequest) -> String {
    let batches = crate::scan::scan_memtable(m, &cpu_schema(), request).expect("scan");
    sorted(&batches)
}

/// A printed table's rows, sorted (layers may list series in another order).
fn sorted(batches: &[RecordBatch]) -> String {
    if batches.is_empty() {
        return String::new();
    }
    let text = pretty(batches);
    let mut lines: Vec<&str> = text.lines().collect();
    let body = lines.split_off(3.min(lines.len()));
    let mut body: Vec<&str> = body.into_iter().filter(|l| !l.starts_with('+')).collect();
    body.sort_unstable();
    lines.extend(body);
    lines.join("\n")
}

fn write_of(t: &TableBatch) -> WriteBatch {
    WriteBatch {
        tables: vec![t.clone()],
    }
}

/// Writes, flushes, more writes, a delete, another flush and more writes: reads through the
/// layers always equal one memtable that saw everything, before and after a restart.
#[test]
fn reads_across_flushes_equal_one_memtable() {
    test_executor().run(async {
        let (storage, engine) = open_sim().await;
        let mut model = Memtable::new(usize::MAX);
        let mut seed = 0x5eed_u64;
        for round in 0..4 {
            for _ in 0..3 {
                let b = random_batch(&mut seed, 40);
                engine.write(&write_of(&b)).await.expect("write");
                model.insert(&b).expect("model insert");
            }
            if round == 2 {
                let d = Delete {
                    tenant: "cnosdb".into(),
                    database: "public".into(),
                    table: Some("cpu".into()),
                    tag_filters: vec![("region".into(), vec!["eu".into()])],
                    time: (0, 20),
                };
                engine.delete(&d).await.expect("delete");
                model.delete(&d);
            }
            assert_eq!(read_all(&engine).await, expected(&model), "round {round}");
            let mut last = ScanRequest::new("cnosdb", "public", "cpu");
            last.last_per_series = true;
            last.time_range = (0, 30);
            assert_eq!(
                read_with(&engine, &last).await,
                expected_with(&model, &last),
                "last points, round {round}"
            );
            if round < 3 {
                let s = engine.flush(ONE_PARTITION).await.expect("flush");
                assert_eq!(s.segments, 1, "round {round}: one table, one partition");
                assert_eq!(
                    read_all(&engine).await,
                    expected(&model),
                    "after flush {round}"
                );
            }
        }
        assert_eq!(engine.segments().len(), 3);
        drop(engine);
        let (reopened, summary) = Engine::open_on(storage.crash(), options())
            .await
            .expect("reopen");
        assert_eq!(summary.segments, 3);
        let reopened = Rc::new(reopened);
        assert_eq!(read_all(&reopened).await, expected(&model), "after restart");
    });
}

/// Time partitions: one segment per partition a table's points fall in.
#[test]
fn a_flush_writes_one_segment_per_time_partition() {
    test_executor().run(async {
        let (_, engine) = open_sim().await;
        let mut model = Memtable::new(usize::MAX);
        let mut seed = 99_u64;
        let b = random_batch(&mut seed, 300);
        engine.write(&write_of(&b)).await.expect("write");
        model.insert(&b).expect("model");
        // Times are -5..35: partitions of 10 are [-10,0), [0,10), [10,20), [20,30), [30,40).
        let s = engine.flush(&|_, _| 10).await.expect("flush");
        assert_eq!(s.segments, 5);
        for seg in engine.segments() {
            assert_eq!(
                seg.min_time.div_euclid(10),
                seg.max_time.div_euclid(10),
                "{seg:?}"
            );
        }
        assert_eq!(read_all(&engine).await, expected(&model));
    });
}

/// A crash at every point of a flush leaves exactly the data written before it: reopened, the
/// shard reads the same rows, once each.
#[test]
fn a_crash_anywhere_in_a_flush_loses_and_duplicates_nothing() {
    test_executor().run(async {
        let (storage, engine) = open_sim().await;
        let mut model = Memtable::new(usize::MAX);
        let mut seed = 42_u64;
        for _ in 0..3 {
            let b = random_batch(&mut seed, 50);
            engine.write(&write_of(&b)).await.expect("write");
            model.insert(&b).expect("model");
        }
        engine.flush(ONE_PARTITION).await.expect("first flush");
        for _ in 0..3 {
            let b = random_batch(&mut seed, 50);
            engine.write(&write_of(&b)).await.expect("write");
            model.insert(&b).expect("model");
        }
        let want = expected(&model);
        storage.record_images(true);
        engine.flush(ONE_PARTITION).await.expect("second flush");
        let images = storage.take_images();
        assert!(images.len() > 5, "a flush has several mutating steps");
        for (i, image) in images.iter().enumerate() {
            let crashed = image.storage.crash();
            let (reopened, _) = Engine::open_on(crashed, options()).await.expect("reopen");
            let reopened = Rc::new(reopened);
            assert_eq!(read_all(&reopened).await, want, "crash image {i}");
        }
    });
}

/// Segment files are plain Parquet: the parquet crate alone reads the rows back.
#[test]
fn a_segment_is_plain_parquet() {
    let mut m = Memtable::new(usize::MAX);
    let mut seed = 7_u64;
    let b = random_batch(&mut seed, 200);
    m.insert(&b).expect("insert");
    let scan = m.scan("cnosdb", "public", "cpu").expect("table");
    let series = crate::segment::sorted_series(&scan);
    let encoded = crate::segment::encode(&scan, &series, (i64::MIN, i64::MAX), "test")
        .expect("encode")
        .expect("rows");
    let distinct: usize = series.iter().map(|s| s.scan().len()).sum();
    assert_eq!(encoded.rows as usize, distinct);
    let batches = crate::segment::read_plain(encoded.bytes).expect("plain parquet read");
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, distinct);
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(&names[..3], ["time", "_series_id", "_series_hash"]);
    for column in [
        "host", "region", "zone", "usage", "count", "big", "up", "note",
    ] {
        assert!(names.contains(&column), "{column} in {names:?}");
    }
}

/// A delete logged while a flush writes its segments still removes their points: the flushed
/// segments are older than the delete, and its tombstone survives into the manifest.
#[test]
fn a_delete_during_a_flush_removes_the_flushed_points() {
    test_executor().run(async {
        let (storage, engine) = open_sim().await;
        let mut model = Memtable::new(usize::MAX);
        let mut seed = 1234_u64;
        for _ in 0..4 {
            let b = random_batch(&mut seed, 60);
            engine.write(&write_of(&b)).await.expect("write");
            model.insert(&b).expect("model");
        }
        storage.set_write_delay_ms(20);
        let flushing = Rc::clone(&engine);
        let flush = glommio::spawn_local(async move { flushing.flush(ONE_PARTITION).await });
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        let d = Delete {
            tenant: "cnosdb".into(),
            database: "public".into(),
            table: None,
            tag_filters: vec![("host".into(), vec!["a".into(), "c".into()])],
            time: (i64::MIN, i64::MAX),
        };
        engine.delete(&d).await.expect("delete");
        model.delete(&d);
        let summary = flush.await.expect("flush");
        assert_eq!(summary.segments, 1);
        storage.set_write_delay_ms(0);
        let want = expected(&model);
        assert_eq!(read_all(&engine).await, want, "after the flush");
        drop(engine);
        let (reopened, _) = Engine::open_on(storage.crash(), options())
            .await
            .expect("reopen");
        assert_eq!(read_all(&Rc::new(reopened)).await, want, "after a restart");
    });
}

/// Compaction merges a partition's segments into one with the same answers, and a crash at any
/// point of it leaves the same answers too; expiry drops whole old segments.
#[test]
fn compaction_keeps_every_answer_and_survives_a_crash_anywhere() {
    test_executor().run(async {
        let (storage, engine) = open_sim().await;
        let mut model = Memtable::new(usize::MAX);
        let mut seed = 777_u64;
        for round in 0..5 {
            let b = random_batch(&mut seed, 80);
            engine.write(&write_of(&b)).await.expect("write");
            model.insert(&b).expect("model");
            if round == 2 {
                let d = Delete {
                    tenant: "cnosdb".into(),
                    database: "public".into(),
                    table: Some("cpu".into()),
                    tag_filters: vec![("host".into(), vec!["b".into()])],
                    time: (10, 30),
                };
                engine.delete(&d).await.expect("delete");
                model.delete(&d);
            }
            engine.flush(ONE_PARTITION).await.expect("flush");
        }
        assert_eq!(engine.segments().len(), 5);
        let want = expected(&model);
        storage.record_images(true);
        let summary = engine
            .compact(ONE_PARTITION)
            .await
            .expect("compact")
            .expect("a partition with 5 segments is due");
        assert_eq!((summary.removed, summary.written), (5, 1));
        assert_eq!(engine.segments().len(), 1);
        assert_eq!(read_all(&engine).await, want, "after compaction");
        assert!(engine
            .compact(ONE_PARTITION)
            .await
            .expect("compact")
            .is_none());
        for (i, image) in storage.take_images().iter().enumerate() {
            let (reopened, _) = Engine::open_on(image.storage.crash(), options())
                .await
                .expect("reopen");
            assert_eq!(read_all(&Rc::new(reopened)).await, want, "crash image {i}");
        }
        // Expiry: nothing is older than -100; everything is older than 1000.
        let kept = engine.expire(&|_, _| Some(-100)).await.expect("expire");
        assert_eq!(kept.removed, 0);
        let gone = engine.expire(&|_, _| Some(1000)).await.expect("expire");
        assert_eq!(gone.removed, 1);
        assert!(engine.segments().is_empty());
        assert_eq!(read_all(&engine).await, "", "everything expired");
    });
}

/// Tag filters read only row groups whose statistics may match, and reads with them answer as
/// the memtable does.
#[test]
fn tag_filters_prune_row_groups_and_answer_exactly() {
    test_executor().run(async {
        let (storage, engine) = open_sim().await;
        let mut model = Memtable::new(usize::MAX);
        let mut seed = 31_u64;
        let b = random_batch(&mut seed, 120);
        engine.write(&write_of(&b)).await.expect("write");
        model.insert(&b).expect("model");
        engine.flush(ONE_PARTITION).await.expect("flush");
        let seg = engine.segments().remove(0);
        let filter = |tag: &str, v: &str| vec![(tag.to_string(), vec![v.to_string()])];
        let none = crate::segment::read(
            &storage,
            &seg.path(),
            (seg.bytes, seg.footer_crc32c),
            None,
            &filter("host", "zzz"),
        )
        .await
        .expect("read");
        assert!(!none.is_whole(), "host = 'zzz' is past every host");
        let no_tag = crate::segment::read(
            &storage,
            &seg.path(),
            (seg.bytes, seg.footer_crc32c),
            None,
            &filter("dc", "x"),
        )
        .await
        .expect("read");
        assert!(!no_tag.is_whole(), "no series has tag dc");
        let some = crate::segment::read(
            &storage,
            &seg.path(),
            (seg.bytes, seg.footer_crc32c),
            None,
            &filter("host", "c"),
        )
        .await
        .expect("read");
        assert!(some.is_whole());
        for (tag, value) in [("host", "c"), ("region", "eu"), ("zone", "nope")] {
            let mut request = ScanRequest::new("cnosdb", "public", "cpu");
            request.tag_filters = filter(tag, value);
            assert_eq!(
                read_with(&engine, &request).await,
                expected_with(&model, &request),
                "{tag} = {value}"
            );
        }
    });
}

/// A flipped byte anywhere a read uses (a column chunk, the footer) is caught by a checksum and
/// fails the read with the file and the place; nothing wrong is returned.
#[test]
fn a_flipped_byte_in_a_segment_fails_the_read_never_the_answer() {
    test_executor().run(async {
        let (storage, engine) = open_sim().await;
        let mut seed = 5_u64;
        let b = random_batch(&mut seed, 100);
        engine.write(&write_of(&b)).await.expect("write");
        engine.flush(ONE_PARTITION).await.expect("flush");
        let seg = engine.segments().remove(0);
        let meta = (seg.bytes, seg.footer_crc32c);
        let clean = crate::segment::read(&storage, &seg.path(), meta, None, &[]).await;
        let len = seg.bytes as usize;
        // The bytes a read uses: every column chunk and the footer (the page index between
        // them is written by the Parquet writer and never read by us).
        let file = crate::io::Storage::open(&storage, &seg.path(), false)
            .await
            .expect("open");
        let bytes = crate::io::StorageFile::read_at(&file, 0, len)
            .await
            .expect("read");
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(bytes.clone()))
            .expect("metadata");
        let meta_len = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().expect("4")) as usize;
        let mut used: Vec<(usize, usize)> = vec![(len - meta_len - 8, len - 4)];
        for rg in metadata.row_groups() {
            for c in rg.columns() {
                let (start, n) = c.byte_range();
                used.push((start as usize, (start + n) as usize));
            }
        }
        let decoded = |r: crate::segment::ReadSegment| -> Vec<TableBatch> {
            r.batches()
                .expect("batches")
                .map(|b| b.expect("batch"))
                .collect()
        };
        let want = decoded(clean.expect("clean read"));
        let mut checked = 0;
        for at in (4..len - 4).step_by(5) {
            let copy = storage.snapshot();
            copy.corrupt(&seg.path(), |bytes| bytes[at] ^= 0x10);
            let read = crate::segment::read(&copy, &seg.path(), meta, None, &[]).await;
            if !used.iter().any(|&(a, b)| a <= at && at < b) {
                // Unused by reads: the answer is the clean one.
                assert_eq!(decoded(read.expect("read")), want, "byte {at}");
                continue;
            }
            checked += 1;
            let Err(e) = read else {
                panic!("byte {at} of {len} flipped and the read passed");
            };
            let text = e.to_string();
            assert!(text.contains(&seg.path()), "{text}");
            assert!(text.contains("checksum"), "{text}");
        }
        assert!(checked * 2 > len / 5, "most bytes are read and checked");
    });
}

/// DROP TABLE's delete removes the table's segments from disk at the next expiry pass.
#[test]
fn a_dropped_table_gives_its_segments_back() {
    test_executor().run(async {
        let (storage, engine) = open_sim().await;
        let mut seed = 9_u64;
        let b = random_batch(&mut seed, 50);
        engine.write(&write_of(&b)).await.expect("write");
        engine.flush(ONE_PARTITION).await.expect("flush");
        assert_eq!(engine.segments().len(), 1);
        let drop_table = Delete {
            tenant: "cnosdb".into(),
            database: "public".into(),
            table: Some("cpu".into()),
            tag_filters: Vec::new(),
            time: (i64::MIN, i64::MAX),
        };
        engine.delete(&drop_table).await.expect("drop");
        assert_eq!(read_all(&engine).await, "", "dropped");
        let s = engine.expire(&|_, _| None).await.expect("expire");
        assert_eq!(s.removed, 1);
        assert!(engine.segments().is_empty());
        let files = crate::io::Storage::list(&storage, crate::manifest::SEGMENTS_DIR)
            .await
            .expect("list");
        assert!(files.is_empty(), "{files:?}");
    });
}

#[test]
#[ignore = "benchmark: cargo test -p chronoshard-shard --release segment_encode -- --ignored --nocapture"]
fn bench_segment_encode_rate() {
    let (m, _) = crate::scan::tests::tsbs_memtable(1000, 1000);
    let scan = m.scan("cnosdb", "public", "cpu").expect("table");
    let series = crate::segment::sorted_series(&scan);
    let mut best = f64::MAX;
    let mut bytes = 0;
    for _ in 0..3 {
        let start = std::time::Instant::now();
        let e = crate::segment::encode(&scan, &series, (i64::MIN, i64::MAX), "bench")
            .expect("encode")
            .expect("rows");
        best = best.min(start.elapsed().as_secs_f64());
        bytes = e.bytes.len();
    }
    println!(
        "segment encode, TSBS cpu-only (1000 series x 1000 points, 10 tags, 10 i64 fields): \
         best of 3 {:.0} ms = {:.2} M rows/s ({:.0} ns/row), {bytes} bytes = {:.3} bytes/point",
        best * 1e3,
        1e6 / best / 1e6,
        best * 1e9 / 1e6,
        bytes as f64 / 1e7
    );
}
