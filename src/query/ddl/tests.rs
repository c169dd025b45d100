//! The DDL parser on good and bad input (bad input must give an error, never a panic), the
//! duration and size forms of `DESCRIBE DATABASE`, and INSERT rows as line protocol.

use std::time::Duration;

use super::parse::{recognize, split_statements, tokenize};
use super::units::{format_duration, format_size, parse_duration, parse_size};
use super::*;
use crate::catalog::{Catalog, CatalogChange, Precision, DEFAULT_DATABASE, DEFAULT_TENANT};

fn ok(sql: &str) -> Statement {
    match recognize(sql) {
        Ok(Some(s)) => s,
        other => panic!("{sql:?}: {other:?}"),
    }
}

fn err(sql: &str) -> String {
    match recognize(sql) {
        Err(e) => e.to_string(),
        other => panic!("{sql:?} should fail: {other:?}"),
    }
}

#[test]
fn create_database_with_options() {
    let s = ok("CREATE DATABASE IF NOT EXISTS db1 WITH TTl '10d' SHARD 5 VNOdE_DURATiON '3d' REPLICA = 1 pRECISIOn 'us';");
    assert_eq!(
        s,
        Statement::CreateDatabase {
            name: "db1".into(),
            if_not_exists: true,
            options: vec![
                DatabaseOption::Ttl(Some(Duration::from_secs(10 * 86_400))),
                DatabaseOption::Shard(5),
                DatabaseOption::VnodeDuration(Duration::from_secs(3 * 86_400)),
                DatabaseOption::Replica(1),
                DatabaseOption::Precision(Precision::Micros),
            ],
        }
    );
    assert_eq!(
        ok("create database 'dd c'"),
        Statement::CreateDatabase {
            name: "dd c".into(),
            if_not_exists: false,
            options: vec![]
        }
    );
    let s = ok("create database t with ttl 'inf' max_memcache_size '128MiB' wal_sync 'true' max_cache_readers 100");
    let Statement::CreateDatabase { options, .. } = s else {
        panic!("{s:?}")
    };
    assert_eq!(options[0], DatabaseOption::Ttl(None));
    assert_eq!(options[1], DatabaseOption::MaxMemcacheSize(128 << 20));
    assert_eq!(options[2], DatabaseOption::WalSync(true));
}

#[test]
fn database_statement_errors() {
    assert_eq!(
        err("CREATE DATABASE d WITH TTL '1d', SHARD 2"),
        "sql parser error: Expected end of statement, found: ,"
    );
    assert!(err("CREATE DATABASE d WITH SHARD 0").contains("greater than 0"));
    assert!(err("CREATE DATABASE d WITH PRECISION 's'").contains("precision"));
    assert!(err("CREATE DATABASE d WITH TTL '1 fortnight'").contains("invalid duration"));
    assert_eq!(
        err("create database \"db/1\""),
        "sql parser error: not supported keyword contains '/': db/1"
    );
    assert_eq!(
        err("ALTER DATABASE d Set PRECision 'ms'"),
        "sql parser error: database config is unmodifiable, only can modify database option: TTL, SHARD, VNODE_DURATION, REPLICA"
    );
    assert_eq!(
        err("ALTER DATABASE d Set TTL '30d' SHARD 6"),
        "sql parser error: Expected end of statement, found: SHARD"
    );
    assert_eq!(
        ok("alter database d set vnode_duration '100d'"),
        Statement::AlterDatabase {
            name: "d".into(),
            option: DatabaseOption::VnodeDuration(Duration::from_secs(100 * 86_400))
        }
    );
}

#[test]
fn create_table_columns_tags_and_codecs() {
    let s = ok("CREATE TABLE IF NOT EXISTS db.\"Air\" (visibility DOUBLE CODEC(gorilla), n BIGINT UNSIGNED, s STRING, TAGS(station, Region))");
    assert_eq!(
        s,
        Statement::CreateTable {
            table: TableRef {
                database: Some("db".into()),
                table: "Air".into()
            },
            if_not_exists: true,
            columns: vec![
                ColumnDef {
                    name: "visibility".into(),
                    ty: SqlType::Field(FieldType::Float),
                    codec: Some(Codec::Gorilla)
                },
                ColumnDef {
                    name: "n".into(),
                    ty: SqlType::Field(FieldType::Unsigned),
                    codec: None
                },
                ColumnDef {
                    name: "s".into(),
                    ty: SqlType::Field(FieldType::String),
                    codec: None
                },
            ],
            tags: vec!["station".into(), "region".into()],
        }
    );
    assert_eq!(
        err("CREATE TABLE t(column1 BIGINT,)"),
        "sql parser error: Expected identifier, found: )"
    );
    assert_eq!(
        err("CREATE TABLE t"),
        "sql parser error: Expected field columns when create table"
    );
    assert_eq!(
        err("CREATE TABLE t (c BIGINT CODEC(DEL))"),
        "sql parser error: DEL is not valid encoding"
    );
    assert_eq!(
        err("CREATE TABLE t (c BIGINT CODEC())"),
        "sql parser error: expect codec encoding type in ()"
    );
    assert_eq!(
        err("CREATE TABLE t (column4 BOOLE)"),
        "Semantic error: Unexpected data type BOOLE of column4"
    );
    assert!(err("CREATE TABLE t (TAGS(a), f DOUBLE)").contains("Expected )"));
}

