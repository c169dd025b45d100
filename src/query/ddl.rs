//! CnosDB's catalog statements: `CREATE/ALTER/DESCRIBE DATABASE`, `SHOW DATABASES`,
//! `CREATE/ALTER/DESCRIBE TABLE`, `SHOW TABLES`, `SHOW SERIES`, `SHOW TAG VALUES`, and
//! `INSERT ... VALUES`.
//!
//! `parse` recognizes them by their leading keywords (anything else goes to DataFusion). Then:
//! - catalog changes become one `CatalogChange` sent to shard 0, which checks it against its
//!   current version, persists the new catalog and broadcasts it before the 200 is sent;
//! - `SHOW DATABASES/TABLES`, `DESCRIBE` are answered from the local catalog snapshot;
//! - `SHOW SERIES` and `SHOW TAG VALUES` are rewritten into a `SELECT DISTINCT` over the
//!   table's tags and run through DataFusion like any query, so they see exactly the rows a
//!   SELECT sees;
//! - `INSERT ... VALUES` rows are cast to the table's column types and written through the
//!   line-protocol write path (`insert.rs`), so routing, WAL and acknowledgement are shared.

mod delete;
mod insert;
mod parse;
#[cfg(test)]
mod tests;
pub(crate) mod units;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::{QueryError, QueryOutput};
use crate::catalog::{
    CatalogChange, Codec, Column, ColumnKind, Database, DatabaseOption, FieldType, Table,
};
use crate::error::ApiError;
use crate::server::inbox;
use crate::server::shard::ShardCtx;

pub use parse::recognize;

/// `[db.]table` as written; the database defaults to the request's.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRef {
    pub database: Option<String>,
    pub table: String,
}

/// A column type in `CREATE TABLE` / `ADD FIELD`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SqlType {
    Field(FieldType),
    /// Only the implicit `time` column has it; declaring another is refused as CnosDB does.
    Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub codec: Option<Codec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TableAction {
    AddField(ColumnDef),
    AddTag(String),
    SetCodec {
        column: String,
        codec: Codec,
    },
    /// `DROP col`: a field only, never the last (checked by shard 0 against its catalog).
    DropColumn(String),
}

