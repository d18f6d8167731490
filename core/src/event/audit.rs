//! The Kubernetes audit event (`audit.k8s.io/v1` and `v1beta1` `Event`).
//!
//! An [`AuditEvent`] keeps the event's JSON text exactly as it arrived (made
//! compact when it spanned several lines) next to a typed [`AuditHeader`] parsed
//! from it. `requestObject` and `responseObject` are only located (as byte
//! ranges of the text), never parsed, until a transform asks for them. Writing an
//! unchanged event writes its original text, so every field, known or not,
//! survives byte for byte. Setting the level and removing or replacing the
//! bodies ([`AuditEvent::rebuild`], what `audit_policy` does) splices the text
//! at the places where reading found those members ([`MemberPlaces`]): nothing
//! is parsed again, and the header's places move with the text. Any other edit
//! (redacting inside a body, a changed header field) rewrites the text through
//! an ordered map of the top-level fields ([`AuditEvent::edit`]), keeping every
//! field it did not touch verbatim.

use std::ops::Range;

use indexmap::IndexMap;
use serde_json::value::RawValue;

use super::header::{AuditHeader, HeaderFields};
use super::json::compact_json;
use super::scan::{read_document, Item, Wire};
use super::EventError;

mod splice;
pub use splice::{
    array_items, object_members, object_members_lazily, BodyChange, JsonMember, Members,
};

/// The stage of request handling at which an audit event was generated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The audit handler received the request, before delegating it.
    RequestReceived,
    /// Response headers were sent, the body not yet (long-running requests such as watch).
    ResponseStarted,
    /// The response body has been completed.
    ResponseComplete,
    /// A panic occurred while handling the request.
    Panic,
    /// A stage this version of auditflow does not know (kept as written).
    Other(Box<str>),
}

impl Stage {
    /// Parses the stage name as the apiserver writes it.
    pub fn parse(name: &str) -> Stage {
        match name {
            "RequestReceived" => Stage::RequestReceived,
            "ResponseStarted" => Stage::ResponseStarted,
            "ResponseComplete" => Stage::ResponseComplete,
            "Panic" => Stage::Panic,
            other => Stage::Other(other.into()),
        }
    }

    /// The stage name as the apiserver writes it.
    pub fn as_str(&self) -> &str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
            Stage::Other(name) => name,
        }
    }
}

/// How much of a request an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Not logged at all.
    None,
    /// Who, what and when; no bodies.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, the request body and the response body.
    RequestResponse,
}

impl Level {
    /// Parses a level name as written in events and audit policies.
    pub fn parse(name: &str) -> Option<Level> {
        match name {
            "None" => Some(Level::None),
            "Metadata" => Some(Level::Metadata),
            "Request" => Some(Level::Request),
            "RequestResponse" => Some(Level::RequestResponse),
            _ => None,
        }
    }

    /// The level name as written in events and audit policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }

    /// The level as a JSON string, with its quotes (`"Metadata"`).
    pub fn as_json(self) -> &'static str {
        match self {
            Level::None => "\"None\"",
            Level::Metadata => "\"Metadata\"",
            Level::Request => "\"Request\"",
            Level::RequestResponse => "\"RequestResponse\"",
        }
    }
}

/// One audit event: its JSON text, the typed header parsed from it and where its bodies are.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    text: String,
    /// The header's fields, as places in `text` (see [`AuditHeader`]).
    header: HeaderFields,
    request_object: Option<Range<usize>>,
    response_object: Option<Range<usize>>,
    /// Where the members a rebuild changes are (see [`MemberPlaces`]).
    places: MemberPlaces,
}

/// Where an event's `level` and body members are in its text, as reading met
/// them: [`AuditEvent::rebuild`] changes them in place instead of walking the
/// text to find them. Kept as `u32` offsets (an event's text is under 2 GiB,
/// see the header) so that they add 32 bytes to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MemberPlaces {
    /// The value of `level` (its JSON text: a string with its quotes, or `null`).
    level: [u32; 2],
    /// The `requestObject` member (any value, `null` too): key start, value start, value end.
    request: [u32; 3],
    /// The `responseObject` member.
    response: [u32; 3],
}

