//! A single-pass, validating JSON reader for audit event documents.
//!
//! It reads the top-level object of an `Event` or `EventList` once, without
//! building a value tree: the header's fields are taken as they are met; every
//! other value (the bodies, fields auditflow does not know) is checked for JSON
//! syntax and skipped, strings with a vectorised scan for their closing quote;
//! an `EventList`'s items are read in the same pass, each as an event of its
//! own, with its place in the text. A field of the wrong type spoils only the
//! event (or list item) it belongs to; a syntax error, or nesting deeper than
//! [`MAX_NESTING`] levels, spoils the whole document.

use indexmap::IndexMap;
use std::borrow::Cow;
use std::ops::Range;

use smallvec::SmallVec;

use super::audit::{Body, MemberPlace, MemberPlaces};
use super::header::{List, ObjectFields, Source, StatusFields, Text, TextPool, UserFields};
use super::EventError;

/// serde_json's own nesting limit for value trees: an accepted body can always be parsed later.
pub(super) const MAX_NESTING: usize = 128;

/// The fields of one event (or of an `EventList`) as read from the text.
///
/// Body ranges and the spans of [`Text`]s are byte offsets into the event's
/// own text, [`Wire::text`], which starts at the event's `{`.
#[derive(Debug, Default)]
pub(super) struct Wire<'a> {
    /// The text read from the event's `{` on (to the end of the document).
    pub text: &'a str,
    /// The raw JSON of `kind` (`"Event"` with its quotes).
    pub kind: Option<&'a str>,
    pub api_version: Option<Text>,
    /// The items of a list: read as events at the top level, only checked deeper down.
    pub items: Option<Vec<Item<'a>>>,
    pub audit_id: Option<Text>,
    pub stage: Option<Cow<'a, str>>,
    pub level: Option<Cow<'a, str>>,
    pub request_uri: Option<Text>,
    pub verb: Option<Text>,
    pub user: Option<UserFields>,
    pub impersonated_user: Option<UserFields>,
    pub source_ips: Option<List>,
    pub user_agent: Option<Text>,
    pub object_ref: Option<ObjectFields>,
    pub response_status: Option<StatusFields>,
    pub request_received_timestamp: Option<Text>,
    pub stage_timestamp: Option<Text>,
    /// Key, value pairs.
    pub annotations: Option<List>,
    pub request_object: Option<Range<usize>>,
    pub response_object: Option<Range<usize>>,
    /// The first field of the wrong type (or given twice), if any: the event is unusable.
    pub error: Option<EventError>,
    /// The places of the lists, and the strings not kept in the text as they are.
    pub pool: TextPool,
    /// Where `level` and the body members are.
    pub places: MemberPlaces,
}

impl Wire<'_> {
    /// The strings of the event as read.
    pub fn source(&self) -> Source<'_> {
        Source::new(self.text, &self.pool)
    }
}

/// One element of an `EventList`'s `items`: where it is, and what it holds.
#[derive(Debug)]
pub(super) struct Item<'a> {
    /// The element's byte range in the text.
    pub span: Range<usize>,
    /// Its fields, or why it is not an object.
    pub wire: Result<Wire<'a>, EventError>,
}

/// Reads a document that starts (after whitespace) with `{` and holds nothing after its object.
pub(super) fn read_document(text: &str) -> Result<Wire<'_>, EventError> {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
        base: 0,
        pool: TextPool::default(),
        fatal: None,
        spoiled: None,
    };
    match reader.document() {
        Ok(wire) => Ok(wire),
        Err(Stop) => Err(reader
            .fatal
            .take()
            .unwrap_or_else(|| EventError::Json("the document could not be read".into()))),
    }
}

/// Reading stopped: the document is unusable, for the reason in [`Reader::fatal`].
///
/// The reader's functions return `Result<T, Stop>` and keep the error itself
/// aside: errors are rare, and a result this small comes back in registers.
#[derive(Debug)]
struct Stop;

/// A step of reading: its value, or [`Stop`].
type Step<T = ()> = Result<T, Stop>;

/// The fields of an audit event that are read; the position is the field's number.
const EVENT_FIELDS: [&str; 19] = [
    "kind",
    "apiVersion",
    "items",
    "auditID",
    "stage",
    "level",
    "requestURI",
    "verb",
    "user",
    "impersonatedUser",
    "sourceIPs",
    "userAgent",
    "objectRef",
    "responseStatus",
    "requestReceivedTimestamp",
    "stageTimestamp",
    "annotations",
    "requestObject",
    "responseObject",
];

