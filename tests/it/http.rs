//! HTTP/1.1 behaviour of the real server, byte by byte where curl would hide the details.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::common::{get, request, Reader, Server};

const PING: &[u8] = b"GET /api/v1/ping HTTP/1.1\r\nHost: t\r\n\r\n";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

#[test]
fn ping_get_and_head() {
    let s = Server::start("", 2);
    let r = get(&s, "/api/v1/ping");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("date").is_some());
    assert_eq!(
        r.text(),
        format!(
            "{{\"version\":\"{}\",\"status\":\"healthy\"}}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let h = request(&s, b"HEAD /api/v1/ping HTTP/1.1\r\n\r\n");
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), r.header("content-length"));
    assert!(h.body.is_empty());
}

#[test]
fn hundred_requests_on_one_keep_alive_connection() {
    let s = Server::start("", 2);
    let mut c = Reader::new(s.connect());
    for i in 0..100 {
        c.send(PING);
        let r = c.read(false).unwrap_or_else(|| panic!("response {i}"));
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("connection"), None, "kept alive at {i}");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start("", 2);
    let mut c = Reader::new(s.connect());
    let mut batch = Vec::new();
    for i in 0..20 {
        if i % 2 == 0 {
            batch.extend_from_slice(PING);
        } else {
            batch.extend_from_slice(b"GET /nope HTTP/1.1\r\n\r\n");
        }
    }
    batch.extend_from_slice(b"HEAD /api/v1/ping HTTP/1.1\r\n\r\n");
    c.send(&batch);
    for i in 0..20 {
        let r = c.read(false).expect("response");
        assert_eq!(r.status, if i % 2 == 0 { 200 } else { 404 }, "answer {i}");
    }
    let h = c.read(true).expect("HEAD answer");
    assert_eq!(h.status, 200);
}

#[test]
fn chunked_request_body_is_decoded() {
    let s = Server::start("", 1);
    let r = request(
        &s,
        b"POST /api/v1/sql HTTP/1.1\r\nAuthorization: Basic cm9vdDo=\r\nTransfer-Encoding: chunked\r\n\r\n\
          4\r\nsele\r\n3;x=y\r\nct \r\n2\r\n42\r\n0\r\n\r\n",
    );
    // The SQL answer shows the body arrived whole: "select 42".
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "Int64(42)\n42\n");
}

