//! DataFusion sessions, built once per (catalog version, tenant, database) and reused.
//!
//! A session carries every built-in function, our functions and rules, and one table provider
//! per catalog table; building it costs far more than planning a small query (measured below),
//! so queries reuse the session of their catalog snapshot. A cached session is never changed:
//! statements that would change a session (`SET`, DDL through DataFusion) are refused by the
//! planner's `SQLOptions` in `query.rs`, and a new catalog version gets a new session. The
//! cache is bounded (`SESSIONS_MAX`, least recently used out) and keyed by the mesh too, so
//! servers in one process (unit tests) never share sessions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::SessionStateBuilder;

use super::aggregate::ShardAggregateRule;
use super::lastpoint::LastPointRule;
use super::scatter::ScatterRule;
use super::{datafusion_error, functions, table_provider, QueryError};
use crate::catalog::Catalog;
use crate::mesh::Mesh;

/// Sessions kept: a few databases across a few catalog versions.
const SESSIONS_MAX: usize = 32;

struct Entry {
    mesh: Mesh,
    version: u64,
    tenant: String,
    database: String,
    ctx: SessionContext,
}

/// Most recently used last.
fn cache() -> &'static Mutex<VecDeque<Entry>> {
    static CACHE: OnceLock<Mutex<VecDeque<Entry>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(VecDeque::with_capacity(SESSIONS_MAX)))
}

/// The session for (tenant, database) over `catalog`: cached, or built and cached.
pub(super) fn session(
    mesh: &Mesh,
    catalog: &Catalog,
    tenant: &str,
    database: &str,
) -> Result<SessionContext, QueryError> {
    let matches = |e: &Entry| {
        e.version == catalog.version
            && e.mesh.same(mesh)
            && e.tenant == tenant
            && e.database == database
    };
    {
        // A poisoned lock only means another query panicked while holding it; the list is
        // still well formed (every change below is one push or one remove).
        let mut entries = cache().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = entries.iter().position(matches) {
            if let Some(entry) = entries.remove(i) {
                let ctx = entry.ctx.clone();
                entries.push_back(entry);
                return Ok(ctx);
            }
        }
    }
    let ctx = build(mesh, catalog, tenant, database)?;
    let mut entries = cache().lock().unwrap_or_else(|p| p.into_inner());
    if !entries.iter().any(matches) {
        if entries.len() >= SESSIONS_MAX {
            entries.pop_front();
        }
        entries.push_back(Entry {
            mesh: mesh.clone(),
            version: catalog.version,
            tenant: tenant.to_string(),
            database: database.to_string(),
            ctx: ctx.clone(),
        });
    }
    Ok(ctx)
}

/// A session whose default schema is the request's database, one table per catalog table.
fn build(
    mesh: &Mesh,
    catalog: &Catalog,
    tenant: &str,
    database: &str,
) -> Result<SessionContext, QueryError> {
    let mut config = SessionConfig::new()
        .with_target_partitions(mesh.shards())
        .with_default_catalog_and_schema(tenant, database)
        .with_information_schema(true);
    // Planning is most of a small query's cost (docs/architecture.md, "Where a query's CPU time
    // goes"). One pass of the logical optimizer: a second one almost never changes a plan of
    // ours and costs as much as the first. No hash repartition between the partial and final
    // aggregates: the shards already aggregated, so the final merge is small, and the exchange's
    // tasks and channels cost more than they save.
    let options = config.options_mut();
    options.optimizer.max_passes = 1;
    options.optimizer.repartition_aggregations = false;
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(LastPointRule))
        .with_physical_optimizer_rule(Arc::new(ShardAggregateRule))
        .with_physical_optimizer_rule(Arc::new(ScatterRule::new(mesh.clone())))
        .build();
    functions::install(&mut state).map_err(datafusion_error)?;
    let ctx = SessionContext::new_with_state(state);
    let Ok(db) = catalog.database(tenant, database) else {
        return Ok(ctx);
    };
    for table in db.tables.values() {
        let provider = table_provider(mesh, tenant, db, table);
        ctx.register_table(table.name.as_str(), provider)
            .map_err(datafusion_error)?;
    }
    Ok(ctx)
}
