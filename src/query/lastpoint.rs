//! The last-point rule: a query that keeps only the latest row of each group of tags reads
//! only each series' latest point.
//!
//! `SELECT DISTINCT ON (host) * FROM cpu ORDER BY host, time DESC` (TSBS's lastpoint) plans as a
//! partial aggregate over the scan, grouped by tags, whose every aggregate is
//! `first_value(x ORDER BY ..., time DESC)` (or `last_value(x ORDER BY ..., time ASC)`, as
//! DataFusion may reverse it). Each group of tags is a union of whole series, so the latest row
//! of the group is the latest row of one of its series: reading only every series' latest point
//! (`ScanRequest::last_per_series`, a binary search per series on the shard) gives the
//! aggregate the same rows to choose from at the top, and the answer is the same. Among series
//! tied at the same latest time the choice is DataFusion's either way.
//!
//! The rule fires only when all of this holds, else the plan is left alone:
//! - an `AggregateExec` in `Partial` mode directly over a `ShardScanExec` (a filter in between
//!   would have to see the rows the shortcut skips), one grouping set, group keys that are all
//!   tag columns (or none);
//! - every aggregate is `first_value` or `last_value`, neither DISTINCT nor IGNORE NULLS, with no
//!   FILTER, whose ordering, after the group keys (constant within a group), starts with the
//!   time column, descending for `first_value`, ascending for `last_value`.
//!
//! It runs before the scatter rule, so the shortened scan goes into the shard fragment.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{replace_children_if_necessary, ExecutionPlan};

use super::scan::ShardScanExec;
use chronoshard_shard::scan::TIME_COLUMN;

#[derive(Debug, Default)]
pub struct LastPointRule;

impl PhysicalOptimizerRule for LastPointRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        rewrite(plan)
    }

    fn name(&self) -> &str {
        "chronoshard_last_point"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn rewrite(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    if let Some(agg) = plan.downcast_ref::<AggregateExec>() {
        if let Some(scan) = agg.input().downcast_ref::<ShardScanExec>() {
            if keeps_latest_per_group(agg, scan) {
                let scan: Arc<dyn ExecutionPlan> = Arc::new(scan.last_per_series());
                return replace_children_if_necessary(plan, vec![scan]);
            }
        }
    }
    super::rewrite_children(plan, rewrite)
}

/// The column a physical expression is, if it is a plain column of `input`.
fn column_name(e: &Arc<dyn PhysicalExpr>) -> Option<&str> {
    e.downcast_ref::<Column>().map(Column::name)
}

/// Whether the partial aggregate only ever keeps each group's latest row (module docs).
fn keeps_latest_per_group(agg: &AggregateExec, scan: &ShardScanExec) -> bool {
    if *agg.mode() != AggregateMode::Partial || !agg.group_expr().is_single() {
        return false;
    }
    let tags = &scan.table_schema().tags;
    let mut keys = Vec::new();
    for (e, _) in agg.group_expr().expr() {
        match column_name(e) {
            Some(name) if tags.iter().any(|t| t == name) => keys.push(name),
            _ => return false,
        }
    }
    if agg.aggr_expr().is_empty() || agg.filter_expr().iter().any(Option::is_some) {
        return false;
    }
    agg.aggr_expr().iter().all(|a| {
        let descending = match a.fun().name() {
            "first_value" => true,
            "last_value" => false,
            _ => return false,
        };
        if a.is_distinct() || a.ignore_nulls() {
            return false;
        }
        let first_non_key = a
            .order_bys()
            .iter()
            .find(|o| column_name(&o.expr).is_none_or(|n| !keys.contains(&n)));
        first_non_key.is_some_and(|o| {
            column_name(&o.expr) == Some(TIME_COLUMN) && o.options.descending == descending
        })
    })
}
