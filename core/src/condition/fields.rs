//! Fields: how a condition names a part of an event, and how it is read.
//!
//! A [`FieldResolver`] turns a field name (and its bracketed argument) into a
//! [`FieldExtractor`] when a condition is compiled. [`StandardFields`] knows
//! the fields below; more can be added by a resolver that handles its own names
//! and defers the rest, for which a pair `(mine, StandardFields)` is a resolver
//! trying `mine` first.
//!
//! | field | value |
//! |---|---|
//! | `ka.auditid` | `auditID` |
//! | `ka.stage` | `stage` |
//! | `ka.verb` | `verb` |
//! | `ka.uri` | `requestURI` |
//! | `ka.user.name` | `user.username` |
//! | `ka.user.groups` | `user.groups` (a list) |
//! | `ka.impuser.name` | `impersonatedUser.username` |
//! | `ka.target.resource` | `objectRef.resource` |
//! | `ka.target.subresource` | `objectRef.subresource` |
//! | `ka.target.namespace` | `objectRef.namespace` |
//! | `ka.target.name` | `objectRef.name` |
//! | `ka.response.code` | `responseStatus.code` (a number, compared as number or text) |
//! | `ka.auth.decision` | the `authorization.k8s.io/decision` annotation |
//! | `ka.auth.reason` | the `authorization.k8s.io/reason` annotation |
//! | `ka.useragent` | `userAgent` |
//! | `ka.sourceips` | `sourceIPs` (a list) |
//! | `ka.response.reason` | `responseStatus.reason` |
//! | `ka.uri.param[KEY]` | the first value of the query parameter `KEY` of `requestURI` |
//! | `ka.req.configmap.name` | `objectRef.name` |
//! | `ka.req.*`, `ka.resp.name` | inside the request and response bodies (see the `body` module) |
//! | `jevt.value[/pointer]` | the value at a JSON pointer in the whole event (any payload) |
//! | `jevt.obj` | the whole event as JSON text |
//! | `jevt.rawtime` | the event time in nanoseconds since the epoch (a number) |
//! | `jevt.time`, `jevt.time.iso8601` | the event time, RFC 3339 with nanoseconds |
//! | `kafka.topic`, `kafka.partition`, `kafka.offset` | where the `kafka` source read the event's message |
//! | `kafka.key`, `kafka.header[NAME]` | that message's key, and its header `NAME` |
//!
//! The event time is `stageTimestamp`, else `requestReceivedTimestamp`, else
//! (as Falco stamps events it reads) the time the event is evaluated.
//!
//! `ka.*` fields are missing on events that are not audit events. Text the
//! header keeps as an empty string when the event lacks it (`verb`, `requestURI`,
//! `user.username`) counts as missing when empty; an empty list is missing.

use std::fmt;

use super::context::EvalContext;
use super::json::{JsonPointer, JsonRef};
use super::value::{FieldRef, FieldValue, Scalar};
use crate::event::{AuditHeader, Event};

/// Reads one field of an event; compiled conditions hold one per comparison.
pub trait FieldExtractor: fmt::Debug + Send + Sync {
    /// The field's value in the event, borrowed from it (or from its JSON) where possible.
    fn read<'c>(&self, ctx: &'c EvalContext<'_>) -> FieldRef<'c>;

    /// The field's value, owned, for output formatting (`<NA>` when missing).
    fn extract(&self, event: &Event) -> FieldValue {
        self.extract_in(&EvalContext::new(event))
    }

    /// [`extract`](FieldExtractor::extract) within a context, sharing its parsed JSON with other fields.
    fn extract_in(&self, ctx: &EvalContext<'_>) -> FieldValue {
        self.read(ctx).to_value()
    }
}

/// Why a resolver could not give an extractor for a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldError {
    /// The resolver does not know the field (another resolver may).
    Unknown,
    /// The resolver knows the field, but not with this argument; the message says why.
    Argument(String),
}

/// Turns field names into extractors when a condition is compiled.
pub trait FieldResolver {
    /// The extractor for `name` with its bracketed argument, if any.
    fn resolve(&self, name: &str, arg: Option<&str>)
        -> Result<Box<dyn FieldExtractor>, FieldError>;
}

