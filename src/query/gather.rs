//! `ShardGatherExec`: where the plan crosses from the shards to the query runtime.
//!
//! Its child is a plan fragment (scan and the per-partition operators above it, see
//! `scatter.rs`). Partition i of the gather is a stream fed by shard i: executing it sends the
//! fragment over the mesh (`ShardMsg::Fragment`), shard i runs `fragment.execute(i)` as a glommio
//! task on its own core (`run_on_shard`) and forwards each batch over a bounded async channel.
//! The channel is runtime-agnostic: the receiving end is polled by tokio, the sending end by
//! glommio, and neither ever blocks the other's thread.
//!
//! Cancellation: dropping the gather's stream (LIMIT satisfied, query timed out, client gone)
//! drops a guard whose closing the shard task watches, so the fragment stops at its next yield
//! point (at most a preemption period, 2 ms, or a batch later), not when it would next send.
//!
//! Failure: an error inside the fragment travels as the stream's error; a panic inside it is
//! caught on the shard (which keeps serving) and becomes `FragmentPanic`, an internal error.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, ReplaceChildrenOptions,
};
use futures_lite::{FutureExt, StreamExt};

use crate::mesh::{Mesh, ShardMsg};

/// Batches a shard may have in flight towards one gather partition before it waits.
const GATHER_CHANNEL_BATCHES: usize = 4;

/// How the fragment below a gather was chosen; EXPLAIN shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatherPath {
    /// The whole fragment below the plan's lowest exchange runs on the shards.
    Fragment,
    /// Part of the plan above the scan could not run on a shard (named in the reason): only
    /// the operators below it do, the rest runs on the query runtime.
    Fallback { reason: String },
}

/// Partition i = the fragment's partition i, executed on shard i.
#[derive(Debug)]
pub struct ShardGatherExec {
    fragment: Arc<dyn ExecutionPlan>,
    mesh: Mesh,
    path: GatherPath,
}

impl ShardGatherExec {
    pub fn new(fragment: Arc<dyn ExecutionPlan>, mesh: Mesh, path: GatherPath) -> Self {
        ShardGatherExec {
            fragment,
            mesh,
            path,
        }
    }
}

impl DisplayAs for ShardGatherExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let shards = self.fragment.output_partitioning().partition_count();
        let path = match &self.path {
            GatherPath::Fragment => "fragment".to_string(),
            GatherPath::Fallback { reason } => format!("fallback ({reason})"),
        };
        match t {
            DisplayFormatType::TreeRender => write!(f, "shards={shards}\npath={path}"),
            _ => write!(
                f,
                "ShardGatherExec: shards={shards}, path={path}, each shard runs the plan below on its own core"
            ),
        }
    }
}

