//! Marathon placement constraints: the wire form (`[field, OPERATOR, value?]` or
//! `{field, operator, value}`), their checks, and the parsed form the scheduler matches.

use std::borrow::Cow;
use std::fmt;

use regex::Regex;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::validation::{Path, ValidationErrors};

/// The operators Marathon knows, in their wire spelling.
pub const OPERATORS: &[&str] = &[
    "UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS", "IN",
];

/// One constraint as written: a node field (`hostname` or an attribute), an operator and
/// maybe a value. Deserializes from both Marathon forms, serializes as an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConstraintRule {
    /// `hostname` or the name of a node attribute.
    pub field: String,
    /// One of [`OPERATORS`].
    pub operator: String,
    /// The operator's argument, if it takes one.
    pub value: Option<String>,
}

impl ConstraintRule {
    /// A rule from its parts.
    pub fn new(field: &str, operator: &str, value: Option<&str>) -> Self {
        ConstraintRule {
            field: field.to_string(),
            operator: operator.to_string(),
            value: value.map(str::to_string),
        }
    }

    /// Parses the rule into its typed form, or says what is wrong with it.
    pub fn parse(&self) -> Result<ParsedConstraint, ConstraintError> {
        if self.field.trim().is_empty() {
            return Err(ConstraintError::EmptyField);
        }
        let value = self.value.as_deref();
        let need = |op: &'static str| value.ok_or(ConstraintError::MissingValue(op));
        let op = match self.operator.as_str() {
            "UNIQUE" => match value {
                None => ConstraintOp::Unique,
                Some(_) => return Err(ConstraintError::UnexpectedValue("UNIQUE")),
            },
            "CLUSTER" => ConstraintOp::Cluster(value.map(str::to_string)),
            "GROUP_BY" => ConstraintOp::GroupBy(match value {
                None => None,
                Some(v) => Some(positive_int("GROUP_BY", v)?),
            }),
            "LIKE" => ConstraintOp::Like(full_match_regex(need("LIKE")?)?),
            "UNLIKE" => ConstraintOp::Unlike(full_match_regex(need("UNLIKE")?)?),
            "MAX_PER" => ConstraintOp::MaxPer(positive_int("MAX_PER", need("MAX_PER")?)?),
            "IS" => {
                let v = need("IS")?;
                if v.is_empty() {
                    return Err(ConstraintError::MissingValue("IS"));
                }
                ConstraintOp::Is(v.to_string())
            }
            "IN" => {
                let items: Vec<String> = need("IN")?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect();
                if items.iter().any(String::is_empty) {
                    return Err(ConstraintError::BadList);
                }
                ConstraintOp::In(items)
            }
            other => return Err(ConstraintError::UnknownOperator(other.to_string())),
        };
        Ok(ParsedConstraint {
            field: self.field.clone(),
            op,
        })
    }

    /// Reports what is wrong with the rule at `path` (field, operator or value).
    pub fn validate_into(&self, path: &Path, errors: &mut ValidationErrors) {
        match self.parse() {
            Ok(_) => {}
            Err(ConstraintError::EmptyField) => errors.required(&path.child("field"), ""),
            Err(ConstraintError::UnknownOperator(op)) => {
                errors.not_supported(&path.child("operator"), &op, OPERATORS)
            }
            Err(e) => errors.invalid(&path.child("value"), e.to_string()),
        }
    }
}

impl fmt::Display for ConstraintRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.field, self.operator)?;
        if let Some(v) = &self.value {
            write!(f, ":{v}")?;
        }
        Ok(())
    }
}

/// Why a constraint rule does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// `field` is empty.
    #[error("field must not be empty")]
    EmptyField,
    /// The operator is not one of [`OPERATORS`].
    #[error("unknown operator {0:?}")]
    UnknownOperator(String),
    /// The operator needs a value.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// The operator takes no value.
    #[error("{0} takes no value")]
    UnexpectedValue(&'static str),
    /// The value should be a positive integer.
    #[error("{op} value {value:?} must be a positive integer")]
    NotANumber {
        /// The operator.
        op: &'static str,
        /// The offending value.
        value: String,
    },
    /// LIKE/UNLIKE value is not a regular expression.
    #[error("invalid regular expression {value:?}: {reason}")]
    BadRegex {
        /// The offending value.
        value: String,
        /// What the regex parser said.
        reason: String,
    },
    /// IN value has an empty item.
    #[error("IN value must be a comma-separated list of non-empty values")]
    BadList,
}

fn positive_int(op: &'static str, value: &str) -> Result<u32, ConstraintError> {
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConstraintError::NotANumber {
            op,
            value: value.to_string(),
        }),
    }
}

fn full_match_regex(value: &str) -> Result<Regex, ConstraintError> {
    Regex::new(&format!("^(?:{value})$")).map_err(|e| ConstraintError::BadRegex {
        value: value.to_string(),
        // The regex crate's message spans lines; the first line names the problem.
        reason: e
            .to_string()
            .lines()
            .last()
            .unwrap_or("invalid")
            .trim_start_matches("error: ")
            .to_string(),
    })
}

