//! The catalog: tenants, databases, tables with their typed columns, and users.
//!
//! Shard 0 owns the one mutable copy; every change is applied there, persisted atomically
//! (`data/meta/catalog.json`: write a new file, fsync, rename, fsync the directory), and sent to
//! every shard as a new immutable `Arc<Catalog>` snapshot with a higher `version`. Request paths
//! read only their shard's snapshot, never shard 0's state. A snapshot is never mutated.
//!
//! Tables and columns appear on first write: `time`, then tags and fields in the order they were
//! first written (line protocol sorts a line's keys, so a new table gets them in sorted order).
//! SQL DDL (`CREATE DATABASE/TABLE`, `ALTER ...`) makes the same kind of change through
//! `CatalogChange`: every change, schemaless or declared, is one value shard 0 checks and applies
//! against its current version (`Catalog::change`), so the two paths cannot disagree.
//!
//! Fields added after the first version of the file (database options, column codecs) carry
//! serde defaults: a data directory written before them still loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chronoshard_shard::batch::ValueType;
use serde::{Deserialize, Serialize};

/// Name of the catalog file under `data/meta/`.
pub const CATALOG_FILE: &str = "catalog.json";
pub const DEFAULT_TENANT: &str = "cnosdb";
pub const DEFAULT_DATABASE: &str = "public";
pub const ROOT_USER: &str = "root";

/// Timestamp unit of a database (its `time` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    #[serde(rename = "ns")]
    Nanos,
    #[serde(rename = "us")]
    Micros,
    #[serde(rename = "ms")]
    Millis,
}

impl Precision {
    /// How CnosDB prints it (`DESCRIBE DATABASE`).
    pub fn upper(self) -> &'static str {
        match self {
            Precision::Nanos => "NS",
            Precision::Micros => "US",
            Precision::Millis => "MS",
        }
    }

    /// Nanoseconds per unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanos => 1,
            Precision::Micros => 1_000,
            Precision::Millis => 1_000_000,
        }
    }
}

/// What a column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnKind {
    Time,
    Tag,
    Field(FieldType),
}

/// A field's value type, as stored in the catalog file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
}

impl From<ValueType> for FieldType {
    fn from(v: ValueType) -> Self {
        match v {
            ValueType::Float => FieldType::Float,
            ValueType::Integer => FieldType::Integer,
            ValueType::Unsigned => FieldType::Unsigned,
            ValueType::String => FieldType::String,
            ValueType::Boolean => FieldType::Boolean,
        }
    }
}

impl From<FieldType> for ValueType {
    fn from(v: FieldType) -> Self {
        match v {
            FieldType::Float => ValueType::Float,
            FieldType::Integer => ValueType::Integer,
            FieldType::Unsigned => ValueType::Unsigned,
            FieldType::String => ValueType::String,
            FieldType::Boolean => ValueType::Boolean,
        }
    }
}

impl ColumnKind {
    /// How CnosDB names the kind in errors and DESCRIBE: `TIME`, `TAG`, or the SQL type.
    pub fn describe(self) -> &'static str {
        match self {
            ColumnKind::Time => "TIMESTAMP",
            ColumnKind::Tag => "TAG",
            ColumnKind::Field(t) => ValueType::from(t).sql_name(),
        }
    }
}

/// A column's compression codec as declared in SQL (`CODEC(...)`). Recorded and shown by
/// `DESCRIBE TABLE`; the engine chooses its own encodings for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Codec {
    #[default]
    Default,
    Null,
    Delta,
    DeltaTs,
    Quantile,
    Gorilla,
    Gzip,
    Bzip,
    Zstd,
    Snappy,
    Zlib,
    Bitpack,
}

impl Codec {
    pub const ALL: [Codec; 12] = [
        Codec::Default,
        Codec::Null,
        Codec::Delta,
        Codec::DeltaTs,
        Codec::Quantile,
        Codec::Gorilla,
        Codec::Gzip,
        Codec::Bzip,
        Codec::Zstd,
        Codec::Snappy,
        Codec::Zlib,
        Codec::Bitpack,
    ];

