//! Golden files: `tests/golden/*.slt`, each run in order against one fresh real server with two
//! shards, every answer compared byte for byte.
//!
//! A file is a sequence of blocks separated by blank lines; `#` lines are comments. Blocks:
//!
//! ```text
//! write [query-string]            line protocol until the end of the block; expects 200
//! statement ok [query-string]     SQL until the end of the block; expects 200 and an empty body
//! error STATUS CODE [query-string]
//!                                 SQL; expects that status and a JSON error with that code
//! query FORMAT [ENCODING] [query-string]
//! SQL lines
//! ----
//! expected answer lines           the body, decoded, line by line; a body that does not end
//!                                 with a newline (JSON) ends with the line
//!                                 `\ no newline at end`, as in a diff
//! ```
//!
//! FORMAT is `csv`, `tsv`, `json`, `ndjson` or `table` (sent as `Accept`); ENCODING, if given,
//! one of `gzip`, `deflate`, `br`, `zstd` (sent as `Accept-Encoding`; the answer must carry it in
//! `Content-Encoding` and is decoded before comparing). The query string is appended to the
//! endpoint as is (`db=other&chunked=true`).
//!
//! `GOLDEN_BLESS=1 cargo test --test it golden` rewrites the expected answers from the server's
//! (review the diff: a blessed file is only as right as the reading of it).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::common::{request, Resp, Server, ROOT_AUTH};

#[derive(Debug)]
enum Kind {
    Write,
    Statement,
    Error {
        status: u16,
        code: String,
    },
    Query {
        accept: &'static str,
        encoding: Option<String>,
    },
}

#[derive(Debug)]
struct Block {
    /// 1-based line of the block's header, for messages.
    line: usize,
    kind: Kind,
    params: String,
    body: String,
    /// `query` blocks: the expected answer lines (without their newlines).
    expected: Vec<String>,
    /// Index of the header line and of the line after the last line of the block.
    span: (usize, usize),
}

/// Marks an answer whose last line has no newline.
const NO_NEWLINE: &str = "\\ no newline at end";

fn accept_of(format: &str) -> Option<&'static str> {
    Some(match format {
        "csv" => "text/csv",
        "tsv" => "text/tsv",
        "json" => "application/json",
        "ndjson" => "application/nd-json",
        "table" => "text/table",
        _ => return None,
    })
}

fn parse(path: &Path, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = format!("{}:{}", path.display(), i + 1);
        let (kind, params) = match words.as_slice() {
            ["write", rest @ ..] => (Kind::Write, rest.join("")),
            ["statement", "ok", rest @ ..] => (Kind::Statement, rest.join("")),
            ["error", status, code, rest @ ..] => (
                Kind::Error {
                    status: status
                        .parse()
                        .unwrap_or_else(|_| panic!("{at}: bad status")),
                    code: code.to_string(),
                },
                rest.join(""),
            ),
            ["query", format, rest @ ..] => {
                let accept = accept_of(format).unwrap_or_else(|| panic!("{at}: bad format"));
                let (encoding, params) = match rest {
                    [e, p @ ..] if ["gzip", "deflate", "br", "zstd"].contains(e) => {
                        (Some(e.to_string()), p.join(""))
                    }
                    p => (None, p.join("")),
                };
                (Kind::Query { accept, encoding }, params)
            }
            _ => panic!("{at}: unknown block header {line:?}"),
        };
        i += 1;
        let mut body = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i] != "----" {
            body.push(lines[i]);
            i += 1;
        }
        let mut expected = Vec::new();
        if i < lines.len() && lines[i] == "----" {
            assert!(
                matches!(kind, Kind::Query { .. }),
                "{at}: ---- outside a query"
            );
            i += 1;
            while i < lines.len() && !lines[i].is_empty() {
                expected.push(lines[i].to_string());
                i += 1;
            }
        }
        blocks.push(Block {
            line: start + 1,
            kind,
            params,
            body: body.join("\n"),
            expected,
            span: (start, i),
        });
    }
    blocks
}

