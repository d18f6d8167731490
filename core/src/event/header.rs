//! The typed header of an audit event, kept as places in the event's own text.
//!
//! Decoding does not copy the header's strings out of the event: a string is
//! kept as its byte range in the event's text; one with escapes (`\"`,
//! `\u00e9`) is resolved into its own copy the first time it is read (see
//! [`Text`]). [`AuditHeader`] and the views it
//! hands out ([`UserInfo`], [`ObjectReference`], [`ResponseStatus`],
//! [`TextList`]) pair these places with the text and give plain `&str`s.

use std::fmt;
use std::sync::OnceLock;

use super::audit::{Level, Stage};
use super::scan::unescape;

/// One string of the header: a range of the event's text, or its own copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Text {
    /// The string's contents are the text's bytes `start..end`, as written.
    Span(u32, u32),
    /// The contents at `start..end` hold escapes (checked when read): they
    /// are resolved the first time the string is asked for, and kept.
    Escaped(u32, u32, OnceLock<Box<str>>),
    /// The string's resolved contents (after an edit, or beyond 4 GiB of text).
    Owned(Box<str>),
}

impl Text {
    /// The string, given the text of the event it was read from.
    pub(super) fn get<'a>(&'a self, text: &'a str) -> &'a str {
        match self {
            Text::Span(start, end) => span(text, *start, *end),
            Text::Escaped(start, end, resolved) => resolved.get_or_init(|| {
                unescape(span(text, *start, *end))
                    .unwrap_or_default()
                    .into_boxed_str()
            }),
            Text::Owned(value) => value,
        }
    }

    /// The same string kept as its own copy, independent of the event's text.
    pub(super) fn detached(&self, text: &str) -> Text {
        match self {
            Text::Owned(value) => Text::Owned(value.clone()),
            _ => Text::Owned(self.get(text).into()),
        }
    }
}

fn span(text: &str, start: u32, end: u32) -> &str {
    text.get(start as usize..end as usize).unwrap_or_default()
}

fn detach_all(list: &[Text], text: &str) -> Vec<Text> {
    list.iter().map(|item| item.detached(text)).collect()
}

fn detach_option(value: &Option<Text>, text: &str) -> Option<Text> {
    value.as_ref().map(|value| value.detached(text))
}

/// The header's fields as read (see [`AuditHeader`] for what each one is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeaderFields {
    pub api_version: Option<Text>,
    pub audit_id: Text,
    pub stage: Stage,
    pub level: Option<Level>,
    pub request_uri: Option<Text>,
    pub verb: Text,
    pub user: UserFields,
    pub impersonated_user: Option<UserFields>,
    pub source_ips: Vec<Text>,
    pub user_agent: Option<Text>,
    pub object_ref: Option<ObjectFields>,
    pub response_status: Option<StatusFields>,
    pub request_received_timestamp: Option<Text>,
    pub stage_timestamp: Option<Text>,
    pub annotations: Vec<(Text, Text)>,
}

impl HeaderFields {
    /// The same fields with every string copied out of `text` (for an edit, which writes a new text).
    pub(super) fn detached(&self, text: &str) -> HeaderFields {
        HeaderFields {
            api_version: detach_option(&self.api_version, text),
            audit_id: self.audit_id.detached(text),
            stage: self.stage.clone(),
            level: self.level,
            request_uri: detach_option(&self.request_uri, text),
            verb: self.verb.detached(text),
            user: self.user.detached(text),
            impersonated_user: self.impersonated_user.as_ref().map(|u| u.detached(text)),
            source_ips: detach_all(&self.source_ips, text),
            user_agent: detach_option(&self.user_agent, text),
            object_ref: self.object_ref.as_ref().map(|o| o.detached(text)),
            response_status: self.response_status.as_ref().map(|s| s.detached(text)),
            request_received_timestamp: detach_option(&self.request_received_timestamp, text),
            stage_timestamp: detach_option(&self.stage_timestamp, text),
            annotations: self
                .annotations
                .iter()
                .map(|(key, value)| (key.detached(text), value.detached(text)))
                .collect(),
        }
    }
}

/// The fields of a `user` or `impersonatedUser` object as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct UserFields {
    pub username: Option<Text>,
    pub uid: Option<Text>,
    pub groups: Vec<Text>,
}

impl UserFields {
    fn detached(&self, text: &str) -> UserFields {
        UserFields {
            username: detach_option(&self.username, text),
            uid: detach_option(&self.uid, text),
            groups: detach_all(&self.groups, text),
        }
    }
}

