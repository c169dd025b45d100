//! Differential test against `influxdb-line-protocol` (InfluxDB IOx's parser).
//!
//! Random bodies of valid lines, from a seeded xorshift, are parsed by both parsers; the
//! measurement, the tags (sorted), the fields (typed, in order) and the timestamps must agree
//! with each other and with what the generator meant to write.
//!
//! The generator stays inside the subset where CnosDB, InfluxDB and we agree (the table in
//! `lp.rs` lists the differences): no repeated keys; in names only the escapes `\,`, `\ ` and
//! (outside the measurement) `\=`, never `\\` or other backslash pairs; floats without `+`,
//! `inf`, `nan` or a trailing `.`; `\n` line ends only; no tabs; no spaces after the last field
//! unless a timestamp follows; no empty names or values.

use influxdb_line_protocol::{parse_lines, FieldValue as InfluxValue};

use super::{owned, Owned, Value};
use crate::lp::{parse, ParsedBatch};

/// xorshift64*: small, seeded, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// (as written, as meant) pieces of names. `#` only where it cannot start a line.
const PLAIN: &[&str] = &[
    "cpu", "host", "a", "Z", "_", "-", ".", "0", "9", "é", "中", "\"", "'", "#", "<", "|", "}",
];
const NAME_ESCAPES: &[(&str, &str)] = &[("\\,", ","), ("\\ ", " ")];
const KEY_ESCAPES: &[(&str, &str)] = &[("\\,", ","), ("\\ ", " "), ("\\=", "=")];
/// String field pieces: `\\` and `\"` are unescaped, `\n` (backslash, n) is kept as it is.
const STRING_PIECES: &[(&str, &str)] = &[
    ("abc", "abc"),
    (" ", " "),
    (",", ","),
    ("=", "="),
    ("\\\\", "\\"),
    ("\\\"", "\""),
    ("\\n", "\\n"),
    ("\n", "\n"),
    ("é中", "é中"),
    ("'", "'"),
];
const BOOLEANS: &[(&str, bool)] = &[
    ("t", true),
    ("T", true),
    ("true", true),
    ("True", true),
    ("TRUE", true),
    ("f", false),
    ("F", false),
    ("false", false),
    ("False", false),
    ("FALSE", false),
];

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Measurement,
    Key,
    TagValue,
}

/// A name: (as written, as meant). `quotes`: whether `"` may appear in it.
fn name(rng: &mut Rng, part: Part, quotes: bool) -> (String, String) {
    let mut raw = String::new();
    let mut meant = String::new();
    for i in 0..1 + rng.below(5) {
        let escape = rng.chance(20);
        let (r, m) = match (escape, part) {
            (true, Part::Measurement) => *rng.pick(NAME_ESCAPES),
            (true, _) => *rng.pick(KEY_ESCAPES),
            (false, Part::TagValue) if rng.chance(10) => ("=", "="),
            (false, _) => match *rng.pick(PLAIN) {
                "#" if i == 0 && part == Part::Measurement => ("m", "m"),
                "\"" if !quotes => ("q", "q"),
                p => (p, p),
            },
        };
        raw.push_str(r);
        meant.push_str(m);
    }
    (raw, meant)
}

/// A field value: (as written, as meant).
fn field_value(rng: &mut Rng) -> (String, Value) {
    match rng.below(6) {
        0 => {
            let v = (rng.next() as i64) >> rng.below(64);
            (format!("{v}i"), Value::I(v))
        }
        1 => {
            let v = rng.next() >> rng.below(64);
            (format!("{v}u"), Value::U(v))
        }
        2 => {
            let (text, value) = *rng.pick(BOOLEANS);
            (text.to_string(), Value::B(value))
        }
        3 => {
            let mut raw = String::from("\"");
            let mut meant = String::new();
            for _ in 0..rng.below(6) {
                let (r, m) = *rng.pick(STRING_PIECES);
                raw.push_str(r);
                meant.push_str(m);
            }
            raw.push('"');
            (raw, Value::S(meant))
        }
        _ => float(rng),
    }
}

fn float(rng: &mut Rng) -> (String, Value) {
    let text = match rng.below(4) {
        0 => format!("{}", (rng.next() as i64) >> rng.below(64)),
        1 => format!(
            "{}.{}",
            rng.below(100_000) as i64 - 50_000,
            rng.below(1_000_000)
        ),
        2 => {
            let f = f64::from_bits(rng.next());
            let f = if f.is_finite() { f } else { 0.5 };
            format!("{f:e}")
        }
        _ => {
            let f = f64::from_bits(rng.next() >> 2);
            let f = if f.is_finite() { f } else { 1.25 };
            let f = if rng.chance(50) { -f } else { f };
            format!("{f}")
        }
    };
    let value: f64 = text.parse().expect("generated floats are valid");
    (text, Value::F(value))
}

