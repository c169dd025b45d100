//! WAL tests: round trips on the real `O_DIRECT` backend, group commit, and crash safety through
//! `SimStorage` (a crash image before every write and sync, with and without torn writes, and
//! with injected write and sync failures), corruption, modes, bounds.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Write;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use super::record::{self, BLOCK_BYTES, HEADER_BYTES};
use super::*;
use crate::io::{join, test_executor, DmaStorage, SimStorage, StorageFile};

const DIR: &str = "wal";

fn opts(mode: WalMode, segment_bytes: u64) -> WalOptions {
    WalOptions {
        mode,
        segment_bytes,
        ..WalOptions::default()
    }
}

/// A payload that names itself: `[id u32][len u32]` repeated up to `len` bytes, so any
/// replayed payload can be checked for garbage (and the check is a memcmp, fast in debug
/// builds).
fn payload(id: u32, len: usize) -> Vec<u8> {
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&id.to_le_bytes());
    head[4..].copy_from_slice(&(len as u32).to_le_bytes());
    let mut p = head.repeat(len.div_ceil(8));
    p.truncate(len);
    p
}

/// The id of a payload made by `payload`, if it is one (needs at least 8 bytes).
fn payload_id(p: &[u8]) -> Option<u32> {
    let id = u32::from_le_bytes(p.get(0..4)?.try_into().ok()?);
    let len = u32::from_le_bytes(p.get(4..8)?.try_into().ok()?) as usize;
    (payload(id, len) == p).then_some(id)
}

/// Opens, replays everything and returns the records, the summary and the log.
async fn reopen<S: Storage + 'static>(
    s: S,
    o: &WalOptions,
) -> (Vec<WalRecord>, ReplaySummary, Wal<S>) {
    let mut replay = Wal::open_streaming(s, DIR, o.clone()).await.expect("open");
    let mut out = Vec::new();
    while let Some(r) = replay.next_record().await.expect("replay") {
        out.push(r);
    }
    let summary = replay.summary().clone();
    (out, summary, replay.into_wal().await.expect("into_wal"))
}

fn assert_contiguous(records: &[WalRecord], first: u64) {
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.seq,
            first + i as u64,
            "sequence numbers must be contiguous"
        );
    }
}

async fn segment_files<S: Storage>(s: &S) -> Vec<String> {
    s.list(DIR).await.unwrap()
}

#[test]
fn segment_names_round_trip() {
    assert_eq!(segment_name(42), "wal-00000000000000000042.log");
    assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
    for bad in [
        "wal-42.log",
        "wal-0000000000000000004x.log",
        "wal-00000000000000000000.log",
        "x.log",
    ] {
        assert_eq!(parse_segment_name(bad), None, "{bad}");
    }
}

#[test]
fn options_are_checked() {
    let bad = [
        opts(WalMode::Sync, 1000),
        opts(WalMode::Sync, 0),
        opts(WalMode::Interval { interval_ms: 0 }, 4096),
        WalOptions {
            record_bytes_max: 0,
            ..WalOptions::default()
        },
        WalOptions {
            queue_bytes_max: 0,
            ..WalOptions::default()
        },
    ];
    for o in bad {
        assert!(matches!(o.check(), Err(WalError::Options(_))), "{o:?}");
    }
    WalOptions::default().check().unwrap();
}

#[test]
fn dma_round_trip_of_many_sizes_across_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    test_executor().run(async move {
        let o = opts(WalMode::Sync, 64 << 10);
        let sizes = [
            1, 2, 7, 8, 100, 4079, 4080, 4081, 4095, 4096, 4097, 5000, 8192, 12272, 65520, 65536,
            200_000, 1_100_000, 3, 9,
        ];
        let (replayed, _, wal) = reopen(DmaStorage::new(&root), &o).await;
        assert!(replayed.is_empty());
        let mut expect = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let p = payload(i as u32, len);
            assert_eq!(wal.append(&p).await.unwrap(), i as u64 + 1);
            expect.push(p);
        }
        let stats = wal.stats();
        assert!(stats.segments_created >= 4, "{stats:?}");
        wal.close().await.unwrap();

        // Reopen: everything back, then continue appending in a fresh segment.
        let (replayed, summary, wal) = reopen(DmaStorage::new(&root), &o).await;
        assert!(summary.cuts.is_empty(), "{summary:?}");
        assert_eq!(
            replayed.iter().map(|r| &r.payload).collect::<Vec<_>>(),
            expect.iter().collect::<Vec<_>>()
        );
        assert_contiguous(&replayed, 1);
        for (i, &len) in sizes.iter().enumerate().take(5) {
            let p = payload(100 + i as u32, len * 3);
            assert_eq!(wal.append(&p).await.unwrap(), expect.len() as u64 + 1);
            expect.push(p);
        }
        wal.close().await.unwrap();
        let (replayed, summary, wal) = reopen(DmaStorage::new(&root), &o).await;
        assert!(summary.cuts.is_empty(), "{summary:?}");
        assert_eq!(replayed.len(), expect.len());
        assert!(replayed.iter().zip(&expect).all(|(r, p)| &r.payload == p));
        assert_contiguous(&replayed, 1);
        wal.close().await.unwrap();
    });
}

