//! Editing an event by splicing its text: members of JSON objects and items of
//! arrays located as byte ranges, without parsing or copying what is between.
//!
//! [`AuditEvent::rebuild`] uses it to set an event's `level` and remove or
//! replace its bodies, keeping every other byte of the text and the typed
//! header; transforms use [`object_members`] and [`array_items`] to cut a
//! member out of a body (`metadata.managedFields`) the same way.
//!
//! The walkers expect JSON that was already checked (an event's text, or a body
//! of it): they follow the structure only as far as needed to find where each
//! value ends, and give `None` for text they cannot follow.

use std::ops::Range;

use serde_json::value::RawValue;

use super::{AuditEvent, Level};
use crate::event::EventError;

/// One `"key": value` member of a JSON object, as byte ranges of the object's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonMember {
    /// The key as written, without its quotes (escapes not decoded).
    pub key: Range<usize>,
    /// The value.
    pub value: Range<usize>,
}

impl JsonMember {
    /// From the key's opening quote to the value's end.
    pub fn whole(&self) -> Range<usize> {
        self.key.start.saturating_sub(1)..self.value.end
    }

    /// Whether the member's key is written exactly as `name` (no escapes).
    pub fn is(&self, text: &str, name: &str) -> bool {
        text.get(self.key.clone()) == Some(name)
    }
}

/// The members of a JSON object, in order; `None` if `text` is not an object that can be followed.
pub fn object_members(text: &str) -> Option<Vec<JsonMember>> {
    members_skipping(text, &[])
}

/// The items of a JSON array, as byte ranges of its text; `None` if `text` is not an array.
pub fn array_items(text: &str) -> Option<Vec<Range<usize>>> {
    let bytes = text.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'[') {
        return None;
    }
    at = skip_whitespace(bytes, at + 1);
    let mut items = Vec::new();
    if bytes.get(at) == Some(&b']') {
        return Some(items);
    }
    loop {
        let end = value_end(bytes, at)?;
        items.push(at..end);
        at = skip_whitespace(bytes, end);
        match bytes.get(at)? {
            b',' => at = skip_whitespace(bytes, at + 1),
            b']' => return Some(items),
            _ => return None,
        }
    }
}

/// Like [`object_members`]; a value starting where one of `known` starts ends where it ends.
fn members_skipping(text: &str, known: &[Range<usize>]) -> Option<Vec<JsonMember>> {
    let mut members = Members::new(text, known)?;
    let found: Vec<JsonMember> = members.by_ref().collect();
    members.complete.then_some(found)
}

/// The members of an object, one by one; stops at the end or at text it cannot follow.
struct Members<'a> {
    bytes: &'a [u8],
    known: &'a [Range<usize>],
    /// Where the next member (or the closing brace) is.
    at: usize,
    /// Whether the closing brace was reached.
    complete: bool,
    /// Whether nothing more is to come (the end, or text that cannot be followed).
    finished: bool,
}

impl<'a> Members<'a> {
    fn new(text: &'a str, known: &'a [Range<usize>]) -> Option<Members<'a>> {
        let bytes = text.as_bytes();
        let at = skip_whitespace(bytes, 0);
        if bytes.get(at) != Some(&b'{') {
            return None;
        }
        let at = skip_whitespace(bytes, at + 1);
        let empty = bytes.get(at) == Some(&b'}');
        Some(Members {
            bytes,
            known,
            at,
            complete: empty,
            finished: empty,
        })
    }

    fn member(&mut self) -> Option<JsonMember> {
        let bytes = self.bytes;
        if bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let key_start = self.at + 1;
        let key_end = string_end(bytes, self.at)?;
        let colon = skip_whitespace(bytes, key_end);
        if bytes.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_whitespace(bytes, colon + 1);
        let value_end = match self.known.iter().find(|range| range.start == value_start) {
            Some(range) => range.end,
            None => value_end(bytes, value_start)?,
        };
        let next = skip_whitespace(bytes, value_end);
        match bytes.get(next)? {
            b',' => self.at = skip_whitespace(bytes, next + 1),
            b'}' => {
                self.complete = true;
                self.finished = true;
            }
            _ => return None,
        }
        Some(JsonMember {
            key: key_start..key_end - 1,
            value: value_start..value_end,
        })
    }
}

impl Iterator for Members<'_> {
    type Item = JsonMember;

    fn next(&mut self) -> Option<JsonMember> {
        if self.finished {
            return None;
        }
        let member = self.member();
        if member.is_none() {
            self.finished = true;
        }
        member
    }
}

