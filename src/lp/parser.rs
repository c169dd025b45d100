//! The line grammar: a hand-written scanner over the bytes of a body already known to be UTF-8.
//!
//! `parse_body` owns the control flow: find the next line, parse it into the batch, and on an
//! error record it, undo the line's partial output and resynchronise at the next line end. The
//! methods below it each parse one part of a line and leave `pos` just after it. Every position
//! where a token starts or ends is an ASCII byte, so every span lies on character boundaries.
//!
//! Resynchronisation after an error is best effort: the first error of a body is always exact,
//! and a later one may be a consequence of the first when a bad line contains a quoted string
//! with a line break in it.

use super::error::{snippet, LineError, LineErrorKind, LpErrors};
use super::keys;
use super::token::{self, Number, NumberError};
use super::{LineRecord, ParsedBatch, Span, StoredValue, MAX_ERRORS};

/// The body as UTF-8, or the error naming where it is not (or that it is too large).
pub(super) fn check_body(body: &[u8], max_bytes: usize) -> Result<&str, LpErrors> {
    if body.len() > max_bytes {
        let kind = LineErrorKind::BodyTooLarge {
            len: body.len(),
            max: max_bytes,
        };
        return Err(LpErrors::single(1, kind));
    }
    std::str::from_utf8(body).map_err(|e| {
        let offset = e.valid_up_to();
        let (line_no, line_start) = position(body.get(..offset).unwrap_or_default());
        let kind = LineErrorKind::InvalidUtf8 {
            offset,
            column: offset - line_start + 1,
        };
        LpErrors::single(line_no, kind)
    })
}

/// The 1-based number and the start offset of the line in which `prefix` ends, counting line
/// ends as the parser does (`\r\n` is one).
fn position(prefix: &[u8]) -> (usize, usize) {
    let mut line_no = 1;
    let mut line_start = 0;
    for (i, &b) in prefix.iter().enumerate() {
        if token::is_line_end(b) {
            if !(b == b'\r' && prefix.get(i + 1) == Some(&b'\n')) {
                line_no += 1;
            }
            line_start = i + 1;
        }
    }
    (line_no, line_start)
}

/// Parses every line of `body` into `out` (which the caller has cleared).
pub(super) fn parse_body<'a>(body: &'a str, out: &mut ParsedBatch<'a>) -> Result<(), LpErrors> {
    let mut p = Parser {
        body,
        bytes: body.as_bytes(),
        pos: 0,
        line_no: 1,
        line_start: 0,
        in_fields: false,
        out,
    };
    let mut errors = Vec::new();
    let mut truncated = false;
    while p.next_line_start() {
        let line_no = p.line_no as usize;
        let marks = p.marks();
        p.in_fields = false;
        match p.line() {
            Ok(record) => p.out.lines.push(record),
            Err(kind) => {
                let kind = *kind;
                if errors.len() == MAX_ERRORS {
                    truncated = true;
                    break;
                }
                errors.push(LineError { line_no, kind });
                p.rollback(marks);
                p.skip_rest_of_line();
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LpErrors { errors, truncated })
    }
}

/// Lengths of the output vectors before a line, to undo a failed line.
#[derive(Clone, Copy)]
struct Marks {
    tags: usize,
    fields: usize,
    scratch: usize,
}

struct Parser<'a, 'o> {
    body: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// 1-based number of the line `pos` is on.
    line_no: u32,
    /// Offset of the first byte of the line `pos` is on (for columns).
    line_start: usize,
    /// The current line has reached its fields (quoted strings may follow).
    in_fields: bool,
    out: &'o mut ParsedBatch<'a>,
}