/// A constraint ready for matching.
#[derive(Clone, Debug)]
pub struct ParsedConstraint {
    /// `hostname` or an attribute name.
    pub field: String,
    /// The operator with its parsed argument.
    pub op: ConstraintOp,
}

/// A parsed operator.
#[derive(Clone, Debug)]
pub enum ConstraintOp {
    /// Every instance on a different value.
    Unique,
    /// All instances on the given value, or on the same value as the first one.
    Cluster(Option<String>),
    /// Spread evenly over the values (over `n` of them when given).
    GroupBy(Option<u32>),
    /// The value matches the regex (whole value).
    Like(Regex),
    /// The value does not match the regex, or is missing.
    Unlike(Regex),
    /// At most `n` instances per value.
    MaxPer(u32),
    /// The value equals this one.
    Is(String),
    /// The value is one of these.
    In(Vec<String>),
}

impl ParsedConstraint {
    /// Whether a node whose `field` has value `candidate` (None = missing attribute) may
    /// take one more instance, given the values of the nodes the other instances run on.
    /// A missing attribute matches only UNLIKE.
    pub fn matches(&self, candidate: Option<&str>, placed: &[&str]) -> bool {
        let Some(value) = candidate else {
            return matches!(self.op, ConstraintOp::Unlike(_));
        };
        let count = |v: &str| placed.iter().filter(|p| **p == v).count();
        match &self.op {
            ConstraintOp::Unique => count(value) == 0,
            ConstraintOp::Cluster(Some(v)) => value == v,
            ConstraintOp::Cluster(None) => placed.first().is_none_or(|first| *first == value),
            ConstraintOp::GroupBy(groups) => {
                let mine = count(value);
                if mine == 0 {
                    return true;
                }
                let mut distinct: Vec<&str> = placed.to_vec();
                distinct.sort_unstable();
                distinct.dedup();
                // A group nobody runs in yet has the minimum count (0), so it comes first.
                if groups.is_some_and(|n| distinct.len() < n as usize) {
                    return false;
                }
                let min = distinct.iter().map(|g| count(g)).min().unwrap_or(0);
                mine == min
            }
            ConstraintOp::Like(re) => re.is_match(value),
            ConstraintOp::Unlike(re) => !re.is_match(value),
            ConstraintOp::MaxPer(n) => count(value) < *n as usize,
            ConstraintOp::Is(v) => value == v,
            ConstraintOp::In(list) => list.iter().any(|v| v == value),
        }
    }
}

impl Serialize for ConstraintRule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let n = if self.value.is_some() { 3 } else { 2 };
        let mut s = serializer.serialize_struct("ConstraintRule", n)?;
        s.serialize_field("field", &self.field)?;
        s.serialize_field("operator", &self.operator)?;
        if let Some(v) = &self.value {
            s.serialize_field("value", v)?;
        }
        s.end()
    }
}

/// A YAML/JSON scalar read as a string (`3` and `"3"` are both "3").
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ConstraintRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConstraintRule;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a constraint: [field, OPERATOR], [field, OPERATOR, value] or \
                     {field, operator, value}",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ConstraintRule, A::Error> {
                let mut items = Vec::new();
                while let Some(Scalar(s)) = seq.next_element()? {
                    items.push(s);
                }
                let mut it = items.into_iter();
                match (it.next(), it.next(), it.next(), it.next()) {
                    (Some(field), Some(operator), value, None) => Ok(ConstraintRule {
                        field,
                        operator,
                        value,
                    }),
                    _ => Err(de::Error::custom(
                        "a constraint list must be [field, OPERATOR] or [field, OPERATOR, value]",
                    )),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConstraintRule, A::Error> {
                let (mut field, mut operator, mut value) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "field" => field = Some(map.next_value::<Scalar>()?.0),
                        "operator" => operator = Some(map.next_value::<Scalar>()?.0),
                        "value" => value = map.next_value::<Option<Scalar>>()?.map(|s| s.0),
                        // Unknown keys are reported by the schema walk, not here.
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ConstraintRule {
                    field: field.ok_or_else(|| de::Error::missing_field("field"))?,
                    operator: operator.ok_or_else(|| de::Error::missing_field("operator"))?,
                    value,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ConstraintRule {
    fn schema_name() -> Cow<'static, str> {
        "ConstraintRule".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A Marathon constraint: [field, OPERATOR], [field, OPERATOR, value] or {field, operator, value}. Operators: UNIQUE, CLUSTER [v], GROUP_BY [n], LIKE re, UNLIKE re, MAX_PER n, IS v, IN a,b.",
            "anyOf": [
                {
                    "type": "array",
                    "items": { "type": "string" },
                    "minItems": 2,
                    "maxItems": 3
                },
                {
                    "type": "object",
                    "properties": {
                        "field": { "type": "string" },
                        "operator": { "type": "string", "enum": OPERATORS },
                        "value": { "type": "string" }
                    },
                    "required": ["field", "operator"]
                }
            ]
        })
    }
}