/// The fields of an `objectRef` as read, in the order of [`ObjectReference`]'s accessors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ObjectFields {
    pub resource: Option<Text>,
    pub namespace: Option<Text>,
    pub name: Option<Text>,
    pub uid: Option<Text>,
    pub api_group: Option<Text>,
    pub api_version: Option<Text>,
    pub resource_version: Option<Text>,
    pub subresource: Option<Text>,
}

impl ObjectFields {
    fn detached(&self, text: &str) -> ObjectFields {
        ObjectFields {
            resource: detach_option(&self.resource, text),
            namespace: detach_option(&self.namespace, text),
            name: detach_option(&self.name, text),
            uid: detach_option(&self.uid, text),
            api_group: detach_option(&self.api_group, text),
            api_version: detach_option(&self.api_version, text),
            resource_version: detach_option(&self.resource_version, text),
            subresource: detach_option(&self.subresource, text),
        }
    }
}

/// The fields of a `responseStatus` as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct StatusFields {
    pub code: Option<i64>,
    pub status: Option<Text>,
    pub reason: Option<Text>,
    pub message: Option<Text>,
}

impl StatusFields {
    fn detached(&self, text: &str) -> StatusFields {
        StatusFields {
            code: self.code,
            status: detach_option(&self.status, text),
            reason: detach_option(&self.reason, text),
            message: detach_option(&self.message, text),
        }
    }
}

fn resolve<'a>(value: &'a Option<Text>, text: &'a str) -> Option<&'a str> {
    value.as_ref().map(|value| value.get(text))
}

/// The typed fields of an audit event: everything transforms and stores index on.
///
/// A view of an [`AuditEvent`](super::AuditEvent) (see
/// [`AuditEvent::header`](super::AuditEvent::header)); it is `Copy`, and the
/// strings it gives borrow from the event.
#[derive(Clone, Copy)]
pub struct AuditHeader<'a> {
    text: &'a str,
    fields: &'a HeaderFields,
}

impl<'a> AuditHeader<'a> {
    pub(super) fn new(text: &'a str, fields: &'a HeaderFields) -> AuditHeader<'a> {
        AuditHeader { text, fields }
    }

    /// `audit.k8s.io/v1` or `audit.k8s.io/v1beta1`; absent in some exports.
    pub fn api_version(&self) -> Option<&'a str> {
        resolve(&self.fields.api_version, self.text)
    }

    /// The unique id of the request; shared by the events of its stages.
    pub fn audit_id(&self) -> &'a str {
        self.fields.audit_id.get(self.text)
    }

    /// The stage at which this event was generated.
    pub fn stage(&self) -> &'a Stage {
        &self.fields.stage
    }

    /// The level the event was recorded at (absent in a few exports).
    pub fn level(&self) -> Option<Level> {
        self.fields.level
    }

    /// The request URI as sent by the client (empty if the event has none).
    pub fn request_uri(&self) -> &'a str {
        resolve(&self.fields.request_uri, self.text).unwrap_or_default()
    }

    /// The Kubernetes verb (`get`, `list`, `create`, ...) or the lower-cased HTTP method.
    pub fn verb(&self) -> &'a str {
        self.fields.verb.get(self.text)
    }

    /// The authenticated user (all fields empty if the event has none).
    pub fn user(&self) -> UserInfo<'a> {
        UserInfo {
            text: self.text,
            fields: &self.fields.user,
        }
    }

    /// The user impersonated by the authenticated one, if any.
    pub fn impersonated_user(&self) -> Option<UserInfo<'a>> {
        let text = self.text;
        let fields = self.fields.impersonated_user.as_ref()?;
        Some(UserInfo { text, fields })
    }

    /// Client addresses, the request's own first, then proxies.
    pub fn source_ips(&self) -> TextList<'a> {
        TextList::new(self.text, &self.fields.source_ips)
    }

    /// The client's User-Agent header.
    pub fn user_agent(&self) -> Option<&'a str> {
        resolve(&self.fields.user_agent, self.text)
    }

    /// The object of a resource request; absent for non-resource requests (`/healthz`).
    pub fn object_ref(&self) -> Option<ObjectReference<'a>> {
        let text = self.text;
        let fields = self.fields.object_ref.as_ref()?;
        Some(ObjectReference { text, fields })
    }

    /// The response status.
    pub fn response_status(&self) -> Option<ResponseStatus<'a>> {
        let text = self.text;
        let fields = self.fields.response_status.as_ref()?;
        Some(ResponseStatus { text, fields })
    }

    /// When the apiserver received the request (RFC 3339, microseconds).
    pub fn request_received_timestamp(&self) -> Option<&'a str> {
        resolve(&self.fields.request_received_timestamp, self.text)
    }

    /// When the apiserver reached this stage (RFC 3339, microseconds).
    pub fn stage_timestamp(&self) -> Option<&'a str> {
        resolve(&self.fields.stage_timestamp, self.text)
    }

    /// Annotations (among them `authorization.k8s.io/decision` and `.../reason`), in their order.
    pub fn annotations(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone + 'a {
        let text = self.text;
        self.fields
            .annotations
            .iter()
            .map(move |(key, value)| (key.get(text), value.get(text)))
    }

    /// The value of an annotation, if present.
    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.annotations()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    /// The time of the event: its stage timestamp, or when the request was received.
    pub fn timestamp(&self) -> Option<&'a str> {
        self.stage_timestamp()
            .or_else(|| self.request_received_timestamp())
    }

    /// The time of the event ([`AuditHeader::timestamp`]) parsed, if it is valid RFC 3339.
    pub fn event_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = self.timestamp()?;
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|time| time.with_timezone(&chrono::Utc))
    }

    /// The response code, if the event has one.
    pub fn response_code(&self) -> Option<i64> {
        self.response_status().and_then(|status| status.code())
    }
}

