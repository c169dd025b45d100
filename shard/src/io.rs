//! Storage I/O: the one narrow interface all of a shard's disk I/O goes through.
//!
//! [`Storage`] is a directory tree (rooted where the shard keeps its data) that opens, lists,
//! renames and removes files and makes directory entries durable; [`StorageFile`] is one open
//! file with positional writes and reads, `fdatasync`, length and preallocation. The engine is
//! generic over the trait, so the same WAL (and later segment and manifest) code runs on:
//!
//! - [`DmaStorage`], the real backend: glommio `DmaFile`s, i.e. `O_DIRECT` through io_uring.
//! - [`SimStorage`], an in-memory backend for deterministic crash tests. It keeps, per file, the
//!   bytes that are durable and the writes that are not yet, and per directory the entries that
//!   are durable and those that are not; [`SimStorage::crash`] returns what a power cut would
//!   leave: only what was synced, optionally with random prefixes of unsynced writes ("torn
//!   writes"). It also fails the Nth write or sync on request and can record a crash image
//!   before every mutating operation.
//!
//! Invariants every backend keeps (and asserts):
//! - Writes are whole aligned blocks: offset and length are multiples of [`IO_ALIGN_BYTES`], and
//!   the length is not zero. `O_DIRECT` on our disks refuses anything else with EINVAL, so
//!   `SimStorage` refuses it too, by panicking, so tests catch a misaligned write.
//! - Reads may be unaligned and may return fewer bytes than asked, only at end of file.
//! - A file's data is durable after `sync` returned; a created, renamed or removed directory
//!   entry is durable after `sync_dir` of its directory returned. Nothing else is promised.
//! - Every error is an [`IoError`] naming the operation, the path, the offset and the length.
//!
//! Paths given to a `Storage` are relative to its root, `/`-separated, without `.` or `..`;
//! `""` is the root itself.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures_lite::future::yield_now;
use glommio::io::{DmaFile, OpenOptions};
use glommio::GlommioError;

/// Alignment (and granularity) of every write: offsets and lengths are multiples of this.
pub const IO_ALIGN_BYTES: u64 = 4096;
const _: () = assert!(IO_ALIGN_BYTES.is_power_of_two());
const _: () = assert!(IO_ALIGN_BYTES % 512 == 0);

/// Largest single DMA transfer we hand to glommio. Bigger writes and reads are split, so one
/// transfer's bounce buffer fits in the executor's registered `io_memory` and a huge record does
/// not need one huge allocation.
const DMA_CHUNK_BYTES: usize = 1 << 20;
const _: () = assert!(DMA_CHUNK_BYTES as u64 % IO_ALIGN_BYTES == 0);

/// `v` rounded up to a multiple of [`IO_ALIGN_BYTES`].
pub fn align_up(v: u64) -> u64 {
    v.div_ceil(IO_ALIGN_BYTES) * IO_ALIGN_BYTES
}

/// `v` rounded down to a multiple of [`IO_ALIGN_BYTES`].
pub fn align_down(v: u64) -> u64 {
    v / IO_ALIGN_BYTES * IO_ALIGN_BYTES
}

/// Which storage operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Open,
    Write,
    Read,
    Sync,
    Len,
    SetLen,
    Allocate,
    List,
    Remove,
    Rename,
    SyncDir,
    CreateDir,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Open => "open",
            IoOp::Write => "write",
            IoOp::Read => "read",
            IoOp::Sync => "fdatasync",
            IoOp::Len => "stat",
            IoOp::SetLen => "truncate",
            IoOp::Allocate => "fallocate",
            IoOp::List => "list directory",
            IoOp::Remove => "remove",
            IoOp::Rename => "rename",
            IoOp::SyncDir => "fsync directory",
            IoOp::CreateDir => "create directory",
        })
    }
}

/// A failed storage operation, with everything needed to make sense of it (an `O_DIRECT` EINVAL
/// is useless without the offset and length). For operations without a range, offset and length
/// are 0; for `truncate`/`fallocate` the length is the requested file length.
#[derive(Debug, thiserror::Error)]
#[error("{op} {} (offset {offset}, length {len}): {source}", path.display())]
pub struct IoError {
    pub op: IoOp,
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(
        op: IoOp,
        path: impl Into<PathBuf>,
        offset: u64,
        len: u64,
        source: std::io::Error,
    ) -> Self {
        IoError {
            op,
            path: path.into(),
            offset,
            len,
            source,
        }
    }
}

