//! The write path above the engine: parsed lines → schema check → one columnar batch per owner
//! shard → the owners' WALs and memtables.
//!
//! Everything that can reject a request (parameters, credentials, syntax, database existence,
//! column types, timestamp range) is checked before any shard is touched, so a rejected request
//! writes nothing. What can still fail afterwards is a resource (disk, memory bound, a stopping
//! shard); since a write is an upsert keyed by (series, time), a client retrying after such a
//! failure converges to the same state even if one owner had applied its part.

mod build;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chronoshard_shard::batch::{ValueType, WriteBatch};
use chronoshard_shard::engine::EngineError;

use crate::catalog::{
    Catalog, CatalogError, ColumnKind, ColumnWant, EnsureColumns, FieldType, Precision,
};
use crate::error::ApiError;
use crate::lp::{FieldValue, Line, ParsedBatch};
use crate::mesh::ShardMsg;
use crate::server::inbox;
use crate::server::shard::ShardCtx;

pub use build::route_rows;

/// Timestamp unit of a write request's `precision` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePrecision {
    Nanos,
    Micros,
    Millis,
    Seconds,
}

impl WritePrecision {
    /// `ns`, `us`, `ms` or `s`; anything else is refused (CnosDB silently uses ns).
    pub fn parse(s: &str) -> Option<WritePrecision> {
        match s {
            "ns" | "n" => Some(WritePrecision::Nanos),
            "us" | "u" => Some(WritePrecision::Micros),
            "ms" => Some(WritePrecision::Millis),
            "s" => Some(WritePrecision::Seconds),
            _ => None,
        }
    }

    /// The request precision that is the database's own unit (no conversion).
    pub fn of(p: Precision) -> WritePrecision {
        match p {
            Precision::Nanos => WritePrecision::Nanos,
            Precision::Micros => WritePrecision::Micros,
            Precision::Millis => WritePrecision::Millis,
        }
    }

    fn nanos(self) -> i64 {
        match self {
            WritePrecision::Nanos => 1,
            WritePrecision::Micros => 1_000,
            WritePrecision::Millis => 1_000_000,
            WritePrecision::Seconds => 1_000_000_000,
        }
    }
}

/// Converts a request timestamp to the database's unit (truncating toward negative infinity
/// when the database is coarser), or `None` on overflow.
pub fn convert_time(ts: i64, from: WritePrecision, to: Precision) -> Option<i64> {
    let (f, t) = (from.nanos(), to.nanos());
    if f >= t {
        ts.checked_mul(f / t)
    } else {
        Some(ts.div_euclid(t / f))
    }
}

/// Why a write failed after it was parsed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("line {line}: timestamp {ts} overflows the database's time range in precision {precision:?}")]
    TimestampOverflow {
        line: usize,
        ts: i64,
        precision: WritePrecision,
    },
    #[error(transparent)]
    Engine(#[from] EngineFailure),
}

/// An owner shard could not apply its part of a write.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineFailure {
    #[error("shard {shard} memtable is full ({bytes} of {bytes_max} bytes) and did not drain in time; retry later")]
    Busy {
        shard: usize,
        bytes: usize,
        bytes_max: usize,
    },
    #[error("shard {shard} write-ahead log is backed up: {message}; retry later")]
    WalBusy { shard: usize, message: String },
    #[error("shard {shard} is starting or stopping")]
    Unavailable { shard: usize },
    #[error("shard {shard} storage error: {message}")]
    Storage { shard: usize, message: String },
}

/// Translates an engine error of `shard` into what the client is told.
pub fn engine_failure(shard: usize, e: EngineError) -> EngineFailure {
    match e {
        EngineError::Busy { bytes, bytes_max } => EngineFailure::Busy {
            shard,
            bytes,
            bytes_max,
        },
        EngineError::Wal(e @ chronoshard_shard::wal::WalError::Full { .. }) => {
            EngineFailure::WalBusy {
                shard,
                message: e.to_string(),
            }
        }
        other => EngineFailure::Storage {
            shard,
            message: other.to_string(),
        },
    }
}

/// The tables and columns a parsed request needs, in first-seen order: per line, tags then
/// fields, each sorted by key. A column used as two different kinds within the request is a
/// conflict.
pub fn wanted_columns(
    parsed: &ParsedBatch<'_>,
    tenant: &str,
    database: &str,
) -> Result<EnsureColumns, CatalogError> {
    let mut tables: Vec<(String, Vec<ColumnWant>)> = Vec::new();
    // Lines of a table usually repeat the previous line's keys and types: checking that is a
    // few short compares, where looking every key up again is the cost of the whole loop.
    let mut previous: Option<Line<'_>> = None;
    let mut fields: Vec<(&str, FieldType)> = Vec::new();
    let mut idx = 0;
    for line in parsed.lines() {
        if previous.is_some_and(|p| same_shape(&p, &line)) {
            continue;
        }
        if previous.is_none_or(|p| p.measurement() != line.measurement()) {
            idx = match tables.iter().position(|(t, _)| t == line.measurement()) {
                Some(i) => i,
                None => {
                    tables.push((line.measurement().to_string(), Vec::new()));
                    tables.len() - 1
                }
            };
        }
        let (table, cols) = &mut tables[idx];
        for (k, _) in line.tags() {
            want(table, cols, k, ColumnKind::Tag)?;
        }
        // New fields are added in sorted key order, as tags are (the parser sorts those).
        fields.clear();
        fields.extend(line.fields().map(|(k, v)| (k, field_type(&v))));
        fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for &(k, t) in &fields {
            want(table, cols, k, ColumnKind::Field(t))?;
        }
        previous = Some(line);
    }
    Ok(EnsureColumns {
        tenant: tenant.to_string(),
        database: database.to_string(),
        tables,
    })
}

