//! The shard-aggregate rule: a partial aggregate over a table scan becomes one shard operator,
//! `ShardAggregateExec`, that aggregates each shard's series straight from its memtable
//! (`chronoshard_shard::aggregate`), without building the rows as Arrow batches.
//!
//! DataFusion's partial aggregate hashes every row's group key, which for TSBS's
//! `GROUP BY date_bin(INTERVAL '1 hour', time), hostname` means copying a tag string per row
//! and hashing it. On the shard the tags are constant along a series and time is sorted, so
//! the group changes only at bucket edges. The operator emits exactly the partial states
//! DataFusion's `Partial` aggregate would (same schema, same values, the same row order of
//! additions), so the `Final` aggregate above merges them unchanged.
//!
//! The rule fires only when all of this holds, else the plan is left alone:
//! - an `AggregateExec` in `Partial` mode directly over a `ShardScanExec` (pushed filters are
//!   exact, so a filter in between means one the shard cannot apply), one grouping set;
//! - every group key is a tag column or an expression of the time column alone whose type is
//!   a timestamp (at most one of those: the bucket);
//! - every aggregate is `count`, `sum`, `min`, `max` or `avg`, neither DISTINCT nor FILTER nor
//!   ordered, over one field column (for `avg` possibly cast to `Float64`), or `count` of a
//!   non-null literal (`count(*)`), with numeric fields for all but `count`;
//! - the state types the shard produces are those of DataFusion's partial schema.
//!
//! Top buckets: above it, `ORDER BY <bucket> DESC LIMIT n` (a `SortExec` with a fetch whose
//! first key is the bucket, reached through projections, exchanges and the `Final` aggregate)
//! tells the shard that only the groups of the `n` latest buckets matter, and it reads each
//! series from the `n`-th latest bucket it has seen on (see the shard module). Only for
//! `date_bin(interval, time)` over nanosecond times, which floors (null only for times within a
//! stride of `i64::MIN`, which are always read); that bucket is also computed natively, exactly
//! as DataFusion's `date_bin` does (`date_bin_ns`, tested against it), instead of through
//! DataFusion's per-row checked arithmetic.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use chronoshard_shard::aggregate::{
    Aggregate, AggregateCursor, AggregateFunction, AggregateRequest, TopBuckets,
};
use chronoshard_shard::scan::{ScanRequest, TableSchema, TIME_COLUMN};
use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{
    replace_children_if_necessary, ChildrenPropertiesMode, DisplayAs, DisplayFormatType,
    ExecutionPlan, Partitioning, PlanProperties, ReplaceChildrenOptions,
};
use futures_lite::Stream;

use super::scan::ShardScanExec;
use super::shard_local::{self, ShardRead};

/// Groups a shard holds before it sends them on: a bound on its memory (the `Final` aggregate
/// merges a group that arrives in pieces).
const GROUPS_MAX: usize = 1 << 16;

/// Points aggregated per call into the memtable, between checks for the reactor's preemption.
const POINTS_PER_CALL: usize = 1 << 16;

#[derive(Debug, Default)]
pub struct ShardAggregateRule;

