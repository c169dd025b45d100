//! A shard's flush driver: watches the memtable and flushes it when it is due (by size or
//! age), in a task queue of low shares so writes and queries keep most of the core meanwhile.

use std::rc::Rc;
use std::time::Duration;

use glommio::timer::Timer;
use glommio::{Latency, Shares};
use tracing::warn;

use crate::catalog::{Catalog, Precision};
use crate::server::shard::ShardCtx;

/// How often the driver looks at the memtable.
const CHECK_MS: u64 = 100;
/// Shares of the flush queue against the default queue's 1000.
const FLUSH_QUEUE_SHARES: usize = 100;
/// Wait after a failed flush before the next try.
const RETRY_MS: u64 = 5_000;

/// Starts the driver on the current shard.
pub fn start(ctx: Rc<ShardCtx>) {
    let queue = glommio::executor().create_task_queue(
        Shares::Static(FLUSH_QUEUE_SHARES),
        Latency::NotImportant,
        "flush",
    );
    if let Err(e) = glommio::spawn_local_into(run(ctx), queue).map(|t| t.detach()) {
        warn!(error = %e, "the flush task could not start: memtables will not be flushed");
    }
}

async fn run(ctx: Rc<ShardCtx>) {
    loop {
        Timer::new(Duration::from_millis(CHECK_MS)).await;
        let Some(engine) = ctx.engine() else {
            continue;
        };
        if !engine.flush_due() {
            continue;
        }
        let catalog = ctx.catalog();
        let width = |tenant: &str, database: &str| partition_width(&catalog, tenant, database);
        match engine.flush(&width).await {
            Ok(_) => ctx.metrics.record_engine(&engine.stats()),
            Err(e) => {
                warn!(shard = ctx.id, error = %e, "flush failed; retrying later");
                Timer::new(Duration::from_millis(RETRY_MS)).await;
            }
        }
    }
}

/// A database's time partition width (its `VNODE_DURATION`) in its own time unit.
pub fn partition_width(catalog: &Catalog, tenant: &str, database: &str) -> i64 {
    let Ok(db) = catalog.database(tenant, database) else {
        return i64::MAX;
    };
    let d = db.options.vnode_duration;
    let units = match db.precision {
        Precision::Nanos => d.as_nanos(),
        Precision::Micros => d.as_micros(),
        Precision::Millis => d.as_millis(),
    };
    i64::try_from(units).unwrap_or(i64::MAX).max(1)
}