const USER_FIELDS: [&str; 3] = ["username", "uid", "groups"];

const OBJECT_REF_FIELDS: [&str; 8] = [
    "resource",
    "namespace",
    "name",
    "uid",
    "apiGroup",
    "apiVersion",
    "resourceVersion",
    "subresource",
];

const STATUS_FIELDS: [&str; 4] = ["code", "status", "reason", "message"];

/// Finds the number of a field name (its place in a list of names).
type FieldNumber = fn(&[u8]) -> Option<usize>;

/// The known fields of an object: their names, and a fast lookup of a name's number for long lists.
struct Fields {
    names: &'static [&'static str],
    number: Option<FieldNumber>,
}

impl Fields {
    const fn few(names: &'static [&'static str]) -> Fields {
        Fields {
            names,
            number: None,
        }
    }
}

const EVENT: Fields = Fields {
    names: &EVENT_FIELDS,
    number: Some(event_field_number),
};

/// The number of an event field (its place in [`EVENT_FIELDS`]).
///
/// The length and one letter pick the only candidate, which is then compared
/// in full: one comparison per key instead of a chain of them.
fn event_field_number(bytes: &[u8]) -> Option<usize> {
    let first = bytes.first().copied().unwrap_or_default();
    let candidate = match (bytes.len(), first) {
        (4, b'k') => 0,
        (10, b'a') => 1,
        (5, b'i') => 2,
        (7, b'a') => 3,
        (5, b's') => 4,
        (5, b'l') => 5,
        (10, b'r') => 6,
        (4, b'v') => 7,
        (4, b'u') => 8,
        (16, b'i') => 9,
        (9, b's') => 10,
        (9, b'u') => 11,
        (9, b'o') => 12,
        (14, b'r') if bytes.get(8) == Some(&b'S') => 13,
        (24, b'r') => 14,
        (14, b's') => 15,
        (11, b'a') => 16,
        (13, b'r') => 17,
        (14, b'r') => 18,
        _ => return None,
    };
    let name = EVENT_FIELDS.get(candidate)?;
    same_bytes(name.as_bytes(), bytes).then_some(candidate)
}

/// The number of `name` among `names`, comparing lengths first.
fn field_number(names: &[&str], name: &[u8]) -> Option<usize> {
    names
        .iter()
        .position(|field| field.len() == name.len() && same_bytes(field.as_bytes(), name))
}

/// Whether two short byte strings are equal, compared a word at a time
/// (keys are a few bytes: a call into `memcmp` costs more than the comparison).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a_words, mut b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    let words_equal = (&mut a_words)
        .zip(&mut b_words)
        .all(|(x, y)| word(x) == word(y));
    words_equal
        && a_words
            .remainder()
            .iter()
            .zip(b_words.remainder())
            .all(|(x, y)| x == y)
}

/// A key of an object, as written (escapes not yet resolved).
struct Key<'a> {
    raw: &'a [u8],
    start: usize,
    escaped: bool,
}

impl Key<'_> {
    /// The key's contents' range in the document.
    fn range(&self) -> Range<usize> {
        self.start..self.start + self.raw.len()
    }
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    /// Where the event being read starts (its `{`): [`Text`] spans and body ranges count from here.
    base: usize,
    /// The lists and own strings of the event being read.
    pool: TextPool,
    /// Why the document is unusable (bad syntax, too deep), once met.
    fatal: Option<EventError>,
    /// The first field of the wrong type (or given twice) of the event being
    /// read: it spoils only that event (or list item).
    spoiled: Option<EventError>,
}