#[test]
fn alter_describe_show() {
    assert_eq!(
        ok("ALTER TABLE t ADD FIELD f BIGINT CODEC(DELTA)"),
        Statement::AlterTable {
            table: TableRef {
                database: None,
                table: "t".into()
            },
            action: TableAction::AddField(ColumnDef {
                name: "f".into(),
                ty: SqlType::Field(FieldType::Integer),
                codec: Some(Codec::Delta)
            })
        }
    );
    assert!(matches!(
        ok("alter table t add tag g"),
        Statement::AlterTable {
            action: TableAction::AddTag(_),
            ..
        }
    ));
    assert!(matches!(
        ok("alter table t alter f set codec(null)"),
        Statement::AlterTable {
            action: TableAction::SetCodec {
                codec: Codec::Null,
                ..
            },
            ..
        }
    ));
    assert_eq!(
        ok("ALTER TABLE db.t DROP f"),
        Statement::AlterTable {
            table: TableRef {
                database: Some("db".into()),
                table: "t".into()
            },
            action: TableAction::DropColumn("f".into()),
        }
    );
    assert!(err("ALTER TABLE t DROP").contains("sql parser error"));
    assert!(err("ALTER TABLE t DROP COLUMN f").contains("sql parser error"));
    assert!(err("alter table t rename column a to b").contains("not implemented"));
    assert_eq!(ok("SHOW DATABASES;"), Statement::ShowDatabases);
    assert_eq!(
        ok("show tables on db"),
        Statement::ShowTables {
            database: Some("db".into())
        }
    );
    assert!(matches!(
        ok("DESC DATABASE public"),
        Statement::DescribeDatabase { .. }
    ));
    assert!(matches!(
        ok("describe table t"),
        Statement::DescribeTable(_)
    ));
}

#[test]
fn show_series_and_tag_values() {
    let s = ok("SHOW SERIES ON db FROM air WHERE (station = 'a' OR time > 5) ORDER BY key DESC LIMIT 2 OFFSET 1");
    let Statement::ShowSeries {
        table,
        filter,
        descending,
        limit,
        offset,
    } = s
    else {
        panic!("{s:?}")
    };
    assert_eq!(table.database.as_deref(), Some("db"));
    let filter = filter.expect("where");
    assert_eq!(filter.sql, "(station = 'a' OR time > 5)");
    assert!(filter.idents.contains(&"station".to_string()));
    assert!(descending);
    assert_eq!((limit, offset), (Some(2), Some(1)));
    let s =
        ok("show tag values from air with key in (a, \"B\") where a != 'x' order by value desc");
    let Statement::ShowTagValues(show) = s else {
        panic!("{s:?}")
    };
    assert_eq!(show.keys, KeyFilter::In(vec!["a".into(), "B".into()]));
    assert_eq!(show.order, Some(("value", true)));
    assert!(matches!(
        ok("SHOW TAG VALUES FROM air WITH KEY != a").clone(),
        Statement::ShowTagValues(ShowTagValues {
            keys: KeyFilter::Ne(_),
            ..
        })
    ));
    assert!(err("SHOW SERIES FROM air WHERE").contains("Expected an expression"));
    assert!(err("SHOW SERIES FROM air WHERE (a = 1").contains("Expected )"));
    assert!(err("SHOW TAG VALUES FROM air").contains("Expected WITH"));
}

