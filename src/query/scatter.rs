//! The scatter rule: which part of a physical plan runs on the shards.
//!
//! A physical optimizer rule, run after all of DataFusion's own (so EXPLAIN shows its result).
//! Every table scan (`ShardScanExec`, one partition per shard) ends up under a `ShardGatherExec`.
//! Walking down from the root, the first subtree that is a *fragment* is cut off and put under
//! a gather. A fragment is a chain of operators from the allow-list over exactly one scan:
//!
//! - `ShardScanExec` or `ShardAggregateExec` (the leaf), `FilterExec`, `ProjectionExec`,
//!   `LocalLimitExec`, `CooperativeExec`;
//! - `AggregateExec` in `Partial` mode (its `Final` half merges the shards' states above);
//! - `SortExec` with a `fetch` (TopK) that keeps the partitioning (one sort per shard).
//!
//! Each of these works partition by partition, so partition i of the fragment is exactly shard
//! i's data, processed; none of them spawns tokio tasks (they run inline on a glommio thread).
//! When the fragment's parent is an exchange (`RepartitionExec`, `CoalescePartitionsExec`,
//! `SortPreservingMergeExec`) or there is none (the root), the cut is where the design wants it
//! (path `fragment`). When the parent is another operator (a join, a full sort, a window), the
//! shards still run the fragment but the operators DataFusion would have run per partition
//! above it run on the query runtime: EXPLAIN shows path `fallback` with the operator's name.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::LocalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{replace_children_if_necessary, ExecutionPlan};

use super::aggregate::ShardAggregateExec;
use super::gather::{GatherPath, ShardGatherExec};
use super::scan::ShardScanExec;
use crate::mesh::Mesh;

/// Puts every scan and the fragment above it under a `ShardGatherExec`.
#[derive(Debug)]
pub struct ScatterRule {
    mesh: Mesh,
}

impl ScatterRule {
    pub fn new(mesh: Mesh) -> ScatterRule {
        ScatterRule { mesh }
    }

    fn rewrite(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        parent: Option<&Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if plan.is::<ShardGatherExec>() {
            return Ok(plan);
        }
        if is_fragment(&plan) {
            let path = match parent {
                Some(p) if !is_exchange(p) => GatherPath::Fallback {
                    reason: format!("{} above it cannot run on a shard", p.name()),
                },
                _ => GatherPath::Fragment,
            };
            return Ok(Arc::new(ShardGatherExec::new(
                plan,
                self.mesh.clone(),
                path,
            )));
        }
        let children = plan
            .children()
            .into_iter()
            .map(|c| self.rewrite(c.clone(), Some(&plan)))
            .collect::<DfResult<Vec<_>>>()?;
        if children.is_empty() {
            return Ok(plan);
        }
        replace_children_if_necessary(plan, children)
    }
}

impl PhysicalOptimizerRule for ScatterRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.rewrite(plan, None)
    }

    fn name(&self) -> &str {
        "chronoshard_scatter"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The operators that move rows between partitions: a fragment's natural upper end.
fn is_exchange(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.is::<RepartitionExec>()
        || plan.is::<CoalescePartitionsExec>()
        || plan.is::<SortPreservingMergeExec>()
}

/// A chain of allowed, partition-preserving operators over exactly one shard leaf.
fn is_fragment(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if plan.is::<ShardScanExec>() || plan.is::<ShardAggregateExec>() {
        return true;
    }
    let children = plan.children();
    let [child] = children.as_slice() else {
        return false;
    };
    allowed_on_shard(plan) && is_fragment(child)
}

/// The allow-list (see the module docs).
fn allowed_on_shard(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if let Some(agg) = plan.downcast_ref::<AggregateExec>() {
        return *agg.mode() == AggregateMode::Partial;
    }
    if let Some(sort) = plan.downcast_ref::<SortExec>() {
        return sort.fetch().is_some() && sort.preserve_partitioning();
    }
    plan.is::<FilterExec>()
        || plan.is::<ProjectionExec>()
        || plan.is::<LocalLimitExec>()
        || plan.is::<CooperativeExec>()
}
