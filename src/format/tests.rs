//! Byte-exact tests of the answer encoders and of `Accept` negotiation.
//!
//! Expected bytes come from the CnosDB reference (docs/cnosdb-compat §1.7: the worked `air`
//! example, `select 1`, empty answers); float and timestamp text is also cross-checked against
//! the libraries CnosDB's bytes come from (serde_json/ryu for JSON floats, chrono through
//! arrow's temporal conversions for timestamps) over many values.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, Int8Array, LargeStringArray, ListArray, NullArray, RecordBatch,
    StringArray, StringViewArray, StructArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt16Array,
    UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::temporal_conversions::as_datetime;

use super::{negotiate, Encoder, Format, FormatError};

const ALL: [Format; 5] = [
    Format::Csv,
    Format::Tsv,
    Format::Json,
    Format::NdJson,
    Format::Table,
];

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

/// The whole answer: begin, every batch, finish, into one buffer.
fn encode(format: Format, schema: SchemaRef, batches: &[RecordBatch]) -> String {
    String::from_utf8(chunks(format, schema, batches).concat()).unwrap()
}

/// What each call appended, as a chunked answer would send it.
fn chunks(format: Format, schema: SchemaRef, batches: &[RecordBatch]) -> Vec<Vec<u8>> {
    let mut encoder = Encoder::new(format, schema);
    let mut chunks = Vec::new();
    let mut out = Vec::new();
    encoder.begin(&mut out);
    chunks.push(std::mem::take(&mut out));
    for batch in batches {
        encoder.batch(batch, &mut out).unwrap();
        chunks.push(std::mem::take(&mut out));
    }
    encoder.finish(&mut out).unwrap();
    chunks.push(out);
    chunks
}

fn encode_one(format: Format, batch: &RecordBatch) -> String {
    encode(format, batch.schema(), std::slice::from_ref(batch))
}

/// `SELECT time, station, temperature FROM air ORDER BY time` of compat §1.7.
fn air() -> RecordBatch {
    batch(vec![
        (
            "time",
            Arc::new(TimestampNanosecondArray::from(vec![
                1644125400000000000,
                1644125460000000000,
            ])),
        ),
        (
            "station",
            Arc::new(StringArray::from(vec!["XiaoMaiDao", "LianYunGang"])),
        ),
        (
            "temperature",
            Arc::new(Float64Array::from(vec![56.0, 69.5])),
        ),
    ])
}

#[test]
fn worked_example_csv() {
    assert_eq!(
        encode_one(Format::Csv, &air()),
        "time,station,temperature\n\
         2022-02-06T05:30:00.000000000,XiaoMaiDao,56.0\n\
         2022-02-06T05:31:00.000000000,LianYunGang,69.5\n"
    );
}

#[test]
fn worked_example_tsv() {
    assert_eq!(
        encode_one(Format::Tsv, &air()),
        "time\tstation\ttemperature\n\
         2022-02-06T05:30:00.000000000\tXiaoMaiDao\t56.0\n\
         2022-02-06T05:31:00.000000000\tLianYunGang\t69.5\n"
    );
}

#[test]
fn worked_example_json() {
    assert_eq!(
        encode_one(Format::Json, &air()),
        r#"[{"time":"2022-02-06T05:30:00","station":"XiaoMaiDao","temperature":56.0},{"time":"2022-02-06T05:31:00","station":"LianYunGang","temperature":69.5}]"#
    );
}

#[test]
fn worked_example_ndjson() {
    assert_eq!(
        encode_one(Format::NdJson, &air()),
        "{\"time\":\"2022-02-06T05:30:00\",\"station\":\"XiaoMaiDao\",\"temperature\":56.0}\n\
         {\"time\":\"2022-02-06T05:31:00\",\"station\":\"LianYunGang\",\"temperature\":69.5}\n"
    );
}

#[test]
fn worked_example_table() {
    assert_eq!(
        encode_one(Format::Table, &air()),
        "+---------------------+-------------+-------------+\n\
         | time                | station     | temperature |\n\
         +---------------------+-------------+-------------+\n\
         | 2022-02-06T05:30:00 | XiaoMaiDao  | 56.0        |\n\
         | 2022-02-06T05:31:00 | LianYunGang | 69.5        |\n\
         +---------------------+-------------+-------------+"
    );
}