/// Marks a place an event does not have.
const ABSENT: u32 = u32::MAX;

impl Default for MemberPlaces {
    fn default() -> Self {
        MemberPlaces {
            level: [ABSENT; 2],
            request: [ABSENT; 3],
            response: [ABSENT; 3],
        }
    }
}

/// One `"key": value` member of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MemberPlace {
    /// Where the key's opening quote is.
    pub start: usize,
    /// The value.
    pub value: Range<usize>,
}

/// Which body member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    Request,
    Response,
}

fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(ABSENT)
}

impl MemberPlaces {
    /// Where the value of `level` is.
    pub(super) fn level(&self) -> Option<Range<usize>> {
        let [start, end] = self.level;
        (start != ABSENT).then_some(start as usize..end as usize)
    }

    pub(super) fn set_level(&mut self, value: Range<usize>) {
        self.level = [offset(value.start), offset(value.end)];
    }

    /// Where a body member is.
    pub(super) fn body(&self, body: Body) -> Option<MemberPlace> {
        let [start, value_start, value_end] = match body {
            Body::Request => self.request,
            Body::Response => self.response,
        };
        (start != ABSENT).then_some(MemberPlace {
            start: start as usize,
            value: value_start as usize..value_end as usize,
        })
    }

    pub(super) fn set_body(&mut self, body: Body, member: Option<MemberPlace>) {
        let place = member.map_or([ABSENT; 3], |member| {
            [
                offset(member.start),
                offset(member.value.start),
                offset(member.value.end),
            ]
        });
        match body {
            Body::Request => self.request = place,
            Body::Response => self.response = place,
        }
    }
}

/// Events are equal when their texts, their headers (as read) and their bodies' places are.
impl PartialEq for AuditEvent {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
            && self.header() == other.header()
            && self.request_object == other.request_object
            && self.response_object == other.response_object
    }
}

impl Eq for AuditEvent {}

/// The result of decoding one JSON document: a single event, or the items of an `EventList`.
pub type DecodedDocument = Vec<Result<AuditEvent, ItemError>>;

/// An item of an `EventList` that is not a valid audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// What is wrong with it.
    pub error: EventError,
    /// The item's JSON text.
    pub input: String,
}

/// Decodes one JSON document holding an audit `Event` or an `EventList`.
///
/// The outer `Err` means the document as a whole is unusable (not JSON, not an
/// object, not an audit event). For an `EventList`, each item is decoded on its
/// own, so one bad item does not hide the others.
pub fn decode_document(text: &str) -> Result<DecodedDocument, EventError> {
    decode_wire(text, parse_wire(text)?)
}

/// Like [`decode_document`], but keeps an owned single event's text without copying it.
///
/// On error the text is handed back, for the `errors` record.
pub fn decode_document_owned(text: String) -> Result<DecodedDocument, (EventError, String)> {
    let mut items = Vec::new();
    decode_document_each(text, |item| items.push(item))?;
    Ok(items)
}

/// Like [`decode_document_owned`], handing each event (or bad list item) to
/// `each` as it is decoded instead of collecting them.
pub fn decode_document_each(
    text: String,
    mut each: impl FnMut(Result<AuditEvent, ItemError>),
) -> Result<(), (EventError, String)> {
    match locate(&text, &mut each) {
        Ok(Some(parts)) => each(Ok(parts.into_event(text))),
        Ok(None) => {}
        Err(error) => return Err((error, text)),
    }
    Ok(())
}

/// What an event's text is parsed into: its header and where its bodies are.
struct Parts {
    header: HeaderFields,
    request_object: Option<Range<usize>>,
    response_object: Option<Range<usize>>,
    places: MemberPlaces,
}

impl Parts {
    /// Moves the header and the bodies' places (relative to the event's text) out of the wire form.
    fn of(mut wire: Wire<'_>) -> Result<Parts, EventError> {
        let request_object = wire.request_object.clone();
        let response_object = wire.response_object.clone();
        let places = std::mem::take(&mut wire.places);
        Ok(Parts {
            header: header_from_wire(wire)?,
            request_object,
            response_object,
            places,
        })
    }