impl fmt::Debug for AuditHeader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditHeader")
            .field("api_version", &self.api_version())
            .field("audit_id", &self.audit_id())
            .field("stage", self.stage())
            .field("level", &self.level())
            .field("request_uri", &self.request_uri())
            .field("verb", &self.verb())
            .field("user", &self.user())
            .field("impersonated_user", &self.impersonated_user())
            .field("source_ips", &self.source_ips())
            .field("user_agent", &self.user_agent())
            .field("object_ref", &self.object_ref())
            .field("response_status", &self.response_status())
            .field(
                "request_received_timestamp",
                &self.request_received_timestamp(),
            )
            .field("stage_timestamp", &self.stage_timestamp())
            .field("annotations", &self.annotations().collect::<Vec<_>>())
            .finish()
    }
}

/// The authenticated (or impersonated) user of a request.
#[derive(Clone, Copy)]
pub struct UserInfo<'a> {
    text: &'a str,
    fields: &'a UserFields,
}

impl<'a> UserInfo<'a> {
    /// The user name (`system:serviceaccount:NS:NAME` for service accounts; empty if absent).
    pub fn username(&self) -> &'a str {
        resolve(&self.fields.username, self.text).unwrap_or_default()
    }

    /// The user's unique id, when the authenticator gives one.
    pub fn uid(&self) -> Option<&'a str> {
        resolve(&self.fields.uid, self.text)
    }

    /// The groups the user belongs to.
    pub fn groups(&self) -> TextList<'a> {
        TextList::new(self.text, &self.fields.groups)
    }
}

impl fmt::Debug for UserInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserInfo")
            .field("username", &self.username())
            .field("uid", &self.uid())
            .field("groups", &self.groups())
            .finish()
    }
}

/// The object a resource request is about.
#[derive(Clone, Copy)]
pub struct ObjectReference<'a> {
    text: &'a str,
    fields: &'a ObjectFields,
}

impl<'a> ObjectReference<'a> {
    /// The resource, plural and lower case (`pods`, `configmaps`).
    pub fn resource(&self) -> Option<&'a str> {
        resolve(&self.fields.resource, self.text)
    }

    /// The namespace; absent for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&'a str> {
        resolve(&self.fields.namespace, self.text)
    }

    /// The object's name; absent for list, watch and create requests without a name.
    pub fn name(&self) -> Option<&'a str> {
        resolve(&self.fields.name, self.text)
    }

    /// The object's uid.
    pub fn uid(&self) -> Option<&'a str> {
        resolve(&self.fields.uid, self.text)
    }

    /// The API group (`apps`, `rbac.authorization.k8s.io`); empty or absent for the core group.
    pub fn api_group(&self) -> Option<&'a str> {
        resolve(&self.fields.api_group, self.text)
    }

    /// The API version (`v1`).
    pub fn api_version(&self) -> Option<&'a str> {
        resolve(&self.fields.api_version, self.text)
    }

    /// The object's resource version.
    pub fn resource_version(&self) -> Option<&'a str> {
        resolve(&self.fields.resource_version, self.text)
    }

    /// The subresource (`exec`, `log`, `status`).
    pub fn subresource(&self) -> Option<&'a str> {
        resolve(&self.fields.subresource, self.text)
    }
}