#[test]
fn content_types() {
    let types: Vec<_> = ALL.iter().map(|f| f.content_type()).collect();
    assert_eq!(
        types,
        [
            "text/csv",
            "text/tsv",
            "application/json",
            "application/nd-json",
            "text/table"
        ]
    );
}

#[test]
fn empty_answer_per_format() {
    let schema = air().schema();
    let empty = RecordBatch::new_empty(schema.clone());
    let expected = [
        (Format::Csv, "time,station,temperature\n"),
        (Format::Tsv, "time\tstation\ttemperature\n"),
        (Format::Json, "[]"),
        (Format::NdJson, ""),
        (
            Format::Table,
            "+------+---------+-------------+\n\
             | time | station | temperature |\n\
             +------+---------+-------------+\n\
             +------+---------+-------------+",
        ),
    ];
    for (format, bytes) in expected {
        // No batch at all, and one empty batch (what CnosDB's planner yields), answer alike.
        assert_eq!(encode(format, schema.clone(), &[]), bytes, "{format}");
        assert_eq!(
            encode(format, schema.clone(), std::slice::from_ref(&empty)),
            bytes,
            "{format}"
        );
    }
}

#[test]
fn select_one() {
    let one = batch(vec![("Int64(1)", Arc::new(Int64Array::from(vec![1])))]);
    assert_eq!(encode_one(Format::Csv, &one), "Int64(1)\n1\n");
    assert_eq!(encode_one(Format::Json, &one), r#"[{"Int64(1)":1}]"#);
    assert_eq!(encode_one(Format::NdJson, &one), "{\"Int64(1)\":1}\n");
    assert_eq!(
        encode_one(Format::Table, &one),
        "+----------+\n| Int64(1) |\n+----------+\n| 1        |\n+----------+"
    );
}

#[test]
fn insert_rows_count() {
    let rows = batch(vec![("rows", Arc::new(UInt64Array::from(vec![1])))]);
    assert_eq!(encode_one(Format::Csv, &rows), "rows\n1\n");
}

fn with_nulls() -> RecordBatch {
    batch(vec![
        (
            "t",
            Arc::new(StringArray::from(vec![Some("a"), None, None])),
        ),
        (
            "f",
            Arc::new(Float64Array::from(vec![None, Some(1.5), None])),
        ),
        (
            "b",
            Arc::new(BooleanArray::from(vec![Some(true), None, None])),
        ),
    ])
}

#[test]
fn nulls_are_empty_csv_fields() {
    assert_eq!(
        encode_one(Format::Csv, &with_nulls()),
        "t,f,b\na,,true\n,1.5,\n,,\n"
    );
    assert_eq!(
        encode_one(Format::Tsv, &with_nulls()),
        "t\tf\tb\na\t\ttrue\n\t1.5\t\n\t\t\n"
    );
}

#[test]
fn nulls_are_omitted_json_keys() {
    assert_eq!(
        encode_one(Format::Json, &with_nulls()),
        r#"[{"t":"a","b":true},{"f":1.5},{}]"#
    );
    assert_eq!(
        encode_one(Format::NdJson, &with_nulls()),
        "{\"t\":\"a\",\"b\":true}\n{\"f\":1.5}\n{}\n"
    );
}

#[test]
fn nulls_in_table_are_blank() {
    assert_eq!(
        encode_one(Format::Table, &with_nulls()),
        "+---+-----+------+\n\
         | t | f   | b    |\n\
         +---+-----+------+\n\
         | a |     | true |\n\
         |   | 1.5 |      |\n\
         |   |     |      |\n\
         +---+-----+------+"
    );
}

#[test]
fn single_empty_field_is_quoted() {
    // The csv crate (so arrow-csv, so CnosDB) writes a lone empty field as `""`.
    let one = batch(vec![(
        "v",
        Arc::new(StringArray::from(vec![None, Some(""), Some("x")])),
    )]);
    assert_eq!(encode_one(Format::Csv, &one), "v\n\"\"\n\"\"\nx\n");
}

#[test]
fn csv_quotes_only_when_needed() {
    let texts = batch(vec![
        (
            "key",
            Arc::new(StringArray::from(vec![
                "test,t0=a",
                "say \"hi\"",
                "two\nlines",
                "cr\rhere",
                "tab\there",
                "plain text",
            ])),
        ),
        ("n", Arc::new(Int32Array::from(vec![1, 2, 3, 4, 5, 6]))),
    ]);
    assert_eq!(
        encode_one(Format::Csv, &texts),
        "key,n\n\"test,t0=a\",1\n\"say \"\"hi\"\"\",2\n\"two\nlines\",3\n\"cr\rhere\",4\n\
         tab\there,5\nplain text,6\n"
    );
    assert_eq!(
        encode_one(Format::Tsv, &texts),
        "key\tn\ntest,t0=a\t1\n\"say \"\"hi\"\"\"\t2\n\"two\nlines\"\t3\n\"cr\rhere\"\t4\n\
         \"tab\there\"\t5\nplain text\t6\n"
    );
}

#[test]
fn csv_header_is_quoted_when_needed() {
    let odd = batch(vec![
        ("a,b", Arc::new(Int8Array::from(vec![1]))),
        ("say \"x\"", Arc::new(Int8Array::from(vec![2]))),
    ]);
    assert_eq!(
        encode_one(Format::Csv, &odd),
        "\"a,b\",\"say \"\"x\"\"\"\n1,2\n"
    );
}

#[test]
fn json_strings_are_escaped_as_serde_json_does() {
    let nasty = [
        "test,t0=a",
        "say \"hi\"",
        "back\\slash",
        "two\nlines\r\n",
        "\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
        "ünïcødé ✓ 🦀",
        "</script>",
    ];
    let texts = batch(vec![("s", Arc::new(StringArray::from(nasty.to_vec())))]);
    let expected: Vec<String> = nasty
        .iter()
        .map(|s| format!("{{\"s\":{}}}", serde_json::to_string(s).unwrap()))
        .collect();
    assert_eq!(
        encode_one(Format::Json, &texts),
        format!("[{}]", expected.join(","))
    );
    let parsed: serde_json::Value =
        serde_json::from_str(&encode_one(Format::Json, &texts)).unwrap();
    assert_eq!(parsed[1]["s"], "say \"hi\"");
}

#[test]
fn json_keys_are_escaped() {
    let odd = batch(vec![("a\"b", Arc::new(Int8Array::from(vec![1])))]);
    assert_eq!(encode_one(Format::Json, &odd), r#"[{"a\"b":1}]"#);
}

#[test]
fn multi_batch_json_is_one_array() {
    let batches = [
        air(),
        RecordBatch::new_empty(air().schema()),
        air().slice(1, 1),
        air(),
    ];
    let whole = encode(Format::Json, air().schema(), &batches);
    let parsed: serde_json::Value = serde_json::from_str(&whole).unwrap();
    let rows = parsed.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[2]["station"], "LianYunGang");
    assert_eq!(rows[4]["temperature"], 69.5);
    // Chunks: `[`, then each batch's objects (`,` leading every object after the first), `]`.
    let parts = chunks(Format::Json, air().schema(), &batches);
    assert_eq!(parts[0], b"[");
    assert!(parts[1].starts_with(b"{\"time\""));
    assert!(parts[2].is_empty());
    assert!(parts[3].starts_with(b",{"));
    assert_eq!(parts.last().unwrap(), b"]");
}

#[test]
fn batch_boundaries_do_not_change_bytes() {
    let whole = air();
    let split = [whole.slice(0, 1), whole.slice(1, 1)];
    for format in ALL {
        assert_eq!(
            encode(format, whole.schema(), &split),
            encode_one(format, &whole),
            "{format}"
        );
    }
}

#[test]
fn csv_header_goes_in_the_first_chunk_only() {
    let parts = chunks(
        Format::Csv,
        air().schema(),
        &[air().slice(0, 1), air().slice(1, 1)],
    );
    assert_eq!(parts[0], b"time,station,temperature\n");
    assert_eq!(parts[1], b"2022-02-06T05:30:00.000000000,XiaoMaiDao,56.0\n");
    assert_eq!(
        parts[2],
        b"2022-02-06T05:31:00.000000000,LianYunGang,69.5\n"
    );
    assert!(parts[3].is_empty());
}

#[test]
fn ndjson_chunks_are_whole_lines() {
    let parts = chunks(Format::NdJson, air().schema(), &[air(), air()]);
    assert!(parts[0].is_empty());
    assert_eq!(parts[1], parts[2]);
    assert_eq!(parts[1].iter().filter(|&&b| b == b'\n').count(), 2);
    assert!(parts[3].is_empty());
}

#[test]
fn table_is_drawn_in_finish() {
    let parts = chunks(Format::Table, air().schema(), &[air()]);
    assert!(parts[0].is_empty() && parts[1].is_empty());
    assert_eq!(parts[2], encode_one(Format::Table, &air()).into_bytes());
}

#[test]
fn begin_is_implied() {
    let mut encoder = Encoder::new(Format::Json, air().schema());
    let mut out = Vec::new();
    encoder.batch(&air().slice(0, 1), &mut out).unwrap();
    encoder.finish(&mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"[{"time":"2022-02-06T05:30:00","station":"XiaoMaiDao","temperature":56.0}]"#
    );
}

#[test]
fn calls_after_finish_fail() {
    let mut encoder = Encoder::new(Format::Csv, air().schema());
    let mut out = Vec::new();
    encoder.finish(&mut out).unwrap();
    assert!(matches!(
        encoder.batch(&air(), &mut out),
        Err(FormatError::AfterFinish)
    ));
    assert!(matches!(
        encoder.finish(&mut out),
        Err(FormatError::AfterFinish)
    ));
}

#[test]
fn timestamp_units_csv_and_json() {
    let cases: Vec<(ArrayRef, &str, &str)> = vec![
        (
            Arc::new(TimestampSecondArray::from(vec![1644125400])),
            "2022-02-06T05:30:00.000000000",
            "2022-02-06T05:30:00",
        ),
        (
            Arc::new(TimestampMillisecondArray::from(vec![1690510331001])),
            "2023-07-28T02:12:11.001000000",
            "2023-07-28T02:12:11.001",
        ),
        (
            Arc::new(TimestampMicrosecondArray::from(vec![1690510331000120])),
            "2023-07-28T02:12:11.000120000",
            "2023-07-28T02:12:11.000120",
        ),
        (
            Arc::new(TimestampNanosecondArray::from(vec![1])),
            "1970-01-01T00:00:00.000000001",
            "1970-01-01T00:00:00.000000001",
        ),
        (
            Arc::new(TimestampNanosecondArray::from(vec![1_500_000_000])),
            "1970-01-01T00:00:01.500000000",
            "1970-01-01T00:00:01.500",
        ),
    ];
    for (array, csv, json) in cases {
        let unit = array.data_type().clone();
        let one = batch(vec![("time", array)]);
        assert_eq!(
            encode_one(Format::Csv, &one),
            format!("time\n{csv}\n"),
            "{unit}"
        );
        assert_eq!(
            encode_one(Format::Json, &one),
            format!("[{{\"time\":\"{json}\"}}]"),
            "{unit}"
        );
    }
}

#[test]
fn negative_timestamps_count_back_from_1970() {
    let before = batch(vec![(
        "time",
        Arc::new(TimestampNanosecondArray::from(vec![
            -1,
            -1_500_000_000,
            -86_400_000_000_000,
            i64::MIN,
        ])) as ArrayRef,
    )]);
    assert_eq!(
        encode_one(Format::Csv, &before),
        "time\n1969-12-31T23:59:59.999999999\n1969-12-31T23:59:58.500000000\n\
         1969-12-31T00:00:00.000000000\n1677-09-21T00:12:43.145224192\n"
    );
    assert_eq!(
        encode_one(Format::Json, &before),
        r#"[{"time":"1969-12-31T23:59:59.999999999"},{"time":"1969-12-31T23:59:58.500"},{"time":"1969-12-31T00:00:00"},{"time":"1677-09-21T00:12:43.145224192"}]"#
    );
    let seconds = batch(vec![(
        "time",
        Arc::new(TimestampSecondArray::from(vec![
            -62_167_219_201,
            253_402_300_800,
        ])) as ArrayRef,
    )]);
    assert_eq!(
        encode_one(Format::Csv, &seconds),
        "time\n-0001-12-31T23:59:59.000000000\n+10000-01-01T00:00:00.000000000\n"
    );
}

/// A deterministic spread of i64s: small, large, negative, every unit's interesting range.
fn sample_i64s() -> Vec<i64> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut values = vec![0, 1, -1, 999, -999, 1_000, 86_399, 86_400, -86_401];
    for _ in 0..4000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let shift = state % 64;
        values.push((state as i64) >> shift);
    }
    values
}

