//! A small tokenizer and recursive-descent parser for CnosDB's catalog statements.
//!
//! sqlparser (under DataFusion) knows neither `WITH TTL ... SHARD ...` nor `TAGS(...)`, so these
//! statements are recognized here by their leading keywords; everything else is left to
//! DataFusion (`recognize` answers `None`). The tokenizer also counts the statements of every
//! body, so "one statement per body" holds for DDL exactly as for SELECT.
//!
//! Invariants: every function here is total over arbitrary input (errors, never panics; token
//! access is bounds-checked), and the parser only reads the tokens of the one statement.
//! Messages follow sqlparser's shape (`Expected identifier, found: )`), as CnosDB's do.

use std::time::Duration;

use super::units;
use super::{
    ColumnDef, KeyFilter, ShowTagValues, SqlType, Statement, TableAction, TableRef, WhereClause,
};
use crate::catalog::{Codec, DatabaseOption, FieldType, Precision};
use crate::query::QueryError;

/// Tokens one body may hold before the tokenizer gives up (bounds the work on hostile input).
const TOKENS_MAX: usize = 1 << 22;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A bare word, as written (keywords are matched case-insensitively).
    Word(String),
    /// A `"double"` or `` `back` `` quoted identifier, unescaped.
    Quoted(String),
    /// A `'single'` quoted string, unescaped.
    Str(String),
    Num(String),
    Punct(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// Byte range in the body.
    pub start: usize,
    pub end: usize,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Word(w) | Tok::Num(w) | Tok::Punct(w) => f.write_str(w),
            Tok::Quoted(q) => write!(f, "\"{q}\""),
            Tok::Str(s) => write!(f, "'{s}'"),
        }
    }
}

/// Splits `sql` into tokens, skipping whitespace and `--` / `/* */` comments. An unterminated
/// string, identifier or comment is an error (the caller then lets DataFusion report it).
pub fn tokenize(sql: &str) -> Result<Vec<Token>, String> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if out.len() >= TOKENS_MAX {
            return Err(format!("more than {TOKENS_MAX} tokens"));
        }
        let c = bytes[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = memchr_from(bytes, i, b'\n').map_or(bytes.len(), |p| p + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = sql[i + 2..].find("*/").ok_or("unterminated /* comment")?;
                i += 2 + end + 2;
                continue;
            }
            b'\'' => {
                let (s, next) = quoted(sql, i, '\'')?;
                i = next;
                Tok::Str(s)
            }
            b'"' | b'`' => {
                let (s, next) = quoted(sql, i, c as char)?;
                i = next;
                Tok::Quoted(s)
            }
            b'0'..=b'9' => {
                i = number_end(bytes, i);
                Tok::Num(sql[start..i].to_string())
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = number_end(bytes, i);
                Tok::Num(sql[start..i].to_string())
            }
            _ if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                // A non-ASCII character that is no letter still makes a one-character word,
                // so the scan always advances.
                let first_len = sql[i..].chars().next().map_or(1, char::len_utf8);
                i = word_end(sql, i).max(i + first_len);
                Tok::Word(sql[start..i].to_string())
            }
            _ => {
                let two = sql.get(i..i + 2).unwrap_or("");
                let len = match two {
                    "<=" | ">=" | "<>" | "!=" | "||" | "::" => 2,
                    _ => 1,
                };
                i += len;
                Tok::Punct(sql[start..i].to_string())
            }
        };
        out.push(Token { tok, start, end: i });
    }
    Ok(out)
}

fn memchr_from(bytes: &[u8], from: usize, b: u8) -> Option<usize> {
    bytes[from..].iter().position(|&x| x == b).map(|p| from + p)
}

/// A quoted token starting at `start` (the quote); a doubled quote is one quote character.
fn quoted(sql: &str, start: usize, q: char) -> Result<(String, usize), String> {
    let mut s = String::new();
    let mut chars = sql[start + 1..].char_indices().peekable();
    while let Some((off, c)) = chars.next() {
        if c == q {
            if chars.peek().map(|&(_, n)| n) == Some(q) {
                chars.next();
                s.push(q);
                continue;
            }
            return Ok((s, start + 1 + off + 1));
        }
        s.push(c);
    }
    Err(format!("unterminated {q}quoted{q} text at byte {start}"))
}

