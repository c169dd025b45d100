//! `INSERT INTO t [(cols)] VALUES (..), (..)` through the line-protocol write path.
//!
//! Each row is checked and cast against the table's columns here (unknown column 422 `010044`,
//! wrong arity `010045`, a value that does not cast `010002`), then written as one line of line
//! protocol with the exact types of the columns and the timestamp in the database's unit. The
//! lines go through `ingest::write_parsed`, the very path a `/api/v1/write` body takes (catalog
//! check, routing by series hash to the owner shards, WAL, acknowledgement after sync), so an
//! INSERTed row is indistinguishable from a written one and no routing code is duplicated.
//! The text form costs a parse per row, which only matters for bulk loads, and those belong
//! on `/api/v1/write`.
//!
//! What line protocol cannot carry is refused rather than altered: names or tag values with a
//! backslash or a line break, and a row whose fields are all NULL (a point needs a field).
//! An empty tag value is a NULL tag (line protocol has no empty tag values).

use std::fmt::Write as _;
use std::rc::Rc;

use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;

use super::Literal;
use crate::catalog::{ColumnKind, FieldType, Precision, Table};
use crate::error::ApiError;
use crate::ingest::{self, WritePrecision};
use crate::lp::{self, ParsedBatch};
use crate::query::QueryError;
use crate::server::shard::ShardCtx;

/// Rows one INSERT may carry (the body limit bounds it too; this keeps the text bounded).
const ROWS_MAX: usize = 1_000_000;

/// Writes the rows; returns how many.
pub async fn insert(
    ctx: &Rc<ShardCtx>,
    tenant: &str,
    database: &str,
    table: &str,
    columns: &[String],
    rows: &[Vec<Literal>],
) -> Result<usize, ApiError> {
    let catalog = ctx.catalog();
    let db = catalog.database(tenant, database)?;
    let t = db.table(table)?;
    if rows.len() > ROWS_MAX {
        return Err(QueryError::Semantic(format!(
            "INSERT carries {} rows, more than {ROWS_MAX}; use /api/v1/write for bulk loads",
            rows.len()
        ))
        .into());
    }
    let text = to_line_protocol(t, db.precision, columns, rows)?;
    let mut parsed = ParsedBatch::default();
    lp::parse(text.as_bytes(), &mut parsed)?;
    let precision = WritePrecision::of(db.precision);
    ingest::write_parsed(ctx, &parsed, tenant, database, precision).await?;
    Ok(rows.len())
}

/// The rows as line protocol, one line each, every value cast to its column's type.
pub fn to_line_protocol(
    table: &Table,
    precision: Precision,
    columns: &[String],
    rows: &[Vec<Literal>],
) -> Result<String, QueryError> {
    let kinds = column_kinds(table, columns)?;
    let measurement = escape_name(&table.name, false)?;
    let now = ingest::now_ns().div_euclid(precision.nanos());
    let mut out = String::new();
    for row in rows {
        if row.len() != kinds.len() {
            return Err(QueryError::MismatchColumns);
        }
        let mut time = None;
        let mut tags: Vec<(&str, String)> = Vec::new();
        let mut fields: Vec<(&str, String)> = Vec::new();
        for ((name, kind), value) in kinds.iter().zip(row) {
            match kind {
                ColumnKind::Time => time = Some(cast_time(value, precision)?),
                ColumnKind::Tag => {
                    if let Some(v) = cast_tag(value)? {
                        tags.push((*name, v));
                    }
                }
                ColumnKind::Field(t) => {
                    if let Some(v) = cast_field(value, *t)? {
                        fields.push((*name, v));
                    }
                }
            }
        }
        if fields.is_empty() {
            return Err(QueryError::Semantic(
                "a row needs at least one non-NULL field value".to_string(),
            ));
        }
        out.push_str(&measurement);
        for (k, v) in &tags {
            let _ = write!(out, ",{}={}", escape_name(k, true)?, escape_tag_value(v)?);
        }
        for (i, (k, v)) in fields.iter().enumerate() {
            let sep = if i == 0 { ' ' } else { ',' };
            let _ = write!(out, "{sep}{}={v}", escape_name(k, true)?);
        }
        let _ = writeln!(out, " {}", time.unwrap_or(now));
    }
    Ok(out)
}

/// The kind of each named column (all columns in `SELECT *` order when none are named).
fn column_kinds<'a>(
    table: &'a Table,
    columns: &'a [String],
) -> Result<Vec<(&'a str, ColumnKind)>, QueryError> {
    if columns.is_empty() {
        let rank = |k: &ColumnKind| match k {
            ColumnKind::Time => 0,
            ColumnKind::Tag => 1,
            ColumnKind::Field(_) => 2,
        };
        let mut all: Vec<(&str, ColumnKind)> = table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.kind))
            .collect();
        all.sort_by_key(|(_, k)| rank(k));
        return Ok(all);
    }
    columns
        .iter()
        .map(|name| match table.column(name) {
            Some(c) => Ok((name.as_str(), c.kind)),
            None => Err(QueryError::MissingColumn {
                insert_col: name.clone(),
                fields: table
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            }),
        })
        .collect()
}