#[test]
fn timestamps_match_chrono_in_every_unit() {
    use arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    for value in sample_i64s() {
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ] {
            let naive = match unit {
                TimeUnit::Second => as_datetime::<TimestampSecondType>(value),
                TimeUnit::Millisecond => as_datetime::<TimestampMillisecondType>(value),
                TimeUnit::Microsecond => as_datetime::<TimestampMicrosecondType>(value),
                TimeUnit::Nanosecond => as_datetime::<TimestampNanosecondType>(value),
            };
            // Beyond chrono's range (about ±262,000 years) arrow itself cannot format.
            let Some(naive) = naive else { continue };
            let mut csv = Vec::new();
            super::scalar::push_timestamp_csv(&mut csv, value, unit);
            assert_eq!(
                String::from_utf8(csv).unwrap(),
                naive.format("%Y-%m-%dT%H:%M:%S.%9f").to_string(),
                "{value} {unit:?}"
            );
            let mut json = Vec::new();
            super::scalar::push_timestamp_json(&mut json, value, unit);
            assert_eq!(
                String::from_utf8(json).unwrap(),
                format!("{naive:?}"),
                "{value} {unit:?}"
            );
        }
    }
}

#[test]
fn timestamps_with_zone() {
    let zoned = batch(vec![(
        "time",
        Arc::new(TimestampNanosecondArray::from(vec![1644125400000000000]).with_timezone("+08:00"))
            as ArrayRef,
    )]);
    assert_eq!(
        encode_one(Format::Csv, &zoned),
        "time\n2022-02-06T13:30:00.000000000+08:00\n"
    );
    assert_eq!(
        encode_one(Format::Json, &zoned),
        r#"[{"time":"2022-02-06T13:30:00+08:00"}]"#
    );
    let utc = batch(vec![(
        "time",
        Arc::new(TimestampMillisecondArray::from(vec![1500]).with_timezone("UTC")) as ArrayRef,
    )]);
    assert_eq!(
        encode_one(Format::Csv, &utc),
        "time\n1970-01-01T00:00:01.500000000+00:00\n"
    );
    assert_eq!(
        encode_one(Format::Json, &utc),
        r#"[{"time":"1970-01-01T00:00:01.500Z"}]"#
    );
}