    /// The SQL spelling (`DESCRIBE TABLE` prints it).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Default => "DEFAULT",
            Codec::Null => "NULL",
            Codec::Delta => "DELTA",
            Codec::DeltaTs => "DELTATS",
            Codec::Quantile => "QUANTILE",
            Codec::Gorilla => "GORILLA",
            Codec::Gzip => "GZIP",
            Codec::Bzip => "BZIP",
            Codec::Zstd => "ZSTD",
            Codec::Snappy => "SNAPPY",
            Codec::Zlib => "ZLIB",
            Codec::Bitpack => "BITPACK",
        }
    }

    /// Whether a field of type `t` can use this codec (CnosDB's table, models/src/codec.rs).
    pub fn fits(self, t: FieldType) -> bool {
        use Codec::*;
        match self {
            Default | Null => true,
            Delta | DeltaTs => matches!(t, FieldType::Integer | FieldType::Unsigned),
            Quantile => matches!(
                t,
                FieldType::Integer | FieldType::Unsigned | FieldType::Float
            ),
            Gorilla => t == FieldType::Float,
            Gzip | Bzip | Zstd | Snappy | Zlib => t == FieldType::String,
            Bitpack => t == FieldType::Boolean,
        }
    }

    fn is_default(&self) -> bool {
        *self == Codec::Default
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    #[serde(default, skip_serializing_if = "Codec::is_default")]
    pub codec: Codec,
}

impl Column {
    pub fn new(name: impl Into<String>, kind: ColumnKind) -> Column {
        Column {
            name: name.into(),
            kind,
            codec: Codec::Default,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    /// `time` first, then tags and fields in creation order.
    pub columns: Vec<Column>,
    /// Fields removed by `ALTER TABLE ... DROP`. Their values stay in the shards' memtables
    /// and WALs (scans read only `columns`, so they are hidden), so the names cannot be used
    /// again until the table is dropped: a new column of the name would show the old values,
    /// or meet them with another type on a WAL replay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<Column>,
}

impl Table {
    pub fn new(name: impl Into<String>, columns: Vec<Column>) -> Table {
        Table {
            name: name.into(),
            columns,
            dropped: Vec::new(),
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Refuses a new column named like a dropped one (see `dropped`).
    fn check_not_dropped(&self, name: &str) -> Result<(), CatalogError> {
        match self.dropped.iter().any(|c| c.name == name) {
            true => Err(CatalogError::DroppedColumn {
                table: self.name.clone(),
                column: name.to_string(),
            }),
            false => Ok(()),
        }
    }

    /// `ALTER TABLE ... DROP column`: only a field, and never the last one.
    fn drop_column(&mut self, name: &str) -> Result<(), CatalogError> {
        let i = self
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| CatalogError::ColumnNotFound {
                table: self.name.clone(),
                column: name.to_string(),
            })?;
        match self.columns[i].kind {
            ColumnKind::Time => return Err(CatalogError::DropTime),
            ColumnKind::Tag => return Err(CatalogError::DropTag(name.to_string())),
            ColumnKind::Field(_) => {}
        }
        let fields = self
            .columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Field(_)))
            .count();
        if fields == 1 {
            return Err(CatalogError::AtLeastOneField);
        }
        let column = self.columns.remove(i);
        self.dropped.push(column);
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    pub precision: Precision,
    pub tables: BTreeMap<String, Table>,
    #[serde(default)]
    pub options: DatabaseOptions,
}

/// A database's `WITH` options besides precision. Recorded and shown by `DESCRIBE DATABASE`;
/// the engine acts on `vnode_duration` only (the time partition of its segments); no retention
/// yet, and one vnode layout per shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseOptions {
    /// `None` is `INF`: data never expires.
    pub ttl: Option<Duration>,
    pub shard: u64,
    pub vnode_duration: Duration,
    pub replica: u64,
    pub max_memcache_size_bytes: u64,
    pub memcache_partitions: u64,
    pub wal_max_file_size_bytes: u64,
    pub wal_sync: bool,
    pub strict_write: bool,
    pub max_cache_readers: u64,
}

/// humantime's year, which CnosDB's default `VNODE_DURATION` prints as `1year`.
pub const YEAR: Duration = Duration::from_secs(31_557_600);

impl Default for DatabaseOptions {
    /// CnosDB's defaults (`DESCRIBE DATABASE` of a fresh database).
    fn default() -> Self {
        DatabaseOptions {
            ttl: None,
            shard: 1,
            vnode_duration: YEAR,
            replica: 1,
            max_memcache_size_bytes: 128 << 20,
            memcache_partitions: 16,
            wal_max_file_size_bytes: 128 << 20,
            wal_sync: false,
            strict_write: false,
            max_cache_readers: 32,
        }
    }
}

/// One option of `CREATE DATABASE ... WITH` or `ALTER DATABASE ... SET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseOption {
    Ttl(Option<Duration>),
    Shard(u64),
    VnodeDuration(Duration),
    Replica(u64),
    Precision(Precision),
    MaxMemcacheSize(u64),
    MemcachePartitions(u64),
    WalMaxFileSize(u64),
    WalSync(bool),
    StrictWrite(bool),
    MaxCacheReaders(u64),
}