/// Checks a list of rules at `path`.
pub fn validate_rules(rules: &[ConstraintRule], path: &Path, errors: &mut ValidationErrors) {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate_into(&path.index(i), errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_list(yaml: &str) -> Vec<ConstraintRule> {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn both_forms_and_mixed_lists_parse() {
        let rules = parse_list(
            r#"
- [hostname, UNIQUE]
- ["rack", "GROUP_BY", "3"]
- {field: hostname, operator: UNIQUE}
- {field: rack, operator: LIKE, value: "r[0-9]"}
- [zone, MAX_PER, 2]
"#,
        );
        assert_eq!(
            rules,
            vec![
                ConstraintRule::new("hostname", "UNIQUE", None),
                ConstraintRule::new("rack", "GROUP_BY", Some("3")),
                ConstraintRule::new("hostname", "UNIQUE", None),
                ConstraintRule::new("rack", "LIKE", Some("r[0-9]")),
                ConstraintRule::new("zone", "MAX_PER", Some("2")),
            ]
        );
        for r in &rules {
            assert!(r.parse().is_ok(), "{r}");
        }
    }

    #[test]
    fn serializes_as_object_and_round_trips() {
        let rules = parse_list(r#"[["hostname", "UNIQUE"], ["rack", "CLUSTER", "r1"]]"#);
        let json = serde_json::to_value(&rules).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!([
                {"field": "hostname", "operator": "UNIQUE"},
                {"field": "rack", "operator": "CLUSTER", "value": "r1"}
            ])
        );
        let back: Vec<ConstraintRule> = serde_json::from_value(json).unwrap_or_default();
        assert_eq!(back, rules);
    }

    #[test]
    fn bad_lists_are_rejected_with_a_clear_message() {
        let err = serde_yaml::from_str::<Vec<ConstraintRule>>("[[hostname]]")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("[field, OPERATOR]"), "{err}");
    }

    #[test]
    fn values_are_checked() {
        let bad = [
            (
                ConstraintRule::new("h", "UNIQUE", Some("x")),
                "UNIQUE takes no value",
            ),
            (
                ConstraintRule::new("h", "MAX_PER", Some("x")),
                "must be a positive integer",
            ),
            (
                ConstraintRule::new("h", "MAX_PER", None),
                "MAX_PER needs a value",
            ),
            (
                ConstraintRule::new("h", "GROUP_BY", Some("0")),
                "must be a positive integer",
            ),
            (
                ConstraintRule::new("h", "LIKE", Some("r[")),
                "invalid regular expression",
            ),
            (
                ConstraintRule::new("h", "IN", Some("a,,b")),
                "comma-separated",
            ),
            (ConstraintRule::new("h", "NEAR", None), "unknown operator"),
        ];
        for (rule, want) in bad {
            let got = rule
                .parse()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(got.contains(want), "{rule}: {got}");
        }
    }

    #[test]
    fn matching() {
        let p = |f, o, v| {
            ConstraintRule::new(f, o, v)
                .parse()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(p("hostname", "UNIQUE", None).matches(Some("a"), &["b"]));
        assert!(!p("hostname", "UNIQUE", None).matches(Some("a"), &["a"]));
        assert!(p("rack", "LIKE", Some("r[0-9]")).matches(Some("r1"), &[]));
        assert!(!p("rack", "LIKE", Some("r[0-9]")).matches(Some("r10"), &[]));
        assert!(!p("rack", "LIKE", Some("r.*")).matches(None, &[]));
        assert!(p("rack", "UNLIKE", Some("r.*")).matches(None, &[]));
        assert!(p("rack", "MAX_PER", Some("2")).matches(Some("r1"), &["r1"]));
        assert!(!p("rack", "MAX_PER", Some("2")).matches(Some("r1"), &["r1", "r1"]));
        assert!(p("rack", "CLUSTER", None).matches(Some("r1"), &["r1"]));
        assert!(!p("rack", "CLUSTER", None).matches(Some("r2"), &["r1"]));
        assert!(p("rack", "IN", Some("a, b")).matches(Some("b"), &[]));
        assert!(p("rack", "IS", Some("a")).matches(Some("a"), &[]));
        assert!(p("rack", "GROUP_BY", Some("2")).matches(Some("r2"), &["r1"]));
        assert!(!p("rack", "GROUP_BY", Some("2")).matches(Some("r1"), &["r1"]));
        assert!(p("rack", "GROUP_BY", None).matches(Some("r2"), &["r1", "r1", "r2"]));
        assert!(!p("rack", "GROUP_BY", None).matches(Some("r1"), &["r1", "r1", "r2"]));
    }
}
