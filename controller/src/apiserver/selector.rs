//! Label and field selectors of list and watch requests (`?labelSelector=`,
//! `?fieldSelector=`), parsed and matched as k8s.io/apimachinery's `labels` and `fields`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use drover_api::validation::dns1123_subdomain_problems;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as K8sLabelSelector;
use serde_json::Value;

/// Why a selector was rejected. The messages are Kubernetes' own, so clients that match
/// on them keep working.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    /// A token the grammar does not allow at this point.
    #[error("found '{found}', expected: {expected}")]
    Syntax {
        /// The token found (empty at the end of the string).
        found: String,
        /// What the grammar allows here.
        expected: &'static str,
    },
    /// A requirement that could not be parsed (wraps the reason, as Kubernetes does).
    #[error("unable to parse requirement: {0}")]
    Requirement(Box<SelectorError>),
    /// A label key that is not a qualified name.
    #[error("invalid label key \"{key}\": {}", problems.join("; "))]
    InvalidKey {
        /// The key.
        key: String,
        /// Every problem with it.
        problems: Vec<String>,
    },
    /// A label value that is not a valid label value.
    #[error("invalid label value: \"{value}\": at key: \"{key}\": {}", problems.join("; "))]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value.
        value: String,
        /// Every problem with it.
        problems: Vec<String>,
    },
    /// `in` / `notin` without values.
    #[error("for 'in', 'notin' operators, values set can't be empty")]
    EmptyValues,
    /// `Exists` / `DoesNotExist` with values.
    #[error("values set must be empty for exists and does not exist")]
    ValuesForbidden,
    /// `>` / `<` with a value that is not an integer.
    #[error("for 'Gt', 'Lt' operators, the value must be an integer")]
    NotAnInteger,
    /// An unknown `matchExpressions` operator.
    #[error("{0:?} is not a valid label selector operator")]
    UnknownOperator(String),
    /// A field selector term without an operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole selector.
        selector: String,
        /// The term that has no operator.
        term: String,
    },
    /// A backslash escape other than `\\`, `\,` and `\=` in a field selector value.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// An unescaped `,` or `=` in a field selector value.
    #[error("invalid field selector: unescaped character in value: {0:?}")]
    UnescapedCharacter(char),
    /// A field the kind cannot be selected by.
    #[error(
        "\"{field}\" is not a known field selector: only {}",
        quoted_list(allowed)
    )]
    UnknownField {
        /// The field asked for.
        field: String,
        /// The fields the kind supports, in order.
        allowed: Vec<String>,
    },
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------

/// How a label requirement compares the label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `key=value` or `key==value`.
    Equals,
    /// `key!=value` (true when the label is absent).
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)` (true when the label is absent).
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>1` (integer comparison; the label must exist and be an integer).
    GreaterThan,
    /// `key<1`.
    LessThan,
}

/// One requirement of a label selector; all of a selector's requirements must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    /// A validated requirement (key, values and their number checked as Kubernetes does).
    pub fn new(
        key: &str,
        operator: Operator,
        values: impl IntoIterator<Item = String>,
    ) -> Result<Self, SelectorError> {
        validate_key(key)?;
        let values: BTreeSet<String> = values.into_iter().collect();
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError::EmptyValues)
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError::ValuesForbidden)
            }
            Operator::GreaterThan | Operator::LessThan
                if values.len() != 1 || values.iter().any(|v| v.parse::<i64>().is_err()) =>
            {
                return Err(SelectorError::NotAnInteger)
            }
            _ => {}
        }
        for v in &values {
            validate_value(key, v)?;
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted.
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => {
                !value.is_some_and(|v| self.values.contains(v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values
                        .iter()
                        .next()
                        .and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.iter().next().map(String::as_str).unwrap_or("");
        let list = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::In => write!(f, "{} in ({})", self.key, list()),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, list()),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{first}", self.key),
            Operator::LessThan => write!(f, "{}<{first}", self.key),
        }
    }
}