/// Same measurement, same tag keys, same field keys with the same value types.
fn same_shape(a: &Line<'_>, b: &Line<'_>) -> bool {
    a.measurement() == b.measurement()
        && a.tag_count() == b.tag_count()
        && a.field_count() == b.field_count()
        && a.tags().zip(b.tags()).all(|((x, _), (y, _))| x == y)
        && a.fields()
            .zip(b.fields())
            .all(|((x, u), (y, v))| x == y && value_type(&u) == value_type(&v))
}

fn want(
    table: &str,
    cols: &mut Vec<ColumnWant>,
    name: &str,
    kind: ColumnKind,
) -> Result<(), CatalogError> {
    match cols.iter().find(|c| c.name == name) {
        Some(c) if c.kind == kind => Ok(()),
        Some(c) => Err(CatalogError::TypeConflict {
            table: table.to_string(),
            column: name.to_string(),
            existing: c.kind.describe(),
            written: kind.describe(),
        }),
        None => {
            cols.push(ColumnWant {
                name: name.to_string(),
                kind,
            });
            Ok(())
        }
    }
}

pub fn field_type(v: &FieldValue<'_>) -> FieldType {
    FieldType::from(value_type(v))
}

pub fn value_type(v: &FieldValue<'_>) -> ValueType {
    match v {
        FieldValue::Float(_) => ValueType::Float,
        FieldValue::Integer(_) => ValueType::Integer,
        FieldValue::Unsigned(_) => ValueType::Unsigned,
        FieldValue::String(_) => ValueType::String,
        FieldValue::Boolean(_) => ValueType::Boolean,
    }
}

/// The rows of one request, split by owner shard (index = shard id; empty batches for shards
/// that own none of them).
pub struct Routed {
    pub per_shard: Vec<WriteBatch>,
    pub rows: usize,
}

/// Everything `route_rows` needs besides the lines.
pub struct RouteCtx<'a> {
    pub tenant: &'a str,
    pub database: &'a str,
    pub precision: WritePrecision,
    pub catalog: &'a Arc<Catalog>,
    pub shards: usize,
    /// Server time in nanoseconds, for lines without a timestamp.
    pub now_ns: i64,
}

/// The write path shared by line protocol and SQL `INSERT`: the catalog is made to hold every
/// table and column `parsed` needs (via shard 0), the rows are split by owner shard, and each
/// part is written by its owner. Returns the number of rows once every owner has made its part
/// durable (per the WAL mode). The database must exist (checked by the caller).
pub async fn write_parsed(
    ctx: &Rc<ShardCtx>,
    parsed: &ParsedBatch<'_>,
    tenant: &str,
    database: &str,
    precision: WritePrecision,
) -> Result<usize, ApiError> {
    if parsed.is_empty() {
        return Ok(0);
    }
    let want = wanted_columns(parsed, tenant, database)?;
    let catalog = inbox::ensure_catalog(ctx, want).await?;
    let routed = route_rows(
        parsed,
        &RouteCtx {
            tenant,
            database,
            precision,
            catalog: &catalog,
            shards: ctx.shared.mesh.shards(),
            now_ns: now_ns(),
        },
    )?;
    send_to_owners(ctx, routed.per_shard).await?;
    Ok(routed.rows)
}

/// Sends every non-empty batch to its owner, handles the local one in place, and waits for all.
/// The first failure is reported; the other owners' parts are still awaited so no reply is lost.
async fn send_to_owners(ctx: &Rc<ShardCtx>, per_shard: Vec<WriteBatch>) -> Result<(), ApiError> {
    let mut waiting = Vec::new();
    let mut local = None;
    for (shard, batch) in per_shard.into_iter().enumerate() {
        if batch.is_empty() {
            continue;
        }
        if shard == ctx.id {
            local = Some(batch);
            continue;
        }
        let (tx, rx) = async_channel::bounded(1);
        let msg = ShardMsg::Write { batch, reply: tx };
        ctx.shared
            .mesh
            .send(shard, msg)
            .await
            .map_err(|_| EngineFailure::Unavailable { shard })?;
        waiting.push((shard, rx));
    }
    let mut first_err: Option<EngineFailure> = None;
    if let Some(batch) = local {
        if let Err(e) = inbox::write_local(ctx, &batch).await {
            first_err.get_or_insert(e);
        }
    }
    for (shard, rx) in waiting {
        let outcome = rx
            .recv()
            .await
            .unwrap_or(Err(EngineFailure::Unavailable { shard }));
        if let Err(e) = outcome {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}

/// Server time in nanoseconds, for rows without a timestamp.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_conversion() {
        assert_eq!(
            convert_time(5, WritePrecision::Seconds, Precision::Nanos),
            Some(5_000_000_000)
        );
        assert_eq!(
            convert_time(1_999_999, WritePrecision::Nanos, Precision::Millis),
            Some(1)
        );
        assert_eq!(
            convert_time(-1, WritePrecision::Nanos, Precision::Millis),
            Some(-1)
        );
        assert_eq!(
            convert_time(i64::MAX, WritePrecision::Millis, Precision::Nanos),
            None
        );
        assert_eq!(
            convert_time(7, WritePrecision::Millis, Precision::Millis),
            Some(7)
        );
        assert_eq!(WritePrecision::parse("h"), None);
    }
}
