//! Hostile input against the real server: mutated line protocol, malformed SQL, invalid UTF-8
//! and absurd parameters. Every request gets an answer — 200, or a 4xx with a JSON error body —
//! never a 5xx and never a connection dropped without an answer; the server stays healthy.

use crate::common::{get, Reader, Resp, Server, ROOT_AUTH};

/// xorshift64*: deterministic, so a failure names a case that can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEED_LINES: &[&str] = &[
    "cpu,host=a,dc=x usage=1.5,idle=2i,ok=true,note=\"hi\" 1000",
    "mem,host=b free=3u 2000\n",
    "air,station=XiaoMaiDao temperature=56,visibility=50 1673591597000000000\r\n",
    "# a comment\n\nweird\\ name,t\\,k=v\\=w f=\"q\\\"uote\" 5",
    "cpu,host=a usage=-1e10,big=9223372036854775807i",
];

/// Pieces that tend to break parsers: escapes, quotes, separators, huge numbers, non-UTF-8.
const NASTY: &[&[u8]] = &[
    b"\\",
    b"\"",
    b",",
    b"=",
    b" ",
    b"\n",
    b"\r",
    b"\t",
    b"#",
    b"i",
    b"u",
    b"e",
    b"-",
    b".",
    b"99999999999999999999999",
    b"NaN",
    b"inf",
    b"\xff\xfe",
    b"\xc3",
    b"\x00",
    b"t",
    b"f",
    b"\xe2\x82",
    b"TRUE",
    b"=,=,",
    b"\"\"\"",
    b"\\\n",
];

/// A mutated body: some seed lines, then flips, cuts, insertions and splices.
fn mutate(rng: &mut Rng) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..1 + rng.below(3) {
        body.extend_from_slice(SEED_LINES[rng.below(SEED_LINES.len())].as_bytes());
        body.push(b'\n');
    }
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(body.len() + 1);
        match rng.below(5) {
            0 if at < body.len() => body[at] ^= 1 << rng.below(8),
            1 => body.truncate(at),
            2 | 3 => {
                let piece = NASTY[rng.below(NASTY.len())];
                body.splice(at..at, piece.iter().copied());
            }
            _ => {
                let len = rng.below(8);
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                body.splice(at..at, bytes);
            }
        }
    }
    body
}

/// Sends one request on `conn` (reconnecting when the previous answer closed it) and returns
/// the answer; panics if the connection ends without one.
fn exchange(
    server: &Server,
    conn: &mut Option<Reader>,
    head: &str,
    body: &[u8],
    case: &str,
) -> Resp {
    let reader = conn.get_or_insert_with(|| Reader::new(server.connect()));
    let mut raw = format!("{head}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    raw.extend_from_slice(body);
    reader.send(&raw);
    let resp = reader
        .read(false)
        .unwrap_or_else(|| panic!("{case}: connection closed without an answer"));
    if resp
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    {
        *conn = None;
    }
    resp
}

fn assert_answer(resp: &Resp, case: &str) {
    assert!(
        resp.status == 200 || (400..500).contains(&resp.status),
        "{case}: status {} body {}",
        resp.status,
        resp.text()
    );
    if resp.status != 200 {
        resp.assert_error(resp.status);
    }
}

#[test]
fn any_write_body_gets_200_or_a_json_4xx() {
    let s = Server::start("", 2);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut conn = None;
    let head = format!("POST /api/v1/write?db=public HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\n");
    let (mut ok, mut refused) = (0, 0);
    for case in 0..600 {
        let body = mutate(&mut rng);
        let name = format!("case {case} body {:?}", String::from_utf8_lossy(&body));
        let resp = exchange(&s, &mut conn, &head, &body, &name);
        assert_answer(&resp, &name);
        match resp.status {
            200 => ok += 1,
            _ => refused += 1,
        }
    }
    // The mix exercises both outcomes (a generator that only made garbage would prove little).
    assert!(ok > 20 && refused > 100, "ok {ok}, refused {refused}");
    assert_eq!(get(&s, "/api/v1/ping").status, 200);
}

#[test]
fn malformed_sql_and_absurd_parameters_get_json_4xx() {
    let s = Server::start("", 2);
    let mut conn = None;
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let long_name = "x".repeat(100_000);
    let sql_bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xff\xfe SELECT 1".to_vec(),
        b"SELEC 1".to_vec(),
        b"SELECT * FROM".to_vec(),
        b"SELECT 'unterminated".to_vec(),
        deep.into_bytes(),
        format!("SELECT * FROM {long_name}").into_bytes(),
        b";;;;".to_vec(),
        b"SELECT 1; SELECT 2".to_vec(),
        b"CREATE DATABASE".to_vec(),
        b"CREATE TABLE t (a BIGINT, TAGS(".to_vec(),
        b"INSERT INTO t VALUES (".to_vec(),
        b"DELETE FROM t WHERE time > 'not a time'".to_vec(),
        b"SELECT 1/0".to_vec(),
        b"DESCRIBE DATABASE \"\"".to_vec(),
        b"SHOW TAG VALUES FROM".to_vec(),
        b"\x00\x00\x00".to_vec(),
    ];
    for (i, body) in sql_bodies.iter().enumerate() {
        let head = format!("POST /api/v1/sql?db=public HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\n");
        let case = format!(
            "sql {i}: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        let resp = exchange(&s, &mut conn, &head, body, &case);
        assert_answer(&resp, &case);
    }
    let queries = [
        "db=",
        "db=%FF%FE",
        "db=nope",
        "tenant=nope",
        "precision=xx",
        "precision=",
        "chunked=maybe",
        "chunked",
        "db=public&db=other",
        "%%%",
        "a=%zz",
        &format!("db={long_name}"),
    ];
    for q in queries {
        for path in ["/api/v1/write", "/api/v1/sql"] {
            let head = format!("POST {path}?{q} HTTP/1.1\r\nAuthorization: {ROOT_AUTH}\r\n");
            let body: &[u8] = if path.ends_with("sql") {
                b"SELECT 1"
            } else {
                b"m f=1 1"
            };
            let case = format!("{path}?{}", &q[..q.len().min(40)]);
            let resp = exchange(&s, &mut conn, &head, body, &case);
            assert_answer(&resp, &case);
        }
    }
    assert_eq!(get(&s, "/api/v1/ping").status, 200);
}