/// The text of a `WHERE` clause and every identifier it names (to refuse field references
/// where only tags and time are allowed).
#[derive(Debug, Clone, PartialEq)]
pub struct WhereClause {
    pub sql: String,
    pub idents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeyFilter {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShowTagValues {
    pub table: TableRef,
    pub keys: KeyFilter,
    pub filter: Option<WhereClause>,
    /// (`key` or `value`, descending).
    pub order: Option<(&'static str, bool)>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// A value of an `INSERT ... VALUES` row.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    CreateDatabase {
        name: String,
        if_not_exists: bool,
        options: Vec<DatabaseOption>,
    },
    AlterDatabase {
        name: String,
        option: DatabaseOption,
    },
    DescribeDatabase {
        name: String,
    },
    ShowDatabases,
    CreateTable {
        table: TableRef,
        if_not_exists: bool,
        columns: Vec<ColumnDef>,
        tags: Vec<String>,
    },
    AlterTable {
        table: TableRef,
        action: TableAction,
    },
    DescribeTable(TableRef),
    ShowTables {
        database: Option<String>,
    },
    ShowSeries {
        table: TableRef,
        filter: Option<WhereClause>,
        descending: bool,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    ShowTagValues(ShowTagValues),
    Insert {
        table: TableRef,
        /// Empty: every column of the table, in `SELECT *` order.
        columns: Vec<String>,
        rows: Vec<Vec<Literal>>,
    },
    DropDatabase {
        name: String,
        if_exists: bool,
    },
    DropTable {
        table: TableRef,
        if_exists: bool,
    },
    /// `DELETE FROM t [WHERE ...]`: the conditions all hold (AND).
    Delete {
        table: TableRef,
        conditions: Vec<DeleteCondition>,
    },
}

/// One condition of a DELETE's WHERE.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteCondition {
    /// `tag IN (...)`.
    TagIn { column: String, values: Vec<String> },
    /// `column op literal`: `tag = 'v'`, or time compared with `=`, `<`, `<=`, `>`, `>=`.
    Compare {
        column: String,
        op: String,
        value: Literal,
    },
}

/// Runs one recognized statement for (tenant, database). `None`: no result set (DDL answers
/// 200 with an empty body, as CnosDB).
pub async fn execute(
    ctx: &Rc<ShardCtx>,
    tenant: &str,
    database: &str,
    stmt: Statement,
) -> Result<Option<QueryOutput>, ApiError> {
    let db_of = |t: &TableRef| t.database.clone().unwrap_or_else(|| database.to_string());
    let change = match stmt {
        Statement::ShowDatabases => return Ok(Some(show_databases(ctx, tenant)?)),
        Statement::DescribeDatabase { name } => {
            let catalog = ctx.catalog();
            return Ok(Some(describe_database(catalog.database(tenant, &name)?)));
        }
        Statement::ShowTables { database: on } => {
            let catalog = ctx.catalog();
            let db = catalog.database(tenant, on.as_deref().unwrap_or(database))?;
            let names = db.tables.keys().map(String::as_str);
            return Ok(Some(strings_output("table_name", names)));
        }
        Statement::DescribeTable(t) => {
            let catalog = ctx.catalog();
            let db = catalog.database(tenant, &db_of(&t))?;
            return Ok(Some(describe_table(db, db.table(&t.table)?)));
        }
        Statement::ShowSeries {
            table,
            filter,
            descending,
            limit,
            offset,
        } => {
            let db = db_of(&table);
            let sql = show_series_sql(ctx, tenant, &db, &table.table, filter, descending)?;
            let sql = format!("{sql}{}", limit_sql(limit, offset));
            return run_sql(ctx, tenant, &db, sql).await;
        }
        Statement::ShowTagValues(show) => {
            let db = db_of(&show.table);
            return match show_tag_values_sql(ctx, tenant, &db, &show)? {
                Some(sql) => run_sql(ctx, tenant, &db, sql).await,
                None => Ok(Some(empty_tag_values())),
            };
        }
        Statement::Insert {
            table,
            columns,
            rows,
        } => {
            let db = db_of(&table);
            let n = insert::insert(ctx, tenant, &db, &table.table, &columns, &rows).await?;
            return Ok(Some(rows_output(n)));
        }
        Statement::DropDatabase { name, if_exists } => {
            // Data first, then the catalog: a crash in between leaves an empty database, never
            // a dropped one whose rows come back when it is created again.
            if ctx.catalog().database(tenant, &name).is_ok() {
                let all = delete::everything(tenant, &name, None);
                inbox::delete_everywhere(ctx, all).await?;
            }
            CatalogChange::DropDatabase {
                tenant: tenant.to_string(),
                database: name,
                if_exists,
            }
        }
        Statement::DropTable { table, if_exists } => {
            let db = db_of(&table);
            let exists = ctx
                .catalog()
                .database(tenant, &db)?
                .tables
                .contains_key(&table.table);
            if exists {
                let all = delete::everything(tenant, &db, Some(&table.table));
                inbox::delete_everywhere(ctx, all).await?;
            }
            CatalogChange::DropTable {
                tenant: tenant.to_string(),
                database: db,
                table: table.table,
                if_exists,
            }
        }
        Statement::Delete { table, conditions } => {
            let db = db_of(&table);
            let catalog = ctx.catalog();
            let d = delete::plan(&catalog, tenant, &db, &table.table, &conditions)?;
            if d.time.0 < d.time.1 {
                inbox::delete_everywhere(ctx, d).await?;
            }
            return Ok(None);
        }
        Statement::CreateDatabase {
            name,
            if_not_exists,
            options,
        } => CatalogChange::CreateDatabase {
            tenant: tenant.to_string(),
            database: name,
            options,
            if_not_exists,
        },
        Statement::AlterDatabase { name, option } => CatalogChange::AlterDatabase {
            tenant: tenant.to_string(),
            database: name,
            option,
        },
        Statement::CreateTable {
            table,
            if_not_exists,
            columns,
            tags,
        } => CatalogChange::CreateTable {
            tenant: tenant.to_string(),
            database: db_of(&table),
            table: new_table(tenant, &db_of(&table), &table.table, &columns, &tags)?,
            if_not_exists,
        },
        Statement::AlterTable { table, action } => {
            alter_table(tenant, db_of(&table), table.table, action)?
        }
    };
    inbox::change_catalog(ctx, change).await?;
    Ok(None)
}

/// The table of a `CREATE TABLE`: `time`, the tags in `TAGS(...)` order, then the fields.
fn new_table(
    tenant: &str,
    database: &str,
    name: &str,
    columns: &[ColumnDef],
    tags: &[String],
) -> Result<Table, ApiError> {
    let mut out = vec![Column::new("time", ColumnKind::Time)];
    let mut seen = std::collections::HashSet::new();
    for tag in tags {
        if tag == "time" {
            return Err(crate::catalog::CatalogError::ColumnExists {
                table: format!("{tenant}.{database}.{name}"),
                column: tag.clone(),
            }
            .into());
        }
        if !seen.insert(tag.as_str()) {
            return Err(QueryError::SameColumnName(tag.clone()).into());
        }
        out.push(Column::new(tag.clone(), ColumnKind::Tag));
    }
    if columns.is_empty() {
        return Err(QueryError::AtLeastOneField.into());
    }
    for c in columns {
        if !seen.insert(c.name.as_str()) {
            return Err(QueryError::SameColumnName(c.name.clone()).into());
        }
        out.push(field_column(&format!("{tenant}.{database}.{name}"), c)?);
    }
    Ok(Table::new(name, out))
}

/// A declared field column, its codec checked against its type.
fn field_column(table: &str, c: &ColumnDef) -> Result<Column, ApiError> {
    let exists = || crate::catalog::CatalogError::ColumnExists {
        table: table.to_string(),
        column: "time".to_string(),
    };
    let ty = match c.ty {
        SqlType::Timestamp => return Err(exists().into()),
        SqlType::Field(_) if c.name == "time" => return Err(exists().into()),
        SqlType::Field(ty) => ty,
    };
    let codec = c.codec.unwrap_or_default();
    if !codec.fits(ty) {
        return Err(crate::catalog::CatalogError::CodecMismatch {
            codec: codec.name(),
            data_type: chronoshard_shard::batch::ValueType::from(ty).sql_name(),
        }
        .into());
    }
    Ok(Column {
        name: c.name.clone(),
        kind: ColumnKind::Field(ty),
        codec,
    })
}

fn alter_table(
    tenant: &str,
    database: String,
    table: String,
    action: TableAction,
) -> Result<CatalogChange, ApiError> {
    let tenant = tenant.to_string();
    Ok(match action {
        TableAction::AddField(def) => CatalogChange::AddColumn {
            column: field_column(&table, &def)?,
            tenant,
            database,
            table,
        },
        TableAction::AddTag(name) => CatalogChange::AddColumn {
            column: Column::new(name, ColumnKind::Tag),
            tenant,
            database,
            table,
        },
        TableAction::SetCodec { column, codec } => CatalogChange::SetCodec {
            tenant,
            database,
            table,
            column,
            codec,
        },
        TableAction::DropColumn(column) => CatalogChange::DropColumn {
            tenant,
            database,
            table,
            column,
        },
    })
}

fn show_databases(ctx: &ShardCtx, tenant: &str) -> Result<QueryOutput, ApiError> {
    let catalog = ctx.catalog();
    let t = catalog
        .tenants
        .get(tenant)
        .ok_or_else(|| crate::catalog::CatalogError::TenantNotFound(tenant.to_string()))?;
    Ok(strings_output(
        "database_name",
        t.databases.keys().map(String::as_str),
    ))
}

/// CnosDB's eleven columns and their types.
fn describe_database(db: &Database) -> QueryOutput {
    let o = &db.options;
    let text = |s: String| Arc::new(StringArray::from(vec![s])) as ArrayRef;
    let num = |n: u64| Arc::new(UInt64Array::from(vec![n])) as ArrayRef;
    let flag = |b: bool| Arc::new(BooleanArray::from(vec![b])) as ArrayRef;
    let ttl = o
        .ttl
        .map_or_else(|| "INF".to_string(), units::format_duration);
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("ttl", text(ttl)),
        ("shard", num(o.shard)),
        (
            "vnode_duration",
            text(units::format_duration(o.vnode_duration)),
        ),
        ("replica", num(o.replica)),
        ("precision", text(db.precision.upper().to_string())),
        (
            "max_memcache_size",
            text(units::format_size(o.max_memcache_size_bytes)),
        ),
        ("memcache_partitions", num(o.memcache_partitions)),
        (
            "wal_max_file_size",
            text(units::format_size(o.wal_max_file_size_bytes)),
        ),
        ("wal_sync", flag(o.wal_sync)),
        ("strict_write", flag(o.strict_write)),
        ("max_cache_readers", num(o.max_cache_readers)),
    ];
    output(columns)
}

/// `column_name, data_type, column_type, compression_codec` in `SELECT *` order.
fn describe_table(db: &Database, table: &Table) -> QueryOutput {
    let time_type = format!(
        "TIMESTAMP({})",
        match db.precision {
            crate::catalog::Precision::Nanos => "NANOSECOND",
            crate::catalog::Precision::Micros => "MICROSECOND",
            crate::catalog::Precision::Millis => "MILLISECOND",
        }
    );
    let mut rows: Vec<[String; 4]> = Vec::new();
    for rank in 0..3 {
        for c in &table.columns {
            let (r, data_type, kind) = match c.kind {
                ColumnKind::Time => (0, time_type.clone(), "TIME"),
                ColumnKind::Tag => (1, "STRING".to_string(), "TAG"),
                ColumnKind::Field(t) => (
                    2,
                    chronoshard_shard::batch::ValueType::from(t)
                        .sql_name()
                        .to_string(),
                    "FIELD",
                ),
            };
            if r == rank {
                rows.push([
                    c.name.clone(),
                    data_type,
                    kind.to_string(),
                    c.codec.name().to_string(),
                ]);
            }
        }
    }
    let names = [
        "column_name",
        "data_type",
        "column_type",
        "compression_codec",
    ];
    let columns = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let values: Vec<&str> = rows.iter().map(|r| r[i].as_str()).collect();
            (*n, Arc::new(StringArray::from(values)) as ArrayRef)
        })
        .collect();
    output(columns)
}

