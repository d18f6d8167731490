//! Operators compiled against their values, and applied to field values.
//!
//! Values are prepared once: numbers parsed, `in` lists turned into a set,
//! `contains` needles into a substring searcher, globs into regexes. Applying
//! an operator to a header field then allocates nothing.
//!
//! A value compares with a number numerically when it reads as one (`403`,
//! `"403"`, `4.5e2`); text compares as text. See the [module
//! doc](super) for the rules on lists and missing fields.

use std::cmp::Ordering;
use std::collections::HashSet;

use memchr::memmem::Finder;
use regex::Regex;

use super::ast::{Comparison, Literal, Operand, OperandKind, Operator};
use super::glob::{self, Anchor};
use super::value::{bool_text, FieldRef, Scalar};
use super::ConditionError;

/// An operator with its compiled value(s).
#[derive(Debug, Clone)]
pub(super) enum Matcher {
    /// `exists`.
    Exists,
    /// `=`.
    Equal(Target),
    /// `!=`.
    NotEqual(Target),
    /// `<`, `<=`, `>`, `>=`.
    Order(Bound, Target),
    /// `contains`.
    Contains(Box<Finder<'static>>),
    /// `icontains`.
    IContains(Caseless),
    /// `startswith`.
    StartsWith(Box<str>),
    /// `endswith`.
    EndsWith(Box<str>),
    /// `glob`.
    Glob(Regex),
    /// `in`.
    In(ValueSet),
    /// `intersects`.
    Intersects(ValueSet),
    /// `pmatch`.
    PMatch(Box<[PathPrefix]>),
}

impl Matcher {
    /// Compiles the operator and operand of a comparison.
    pub(super) fn compile(comparison: &Comparison) -> Result<Matcher, ConditionError> {
        let operator = comparison.operator;
        match (&comparison.operand, operator.operand_kind()) {
            (Operand::None, OperandKind::None) => Ok(Matcher::Exists),
            (Operand::Value(value), OperandKind::Value) => single(operator, value),
            (Operand::List(items), OperandKind::List) => list(operator, items),
            _ => Err(ConditionError::new(
                comparison.operator_position,
                format!("the operator `{operator}` does not take this kind of operand"),
            )),
        }
    }

    /// Applies the operator to a field's value; false when the field is missing.
    pub(super) fn test(&self, value: &FieldRef<'_>) -> bool {
        if value.is_missing() {
            return false;
        }
        match self {
            Matcher::Exists => true,
            Matcher::NotEqual(target) => !value.any(|s| target.equals(s)),
            Matcher::In(set) => value.all(|s| set.contains(s)),
            Matcher::Intersects(set) => value.any(|s| set.contains(s)),
            _ => value.any(|s| self.test_scalar(s)),
        }
    }