fn post(server: &Server, path: &str, params: &str, headers: &str, body: &str) -> Resp {
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{params}")
    };
    let raw = format!(
        "POST {path}{query} HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    request(server, raw.as_bytes())
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(body).read_to_end(&mut out),
        "br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut out),
        "zstd" => zstd::stream::read::Decoder::new(body).and_then(|mut d| d.read_to_end(&mut out)),
        other => panic!("unknown encoding {other}"),
    }
    .unwrap_or_else(|e| panic!("decoding {encoding}: {e}"));
    out
}

/// Runs one block; returns the answer lines of a query block.
fn run(server: &Server, file: &Path, b: &Block) -> Option<Vec<String>> {
    let at = format!("{}:{}", file.display(), b.line);
    match &b.kind {
        Kind::Write => {
            let r = post(server, "/api/v1/write", &b.params, "", &b.body);
            assert_eq!(r.status, 200, "{at}: {}", r.text());
            None
        }
        Kind::Statement => {
            let r = post(server, "/api/v1/sql", &b.params, "", &b.body);
            assert_eq!(r.status, 200, "{at}: {}", r.text());
            assert_eq!(r.text(), "", "{at}: a statement answers an empty body");
            None
        }
        Kind::Error { status, code } => {
            let r = post(server, "/api/v1/sql", &b.params, "", &b.body);
            r.assert_error(*status);
            let prefix = format!("{{\"error_code\":\"{code}\"");
            assert!(r.text().starts_with(&prefix), "{at}: {}", r.text());
            None
        }
        Kind::Query { accept, encoding } => {
            let mut headers = format!("Accept: {accept}\r\n");
            if let Some(e) = encoding {
                headers.push_str(&format!("Accept-Encoding: {e}\r\n"));
            }
            let r = post(server, "/api/v1/sql", &b.params, &headers, &b.body);
            assert_eq!(r.status, 200, "{at}: {}", r.text());
            assert_eq!(
                r.header("content-type"),
                Some(*accept),
                "{at}: content type"
            );
            let body = match encoding {
                Some(e) => {
                    assert_eq!(r.header("content-encoding"), Some(e.as_str()), "{at}");
                    decode(e, &r.body)
                }
                None => r.body.clone(),
            };
            let text = String::from_utf8(body).unwrap_or_else(|_| panic!("{at}: not UTF-8"));
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            if !text.is_empty() && !text.ends_with('\n') {
                lines.push(NO_NEWLINE.to_string());
            }
            Some(lines)
        }
    }
}

fn golden_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden files in {}", dir.display());
    files
}

#[test]
fn golden_files_match_the_server_byte_for_byte() {
    let bless = std::env::var_os("GOLDEN_BLESS").is_some();
    let mut failures = Vec::new();
    for file in golden_files() {
        let text = std::fs::read_to_string(&file).expect("read golden file");
        let blocks = parse(&file, &text);
        let server = Server::start("", 2);
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        // Rewrites go bottom-up so earlier spans stay valid.
        let mut rewrites = Vec::new();
        for b in &blocks {
            let Some(actual) = run(&server, &file, b) else {
                continue;
            };
            if actual != b.expected {
                if bless {
                    rewrites.push((b, actual));
                } else {
                    failures.push(format!(
                        "{}:{}: {}\n--- expected\n{}\n--- actual\n{}\n",
                        file.display(),
                        b.line,
                        b.body,
                        b.expected.join("\n"),
                        actual.join("\n")
                    ));
                }
            }
        }
        if bless && !rewrites.is_empty() {
            for (b, actual) in rewrites.into_iter().rev() {
                let header_and_sql = b.span.0..b.span.0 + 1 + b.body.lines().count();
                let mut replacement: Vec<String> = lines[header_and_sql].to_vec();
                replacement.push("----".to_string());
                replacement.extend(actual);
                lines.splice(b.span.0..b.span.1, replacement);
            }
            let mut out = lines.join("\n");
            out.push('\n');
            std::fs::write(&file, out).expect("bless golden file");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
