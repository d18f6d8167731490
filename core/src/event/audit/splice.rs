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

use super::{AuditEvent, Body, Level, MemberPlace, MemberPlaces};
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

/// The members of a JSON object one by one, each value walked only when its member is
/// asked for; `None` if `text` is not an object. Stops early at text it cannot follow
/// ([`object_members`] says `None` then).
pub fn object_members_lazily(text: &str) -> Option<Members<'_>> {
    Members::new(text, &[])
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
pub struct Members<'a> {
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

    /// Where the value of the first member (of those still to come) whose key is written
    /// exactly as `name` starts; only the values before it are walked.
    pub fn value_start_of(mut self, name: &str) -> Option<usize> {
        while !self.finished {
            let (key, value_start) = self.key()?;
            if self.bytes.get(key.clone()) == Some(name.as_bytes()) {
                return Some(value_start);
            }
            self.member_from(key, value_start)?;
        }
        None
    }

    /// The next member's key (without its quotes) and where its value starts.
    fn key(&self) -> Option<(Range<usize>, usize)> {
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
        Some((key_start..key_end - 1, skip_whitespace(bytes, colon + 1)))
    }

    fn member(&mut self) -> Option<JsonMember> {
        let (key, value_start) = self.key()?;
        self.member_from(key, value_start)
    }

    /// The member whose key [`Members::key`] just read: its value walked, the next one found.
    fn member_from(&mut self, key: Range<usize>, value_start: usize) -> Option<JsonMember> {
        let bytes = self.bytes;
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
            key,
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
    /// The body is replaced by this text, which the caller made from the body by
    /// cutting out whole members (each with a comma next to it), so it is JSON
    /// and is not checked again (debug builds check it). Like `Replace`, it is
    /// added at the end when the event had no body; use `Replace` for any JSON
    /// not made so.
    Stripped(&'a str),
}

const REQUEST_OBJECT: &str = "requestObject";
const RESPONSE_OBJECT: &str = "responseObject";
const LEVEL: &str = "level";

impl AuditEvent {
    /// Sets the event's `level` and keeps, removes or replaces its bodies.
    ///
    /// Every other byte of the text stays as it was, and so does the typed
    /// header (but for the level): nothing is parsed or walked, the members
    /// are changed where reading found them (the event's `MemberPlaces`). A `level` or a
    /// replaced body the event did not have is added at the end. Should two
    /// removals meet (both bodies removed as the object's first members), the
    /// event goes through [`AuditEvent::edit`] instead, with the same result.
    pub fn rebuild(
        &mut self,
        level: Level,
        request: BodyChange<'_>,
        response: BodyChange<'_>,
    ) -> Result<(), EventError> {
        match self.spliced(level, request, response) {
            Some(out) => {
                // The header's strings are places in the old text: move them with the text.
                self.header = self.header.moved(&self.text, |range| out.shift_of(&range));
                self.text = out.text;
                self.request_object = out.request;
                self.response_object = out.response;
                self.places = out.places;
                self.header.level = Some(level);
                Ok(())
            }
            None => {
                *self = self.rebuilt_by_edit(level, request, response)?;
                Ok(())
            }
        }
    }

    /// The text of [`AuditEvent::rebuild`], spliced at the members' places;
    /// `None` when the edits would meet.
    fn spliced(
        &self,
        level: Level,
        request: BodyChange<'_>,
        response: BodyChange<'_>,
    ) -> Option<Spliced> {
        let level_json = level.as_json();
        let bytes = self.text.as_bytes();
        // New members go before the closing brace (an event is never an empty object).
        let end = self.text.len().checked_sub(1)?;
        let last = bytes
            .get(..end)?
            .iter()
            .rev()
            .find(|b| !b.is_ascii_whitespace());
        if bytes.get(end) != Some(&b'}') || matches!(last, None | Some(b'{')) {
            return None;
        }
        let mut edits = vec![match self.places.level() {
            Some(value) => Edit::replace(value, level_json, Placed::Level),
            None => Edit::append(end, ",\"level\":", level_json, Placed::Level),
        }];
        edits.reserve(2);
        let bodies = [
            (
                request,
                Body::Request,
                ",\"requestObject\":",
                Placed::Request,
            ),
            (
                response,
                Body::Response,
                ",\"responseObject\":",
                Placed::Response,
            ),
        ];
        for (change, body, head, placed) in bodies {
            if let BodyChange::Stripped(text) = change {
                debug_assert!(
                    serde_json::from_str::<&RawValue>(text).is_ok(),
                    "a stripped body is not JSON: {text}"
                );
            }
            match (change, self.places.body(body)) {
                (BodyChange::Keep, _) | (BodyChange::Remove, None) => {}
                (BodyChange::Remove, Some(member)) => {
                    edits.push(Edit::replace(removal(bytes, &member), "", Placed::Nothing));
                }
                (BodyChange::Replace(raw), Some(member)) => {
                    edits.push(Edit::replace(member.value.clone(), raw.get(), placed));
                }
                (BodyChange::Stripped(text), Some(member)) => {
                    edits.push(Edit::replace(member.value.clone(), text, placed));
                }
                (BodyChange::Replace(raw), None) => {
                    edits.push(Edit::append(end, head, raw.get(), placed));
                }
                (BodyChange::Stripped(text), None) => {
                    edits.push(Edit::append(end, head, text, placed));
                }
            }
        }
        // Stable: what is added at the end keeps the order level, request, response.
        edits.sort_by_key(|edit| edit.range.start);
        if edits
            .windows(2)
            .any(|pair| matches!(pair, [first, second] if first.range.end > second.range.start))
        {
            return None;
        }
        Some(self.apply_edits(&edits, request, response))
    }

    /// Writes the text with `edits` made, and where everything ended up.
    fn apply_edits(
        &self,
        edits: &[Edit<'_>],
        request: BodyChange<'_>,
        response: BodyChange<'_>,
    ) -> Spliced {
        let added: usize = edits
            .iter()
            .map(|edit| edit.head.len() + edit.text.len())
            .sum();
        let mut out = Spliced {
            text: String::with_capacity(self.text.len() + added),
            request: None,
            response: None,
            places: MemberPlaces::default(),
            moves: Vec::with_capacity(edits.len() + 1),
        };
        let mut at = 0;
        for edit in edits {
            out.copy(&self.text, at..edit.range.start);
            let member_start = out.text.len() + usize::from(!edit.head.is_empty());
            out.text.push_str(edit.head);
            let value = out.text.len()..out.text.len() + edit.text.len();
            out.text.push_str(edit.text);
            let added = !edit.head.is_empty();
            match edit.placed {
                Placed::Level => out.places.set_level(value),
                Placed::Request => {
                    let old = self.places.body(Body::Request).filter(|_| !added);
                    let member = out.member_at(member_start, old.as_ref(), value.clone());
                    out.places.set_body(Body::Request, Some(member));
                    out.request = Some(value);
                }
                Placed::Response => {
                    let old = self.places.body(Body::Response).filter(|_| !added);
                    let member = out.member_at(member_start, old.as_ref(), value.clone());
                    out.places.set_body(Body::Response, Some(member));
                    out.response = Some(value);
                }
                Placed::Nothing => {}
            }
            at = edit.range.end;
        }
        out.copy(&self.text, at..self.text.len());
        if matches!(request, BodyChange::Keep) {
            out.request = out.moved(self.request_object.as_ref());
            let member = out.moved_member(self.places.body(Body::Request).as_ref());
            out.places.set_body(Body::Request, member);
        }
        if matches!(response, BodyChange::Keep) {
            out.response = out.moved(self.response_object.as_ref());
            let member = out.moved_member(self.places.body(Body::Response).as_ref());
            out.places.set_body(Body::Response, member);
        }
        out
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
                BodyChange::Stripped(text) => {
                    let raw =
                        RawValue::from_string(text.to_string()).map_err(EventError::from_json)?;
                    edit.set_raw(name, raw);
                }
            }
        }
        edit.set(LEVEL, &serde_json::Value::from(level.as_str()))?;
        edit.finish()
    }
}

