//! `ShardScanExec`: the leaf of every table scan. Partition i is shard i's rows of the table,
//! read from shard i's memtable on shard i's own thread, lazily, one bounded batch at a time.
//!
//! The plan never runs this node on the query runtime: the scatter rule (`scatter.rs`) puts
//! every scan under a `ShardGatherExec`, which executes partition i on shard i. Anywhere else
//! `execute` fails (see `shard_local`), so a plan shape we did not foresee is an error, never
//! a scan of the wrong shard.
//!
//! The stream keeps a `ScanCursor` (no borrow of the memtable between batches: the shard's
//! writes borrow it mutably in between) and yields to glommio when the reactor's preemption
//! timer has fired: DataFusion's operators above it loop over their input without ever
//! returning `Pending`, so this is the one place a long fragment gives the core back.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use chronoshard_shard::scan::{ScanCursor, ScanRequest, TableSchema};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use futures_lite::Stream;

use super::shard_local::{self, ShardRead};

/// The `ExecutionPlan` methods of a leaf of ours (a shard scan or aggregate): no children, no
/// expressions to show DataFusion's rules, `properties` in a field of that name.
macro_rules! leaf_plan_methods {
    () => {
        fn properties(&self) -> &Arc<PlanProperties> {
            &self.properties
        }

        fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
            vec![]
        }

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
        ) -> DfResult<TreeNodeRecursion> {
            Ok(TreeNodeRecursion::Continue)
        }

        fn replace_children(
            self: Arc<Self>,
            _children: Vec<Arc<dyn ExecutionPlan>>,
            _options: ReplaceChildrenOptions,
        ) -> DfResult<Arc<dyn ExecutionPlan>> {
            Ok(self)
        }

        fn with_new_children(
            self: Arc<Self>,
            children: Vec<Arc<dyn ExecutionPlan>>,
        ) -> DfResult<Arc<dyn ExecutionPlan>> {
            self.replace_children(
                children,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )
        }
    };
}
pub(super) use leaf_plan_methods;

/// One table's scan, one partition per shard.
#[derive(Debug)]
pub struct ShardScanExec {
    schema: TableSchema,
    request: ScanRequest,
    properties: Arc<PlanProperties>,
    /// Rows and time per partition (shard), for EXPLAIN ANALYZE.
    metrics: ExecutionPlanMetricsSet,
}

impl ShardScanExec {
    /// `projected` is the schema of `request`'s projection of `schema`.
    pub fn new(
        schema: TableSchema,
        request: ScanRequest,
        projected: SchemaRef,
        shards: usize,
    ) -> ShardScanExec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(projected),
            Partitioning::UnknownPartitioning(shards),
            EmissionType::Incremental,
            Boundedness::Bounded,
        )
        // Our stream yields to glommio itself; tokio's budget means nothing on a shard.
        .with_scheduling_type(SchedulingType::Cooperative);
        ShardScanExec {
            schema,
            request,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl ShardScanExec {
    /// The table's columns as the catalog knows them.
    pub fn table_schema(&self) -> &TableSchema {
        &self.schema
    }

    /// What each shard is asked to read.
    pub fn request(&self) -> &ScanRequest {
        &self.request
    }

    /// The same scan, reading only each series' latest point (`ScanRequest::last_per_series`).
    pub fn last_per_series(&self) -> ShardScanExec {
        let mut request = self.request.clone();
        request.last_per_series = true;
        ShardScanExec {
            schema: self.schema.clone(),
            request,
            properties: Arc::clone(&self.properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for ShardScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let r = &self.request;
        let columns: Vec<String> = self
            .properties
            .eq_properties
            .schema()
            .fields()
            .iter()
            .map(|c| c.name().clone())
            .collect();
        match t {
            DisplayFormatType::TreeRender => write!(f, "table={}", r.table),
            _ => {
                write!(
                    f,
                    "ShardScanExec: table={}, columns=[{}]",
                    r.table,
                    columns.join(", ")
                )?;
                if r.time_range != (i64::MIN, i64::MAX) {
                    write!(f, ", time=[{}, {})", r.time_range.0, r.time_range.1)?;
                }
                for (tag, values) in &r.tag_filters {
                    write!(f, ", {tag} in {values:?}")?;
                }
                if let Some(limit) = r.limit {
                    write!(f, ", limit={limit}")?;
                }
                if r.last_per_series {
                    write!(f, ", last point per series")?;
                }
                Ok(())
            }
        }
    }
}

impl ExecutionPlan for ShardScanExec {
    fn name(&self) -> &str {
        "ShardScanExec"
    }

    leaf_plan_methods!();

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        shard_local::check_thread(partition, || format!("scan of {}", self.request.table))?;
        let cursor = ScanCursor::new(&self.schema, &self.request)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let read = ShardRead::new(partition, &self.request, cursor.read_fields());
        Ok(Box::pin(ScanStream {
            shard: partition,
            schema: cursor.schema(),
            read,
            cursor,
            done: false,
            metrics: BaselineMetrics::new(&self.metrics, partition),
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Shard `shard`'s batches of one scan, built one per poll from a fresh memtable borrow.
struct ScanStream {
    shard: usize,
    schema: SchemaRef,
    read: ShardRead,
    cursor: ScanCursor,
    done: bool,
    metrics: BaselineMetrics,
}

impl Stream for ScanStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if shard_local::preempt_due(self.shard) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let this = &mut *self;
        let timer = this.metrics.elapsed_compute().timer();
        let cursor = &mut this.cursor;
        let next = this.read.step(cx, |scan| cursor.next_batch_on(scan));
        timer.done();
        let Poll::Ready(next) = next else {
            return Poll::Pending;
        };
        let item = match next {
            Ok(Ok(Some(batch))) => Some(Ok(batch)),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => Some(Err(DataFusionError::External(Box::new(e)))),
            Err(e) => Some(Err(DataFusionError::External(Box::new(e)))),
        };
        this.done = !matches!(item, Some(Ok(_)));
        this.metrics.record_poll(Poll::Ready(item))
    }
}

impl RecordBatchStream for ScanStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use chronoshard_shard::batch::ValueType;
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;

    /// Partition i runs on shard i's thread or nowhere: elsewhere it fails and says where.
    #[test]
    fn a_scan_partition_off_its_shard_fails_loudly() {
        let schema = TableSchema {
            time_unit: TimeUnit::Nanosecond,
            tags: vec!["host".into()],
            fields: vec![("v".into(), ValueType::Integer)],
        };
        let projected = schema.arrow_schema();
        let scan = ShardScanExec::new(
            schema,
            ScanRequest::new("cnosdb", "public", "cpu"),
            projected,
            2,
        );
        let Err(error) = scan.execute(1, Arc::new(TaskContext::default())) else {
            panic!("a scan partition ran off its shard");
        };
        let text = error.to_string();
        assert!(text.contains("must run on shard 1"), "{text}");
        assert!(text.contains("not a shard"), "{text}");
    }
}