impl Database {
    /// `d` in the database's time unit (saturating).
    fn units(&self, d: Duration) -> i64 {
        let units = match self.precision {
            Precision::Nanos => d.as_nanos(),
            Precision::Micros => d.as_micros(),
            Precision::Millis => d.as_millis(),
        };
        i64::try_from(units).unwrap_or(i64::MAX)
    }

    /// The time partition width of its segments (`VNODE_DURATION`) in its unit, at least 1.
    pub fn partition_width(&self) -> i64 {
        self.units(self.options.vnode_duration).max(1)
    }

    /// The earliest time it still keeps (now minus its TTL), in its unit; None without a TTL.
    pub fn ttl_cutoff(&self) -> Option<i64> {
        let ttl = self.options.ttl?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Some(self.units(now.saturating_sub(ttl)))
    }

    pub fn new(name: impl Into<String>, precision: Precision) -> Database {
        Database {
            name: name.into(),
            precision,
            tables: BTreeMap::new(),
            options: DatabaseOptions::default(),
        }
    }

    /// Sets one option (precision included: callers refuse it where it may not change).
    pub fn set(&mut self, option: &DatabaseOption) {
        let o = &mut self.options;
        match option {
            DatabaseOption::Ttl(v) => o.ttl = *v,
            DatabaseOption::Shard(v) => o.shard = *v,
            DatabaseOption::VnodeDuration(v) => o.vnode_duration = *v,
            DatabaseOption::Replica(v) => o.replica = *v,
            DatabaseOption::Precision(p) => self.precision = *p,
            DatabaseOption::MaxMemcacheSize(v) => o.max_memcache_size_bytes = *v,
            DatabaseOption::MemcachePartitions(v) => o.memcache_partitions = *v,
            DatabaseOption::WalMaxFileSize(v) => o.wal_max_file_size_bytes = *v,
            DatabaseOption::WalSync(v) => o.wal_sync = *v,
            DatabaseOption::StrictWrite(v) => o.strict_write = *v,
            DatabaseOption::MaxCacheReaders(v) => o.max_cache_readers = *v,
        }
    }

    pub fn table(&self, name: &str) -> Result<&Table, CatalogError> {
        self.tables
            .get(name)
            .ok_or_else(|| CatalogError::TableNotFound(name.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    pub databases: BTreeMap<String, Database>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub admin: bool,
}

/// One immutable version of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub version: u64,
    /// Shard count the data directory was created with; series ownership depends on it.
    pub shards: usize,
    pub tenants: BTreeMap<String, Tenant>,
    pub users: BTreeMap<String, User>,
}

/// A column a write needs that the table may not have yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnWant {
    pub name: String,
    pub kind: ColumnKind,
}

/// Every change to the catalog, applied by shard 0 (`Catalog::change`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogChange {
    /// A write's schema wants (line protocol, INSERT): add what is missing.
    EnsureColumns(EnsureColumns),
    CreateDatabase {
        tenant: String,
        database: String,
        options: Vec<DatabaseOption>,
        if_not_exists: bool,
    },
    AlterDatabase {
        tenant: String,
        database: String,
        option: DatabaseOption,
    },
    /// `table` holds every column, `time` first.
    CreateTable {
        tenant: String,
        database: String,
        table: Table,
        if_not_exists: bool,
    },
    AddColumn {
        tenant: String,
        database: String,
        table: String,
        column: Column,
    },
    SetCodec {
        tenant: String,
        database: String,
        table: String,
        column: String,
        codec: Codec,
    },
    /// `ALTER TABLE ... DROP`: the field leaves `columns` for `dropped` (its data stays).
    DropColumn {
        tenant: String,
        database: String,
        table: String,
        column: String,
    },
    /// Removes a database (its data is deleted on every shard first).
    DropDatabase {
        tenant: String,
        database: String,
        if_exists: bool,
    },
    /// Removes a table (its data is deleted on every shard first).
    DropTable {
        tenant: String,
        database: String,
        table: String,
        if_exists: bool,
    },
}