impl<'a> Reader<'a> {
    fn document(&mut self) -> Step<Wire<'a>> {
        self.skip_ws();
        if self.peek() != Some(b'{') {
            return Err(self.syntax_stop("expected a JSON object"));
        }
        let wire = self.event_object(true)?;
        self.skip_ws();
        if self.pos < self.bytes.len() {
            return Err(self.syntax_stop("trailing characters"));
        }
        Ok(wire)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn slice(&mut self, range: Range<usize>) -> Step<&'a str> {
        match self.text.get(range) {
            Some(slice) => Ok(slice),
            None => Err(self.syntax_stop("a value does not end on a character boundary")),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// A syntax error at the current position, in serde_json's words and form.
    #[cold]
    #[inline(never)]
    fn syntax(&self, what: &str) -> EventError {
        let before = self.bytes.get(..self.pos).unwrap_or(self.bytes);
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len() - memchr::memrchr(b'\n', before).map_or(0, |at| at + 1);
        EventError::Json(format!("{what} at line {line} column {column}"))
    }

    /// Stops reading with `error`.
    #[cold]
    #[inline(never)]
    fn stop(&mut self, error: EventError) -> Stop {
        self.fatal.get_or_insert(error);
        Stop
    }

    /// Stops reading with a syntax error at the current position.
    #[cold]
    #[inline(never)]
    fn syntax_stop(&mut self, what: &str) -> Stop {
        let error = self.syntax(what);
        self.stop(error)
    }

    /// Stops reading with `what`, or with "EOF" if the text ended.
    #[cold]
    #[inline(never)]
    fn eof_or(&mut self, what: &str) -> Stop {
        if self.pos >= self.bytes.len() {
            self.syntax_stop("EOF while parsing a value")
        } else {
            self.syntax_stop(what)
        }
    }

    /// Notes that the event being read is unusable (the first reason is kept); reading goes on.
    #[cold]
    #[inline(never)]
    fn spoil(&mut self, error: EventError) {
        self.spoiled.get_or_insert(error);
    }

    fn enter(&mut self) -> Step {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            let error = EventError::Json(format!("nested deeper than {MAX_NESTING} levels"));
            return Err(self.stop(error));
        }
        Ok(())
    }

