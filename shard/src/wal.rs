//! The shard's write-ahead log: every write batch is appended here, durably, before it enters
//! the memtable; on start the shard replays it.
//!
//! Shape (byte layout in `docs/formats.md`, "WAL"):
//! - Segment files `wal-<first seq, 20 digits>.log` in one directory, preallocated
//!   ([`WalOptions::segment_bytes`]), written only in whole 4096-byte blocks at aligned offsets
//!   (`O_DIRECT`). Records `[len u32][crc32c u32][seq u64][payload]` are packed back to back; the
//!   last block is zero-padded; a partially filled block is rewritten, from an in-memory copy,
//!   together with the next records. Records never span segments; a record larger than a
//!   segment gets a segment of its own.
//! - Sequence numbers are consecutive from 1 (or from the first segment's name), across
//!   segments. A replayed record must have the expected sequence number, a matching checksum,
//!   and fit its segment; the first one that does not ends that segment's log (logged with
//!   `warn!`, reported in [`ReplaySummary::cuts`]); the next segment must then start at the
//!   next expected number, and if it does not, it and every later segment are set aside
//!   (renamed `*.discarded`) because they cannot belong to the same history.
//! - Every [`Wal::open`] starts a fresh segment. Old segments are never written again, so the
//!   bytes after a torn or corrupt tail stay where replay stops, forever; and a fresh segment
//!   reads as zeros past what this process wrote. That is why stale bytes of an earlier run can
//!   never be read as records, without zeroing anything ahead of the write position.
//! - Group commit: appends queue their encoded record; one writer task takes everything queued,
//!   writes it with one aligned write per segment it touches and, in [`WalMode::Sync`], one
//!   fdatasync, then completes every append it covered. Appends that arrive meanwhile form
//!   the next group.
//! - A failed write or sync poisons the log: after an fsync error the kernel may have dropped
//!   the dirty data, so nothing later can be acknowledged honestly. Every waiting and later
//!   append gets [`WalError::Failed`]; reopening replays what is really on disk.
//!
//! Opening: [`Wal::open`] reads every record into memory and returns the log with them;
//! [`Wal::open_streaming`] hands out one record at a time ([`WalReplay::next_record`]) and then
//! the log ([`WalReplay::into_wal`]), for logs larger than memory should hold twice.
//!
//! Guarantees, by function name: [`Wal::append`] returns once the record has the durability the
//! mode promises (`Sync`: fdatasync'd; `Interval`: written to the device, fdatasync'd within the
//! interval; `Off`: written to the device, never synced by the log). [`Wal::append_unconfirmed`]
//! returns once the record is queued (nothing on disk yet); [`Wal::confirm`] then waits for the
//! mode's guarantee. [`Wal::sync`] makes everything appended so far durable in any mode.
//!
//! Bounds: a record's payload is at most [`WalOptions::record_bytes_max`]; at most
//! [`WalOptions::queue_bytes_max`] bytes wait for a group commit (one larger record may wait
//! alone); an append that finds no room waits up to [`WalOptions::queue_wait_ms`] and then
//! fails with [`WalError::Full`], which the server answers with 429 and `Retry-After`.

mod record;
mod replay;
mod writer;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_lite::future::poll_fn;
use glommio::Task;

use crate::io::{IoError, Storage};

pub use replay::{CutReason, ReplaySummary, TailCut, WalRecord, WalReplay};

use record::{BLOCK_BYTES, HEADER_BYTES};

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalMode {
    /// `append` returns after the fdatasync that covers the record (group commit).
    Sync,
    /// `append` returns once the record is written; a timer syncs every `interval_ms`.
    Interval { interval_ms: u64 },
    /// `append` returns once the record is written; the log never syncs on its own.
    Off,
}