    fn test_scalar(&self, scalar: &Scalar<'_>) -> bool {
        match self {
            Matcher::Equal(target) => target.equals(scalar),
            Matcher::Order(bound, target) => {
                target.compare(scalar).is_some_and(|o| bound.accepts(o))
            }
            Matcher::Contains(finder) => scalar.with_text(|t| finder.find(t.as_bytes()).is_some()),
            Matcher::IContains(needle) => scalar.with_text(|t| needle.is_in(t)),
            Matcher::StartsWith(prefix) => scalar.with_text(|t| t.starts_with(&**prefix)),
            Matcher::EndsWith(suffix) => scalar.with_text(|t| t.ends_with(&**suffix)),
            Matcher::Glob(regex) => scalar.with_text(|t| regex.is_match(t)),
            Matcher::PMatch(prefixes) => {
                scalar.with_text(|t| prefixes.iter().any(|p| p.matches(t)))
            }
            Matcher::Exists | Matcher::NotEqual(_) | Matcher::In(_) | Matcher::Intersects(_) => {
                false
            }
        }
    }
}

fn single(operator: Operator, value: &Literal) -> Result<Matcher, ConditionError> {
    let text = value.text.as_str();
    Ok(match operator {
        Operator::Eq => Matcher::Equal(Target::new(text)),
        Operator::Ne => Matcher::NotEqual(Target::new(text)),
        Operator::Lt => Matcher::Order(Bound::Less, Target::new(text)),
        Operator::Le => Matcher::Order(Bound::LessOrEqual, Target::new(text)),
        Operator::Gt => Matcher::Order(Bound::Greater, Target::new(text)),
        Operator::Ge => Matcher::Order(Bound::GreaterOrEqual, Target::new(text)),
        Operator::Contains => {
            Matcher::Contains(Box::new(Finder::new(text.as_bytes()).into_owned()))
        }
        Operator::IContains => Matcher::IContains(Caseless::new(text)),
        Operator::StartsWith => Matcher::StartsWith(text.into()),
        Operator::EndsWith => Matcher::EndsWith(text.into()),
        Operator::Glob => Matcher::Glob(
            glob::compile(text, Anchor::Whole)
                .map_err(|message| ConditionError::new(value.position, message))?,
        ),
        Operator::In | Operator::Intersects | Operator::PMatch | Operator::Exists => {
            return Err(ConditionError::new(
                value.position,
                format!("the operator `{operator}` does not take a single value"),
            ))
        }
    })
}

fn list(operator: Operator, items: &[Literal]) -> Result<Matcher, ConditionError> {
    match operator {
        Operator::In => Ok(Matcher::In(ValueSet::new(items))),
        Operator::Intersects => Ok(Matcher::Intersects(ValueSet::new(items))),
        Operator::PMatch => items
            .iter()
            .map(PathPrefix::new)
            .collect::<Result<Vec<_>, _>>()
            .map(|prefixes| Matcher::PMatch(prefixes.into_boxed_slice())),
        _ => Err(ConditionError::new(
            items.first().map_or(1, |item| item.position),
            format!("the operator `{operator}` does not take a list of values"),
        )),
    }
}

/// A number in a condition or a field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Number {
    /// An integer.
    Int(i64),
    /// Any other finite number.
    Float(f64),
}

impl Number {
    /// The number `text` reads as, if any (`403`, `-1`, `4.5e2`; not `inf` or `NaN`).
    fn parse(text: &str) -> Option<Number> {
        if let Ok(n) = text.parse::<i64>() {
            return Some(Number::Int(n));
        }
        text.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Number::Float)
    }

    /// The number a field value is or reads as.
    fn of(scalar: &Scalar<'_>) -> Option<Number> {
        match scalar {
            Scalar::Int(n) => Some(Number::Int(*n)),
            Scalar::Float(n) => Some(Number::Float(*n)),
            Scalar::Str(text) => Number::parse(text),
            Scalar::Bool(_) => None,
        }
    }

    fn compare(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            // Precision loss only past 2^53, where integers and floats rarely meet.
            Number::Int(n) => n as f64,
            Number::Float(n) => n,
        }
    }
}

/// Which orderings `<`, `<=`, `>`, `>=` accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bound {
    /// `<`.
    Less,
    /// `<=`.
    LessOrEqual,
    /// `>`.
    Greater,
    /// `>=`.
    GreaterOrEqual,
}

impl Bound {
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Bound::Less => ordering.is_lt(),
            Bound::LessOrEqual => ordering.is_le(),
            Bound::Greater => ordering.is_gt(),
            Bound::GreaterOrEqual => ordering.is_ge(),
        }
    }
}

/// The value of `=`, `!=` and the orderings: its text and, if it reads as one, its number.
#[derive(Debug, Clone)]
pub(super) struct Target {
    text: Box<str>,
    number: Option<Number>,
}

impl Target {
    fn new(text: &str) -> Target {
        Target {
            text: text.into(),
            number: Number::parse(text),
        }
    }

    /// Text equals text; a number equals a value that reads as the same number.
    fn equals(&self, scalar: &Scalar<'_>) -> bool {
        match scalar {
            Scalar::Str(text) => **text == *self.text,
            Scalar::Int(_) | Scalar::Float(_) => {
                self.number_ordering(scalar).is_some_and(Ordering::is_eq)
            }
            Scalar::Bool(b) => *self.text == *bool_text(*b),
        }
    }

    /// How the field value orders against this value: as numbers when both
    /// read as numbers, as text when the field is text, not at all otherwise.
    fn compare(&self, scalar: &Scalar<'_>) -> Option<Ordering> {
        match scalar {
            Scalar::Str(text) => self
                .number_ordering(scalar)
                .or_else(|| Some(text.as_ref().cmp(&*self.text))),
            Scalar::Int(_) | Scalar::Float(_) => self.number_ordering(scalar),
            Scalar::Bool(_) => None,
        }
    }

