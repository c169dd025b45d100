//! `/api/v1/sql` against the real server: the worked example of the CnosDB reference in every
//! format, aggregates over series spread across shards, and the error statuses.

use crate::common::{request, write, Resp, Server, ROOT_AUTH};

pub fn sql(server: &Server, query: &str, accept: Option<&str>, body: &str) -> Resp {
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let raw = format!(
        "POST /api/v1/sql?{query} HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\n{accept}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    request(server, raw.as_bytes())
}

fn air(server: &Server) {
    let lines = "air,station=XiaoMaiDao temperature=56 1644125400000000000\n\
                 air,station=LianYunGang temperature=69.5 1644125460000000000";
    assert_eq!(write(server, "db=public", lines).status, 200);
}

const SELECT: &str = "SELECT time, station, temperature FROM air ORDER BY time";

#[test]
fn worked_example_in_every_format() {
    let s = Server::start("", 2);
    air(&s);
    let csv = sql(&s, "db=public", None, SELECT);
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert_eq!(csv.header("content-type"), Some("text/csv"));
    assert_eq!(
        csv.text(),
        "time,station,temperature\n2022-02-06T05:30:00.000000000,XiaoMaiDao,56.0\n2022-02-06T05:31:00.000000000,LianYunGang,69.5\n"
    );
    let json = sql(&s, "db=public", Some("application/json"), SELECT);
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(
        json.text(),
        r#"[{"time":"2022-02-06T05:30:00","station":"XiaoMaiDao","temperature":56.0},{"time":"2022-02-06T05:31:00","station":"LianYunGang","temperature":69.5}]"#
    );
    let nd = sql(&s, "db=public", Some("application/nd-json"), SELECT);
    assert_eq!(
        nd.text(),
        "{\"time\":\"2022-02-06T05:30:00\",\"station\":\"XiaoMaiDao\",\"temperature\":56.0}\n{\"time\":\"2022-02-06T05:31:00\",\"station\":\"LianYunGang\",\"temperature\":69.5}\n"
    );
    let tsv = sql(&s, "db=public", Some("text/tsv"), SELECT);
    assert!(
        tsv.text().starts_with(
            "time\tstation\ttemperature\n2022-02-06T05:30:00.000000000\tXiaoMaiDao\t56.0\n"
        ),
        "{}",
        tsv.text()
    );
    let table = sql(&s, "db=public", Some("text/table"), SELECT);
    assert!(table.text().starts_with("+-"), "{}", table.text());
    assert!(table.text().contains("| XiaoMaiDao "), "{}", table.text());
}

#[test]
fn select_star_orders_time_tags_fields_and_empty_results_keep_the_header() {
    let s = Server::start("", 2);
    assert_eq!(write(&s, "", "m,b=2,a=1 y=1i,x=2.5 10").status, 200);
    let r = sql(&s, "", None, "SELECT * FROM m");
    assert_eq!(
        r.text(),
        "time,a,b,x,y\n1970-01-01T00:00:00.000000010,1,2,2.5,1\n"
    );
    let empty = sql(
        &s,
        "",
        None,
        "SELECT * FROM m WHERE time > '1970-01-01T00:00:00.000000100'",
    );
    assert_eq!(empty.text(), "time,a,b,x,y\n");
    let one = sql(&s, "", None, "select 1");
    assert_eq!(one.text(), "Int64(1)\n1\n");
}

#[test]
fn aggregates_over_series_on_every_shard_are_exact() {
    let s = Server::start("", 2);
    let mut body = String::new();
    for host in 0..200 {
        for t in 0..10 {
            body.push_str(&format!("cpu,host=h{host} v={}i {t}\n", host * 10 + t));
        }
    }
    assert_eq!(write(&s, "", &body).status, 200);
    let r = sql(
        &s,
        "",
        None,
        "SELECT count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi FROM cpu",
    );
    // sum over host 0..200, t 0..10 of host*10+t = 10*10*sum(host) + 200*sum(t)
    let sum: i64 = (0..200i64)
        .map(|h| (0..10).map(|t| h * 10 + t).sum::<i64>())
        .sum();
    assert_eq!(r.text(), format!("n,s,lo,hi\n2000,{sum},0,1999\n"));
    let per_host = sql(
        &s,
        "",
        None,
        "SELECT host, count(*) AS n FROM cpu GROUP BY host ORDER BY host LIMIT 2",
    );
    assert_eq!(per_host.text(), "host,n\nh0,10\nh1,10\n");
    let rewritten = write(&s, "", "cpu,host=h0 v=-5i 3");
    assert_eq!(rewritten.status, 200);
    let r = sql(
        &s,
        "",
        None,
        "SELECT v FROM cpu WHERE host = 'h0' AND time = '1970-01-01T00:00:00.000000003'",
    );
    assert_eq!(r.text(), "v\n-5\n", "the later write of a point wins");
}

#[test]
fn errors_have_the_right_status_and_code() {
    let s = Server::start("", 1);
    air(&s);
    let check = |r: Resp, status: u16, code: &str| {
        r.assert_error(status);
        assert!(r.text().contains(code), "{}: {}", code, r.text());
    };
    check(sql(&s, "", None, "SELEC 1"), 422, "010009");
    check(sql(&s, "", None, "select 1; select 2"), 422, "010013");
    check(sql(&s, "", None, "select * from nope"), 422, "010001");
    check(sql(&s, "", Some("text/plain"), "select 1"), 400, "040005");
    check(sql(&s, "chunked=yes", None, "select 1"), 400, "040003");
    check(sql(&s, "db=nope", None, "select 1"), 422, "030017");
    // DDL DataFusion would run itself stays refused (CnosDB's DDL is `query::ddl`'s).
    check(
        sql(&s, "", None, "create view v as select 1"),
        422,
        "010001",
    );
    let empty = sql(&s, "", None, "");
    assert_eq!(empty.status, 200);
    assert!(empty.body.is_empty());
    let unauth = request(
        &s,
        b"POST /api/v1/sql HTTP/1.1\r\nContent-Length: 8\r\n\r\nselect 1",
    );
    unauth.assert_error(401);
}

#[test]
fn pushed_down_filters_keep_exactly_the_matching_rows() {
    let s = Server::start("", 2);
    let mut body = String::new();
    for host in 0..20 {
        for t in 1..=10 {
            body.push_str(&format!(
                "f,host=h{host},dc=d{} v={t}i {t}000000\n",
                host % 3
            ));
        }
    }
    assert_eq!(write(&s, "", &body).status, 200);
    let count = |filter: &str| {
        let r = sql(
            &s,
            "",
            None,
            &format!("SELECT count(*) AS n FROM f WHERE {filter}"),
        );
        assert_eq!(r.status, 200, "{filter}: {}", r.text());
        r.text().lines().nth(1).unwrap_or_default().to_string()
    };
    let ms = |m: i64| format!("'1970-01-01T00:00:00.{m:03}'");
    assert_eq!(count(&format!("time > {}", ms(3))), "140");
    assert_eq!(count(&format!("time >= {}", ms(3))), "160");
    assert_eq!(count(&format!("time < {}", ms(3))), "40");
    assert_eq!(count(&format!("time <= {}", ms(3))), "60");
    assert_eq!(count(&format!("time = {}", ms(3))), "20");
    assert_eq!(
        count(&format!("{} < time AND time < {}", ms(2), ms(5))),
        "40"
    );
    assert_eq!(count("time > '1970-01-01T00:00:00.0030000005'"), "140");
    assert_eq!(count("host = 'h3'"), "10");
    assert_eq!(count("'h3' = host"), "10");
    assert_eq!(count("host IN ('h1', 'h2', 'nope')"), "20");
    assert_eq!(count("host NOT IN ('h1', 'h2')"), "180");
    assert_eq!(count("dc = 'd0' AND host IN ('h0', 'h1', 'h3')"), "20");
    assert_eq!(count(&format!("dc = 'd1' AND time >= {}", ms(9))), "14");
    assert_eq!(count("host = 'h1' OR v = 1"), "29");
    let limited = sql(&s, "", None, "SELECT host FROM f LIMIT 7");
    assert_eq!(limited.text().lines().count(), 8, "header and 7 rows");
}

#[test]
fn a_query_past_the_timeout_is_cancelled_with_500() {
    let s = Server::start("query_timeout_ms = 200\n", 2);
    let started = std::time::Instant::now();
    let r = sql(
        &s,
        "",
        None,
        "SELECT count(*) FROM generate_series(1, 5000000000)",
    );
    r.assert_error(500);
    assert!(r.text().contains("timed out"), "{}", r.text());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        sql(&s, "", None, "select 2").text(),
        "Int64(2)\n2\n",
        "the server goes on"
    );
}