#[test]
fn expect_100_continue() {
    let s = Server::start("[http]\nsql_body_bytes_max = 1024\n", 1);
    let mut c = Reader::new(s.connect());
    c.send(b"POST /api/v1/sql HTTP/1.1\r\nAuthorization: Basic cm9vdDo=\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read(false).expect("interim answer");
    assert_eq!(interim.status, 100);
    c.send(b"select 5");
    let r = c.read(false).expect("final answer");
    assert_eq!(r.text(), "Int64(5)\n5\n");
    // Too large: refused at once, no 100, connection closed.
    c.send(b"POST /api/v1/sql HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read(false).expect("413");
    r.assert_error(413);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
}

#[test]
fn oversized_header_is_431() {
    let s = Server::start("[http]\nheader_bytes_max = 2048\n", 1);
    let raw = format!(
        "GET /api/v1/ping HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(4000)
    );
    let r = request(&s, raw.as_bytes());
    r.assert_error(431);
    assert_eq!(get(&s, "/api/v1/ping").status, 200);
}

#[test]
fn oversized_bodies_are_413_on_the_wire_and_after_decoding() {
    let s = Server::start("[http]\nsql_body_bytes_max = 1000\n", 1);
    let big = format!(
        "POST /api/v1/sql HTTP/1.1\r\nContent-Length: 1001\r\n\r\n{}",
        "x".repeat(1001)
    );
    request(&s, big.as_bytes()).assert_error(413);
    let chunked = format!(
        "POST /api/v1/sql HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n{}\r\n1\r\nx\r\n0\r\n\r\n",
        "x".repeat(1000)
    );
    request(&s, chunked.as_bytes()).assert_error(413);
    // 500 KB of zeros compresses to about 500 bytes: small on the wire, too large decoded.
    let bomb = gzip(&vec![0u8; 500_000]);
    assert!(bomb.len() < 1000);
    let mut c = Reader::new(s.connect());
    c.send(
        format!(
            "POST /api/v1/sql HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            bomb.len()
        )
        .as_bytes(),
    );
    c.send(&bomb);
    let r = c.read(false).expect("answer");
    r.assert_error(413);
    assert!(r.text().contains("after gzip decoding"), "{}", r.text());
}

#[test]
fn gzip_body_is_decoded() {
    let s = Server::start("", 1);
    let sql = format!("select 1400{}", " ".repeat(2000));
    let body = gzip(sql.as_bytes());
    let mut c = Reader::new(s.connect());
    c.send(
        format!(
            "POST /api/v1/sql HTTP/1.1\r\nAuthorization: Basic cm9vdDo=\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let r = c.read(false).expect("answer");
    assert_eq!(r.text(), "Int64(1400)\n1400\n");
    // An unknown coding and a corrupt body are both 400.
    let r = request(
        &s,
        b"POST /api/v1/sql HTTP/1.1\r\nContent-Encoding: compress\r\nContent-Length: 1\r\n\r\nx",
    );
    r.assert_error(400);
    let r = request(
        &s,
        b"POST /api/v1/sql HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
    );
    r.assert_error(400);
    let r = request(
        &s,
        b"POST /api/v1/sql HTTP/1.1\r\nContent-Encoding: gzip, gzip, gzip, gzip\r\nContent-Length: 1\r\n\r\nx",
    );
    r.assert_error(400);
    assert!(r.text().contains("stacked"), "{}", r.text());
}

#[test]
fn response_is_compressed_when_asked() {
    let s = Server::start("", 1);
    let r = request(
        &s,
        b"GET /api/v1/ping HTTP/1.1\r\nAccept-Encoding: br;q=0.1, gzip;q=0.9\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_string(&mut text)
        .expect("gunzip");
    assert!(text.contains("\"status\":\"healthy\""), "{text}");
    let plain = request(
        &s,
        b"GET /api/v1/ping HTTP/1.1\r\nAccept-Encoding: *\r\n\r\n",
    );
    assert_eq!(plain.header("content-encoding"), None);
}

#[test]
fn unknown_path_is_404_and_wrong_method_is_405() {
    let s = Server::start("", 2);
    get(&s, "/api/v2/nothing").assert_error(404);
    let r = request(
        &s,
        b"POST /api/v1/ping HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    r.assert_error(405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = request(&s, b"DELETE /api/v1/sql HTTP/1.1\r\n\r\n");
    r.assert_error(405);
    assert_eq!(r.header("allow"), Some("POST"));
}

#[test]
fn garbage_gets_400_or_close_and_the_server_lives_on() {
    let s = Server::start("", 2);
    let junk: [&[u8]; 4] = [
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /api/v1/ping HTTP/1.1\r\nBad Header\r\n\r\n",
        &[0xff; 5000],
    ];
    for bytes in junk {
        let mut c = Reader::new(s.connect());
        c.send(bytes);
        if let Some(r) = c.read(false) {
            r.assert_error(400);
        }
        assert!(c.is_closed(), "closed after garbage {:?}", &bytes[..4]);
    }
    assert_eq!(get(&s, "/api/v1/ping").status, 200);
}

#[test]
fn slow_client_is_cut_off() {
    let s = Server::start("[http]\nheader_read_timeout_ms = 300\n", 1);
    let mut c = s.connect();
    let started = Instant::now();
    // A byte at a time, never finishing the head: the head deadline is absolute.
    for b in b"GET /api/v1/ping HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaa" {
        if c.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let mut buf = [0u8; 64];
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = c.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "connection closed without an answer");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut off near the deadline"
    );
    assert_eq!(get(&s, "/api/v1/ping").status, 200);
}

#[test]
fn connections_over_the_limit_get_503() {
    let s = Server::start("[http]\nconnections_per_shard_max = 2\n", 1);
    let mut held: Vec<Reader> = (0..2).map(|_| Reader::new(s.connect())).collect();
    for c in held.iter_mut() {
        c.send(PING);
        assert_eq!(c.read(false).expect("answer").status, 200);
    }
    let r = request(&s, PING);
    r.assert_error(503);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&s, "/api/v1/ping").status != 200 {
        assert!(Instant::now() < deadline, "slots freed after close");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_count_requests_across_shards() {
    let s = Server::start("", 2);
    for _ in 0..10 {
        assert_eq!(get(&s, "/api/v1/ping").status, 200);
    }
    get(&s, "/missing").assert_error(404);
    let m = get(&s, "/metrics");
    assert_eq!(m.status, 200);
    let text = m.text();
    assert!(
        text.contains("chronoshard_http_requests_total{route=\"ping\",status=\"200\"} 10\n"),
        "{text}"
    );
    assert!(
        text.contains("chronoshard_http_requests_total{route=\"other\",status=\"404\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("chronoshard_shards 2\n"), "{text}");
    assert!(
        text.contains("chronoshard_http_connections_accepted_total"),
        "{text}"
    );
}

#[test]
fn connections_are_balanced_over_the_shards() {
    let s = Server::start("", 2);
    let mut held = Vec::new();
    for _ in 0..6 {
        let mut c = Reader::new(s.connect());
        c.send(PING);
        assert_eq!(c.read(false).expect("answer").status, 200);
        held.push(c);
    }
    // The scrape itself is a seventh connection.
    let text = get(&s, "/metrics").text();
    let open: Vec<u64> = (0..2)
        .map(|i| {
            let prefix = format!("chronoshard_http_connections_open{{shard=\"{i}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
                .expect("per-shard gauge")
        })
        .collect();
    assert_eq!(open.iter().sum::<u64>(), 7, "{text}");
    assert!(open[0].abs_diff(open[1]) <= 1, "balanced: {open:?}");
}
