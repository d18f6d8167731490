//! Field paths into an event's bodies: `requestObject.spec.containers[*].env[*].value`.
//!
//! A path starts with `requestObject` or `responseObject`, then has segments:
//! `.name` (a key), `[N]` (an array index), and `*` as `.*` or `[*]` (every
//! value of a map, every element of an array). Every value the path reaches is
//! redacted; parts that are missing are skipped.

use serde_json::Value;

use super::replacer::Replacer;

/// The body a path starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `requestObject`.
    Request,
    /// `responseObject`.
    Response,
}

impl Body {
    /// The top-level field name.
    pub fn field(self) -> &'static str {
        match self {
            Body::Request => "requestObject",
            Body::Response => "responseObject",
        }
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
    Any,
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    /// The body it starts in.
    pub body: Body,
    segments: Vec<Segment>,
}

impl FieldPath {
    /// Parses a path; the error says what is wrong.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let (root, mut rest) = match text.find(['.', '[']) {
            Some(at) => text.split_at(at),
            None => (text, ""),
        };
        let body = match root {
            "requestObject" => Body::Request,
            "responseObject" => Body::Response,
            other => {
                return Err(format!(
                    "`{other}`: a path starts with requestObject or responseObject"
                ))
            }
        };
        let mut segments = Vec::new();
        while !rest.is_empty() {
            let (segment, tail) = next_segment(rest)?;
            segments.push(segment);
            rest = tail;
        }
        if segments.is_empty() {
            return Err(format!(
                "`{text}` names a whole body: name a field inside it (`{text}.spec.token`)"
            ));
        }
        Ok(FieldPath { body, segments })
    }

    /// Redacts every value the path reaches in `body`; returns how many.
    pub fn redact(&self, body: &mut Value, replacer: &Replacer) -> u64 {
        redact_at(body, &self.segments, replacer)
    }
}

fn next_segment(text: &str) -> Result<(Segment, &str), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("`[{rest}`: a `[` without its `]`"))?;
        let segment =
            match inside {
                "*" => Segment::Any,
                index => Segment::Index(index.parse().map_err(|_| {
                    format!("`[{index}]`: inside brackets put `*` or an array index")
                })?),
            };
        return Ok((segment, tail));
    }
    let rest = text
        .strip_prefix('.')
        .ok_or_else(|| format!("`{text}`: expected `.name` or `[...]`"))?;
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    let (name, tail) = rest.split_at(end);
    let segment = match name {
        "" => return Err("an empty field name (`..` or a trailing `.`)".to_string()),
        "*" => Segment::Any,
        name => Segment::Key(name.to_string()),
    };
    Ok((segment, tail))
}

fn redact_at(value: &mut Value, segments: &[Segment], replacer: &Replacer) -> u64 {
    let Some((segment, rest)) = segments.split_first() else {
        return 0;
    };
    if rest.is_empty() {
        return replace_children(value, segment, replacer);
    }
    match (segment, value) {
        (Segment::Key(key), Value::Object(map)) => map
            .get_mut(key)
            .map_or(0, |child| redact_at(child, rest, replacer)),
        (Segment::Index(index), Value::Array(items)) => items
            .get_mut(*index)
            .map_or(0, |child| redact_at(child, rest, replacer)),
        (Segment::Any, Value::Object(map)) => map
            .values_mut()
            .map(|child| redact_at(child, rest, replacer))
            .sum(),
        (Segment::Any, Value::Array(items)) => items
            .iter_mut()
            .map(|child| redact_at(child, rest, replacer))
            .sum(),
        _ => 0,
    }
}

/// Replaces (or removes) the children of `value` the last segment names.
fn replace_children(value: &mut Value, segment: &Segment, replacer: &Replacer) -> u64 {
    match (segment, value) {
        (Segment::Key(key), Value::Object(map)) => {
            let Some(current) = map.get(key) else {
                return 0;
            };
            match replacer.value(current) {
                Some(new) => {
                    map.insert(key.clone(), new);
                }
                None => {
                    map.shift_remove(key);
                }
            }
            1
        }
        (Segment::Index(index), Value::Array(items)) => {
            let Some(slot) = items.get_mut(*index) else {
                return 0;
            };
            match replacer.value(slot) {
                Some(new) => *slot = new,
                None => {
                    items.remove(*index);
                }
            }
            1
        }
        (Segment::Any, Value::Object(map)) => {
            let count = map.len() as u64;
            if replacer.value(&Value::Null).is_none() {
                map.clear();
            } else {
                for child in map.values_mut() {
                    *child = replacer.kept_value(child);
                }
            }
            count
        }
        (Segment::Any, Value::Array(items)) => {
            let count = items.len() as u64;
            if replacer.value(&Value::Null).is_none() {
                items.clear();
            } else {
                for child in items.iter_mut() {
                    *child = replacer.kept_value(child);
                }
            }
            count
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::replacer::{HashEncoding, Mode};
    use serde_json::json;

    fn replacer(mode: Mode) -> Replacer {
        Replacer::new(mode, Some("k"), HashEncoding::Hex).unwrap()
    }

    #[test]
    fn paths_parse_or_say_why_not() {
        let path = FieldPath::parse("requestObject.spec.containers[*].env[0].value").unwrap();
        assert_eq!(path.body, Body::Request);
        assert_eq!(path.segments.len(), 6);
        for bad in [
            "spec.x",
            "requestObject",
            "requestObject..x",
            "requestObject.x[",
            "requestObject.x[a]",
            "requestObject.x.",
        ] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stars_go_over_arrays_and_maps() {
        let mut body = json!({"spec": {"containers": [
            {"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y"}]},
            {"name": "b", "env": [{"name": "Z", "value": "3"}]}
        ]}, "data": {"k1": "v1", "k2": "v2"}});
        let mask = replacer(Mode::Mask);
        let env = FieldPath::parse("requestObject.spec.containers[*].env[*].value").unwrap();
        assert_eq!(env.redact(&mut body, &mask), 2);
        let data = FieldPath::parse("requestObject.data.*").unwrap();
        assert_eq!(data.redact(&mut body, &mask), 2);
        assert_eq!(
            body,
            json!({"spec": {"containers": [
                {"name": "a", "env": [{"name": "X", "value": "[REDACTED]"}, {"name": "Y"}]},
                {"name": "b", "env": [{"name": "Z", "value": "[REDACTED]"}]}
            ]}, "data": {"k1": "[REDACTED]", "k2": "[REDACTED]"}})
        );
    }

    #[test]
    fn remove_and_hash() {
        let mut body = json!({"a": {"token": "t", "keep": 1}, "list": ["x", "y"]});
        let remove = replacer(Mode::Remove);
        assert_eq!(
            FieldPath::parse("requestObject.a.token")
                .unwrap()
                .redact(&mut body, &remove),
            1
        );
        assert_eq!(
            FieldPath::parse("requestObject.list[0]")
                .unwrap()
                .redact(&mut body, &remove),
            1
        );
        assert_eq!(body, json!({"a": {"keep": 1}, "list": ["y"]}));
        let hash = replacer(Mode::Hash);
        assert_eq!(
            FieldPath::parse("requestObject.list[*]")
                .unwrap()
                .redact(&mut body, &hash),
            1
        );
        assert!(body["list"][0]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:"));
        assert_eq!(
            FieldPath::parse("requestObject.missing.x")
                .unwrap()
                .redact(&mut body, &hash),
            0
        );
    }
}
