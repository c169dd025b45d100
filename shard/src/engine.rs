//! One shard's storage engine: the WAL, the memtable and the segments behind `write`, `delete`,
//! `flush` and reads.
//!
//! `write` admits a batch only if the memtable has room for it (waiting up to a bound, then
//! `Busy`), appends it to the WAL (returning once durable per the WAL mode: group commit shares
//! one write and one fdatasync among all appends queued meanwhile), then applies it to the
//! memtable. Admission comes first so the WAL never holds rows the memtable refused.
//!
//! # Flush
//!
//! `flush` freezes the memtable (a new empty one takes writes at once), writes the frozen one's
//! tables as segments (`segment`, one per table and time partition, sorted by series then
//! time), makes them durable, replaces the manifest (`manifest`) with the new segment list and
//! the WAL checkpoint, deletes the WAL segments wholly before the checkpoint, and drops the
//! frozen memtable. The checkpoint is the lowest sequence number whose rows may not be in the
//! frozen memtable: the oldest append still in flight at the freeze (appended, not yet applied),
//! else the next sequence number. Replay after a crash applies every record from the checkpoint
//! on; a record before it is in a segment. A record at or after it may also be in a segment (it
//! completed before the freeze while an older one was in flight); replaying it again is an
//! upsert of the same values, so nothing changes.
//!
//! # Deletes and segments
//!
//! A delete is logged, applied to the memtable and the frozen one, and kept as a tombstone
//! (with its sequence number) that removes matching points of every segment flushed before it
//! (`Tombstone::applies_to`). Tombstones are persisted in the manifest, so they outlive the WAL
//! records they came from, and dropped when no live segment is older than them.
//!
//! # Reads
//!
//! A read (`open_read`) pins what it will see for its whole life: the segments of its table
//! that overlap its time range (decoded into read-only memtables, from a bounded cache or by a
//! load task on this shard), the frozen memtable if any, and the memtable. A freeze during a
//! read hands the read the frozen memtable in place of the live one, so a paused scan keeps
//! reading the same layers, in the same order. `with_read` runs a scan step over the layers
//! merged (`memtable::Layered`: newest layer wins per series, time and field), or returns
//! `Pending` while segments are still loading. Open reads are bounded (`READS_MAX`); the
//! oldest is evicted past it, and its next step fails.

use std::cell::{Cell, Ref, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use tracing::{info, warn};

use crate::batch::{self, Delete, Record, WriteBatch};
use crate::io::{DmaStorage, Storage};
use crate::manifest::{self, Manifest, ManifestError, SegmentMeta, Tombstone};
use crate::memtable::{Layered, Memtable, TableScan, Union};
use crate::segment::{self, SegmentError};
use crate::wal::{Wal, WalOptions};

pub use crate::wal::WalMode;

#[cfg(test)]
mod tests;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The shard's directory (`data/shard-N`); the WAL lives in `wal/` below it, segments in
    /// `segments/`, the manifest in `MANIFEST`.
    pub dir: PathBuf,
    pub wal_mode: WalMode,
    pub wal_segment_bytes: u64,
    pub memtable_bytes_max: usize,
    /// How long a write waits for memtable room before `Busy`.
    pub full_wait: Duration,
    /// A memtable holding this many bytes is due for a flush.
    pub flush_bytes: usize,
    /// A memtable this old (since its first write) is due for a flush; zero: never by age.
    pub flush_age: Duration,
    /// Bytes of decoded segments kept for reads.
    pub segment_cache_bytes: usize,
    /// A table partition with this many segments is compacted (0: never).
    pub compact_segments: usize,
    /// Rows one compaction merges at most (it decodes them all in memory).
    pub compact_rows_max: u64,
}

