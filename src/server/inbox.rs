//! A shard's inbox: what other shards ask of it, one small handler per message kind.
//!
//! Every message is handled in its own task (bounded by the inbox's capacity and a semaphore),
//! so writes from many shards reach the WAL together and share its group commit. No handler
//! waits on another shard, which keeps the mesh free of wait cycles.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use chronoshard_shard::batch::WriteBatch;
use chronoshard_shard::scan::{MemtableScan, ScanRequest, TableSchema};
use datafusion::arrow::record_batch::RecordBatch;
use glommio::sync::Semaphore;
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

/// Drains the inbox until every sender is gone.
pub async fn run(ctx: Rc<ShardCtx>, inbox: async_channel::Receiver<ShardMsg>) {
    let slots = Rc::new(Semaphore::new(INFLIGHT_MAX));
    while let Ok(msg) = inbox.recv().await {
        let Ok(permit) = slots.acquire_static_permit(1).await else {
            break;
        };
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            handle(&ctx, msg).await;
            drop(permit);
        })
        .detach();
    }
}

async fn handle(ctx: &Rc<ShardCtx>, msg: ShardMsg) {
    match msg {
        ShardMsg::Write { batch, reply } => {
            let _ = reply.send(write_local(ctx, &batch).await).await;
        }
        ShardMsg::CatalogChange { change, reply } => {
            let _ = reply.send(change_on_owner(ctx, &change).await).await;
        }
        ShardMsg::Catalog(snapshot) => ctx.offer_catalog(snapshot),
        ShardMsg::Connection(stream) => crate::server::shard::adopt(ctx, stream),
        ShardMsg::Scan {
            request,
            schema,
            reply,
        } => {
            tracing::debug!(
                shard = ctx.id,
                table = %request.table,
                projection = ?request.projection,
                time_range = ?request.time_range,
                tag_filters = ?request.tag_filters,
                limit = ?request.limit,
                "scan"
            );
            for item in scan_local(ctx, &request, &schema) {
                if reply.send(item).await.is_err() {
                    break; // the query is gone (LIMIT reached, client left)
                }
            }
        }
    }
}

/// Bytes of Arrow batches one scan may materialize on a shard before it fails. The memtable is
/// borrowed while scanning, and a borrow must not live across an await (writes would find it
/// taken), so a scan's batches are built first and sent after.
const SCAN_BYTES_MAX: usize = 1 << 30;

/// Scans this shard's rows of a table into Arrow batches (or one error).
fn scan_local(
    ctx: &ShardCtx,
    request: &ScanRequest,
    schema: &TableSchema,
) -> Vec<Result<RecordBatch, String>> {
    let Some(engine) = ctx.engine() else {
        return vec![Err(format!("shard {} is not ready", ctx.id))];
    };
    let memtable = engine.memtable();
    let scan = match MemtableScan::new(&memtable, schema, request) {
        Ok(scan) => scan,
        Err(e) => return vec![Err(e.to_string())],
    };
    let mut out = Vec::new();
    let mut bytes = 0;
    for batch in scan {
        match batch {
            Ok(b) => {
                bytes += b.get_array_memory_size();
                if bytes > SCAN_BYTES_MAX {
                    return vec![Err(format!(
                        "scan of {} on shard {} exceeds {SCAN_BYTES_MAX} bytes; narrow it with a time range or tag filter",
                        request.table, ctx.id
                    ))];
                }
                out.push(Ok(b));
            }
            Err(e) => return vec![Err(e.to_string())],
        }
    }
    out
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