/// One open file. Not `Send`: a file belongs to the shard that opened it.
// `len` is a file's length, async and fallible; an `is_empty` beside it would add nothing.
#[allow(async_fn_in_trait, clippy::len_without_is_empty)]
pub trait StorageFile {
    /// Writes all of `data` at `offset`. Panics unless `offset` and `data.len()` are multiples of
    /// [`IO_ALIGN_BYTES`] and `data` is not empty.
    async fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), IoError>;
    /// Reads up to `len` bytes at `offset` (any alignment); fewer only at end of file.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, IoError>;
    /// `fdatasync`: every completed write (and length change) of this file is durable.
    async fn sync(&self) -> Result<(), IoError>;
    /// The file's length in bytes.
    async fn len(&self) -> Result<u64, IoError>;
    /// Truncates or zero-extends the file to `len` bytes.
    async fn set_len(&self, len: u64) -> Result<(), IoError>;
    /// Reserves disk space for the first `len` bytes (`fallocate`), extending the file with
    /// zeros if it is shorter; existing bytes are untouched.
    async fn allocate(&self, len: u64) -> Result<(), IoError>;
    /// The path the file was opened with (for errors and logs).
    fn path(&self) -> &Path;
}

/// A directory tree holding a shard's files; paths are relative to its root.
#[allow(async_fn_in_trait)]
pub trait Storage {
    type File: StorageFile;
    /// Creates `dir` and its parents if missing, durably.
    async fn create_dir(&self, dir: &str) -> Result<(), IoError>;
    /// Opens `path` for reading and writing; creates it (empty) if missing and `create`.
    async fn open(&self, path: &str, create: bool) -> Result<Self::File, IoError>;
    /// Names (not paths) of the regular files directly in `dir`, sorted.
    async fn list(&self, dir: &str) -> Result<Vec<String>, IoError>;
    /// Removes the directory entry `path`; durable after `sync_dir` of its directory.
    async fn remove(&self, path: &str) -> Result<(), IoError>;
    /// Renames `from` to `to` (replacing `to`); durable after `sync_dir`.
    async fn rename(&self, from: &str, to: &str) -> Result<(), IoError>;
    /// Makes the creations, renames and removals of entries in `dir` durable.
    async fn sync_dir(&self, dir: &str) -> Result<(), IoError>;
    /// The full path of `path`, for errors and logs.
    fn describe(&self, path: &str) -> PathBuf;
}

/// `dir/name`, or `name` when `dir` is the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn assert_aligned_write(offset: u64, len: usize) {
    assert!(
        offset % IO_ALIGN_BYTES == 0 && len as u64 % IO_ALIGN_BYTES == 0 && len > 0,
        "unaligned write: offset {offset}, length {len} (both must be non-zero multiples of {IO_ALIGN_BYTES})"
    );
}

// ---------------------------------------------------------------------------------------------
// DmaStorage: glommio DmaFile (O_DIRECT, io_uring).

/// The real backend: files opened with `O_DIRECT` through glommio, under a root directory.
#[derive(Debug, Clone)]
pub struct DmaStorage {
    root: Rc<PathBuf>,
}

impl DmaStorage {
    /// A storage rooted at `root` (created on the first `create_dir("")` if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        // glommio 0.9 opens through io_uring without a directory fd: a relative path fails with
        // EBADF (seen with `Directory::open`). Absolute paths avoid it.
        let root = std::path::absolute(&root).unwrap_or(root);
        DmaStorage {
            root: Rc::new(root),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// glommio wraps syscall failures in `EnhancedIoError`, and its `From<GlommioError> for
/// io::Error` rebuilds the error from its message, losing `raw_os_error()` (EINVAL, ENOSPC...).
/// We keep the original `io::Error`; our `IoError` carries the operation and path instead.
fn os_error(e: GlommioError<()>) -> std::io::Error {
    match e {
        GlommioError::EnhancedIoError { source, .. } | GlommioError::IoError(source) => source,
        other => std::io::Error::other(other.to_string()),
    }
}

/// A file of [`DmaStorage`].
#[derive(Debug)]
pub struct DmaStorageFile {
    file: DmaFile,
    path: PathBuf,
}

impl DmaStorageFile {
    fn err(
        &self,
        op: IoOp,
        offset: u64,
        len: u64,
    ) -> impl FnOnce(GlommioError<()>) -> IoError + '_ {
        move |e| IoError::new(op, &self.path, offset, len, os_error(e))
    }

    /// One aligned chunk, retrying short (but aligned) writes; `O_DIRECT` cannot continue a
    /// write from an unaligned point, so an unaligned short write is an error.
    async fn write_chunk(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let mut done = 0usize;
        while done < data.len() {
            let rest = &data[done..];
            let mut buf = self.file.alloc_dma_buffer(rest.len());
            buf.as_bytes_mut().copy_from_slice(rest);
            let at = offset + done as u64;
            let n = self.file.write_at(buf, at).await.map_err(self.err(
                IoOp::Write,
                at,
                rest.len() as u64,
            ))?;
            if n == 0 || n as u64 % IO_ALIGN_BYTES != 0 {
                let why = format!("short write of {n} bytes");
                return Err(IoError::new(
                    IoOp::Write,
                    &self.path,
                    at,
                    rest.len() as u64,
                    std::io::Error::new(std::io::ErrorKind::WriteZero, why),
                ));
            }
            done += n;
        }
        Ok(())
    }
}

impl StorageFile for DmaStorageFile {
    async fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        assert_aligned_write(offset, data.len());
        for (i, chunk) in data.chunks(DMA_CHUNK_BYTES).enumerate() {
            self.write_chunk(offset + (i * DMA_CHUNK_BYTES) as u64, chunk)
                .await?;
        }
        Ok(())
    }

