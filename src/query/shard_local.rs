//! The shard a thread serves, for plan nodes that must run on their own shard's core.
//!
//! DataFusion plans are `Send + Sync` and may be executed on any thread, while a shard's engine
//! is `Rc` and lives on its shard's thread only. A scan partition therefore never holds the
//! engine: at start each shard installs a handle here, and the scan looks it up on every batch.
//! Executing scan partition i anywhere but on shard i is a planning bug; `memtable_of` makes it
//! an error with both shard numbers rather than a read of the wrong data.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use std::task::{Context, Poll};

use chronoshard_shard::engine::Engine;
use chronoshard_shard::memtable::{Memtable, TableScan};
use chronoshard_shard::scan::ScanRequest;

use crate::server::shard::ShardCtx;

thread_local! {
    static SHARD: RefCell<Option<(usize, Weak<ShardCtx>)>> = const { RefCell::new(None) };
}

/// Marks this thread as shard `ctx.id`'s; called once on the shard's thread at start.
pub fn install(ctx: &Rc<ShardCtx>) {
    SHARD.with(|s| *s.borrow_mut() = Some((ctx.id, Rc::downgrade(ctx))));
}

/// The shard this thread serves, if it is a shard thread.
pub fn current() -> Option<usize> {
    SHARD.with(|s| s.borrow().as_ref().map(|(id, _)| *id))
}

/// Whether this is shard `shard`'s thread and its reactor wants the core back (the preemption
/// timer fired): a long plan leaf then returns `Pending` and wakes itself. Only on a shard's
/// own thread is there a glommio executor to ask.
pub fn preempt_due(shard: usize) -> bool {
    current() == Some(shard) && glommio::executor().need_preempt()
}

/// An internal error naming `what` unless this is shard `partition`'s thread: a plan leaf's
/// first check in `execute`.
pub fn check_thread(
    partition: usize,
    what: impl FnOnce() -> String,
) -> datafusion::error::Result<()> {
    if current() == Some(partition) {
        return Ok(());
    }
    let e = with_memtable(partition, |_| ()).err();
    Err(datafusion::error::DataFusionError::Internal(format!(
        "{}: {}",
        what(),
        e.map_or_else(|| "wrong thread".to_string(), |e| e.to_string())
    )))
}

/// Why shard-local data was not reachable.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("partition {want} must run on shard {want}'s thread, but ran on {here}")]
    WrongThread { want: usize, here: String },
    #[error("shard {0} has no storage engine (starting or stopping)")]
    NoEngine(usize),
    #[error("shard {shard}: {message}")]
    Engine { shard: usize, message: String },
}

/// Runs `f` over shard `shard`'s memtable, from shard `shard`'s thread only. The borrow ends
/// when `f` returns: callers must not hold memtable data across an await.
pub fn with_memtable<R>(shard: usize, f: impl FnOnce(&Memtable) -> R) -> Result<R, LocalError> {
    with_engine(shard, |engine| f(&engine.memtable()))
}

/// Runs `f` over shard `shard`'s engine, from shard `shard`'s thread only.
pub fn with_engine<R>(shard: usize, f: impl FnOnce(&Rc<Engine>) -> R) -> Result<R, LocalError> {
    let ctx = SHARD.with(|s| match s.borrow().as_ref() {
        Some((id, ctx)) if *id == shard => Ok(ctx.upgrade()),
        Some((id, _)) => Err(LocalError::WrongThread {
            want: shard,
            here: format!("shard {id}"),
        }),
        None => Err(LocalError::WrongThread {
            want: shard,
            here: format!(
                "thread {:?}, not a shard",
                std::thread::current().name().unwrap_or("unnamed")
            ),
        }),
    })?;
    let engine = ctx
        .and_then(|c| c.engine())
        .ok_or(LocalError::NoEngine(shard))?;
    Ok(f(&engine))
}

/// A plan leaf's read of one table on its shard (`Engine::open_read`): opened at the first
/// step, so it pins the layers of that moment, and closed when dropped (on the shard's thread,
/// where a fragment's streams end; dropped anywhere else it is left to the engine's bound on
/// open reads).
#[derive(Debug)]
pub struct ShardRead {
    shard: usize,
    id: Option<u64>,
    table: (String, String, String),
    time: (i64, i64),
    tag_filters: Vec<(String, Vec<String>)>,
    fields: Option<Vec<String>>,
}

impl ShardRead {
    /// A read of `request`'s table and time range needing `fields` (None: all of them).
    pub fn new(shard: usize, request: &ScanRequest, fields: Option<Vec<String>>) -> ShardRead {
        ShardRead {
            shard,
            id: None,
            table: (
                request.tenant.clone(),
                request.database.clone(),
                request.table.clone(),
            ),
            time: request.time_range,
            tag_filters: request.tag_filters.clone(),
            fields,
        }
    }

    /// One step: `f` over the table's layers merged, or `Pending` while segments load (the
    /// task is woken when they are in).
    pub fn step<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(Option<TableScan<'_>>) -> R,
    ) -> Poll<Result<R, LocalError>> {
        let shard = self.shard;
        let result = with_engine(shard, |engine| {
            let id = *self.id.get_or_insert_with(|| {
                let (t, d, n) = &self.table;
                engine.open_read((t, d, n), self.time, self.fields.take(), &self.tag_filters)
            });
            engine.with_read(id, cx.waker(), f)
        });
        match result {
            Err(e) => Poll::Ready(Err(e)),
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(r))) => Poll::Ready(Ok(r)),
            Ok(Poll::Ready(Err(e))) => Poll::Ready(Err(LocalError::Engine {
                shard,
                message: e.to_string(),
            })),
        }
    }
}

impl Drop for ShardRead {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let _ = with_engine(self.shard, |engine| engine.close_read(id));
        }
    }
}