/// Tries the first resolver, then the second for the fields the first does not know.
impl<A: FieldResolver, B: FieldResolver> FieldResolver for (A, B) {
    fn resolve(
        &self,
        name: &str,
        arg: Option<&str>,
    ) -> Result<Box<dyn FieldExtractor>, FieldError> {
        match self.0.resolve(name, arg) {
            Err(FieldError::Unknown) => self.1.resolve(name, arg),
            resolved => resolved,
        }
    }
}

/// The standard fields: `ka.*` from the audit header and `jevt.value[...]` (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardFields;

impl StandardFields {
    /// The names of the standard fields (`jevt.value` takes a JSON pointer argument).
    pub fn names() -> impl Iterator<Item = &'static str> {
        HEADER_FIELDS
            .iter()
            .map(|(name, _)| *name)
            .chain(EVENT_FIELDS.iter().map(|(name, _)| *name))
            .chain(super::body::BODY_FIELD_NAMES.iter().copied())
            .chain(super::origin::ORIGIN_FIELD_NAMES)
            .chain([JEVT_VALUE, URI_PARAM])
    }
}

impl FieldResolver for StandardFields {
    fn resolve(
        &self,
        name: &str,
        arg: Option<&str>,
    ) -> Result<Box<dyn FieldExtractor>, FieldError> {
        if name == JEVT_VALUE {
            return json_value_field(arg);
        }
        if let Some(resolved) = super::body::resolve(name, arg) {
            return resolved;
        }
        if let Some(resolved) = super::origin::resolve(name, arg) {
            return resolved;
        }
        if let Some(field) = EventField::named(name) {
            return no_argument(name, arg).map(|()| Box::new(field) as Box<dyn FieldExtractor>);
        }
        if name == URI_PARAM {
            return uri_param_field(arg);
        }
        let field = HEADER_FIELDS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, field)| *field)
            .ok_or(FieldError::Unknown)?;
        match arg {
            None => Ok(Box::new(field)),
            Some(_) => Err(FieldError::Argument(format!(
                "the field `{name}` takes no argument in brackets"
            ))),
        }
    }
}

const JEVT_VALUE: &str = "jevt.value";
const URI_PARAM: &str = "ka.uri.param";

pub(super) fn no_argument(name: &str, arg: Option<&str>) -> Result<(), FieldError> {
    match arg {
        None => Ok(()),
        Some(_) => Err(FieldError::Argument(format!(
            "the field `{name}` takes no argument in brackets"
        ))),
    }
}

fn uri_param_field(arg: Option<&str>) -> Result<Box<dyn FieldExtractor>, FieldError> {
    match arg {
        Some(key) if !key.is_empty() => Ok(Box::new(UriParamField {
            key: key.to_string(),
        })),
        _ => Err(FieldError::Argument(
            "`ka.uri.param` needs a parameter name in brackets, as in `ka.uri.param[command]`"
                .to_string(),
        )),
    }
}

/// `ka.uri.param[KEY]`: the first value of a query parameter of the request URI.
#[derive(Debug, Clone)]
struct UriParamField {
    key: String,
}

impl FieldExtractor for UriParamField {
    fn read<'c>(&self, ctx: &'c EvalContext<'_>) -> FieldRef<'c> {
        let Some(audit) = ctx.audit() else {
            return FieldRef::Missing;
        };
        let uri = audit.header().request_uri();
        let Some((_, query)) = uri.split_once('?') else {
            return FieldRef::Missing;
        };
        query
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key) == self.key).then(|| percent_decode(value))
            })
            .next()
            .map_or(FieldRef::Missing, |value| {
                FieldRef::One(Scalar::Str(std::borrow::Cow::Owned(value)))
            })
    }
}

