//! The query language over inventory (issue 21): one grammar for `invsite query`,
//! `GET /api/v1/clients?where=`, the console's query box and saved groups. This module parses
//! and prints queries and holds the pure parts of their meaning (which item keys a pattern
//! names, glob matching, how two values compare); evaluating one against the clients of a site
//! is the site's.
//!
//! ```text
//! query      = or
//! or         = and ("or" and)*
//! and        = not ("and" not)*
//! not        = "not" not | "(" or ")" | condition
//! condition  = path "exists" | path op value
//! op         = "=" | "!=" | "<" | "<=" | ">" | ">=" | "~"
//! path       = "hw." key "." attribute | "sw." [source ":"] package | "client." field
//! value      = a quoted string ("…", with \" and \\) | a bare word up to a space or ")"
//! ```
//!
//! A path runs up to a space, a parenthesis or an operator, so a package name may hold dots
//! (`sw.python3.11`). In `hw.<key>.<attribute>` the attribute is the last dot's right and the
//! key what lies between: `hw.cpu.threads`, `hw.disk.sda.size_bytes` (the first dot of a key
//! without `/` stands for it: `disk/sda`), `hw.pci.*.vendor` (any `pci/` item) or its short
//! form `hw.pci.vendor`. Keywords are case-insensitive; everything else is as written.

use std::fmt;

use crate::version::Scheme;
use crate::{Items, Timestamp};

/// The longest query accepted, in bytes: a saved group's condition, not a program.
pub const MAX_QUERY_BYTES: usize = 4096;
/// How deeply `not` and parentheses may nest (the parser recurses once per level).
const MAX_DEPTH: usize = 64;

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Cond(Condition),
    Not(Box<Expr>),
    /// Two or more, all true.
    And(Vec<Expr>),
    /// Two or more, one true.
    Or(Vec<Expr>),
}

/// `field op value` or `field exists`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub field: Field,
    pub test: Test,
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// An attribute of the client's hardware items whose key [`key_matches`] `key`.
    Hw {
        key: String,
        attr: String,
    },
    /// The versions of package `name` the client holds (from `source` only, when given).
    Sw {
        source: Option<String>,
        name: String,
    },
    Client(ClientField),
}

/// The client's own fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientField {
    Name,
    Site,
    LastSeen,
    Stale,
    HwUpdated,
    SwUpdated,
}

impl ClientField {
    const ALL: [(&'static str, ClientField); 6] = [
        ("name", ClientField::Name),
        ("site", ClientField::Site),
        ("last_seen", ClientField::LastSeen),
        ("stale", ClientField::Stale),
        ("hw_updated", ClientField::HwUpdated),
        ("sw_updated", ClientField::SwUpdated),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| n)
    }

    /// Whether the field is a time, compared as an age (`client.last_seen > 7d`).
    pub fn is_time(self) -> bool {
        matches!(
            self,
            ClientField::LastSeen | ClientField::HwUpdated | ClientField::SwUpdated
        )
    }
}

/// What a condition asks of its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    Exists,
    Compare(Op, Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Glob match (`*` any run, `?` one character), ASCII case-insensitive.
    Glob,
}

impl Op {
    const ALL: [(&'static str, Op); 7] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("!=", Op::Ne),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("~", Op::Glob),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map_or("", |(s, _)| s)
    }

    /// Whether `ordering` (the field's value against the query's) satisfies the operator;
    /// `Glob` is not an ordering and is never satisfied here.
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => ordering == Equal,
            Op::Ne => ordering != Equal,
            Op::Lt => ordering == Less,
            Op::Le => ordering != Greater,
            Op::Gt => ordering == Greater,
            Op::Ge => ordering != Less,
            Op::Glob => false,
        }
    }
}

/// A value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Text, quoted or bare; a bare one that reads as a number compares as one.
    Text {
        text: String,
        quoted: bool,
    },
    /// An age, for a time field: milliseconds.
    Age(i64),
    Bool(bool),
}

