//! Deletes: the second kind of WAL record, beside write batches.
//!
//! A `Delete` names a database, optionally one table of it, a conjunction of tag filters (each
//! `tag IN (values)`) and a time range; it removes every point that matches. `DROP TABLE` and
//! `DROP DATABASE` are deletes without filters over all time. A delete is logged on every shard
//! (each shard holds some of every table's series) and replayed in order with the writes, so a
//! point deleted stays deleted after a restart and a point written after the delete survives.

use super::{put_str, put_u32, put_u64, BatchError, Reader};

/// Points to remove. Serialized (as JSON) inside the manifest's tombstones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delete {
    pub tenant: String,
    pub database: String,
    /// `None`: every table of the database.
    pub table: Option<String>,
    /// All must hold: the series' value of the tag is one of the values (a series without the
    /// tag does not match). Values sorted.
    pub tag_filters: Vec<(String, Vec<String>)>,
    /// `[min, max)` in the database's precision.
    pub time: (i64, i64),
}

impl Delete {
    /// Whether the delete removes whole tables (no tag filter, all of time).
    pub fn drops_tables(&self) -> bool {
        self.tag_filters.is_empty() && self.time == (i64::MIN, i64::MAX)
    }
}

/// Tag of a delete record (a write batch's first byte is its format version, 1).
pub(super) const DELETE_TAG: u8 = 2;

pub(super) fn encode(d: &Delete, out: &mut Vec<u8>) {
    out.push(DELETE_TAG);
    put_str(out, &d.tenant);
    put_str(out, &d.database);
    match &d.table {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            put_str(out, t);
        }
    }
    put_u32(out, d.tag_filters.len() as u32);
    for (tag, values) in &d.tag_filters {
        put_str(out, tag);
        put_u32(out, values.len() as u32);
        for v in values {
            put_str(out, v);
        }
    }
    put_u64(out, d.time.0 as u64);
    put_u64(out, d.time.1 as u64);
}

/// Decodes what follows the tag byte.
pub(super) fn decode(r: &mut Reader<'_>) -> Result<Delete, BatchError> {
    let tenant = r.string()?;
    let database = r.string()?;
    let at = r.pos;
    let table = match r.u8()? {
        0 => None,
        1 => Some(r.string()?),
        tag => {
            return Err(BatchError::UnknownTag {
                what: "delete table presence",
                tag,
                offset: at,
            })
        }
    };
    let n = r.count(8)?;
    let mut tag_filters = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = r.string()?;
        let m = r.count(4)?;
        let values = (0..m).map(|_| r.string()).collect::<Result<_, _>>()?;
        tag_filters.push((tag, values));
    }
    let time = (r.u64()? as i64, r.u64()? as i64);
    Ok(Delete {
        tenant,
        database,
        table,
        tag_filters,
        time,
    })
}
