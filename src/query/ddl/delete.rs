//! `DELETE FROM t WHERE ...`, `DROP TABLE` and `DROP DATABASE` as shard deletes.
//!
//! A DELETE's WHERE is a conjunction of tag conditions (`tag = 'v'`, `tag IN (...)`) and time
//! comparisons; it becomes one `Delete` (tag filters with sorted values, a `[min, max)` time
//! range in the database's precision) that every shard logs and applies. Filtering on a field is
//! refused as CnosDB refuses it; so is an unknown column.

use chronoshard_shard::batch::Delete;

use super::{DeleteCondition, Literal};
use crate::catalog::{Catalog, CatalogError, ColumnKind};
use crate::query::QueryError;

/// A delete of every point of a database, or of one of its tables (DROP).
pub fn everything(tenant: &str, database: &str, table: Option<&str>) -> Delete {
    Delete {
        tenant: tenant.to_string(),
        database: database.to_string(),
        table: table.map(str::to_string),
        tag_filters: Vec::new(),
        time: (i64::MIN, i64::MAX),
    }
}

/// The delete a `DELETE FROM table WHERE conditions` asks for. An empty time range (`time >
/// 5 AND time < 3`) gives `time.0 >= time.1`: nothing to delete.
pub fn plan(
    catalog: &Catalog,
    tenant: &str,
    database: &str,
    table: &str,
    conditions: &[DeleteCondition],
) -> Result<Delete, crate::error::ApiError> {
    let db = catalog.database(tenant, database)?;
    let t = db
        .tables
        .get(table)
        .ok_or_else(|| CatalogError::TableNotFound(table.to_string()))?;
    let mut d = Delete {
        tenant: tenant.to_string(),
        database: database.to_string(),
        table: Some(table.to_string()),
        tag_filters: Vec::new(),
        time: (i64::MIN, i64::MAX),
    };
    for c in conditions {
        let column = match c {
            DeleteCondition::TagIn { column, .. } | DeleteCondition::Compare { column, .. } => {
                column
            }
        };
        let kind = t.column(column).map(|c| c.kind).ok_or_else(|| {
            QueryError::Semantic(format!("column {column} does not exist in table {table}"))
        })?;
        match (kind, c) {
            (ColumnKind::Field(_), _) => {
                return Err(QueryError::NotImplemented(
                    "Filtering on the field column on the tskv table in delete statement"
                        .to_string(),
                )
                .into())
            }
            (ColumnKind::Tag, DeleteCondition::TagIn { values, .. }) => {
                add_tag_filter(&mut d, column, values.clone());
            }
            (ColumnKind::Tag, DeleteCondition::Compare { op, value, .. }) if op == "=" => {
                let Literal::Str(v) = value else {
                    return Err(QueryError::Semantic(format!(
                        "tag {column} compares with a string literal"
                    ))
                    .into());
                };
                add_tag_filter(&mut d, column, vec![v.clone()]);
            }
            (ColumnKind::Tag, _) => {
                return Err(QueryError::NotImplemented(format!(
                    "a DELETE condition on tag {column} other than = or IN"
                ))
                .into())
            }
            (ColumnKind::Time, DeleteCondition::Compare { op, value, .. }) => {
                let v = super::insert::cast_time(value, db.precision)?;
                let (min, max) = &mut d.time;
                match op.as_str() {
                    "=" => {
                        *min = (*min).max(v);
                        *max = (*max).min(v.saturating_add(1));
                    }
                    ">" => *min = (*min).max(v.saturating_add(1)),
                    ">=" => *min = (*min).max(v),
                    "<" => *max = (*max).min(v),
                    _ => *max = (*max).min(v.saturating_add(1)),
                }
            }
            (ColumnKind::Time, DeleteCondition::TagIn { .. }) => {
                return Err(QueryError::NotImplemented(
                    "time IN (...) in a DELETE (use comparisons)".to_string(),
                )
                .into())
            }
        }
    }
    Ok(d)
}

/// ANDs `tag IN values` into the delete: a second condition on one tag keeps the values both
/// allow.
fn add_tag_filter(d: &mut Delete, tag: &str, mut values: Vec<String>) {
    values.sort();
    values.dedup();
    match d.tag_filters.iter_mut().find(|(t, _)| t == tag) {
        Some((_, existing)) => existing.retain(|v| values.binary_search(v).is_ok()),
        None => d.tag_filters.push((tag.to_string(), values)),
    }
}