/// What the text an edit writes becomes in the rebuilt event.
#[derive(Debug, Clone, Copy)]
enum Placed {
    Level,
    Request,
    Response,
    Nothing,
}

/// One change of the old text: `range` replaced by `head` then `text`.
struct Edit<'a> {
    range: Range<usize>,
    head: &'a str,
    text: &'a str,
    placed: Placed,
}

impl<'a> Edit<'a> {
    fn replace(range: Range<usize>, text: &'a str, placed: Placed) -> Edit<'a> {
        Edit {
            range,
            head: "",
            text,
            placed,
        }
    }

    /// A member added at `at` (the closing brace): `head` is its comma, key and colon.
    fn append(at: usize, head: &'a str, text: &'a str, placed: Placed) -> Edit<'a> {
        Edit {
            range: at..at,
            head,
            text,
            placed,
        }
    }
}

/// What removing a member takes out of the text: the member and one comma
/// next to it (the one before it, or after it for the first member).
fn removal(bytes: &[u8], member: &MemberPlace) -> Range<usize> {
    let before = bytes
        .get(..member.start)
        .unwrap_or_default()
        .iter()
        .rposition(|byte| !byte.is_ascii_whitespace());
    if let Some(comma) = before.filter(|&at| bytes.get(at) == Some(&b',')) {
        return comma..member.value.end;
    }
    let after = skip_whitespace(bytes, member.value.end);
    if bytes.get(after) == Some(&b',') {
        return member.start..after + 1;
    }
    member.start..member.value.end
}