impl EngineOptions {
    /// Options for tests and tools: sync WAL, 64 MiB segments, 1 GiB memtable flushed at half.
    pub fn new(dir: impl Into<PathBuf>) -> EngineOptions {
        EngineOptions {
            dir: dir.into(),
            wal_mode: WalMode::Sync,
            wal_segment_bytes: 64 << 20,
            memtable_bytes_max: 1 << 30,
            full_wait: Duration::from_secs(5),
            flush_bytes: 512 << 20,
            flush_age: Duration::ZERO,
            segment_cache_bytes: 256 << 20,
            compact_segments: 4,
            compact_rows_max: 4_000_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("memtable full ({bytes} of {bytes_max} bytes)")]
    Busy { bytes: usize, bytes_max: usize },
    #[error("WAL: {0}")]
    Wal(#[from] crate::wal::WalError),
    #[error("replaying WAL record {seq}: {source}")]
    Replay { seq: u64, source: batch::BatchError },
    #[error("memtable: {0}")]
    Memtable(#[from] crate::memtable::MemtableError),
    #[error("{0}")]
    Segment(#[from] SegmentError),
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("storage: {0}")]
    Io(#[from] crate::io::IoError),
    #[error("a flush is already running")]
    FlushRunning,
    #[error("read {0} is no longer open (too many reads at once, or the shard is stopping)")]
    ReadGone(u64),
    #[error("reading segment {id} ({path}): {why}")]
    SegmentRead { id: u64, path: String, why: String },
    #[error("reading table {table}: {why}")]
    ReadFailed { table: String, why: String },
}

/// What an engine holds, for /metrics and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    pub rows: u64,
    pub series: u64,
    pub memtable_bytes: u64,
    pub wal_appends: u64,
    pub wal_syncs: u64,
    pub segments: u64,
    pub segment_bytes: u64,
    pub segment_rows: u64,
    pub flushes: u64,
}

/// What replay found at open.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplaySummary {
    pub records: u64,
    pub rows: u64,
    /// Records before the manifest's checkpoint, skipped (their rows are in segments).
    pub skipped: u64,
    pub segments: u64,
}

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushSummary {
    pub segments: u64,
    pub rows: u64,
    pub bytes: u64,
    pub checkpoint: u64,
    pub wal_segments_removed: u64,
}

/// What one compaction or expiry did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactSummary {
    /// Segments removed (merged, or expired).
    pub removed: u64,
    /// Segments written.
    pub written: u64,
    pub rows: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Longest a compaction waits for reads still loading its inputs before deleting them.
const UNPIN_WAIT: Duration = Duration::from_secs(30);

/// Partitions a series' time bounds may span before its points are looked at one by one.
const PARTITIONS_SPANNED_MAX: i64 = 1024;

/// Open reads at once, per shard.
const READS_MAX: usize = 4096;
/// Poll period while waiting for memtable room.
const ROOM_POLL_MS: u64 = 10;

/// One layer of a read, oldest first.
enum Layer {
    /// A decoded segment; None while its load task runs.
    Segment(u64, Option<Rc<Memtable>>),
    /// A frozen memtable.
    Frozen(Rc<RefCell<Memtable>>),
    /// The live memtable.
    Live,
}

/// Which layers hold the read's table, fixed at its first step.
enum Shape {
    /// None of them.
    Empty,
    /// One layer: read it as it is (it may gain series while the read runs).
    One(usize),
    /// Several: merged through their union, built once.
    Many(Vec<usize>, Union),
}

struct Read {
    tenant: String,
    database: String,
    table: String,
    layers: Vec<Layer>,
    shape: Option<Shape>,
    loading: usize,
    waker: Option<Waker>,
    error: Option<String>,
}

/// A decoded segment's key: the segment and the fields decoded (None: all).
type CacheKey = (u64, Option<Vec<String>>);

/// A read's memtables borrowed for one step (the borrows end with it).
struct Borrowed<'a> {
    live: Ref<'a, Memtable>,
    /// Per layer: the frozen memtable's borrow, for frozen layers.
    frozen: Vec<Option<Ref<'a, Memtable>>>,
}

impl<'a> Borrowed<'a> {
    fn new<S: Storage + Clone + 'static>(engine: &'a Engine<S>, read: &'a Read) -> Borrowed<'a> {
        Borrowed {
            live: engine.memtable.borrow(),
            frozen: read
                .layers
                .iter()
                .map(|l| match l {
                    Layer::Frozen(f) => Some(f.borrow()),
                    _ => None,
                })
                .collect(),
        }
    }

    /// Layer `i` of `read`'s table, if that layer holds it.
    fn scan<'b>(&'b self, read: &'b Read, i: usize) -> Option<TableScan<'b>> {
        let m: &Memtable = match &read.layers[i] {
            Layer::Segment(_, m) => m.as_deref()?,
            Layer::Frozen(_) => self.frozen[i].as_deref()?,
            Layer::Live => &self.live,
        };
        m.scan(&read.tenant, &read.database, &read.table)
    }
}

/// Decoded segments, bounded in bytes (least recently used goes first).
#[derive(Default)]
struct SegmentCache {
    /// The decoded segment and the tick of its last use.
    entries: HashMap<CacheKey, (Rc<Memtable>, u64)>,
    bytes: usize,
    tick: u64,
}

impl SegmentCache {
    fn get(&mut self, key: &CacheKey) -> Option<Rc<Memtable>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(m, t)| {
            *t = tick;
            Rc::clone(m)
        })
    }

    fn put(&mut self, key: CacheKey, m: Rc<Memtable>, max: usize) {
        let size = m.bytes();
        if size > max {
            return;
        }
        while self.bytes + size > max {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((old, _)) = self.entries.remove(&oldest) {
                self.bytes -= old.bytes();
            }
        }
        self.tick += 1;
        self.bytes += size;
        if let Some((old, _)) = self.entries.insert(key, (m, self.tick)) {
            self.bytes -= old.bytes();
        }
    }

    /// Drops every entry of segments for which `stale` holds.
    fn drop_where(&mut self, stale: impl Fn(u64) -> bool) {
        let before = std::mem::take(&mut self.entries);
        for (k, v) in before {
            if stale(k.0) {
                self.bytes -= v.0.bytes();
            } else {
                self.entries.insert(k, v);
            }
        }
    }
}

pub struct Engine<S: Storage + Clone + 'static = DmaStorage> {
    wal: Wal<S>,
    storage: S,
    memtable: RefCell<Memtable>,
    /// When the live memtable got its first write since it was last frozen.
    memtable_since: Cell<Option<Instant>>,
    frozen: RefCell<Option<Rc<RefCell<Memtable>>>>,
    /// The frozen memtable's checkpoint (kept for a flush retried after a failure).
    frozen_at: Cell<u64>,
    /// The durable manifest (what a restart sees).
    manifest: RefCell<Manifest>,
    /// Every tombstone that may apply to a live segment: the manifest's and newer ones.
    tombstones: RefCell<Vec<Tombstone>>,
    /// Sequence numbers appended but not yet applied to the memtable.
    inflight: RefCell<BTreeSet<u64>>,
    /// Bytes admitted but not yet in the memtable (their WAL append is in flight).
    reserved: Cell<usize>,
    flushing: Cell<bool>,
    flushes: Cell<u64>,
    /// The manifest version at which no partition needed compaction.
    compacted_at: Cell<Option<u64>>,
    reads: RefCell<BTreeMap<u64, Read>>,
    next_read: Cell<u64>,
    cache: RefCell<SegmentCache>,
    options: EngineOptions,
}

