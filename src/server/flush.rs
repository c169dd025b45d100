//! A shard's maintenance driver: flushes the memtable when it is due (by size or age), compacts
//! table partitions that gathered many segments, and drops segments past their database's TTL,
//! in a task queue of low shares so writes and queries keep most of the core meanwhile.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use glommio::{Latency, Shares};
use tracing::warn;

use crate::catalog::Catalog;
use crate::server::shard::ShardCtx;

/// How often the driver looks at the memtable.
const CHECK_MS: u64 = 100;
/// Shares of the flush queue against the default queue's 1000.
const FLUSH_QUEUE_SHARES: usize = 100;
/// Wait after a failed flush before the next try.
const RETRY_MS: u64 = 5_000;
/// How often expired segments are looked for.
const EXPIRE_EVERY: Duration = Duration::from_secs(10);

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
    let mut last_expiry = Instant::now();
    loop {
        Timer::new(Duration::from_millis(CHECK_MS)).await;
        let Some(engine) = ctx.engine() else {
            continue;
        };
        let catalog = ctx.catalog();
        let width = |tenant: &str, database: &str| partition_width(&catalog, tenant, database);
        if engine.flush_due() {
            if let Err(e) = engine.flush(&width).await {
                warn!(shard = ctx.id, error = %e, "flush failed; retrying later");
                Timer::new(Duration::from_millis(RETRY_MS)).await;
                continue;
            }
            ctx.metrics.record_engine(&engine.stats());
        }
        match engine.compact(&width).await {
            Ok(Some(_)) => ctx.metrics.record_engine(&engine.stats()),
            Ok(None) => {}
            Err(e) => {
                warn!(shard = ctx.id, error = %e, "compaction failed; retrying later");
                Timer::new(Duration::from_millis(RETRY_MS)).await;
            }
        }
        if last_expiry.elapsed() >= EXPIRE_EVERY {
            last_expiry = Instant::now();
            let cutoff = |tenant: &str, database: &str| ttl_cutoff(&catalog, tenant, database);
            match engine.expire(&cutoff).await {
                Ok(s) if s.removed > 0 => ctx.metrics.record_engine(&engine.stats()),
                Ok(_) => {}
                Err(e) => warn!(shard = ctx.id, error = %e, "dropping expired segments failed"),
            }
        }
    }
}

/// A database's TTL cutoff (`Database::ttl_cutoff`); None without a TTL.
pub fn ttl_cutoff(catalog: &Catalog, tenant: &str, database: &str) -> Option<i64> {
    catalog.database(tenant, database).ok()?.ttl_cutoff()
}

/// A database's time partition width (`Database::partition_width`).
pub fn partition_width(catalog: &Catalog, tenant: &str, database: &str) -> i64 {
    catalog
        .database(tenant, database)
        .map_or(i64::MAX, |db| db.partition_width())
}