/// The one-column `rows` answer of an INSERT.
fn rows_output(n: usize) -> QueryOutput {
    output(vec![(
        "rows",
        Arc::new(UInt64Array::from(vec![n as u64])) as ArrayRef,
    )])
}

fn strings_output<'a>(name: &str, values: impl Iterator<Item = &'a str>) -> QueryOutput {
    let values: Vec<&str> = values.collect();
    output(vec![(
        name,
        Arc::new(StringArray::from(values)) as ArrayRef,
    )])
}

fn empty_tag_values() -> QueryOutput {
    let empty = || Arc::new(StringArray::from(Vec::<&str>::new())) as ArrayRef;
    output(vec![("key", empty()), ("value", empty())])
}

/// One batch of the given columns (all the same length: built here from one row set).
fn output(columns: Vec<(&str, ArrayRef)>) -> QueryOutput {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    match RecordBatch::try_new(schema.clone(), arrays) {
        Ok(batch) => QueryOutput {
            schema,
            batches: vec![batch],
        },
        // Unreachable: every caller builds equal-length arrays matching the fields.
        Err(_) => QueryOutput {
            schema,
            batches: Vec::new(),
        },
    }
}

async fn run_sql(
    ctx: &Rc<ShardCtx>,
    tenant: &str,
    database: &str,
    sql: String,
) -> Result<Option<QueryOutput>, ApiError> {
    let timeout = Duration::from_millis(ctx.config.query_timeout_ms);
    let out = super::run(
        &ctx.shared.query_rt,
        ctx.shared.mesh.clone(),
        ctx.catalog(),
        tenant.to_string(),
        database.to_string(),
        sql,
        timeout,
    )
    .await?;
    Ok(out)
}