/// A query that does not parse: where (1-based column, in characters) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct QueryError {
    pub column: usize,
    pub message: String,
}

/// Parses a query.
pub fn parse(text: &str) -> Result<Expr, QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(QueryError {
            column: 1,
            message: format!(
                "the query is {} bytes; the longest accepted is {MAX_QUERY_BYTES}",
                text.len()
            ),
        });
    }
    let mut p = Parser { text, at: 0 };
    let expr = p.or(0)?;
    p.skip_space();
    if p.at < text.len() {
        return Err(p.error(format!(
            "expected and, or or the end of the query, found {}",
            p.found()
        )));
    }
    Ok(expr)
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset of the next character.
    at: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    /// The 1-based column, in characters, of byte offset `at`.
    fn column_of(&self, at: usize) -> usize {
        self.text[..at].chars().count() + 1
    }

    fn error(&self, message: String) -> QueryError {
        self.error_at(self.at, message)
    }

    fn error_at(&self, at: usize, message: String) -> QueryError {
        QueryError {
            column: self.column_of(at),
            message,
        }
    }

    /// What stands at the cursor, for an error message.
    fn found(&self) -> String {
        match self.rest().split_whitespace().next() {
            None => "the end of the query".to_string(),
            Some(word) => {
                let shown: String = word.chars().take(24).collect();
                format!("{shown:?}")
            }
        }
    }

    /// The keyword `word` (case-insensitive) at the cursor, ending there: consumed if present.
    fn keyword(&mut self, word: &str) -> bool {
        self.skip_space();
        let rest = self.rest();
        let ends = |r: &str| {
            r.chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == '(' || c == ')')
        };
        if rest.len() >= word.len()
            && rest.is_char_boundary(word.len())
            && rest[..word.len()].eq_ignore_ascii_case(word)
            && ends(&rest[word.len()..])
        {
            self.at += word.len();
            return true;
        }
        false
    }

    fn or(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut all = vec![self.and(depth)?];
        while self.keyword("or") {
            all.push(self.and(depth)?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::Or(all)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut all = vec![self.not(depth)?];
        while self.keyword("and") {
            all.push(self.not(depth)?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::And(all)
        })
    }

    fn not(&mut self, depth: usize) -> Result<Expr, QueryError> {
        if depth >= MAX_DEPTH {
            return Err(self.error(format!(
                "not and parentheses nest deeper than {MAX_DEPTH} levels"
            )));
        }
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.not(depth + 1)?)));
        }
        self.skip_space();
        if self.rest().starts_with('(') {
            self.at += 1;
            let inner = self.or(depth + 1)?;
            self.skip_space();
            if !self.rest().starts_with(')') {
                return Err(self.error(format!(
                    "expected ) to close the parenthesis, or and/or, found {}",
                    self.found()
                )));
            }
            self.at += 1;
            return Ok(inner);
        }
        self.condition().map(Expr::Cond)
    }

    fn condition(&mut self) -> Result<Condition, QueryError> {
        self.skip_space();
        let start = self.at;
        let path = self.path();
        if path.is_empty() {
            return Err(self.error(format!(
                "expected a condition (hw.…, sw.… or client.…), not or (, found {}",
                self.found()
            )));
        }
        let field = field_of(path).map_err(|message| self.error_at(start, message))?;
        if self.keyword("exists") {
            if let Field::Client(f) = field {
                return Err(self.error_at(
                    start,
                    format!(
                        "client.{} always exists; compare it instead (=, <, …)",
                        f.as_str()
                    ),
                ));
            }
            return Ok(Condition {
                field,
                test: Test::Exists,
            });
        }
        self.skip_space();
        let Some((op, len)) = Op::ALL
            .iter()
            .find(|(s, _)| self.rest().starts_with(s))
            .map(|(s, op)| (*op, s.len()))
        else {
            return Err(self.error(format!(
                "expected an operator (= != < <= > >= ~) or exists after {path}, found {}",
                self.found()
            )));
        };
        self.at += len;
        self.skip_space();
        let value_at = self.at;
        let (text, quoted) = self.value()?;
        let value =
            typed(&field, op, text, quoted).map_err(|message| self.error_at(value_at, message))?;
        Ok(Condition {
            field,
            test: Test::Compare(op, value),
        })
    }

    /// A path: up to a space, a parenthesis, a quote or an operator.
    fn path(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || "()\"=!<>~".contains(c))
            .unwrap_or(rest.len());
        self.at += end;
        &rest[..end]
    }

    /// A quoted string or a bare word (up to a space or a closing parenthesis).
    fn value(&mut self) -> Result<(String, bool), QueryError> {
        let rest = self.rest();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        self.at += 1 + i + 1;
                        return Ok((out, true));
                    }
                    '\\' => match chars.next() {
                        Some((_, e @ ('"' | '\\'))) => out.push(e),
                        _ => {
                            self.at += 1 + i;
                            return Err(self.error(
                                "a backslash in a quoted value escapes only \" or \\".to_string(),
                            ));
                        }
                    },
                    c => out.push(c),
                }
            }
            return Err(self.error("the quoted value is not closed (\")".to_string()));
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == ')' || c == '(')
            .unwrap_or(rest.len());
        if end == 0 {
            return Err(self.error(format!("expected a value, found {}", self.found())));
        }
        self.at += end;
        Ok((rest[..end].to_string(), false))
    }
}