#[test]
fn dma_segments_roll_and_old_ones_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    test_executor().run(async move {
        let o = opts(WalMode::Sync, 16 << 10);
        let s = DmaStorage::new(&root);
        let (_, _, wal) = reopen(s.clone(), &o).await;
        for i in 0..40u32 {
            wal.append(&payload(i, 3000)).await.unwrap();
        }
        // 5 records of 3016 bytes fit a 16 KiB segment: 8 segments.
        let files = segment_files(&s).await;
        assert_eq!(files.len(), 8, "{files:?}");
        assert_eq!(files[1], segment_name(6));
        // Records 1..=15 live in the first three segments.
        assert_eq!(wal.remove_segments_before(16).await.unwrap(), 3);
        assert_eq!(wal.remove_segments_before(16).await.unwrap(), 0);
        assert_eq!(segment_files(&s).await[0], segment_name(16));
        // Never the segment being written.
        assert_eq!(wal.remove_segments_before(u64::MAX).await.unwrap(), 4);
        assert_eq!(segment_files(&s).await, vec![segment_name(36)]);
        assert_eq!(wal.stats().segments_removed, 7);
        wal.close().await.unwrap();
        let (replayed, _, wal) = reopen(s.clone(), &o).await;
        assert_eq!(replayed.len(), 5);
        assert_contiguous(&replayed, 36);
        assert_eq!(wal.append(b"next").await.unwrap(), 41);
        wal.close().await.unwrap();
    });
}