    /// glommio's own unaligned `DmaFile::read_at` is wrong at end of file: it returns
    /// `min(bytes read, len)` bytes counted from the unaligned start, so when the read ends
    /// inside the block at EOF it hands back stale buffer bytes past the end of the file. We
    /// align ourselves, read with `read_at_aligned`, and cut at what the kernel returned.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let start = align_down(offset);
        let end = align_up(offset + len as u64);
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut pos = start;
        while pos < end {
            let want = ((end - pos) as usize).min(DMA_CHUNK_BYTES);
            let got = self
                .file
                .read_at_aligned(pos, want)
                .await
                .map_err(self.err(IoOp::Read, pos, want as u64))?;
            out.extend_from_slice(&got);
            if got.len() < want {
                break;
            }
            pos += want as u64;
        }
        let skip = (offset - start) as usize;
        let have = out.len().saturating_sub(skip).min(len);
        Ok(out[skip.min(out.len())..skip.min(out.len()) + have].to_vec())
    }

    async fn sync(&self) -> Result<(), IoError> {
        self.file
            .fdatasync()
            .await
            .map_err(self.err(IoOp::Sync, 0, 0))
    }

    async fn len(&self) -> Result<u64, IoError> {
        self.file
            .file_size()
            .await
            .map_err(self.err(IoOp::Len, 0, 0))
    }

    async fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.file
            .truncate(len)
            .await
            .map_err(self.err(IoOp::SetLen, 0, len))
    }

    async fn allocate(&self, len: u64) -> Result<(), IoError> {
        // `hint_extent_size` would be the other knob, but it is an XFS-only ioctl (ENOTTY on
        // ext4); a plain fallocate of the whole segment gives every filesystem the extent.
        self.file
            .pre_allocate(len, false)
            .await
            .map_err(self.err(IoOp::Allocate, 0, len))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Storage for DmaStorage {
    type File = DmaStorageFile;

    async fn create_dir(&self, dir: &str) -> Result<(), IoError> {
        let full = self.describe(dir);
        // glommio has no create_dir_all; this runs once per directory at start-up.
        std::fs::create_dir_all(&full)
            .map_err(|e| IoError::new(IoOp::CreateDir, &full, 0, 0, e))?;
        let up = if dir.is_empty() {
            full.parent().map(Path::to_path_buf)
        } else {
            Some(self.describe(parent(dir)))
        };
        match up {
            Some(up) => sync_dir_path(&up).await,
            None => Ok(()),
        }
    }

    async fn open(&self, path: &str, create: bool) -> Result<DmaStorageFile, IoError> {
        let full = self.describe(path);
        if let Some(dir) = full.parent() {
            probe_iopoll_once(dir).await?;
        }
        // `DmaFile::open` is read-only and `DmaFile::create` truncates: neither is what a log
        // that is reopened and appended to needs, so we build the options ourselves.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(&full)
            .await
            .map_err(|e| IoError::new(IoOp::Open, &full, 0, 0, os_error(e)))?;
        Ok(DmaStorageFile { file, path: full })
    }

    async fn list(&self, dir: &str) -> Result<Vec<String>, IoError> {
        let full = self.describe(dir);
        let err = |e| IoError::new(IoOp::List, &full, 0, 0, e);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&full).map_err(err)? {
            let entry = entry.map_err(err)?;
            if entry.file_type().map_err(err)?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    async fn remove(&self, path: &str) -> Result<(), IoError> {
        let full = self.describe(path);
        glommio::io::remove(&full)
            .await
            .map_err(|e| IoError::new(IoOp::Remove, &full, 0, 0, os_error(e)))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        let (src, dst) = (self.describe(from), self.describe(to));
        glommio::io::rename(&src, &dst)
            .await
            .map_err(|e| IoError::new(IoOp::Rename, &src, 0, 0, os_error(e)))
    }

    async fn sync_dir(&self, dir: &str) -> Result<(), IoError> {
        sync_dir_path(&self.describe(dir)).await
    }

    fn describe(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.as_ref().clone()
        } else {
            self.root.join(path)
        }
    }
}

thread_local! {
    /// Devices (`st_dev`) on which this thread already let glommio probe with a non-empty file.
    static PROBED_DEVICES: RefCell<std::collections::HashSet<u64>> = RefCell::default();
}

/// Works around a glommio 0.9 bug that makes every `O_DIRECT` read fail with EOPNOTSUPP.
///
/// The first time a thread opens a `DmaFile` on a block device, glommio decides whether that
/// device's I/O goes to its IOPOLL ring by reading the first 4096 bytes of that file, and
/// caches the answer per thread and device. If that file is empty (a segment we just created),
/// the read "succeeds" at end of file without the kernel ever checking IOPOLL, the device is
/// marked pollable, and every later read on it fails with EOPNOTSUPP wherever the device has
/// no poll queues (virtio disks, most NVMe set-ups). Writes still succeed, so this only shows
/// on reopen. So before our first open on a device, we open a non-empty probe file in `dir`:
/// the probe then really reads, gets ENOTSUP, and glommio picks its normal ring.
async fn probe_iopoll_once(dir: &Path) -> Result<(), IoError> {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join(".chronoshard-dma-probe");
    let err = |op, e| IoError::new(op, &probe, 0, IO_ALIGN_BYTES, e);
    let dev = match std::fs::metadata(dir) {
        Ok(m) => m.dev(),
        // The open that follows reports the missing directory properly.
        Err(_) => return Ok(()),
    };
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    std::fs::write(&probe, [0u8; IO_ALIGN_BYTES as usize]).map_err(|e| err(IoOp::Write, e))?;
    let opened = DmaFile::open(&probe).await;
    let removed = std::fs::remove_file(&probe);
    let file = opened.map_err(|e| err(IoOp::Open, os_error(e)))?;
    file.close()
        .await
        .map_err(|e| err(IoOp::Open, os_error(e)))?;
    removed.map_err(|e| err(IoOp::Remove, e))?;
    PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

async fn sync_dir_path(path: &Path) -> Result<(), IoError> {
    let err = |e| IoError::new(IoOp::SyncDir, path, 0, 0, os_error(e));
    let dir = glommio::io::Directory::open(path).await.map_err(err)?;
    dir.sync().await.map_err(err)?;
    dir.close().await.map_err(err)
}

// ---------------------------------------------------------------------------------------------
// SimStorage: in memory, forgets what was not synced.

/// Bytes of a simulated file: `data`, then zeros up to `len` (so preallocating a large file
/// costs nothing).
#[derive(Debug, Clone, Default)]
struct SparseBytes {
    data: Vec<u8>,
    len: u64,
}

impl SparseBytes {
    fn write(&mut self, offset: u64, bytes: &[u8]) {
        let end = offset as usize + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset as usize..end].copy_from_slice(bytes);
        self.len = self.len.max(end as u64);
    }

    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = (offset + len as u64).min(self.len);
        if offset >= end {
            return Vec::new();
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let have = (self.data.len() as u64).min(end);
        if offset < have {
            out[..(have - offset) as usize]
                .copy_from_slice(&self.data[offset as usize..have as usize]);
        }
        out
    }

    fn set_len(&mut self, len: u64) {
        self.data.truncate(len as usize);
        self.len = len;
    }

    fn apply(&mut self, op: &SimPending) {
        match op {
            SimPending::Write { offset, data } => self.write(*offset, data),
            SimPending::SetLen(len) => self.set_len(*len),
            SimPending::Allocate(len) => self.len = self.len.max(*len),
        }
    }
}

/// A change to a file that is visible but not yet durable.
#[derive(Debug, Clone)]
enum SimPending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
    Allocate(u64),
}

