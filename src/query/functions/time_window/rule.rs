//! The analyzer rule that turns a sliding `time_window` into rows: one row per window a row is
//! in (Spark's and CnosDB's semantics), so `GROUP BY` a sliding window counts a row in each.
//!
//! For the plan node N whose expressions call `time_window(t, w, s[, o])` with `s != w`:
//!
//! ```text
//! N(.. time_window(t, w, s) ..)              N(.. __time_window ..)      (same output names)
//!   input                            =>        Unnest(__time_window)
//!                                                Projection(input.*, time_windows(t, w, s) AS __time_window)
//!                                                  input
//! ```
//!
//! `time_windows` returns the list of the row's windows; the unnest gives each its own row.
//! Expressions of N keep their column names (the parent plan refers to them by name). The
//! rule also enforces CnosDB's "one time_window per query", and checks that every call's
//! window arguments are constants (so a sliding one can be recognized while planning).
//!
//! The unnest is not on the scatter rule's allow-list, so with a sliding window the partial
//! aggregate runs above the shards' gathers (the scan and the projection still run on them).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{plan_err, Column, DFSchema, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;

use super::{spec, Spec, TimeWindows, NAME};

/// The column the expanded windows travel in between the unnest and the node that used them.
const EXPANDED: &str = "__chronoshard_time_window";

#[derive(Debug, Default)]
pub struct TimeWindowRule;

impl AnalyzerRule for TimeWindowRule {
    fn name(&self) -> &str {
        NAME
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let mut calls = Vec::new();
        plan.apply_with_subqueries(|node| {
            node.apply_expressions(|e| {
                collect_calls(e, &mut calls);
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        match calls.as_slice() {
            [] => return Ok(plan),
            [_] => {}
            [a, b, ..] => {
                return plan_err!(
                    "{NAME}: only one time_window per query is supported, found {} and {}",
                    a.schema_name(),
                    b.schema_name()
                )
            }
        }
        let mut expanded = false;
        plan.transform_up_with_subqueries(|node| {
            let Some(call) = sliding_call(&node)? else {
                return Ok(Transformed::no(node));
            };
            if expanded {
                return plan_err!(
                    "{NAME}: a sliding window can be used in one clause only; select it with an \
                     alias in a subquery and use the alias"
                );
            }
            expanded = true;
            expand(node, &call).map(Transformed::yes)
        })
        .map(|t| t.data)
    }
}

fn is_time_window(e: &Expr) -> bool {
    matches!(e, Expr::ScalarFunction(f) if f.func.name() == NAME)
}

/// Distinct `time_window` calls of an expression, into `out`.
fn collect_calls(e: &Expr, out: &mut Vec<Expr>) {
    // The closure never fails; a visit error cannot happen.
    let _ = e.apply(|sub| {
        if is_time_window(sub) {
            if !out.contains(sub) {
                out.push(sub.clone());
            }
            return Ok(TreeNodeRecursion::Jump);
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

/// The value of a constant argument (folding casts such as `cast('3 day' as interval)`).
fn constant(e: &Expr) -> Result<ScalarValue> {
    if let Expr::Literal(v, _) = e {
        return Ok(v.clone());
    }
    let simplifier = ExprSimplifier::new(SimplifyContext::default());
    match simplifier.simplify(e.clone())? {
        Expr::Literal(v, _) => Ok(v),
        _ => plan_err!("{NAME}: window, slide and start must be constants, not {e}"),
    }
}

/// The geometry of one call, its time argument typed against `schema`.
fn call_spec(call: &Expr, schema: &DFSchema) -> Result<Spec> {
    let Expr::ScalarFunction(ScalarFunction { args, .. }) = call else {
        return plan_err!("{NAME}: not a time_window call: {call}");
    };
    let Some((time, rest)) = args.split_first() else {
        return plan_err!("{NAME}(time, window[, slide[, start]]) takes 2 to 4 arguments");
    };
    let unit = match time.get_type(schema)? {
        DataType::Timestamp(unit, _) => unit,
        other => return plan_err!("{NAME}: the first argument must be a timestamp, not {other}"),
    };
    let values = rest.iter().map(constant).collect::<Result<Vec<_>>>()?;
    spec(unit, &values.iter().collect::<Vec<_>>())
}

/// The node's sliding `time_window` call, if it has one.
fn sliding_call(node: &LogicalPlan) -> Result<Option<Expr>> {
    let mut calls = Vec::new();
    node.apply_expressions(|e| {
        collect_calls(e, &mut calls);
        Ok(TreeNodeRecursion::Continue)
    })?;
    let Some(call) = calls.into_iter().next() else {
        return Ok(None);
    };
    let inputs = node.inputs();
    let [input] = inputs.as_slice() else {
        return plan_err!("{NAME}: cannot be used in a {} node", node.display());
    };
    match call_spec(&call, input.schema())?.is_tumbling() {
        true => Ok(None),
        false => Ok(Some(call)),
    }
}

/// Rewrites `node` so that `call` reads the unnested windows of its input's rows.
fn expand(node: LogicalPlan, call: &Expr) -> Result<LogicalPlan> {
    let Expr::ScalarFunction(ScalarFunction { args, .. }) = call else {
        return plan_err!("{NAME}: not a time_window call: {call}");
    };
    let input = match node.inputs().as_slice() {
        [input] => (*input).clone(),
        _ => return plan_err!("{NAME}: cannot be used in a {} node", node.display()),
    };
    let mut columns: Vec<Expr> = input
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let windows = ScalarUDF::from(TimeWindows::new());
    columns.push(
        Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(windows), args.clone()))
            .alias(EXPANDED),
    );
    let unnested = LogicalPlanBuilder::from(input)
        .project(columns)?
        .unnest_column(Column::from_name(EXPANDED))?
        .build()?;
    let keep_names = matches!(node, LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_));
    let exprs = node
        .expressions()
        .into_iter()
        .map(|e| {
            let (qualifier, name) = e.qualified_name();
            let replaced = e
                .transform_down(|sub| match sub == *call {
                    true => Ok(Transformed::new(
                        Expr::Column(Column::from_name(EXPANDED)),
                        true,
                        TreeNodeRecursion::Jump,
                    )),
                    false => Ok(Transformed::no(sub)),
                })?
                .data;
            Ok(
                match keep_names && replaced.qualified_name() != (qualifier.clone(), name.clone()) {
                    true => replaced.alias_qualified(qualifier, name),
                    false => replaced,
                },
            )
        })
        .collect::<Result<Vec<_>>>()?;
    node.with_new_exprs(exprs, vec![unnested])
}