    /// Reads an object (the reader is at its `{`), handing each key to `field`,
    /// which must read the value (the reader is at its first byte).
    fn object(&mut self, mut field: impl FnMut(&mut Self, Key<'a>) -> Step) -> Step {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.eof_or("key must be a string"));
            }
            self.pos += 1;
            let start = self.pos;
            let escaped = self.string_body()?;
            let raw = self.bytes.get(start..self.pos - 1).unwrap_or_default();
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.eof_or("expected `:`"));
            }
            self.pos += 1;
            self.skip_ws();
            field(
                self,
                Key {
                    raw,
                    start,
                    escaped,
                },
            )?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.eof_or("expected `,` or `}`")),
            }
        }
    }

    /// Reads an array (the reader is at its `[`), calling `element` at each element's first byte.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Step) -> Step {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            element(self)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.eof_or("expected `,` or `]`")),
            }
        }
    }

    /// Checks and steps over one value of any type.
    fn skip_value(&mut self) -> Step {
        match self.peek() {
            Some(b'{') => self.object(|reader, _| reader.skip_value()),
            Some(b'[') => self.array(Self::skip_value),
            Some(b'"') => {
                self.pos += 1;
                self.string_body().map(drop)
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            _ => Err(self.eof_or("expected value")),
        }
    }

    /// The range of a value, or `None` for `null` (as serde reads an optional raw value).
    fn optional_raw(&mut self) -> Step<Option<Range<usize>>> {
        let start = self.pos;
        self.skip_value()?;
        let range = start..self.pos;
        Ok((self.bytes.get(range.clone()) != Some(b"null")).then_some(range))
    }

    /// Like [`Reader::optional_raw`], counted from the start of the event being read.
    fn optional_body(&mut self) -> Step<Option<Range<usize>>> {
        let base = self.base;
        Ok(self
            .optional_raw()?
            .map(|range| range.start - base..range.end - base))
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        if self.rest().starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.eof_or("expected ident"))
        }
    }

    /// Steps over a number (it starts where the reader is), giving whether it is an integer.
    fn number(&mut self) -> Step<bool> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.eof_or("invalid number")),
        }
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.syntax_stop("invalid number"));
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.required_digits()?;
            integer = false;
        }
        Ok(integer)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Step {
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.eof_or("invalid number"));
        }
        self.digits();
        Ok(())
    }

    /// Steps over the rest of a string (the reader is past its opening quote,
    /// and ends past its closing one): whether its contents hold escapes.
    fn string_body(&mut self) -> Step<bool> {
        let mut escaped = false;
        loop {
            let Some(at) = find_special(self.rest()) else {
                self.pos = self.bytes.len();
                return Err(self.syntax_stop("EOF while parsing a string"));
            };
            self.pos += at;
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    self.escape()?;
                }
                _ => {
                    return Err(self.syntax_stop(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ))
                }
            }
        }
    }

    /// Steps over the escape after a backslash.
    fn escape(&mut self) -> Step {
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
            Some(b'u') => {
                self.pos += 1;
                for _ in 0..4 {
                    if !self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
                        return Err(self.eof_or("invalid escape"));
                    }
                    self.pos += 1;
                }
            }
            _ => return Err(self.eof_or("invalid escape")),
        }
        Ok(())
    }

    /// Reads a string value (the reader is at its opening quote) as a [`Text`];
    /// `None` if an escape in it is no character (the event is spoiled).
    fn text_string(&mut self) -> Step<Option<Text>> {
        self.pos += 1;
        let start = self.pos;
        let escaped = self.string_body()?;
        self.text_of(start..self.pos - 1, escaped)
    }

    /// The [`Text`] of string contents at `range` of the document: its place
    /// in the event's text, or its escapes resolved into the pool's own
    /// buffer. An escape that is no character spoils the current event (`None`).
    fn text_of(&mut self, range: Range<usize>, escaped: bool) -> Step<Option<Text>> {
        let place = if escaped {
            let raw = self.slice(range)?;
            match self.pool.keep_with(|own| unescape_into(raw, own)) {
                Ok(place) => place,
                Err(what) => {
                    let error = self.syntax(what);
                    self.spoil(error);
                    return Ok(None);
                }
            }
        } else {
            match Text::in_text(range.start - self.base, range.end - self.base) {
                Some(place) => Some(place),
                None => {
                    let raw = self.slice(range)?;
                    self.pool.keep(raw)
                }
            }
        };
        match place {
            Some(place) => Ok(Some(place)),
            None => Err(self.stop(too_large())),
        }
    }

    /// The list of the places pushed to the pool since `start`.
    fn list_from(&mut self, start: usize) -> Step<List> {
        match List::from(&self.pool.lists, start) {
            Some(list) => Ok(list),
            None => Err(self.stop(too_large())),
        }
    }

    /// Reads a string value (the reader is at its opening quote), borrowed when
    /// it has no escapes; `None` if an escape is no character (the event is spoiled).
    fn cow_string(&mut self) -> Step<Option<Cow<'a, str>>> {
        self.pos += 1;
        let start = self.pos;
        let escaped = self.string_body()?;
        let raw = self.slice(start..self.pos - 1)?;
        if !escaped {
            return Ok(Some(Cow::Borrowed(raw)));
        }
        match unescape(raw) {
            Ok(value) => Ok(Some(Cow::Owned(value))),
            Err(what) => {
                let error = self.syntax(what);
                self.spoil(error);
                Ok(None)
            }
        }
    }

    /// Steps over a value of the wrong type, spoiling the event with the type error.
    #[cold]
    #[inline(never)]
    fn wrong_type(&mut self, expected: &str) -> Step {
        let found = match self.peek() {
            Some(b'"') => "string",
            Some(b'{') => "map",
            Some(b'[') => "sequence",
            Some(b't' | b'f') => "boolean",
            Some(b'n') => "null",
            _ => "number",
        };
        let error = self.syntax(&format!("invalid type: {found}, expected {expected}"));
        self.spoil(error);
        self.skip_value()
    }

    /// A string that may not be `null`.
    fn string(&mut self) -> Step<Option<Text>> {
        match self.peek() {
            Some(b'"') => self.text_string(),
            _ => self.wrong_type("a string").map(|()| None),
        }
    }

    fn optional_string(&mut self) -> Step<Option<Text>> {
        match self.peek() {
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(b'"') => self.text_string(),
            _ => self.wrong_type("a string").map(|()| None),
        }
    }

    /// An optional string read as a name (`stage`, `level`): borrowed, not kept in the header.
    fn optional_name(&mut self) -> Step<Option<Cow<'a, str>>> {
        match self.peek() {
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(b'"') => self.cow_string(),
            _ => self.wrong_type("a string").map(|()| None),
        }
    }

    fn optional_i64(&mut self) -> Step<Option<i64>> {
        match self.peek() {
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                let integer = self.number()?;
                let number = self.slice(start..self.pos)?;
                match number.parse::<i64>() {
                    Ok(value) if integer => Ok(Some(value)),
                    _ => {
                        let at = std::mem::replace(&mut self.pos, start);
                        let error =
                            self.syntax(&format!("invalid value: `{number}`, expected i64"));
                        self.pos = at;
                        self.spoil(error);
                        Ok(None)
                    }
                }
            }
            _ => self.wrong_type("i64").map(|()| None),
        }
    }

    /// A JSON array of strings; `null` is `None` if `nullable`, a type error if not.
    fn strings(&mut self, nullable: bool) -> Step<Option<List>> {
        match self.peek() {
            Some(b'n') if nullable => self.literal(b"null").map(|()| None),
            Some(b'[') => {
                let start = self.pool.lists.len();
                self.array(|reader| {
                    if let Some(text) = reader.string()? {
                        reader.pool.lists.push(text);
                    }
                    Ok(())
                })?;
                self.list_from(start).map(Some)
            }
            _ => self.wrong_type("a sequence").map(|()| None),
        }
    }

    /// A JSON object of strings (annotations): in the order written, the last of duplicate keys winning.
    fn string_map(&mut self) -> Step<Option<List>> {
        match self.peek() {
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(b'{') => {
                let start = self.pool.lists.len();
                self.object(|reader, key| {
                    let name = reader.text_of(key.range(), key.escaped)?;
                    let value = reader.string()?;
                    if let (Some(name), Some(value)) = (name, value) {
                        reader.pool.lists.extend([name, value]);
                    }
                    Ok(())
                })?;
                let event_text = self.text.get(self.base..).unwrap_or_default();
                let TextPool { lists, own } = &mut self.pool;
                dedupe_pairs(lists, start, Source::strings(event_text, own));
                self.list_from(start).map(Some)
            }
            _ => self.wrong_type("a map").map(|()| None),
        }
    }

    /// The number of `key` among `fields`, if it is one of them; an escape that
    /// is no character spoils the event.
    fn key_number(&mut self, key: &Key<'_>, fields: &Fields) -> Option<usize> {
        let number = |name: &[u8]| match fields.number {
            Some(number) => number(name),
            None => field_number(fields.names, name),
        };
        if !key.escaped {
            return number(key.raw);
        }
        let resolved = std::str::from_utf8(key.raw)
            .map_err(|error| error.to_string())
            .and_then(|raw| unescape(raw).map_err(str::to_string));
        match resolved {
            Ok(name) => number(name.as_bytes()),
            Err(what) => {
                self.spoil(EventError::Json(what));
                None
            }
        }
    }

    /// Reads an object's members (the reader is at its `{`), handing each of the
    /// known `fields` to `set` with its number; other members are skipped, a
    /// known field given twice spoils the event.
    fn known_fields(
        &mut self,
        fields: &Fields,
        mut set: impl FnMut(&mut Self, usize, &Key<'a>) -> Step,
    ) -> Step {
        let mut seen = 0u64;
        self.object(|reader, key| {
            let Some(index) = reader.key_number(&key, fields) else {
                return reader.skip_value();
            };
            if seen & (1 << index) != 0 {
                let name = fields.names.get(index).copied().unwrap_or_default();
                let error = reader.syntax(&format!("duplicate field `{name}`"));
                reader.spoil(error);
                return reader.skip_value();
            }
            seen |= 1 << index;
            set(reader, index, &key)
        })
    }

    /// An object of known `fields` (or `null`), each handed to `set` with its number.
    fn fields<T: Default>(
        &mut self,
        what: &str,
        fields: &Fields,
        mut set: impl FnMut(&mut Self, usize, &mut T) -> Step,
    ) -> Step<Option<T>> {
        match self.peek() {
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(b'{') => {
                let mut value = T::default();
                self.known_fields(fields, |reader, index, _| set(reader, index, &mut value))?;
                Ok(Some(value))
            }
            _ => self.wrong_type(what).map(|()| None),
        }
    }

    fn user_info(&mut self) -> Step<Option<UserFields>> {
        self.fields(
            "struct UserInfo",
            &Fields::few(&USER_FIELDS),
            |reader, index, user: &mut UserFields| {
                match index {
                    0 => user.username = reader.string()?,
                    1 => user.uid = reader.optional_string()?,
                    _ => user.groups = reader.strings(false)?.unwrap_or_default(),
                }
                Ok(())
            },
        )
    }

    fn object_ref(&mut self) -> Step<Option<ObjectFields>> {
        self.fields(
            "struct ObjectReference",
            &Fields::few(&OBJECT_REF_FIELDS),
            |reader, index, object: &mut ObjectFields| {
                let value = reader.optional_string()?;
                *match index {
                    0 => &mut object.resource,
                    1 => &mut object.namespace,
                    2 => &mut object.name,
                    3 => &mut object.uid,
                    4 => &mut object.api_group,
                    5 => &mut object.api_version,
                    6 => &mut object.resource_version,
                    _ => &mut object.subresource,
                } = value;
                Ok(())
            },
        )
    }

    fn response_status(&mut self) -> Step<Option<StatusFields>> {
        self.fields(
            "struct ResponseStatus",
            &Fields::few(&STATUS_FIELDS),
            |reader, index, status: &mut StatusFields| {
                if index == 0 {
                    status.code = reader.optional_i64()?;
                    return Ok(());
                }
                let value = reader.optional_string()?;
                *match index {
                    1 => &mut status.status,
                    2 => &mut status.reason,
                    _ => &mut status.message,
                } = value;
                Ok(())
            },
        )
    }

    /// `items`: at the top level each element is read as an event; deeper down only checked.
    fn items(&mut self, read_events: bool) -> Step<Option<Vec<Item<'a>>>> {
        match self.peek() {
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(b'[') if read_events => {
                let mut items = Vec::new();
                self.array(|reader| {
                    let start = reader.pos;
                    let wire = match reader.peek() {
                        Some(b'{') => Ok(reader.event_object(false)?),
                        _ => {
                            reader.skip_value()?;
                            let text = reader.slice(start..reader.pos)?;
                            Err(super::audit::not_an_object(text))
                        }
                    };
                    items.push(Item {
                        span: start..reader.pos,
                        wire,
                    });
                    Ok(())
                })?;
                Ok(Some(items))
            }
            Some(b'[') => self.skip_value().map(|()| Some(Vec::new())),
            _ => self.wrong_type("a sequence").map(|()| None),
        }
    }

    /// Reads an event's object (the reader is at its `{`); `top` reads list items as events.
    ///
    /// The event has its own base, pool and spoiling error: an item of a list
    /// spoils only itself.
    fn event_object(&mut self, top: bool) -> Step<Wire<'a>> {
        let outer_base = std::mem::replace(&mut self.base, self.pos);
        let outer_pool = std::mem::take(&mut self.pool);
        let outer_spoiled = self.spoiled.take();
        let mut wire = Wire {
            text: self.text.get(self.pos..).unwrap_or_default(),
            ..Wire::default()
        };
        let read = self.known_fields(&EVENT, |reader, index, key| {
            reader.event_field(index, &mut wire, top, key)
        });
        self.base = outer_base;
        wire.pool = std::mem::replace(&mut self.pool, outer_pool);
        wire.error = std::mem::replace(&mut self.spoiled, outer_spoiled);
        read?;
        Ok(wire)
    }

    /// Reads the value of the event field with number `index` (see [`EVENT_FIELDS`]).
    fn event_field(&mut self, index: usize, wire: &mut Wire<'a>, top: bool, key: &Key<'_>) -> Step {
        let base = self.base;
        let value_start = self.pos;
        let member = |reader: &Self| MemberPlace {
            start: key.start - 1 - base,
            value: value_start - base..reader.pos - base,
        };
        match index {
            0 => {
                wire.kind = match self.optional_raw()? {
                    Some(range) => Some(self.slice(range)?),
                    None => None,
                }
            }
            1 => wire.api_version = self.optional_string()?,
            2 => wire.items = self.items(top)?,
            3 => wire.audit_id = self.optional_string()?,
            4 => wire.stage = self.optional_name()?,
            5 => {
                wire.level = self.optional_name()?;
                wire.places.set_level(value_start - base..self.pos - base);
            }
            6 => wire.request_uri = self.optional_string()?,
            7 => wire.verb = self.optional_string()?,
            8 => wire.user = self.user_info()?,
            9 => wire.impersonated_user = self.user_info()?,
            10 => wire.source_ips = self.strings(true)?,
            11 => wire.user_agent = self.optional_string()?,
            12 => wire.object_ref = self.object_ref()?,
            13 => wire.response_status = self.response_status()?,
            14 => wire.request_received_timestamp = self.optional_string()?,
            15 => wire.stage_timestamp = self.optional_string()?,
            16 => wire.annotations = self.string_map()?,
            17 => {
                wire.request_object = self.optional_body()?;
                wire.places.set_body(Body::Request, Some(member(self)));
            }
            _ => {
                wire.response_object = self.optional_body()?;
                wire.places.set_body(Body::Response, Some(member(self)));
            }
        }
        Ok(())
    }
}