fn cast_error(value: &Literal, to: &str) -> QueryError {
    let shown = match value {
        Literal::Str(s) => {
            return QueryError::Cast(format!("Cannot cast string '{s}' to value of {to} type"))
        }
        Literal::Int(i) => i.to_string(),
        Literal::Float(f) => f.to_string(),
        Literal::Bool(b) => b.to_string(),
        Literal::Null => "NULL".to_string(),
    };
    QueryError::Cast(format!("Can't cast value {shown} to type {to}"))
}

/// An integer in the database's unit, or a timestamp string (RFC 3339; without a zone, UTC).
pub(super) fn cast_time(value: &Literal, precision: Precision) -> Result<i64, QueryError> {
    match value {
        Literal::Int(i) => i64::try_from(*i).map_err(|_| cast_error(value, "Int64")),
        Literal::Str(s) => {
            let ns = string_to_timestamp_nanos(s)
                .map_err(|e| QueryError::Cast(e.to_string().replace("Cast error: ", "")))?;
            Ok(ns.div_euclid(precision.nanos()))
        }
        Literal::Float(_) => Err(QueryError::DataFusion(format!(
            "This feature is not implemented: Unsupported CAST from Float64 to Timestamp({}, None)",
            match precision {
                Precision::Nanos => "Nanosecond",
                Precision::Micros => "Microsecond",
                Precision::Millis => "Millisecond",
            }
        ))),
        Literal::Null | Literal::Bool(_) => Err(QueryError::Semantic(
            "the time column needs an integer or a timestamp string".to_string(),
        )),
    }
}

/// A tag value as text; `None` for NULL (or empty: line protocol has no empty tag values).
fn cast_tag(value: &Literal) -> Result<Option<String>, QueryError> {
    let text = match value {
        Literal::Null => return Ok(None),
        Literal::Str(s) => s.clone(),
        Literal::Int(i) => i.to_string(),
        Literal::Float(f) => f.to_string(),
        Literal::Bool(b) => b.to_string(),
    };
    Ok(Some(text).filter(|t| !t.is_empty()))
}

/// A field value in line-protocol syntax for type `t`; `None` for NULL (the field is absent).
fn cast_field(value: &Literal, t: FieldType) -> Result<Option<String>, QueryError> {
    let lp = match (t, value) {
        (_, Literal::Null) => return Ok(None),
        (FieldType::Integer, Literal::Int(i)) => {
            format!(
                "{}i",
                i64::try_from(*i).map_err(|_| cast_error(value, "Int64"))?
            )
        }
        (FieldType::Integer, Literal::Str(s)) => {
            format!(
                "{}i",
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| cast_error(value, "Int64"))?
            )
        }
        (FieldType::Unsigned, Literal::Int(i)) => {
            format!(
                "{}u",
                u64::try_from(*i).map_err(|_| cast_error(value, "UInt64"))?
            )
        }
        (FieldType::Unsigned, Literal::Str(s)) => {
            format!(
                "{}u",
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| cast_error(value, "UInt64"))?
            )
        }
        (FieldType::Float, Literal::Int(i)) => float_lp(*i as f64),
        (FieldType::Float, Literal::Float(f)) => float_lp(*f),
        (FieldType::Float, Literal::Str(s)) => float_lp(
            s.trim()
                .parse::<f64>()
                .map_err(|_| cast_error(value, "Float64"))?,
        ),
        (FieldType::Boolean, Literal::Bool(b)) => b.to_string(),
        (FieldType::Boolean, Literal::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => "true".to_string(),
            "false" | "f" | "0" => "false".to_string(),
            _ => return Err(cast_error(value, "Boolean")),
        },
        (FieldType::String, Literal::Str(s)) => string_lp(s),
        (FieldType::String, Literal::Int(i)) => string_lp(&i.to_string()),
        (FieldType::String, Literal::Float(f)) => string_lp(&f.to_string()),
        (FieldType::String, Literal::Bool(b)) => string_lp(&b.to_string()),
        (FieldType::Integer, _) => return Err(cast_error(value, "Int64")),
        (FieldType::Unsigned, _) => return Err(cast_error(value, "UInt64")),
        (FieldType::Float, _) => return Err(cast_error(value, "Float64")),
        (FieldType::Boolean, _) => return Err(cast_error(value, "Boolean")),
    };
    Ok(Some(lp))
}

/// A float the line-protocol parser reads back bit for bit (Rust prints the shortest
/// round-tripping form; a sign keeps `inf`/`NaN` numeric).
fn float_lp(f: f64) -> String {
    if f.is_finite() {
        format!("{f:?}")
    } else if f.is_nan() {
        "+NaN".to_string()
    } else if f > 0.0 {
        "+inf".to_string()
    } else {
        "-inf".to_string()
    }
}

fn string_lp(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn unsupported(what: &str, text: &str) -> QueryError {
    QueryError::NotImplemented(format!(
        "INSERT of {what} {text:?}: backslashes and line breaks are not supported there yet"
    ))
}

/// A measurement (`key == false`) or tag/field key with line protocol's escapes.
fn escape_name(name: &str, key: bool) -> Result<String, QueryError> {
    if name.contains(['\\', '\n', '\r']) || (!key && name.starts_with('#')) {
        return Err(unsupported("the name", name));
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == ',' || c == ' ' || (key && c == '=') {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

fn escape_tag_value(v: &str) -> Result<String, QueryError> {
    if v.contains(['\\', '\n', '\r']) {
        return Err(unsupported("the tag value", v));
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c == ',' || c == ' ' || c == '=' {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}
