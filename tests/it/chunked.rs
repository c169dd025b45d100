//! `chunked=true`: answers streamed with `Transfer-Encoding: chunked` carry the same content as
//! the one-body answers, in every format and coding; a large answer arrives whole; the
//! connection stays usable afterwards; an error after the first byte truncates the body (no
//! terminating chunk).

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::common::{write, Server, ROOT_AUTH};
use crate::scatter::{check_big_csv, load_big, BIG_PER_SERIES};
use crate::sql::sql;

/// A chunked answer as received: status, headers, the de-chunked body, and whether the body
/// ended with the zero chunk.
struct Streamed {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    complete: bool,
}

impl Streamed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn post(stream: &mut TcpStream, query: &str, headers: &str, body: &str) {
    let raw = format!(
        "POST /api/v1/sql?{query} HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(raw.as_bytes()).expect("send");
}

/// Reads one chunked answer from `stream`; `buf` holds bytes read past it.
fn read_streamed(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Streamed {
    let mut more = |buf: &mut Vec<u8>| {
        let mut chunk = [0u8; 64 * 1024];
        let n = stream.read(&mut chunk).unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        n
    };
    let (status, headers) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        if let httparse::Status::Complete(n) = r.parse(buf).expect("valid head") {
            let headers = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let status = r.code.expect("status");
            buf.drain(..n);
            break (status, headers);
        }
        assert!(more(buf) > 0, "closed before the head");
    };
    let mut body = Vec::new();
    loop {
        let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
            if more(buf) == 0 {
                return Streamed {
                    status,
                    headers,
                    body,
                    complete: false,
                };
            }
            continue;
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).expect("ascii size");
        let size = usize::from_str_radix(size_text.trim(), 16).expect("hex chunk size");
        while buf.len() < line_end + 2 + size + 2 {
            if more(buf) == 0 {
                return Streamed {
                    status,
                    headers,
                    body,
                    complete: false,
                };
            }
        }
        let start = line_end + 2;
        body.extend_from_slice(&buf[start..start + size]);
        assert_eq!(
            &buf[start + size..start + size + 2],
            b"\r\n",
            "chunk ends with CRLF"
        );
        buf.drain(..start + size + 2);
        if size == 0 {
            return Streamed {
                status,
                headers,
                body,
                complete: true,
            };
        }
    }
}

fn connect(s: &Server) -> TcpStream {
    s.connect()
}

const QUERY: &str = "SELECT time, host, region, v FROM m ORDER BY time, host";

fn load(s: &Server) {
    let mut body = String::new();
    for host in 0..300 {
        for t in 0..40 {
            body.push_str(&format!(
                "m,host=h{host:03},region=r{} v={}i,x={}.5 {t}\n",
                host % 3,
                host * 40 + t,
                t
            ));
        }
    }
    assert_eq!(write(s, "", &body).status, 200);
}