/// A parsed label selector: the conjunction of its requirements (none = everything).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when the selector has no requirements (it matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key as Kubernetes keeps them.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        // Stable, so requirements on one key keep their written order.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
const LABEL_VALUE_MAX_LENGTH: usize = 63;

fn qualified_name_message() -> String {
    format!(
        "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with \
         an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
         validation is '{QUALIFIED_NAME_FMT}')"
    )
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn qualified_chars_ok(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Problems with `key` as a label key (Kubernetes' `IsQualifiedName`).
pub fn label_key_problems(key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                problems.extend(
                    dns1123_subdomain_problems(prefix)
                        .into_iter()
                        .map(|p| format!("prefix part {p}")),
                );
            }
            *name
        }
        _ => {
            problems.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                qualified_name_message()
            ));
            return problems;
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        problems.push(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX_LENGTH} characters"
        ));
    }
    if !qualified_chars_ok(name) {
        problems.push(format!("name part {}", qualified_name_message()));
    }
    problems
}

/// Problems with `value` as a label value (Kubernetes' `IsValidLabelValue`).
pub fn label_value_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        problems.push(format!(
            "must be no more than {LABEL_VALUE_MAX_LENGTH} characters"
        ));
    }
    if !value.is_empty() && !qualified_chars_ok(value) {
        problems.push(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  \
             or 'my_value',  or '12345', regex used for validation is '({QUALIFIED_NAME_FMT})?')"
        ));
    }
    problems
}

fn validate_key(key: &str) -> Result<(), SelectorError> {
    let problems = label_key_problems(key);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::InvalidKey {
            key: key.to_string(),
            problems,
        })
    }
}

fn validate_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let problems = label_value_problems(value);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            problems,
        })
    }
}

/// A token of the label selector grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    End,
    Identifier(String),
    In,
    NotIn,
    Bang,
    NotEquals,
    Equals,
    DoubleEquals,
    Greater,
    Less,
    OpenParen,
    CloseParen,
    Comma,
}

impl Token {
    fn literal(&self) -> &str {
        match self {
            Token::End => "",
            Token::Identifier(s) => s,
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Bang => "!",
            Token::NotEquals => "!=",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::Greater => ">",
            Token::Less => "<",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
        }
    }