/// A SQL identifier, always quoted (names keep their case).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn limit_sql(limit: Option<u64>, offset: Option<u64>) -> String {
    let mut s = String::new();
    if let Some(l) = limit {
        s.push_str(&format!(" LIMIT {l}"));
    }
    if let Some(o) = offset {
        s.push_str(&format!(" OFFSET {o}"));
    }
    s
}

/// The table a SHOW statement reads, with its WHERE checked: only tags and time may appear.
fn show_table(
    ctx: &ShardCtx,
    tenant: &str,
    database: &str,
    table: &str,
    filter: &Option<WhereClause>,
) -> Result<Table, ApiError> {
    let catalog = ctx.catalog();
    let t = catalog.database(tenant, database)?.table(table)?.clone();
    if let Some(w) = filter {
        let field = t
            .columns
            .iter()
            .find(|c| matches!(c.kind, ColumnKind::Field(_)) && w.idents.contains(&c.name));
        if let Some(f) = field {
            return Err(QueryError::ShowSeriesField(f.name.clone()).into());
        }
    }
    Ok(t)
}

fn where_sql(filter: &Option<WhereClause>) -> String {
    filter
        .as_ref()
        .map_or_else(String::new, |w| format!(" WHERE ({})", w.sql))
}

/// `SHOW SERIES` as a query: the distinct tag sets, each printed `table,k1=v1,k2=v2` (null
/// tags left out), sorted by that key.
fn show_series_sql(
    ctx: &ShardCtx,
    tenant: &str,
    database: &str,
    table: &str,
    filter: Option<WhereClause>,
    descending: bool,
) -> Result<String, ApiError> {
    let t = show_table(ctx, tenant, database, table, &filter)?;
    let tags: Vec<&str> = t
        .columns
        .iter()
        .filter(|c| c.kind == ColumnKind::Tag)
        .map(|c| c.name.as_str())
        .collect();
    let order = if descending { "DESC" } else { "ASC" };
    if tags.is_empty() {
        return Ok(format!(
            "SELECT DISTINCT {} AS key FROM {}{} ORDER BY key {order}",
            literal(table),
            ident(table),
            where_sql(&filter)
        ));
    }
    let parts: Vec<String> = tags
        .iter()
        .map(|k| format!("{} || {}", literal(&format!("{k}=")), ident(k)))
        .collect();
    let distinct: Vec<String> = tags.iter().map(|k| ident(k)).collect();
    Ok(format!(
        "SELECT concat_ws(',', {}, {}) AS key FROM (SELECT DISTINCT {} FROM {}{}) ORDER BY key {order}",
        literal(table),
        parts.join(", "),
        distinct.join(", "),
        ident(table),
        where_sql(&filter)
    ))
}

