//! Tests of the line-protocol parser: every syntax element, every error variant with its line
//! number, the error cap, batch reuse, and (in `differential`) agreement with the
//! `influxdb-line-protocol` crate on random lines.

mod differential;

use super::{parse, FieldValue, LineError, LineErrorKind, LpErrors, ParsedBatch, MAX_ERRORS};

/// A parsed line, owned, for comparisons.
#[derive(Clone, Debug, PartialEq)]
struct Owned {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, Value)>,
    timestamp: Option<i64>,
    line_no: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    F(f64),
    I(i64),
    U(u64),
    S(String),
    B(bool),
}

impl From<FieldValue<'_>> for Value {
    fn from(v: FieldValue<'_>) -> Self {
        match v {
            FieldValue::Float(f) => Value::F(f),
            FieldValue::Integer(i) => Value::I(i),
            FieldValue::Unsigned(u) => Value::U(u),
            FieldValue::String(s) => Value::S(s.to_string()),
            FieldValue::Boolean(b) => Value::B(b),
        }
    }
}

fn owned(batch: &ParsedBatch<'_>) -> Vec<Owned> {
    batch
        .lines()
        .map(|l| Owned {
            measurement: l.measurement().to_string(),
            tags: l
                .tags()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: l.fields().map(|(k, v)| (k.to_string(), v.into())).collect(),
            timestamp: l.timestamp(),
            line_no: l.line_no(),
        })
        .collect()
}

/// Parses `body`, which must be valid.
fn ok(body: &str) -> Vec<Owned> {
    let mut batch = ParsedBatch::default();
    match parse(body.as_bytes(), &mut batch) {
        Ok(()) => owned(&batch),
        Err(e) => panic!("{body:?} should parse, got: {e}"),
    }
}

/// Parses `body`, which must fail; the batch must then be empty.
fn errors(body: &[u8]) -> LpErrors {
    let mut batch = ParsedBatch::default();
    let e = parse(body, &mut batch).expect_err("should fail");
    assert!(batch.is_empty(), "nothing may be returned on error");
    e
}

/// The single error of `body`.
fn one_error(body: &str) -> LineError {
    let e = errors(body.as_bytes());
    assert_eq!(e.errors.len(), 1, "{body:?}: {e}");
    e.errors[0].clone()
}

fn kind(body: &str) -> LineErrorKind {
    one_error(body).kind
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn fields(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The value of the only field of a one-line body.
fn value(body: &str) -> Value {
    let lines = ok(body);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].fields.len(), 1);
    lines[0].fields[0].1.clone()
}

fn s(text: &str) -> String {
    text.to_string()
}

// ---- syntax ----

#[test]
fn full_line() {
    let lines = ok("cpu,host=a,region=west usage=1.5,count=3i,n=7u,ok=t,msg=\"hi\" 1690000000");
    assert_eq!(
        lines,
        vec![Owned {
            measurement: s("cpu"),
            tags: tags(&[("host", "a"), ("region", "west")]),
            fields: fields(&[
                ("usage", Value::F(1.5)),
                ("count", Value::I(3)),
                ("n", Value::U(7)),
                ("ok", Value::B(true)),
                ("msg", Value::S(s("hi"))),
            ]),
            timestamp: Some(1_690_000_000),
            line_no: 1,
        }]
    );
}

#[test]
fn tsbs_line() {
    let line = "cpu,hostname=host_0,region=eu-central-1,datacenter=eu-central-1a,rack=6,\
                os=Ubuntu16.10,arch=x86,team=SF,service=19,service_version=1,\
                service_environment=test usage_user=58i,usage_system=2i,usage_idle=24i,\
                usage_nice=61i,usage_iowait=22i,usage_irq=63i,usage_softirq=6i,usage_steal=44i,\
                usage_guest=80i,usage_guest_nice=38i 1451606400000000000";
    let lines = ok(&format!("{line}\n{line}\n"));
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let keys: Vec<&str> = l.tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "arch",
                "datacenter",
                "hostname",
                "os",
                "rack",
                "region",
                "service",
                "service_environment",
                "service_version",
                "team"
            ]
        );
        assert_eq!(l.fields.len(), 10);
        assert_eq!(l.fields[0], (s("usage_user"), Value::I(58)));
        assert_eq!(l.fields[9], (s("usage_guest_nice"), Value::I(38)));
        assert_eq!(l.timestamp, Some(1_451_606_400_000_000_000));
    }
    assert_eq!(lines[1].line_no, 2);
}