/// What [`AuditEvent::rebuild`] does with a body.
#[derive(Debug, Clone, Copy)]
pub enum BodyChange<'a> {
    /// The body stays as it is.
    Keep,
    /// The body is removed.
    Remove,
    /// The body is replaced by this JSON (added at the end when the event had none).
    Replace(&'a RawValue),
}

const REQUEST_OBJECT: &str = "requestObject";
const RESPONSE_OBJECT: &str = "responseObject";
const LEVEL: &str = "level";

impl AuditEvent {
    /// Sets the event's `level` and keeps, removes or replaces its bodies.
    ///
    /// Every other byte of the text stays as it was, and so does the typed
    /// header (but for the level): the text is not parsed, only its top-level
    /// members are located. A `level` the event did not have is added at the
    /// end. Text that cannot be followed that way (a key written with escapes)
    /// goes through [`AuditEvent::edit`] instead, with the same result.
    pub fn rebuild(
        &mut self,
        level: Level,
        request: BodyChange<'_>,
        response: BodyChange<'_>,
    ) -> Result<(), EventError> {
        let known: Vec<Range<usize>> = [&self.request_object, &self.response_object]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        match self.spliced(&known, level, request, response) {
            Some(out) => {
                // The header's strings are places in the old text: move them with the text.
                self.header = self.header.moved(&self.text, |range| out.shift_of(&range));
                self.text = out.text;
                self.request_object = out.request;
                self.response_object = out.response;
                self.header.level = Some(level);
                Ok(())
            }
            None => {
                *self = self.rebuilt_by_edit(level, request, response)?;
                Ok(())
            }
        }
    }

    /// The text of [`AuditEvent::rebuild`]; `None` when the text cannot be followed.
    ///
    /// Members are located one by one only until `level` and every body that
    /// changes have been met; the rest of the text is copied as it is.
    fn spliced(
        &self,
        known: &[Range<usize>],
        level: Level,
        request: BodyChange<'_>,
        response: BodyChange<'_>,
    ) -> Option<Spliced> {
        let level_json = format!("\"{}\"", level.as_str());
        let mut out = Spliced::with_capacity(self.text.len() + level_json.len() + 10);
        let pending = |change: BodyChange<'_>, body: &Option<Range<usize>>| match change {
            BodyChange::Keep => false,
            BodyChange::Remove => body.is_some(),
            BodyChange::Replace(_) => true,
        };
        let mut pending_request = pending(request, &self.request_object);
        let mut pending_response = pending(response, &self.response_object);
        let mut pending_level = true;
        let mut members = Members::new(&self.text, known)?;
        for member in members.by_ref() {
            let whole = member.whole();
            let key = self.text.get(member.key.clone())?;
            if key.contains('\\') {
                return None;
            }
            let text = self.text.get(whole.clone())?;
            let head = self.text.get(whole.start..member.value.start)?;
            match key {
                REQUEST_OBJECT => {
                    pending_request = false;
                    out.request = out.body(head, text, &member, request);
                }
                RESPONSE_OBJECT => {
                    pending_response = false;
                    out.response = out.body(head, text, &member, response);
                }
                LEVEL => {
                    pending_level = false;
                    out.push(head, &level_json);
                }
                _ => {
                    out.copy(whole.start, text);
                }
            }
            if !(pending_level || pending_request || pending_response) {
                // Everything after this member stays as it is (up to and with the closing brace).
                let rest = self.text.get(member.value.end..)?;
                let shift = |range: &Range<usize>| {
                    (range.start >= member.value.end).then(|| {
                        let start = range.start - member.value.end + out.text.len();
                        start..start + range.len()
                    })
                };
                if out.request.is_none() && matches!(request, BodyChange::Keep) {
                    out.request = self.request_object.as_ref().and_then(shift);
                }
                if out.response.is_none() && matches!(response, BodyChange::Keep) {
                    out.response = self.response_object.as_ref().and_then(shift);
                }
                let end = out.text.len();
                out.moves.push((
                    member.value.end..self.text.len(),
                    end as isize - member.value.end as isize,
                ));
                out.text.push_str(rest);
                return Some(out);
            }
        }
        if !members.complete {
            return None;
        }
        if pending_level {
            out.push("\"level\":", &level_json);
        }
        if let (true, BodyChange::Replace(raw)) = (pending_request, request) {
            out.request = Some(out.push("\"requestObject\":", raw.get()));
        }
        if let (true, BodyChange::Replace(raw)) = (pending_response, response) {
            out.response = Some(out.push("\"responseObject\":", raw.get()));
        }
        out.text.push('}');
        Some(out)
    }

    /// [`AuditEvent::rebuild`] through an edit of the parsed top-level members.
    fn rebuilt_by_edit(
        &self,
        level: Level,
        request: BodyChange<'_>,
        response: BodyChange<'_>,
    ) -> Result<AuditEvent, EventError> {
        let mut edit = self.edit()?;
        for (name, change) in [(REQUEST_OBJECT, request), (RESPONSE_OBJECT, response)] {
            match change {
                BodyChange::Keep => {}
                BodyChange::Remove => {
                    edit.remove(name);
                }
                BodyChange::Replace(raw) => edit.set_raw(name, raw.to_owned()),
            }
        }
        edit.set(LEVEL, &serde_json::Value::from(level.as_str()))?;
        edit.finish()
    }
}