/// Decodes `%XX` escapes and `+` (a space in query strings); bad escapes stay as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                index += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                index += 1;
            }
            (other, None) => {
                out.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Fields of the whole event that are not header members: `jevt.obj`, the event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventField {
    Obj,
    RawTime,
    Time,
    ResponseReason,
    ConfigmapName,
}

const EVENT_FIELDS: [(&str, EventField); 6] = [
    ("jevt.obj", EventField::Obj),
    ("jevt.rawtime", EventField::RawTime),
    ("jevt.time", EventField::Time),
    ("jevt.time.iso8601", EventField::Time),
    ("ka.response.reason", EventField::ResponseReason),
    ("ka.req.configmap.name", EventField::ConfigmapName),
];

impl EventField {
    fn named(name: &str) -> Option<EventField> {
        EVENT_FIELDS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, field)| *field)
    }
}

impl FieldExtractor for EventField {
    fn read<'c>(&self, ctx: &'c EvalContext<'_>) -> FieldRef<'c> {
        let Some(audit) = ctx.audit() else {
            return FieldRef::Missing;
        };
        let header = audit.header();
        match self {
            EventField::Obj => FieldRef::str(audit.as_json()),
            EventField::RawTime => event_time(header)
                .timestamp_nanos_opt()
                .map_or(FieldRef::Missing, |nanos| FieldRef::One(Scalar::Int(nanos))),
            EventField::Time => FieldRef::One(Scalar::Str(std::borrow::Cow::Owned(
                format_event_time(event_time(header)),
            ))),
            EventField::ResponseReason => {
                FieldRef::opt_str(header.response_status().and_then(|status| status.reason()))
            }
            EventField::ConfigmapName => {
                FieldRef::opt_str(header.object_ref().and_then(|object| object.name()))
            }
        }
    }
}

/// The event time: its own timestamp, or now when it has none (as Falco stamps events it reads).
pub fn event_time(header: AuditHeader<'_>) -> chrono::DateTime<chrono::Utc> {
    header.event_time().unwrap_or_else(chrono::Utc::now)
}

/// A time as Falco prints it: RFC 3339 in UTC with nanoseconds.
pub fn format_event_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn json_value_field(arg: Option<&str>) -> Result<Box<dyn FieldExtractor>, FieldError> {
    let arg = arg.ok_or_else(|| {
        FieldError::Argument(
            "`jevt.value` needs a JSON pointer in brackets, as in `jevt.value[/objectRef/resource]`"
                .to_string(),
        )
    })?;
    let pointer = JsonPointer::parse(arg).map_err(FieldError::Argument)?;
    let json = JsonValueField { pointer };
    match HEADER_POINTERS.iter().find(|(known, _)| *known == arg) {
        Some((_, header)) => Ok(Box::new(HeaderPointerField {
            header: *header,
            json,
        })),
        None => Ok(Box::new(json)),
    }
}

/// `jevt.value[/pointer]`: the value at a JSON pointer in the whole event.
#[derive(Debug, Clone)]
struct JsonValueField {
    pointer: JsonPointer,
}

impl FieldExtractor for JsonValueField {
    fn read<'c>(&self, ctx: &'c EvalContext<'_>) -> FieldRef<'c> {
        let body = match self.pointer.first() {
            Some("requestObject") if ctx.audit().is_some() => Some(ctx.request_object()),
            Some("responseObject") if ctx.audit().is_some() => Some(ctx.response_object()),
            _ => None,
        };
        let resolved = match body {
            Some(body) => {
                body.and_then(|body| self.pointer.resolve_after_first(JsonRef::Value(body)))
            }
            None => ctx.json().and_then(|root| self.pointer.resolve(root)),
        };
        resolved.map_or(FieldRef::Missing, |value| value.to_field())
    }
}

/// `jevt.value` pointers that name a header member: read from the typed header, no parse.
const HEADER_POINTERS: [(&str, HeaderField); 9] = [
    ("/stage", HeaderField::Stage),
    ("/verb", HeaderField::Verb),
    ("/auditID", HeaderField::AuditId),
    ("/requestURI", HeaderField::Uri),
    ("/user/username", HeaderField::UserName),
    ("/objectRef/resource", HeaderField::TargetResource),
    ("/objectRef/subresource", HeaderField::TargetSubresource),
    ("/objectRef/namespace", HeaderField::TargetNamespace),
    ("/objectRef/name", HeaderField::TargetName),
];