#[test]
fn without_tags_or_timestamp() {
    let lines = ok("m f=1");
    assert_eq!(lines[0].measurement, "m");
    assert!(lines[0].tags.is_empty());
    assert_eq!(lines[0].timestamp, None);
}

#[test]
fn timestamps() {
    let ts = |body: &str| ok(body)[0].timestamp;
    assert_eq!(ts("m f=1 -5"), Some(-5));
    assert_eq!(ts("m f=1 0"), Some(0));
    assert_eq!(ts("m f=1 9223372036854775807"), Some(i64::MAX));
    assert_eq!(ts("m f=1 -9223372036854775808"), Some(i64::MIN));
    assert_eq!(ts("m f=1 0000000000000000000000042"), Some(42));
    assert_eq!(ts("m f=1 42   "), Some(42));
    assert_eq!(ts("m f=1 42\t"), Some(42));
    assert_eq!(ts("m f=1   42"), Some(42));
    assert_eq!(ts("m f=1 \t"), None);
    assert_eq!(ts("m f=1   "), None);
}

#[test]
fn runs_of_spaces_between_sections() {
    let lines = ok("m,t=v    f=1    7");
    assert_eq!(lines[0].tags, tags(&[("t", "v")]));
    assert_eq!(lines[0].timestamp, Some(7));
}

