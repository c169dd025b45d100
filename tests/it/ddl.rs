//! CnosDB's catalog statements and INSERT through `/api/v1/sql` against the real server:
//! exact answer bytes, `IF NOT EXISTS`, error statuses and codes, a millisecond database, the
//! catalog surviving a restart, INSERT rows landing on both shards, and line protocol written
//! into a table that SQL created.

use crate::common::{metric_sum, request, write, Resp, Server, ROOT_AUTH};

fn sql_as(server: &Server, query: &str, accept: Option<&str>, body: &str) -> Resp {
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let raw = format!(
        "POST /api/v1/sql?{query} HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\n{accept}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    request(server, raw.as_bytes())
}

/// CSV answer of a statement on the default database.
fn sql(server: &Server, body: &str) -> Resp {
    sql_as(server, "", None, body)
}

/// A DDL statement that must succeed: 200 with an empty body.
fn ddl(server: &Server, body: &str) {
    let r = sql(server, body);
    assert_eq!(r.status, 200, "{body}: {}", r.text());
    assert_eq!(r.text(), "", "{body}");
    assert_eq!(r.header("content-type"), Some("text/csv"));
}

/// A statement that must fail with 422 and exactly this error code.
fn fails(server: &Server, query: &str, body: &str, code: &str) -> String {
    let r = sql_as(server, query, None, body);
    r.assert_error(422);
    let text = r.text();
    assert!(
        text.starts_with(&format!("{{\"error_code\":\"{code}\"")),
        "{body}: {text}"
    );
    text
}

const DESCRIBE_HEADER: &str = "ttl,shard,vnode_duration,replica,precision,max_memcache_size,memcache_partitions,wal_max_file_size,wal_sync,strict_write,max_cache_readers\n";

#[test]
fn databases_are_created_altered_described_listed_and_persisted() {
    let s = Server::start("", 1);
    assert_eq!(sql(&s, "SHOW DATABASES").text(), "database_name\npublic\n");
    assert_eq!(
        sql(&s, "DESCRIBE DATABASE public").text(),
        format!("{DESCRIBE_HEADER}INF,1,1year,1,NS,128 MiB,16,128 MiB,false,false,32\n")
    );
    ddl(&s, "CREATE DATABASE IF NOT EXISTS db1 WITH TTl '10d' SHARD 5 VNOdE_DURATiON '3d' REPLICA 1 pRECISIOn 'us'");
    let exists = fails(&s, "", "CREATE DATABASE db1", "030018");
    assert_eq!(
        exists,
        r#"{"error_code":"030018","error_message":"Database \"db1\" already exists"}"#
    );
    ddl(&s, "create database if not exists db1");
    assert_eq!(
        sql(&s, "DESCRIBE DATABASE db1;").text(),
        format!("{DESCRIBE_HEADER}10days,5,3days,1,US,128 MiB,16,128 MiB,false,false,32\n")
    );
    ddl(&s, "ALTER DATABASE db1 Set TTL '30d'");
    ddl(&s, "ALTER DATABASE db1 SET VNODE_DURATION '100d'");
    let json = sql_as(&s, "", Some("application/json"), "DESCRIBE DATABASE db1");
    assert_eq!(
        json.text(),
        r#"[{"ttl":"30days","shard":5,"vnode_duration":"3months 8days 16h 19m 12s","replica":1,"precision":"US","max_memcache_size":"128 MiB","memcache_partitions":16,"wal_max_file_size":"128 MiB","wal_sync":false,"strict_write":false,"max_cache_readers":32}]"#
    );
    assert_eq!(
        fails(&s, "", "ALTER DATABASE db1 SET PRECISION 'ms'", "010009"),
        r#"{"error_code":"010009","error_message":"sql parser error: database config is unmodifiable, only can modify database option: TTL, SHARD, VNODE_DURATION, REPLICA"}"#
    );
    fails(&s, "", "ALTER DATABASE db1 SET TTL '1d' SHARD 2", "010009");
    fails(&s, "", "CREATE DATABASE d2 WITH SHARD 0", "010009");
    fails(
        &s,
        "",
        "CREATE DATABASE d2 WITH TTL '1d', SHARD 2",
        "010009",
    );
    fails(&s, "", "CREATE DATABASE d2 WITH PRECISION 'S'", "010009");
    assert_eq!(
        fails(&s, "", "ALTER DATABASE nope SET TTL '1d'", "030017"),
        r#"{"error_code":"030017","error_message":"Database not found: \"nope\""}"#
    );
    fails(&s, "", "DESCRIBE DATABASE nope", "030017");
    ddl(&s, "CREATE DATABASE \"Db2\"");
    assert_eq!(
        sql(&s, "SHOW DATABASES").text(),
        "database_name\nDb2\ndb1\npublic\n"
    );
    let json = sql_as(&s, "", Some("application/json"), "show databases");
    assert_eq!(
        json.text(),
        r#"[{"database_name":"Db2"},{"database_name":"db1"},{"database_name":"public"}]"#
    );
    ddl(&s, "CREATE TABLE db1.t (f DOUBLE, TAGS(k))");

    // Every change above was persisted before its 200: a kill -9 loses none of them.
    let s = s.restart();
    assert_eq!(
        sql(&s, "DESCRIBE DATABASE db1").text(),
        format!("{DESCRIBE_HEADER}30days,5,3months 8days 16h 19m 12s,1,US,128 MiB,16,128 MiB,false,false,32\n")
    );
    assert_eq!(sql(&s, "SHOW TABLES ON db1").text(), "table_name\nt\n");
    assert_eq!(
        sql_as(&s, "db=db1", None, "DESCRIBE TABLE t").text(),
        "column_name,data_type,column_type,compression_codec\ntime,TIMESTAMP(MICROSECOND),TIME,DEFAULT\nk,STRING,TAG,DEFAULT\nf,DOUBLE,FIELD,DEFAULT\n"
    );
}

#[test]
fn tables_are_created_altered_described_and_take_line_protocol() {
    let s = Server::start("", 1);
    assert_eq!(sql(&s, "SHOW TABLES").text(), "table_name\n");
    ddl(&s, "CREATE TABLE air (visibility DOUBLE CODEC(GORILLA), temperature DOUBLE, pressure BIGINT UNSIGNED CODEC(delta), TAGS(station, region))");
    assert_eq!(
        fails(&s, "", "CREATE TABLE air (v DOUBLE)", "030020"),
        r#"{"error_code":"030020","error_message":"Table air already exists."}"#
    );
    ddl(&s, "CREATE TABLE IF NOT EXISTS air (v DOUBLE)");
    assert_eq!(
        sql(&s, "DESCRIBE TABLE air").text(),
        "column_name,data_type,column_type,compression_codec\n\
         time,TIMESTAMP(NANOSECOND),TIME,DEFAULT\n\
         station,STRING,TAG,DEFAULT\n\
         region,STRING,TAG,DEFAULT\n\
         visibility,DOUBLE,FIELD,GORILLA\n\
         temperature,DOUBLE,FIELD,DEFAULT\n\
         pressure,BIGINT UNSIGNED,FIELD,DELTA\n"
    );
    ddl(&s, "ALTER TABLE air ADD FIELD humidity BIGINT CODEC(DELTA)");
    ddl(&s, "ALTER TABLE air ADD TAG zone");
    ddl(&s, "ALTER TABLE air ALTER visibility SET CODEC(QUANTILE)");
    let json = sql_as(&s, "", Some("application/json"), "DESCRIBE TABLE air");
    assert!(
        json.text().starts_with(r#"[{"column_name":"time","data_type":"TIMESTAMP(NANOSECOND)","column_type":"TIME","compression_codec":"DEFAULT"},{"column_name":"station""#),
        "{}",
        json.text()
    );
    assert!(json.text().contains(r#"{"column_name":"zone","data_type":"STRING","column_type":"TAG","compression_codec":"DEFAULT"}"#));
    assert!(json.text().contains(r#"{"column_name":"visibility","data_type":"DOUBLE","column_type":"FIELD","compression_codec":"QUANTILE"}"#));
    assert_eq!(
        fails(&s, "", "ALTER TABLE air ADD TAG station", "010028"),
        r#"{"error_code":"010028","error_message":"Semantic error:  column station already exists in table air"}"#
    );
    fails(
        &s,
        "",
        "ALTER TABLE air ALTER station SET CODEC(ZSTD)",
        "010034",
    );
    fails(
        &s,
        "",
        "ALTER TABLE air ALTER time SET CODEC(DELTA)",
        "010035",
    );
    fails(
        &s,
        "",
        "ALTER TABLE air ALTER nope SET CODEC(DELTA)",
        "010029",
    );
    fails(
        &s,
        "",
        "ALTER TABLE air ADD FIELD x DOUBLE CODEC(DELTA)",
        "010042",
    );
    fails(&s, "", "ALTER TABLE nope ADD TAG x", "030019");
    fails(&s, "", "CREATE TABLE t2 (column4 BOOLE)", "010041");
    fails(&s, "", "CREATE TABLE t2 (a BIGINT, a DOUBLE)", "010027");
    fails(
        &s,
        "",
        "CREATE TABLE t2 (column0 TIMESTAMP, a DOUBLE)",
        "010028",
    );
    fails(&s, "", "CREATE TABLE t2 (a BIGINT,)", "010009");
    fails(&s, "", "CREATE TABLE t2 (TAGS(a))", "010032");
    fails(&s, "db=nope", "CREATE TABLE t2 (a BIGINT)", "030017");
    fails(&s, "", "CREATE TABLE nope.t2 (a BIGINT)", "030017");
    assert_eq!(sql(&s, "SHOW TABLES").text(), "table_name\nair\n");

    // Not implemented yet: a clear 422, nothing changes.
    for stmt in [
        "ALTER TABLE air RENAME COLUMN humidity TO h",
        "CREATE TENANT t",
        "CREATE USER u",
    ] {
        fails(&s, "", stmt, "010005");
    }
    fails(&s, "", "CREATE DATABASE a; CREATE DATABASE b", "010013");
    assert_eq!(sql(&s, "SHOW DATABASES").text(), "database_name\npublic\n");

    // Line protocol into the SQL-created table: columns keep their declared types.
    let lp = "air,station=s1 visibility=1.5,pressure=3u 1000\nair,station=s2,zone=z temperature=2,humidity=4i 2000";
    assert_eq!(write(&s, "", lp).status, 200);
    assert_eq!(
        sql(&s, "SELECT * FROM air ORDER BY time").text(),
        "time,station,region,zone,visibility,temperature,pressure,humidity\n\
         1970-01-01T00:00:00.000001000,s1,,,1.5,,3,\n\
         1970-01-01T00:00:00.000002000,s2,,z,,2.0,,4\n"
    );
    let conflict = write(&s, "", "air,station=s1 pressure=1.5 3000");
    conflict.assert_error(422);
    assert!(
        conflict.text().contains("\"020004\""),
        "{}",
        conflict.text()
    );
}

#[test]
fn ms_database_takes_line_protocol_and_insert_spreads_over_shards() {
    let s = Server::start("", 2);
    ddl(&s, "CREATE DATABASE msdb WITH PRECISION 'MS'");
    let w = write(&s, "db=msdb&precision=ms", "cpu,host=a v=1 1644125400001");
    assert_eq!(w.status, 200, "{}", w.text());
    let select = "SELECT time, host, v FROM cpu ORDER BY time";
    assert_eq!(
        sql_as(&s, "db=msdb", None, select).text(),
        "time,host,v\n2022-02-06T05:30:00.001000000,a,1.0\n"
    );
    assert_eq!(
        sql_as(&s, "db=msdb", None, "DESCRIBE TABLE cpu").text(),
        "column_name,data_type,column_type,compression_codec\ntime,TIMESTAMP(MILLISECOND),TIME,DEFAULT\nhost,STRING,TAG,DEFAULT\nv,DOUBLE,FIELD,DEFAULT\n"
    );
    // INSERT: an RFC 3339 time, and an integer in the database's unit (ms).
    let r = sql_as(
        &s,
        "db=msdb",
        None,
        "INSERT INTO cpu (time, host, v) VALUES ('2022-02-06T05:30:00.002Z', 'b', 2), (1644125400003, 'c', 3)",
    );
    assert_eq!(r.text(), "rows\n2\n");
    assert_eq!(
        sql_as(&s, "db=msdb", None, select).text(),
        "time,host,v\n2022-02-06T05:30:00.001000000,a,1.0\n2022-02-06T05:30:00.002000000,b,2.0\n2022-02-06T05:30:00.003000000,c,3.0\n"
    );

    ddl(
        &s,
        "CREATE TABLE m (v BIGINT, n BIGINT UNSIGNED, s STRING, ok BOOLEAN, TAGS(host))",
    );
    let values: Vec<String> = (0..20)
        .map(|i| format!("({i}, 'h{i:02}', {i}, 's{i}')"))
        .collect();
    let insert = format!(
        "INSERT INTO m (TIME, host, v, s) VALUES {}",
        values.join(", ")
    );
    let r = sql(&s, &insert);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "rows\n20\n");
    for shard in 0..2 {
        let rows = metric_sum(
            &s,
            &format!("chronoshard_memtable_rows{{shard=\"{shard}\"}}"),
        );
        assert!(rows > 0, "shard {shard} got none of the 20 series");
    }
    assert_eq!(sql(&s, "SELECT count(*) AS c FROM m").text(), "c\n20\n");
    assert_eq!(
        sql(
            &s,
            "SELECT time, host, v, n, s, ok FROM m WHERE host = 'h03'"
        )
        .text(),
        "time,host,v,n,s,ok\n1970-01-01T00:00:00.000000003,h03,3,,s3,\n"
    );
    // Without a column list: every column in SELECT * order; NULL tags and fields stay absent.
    let r = sql_as(
        &s,
        "",
        Some("application/json"),
        "INSERT INTO m VALUES (100, NULL, -1, 7, 'x', true)",
    );
    assert_eq!(r.text(), r#"[{"rows":1}]"#);
    assert_eq!(
        sql(&s, "SELECT * FROM m WHERE v = -1").text(),
        "time,host,v,n,s,ok\n1970-01-01T00:00:00.000000100,,-1,7,x,true\n"
    );
    let e = fails(&s, "", "INSERT INTO m (time, nope) VALUES (1, 2)", "010044");
    assert!(e.contains("Insert column 'nope' does not exist"), "{e}");
    assert_eq!(
        fails(
            &s,
            "",
            "INSERT INTO m (time, n) VALUES (1, -1234)",
            "010002"
        ),
        r#"{"error_code":"010002","error_message":"Arrow: Cast error: Can't cast value -1234 to type UInt64"}"#
    );
    fails(&s, "", "INSERT INTO m (time, v) VALUES (1, 2, 3)", "010045");
    fails(&s, "", "INSERT INTO m (time, v) VALUES (0.1, 2)", "010001");
    fails(&s, "", "INSERT INTO nope (time, v) VALUES (1, 2)", "030019");
    fails(&s, "", "INSERT INTO m SELECT * FROM m", "010005");
    assert_eq!(sql(&s, "SELECT count(*) AS c FROM m").text(), "c\n21\n");
}

#[test]
fn show_series_and_tag_values_answer_from_the_data() {
    // Keys hold commas, so CSV quotes them (RFC 4180, as CnosDB's writer does).
    let s = Server::start("", 2);
    let lp = "air,station=a,region=n t=1 1\nair,station=b,region=s t=2 2\nair,station=b t=3 3\nair,station=a,region=n t=4 4";
    assert_eq!(write(&s, "", lp).status, 200);
    assert_eq!(
        sql(&s, "SHOW SERIES FROM air").text(),
        "key\n\"air,region=n,station=a\"\n\"air,region=s,station=b\"\n\"air,station=b\"\n"
    );
    assert_eq!(
        sql(
            &s,
            "SHOW SERIES ON public FROM air WHERE station = 'b' ORDER BY key DESC LIMIT 1"
        )
        .text(),
        "key\n\"air,station=b\"\n"
    );
    assert_eq!(
        sql(
            &s,
            "SHOW SERIES FROM air WHERE time >= '1970-01-01T00:00:00.000000002' ORDER BY key LIMIT 1 OFFSET 1"
        )
        .text(),
        "key\n\"air,region=s,station=b\"\n"
    );
    let json = sql_as(
        &s,
        "",
        Some("application/json"),
        "SHOW SERIES FROM air WHERE region = 'n'",
    );
    assert_eq!(json.text(), r#"[{"key":"air,region=n,station=a"}]"#);
    assert_eq!(
        fails(&s, "", "SHOW SERIES FROM air WHERE t > 1", "010046"),
        r#"{"error_code":"010046","error_message":"Semantic error: SHOW SERIES does not support where clause contains field t"}"#
    );
    fails(&s, "", "SHOW SERIES FROM nope", "030019");
    assert_eq!(write(&s, "", "plain v=1 1\nplain v=2 2").status, 200);
    assert_eq!(sql(&s, "SHOW SERIES FROM plain").text(), "key\nplain\n");
    ddl(&s, "CREATE TABLE empty (v DOUBLE, TAGS(k))");
    assert_eq!(sql(&s, "SHOW SERIES FROM empty").text(), "key\n");

    assert_eq!(
        sql(&s, "SHOW TAG VALUES FROM air WITH KEY = station").text(),
        "key,value\nstation,a\nstation,b\n"
    );
    let json = sql_as(
        &s,
        "",
        Some("application/json"),
        "SHOW TAG VALUES FROM air WITH KEY = \"station\"",
    );
    assert_eq!(
        json.text(),
        r#"[{"key":"station","value":"a"},{"key":"station","value":"b"}]"#
    );
    assert_eq!(
        sql(&s, "SHOW TAG VALUES FROM air WITH KEY IN (station, region)").text(),
        "key,value\nregion,n\nregion,s\nstation,a\nstation,b\n"
    );
    assert_eq!(
        sql(
            &s,
            "SHOW TAG VALUES FROM air WITH KEY != station WHERE station = 'a'"
        )
        .text(),
        "key,value\nregion,n\n"
    );
    assert_eq!(
        sql(
            &s,
            "SHOW TAG VALUES FROM air WITH KEY NOT IN (region) ORDER BY value DESC LIMIT 1"
        )
        .text(),
        "key,value\nstation,b\n"
    );
    assert_eq!(
        sql(&s, "SHOW TAG VALUES FROM air WITH KEY = nokey").text(),
        "key,value\n"
    );
    fails(
        &s,
        "",
        "SHOW TAG VALUES FROM air WITH KEY = station WHERE t = 1",
        "010046",
    );
    fails(&s, "", "SHOW TAG VALUES FROM nope WITH KEY = a", "030019");
}

/// `SELECT host, count(*)` per host of `t`, as CSV lines sorted by host.
fn counts(s: &Server, t: &str) -> String {
    let r = sql(
        s,
        &format!("SELECT host, count(*) AS n FROM {t} GROUP BY host ORDER BY host"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn delete_and_drop_remove_data_on_every_shard_and_stay_removed_after_restart() {
    let s = Server::start("", 2);
    // 8 hosts (spread over both shards) x 10 points at t = 0..9 s, plus a second table.
    let mut lines = String::new();
    for h in 0..8 {
        for t in 0..10 {
            lines.push_str(&format!(
                "cpu,host=h{h},dc=d{} v={t}i {t}000000000\n",
                h % 2
            ));
        }
    }
    lines.push_str("mem,host=h0 free=1i 1\n");
    assert_eq!(write(&s, "db=public", &lines).status, 200);
    let all: String = (0..8).map(|h| format!("h{h},10\n")).collect();
    assert_eq!(counts(&s, "cpu"), format!("host,n\n{all}"));

    // Tags AND time: h1 and h2 lose t >= 5 s (5 points each); h3 loses t in [2 s, 4 s).
    ddl(
        &s,
        "DELETE FROM cpu WHERE host IN ('h1', 'h2') AND time >= '1970-01-01T00:00:05Z'",
    );
    ddl(
        &s,
        "delete from cpu where host = 'h3' and time >= 2000000000 and time < 4000000000",
    );
    // A tag condition on another tag, intersected: dc=d0 hosts among h4,h5 = h4 loses all.
    ddl(
        &s,
        "DELETE FROM cpu WHERE dc = 'd0' AND host IN ('h4', 'h5')",
    );
    let expected = "host,n\nh0,10\nh1,5\nh2,5\nh3,8\nh5,10\nh6,10\nh7,10\n";
    assert_eq!(counts(&s, "cpu"), expected);
    // Fields cannot be filtered on; unknown columns and OR are refused; nothing changes.
    fails(&s, "", "DELETE FROM cpu WHERE v = 1", "010005");
    fails(&s, "", "DELETE FROM cpu WHERE nope = 'x'", "010003");
    fails(
        &s,
        "",
        "DELETE FROM cpu WHERE host = 'h0' OR host = 'h1'",
        "010005",
    );
    fails(&s, "", "DELETE FROM nope", "030019");
    assert_eq!(counts(&s, "cpu"), expected);

    // DROP TABLE: gone from the catalog and the data; a new table of that name starts empty.
    ddl(&s, "DROP TABLE mem");
    fails(&s, "", "SELECT * FROM mem", "010001");
    fails(&s, "", "DROP TABLE mem", "030019");
    ddl(&s, "DROP TABLE IF EXISTS mem");
    assert_eq!(write(&s, "db=public", "mem,host=h9 free=2.5 7").status, 200);
    assert_eq!(
        sql(&s, "SELECT host, free FROM mem").text(),
        "host,free\nh9,2.5\n"
    );

    // DROP DATABASE on a second database, then the same name again: empty.
    ddl(&s, "CREATE DATABASE other");
    assert_eq!(write(&s, "db=other", "x,host=a v=1i 1").status, 200);
    ddl(&s, "DROP DATABASE other");
    fails(&s, "", "DROP DATABASE other", "030017");
    ddl(&s, "DROP DATABASE IF EXISTS other");
    ddl(&s, "CREATE DATABASE other");
    assert_eq!(write(&s, "db=other", "x,host=b v=2i 2").status, 200);

    // The WAL replays deletes in order with the writes: nothing deleted comes back.
    let s = s.restart();
    assert_eq!(counts(&s, "cpu"), expected);
    assert_eq!(
        sql(&s, "SELECT host, free FROM mem").text(),
        "host,free\nh9,2.5\n"
    );
    assert_eq!(
        sql_as(&s, "db=other", None, "SELECT host, v FROM x").text(),
        "host,v\nb,2\n"
    );
}

/// `SELECT *` of `air`, ordered.
fn air_rows(s: &Server) -> String {
    let r = sql(s, "SELECT * FROM air ORDER BY time, station");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn alter_table_drop_hides_a_field_and_retires_its_name() {
    let s = Server::start("", 2);
    ddl(
        &s,
        "CREATE TABLE air (visibility DOUBLE, temperature DOUBLE, humidity BIGINT, TAGS(station))",
    );
    // Eight stations, so both shards hold rows of the table.
    let lp: String = (1..=8)
        .map(|i| {
            format!("air,station=s{i} visibility={i}.5,temperature={i}0.0,humidity={i}i {i}\n")
        })
        .collect();
    assert_eq!(write(&s, "", &lp).status, 200);
    for shard in ["0", "1"] {
        let rows = metric_sum(
            &s,
            &format!("chronoshard_memtable_rows{{shard=\"{shard}\"}}"),
        );
        assert!(rows > 0, "shard {shard} holds none of the rows");
    }
    ddl(&s, "ALTER TABLE air DROP humidity");
    assert_eq!(
        sql(&s, "DESCRIBE TABLE air").text(),
        "column_name,data_type,column_type,compression_codec\n\
         time,TIMESTAMP(NANOSECOND),TIME,DEFAULT\n\
         station,STRING,TAG,DEFAULT\n\
         visibility,DOUBLE,FIELD,DEFAULT\n\
         temperature,DOUBLE,FIELD,DEFAULT\n"
    );
    let expected: String = std::iter::once("time,station,visibility,temperature\n".to_string())
        .chain((1..=8).map(|i| format!("1970-01-01T00:00:00.00000000{i},s{i},{i}.5,{i}0.0\n")))
        .collect();
    assert_eq!(air_rows(&s), expected);
    fails(&s, "", "SELECT humidity FROM air", "010001");

    // CnosDB's refusals; nothing changes.
    let tag = fails(&s, "", "ALTER TABLE air DROP station", "010030");
    assert!(tag.contains("Can't drop tag column station."), "{tag}");
    let time = fails(&s, "", "ALTER TABLE air DROP time", "010031");
    assert!(time.contains("Can't drop column time."), "{time}");
    let unknown = fails(&s, "", "ALTER TABLE air DROP nope", "010029");
    assert!(
        unknown.contains("Column nope not exists in table air"),
        "{unknown}"
    );
    fails(&s, "", "ALTER TABLE nope DROP visibility", "030019");
    ddl(&s, "ALTER TABLE air DROP visibility");
    fails(&s, "", "ALTER TABLE air DROP temperature", "010032");

    // The dropped names are retired while their old values are held: re-adding them with any
    // type, or writing them, is refused and says why; other writes go on.
    for stmt in [
        "ALTER TABLE air ADD FIELD humidity BIGINT",
        "ALTER TABLE air ADD FIELD humidity STRING",
        "ALTER TABLE air ADD TAG humidity",
    ] {
        let why = fails(&s, "", stmt, "010047");
        assert!(why.contains("humidity of table air was dropped"), "{why}");
    }
    let refused = write(&s, "", "air,station=s9 temperature=1.0,humidity=\"x\" 9");
    refused.assert_error(422);
    assert!(refused.text().contains("\"010047\""), "{}", refused.text());
    assert_eq!(
        write(&s, "", "air,station=s9 temperature=90.0 9").status,
        200
    );
    let expected: String = std::iter::once("time,station,temperature\n".to_string())
        .chain((1..=9).map(|i| format!("1970-01-01T00:00:00.00000000{i},s{i},{i}0.0\n")))
        .collect();
    assert_eq!(air_rows(&s), expected);

    // The WAL replays the old values into the memtable under the dropped names: the catalog
    // still hides them and still refuses the names.
    let s = s.restart();
    assert_eq!(air_rows(&s), expected);
    fails(
        &s,
        "",
        "ALTER TABLE air ADD FIELD visibility DOUBLE",
        "010047",
    );

    // Dropping the table frees the names.
    ddl(&s, "DROP TABLE air");
    assert_eq!(
        write(&s, "", "air,station=s1 humidity=\"wet\",visibility=2i 1").status,
        200
    );
    assert_eq!(
        sql(&s, "SELECT station, humidity, visibility FROM air").text(),
        "station,humidity,visibility\ns1,wet,2\n"
    );
}