/// Removes an in-flight sequence number however the write ends.
struct Inflight<'a>(&'a RefCell<BTreeSet<u64>>, u64);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.borrow_mut().remove(&self.1);
    }
}

impl Engine<DmaStorage> {
    /// Opens the shard's manifest and WAL in `options.dir`, replays the WAL from the
    /// checkpoint into a fresh memtable, and returns the engine.
    pub async fn open(options: EngineOptions) -> Result<(Engine, ReplaySummary), EngineError> {
        let storage = DmaStorage::new(&options.dir);
        Engine::open_on(storage, options).await
    }
}

impl<S: Storage + Clone + 'static> Engine<S> {
    /// `open` over any storage rooted at the shard's directory (crash tests use `SimStorage`).
    pub async fn open_on(
        storage: S,
        options: EngineOptions,
    ) -> Result<(Engine<S>, ReplaySummary), EngineError> {
        storage.create_dir("").await?;
        storage.create_dir(manifest::SEGMENTS_DIR).await?;
        let manifest = Manifest::load(&storage).await?;
        // Segment files the manifest does not list are from a flush that did not finish.
        for name in storage.list(manifest::SEGMENTS_DIR).await? {
            let listed = manifest.segments.iter().any(|s| s.path().ends_with(&name));
            if !listed {
                let path = crate::io::join(manifest::SEGMENTS_DIR, &name);
                warn!(file = %storage.describe(&path).display(), "removing a segment no manifest lists (an unfinished flush)");
                storage.remove(&path).await?;
            }
        }
        let wal_options = WalOptions {
            segment_bytes: options.wal_segment_bytes,
            ..WalOptions::new(options.wal_mode)
        };
        // Streamed: one record in memory at a time, however long the log.
        let mut replay = Wal::open_streaming(storage.clone(), "wal", wal_options).await?;
        let mut memtable = Memtable::new(usize::MAX);
        let mut tombstones = manifest.tombstones.clone();
        let mut summary = ReplaySummary {
            segments: manifest.segments.len() as u64,
            ..ReplaySummary::default()
        };
        while let Some(record) = replay.next_record().await? {
            let seq = record.seq;
            if seq < manifest.wal_checkpoint {
                summary.skipped += 1;
                continue;
            }
            let record = batch::decode_record(&record.payload)
                .map_err(|source| EngineError::Replay { seq, source })?;
            match record {
                Record::Write(batch) => {
                    for t in &batch.tables {
                        memtable.insert(t)?;
                    }
                    summary.rows += batch.rows() as u64;
                }
                Record::Delete(d) => {
                    memtable.delete(&d);
                    if !tombstones.iter().any(|t| t.seq == seq) {
                        tombstones.push(Tombstone { seq, delete: d });
                    }
                }
            }
            summary.records += 1;
        }
        let wal = replay.into_wal().await?;
        info!(
            dir = %options.dir.display(),
            records = summary.records,
            rows = summary.rows,
            skipped = summary.skipped,
            segments = summary.segments,
            checkpoint = manifest.wal_checkpoint,
            "WAL replayed"
        );
        let since = (!memtable.is_empty()).then(Instant::now);
        let engine = Engine {
            wal,
            storage,
            memtable: RefCell::new(memtable),
            memtable_since: Cell::new(since),
            frozen: RefCell::new(None),
            frozen_at: Cell::new(0),
            manifest: RefCell::new(manifest),
            tombstones: RefCell::new(tombstones),
            inflight: RefCell::new(BTreeSet::new()),
            reserved: Cell::new(0),
            flushing: Cell::new(false),
            flushes: Cell::new(0),
            compacted_at: Cell::new(None),
            reads: RefCell::new(BTreeMap::new()),
            next_read: Cell::new(1),
            cache: RefCell::new(SegmentCache::default()),
            options,
        };
        Ok((engine, summary))
    }

    /// Makes `batch` durable (per the WAL mode) and visible in the memtable.
    pub async fn write(&self, batch: &WriteBatch) -> Result<(), EngineError> {
        // What the rows will cost in the memtable, computed exactly by a dry run; admitted
        // before the WAL append so the log never holds rows the memtable would refuse.
        let need = self.cost(batch)?;
        self.admit(need).await?;
        let mut payload = Vec::with_capacity(batch.rows() * 64);
        batch::encode(batch, &mut payload);
        let applied = self.append(&payload).await.and_then(|_guard| {
            let mut m = self.memtable.borrow_mut();
            if self.memtable_since.get().is_none() {
                self.memtable_since.set(Some(Instant::now()));
            }
            batch
                .tables
                .iter()
                .try_for_each(|t| m.insert(t))
                .map_err(EngineError::from)
        });
        self.reserved.set(self.reserved.get() - need);
        applied
    }

    /// Appends a record and waits for its durability; the guard keeps its sequence number in
    /// flight (a freeze's checkpoint stays at or before it) until the caller has applied it.
    async fn append(&self, payload: &[u8]) -> Result<Inflight<'_>, EngineError> {
        let seq = self.wal.append_unconfirmed(payload).await?;
        self.inflight.borrow_mut().insert(seq);
        let guard = Inflight(&self.inflight, seq);
        self.wal.confirm(seq).await?;
        Ok(guard)
    }

    /// Makes `delete` durable (per the WAL mode), then removes what it matches from the
    /// memtable, the frozen one and (by a tombstone) the segments; returns the points removed
    /// from the memtables. Logged first so that a crash after the answer cannot bring the
    /// points back on replay.
    pub async fn delete(&self, delete: &Delete) -> Result<usize, EngineError> {
        let mut payload = Vec::with_capacity(128);
        batch::encode_delete(delete, &mut payload);
        let guard = self.append(&payload).await?;
        let seq = guard.1;
        let mut removed = self.memtable.borrow_mut().delete(delete);
        if let Some(f) = self.frozen.borrow().as_ref() {
            removed += f.borrow_mut().delete(delete);
        }
        // Kept even if no live segment is hit yet: a flush running now writes segments older
        // than this delete (pruned once the flush's manifest is in).
        let tombstone = Tombstone {
            seq,
            delete: delete.clone(),
        };
        let hit: Vec<u64> = {
            let m = self.manifest.borrow();
            m.segments
                .iter()
                .filter(|s| tombstone.applies_to(s))
                .map(|s| s.id)
                .collect()
        };
        self.tombstones.borrow_mut().push(tombstone);
        self.cache.borrow_mut().drop_where(|id| hit.contains(&id));
        Ok(removed)
    }

    fn cost(&self, batch: &WriteBatch) -> Result<usize, EngineError> {
        let mut m = self.memtable.borrow_mut();
        let mut need = 0;
        for t in &batch.tables {
            need += m.insert_bytes(t)?;
        }
        Ok(need)
    }

    /// Waits until `need` more bytes fit under the memtable bound, then reserves them.
    async fn admit(&self, need: usize) -> Result<(), EngineError> {
        let deadline = Instant::now() + self.options.full_wait;
        loop {
            let used = self.memtable.borrow().bytes() + self.reserved.get();
            if used + need <= self.options.memtable_bytes_max {
                self.reserved.set(self.reserved.get() + need);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Busy {
                    bytes: used,
                    bytes_max: self.options.memtable_bytes_max,
                });
            }
            Timer::new(Duration::from_millis(ROOM_POLL_MS)).await;
        }
    }

    pub fn stats(&self) -> EngineStats {
        let m = self.memtable.borrow();
        let w = self.wal.stats();
        let manifest = self.manifest.borrow();
        EngineStats {
            rows: m.rows() as u64,
            series: m.series_count() as u64,
            memtable_bytes: m.bytes() as u64,
            wal_appends: w.appends,
            wal_syncs: w.syncs,
            segments: manifest.segments.len() as u64,
            segment_bytes: manifest.segments.iter().map(|s| s.bytes).sum(),
            segment_rows: manifest.segments.iter().map(|s| s.rows).sum(),
            flushes: self.flushes.get(),
        }
    }

    /// Read access to the live memtable, for tests.
    pub fn memtable(&self) -> Ref<'_, Memtable> {
        self.memtable.borrow()
    }

    /// The live segments, as the durable manifest lists them.
    pub fn segments(&self) -> Vec<SegmentMeta> {
        self.manifest.borrow().segments.clone()
    }

    /// Whether the memtable is due for a flush (by size or age) and none is running.
    pub fn flush_due(&self) -> bool {
        if self.flushing.get() {
            return false;
        }
        if self.frozen.borrow().is_some() {
            // A flush failed: retry it.
            return true;
        }
        let m = self.memtable.borrow();
        if m.is_empty() {
            return false;
        }
        let old = !self.options.flush_age.is_zero()
            && self
                .memtable_since
                .get()
                .is_some_and(|t| t.elapsed() >= self.options.flush_age);
        m.bytes() >= self.options.flush_bytes || old
    }

    /// Freezes the memtable and writes it as segments (see the module docs). `partition`
    /// gives a database's time partition width, in its time unit (`i64::MAX`: one partition).
    /// Does nothing with an empty memtable. One flush at a time.
    pub async fn flush(
        &self,
        partition: &dyn Fn(&str, &str) -> i64,
    ) -> Result<FlushSummary, EngineError> {
        if self.flushing.replace(true) {
            return Err(EngineError::FlushRunning);
        }
        let result = self.flush_inner(partition).await;
        self.flushing.set(false);
        if result.is_ok() {
            self.flushes.set(self.flushes.get() + 1);
        }
        result
    }

    async fn flush_inner(
        &self,
        partition: &dyn Fn(&str, &str) -> i64,
    ) -> Result<FlushSummary, EngineError> {
        // A frozen memtable left by a failed flush is flushed first, alone.
        let existing = self.frozen.borrow().clone();
        let (frozen, checkpoint) = match existing {
            Some(f) => (f, self.frozen_at.get()),
            None => {
                if self.memtable.borrow().is_empty() {
                    return Ok(FlushSummary::default());
                }
                self.freeze()
            }
        };
        let mut summary = FlushSummary {
            checkpoint,
            ..FlushSummary::default()
        };
        // Every record before the checkpoint durable, whatever the WAL mode: after the manifest
        // names the checkpoint, replay never looks before it, and the log must not restart
        // numbering below it.
        self.wal.sync().await?;
        let mut next_id = self.manifest.borrow().next_segment;
        let mut written: Vec<SegmentMeta> = Vec::new();
        let tables: Vec<(String, String, String)> = frozen
            .borrow()
            .tables()
            .map(|t| {
                (
                    t.tenant.to_string(),
                    t.database.to_string(),
                    t.table.to_string(),
                )
            })
            .collect();
        for (tenant, database, table) in tables {
            let width = partition(&tenant, &database).max(1);
            for (lo, hi) in self.partitions(&frozen, (&tenant, &database, &table), width) {
                let id = next_id;
                next_id += 1;
                let path = manifest::segment_path(id);
                let Some(encoded) = self
                    .encode_partition(&frozen, (&tenant, &database, &table), (lo, hi), &path)
                    .await?
                else {
                    continue;
                };
                segment::write_file(&self.storage, &path, &encoded.bytes).await?;
                summary.segments += 1;
                summary.rows += encoded.rows;
                summary.bytes += encoded.bytes.len() as u64;
                written.push(SegmentMeta {
                    id,
                    tenant: tenant.clone(),
                    database: database.clone(),
                    table: table.clone(),
                    min_time: encoded.min_time,
                    max_time: encoded.max_time,
                    rows: encoded.rows,
                    series: encoded.series,
                    bytes: encoded.bytes.len() as u64,
                    flushed_seq: checkpoint,
                    footer_crc32c: encoded.footer_crc32c,
                });
            }
        }
        self.storage.sync_dir(manifest::SEGMENTS_DIR).await?;
        let mut next = self.manifest.borrow().clone();
        next.version += 1;
        next.wal_checkpoint = checkpoint;
        next.next_segment = next_id;
        next.segments.extend(written);
        self.install(next).await?;
        // The frozen memtable's rows are now in segments: new reads use those.
        *self.frozen.borrow_mut() = None;
        summary.wal_segments_removed = self.wal.remove_segments_before(checkpoint).await? as u64;
        info!(
            dir = %self.options.dir.display(),
            segments = summary.segments,
            rows = summary.rows,
            bytes = summary.bytes,
            checkpoint,
            "memtable flushed"
        );
        Ok(summary)
    }

    /// Swaps in an empty memtable; the full one becomes the frozen one, and open reads of the
    /// live memtable switch to it. Returns it and its checkpoint.
    fn freeze(&self) -> (Rc<RefCell<Memtable>>, u64) {
        let checkpoint = self
            .inflight
            .borrow()
            .first()
            .copied()
            .unwrap_or(self.wal.last_seq() + 1);
        let full = self.memtable.borrow_mut().take();
        self.memtable_since.set(None);
        let frozen = Rc::new(RefCell::new(full));
        for read in self.reads.borrow_mut().values_mut() {
            for layer in &mut read.layers {
                if matches!(layer, Layer::Live) {
                    *layer = Layer::Frozen(Rc::clone(&frozen));
                }
            }
        }
        *self.frozen.borrow_mut() = Some(Rc::clone(&frozen));
        self.frozen_at.set(checkpoint);
        (frozen, checkpoint)
    }

    /// The `[lo, hi)` time partitions of width `width` holding points of the table.
    fn partitions(
        &self,
        frozen: &RefCell<Memtable>,
        (tenant, database, table): (&str, &str, &str),
        width: i64,
    ) -> Vec<(i64, i64)> {
        if width == i64::MAX {
            return vec![(i64::MIN, i64::MAX)];
        }
        let m = frozen.borrow();
        let Some(scan) = m.scan(tenant, database, table) else {
            return Vec::new();
        };
        // Every partition between a series' first and last time (one that holds none of its
        // points encodes to nothing and is skipped).
        let mut starts: Vec<i64> = Vec::new();
        for s in scan.series_refs_from(0) {
            let Some((lo, hi)) = s.time_bounds() else {
                continue;
            };
            let (first, last) = (lo.div_euclid(width), hi.div_euclid(width));
            if last.saturating_sub(first) <= PARTITIONS_SPANNED_MAX {
                for p in first..=last {
                    if let Err(at) = starts.binary_search(&p) {
                        starts.insert(at, p);
                    }
                }
                continue;
            }
            // A series spread over many partitions: the ones its points are in.
            for &t in s.scan().time() {
                let p = t.div_euclid(width);
                if let Err(at) = starts.binary_search(&p) {
                    starts.insert(at, p);
                }
            }
        }
        starts
            .into_iter()
            .map(|p| {
                let lo = p.saturating_mul(width);
                (lo, lo.saturating_add(width))
            })
            .collect()
    }

    /// Encodes one table partition of the frozen memtable, yielding to the shard's other tasks
    /// between series (the frozen memtable is borrowed only in between).
    async fn encode_partition(
        &self,
        frozen: &RefCell<Memtable>,
        (tenant, database, table): (&str, &str, &str),
        range: (i64, i64),
        path: &str,
    ) -> Result<Option<segment::Encoded>, EngineError> {
        let (order, mut encoder) = {
            let m = frozen.borrow();
            let Some(scan) = m.scan(tenant, database, table) else {
                return Ok(None);
            };
            let mut refs: Vec<(usize, crate::memtable::SeriesRef<'_>)> =
                scan.series_refs_from(0).enumerate().collect();
            refs.sort_by(|a, b| a.1.key().packed().cmp(b.1.key().packed()));
            let order: Vec<usize> = refs.iter().map(|(i, _)| *i).collect();
            let series: Vec<_> = refs.into_iter().map(|(_, s)| s).collect();
            (order, segment::Encoder::new(&scan, &series, range, path)?)
        };
        let mut at = 0;
        while at < order.len() {
            {
                let m = frozen.borrow();
                let Some(scan) = m.scan(tenant, database, table) else {
                    // Dropped meanwhile: its tombstone covers whatever was written.
                    return Ok(None);
                };
                let mut points = 0;
                // Borrowed for about a write batch's worth of points at a time.
                while at < order.len() && points < 8192 {
                    if let Some(s) = scan.series_refs_from(order[at]).next() {
                        points += encoder.push(&s)?.max(1);
                    }
                    at += 1;
                }
            }
            glommio::yield_if_needed().await;
        }
        Ok(encoder.finish()?)
    }

    /// Merges the oldest run of segments of one table partition that has at least
    /// `compact_segments` of them (and at most `compact_rows_max` rows in the run) into one
    /// segment: newer writes win, tombstones applied. None when no partition needs it. Runs
    /// one at a time with flushes.
    pub async fn compact(
        &self,
        partition: &dyn Fn(&str, &str) -> i64,
    ) -> Result<Option<CompactSummary>, EngineError> {
        if self.options.compact_segments < 2 {
            return Ok(None);
        }
        if self.flushing.replace(true) {
            return Err(EngineError::FlushRunning);
        }
        let result = self.compact_inner(partition).await;
        self.flushing.set(false);
        result
    }

    /// The run to compact: segments of one table partition, oldest first.
    fn compaction_run(&self, partition: &dyn Fn(&str, &str) -> i64) -> Vec<SegmentMeta> {
        let m = self.manifest.borrow();
        let mut groups: BTreeMap<(String, String, String, i64), Vec<SegmentMeta>> = BTreeMap::new();
        for s in &m.segments {
            let width = partition(&s.tenant, &s.database).max(1);
            let (p, q) = (s.min_time.div_euclid(width), s.max_time.div_euclid(width));
            let p = if width == i64::MAX { 0 } else { p };
            if width != i64::MAX && p != q {
                continue; // written under another partition width: left as it is
            }
            let key = (s.tenant.clone(), s.database.clone(), s.table.clone(), p);
            groups.entry(key).or_default().push(s.clone());
        }
        for (_, mut group) in groups {
            if group.len() < self.options.compact_segments {
                continue;
            }
            group.sort_by_key(|s| (s.flushed_seq, s.id));
            let mut rows = 0;
            let run: Vec<SegmentMeta> = group
                .into_iter()
                .take_while(|s| {
                    rows += s.rows;
                    rows <= self.options.compact_rows_max
                })
                .collect();
            if run.len() >= 2 {
                return run;
            }
        }
        Vec::new()
    }

    async fn compact_inner(
        &self,
        partition: &dyn Fn(&str, &str) -> i64,
    ) -> Result<Option<CompactSummary>, EngineError> {
        // Nothing to look at again until the segments change.
        let version = self.manifest.borrow().version;
        if self.compacted_at.get() == Some(version) {
            return Ok(None);
        }
        let run = self.compaction_run(partition);
        if run.is_empty() {
            self.compacted_at.set(Some(version));
            return Ok(None);
        }
        let mut decoded = Vec::with_capacity(run.len());
        for meta in &run {
            decoded.push(self.load_segment(meta, None, &[]).await?.0);
        }
        let first = &run[0];
        let (tenant, database, table) = (&first.tenant, &first.database, &first.table);
        let id = self.manifest.borrow().next_segment;
        let path = manifest::segment_path(id);
        let scans: Vec<TableScan<'_>> = decoded
            .iter()
            .filter_map(|m| m.scan(tenant, database, table))
            .collect();
        let mut summary = CompactSummary {
            removed: run.len() as u64,
            bytes_before: run.iter().map(|s| s.bytes).sum(),
            ..CompactSummary::default()
        };
        let union = Union::build(&scans);
        let encoded = match Layered::new(&scans, &union) {
            None => None,
            Some(layered) => {
                let scan = layered.scan();
                let series = segment::sorted_series(&scan);
                let mut encoder =
                    segment::Encoder::new(&scan, &series, (i64::MIN, i64::MAX), &path)?;
                let mut points = 0;
                for s in &series {
                    points += encoder.push(s)?.max(1);
                    if points >= 8192 {
                        points = 0;
                        glommio::yield_if_needed().await;
                    }
                }
                encoder.finish()?
            }
        };
        let flushed_seq = run.iter().map(|s| s.flushed_seq).max().unwrap_or(0);
        let mut written = None;
        if let Some(e) = &encoded {
            segment::write_file(&self.storage, &path, &e.bytes).await?;
            self.storage.sync_dir(manifest::SEGMENTS_DIR).await?;
            summary.written = 1;
            summary.rows = e.rows;
            summary.bytes_after = e.bytes.len() as u64;
            written = Some(SegmentMeta {
                id,
                tenant: tenant.clone(),
                database: database.clone(),
                table: table.clone(),
                min_time: e.min_time,
                max_time: e.max_time,
                rows: e.rows,
                series: e.series,
                bytes: e.bytes.len() as u64,
                flushed_seq,
                footer_crc32c: e.footer_crc32c,
            });
        }
        let ids: Vec<u64> = run.iter().map(|s| s.id).collect();
        self.replace_segments(&ids, written, id + 1).await?;
        info!(
            dir = %self.options.dir.display(),
            merged = summary.removed,
            rows = summary.rows,
            bytes_before = summary.bytes_before,
            bytes_after = summary.bytes_after,
            "segments compacted"
        );
        Ok(Some(summary))
    }

    /// Drops every segment whose points are all older than its database's cutoff
    /// (`cutoff(tenant, database)`, in the database's unit; None: no retention), and every
    /// segment of a dropped table or database (its tombstone removes the whole table).
    pub async fn expire(
        &self,
        cutoff: &dyn Fn(&str, &str) -> Option<i64>,
    ) -> Result<CompactSummary, EngineError> {
        let dropped = |s: &SegmentMeta| {
            self.tombstones
                .borrow()
                .iter()
                .any(|t| t.delete.drops_tables() && t.applies_to(s))
        };
        let expired: Vec<SegmentMeta> = self
            .manifest
            .borrow()
            .segments
            .iter()
            .filter(|s| {
                cutoff(&s.tenant, &s.database).is_some_and(|c| s.max_time < c) || dropped(s)
            })
            .cloned()
            .collect();
        if expired.is_empty() {
            return Ok(CompactSummary::default());
        }
        if self.flushing.replace(true) {
            return Err(EngineError::FlushRunning);
        }
        let ids: Vec<u64> = expired.iter().map(|s| s.id).collect();
        let next_id = self.manifest.borrow().next_segment;
        let result = self.replace_segments(&ids, None, next_id).await;
        self.flushing.set(false);
        result?;
        info!(dir = %self.options.dir.display(), segments = ids.len(), "expired segments dropped");
        Ok(CompactSummary {
            removed: ids.len() as u64,
            bytes_before: expired.iter().map(|s| s.bytes).sum(),
            ..CompactSummary::default()
        })
    }

    /// Replaces segments `ids` by `with` (at the first one's place) in a new durable manifest,
    /// then deletes their files once no read is still loading them.
    async fn replace_segments(
        &self,
        ids: &[u64],
        with: Option<SegmentMeta>,
        next_segment: u64,
    ) -> Result<(), EngineError> {
        let mut next = self.manifest.borrow().clone();
        let at = next.segments.iter().position(|s| ids.contains(&s.id));
        next.segments.retain(|s| !ids.contains(&s.id));
        if let Some(w) = with {
            next.segments.insert(
                at.unwrap_or(next.segments.len()).min(next.segments.len()),
                w,
            );
        }
        next.version += 1;
        next.next_segment = next_segment;
        self.install(next).await?;
        self.cache.borrow_mut().drop_where(|id| ids.contains(&id));
        // A read that listed a removed segment but has not loaded it yet must finish loading
        // before the file goes (reads that loaded it hold it in memory).
        let deadline = Instant::now() + UNPIN_WAIT;
        while Instant::now() < deadline && self.loading_any(ids) {
            Timer::new(Duration::from_millis(ROOM_POLL_MS)).await;
        }
        for id in ids {
            self.storage.remove(&manifest::segment_path(*id)).await?;
        }
        self.storage.sync_dir(manifest::SEGMENTS_DIR).await?;
        Ok(())
    }

    /// Makes `next` (with the tombstones that hit one of its segments) the durable manifest.
    /// Tombstones that hit no live segment are done with: a delete logged during the store is
    /// kept if it hits one of the new segments, and if not, it has nothing to remove.
    async fn install(&self, mut next: Manifest) -> Result<(), EngineError> {
        next.tombstones = self
            .tombstones
            .borrow()
            .iter()
            .filter(|t| next.segments.iter().any(|s| t.applies_to(s)))
            .cloned()
            .collect();
        next.store(&self.storage).await?;
        self.tombstones
            .borrow_mut()
            .retain(|t| next.segments.iter().any(|s| t.applies_to(s)));
        *self.manifest.borrow_mut() = next;
        Ok(())
    }

    fn loading_any(&self, ids: &[u64]) -> bool {
        self.reads.borrow().values().any(|r| {
            r.layers
                .iter()
                .any(|l| matches!(l, Layer::Segment(id, None) if ids.contains(id)))
        })
    }

    /// Opens a read of one table over `time` (`[min, max)`) needing `fields` (None: all):
    /// pins its layers and starts loading its segments. Returns the read's id.
    pub fn open_read(
        self: &Rc<Self>,
        (tenant, database, table): (&str, &str, &str),
        time: (i64, i64),
        fields: Option<Vec<String>>,
        tag_filters: &[(String, Vec<String>)],
    ) -> u64 {
        let id = self.next_read.get();
        self.next_read.set(id + 1);
        let fields = fields.map(|mut f| {
            f.sort_unstable();
            f.dedup();
            f
        });
        let mut metas: Vec<SegmentMeta> = self
            .manifest
            .borrow()
            .segments
            .iter()
            .filter(|s| {
                s.tenant == tenant
                    && s.database == database
                    && s.table == table
                    && s.min_time < time.1
                    && s.max_time >= time.0
            })
            .cloned()
            .collect();
        // Oldest first: a newer segment's write wins over an older one's.
        metas.sort_by_key(|s| (s.flushed_seq, s.id));
        let mut layers = Vec::with_capacity(metas.len() + 2);
        let mut loads = Vec::new();
        for meta in metas {
            let key = (meta.id, fields.clone());
            match self.cache.borrow_mut().get(&key) {
                Some(m) => layers.push(Layer::Segment(meta.id, Some(m))),
                None => {
                    loads.push((layers.len(), meta.clone()));
                    layers.push(Layer::Segment(meta.id, None));
                }
            }
        }
        if let Some(f) = self.frozen.borrow().as_ref() {
            layers.push(Layer::Frozen(Rc::clone(f)));
        }
        layers.push(Layer::Live);
        let mut reads = self.reads.borrow_mut();
        if reads.len() >= READS_MAX {
            if let Some(oldest) = reads.keys().next().copied() {
                if let Some(mut r) = reads.remove(&oldest) {
                    if let Some(w) = r.waker.take() {
                        w.wake();
                    }
                }
                warn!(read = oldest, "too many open reads: the oldest was closed");
            }
        }
        reads.insert(
            id,
            Read {
                tenant: tenant.to_string(),
                database: database.to_string(),
                table: table.to_string(),
                layers,
                shape: None,
                loading: loads.len(),
                waker: None,
                error: None,
            },
        );
        drop(reads);
        for (layer, meta) in loads {
            let engine = Rc::clone(self);
            let fields = fields.clone();
            let filters = tag_filters.to_vec();
            glommio::spawn_local(async move {
                let loaded = engine.load_segment(&meta, fields.clone(), &filters).await;
                engine.loaded(id, layer, &meta, fields, loaded);
            })
            .detach();
        }
        id
    }

    /// Reads and decodes one segment into a read-only memtable, tombstones applied.
    /// Only the row groups that may hold rows passing `tag_filters` are read; the answer says
    /// whether that was all of them.
    async fn load_segment(
        &self,
        meta: &SegmentMeta,
        fields: Option<Vec<String>>,
        tag_filters: &[(String, Vec<String>)],
    ) -> Result<(Rc<Memtable>, bool), EngineError> {
        let path = meta.path();
        let read = segment::read(
            &self.storage,
            &path,
            (meta.bytes, meta.footer_crc32c),
            fields.as_deref(),
            tag_filters,
        )
        .await?;
        let whole = read.is_whole();
        let mut m = Memtable::new(usize::MAX);
        for batch in read.batches()? {
            m.insert(&batch?)?;
            glommio::yield_if_needed().await;
        }
        for t in self
            .tombstones
            .borrow()
            .iter()
            .filter(|t| t.applies_to(meta))
        {
            m.delete(&t.delete);
        }
        Ok((Rc::new(m), whole))
    }

    fn loaded(
        &self,
        id: u64,
        layer: usize,
        meta: &SegmentMeta,
        fields: Option<Vec<String>>,
        loaded: Result<(Rc<Memtable>, bool), EngineError>,
    ) {
        let loaded = loaded.map(|(m, whole)| {
            let live = self
                .manifest
                .borrow()
                .segments
                .iter()
                .any(|s| s.id == meta.id);
            // Only whole decodes are cached: a part is what one query's tag filters kept.
            if live && whole {
                self.cache.borrow_mut().put(
                    (meta.id, fields),
                    Rc::clone(&m),
                    self.options.segment_cache_bytes,
                );
            }
            m
        });
        let mut reads = self.reads.borrow_mut();
        let Some(read) = reads.get_mut(&id) else {
            return;
        };
        match loaded {
            Ok(m) => read.layers[layer] = Layer::Segment(meta.id, Some(m)),
            Err(e) => {
                let error = EngineError::SegmentRead {
                    id: meta.id,
                    path: self.storage.describe(&meta.path()).display().to_string(),
                    why: e.to_string(),
                };
                warn!(error = %error, "segment read failed");
                read.error.get_or_insert(error.to_string());
            }
        }
        read.loading -= 1;
        if read.loading == 0 {
            if let Some(w) = read.waker.take() {
                w.wake();
            }
        }
    }

    /// Ends a read: its pinned layers are released.
    pub fn close_read(&self, id: u64) {
        self.reads.borrow_mut().remove(&id);
    }

    /// One step of read `id`: `f` over the read's table, its layers merged (None when no layer
    /// holds the table). `Pending` (with `waker` woken later) while its segments load.
    pub fn with_read<R>(
        &self,
        id: u64,
        waker: &Waker,
        f: impl FnOnce(Option<TableScan<'_>>) -> R,
    ) -> Poll<Result<R, EngineError>> {
        {
            let mut reads = self.reads.borrow_mut();
            let Some(read) = reads.get_mut(&id) else {
                return Poll::Ready(Err(EngineError::ReadGone(id)));
            };
            if let Some(e) = &read.error {
                return Poll::Ready(Err(EngineError::ReadFailed {
                    table: read.table.clone(),
                    why: e.clone(),
                }));
            }
            if read.loading > 0 {
                read.waker = Some(waker.clone());
                return Poll::Pending;
            }
            if read.shape.is_none() {
                let shape = self.shape_of(read);
                read.shape = Some(shape);
            }
        }
        let reads = self.reads.borrow();
        let Some(read) = reads.get(&id) else {
            return Poll::Ready(Err(EngineError::ReadGone(id)));
        };
        let borrowed = Borrowed::new(self, read);
        let scan_of = |i: usize| borrowed.scan(read, i);
        Poll::Ready(Ok(match &read.shape {
            None | Some(Shape::Empty) => f(None),
            Some(Shape::One(i)) => f(scan_of(*i)),
            Some(Shape::Many(layers, union)) => {
                let scans: Option<Vec<TableScan<'_>>> =
                    layers.iter().map(|&i| scan_of(i)).collect();
                let layered = scans.and_then(|s| Layered::new(&s, union));
                match &layered {
                    Some(l) => f(Some(l.scan())),
                    None => f(None),
                }
            }
        }))
    }

    /// Which layers of `read` hold its table, and their union when several do.
    fn shape_of(&self, read: &Read) -> Shape {
        let borrowed = Borrowed::new(self, read);
        let mut held = Vec::new();
        let mut scans = Vec::new();
        for i in 0..read.layers.len() {
            if let Some(s) = borrowed.scan(read, i) {
                held.push(i);
                scans.push(s);
            }
        }
        match held.len() {
            0 => Shape::Empty,
            1 => Shape::One(held[0]),
            _ => {
                let union = Union::build(&scans);
                Shape::Many(held, union)
            }
        }
    }

    /// Syncs what the WAL holds; called on graceful shutdown.
    pub async fn close(&self) -> Result<(), EngineError> {
        self.wal.sync().await?;
        Ok(())
    }
}