#[test]
fn line_ends_lf_crlf_and_lone_cr() {
    for body in [
        "a f=1\nb f=2\nc f=3",
        "a f=1\r\nb f=2\r\nc f=3\r\n",
        "a f=1\rb f=2\rc f=3\r",
        "a f=1 1\r\nb f=2 2\rc f=3 3\n",
    ] {
        let lines = ok(body);
        let names: Vec<&str> = lines.iter().map(|l| l.measurement.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"], "{body:?}");
        let numbers: Vec<usize> = lines.iter().map(|l| l.line_no).collect();
        assert_eq!(numbers, [1, 2, 3], "{body:?}");
    }
    assert_eq!(ok("m f=1\r\n")[0].fields[0].1, Value::F(1.0));
}

#[test]
fn comments_blank_lines_and_leading_whitespace() {
    let body = "# a comment\n\n   \t\n  m f=1\n\t# indented comment\r\n\x0c n f=2\n#m f=3";
    let lines = ok(body);
    let got: Vec<(&str, usize)> = lines
        .iter()
        .map(|l| (l.measurement.as_str(), l.line_no))
        .collect();
    assert_eq!(got, [("m", 4), ("n", 6)]);
}

#[test]
fn hash_inside_a_line_is_not_a_comment() {
    let lines = ok("m#x,t=#y f=1");
    assert_eq!(lines[0].measurement, "m#x");
    assert_eq!(lines[0].tags, tags(&[("t", "#y")]));
}

#[test]
fn empty_bodies() {
    assert!(ok("").is_empty());
    assert!(ok("\n\r\n  \n").is_empty());
    assert!(ok("# only\n# comments").is_empty());
}

#[test]
fn measurement_escapes() {
    assert_eq!(ok(r"a\,b\ c f=1")[0].measurement, "a,b c");
    // `\\`, `\"` and `\'` are accepted and kept verbatim, as CnosDB does.
    assert_eq!(ok(r#"a\\b\"c\'d f=1"#)[0].measurement, r#"a\\b\"c\'d"#);
    // `=` needs no escape in a measurement.
    assert_eq!(ok("a=b f=1")[0].measurement, "a=b");
    assert_eq!(
        kind(r"a\=b f=1"),
        LineErrorKind::InvalidEscape {
            escaped: '=',
            column: 2
        }
    );
}

#[test]
fn tag_and_field_key_escapes() {
    let lines = ok(r"m,k\ 1\=\,=v\ 1\=\, f\ 1\=\,=1i");
    assert_eq!(lines[0].tags, tags(&[("k 1=,", "v 1=,")]));
    assert_eq!(lines[0].fields, fields(&[("f 1=,", Value::I(1))]));
    let lines = ok(r#"m,k\\=v\"\' f\'=1"#);
    assert_eq!(lines[0].tags, tags(&[(r"k\\", r#"v\"\'"#)]));
    assert_eq!(lines[0].fields[0].0, r"f\'");
}

#[test]
fn unescaped_equals_in_tag_value() {
    assert_eq!(ok("m,t=a=b f=1")[0].tags, tags(&[("t", "a=b")]));
}

#[test]
fn tabs_are_ordinary_characters_in_names() {
    let lines = ok("m\tx,t\tk=v\tw f\tk=1");
    assert_eq!(lines[0].measurement, "m\tx");
    assert_eq!(lines[0].tags, tags(&[("t\tk", "v\tw")]));
    assert_eq!(lines[0].fields[0].0, "f\tk");
}

#[test]
fn unicode_names_and_values() {
    let lines = ok("温度,城市=北京 值=1.5,说明=\"晴 天\" 1");
    assert_eq!(lines[0].measurement, "温度");
    assert_eq!(lines[0].tags, tags(&[("城市", "北京")]));
    assert_eq!(lines[0].fields[1], (s("说明"), Value::S(s("晴 天"))));
}

#[test]
fn bytes_that_look_like_delimiters_to_the_word_scan() {
    // `<`, `]`, `|`, `}` and 0x1C/0x1D are candidates of the 8-byte scan but no delimiters.
    let lines = ok("m<]|}\x1c\x1d,k<]|}=v<]|}\x1c f<]|}=1 1");
    assert_eq!(lines[0].measurement, "m<]|}\x1c\x1d");
    assert_eq!(lines[0].tags, tags(&[("k<]|}", "v<]|}\x1c")]));
    assert_eq!(lines[0].fields[0].0, "f<]|}");
}

#[test]
fn long_names_cross_word_boundaries() {
    let m = "measurement_with_a_rather_long_name_ü_and_more";
    let k = "a_tag_key_longer_than_sixteen_bytes";
    let v = "a value, with escapes, that spans several words";
    let body = format!(
        "{m},{k}={} {k}=\"x\" 5",
        v.replace(' ', r"\ ").replace(',', r"\,")
    );
    let lines = ok(&body);
    assert_eq!(lines[0].measurement, m);
    assert_eq!(lines[0].tags, tags(&[(k, v)]));
    assert_eq!(lines[0].fields[0].0, k);
}

#[test]
fn string_fields() {
    assert_eq!(value(r#"m f="a b,c=d""#), Value::S(s("a b,c=d")));
    assert_eq!(value(r#"m f="""#), Value::S(s("")));
    assert_eq!(value(r#"m f="say \"hi\"""#), Value::S(s(r#"say "hi""#)));
    assert_eq!(value(r#"m f="back\\slash""#), Value::S(s(r"back\slash")));
    // Any other backslash is kept (InfluxDB's rule; CnosDB rejects some).
    assert_eq!(value(r#"m f="a\nb\'c\d""#), Value::S(s(r"a\nb\'c\d")));
    assert_eq!(value(r#"m f="ends with \\""#), Value::S(s(r"ends with \")));
    assert_eq!(value("m f=\"tab\there\""), Value::S(s("tab\there")));
}

#[test]
fn strings_with_line_breaks_keep_line_numbers() {
    let body = "m f=\"one\ntwo\r\nthree\" 1\nn f=1\r\no g=\"x\ry\"\np f=2";
    let lines = ok(body);
    assert_eq!(lines[0].fields[0].1, Value::S(s("one\ntwo\r\nthree")));
    let numbers: Vec<(&str, usize)> = lines
        .iter()
        .map(|l| (l.measurement.as_str(), l.line_no))
        .collect();
    assert_eq!(numbers, [("m", 1), ("n", 4), ("o", 5), ("p", 7)]);
    let e = one_error("m f=\"a\nb\"\n\nbad");
    assert_eq!(e.line_no, 4);
}

#[test]
fn floats() {
    for (text, want) in [
        ("1", 1.0),
        ("-1", -1.0),
        ("+1", 1.0),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        ("1.", 1.0),
        ("-.5", -0.5),
        ("1e3", 1000.0),
        ("-1E-3", -0.001),
        ("1.5e+2", 150.0),
        ("0.1", 0.1),
        ("123456.789012345", 123_456.789_012_345),
        ("3.141592653589793238", std::f64::consts::PI),
        ("12345678901234567890", 12_345_678_901_234_567_890.0),
        ("9007199254740993", 9_007_199_254_740_992.0),
        ("1e400", f64::INFINITY),
        ("-inf", f64::NEG_INFINITY),
        ("+Infinity", f64::INFINITY),
    ] {
        assert_eq!(value(&format!("m f={text}")), Value::F(want), "{text}");
    }
    assert!(matches!(value("m f=-0"), Value::F(z) if z == 0.0 && z.is_sign_negative()));
    assert!(matches!(value("m f=+nan"), Value::F(n) if n.is_nan()));
    for bad in [
        "inf", "nan", ".5", "1e", "1.2.3", "--1", "1_000", "0x10", "1.5.", "-",
    ] {
        let e = kind(&format!("m f={bad} 1"));
        assert_eq!(
            e,
            LineErrorKind::InvalidFieldValue {
                key: s("f"),
                value: s(bad)
            }
        );
    }
}

#[test]
fn fast_float_path_matches_the_full_parser() {
    // The one-pass decimal path must give the correctly rounded value `str::parse` gives.
    for text in [
        "0.1",
        "0.3",
        "2.675",
        "1.005",
        "123.456",
        "99999999.9999999",
        "0.000000000000001",
        "-7.1",
        "5e-324",
        "1.7976931348623157",
        "4.35",
        "58.297301",
    ] {
        let want: f64 = text.parse().unwrap();
        assert_eq!(value(&format!("m f={text}")), Value::F(want), "{text}");
    }
}

#[test]
fn integers() {
    assert_eq!(value("m f=0i"), Value::I(0));
    assert_eq!(value("m f=-42i"), Value::I(-42));
    assert_eq!(value("m f=9223372036854775807i"), Value::I(i64::MAX));
    assert_eq!(value("m f=-9223372036854775808i"), Value::I(i64::MIN));
    assert_eq!(value("m f=00000000000000000000007i"), Value::I(7));
    for bad in ["+1i", "1.5i", "-i", "1ii", "1i2", "1e3i"] {
        assert!(
            matches!(
                kind(&format!("m f={bad}")),
                LineErrorKind::InvalidFieldValue { .. }
            ),
            "{bad}"
        );
    }
}

#[test]
fn unsigned() {
    assert_eq!(value("m f=0u"), Value::U(0));
    assert_eq!(value("m f=18446744073709551615u"), Value::U(u64::MAX));
    for bad in ["-1u", "+1u", "1.5u", "u"] {
        assert!(
            matches!(
                kind(&format!("m f={bad}")),
                LineErrorKind::InvalidFieldValue { .. }
            ),
            "{bad}"
        );
    }
}

#[test]
fn booleans() {
    for t in ["t", "T", "true", "True", "TRUE"] {
        assert_eq!(value(&format!("m f={t}")), Value::B(true), "{t}");
    }
    for f in ["f", "F", "false", "False", "FALSE"] {
        assert_eq!(value(&format!("m f={f}")), Value::B(false), "{f}");
    }
    for bad in ["tRUE", "TRue", "yes", "truee", "fals"] {
        assert!(
            matches!(
                kind(&format!("m f={bad}")),
                LineErrorKind::InvalidFieldValue { .. }
            ),
            "{bad}"
        );
    }
}

#[test]
fn tags_are_sorted_and_fields_keep_their_order() {
    let lines = ok("m,z=1,a=2,m=3 z=1,a=2,m=3");
    assert_eq!(lines[0].tags, tags(&[("a", "2"), ("m", "3"), ("z", "1")]));
    let keys: Vec<&str> = lines[0].fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["z", "a", "m"]);
    // Sorted by the unescaped bytes.
    let lines = ok(r"m,b=1,a\ z=2,a=3 f=1");
    assert_eq!(lines[0].tags, tags(&[("a", "3"), ("a z", "2"), ("b", "1")]));
}

#[test]
fn tag_lookup() {
    let mut batch = ParsedBatch::default();
    parse(b"m,b=2,a=1,c\\ d=3 f=1", &mut batch).unwrap();
    let line = batch.line(0).unwrap();
    assert_eq!(line.tag("a"), Some("1"));
    assert_eq!(line.tag("c d"), Some("3"));
    assert_eq!(line.tag("x"), None);
    assert_eq!((line.tag_count(), line.field_count()), (3, 1));
    assert!(batch.line(1).is_none());
}

#[test]
fn key_layout_cache_follows_changing_lines() {
    // Same keys in the same order (cache hit), then other orders and counts.
    let body = "m,b=1,a=2 y=1,x=2\n\
                m,b=3,a=4 y=3,x=4\n\
                m,a=5,b=6 x=5,y=6\n\
                m,c=7,b=8,a=9 z=7\n\
                m,b=1,a=2 y=1,x=2";
    let lines = ok(body);
    assert_eq!(lines[0].tags, tags(&[("a", "2"), ("b", "1")]));
    assert_eq!(lines[1].tags, tags(&[("a", "4"), ("b", "3")]));
    assert_eq!(lines[2].tags, tags(&[("a", "5"), ("b", "6")]));
    assert_eq!(lines[3].tags, tags(&[("a", "9"), ("b", "8"), ("c", "7")]));
    assert_eq!(lines[4].tags, tags(&[("a", "2"), ("b", "1")]));
}

#[test]
fn keys_sharing_a_16_byte_prefix() {
    let a = "shared_prefix_16";
    let body = format!("m,{a}X=1,{a}Y=2 {a}X=1,{a}Y=2\nm,{a}Y=1,{a}X=2 {a}Y=1,{a}X=2");
    let lines = ok(&body);
    assert_eq!(
        lines[1].tags,
        tags(&[(&format!("{a}X"), "2"), (&format!("{a}Y"), "1")])
    );
    // A line with the same prefixes as a valid earlier line but a real duplicate after byte 16
    // must not be let through by the cache.
    let e = errors(format!("m,{a}X=1,{a}Y=2 f=1\nm,{a}Z=1,{a}Z=2 f=1").as_bytes());
    assert_eq!(
        e.errors[0],
        LineError {
            line_no: 2,
            kind: LineErrorKind::DuplicateTag {
                key: format!("{a}Z")
            }
        }
    );
    let e = errors(format!("m {a}X=1,{a}Y=2\nm {a}Z=1,{a}Z=2").as_bytes());
    assert_eq!(e.errors[0].line_no, 2);
    assert!(
        matches!(&e.errors[0].kind, LineErrorKind::DuplicateField { key } if *key == format!("{a}Z"))
    );
}

#[test]
fn many_fields_use_the_sorting_duplicate_check() {
    let many: Vec<String> = (0..40).map(|i| format!("f{i}={i}i")).collect();
    let body = format!("m {}", many.join(","));
    assert_eq!(ok(&body)[0].fields.len(), 40);
    let e = kind(&format!("{body},f17=1"));
    assert_eq!(e, LineErrorKind::DuplicateField { key: s("f17") });
    let many_tags: Vec<String> = (0..40).map(|i| format!("t{i}=v")).collect();
    let lines = ok(&format!("m,{} f=1", many_tags.join(",")));
    assert_eq!(lines[0].tags.len(), 40);
    assert!(lines[0].tags.windows(2).all(|w| w[0].0 < w[1].0));
}

// ---- errors, one test per variant, with line numbers ----

#[test]
fn invalid_utf8_names_line_and_offset() {
    let e = errors(b"m f=1\nm,t=\xff f=1\n");
    assert_eq!(
        e.errors,
        vec![LineError {
            line_no: 2,
            kind: LineErrorKind::InvalidUtf8 {
                offset: 10,
                column: 5
            }
        }]
    );
    assert!(e.is_invalid_utf8());
    let e = errors(b"a f=1\r\nb f=1\rc f=\"\xc3\"");
    assert_eq!(e.errors[0].line_no, 3);
    assert!(!errors(b"m f=x").is_invalid_utf8());
}

#[test]
fn body_too_large() {
    let e = super::parser::check_body(b"m f=1", 4).unwrap_err();
    assert_eq!(
        e.errors[0],
        LineError {
            line_no: 1,
            kind: LineErrorKind::BodyTooLarge { len: 5, max: 4 }
        }
    );
    assert!(super::parser::check_body(b"m f=1", 5).is_ok());
}

#[test]
fn missing_measurement() {
    let e = one_error("m f=1\n,t=1 f=1");
    assert_eq!(e.line_no, 2);
    assert_eq!(e.kind, LineErrorKind::MissingMeasurement { column: 1 });
}

#[test]
fn missing_fields() {
    for body in [
        "m",
        "m ",
        "m,t=1",
        "m,t=1 ",
        "m,t=1   \r\nn f=1",
        "m\nn f=1",
    ] {
        let e = one_error(body);
        assert_eq!(
            (e.line_no, e.kind),
            (1, LineErrorKind::MissingFields),
            "{body:?}"
        );
    }
}

#[test]
fn empty_tag_key() {
    assert_eq!(kind("m,=v f=1"), LineErrorKind::EmptyTagKey { column: 3 });
    assert_eq!(kind("m,t=1, f=1"), LineErrorKind::EmptyTagKey { column: 7 });
    assert_eq!(kind("m, f=1"), LineErrorKind::EmptyTagKey { column: 3 });
}

#[test]
fn tag_without_value() {
    assert_eq!(
        kind("m,t f=1"),
        LineErrorKind::TagWithoutValue { key: s("t") }
    );
    assert_eq!(
        kind("m,t,u=1 f=1"),
        LineErrorKind::TagWithoutValue { key: s("t") }
    );
    assert_eq!(kind("m,t"), LineErrorKind::TagWithoutValue { key: s("t") });
}

#[test]
fn empty_tag_value() {
    let e = one_error("\n\nm,t= f=1");
    assert_eq!(e.line_no, 3);
    assert_eq!(e.kind, LineErrorKind::EmptyTagValue { key: s("t") });
    assert_eq!(
        kind("m,t=,u=1 f=1"),
        LineErrorKind::EmptyTagValue { key: s("t") }
    );
}

#[test]
fn empty_field_key() {
    assert_eq!(kind("m =1"), LineErrorKind::EmptyFieldKey { column: 3 });
    assert_eq!(kind("m f=1,"), LineErrorKind::EmptyFieldKey { column: 7 });
    assert_eq!(
        kind("m f=1,,g=2"),
        LineErrorKind::EmptyFieldKey { column: 7 }
    );
}

#[test]
fn field_without_value() {
    assert_eq!(
        kind("m f"),
        LineErrorKind::FieldWithoutValue { key: s("f") }
    );
    assert_eq!(
        kind("m f 1"),
        LineErrorKind::FieldWithoutValue { key: s("f") }
    );
    assert_eq!(
        kind("m f g=1"),
        LineErrorKind::FieldWithoutValue { key: s("f") }
    );
    // CnosDB issue 1533: a field written as a tag leaves the timestamp as a field key.
    let e = one_error("test,t1=t11 f1=1\ntest,t2=t22,f2=2 1642176000000000000");
    assert_eq!(e.line_no, 2);
    assert_eq!(
        e.kind,
        LineErrorKind::FieldWithoutValue {
            key: s("1642176000000000000")
        }
    );
}

#[test]
fn empty_field_value() {
    for body in ["m f=", "m f= 1", "m f=,g=1", "m f=\r\n"] {
        assert_eq!(
            kind(body),
            LineErrorKind::EmptyFieldValue { key: s("f") },
            "{body:?}"
        );
    }
}

#[test]
fn invalid_field_value() {
    let e = one_error("m f=1\nm f=2\nm f=abc");
    assert_eq!(e.line_no, 3);
    assert_eq!(
        e.kind,
        LineErrorKind::InvalidFieldValue {
            key: s("f"),
            value: s("abc")
        }
    );
    assert_eq!(
        e.to_string(),
        r#"line 3: invalid field value "abc" for field "f""#
    );
    assert_eq!(
        kind(r#"m f="a"b 1"#),
        LineErrorKind::InvalidFieldValue {
            key: s("f"),
            value: s(r#""a"b"#)
        }
    );
    assert_eq!(
        kind("m f=1\t2"),
        LineErrorKind::InvalidFieldValue {
            key: s("f"),
            value: s("1\t2")
        }
    );
}

#[test]
fn integer_overflow() {
    for (text, name) in [
        ("9223372036854775808i", "i64 max + 1"),
        ("-9223372036854775809i", "i64 min - 1"),
        ("99999999999999999999999i", "long"),
        ("18446744073709551616u", "u64 max + 1"),
    ] {
        let e = one_error(&format!("m f=1\nm g={text}"));
        assert_eq!(e.line_no, 2, "{name}");
        assert_eq!(
            e.kind,
            LineErrorKind::IntegerOverflow {
                key: s("g"),
                value: s(text)
            },
            "{name}"
        );
    }
}

#[test]
fn unterminated_string() {
    let e = one_error("m f=1\nm f=\"never closed\nm f=1\n");
    assert_eq!(e.line_no, 2);
    assert_eq!(e.kind, LineErrorKind::UnterminatedString { key: s("f") });
    assert_eq!(
        kind(r#"m f="escaped quote at end\""#),
        LineErrorKind::UnterminatedString { key: s("f") }
    );
}

#[test]
fn invalid_escape() {
    assert_eq!(
        kind(r"m,t=a\xb f=1"),
        LineErrorKind::InvalidEscape {
            escaped: 'x',
            column: 6
        }
    );
    assert_eq!(
        kind(r"m\n f=1"),
        LineErrorKind::InvalidEscape {
            escaped: 'n',
            column: 2
        }
    );
    assert_eq!(
        kind("m f\\é=1"),
        LineErrorKind::InvalidEscape {
            escaped: 'é',
            column: 4
        }
    );
    let e = one_error("m f=1\nm,t=a\\\nb f=1\n");
    assert_eq!(e.line_no, 2);
    assert_eq!(
        e.kind,
        LineErrorKind::InvalidEscape {
            escaped: '\n',
            column: 6
        }
    );
}

#[test]
fn trailing_backslash() {
    assert_eq!(
        kind("m,t=a\\"),
        LineErrorKind::TrailingBackslash { column: 6 }
    );
    assert_eq!(kind("m\\"), LineErrorKind::TrailingBackslash { column: 2 });
}

#[test]
fn invalid_timestamp() {
    for text in ["abc", "1.5", "+1", "1e9", "12a", "-"] {
        let e = one_error(&format!("m f=1\n\nm f=1 {text}"));
        assert_eq!(e.line_no, 3, "{text}");
        assert_eq!(
            e.kind,
            LineErrorKind::InvalidTimestamp { value: s(text) },
            "{text}"
        );
    }
}

#[test]
fn timestamp_overflow() {
    for text in [
        "9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901",
    ] {
        assert_eq!(
            kind(&format!("m f=1 {text}")),
            LineErrorKind::TimestampOverflow { value: s(text) },
            "{text}"
        );
    }
}

#[test]
fn trailing_content() {
    assert_eq!(
        kind("m f=1 1 m2 f=2 2"),
        LineErrorKind::TrailingContent {
            content: s("m2 f=2 2")
        }
    );
    assert_eq!(
        kind("m f=1 1 x\n"),
        LineErrorKind::TrailingContent { content: s("x") }
    );
}

#[test]
fn duplicate_tag() {
    let e = one_error("m,a=1 f=1\nm,b=1,a=1,b=2 f=1");
    assert_eq!(e.line_no, 2);
    assert_eq!(e.kind, LineErrorKind::DuplicateTag { key: s("b") });
    assert_eq!(
        e.to_string(),
        r#"line 2: tag key "b" appears more than once"#
    );
    // Equal after unescaping.
    assert_eq!(
        kind(r"m,a\ b=1,a\ b=2 f=1"),
        LineErrorKind::DuplicateTag { key: s("a b") }
    );
}

#[test]
fn duplicate_field() {
    let e = one_error("m f=1\nm f=1,g=2,f=3");
    assert_eq!(e.line_no, 2);
    assert_eq!(e.kind, LineErrorKind::DuplicateField { key: s("f") });
    assert_eq!(
        kind(r#"m f=1,f="x""#),
        LineErrorKind::DuplicateField { key: s("f") }
    );
    // A tag and a field may share a name (the schema check decides).
    assert_eq!(ok("m,x=1 x=1").len(), 1);
}

// ---- reporting ----

#[test]
fn every_bad_line_is_reported_and_nothing_returned() {
    let body = "m f=1\nm f=abc\nm f=2\nm,t f=1\n# comment\nm f=1 5 x\nm f=3";
    let e = errors(body.as_bytes());
    let lines: Vec<usize> = e.errors.iter().map(|e| e.line_no).collect();
    assert_eq!(lines, [2, 4, 6]);
    assert!(!e.truncated);
    assert_eq!(
        e.to_string(),
        "line 2: invalid field value \"abc\" for field \"f\"; \
         line 4: tag key \"t\" is not followed by \"=\" and a value; \
         line 6: unexpected \"x\" after the timestamp"
    );
}

#[test]
fn resynchronises_after_a_bad_line_with_a_multiline_string() {
    let e = errors(b"m f=abc,g=\"a\nb\" 1\nm f=1\nm f=oops");
    let lines: Vec<usize> = e.errors.iter().map(|e| e.line_no).collect();
    assert_eq!(lines, [1, 4]);
}

#[test]
fn errors_are_capped() {
    let bad = "m f=x\n".repeat(MAX_ERRORS + 50);
    let e = errors(bad.as_bytes());
    assert_eq!(e.errors.len(), MAX_ERRORS);
    assert!(e.truncated);
    assert_eq!(e.errors[MAX_ERRORS - 1].line_no, MAX_ERRORS);
    let text = e.to_string();
    assert!(text.starts_with("line 1: invalid field value \"x\" for field \"f\"; line 2:"));
    assert!(
        text.ends_with("; and 95 more bad lines (stopped after 100 errors)"),
        "{text}"
    );

    let exactly = "m f=x\n".repeat(MAX_ERRORS);
    let e = errors(exactly.as_bytes());
    assert_eq!(e.errors.len(), MAX_ERRORS);
    assert!(!e.truncated);
}

#[test]
fn long_values_are_cut_in_messages() {
    let long = "x".repeat(500);
    match kind(&format!("m f={long}")) {
        LineErrorKind::InvalidFieldValue { value, .. } => {
            assert_eq!(value.chars().count(), 65);
            assert!(value.ends_with('…'));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn batch_is_reused_and_recycled() {
    let mut batch = ParsedBatch::default();
    parse(b"a,t=x\\ y f=\"q\\\"\" 1\nb f=2", &mut batch).unwrap();
    assert_eq!(batch.len(), 2);
    assert!(parse(b"bad", &mut batch).is_err());
    assert!(batch.is_empty());
    parse(b"c f=3", &mut batch).unwrap();
    assert_eq!(owned(&batch)[0].measurement, "c");
    assert_eq!((batch.tag_count(), batch.field_count()), (0, 1));
    let held = batch.capacity_bytes();
    assert!(held > 0);

    let body = String::from("d,k\\,=v f=4i");
    let mut next: ParsedBatch<'_> = batch.recycle();
    assert!(next.is_empty());
    parse(body.as_bytes(), &mut next).unwrap();
    let lines = owned(&next);
    assert_eq!(lines[0].tags, tags(&[("k,", "v")]));
    assert_eq!(lines[0].fields[0].1, Value::I(4));
}