/// The position of the first byte that ends a run of plain string contents: a
/// quote, a backslash, or a control character (which JSON strings may not hold raw).
///
/// Sixteen bytes at a time with SSE2 (every x86_64 processor has it), the
/// rest eight at a time: most strings end within the first sixteen bytes,
/// where a call into a general vectorised search costs more than it saves.
#[cfg(target_arch = "x86_64")]
fn find_special(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(16);
    let mut offset = 0;
    for chunk in &mut chunks {
        // SAFETY: SSE2 is part of every x86_64 processor (the target's baseline).
        let mask = unsafe { special_bits_sse2(chunk) };
        if mask != 0 {
            return Some(offset + mask.trailing_zeros() as usize);
        }
        offset += 16;
    }
    find_special_by_words(chunks.remainder()).map(|at| offset + at)
}

/// One bit for each of the first 16 bytes of `chunk` that is special (see [`find_special`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn special_bits_sse2(chunk: &[u8]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let Some(chunk) = chunk.first_chunk::<16>() else {
        return 0;
    };
    // SAFETY: `chunk` is 16 readable bytes, and the load has no alignment requirement.
    let block = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
    let quotes = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'"' as i8));
    let backslashes = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'\\' as i8));
    let controls = _mm_cmpeq_epi8(_mm_min_epu8(block, _mm_set1_epi8(0x1f)), block);
    let special = _mm_or_si128(_mm_or_si128(quotes, backslashes), controls);
    _mm_movemask_epi8(special) as u32
}