#[test]
fn dma_group_commit_serves_concurrent_appends_with_few_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    test_executor().run(async move {
        let o = opts(WalMode::Sync, 1 << 20);
        let (_, _, wal) = reopen(DmaStorage::new(&root), &o).await;
        let wal = Rc::new(wal);
        let before = wal.stats();
        let tasks: Vec<_> = (0..100u32)
            .map(|i| {
                let wal = wal.clone();
                glommio::spawn_local(async move {
                    let seq = wal.append(&payload(i, 50 + i as usize * 37)).await.unwrap();
                    (seq, i)
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            acked.push(t.await);
        }
        let stats = wal.stats();
        let syncs = stats.syncs - before.syncs;
        assert_eq!(stats.appends, 100);
        assert!(syncs < 100 / 4, "{syncs} syncs for 100 appends: {stats:?}");
        assert!(stats.group_commits < 25, "{stats:?}");
        Rc::try_unwrap(wal).unwrap().close().await.unwrap();

        let (replayed, _, wal) = reopen(DmaStorage::new(&root), &o).await;
        assert_eq!(replayed.len(), 100);
        assert_contiguous(&replayed, 1);
        for (seq, i) in acked {
            assert_eq!(payload_id(&replayed[seq as usize - 1].payload), Some(i));
        }
        wal.close().await.unwrap();
    });
}

/// An acknowledged append: its sequence number, its payload's id, and the storage's operation
/// count when the acknowledgement was seen.
#[derive(Debug, Clone, Copy)]
struct Ack {
    seq: u64,
    id: u32,
    ops: u64,
}

const CRASH_SIZES: [usize; 7] = [20, 300, 4000, 4100, 9000, 17_000, 64];

/// `tasks` concurrent appenders, `each` appends apiece, on a log with 16 KiB segments (so
/// records share blocks, span blocks, roll segments, and some get a segment of their own).
/// Errors are tolerated (fault injection); successes are recorded as acks.
async fn crash_workload(
    sim: &SimStorage,
    wal: Rc<Wal<SimStorage>>,
    tasks: u32,
    each: u32,
) -> Vec<Ack> {
    let acks = Rc::new(RefCell::new(Vec::new()));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (wal, acks, sim) = (wal.clone(), acks.clone(), sim.clone());
            glommio::spawn_local(async move {
                for k in 0..each {
                    let id = t * 1000 + k;
                    let p = payload(
                        id,
                        CRASH_SIZES[(id as usize * 7 + k as usize) % CRASH_SIZES.len()],
                    );
                    if let Ok(seq) = wal.append(&p).await {
                        acks.borrow_mut().push(Ack {
                            seq,
                            id,
                            ops: sim.stats().ops,
                        });
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await;
    }
    let acks = acks.borrow().clone();
    acks
}

/// The crash invariants: contiguous from 1, no garbage, no payload twice, every ack present.
fn check_replay(records: &[WalRecord], acks: &[Ack], what: &str) {
    assert_contiguous(records, 1);
    let mut ids = HashSet::new();
    for r in records {
        let id =
            payload_id(&r.payload).unwrap_or_else(|| panic!("{what}: garbage at seq {}", r.seq));
        assert!(ids.insert(id), "{what}: payload {id} replayed twice");
    }
    for a in acks {
        let got = records
            .get(a.seq as usize - 1)
            .map(|r| payload_id(&r.payload));
        assert_eq!(got, Some(Some(a.id)), "{what}: acknowledged {a:?} lost");
    }
}

/// After the crash, the log must keep working: append, crash again (nothing torn), and find
/// the old records followed by the new ones.
async fn check_second_life(crashed: SimStorage, o: &WalOptions, acks: &[Ack], what: &str) {
    let (records, _, wal) = reopen(crashed.clone(), o).await;
    check_replay(&records, acks, what);
    let n = records.len() as u64;
    assert_eq!(wal.append(&payload(900_001, 5000)).await.unwrap(), n + 1);
    assert_eq!(wal.append(&payload(900_002, 10)).await.unwrap(), n + 2);
    drop(wal);
    let (again, _, wal) = reopen(crashed.crash(), o).await;
    drop(wal);
    assert_eq!(again.len() as u64, n + 2, "{what}: second life");
    assert_eq!(
        &again[..records.len()],
        &records[..],
        "{what}: history changed"
    );
    assert_eq!(payload_id(&again[n as usize].payload), Some(900_001));
}

#[test]
fn sim_crash_at_every_write_and_sync_keeps_every_acknowledged_append() {
    test_executor().run(async {
        let o = opts(WalMode::Sync, 16 << 10);
        let sim = SimStorage::new();
        let (_, _, wal) = reopen(sim.clone(), &o).await;
        sim.record_images(true);
        let acks = crash_workload(&sim, Rc::new(wal), 4, 12).await;
        assert_eq!(acks.len(), 48);
        let images = sim.take_images();
        assert!(images.len() > 40, "only {} crash points", images.len());
        let mut survivors = 0;
        for (i, image) in images.iter().enumerate() {
            let acked: Vec<Ack> = acks
                .iter()
                .copied()
                .filter(|a| a.ops <= image.ops_before)
                .collect();
            for seed in [None, Some(i as u64), Some(i as u64 + 7919)] {
                image.storage.set_torn_writes(seed);
                let crashed = image.storage.crash();
                let what = format!("image {i} (ops {}), torn {seed:?}", image.ops_before);
                let (records, _, wal) = reopen(crashed.snapshot(), &o).await;
                drop(wal);
                check_replay(&records, &acked, &what);
                survivors += usize::from(records.len() > acked.len());
                check_second_life(crashed, &o, &acked, &what).await;
            }
        }
        // Unacknowledged records do survive some crashes: the images are not all trivial.
        assert!(survivors > 0);
    });
}

#[test]
fn sim_injected_write_and_sync_failures_poison_the_log_but_lose_no_ack() {
    test_executor().run(async {
        let o = opts(WalMode::Sync, 16 << 10);
        // How many writes and syncs the workload makes without faults.
        let sim = SimStorage::new();
        let (_, _, wal) = reopen(sim.clone(), &o).await;
        let before = sim.stats();
        assert_eq!(crash_workload(&sim, Rc::new(wal), 3, 6).await.len(), 18);
        let (writes, syncs) = (
            sim.stats().writes - before.writes,
            sim.stats().syncs - before.syncs,
        );
        assert!(writes > 3 && syncs > 3, "{:?}", sim.stats());
        let faults = (1..=writes)
            .map(|n| (n, false))
            .chain((1..=syncs).map(|n| (n, true)));
        for (nth, fail_sync) in faults {
            let sim = SimStorage::new();
            let (_, _, wal) = reopen(sim.clone(), &o).await;
            if fail_sync {
                sim.fail_sync(nth);
            } else {
                sim.fail_write(nth);
            }
            let wal = Rc::new(wal);
            let acks = crash_workload(&sim, wal.clone(), 3, 6).await;
            let what = format!("fail {} #{nth}", if fail_sync { "sync" } else { "write" });
            assert!(acks.len() < 18, "{what}: not hit");
            let err = wal.append(b"after").await.unwrap_err();
            assert!(matches!(err, WalError::Failed { .. }), "{err}");
            assert!(err.to_string().contains("injected fault"), "{err}");
            let wal = Rc::try_unwrap(wal).unwrap();
            assert!(wal.close().await.is_err());
            for seed in [None, Some(nth), Some(nth * 31 + 1)] {
                sim.set_torn_writes(seed);
                check_second_life(sim.crash(), &o, &acks, &format!("{what}, torn {seed:?}")).await;
            }
        }
    });
}

/// Captures what `tracing` logs while `f` runs on this thread.
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf(Arc::new(Mutex::new(Vec::new())));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, logs)
}

#[test]
fn sim_flipped_byte_mid_log_cuts_there_and_is_logged() {
    let (_, logs) = with_logs(|| {
        test_executor().run(async {
            let o = opts(WalMode::Sync, 64 << 10);
            let sim = SimStorage::new();
            let (_, _, wal) = reopen(sim.clone(), &o).await;
            for i in 0..10 {
                wal.append(&payload(i, 1000)).await.unwrap();
            }
            wal.close().await.unwrap();
            // Record 6 starts at 5 * 1016; flip a byte of its payload.
            let rec6 = 5 * (HEADER_BYTES as u64 + 1000);
            sim.corrupt(&join(DIR, &segment_name(1)), |b| {
                b[rec6 as usize + 100] ^= 0x40
            });
            let (records, summary, wal) = reopen(sim.clone(), &o).await;
            assert_eq!(records.len(), 5);
            assert_contiguous(&records, 1);
            let cut = &summary.cuts[..];
            assert_eq!(cut.len(), 1, "{summary:?}");
            assert_eq!(
                (cut[0].offset, &cut[0].reason),
                (rec6, &CutReason::Checksum)
            );
            assert!(cut[0].segment.ends_with(segment_name(1)));
            // The log continues after the last good record, in a fresh segment.
            assert_eq!(wal.append(b"six again").await.unwrap(), 6);
            wal.close().await.unwrap();
            let (records, summary, wal) = reopen(sim.clone(), &o).await;
            assert_eq!(records.len(), 6);
            assert_eq!(records[5].payload, b"six again");
            assert_eq!(summary.cuts.len(), 1);
            wal.close().await.unwrap();
        })
    });
    assert!(
        logs.contains("WARN") && logs.contains("wal tail cut"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("offset={}", 5 * 1016)) && logs.contains("checksum mismatch"),
        "{logs}"
    );
    assert!(logs.contains(&segment_name(1)), "{logs}");
}

/// Writes a hand-made segment (already durable) for replay tests.
async fn put_segment(sim: &SimStorage, first_seq: u64, bytes: &[u8]) {
    let f = sim
        .open(&join(DIR, &segment_name(first_seq)), true)
        .await
        .unwrap();
    let mut padded = bytes.to_vec();
    padded.resize(
        bytes.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES + BLOCK_BYTES,
        0,
    );
    f.write_at(0, &padded).await.unwrap();
    f.sync().await.unwrap();
    sim.sync_dir(DIR).await.unwrap();
}

#[test]
fn sim_every_cut_reason_is_detected_and_the_next_segment_continues() {
    test_executor().run(async {
        let sim = SimStorage::new();
        let rec = |seq: u64| record::encode(seq, &payload(seq as u32, 40));
        let cat = |parts: &[&[u8]]| parts.concat();
        put_segment(&sim, 1, &cat(&[&rec(1), &rec(2), &rec(7)])).await;
        let garbage = [0u8, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0];
        put_segment(&sim, 3, &cat(&[&rec(3), &garbage])).await;
        let mut long = rec(5);
        long[0..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        put_segment(&sim, 4, &cat(&[&rec(4), &long])).await;
        let mut bad = rec(6);
        bad[20] ^= 1;
        put_segment(&sim, 5, &cat(&[&rec(5), &bad])).await;
        let (records, summary, wal) = reopen(sim.clone(), &WalOptions::default()).await;
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        let reasons: Vec<_> = summary.cuts.iter().map(|c| c.reason.clone()).collect();
        assert_eq!(
            reasons,
            vec![
                CutReason::SeqGap {
                    expected: 3,
                    found: 7
                },
                CutReason::Garbage,
                CutReason::Truncated { len: 1 << 30 },
                CutReason::Checksum,
            ]
        );
        assert_eq!(summary.cuts[0].offset, 2 * 56);
        assert_eq!(wal.append(b"x").await.unwrap(), 6);
        drop(wal);
    });
}

#[test]
fn sim_corruption_in_an_early_segment_sets_later_segments_aside() {
    test_executor().run(async {
        let o = opts(WalMode::Sync, 8 << 10);
        let sim = SimStorage::new();
        let (_, _, wal) = reopen(sim.clone(), &o).await;
        for i in 0..9 {
            wal.append(&payload(i, 2500)).await.unwrap();
        }
        wal.close().await.unwrap();
        // Three records of 2516 bytes per 8 KiB segment: segments 1, 4, 7. Corrupt record 2.
        assert_eq!(segment_files(&sim).await.len(), 3);
        sim.corrupt(&join(DIR, &segment_name(1)), |b| b[2516 + 30] ^= 1);
        let (records, summary, wal) = reopen(sim.clone(), &o).await;
        assert_eq!(records.len(), 1);
        let aside = vec![join(DIR, &segment_name(4)), join(DIR, &segment_name(7))];
        assert_eq!(summary.discarded, aside);
        let files = segment_files(&sim).await;
        assert!(
            files.contains(&format!("{}.discarded", segment_name(7))),
            "{files:?}"
        );
        assert!(files.contains(&segment_name(2)), "{files:?}");
        assert_eq!(wal.append(b"two").await.unwrap(), 2);
        wal.close().await.unwrap();
        let (records, summary, wal) = reopen(sim.clone(), &o).await;
        assert_eq!(records.len(), 2);
        assert!(summary.discarded.is_empty());
        drop(wal);
    });
}

#[test]
fn sim_interval_mode_acks_before_sync_and_syncs_periodically() {
    test_executor().run(async {
        let o = opts(WalMode::Interval { interval_ms: 50 }, 64 << 10);
        let sim = SimStorage::new();
        let (_, _, wal) = reopen(sim.clone(), &o).await;
        let baseline = sim.stats().syncs;
        for i in 0..3 {
            wal.append(&payload(i, 100)).await.unwrap();
        }
        assert_eq!(sim.stats().syncs, baseline, "acknowledged before any sync");
        let (lost, _, w) = reopen(sim.crash(), &o).await;
        drop(w);
        assert!(lost.is_empty());
        glommio::timer::sleep(std::time::Duration::from_millis(150)).await;
        let synced = sim.stats().syncs;
        assert!(synced > baseline);
        let (kept, _, w) = reopen(sim.crash(), &o).await;
        drop(w);
        assert_eq!(kept.len(), 3);
        // Nothing new written: the timer does not sync again.
        glommio::timer::sleep(std::time::Duration::from_millis(150)).await;
        assert_eq!(sim.stats().syncs, synced);
        wal.close().await.unwrap();
    });
}

#[test]
fn sim_off_mode_never_syncs_unless_asked() {
    test_executor().run(async {
        let o = opts(WalMode::Off, 8 << 10);
        let sim = SimStorage::new();
        let (_, _, wal) = reopen(sim.clone(), &o).await;
        // Three records per segment: four segments.
        for i in 0..12 {
            wal.append(&payload(i, 2500)).await.unwrap();
        }
        assert_eq!((sim.stats().syncs, sim.stats().dir_syncs), (0, 0));
        assert_eq!(wal.stats().segments_created, 4);
        let (lost, _, w) = reopen(sim.crash(), &o).await;
        drop(w);
        assert!(
            lost.is_empty(),
            "not even the directory entries were synced"
        );
        // An explicit sync covers the rolled-away segments and the directory too.
        assert_eq!(wal.sync().await.unwrap(), 12);
        assert_eq!((sim.stats().syncs, sim.stats().dir_syncs), (4, 1));
        let (kept, _, w) = reopen(sim.crash(), &o).await;
        drop(w);
        assert_eq!(kept.len(), 12);
        let before = sim.stats();
        wal.close().await.unwrap();
        assert_eq!(sim.stats().syncs, before.syncs);
    });
}

#[test]
fn sim_bounds_refuse_empty_huge_and_queue_overflow() {
    test_executor().run(async {
        let o = WalOptions {
            record_bytes_max: 10_000,
            queue_bytes_max: 8000,
            queue_wait_ms: 30,
            ..opts(WalMode::Sync, 64 << 10)
        };
        let sim = SimStorage::new();
        let (_, _, wal) = reopen(sim.clone(), &o).await;
        assert!(matches!(wal.append(b"").await, Err(WalError::EmptyRecord)));
        let too_big = wal.append(&[1; 10_001]).await.unwrap_err();
        assert!(matches!(
            too_big,
            WalError::RecordTooLarge {
                len: 10_001,
                max: 10_000
            }
        ));
        // A slow disk: the first record is being written, the second fills the queue, the
        // third finds no room within 30 ms.
        sim.set_write_delay_ms(200);
        let wal = Rc::new(wal);
        let first = glommio::spawn_local({
            let wal = wal.clone();
            async move { wal.append(&[1; 6000]).await }
        });
        futures_lite::future::yield_now().await;
        let second = wal.append_unconfirmed(&[2; 6000]).await.unwrap();
        let third = wal.append_unconfirmed(&[3; 6000]).await.unwrap_err();
        assert!(
            matches!(
                third,
                WalError::Full {
                    queued_bytes: 6016,
                    len: 6016,
                    waited_ms: 30,
                    ..
                }
            ),
            "{third}"
        );
        assert_eq!(wal.stats().queue_full, 1);
        assert_eq!(first.await.unwrap(), 1);
        wal.confirm(second).await.unwrap();
        sim.set_write_delay_ms(0);
        let wal = Rc::try_unwrap(wal).unwrap();
        wal.close().await.unwrap();
        let (records, _, w) = reopen(sim.clone(), &o).await;
        drop(w);
        assert_eq!(records.len(), 2);
    });
}

#[test]
fn sim_dropped_log_still_writes_what_was_queued() {
    test_executor().run(async {
        let o = opts(WalMode::Sync, 64 << 10);
        let sim = SimStorage::new();
        let (_, _, wal) = reopen(sim.clone(), &o).await;
        let seq = wal.append_unconfirmed(b"queued").await.unwrap();
        drop(wal);
        // Let the detached writer run.
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        let (records, _, w) = reopen(sim.crash(), &o).await;
        drop(w);
        assert_eq!(
            records,
            vec![WalRecord {
                seq,
                payload: b"queued".to_vec()
            }]
        );
    });
}

#[test]
fn sim_writes_are_whole_aligned_blocks_and_tail_blocks_are_rewritten() {
    test_executor().run(async {
        let o = opts(WalMode::Sync, 64 << 10);
        let sim = SimStorage::new();
        let (_, _, wal) = reopen(sim.clone(), &o).await;
        // Three small records in one block: each write rewrites block 0.
        for i in 0..3 {
            wal.append(&payload(i, 100)).await.unwrap();
        }
        let stats = wal.stats();
        assert_eq!(
            (stats.writes, stats.write_bytes),
            (3, 3 * BLOCK_BYTES as u64)
        );
        // A record crossing into block 1: block 0 and block 1 in one write.
        wal.append(&payload(3, 4000)).await.unwrap();
        assert_eq!(
            wal.stats().write_bytes - stats.write_bytes,
            2 * BLOCK_BYTES as u64
        );
        wal.close().await.unwrap();
        let f = sim.open(&join(DIR, &segment_name(1)), false).await.unwrap();
        let bytes = f.read_at(0, 2 * BLOCK_BYTES).await.unwrap();
        let used = 3 * (HEADER_BYTES + 100) + HEADER_BYTES + 4000;
        assert_eq!(record::check_run(&bytes[..used], 1), Ok(4));
        assert!(
            bytes[used..].iter().all(|&b| b == 0),
            "padding must be zeros"
        );
    });
}