    /// The event, given its (trimmed) text.
    fn into_event(self, text: String) -> AuditEvent {
        AuditEvent {
            text,
            header: self.header,
            request_object: self.request_object,
            response_object: self.response_object,
            places: self.places,
        }
    }
}

/// The parts of a single event whose text can be kept as it is; any other
/// document (a list, text to trim or compact) is decoded and handed to `each`.
fn locate(
    text: &str,
    each: &mut impl FnMut(Result<AuditEvent, ItemError>),
) -> Result<Option<Parts>, EventError> {
    let wire = parse_wire(text)?;
    let kind = kind_of(&wire)?;
    if matches!(kind, DocumentKind::EventList)
        || needs_compacting(text)
        || text.trim().len() != text.len()
    {
        decode_wire(text, wire)?.into_iter().for_each(each);
        return Ok(None);
    }
    Ok(Some(Parts::of(wire)?))
}

fn decode_wire(text: &str, wire: Wire<'_>) -> Result<DecodedDocument, EventError> {
    match kind_of(&wire)? {
        DocumentKind::Event => Ok(vec![Ok(AuditEvent::from_wire(text, wire)?)]),
        DocumentKind::EventList => {
            let items = wire.items.unwrap_or_default();
            Ok(items
                .into_iter()
                .map(|item| item_event(text, item))
                .collect())
        }
    }
}

/// The event of an `EventList` item, read already in the list's one pass; its text is copied out.
fn item_event(text: &str, item: Item<'_>) -> Result<AuditEvent, ItemError> {
    let input = text.get(item.span.clone()).unwrap_or_default();
    let event = item.wire.and_then(|wire| {
        if let Some(error) = wire.error {
            return Err(error);
        }
        if let DocumentKind::EventList = kind_of(&wire)? {
            return Err(one_event_expected());
        }
        if needs_compacting(input) {
            return AuditEvent::parse(&compact_json(input));
        }
        Ok(Parts::of(wire)?.into_event(input.to_string()))
    });
    event.map_err(|error| ItemError {
        error,
        input: input.to_string(),
    })
}

fn one_event_expected() -> EventError {
    EventError::NotAudit("an EventList where one Event was expected".to_string())
}

/// The error for a list item that is valid JSON but not an object.
pub(super) fn not_an_object(text: &str) -> EventError {
    match describe_json_start(text) {
        Some(what) => EventError::NotAnObject(what),
        None => EventError::Json("expected a JSON object, found text that is not JSON".into()),
    }
}

enum DocumentKind {
    Event,
    EventList,
}

/// Reads a document in one pass; a field of the wrong type makes the document unusable.
fn parse_wire(text: &str) -> Result<Wire<'_>, EventError> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return Err(not_an_object(trimmed));
    }
    let mut wire = read_document(text)?;
    match wire.error.take() {
        Some(error) => Err(error),
        None => Ok(wire),
    }
}

/// What kind of JSON value a document that is not an object starts, if it looks like JSON at all.
fn describe_json_start(text: &str) -> Option<&'static str> {
    let bytes = text.as_bytes();
    match bytes.first()? {
        b'[' => Some("a JSON array"),
        b'"' => Some("a JSON string"),
        b'-' | b'0'..=b'9' => Some("a JSON number"),
        _ if bytes.starts_with(b"true") || bytes.starts_with(b"false") => Some("a JSON boolean"),
        _ if bytes.starts_with(b"null") => Some("JSON null"),
        _ => None,
    }
}

fn kind_of(wire: &Wire<'_>) -> Result<DocumentKind, EventError> {
    if let Some(api_version) = wire.api_version.map(|v| wire.source().get(v)) {
        if !api_version.starts_with("audit.k8s.io/") {
            return Err(EventError::NotAudit(format!(
                "apiVersion is `{api_version}`, expected audit.k8s.io/v1 or audit.k8s.io/v1beta1"
            )));
        }
    }
    match wire.kind {
        None | Some("\"Event\"") => Ok(DocumentKind::Event),
        Some("\"EventList\"") if wire.items.is_some() => Ok(DocumentKind::EventList),
        Some("\"EventList\"") => Err(EventError::NotAudit(
            "an EventList without `items`".to_string(),
        )),
        Some(other) => Err(EventError::NotAudit(format!(
            "kind is {other}, expected \"Event\" or \"EventList\""
        ))),
    }
}