/// Reads a header pointer from the header of audit events, and from the JSON of other payloads.
#[derive(Debug, Clone)]
struct HeaderPointerField {
    header: HeaderField,
    json: JsonValueField,
}

impl FieldExtractor for HeaderPointerField {
    fn read<'c>(&self, ctx: &'c EvalContext<'_>) -> FieldRef<'c> {
        match ctx.audit() {
            Some(audit) => self.header.read_header(audit.header()),
            None => self.json.read(ctx),
        }
    }
}

/// A field read from the typed audit header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderField {
    AuditId,
    Stage,
    Verb,
    Uri,
    UserName,
    UserGroups,
    ImpersonatedUserName,
    TargetResource,
    TargetSubresource,
    TargetNamespace,
    TargetName,
    ResponseCode,
    AuthDecision,
    AuthReason,
    UserAgent,
    SourceIps,
}

const HEADER_FIELDS: [(&str, HeaderField); 16] = [
    ("ka.auditid", HeaderField::AuditId),
    ("ka.stage", HeaderField::Stage),
    ("ka.verb", HeaderField::Verb),
    ("ka.uri", HeaderField::Uri),
    ("ka.user.name", HeaderField::UserName),
    ("ka.user.groups", HeaderField::UserGroups),
    ("ka.impuser.name", HeaderField::ImpersonatedUserName),
    ("ka.target.resource", HeaderField::TargetResource),
    ("ka.target.subresource", HeaderField::TargetSubresource),
    ("ka.target.namespace", HeaderField::TargetNamespace),
    ("ka.target.name", HeaderField::TargetName),
    ("ka.response.code", HeaderField::ResponseCode),
    ("ka.auth.decision", HeaderField::AuthDecision),
    ("ka.auth.reason", HeaderField::AuthReason),
    ("ka.useragent", HeaderField::UserAgent),
    ("ka.sourceips", HeaderField::SourceIps),
];

impl FieldExtractor for HeaderField {
    fn read<'c>(&self, ctx: &'c EvalContext<'_>) -> FieldRef<'c> {
        match ctx.audit() {
            Some(audit) => self.read_header(audit.header()),
            None => FieldRef::Missing,
        }
    }
}

impl HeaderField {
    fn read_header(self, header: AuditHeader<'_>) -> FieldRef<'_> {
        let object = header.object_ref();
        match self {
            HeaderField::AuditId => non_empty(header.audit_id()),
            HeaderField::Stage => FieldRef::str(header.stage().as_str()),
            HeaderField::Verb => non_empty(header.verb()),
            HeaderField::Uri => non_empty(header.request_uri()),
            HeaderField::UserName => non_empty(header.user().username()),
            HeaderField::UserGroups => FieldRef::Strs(header.user().groups()),
            HeaderField::ImpersonatedUserName => header
                .impersonated_user()
                .map_or(FieldRef::Missing, |user| non_empty(user.username())),
            HeaderField::TargetResource => FieldRef::opt_str(object.and_then(|o| o.resource())),
            HeaderField::TargetSubresource => {
                FieldRef::opt_str(object.and_then(|o| o.subresource()))
            }
            HeaderField::TargetNamespace => FieldRef::opt_str(object.and_then(|o| o.namespace())),
            HeaderField::TargetName => FieldRef::opt_str(object.and_then(|o| o.name())),
            HeaderField::ResponseCode => header
                .response_code()
                .map_or(FieldRef::Missing, |code| FieldRef::One(Scalar::Int(code))),
            HeaderField::AuthDecision => FieldRef::opt_str(header.annotation(DECISION_ANNOTATION)),
            HeaderField::AuthReason => FieldRef::opt_str(header.annotation(REASON_ANNOTATION)),
            HeaderField::UserAgent => FieldRef::opt_str(header.user_agent()),
            HeaderField::SourceIps => FieldRef::Strs(header.source_ips()),
        }
    }
}

const DECISION_ANNOTATION: &str = "authorization.k8s.io/decision";
const REASON_ANNOTATION: &str = "authorization.k8s.io/reason";

fn non_empty(text: &str) -> FieldRef<'_> {
    if text.is_empty() {
        FieldRef::Missing
    } else {
        FieldRef::str(text)
    }
}