    fn number_ordering(&self, scalar: &Scalar<'_>) -> Option<Ordering> {
        Number::of(scalar)?.compare(self.number?)
    }
}

/// The needle of `icontains`, lower-cased once.
#[derive(Debug, Clone)]
pub(super) struct Caseless {
    needle: Box<str>,
    ascii: bool,
}

impl Caseless {
    fn new(text: &str) -> Caseless {
        Caseless {
            needle: text.to_lowercase().into(),
            ascii: text.is_ascii(),
        }
    }

    /// Whether the needle occurs in `haystack`, ignoring case (without allocating for ASCII needles).
    fn is_in(&self, haystack: &str) -> bool {
        if !self.ascii {
            return haystack.to_lowercase().contains(&*self.needle);
        }
        let needle = self.needle.as_bytes();
        needle.is_empty()
            || haystack
                .as_bytes()
                .windows(needle.len())
                .any(|window| window.eq_ignore_ascii_case(needle))
    }
}

/// The values of `in` and `intersects`: texts in a set, and the numbers among them.
#[derive(Debug, Clone)]
pub(super) struct ValueSet {
    texts: TextSet,
    numbers: Box<[Number]>,
}

/// Up to this many values are searched in order; more go into a hash set.
const LINEAR_SEARCH_MAX: usize = 8;

#[derive(Debug, Clone)]
enum TextSet {
    Few(Box<[Box<str>]>),
    Many(HashSet<Box<str>>),
}

impl ValueSet {
    fn new(items: &[Literal]) -> ValueSet {
        let texts = items.iter().map(|item| Box::from(item.text.as_str()));
        let texts = if items.len() <= LINEAR_SEARCH_MAX {
            TextSet::Few(texts.collect())
        } else {
            TextSet::Many(texts.collect())
        };
        let numbers = items
            .iter()
            .filter_map(|item| Number::parse(&item.text))
            .collect();
        ValueSet { texts, numbers }
    }

    /// Whether a field value is in the set: text by text, numbers by number.
    fn contains(&self, scalar: &Scalar<'_>) -> bool {
        match scalar {
            Scalar::Str(text) => self.contains_text(text),
            Scalar::Bool(b) => self.contains_text(bool_text(*b)),
            Scalar::Int(_) | Scalar::Float(_) => Number::of(scalar).is_some_and(|n| {
                self.numbers
                    .iter()
                    .any(|m| n.compare(*m).is_some_and(Ordering::is_eq))
            }),
        }
    }

    fn contains_text(&self, text: &str) -> bool {
        match &self.texts {
            TextSet::Few(texts) => texts.iter().any(|t| **t == *text),
            TextSet::Many(texts) => texts.contains(text),
        }
    }
}

/// One path prefix of `pmatch`.
#[derive(Debug, Clone)]
pub(super) enum PathPrefix {
    /// `/`: every absolute path.
    Root,
    /// A path without wildcards: itself and everything under it.
    Literal(Box<str>),
    /// A path with glob wildcards, matched segment by segment from the start.
    Pattern(Regex),
}

impl PathPrefix {
    fn new(item: &Literal) -> Result<PathPrefix, ConditionError> {
        let path = item.text.trim_end_matches('/');
        if path.is_empty() {
            return Ok(PathPrefix::Root);
        }
        if glob::has_wildcards(path) {
            return glob::compile(path, Anchor::PathPrefix)
                .map(PathPrefix::Pattern)
                .map_err(|message| ConditionError::new(item.position, message));
        }
        Ok(PathPrefix::Literal(path.into()))
    }

    /// Whether `path` is this prefix or lies under it (`/tmp/a` matches `/tmp/a/b`, not `/tmp/ab`).
    fn matches(&self, path: &str) -> bool {
        match self {
            PathPrefix::Root => path.starts_with('/'),
            PathPrefix::Literal(prefix) => path
                .strip_prefix(&**prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            PathPrefix::Pattern(regex) => regex.is_match(path),
        }
    }
}