impl AuditEvent {
    /// Parses one audit `Event` from its JSON text.
    pub fn parse(text: &str) -> Result<AuditEvent, EventError> {
        let wire = parse_wire(text)?;
        match kind_of(&wire)? {
            DocumentKind::Event => AuditEvent::from_wire(text, wire),
            DocumentKind::EventList => Err(one_event_expected()),
        }
    }

    fn from_wire(text: &str, wire: Wire<'_>) -> Result<AuditEvent, EventError> {
        if needs_compacting(text) {
            // Pretty-printed input: make it one line, then locate the bodies anew.
            return AuditEvent::parse(&compact_json(text));
        }
        Ok(Parts::of(wire)?.into_event(text.trim().to_string()))
    }

    /// The typed header: a view whose strings borrow from the event.
    pub fn header(&self) -> AuditHeader<'_> {
        AuditHeader::new(&self.text, &self.header)
    }

    /// The event's JSON text: one line, exactly as received unless a transform edited it.
    pub fn as_json(&self) -> &str {
        &self.text
    }

    /// The raw JSON of `requestObject`, if the event has one. Not parsed.
    pub fn request_object(&self) -> Option<&str> {
        self.request_object.clone().and_then(|r| self.text.get(r))
    }

    /// The raw JSON of `responseObject`, if the event has one. Not parsed.
    pub fn response_object(&self) -> Option<&str> {
        self.response_object.clone().and_then(|r| self.text.get(r))
    }

    /// Parses the whole event into a JSON value (for generic field access such as `jevt.value`).
    pub fn to_value(&self) -> Result<serde_json::Value, EventError> {
        serde_json::from_str(&self.text).map_err(EventError::from_json)
    }

    /// Starts an edit of the event's top-level fields; [`AuditEventEdit::finish`] applies it.
    pub fn edit(&self) -> Result<AuditEventEdit, EventError> {
        let fields: IndexMap<String, Box<RawValue>> =
            serde_json::from_str(&self.text).map_err(EventError::from_json)?;
        Ok(AuditEventEdit {
            fields,
            header: self.header.detached(&self.text),
            header_changed: false,
        })
    }
}

/// An edit in progress: the event's top-level fields in their input order, each as raw JSON.
#[derive(Debug, Clone)]
pub struct AuditEventEdit {
    fields: IndexMap<String, Box<RawValue>>,
    /// The header of the event being edited (its strings copied out of the old
    /// text), kept while only bodies and `level` change.
    header: HeaderFields,
    /// Whether a field of the header other than `level` changed (the text is then parsed anew).
    header_changed: bool,
}

/// The top-level fields an edit can change without the header being parsed again.
const BODY_FIELDS: [&str; 2] = ["requestObject", "responseObject"];
const LEVEL_FIELD: &str = "level";