/// `SHOW TAG VALUES` as a query: per selected tag key, its distinct non-null values; `None`
/// when no tag of the table is selected.
fn show_tag_values_sql(
    ctx: &ShardCtx,
    tenant: &str,
    database: &str,
    show: &ShowTagValues,
) -> Result<Option<String>, ApiError> {
    let t = show_table(ctx, tenant, database, &show.table.table, &show.filter)?;
    let selected = |tag: &str| match &show.keys {
        KeyFilter::Eq(k) => k == tag,
        KeyFilter::Ne(k) => k != tag,
        KeyFilter::In(ks) => ks.iter().any(|k| k == tag),
        KeyFilter::NotIn(ks) => !ks.iter().any(|k| k == tag),
    };
    let extra = show
        .filter
        .as_ref()
        .map_or_else(String::new, |w| format!(" AND ({})", w.sql));
    let parts: Vec<String> = t
        .columns
        .iter()
        .filter(|c| c.kind == ColumnKind::Tag && selected(&c.name))
        .map(|c| {
            format!(
                "SELECT DISTINCT {} AS key, {} AS value FROM {} WHERE {} IS NOT NULL{extra}",
                literal(&c.name),
                ident(&c.name),
                ident(&t.name),
                ident(&c.name)
            )
        })
        .collect();
    if parts.is_empty() {
        return Ok(None);
    }
    let order = match show.order {
        Some(("value", desc)) => format!("value {}, key", if desc { "DESC" } else { "ASC" }),
        Some((_, desc)) => format!("key {}, value", if desc { "DESC" } else { "ASC" }),
        None => "key, value".to_string(),
    };
    Ok(Some(format!(
        "SELECT key, value FROM ({}) ORDER BY {order}{}",
        parts.join(" UNION ALL "),
        limit_sql(show.limit, show.offset)
    )))
}