/// [`find_special`] where SSE2 is not known to be there: eight bytes at a time.
#[cfg(not(target_arch = "x86_64"))]
fn find_special(bytes: &[u8]) -> Option<usize> {
    find_special_by_words(bytes)
}

/// [`find_special`] eight bytes at a time (SWAR).
fn find_special_by_words(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([b'"'; 8]));
        let mask = special_mask(word);
        if mask != 0 {
            return Some(offset + (mask.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|at| offset + at)
}

/// A word with the high bit of each byte that may be special set; the lowest
/// set bit always marks a special byte (higher ones may be false alarms).
fn special_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    quote | backslash | control
}

/// The error for an event whose strings cannot be kept as places (2 GiB or more).
fn too_large() -> EventError {
    EventError::Json("an event of 2 GiB or more cannot be read".to_string())
}

/// Resolves the escapes of a JSON string's contents (already checked by the reader).
pub(super) fn unescape(raw: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(raw.len());
    unescape_into(raw, &mut out)?;
    Ok(out)
}

/// Appends the contents of a JSON string, its escapes resolved, to `out`.
fn unescape_into(raw: &str, out: &mut String) -> Result<(), &'static str> {
    out.reserve(raw.len());
    walk_escapes(raw, |plain, ch| {
        out.push_str(plain);
        if let Some(ch) = ch {
            out.push(ch);
        }
    })
}

