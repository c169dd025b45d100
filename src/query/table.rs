//! A catalog table as a DataFusion `TableProvider` whose scan runs on every shard.
//!
//! `scan` turns what DataFusion offers into a `ScanRequest` each shard executes on its own core:
//! the projection (only those columns are built), the limit (when DataFusion can push it), and
//! the filters the shard can use to skip rows: time comparisons with a literal (a time range) and
//! tag equality or `IN` with string literals (series skipped on their key). Such a filter is
//! declared `Exact` when the shard applies it exactly as SQL would: a tag filter always (a
//! series lacking the tag fails it, as `NULL = 'x'` does), a time comparison when its literal
//! is not finer than the table's unit. DataFusion then drops it from the plan, so nothing sits
//! between the scan and the operators above it (the shard-aggregate and last-point rules need
//! that). A comparison with a finer literal is read loosely (widened, never narrowed) and
//! declared `Inexact`: DataFusion still applies it above the scan.

use std::sync::Arc;

use async_trait::async_trait;
use chronoshard_shard::scan::{ScanRequest, TableSchema};
use datafusion::arrow::datatypes::{SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::scan::ShardScanExec;
use super::SCAN_BATCH_ROWS;
use crate::mesh::Mesh;

#[derive(Debug)]
pub struct ShardedTable {
    pub mesh: Mesh,
    pub schema: TableSchema,
    pub arrow_schema: SchemaRef,
    pub tenant: String,
    pub database: String,
    pub table: String,
    /// The database's TTL cutoff source: rows older than now minus its TTL are never returned.
    pub retention: Option<crate::catalog::Database>,
}

#[async_trait]
impl TableProvider for ShardedTable {
    fn schema(&self) -> SchemaRef {
        self.arrow_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.time_bound(f) {
                Some((_, _, true)) => TableProviderFilterPushDown::Exact,
                Some((_, _, false)) => TableProviderFilterPushDown::Inexact,
                None if self.tag_filter(f).is_some() => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let request = self.request(projection, filters, limit);
        let projected = match projection {
            Some(p) => Arc::new(self.arrow_schema.project(p)?),
            None => self.arrow_schema.clone(),
        };
        let exec = ShardScanExec::new(self.schema.clone(), request, projected, self.mesh.shards());
        Ok(Arc::new(exec))
    }
}

impl ShardedTable {
    fn request(
        &self,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> ScanRequest {
        let mut time_range = (i64::MIN, i64::MAX);
        // Expired rows may still be held until retention drops them; they are never shown.
        if let Some(cutoff) = self.retention.as_ref().and_then(|db| db.ttl_cutoff()) {
            time_range.0 = cutoff;
        }
        let mut tag_filters: Vec<(String, Vec<String>)> = Vec::new();
        for f in filters {
            if let Some((lo, hi, _)) = self.time_bound(f) {
                time_range = (time_range.0.max(lo), time_range.1.min(hi));
            } else if let Some(tf) = self.tag_filter(f) {
                tag_filters.push(tf);
            }
        }
        ScanRequest {
            tenant: self.tenant.clone(),
            database: self.database.clone(),
            table: self.table.clone(),
            projection: projection.cloned(),
            time_range,
            tag_filters,
            limit,
            last_per_series: false,
            batch_rows: SCAN_BATCH_ROWS,
        }
    }

    /// `time <op> literal` (either side) as an inclusive-min, exclusive-max range in the table's
    /// unit, and whether the range is exact: a literal finer than the unit widens the range,
    /// never narrows it.
    fn time_bound(&self, e: &Expr) -> Option<(i64, i64, bool)> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
            return None;
        };
        let (op, value) = match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) if c.name == "time" => (*op, v),
            (Expr::Literal(v, _), Expr::Column(c)) if c.name == "time" => (op.swap()?, v),
            _ => return None,
        };
        let (floor, ceil) = to_unit(value, self.schema.time_unit)?;
        let (lo, hi) = match op {
            Operator::Eq => (floor, ceil.checked_add(1)?),
            Operator::Gt => (floor.checked_add(1)?, i64::MAX),
            Operator::GtEq => (floor, i64::MAX),
            Operator::Lt => (i64::MIN, ceil),
            Operator::LtEq => (i64::MIN, ceil.checked_add(1)?),
            _ => return None,
        };
        Some((lo, hi, floor == ceil))
    }

    /// `tag = 'v'` (either side), `tag IN ('a', 'b')`, or an `OR` of those on one tag (the
    /// form DataFusion rewrites short `IN` lists into).
    fn tag_filter(&self, e: &Expr) -> Option<(String, Vec<String>)> {
        let is_tag = |name: &str| self.schema.tags.iter().any(|t| t == name);
        match e {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Or,
                right,
            }) => {
                let (a, mut values) = self.tag_filter(left)?;
                let (b, more) = self.tag_filter(right)?;
                if a != b {
                    return None;
                }
                values.extend(more);
                Some((a, values))
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c))
                    if is_tag(&c.name) =>
                {
                    Some((c.name.clone(), vec![string_literal(v)?]))
                }
                _ => None,
            },
            Expr::InList(list) if !list.negated => {
                let Expr::Column(c) = list.expr.as_ref() else {
                    return None;
                };
                if !is_tag(&c.name) {
                    return None;
                }
                let values = list
                    .list
                    .iter()
                    .map(|v| match v {
                        Expr::Literal(s, _) => string_literal(s),
                        _ => None,
                    })
                    .collect::<Option<Vec<String>>>()?;
                Some((c.name.clone(), values))
            }
            _ => None,
        }
    }
}

fn string_literal(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A timestamp literal in `unit`: (floor, ceil) of its value, equal unless the literal is finer
/// than the unit.
fn to_unit(v: &ScalarValue, unit: TimeUnit) -> Option<(i64, i64)> {
    let (value, per_second) = match v {
        ScalarValue::TimestampSecond(Some(x), _) => (*x, 1),
        ScalarValue::TimestampMillisecond(Some(x), _) => (*x, 1_000),
        ScalarValue::TimestampMicrosecond(Some(x), _) => (*x, 1_000_000),
        ScalarValue::TimestampNanosecond(Some(x), _) => (*x, 1_000_000_000),
        _ => return None,
    };
    let target: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    if target >= per_second {
        let v = value.checked_mul(target / per_second)?;
        Some((v, v))
    } else {
        let div = per_second / target;
        let floor = value.div_euclid(div);
        let ceil = if value.rem_euclid(div) == 0 {
            floor
        } else {
            floor + 1
        };
        Some((floor, ceil))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_convert_without_narrowing() {
        let ns = |x| ScalarValue::TimestampNanosecond(Some(x), None);
        assert_eq!(to_unit(&ns(5), TimeUnit::Nanosecond), Some((5, 5)));
        assert_eq!(to_unit(&ns(1_500_000), TimeUnit::Millisecond), Some((1, 2)));
        assert_eq!(to_unit(&ns(-1), TimeUnit::Millisecond), Some((-1, 0)));
        let s = ScalarValue::TimestampSecond(Some(2), None);
        assert_eq!(
            to_unit(&s, TimeUnit::Microsecond),
            Some((2_000_000, 2_000_000))
        );
        assert_eq!(
            to_unit(&ScalarValue::Int64(Some(1)), TimeUnit::Nanosecond),
            None
        );
    }
}
