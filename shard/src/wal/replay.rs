//! Reading the log back on open: segments in order of their first sequence number, records in
//! order within each, every record checked (length inside the segment, CRC-32C, sequence number
//! = previous + 1) right after it is read.
//!
//! A segment's log ends at a zero length (padding or never written space), at its end, or at
//! the first bad record; a bad record is a cut: logged with `warn!` and kept in
//! [`ReplaySummary::cuts`]. The next segment must be named for the next expected sequence
//! number; if it is not, it and all later segments are renamed `*.discarded` when the replay
//! turns into the log (they belong to no history that continues this one). Reading is
//! streamed, one chunk (or one record, if larger) in memory at a time.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use super::record::{self, Header, HEADER_BYTES};
use super::writer::create_segment;
use super::{
    parse_segment_name, SegmentMeta, Shared, State, Wal, WalError, WalMode, WalOptions, WalStats,
};
use crate::io::{align_down, join, IoError, Storage, StorageFile};

/// Bytes read from a segment at a time during replay.
const READ_CHUNK_BYTES: usize = 1 << 20;
const _: () = assert!(READ_CHUNK_BYTES % record::BLOCK_BYTES == 0);

/// One replayed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Why a segment's log was cut before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CutReason {
    /// The CRC-32C does not match the sequence number and payload (torn or corrupt).
    Checksum,
    /// The record's length runs past the end of the segment.
    Truncated { len: u32 },
    /// A zero length, but other header bytes are not zero.
    Garbage,
    /// A valid record with the wrong sequence number.
    SeqGap { expected: u64, found: u64 },
}

impl std::fmt::Display for CutReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CutReason::Checksum => f.write_str("checksum mismatch"),
            CutReason::Truncated { len } => {
                write!(f, "record of {len} bytes runs past the segment end")
            }
            CutReason::Garbage => f.write_str("zero length with non-zero header"),
            CutReason::SeqGap { expected, found } => {
                write!(f, "sequence {found} where {expected} was expected")
            }
        }
    }
}

/// Where a segment's log was cut, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    pub segment: PathBuf,
    pub offset: u64,
    pub reason: CutReason,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub segments: usize,
    pub records: u64,
    pub payload_bytes: u64,
    /// Sequence number of the last record replayed, or one less than the first expected.
    pub last_seq: u64,
    pub cuts: Vec<TailCut>,
    /// Segments set aside because their name breaks the sequence (renamed on `into_wal`).
    pub discarded: Vec<String>,
}

enum Step {
    Record(WalRecord),
    End(Option<CutReason>),
}

/// Reads one segment front to back through a chunk buffer.
struct SegmentReader<F> {
    file: F,
    len: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<F: StorageFile> SegmentReader<F> {
    /// `n` bytes at `at`, or `None` if the file ends first.
    async fn bytes(&mut self, at: u64, n: usize) -> Result<Option<&[u8]>, IoError> {
        let end = at + n as u64;
        let have = self.buf_start + self.buf.len() as u64;
        if at < self.buf_start || end > have {
            let start = align_down(at);
            let want = ((end - start) as usize).max(READ_CHUNK_BYTES);
            let want = want.min((self.len.max(end) - start) as usize);
            self.buf = self.file.read_at(start, want).await?;
            self.buf_start = start;
        }
        let from = (at - self.buf_start) as usize;
        Ok(self.buf.get(from..from + n))
    }

    async fn next(&mut self, expected: u64) -> Result<Step, IoError> {
        let at = self.pos;
        if at + HEADER_BYTES as u64 > self.len {
            return Ok(Step::End(None));
        }
        let Some(head) = self.bytes(at, HEADER_BYTES).await? else {
            return Ok(Step::End(Some(CutReason::Truncated { len: 0 })));
        };
        let mut h = [0u8; HEADER_BYTES];
        h.copy_from_slice(head);
        let header = Header::parse(&h);
        if header.len == 0 {
            let clean = h.iter().all(|&b| b == 0);
            return Ok(Step::End((!clean).then_some(CutReason::Garbage)));
        }
        let body = at + HEADER_BYTES as u64;
        if body + u64::from(header.len) > self.len {
            return Ok(Step::End(Some(CutReason::Truncated { len: header.len })));
        }
        let Some(payload) = self.bytes(body, header.len as usize).await? else {
            return Ok(Step::End(Some(CutReason::Truncated { len: header.len })));
        };
        if record::checksum(header.seq, payload) != header.crc {
            return Ok(Step::End(Some(CutReason::Checksum)));
        }
        if header.seq != expected {
            let found = header.seq;
            return Ok(Step::End(Some(CutReason::SeqGap { expected, found })));
        }
        let payload = payload.to_vec();
        self.pos = body + u64::from(header.len);
        Ok(Step::Record(WalRecord {
            seq: header.seq,
            payload,
        }))
    }
}

/// The log being read back; see [`Wal::open_streaming`]. Read records with
/// [`next_record`](Self::next_record), then turn it into the log with
/// [`into_wal`](Self::into_wal).
pub struct WalReplay<S: Storage + 'static> {
    storage: S,
    dir: String,
    options: WalOptions,
    /// Segments not opened yet, in order.
    pending: VecDeque<SegmentMeta>,
    /// Segments read (or being read) that stay part of the log.
    live: Vec<SegmentMeta>,
    reader: Option<(SegmentMeta, SegmentReader<S::File>)>,
    /// The sequence number the next record must have; `None` before the first segment.
    expected: Option<u64>,
    discard: Vec<SegmentMeta>,
    summary: ReplaySummary,
}