/// Keys for one line, distinct as meant.
fn keys(rng: &mut Rng, count: usize, quotes: bool) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    while keys.len() < count {
        let k = name(rng, Part::Key, quotes);
        if !keys.iter().any(|(_, m)| *m == k.1) {
            keys.push(k);
        }
    }
    keys
}

fn spaces(rng: &mut Rng) -> String {
    " ".repeat(1 + rng.below(3))
}

/// One line: (as written, as meant; line_no is filled in by the caller). `quotes`: whether
/// names may contain `"`.
fn line(rng: &mut Rng, quotes: bool) -> (String, Owned) {
    let (mut raw, measurement) = name(rng, Part::Measurement, quotes);
    let mut tags = Vec::new();
    let tag_count = rng.below(6);
    for (k_raw, k) in keys(rng, tag_count, quotes) {
        let (v_raw, v) = name(rng, Part::TagValue, quotes);
        raw.push_str(&format!(",{k_raw}={v_raw}"));
        tags.push((k, v));
    }
    tags.sort();
    raw.push_str(&spaces(rng));
    let mut fields = Vec::new();
    let field_count = 1 + rng.below(6);
    for (i, (k_raw, k)) in keys(rng, field_count, quotes).into_iter().enumerate() {
        let (v_raw, v) = field_value(rng);
        let sep = if i == 0 { "" } else { "," };
        raw.push_str(&format!("{sep}{k_raw}={v_raw}"));
        fields.push((k, v));
    }
    let timestamp = rng.chance(70).then(|| (rng.next() as i64) >> rng.below(64));
    if let Some(ts) = timestamp {
        raw.push_str(&format!("{}{ts}", spaces(rng)));
        if rng.chance(20) {
            raw.push_str(&spaces(rng));
        }
    }
    let meant = Owned {
        measurement,
        tags,
        fields,
        timestamp,
        line_no: 0,
    };
    (raw, meant)
}

/// A body of valid lines, with blank and comment lines between them, and what it means.
fn body(rng: &mut Rng) -> (String, Vec<Owned>) {
    let mut text = String::new();
    let mut meant = Vec::new();
    let mut line_no = 1;
    for _ in 0..1 + rng.below(12) {
        if rng.chance(10) {
            text.push_str("# a comment, with = and \"quotes\n");
        } else if rng.chance(10) {
            text.push_str("   \n");
        } else {
            // InfluxDB's line splitter counts `=` and `,` from the first space on, so after
            // leading spaces a `"` in a name can open a "string" there: no quotes in names then.
            let indent = rng.chance(10);
            let (raw, mut m) = line(rng, !indent);
            if indent {
                text.push_str("  ");
            }
            m.line_no = line_no;
            line_no += raw.matches('\n').count();
            text.push_str(&raw);
            text.push('\n');
            meant.push(m);
        }
        line_no += 1;
    }
    (text, meant)
}

/// What `influxdb-line-protocol` makes of `body`, in our owned form (tags sorted).
fn influx(body: &str) -> Vec<Owned> {
    parse_lines(body)
        .map(|line| {
            let line = line.unwrap_or_else(|e| panic!("influx rejects {body:?}: {e}"));
            let mut tags: Vec<(String, String)> = line
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            tags.sort();
            let fields = line
                .field_set
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        InfluxValue::I64(i) => Value::I(*i),
                        InfluxValue::U64(u) => Value::U(*u),
                        InfluxValue::F64(f) => Value::F(*f),
                        InfluxValue::String(s) => Value::S(s.to_string()),
                        InfluxValue::Boolean(b) => Value::B(*b),
                    };
                    (k.to_string(), v)
                })
                .collect();
            Owned {
                measurement: line.series.measurement.to_string(),
                tags,
                fields,
                timestamp: line.timestamp,
                line_no: 0,
            }
        })
        .collect()
}

/// Floats compared by bits (so -0.0 differs from 0.0), line numbers cleared.
fn normalised(lines: &[Owned]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let fields: Vec<String> = l
                .fields
                .iter()
                .map(|(k, v)| match v {
                    Value::F(f) => format!("{k}=F{:#x}", f.to_bits()),
                    other => format!("{k}={other:?}"),
                })
                .collect();
            format!(
                "{:?} {:?} {fields:?} {:?}",
                l.measurement, l.tags, l.timestamp
            )
        })
        .collect()
}