/// The field a path names.
fn field_of(path: &str) -> Result<Field, String> {
    let (head, tail) = path.split_once('.').unwrap_or((path, ""));
    match head {
        "hw" => {
            let Some((key, attr)) = tail.rsplit_once('.') else {
                return Err(format!(
                    "{path} names no attribute: write hw.<item key>.<attribute> (hw.cpu.threads)"
                ));
            };
            if key.is_empty() || attr.is_empty() || attr == "*" {
                return Err(format!(
                    "{path} is not hw.<item key>.<attribute> (hw.cpu.threads, hw.pci.*.vendor)"
                ));
            }
            let key = if key.contains('/') {
                key.to_string()
            } else {
                key.replacen('.', "/", 1)
            };
            Ok(Field::Hw {
                key,
                attr: attr.to_string(),
            })
        }
        "sw" => {
            let (source, name) = match tail.split_once(':') {
                Some((source, name)) => (Some(source.to_string()), name),
                None => (None, tail),
            };
            if name.is_empty() || source.as_deref() == Some("") {
                return Err(format!(
                    "{path} names no package: write sw.<package> or sw.<source>:<package> (sw.openssl, sw.dpkg:openssl)"
                ));
            }
            Ok(Field::Sw {
                source,
                name: name.to_string(),
            })
        }
        "client" => ClientField::ALL
            .iter()
            .find(|(n, _)| *n == tail)
            .map(|(_, f)| Field::Client(*f))
            .ok_or_else(|| {
                let names: Vec<&str> = ClientField::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "{path} is not a client field; there are client.{}",
                    names.join(", client.")
                )
            }),
        _ => Err(format!(
            "{path:?} is not a field: a condition starts with hw., sw. or client."
        )),
    }
}

/// The value of a comparison, checked against what the field holds.
fn typed(field: &Field, op: Op, text: String, quoted: bool) -> Result<Value, String> {
    match field {
        Field::Client(f) if f.is_time() => {
            if op == Op::Glob {
                return Err(format!("client.{} is a time; ~ compares text", f.as_str()));
            }
            let age = humantime::parse_duration(&text).map_err(|_| {
                format!(
                    "client.{} compares with an age (7d, 12h, 30m), not {text:?}",
                    f.as_str()
                )
            })?;
            Ok(Value::Age(
                i64::try_from(age.as_millis()).unwrap_or(i64::MAX),
            ))
        }
        Field::Client(ClientField::Stale) => {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err("client.stale is true or false: compare it with = or !=".to_string());
            }
            match text.as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("client.stale is true or false, not {text:?}")),
            }
        }
        _ => Ok(Value::Text { text, quoted }),
    }
}