/// Walks a JSON string's contents: `step` gets each run of plain text and the
/// character of the escape after it (`None` after the last run).
fn walk_escapes(raw: &str, mut step: impl FnMut(&str, Option<char>)) -> Result<(), &'static str> {
    let mut rest = raw;
    while let Some(at) = memchr::memchr(b'\\', rest.as_bytes()) {
        let plain = rest.get(..at).unwrap_or_default();
        let escape = rest.get(at + 1..).unwrap_or_default();
        let (ch, used) = match escape.as_bytes().first() {
            Some(b'"') => ('"', 1),
            Some(b'\\') => ('\\', 1),
            Some(b'/') => ('/', 1),
            Some(b'b') => ('\u{8}', 1),
            Some(b'f') => ('\u{c}', 1),
            Some(b'n') => ('\n', 1),
            Some(b'r') => ('\r', 1),
            Some(b't') => ('\t', 1),
            Some(b'u') => unicode_escape(escape)?,
            _ => return Err("invalid escape"),
        };
        step(plain, Some(ch));
        rest = escape.get(used..).unwrap_or_default();
    }
    step(rest, None);
    Ok(())
}

/// The character of a `uXXXX` escape (a surrogate pair takes two), and how many bytes it used.
fn unicode_escape(escape: &str) -> Result<(char, usize), &'static str> {
    let first = hex4(escape.get(1..5))?;
    match first {
        0xD800..=0xDBFF => {
            let low = match escape.get(5..7) {
                Some("\\u") => hex4(escape.get(7..11))?,
                _ => return Err("lone leading surrogate in hex escape"),
            };
            if !(0xDC00..=0xDFFF).contains(&low) {
                return Err("lone leading surrogate in hex escape");
            }
            let code = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00);
            char::from_u32(code)
                .map(|ch| (ch, 11))
                .ok_or("invalid unicode code point")
        }
        0xDC00..=0xDFFF => Err("lone leading surrogate in hex escape"),
        code => char::from_u32(code)
            .map(|ch| (ch, 5))
            .ok_or("invalid unicode code point"),
    }
}