/// A change shard 0 applies: make sure these tables and columns exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsureColumns {
    pub tenant: String,
    pub database: String,
    /// Per table, the columns in the order they should be added if missing.
    pub tables: Vec<(String, Vec<ColumnWant>)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("tenant not found: {0}")]
    TenantNotFound(String),
    #[error("Database not found: {0:?}")]
    DatabaseNotFound(String),
    #[error(
        "column {column:?} of table {table:?} is {existing}, but this write has it as {written}"
    )]
    TypeConflict {
        table: String,
        column: String,
        existing: &'static str,
        written: &'static str,
    },
    #[error("column name {0:?} is reserved for the timestamp")]
    ReservedName(String),
    #[error("Database {0:?} already exists")]
    DatabaseExists(String),
    #[error("Table not found: {0:?}")]
    TableNotFound(String),
    #[error("Table {0} already exists.")]
    TableExists(String),
    /// CnosDB's text, double space included.
    #[error("Semantic error:  column {column} already exists in table {table}")]
    ColumnExists { table: String, column: String },
    #[error("Semantic error: Column {column} not exists in table {table}")]
    ColumnNotFound { table: String, column: String },
    #[error("Semantic error: Tag does not support compression")]
    TagCodec,
    #[error("Semantic error: Can't drop tag column {0}.")]
    DropTag(String),
    #[error("Semantic error: Can't drop column time.")]
    DropTime,
    #[error("Semantic error: There must be at least one field column.")]
    AtLeastOneField,
    #[error(
        "Semantic error: column {column} of table {table} was dropped and its old values are \
         still held in memory and in the WAL, so the name cannot be used again yet; drop and \
         recreate the table to reuse it"
    )]
    DroppedColumn { table: String, column: String },
    #[error("Semantic error: Column time does not support modification")]
    TimeColumnAlter,
    #[error("Semantic error: Unsupported encoding type {codec} for {data_type}")]
    CodecMismatch {
        codec: &'static str,
        data_type: &'static str,
    },
    #[error("catalog {op} {path}: {reason}")]
    Persist {
        op: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("data directory was created with {on_disk} shards but the server runs {configured}; series ownership depends on the shard count, so start with --shards {on_disk}")]
    ShardCountChanged { on_disk: usize, configured: usize },
}

impl Catalog {
    /// The catalog of a new data directory: tenant `cnosdb`, database `public`, user `root`.
    pub fn bootstrap(shards: usize) -> Catalog {
        let public = Database::new(DEFAULT_DATABASE, Precision::Nanos);
        let tenant = Tenant {
            name: DEFAULT_TENANT.into(),
            databases: BTreeMap::from([(public.name.clone(), public)]),
        };
        let root = User {
            name: ROOT_USER.into(),
            admin: true,
        };
        Catalog {
            version: 1,
            shards,
            tenants: BTreeMap::from([(tenant.name.clone(), tenant)]),
            users: BTreeMap::from([(root.name.clone(), root)]),
        }
    }

    pub fn database(&self, tenant: &str, database: &str) -> Result<&Database, CatalogError> {
        let t = self
            .tenants
            .get(tenant)
            .ok_or_else(|| CatalogError::TenantNotFound(tenant.to_string()))?;
        t.databases
            .get(database)
            .ok_or_else(|| CatalogError::DatabaseNotFound(database.to_string()))
    }

    /// Checks `want` against the catalog: `Ok(true)` if everything exists with the right kinds,
    /// `Ok(false)` if something must be added, an error on a conflict.
    pub fn check(&self, want: &EnsureColumns) -> Result<bool, CatalogError> {
        let db = self.database(&want.tenant, &want.database)?;
        let mut complete = true;
        for (table, columns) in &want.tables {
            let Some(t) = db.tables.get(table) else {
                complete = false;
                check_names(columns)?;
                continue;
            };
            for c in columns {
                match t.column(&c.name) {
                    Some(have) if have.kind == c.kind => {}
                    Some(have) => return Err(conflict(table, &c.name, have.kind, c.kind)),
                    None => {
                        check_names(std::slice::from_ref(c))?;
                        t.check_not_dropped(&c.name)?;
                        complete = false;
                    }
                }
            }
        }
        Ok(complete)
    }