#[test]
fn agrees_with_influxdb_line_protocol() {
    let mut rng = Rng(0x0DDB_1A5E_5BAD_5EED);
    // One batch for all rounds, recycled from body to body as the server does.
    let mut spare: ParsedBatch<'static> = ParsedBatch::default();
    let mut lines = 0;
    for round in 0..400 {
        let (text, meant) = body(&mut rng);
        let mut batch = std::mem::take(&mut spare).recycle();
        if let Err(e) = parse(text.as_bytes(), &mut batch) {
            panic!("round {round}: we reject {text:?}: {e}");
        }
        let ours = owned(&batch);
        assert_eq!(
            ours.iter().map(|l| l.line_no).collect::<Vec<_>>(),
            meant.iter().map(|l| l.line_no).collect::<Vec<_>>(),
            "round {round}: line numbers of {text:?}"
        );
        assert_eq!(
            normalised(&ours),
            normalised(&meant),
            "round {round}: we misread {text:?}"
        );
        assert_eq!(
            normalised(&influx(&text)),
            normalised(&meant),
            "round {round}: influx reads {text:?} otherwise"
        );
        lines += ours.len();
        spare = batch.recycle();
    }
    assert!(lines > 1000, "only {lines} lines were compared");
}

#[test]
fn both_reject_these() {
    for body in [
        "m",
        "m,t=1",
        "m f",
        "m f=",
        "m =1",
        "m,=1 f=1",
        "m f=abc",
        "m f=1 abc",
        "m f=1 1 2",
        "m f=\"open",
        "m f=9223372036854775808i",
        "m f=18446744073709551616u",
        "m f=-1u",
        "m f=tRUE",
        "m f=1 9223372036854775808",
    ] {
        let mut batch = ParsedBatch::default();
        assert!(
            parse(body.as_bytes(), &mut batch).is_err(),
            "we accept {body:?}"
        );
        assert!(
            parse_lines(body).any(|l| l.is_err()),
            "influx accepts {body:?}"
        );
    }
}

/// Bytes that matter to the grammar, for mutations.
const MUTATION_BYTES: &[u8] = b",= \\\"\n\r\t#iuTf0-.+e\xff\xc3";

/// A poor man's fuzzer that runs on stable: valid bodies with random byte edits must never
/// panic, and whatever parses must keep the parser's invariants. `fuzz/` does this properly.
#[test]
fn mutated_bodies_never_break_invariants() {
    let mut rng = Rng(0xF0CC_ACC1_A5ED_0001);
    let mut accepted = 0;
    for _ in 0..3000 {
        let (text, _) = body(&mut rng);
        let mut bytes = text.into_bytes();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len() + 1);
            let b = *rng.pick(MUTATION_BYTES);
            match rng.below(4) {
                0 if at < bytes.len() => bytes[at] = b,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                2 => bytes.truncate(at),
                _ => bytes.insert(at, b),
            }
        }
        let mut batch = ParsedBatch::default();
        match parse(&bytes, &mut batch) {
            Ok(()) => {
                accepted += 1;
                check_invariants(&batch);
            }
            Err(e) => {
                assert!(!e.errors.is_empty() && e.errors.len() <= crate::lp::MAX_ERRORS);
                assert!(e.errors.iter().all(|e| e.line_no >= 1));
                assert!(batch.is_empty());
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(
        accepted > 100,
        "mutations should not all be fatal ({accepted} accepted)"
    );
}

fn check_invariants(batch: &ParsedBatch<'_>) {
    let mut last_line_no = 1;
    for line in batch.lines() {
        assert!(!line.measurement().is_empty());
        assert!(line.line_no() >= last_line_no);
        last_line_no = line.line_no();
        let tags: Vec<(&str, &str)> = line.tags().collect();
        assert!(tags.windows(2).all(|w| w[0].0 < w[1].0), "{tags:?}");
        for (k, v) in &tags {
            assert!(!k.is_empty() && !v.is_empty());
            assert_eq!(line.tag(k), Some(*v));
        }
        let fields: Vec<_> = line.fields().collect();
        assert!(!fields.is_empty());
        for (i, (k, _)) in fields.iter().enumerate() {
            assert!(!k.is_empty());
            assert!(fields[i + 1..].iter().all(|(other, _)| other != k));
        }
    }
}