    /// In value position `in` and `notin` are plain identifiers (`in in (in)` is legal).
    fn into_value(self) -> Token {
        match self {
            Token::In | Token::NotIn => Token::Identifier(self.literal().to_string()),
            t => t,
        }
    }
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if is_whitespace(c) {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let next = chars.peek().copied();
            let token = match (c, next) {
                ('!', Some('=')) => Token::NotEquals,
                ('=', Some('=')) => Token::DoubleEquals,
                ('!', _) => Token::Bang,
                ('=', _) => Token::Equals,
                ('>', _) => Token::Greater,
                ('<', _) => Token::Less,
                ('(', _) => Token::OpenParen,
                (')', _) => Token::CloseParen,
                _ => Token::Comma,
            };
            if matches!(token, Token::NotEquals | Token::DoubleEquals) {
                chars.next();
            }
            tokens.push(token);
            continue;
        }
        let mut ident = String::new();
        while let Some(&c) = chars.peek() {
            if is_whitespace(c) || is_special(c) {
                break;
            }
            ident.push(c);
            chars.next();
        }
        tokens.push(match ident.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier(ident),
        });
    }
    tokens.push(Token::End);
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    /// The next token, in operator position (`in` / `notin` are keywords).
    fn peek_keyword(&self) -> Token {
        self.tokens.get(self.pos).cloned().unwrap_or(Token::End)
    }

    /// The next token, in value position.
    fn peek(&self) -> Token {
        self.peek_keyword().into_value()
    }

    fn next_keyword(&mut self) -> Token {
        let t = self.peek_keyword();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn next(&mut self) -> Token {
        self.next_keyword().into_value()
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::Identifier(_) | Token::Bang => {
                    let r = self
                        .requirement()
                        .map_err(|e| SelectorError::Requirement(Box::new(e)))?;
                    requirements.push(r);
                    match self.next() {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let t = self.peek();
                            if !matches!(t, Token::Identifier(_) | Token::Bang) {
                                return Err(syntax(&t, "identifier after ','"));
                            }
                        }
                        t => return Err(syntax(&t, "',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(requirements),
                t => return Err(syntax(&t, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut negated = false;
        let mut token = self.next();
        if token == Token::Bang {
            negated = true;
            token = self.next();
        }
        let Token::Identifier(key) = token else {
            return Err(syntax(&token, "identifier"));
        };
        validate_key(&key)?;
        if negated {
            return Requirement::new(&key, Operator::DoesNotExist, []);
        }
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Requirement::new(&key, Operator::Exists, []);
        }
        let operator = match self.next_keyword() {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals | Token::DoubleEquals => Operator::Equals,
            Token::NotEquals => Operator::NotEquals,
            Token::Greater => Operator::GreaterThan,
            Token::Less => Operator::LessThan,
            t => return Err(syntax(&t, "in, notin, =, ==, !=, gt, lt")),
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, operator, values)
    }

    /// `(a, b, c)`; empty entries (`(a,,b)`, `()`) stand for the empty value.
    fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let t = self.next();
        if t != Token::OpenParen {
            return Err(syntax(&t, "'('"));
        }
        let mut values = BTreeSet::new();
        match self.peek() {
            Token::Identifier(_) | Token::Comma => self.identifier_list(&mut values)?,
            Token::CloseParen => {
                values.insert(String::new());
            }
            t => return Err(syntax(&t, "',', ')' or identifier")),
        }
        let t = self.next();
        if t != Token::CloseParen {
            return Err(syntax(&t, "')'"));
        }
        Ok(values)
    }

    /// The inside of `( … )`, leaving the closing parenthesis unread.
    fn identifier_list(&mut self, values: &mut BTreeSet<String>) -> Result<(), SelectorError> {
        loop {
            match self.next() {
                Token::Identifier(v) => {
                    values.insert(v);
                    match self.peek() {
                        Token::Comma => {}
                        Token::CloseParen => return Ok(()),
                        t => return Err(syntax(&t, "',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    match self.peek() {
                        Token::CloseParen => {
                            values.insert(String::new());
                            return Ok(());
                        }
                        Token::Comma => {
                            self.next();
                            values.insert(String::new());
                        }
                        _ => {}
                    }
                }
                t => return Err(syntax(&t, "',', or identifier")),
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>`, `<`; nothing at all means "".
    fn exact_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        match self.next() {
            Token::Identifier(v) => Ok(BTreeSet::from([v])),
            t => Err(syntax(&t, "identifier")),
        }
    }
}

fn syntax(found: &Token, expected: &'static str) -> SelectorError {
    SelectorError::Syntax {
        found: found.literal().to_string(),
        expected,
    }
}

/// Parses a `labelSelector` query parameter (the full set-based grammar). An empty or
/// all-whitespace string selects everything.
pub fn parse_label_selector(s: &str) -> Result<LabelSelector, SelectorError> {
    let mut parser = Parser {
        tokens: lex(s),
        pos: 0,
    };
    parser.parse().map(LabelSelector::from_requirements)
}

/// Converts a structured `LabelSelector` (matchLabels + matchExpressions). An empty one
/// selects everything.
pub fn label_selector_from_k8s(sel: &K8sLabelSelector) -> Result<LabelSelector, SelectorError> {
    let mut requirements = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        requirements.push(Requirement::new(k, Operator::Equals, [v.clone()])?);
    }
    for expr in sel.match_expressions.iter().flatten() {
        let operator = match expr.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => return Err(SelectorError::UnknownOperator(other.to_string())),
        };
        let values = expr.values.iter().flatten().cloned();
        requirements.push(Requirement::new(&expr.key, operator, values)?);
    }
    Ok(LabelSelector::from_requirements(requirements))
}

// ---------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------

/// One term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Dotted path, e.g. `metadata.name`.
    pub field: String,
    /// The value compared with (unescaped).
    pub value: String,
    /// True for `!=`.
    pub negated: bool,
}

/// A parsed field selector: the conjunction of its terms (none = everything).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Whether `obj` satisfies every term; a missing field reads as the empty string.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements
            .iter()
            .all(|r| (field_value(obj, &r.field) == r.value) != r.negated)
    }

    /// The name a `metadata.name=` term asks for, so a list can be narrowed to one key.
    pub fn single_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| !r.negated && r.field == "metadata.name")
            .map(|r| r.value.as_str())
    }

    /// True when the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, in the order written.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }
}

/// The value at the dotted `path` as a selector sees it: strings as they are, numbers and
/// booleans in their JSON form, anything missing or null as "".
fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(_) | Value::Number(_) => cur.to_string(),
        Value::Array(_) | Value::Object(_) => String::new(),
    }
}

/// Splits on commas not escaped by a backslash.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits `lhs op rhs` at the first operator (`!=`, `==`, `=`, tried in that order at
/// each position). Returns (field, negated, value).
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if let Some(v) = rest.strip_prefix("!=") {
            return Some((&term[..i], true, v));
        }
        if let Some(v) = rest.strip_prefix("==") {
            return Some((&term[..i], false, v));
        }
        if let Some(v) = rest.strip_prefix('=') {
            return Some((&term[..i], false, v));
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(SelectorError::InvalidEscape(format!("\\{e}"))),
                None => return Err(SelectorError::InvalidEscape("\\".to_string())),
            },
            ',' | '=' => return Err(SelectorError::UnescapedCharacter(c)),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Parses a `fieldSelector` query parameter: comma-separated `f=v`, `f==v`, `f!=v` terms
/// (`\,`, `\=` and `\\` escape in values), every field one of `allowed`.
pub fn parse_field_selector(s: &str, allowed: &[&str]) -> Result<FieldSelector, SelectorError> {
    let mut requirements = Vec::new();
    for term in split_terms(s) {
        if term.trim().is_empty() {
            continue;
        }
        let Some((field, negated, value)) = split_term(term) else {
            return Err(SelectorError::FieldTerm {
                selector: s.to_string(),
                term: term.to_string(),
            });
        };
        let field = field.trim();
        if !allowed.contains(&field) {
            return Err(SelectorError::UnknownField {
                field: field.to_string(),
                allowed: allowed.iter().map(|a| a.to_string()).collect(),
            });
        }
        requirements.push(FieldRequirement {
            field: field.to_string(),
            value: unescape_value(value.trim())?,
            negated,
        });
    }
    Ok(FieldSelector { requirements })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        match parse_label_selector(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} did not parse: {e}"),
        }
    }

    fn err(s: &str) -> String {
        match parse_label_selector(s) {
            Ok(sel) => panic!("{s:?} parsed as {sel:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        for s in ["", "   ", "\t\n"] {
            let sel = sel(s);
            assert!(sel.is_empty());
            assert!(sel.matches(&labels(&[])));
            assert!(sel.matches(&labels(&[("a", "b")])));
        }
    }

    #[test]
    fn equality_operators() {
        for s in ["app=web", "app==web", " app = web ", "app== web"] {
            let sel = sel(s);
            assert!(sel.matches(&labels(&[("app", "web")])), "{s}");
            assert!(!sel.matches(&labels(&[("app", "db")])), "{s}");
            assert!(!sel.matches(&labels(&[])), "{s}");
        }
        let ne = sel("app!=web");
        assert!(!ne.matches(&labels(&[("app", "web")])));
        assert!(ne.matches(&labels(&[("app", "db")])));
        assert!(
            ne.matches(&labels(&[])),
            "!= matches objects without the key"
        );
    }

    #[test]
    fn empty_value_after_equals() {
        let s = sel("app=");
        assert!(s.matches(&labels(&[("app", "")])));
        assert!(!s.matches(&labels(&[])));
        assert!(!s.matches(&labels(&[("app", "x")])));
        assert!(sel("app=,tier").matches(&labels(&[("app", ""), ("tier", "x")])));
    }

    #[test]
    fn set_operators() {
        let s = sel("env in (prod, staging)");
        assert!(s.matches(&labels(&[("env", "prod")])));
        assert!(s.matches(&labels(&[("env", "staging")])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[])));
        let s = sel("env notin (prod,staging)");
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert!(s.matches(&labels(&[("env", "dev")])));
        assert!(
            s.matches(&labels(&[])),
            "notin matches objects without the key"
        );
        assert_eq!(
            sel("env in (b,a,b)").requirements()[0].values(),
            &BTreeSet::from(["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn empty_entries_in_sets_mean_the_empty_value() {
        for s in [
            "a in ()",
            "a in (,)",
            "a in (x,)",
            "a in (,x)",
            "a in (x,,y)",
        ] {
            let sel = sel(s);
            assert!(sel.matches(&labels(&[("a", "")])), "{s}");
            assert!(sel.requirements()[0].values().contains(""), "{s}");
        }
    }

    #[test]
    fn existence_operators() {
        let s = sel("app");
        assert!(s.matches(&labels(&[("app", "")])));
        assert!(!s.matches(&labels(&[("other", "x")])));
        let s = sel("!app");
        assert!(!s.matches(&labels(&[("app", "x")])));
        assert!(s.matches(&labels(&[("other", "x")])));
        assert!(sel(" ! app ").matches(&labels(&[])));
    }

    #[test]
    fn requirements_are_anded() {
        let s = sel("app=web,tier in (front),!canary,env!=dev,version");
        assert_eq!(s.requirements().len(), 5);
        assert!(s.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("version", "2")
        ])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("version", "2"),
            ("canary", "true")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "front")])));
    }

    #[test]
    fn keywords_are_identifiers_in_value_position() {
        let s = sel("in in (in, notin)");
        assert!(s.matches(&labels(&[("in", "notin")])));
        assert!(sel("notin=in").matches(&labels(&[("notin", "in")])));
    }

    #[test]
    fn integer_comparisons() {
        let s = sel("gen>3");
        assert!(s.matches(&labels(&[("gen", "4")])));
        assert!(!s.matches(&labels(&[("gen", "3")])));
        assert!(!s.matches(&labels(&[("gen", "x")])));
        assert!(!s.matches(&labels(&[])));
        assert!(sel("gen<3").matches(&labels(&[("gen", "2")])));
        assert_eq!(
            err("gen>x"),
            "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer"
        );
    }

    #[test]
    fn prefixed_keys() {
        let s = sel("drover.dev/app=web,app.kubernetes.io/name in (web)");
        assert!(s.matches(&labels(&[
            ("drover.dev/app", "web"),
            ("app.kubernetes.io/name", "web")
        ])));
    }

    #[test]
    fn display_round_trips() {
        let s = sel("b in (y,x), a!=1, !c, d, e=f");
        assert_eq!(s.to_string(), "a!=1,b in (x,y),!c,d,e=f");
        assert_eq!(parse_label_selector(&s.to_string()), Ok(s));
    }

    #[test]
    fn syntax_errors_read_like_kubernetes() {
        assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(
            err(",a"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(
            err("a in x"),
            "unable to parse requirement: found 'x', expected: '('"
        );
        assert_eq!(
            err("a in (x"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            err("a in (x y)"),
            "unable to parse requirement: found 'y', expected: ',' or ')'"
        );
        assert_eq!(
            err("a=(b)"),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(
            err("!=a"),
            "found '!=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(err("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert_eq!(
            err("!"),
            "unable to parse requirement: found '', expected: identifier"
        );
        assert!(err("a in (=)").contains("expected: ',', ')' or identifier"));
    }

    #[test]
    fn keys_are_validated() {
        assert_eq!(
            err("-a=b"),
            "unable to parse requirement: invalid label key \"-a\": name part must consist of \
             alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
             validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        let long = "a".repeat(64);
        assert!(err(&format!("{long}=b")).contains("name part must be no more than 63 characters"));
        assert!(parse_label_selector(&format!("{}=b", "a".repeat(63))).is_ok());
        assert!(err("/a=b").contains("prefix part must be non-empty"));
        assert!(err("Drover.dev/a=b").contains("prefix part a lowercase RFC 1123 subdomain"));
        assert!(err("a/b/c=d").contains("a qualified name must consist of"));
        assert!(err("a/=b").contains("name part must be non-empty"));
        assert!(err("a_=b").contains("invalid label key \"a_\""));
        assert!(err("é=b").contains("invalid label key"));
    }

    #[test]
    fn values_are_validated() {
        assert_eq!(
            err("a=-b"),
            "unable to parse requirement: invalid label value: \"-b\": at key: \"a\": a valid \
             label must be an empty string or consist of alphanumeric characters, '-', '_' or \
             '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or \
             'my_value',  or '12345', regex used for validation is \
             '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        assert!(
            err(&format!("a={}", "v".repeat(64))).contains("must be no more than 63 characters")
        );
        assert!(err("a in (ok, bad/)").contains("invalid label value: \"bad/\""));
        assert!(parse_label_selector("a=My_Value.1-x").is_ok());
    }

    #[test]
    fn from_k8s_selector() {
        let k = K8sLabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["dev".into()]),
                },
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["front".into(), "back".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "version".into(),
                    operator: "Exists".into(),
                    values: Some(vec![]),
                },
            ]),
        };
        let s = label_selector_from_k8s(&k).unwrap_or_default();
        assert_eq!(s.requirements().len(), 5);
        let ok = labels(&[("app", "web"), ("tier", "back"), ("version", "1")]);
        assert!(s.matches(&ok));
        let mut dev = ok.clone();
        dev.insert("env".into(), "dev".into());
        assert!(!s.matches(&dev));
        let mut canary = ok.clone();
        canary.insert("canary".into(), "y".into());
        assert!(!s.matches(&canary));

        assert!(label_selector_from_k8s(&K8sLabelSelector::default()).is_ok_and(|s| s.is_empty()));
    }

    #[test]
    fn from_k8s_selector_rejects_bad_expressions() {
        let expr = |op: &str, values: Option<Vec<String>>| K8sLabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: op.into(),
                values,
            }]),
        };
        assert_eq!(
            label_selector_from_k8s(&expr("Gt", None)).map_err(|e| e.to_string()),
            Err("\"Gt\" is not a valid label selector operator".to_string())
        );
        assert_eq!(
            label_selector_from_k8s(&expr("In", Some(vec![]))),
            Err(SelectorError::EmptyValues)
        );
        assert_eq!(
            label_selector_from_k8s(&expr("Exists", Some(vec!["x".into()]))),
            Err(SelectorError::ValuesForbidden)
        );
        let bad_label = K8sLabelSelector {
            match_labels: Some([("k".to_string(), "bad value".to_string())].into()),
            match_expressions: None,
        };
        assert!(matches!(
            label_selector_from_k8s(&bad_label),
            Err(SelectorError::InvalidValue { .. })
        ));
    }

    const NAME_NS: &[&str] = &["metadata.name", "metadata.namespace"];

    fn fsel(s: &str, allowed: &[&str]) -> FieldSelector {
        match parse_field_selector(s, allowed) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} did not parse: {e}"),
        }
    }

    #[test]
    fn field_selector_matches_dotted_paths() {
        let obj = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"nodeName": "n1", "replicas": 3, "suspend": false}});
        let allowed = &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.replicas",
            "spec.suspend",
        ];
        assert!(fsel("metadata.name=web", allowed).matches(&obj));
        assert!(fsel("metadata.name==web,metadata.namespace=default", allowed).matches(&obj));
        assert!(!fsel("metadata.name=db", allowed).matches(&obj));
        assert!(fsel("metadata.name!=db", allowed).matches(&obj));
        assert!(!fsel("metadata.name!=web", allowed).matches(&obj));
        assert!(fsel("spec.nodeName=n1", allowed).matches(&obj));
        assert!(fsel("spec.replicas=3", allowed).matches(&obj));
        assert!(fsel("spec.suspend=false", allowed).matches(&obj));
        assert!(fsel(" metadata.name = web ", allowed).matches(&obj));
    }

    #[test]
    fn missing_field_reads_as_empty() {
        let allowed = &["spec.nodeName"];
        let unscheduled = json!({"metadata": {"name": "t"}, "spec": {}});
        assert!(fsel("spec.nodeName=", allowed).matches(&unscheduled));
        assert!(fsel("spec.nodeName==", allowed).matches(&json!({})));
        assert!(!fsel("spec.nodeName!=", allowed).matches(&unscheduled));
        assert!(fsel("spec.nodeName!=", allowed).matches(&json!({"spec": {"nodeName": "n"}})));
        assert!(fsel("spec.nodeName=", allowed).matches(&json!({"spec": {"nodeName": null}})));
    }

    #[test]
    fn empty_field_selector_matches_everything() {
        let s = fsel("", NAME_NS);
        assert!(s.is_empty());
        assert!(s.matches(&json!({})));
        assert_eq!(s.single_name(), None);
        assert!(fsel(",", NAME_NS).is_empty());
    }

    #[test]
    fn unknown_field_lists_allowed_fields() {
        let e = parse_field_selector("spec.foo=bar", NAME_NS).map_err(|e| e.to_string());
        assert_eq!(
            e,
            Err(r#""spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace""#
                .to_string())
        );
        assert!(parse_field_selector("metadata.name=a,status.phase=x", NAME_NS).is_err());
    }

    #[test]
    fn field_selector_syntax_errors() {
        assert_eq!(
            parse_field_selector("metadata.name", NAME_NS).map_err(|e| e.to_string()),
            Err("invalid selector: 'metadata.name'; can't understand 'metadata.name'".to_string())
        );
        assert_eq!(
            parse_field_selector("metadata.name=a=b", NAME_NS),
            Err(SelectorError::UnescapedCharacter('='))
        );
        assert_eq!(
            parse_field_selector(r"metadata.name=a\x", NAME_NS),
            Err(SelectorError::InvalidEscape(r"\x".to_string()))
        );
        assert_eq!(
            parse_field_selector(r"metadata.name=a\", NAME_NS),
            Err(SelectorError::InvalidEscape(r"\".to_string()))
        );
    }

    #[test]
    fn escaped_values() {
        let s = fsel(r"metadata.name=a\,b\=c\\d", NAME_NS);
        assert_eq!(s.single_name(), Some(r"a,b=c\d"));
        assert!(s.matches(&json!({"metadata": {"name": r"a,b=c\d"}})));
    }

    #[test]
    fn single_name_ignores_negated_and_other_fields() {
        assert_eq!(
            fsel("metadata.name=web", NAME_NS).single_name(),
            Some("web")
        );
        assert_eq!(
            fsel("metadata.namespace=ns,metadata.name==web", NAME_NS).single_name(),
            Some("web")
        );
        assert_eq!(fsel("metadata.name!=web", NAME_NS).single_name(), None);
        assert_eq!(fsel("metadata.namespace=web", NAME_NS).single_name(), None);
    }
}
