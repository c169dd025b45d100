//! SQL through DataFusion: a session per query over the catalog snapshot, the plan fragment
//! below the first exchange scattered to every shard, the rest on a small tokio runtime.
//!
//! Every table is a DataFusion table provider (`query/table.rs`) whose scan (`query/scan.rs`)
//! has one partition per shard, with the projection, time range, tag filters and limit pushed
//! into it. The scatter rule (`query/scatter.rs`, run after DataFusion's optimizer) cuts the
//! fragment above each scan (filter, projection, partial aggregate, TopK) and puts it under a
//! gather (`query/gather.rs`): shard i executes partition i of the fragment on its own core over
//! its own memtable and streams Arrow batches back over a bounded channel. Everything above the
//! gathers (final aggregate, merges, sort, limit) runs on the query runtime (tokio, unpinned
//! threads), because DataFusion's exchanges spawn tokio tasks. A glommio reactor never waits on
//! tokio: every crossing is a runtime-agnostic channel. See `docs/architecture.md`, "A query's
//! life".

mod aggregate;
pub mod ddl;
mod functions;
mod gather;
mod lastpoint;
mod scan;
mod scatter;
mod session;
pub mod shard_local;
mod table;

pub use gather::{run_on_shard, FragmentPanic, FragmentTask};

use std::sync::Arc;

use chronoshard_shard::batch::ValueType;
use chronoshard_shard::scan::TableSchema;
use datafusion::arrow::datatypes::{SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::{Catalog, ColumnKind, Database, Precision, Table};
use crate::mesh::Mesh;
use table::ShardedTable;

/// Rows per batch a shard's scan produces: small enough that a cancelled query stops soon and
/// a batch in flight stays a few MiB, large enough for Arrow's kernels to pay off.
const SCAN_BATCH_ROWS: usize = 8192;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("sql parser error: {0}")]
    Parse(String),
    #[error("Multi-statement not allow, found num:{count}, sql:{sql}")]
    MultiStatement { count: usize, sql: String },
    #[error("Datafusion: {0}")]
    DataFusion(String),
    #[error("query runtime is gone (shutting down)")]
    RuntimeGone,
    #[error("storage: {0}")]
    Storage(String),
    #[error("the query body is not valid UTF-8")]
    NotUtf8,
    #[error("query timed out after {ms} ms")]
    Timeout { ms: u64 },
    #[error("This feature is not implemented: {0}")]
    NotImplemented(String),
    #[error("Semantic error: {0}")]
    Semantic(String),
    #[error("Semantic error: Field or Tag have the same name {0}")]
    SameColumnName(String),
    #[error("Semantic error: There must be at least one field column.")]
    AtLeastOneField,
    #[error("Semantic error: Unexpected data type {data_type} of {column}")]
    DataType { data_type: String, column: String },
    #[error("Semantic error: Tag does not support compression")]
    TagCodec,
    #[error("Semantic error: Insert column '{insert_col}' does not exist in target table, expect {fields}")]
    MissingColumn { insert_col: String, fields: String },
    #[error("Semantic error: Insert columns and Source columns not match")]
    MismatchColumns,
    #[error("Semantic error: SHOW SERIES does not support where clause contains field {0}")]
    ShowSeriesField(String),
    /// A value that does not convert to its column's type (CnosDB reports Arrow's cast error).
    #[error("Arrow: Cast error: {0}")]
    Cast(String),
    /// A bug, not the query's fault: a panic in a plan (caught; the server keeps running).
    #[error("internal error: {0}")]
    Internal(String),
}

/// The outcome of a statement: its schema and every batch.
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Runs one SQL statement for (tenant, database) on the query runtime; the returned future can
/// be awaited from a glommio task. Past `timeout` the query is cancelled and `Timeout` returned.
pub async fn run(
    rt: &tokio::runtime::Handle,
    mesh: Mesh,
    catalog: Arc<Catalog>,
    tenant: String,
    database: String,
    sql: String,
    timeout: std::time::Duration,
) -> Result<Option<QueryOutput>, QueryError> {
    let (tx, rx) = async_channel::bounded(1);
    let task = rt.spawn(async move {
        let out = execute(mesh, &catalog, &tenant, &database, &sql).await;
        let _ = tx.send(out).await;
    });
    let answer = futures_lite::future::or(async { Some(rx.recv().await) }, async {
        glommio::timer::Timer::new(timeout).await;
        None
    })
    .await;
    match answer {
        Some(out) => out.map_err(|_| QueryError::RuntimeGone)?,
        None => {
            // Dropping the plan's streams also drops the shards' reply channels, which ends
            // their scans at the next batch.
            task.abort();
            Err(QueryError::Timeout {
                ms: timeout.as_millis() as u64,
            })
        }
    }
}