#[test]
fn insert_values() {
    let s = ok("INSERT INTO air (TIME, station, v) VALUES (1, 'a', -1.5), ('2023-01-01 00:00:00', NULL, +2)");
    assert_eq!(
        s,
        Statement::Insert {
            table: TableRef {
                database: None,
                table: "air".into()
            },
            columns: vec!["time".into(), "station".into(), "v".into()],
            rows: vec![
                vec![
                    Literal::Int(1),
                    Literal::Str("a".into()),
                    Literal::Float(-1.5)
                ],
                vec![
                    Literal::Str("2023-01-01 00:00:00".into()),
                    Literal::Null,
                    Literal::Int(2)
                ],
            ],
        }
    );
    assert!(err("INSERT INTO t SELECT * FROM u").contains("not implemented"));
    assert!(err("INSERT INTO t VALUES (now())").contains("Expected a literal value"));
    assert!(err("INSERT INTO t VALUES (1,)").contains("Expected a literal value"));
}

#[test]
fn statements_are_counted_and_others_left_to_datafusion() {
    assert!(matches!(recognize("SELECT 1"), Ok(None)));
    assert!(matches!(recognize("select 'CREATE DATABASE x'"), Ok(None)));
    assert!(matches!(recognize(""), Ok(None)));
    assert!(matches!(recognize(" ;; "), Ok(None)));
    assert!(matches!(recognize("DESCRIBE t"), Ok(None)));
    assert_eq!(
        err("CREATE DATABASE a; SELECT 1"),
        "Multi-statement not allow, found num:2, sql:CREATE DATABASE a; SELECT 1"
    );
    assert!(err("SELECT 1; SELECT 2").starts_with("Multi-statement"));
    assert!(err("DROP DATABASE d AFTER '1d'").contains("not implemented"));
    assert!(err("DELETE FROM t WHERE a = 'x' OR b = 'y'").contains("not implemented"));
    assert!(err("UPDATE t SET f = 1 WHERE true").contains("not implemented"));
    assert!(err("CREATE USER u").contains("not implemented"));
    let t = tokenize("a -- c ; \n /* ; */ 'x;''y' \"q\"\"\" 1.5e3;").expect("tokens");
    assert_eq!(split_statements(&t).len(), 1);
    assert_eq!(t[1].tok, parse::Tok::Str("x;'y".into()));
    assert_eq!(t[2].tok, parse::Tok::Quoted("q\"".into()));
    assert_eq!(t[3].tok, parse::Tok::Num("1.5e3".into()));
}

#[test]
fn bad_input_never_panics() {
    let pieces = [
        "CREATE", "DATABASE", "TABLE", "ALTER", "SHOW", "SERIES", "TAG", "VALUES", "INSERT",
        "INTO", "WITH", "KEY", "TAGS", "(", ")", ",", ";", "'", "\"", "=", "!=", "IN", "NOT",
        "WHERE", "ORDER", "BY", "LIMIT", "1", "-", "x", "é", "CODEC", "TTL", "SET", "ADD", "FIELD",
        "/*", "--", "\n", "'1d'", "BIGINT", "UNSIGNED", "ON", "FROM", "DESCRIBE",
    ];
    // A deterministic walk over many combinations.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut sql = String::new();
        let len = (seed % 9) as usize + 1;
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            sql.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            sql.push(' ');
        }
        let _ = recognize(&sql);
        let _ = recognize(sql.trim_end());
    }
    for bytes in [
        "'",
        "\"",
        "/*",
        "`a",
        "\u{0}",
        "ALTER DATABASE",
        "INSERT INTO t VALUES (",
        "SHOW TAG VALUES FROM t WITH KEY IN (",
    ] {
        let _ = recognize(bytes);
    }
}

#[test]
fn durations_and_sizes_print_as_cnosdb() {
    let d = |s: &str| parse_duration(s).expect(s);
    assert_eq!(format_duration(d("10d")), "10days");
    assert_eq!(format_duration(d("100d")), "3months 8days 16h 19m 12s");
    assert_eq!(format_duration(d("2y1M")), "2years 1month");
    assert_eq!(format_duration(d("1M")), "1month");
    assert_eq!(format_duration(crate::catalog::YEAR), "1year");
    assert_eq!(format_duration(d("90m")), "1h 30m");
    assert_eq!(format_duration(Duration::ZERO), "0s");
    assert!(parse_duration("").is_err());
    assert!(parse_duration("d").is_err());
    assert!(parse_duration("99999999999999999999999y").is_err());
    assert_eq!(format_size(parse_size("128MiB").expect("size")), "128 MiB");
    assert_eq!(
        format_size(parse_size("300M").expect("size")),
        "286.102294921875 MiB"
    );
    assert!(parse_size("12 parsecs").is_err());
}