/// The text of a rebuilt event being written, and where its bodies are in it.
struct Spliced {
    text: String,
    request: Option<Range<usize>>,
    response: Option<Range<usize>>,
    /// The ranges of the old text copied into the new one, and how far each moved.
    moves: Vec<(Range<usize>, isize)>,
}

impl Spliced {
    fn with_capacity(capacity: usize) -> Spliced {
        let mut text = String::with_capacity(capacity);
        text.push('{');
        Spliced {
            text,
            request: None,
            response: None,
            moves: Vec::new(),
        }
    }

    /// Appends a member copied as it is from `at` in the old text.
    fn copy(&mut self, at: usize, member: &str) {
        let end = self.push(member, "").end;
        let start = end - member.len();
        self.moves
            .push((at..at + member.len(), start as isize - at as isize));
    }

    /// How far the text at `range` of the old text moved, if it was copied.
    fn shift_of(&self, range: &Range<usize>) -> Option<isize> {
        self.moves
            .iter()
            .find(|(copied, _)| copied.start <= range.start && range.end <= copied.end)
            .map(|(_, shift)| *shift)
    }

    /// Appends a member written as `head` (or the whole member) then `value`; returns where `value` is.
    fn push(&mut self, head: &str, value: &str) -> Range<usize> {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        self.text.push_str(head);
        let start = self.text.len();
        self.text.push_str(value);
        start..self.text.len()
    }

    /// Appends a body member as `change` says; returns where the body is, if kept.
    fn body(
        &mut self,
        head: &str,
        whole: &str,
        member: &JsonMember,
        change: BodyChange<'_>,
    ) -> Option<Range<usize>> {
        match change {
            BodyChange::Keep => {
                let range = self.push(whole, "");
                let value_length = member.value.len();
                Some(range.end - value_length..range.end)
            }
            BodyChange::Remove => None,
            BodyChange::Replace(raw) => Some(self.push(head, raw.get())),
        }
    }
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// Where the string opening at `at` ends (after its closing quote).
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut at = at + 1;
    loop {
        at += memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        match bytes.get(at)? {
            b'\\' => at += 2,
            _ => return Some(at + 1),
        }
    }
}

/// Where the value starting at `at` ends.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => container_end(bytes, at),
        _ => {
            let rest = bytes.get(at..)?;
            let length = rest
                .iter()
                .position(|byte| matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            (length > 0).then_some(at + length)
        }
    }
}