/// Whether hardware item key `item` is one a query's `pattern` names: the same key; a key
/// with `*` (any run of characters) and `?` matching it; or, for a pattern without `/` (a
/// kind: `pci`), any item of that kind (`pci/0000:00:02.0`).
pub fn key_matches(pattern: &str, item: &str) -> bool {
    if pattern == item {
        return true;
    }
    if !pattern.contains('/') && !pattern.contains(['*', '?']) {
        return item
            .strip_prefix(pattern)
            .is_some_and(|r| r.starts_with('/'));
    }
    glob_with(pattern.as_bytes(), item.as_bytes(), |a, b| a == b)
}

/// Glob match for `~`: `*` any run, `?` one byte, ASCII case-insensitive.
pub fn glob(pattern: &str, text: &str) -> bool {
    glob_with(pattern.as_bytes(), text.as_bytes(), |a, b| {
        a.eq_ignore_ascii_case(&b)
    })
}

/// Iterative glob with one backtrack point (the last `*`): linear in practice, and never
/// exponential whatever the pattern.
fn glob_with(p: &[u8], t: &[u8], eq: impl Fn(u8, u8) -> bool) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == b'?' || eq(p[pi], t[ti])) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Compares a field's text with a query's: as numbers when both read as numbers (and the
/// query's is not quoted), else as text.
pub fn compare_text(field: &str, query: &str, quoted: bool) -> std::cmp::Ordering {
    if !quoted && let (Ok(a), Ok(b)) = (field.trim().parse::<f64>(), query.parse::<f64>()) {
        return a.total_cmp(&b);
    }
    field.cmp(query)
}

/// One client as a query sees it. `hw` holds its hardware items when the query names any
/// (`Expr::needs_hw`); software conditions are answered by the caller, from its software
/// index, through the `sw` argument of [`matches`].
pub struct Facts<'a> {
    pub name: &'a str,
    pub site: &'a str,
    pub last_seen: Option<Timestamp>,
    pub stale: bool,
    pub hw_updated: Option<Timestamp>,
    pub sw_updated: Option<Timestamp>,
    pub hw: &'a Items,
}

