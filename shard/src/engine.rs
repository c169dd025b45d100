//! One shard's storage engine: the WAL and the memtable behind one `write`.
//!
//! `write` admits a batch only if the memtable has room for it (waiting up to a bound, then
//! `Busy`), appends it to the WAL (returning once durable per the WAL mode: group commit shares
//! one write and one fdatasync among all appends queued meanwhile), then applies it to the
//! memtable. Admission comes first so the WAL never holds rows the memtable refused. On open,
//! every WAL record is replayed into the memtable.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use tracing::info;

use crate::batch::{self, Delete, Record, WriteBatch};
use crate::io::DmaStorage;
use crate::memtable::Memtable;
use crate::wal::{Wal, WalOptions};

pub use crate::wal::WalMode;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The shard's directory (`data/shard-N`); the WAL lives in `wal/` below it.
    pub dir: PathBuf,
    pub wal_mode: WalMode,
    pub wal_segment_bytes: u64,
    pub memtable_bytes_max: usize,
    /// How long a write waits for memtable room before `Busy`.
    pub full_wait: Duration,
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
}

/// What an engine holds, for /metrics and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    pub rows: u64,
    pub series: u64,
    pub memtable_bytes: u64,
    pub wal_appends: u64,
    pub wal_syncs: u64,
}

/// What replay found at open.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplaySummary {
    pub records: u64,
    pub rows: u64,
}

pub struct Engine {
    wal: Wal<DmaStorage>,
    memtable: RefCell<Memtable>,
    /// Bytes admitted but not yet in the memtable (their WAL append is in flight).
    reserved: Cell<usize>,
    options: EngineOptions,
}

/// Poll period while waiting for memtable room.
const ROOM_POLL_MS: u64 = 10;

impl Engine {
    /// Opens the shard's WAL, replays it into a fresh memtable, and returns the engine.
    pub async fn open(options: EngineOptions) -> Result<(Engine, ReplaySummary), EngineError> {
        let storage = DmaStorage::new(&options.dir);
        let wal_options = WalOptions {
            segment_bytes: options.wal_segment_bytes,
            ..WalOptions::new(options.wal_mode)
        };
        // Streamed: one record in memory at a time, however long the log.
        let mut replay = Wal::open_streaming(storage, "wal", wal_options).await?;
        let mut memtable = Memtable::new(usize::MAX);
        let mut summary = ReplaySummary::default();
        while let Some(record) = replay.next_record().await? {
            let seq = record.seq;
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
                }
            }
            summary.records += 1;
        }
        let wal = replay.into_wal().await?;
        info!(dir = %options.dir.display(), records = summary.records, rows = summary.rows, "WAL replayed");
        let engine = Engine {
            wal,
            memtable: RefCell::new(memtable),
            reserved: Cell::new(0),
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
        let appended = self.wal.append(&payload).await;
        let applied = appended.map_err(EngineError::from).and_then(|_| {
            let mut m = self.memtable.borrow_mut();
            batch
                .tables
                .iter()
                .try_for_each(|t| m.insert(t))
                .map_err(EngineError::from)
        });
        self.reserved.set(self.reserved.get() - need);
        applied
    }

    /// Makes `delete` durable (per the WAL mode), then removes what it matches from the
    /// memtable; returns the points removed. Logged first so that a crash after the answer
    /// cannot bring the points back on replay.
    pub async fn delete(&self, delete: &Delete) -> Result<usize, EngineError> {
        let mut payload = Vec::with_capacity(128);
        batch::encode_delete(delete, &mut payload);
        self.wal.append(&payload).await?;
        Ok(self.memtable.borrow_mut().delete(delete))
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
        EngineStats {
            rows: m.rows() as u64,
            series: m.series_count() as u64,
            memtable_bytes: m.bytes() as u64,
            wal_appends: w.appends,
            wal_syncs: w.syncs,
        }
    }

    /// Read access for scans and tests.
    pub fn memtable(&self) -> std::cell::Ref<'_, Memtable> {
        self.memtable.borrow()
    }

    /// Syncs what the WAL holds; called on graceful shutdown.
    pub async fn close(&self) -> Result<(), EngineError> {
        self.wal.sync().await?;
        Ok(())
    }
}