/// The text of a rebuilt event being written, and where everything is in it.
struct Spliced {
    text: String,
    request: Option<Range<usize>>,
    response: Option<Range<usize>>,
    places: MemberPlaces,
    /// The ranges of the old text copied into the new one, and how far each moved.
    moves: Vec<(Range<usize>, isize)>,
}

impl Spliced {
    /// Appends `range` of the old text as it is.
    fn copy(&mut self, old: &str, range: Range<usize>) {
        let shift = self.text.len() as isize - range.start as isize;
        self.text
            .push_str(old.get(range.clone()).unwrap_or_default());
        self.moves.push((range, shift));
    }

    /// How far the text at `range` of the old text moved, if it was copied.
    fn shift_of(&self, range: &Range<usize>) -> Option<isize> {
        self.moves
            .iter()
            .find(|(copied, _)| copied.start <= range.start && range.end <= copied.end)
            .map(|(_, shift)| *shift)
    }

    /// Where `range` of the old text is in the new one, if it was copied.
    fn moved(&self, range: Option<&Range<usize>>) -> Option<Range<usize>> {
        let range = range?;
        let shift = self.shift_of(range)?;
        Some(range.start.checked_add_signed(shift)?..range.end.checked_add_signed(shift)?)
    }

    /// The place of a body member whose value was just written at `value`:
    /// its key is where the `old` member's key moved to, or at `start` for a
    /// member added.
    fn member_at(
        &self,
        start: usize,
        old: Option<&MemberPlace>,
        value: Range<usize>,
    ) -> MemberPlace {
        let moved = old.and_then(|old| self.moved(Some(&(old.start..old.start))));
        MemberPlace {
            start: moved.map_or(start, |range| range.start),
            value,
        }
    }