async fn execute(
    mesh: Mesh,
    catalog: &Catalog,
    tenant: &str,
    database: &str,
    sql: &str,
) -> Result<Option<QueryOutput>, QueryError> {
    let Some(frame) = plan(mesh, catalog, tenant, database, sql).await? else {
        return Ok(None);
    };
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(datafusion_error)?;
    Ok(Some(QueryOutput { schema, batches }))
}

/// Plans one statement and starts it; the batches are pulled from the stream (on the query
/// runtime: the plan above the gathers needs tokio). None for an empty body.
pub async fn start(
    mesh: Mesh,
    catalog: &Catalog,
    tenant: &str,
    database: &str,
    sql: &str,
) -> Result<Option<(SchemaRef, SendableRecordBatchStream)>, QueryError> {
    let Some(frame) = plan(mesh, catalog, tenant, database, sql).await? else {
        return Ok(None);
    };
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let stream = frame.execute_stream().await.map_err(datafusion_error)?;
    Ok(Some((schema, stream)))
}

/// A task on the query runtime that is cancelled when this handle is dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The statement as a DataFusion data frame (logical plan), or None for an empty body.
async fn plan(
    mesh: Mesh,
    catalog: &Catalog,
    tenant: &str,
    database: &str,
    sql: &str,
) -> Result<Option<DataFrame>, QueryError> {
    let ctx = session::session(&mesh, catalog, tenant, database)?;
    let statements = datafusion::sql::parser::DFParser::parse_sql(sql)
        .map_err(|e| QueryError::Parse(e.to_string()))?;
    match statements.len() {
        0 => return Ok(None),
        1 => {}
        count => {
            return Err(QueryError::MultiStatement {
                count,
                sql: sql.to_string(),
            })
        }
    }
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(datafusion_error)?;
    Ok(Some(frame))
}

/// `plan` with `f` applied to each of its children (a rule's walk down the plan).
fn rewrite_children(
    plan: Arc<dyn ExecutionPlan>,
    f: impl Fn(Arc<dyn ExecutionPlan>) -> datafusion::error::Result<Arc<dyn ExecutionPlan>>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let children: Vec<_> = plan.children().into_iter().cloned().collect();
    if children.is_empty() {
        return Ok(plan);
    }
    let children = children
        .into_iter()
        .map(f)
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    datafusion::physical_plan::replace_children_if_necessary(plan, children)
}

/// Our error for a DataFusion one: a caught panic is internal, the rest are the query's.
pub fn datafusion_error(e: DataFusionError) -> QueryError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(panic) = c.downcast_ref::<FragmentPanic>() {
            return QueryError::Internal(panic.to_string());
        }
        // A shard's storage failed under the query (a damaged segment, a read error): the
        // server's fault, not the query's.
        if let Some(e @ shard_local::LocalError::Engine { .. }) =
            c.downcast_ref::<shard_local::LocalError>()
        {
            return QueryError::Storage(e.to_string());
        }
        cause = c.source();
    }
    match e {
        DataFusionError::SQL(e, _) => QueryError::Parse(e.to_string()),
        other => QueryError::DataFusion(other.to_string()),
    }
}

pub(crate) fn table_provider(
    mesh: &Mesh,
    tenant: &str,
    db: &Database,
    table: &Table,
) -> Arc<ShardedTable> {
    let schema = table_schema(db.precision, table);
    Arc::new(ShardedTable {
        mesh: mesh.clone(),
        arrow_schema: schema.arrow_schema(),
        schema,
        tenant: tenant.to_string(),
        database: db.name.clone(),
        table: table.name.clone(),
        // Only what `ttl_cutoff` needs, not the tables.
        retention: db.options.ttl.is_some().then(|| Database {
            name: db.name.clone(),
            precision: db.precision,
            tables: Default::default(),
            options: db.options.clone(),
        }),
    })
}

/// The scan schema of a catalog table: time in the database's unit, tags, typed fields.
pub fn table_schema(precision: Precision, table: &Table) -> TableSchema {
    let mut tags = Vec::new();
    let mut fields = Vec::new();
    for c in &table.columns {
        match c.kind {
            ColumnKind::Time => {}
            ColumnKind::Tag => tags.push(c.name.clone()),
            ColumnKind::Field(t) => fields.push((c.name.clone(), ValueType::from(t))),
        }
    }
    TableSchema {
        time_unit: match precision {
            Precision::Nanos => TimeUnit::Nanosecond,
            Precision::Micros => TimeUnit::Microsecond,
            Precision::Millis => TimeUnit::Millisecond,
        },
        tags,
        fields,
    }
}