impl fmt::Debug for ObjectReference<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectReference")
            .field("resource", &self.resource())
            .field("namespace", &self.namespace())
            .field("name", &self.name())
            .field("uid", &self.uid())
            .field("api_group", &self.api_group())
            .field("api_version", &self.api_version())
            .field("resource_version", &self.resource_version())
            .field("subresource", &self.subresource())
            .finish()
    }
}

/// The outcome of the request (a `metav1.Status`), present from ResponseStarted on.
#[derive(Clone, Copy)]
pub struct ResponseStatus<'a> {
    text: &'a str,
    fields: &'a StatusFields,
}

impl<'a> ResponseStatus<'a> {
    /// The HTTP status code of the response.
    pub fn code(&self) -> Option<i64> {
        self.fields.code
    }

    /// `Success` or `Failure`, when the apiserver sets it.
    pub fn status(&self) -> Option<&'a str> {
        resolve(&self.fields.status, self.text)
    }

    /// A machine-readable reason (`NotFound`, `Forbidden`).
    pub fn reason(&self) -> Option<&'a str> {
        resolve(&self.fields.reason, self.text)
    }

    /// A human-readable message.
    pub fn message(&self) -> Option<&'a str> {
        resolve(&self.fields.message, self.text)
    }
}

impl fmt::Debug for ResponseStatus<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseStatus")
            .field("code", &self.code())
            .field("status", &self.status())
            .field("reason", &self.reason())
            .field("message", &self.message())
            .finish()
    }
}

/// A list of strings of the header (`sourceIPs`, a user's `groups`), borrowed from the event.
#[derive(Clone, Copy)]
pub struct TextList<'a> {
    text: &'a str,
    items: &'a [Text],
}

impl<'a> TextList<'a> {
    fn new(text: &'a str, items: &'a [Text]) -> TextList<'a> {
        TextList { text, items }
    }

    /// How many strings the list holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The string at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&'a str> {
        self.items.get(index).map(|item| item.get(self.text))
    }

    /// The first string, if any.
    pub fn first(&self) -> Option<&'a str> {
        self.get(0)
    }

    /// Whether the list holds `value`.
    pub fn contains(&self, value: &str) -> bool {
        self.iter().any(|item| item == value)
    }

    /// The strings, in order.
    pub fn iter(&self) -> TextIter<'a> {
        TextIter {
            text: self.text,
            items: self.items.iter(),
        }
    }

    /// The strings joined with `separator` between them.
    pub fn join(&self, separator: &str) -> String {
        self.iter().collect::<Vec<_>>().join(separator)
    }

    /// The strings, copied.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl<'a> IntoIterator for TextList<'a> {
    type Item = &'a str;
    type IntoIter = TextIter<'a>;

    fn into_iter(self) -> TextIter<'a> {
        self.iter()
    }
}

/// The strings of a [`TextList`], in order.
#[derive(Clone)]
pub struct TextIter<'a> {
    text: &'a str,
    items: std::slice::Iter<'a, Text>,
}

impl<'a> Iterator for TextIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.text;
        self.items.next().map(|item| item.get(text))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

impl ExactSizeIterator for TextIter<'_> {}

impl fmt::Debug for TextList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for TextList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for TextList<'_> {
    fn eq(&self, other: &Vec<S>) -> bool {
        self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

/// Headers are equal when their fields read the same, wherever the strings are kept.
impl PartialEq for AuditHeader<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.api_version() == other.api_version()
            && self.audit_id() == other.audit_id()
            && self.stage() == other.stage()
            && self.level() == other.level()
            && self.request_uri() == other.request_uri()
            && self.verb() == other.verb()
            && self.user() == other.user()
            && self.impersonated_user() == other.impersonated_user()
            && self.source_ips() == other.source_ips()
            && self.user_agent() == other.user_agent()
            && self.object_ref() == other.object_ref()
            && self.response_status() == other.response_status()
            && self.request_received_timestamp() == other.request_received_timestamp()
            && self.stage_timestamp() == other.stage_timestamp()
            && self.annotations().eq(other.annotations())
    }
}

impl PartialEq for UserInfo<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.username() == other.username()
            && self.uid() == other.uid()
            && self.groups() == other.groups()
    }
}

impl PartialEq for ObjectReference<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.resource() == other.resource()
            && self.namespace() == other.namespace()
            && self.name() == other.name()
            && self.uid() == other.uid()
            && self.api_group() == other.api_group()
            && self.api_version() == other.api_version()
            && self.resource_version() == other.resource_version()
            && self.subresource() == other.subresource()
    }
}

impl PartialEq for ResponseStatus<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.code() == other.code()
            && self.status() == other.status()
            && self.reason() == other.reason()
            && self.message() == other.message()
    }
}

impl Eq for TextList<'_> {}
