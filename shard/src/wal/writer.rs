//! The WAL's writer task: the only code that writes segments. It takes every queued record at
//! once (a group), writes them with one aligned write per segment touched, syncs when the mode
//! or a `sync()` asks, then publishes the new written/durable sequence numbers and wakes the
//! appends waiting on them.
//!
//! Invariants:
//! - A segment is written strictly front to back. Each write starts at the block holding the
//!   write position: that block is rewritten from `Active::tail` (a copy of its bytes so far)
//!   followed by the new records and zero padding to the block's end. So the bytes before the
//!   write position never change, and the bytes after it are zeros (the segment was freshly
//!   preallocated by this process).
//! - Before every write the new records are re-parsed and their checksums recomputed
//!   (`record::check_run`), and the write is asserted to be aligned and inside the segment.
//! - In `Sync` and `Interval` modes a segment is fdatasync'd before the next one is created,
//!   and a new segment is fdatasync'd and its directory fsync'd before any record goes in: a
//!   later segment exists on disk only if every earlier one is complete on disk. `Off` skips
//!   all of that and remembers what to sync if `Wal::sync` is called.

use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use futures_lite::future::poll_fn;

use super::record::{self, BLOCK_BYTES};
use super::{segment_name, SegmentMeta, Shared, WalMode};
use crate::io::{join, IoError, Storage, StorageFile};

/// The segment being written.
pub(super) struct Active<F> {
    pub file: F,
    pub path: String,
    pub capacity: u64,
    /// Offset just past the last record written.
    pub write_pos: u64,
    /// The bytes of the block holding `write_pos`, up to it (empty when it is block-aligned).
    pub tail: Vec<u8>,
    /// Written since the last fdatasync.
    pub dirty: bool,
}

/// Creates (or truncates and reuses) segment `wal-<first_seq>.log`, preallocated to `capacity`
/// bytes. With `durable`, the file and its directory entry are synced before it is returned.
pub(super) async fn create_segment<S: Storage>(
    storage: &S,
    dir: &str,
    first_seq: u64,
    capacity: u64,
    durable: bool,
) -> Result<Active<S::File>, IoError> {
    assert!(capacity > 0 && capacity % BLOCK_BYTES as u64 == 0);
    let path = join(dir, &segment_name(first_seq));
    let file = storage.open(&path, true).await?;
    // A reused name held no valid record, but may hold stale bytes: start from zeros.
    file.set_len(0).await?;
    file.allocate(capacity).await?;
    if durable {
        file.sync().await?;
        storage.sync_dir(dir).await?;
    }
    tracing::debug!(segment = %file.path().display(), capacity, "wal segment created");
    Ok(Active {
        file,
        path,
        capacity,
        write_pos: 0,
        tail: Vec::new(),
        dirty: false,
    })
}

/// What the writer does next: write these records (if any), then sync if asked, then maybe exit.
struct Job {
    records: Vec<(u64, Vec<u8>)>,
    sync: bool,
    exit: bool,
}

pub(super) struct Writer<S: Storage> {
    shared: Rc<Shared<S>>,
    active: Active<S::File>,
    /// `Off` mode: rolled-away segments with unsynced writes, synced by the next `Wal::sync`.
    retired: Vec<S::File>,
    /// `Off` mode: a segment was created without syncing its directory.
    dir_dirty: bool,
    /// `active.tail` followed by the staged records (unpadded).
    buf: Vec<u8>,
    /// First and last sequence number staged in `buf`.
    staged: Option<(u64, u64)>,
}

impl<S: Storage> Writer<S> {
    pub fn new(shared: Rc<Shared<S>>, active: Active<S::File>) -> Self {
        Writer {
            shared,
            active,
            retired: Vec::new(),
            dir_dirty: false,
            buf: Vec::new(),
            staged: None,
        }
    }

    pub async fn run(mut self) {
        loop {
            let job = self.next_job().await;
            let exit = job.exit;
            if let Err(e) = self.commit(job).await {
                self.fail(e);
                return;
            }
            if exit {
                return;
            }
        }
    }

    fn next_job(&self) -> impl std::future::Future<Output = Job> + '_ {
        let mode = self.shared.options.mode;
        poll_fn(move |cx| {
            let mut st = self.shared.state.borrow_mut();
            if st.queue.is_empty() && !st.sync_requested && !st.closing {
                st.writer_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let records: Vec<_> = st.queue.drain(..).collect();
            st.queue_bytes = 0;
            let sync = st.sync_requested
                || (mode == WalMode::Sync && !records.is_empty())
                || (st.closing && mode != WalMode::Off);
            st.sync_requested = false;
            // The queue has room again.
            st.wake_waiters();
            Poll::Ready(Job {
                records,
                sync,
                exit: st.closing,
            })
        })
    }

    async fn commit(&mut self, job: Job) -> Result<(), IoError> {
        if !job.records.is_empty() {
            self.shared.state.borrow_mut().stats.group_commits += 1;
        }
        for (seq, rec) in &job.records {
            if self.staged_end() + rec.len() as u64 > self.active.capacity {
                self.flush().await?;
                self.roll(*seq, rec.len() as u64).await?;
            }
            self.stage(*seq, rec);
        }
        self.flush().await?;
        if job.sync {
            self.sync().await?;
        }
        Ok(())
    }