    /// Where a member of the old text is in the new one, if it was copied.
    fn moved_member(&self, member: Option<&MemberPlace>) -> Option<MemberPlace> {
        let member = member?;
        let whole = self.moved(Some(&(member.start..member.value.end)))?;
        let value = self.moved(Some(&member.value))?;
        Some(MemberPlace {
            start: whole.start,
            value,
        })
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
        let text = r#"{"a":1, "b" : {"c":[2]},"d":"}"}"#;
        let lazily: Vec<JsonMember> = object_members_lazily(text).unwrap().collect();
        assert_eq!(Some(lazily), object_members(text));
        let first = object_members_lazily(r#"{"a":1,"b":}"#).unwrap().next();
        assert_eq!(first.map(|member| member.value), Some(5..6));
        let metadata = r#"{"a":{"x":"metadata"}, "metadata" : {"b":2},"c":3}"#;
        let start = object_members_lazily(metadata)
            .unwrap()
            .value_start_of("metadata");
        assert_eq!(start, metadata.find("{\"b\""));
        let none = object_members_lazily(r#"{"a":1}"#)
            .unwrap()
            .value_start_of("metadata");
        assert_eq!(none, None);
    }

    #[test]
    fn rebuilt_equals_the_edit_for_every_change() {
        let replacement = RawValue::from_string(r#"{"kind":"ConfigMap"}"#.into()).unwrap();
        let changes = [
            BodyChange::Keep,
            BodyChange::Remove,
            BodyChange::Replace(&replacement),
            BodyChange::Stripped(r#"{"kind":"Secret"}"#),
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
    fn each_level_is_written_as_its_json_string() {
        for level in [
            Level::None,
            Level::Metadata,
            Level::Request,
            Level::RequestResponse,
        ] {
            let written = serde_json::to_string(level.as_str()).unwrap();
            assert_eq!(level.as_json(), written);
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
    fn rebuilt_events_can_be_rebuilt_again() {
        let replacement = RawValue::from_string(r#"{"kind":"Secret"}"#.into()).unwrap();
        let first_bodies = r#"{"requestObject":{"a":1},"responseObject":{"b":2},"auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"objectRef":{"namespace":"n"}}"#;
        for text in [EVENT, first_bodies] {
            let mut twice = event(text);
            twice
                .rebuild(
                    Level::RequestResponse,
                    BodyChange::Replace(&replacement),
                    BodyChange::Keep,
                )
                .unwrap();
            twice
                .rebuild(Level::Request, BodyChange::Keep, BodyChange::Remove)
                .unwrap();
            twice
                .rebuild(Level::Metadata, BodyChange::Remove, BodyChange::Keep)
                .unwrap();
            let once = by_edit(
                &event(text),
                Level::Metadata,
                BodyChange::Remove,
                BodyChange::Remove,
            );
            assert_eq!(twice, once, "{text}");
            assert_eq!(twice, event(twice.as_json()));
            assert_eq!(twice.request_object(), None);
            assert_eq!(twice.response_object(), None);
        }
    }

    /// The text of `text` rebuilt at Metadata, checked to read back as the same event.
    fn rebuilt_text(text: &str, request: BodyChange<'_>, response: BodyChange<'_>) -> String {
        let mut rebuilt = event(text);
        rebuilt.rebuild(Level::Metadata, request, response).unwrap();
        assert_eq!(rebuilt, event(rebuilt.as_json()));
        rebuilt.as_json().to_string()
    }

    #[test]
    fn both_bodies_removed_as_the_first_members_go_through_the_edit() {
        let text = r#"{"requestObject":{"a":1},"responseObject":{"b":2},"auditID":"a","stage":"ResponseComplete","verb":"get","level":"RequestResponse"}"#;
        assert_eq!(
            rebuilt_text(text, BodyChange::Remove, BodyChange::Remove),
            r#"{"auditID":"a","stage":"ResponseComplete","verb":"get","level":"Metadata"}"#
        );
    }

    #[test]
    fn spaces_around_the_changed_members_are_kept() {
        let text = r#"{ "auditID" : "a" , "level" : "Request" , "requestObject" : { "a" : 1 } , "stage":"ResponseComplete","verb":"get" }"#;
        assert_eq!(
            rebuilt_text(text, BodyChange::Remove, BodyChange::Keep),
            // The member goes with the comma before it; the spaces on either side stay.
            r#"{ "auditID" : "a" , "level" : "Metadata"  , "stage":"ResponseComplete","verb":"get" }"#
        );
    }

    #[test]
    fn an_escaped_key_is_changed_where_it_is() {
        let mut rebuilt = event(&EVENT.replace(r#""level""#, r#""\u006cevel""#));
        rebuilt
            .rebuild(Level::Metadata, BodyChange::Remove, BodyChange::Remove)
            .unwrap();
        assert_eq!(rebuilt.header().level(), Some(Level::Metadata));
        assert_eq!(rebuilt.as_json().matches("evel\":").count(), 2);
        assert_eq!(rebuilt, event(rebuilt.as_json()));
    }
}