#[derive(Debug, Clone, Default)]
struct SimFileData {
    /// What a crash leaves.
    durable: SparseBytes,
    /// What reads see: `durable` with `pending` applied.
    current: SparseBytes,
    /// Unsynced changes, in the order they were made.
    pending: Vec<SimPending>,
}

type SimFileRef = Rc<RefCell<SimFileData>>;

/// Counters of the operations a [`SimStorage`] served (since it was made or crashed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Mutating operations (writes, syncs, length changes, directory changes).
    pub ops: u64,
    pub writes: u64,
    pub write_bytes: u64,
    /// File `sync`s (fdatasync).
    pub syncs: u64,
    pub dir_syncs: u64,
}

/// A crash image taken right before a mutating operation: `storage` is a full copy (durable and
/// pending state), so each image can be crashed with several torn-write seeds.
#[derive(Debug, Clone)]
pub struct SimImage {
    /// Mutating operations completed before this image (compare with [`SimStats::ops`] read
    /// when an append was acknowledged: that append was acknowledged before the image iff its
    /// `ops` is at most this).
    pub ops_before: u64,
    pub storage: SimStorage,
}

#[derive(Debug, Default)]
struct SimState {
    /// Entries as the running system sees them.
    dir: BTreeMap<String, SimFileRef>,
    /// Entries a crash keeps.
    durable_dir: BTreeMap<String, SimFileRef>,
    /// xorshift64 state; `Some` turns on torn writes at crash.
    torn_rng: Option<u64>,
    fail_write_at: Option<u64>,
    fail_sync_at: Option<u64>,
    write_delay_ms: u64,
    stats: SimStats,
    images: Option<Vec<SimImage>>,
}