fn hex4(digits: Option<&str>) -> Result<u32, &'static str> {
    digits
        .and_then(|digits| u32::from_str_radix(digits, 16).ok())
        .ok_or("invalid escape")
}

/// Removes duplicate annotation keys as a map would: the first place, the
/// last value. The pairs are `lists[start..]`, key then value.
fn dedupe_pairs(lists: &mut SmallVec<[Text; 8]>, start: usize, source: Source<'_>) {
    let pairs = lists.get(start..).unwrap_or_default();
    let key = |index: usize| pairs.get(index * 2).map(|place| source.get(*place));
    let count = pairs.len() / 2;
    let duplicated = (1..count).any(|index| (0..index).any(|earlier| key(earlier) == key(index)));
    if !duplicated {
        return;
    }
    let pairs: Vec<(Text, Text)> = pairs
        .chunks_exact(2)
        .filter_map(|pair| match pair {
            [key, value] => Some((*key, *value)),
            _ => None,
        })
        .collect();
    let kept = last_wins(pairs, source);
    lists.truncate(start);
    lists.extend(kept.into_iter().flat_map(|(key, value)| [key, value]));
}

/// Removes duplicate keys as a map would: the first place, the last value.
fn last_wins(pairs: Vec<(Text, Text)>, source: Source<'_>) -> Vec<(Text, Text)> {
    let mut places: IndexMap<&str, (Text, Text)> = IndexMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        places
            .entry(source.get(key))
            .and_modify(|pair| pair.1 = value)
            .or_insert((key, value));
    }
    places.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_at_a_time_search_finds_the_first_special_byte() {
        let naive = |bytes: &[u8]| {
            bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        };
        let fillers: [u8; 6] = [b'a', 0x7f, 0x80, 0xff, b' ', b'!'];
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for len in 0..70 {
                for at in 0..=len {
                    let mut bytes: Vec<u8> = (0..len).map(|i| fillers[i % fillers.len()]).collect();
                    if at < len {
                        bytes[at] = special;
                        // A second special byte later must not hide the first.
                        if at + 1 < len {
                            bytes[at + 1] = 0x00;
                        }
                    }
                    assert_eq!(find_special(&bytes), naive(&bytes), "{bytes:?}");
                    assert_eq!(find_special_by_words(&bytes), naive(&bytes), "{bytes:?}");
                }
            }
        }
        assert_eq!(find_special("héllo wörld, ünïcode\"".as_bytes()), Some(24));
    }

    #[test]
    fn every_event_field_has_its_number_and_nothing_else_has_one() {
        for (number, name) in EVENT_FIELDS.iter().enumerate() {
            assert_eq!(event_field_number(name.as_bytes()), Some(number), "{name}");
        }
        for other in [
            "",
            "k",
            "kinD",
            "Kind",
            "responseStatuS",
            "responseObjecT",
            "metadata",
            "verbs",
        ] {
            assert_eq!(event_field_number(other.as_bytes()), None, "{other}");
        }
    }

    fn annotations_of(annotations: &str) -> Vec<(String, String)> {
        let text = format!(
            r#"{{"auditID":"a","stage":"Panic","verb":"get","annotations":{annotations}}}"#
        );
        let event = super::super::AuditEvent::parse(&text).unwrap();
        let header = event.header();
        header
            .annotations()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn duplicate_annotations_keep_the_first_place_and_the_last_value() {
        assert_eq!(
            annotations_of(r#"{"a":"1","b":"2","a":"3"}"#),
            pairs(&[("a", "3"), ("b", "2")])
        );
        let many: Vec<String> = (0..40).map(|i| format!(r#""{}":"{i}""#, i % 20)).collect();
        let kept = annotations_of(&format!("{{{}}}", many.join(",")));
        assert_eq!(kept.len(), 20);
        assert_eq!(kept[0], ("0".to_string(), "20".to_string()));
        assert_eq!(kept[19], ("19".to_string(), "39".to_string()));
    }

    #[test]
    fn duplicate_annotation_keys_are_compared_as_resolved_strings() {
        assert_eq!(
            annotations_of(r#"{"a":"1","\u0061":"2","b\"":"\u00e9"}"#),
            pairs(&[("a", "2"), ("b\"", "é")])
        );
    }
}