impl PhysicalOptimizerRule for ShardAggregateRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = replace_partials(plan)?;
        push_top(plan)
    }

    fn name(&self) -> &str {
        "chronoshard_shard_aggregate"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn replace_partials(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    if let Some(agg) = plan.downcast_ref::<AggregateExec>() {
        if let Some(scan) = agg.input().downcast_ref::<ShardScanExec>() {
            if let Some(exec) = ShardAggregateExec::try_from_plan(agg, scan)? {
                return Ok(Arc::new(exec));
            }
        }
    }
    super::rewrite_children(plan, replace_partials)
}

/// A group key of the partial aggregate, as the shard computes it.
#[derive(Debug, Clone)]
enum GroupKey {
    /// Column `i` of the shard's output (a tag).
    Tag(usize),
    /// The bucket: the expression over `time` (rewritten to read column 0 of a one-column
    /// batch), its output type, and for `date_bin(interval, time)` over nanoseconds its stride
    /// (computed natively then, and it floors).
    Bucket {
        expr: Arc<dyn PhysicalExpr>,
        data_type: DataType,
        stride: Option<i64>,
    },
}

/// How a time-only group expression is evaluated on the shard.
#[derive(Debug, Clone)]
struct BucketEval {
    expr: Arc<dyn PhysicalExpr>,
    /// One column, `time`, in the table's unit.
    schema: SchemaRef,
    /// `date_bin`'s stride in nanoseconds, when computed natively.
    stride: Option<i64>,
}

impl BucketEval {
    fn eval(&self, times: &[i64], out: &mut Vec<Option<i64>>) -> Result<(), String> {
        if let Some(stride) = self.stride {
            out.extend(times.iter().map(|&t| date_bin_ns(stride, t)));
            return Ok(());
        }
        let unit = match self.schema.field(0).data_type() {
            DataType::Timestamp(unit, _) => *unit,
            other => return Err(format!("time column of type {other}")),
        };
        let array = timestamps(unit, times.to_vec());
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), vec![array])
            .map_err(|e| e.to_string())?;
        let value = self.expr.evaluate(&batch).map_err(|e| e.to_string())?;
        let buckets = value.into_array(times.len()).map_err(|e| e.to_string())?;
        let buckets = cast(&buckets, &DataType::Int64).map_err(|e| e.to_string())?;
        let buckets = buckets.as_primitive::<Int64Type>();
        out.extend(buckets.iter());
        Ok(())
    }
}

fn timestamps(unit: TimeUnit, values: Vec<i64>) -> ArrayRef {
    use datafusion::arrow::array::PrimitiveArray;
    use datafusion::arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    match unit {
        TimeUnit::Second => Arc::new(PrimitiveArray::<TimestampSecondType>::from(values)),
        TimeUnit::Millisecond => Arc::new(PrimitiveArray::<TimestampMillisecondType>::from(values)),
        TimeUnit::Microsecond => Arc::new(PrimitiveArray::<TimestampMicrosecondType>::from(values)),
        TimeUnit::Nanosecond => Arc::new(PrimitiveArray::<TimestampNanosecondType>::from(values)),
    }
}

/// The column a physical expression is, if it is a plain column.
fn column_name(e: &Arc<dyn PhysicalExpr>) -> Option<&str> {
    e.downcast_ref::<Column>().map(Column::name)
}