#[test]
fn csv_floats_as_lexical_writes_them() {
    let cases: [(f64, &str); 16] = [
        (1.0, "1.0"),
        (0.6326195071473769, "0.6326195071473769"),
        (429351833.0, "429351833.0"),
        (1234567890.0, "1234567890.0"),
        (12345678901.0, "1.2345678901e10"),
        (1e10, "1.0e10"),
        (1e100, "1.0e100"),
        (0.00001, "0.00001"),
        (0.0000015, "1.5e-6"),
        (-2.5e-300, "-2.5e-300"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (-69.5, "-69.5"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
    ];
    let (values, texts): (Vec<f64>, Vec<&str>) = cases.into_iter().unzip();
    let floats = batch(vec![(
        "f",
        Arc::new(Float64Array::from(values)) as ArrayRef,
    )]);
    assert_eq!(
        encode_one(Format::Csv, &floats),
        format!("f\n{}\n", texts.join("\n"))
    );
    let singles = batch(vec![(
        "f",
        Arc::new(Float32Array::from(vec![0.1_f32, 16777216.0, 3.4e38])) as ArrayRef,
    )]);
    assert_eq!(
        encode_one(Format::Csv, &singles),
        "f\n0.1\n16777216.0\n3.4e38\n"
    );
}

#[test]
fn json_floats_as_serde_json_writes_them() {
    let floats = batch(vec![(
        "f",
        Arc::new(Float64Array::from(vec![
            56.0,
            1e16,
            1e15,
            0.00001,
            1.5e-6,
            f64::NAN,
            -0.0,
        ])) as ArrayRef,
    )]);
    assert_eq!(
        encode_one(Format::Json, &floats),
        r#"[{"f":56.0},{"f":1e16},{"f":1000000000000000.0},{"f":0.00001},{"f":1.5e-6},{},{"f":-0.0}]"#
    );
    for bits in sample_i64s() {
        let value = f64::from_bits(bits as u64);
        let mut ours = Vec::new();
        if super::scalar::push_float_json(&mut ours, value) {
            // serde_json 1.0.154 writes `e+307` where ryu (CnosDB's serde_json) wrote `e307`.
            let theirs = serde_json::to_string(&value).unwrap().replace("e+", "e");
            assert_eq!(String::from_utf8(ours).unwrap(), theirs, "{value:e}");
        } else {
            assert!(!value.is_finite());
        }
    }
}

#[test]
fn csv_floats_read_back_exactly() {
    for bits in sample_i64s() {
        let value = f64::from_bits(bits as u64);
        let mut text = Vec::new();
        super::scalar::push_float_lexical(&mut text, value);
        let text = String::from_utf8(text).unwrap();
        if value.is_finite() {
            assert_eq!(
                text.parse::<f64>().unwrap().to_bits(),
                value.to_bits(),
                "{text}"
            );
            assert!(text.contains('.'), "{text}");
        }
    }
}

#[test]
fn integer_and_flat_types() {
    let flat = batch(vec![
        (
            "i8",
            Arc::new(Int8Array::from(vec![i8::MIN, 0])) as ArrayRef,
        ),
        ("i16", Arc::new(Int16Array::from(vec![i16::MIN, 1]))),
        ("i32", Arc::new(Int32Array::from(vec![i32::MIN, -1]))),
        ("i64", Arc::new(Int64Array::from(vec![i64::MIN, i64::MAX]))),
        ("u8", Arc::new(UInt8Array::from(vec![u8::MAX, 0]))),
        ("u16", Arc::new(UInt16Array::from(vec![u16::MAX, 0]))),
        ("u32", Arc::new(UInt32Array::from(vec![u32::MAX, 0]))),
        ("u64", Arc::new(UInt64Array::from(vec![u64::MAX, 0]))),
        ("large", Arc::new(LargeStringArray::from(vec!["l,1", "l2"]))),
        (
            "view",
            Arc::new(StringViewArray::from(vec![
                "a view longer than twelve",
                "v",
            ])),
        ),
        ("day", Arc::new(Date32Array::from(vec![19029, -1]))),
        ("nothing", Arc::new(NullArray::new(2))),
        ("ok", Arc::new(BooleanArray::from(vec![false, true]))),
    ]);
    assert_eq!(
        encode_one(Format::Csv, &flat),
        "i8,i16,i32,i64,u8,u16,u32,u64,large,view,day,nothing,ok\n\
         -128,-32768,-2147483648,-9223372036854775808,255,65535,4294967295,18446744073709551615,\
         \"l,1\",a view longer than twelve,2022-02-06,,false\n\
         0,1,-1,9223372036854775807,0,0,0,0,l2,v,1969-12-31,,true\n"
    );
    assert_eq!(
        encode_one(Format::NdJson, &flat),
        "{\"i8\":-128,\"i16\":-32768,\"i32\":-2147483648,\"i64\":-9223372036854775808,\
         \"u8\":255,\"u16\":65535,\"u32\":4294967295,\"u64\":18446744073709551615,\
         \"large\":\"l,1\",\"view\":\"a view longer than twelve\",\"day\":\"2022-02-06\",\
         \"ok\":false}\n\
         {\"i8\":0,\"i16\":1,\"i32\":-1,\"i64\":9223372036854775807,\"u8\":0,\"u16\":0,\
         \"u32\":0,\"u64\":0,\"large\":\"l2\",\"view\":\"v\",\"day\":\"1969-12-31\",\
         \"ok\":true}\n"
    );
}

#[test]
fn dictionary_columns_show_their_values() {
    let tags: DictionaryArray<Int32Type> = vec![Some("b,x"), None, Some("a"), Some("b,x")]
        .into_iter()
        .collect();
    let dict = batch(vec![("tag", Arc::new(tags) as ArrayRef)]);
    assert_eq!(
        encode_one(Format::Csv, &dict),
        "tag\n\"b,x\"\n\"\"\na\n\"b,x\"\n"
    );
    assert_eq!(
        encode_one(Format::Json, &dict),
        r#"[{"tag":"b,x"},{},{"tag":"a"},{"tag":"b,x"}]"#
    );
    assert_eq!(
        encode_one(Format::Table, &dict),
        "+-----+\n| tag |\n+-----+\n| b,x |\n|     |\n| a   |\n| b,x |\n+-----+"
    );
}

fn nested() -> RecordBatch {
    let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), None, Some(3)]),
        None,
        Some(vec![]),
    ]);
    let window = StructArray::from(vec![
        (
            Arc::new(Field::new("start", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("name", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec!["w1", "w2", "w3"])) as ArrayRef,
        ),
    ]);
    batch(vec![
        ("id", Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef),
        ("sample", Arc::new(list)),
        ("window", Arc::new(window)),
    ])
}

