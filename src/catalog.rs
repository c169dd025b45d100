//! The catalog: tenants, databases, tables with their typed columns, and users.
//!
//! Shard 0 owns the one mutable copy; every change is applied there, persisted atomically
//! (`data/meta/catalog.json`: write a new file, fsync, rename, fsync the directory), and sent to
//! every shard as a new immutable `Arc<Catalog>` snapshot with a higher `version`. Request paths
//! read only their shard's snapshot, never shard 0's state. A snapshot is never mutated.
//!
//! Tables and columns appear on first write: `time`, then tags and fields in the order they were
//! first written (line protocol sorts a line's keys, so a new table gets them in sorted order).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    /// `time` first, then tags and fields in creation order.
    pub columns: Vec<Column>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    pub precision: Precision,
    pub tables: BTreeMap<String, Table>,
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
    #[error("database not found: {0:?}")]
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
        let public = Database {
            name: DEFAULT_DATABASE.into(),
            precision: Precision::Nanos,
            tables: BTreeMap::new(),
        };
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
            let t = db.tables.entry(table.clone()).or_insert_with(|| Table {
                name: table.clone(),
                columns: vec![Column {
                    name: "time".into(),
                    kind: ColumnKind::Time,
                }],
            });
            for c in columns {
                if t.column(&c.name).is_none() {
                    t.columns.push(Column {
                        name: c.name.clone(),
                        kind: c.kind,
                    });
                }
            }
        }
        Ok(next)
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