/// Whether `e` reads the time column and no other column.
fn reads_only_time(e: &Arc<dyn PhysicalExpr>) -> bool {
    let (mut time, mut other) = (false, false);
    let _ = e.apply(|node| {
        if let Some(c) = node.downcast_ref::<Column>() {
            if c.name() == TIME_COLUMN {
                time = true;
            } else {
                other = true;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    time && !other
}

/// The stride in nanoseconds of `date_bin(<literal interval>, time)` over nanosecond times
/// with the default origin, if `e` is that with a positive fixed-length interval.
fn plain_date_bin_stride(e: &Arc<dyn PhysicalExpr>, unit: TimeUnit) -> Option<i64> {
    use datafusion::common::ScalarValue;
    const NS_PER_DAY: i64 = 86_400_000_000_000;
    let f = e.downcast_ref::<ScalarFunctionExpr>()?;
    if unit != TimeUnit::Nanosecond
        || f.name() != "date_bin"
        || f.args().len() != 2
        || column_name(&f.args()[1]) != Some(TIME_COLUMN)
    {
        return None;
    }
    let stride = match f.args()[0].downcast_ref::<Literal>()?.value() {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => i64::from(v.days)
            .checked_mul(NS_PER_DAY)?
            .checked_add(v.nanoseconds)?,
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days)
            .checked_mul(NS_PER_DAY)?
            .checked_add(i64::from(v.milliseconds).checked_mul(1_000_000)?)?,
        _ => return None,
    };
    (stride > 0).then_some(stride)
}

/// DataFusion's `date_bin(stride, t)` for nanosecond `t` and the default origin (the Unix
/// epoch): the floor of `t` to a multiple of `stride`, null where that overflows.
fn date_bin_ns(stride: i64, t: i64) -> Option<i64> {
    t.checked_sub(t.rem_euclid(stride))
}

/// `ShardAggregateExec`: partition i is shard i's partial aggregate (module docs).
#[derive(Debug)]
pub struct ShardAggregateExec {
    table_schema: TableSchema,
    request: AggregateRequest,
    /// For each DataFusion group column, in order: where the shard's output has it.
    keys: Vec<GroupKey>,
    /// Shown by EXPLAIN: the group expressions and aggregates as DataFusion names them.
    group_names: Vec<String>,
    aggregate_names: Vec<String>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ShardAggregateExec {
    /// The shard operator for `agg` over `scan`, or None if the rule does not apply.
    fn try_from_plan(
        agg: &AggregateExec,
        scan: &ShardScanExec,
    ) -> DfResult<Option<ShardAggregateExec>> {
        if *agg.mode() != AggregateMode::Partial
            || !agg.group_expr().is_single()
            || agg.filter_expr().iter().any(Option::is_some)
        {
            return Ok(None);
        }
        let request = scan.request();
        if request.last_per_series || request.limit.is_some() {
            return Ok(None);
        }
        let table = scan.table_schema();
        let input = agg.input().schema();
        let mut keys = Vec::new();
        let mut group_tags = Vec::new();
        let mut bucketed = false;
        for (e, _) in agg.group_expr().expr() {
            if let Some(t) = column_name(e).and_then(|n| table.tags.iter().position(|t| t == n)) {
                keys.push(GroupKey::Tag(group_tags.len()));
                group_tags.push(t);
                continue;
            }
            if bucketed || !reads_only_time(e) {
                return Ok(None);
            }
            let data_type = e.data_type(&input)?;
            if !matches!(data_type, DataType::Timestamp(_, _)) {
                return Ok(None);
            }
            let rewritten = Arc::clone(e)
                .transform(|node| {
                    Ok(match node.downcast_ref::<Column>() {
                        Some(_) => Transformed::yes(
                            Arc::new(Column::new(TIME_COLUMN, 0)) as Arc<dyn PhysicalExpr>
                        ),
                        None => Transformed::no(node),
                    })
                })?
                .data;
            keys.push(GroupKey::Bucket {
                stride: plain_date_bin_stride(e, table.time_unit),
                expr: rewritten,
                data_type,
            });
            bucketed = true;
        }
        let mut aggregates = Vec::new();
        for a in agg.aggr_expr() {
            if a.is_distinct() || a.ignore_nulls() || !a.order_bys().is_empty() {
                return Ok(None);
            }
            let function = match a.fun().name() {
                "count" => AggregateFunction::Count,
                "sum" => AggregateFunction::Sum,
                "min" => AggregateFunction::Min,
                "max" => AggregateFunction::Max,
                "avg" => AggregateFunction::Avg,
                _ => return Ok(None),
            };
            let args = a.expressions();
            let [arg] = args.as_slice() else {
                return Ok(None);
            };
            let field = match field_of(arg, function, table) {
                Some(f) => f,
                None => return Ok(None),
            };
            aggregates.push(Aggregate { function, field });
        }
        let request = AggregateRequest {
            scan: ScanRequest {
                projection: None,
                ..request.clone()
            },
            group_tags,
            bucketed,
            aggregates,
            top_buckets: None,
            groups_max: GROUPS_MAX,
        };
        // The shard's states must be DataFusion's, type for type.
        let Ok(shard_schema) = chronoshard_shard::aggregate::output_schema(table, &request) else {
            return Ok(None);
        };
        let schema = agg.schema();
        let groups = keys.len();
        if schema.fields().len() != shard_schema.fields().len() {
            return Ok(None);
        }
        let states_match = schema.fields()[groups..]
            .iter()
            .zip(&shard_schema.fields()[groups..])
            .all(|(df, ours)| df.data_type() == ours.data_type());
        if !states_match {
            return Ok(None);
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(
                scan.properties().output_partitioning().partition_count(),
            ),
            EmissionType::Final,
            Boundedness::Bounded,
        )
        .with_scheduling_type(SchedulingType::Cooperative);
        Ok(Some(ShardAggregateExec {
            table_schema: table.clone(),
            request,
            keys,
            group_names: agg
                .group_expr()
                .expr()
                .iter()
                .map(|(e, name)| match column_name(e) {
                    Some(_) => name.clone(),
                    None => e.to_string(),
                })
                .collect(),
            aggregate_names: agg
                .aggr_expr()
                .iter()
                .map(|a| a.name().to_string())
                .collect(),
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    /// The same operator keeping only the groups of the `n` latest buckets, if DataFusion's
    /// group column `column` is a bucket that floors.
    fn with_top(&self, column: usize, n: usize) -> Option<ShardAggregateExec> {
        let stride = match self.keys.get(column) {
            Some(GroupKey::Bucket {
                stride: Some(stride),
                ..
            }) => *stride,
            _ => return None,
        };
        let mut request = self.request.clone();
        let n = match request.top_buckets {
            Some(t) => t.n.min(n),
            None => n,
        };
        request.top_buckets = Some(TopBuckets {
            n,
            // Only times within a stride of i64::MIN have no bucket (the floor overflows).
            null_below: i64::MIN.saturating_add(stride),
        });
        Some(ShardAggregateExec {
            table_schema: self.table_schema.clone(),
            request,
            keys: self.keys.clone(),
            group_names: self.group_names.clone(),
            aggregate_names: self.aggregate_names.clone(),
            properties: Arc::clone(&self.properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

/// The field an aggregate's argument reads (None inside: count of rows), if the shard can.
fn field_of(
    arg: &Arc<dyn PhysicalExpr>,
    function: AggregateFunction,
    table: &TableSchema,
) -> Option<Option<usize>> {
    let field = |name: &str| table.fields.iter().position(|(f, _)| f == name);
    if let Some(name) = column_name(arg) {
        return field(name).map(Some);
    }
    if let Some(lit) = arg.downcast_ref::<Literal>() {
        return (function == AggregateFunction::Count && !lit.value().is_null()).then_some(None);
    }
    if let Some(c) = arg.downcast_ref::<CastExpr>() {
        if function == AggregateFunction::Avg && *c.cast_type() == DataType::Float64 {
            return column_name(c.expr()).and_then(field).map(Some);
        }
    }
    None
}

impl DisplayAs for ShardAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let r = &self.request.scan;
        match t {
            DisplayFormatType::TreeRender => write!(f, "table={}", r.table),
            _ => {
                write!(
                    f,
                    "ShardAggregateExec: table={}, gby=[{}], aggr=[{}]",
                    r.table,
                    self.group_names.join(", "),
                    self.aggregate_names.join(", ")
                )?;
                if r.time_range != (i64::MIN, i64::MAX) {
                    write!(f, ", time=[{}, {})", r.time_range.0, r.time_range.1)?;
                }
                for (tag, values) in &r.tag_filters {
                    write!(f, ", {tag} in {values:?}")?;
                }
                if let Some(t) = self.request.top_buckets {
                    write!(f, ", latest {} buckets", t.n)?;
                }
                Ok(())
            }
        }
    }
}

impl ExecutionPlan for ShardAggregateExec {
    fn name(&self) -> &str {
        "ShardAggregateExec"
    }

    super::scan::leaf_plan_methods!();

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        shard_local::check_thread(partition, || {
            format!("aggregate of {}", self.request.scan.table)
        })?;
        let cursor = AggregateCursor::new(&self.table_schema, self.request.clone())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let bucket = self.keys.iter().find_map(|k| match k {
            GroupKey::Bucket { expr, stride, .. } => Some(BucketEval {
                expr: Arc::clone(expr),
                stride: *stride,
                schema: Arc::new(Schema::new(vec![Field::new(
                    TIME_COLUMN,
                    DataType::Timestamp(self.table_schema.time_unit, None),
                    false,
                )])),
            }),
            GroupKey::Tag(_) => None,
        });
        let read = ShardRead::new(partition, &cursor.request().scan, cursor.read_fields());
        Ok(Box::pin(AggregateStream {
            shard: partition,
            read,
            schema: self.schema(),
            keys: self.keys.clone(),
            cursor,
            bucket,
            failed: false,
            metrics: BaselineMetrics::new(&self.metrics, partition),
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Shard `shard`'s partial states, computed between yields to the reactor.
struct AggregateStream {
    shard: usize,
    read: ShardRead,
    schema: SchemaRef,
    keys: Vec<GroupKey>,
    cursor: AggregateCursor,
    bucket: Option<BucketEval>,
    failed: bool,
    metrics: BaselineMetrics,
}

impl AggregateStream {
    /// The shard's batch in DataFusion's partial schema: group columns in DataFusion's order
    /// (the bucket cast to its timestamp type), then the states as they are.
    fn to_partial(&self, batch: RecordBatch) -> DfResult<RecordBatch> {
        let tags = self
            .keys
            .iter()
            .filter(|k| matches!(k, GroupKey::Tag(_)))
            .count();
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for key in &self.keys {
            columns.push(match key {
                GroupKey::Tag(i) => Arc::clone(batch.column(*i)),
                GroupKey::Bucket { data_type, .. } => cast(batch.column(tags), data_type)?,
            });
        }
        let groups = self.keys.len();
        columns.extend(batch.columns()[groups..].iter().cloned());
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl Stream for AggregateStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.failed || this.cursor.is_done() {
                return this.metrics.record_poll(Poll::Ready(None));
            }
            if shard_local::preempt_due(this.shard) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let timer = this.metrics.elapsed_compute().timer();
            let (cursor, bucket) = (&mut this.cursor, &this.bucket);
            let mut eval = |times: &[i64], out: &mut Vec<Option<i64>>| match bucket {
                Some(b) => b.eval(times, out),
                None => Err("no bucket expression".to_string()),
            };
            let next = this.read.step(cx, |scan| {
                cursor.advance_on(scan, POINTS_PER_CALL, &mut eval)
            });
            timer.done();
            let Poll::Ready(next) = next else {
                return Poll::Pending;
            };
            let item = match next {
                Ok(Ok(None)) => continue,
                Ok(Ok(Some(batch))) => this.to_partial(batch),
                Ok(Err(e)) => Err(DataFusionError::External(Box::new(e))),
                Err(e) => Err(DataFusionError::External(Box::new(e))),
            };
            // After an error nothing more comes from this partition.
            this.failed = item.is_err();
            return this.metrics.record_poll(Poll::Ready(Some(item)));
        }
    }
}

impl RecordBatchStream for AggregateStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// Finds `SortExec`s with a fetch over a bucketed shard aggregate and tells it (module docs).
fn push_top(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    if let Some(sort) = plan.downcast_ref::<SortExec>() {
        if let Some(n) = sort.fetch() {
            let first = sort.expr().first();
            if first.options.descending {
                if let Some(c) = first.expr.downcast_ref::<Column>() {
                    if let Some(input) = with_top(sort.input(), c.index(), n)? {
                        return replace_children_if_necessary(plan, vec![input]);
                    }
                }
            }
        }
    }
    super::rewrite_children(plan, push_top)
}

/// `plan` with its shard aggregate told to keep the `n` latest buckets, if output column
/// `column` of `plan` is that aggregate's bucket reached through row-preserving operators and
/// one final aggregate.
fn with_top(
    plan: &Arc<dyn ExecutionPlan>,
    column: usize,
    n: usize,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let rebuilt = |child: Option<Arc<dyn ExecutionPlan>>| -> DfResult<_> {
        match child {
            Some(c) => replace_children_if_necessary(Arc::clone(plan), vec![c]).map(Some),
            None => Ok(None),
        }
    };
    if let Some(p) = plan.downcast_ref::<ProjectionExec>() {
        let Some(e) = p.expr().get(column) else {
            return Ok(None);
        };
        let Some(c) = e.expr.downcast_ref::<Column>() else {
            return Ok(None);
        };
        return rebuilt(with_top(p.input(), c.index(), n)?);
    }
    if plan.is::<CoalescePartitionsExec>() || plan.is::<RepartitionExec>() {
        let children = plan.children();
        let [child] = children.as_slice() else {
            return Ok(None);
        };
        return rebuilt(with_top(child, column, n)?);
    }
    if let Some(agg) = plan.downcast_ref::<AggregateExec>() {
        let finals = matches!(
            agg.mode(),
            AggregateMode::Final | AggregateMode::FinalPartitioned
        );
        if !finals || !agg.group_expr().is_single() || column >= agg.group_expr().expr().len() {
            return Ok(None);
        }
        return rebuilt(partial_with_top(agg.input(), column, n)?);
    }
    Ok(None)
}

/// Below a final aggregate: through exchanges to the shard aggregate.
fn partial_with_top(
    plan: &Arc<dyn ExecutionPlan>,
    column: usize,
    n: usize,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(exec) = plan.downcast_ref::<ShardAggregateExec>() {
        return Ok(exec
            .with_top(column, n)
            .map(|e| Arc::new(e) as Arc<dyn ExecutionPlan>));
    }
    if plan.is::<CoalescePartitionsExec>() || plan.is::<RepartitionExec>() {
        let children = plan.children();
        let [child] = children.as_slice() else {
            return Ok(None);
        };
        return match partial_with_top(child, column, n)? {
            Some(c) => replace_children_if_necessary(Arc::clone(plan), vec![c]).map(Some),
            None => Ok(None),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::TimestampNanosecondType;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// `date_bin_ns` answers what DataFusion's `date_bin` answers, overflow (null) included.
    #[test]
    fn native_date_bin_is_datafusions() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let mut times = vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX, i64::MAX - 1];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            times.push(x as i64);
            times.push((x % 10_000_000_000_000) as i64 - 5_000_000_000_000);
        }
        for (interval, stride) in [
            ("1 nanosecond", 1),
            ("7 seconds", 7_000_000_000),
            ("1 hour", 3_600_000_000_000),
            ("3 days", 259_200_000_000_000),
        ] {
            for t in [-stride, stride, stride - 1, 1 - stride] {
                times.push(t);
                times.push(i64::MIN.saturating_add(stride).saturating_add(t));
            }
            let schema = Arc::new(Schema::new(vec![Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            )]));
            let batch = RecordBatch::try_new(
                schema,
                vec![Arc::new(TimestampNanosecondArray::from(times.clone()))],
            )
            .expect("a batch");
            let ctx = SessionContext::new();
            ctx.register_batch("t", batch).expect("registered");
            let sql = format!("SELECT date_bin(INTERVAL '{interval}', t) FROM t");
            let out = runtime
                .block_on(async { ctx.sql(&sql).await?.collect().await })
                .expect("date_bin runs");
            let got: Vec<Option<i64>> = out
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<TimestampNanosecondType>().iter())
                .collect();
            let ours: Vec<Option<i64>> = times.iter().map(|&t| date_bin_ns(stride, t)).collect();
            assert_eq!(ours, got, "{interval}");
            if stride > 1 {
                assert!(
                    ours.iter().any(Option::is_none),
                    "{interval}: overflow covered"
                );
            }
        }
    }
}