    /// A new version with `want` applied (after `check` said something was missing).
    pub fn apply(&self, want: &EnsureColumns) -> Result<Catalog, CatalogError> {
        self.check(want)?;
        let mut next = self.clone();
        next.version += 1;
        let tenant = next
            .tenants
            .get_mut(&want.tenant)
            .ok_or_else(|| CatalogError::TenantNotFound(want.tenant.clone()))?;
        let db = tenant
            .databases
            .get_mut(&want.database)
            .ok_or_else(|| CatalogError::DatabaseNotFound(want.database.clone()))?;
        for (table, columns) in &want.tables {
            let t = db.tables.entry(table.clone()).or_insert_with(|| {
                Table::new(table.clone(), vec![Column::new("time", ColumnKind::Time)])
            });
            for c in columns {
                if t.column(&c.name).is_none() {
                    t.columns.push(Column::new(c.name.clone(), c.kind));
                }
            }
        }
        Ok(next)
    }

    /// Checks `change` against this version: `Ok(None)` when there is nothing to do (the
    /// columns exist, or `IF NOT EXISTS` found the object), `Ok(Some(next))` with the next
    /// version, or why the change is refused.
    pub fn change(&self, change: &CatalogChange) -> Result<Option<Catalog>, CatalogError> {
        let (tenant, database) = match change {
            CatalogChange::EnsureColumns(want) => {
                return match self.check(want)? {
                    true => Ok(None),
                    false => self.apply(want).map(Some),
                };
            }
            CatalogChange::CreateDatabase {
                tenant,
                database,
                options,
                if_not_exists,
            } => {
                let t = self
                    .tenants
                    .get(tenant)
                    .ok_or_else(|| CatalogError::TenantNotFound(tenant.clone()))?;
                if t.databases.contains_key(database) {
                    return match if_not_exists {
                        true => Ok(None),
                        false => Err(CatalogError::DatabaseExists(database.clone())),
                    };
                }
                let mut db = Database::new(database.clone(), Precision::Nanos);
                options.iter().for_each(|o| db.set(o));
                let mut next = self.next();
                if let Some(t) = next.tenants.get_mut(tenant) {
                    t.databases.insert(database.clone(), db);
                }
                return Ok(Some(next));
            }
            CatalogChange::DropDatabase {
                tenant,
                database,
                if_exists,
            } => {
                let t = self
                    .tenants
                    .get(tenant)
                    .ok_or_else(|| CatalogError::TenantNotFound(tenant.clone()))?;
                if !t.databases.contains_key(database) {
                    return match if_exists {
                        true => Ok(None),
                        false => Err(CatalogError::DatabaseNotFound(database.clone())),
                    };
                }
                let mut next = self.next();
                if let Some(t) = next.tenants.get_mut(tenant) {
                    t.databases.remove(database);
                }
                return Ok(Some(next));
            }
            CatalogChange::DropTable {
                tenant,
                database,
                table,
                if_exists,
            } => {
                if !self.database(tenant, database)?.tables.contains_key(table) {
                    return match if_exists {
                        true => Ok(None),
                        false => Err(CatalogError::TableNotFound(table.clone())),
                    };
                }
                let mut next = self.next();
                if let Some(db) = next
                    .tenants
                    .get_mut(tenant)
                    .and_then(|t| t.databases.get_mut(database))
                {
                    db.tables.remove(table);
                }
                return Ok(Some(next));
            }
            CatalogChange::AlterDatabase {
                tenant, database, ..
            }
            | CatalogChange::CreateTable {
                tenant, database, ..
            }
            | CatalogChange::AddColumn {
                tenant, database, ..
            }
            | CatalogChange::SetCodec {
                tenant, database, ..
            }
            | CatalogChange::DropColumn {
                tenant, database, ..
            } => (tenant, database),
        };
        let db = self.database(tenant, database)?;
        if let CatalogChange::CreateTable {
            table,
            if_not_exists,
            ..
        } = change
        {
            if db.tables.contains_key(&table.name) {
                return match if_not_exists {
                    true => Ok(None),
                    false => Err(CatalogError::TableExists(table.name.clone())),
                };
            }
        }
        let mut next = self.next();
        let db = next
            .tenants
            .get_mut(tenant)
            .and_then(|t| t.databases.get_mut(database))
            .ok_or_else(|| CatalogError::DatabaseNotFound(database.clone()))?;
        apply_to_database(db, change)?;
        Ok(Some(next))
    }

    /// A copy with the next version number, to be changed.
    fn next(&self) -> Catalog {
        let mut next = self.clone();
        next.version += 1;
        next
    }