impl ExecutionPlan for ShardGatherExec {
    fn name(&self) -> &str {
        "ShardGatherExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.fragment.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.fragment]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "ShardGatherExec takes one child, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(ShardGatherExec {
            fragment: children.swap_remove(0),
            mesh: self.mesh.clone(),
            path: self.path.clone(),
        }))
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

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition >= self.mesh.shards() {
            return Err(DataFusionError::Internal(format!(
                "gather partition {partition} of {} shards",
                self.mesh.shards()
            )));
        }
        let (reply, rx) = async_channel::bounded(GATHER_CHANNEL_BATCHES);
        let (guard, cancel) = async_channel::bounded::<()>(1);
        let task = FragmentTask {
            plan: self.fragment.clone(),
            partition,
            context,
            reply,
            cancel,
        };
        let mesh = self.mesh.clone();
        // The fragment is sent when the stream is first polled; then batches flow until the end
        // marker. `guard` lives as long as the stream. A channel closed without the marker
        // means the shard dropped its task (stopping): an error, never a silently short answer.
        let stream = futures_lite::stream::unfold(Some((Some(task), rx, guard)), move |state| {
            let mesh = mesh.clone();
            async move {
                let (pending, rx, guard) = state?;
                if let Some(task) = pending {
                    if mesh
                        .send(partition, ShardMsg::Fragment(task))
                        .await
                        .is_err()
                    {
                        let e =
                            DataFusionError::Execution(format!("shard {partition} is stopping"));
                        return Some((Err(e), None));
                    }
                }
                match rx.recv().await {
                    Ok(Ok(Some(batch))) => Some((Ok(batch), Some((None, rx, guard)))),
                    Ok(Ok(None)) => None,
                    Ok(Err(e)) => Some((Err(e), None)),
                    Err(_) => {
                        let e = DataFusionError::Execution(format!(
                            "shard {partition} stopped before finishing its part of the query"
                        ));
                        Some((Err(e), None))
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.fragment.schema(),
            stream,
        )))
    }
}

/// One shard's share of a query: execute `plan`'s partition `partition` and send its batches.
pub struct FragmentTask {
    plan: Arc<dyn ExecutionPlan>,
    partition: usize,
    context: Arc<TaskContext>,
    /// Batches, then `Ok(None)` at the end, or one error.
    reply: async_channel::Sender<DfResult<Option<RecordBatch>>>,
    /// Closed when the gather's stream is dropped.
    cancel: async_channel::Receiver<()>,
}

/// A fragment panicked on a shard; the shard caught it and keeps serving.
#[derive(Debug, thiserror::Error)]
#[error("query fragment panicked on shard {shard}: {message}")]
pub struct FragmentPanic {
    pub shard: usize,
    pub message: String,
}

/// Runs a fragment on this shard (called from the shard's inbox, on its thread) until it ends,
/// fails, or the gather goes away.
pub async fn run_on_shard(task: FragmentTask) {
    let FragmentTask {
        plan,
        partition,
        context,
        reply,
        cancel,
    } = task;
    let forward = async {
        let mut stream = plan.execute(partition, context)?;
        while let Some(item) = stream.next().await {
            if reply.send(Ok(Some(item?))).await.is_err() {
                return Ok(()); // the query is gone
            }
        }
        let _ = reply.send(Ok(None)).await;
        Ok(())
    };
    let cancelled = async {
        let _ = cancel.recv().await;
        Ok(())
    };
    let outcome = AssertUnwindSafe(futures_lite::future::or(forward, cancelled))
        .catch_unwind()
        .await;
    let error = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            tracing::error!(shard = partition, %message, "query fragment panicked");
            DataFusionError::External(Box::new(FragmentPanic {
                shard: partition,
                message,
            }))
        }
    };
    let _ = reply.send(Err(error)).await;
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};

    use super::*;
    use crate::query::{datafusion_error, QueryError};

    #[derive(Debug)]
    struct Panics(SchemaRef);

    impl PartitionStream for Panics {
        fn schema(&self) -> &SchemaRef {
            &self.0
        }

        fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
            panic!("deliberate test panic");
        }
    }

    /// A panic inside a fragment is caught on the shard and arrives as an internal error.
    #[test]
    fn a_panicking_fragment_becomes_an_internal_error() {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .expect("a glommio executor");
        executor.run(async {
            let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
            let plan = StreamingTableExec::try_new(
                schema.clone(),
                vec![Arc::new(Panics(schema)) as Arc<dyn PartitionStream>],
                None,
                vec![],
                false,
                None,
            )
            .expect("a plan");
            let (reply, rx) = async_channel::bounded(4);
            let (_guard, cancel) = async_channel::bounded(1);
            run_on_shard(FragmentTask {
                plan: Arc::new(plan),
                partition: 0,
                context: Arc::new(TaskContext::default()),
                reply,
                cancel,
            })
            .await;
            let error = rx.recv().await.expect("an answer").expect_err("an error");
            assert!(rx.recv().await.is_err(), "nothing after the error");
            let error = datafusion_error(error);
            assert!(matches!(error, QueryError::Internal(_)), "{error:?}");
            assert!(
                error.to_string().contains("deliberate test panic"),
                "{error}"
            );
        });
    }
}