#[derive(Debug, Clone)]
pub struct WalOptions {
    pub mode: WalMode,
    /// Preallocated size of a segment; a multiple of 4096.
    pub segment_bytes: u64,
    /// Largest payload `append` accepts.
    pub record_bytes_max: usize,
    /// Bytes of encoded records that may wait for the next group commit.
    pub queue_bytes_max: usize,
    /// How long an append waits for room in the queue before [`WalError::Full`].
    pub queue_wait_ms: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            mode: WalMode::Sync,
            segment_bytes: 64 << 20,
            record_bytes_max: 64 << 20,
            queue_bytes_max: 32 << 20,
            queue_wait_ms: 5_000,
        }
    }
}

/// The ceiling on `record_bytes_max`: the length field is a u32, and a record plus its header
/// must stay addressable in one segment.
const RECORD_BYTES_LIMIT: usize = (u32::MAX as usize) - BLOCK_BYTES;
const _: () = assert!(RECORD_BYTES_LIMIT + HEADER_BYTES <= u32::MAX as usize);

impl WalOptions {
    /// The defaults with `mode`.
    pub fn new(mode: WalMode) -> Self {
        WalOptions {
            mode,
            ..WalOptions::default()
        }
    }

    fn check(&self) -> Result<(), WalError> {
        let bad = |why: String| Err(WalError::Options(why));
        if self.segment_bytes == 0 || self.segment_bytes % BLOCK_BYTES as u64 != 0 {
            return bad(format!(
                "segment_bytes {} is not a positive multiple of {BLOCK_BYTES}",
                self.segment_bytes
            ));
        }
        if self.record_bytes_max == 0 || self.record_bytes_max > RECORD_BYTES_LIMIT {
            return bad(format!(
                "record_bytes_max {} is not in 1..={RECORD_BYTES_LIMIT}",
                self.record_bytes_max
            ));
        }
        if self.queue_bytes_max == 0 {
            return bad("queue_bytes_max is 0".into());
        }
        if let WalMode::Interval { interval_ms: 0 } = self.mode {
            return bad("interval_ms is 0".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal: {0}")]
    Io(#[from] IoError),
    #[error("wal {}: an earlier write or sync failed, so the log accepts nothing until it is reopened: {cause}", dir.display())]
    Failed { dir: PathBuf, cause: Arc<IoError> },
    #[error("wal: record of {len} bytes is over the {max}-byte limit")]
    RecordTooLarge { len: usize, max: usize },
    #[error("wal: empty record (a zero length marks the end of the log)")]
    EmptyRecord,
    #[error("wal {}: {queued_bytes} bytes wait for a group commit; {len} more found no room within {waited_ms} ms", dir.display())]
    Full {
        dir: PathBuf,
        queued_bytes: usize,
        len: usize,
        waited_ms: u64,
    },
    #[error("wal options: {0}")]
    Options(String),
}

/// Counters since open; cheap to copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records accepted (queued).
    pub appends: u64,
    /// Payload bytes accepted.
    pub append_bytes: u64,
    /// Groups of records written together (one or two writes each).
    pub group_commits: u64,
    /// Aligned block writes issued.
    pub writes: u64,
    /// Bytes written, including rewritten tail blocks and padding.
    pub write_bytes: u64,
    /// Segment fdatasyncs.
    pub syncs: u64,
    /// Directory fsyncs.
    pub dir_syncs: u64,
    pub segments_created: u64,
    pub segments_removed: u64,
    /// Appends refused with [`WalError::Full`].
    pub queue_full: u64,
    /// Highest sequence number handed out (or replayed).
    pub last_seq: u64,
    /// Highest sequence number written to the device.
    pub written_seq: u64,
    /// Highest sequence number fdatasync'd.
    pub durable_seq: u64,
}

/// Every record of a log, read by [`Wal::open`]: iterate for `(seq, payload)` in order.
#[derive(Debug)]
pub struct Replay {
    records: std::vec::IntoIter<(u64, Vec<u8>)>,
    summary: ReplaySummary,
}

impl Replay {
    /// What the replay found: counts, cut tails, segments set aside.
    pub fn summary(&self) -> &ReplaySummary {
        &self.summary
    }
}

impl Iterator for Replay {
    type Item = (u64, Vec<u8>);

    fn next(&mut self) -> Option<(u64, Vec<u8>)> {
        self.records.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.records.size_hint()
    }
}

impl ExactSizeIterator for Replay {}

/// A live segment: its name's first sequence number and its path in the storage.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SegmentMeta {
    first_seq: u64,
    path: String,
}

fn segment_name(first_seq: u64) -> String {
    format!("wal-{first_seq:020}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Sequence numbers start at 1.
    digits.parse().ok().filter(|&seq| seq > 0)
}

/// State shared by the handle, the writer task and the interval timer. Never borrowed across
/// an await.
struct State {
    next_seq: u64,
    /// Encoded records waiting for the writer, in sequence order.
    queue: VecDeque<(u64, Vec<u8>)>,
    queue_bytes: usize,
    written_seq: u64,
    durable_seq: u64,
    sync_requested: bool,
    closing: bool,
    failed: Option<Arc<IoError>>,
    writer_waker: Option<Waker>,
    /// Appends waiting for room or for their record's durability; all woken on any progress.
    waiters: Vec<Waker>,
    segments: Vec<SegmentMeta>,
    stats: WalStats,
}

impl State {
    fn acked_seq(&self, mode: WalMode) -> u64 {
        match mode {
            WalMode::Sync => self.durable_seq,
            WalMode::Interval { .. } | WalMode::Off => self.written_seq,
        }
    }

    fn wake_waiters(&mut self) {
        self.waiters.drain(..).for_each(Waker::wake);
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
    }
}

struct Shared<S> {
    storage: S,
    dir: String,
    options: WalOptions,
    state: RefCell<State>,
}

impl<S: Storage> Shared<S> {
    fn failed(&self, cause: &Arc<IoError>) -> WalError {
        WalError::Failed {
            dir: self.storage.describe(&self.dir),
            cause: cause.clone(),
        }
    }
}

/// The per-shard write-ahead log. Share it between a shard's tasks with `Rc<Wal<_>>`.
pub struct Wal<S: Storage + 'static> {
    shared: Rc<Shared<S>>,
    writer: Option<Task<()>>,
    timer: Option<Task<()>>,
}

impl<S: Storage + 'static> Wal<S> {
    /// Opens the log in `dir` of `storage` (created if missing), reads every valid record into
    /// memory, and returns the log, ready for appends in a fresh segment, with the records.
    /// [`open_streaming`](Self::open_streaming) does the same with one record in memory at a time.
    pub async fn open(
        storage: S,
        dir: &str,
        options: WalOptions,
    ) -> Result<(Wal<S>, Replay), WalError> {
        let mut replay = Self::open_streaming(storage, dir, options).await?;
        let mut records = Vec::new();
        while let Some(r) = replay.next_record().await? {
            records.push((r.seq, r.payload));
        }
        let summary = replay.summary().clone();
        let wal = replay.into_wal().await?;
        let replay = Replay {
            records: records.into_iter(),
            summary,
        };
        Ok((wal, replay))
    }

    /// Opens the log in `dir` of `storage` (created if missing) for a streamed replay: read the
    /// records with [`WalReplay::next_record`], then call [`WalReplay::into_wal`] for the log.
    pub async fn open_streaming(
        storage: S,
        dir: &str,
        options: WalOptions,
    ) -> Result<WalReplay<S>, WalError> {
        options.check()?;
        WalReplay::start(storage, dir, options).await
    }

    /// Appends `payload` and returns its sequence number once the record is as durable as the
    /// mode promises (see the module docs). If this future is dropped after the record was
    /// queued, the record is still written; its number is used up either way.
    pub async fn append(&self, payload: &[u8]) -> Result<u64, WalError> {
        let seq = self.append_unconfirmed(payload).await?;
        self.confirm(seq).await?;
        Ok(seq)
    }

    /// Queues `payload` for the next group commit and returns its sequence number. Nothing is
    /// on disk yet; [`confirm`](Self::confirm) waits for that. Waits for room in the queue (up
    /// to `queue_wait_ms`, then [`WalError::Full`]).
    pub async fn append_unconfirmed(&self, payload: &[u8]) -> Result<u64, WalError> {
        let max = self.shared.options.record_bytes_max;
        if payload.is_empty() {
            return Err(WalError::EmptyRecord);
        }
        if payload.len() > max {
            let len = payload.len();
            return Err(WalError::RecordTooLarge { len, max });
        }
        let len = HEADER_BYTES + payload.len();
        self.wait_for_room(len).await?;
        let mut st = self.shared.state.borrow_mut();
        if let Some(cause) = &st.failed {
            return Err(self.shared.failed(cause));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.queue.push_back((seq, record::encode(seq, payload)));
        st.queue_bytes += len;
        st.stats.appends += 1;
        st.stats.append_bytes += payload.len() as u64;
        st.stats.last_seq = seq;
        st.wake_writer();
        Ok(seq)
    }

    /// Waits until record `seq` (already appended) is as durable as the mode promises.
    pub async fn confirm(&self, seq: u64) -> Result<(), WalError> {
        let mode = self.shared.options.mode;
        poll_fn(|cx| {
            let mut st = self.shared.state.borrow_mut();
            assert!(
                seq < st.next_seq,
                "confirm({seq}) of a record never appended"
            );
            if st.acked_seq(mode) >= seq {
                return Poll::Ready(Ok(()));
            }
            if let Some(cause) = &st.failed {
                return Poll::Ready(Err(self.shared.failed(cause)));
            }
            st.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Makes every record appended so far durable (written and fdatasync'd, with the directory
    /// entries of new segments), whatever the mode; returns the highest durable sequence number.
    /// For shutdown and for callers that need a barrier.
    pub async fn sync(&self) -> Result<u64, WalError> {
        let target = {
            let mut st = self.shared.state.borrow_mut();
            if let Some(cause) = &st.failed {
                return Err(self.shared.failed(cause));
            }
            let target = st.next_seq - 1;
            if st.durable_seq < target {
                st.sync_requested = true;
                st.wake_writer();
            }
            target
        };
        poll_fn(|cx| {
            let mut st = self.shared.state.borrow_mut();
            if st.durable_seq >= target {
                return Poll::Ready(Ok(target));
            }
            if let Some(cause) = &st.failed {
                return Poll::Ready(Err(self.shared.failed(cause)));
            }
            st.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Deletes every whole segment whose records all have sequence numbers below `seq` (their
    /// rows are in flushed segments). The segment being written is never deleted. Segments go
    /// oldest first, then the directory is synced, so a crash leaves a suffix of the log.
    /// Returns how many segments were deleted.
    pub async fn remove_segments_before(&self, seq: u64) -> Result<usize, WalError> {
        let victims: Vec<SegmentMeta> = {
            let mut st = self.shared.state.borrow_mut();
            let n = st
                .segments
                .iter()
                .skip(1)
                .take_while(|s| s.first_seq <= seq)
                .count();
            st.segments.drain(..n).collect()
        };
        if victims.is_empty() {
            return Ok(0);
        }
        let storage = &self.shared.storage;
        for v in &victims {
            storage.remove(&v.path).await?;
            tracing::debug!(segment = %storage.describe(&v.path).display(), "wal segment removed");
        }
        if self.shared.options.mode != WalMode::Off {
            storage.sync_dir(&self.shared.dir).await?;
            self.shared.state.borrow_mut().stats.dir_syncs += 1;
        }
        self.shared.state.borrow_mut().stats.segments_removed += victims.len() as u64;
        Ok(victims.len())
    }

    pub fn stats(&self) -> WalStats {
        self.shared.state.borrow().stats
    }

    /// Highest sequence number handed out or replayed (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        self.shared.state.borrow().next_seq - 1
    }

    pub fn mode(&self) -> WalMode {
        self.shared.options.mode
    }

    /// Writes what is queued, syncs (unless the mode is `Off`), and stops the log's tasks.
    pub async fn close(mut self) -> Result<(), WalError> {
        self.shared.state.borrow_mut().closing = true;
        self.shared.state.borrow_mut().wake_writer();
        if let Some(timer) = self.timer.take() {
            timer.cancel().await;
        }
        if let Some(writer) = self.writer.take() {
            writer.await;
        }
        let st = self.shared.state.borrow();
        match &st.failed {
            Some(cause) => Err(self.shared.failed(cause)),
            None => Ok(()),
        }
    }

    /// Waits until `len` more queued bytes fit under `queue_bytes_max` (or the queue is empty),
    /// at most `queue_wait_ms`.
    async fn wait_for_room(&self, len: usize) -> Result<(), WalError> {
        if self.has_room(len)? {
            return Ok(());
        }
        let room = poll_fn(|cx| match self.has_room(len) {
            Ok(false) => {
                self.shared
                    .state
                    .borrow_mut()
                    .waiters
                    .push(cx.waker().clone());
                Poll::Pending
            }
            Ok(true) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e)),
        });
        let waited_ms = self.shared.options.queue_wait_ms;
        let deadline = async {
            glommio::timer::sleep(Duration::from_millis(waited_ms)).await;
            let mut st = self.shared.state.borrow_mut();
            st.stats.queue_full += 1;
            Err(WalError::Full {
                dir: self.shared.storage.describe(&self.shared.dir),
                queued_bytes: st.queue_bytes,
                len,
                waited_ms,
            })
        };
        futures_lite::future::or(room, deadline).await
    }

    fn has_room(&self, len: usize) -> Result<bool, WalError> {
        let st = self.shared.state.borrow();
        if let Some(cause) = &st.failed {
            return Err(self.shared.failed(cause));
        }
        Ok(st.queue_bytes == 0 || st.queue_bytes + len <= self.shared.options.queue_bytes_max)
    }

    /// Starts the writer (and, in `Interval` mode, the sync timer) over a fresh segment.
    fn start(shared: Rc<Shared<S>>, active: writer::Active<S::File>) -> Wal<S> {
        let writer = glommio::spawn_local(writer::Writer::new(shared.clone(), active).run());
        let timer = match shared.options.mode {
            WalMode::Interval { interval_ms } => {
                let interval = Duration::from_millis(interval_ms);
                Some(glommio::spawn_local(interval_syncs(
                    shared.clone(),
                    interval,
                )))
            }
            WalMode::Sync | WalMode::Off => None,
        };
        Wal {
            shared,
            writer: Some(writer),
            timer,
        }
    }
}

impl<S: Storage + 'static> std::fmt::Debug for Wal<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.state.borrow();
        f.debug_struct("Wal")
            .field("dir", &self.shared.storage.describe(&self.shared.dir))
            .field("mode", &self.shared.options.mode)
            .field("stats", &st.stats)
            .field("failed", &st.failed)
            .finish()
    }
}

impl<S: Storage + 'static> Drop for Wal<S> {
    /// Without `close`, the writer still writes what was queued (without a final sync) and
    /// exits; the timer stops.
    fn drop(&mut self) {
        if let Ok(mut st) = self.shared.state.try_borrow_mut() {
            st.closing = true;
            st.wake_writer();
        }
        if let Some(writer) = self.writer.take() {
            writer.detach();
        }
    }
}

/// `Interval` mode: asks the writer for a sync every `interval` if anything written is not
/// yet durable.
async fn interval_syncs<S: Storage>(shared: Rc<Shared<S>>, interval: Duration) {
    loop {
        glommio::timer::sleep(interval).await;
        let mut st = shared.state.borrow_mut();
        if st.closing || st.failed.is_some() {
            return;
        }
        if st.written_seq > st.durable_seq {
            st.sync_requested = true;
            st.wake_writer();
        }
    }
}