#[test]
fn chunked_answers_carry_the_same_content_and_keep_the_connection() {
    let s = Server::start("", 2);
    load(&s);
    let mut conn = connect(&s);
    let mut buf = Vec::new();
    for accept in [
        "text/csv",
        "application/json",
        "application/nd-json",
        "text/tsv",
    ] {
        let whole = sql(&s, "", Some(accept), QUERY);
        assert_eq!(whole.status, 200);
        post(
            &mut conn,
            "chunked=true",
            &format!("Accept: {accept}\r\n"),
            QUERY,
        );
        let streamed = read_streamed(&mut conn, &mut buf);
        assert_eq!(streamed.status, 200);
        assert!(streamed.complete, "{accept}: ends with the zero chunk");
        assert_eq!(streamed.header("transfer-encoding"), Some("chunked"));
        assert_eq!(streamed.header("content-length"), None);
        assert_eq!(streamed.header("content-type"), Some(accept));
        assert_eq!(
            String::from_utf8_lossy(&streamed.body),
            whole.text(),
            "{accept}: same bytes as the one-body answer"
        );
        if accept == "application/json" {
            let rows: serde_json::Value =
                serde_json::from_slice(&streamed.body).expect("one valid JSON array");
            assert_eq!(rows.as_array().map(Vec::len), Some(12_000));
        }
    }
    // Errors before the first byte are ordinary answers, on the same connection.
    post(&mut conn, "chunked=true", "", "SELECT nope FROM m");
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut more = [0u8; 4096];
    while !matches!(
        httparse::Response::new(&mut hs).parse(&buf),
        Ok(httparse::Status::Complete(_))
    ) {
        let n = conn.read(&mut more).expect("read");
        assert!(n > 0, "connection kept");
        buf.extend_from_slice(&more[..n]);
        hs = [httparse::EMPTY_HEADER; 32];
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    assert!(head.starts_with("HTTP/1.1 422"), "{head}");
    // An empty result is the header line alone.
    let mut conn = connect(&s);
    let mut buf = Vec::new();
    post(
        &mut conn,
        "chunked=true",
        "",
        "SELECT host FROM m WHERE v < 0",
    );
    let empty = read_streamed(&mut conn, &mut buf);
    assert!(empty.complete);
    assert_eq!(empty.body, b"host\n");
}

#[test]
fn chunked_answers_compress_as_a_stream() {
    let s = Server::start("", 2);
    load(&s);
    let whole = sql(&s, "", None, QUERY).body;
    let mut conn = connect(&s);
    let mut buf = Vec::new();
    for coding in ["gzip", "deflate", "br", "zstd"] {
        post(
            &mut conn,
            "chunked=true",
            &format!("Accept-Encoding: {coding}\r\n"),
            QUERY,
        );
        let streamed = read_streamed(&mut conn, &mut buf);
        assert!(streamed.complete, "{coding}");
        assert_eq!(streamed.header("content-encoding"), Some(coding));
        let mut plain = Vec::new();
        let body = &streamed.body[..];
        match coding {
            "gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut plain),
            "deflate" => flate2::read::ZlibDecoder::new(body).read_to_end(&mut plain),
            "br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut plain),
            _ => zstd::stream::read::Decoder::new(body).and_then(|mut d| d.read_to_end(&mut plain)),
        }
        .unwrap_or_else(|e| panic!("{coding} decodes: {e}"));
        assert_eq!(plain, whole, "{coding}");
        assert!(streamed.body.len() < whole.len() / 2, "{coding} compresses");
    }
}

#[test]
fn a_large_chunked_answer_arrives_whole() {
    let s = Server::start("", 2);
    load_big(&s);
    let mut conn = connect(&s);
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    post(&mut conn, "chunked=true", "", "SELECT host, v FROM big");
    let streamed = read_streamed(&mut conn, &mut buf);
    eprintln!("300k rows as chunked CSV in {:?}", started.elapsed());
    assert!(streamed.complete);
    check_big_csv(&String::from_utf8_lossy(&streamed.body));
}

#[test]
fn an_error_after_the_first_byte_truncates_the_body() {
    let s = Server::start("", 2);
    load_big(&s);
    // The last row written: the last series of its shard, far past either shard's first batch.
    let last = 100 * BIG_PER_SERIES - 1;
    let mut conn = connect(&s);
    let mut buf = Vec::new();
    let query = format!("SELECT host, 1 / (v - {last}) AS q FROM big");
    post(&mut conn, "chunked=true", "", &query);
    let streamed = read_streamed(&mut conn, &mut buf);
    assert_eq!(streamed.status, 200);
    assert!(!streamed.complete, "no terminating chunk");
    assert!(
        streamed.body.starts_with(b"host,q\n"),
        "rows were streamed first"
    );
    // The same error without chunked is an ordinary answer.
    let whole = sql(&s, "", None, &query);
    whole.assert_error(422);
    assert!(whole.text().contains("Divide by zero"), "{}", whole.text());
}

#[test]
fn a_chunked_answer_past_the_query_timeout_is_truncated() {
    let s = Server::start("query_timeout_ms = 1500\n", 2);
    load_big(&s);
    let mut conn = connect(&s);
    let mut buf = Vec::new();
    // About 15 MB of CSV, more than the socket buffers hold while the client does not read.
    let query = "SELECT host, v, x FROM big CROSS JOIN (VALUES (1), (2), (3), (4)) AS t(x)";
    post(&mut conn, "chunked=true", "", query);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let streamed = read_streamed(&mut conn, &mut buf);
    assert_eq!(streamed.status, 200);
    assert!(
        !streamed.complete,
        "cut at the deadline, without the zero chunk"
    );
    assert!(streamed.body.starts_with(b"host,v,x\n"));
}
