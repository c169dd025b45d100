//! A shard's inbox: what other shards ask of it, one small handler per message kind.
//!
//! Every message is handled in its own task (bounded by the inbox's capacity and a semaphore),
//! so writes from many shards reach the WAL together and share its group commit. Query
//! fragments run in their own, lower-share task queue. No handler waits on another shard, which
//! keeps the mesh free of wait cycles.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use chronoshard_shard::batch::{Delete, WriteBatch};
use glommio::sync::Semaphore;
use glommio::{Latency, Shares};
use tracing::warn;

use crate::catalog::{Catalog, CatalogChange, CatalogError, EnsureColumns};
use crate::config::Config;
use crate::ingest::EngineFailure;
use crate::mesh::ShardMsg;
use crate::server::shard::ShardCtx;

/// Messages handled at once per shard; more wait in the (bounded) inbox.
const INFLIGHT_MAX: u64 = 256;

/// Shard 0's ownership of the catalog: changes are serialized, persisted, then broadcast.
pub struct CatalogOwner {
    lock: Semaphore,
    meta_dir: PathBuf,
    current: std::cell::RefCell<Arc<Catalog>>,
}

impl CatalogOwner {
    pub fn new(catalog: Arc<Catalog>, config: &Config) -> CatalogOwner {
        CatalogOwner {
            lock: Semaphore::new(1),
            meta_dir: config.data_dir.join("meta"),
            current: std::cell::RefCell::new(catalog),
        }
    }
}

/// Shares of the task queue query fragments run in, against the default queue's 1000 (HTTP,
/// writes, inbox): under load a fragment gets about a tenth of the core's turns, so a long
/// aggregate cannot starve request handling, and it gets the whole core when nothing else runs.
const QUERY_QUEUE_SHARES: usize = 100;

/// Drains the inbox until every sender is gone.
pub async fn run(ctx: Rc<ShardCtx>, inbox: async_channel::Receiver<ShardMsg>) {
    let slots = Rc::new(Semaphore::new(INFLIGHT_MAX));
    let queries = glommio::executor().create_task_queue(
        Shares::Static(QUERY_QUEUE_SHARES),
        Latency::NotImportant,
        "query",
    );
    while let Ok(msg) = inbox.recv().await {
        let Ok(permit) = slots.acquire_static_permit(1).await else {
            break;
        };
        let spawned = match msg {
            ShardMsg::Fragment(task) => glommio::spawn_local_into(
                async move {
                    crate::query::run_on_shard(task).await;
                    drop(permit);
                },
                queries,
            ),
            msg => {
                let ctx = ctx.clone();
                Ok(glommio::spawn_local(async move {
                    handle(&ctx, msg).await;
                    drop(permit);
                }))
            }
        };
        match spawned {
            Ok(task) => {
                task.detach();
            }
            Err(e) => warn!(shard = ctx.id, error = %e, "could not spawn a query fragment"),
        }
    }
}

async fn handle(ctx: &Rc<ShardCtx>, msg: ShardMsg) {
    match msg {
        ShardMsg::Write { batch, reply } => {
            let _ = reply.send(write_local(ctx, &batch).await).await;
        }
        ShardMsg::Delete { delete, reply } => {
            let _ = reply.send(delete_local(ctx, &delete).await).await;
        }
        ShardMsg::CatalogChange { change, reply } => {
            let _ = reply.send(change_on_owner(ctx, &change).await).await;
        }
        ShardMsg::Catalog(snapshot) => ctx.offer_catalog(snapshot),
        ShardMsg::Connection(stream) => crate::server::shard::adopt(ctx, stream),
        // Spawned into the query task queue by `run`; kept here so the match stays whole.
        ShardMsg::Fragment(task) => crate::query::run_on_shard(task).await,
    }
}

/// Applies a batch this shard owns: WAL (durable per the WAL mode), then memtable.
pub async fn write_local(ctx: &ShardCtx, batch: &WriteBatch) -> Result<(), EngineFailure> {
    let engine = ctx
        .engine()
        .ok_or(EngineFailure::Unavailable { shard: ctx.id })?;
    let result = engine.write(batch).await;
    ctx.metrics.record_engine(&engine.stats());
    result.map_err(|e| crate::ingest::engine_failure(ctx.id, e))
}