    /// Where the next staged record would start.
    fn staged_end(&self) -> u64 {
        match self.staged {
            None => self.active.write_pos,
            Some(_) => {
                self.active.write_pos - self.active.tail.len() as u64 + self.buf.len() as u64
            }
        }
    }

    fn stage(&mut self, seq: u64, rec: &[u8]) {
        if self.staged.is_none() {
            self.buf.clear();
            self.buf.extend_from_slice(&self.active.tail);
        }
        self.buf.extend_from_slice(rec);
        let first = self.staged.map_or(seq, |(first, _)| first);
        self.staged = Some((first, seq));
    }

    /// Writes the staged records: the tail block and the new bytes, zero-padded to whole
    /// blocks, in one aligned write; then publishes them as written.
    async fn flush(&mut self) -> Result<(), IoError> {
        let Some((first, last)) = self.staged.take() else {
            return Ok(());
        };
        let a = &mut self.active;
        let tail_len = a.tail.len();
        let block_start = a.write_pos - tail_len as u64;
        let data_end = self.buf.len();
        assert_eq!(
            &self.buf[..tail_len],
            &a.tail[..],
            "tail block copy diverged"
        );
        assert_eq!(
            record::check_run(&self.buf[tail_len..], first),
            Ok(last),
            "about to write a bad run"
        );
        self.buf
            .resize(data_end.div_ceil(BLOCK_BYTES) * BLOCK_BYTES, 0);
        assert!(block_start % BLOCK_BYTES as u64 == 0);
        assert!(
            block_start + self.buf.len() as u64 <= a.capacity,
            "write past the segment's end"
        );
        a.file.write_at(block_start, &self.buf).await?;
        a.write_pos = block_start + data_end as u64;
        a.tail = self.buf[data_end / BLOCK_BYTES * BLOCK_BYTES..data_end].to_vec();
        a.dirty = true;
        let mut st = self.shared.state.borrow_mut();
        st.stats.writes += 1;
        st.stats.write_bytes += self.buf.len() as u64;
        st.written_seq = last;
        st.stats.written_seq = last;
        st.wake_waiters();
        Ok(())
    }

    /// Closes the current segment (durably, unless `Off`) and starts `wal-<first_seq>.log`,
    /// big enough for a record of `rec_len` bytes.
    async fn roll(&mut self, first_seq: u64, rec_len: u64) -> Result<(), IoError> {
        let durable = self.shared.options.mode != WalMode::Off;
        if durable && self.active.dirty {
            self.active.file.sync().await?;
            self.active.dirty = false;
            let mut st = self.shared.state.borrow_mut();
            st.stats.syncs += 1;
            st.durable_seq = st.written_seq;
            st.stats.durable_seq = st.written_seq;
            st.wake_waiters();
        }
        let capacity = self
            .shared
            .options
            .segment_bytes
            .max(crate::io::align_up(rec_len));
        let (storage, dir) = (&self.shared.storage, self.shared.dir.as_str());
        let next = create_segment(storage, dir, first_seq, capacity, durable).await?;
        let old = std::mem::replace(&mut self.active, next);
        if old.dirty {
            self.retired.push(old.file);
        }
        self.dir_dirty |= !durable;
        let mut st = self.shared.state.borrow_mut();
        if durable {
            st.stats.syncs += 1;
            st.stats.dir_syncs += 1;
        }
        st.stats.segments_created += 1;
        let path = self.active.path.clone();
        st.segments.push(SegmentMeta { first_seq, path });
        Ok(())
    }

    /// fdatasyncs everything written (and fsyncs the directory if a segment was created
    /// without), then publishes the written records as durable.
    async fn sync(&mut self) -> Result<(), IoError> {
        let mut syncs = 0;
        for file in self.retired.drain(..) {
            file.sync().await?;
            syncs += 1;
        }
        if self.active.dirty {
            self.active.file.sync().await?;
            self.active.dirty = false;
            syncs += 1;
        }
        let dir_sync = std::mem::take(&mut self.dir_dirty);
        if dir_sync {
            self.shared.storage.sync_dir(&self.shared.dir).await?;
        }
        let mut st = self.shared.state.borrow_mut();
        st.stats.syncs += syncs;
        st.stats.dir_syncs += u64::from(dir_sync);
        st.durable_seq = st.written_seq;
        st.stats.durable_seq = st.written_seq;
        st.wake_waiters();
        Ok(())
    }

    /// Poisons the log: no later append can be acknowledged honestly (see the module docs).
    fn fail(&mut self, e: IoError) {
        tracing::error!(error = %e, "wal write failed; the log refuses appends until reopened");
        let mut st = self.shared.state.borrow_mut();
        st.failed = Some(Arc::new(e));
        st.queue.clear();
        st.queue_bytes = 0;
        st.wake_waiters();
    }
}