/// Where the object or array opening at `at` ends (after its closing bracket).
///
/// Only brackets of its own kind are counted (the text is valid JSON, so the
/// other kind is balanced inside), strings are skipped.
fn container_end(bytes: &[u8], at: usize) -> Option<usize> {
    let (open, close) = match bytes.get(at)? {
        b'{' => (b'{', b'}'),
        _ => (b'[', b']'),
    };
    let mut depth = 0usize;
    let mut at = at;
    loop {
        at += memchr::memchr3(b'"', open, close, bytes.get(at..)?)?;
        let byte = *bytes.get(at)?;
        if byte == b'"' {
            at = string_end(bytes, at)?;
            continue;
        }
        if byte == open {
            depth += 1;
        } else {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(at + 1);
            }
        }
        at += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"kind":"Event","level":"RequestResponse","auditID":"a","stage":"ResponseComplete","verb":"create","user":{"username":"u","groups":["g"]},"objectRef":{"resource":"configmaps","namespace":"d"},"requestObject":{"kind":"ConfigMap","data":{"k":"v \"}{]["}},"responseObject":{"kind":"ConfigMap","n":[1,{"a":[]}]},"annotations":{"level":"x"},"future":[true,null,1.50e3]}"#;

    fn event(text: &str) -> AuditEvent {
        AuditEvent::parse(text).unwrap()
    }

    /// What an edit through parsed top-level members gives, as the reference.
    fn by_edit(
        event: &AuditEvent,
        level: Level,
        request: BodyChange<'_>,
        response: BodyChange<'_>,
    ) -> AuditEvent {
        event.rebuilt_by_edit(level, request, response).unwrap()
    }

    #[test]
    fn members_and_items_are_located() {
        let text = r#" { "a" : "x\"}" , "b":{"c":[1,"]"]},"d":-1.5e2 ,"e":null} "#;
        let members = object_members(text).unwrap();
        let pairs: Vec<(&str, &str)> = members
            .iter()
            .map(|m| (&text[m.key.clone()], &text[m.value.clone()]))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", r#""x\"}""#),
                ("b", r#"{"c":[1,"]"]}"#),
                ("d", "-1.5e2"),
                ("e", "null")
            ]
        );
        assert_eq!(&text[members[0].whole()], r#""a" : "x\"}""#);
        let items = array_items(r#"[ {"a":1}, "b" ,[2]]"#).unwrap();
        assert_eq!(items, [2..9, 11..14, 16..19]);
        assert_eq!(array_items("[]"), Some(vec![]));
        assert_eq!(object_members("{}"), Some(vec![]));
        for broken in [
            "",
            "[1]",
            "{\"a\":1",
            "{\"a\" 1}",
            "{\"a\":{\"b\":1}",
            "{\"a\":\"x}",
        ] {
            assert_eq!(object_members(broken), None, "{broken}");
        }
        assert_eq!(array_items("{}"), None);
    }

    #[test]
    fn rebuilt_equals_the_edit_for_every_change() {
        let replacement = RawValue::from_string(r#"{"kind":"ConfigMap"}"#.into()).unwrap();
        let changes = [
            BodyChange::Keep,
            BodyChange::Remove,
            BodyChange::Replace(&replacement),
        ];
        let without_level = EVENT.replace(r#""level":"RequestResponse","#, "");
        let level_last = without_level.replace(r#""future""#, r#""level":"Request","future""#);
        let without_bodies = r#"{"auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"level":"Metadata"}"#;
        let spaced = r#"{ "level" : "Request" , "requestObject" : { "a" : 1 } , "auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"u"} }"#;
        for text in [EVENT, &without_level, &level_last, without_bodies, spaced] {
            let original = event(text);
            for request in changes {
                for response in changes {
                    let mut rebuilt = original.clone();
                    rebuilt.rebuild(Level::Metadata, request, response).unwrap();
                    let expected = by_edit(&original, Level::Metadata, request, response);
                    if text == spaced {
                        // The edit writes members compactly; the splice keeps the spaces.
                        assert_eq!(rebuilt.to_value().unwrap(), expected.to_value().unwrap());
                        assert_eq!(rebuilt.header(), expected.header());
                    } else {
                        assert_eq!(rebuilt, expected, "{text} {request:?} {response:?}");
                    }
                    assert_eq!(rebuilt, event(rebuilt.as_json()));
                }
            }
        }
    }

    #[test]
    fn rebuilt_keeps_every_other_byte() {
        let mut rebuilt = event(EVENT);
        rebuilt
            .rebuild(Level::Request, BodyChange::Keep, BodyChange::Remove)
            .unwrap();
        assert_eq!(
            rebuilt.as_json(),
            EVENT.replace("RequestResponse", "Request").replace(
                r#","responseObject":{"kind":"ConfigMap","n":[1,{"a":[]}]}"#,
                ""
            )
        );
        assert_eq!(rebuilt.header().level(), Some(Level::Request));
        assert_eq!(
            rebuilt.request_object(),
            Some(r#"{"kind":"ConfigMap","data":{"k":"v \"}{]["}}"#)
        );
    }

    #[test]
    fn an_escaped_key_goes_through_the_edit() {
        let mut rebuilt = event(&EVENT.replace(r#""level""#, r#""\u006cevel""#));
        rebuilt
            .rebuild(Level::Metadata, BodyChange::Remove, BodyChange::Remove)
            .unwrap();
        assert_eq!(rebuilt.header().level(), Some(Level::Metadata));
        assert_eq!(rebuilt.as_json().matches("evel\":").count(), 2);
        assert_eq!(rebuilt, event(rebuilt.as_json()));
    }
}