#[test]
fn insert_rows_become_typed_line_protocol() {
    let mut c = Catalog::bootstrap(1);
    let table = new_table(
        "cnosdb",
        "public",
        "air",
        &[
            ColumnDef {
                name: "v".into(),
                ty: SqlType::Field(FieldType::Float),
                codec: None,
            },
            ColumnDef {
                name: "n".into(),
                ty: SqlType::Field(FieldType::Unsigned),
                codec: None,
            },
            ColumnDef {
                name: "s".into(),
                ty: SqlType::Field(FieldType::String),
                codec: None,
            },
        ],
        &["station".into()],
    )
    .expect("table");
    c = c
        .change(&CatalogChange::CreateTable {
            tenant: DEFAULT_TENANT.into(),
            database: DEFAULT_DATABASE.into(),
            table,
            if_not_exists: false,
        })
        .expect("creates")
        .expect("changed");
    let t = &c.database("cnosdb", "public").expect("db").tables["air"];
    let cols: Vec<String> = ["time", "station", "v", "n", "s"].map(String::from).into();
    let lp = insert::to_line_protocol(
        t,
        Precision::Millis,
        &cols,
        &[
            vec![
                Literal::Str("1970-01-01T00:00:01Z".into()),
                Literal::Str("a b,c".into()),
                Literal::Int(2),
                Literal::Int(3),
                Literal::Str("q\"\\".into()),
            ],
            vec![
                Literal::Int(7),
                Literal::Null,
                Literal::Float(0.1),
                Literal::Null,
                Literal::Null,
            ],
        ],
    )
    .expect("converts");
    assert_eq!(
        lp,
        "air,station=a\\ b\\,c v=2.0,n=3u,s=\"q\\\"\\\\\" 1000\nair v=0.1 7\n"
    );
    let e = |row: Vec<Literal>| {
        insert::to_line_protocol(t, Precision::Nanos, &cols, &[row])
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        e(vec![
            Literal::Int(1),
            Literal::Null,
            Literal::Int(1),
            Literal::Int(-1234),
            Literal::Null
        ]),
        "Arrow: Cast error: Can't cast value -1234 to type UInt64"
    );
    assert_eq!(
        e(vec![
            Literal::Int(1),
            Literal::Null,
            Literal::Str("failed".into()),
            Literal::Null,
            Literal::Null
        ]),
        "Arrow: Cast error: Cannot cast string 'failed' to value of Float64 type"
    );
    assert!(e(vec![
        Literal::Float(0.1),
        Literal::Null,
        Literal::Int(1),
        Literal::Null,
        Literal::Null
    ])
    .contains("Unsupported CAST from Float64 to Timestamp(Nanosecond, None)"));
    assert!(e(vec![Literal::Int(1)]).contains("not match"));
    let missing = insert::to_line_protocol(
        t,
        Precision::Nanos,
        &["nope".into()],
        &[vec![Literal::Int(1)]],
    )
    .unwrap_err();
    assert!(
        matches!(missing, QueryError::MissingColumn { .. }),
        "{missing}"
    );
}

#[test]
fn drop_and_delete() {
    assert_eq!(
        ok("DROP DATABASE IF EXISTS d"),
        Statement::DropDatabase {
            name: "d".into(),
            if_exists: true
        }
    );
    assert_eq!(
        ok("drop table db.t"),
        Statement::DropTable {
            table: TableRef {
                database: Some("db".into()),
                table: "t".into()
            },
            if_exists: false
        }
    );
    let Statement::Delete { table, conditions } = ok(
        "DELETE FROM t WHERE host IN ('a', 'b') AND time >= '2020-01-01T00:00:00Z' AND time < 5",
    ) else {
        panic!("a delete")
    };
    assert_eq!(table.table, "t");
    assert_eq!(
        conditions,
        vec![
            DeleteCondition::TagIn {
                column: "host".into(),
                values: vec!["a".into(), "b".into()]
            },
            DeleteCondition::Compare {
                column: "time".into(),
                op: ">=".into(),
                value: Literal::Str("2020-01-01T00:00:00Z".into())
            },
            DeleteCondition::Compare {
                column: "time".into(),
                op: "<".into(),
                value: Literal::Int(5)
            },
        ]
    );
    assert_eq!(
        ok("delete from t"),
        Statement::Delete {
            table: TableRef {
                database: None,
                table: "t".into()
            },
            conditions: vec![]
        }
    );
    for bad in [
        "DELETE t",
        "DELETE FROM t WHERE",
        "DELETE FROM t WHERE host IN ()",
        "DELETE FROM t WHERE host IN (1)",
        "DELETE FROM t WHERE host LIKE 'a'",
        "DELETE FROM t WHERE time > ",
        "DROP TABLE IF t",
    ] {
        assert!(!err(bad).is_empty(), "{bad}");
    }
}