fn number_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
        let mut j = i + 1;
        if j < bytes.len() && matches!(bytes[j], b'+' | b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            i = j;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

fn word_end(sql: &str, start: usize) -> usize {
    sql[start..]
        .char_indices()
        .find(|&(_, c)| !(c == '_' || c == '$' || c.is_alphanumeric()))
        .map_or(sql.len(), |(off, _)| start + off)
}

/// The statements of a body: token runs between top-level `;`, empty ones dropped.
pub fn split_statements(tokens: &[Token]) -> Vec<&[Token]> {
    tokens
        .split(|t| t.tok == Tok::Punct(";".into()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Recognizes one of our statements in `sql`: `Ok(None)` when it is not ours (DataFusion plans
/// it), an error when it is ours and malformed, unsupported, or when the body holds more than
/// one statement.
pub fn recognize(sql: &str) -> Result<Option<Statement>, QueryError> {
    let Ok(tokens) = tokenize(sql) else {
        return Ok(None);
    };
    let statements = split_statements(&tokens);
    match statements.len() {
        0 => Ok(None),
        1 => Parser::new(sql, statements[0]).statement(),
        count => Err(QueryError::MultiStatement {
            count,
            sql: sql.to_string(),
        }),
    }
}

struct Parser<'a> {
    sql: &'a str,
    tokens: &'a [Token],
    pos: usize,
}

type PResult<T> = Result<T, QueryError>;

fn parse_err(msg: impl Into<String>) -> QueryError {
    QueryError::Parse(msg.into())
}

fn not_implemented(what: &str) -> QueryError {
    QueryError::NotImplemented(format!("{what} is not supported yet"))
}

impl<'a> Parser<'a> {
    fn new(sql: &'a str, tokens: &'a [Token]) -> Parser<'a> {
        Parser {
            sql,
            tokens,
            pos: 0,
        }
    }

    fn peek(&self) -> Option<&'a Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, ahead: usize) -> Option<&'a Tok> {
        self.tokens.get(self.pos + ahead).map(|t| &t.tok)
    }

    fn found(&self) -> String {
        self.peek().map_or("EOF".to_string(), Tok::to_string)
    }

    fn expected<T>(&self, what: &str) -> PResult<T> {
        Err(parse_err(format!(
            "Expected {what}, found: {}",
            self.found()
        )))
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.is_kw(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        match self.eat_kw(kw) {
            true => Ok(()),
            false => self.expected(kw),
        }
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        let yes = matches!(self.peek(), Some(Tok::Punct(x)) if x == p);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_punct(&mut self, p: &str) -> PResult<()> {
        match self.eat_punct(p) {
            true => Ok(()),
            false => self.expected(p),
        }
    }

    fn expect_end(&self) -> PResult<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.expected("end of statement"),
        }
    }

    /// An identifier: a bare word (lower-cased, as SQL does) or a quoted one (as written);
    /// `strings` also accepts a single-quoted name (CnosDB does for database names).
    fn ident(&mut self, strings: bool) -> PResult<String> {
        let name = match self.peek() {
            Some(Tok::Word(w)) => w.to_lowercase(),
            Some(Tok::Quoted(q)) => q.clone(),
            Some(Tok::Str(s)) if strings => s.clone(),
            _ => return self.expected("identifier"),
        };
        self.pos += 1;
        if name.contains('/') {
            return Err(parse_err(format!(
                "not supported keyword contains '/': {name}"
            )));
        }
        if name.trim().is_empty() {
            return Err(parse_err("identifier must not be blank"));
        }
        Ok(name)
    }

    /// `[db.]table`.
    fn table_ref(&mut self) -> PResult<TableRef> {
        let first = self.ident(false)?;
        if self.eat_punct(".") {
            let table = self.ident(false)?;
            return Ok(TableRef {
                database: Some(first),
                table,
            });
        }
        Ok(TableRef {
            database: None,
            table: first,
        })
    }

    /// An unsigned integer literal.
    fn unsigned(&mut self) -> PResult<u64> {
        match self.peek() {
            Some(Tok::Num(n)) => match n.parse::<u64>() {
                Ok(v) => {
                    self.pos += 1;
                    Ok(v)
                }
                Err(_) => self.expected("an unsigned integer"),
            },
            _ => self.expected("an unsigned integer"),
        }
    }

    /// A string option value (a bare word is accepted too: `TTL INF`).
    fn text(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Tok::Str(s) | Tok::Word(s)) => {
                self.pos += 1;
                Ok(s.clone())
            }
            _ => self.expected("a quoted string"),
        }
    }

    fn statement(mut self) -> PResult<Option<Statement>> {
        let Some(Tok::Word(first)) = self.peek() else {
            return Ok(None);
        };
        let first = first.to_ascii_uppercase();
        let second = match self.peek_at(1) {
            Some(Tok::Word(w)) => w.to_ascii_uppercase(),
            _ => String::new(),
        };
        let stmt = match (first.as_str(), second.as_str()) {
            ("CREATE", "DATABASE") => self.create_database()?,
            ("CREATE", "TABLE") => self.create_table()?,
            ("ALTER", "DATABASE") => self.alter_database()?,
            ("ALTER", "TABLE") => self.alter_table()?,
            ("DESCRIBE" | "DESC", "DATABASE") => {
                self.pos += 2;
                Statement::DescribeDatabase {
                    name: self.ident(true)?,
                }
            }
            ("DESCRIBE" | "DESC", "TABLE") => {
                self.pos += 2;
                Statement::DescribeTable(self.table_ref()?)
            }
            ("SHOW", "DATABASES") => {
                self.pos += 2;
                Statement::ShowDatabases
            }
            ("SHOW", "TABLES") => {
                self.pos += 2;
                Statement::ShowTables {
                    database: self.on_database()?,
                }
            }
            ("SHOW", "SERIES") => self.show_series()?,
            ("SHOW", "TAG") => self.show_tag_values()?,
            ("INSERT", _) => self.insert()?,
            ("DROP", "DATABASE") => {
                self.pos += 2;
                let if_exists = self.if_exists()?;
                let name = self.ident(true)?;
                if self.is_kw("AFTER") {
                    return Err(not_implemented("DROP DATABASE ... AFTER (delayed drop)"));
                }
                Statement::DropDatabase { name, if_exists }
            }
            ("DROP", "TABLE") => {
                self.pos += 2;
                let if_exists = self.if_exists()?;
                Statement::DropTable {
                    table: self.table_ref()?,
                    if_exists,
                }
            }
            ("DELETE", _) => self.delete()?,
            ("CREATE" | "ALTER" | "DROP", "TENANT" | "USER" | "ROLE")
            | ("GRANT" | "REVOKE" | "RECOVER" | "COMPACT", _) => {
                return Err(not_implemented(&format!("{first} {second}")));
            }
            ("UPDATE", _) => return Err(not_implemented(&first)),
            _ => return Ok(None),
        };
        self.expect_end()?;
        Ok(Some(stmt))
    }

    fn if_exists(&mut self) -> PResult<bool> {
        if self.eat_kw("IF") {
            self.expect_kw("EXISTS")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// `DELETE FROM [db.]t [WHERE cond AND cond ...]`, each condition `tag = 'v'`,
    /// `tag IN ('v', ...)` or `time <op> literal` (op one of = < <= > >=).
    fn delete(&mut self) -> PResult<Statement> {
        self.pos += 1;
        self.expect_kw("FROM")?;
        let table = self.table_ref()?;
        let mut conditions = Vec::new();
        if self.eat_kw("WHERE") {
            loop {
                conditions.push(self.delete_condition()?);
                if !self.eat_kw("AND") {
                    break;
                }
            }
            if self.is_kw("OR") {
                return Err(not_implemented(
                    "OR in a DELETE's WHERE (use AND of tag = / IN and time comparisons)",
                ));
            }
        }
        Ok(Statement::Delete { table, conditions })
    }

    fn delete_condition(&mut self) -> PResult<super::DeleteCondition> {
        use super::DeleteCondition;
        let column = self.ident(false)?;
        if self.eat_kw("IN") {
            self.expect_punct("(")?;
            let mut values = Vec::new();
            loop {
                match self.peek() {
                    Some(Tok::Str(s)) => values.push(s.clone()),
                    _ => return self.expected("a string literal"),
                }
                self.pos += 1;
                if !self.eat_punct(",") {
                    break;
                }
            }
            self.expect_punct(")")?;
            return Ok(DeleteCondition::TagIn { column, values });
        }
        let op = match self.peek() {
            Some(Tok::Punct(p)) if ["=", "<", "<=", ">", ">="].contains(&p.as_str()) => p.clone(),
            _ => return self.expected("=, <, <=, >, >= or IN"),
        };
        self.pos += 1;
        let value = self.literal()?;
        Ok(DeleteCondition::Compare { column, op, value })
    }

    fn if_not_exists(&mut self) -> PResult<bool> {
        if self.eat_kw("IF") {
            self.expect_kw("NOT")?;
            self.expect_kw("EXISTS")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn on_database(&mut self) -> PResult<Option<String>> {
        match self.eat_kw("ON") {
            true => Ok(Some(self.ident(true)?)),
            false => Ok(None),
        }
    }

    fn create_database(&mut self) -> PResult<Statement> {
        self.pos += 2;
        let if_not_exists = self.if_not_exists()?;
        let name = self.ident(true)?;
        let mut options = Vec::new();
        if self.eat_kw("WITH") {
            while let Some(Tok::Word(_)) = self.peek() {
                options.push(self.database_option(false)?);
            }
        }
        Ok(Statement::CreateDatabase {
            name,
            if_not_exists,
            options,
        })
    }

    fn alter_database(&mut self) -> PResult<Statement> {
        self.pos += 2;
        let name = self.ident(true)?;
        self.expect_kw("SET")?;
        let option = self.database_option(true)?;
        Ok(Statement::AlterDatabase { name, option })
    }

    /// `NAME [=] value`. With `alter`, only the options CnosDB lets change are accepted.
    fn database_option(&mut self, alter: bool) -> PResult<DatabaseOption> {
        let Some(Tok::Word(word)) = self.peek() else {
            return self.expected("a database option");
        };
        let name = word.to_ascii_uppercase();
        let modifiable = matches!(
            name.as_str(),
            "TTL" | "SHARD" | "VNODE_DURATION" | "REPLICA"
        );
        const KNOWN: [&str; 11] = [
            "TTL",
            "SHARD",
            "VNODE_DURATION",
            "REPLICA",
            "PRECISION",
            "MAX_MEMCACHE_SIZE",
            "MEMCACHE_PARTITIONS",
            "WAL_MAX_FILE_SIZE",
            "WAL_SYNC",
            "STRICT_WRITE",
            "MAX_CACHE_READERS",
        ];
        if !KNOWN.contains(&name.as_str()) {
            return self.expected("end of statement");
        }
        if alter && !modifiable {
            return Err(parse_err("database config is unmodifiable, only can modify database option: TTL, SHARD, VNODE_DURATION, REPLICA"));
        }
        self.pos += 1;
        self.eat_punct("=");
        let option = match name.as_str() {
            "TTL" => DatabaseOption::Ttl(self.ttl()?),
            "SHARD" => DatabaseOption::Shard(self.positive("SHARD")?),
            "VNODE_DURATION" => DatabaseOption::VnodeDuration(self.duration()?),
            "REPLICA" => DatabaseOption::Replica(self.positive("REPLICA")?),
            "PRECISION" => DatabaseOption::Precision(self.precision()?),
            "MAX_MEMCACHE_SIZE" => DatabaseOption::MaxMemcacheSize(self.size()?),
            "MEMCACHE_PARTITIONS" => DatabaseOption::MemcachePartitions(self.unsigned()?),
            "WAL_MAX_FILE_SIZE" => DatabaseOption::WalMaxFileSize(self.size()?),
            "WAL_SYNC" => DatabaseOption::WalSync(self.boolean()?),
            "STRICT_WRITE" => DatabaseOption::StrictWrite(self.boolean()?),
            _ => DatabaseOption::MaxCacheReaders(self.unsigned()?),
        };
        Ok(option)
    }

    fn positive(&mut self, what: &str) -> PResult<u64> {
        match self.unsigned()? {
            0 => Err(parse_err(format!("{what} must be greater than 0"))),
            n => Ok(n),
        }
    }

    fn ttl(&mut self) -> PResult<Option<Duration>> {
        let text = self.text()?;
        if text.eq_ignore_ascii_case("inf") {
            return Ok(None);
        }
        units::parse_duration(&text).map(Some).map_err(parse_err)
    }

    fn duration(&mut self) -> PResult<Duration> {
        let text = self.text()?;
        units::parse_duration(&text).map_err(parse_err)
    }

    fn size(&mut self) -> PResult<u64> {
        let text = self.text()?;
        units::parse_size(&text).map_err(parse_err)
    }

    fn boolean(&mut self) -> PResult<bool> {
        let text = self.text()?;
        match text.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(parse_err(format!(
                "Expected 'true' or 'false', found: {text}"
            ))),
        }
    }

    fn precision(&mut self) -> PResult<Precision> {
        let text = self.text()?;
        match text.to_ascii_uppercase().as_str() {
            "NS" => Ok(Precision::Nanos),
            "US" => Ok(Precision::Micros),
            "MS" => Ok(Precision::Millis),
            _ => Err(parse_err(format!(
                "Expected precision 'ms', 'us' or 'ns', found: '{text}'"
            ))),
        }
    }

    fn create_table(&mut self) -> PResult<Statement> {
        self.pos += 2;
        let if_not_exists = self.if_not_exists()?;
        let table = self.table_ref()?;
        if self.peek().is_none() {
            return Err(parse_err("Expected field columns when create table"));
        }
        self.expect_punct("(")?;
        let mut columns = Vec::new();
        let mut tags = Vec::new();
        loop {
            if self.is_kw("TAGS") && self.peek_at(1) == Some(&Tok::Punct("(".into())) {
                self.pos += 2;
                tags = self.ident_list()?;
                self.expect_punct(")")?;
                break;
            }
            columns.push(self.column_def()?);
            if self.eat_punct(")") {
                break;
            }
            self.expect_punct(",")?;
        }
        Ok(Statement::CreateTable {
            table,
            if_not_exists,
            columns,
            tags,
        })
    }

    /// `a, b, c)`: identifiers up to and including the closing parenthesis.
    fn ident_list(&mut self) -> PResult<Vec<String>> {
        let mut out = vec![self.ident(false)?];
        while self.eat_punct(",") {
            out.push(self.ident(false)?);
        }
        self.expect_punct(")")?;
        Ok(out)
    }

    /// `name TYPE [CODEC(x)]`.
    fn column_def(&mut self) -> PResult<ColumnDef> {
        let name = self.ident(false)?;
        let ty = self.sql_type(&name)?;
        let codec = self.codec()?;
        Ok(ColumnDef { name, ty, codec })
    }

    fn sql_type(&mut self, column: &str) -> PResult<SqlType> {
        let Some(Tok::Word(word)) = self.peek() else {
            return self.expected("a data type");
        };
        self.pos += 1;
        let ty = match word.to_ascii_uppercase().as_str() {
            "BIGINT" if self.eat_kw("UNSIGNED") => SqlType::Field(FieldType::Unsigned),
            "BIGINT" => SqlType::Field(FieldType::Integer),
            "DOUBLE" => SqlType::Field(FieldType::Float),
            "STRING" => SqlType::Field(FieldType::String),
            "BOOLEAN" => SqlType::Field(FieldType::Boolean),
            "TIMESTAMP" => SqlType::Timestamp,
            "GEOMETRY" => return Err(not_implemented("the GEOMETRY type")),
            _ => {
                return Err(QueryError::DataType {
                    data_type: word.clone(),
                    column: column.to_string(),
                })
            }
        };
        Ok(ty)
    }

    fn codec(&mut self) -> PResult<Option<Codec>> {
        if !self.eat_kw("CODEC") {
            return Ok(None);
        }
        self.expect_punct("(")?;
        let name = match self.peek() {
            Some(Tok::Word(w)) => w.clone(),
            _ => return Err(parse_err("expect codec encoding type in ()")),
        };
        self.pos += 1;
        let codec = Codec::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(&name))
            .ok_or_else(|| parse_err(format!("{name} is not valid encoding")))?;
        self.expect_punct(")")?;
        Ok(Some(codec))
    }

    fn alter_table(&mut self) -> PResult<Statement> {
        self.pos += 2;
        let table = self.table_ref()?;
        let action = if self.eat_kw("ADD") {
            if self.eat_kw("FIELD") {
                TableAction::AddField(self.column_def()?)
            } else if self.eat_kw("TAG") {
                let name = self.ident(false)?;
                if self.is_kw("CODEC") {
                    return Err(QueryError::TagCodec);
                }
                TableAction::AddTag(name)
            } else {
                return self.expected("FIELD or TAG");
            }
        } else if self.eat_kw("ALTER") {
            let column = self.ident(false)?;
            self.expect_kw("SET")?;
            let codec = match self.codec()? {
                Some(c) => c,
                None => return self.expected("CODEC"),
            };
            TableAction::SetCodec { column, codec }
        } else if self.eat_kw("DROP") {
            TableAction::DropColumn(self.ident(false)?)
        } else if self.is_kw("RENAME") {
            return Err(not_implemented(&format!(
                "ALTER TABLE ... {}",
                self.found().to_ascii_uppercase()
            )));
        } else {
            return self.expected("ADD, ALTER, DROP or RENAME");
        };
        Ok(Statement::AlterTable { table, action })
    }

    /// `SHOW SERIES [ON db] FROM t [WHERE ..] [ORDER BY key [ASC|DESC]] [LIMIT n] [OFFSET m]`.
    fn show_series(&mut self) -> PResult<Statement> {
        self.pos += 2;
        let database = self.on_database()?;
        self.expect_kw("FROM")?;
        let table = self.ident(false)?;
        let filter = self.where_clause()?;
        let mut descending = false;
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            self.expect_kw("KEY")?;
            descending = self.direction();
        }
        let (limit, offset) = self.limit_offset()?;
        Ok(Statement::ShowSeries {
            table: TableRef { database, table },
            filter,
            descending,
            limit,
            offset,
        })
    }

    /// `SHOW TAG VALUES [ON db] FROM t WITH KEY (= k | != k | IN (..) | NOT IN (..)) ...`.
    fn show_tag_values(&mut self) -> PResult<Statement> {
        self.pos += 2;
        self.expect_kw("VALUES")?;
        let database = self.on_database()?;
        self.expect_kw("FROM")?;
        let table = self.ident(false)?;
        self.expect_kw("WITH")?;
        self.expect_kw("KEY")?;
        let keys = if self.eat_punct("=") {
            KeyFilter::Eq(self.ident(false)?)
        } else if self.eat_punct("!=") || self.eat_punct("<>") {
            KeyFilter::Ne(self.ident(false)?)
        } else if self.eat_kw("IN") {
            self.expect_punct("(")?;
            KeyFilter::In(self.ident_list()?)
        } else if self.eat_kw("NOT") {
            self.expect_kw("IN")?;
            self.expect_punct("(")?;
            KeyFilter::NotIn(self.ident_list()?)
        } else {
            return self.expected("=, !=, IN or NOT IN");
        };
        let filter = self.where_clause()?;
        let mut order = None;
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            let column = match self.ident(false)?.as_str() {
                "key" => "key",
                "value" => "value",
                _ => return Err(parse_err("SHOW TAG VALUES orders by key or value")),
            };
            order = Some((column, self.direction()));
        }
        let (limit, offset) = self.limit_offset()?;
        Ok(Statement::ShowTagValues(ShowTagValues {
            table: TableRef { database, table },
            keys,
            filter,
            order,
            limit,
            offset,
        }))
    }

    /// `ASC` or `DESC` (default ascending); true for descending.
    fn direction(&mut self) -> bool {
        if self.eat_kw("DESC") {
            return true;
        }
        self.eat_kw("ASC");
        false
    }

    fn limit_offset(&mut self) -> PResult<(Option<u64>, Option<u64>)> {
        let (mut limit, mut offset) = (None, None);
        loop {
            if limit.is_none() && self.eat_kw("LIMIT") {
                limit = Some(self.unsigned()?);
            } else if offset.is_none() && self.eat_kw("OFFSET") {
                offset = Some(self.unsigned()?);
            } else {
                return Ok((limit, offset));
            }
        }
    }

    /// `WHERE <expr>`: the expression's text up to a top-level ORDER, LIMIT or OFFSET, with the
    /// identifiers it names. DataFusion parses and checks the text when the rewritten query is
    /// planned; here only its extent and its parentheses are checked.
    fn where_clause(&mut self) -> PResult<Option<WhereClause>> {
        if !self.eat_kw("WHERE") {
            return Ok(None);
        }
        let first = self.pos;
        let mut depth = 0usize;
        let mut idents = Vec::new();
        while let Some(tok) = self.peek() {
            match tok {
                Tok::Punct(p) if p == "(" => depth += 1,
                Tok::Punct(p) if p == ")" => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or_else(|| parse_err("Expected end of statement, found: )"))?;
                }
                Tok::Word(w)
                    if depth == 0
                        && ["ORDER", "LIMIT", "OFFSET"]
                            .iter()
                            .any(|k| w.eq_ignore_ascii_case(k)) =>
                {
                    break
                }
                Tok::Word(w) => idents.push(w.to_lowercase()),
                Tok::Quoted(q) => idents.push(q.clone()),
                _ => {}
            }
            self.pos += 1;
        }
        if depth != 0 {
            return self.expected(")");
        }
        if self.pos == first {
            return self.expected("an expression");
        }
        let (start, end) = (self.tokens[first].start, self.tokens[self.pos - 1].end);
        Ok(Some(WhereClause {
            sql: self.sql.get(start..end).unwrap_or_default().to_string(),
            idents,
        }))
    }

    /// `INSERT [INTO] [db.]t [(cols)] VALUES (..), (..)`.
    fn insert(&mut self) -> PResult<Statement> {
        self.pos += 1;
        self.eat_kw("INTO");
        let table = self.table_ref()?;
        let mut columns = Vec::new();
        if self.eat_punct("(") {
            columns = self.ident_list()?;
        }
        if self.is_kw("SELECT") || self.is_kw("WITH") {
            return Err(not_implemented("INSERT ... SELECT"));
        }
        self.expect_kw("VALUES")?;
        let mut rows = Vec::new();
        loop {
            self.expect_punct("(")?;
            let mut row = vec![self.literal()?];
            while self.eat_punct(",") {
                row.push(self.literal()?);
            }
            self.expect_punct(")")?;
            rows.push(row);
            if !self.eat_punct(",") {
                break;
            }
        }
        Ok(Statement::Insert {
            table,
            columns,
            rows,
        })
    }

    /// A literal of a VALUES row: string, number (optionally signed), TRUE, FALSE, NULL.
    fn literal(&mut self) -> PResult<super::Literal> {
        use super::Literal;
        let negative = if self.eat_punct("-") {
            true
        } else {
            self.eat_punct("+");
            false
        };
        let lit = match self.peek() {
            Some(Tok::Num(n)) => {
                let text = if negative { format!("-{n}") } else { n.clone() };
                match text.parse::<i128>() {
                    Ok(v) => Literal::Int(v),
                    Err(_) => match text.parse::<f64>() {
                        Ok(v) => Literal::Float(v),
                        Err(_) => return self.expected("a number"),
                    },
                }
            }
            Some(Tok::Str(s)) if !negative => Literal::Str(s.clone()),
            Some(Tok::Word(w)) if !negative => match w.to_ascii_uppercase().as_str() {
                "NULL" => Literal::Null,
                "TRUE" => Literal::Bool(true),
                "FALSE" => Literal::Bool(false),
                _ => return self.expected("a literal value"),
            },
            _ => return self.expected("a literal value"),
        };
        self.pos += 1;
        Ok(lit)
    }
}