impl Expr {
    /// Every condition, in order.
    pub fn conditions(&self) -> Vec<&Condition> {
        fn walk<'e>(e: &'e Expr, out: &mut Vec<&'e Condition>) {
            match e {
                Expr::Cond(c) => out.push(c),
                Expr::Not(e) => walk(e, out),
                Expr::And(all) | Expr::Or(all) => all.iter().for_each(|e| walk(e, out)),
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// Whether a condition looks at hardware items.
    pub fn needs_hw(&self) -> bool {
        self.conditions()
            .iter()
            .any(|c| matches!(c.field, Field::Hw { .. }))
    }
}

/// Whether the client `facts` describes matches `expr` at `now`. A condition on items holds
/// when any item it names satisfies it (`hw.pci.vendor != Intel`: some device is not Intel;
/// `not hw.pci.vendor = Intel`: none is). A time never recorded is older than any age.
/// `sw(condition)` says whether the client holds a package the software condition names in a
/// version it accepts ([`version_test`]).
pub fn matches(
    expr: &Expr,
    facts: &Facts<'_>,
    now: Timestamp,
    sw: &mut dyn FnMut(&Condition) -> bool,
) -> bool {
    match expr {
        Expr::Cond(c) => condition_holds(c, facts, now, sw),
        Expr::Not(e) => !matches(e, facts, now, sw),
        Expr::And(all) => all.iter().all(|e| matches(e, facts, now, sw)),
        Expr::Or(all) => all.iter().any(|e| matches(e, facts, now, sw)),
    }
}

fn condition_holds(
    c: &Condition,
    facts: &Facts<'_>,
    now: Timestamp,
    sw: &mut dyn FnMut(&Condition) -> bool,
) -> bool {
    let value = match &c.test {
        Test::Exists => None,
        Test::Compare(op, value) => Some((*op, value)),
    };
    match (&c.field, value) {
        (Field::Sw { .. }, _) => sw(c),
        (Field::Hw { key, attr }, None) => facts
            .hw
            .iter()
            .any(|(k, attrs)| key_matches(key, k) && attrs.contains_key(attr)),
        (Field::Hw { key, attr }, Some((op, value))) => facts.hw.iter().any(|(k, attrs)| {
            key_matches(key, k) && attrs.get(attr).is_some_and(|v| text_holds(op, v, value))
        }),
        (Field::Client(_), None) => true,
        (Field::Client(f), Some((op, value))) => match (f, value) {
            (ClientField::Name, v) => name_holds(op, facts.name, v),
            (ClientField::Site, v) => name_holds(op, facts.site, v),
            (ClientField::Stale, Value::Bool(b)) => op.holds(facts.stale.cmp(b)),
            (ClientField::LastSeen, Value::Age(age)) => age_holds(op, facts.last_seen, *age, now),
            (ClientField::HwUpdated, Value::Age(age)) => age_holds(op, facts.hw_updated, *age, now),
            (ClientField::SwUpdated, Value::Age(age)) => age_holds(op, facts.sw_updated, *age, now),
            // `parse` types every client field's value; a hand-built query of another shape
            // matches nothing.
            _ => false,
        },
    }
}

fn text_holds(op: Op, field: &str, value: &Value) -> bool {
    let Value::Text { text, quoted } = value else {
        return false;
    };
    match op {
        Op::Glob => glob(text, field),
        op => op.holds(compare_text(field, text, *quoted)),
    }
}

/// Client names and site codes are upper case; a query may write them in any case.
fn name_holds(op: Op, field: &str, value: &Value) -> bool {
    let Value::Text { text, .. } = value else {
        return false;
    };
    match op {
        Op::Glob => glob(text, field),
        op => op.holds(field.to_ascii_uppercase().cmp(&text.to_ascii_uppercase())),
    }
}

fn age_holds(op: Op, at: Option<Timestamp>, age_ms: i64, now: Timestamp) -> bool {
    let age = at.map_or(i64::MAX, |t| now.0.saturating_sub(t.0));
    op.holds(age.cmp(&age_ms))
}

/// For a software condition: which of a package's versions (from `source`) it accepts. The
/// package's name, and its source when the condition names one, are the caller's to match.
/// Versions compare in the order of the package's source (`Scheme::of`); `~` globs them.
pub fn version_test(test: &Test) -> impl Fn(&str, &str) -> bool + '_ {
    move |version: &str, source: &str| match test {
        Test::Exists => true,
        Test::Compare(Op::Glob, Value::Text { text, .. }) => glob(text, version),
        Test::Compare(op, Value::Text { text, .. }) => {
            op.holds(Scheme::of(source).compare(version, text))
        }
        Test::Compare(..) => false,
    }
}

impl fmt::Display for Expr {
    /// The canonical text: `parse` reads it back as the same query.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = |f: &mut fmt::Formatter<'_>, all: &[Expr], word: &str| {
            for (i, e) in all.iter().enumerate() {
                if i > 0 {
                    write!(f, " {word} ")?;
                }
                // An operand that is itself a list is parenthesized: `and` binds tighter
                // than `or`, and a nested list of the same kind must stay one operand.
                match e {
                    Expr::And(_) | Expr::Or(_) => write!(f, "({e})")?,
                    _ => write!(f, "{e}")?,
                }
            }
            Ok(())
        };
        match self {
            Expr::Cond(c) => write!(f, "{c}"),
            Expr::Not(e) => match **e {
                Expr::And(_) | Expr::Or(_) => write!(f, "not ({e})"),
                _ => write!(f, "not {e}"),
            },
            Expr::And(all) => joined(f, all, "and"),
            Expr::Or(all) => joined(f, all, "or"),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Field::Hw { key, attr } => write!(f, "hw.{key}.{attr}")?,
            Field::Sw { source: None, name } => write!(f, "sw.{name}")?,
            Field::Sw {
                source: Some(s),
                name,
            } => write!(f, "sw.{s}:{name}")?,
            Field::Client(c) => write!(f, "client.{}", c.as_str())?,
        }
        match &self.test {
            Test::Exists => write!(f, " exists"),
            Test::Compare(op, value) => {
                write!(f, " {} ", op.as_str())?;
                match value {
                    Value::Text {
                        text,
                        quoted: false,
                    } => write!(f, "{text}"),
                    Value::Text { text, quoted: true } => {
                        write!(f, "\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
                    }
                    Value::Age(ms) => write!(
                        f,
                        "{}",
                        humantime::format_duration(std::time::Duration::from_millis(
                            u64::try_from(*ms).unwrap_or(0)
                        ))
                        .to_string()
                        .replace(' ', "")
                    ),
                    Value::Bool(b) => write!(f, "{b}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(field: Field, op: Op, text: &str) -> Expr {
        Expr::Cond(Condition {
            field,
            test: Test::Compare(
                op,
                Value::Text {
                    text: text.to_string(),
                    quoted: false,
                },
            ),
        })
    }

    fn hw(key: &str, attr: &str) -> Field {
        Field::Hw {
            key: key.to_string(),
            attr: attr.to_string(),
        }
    }

    #[test]
    fn the_issues_examples_parse() {
        assert_eq!(
            parse("hw.cpu.threads >= 8").unwrap(),
            cond(hw("cpu", "threads"), Op::Ge, "8")
        );
        assert_eq!(
            parse("hw.memory.total_bytes<8589934592").unwrap(),
            cond(hw("memory", "total_bytes"), Op::Lt, "8589934592")
        );
        assert_eq!(
            parse(r#"hw.pci.*.vendor ~ "NVIDIA*""#).unwrap(),
            Expr::Cond(Condition {
                field: hw("pci/*", "vendor"),
                test: Test::Compare(
                    Op::Glob,
                    Value::Text {
                        text: "NVIDIA*".into(),
                        quoted: true
                    }
                ),
            })
        );
        assert_eq!(
            parse("hw.disk.sda.size_bytes > 1e9").unwrap(),
            cond(hw("disk/sda", "size_bytes"), Op::Gt, "1e9")
        );
        assert_eq!(
            parse("sw.python3.11 >= 3.11.2").unwrap(),
            cond(
                Field::Sw {
                    source: None,
                    name: "python3.11".into()
                },
                Op::Ge,
                "3.11.2"
            )
        );
        let q = "hw.memory.total_bytes < 8589934592 and sw.dpkg:openssl < \"3.0.13\" \
                 or not (client.last_seen > 7d or client.stale = true) and sw.curl exists";
        let e = parse(q).unwrap();
        let Expr::Or(parts) = &e else { panic!("{e:?}") };
        assert_eq!(parts.len(), 2);
        assert!(matches!(&parts[1], Expr::And(a) if a.len() == 2));
        assert_eq!(
            e.to_string(),
            "(hw.memory.total_bytes < 8589934592 and sw.dpkg:openssl < \"3.0.13\") or \
             (not (client.last_seen > 7days or client.stale = true) and sw.curl exists)"
        );
        for text in [
            "client.hw_updated <= 90m",
            "hw.disk.sda.size_bytes > 1 and not not sw.a exists",
            "sw.a = \"say \\\"hi\\\" \\\\\" or (sw.b exists or sw.c exists) or hw.pci.*.vendor ~ x*",
        ] {
            let e = parse(text).unwrap();
            assert_eq!(parse(&e.to_string()).unwrap(), e, "{text} -> {e}");
        }
        assert_eq!(parse(&e.to_string()).unwrap(), e);
        assert_eq!(
            parse("CLIENT.name = x").unwrap_err().column,
            1,
            "field heads are lowercase"
        );
        assert!(parse("client.name = web01 AND NOT client.site = S01").is_ok());
    }

    #[test]
    fn errors_say_where_and_what_was_expected() {
        let cases = [
            ("", 1, "expected a condition"),
            ("hw.cpu.threads", 15, "expected an operator"),
            ("hw.cpu.threads >=", 18, "expected a value"),
            ("hw.cpu >= 8", 1, "names no attribute"),
            ("foo.bar = 1", 1, "is not a field"),
            ("client.age = 1", 1, "is not a client field"),
            ("client.last_seen > soon", 20, "compares with an age"),
            ("client.stale > true", 16, "compare it with = or !="),
            ("client.name exists", 1, "always exists"),
            ("(sw.curl exists", 16, "expected ) to close"),
            ("sw.curl exists)", 15, "expected and, or or the end"),
            ("sw.curl exists and", 19, "expected a condition"),
            ("sw.a = \"open", 8, "not closed"),
            ("sw.a = \"a\\n\"", 10, "escapes only"),
            ("sw. exists", 1, "names no package"),
            ("sw.:x exists", 1, "names no package"),
            ("é = 1 or", 1, "is not a field"),
            ("client.name = a or é", 20, "is not a field"),
        ];
        for (query, column, says) in cases {
            let e = parse(query).unwrap_err();
            assert_eq!(e.column, column, "{query:?}: {e}");
            assert!(e.message.contains(says), "{query:?}: {e}");
        }
        let deep = format!("{}sw.a exists{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("nest deeper"));
        let long = format!("sw.a = {}", "x".repeat(MAX_QUERY_BYTES));
        assert!(
            parse(&long)
                .unwrap_err()
                .message
                .contains("longest accepted")
        );
    }

    #[test]
    fn keys_globs_and_comparisons() {
        assert!(key_matches("cpu", "cpu"));
        assert!(key_matches("pci", "pci/0000:00:02.0"));
        assert!(!key_matches("pci", "pcie"));
        assert!(!key_matches("pc", "pci/0000:00:02.0"));
        assert!(key_matches("pci/*", "pci/0000:00:02.0"));
        assert!(key_matches("disk/sd?", "disk/sda"));
        assert!(!key_matches("disk/sd?", "disk/nvme0n1"));
        assert!(glob("NVIDIA*", "nvidia Corporation"));
        assert!(glob("*intel*", "Intel Corporation"));
        assert!(!glob("NVIDIA*", "Advanced Micro Devices"));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-b-y"));
        // No exponential backtracking: this returns at once.
        assert!(!glob("*a*a*a*a*a*a*a*a*b", &"a".repeat(10_000)));
        use std::cmp::Ordering::*;
        assert_eq!(compare_text("16", "8", false), Greater);
        assert_eq!(compare_text("16", "8", true), Less);
        assert_eq!(compare_text("kvm", "kvm", false), Equal);
        assert!(Op::Le.holds(Equal) && Op::Le.holds(Less) && !Op::Le.holds(Greater));
        assert!(Op::Ne.holds(Less) && !Op::Glob.holds(Equal));
    }

    /// A client as the evaluator sees it, with a few packages answered as a site would.
    fn facts_matching(query: &str, now: Timestamp) -> bool {
        let hw: Items = [
            ("cpu", vec![("threads", "8")]),
            ("memory", vec![("total_bytes", "8589934592")]),
            ("virt", vec![("hypervisor", "kvm")]),
            ("os", vec![("version", "12")]),
            ("pci/0000:00:02.0", vec![("vendor", "Intel Corporation")]),
            ("pci/0000:01:00.0", vec![("vendor", "NVIDIA Corporation")]),
        ]
        .into_iter()
        .map(|(k, attrs)| {
            let attrs = attrs
                .into_iter()
                .map(|(a, v)| (a.to_string(), v.to_string()))
                .collect();
            (k.to_string(), attrs)
        })
        .collect();
        let facts = Facts {
            name: "WEB01",
            site: "S01",
            last_seen: Some(Timestamp(now.0 - 3 * 86_400_000)),
            stale: false,
            hw_updated: Some(Timestamp(now.0 - 40 * 86_400_000)),
            sw_updated: None,
            hw: &hw,
        };
        let packages = [
            ("openssl", "3.0.11-1~deb12u2", "dpkg"),
            ("curl", "7.88.1-10+deb12u5", "dpkg"),
            ("requests", "2.31.0", "pip"),
        ];
        let expr = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        matches(&expr, &facts, now, &mut |c: &Condition| {
            let Field::Sw { source, name } = &c.field else {
                return false;
            };
            let accepts = version_test(&c.test);
            packages.iter().any(|(n, v, s)| {
                n == name && source.as_deref().is_none_or(|want| want == *s) && accepts(v, s)
            })
        })
    }

    #[test]
    fn a_query_matches_a_client_by_its_hardware_software_and_record() {
        let now = Timestamp(1_800_000_000_000);
        let yes = [
            "hw.cpu.threads >= 8",
            "hw.cpu.threads > 10.5 or hw.cpu.threads = 8",
            "hw.os.version = 12",
            "hw.memory.total_bytes < 17179869184",
            "hw.virt.hypervisor = kvm",
            "hw.pci.vendor ~ \"nvidia*\"",
            "hw.pci.*.vendor ~ *Intel*",
            "hw.pci.0000:01:00.0.vendor = \"NVIDIA Corporation\"",
            "hw.pci.vendor != \"Intel Corporation\"",
            "hw.virt.hypervisor exists",
            "sw.openssl < 3.0.13",
            "sw.openssl < 3.0.11-1~deb12u3",
            "sw.dpkg:openssl exists",
            "sw.curl ~ 7.88.*",
            "sw.pip:requests >= 2.31",
            "not sw.nginx exists",
            "client.name = web01",
            "client.name ~ WEB*",
            "client.site = s01",
            "client.last_seen > 2d and client.last_seen < 4d",
            "client.hw_updated > 30d",
            "client.sw_updated > 3650d",
            "client.stale = false",
            "hw.memory.total_bytes < 17179869184 and sw.openssl < 3.0.13 and not client.stale = true",
        ];
        for q in yes {
            assert!(facts_matching(q, now), "{q} should match");
        }
        let no = [
            "hw.cpu.threads > 8",
            "hw.cpu.threads = \"8.0\"",
            "hw.os.version = 11",
            "hw.virt.hypervisor = vmware",
            "hw.pci.vendor ~ AMD*",
            "hw.usb.vendor exists",
            "hw.cpu.vendor exists",
            "not hw.pci.vendor ~ nvidia*",
            "sw.openssl >= 3.0.13",
            "sw.openssl < 3.0.11-1~deb12u1",
            "sw.rpm:openssl exists",
            "sw.nginx exists",
            "client.name = web02",
            "client.last_seen > 7d",
            "client.stale = true",
            "sw.openssl < 3.0.13 and client.last_seen > 7d",
        ];
        for q in no {
            assert!(!facts_matching(q, now), "{q} should not match");
        }
        assert!(parse("hw.cpu.threads > 1").unwrap().needs_hw());
        assert!(
            !parse("sw.a exists or client.stale = true")
                .unwrap()
                .needs_hw()
        );
    }

    proptest::proptest! {
        /// Any text either parses, and its canonical form reads back as the same query, or is
        /// refused with a column inside the text (or just past its end); nothing panics.
        #[test]
        fn any_text_parses_back_the_same_or_is_refused_within_it(
            text in "(hw\\.cpu\\.threads|hw\\.pci\\.\\*\\.vendor|sw\\.curl|sw\\.dpkg:a\\.b|client\\.name|client\\.last_seen|client\\.stale|and|or|not|exists|true|[()]|=|!=|<=|>|~|\"x \\\\y\"|8|7d|kvm|é| ){0,24}"
        ) {
            match parse(&text) {
                Ok(e) => proptest::prop_assert_eq!(parse(&e.to_string()), Ok(e)),
                Err(err) => proptest::prop_assert!(
                    err.column >= 1 && err.column <= text.chars().count() + 1,
                    "{:?}: {}", text, err
                ),
            }
        }
    }
}