    /// Loads the catalog of a data directory, or bootstraps and persists a new one.
    pub fn load_or_bootstrap(meta_dir: &Path, shards: usize) -> Result<Catalog, CatalogError> {
        let path = meta_dir.join(CATALOG_FILE);
        let catalog = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<Catalog>(&bytes).map_err(|e| CatalogError::Persist {
                    op: "parsing",
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let c = Catalog::bootstrap(shards);
                c.persist(meta_dir)?;
                c
            }
            Err(e) => return Err(persist_err("reading", &path, e)),
        };
        if catalog.shards != shards {
            return Err(CatalogError::ShardCountChanged {
                on_disk: catalog.shards,
                configured: shards,
            });
        }
        Ok(catalog)
    }

    /// Writes the catalog atomically: temp file, fsync, rename, fsync the directory.
    pub fn persist(&self, meta_dir: &Path) -> Result<(), CatalogError> {
        use std::io::Write;
        let path = meta_dir.join(CATALOG_FILE);
        let tmp = meta_dir.join(format!("{CATALOG_FILE}.tmp"));
        std::fs::create_dir_all(meta_dir).map_err(|e| persist_err("creating", meta_dir, e))?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| CatalogError::Persist {
            op: "encoding",
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| persist_err("creating", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| persist_err("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| persist_err("renaming", &path, e))?;
        std::fs::File::open(meta_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| persist_err("syncing", meta_dir, e))
    }
}

/// Applies a database-level DDL change (the database exists; `CreateTable` was checked).
fn apply_to_database(db: &mut Database, change: &CatalogChange) -> Result<(), CatalogError> {
    match change {
        CatalogChange::AlterDatabase { option, .. } => db.set(option),
        CatalogChange::CreateTable { table, .. } => {
            db.tables.insert(table.name.clone(), table.clone());
        }
        CatalogChange::AddColumn { table, column, .. } => {
            let t = db
                .tables
                .get_mut(table)
                .ok_or_else(|| CatalogError::TableNotFound(table.clone()))?;
            if t.column(&column.name).is_some() || column.name == "time" {
                return Err(CatalogError::ColumnExists {
                    table: table.clone(),
                    column: column.name.clone(),
                });
            }
            t.check_not_dropped(&column.name)?;
            t.columns.push(column.clone());
        }
        CatalogChange::DropColumn { table, column, .. } => db
            .tables
            .get_mut(table)
            .ok_or_else(|| CatalogError::TableNotFound(table.clone()))?
            .drop_column(column)?,
        CatalogChange::SetCodec {
            table,
            column,
            codec,
            ..
        } => {
            let t = db
                .tables
                .get_mut(table)
                .ok_or_else(|| CatalogError::TableNotFound(table.clone()))?;
            let c = t
                .columns
                .iter_mut()
                .find(|c| c.name == *column)
                .ok_or_else(|| CatalogError::ColumnNotFound {
                    table: table.clone(),
                    column: column.clone(),
                })?;
            match c.kind {
                ColumnKind::Time => return Err(CatalogError::TimeColumnAlter),
                ColumnKind::Tag => return Err(CatalogError::TagCodec),
                ColumnKind::Field(ty) if !codec.fits(ty) => {
                    return Err(CatalogError::CodecMismatch {
                        codec: codec.name(),
                        data_type: ValueType::from(ty).sql_name(),
                    })
                }
                ColumnKind::Field(_) => c.codec = *codec,
            }
        }
        CatalogChange::EnsureColumns(_)
        | CatalogChange::CreateDatabase { .. }
        | CatalogChange::DropDatabase { .. }
        | CatalogChange::DropTable { .. } => {}
    }
    Ok(())
}

fn persist_err(op: &'static str, path: &Path, e: std::io::Error) -> CatalogError {
    CatalogError::Persist {
        op,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn conflict(table: &str, column: &str, have: ColumnKind, written: ColumnKind) -> CatalogError {
    CatalogError::TypeConflict {
        table: table.to_string(),
        column: column.to_string(),
        existing: have.describe(),
        written: written.describe(),
    }
}

fn check_names(columns: &[ColumnWant]) -> Result<(), CatalogError> {
    match columns.iter().find(|c| c.name == "time") {
        Some(c) => Err(CatalogError::ReservedName(c.name.clone())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(table: &str, cols: &[(&str, ColumnKind)]) -> EnsureColumns {
        EnsureColumns {
            tenant: DEFAULT_TENANT.into(),
            database: DEFAULT_DATABASE.into(),
            tables: vec![(
                table.into(),
                cols.iter()
                    .map(|(n, k)| ColumnWant {
                        name: n.to_string(),
                        kind: *k,
                    })
                    .collect(),
            )],
        }
    }

    #[test]
    fn new_table_gets_time_then_columns_in_order() {
        let c = Catalog::bootstrap(2);
        let w = want(
            "cpu",
            &[
                ("host", ColumnKind::Tag),
                ("v", ColumnKind::Field(FieldType::Float)),
            ],
        );
        assert_eq!(c.check(&w), Ok(false));
        let next = c.apply(&w).expect("applies");
        assert_eq!(next.version, 2);
        let t = &next.database("cnosdb", "public").expect("db").tables["cpu"];
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["time", "host", "v"]);
        assert_eq!(next.check(&w), Ok(true));
    }

    #[test]
    fn type_conflicts_name_both_types() {
        let c = Catalog::bootstrap(1)
            .apply(&want("cpu", &[("v", ColumnKind::Field(FieldType::Float))]))
            .expect("applies");
        let err = c
            .check(&want(
                "cpu",
                &[("v", ColumnKind::Field(FieldType::Integer))],
            ))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DOUBLE") && err.contains("BIGINT") && err.contains("\"v\""),
            "{err}"
        );
        let err = c
            .check(&want("cpu", &[("v", ColumnKind::Tag)]))
            .unwrap_err();
        assert!(matches!(err, CatalogError::TypeConflict { .. }));
    }

    #[test]
    fn unknown_tenant_and_database() {
        let c = Catalog::bootstrap(1);
        let mut w = want("cpu", &[]);
        w.database = "nope".into();
        assert_eq!(
            c.check(&w),
            Err(CatalogError::DatabaseNotFound("nope".into()))
        );
        w.tenant = "t".into();
        assert_eq!(c.check(&w), Err(CatalogError::TenantNotFound("t".into())));
    }

    #[test]
    fn ddl_changes_check_existence_and_if_not_exists() {
        let c = Catalog::bootstrap(1);
        let create = |if_not_exists| CatalogChange::CreateDatabase {
            tenant: DEFAULT_TENANT.into(),
            database: "db1".into(),
            options: vec![
                DatabaseOption::Precision(Precision::Millis),
                DatabaseOption::Shard(3),
            ],
            if_not_exists,
        };
        let next = c.change(&create(false)).expect("creates").expect("changed");
        assert_eq!(next.version, 2);
        let db = next.database(DEFAULT_TENANT, "db1").expect("db");
        assert_eq!((db.precision, db.options.shard), (Precision::Millis, 3));
        assert_eq!(
            next.change(&create(false)),
            Err(CatalogError::DatabaseExists("db1".into()))
        );
        assert_eq!(next.change(&create(true)), Ok(None));
        let table = Table::new(
            "t",
            vec![
                Column::new("time", ColumnKind::Time),
                Column::new("k", ColumnKind::Tag),
            ],
        );
        let create_table = CatalogChange::CreateTable {
            tenant: DEFAULT_TENANT.into(),
            database: "db1".into(),
            table,
            if_not_exists: false,
        };
        let next = next.change(&create_table).expect("ok").expect("changed");
        assert!(matches!(
            next.change(&create_table),
            Err(CatalogError::TableExists(_))
        ));
        let add = |name: &str| CatalogChange::AddColumn {
            tenant: DEFAULT_TENANT.into(),
            database: "db1".into(),
            table: "t".into(),
            column: Column::new(name, ColumnKind::Field(FieldType::Float)),
        };
        assert!(matches!(
            next.change(&add("k")),
            Err(CatalogError::ColumnExists { .. })
        ));
        let next = next.change(&add("f")).expect("ok").expect("changed");
        let codec = |column: &str, codec| CatalogChange::SetCodec {
            tenant: DEFAULT_TENANT.into(),
            database: "db1".into(),
            table: "t".into(),
            column: column.into(),
            codec,
        };
        assert_eq!(
            next.change(&codec("k", Codec::Zstd)),
            Err(CatalogError::TagCodec)
        );
        assert!(matches!(
            next.change(&codec("f", Codec::Delta)),
            Err(CatalogError::CodecMismatch { .. })
        ));
        let next = next
            .change(&codec("f", Codec::Gorilla))
            .expect("ok")
            .expect("changed");
        let t = &next.database(DEFAULT_TENANT, "db1").expect("db").tables["t"];
        assert_eq!(t.column("f").map(|c| c.codec), Some(Codec::Gorilla));
        // A write wanting the declared types changes nothing; another type conflicts.
        let mut w = want("t", &[("f", ColumnKind::Field(FieldType::Float))]);
        w.database = "db1".into();
        assert_eq!(next.change(&CatalogChange::EnsureColumns(w)), Ok(None));
    }

    #[test]
    fn drop_column_takes_fields_only_and_retires_the_name() {
        let c = Catalog::bootstrap(1);
        let w = want(
            "m",
            &[
                ("k", ColumnKind::Tag),
                ("f", ColumnKind::Field(FieldType::Float)),
                ("g", ColumnKind::Field(FieldType::Integer)),
            ],
        );
        let c = c.apply(&w).expect("applies");
        let drop = |column: &str| CatalogChange::DropColumn {
            tenant: DEFAULT_TENANT.into(),
            database: DEFAULT_DATABASE.into(),
            table: "m".into(),
            column: column.into(),
        };
        assert_eq!(c.change(&drop("k")), Err(CatalogError::DropTag("k".into())));
        assert_eq!(c.change(&drop("time")), Err(CatalogError::DropTime));
        assert!(matches!(
            c.change(&drop("nope")),
            Err(CatalogError::ColumnNotFound { .. })
        ));
        let next = c.change(&drop("f")).expect("ok").expect("changed");
        assert_eq!(next.version, c.version + 1);
        let t = &next
            .database(DEFAULT_TENANT, DEFAULT_DATABASE)
            .expect("db")
            .tables["m"];
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["time", "k", "g"]);
        assert_eq!(
            t.dropped,
            [Column::new("f", ColumnKind::Field(FieldType::Float))]
        );
        // The last field stays.
        assert_eq!(next.change(&drop("g")), Err(CatalogError::AtLeastOneField));
        // The name is retired, whatever the type, from DDL and from writes.
        let dropped = || CatalogError::DroppedColumn {
            table: "m".into(),
            column: "f".into(),
        };
        for kind in [ColumnKind::Field(FieldType::Float), ColumnKind::Tag] {
            let add = CatalogChange::AddColumn {
                tenant: DEFAULT_TENANT.into(),
                database: DEFAULT_DATABASE.into(),
                table: "m".into(),
                column: Column::new("f", kind),
            };
            assert_eq!(next.change(&add), Err(dropped()));
            let write = CatalogChange::EnsureColumns(want("m", &[("f", kind)]));
            assert_eq!(next.change(&write), Err(dropped()));
        }
        // The retired list survives persistence.
        let round: Catalog =
            serde_json::from_str(&serde_json::to_string(&next).expect("encodes")).expect("decodes");
        assert_eq!(round, next);
    }

    #[test]
    fn a_catalog_file_without_options_or_codecs_still_loads() {
        let old = r#"{"version":3,"shards":1,"tenants":{"cnosdb":{"name":"cnosdb","databases":{"public":{"name":"public","precision":"ns","tables":{"m":{"name":"m","columns":[{"name":"time","kind":"Time"},{"name":"v","kind":{"Field":"Float"}}]}}}}}},"users":{}}"#;
        let c: Catalog = serde_json::from_str(old).expect("loads");
        let db = c.database(DEFAULT_TENANT, DEFAULT_DATABASE).expect("db");
        assert_eq!(db.options, DatabaseOptions::default());
        assert_eq!(db.tables["m"].columns[1].codec, Codec::Default);
        let round: Catalog =
            serde_json::from_str(&serde_json::to_string(&c).expect("encodes")).expect("decodes");
        assert_eq!(round, c);
    }

    #[test]
    fn persists_and_loads_and_guards_the_shard_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = dir.path().join("meta");
        let c = Catalog::load_or_bootstrap(&meta, 2).expect("bootstraps");
        let next = c
            .apply(&want("m", &[("t", ColumnKind::Tag)]))
            .expect("applies");
        next.persist(&meta).expect("persists");
        assert_eq!(Catalog::load_or_bootstrap(&meta, 2).expect("loads"), next);
        assert!(matches!(
            Catalog::load_or_bootstrap(&meta, 3),
            Err(CatalogError::ShardCountChanged {
                on_disk: 2,
                configured: 3
            })
        ));
    }
}