impl<'a> Parser<'a, '_> {
    /// Skips whitespace, blank lines and comment lines; false at the end of the body.
    fn next_line_start(&mut self) -> bool {
        loop {
            match self.bytes.get(self.pos).copied() {
                None => return false,
                Some(b @ (b'\n' | b'\r')) => {
                    self.note_line_end(self.pos, b);
                    self.pos += 1;
                }
                Some(b' ' | b'\t' | 0x0c) => self.pos += 1,
                Some(b'#') => self.pos = token::scan::<{ token::EOL }>(self.bytes, self.pos),
                Some(_) => return true,
            }
        }
    }

    /// Counts the line end `b` at `at` (the `\r` of `\r\n` is not counted; its `\n` is).
    fn note_line_end(&mut self, at: usize, b: u8) {
        if !(b == b'\r' && self.bytes.get(at + 1) == Some(&b'\n')) {
            self.line_no = self.line_no.saturating_add(1);
        }
        self.line_start = at + 1;
    }

    fn marks(&self) -> Marks {
        Marks {
            tags: self.out.tags.len(),
            fields: self.out.fields.len(),
            scratch: self.out.scratch.len(),
        }
    }

    fn rollback(&mut self, marks: Marks) {
        self.out.tags.truncate(marks.tags);
        self.out.fields.truncate(marks.fields);
        self.out.scratch.truncate(marks.scratch);
    }

    /// Moves `pos` to the end of the current (bad) line. In the fields, a `"` right after an
    /// unescaped `=` opens a string whose line breaks do not end the line, as in InfluxDB's
    /// line splitter.
    fn skip_rest_of_line(&mut self) {
        let mut quoted = false;
        let mut after_equals = false;
        while let Some(b) = self.bytes.get(self.pos).copied() {
            match b {
                b'\n' | b'\r' if !quoted => return,
                b'\n' | b'\r' => self.note_line_end(self.pos, b),
                b'\\' => {
                    let next = self.bytes.get(self.pos + 1).copied();
                    let escapes = if quoted {
                        matches!(next, Some(b'"' | b'\\'))
                    } else {
                        next.is_some_and(|n| !token::is_line_end(n))
                    };
                    self.pos += usize::from(escapes);
                }
                b'"' if quoted || (after_equals && self.in_fields) => quoted = !quoted,
                _ => {}
            }
            after_equals = b == b'=' && !quoted;
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn column(&self, at: usize) -> usize {
        at - self.line_start + 1
    }

    fn piece(&self, start: usize, end: usize) -> &'a str {
        self.body.get(start..end).unwrap_or_default()
    }

    /// The text of `span`, cut for an error message.
    fn quote(&self, span: Span) -> String {
        snippet(super::resolve(self.body, &self.out.scratch, span))
    }

    /// One line, from its first byte to (not including) its line end.
    fn line(&mut self) -> Step<LineRecord> {
        let line_no = self.line_no;
        let tags_start = self.out.tags.len();
        let fields_start = self.out.fields.len();
        let key_start = self.pos;
        let measurement = self.measurement()?;
        if self.peek() == Some(b',') {
            self.pos += 1;
            self.tag_set()?;
        }
        let raw_key = Span::body(key_start, self.pos);
        let fields_at = token::scan_while(self.bytes, self.pos, b' ');
        if fields_at == self.pos
            || self
                .bytes
                .get(fields_at)
                .is_none_or(|&b| token::is_line_end(b))
        {
            return fail(LineErrorKind::MissingFields);
        }
        self.pos = fields_at;
        self.in_fields = true;
        self.field_set()?;
        debug_assert!(self.out.fields.len() > fields_start, "a line has a field");
        let timestamp = self.timestamp()?;
        self.sort_tags(tags_start)?;
        self.check_field_keys(fields_start)?;
        Ok(LineRecord {
            measurement,
            raw_key,
            tags_start: tags_start as u32,
            tags_end: self.out.tags.len() as u32,
            fields_start: fields_start as u32,
            fields_end: self.out.fields.len() as u32,
            timestamp,
            line_no,
        })
    }

    fn measurement(&mut self) -> Step<Span> {
        let start = self.pos;
        let span = self.name::<{ token::MEASUREMENT }>()?;
        if self.pos == start {
            return fail(LineErrorKind::MissingMeasurement {
                column: self.column(start),
            });
        }
        Ok(span)
    }

    /// `key=value[,key=value...]` after the comma that follows the measurement.
    fn tag_set(&mut self) -> Step<()> {
        loop {
            let key_start = self.pos;
            let key = self.name::<{ token::KEY }>()?;
            if self.pos == key_start {
                return fail(LineErrorKind::EmptyTagKey {
                    column: self.column(key_start),
                });
            }
            if self.peek() != Some(b'=') {
                return fail(LineErrorKind::TagWithoutValue {
                    key: self.quote(key),
                });
            }
            self.pos += 1;
            let value_start = self.pos;
            let value = self.name::<{ token::TAG_VALUE }>()?;
            if self.pos == value_start {
                return fail(LineErrorKind::EmptyTagValue {
                    key: self.quote(key),
                });
            }
            self.out.tags.push((key, value));
            if self.peek() != Some(b',') {
                return Ok(());
            }
            self.pos += 1;
        }
    }

    /// `key=value[,key=value...]`: at least one.
    fn field_set(&mut self) -> Step<()> {
        loop {
            let key_start = self.pos;
            let key = self.name::<{ token::KEY }>()?;
            if self.pos == key_start {
                return fail(LineErrorKind::EmptyFieldKey {
                    column: self.column(key_start),
                });
            }
            if self.peek() != Some(b'=') {
                return fail(LineErrorKind::FieldWithoutValue {
                    key: self.quote(key),
                });
            }
            self.pos += 1;
            let value = self.field_value(key)?;
            self.out.fields.push((key, value));
            if self.peek() != Some(b',') {
                return Ok(());
            }
            self.pos += 1;
        }
    }

    /// A measurement, tag key, tag value or field key: up to the first unescaped byte of class
    /// `STOP`. Without an unescaping escape it is a span of the body.
    #[inline(always)]
    fn name<const STOP: u8>(&mut self) -> Step<Span> {
        let start = self.pos;
        let end = token::scan::<STOP>(self.bytes, start);
        if self.bytes.get(end) == Some(&b'\\') {
            return self.escaped_name::<STOP>(start, end);
        }
        self.pos = end;
        Ok(Span::body(start, end))
    }

    /// The rest of `name` from the first backslash at `pos`. `\,` and `\ ` (and `\=` outside the
    /// measurement) lose their backslash, which moves the name into the scratch buffer; `\\`,
    /// `\"` and `\'` stay as they are; anything else is an error.
    #[inline(never)]
    fn escaped_name<const STOP: u8>(&mut self, start: usize, mut pos: usize) -> Step<Span> {
        let body = self.body;
        let mut copied = start;
        let mut scratch_start = None;
        while self.bytes.get(pos) == Some(&b'\\') {
            match self.bytes.get(pos + 1).copied() {
                Some(c) if c == b',' || c == b' ' || (c == b'=' && STOP != token::MEASUREMENT) => {
                    scratch_start.get_or_insert(self.out.scratch.len());
                    self.out
                        .scratch
                        .push_str(body.get(copied..pos).unwrap_or_default());
                    self.out.scratch.push(char::from(c));
                    pos += 2;
                    copied = pos;
                }
                Some(b'\\' | b'"' | b'\'') => pos += 2,
                Some(_) => {
                    self.pos = pos;
                    let escaped = body.get(pos + 1..).and_then(|s| s.chars().next());
                    return fail(LineErrorKind::InvalidEscape {
                        escaped: escaped.unwrap_or_default(),
                        column: self.column(pos),
                    });
                }
                None => {
                    self.pos = pos;
                    return fail(LineErrorKind::TrailingBackslash {
                        column: self.column(pos),
                    });
                }
            }
            pos = token::scan::<STOP>(self.bytes, pos);
        }
        self.pos = pos;
        Ok(match scratch_start {
            None => Span::body(start, pos),
            Some(s) => {
                self.out
                    .scratch
                    .push_str(body.get(copied..pos).unwrap_or_default());
                Span::scratch(s, self.out.scratch.len())
            }
        })
    }

    /// The value after `key=`: a string, a boolean or a number.
    fn field_value(&mut self, key: Span) -> Step<StoredValue> {
        let start = self.pos;
        let first = match self.peek() {
            Some(b'"') => return self.string_value(key),
            Some(b) if token::CLASS[usize::from(b)] & token::FIELD_VALUE == 0 => b,
            _ => {
                return fail(LineErrorKind::EmptyFieldValue {
                    key: self.quote(key),
                })
            }
        };
        if let Some(value) = self.short_number(start) {
            return Ok(value);
        }
        let end = token::scan::<{ token::FIELD_VALUE }>(self.bytes, start);
        self.pos = end;
        let text = self.piece(start, end);
        let invalid = || LineErrorKind::InvalidFieldValue {
            key: self.quote(key),
            value: snippet(text),
        };
        match first {
            b'+' | b'-' | b'0'..=b'9' => match token::number(text) {
                Ok(Number::Float(v)) => Ok(StoredValue::Float(v)),
                Ok(Number::Integer(v)) => Ok(StoredValue::Integer(v)),
                Ok(Number::Unsigned(v)) => Ok(StoredValue::Unsigned(v)),
                Err(NumberError::Invalid) => fail(invalid()),
                Err(NumberError::Overflow) => fail(LineErrorKind::IntegerOverflow {
                    key: self.quote(key),
                    value: snippet(text),
                }),
            },
            b't' | b'T' | b'f' | b'F' => match token::boolean(text.as_bytes()) {
                Some(v) => Ok(StoredValue::Boolean(v)),
                None => fail(invalid()),
            },
            _ => fail(invalid()),
        }
    }

    /// The common `58i`, `-3i`, `7u`, `42` and `-1.25` forms, parsed in one pass over the bytes;
    /// `None` leaves anything else (and every error) to the general path of `field_value`.
    #[inline(always)]
    fn short_number(&mut self, start: usize) -> Option<StoredValue> {
        let (negative, magnitude, digits_end) = token::leading_integer(self.bytes, start)?;
        let (value, end) = match self.bytes.get(digits_end).copied() {
            Some(b'i') => {
                let v = token::to_i64(negative, magnitude)?;
                (StoredValue::Integer(v), digits_end + 1)
            }
            Some(b'u') if !negative => (StoredValue::Unsigned(magnitude), digits_end + 1),
            Some(b'.') => {
                let int_digits = digits_end - start - usize::from(negative);
                let (v, end) =
                    token::short_decimal(self.bytes, negative, magnitude, int_digits, digits_end)?;
                (StoredValue::Float(v), end)
            }
            None | Some(b',' | b' ' | b'\n' | b'\r') => {
                let v = token::exact_float(negative, magnitude)?;
                (StoredValue::Float(v), digits_end)
            }
            _ => return None,
        };
        match self.bytes.get(end) {
            None | Some(b',' | b' ' | b'\n' | b'\r') => {
                self.pos = end;
                Some(value)
            }
            _ => None,
        }
    }

    /// A quoted string from the opening quote at `pos`. `\"` and `\\` are unescaped (into the
    /// scratch buffer); other backslashes are kept. Line ends inside are counted.
    fn string_value(&mut self, key: Span) -> Step<StoredValue> {
        let body = self.body;
        let open = self.pos;
        let mut pos = open + 1;
        let mut copied = pos;
        let mut scratch_start = None;
        loop {
            pos = token::scan::<{ token::STRING }>(self.bytes, pos);
            match self.bytes.get(pos).copied() {
                None => {
                    self.pos = pos;
                    return fail(LineErrorKind::UnterminatedString {
                        key: self.quote(key),
                    });
                }
                Some(b'"') => break,
                Some(b'\\') => match self.bytes.get(pos + 1).copied() {
                    Some(c @ (b'"' | b'\\')) => {
                        scratch_start.get_or_insert(self.out.scratch.len());
                        self.out
                            .scratch
                            .push_str(body.get(copied..pos).unwrap_or_default());
                        self.out.scratch.push(char::from(c));
                        pos += 2;
                        copied = pos;
                    }
                    _ => pos += 1,
                },
                Some(b) => {
                    self.note_line_end(pos, b);
                    pos += 1;
                }
            }
        }
        let span = match scratch_start {
            None => Span::body(open + 1, pos),
            Some(s) => {
                self.out
                    .scratch
                    .push_str(body.get(copied..pos).unwrap_or_default());
                Span::scratch(s, self.out.scratch.len())
            }
        };
        self.pos = pos + 1;
        self.after_string(key, open)?;
        Ok(StoredValue::String(span))
    }

    /// After a closing quote only a separator or the line end may follow.
    fn after_string(&mut self, key: Span, open: usize) -> Step<()> {
        match self.peek() {
            None | Some(b',' | b' ' | b'\n' | b'\r') => Ok(()),
            Some(_) => {
                let end = token::scan::<{ token::FIELD_VALUE }>(self.bytes, self.pos);
                self.pos = end;
                fail(LineErrorKind::InvalidFieldValue {
                    key: self.quote(key),
                    value: snippet(self.piece(open, end)),
                })
            }
        }
    }

    /// The optional timestamp after the fields, and nothing but spaces or tabs after it.
    fn timestamp(&mut self) -> Step<Option<i64>> {
        let start = token::scan_blanks(self.bytes, self.pos);
        self.pos = start;
        if self.peek().is_none_or(token::is_line_end) {
            return Ok(None);
        }
        let short = token::leading_integer(self.bytes, start).and_then(|(neg, magnitude, end)| {
            let ends = matches!(
                self.bytes.get(end),
                None | Some(b' ' | b'\t' | b'\n' | b'\r')
            );
            ends.then(|| token::to_i64(neg, magnitude).map(|ts| (ts, end)))
                .flatten()
        });
        let (ts, end) = match short {
            Some(found) => found,
            None => self.long_timestamp(start)?,
        };
        self.pos = token::scan_blanks(self.bytes, end);
        if self.peek().is_none_or(token::is_line_end) {
            return Ok(Some(ts));
        }
        let rest_end = token::scan::<{ token::EOL }>(self.bytes, self.pos);
        fail(LineErrorKind::TrailingContent {
            content: snippet(self.piece(self.pos, rest_end)),
        })
    }

    /// A timestamp that is not in the short form: long, out of range or not a number.
    fn long_timestamp(&self, start: usize) -> Step<(i64, usize)> {
        let end = token::scan::<{ token::TIMESTAMP }>(self.bytes, start);
        let text = self.piece(start, end);
        match token::signed(text.as_bytes()) {
            Ok(ts) => Ok((ts, end)),
            Err(NumberError::Invalid) => fail(LineErrorKind::InvalidTimestamp {
                value: snippet(text),
            }),
            Err(NumberError::Overflow) => fail(LineErrorKind::TimestampOverflow {
                value: snippet(text),
            }),
        }
    }

    /// Sorts the line's tags by key in place and rejects a repeated key.
    fn sort_tags(&mut self, start: usize) -> Step<()> {
        let out = &mut *self.out;
        let tags = out.tags.get_mut(start..).unwrap_or_default();
        keys::sort_tags(self.body, &out.scratch, tags, &mut out.keys)
            .map_err(|k| Box::new(LineErrorKind::DuplicateTag { key: snippet(k) }))
    }

    /// Rejects a field key that appears twice in the line; the fields keep their order.
    fn check_field_keys(&mut self, start: usize) -> Step<()> {
        let out = &mut *self.out;
        let fields = out.fields.get(start..).unwrap_or_default();
        match keys::duplicate_field(self.body, &out.scratch, fields, &mut out.keys) {
            Some(k) => fail(LineErrorKind::DuplicateField { key: snippet(k) }),
            None => Ok(()),
        }
    }
}

/// The result of parsing part of a line. The error is boxed: it is rare, and a small `Result`
/// stays in registers on the hot path instead of going through the stack.
type Step<T> = Result<T, Box<LineErrorKind>>;

/// Fails the line with `kind`.
fn fail<T>(kind: LineErrorKind) -> Step<T> {
    Err(Box::new(kind))
}
