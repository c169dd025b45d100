//! CnosDB's SQL functions that DataFusion lacks: the aggregates `first(time, value)` and
//! `last(time, value)`, the value of the earliest (latest) time in the group.
//!
//! Rows whose time or value is null are skipped, so the answer is the first (last) non-null
//! value; among equal times the row seen first wins, which within one series is the arrival
//! order. The partial state is `(time as Int64, value)`, so the aggregate splits into a partial
//! step on each shard and a final step on the coordinator like the built-in ones.
//!
//! `time_window(time, window[, slide[, start]])` (`functions/time_window.rs`) is a scalar
//! function for tumbling windows plus an analyzer rule that expands sliding ones into one row
//! per window.

mod time_window;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::SessionState;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// Installs every CnosDB function of ours on a session state (the one place `query.rs` calls).
pub fn install(state: &mut SessionState) -> Result<()> {
    for f in aggregates() {
        state.register_udaf(Arc::new(f))?;
    }
    state.register_udf(Arc::new(time_window::udf()))?;
    state.add_analyzer_rule(Arc::new(time_window::rule::TimeWindowRule));
    Ok(())
}

/// `first` and `last`, to register on a session.
fn aggregates() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::from(FirstLast::new(Pick::First)),
        AggregateUDF::from(FirstLast::new(Pick::Last)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pick {
    First,
    Last,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FirstLast {
    pick: Pick,
    signature: Signature,
}

impl FirstLast {
    fn new(pick: Pick) -> FirstLast {
        FirstLast {
            pick,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

fn is_time(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(_, _) | DataType::Int64)
}

impl AggregateUDFImpl for FirstLast {
    fn name(&self) -> &str {
        match self.pick {
            Pick::First => "first",
            Pick::Last => "last",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t, v] if is_time(t) => Ok(v.clone()),
            [t, _] => plan_err!(
                "{}(time, value): the first argument must be a timestamp, not {t}",
                self.name()
            ),
            _ => plan_err!("{}(time, value) takes two arguments", self.name()),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "time"),
                DataType::Int64,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "value"),
                args.return_field.data_type().clone(),
                true,
            )),
        ])
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let value = ScalarValue::try_from(acc_args.return_field.data_type())?;
        Ok(Box::new(FirstLastAccumulator {
            pick: self.pick,
            time: None,
            value,
        }))
    }
}

#[derive(Debug)]
struct FirstLastAccumulator {
    pick: Pick,
    /// Time of `value` (as i64 in the column's unit); `None` before any row.
    time: Option<i64>,
    value: ScalarValue,
}

impl FirstLastAccumulator {
    fn better(&self, t: i64, than: Option<i64>) -> bool {
        match (self.pick, than) {
            (_, None) => true,
            (Pick::First, Some(b)) => t < b,
            (Pick::Last, Some(b)) => t > b,
        }
    }

    /// Takes the best row of (times, values) if it beats the current one.
    fn absorb(&mut self, times: &ArrayRef, values: &ArrayRef) -> Result<()> {
        let times = match times.data_type() {
            DataType::Int64 => Arc::clone(times),
            _ => cast(times, &DataType::Int64)?,
        };
        let times = times.as_primitive::<Int64Type>();
        if times.len() != values.len() {
            return exec_err!(
                "first/last: {} times for {} values",
                times.len(),
                values.len()
            );
        }
        let mut best: Option<(usize, i64)> = None;
        for i in 0..times.len() {
            if times.is_null(i) || values.is_null(i) {
                continue;
            }
            let t = times.value(i);
            if self.better(t, best.map(|(_, b)| b)) {
                best = Some((i, t));
            }
        }
        if let Some((i, t)) = best {
            if self.better(t, self.time) {
                self.time = Some(t);
                self.value = ScalarValue::try_from_array(values, i)?;
            }
        }
        Ok(())
    }
}

impl Accumulator for FirstLastAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values {
            [times, vals] => self.absorb(times, vals),
            _ => exec_err!("first/last: expected two arguments, got {}", values.len()),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(self.time), self.value.clone()])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        size_of_val(self) - size_of_val(&self.value) + self.value.size()
    }
}
