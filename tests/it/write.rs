//! `/api/v1/write` against the real server: statuses, all-or-nothing, routing, durability.

use std::time::Duration;

use crate::common::{metric_sum, request, write, Server, ROOT_AUTH};

const ROWS: &str = "chronoshard_memtable_rows{";

#[test]
fn write_is_200_with_empty_body_and_rows_land_on_both_shards() {
    let s = Server::start("", 2);
    let body: String = (0..200)
        .map(|i| format!("cpu,host=h{i} usage=1.5,n={i}i 1700000000000000000\n"))
        .collect();
    let r = write(&s, "db=public", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(metric_sum(&s, ROWS), 200);
    for shard in 0..2 {
        let n = metric_sum(
            &s,
            &format!("chronoshard_memtable_rows{{shard=\"{shard}\"}}"),
        );
        assert!(n > 50, "shard {shard} owns a fair share of 200 series: {n}");
    }
}

#[test]
fn rewrites_of_a_point_are_accepted() {
    // Merging equal (series, time) points is the memtable's (unit-tested there); the SQL issue
    // checks the merged values end to end. Here: both writes are accepted and counted.
    let s = Server::start("", 2);
    assert_eq!(write(&s, "", "m0,ta=ta f0=1,f1=true 2\n").status, 200);
    assert_eq!(
        write(&s, "", "m0,ta=ta f0=2 2\nm0,ta=ta f0=3 3").status,
        200
    );
    assert_eq!(metric_sum(&s, ROWS), 3);
}

#[test]
fn credentials_are_checked() {
    let s = Server::start("", 1);
    let line = "cpu v=1 1";
    let post = |auth: Option<&str>| {
        let header = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        request(
            &s,
            format!(
                "POST /api/v1/write HTTP/1.1\r\n{header}Content-Length: {}\r\n\r\n{line}",
                line.len()
            )
            .as_bytes(),
        )
    };
    for auth in [
        None,
        Some("Bearer abc"),
        Some("Basic !!!"),
        Some("Basic Ym9iOg=="),
    ] {
        let r = post(auth);
        r.assert_error(401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"chronoshard\"")
        );
    }
    assert_eq!(post(Some(ROOT_AUTH)).status, 200);
    // Auth disabled: any password of an existing user passes.
    assert_eq!(post(Some("Basic cm9vdDpzZWNyZXQ=")).status, 200);
}

#[test]
fn bad_parameters_and_unknown_names() {
    let s = Server::start("", 1);
    write(&s, "precision=h", "cpu v=1 1").assert_error(400);
    write(&s, "db=a&db=b", "cpu v=1 1").assert_error(400);
    write(&s, "db=%zz", "cpu v=1 1").assert_error(400);
    let r = write(&s, "db=nope", "cpu v=1 1");
    r.assert_error(422);
    assert!(r.text().contains("030017"), "{}", r.text());
    let r = write(&s, "tenant=nobody", "cpu v=1 1");
    r.assert_error(422);
    assert_eq!(write(&s, "precision=s", "").status, 200, "empty body");
}

#[test]
fn one_bad_line_writes_nothing_and_names_the_line() {
    let s = Server::start("", 2);
    let body = "cpu,host=a v=1 1\ncpu,host=b v=2 2\ncpu,host=c v=abc 3\n";
    let r = write(&s, "", body);
    r.assert_error(422);
    assert!(r.text().contains("040004"), "{}", r.text());
    assert!(r.text().contains("line 3"), "{}", r.text());
    assert_eq!(metric_sum(&s, ROWS), 0);
    let r = write(&s, "", "cpu v=1 1\ncpu v=\"x\" 2\n");
    r.assert_error(422);
    assert_eq!(
        metric_sum(&s, ROWS),
        0,
        "a type conflict inside one request writes nothing"
    );
}

#[test]
fn type_conflicts_name_the_column_and_both_types() {
    let s = Server::start("", 2);
    assert_eq!(write(&s, "", "cpu,host=a usage=1.5 1").status, 200);
    let r = write(&s, "", "cpu,host=b usage=2i 2");
    r.assert_error(422);
    let t = r.text();
    assert!(
        t.contains("usage") && t.contains("DOUBLE") && t.contains("BIGINT"),
        "{t}"
    );
    let r = write(&s, "", "cpu,usage=x v=1 3");
    r.assert_error(422);
    assert_eq!(metric_sum(&s, ROWS), 1);
}

#[test]
fn precisions_are_accepted_and_overflow_is_refused() {
    let s = Server::start("", 1);
    for (p, ts) in [
        ("s", "1700000000"),
        ("ms", "1700000000000"),
        ("us", "1700000000000000"),
        ("ns", "1"),
    ] {
        assert_eq!(
            write(&s, &format!("precision={p}"), &format!("p v=1 {ts}\np v=2")).status,
            200
        );
    }
    assert_eq!(metric_sum(&s, ROWS), 8);
    let r = write(&s, "precision=s", &format!("p v=1 {}", i64::MAX));
    r.assert_error(422);
    assert!(r.text().contains("overflows"), "{}", r.text());
    assert_eq!(metric_sum(&s, ROWS), 8);
}

#[test]
fn acknowledged_rows_survive_a_restart() {
    let mut s = Server::start("", 2);
    for batch in 0..10 {
        let body: String = (0..100)
            .map(|i| format!("m,s=s{i} v={batch}i {batch}\n"))
            .collect();
        assert_eq!(write(&s, "", &body).status, 200);
    }
    assert_eq!(metric_sum(&s, ROWS), 1000);
    assert!(s.terminate().success());
    let s2 = s.restart();
    assert_eq!(metric_sum(&s2, ROWS), 1000);
    assert!(
        s2.log_text().contains("replayed 20 WAL records"),
        "{}",
        s2.log_text()
    );
    // The catalog survived too: the column's type is still enforced.
    write(&s2, "", "m,s=x v=1.5 1").assert_error(422);
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn invalid_utf8_is_422_with_its_own_code() {
    let s = Server::start("", 1);
    let mut raw = format!(
        "POST /api/v1/write HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\nContent-Length: 12\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(b"cpu v=1 1\nc\xff\n");
    let r = request(&s, &raw);
    r.assert_error(422);
    assert!(
        r.text().contains("040015") && r.text().contains("line 2"),
        "{}",
        r.text()
    );
}

#[test]
fn a_full_memtable_answers_429_with_retry_after_and_writes_nothing_more() {
    let s = Server::start(
        "memtable_bytes_per_shard_max = 1048576\nmemtable_full_wait_ms = 200\n",
        1,
    );
    let body: String = (0..2000)
        .map(|i| format!("big,host=h{i} a=1i,b=2i,c=3i,d=4i {i}\n"))
        .collect();
    let mut accepted = 0;
    let mut refused = None;
    for round in 0..200 {
        let r = write(&s, &format!("precision=ns&x={round}"), &body);
        match r.status {
            200 => accepted += 1,
            _ => {
                refused = Some(r);
                break;
            }
        }
    }
    let r = refused.expect("the memtable bound is reached within 200 batches");
    r.assert_error(429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(accepted > 0);
    let rows = metric_sum(&s, ROWS);
    assert_eq!(
        rows,
        accepted * 2000,
        "the refused batch left nothing behind"
    );
    let bytes = metric_sum(&s, "chronoshard_memtable_bytes{");
    assert!(bytes <= 1_048_576, "memory stayed under the bound: {bytes}");
}
