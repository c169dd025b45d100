//! Line-protocol errors: one variant per way a line can fail, each wrapped with its 1-based line
//! number, collected for the whole body (at most [`super::MAX_ERRORS`]).
//!
//! Values quoted in messages are cut to [`SNIPPET_CHARS`] characters so that an error about a
//! megabyte-long token stays a short message.

use std::fmt;

/// Quoted values in messages are cut to this many characters (then `…` follows).
pub const SNIPPET_CHARS: usize = 64;

/// Why one line failed. Columns are 1-based byte columns within the line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineErrorKind {
    #[error("invalid UTF-8 at byte offset {offset} of the body (column {column})")]
    InvalidUtf8 { offset: usize, column: usize },
    #[error("body of {len} bytes is larger than the {max} bytes the parser accepts")]
    BodyTooLarge { len: usize, max: usize },
    #[error("missing measurement at column {column}")]
    MissingMeasurement { column: usize },
    #[error("line has no fields: expected a space and key=value after the measurement and tags")]
    MissingFields,
    #[error("empty tag key at column {column}")]
    EmptyTagKey { column: usize },
    #[error("tag key \"{key}\" is not followed by \"=\" and a value")]
    TagWithoutValue { key: String },
    #[error("empty value for tag \"{key}\"")]
    EmptyTagValue { key: String },
    #[error("empty field key at column {column}")]
    EmptyFieldKey { column: usize },
    #[error("field key \"{key}\" is not followed by \"=\" and a value")]
    FieldWithoutValue { key: String },
    #[error("empty value for field \"{key}\"")]
    EmptyFieldValue { key: String },
    #[error("invalid field value \"{value}\" for field \"{key}\"")]
    InvalidFieldValue { key: String, value: String },
    #[error("integer field value \"{value}\" for field \"{key}\" is out of range")]
    IntegerOverflow { key: String, value: String },
    #[error("unterminated string value for field \"{key}\": no closing quote before the end of the body")]
    UnterminatedString { key: String },
    #[error("invalid escape: backslash before {escaped:?} at column {column} (only \\, \\space, \\= where allowed, \\\\, \\\" and \\' are)")]
    InvalidEscape { escaped: char, column: usize },
    #[error("backslash at the end of the body at column {column}")]
    TrailingBackslash { column: usize },
    #[error("invalid timestamp \"{value}\": expected an integer")]
    InvalidTimestamp { value: String },
    #[error("timestamp \"{value}\" is out of the signed 64-bit range")]
    TimestampOverflow { value: String },
    #[error("unexpected \"{content}\" after the timestamp")]
    TrailingContent { content: String },
    #[error("tag key \"{key}\" appears more than once")]
    DuplicateTag { key: String },
    #[error("field key \"{key}\" appears more than once")]
    DuplicateField { key: String },
}

/// One failed line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line_no}: {kind}")]
pub struct LineError {
    /// 1-based line number where the failing line starts.
    pub line_no: usize,
    pub kind: LineErrorKind,
}

/// Every failed line of a body, first first. `truncated` says that parsing stopped at
/// [`super::MAX_ERRORS`] and more lines were bad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LpErrors {
    pub errors: Vec<LineError>,
    pub truncated: bool,
}

/// At most this many errors are spelled out by `Display`; the rest are counted.
const DISPLAYED_ERRORS: usize = 5;

impl fmt::Display for LpErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.errors.iter().take(DISPLAYED_ERRORS);
        match shown.next() {
            Some(first) => write!(f, "{first}")?,
            None => write!(f, "invalid line protocol")?,
        }
        for e in shown {
            write!(f, "; {e}")?;
        }
        let rest = self.errors.len().saturating_sub(DISPLAYED_ERRORS);
        if rest > 0 {
            write!(f, "; and {rest} more bad lines")?;
        }
        if self.truncated {
            write!(f, " (stopped after {} errors)", self.errors.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for LpErrors {}

impl LpErrors {
    /// The error of a body that failed as a whole (bad UTF-8, too large).
    pub(super) fn single(line_no: usize, kind: LineErrorKind) -> Self {
        LpErrors {
            errors: vec![LineError { line_no, kind }],
            truncated: false,
        }
    }

    /// The first error (there is always one).
    pub fn first(&self) -> Option<&LineError> {
        self.errors.first()
    }

    /// True when the body is not UTF-8 (CnosDB answers that with its own error code, 040015).
    pub fn is_invalid_utf8(&self) -> bool {
        matches!(
            self.errors.first(),
            Some(LineError {
                kind: LineErrorKind::InvalidUtf8 { .. },
                ..
            })
        )
    }
}

/// `text` cut to [`SNIPPET_CHARS`] characters, for quoting in a message.
pub(super) fn snippet(text: &str) -> String {
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_string(),
    }
}
