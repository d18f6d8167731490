//! Field values: borrowed while a condition is evaluated, owned for output.
//!
//! An extractor reads a field as a [`FieldRef`], which borrows from the event
//! (or from its JSON, parsed once per evaluation) so that comparing header
//! fields allocates nothing. [`FieldValue`] is the owned form, for output
//! formatting: it prints as Falco prints field values, lists as `(a,b)` and a
//! missing field as `<NA>`.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use crate::event::TextList;

/// One value of a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// Text, borrowed from the event where possible.
    Str(Cow<'a, str>),
    /// An integer (`ka.response.code`, integral JSON numbers).
    Int(i64),
    /// A number that is not an integer.
    Float(f64),
    /// A JSON boolean.
    Bool(bool),
}

/// A field's value in one event, borrowed from it where possible.
///
/// A list with no elements counts as missing: every comparison is false and `exists` too.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldRef<'a> {
    /// The event has no such field (or it is not an audit event, for `ka.*`).
    Missing,
    /// A single value.
    One(Scalar<'a>),
    /// A list of strings borrowed from the event (`ka.user.groups`).
    Strs(TextList<'a>),
    /// A list of values an extractor built.
    List(Vec<Scalar<'a>>),
}

/// A field's value, owned: what output formatting prints.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// The event has no such field: prints `<NA>`.
    Missing,
    /// Text.
    Str(String),
    /// An integer.
    Int(i64),
    /// A number that is not an integer.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A list: prints `(a,b)`.
    List(Vec<FieldValue>),
}

impl Scalar<'_> {
    /// Calls `f` with the value as text (`403`, `true`), formatting numbers on the stack.
    pub fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            Scalar::Str(text) => f(text),
            Scalar::Int(n) => with_display(n, f),
            Scalar::Float(n) => with_display(n, f),
            Scalar::Bool(b) => f(bool_text(*b)),
        }
    }

    /// The owned value.
    pub fn to_value(&self) -> FieldValue {
        match self {
            Scalar::Str(text) => FieldValue::Str(text.to_string()),
            Scalar::Int(n) => FieldValue::Int(*n),
            Scalar::Float(n) => FieldValue::Float(*n),
            Scalar::Bool(b) => FieldValue::Bool(*b),
        }
    }
}

impl<'a> FieldRef<'a> {
    /// A single borrowed string.
    pub fn str(text: &'a str) -> FieldRef<'a> {
        FieldRef::One(Scalar::Str(Cow::Borrowed(text)))
    }

    /// A borrowed string if there is one, missing otherwise.
    pub fn opt_str(text: Option<&'a str>) -> FieldRef<'a> {
        text.map_or(FieldRef::Missing, FieldRef::str)
    }

    /// Whether the field is missing (or an empty list).
    pub fn is_missing(&self) -> bool {
        match self {
            FieldRef::Missing => true,
            FieldRef::One(_) => false,
            FieldRef::Strs(items) => items.is_empty(),
            FieldRef::List(items) => items.is_empty(),
        }
    }

    /// Whether `test` holds for at least one value (the value itself, or an element of a list).
    pub fn any(&self, mut test: impl FnMut(&Scalar<'_>) -> bool) -> bool {
        match self {
            FieldRef::Missing => false,
            FieldRef::One(scalar) => test(scalar),
            FieldRef::Strs(items) => items
                .iter()
                .any(|item| test(&Scalar::Str(Cow::Borrowed(item)))),
            FieldRef::List(items) => items.iter().any(test),
        }
    }

    /// Whether `test` holds for every value; false when the field is missing or an empty list.
    pub fn all(&self, mut test: impl FnMut(&Scalar<'_>) -> bool) -> bool {
        !self.is_missing() && !self.any(|scalar| !test(scalar))
    }

    /// The owned value; an empty list becomes [`FieldValue::Missing`].
    pub fn to_value(&self) -> FieldValue {
        if self.is_missing() {
            return FieldValue::Missing;
        }
        match self {
            FieldRef::One(scalar) => scalar.to_value(),
            FieldRef::Strs(items) => FieldValue::List(
                items
                    .iter()
                    .map(|s| FieldValue::Str(s.to_string()))
                    .collect(),
            ),
            FieldRef::List(items) => FieldValue::List(items.iter().map(Scalar::to_value).collect()),
            FieldRef::Missing => FieldValue::Missing,
        }
    }
}

impl FieldValue {
    /// Whether the event has no such field.
    pub fn is_missing(&self) -> bool {
        matches!(self, FieldValue::Missing)
    }

    /// The value as JSON, as Falco writes `output_fields`: `null` when missing.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            FieldValue::Missing => serde_json::Value::Null,
            FieldValue::Str(text) => serde_json::Value::from(text.as_str()),
            FieldValue::Int(n) => serde_json::Value::from(*n),
            FieldValue::Float(n) => serde_json::Value::from(*n),
            FieldValue::Bool(b) => serde_json::Value::from(*b),
            FieldValue::List(items) => items.iter().map(FieldValue::to_json).collect(),
        }
    }
}

impl fmt::Display for FieldValue {
    /// Falco's rendering: `<NA>` when missing, lists as `(a,b)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Missing => f.write_str("<NA>"),
            FieldValue::Str(text) => f.write_str(text),
            FieldValue::Int(n) => write!(f, "{n}"),
            FieldValue::Float(n) => write!(f, "{n}"),
            FieldValue::Bool(b) => f.write_str(bool_text(*b)),
            FieldValue::List(items) => {
                f.write_str("(")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// `true` or `false`.
pub(super) fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// Calls `f` with `value` formatted, on the stack when it fits.
fn with_display<R>(value: &impl fmt::Display, f: impl FnOnce(&str) -> R) -> R {
    let mut buffer = StackText::default();
    if write!(buffer, "{value}").is_ok() {
        f(buffer.as_str())
    } else {
        f(&value.to_string())
    }
}

/// A small text buffer on the stack (any `i64` fits).
#[derive(Default)]
struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl StackText {
    fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..self.len).unwrap_or_default();
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
