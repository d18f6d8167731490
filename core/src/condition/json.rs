//! JSON pointers (RFC 6901) into an event's JSON, for `jevt.value[...]`.
//!
//! A [`JsonPointer`] is split and unescaped once, when the condition is
//! compiled; resolving it walks the parsed JSON without allocating. The root is
//! a [`JsonRef`]: a parsed value (audit events, alerts) or, for a `Record`
//! payload, the record's map itself, which needs no parsing at all.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::value::{FieldRef, Scalar};

/// A JSON value inside an event: a parsed value, or a record's top-level map.
#[derive(Debug, Clone, Copy)]
pub enum JsonRef<'a> {
    /// A JSON value.
    Value(&'a Value),
    /// A JSON object held as a map (a `Record` payload).
    Object(&'a Map<String, Value>),
}

/// A compiled JSON pointer: `/objectRef/resource`, `/annotations/authorization.k8s.io~1decision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    tokens: Box<[Box<str>]>,
}

impl JsonPointer {
    /// Parses a pointer: empty (the whole document) or `/`-separated tokens with `~0` and `~1` escapes.
    pub fn parse(text: &str) -> Result<JsonPointer, String> {
        if text.is_empty() {
            return Ok(JsonPointer {
                tokens: Box::new([]),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "`{text}` is not a JSON pointer: it must be empty or start with `/`"
            ));
        };
        let tokens = rest
            .split('/')
            .map(|token| unescape(token).map(Box::from))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JsonPointer {
            tokens: tokens.into_boxed_slice(),
        })
    }

    /// The first token, if any (`requestObject` in `/requestObject/spec`).
    pub fn first(&self) -> Option<&str> {
        self.tokens.first().map(|token| &**token)
    }

    /// The value the pointer designates under `root` when `root` is what its first token names.
    pub fn resolve_after_first<'a>(&self, root: JsonRef<'a>) -> Option<JsonRef<'a>> {
        self.tokens
            .get(1..)?
            .iter()
            .try_fold(root, |node, token| node.child(token))
    }

    /// The value the pointer designates under `root`, if there is one.
    pub fn resolve<'a>(&self, root: JsonRef<'a>) -> Option<JsonRef<'a>> {
        self.tokens
            .iter()
            .try_fold(root, |node, token| node.child(token))
    }
}

impl<'a> JsonRef<'a> {
    /// The member `token` of an object, or the element at index `token` of an array.
    pub fn child(self, token: &str) -> Option<JsonRef<'a>> {
        match self {
            JsonRef::Object(map) | JsonRef::Value(Value::Object(map)) => {
                map.get(token).map(JsonRef::Value)
            }
            JsonRef::Value(Value::Array(items)) => {
                array_index(token).and_then(|i| items.get(i).map(JsonRef::Value))
            }
            JsonRef::Value(_) => None,
        }
    }

    /// The value as a field value, as Falco's `jevt.value` gives it.
    ///
    /// Strings are themselves, numbers and booleans keep their type, `null` is
    /// missing, and arrays and objects are their compact JSON text.
    pub fn to_field(self) -> FieldRef<'a> {
        let value = match self {
            JsonRef::Object(map) => return json_text(map),
            JsonRef::Value(value) => value,
        };
        match value {
            Value::Null => FieldRef::Missing,
            Value::Bool(b) => FieldRef::One(Scalar::Bool(*b)),
            Value::Number(n) => FieldRef::One(number_scalar(n)),
            Value::String(s) => FieldRef::str(s),
            Value::Array(_) | Value::Object(_) => json_text(value),
        }
    }
}

fn number_scalar(n: &serde_json::Number) -> Scalar<'static> {
    match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => Scalar::Int(i),
        (None, Some(f)) => Scalar::Float(f),
        (None, None) => Scalar::Str(Cow::Owned(n.to_string())),
    }
}

fn json_text<'a>(value: &impl serde::Serialize) -> FieldRef<'a> {
    match serde_json::to_string(value) {
        Ok(text) => FieldRef::One(Scalar::Str(Cow::Owned(text))),
        Err(_) => FieldRef::Missing,
    }
}

/// An array index token: digits without a leading zero (RFC 6901).
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

fn unescape(token: &str) -> Result<String, String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => {
                return Err(format!(
                    "invalid JSON pointer token `{token}`: `~` must be followed by 0 or 1"
                ))
            }
        }
    }
    Ok(out)
}