impl AuditEventEdit {
    /// Removes a top-level field; returns whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        self.touch(name);
        self.fields.shift_remove(name).is_some()
    }

    /// The raw JSON of a top-level field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|raw| raw.get())
    }

    /// Sets a top-level field to a JSON value, keeping its place if it existed.
    pub fn set(&mut self, name: &str, value: &serde_json::Value) -> Result<(), EventError> {
        let raw = serde_json::value::to_raw_value(value).map_err(EventError::from_json)?;
        self.set_raw(name, raw);
        Ok(())
    }

    /// Sets a top-level field to raw JSON text, keeping its place if it existed.
    pub fn set_raw(&mut self, name: &str, raw: Box<RawValue>) {
        self.touch(name);
        match self.fields.get_mut(name) {
            Some(slot) => *slot = raw,
            None => {
                self.fields.insert(name.to_string(), raw);
            }
        }
    }

    /// Changes a top-level field in place through its parsed JSON value.
    ///
    /// `change` returns whether it changed anything; only then is the field
    /// written back (object keys keep their order). Returns whether the field was
    /// there and changed.
    pub fn update(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut serde_json::Value) -> bool,
    ) -> Result<bool, EventError> {
        let Some(raw) = self.fields.get(name) else {
            return Ok(false);
        };
        let mut value: serde_json::Value =
            serde_json::from_str(raw.get()).map_err(EventError::from_json)?;
        if !change(&mut value) {
            return Ok(false);
        }
        self.set(name, &value)?;
        Ok(true)
    }

    /// Notes that a field changes; a header field other than `level` means a full parse at the end.
    fn touch(&mut self, name: &str) {
        if !BODY_FIELDS.contains(&name) && name != LEVEL_FIELD {
            self.header_changed = true;
        }
    }

    /// Writes the edited fields back into an event.
    ///
    /// When only the bodies and `level` changed, the header is kept (with the new
    /// level) and the bodies are located while the text is written; otherwise
    /// the text is parsed again.
    pub fn finish(self) -> Result<AuditEvent, EventError> {
        if self.header_changed {
            let text = serde_json::to_string(&self.fields).map_err(EventError::from_json)?;
            return AuditEvent::parse(&text);
        }
        let capacity = self.fields.iter().map(|(k, v)| k.len() + v.get().len() + 4);
        let mut text = String::with_capacity(capacity.sum::<usize>() + 2);
        let mut request_object = None;
        let mut response_object = None;
        let mut places = MemberPlaces::default();
        text.push('{');
        for (index, (name, raw)) in self.fields.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            let start = text.len();
            text.push_str(&serde_json::to_string(name).map_err(EventError::from_json)?);
            text.push(':');
            let range = text.len()..text.len() + raw.get().len();
            text.push_str(raw.get());
            let member = || MemberPlace {
                start,
                value: range.clone(),
            };
            match name.as_str() {
                "requestObject" => {
                    places.set_body(Body::Request, Some(member()));
                    request_object = Some(range);
                }
                "responseObject" => {
                    places.set_body(Body::Response, Some(member()));
                    response_object = Some(range);
                }
                LEVEL_FIELD => places.set_level(range),
                _ => {}
            }
        }
        text.push('}');
        let mut header = self.header;
        header.level = match self.fields.get(LEVEL_FIELD) {
            None => None,
            Some(raw) => level_of(raw)?,
        };
        Ok(AuditEvent {
            text,
            header,
            request_object,
            response_object,
            places,
        })
    }
}

/// The level a raw `level` value names (`null` for none), as decoding reads it.
fn level_of(raw: &RawValue) -> Result<Option<Level>, EventError> {
    let name: Option<String> = serde_json::from_str(raw.get()).map_err(EventError::from_json)?;
    name.map(|name| {
        Level::parse(&name).ok_or_else(|| {
            EventError::NotAudit(format!(
                "level is `{name}`, expected None, Metadata, Request or RequestResponse"
            ))
        })
    })
    .transpose()
}

/// Moves the header fields out of the wire form (bodies must have been located first).
fn header_from_wire(wire: Wire<'_>) -> Result<HeaderFields, EventError> {
    let audit_id = required(wire.audit_id, "auditID")?;
    let stage = Stage::parse(&required(wire.stage, "stage")?);
    let verb = required(wire.verb, "verb")?;
    let level = match wire.level.as_deref() {
        None => None,
        Some(name) => Some(Level::parse(name).ok_or_else(|| {
            EventError::NotAudit(format!(
                "level is `{name}`, expected None, Metadata, Request or RequestResponse"
            ))
        })?),
    };
    Ok(HeaderFields {
        api_version: wire.api_version,
        audit_id,
        stage,
        level,
        request_uri: wire.request_uri,
        verb,
        user: wire.user.unwrap_or_default(),
        impersonated_user: wire.impersonated_user,
        source_ips: wire.source_ips.unwrap_or_default(),
        user_agent: wire.user_agent,
        object_ref: wire.object_ref,
        response_status: wire.response_status,
        request_received_timestamp: wire.request_received_timestamp,
        stage_timestamp: wire.stage_timestamp,
        annotations: wire.annotations.unwrap_or_default(),
        pool: wire.pool,
    })
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, EventError> {
    value.ok_or_else(|| EventError::NotAudit(format!("the required field `{field}` is missing")))
}

fn needs_compacting(text: &str) -> bool {
    memchr::memchr2(b'\n', b'\r', text.trim().as_bytes()).is_some()
}