impl<S: Storage + 'static> std::fmt::Debug for WalReplay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalReplay")
            .field("dir", &self.storage.describe(&self.dir))
            .field("summary", &self.summary)
            .finish()
    }
}

impl<S: Storage + 'static> WalReplay<S> {
    pub(super) async fn start(
        storage: S,
        dir: &str,
        options: WalOptions,
    ) -> Result<Self, WalError> {
        storage.create_dir(dir).await?;
        let mut segments: Vec<SegmentMeta> = Vec::new();
        for name in storage.list(dir).await? {
            match parse_segment_name(&name) {
                Some(first_seq) => segments.push(SegmentMeta {
                    first_seq,
                    path: join(dir, &name),
                }),
                None => tracing::debug!(file = %name, "not a wal segment; ignored"),
            }
        }
        segments.sort_by_key(|s| s.first_seq);
        Ok(WalReplay {
            storage,
            dir: dir.to_string(),
            options,
            pending: segments.into(),
            live: Vec::new(),
            reader: None,
            expected: None,
            discard: Vec::new(),
            summary: ReplaySummary::default(),
        })
    }

    /// The next valid record, in sequence order, or `None` at the end of the log.
    pub async fn next_record(&mut self) -> Result<Option<WalRecord>, WalError> {
        loop {
            if self.reader.is_none() && !self.open_next().await? {
                return Ok(None);
            }
            let Some((meta, reader)) = self.reader.as_mut() else {
                continue;
            };
            let expected = self.expected.unwrap_or(meta.first_seq);
            match reader.next(expected).await? {
                Step::Record(rec) => {
                    assert_eq!(rec.seq, expected);
                    self.expected = Some(expected + 1);
                    self.summary.records += 1;
                    self.summary.payload_bytes += rec.payload.len() as u64;
                    self.summary.last_seq = rec.seq;
                    return Ok(Some(rec));
                }
                Step::End(cut) => {
                    let at = reader.pos;
                    let file = self.storage.describe(&meta.path);
                    if let Some(reason) = cut {
                        tracing::warn!(segment = %file.display(), offset = at, %reason, "wal tail cut");
                        self.summary.cuts.push(TailCut {
                            segment: file,
                            offset: at,
                            reason,
                        });
                    }
                    self.end_segment().await?;
                }
            }
        }
    }

    /// Opens the next segment if it continues the sequence; false at the end of the log.
    async fn open_next(&mut self) -> Result<bool, WalError> {
        let Some(meta) = self.pending.pop_front() else {
            return Ok(false);
        };
        let expected = *self.expected.get_or_insert(meta.first_seq);
        self.summary.last_seq = expected - 1;
        if meta.first_seq != expected {
            let file = self.storage.describe(&meta.path);
            tracing::warn!(segment = %file.display(), expected, found = meta.first_seq,
                later = self.pending.len(), "wal segment breaks the sequence; it and later ones are set aside");
            self.discard.push(meta);
            self.discard.extend(self.pending.drain(..));
            self.summary.discarded = self.discard.iter().map(|m| m.path.clone()).collect();
            return Ok(false);
        }
        let file = self.storage.open(&meta.path, false).await?;
        let len = file.len().await?;
        self.summary.segments += 1;
        let reader = SegmentReader {
            file,
            len,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        };
        self.reader = Some((meta, reader));
        Ok(true)
    }

    /// Done with the current segment: it stays in the log. Outside `Off` mode it is
    /// fdatasync'd, because what we just read may still sit only in the device's cache if the
    /// previous process died without syncing, and we are about to build on it.
    async fn end_segment(&mut self) -> Result<(), WalError> {
        if let Some((meta, reader)) = self.reader.take() {
            if self.options.mode != WalMode::Off && reader.pos > 0 {
                reader.file.sync().await?;
            }
            self.live.push(meta);
        }
        Ok(())
    }

    pub fn summary(&self) -> &ReplaySummary {
        &self.summary
    }

    /// Reads whatever is left, sets aside out-of-sequence segments, starts a fresh segment for
    /// the next sequence number, and returns the log ready for appends.
    pub async fn into_wal(mut self) -> Result<Wal<S>, WalError> {
        while self.next_record().await?.is_some() {}
        for d in &self.discard {
            let to = format!("{}.discarded", d.path);
            self.storage.rename(&d.path, &to).await?;
        }
        let next_seq = self.expected.unwrap_or(1);
        // An empty last segment already carries the next number: it is truncated and reused.
        if self.live.last().is_some_and(|s| s.first_seq == next_seq) {
            self.live.pop();
        }
        let durable = self.options.mode != WalMode::Off;
        let (storage, dir) = (&self.storage, self.dir.as_str());
        let active =
            create_segment(storage, dir, next_seq, self.options.segment_bytes, durable).await?;
        self.live.push(SegmentMeta {
            first_seq: next_seq,
            path: active.path.clone(),
        });
        let last = next_seq - 1;
        let stats = WalStats {
            segments_created: 1,
            syncs: u64::from(durable),
            dir_syncs: u64::from(durable),
            last_seq: last,
            written_seq: last,
            durable_seq: last,
            ..WalStats::default()
        };
        let state = State {
            next_seq,
            queue: VecDeque::new(),
            queue_bytes: 0,
            written_seq: last,
            durable_seq: last,
            sync_requested: false,
            closing: false,
            failed: None,
            writer_waker: None,
            waiters: Vec::new(),
            segments: std::mem::take(&mut self.live),
            stats,
        };
        let shared = Rc::new(Shared {
            storage: self.storage,
            dir: self.dir,
            options: self.options,
            state: std::cell::RefCell::new(state),
        });
        Ok(Wal::start(shared, active))
    }
}