/// In-memory storage for deterministic crash tests; see the module docs. Cloning gives another
/// handle to the same simulated disk.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Rc<RefCell<SimState>>,
}

/// A file of [`SimStorage`].
#[derive(Debug)]
pub struct SimFile {
    storage: SimStorage,
    data: SimFileRef,
    path: PathBuf,
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

fn injected(op: IoOp, path: &Path, offset: u64, len: u64) -> IoError {
    let e = std::io::Error::other("injected fault (SimStorage)");
    IoError::new(op, path, offset, len, e)
}

impl SimStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// With `Some(seed)`, [`crash`](Self::crash) keeps, of each unsynced change independently,
    /// nothing, all of it, or (for a write) a random prefix of it, using a seeded xorshift.
    /// With `None` (the default), a crash keeps exactly the durable state.
    pub fn set_torn_writes(&self, seed: Option<u64>) {
        // xorshift never leaves 0; mix the seed so that small seeds differ from the first draw.
        self.state.borrow_mut().torn_rng = seed.map(|s| s.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    }

    /// The `nth` write from now (1 = the next one) fails with an error and changes nothing.
    pub fn fail_write(&self, nth: u64) {
        let mut st = self.state.borrow_mut();
        st.fail_write_at = Some(st.stats.writes + nth);
    }

    /// The `nth` file sync from now (1 = the next one) fails with an error and syncs nothing.
    pub fn fail_sync(&self, nth: u64) {
        let mut st = self.state.borrow_mut();
        st.fail_sync_at = Some(st.stats.syncs + nth);
    }

    /// Every write takes this long (a slow disk), so tests can fill the WAL's queue.
    pub fn set_write_delay_ms(&self, ms: u64) {
        self.state.borrow_mut().write_delay_ms = ms;
    }

    pub fn stats(&self) -> SimStats {
        self.state.borrow().stats
    }

    /// Starts (or stops) recording a [`SimImage`] before every mutating operation.
    pub fn record_images(&self, on: bool) {
        self.state.borrow_mut().images = on.then(Vec::new);
    }

    /// The images recorded so far, plus one of the current state.
    pub fn take_images(&self) -> Vec<SimImage> {
        let mut images = self.state.borrow_mut().images.take().unwrap_or_default();
        images.push(SimImage {
            ops_before: self.stats().ops,
            storage: self.snapshot(),
        });
        images
    }

    /// A deep copy: same files, entries, pending changes and torn-write RNG; no faults, zero
    /// counters, no images.
    pub fn snapshot(&self) -> SimStorage {
        let st = self.state.borrow();
        let mut copies: HashMap<*const RefCell<SimFileData>, SimFileRef> = HashMap::new();
        let mut copy = |f: &SimFileRef| {
            copies
                .entry(Rc::as_ptr(f))
                .or_insert_with(|| Rc::new(RefCell::new(f.borrow().clone())))
                .clone()
        };
        let dir = st.dir.iter().map(|(k, f)| (k.clone(), copy(f))).collect();
        let durable_dir = st
            .durable_dir
            .iter()
            .map(|(k, f)| (k.clone(), copy(f)))
            .collect();
        SimStorage {
            state: Rc::new(RefCell::new(SimState {
                dir,
                durable_dir,
                torn_rng: st.torn_rng,
                ..SimState::default()
            })),
        }
    }

    /// What a power cut leaves: the durable directory entries, each file with its durable bytes
    /// (plus, in torn-write mode, random parts of its unsynced changes). The result is a new,
    /// independent storage whose state is all durable.
    pub fn crash(&self) -> SimStorage {
        let mut st = self.state.borrow_mut();
        let mut rng = st.torn_rng;
        let mut survivors: HashMap<*const RefCell<SimFileData>, SimFileRef> = HashMap::new();
        let mut dir = BTreeMap::new();
        for (name, f) in &st.durable_dir {
            let file = survivors
                .entry(Rc::as_ptr(f))
                .or_insert_with(|| Rc::new(RefCell::new(crash_file(&f.borrow(), rng.as_mut()))))
                .clone();
            dir.insert(name.clone(), file);
        }
        st.torn_rng = rng;
        SimStorage {
            state: Rc::new(RefCell::new(SimState {
                durable_dir: dir.clone(),
                dir,
                torn_rng: rng,
                ..SimState::default()
            })),
        }
    }

    /// Test helper: applies `f` to the durable (and visible) bytes of `path` in place, e.g. to
    /// flip a byte in the middle of a log. The file must have no unsynced changes.
    pub fn corrupt(&self, path: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let st = self.state.borrow();
        let file = st
            .dir
            .get(path)
            .unwrap_or_else(|| panic!("corrupt: no file {path}"));
        let mut file = file.borrow_mut();
        assert!(
            file.pending.is_empty(),
            "corrupt: {path} has unsynced changes"
        );
        let len = file.durable.len;
        let mut bytes = file.durable.read(0, len as usize);
        f(&mut bytes);
        file.durable = SparseBytes {
            len: bytes.len() as u64,
            data: bytes,
        };
        file.current = file.durable.clone();
    }

    /// Counts a mutating operation and records a crash image first if asked to.
    fn before_op(&self) {
        let recording = self.state.borrow().images.is_some();
        if recording {
            let image = SimImage {
                ops_before: self.stats().ops,
                storage: self.snapshot(),
            };
            if let Some(images) = self.state.borrow_mut().images.as_mut() {
                images.push(image);
            }
        }
        self.state.borrow_mut().stats.ops += 1;
    }
}

/// One file's state after a crash.
fn crash_file(f: &SimFileData, rng: Option<&mut u64>) -> SimFileData {
    let mut bytes = f.durable.clone();
    if let Some(rng) = rng {
        for op in &f.pending {
            match (xorshift(rng) % 3, op) {
                (0, _) => {}
                (1, op) => bytes.apply(op),
                (_, SimPending::Write { offset, data }) => {
                    let keep = (xorshift(rng) % (data.len() as u64 + 1)) as usize;
                    bytes.write(*offset, &data[..keep]);
                }
                (_, op) => bytes.apply(op),
            }
        }
    }
    SimFileData {
        durable: bytes.clone(),
        current: bytes,
        pending: Vec::new(),
    }
}

impl SimFile {
    fn change(&self, op: SimPending) {
        let mut f = self.data.borrow_mut();
        f.current.apply(&op);
        f.pending.push(op);
    }
}

impl StorageFile for SimFile {
    async fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        assert_aligned_write(offset, data.len());
        yield_now().await;
        let delay_ms = self.storage.state.borrow().write_delay_ms;
        if delay_ms > 0 {
            glommio::timer::sleep(std::time::Duration::from_millis(delay_ms)).await;
        }
        self.storage.before_op();
        let failed = {
            let mut st = self.storage.state.borrow_mut();
            st.stats.writes += 1;
            st.stats.write_bytes += data.len() as u64;
            st.fail_write_at == Some(st.stats.writes)
        };
        if failed {
            return Err(injected(IoOp::Write, &self.path, offset, data.len() as u64));
        }
        self.change(SimPending::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    /// Reads change nothing, so unlike the mutating operations they do not yield first (which
    /// keeps replay-heavy crash tests fast).
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
        Ok(self.data.borrow().current.read(offset, len))
    }