#[test]
fn nested_types_are_json_arrays_and_objects() {
    let text = encode_one(Format::Json, &nested());
    assert_eq!(
        text,
        r#"[{"id":1,"sample":[1,null,3],"window":{"start":1,"name":"w1"}},{"id":2,"window":{"name":"w2"}},{"id":3,"sample":[],"window":{"start":3,"name":"w3"}}]"#
    );
    serde_json::from_str::<serde_json::Value>(&text).unwrap();
}

#[test]
fn nested_types_have_no_csv_form() {
    let nested = nested();
    for format in [Format::Csv, Format::Tsv] {
        let refused = Encoder::try_new(format, nested.schema()).err().unwrap();
        match &refused {
            FormatError::Unsupported {
                column, data_type, ..
            } => {
                assert_eq!(column, "sample");
                assert!(matches!(data_type, DataType::List(_)));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(refused.to_string().contains("\"sample\""), "{refused}");
        // Through `new`, nothing is written and the first batch (or finish) fails.
        let mut encoder = Encoder::new(format, nested.schema());
        let mut out = Vec::new();
        encoder.begin(&mut out);
        assert!(out.is_empty());
        assert!(matches!(
            encoder.batch(&nested, &mut out),
            Err(FormatError::Unsupported { .. })
        ));
        assert!(matches!(
            Encoder::new(format, nested.schema()).finish(&mut out),
            Err(FormatError::Unsupported { .. })
        ));
        assert!(out.is_empty());
    }
    assert!(Encoder::try_new(Format::Json, nested.schema()).is_ok());
}

#[test]
fn table_answers_are_bounded() {
    let mut encoder = Encoder::new(Format::Table, air().schema()).with_table_bytes_max(50);
    let mut out = Vec::new();
    encoder.begin(&mut out);
    encoder.batch(&air().slice(0, 1), &mut out).unwrap();
    let error = encoder.batch(&air(), &mut out).err().unwrap();
    assert!(matches!(
        error,
        FormatError::TableTooLarge { bytes_max: 50 }
    ));
    assert!(out.is_empty());
}

#[test]
fn batch_with_wrong_column_count_fails() {
    let mut encoder = Encoder::new(Format::Csv, air().schema());
    let mut out = Vec::new();
    let one = batch(vec![("x", Arc::new(Int8Array::from(vec![1])) as ArrayRef)]);
    assert!(matches!(
        encoder.batch(&one, &mut out),
        Err(FormatError::ColumnCount {
            expected: 3,
            found: 1
        })
    ));
}

#[test]
fn schema_without_columns_writes_no_csv_lines() {
    let schema = Arc::new(Schema::empty());
    assert_eq!(encode(Format::Csv, schema.clone(), &[]), "");
    assert_eq!(encode(Format::Json, schema, &[]), "[]");
}

#[test]
fn accept_absent_empty_or_wildcard_is_csv() {
    for accept in [
        None,
        Some(""),
        Some("  "),
        Some(" , "),
        Some("*/*"),
        Some("*"),
        Some("text/*"),
        Some("application/*"),
    ] {
        assert_eq!(negotiate(accept).unwrap(), Format::Csv, "{accept:?}");
    }
}

#[test]
fn accept_names_each_format() {
    let cases = [
        ("text/csv", Format::Csv),
        ("application/csv", Format::Csv),
        ("text/tsv", Format::Tsv),
        ("application/tsv", Format::Tsv),
        ("application/json", Format::Json),
        ("text/json", Format::Json),
        ("application/nd-json", Format::NdJson),
        ("text/nd-json", Format::NdJson),
        ("application/x-ndjson", Format::NdJson),
        ("application/ndjson", Format::NdJson),
        ("text/table", Format::Table),
        ("application/table", Format::Table),
    ];
    for (accept, format) in cases {
        assert_eq!(negotiate(Some(accept)).unwrap(), format, "{accept}");
    }
}

#[test]
fn accept_is_case_insensitive_and_ignores_parameters() {
    assert_eq!(negotiate(Some("Application/JSON")).unwrap(), Format::Json);
    assert_eq!(negotiate(Some("TEXT/Table")).unwrap(), Format::Table);
    assert_eq!(
        negotiate(Some("application/json; charset=utf-8")).unwrap(),
        Format::Json
    );
    assert_eq!(
        negotiate(Some("text/tsv;charset=UTF-8;q=0.5")).unwrap(),
        Format::Tsv
    );
    assert_eq!(negotiate(Some(" text/csv ; Q=1 ")).unwrap(), Format::Csv);
}

#[test]
fn accept_lists_use_q_values() {
    let cases = [
        ("text/html, application/json", Format::Json),
        ("application/json, text/csv", Format::Json),
        ("text/csv;q=0.5, application/json", Format::Json),
        ("application/json;q=0.8, text/tsv;q=0.9", Format::Tsv),
        ("text/tsv;q=0.5, application/nd-json;q=0.5", Format::Tsv),
        ("text/csv;q=0, */*", Format::Json),
        ("text/csv;q=0, text/*", Format::Json),
        ("*/*;q=0.1, text/table", Format::Table),
        ("image/png, */*;q=0.1", Format::Csv),
        (
            "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
            Format::Csv,
        ),
        ("application/json;q=bogus, text/tsv", Format::Tsv),
        ("application/json;q=1.5, text/tsv", Format::Tsv),
        ("application/json;q=0.001", Format::Json),
        ("text/csv;q=1.000, application/json;q=1", Format::Csv),
    ];
    for (accept, format) in cases {
        assert_eq!(negotiate(Some(accept)).unwrap(), format, "{accept}");
    }
}

#[test]
fn accept_without_our_formats_is_not_acceptable() {
    for accept in [
        "text/html",
        "application/xml, image/*",
        "application/json;q=0",
        "text/csv;q=0, text/tsv;q=0.000",
        "*/*;q=0",
        "csv",
        "application/json;q=2",
    ] {
        match negotiate(Some(accept)) {
            Err(FormatError::NotAcceptable(header)) => assert_eq!(header, accept),
            other => panic!("{accept}: {other:?}"),
        }
    }
}