/// Applies a delete to this shard: WAL (durable per the WAL mode), then memtable.
pub async fn delete_local(ctx: &ShardCtx, delete: &Delete) -> Result<usize, EngineFailure> {
    let engine = ctx
        .engine()
        .ok_or(EngineFailure::Unavailable { shard: ctx.id })?;
    let result = engine.delete(delete).await;
    ctx.metrics.record_engine(&engine.stats());
    result.map_err(|e| crate::ingest::engine_failure(ctx.id, e))
}

/// Sends `delete` to every shard (each holds some series of every table) and waits for all;
/// returns the points removed. Every shard is awaited even after a failure, so no reply is
/// lost; the first failure is reported (a retry converges: deleting again is harmless).
pub async fn delete_everywhere(ctx: &Rc<ShardCtx>, delete: Delete) -> Result<usize, EngineFailure> {
    let mut waiting = Vec::new();
    for shard in 0..ctx.shared.mesh.shards() {
        let (tx, rx) = async_channel::bounded(1);
        let msg = ShardMsg::Delete {
            delete: delete.clone(),
            reply: tx,
        };
        match ctx.shared.mesh.send(shard, msg).await {
            Ok(()) => waiting.push((shard, rx)),
            Err(_) => waiting.push((shard, closed_reply())),
        }
    }
    let mut removed = 0;
    let mut first_err = None;
    for (shard, rx) in waiting {
        match rx.recv().await {
            Ok(Ok(n)) => removed += n,
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(EngineFailure::Unavailable { shard });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// A reply channel whose sender is gone (the shard could not be reached).
fn closed_reply<T>() -> async_channel::Receiver<T> {
    let (_, rx) = async_channel::bounded(1);
    rx
}

/// Makes sure the catalog has what `want` needs, going to shard 0 if this snapshot lacks it.
/// Returns a snapshot that has it (and installs it here).
pub async fn ensure_catalog(
    ctx: &Rc<ShardCtx>,
    want: EnsureColumns,
) -> Result<Arc<Catalog>, crate::error::ApiError> {
    let snapshot = ctx.catalog();
    if snapshot.check(&want)? {
        return Ok(snapshot);
    }
    change_catalog(ctx, CatalogChange::EnsureColumns(want)).await
}

/// Applies a catalog change through shard 0 (from any shard) and returns once it is persisted,
/// with a snapshot that has it (installed here too). A change with nothing to do (`IF NOT
/// EXISTS`) returns shard 0's current snapshot.
pub async fn change_catalog(
    ctx: &Rc<ShardCtx>,
    change: CatalogChange,
) -> Result<Arc<Catalog>, crate::error::ApiError> {
    let next = if ctx.catalog_owner.is_some() {
        change_on_owner(ctx, &change).await?
    } else {
        ctx.shared
            .mesh
            .ask(0, |reply| ShardMsg::CatalogChange { change, reply })
            .await
            .map_err(|_| EngineFailure::Unavailable { shard: 0 })??
    };
    ctx.offer_catalog(next.clone());
    Ok(next)
}

/// On shard 0: applies, persists and broadcasts a catalog change, one change at a time. The
/// change is checked against the owner's current version (not the asking shard's snapshot), so
/// racing changes are decided here, in arrival order.
async fn change_on_owner(
    ctx: &Rc<ShardCtx>,
    change: &CatalogChange,
) -> Result<Arc<Catalog>, CatalogError> {
    let Some(owner) = &ctx.catalog_owner else {
        return Err(CatalogError::Persist {
            op: "changing",
            path: PathBuf::from("meta"),
            reason: format!("shard {} does not own the catalog", ctx.id),
        });
    };
    let _turn = owner.lock.acquire_permit(1).await;
    let current = owner.current.borrow().clone();
    let Some(next) = current.change(change)? else {
        return Ok(current);
    };
    let next = Arc::new(next);
    let (to_disk, dir) = (next.clone(), owner.meta_dir.clone());
    glommio::executor()
        .spawn_blocking(move || to_disk.persist(&dir))
        .await?;
    *owner.current.borrow_mut() = next.clone();
    ctx.offer_catalog(next.clone());
    for shard in 1..ctx.shared.mesh.shards() {
        if let Err(e) = ctx
            .shared
            .mesh
            .send(shard, ShardMsg::Catalog(next.clone()))
            .await
        {
            warn!(error = %e, "catalog broadcast not delivered");
        }
    }
    Ok(next)
}