    async fn sync(&self) -> Result<(), IoError> {
        yield_now().await;
        self.storage.before_op();
        let failed = {
            let mut st = self.storage.state.borrow_mut();
            st.stats.syncs += 1;
            st.fail_sync_at == Some(st.stats.syncs)
        };
        if failed {
            return Err(injected(IoOp::Sync, &self.path, 0, 0));
        }
        let mut f = self.data.borrow_mut();
        let pending = std::mem::take(&mut f.pending);
        for op in &pending {
            f.durable.apply(op);
        }
        Ok(())
    }

    async fn len(&self) -> Result<u64, IoError> {
        Ok(self.data.borrow().current.len)
    }

    async fn set_len(&self, len: u64) -> Result<(), IoError> {
        yield_now().await;
        self.storage.before_op();
        self.change(SimPending::SetLen(len));
        Ok(())
    }

    async fn allocate(&self, len: u64) -> Result<(), IoError> {
        yield_now().await;
        self.storage.before_op();
        self.change(SimPending::Allocate(len));
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Storage for SimStorage {
    type File = SimFile;

    /// Directories are implicit in the simulation: any path can hold files.
    async fn create_dir(&self, _dir: &str) -> Result<(), IoError> {
        Ok(())
    }

    async fn open(&self, path: &str, create: bool) -> Result<SimFile, IoError> {
        yield_now().await;
        let existing = self.state.borrow().dir.get(path).cloned();
        let data = match existing {
            Some(data) => data,
            None if create => {
                self.before_op();
                let data = SimFileRef::default();
                self.state
                    .borrow_mut()
                    .dir
                    .insert(path.to_string(), data.clone());
                data
            }
            None => {
                let e = std::io::Error::from(std::io::ErrorKind::NotFound);
                return Err(IoError::new(IoOp::Open, self.describe(path), 0, 0, e));
            }
        };
        Ok(SimFile {
            storage: self.clone(),
            data,
            path: self.describe(path),
        })
    }

    async fn list(&self, dir: &str) -> Result<Vec<String>, IoError> {
        let st = self.state.borrow();
        let names = st.dir.keys().filter(|k| parent(k) == dir);
        Ok(names
            .map(|k| {
                k.rsplit_once('/')
                    .map_or(k.as_str(), |(_, n)| n)
                    .to_string()
            })
            .collect())
    }

    async fn remove(&self, path: &str) -> Result<(), IoError> {
        yield_now().await;
        self.before_op();
        match self.state.borrow_mut().dir.remove(path) {
            Some(_) => Ok(()),
            None => {
                let e = std::io::Error::from(std::io::ErrorKind::NotFound);
                Err(IoError::new(IoOp::Remove, self.describe(path), 0, 0, e))
            }
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        yield_now().await;
        self.before_op();
        let mut st = self.state.borrow_mut();
        match st.dir.remove(from) {
            Some(f) => {
                st.dir.insert(to.to_string(), f);
                Ok(())
            }
            None => {
                let e = std::io::Error::from(std::io::ErrorKind::NotFound);
                Err(IoError::new(IoOp::Rename, self.describe(from), 0, 0, e))
            }
        }
    }

    async fn sync_dir(&self, dir: &str) -> Result<(), IoError> {
        yield_now().await;
        self.before_op();
        let mut st = self.state.borrow_mut();
        st.stats.dir_syncs += 1;
        st.durable_dir.retain(|k, _| parent(k) != dir);
        let now: Vec<_> = st
            .dir
            .iter()
            .filter(|(k, _)| parent(k) == dir)
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        st.durable_dir.extend(now);
        Ok(())
    }

    fn describe(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("sim:/{path}"))
    }
}

/// A single-threaded glommio executor for tests, within our 8 MiB memlock limit (the default
/// `io_memory` of 10 MiB is more than that).
#[cfg(test)]
pub(crate) fn test_executor() -> glommio::LocalExecutor {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("test executor")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fill: u8) -> Vec<u8> {
        vec![fill; IO_ALIGN_BYTES as usize]
    }

    #[test]
    fn sim_forgets_unsynced_writes_and_entries() {
        test_executor().run(async {
            let s = SimStorage::new();
            let f = s.open("d/a", true).await.unwrap();
            f.write_at(0, &block(1)).await.unwrap();
            f.sync().await.unwrap();
            // The entry is not durable yet: a crash loses the file despite its synced data.
            assert!(s.crash().list("d").await.unwrap().is_empty());
            s.sync_dir("d").await.unwrap();
            f.write_at(4096, &block(2)).await.unwrap();
            assert_eq!(f.read_at(4096, 10).await.unwrap(), vec![2; 10]);
            let after = s.crash();
            assert_eq!(after.list("d").await.unwrap(), vec!["a".to_string()]);
            let g = after.open("d/a", false).await.unwrap();
            assert_eq!(g.len().await.unwrap(), 4096);
            assert_eq!(g.read_at(0, 8192).await.unwrap(), block(1));
            // Removal is undone by a crash until the directory is synced.
            s.remove("d/a").await.unwrap();
            assert_eq!(s.crash().list("d").await.unwrap().len(), 1);
            s.sync_dir("d").await.unwrap();
            assert!(s.crash().list("d").await.unwrap().is_empty());
        });
    }

    #[test]
    fn sim_torn_writes_keep_prefixes_only() {
        test_executor().run(async {
            let mut seen_partial = false;
            for seed in 0..32 {
                let s = SimStorage::new();
                let f = s.open("a", true).await.unwrap();
                s.sync_dir("").await.unwrap();
                f.write_at(0, &vec![7u8; 3 * 4096]).await.unwrap();
                s.set_torn_writes(Some(seed));
                let c = s.crash();
                let bytes = c
                    .open("a", false)
                    .await
                    .unwrap()
                    .read_at(0, 3 * 4096)
                    .await
                    .unwrap();
                let kept = bytes.iter().take_while(|&&b| b == 7).count();
                assert!(
                    bytes[kept..].iter().all(|&b| b == 0),
                    "seed {seed}: not a prefix"
                );
                seen_partial |= kept > 0 && kept < 3 * 4096;
            }
            assert!(seen_partial, "no seed produced a torn write");
        });
    }

    #[test]
    fn sim_injects_faults_and_records_images() {
        test_executor().run(async {
            let s = SimStorage::new();
            s.record_images(true);
            let f = s.open("a", true).await.unwrap();
            s.fail_write(2);
            s.fail_sync(1);
            f.write_at(0, &block(1)).await.unwrap();
            let e = f.write_at(4096, &block(2)).await.unwrap_err();
            assert_eq!((e.op, e.offset, e.len), (IoOp::Write, 4096, 4096));
            assert!(
                e.to_string()
                    .contains("write sim:/a (offset 4096, length 4096)"),
                "{e}"
            );
            assert_eq!(f.len().await.unwrap(), 4096);
            assert!(f.sync().await.is_err());
            f.sync().await.unwrap();
            let images = s.take_images();
            // create, write, failed write, failed sync, sync: one image before each, one now.
            assert_eq!(images.len(), 6);
            assert_eq!(images[2].ops_before, 2);
        });
    }

    #[test]
    #[should_panic(expected = "unaligned write")]
    fn unaligned_writes_panic() {
        test_executor().run(async {
            let s = SimStorage::new();
            let f = s.open("a", true).await.unwrap();
            let _ = f.write_at(512, &block(1)).await;
        });
    }

    #[test]
    fn dma_round_trip_and_unaligned_read_at_eof() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        test_executor().run(async move {
            let s = DmaStorage::new(&root);
            s.create_dir("x/y").await.unwrap();
            let f = s.open("x/y/a", true).await.unwrap();
            f.allocate(3 * 4096).await.unwrap();
            assert_eq!(f.len().await.unwrap(), 3 * 4096);
            let mut data = vec![0u8; 2 * 4096];
            data.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i % 251) as u8);
            f.write_at(4096, &data).await.unwrap();
            f.sync().await.unwrap();
            assert_eq!(f.read_at(4096 + 100, 5000).await.unwrap(), data[100..5100]);
            f.set_len(4096 + 4000).await.unwrap();
            // Past EOF inside the last block: exactly the bytes that exist (glommio's own
            // read_at would return 200 bytes here, 104 of them stale).
            let tail = f.read_at(4096 + 3904, 200).await.unwrap();
            assert_eq!(tail, data[3904..4000]);
            assert!(f.read_at(1 << 20, 10).await.unwrap().is_empty());
            s.rename("x/y/a", "x/y/b").await.unwrap();
            s.sync_dir("x/y").await.unwrap();
            assert_eq!(s.list("x/y").await.unwrap(), vec!["b".to_string()]);
            s.remove("x/y/b").await.unwrap();
            assert!(s.list("x/y").await.unwrap().is_empty());
            let e = s.open("x/y/missing", false).await.unwrap_err();
            assert_eq!(e.source.kind(), std::io::ErrorKind::NotFound);
            assert!(e.to_string().contains("missing"), "{e}");
        });
    }

    #[test]
    fn dma_large_write_is_split_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        test_executor().run(async move {
            let s = DmaStorage::new(&root);
            let f = s.open("big", true).await.unwrap();
            let data: Vec<u8> = (0..(DMA_CHUNK_BYTES * 2 + 8192))
                .map(|i| (i % 253) as u8)
                .collect();
            f.write_at(0, &data).await.unwrap();
            assert_eq!(f.read_at(0, data.len()).await.unwrap(), data);
        });
    }
}
