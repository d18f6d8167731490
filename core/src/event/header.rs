//! The typed header of an audit event, kept as places in the event's own text.
//!
//! Decoding does not copy the header's strings out of the event: a string is
//! kept as its byte range in the event's text ([`Text`], two `u32`s). The few
//! strings that cannot be read from the text as they are (those written with
//! escapes such as `\"` or `\u00e9`, resolved while reading; strings copied
//! out of an event being edited) are kept in the header's own buffer, and the
//! header's lists (`sourceIPs`, `groups`, annotations) are ranges of one small
//! list of places held inline ([`TextPool`]). A decoded header is therefore a
//! few hundred bytes with no allocation of its own in the common case.
//! [`AuditHeader`] and the views it hands out ([`UserInfo`],
//! [`ObjectReference`], [`ResponseStatus`], [`TextList`]) pair these places
//! with the text and give plain `&str`s.

use std::fmt;
use std::num::NonZeroU32;

use smallvec::SmallVec;

use super::audit::{Level, Stage};

/// Set in [`Text`]'s end: the string is in the header's own buffer, not in the event's text.
const OWN: u32 = 1 << 31;

/// The largest offset a [`Text`] can name.
const MAX_OFFSET: usize = (OWN - 1) as usize;

/// One string of the header: a range of the event's text, or of the header's own buffer.
///
/// `end` holds the [`OWN`] flag; it is never zero (a string of an event's text
/// starts after the event's `{"`), which lets an `Option<Text>` take 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Text {
    start: u32,
    end: NonZeroU32,
}

impl Text {
    /// The string at `start..end` of the event's text, if those offsets can be kept.
    pub(super) fn in_text(start: usize, end: usize) -> Option<Text> {
        if end > MAX_OFFSET {
            return None;
        }
        Some(Text {
            start: u32::try_from(start).ok()?,
            end: NonZeroU32::new(u32::try_from(end).ok()?)?,
        })
    }

    /// The string at `start..end` of the header's own buffer.
    fn in_own(start: usize, end: usize) -> Option<Text> {
        if end > MAX_OFFSET {
            return None;
        }
        Some(Text {
            start: u32::try_from(start).ok()?,
            end: NonZeroU32::new(u32::try_from(end).ok()? | OWN)?,
        })
    }

    /// Whether the string is in the header's own buffer.
    fn is_own(self) -> bool {
        self.end.get() & OWN != 0
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.end.get() & !OWN) as usize
    }

    /// The same string `shift` bytes later in a new text (an own string stays as it is).
    pub(super) fn shifted(self, shift: isize) -> Option<Text> {
        if self.is_own() {
            return Some(self);
        }
        let range = self.range();
        Text::in_text(
            range.start.checked_add_signed(shift)?,
            range.end.checked_add_signed(shift)?,
        )
    }

    /// Where the string is in the event's text, if it is there.
    pub(super) fn text_range(self) -> Option<std::ops::Range<usize>> {
        (!self.is_own()).then(|| self.range())
    }
}

/// A list of the header (`sourceIPs`, `groups`; annotations as key, value pairs): a range of [`TextPool::lists`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct List {
    start: u32,
    len: u32,
}

impl List {
    /// The list of the places from `start` to the end of `lists`.
    pub(super) fn from(lists: &[Text], start: usize) -> Option<List> {
        Some(List {
            start: u32::try_from(start).ok()?,
            len: u32::try_from(lists.len().checked_sub(start)?).ok()?,
        })
    }

    fn of(self, lists: &[Text]) -> &[Text] {
        let start = self.start as usize;
        lists
            .get(start..start + self.len as usize)
            .unwrap_or_default()
    }
}

/// What a header keeps beside the event's text: the places of its lists, and its own strings.
#[derive(Debug, Clone, Default)]
pub(super) struct TextPool {
    /// The places of every list's items, one list after another.
    pub lists: SmallVec<[Text; 8]>,
    /// Strings that are not in the event's text as they are (resolved escapes, copies).
    pub own: String,
}

impl TextPool {
    /// Keeps `value` in the own buffer; `None` if it would grow past 2 GiB.
    pub(super) fn keep(&mut self, value: &str) -> Option<Text> {
        let start = self.own.len();
        self.own.push_str(value);
        Text::in_own(start, self.own.len())
    }

    /// Keeps what `write` appends to the own buffer.
    pub(super) fn keep_with<E>(
        &mut self,
        write: impl FnOnce(&mut String) -> Result<(), E>,
    ) -> Result<Option<Text>, E> {
        let start = self.own.len();
        write(&mut self.own)?;
        Ok(Text::in_own(start, self.own.len()))
    }
}

/// An event's text and its header's pool: what the places of a header are read against.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    text: &'a str,
    own: &'a str,
    lists: &'a [Text],
}

impl<'a> Source<'a> {
    /// The strings of `text` and `pool`.
    pub(super) fn new(text: &'a str, pool: &'a TextPool) -> Source<'a> {
        Source {
            text,
            own: &pool.own,
            lists: &pool.lists,
        }
    }

    /// The strings of `text` and an own buffer, without lists.
    pub(super) fn strings(text: &'a str, own: &'a str) -> Source<'a> {
        Source {
            text,
            own,
            lists: &[],
        }
    }

    /// The string at `place`.
    pub(super) fn get(self, place: Text) -> &'a str {
        let buffer = if place.is_own() { self.own } else { self.text };
        buffer.get(place.range()).unwrap_or_default()
    }

    fn optional(self, place: Option<Text>) -> Option<&'a str> {
        place.map(|place| self.get(place))
    }

    fn list(self, list: List) -> &'a [Text] {
        list.of(self.lists)
    }
}

/// The header's fields as read (see [`AuditHeader`] for what each one is).
#[derive(Debug, Clone)]
pub(super) struct HeaderFields {
    pub api_version: Option<Text>,
    pub audit_id: Text,
    pub stage: Stage,
    pub level: Option<Level>,
    pub request_uri: Option<Text>,
    pub verb: Text,
    pub user: UserFields,
    pub impersonated_user: Option<UserFields>,
    pub source_ips: List,
    pub user_agent: Option<Text>,
    pub object_ref: Option<ObjectFields>,
    pub response_status: Option<StatusFields>,
    pub request_received_timestamp: Option<Text>,
    pub stage_timestamp: Option<Text>,
    /// Key, value pairs.
    pub annotations: List,
    pub pool: TextPool,
}

impl HeaderFields {
    /// Replaces the place of every string with what `change` makes of it; stops at the first `None`.
    fn change_places(&mut self, change: &mut impl FnMut(Text) -> Option<Text>) -> Option<()> {
        let users = std::iter::once(&mut self.user).chain(self.impersonated_user.as_mut());
        let user_places = users.flat_map(|user| [&mut user.username, &mut user.uid]);
        let object_places = self
            .object_ref
            .iter_mut()
            .flat_map(ObjectFields::places_mut);
        let status_places = self
            .response_status
            .iter_mut()
            .flat_map(|status| [&mut status.status, &mut status.reason, &mut status.message]);
        let optional = [
            &mut self.api_version,
            &mut self.request_uri,
            &mut self.user_agent,
            &mut self.request_received_timestamp,
            &mut self.stage_timestamp,
        ]
        .into_iter()
        .chain(user_places)
        .chain(object_places)
        .chain(status_places)
        .flatten();
        let required = [&mut self.audit_id, &mut self.verb].into_iter();
        for place in optional.chain(required).chain(self.pool.lists.iter_mut()) {
            *place = change(*place)?;
        }
        Some(())
    }

    /// The same fields with every string copied into the header's own buffer,
    /// independent of `text` (for an edit, which writes a new text).
    pub(super) fn detached(&self, text: &str) -> HeaderFields {
        let mut detached = self.clone();
        let mut own = TextPool::default();
        let source = Source::new(text, &self.pool);
        let copied = detached.change_places(&mut |place| own.keep(source.get(place)));
        if copied.is_none() {
            // Past 2 GiB of strings: nothing of the header can be kept apart from its text.
            own.own.clear();
        }
        detached.pool.own = own.own;
        detached
    }

    /// The same fields for a text in which the strings of the old text moved:
    /// `moved` gives each string's new place, `None` for one that is gone.
    pub(super) fn moved(
        &self,
        old_text: &str,
        moved: impl Fn(std::ops::Range<usize>) -> Option<isize>,
    ) -> HeaderFields {
        let mut result = self.clone();
        let source = Source::new(old_text, &self.pool);
        let mut own = std::mem::take(&mut result.pool.own);
        let mut change = |place: Text| match place.text_range() {
            None => Some(place),
            Some(range) => match moved(range) {
                Some(shift) => place.shifted(shift),
                None => {
                    let start = own.len();
                    own.push_str(source.get(place));
                    Text::in_own(start, own.len())
                }
            },
        };
        if result.change_places(&mut change).is_none() {
            return self.detached(old_text);
        }
        result.pool.own = own;
        result
    }
}

/// The fields of a `user` or `impersonatedUser` object as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct UserFields {
    pub username: Option<Text>,
    pub uid: Option<Text>,
    pub groups: List,
}

/// The fields of an `objectRef` as read, in the order of [`ObjectReference`]'s accessors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    fn places_mut(&mut self) -> [&mut Option<Text>; 8] {
        [
            &mut self.resource,
            &mut self.namespace,
            &mut self.name,
            &mut self.uid,
            &mut self.api_group,
            &mut self.api_version,
            &mut self.resource_version,
            &mut self.subresource,
        ]
    }
}

/// The fields of a `responseStatus` as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct StatusFields {
    pub code: Option<i64>,
    pub status: Option<Text>,
    pub reason: Option<Text>,
    pub message: Option<Text>,
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

    fn source(&self) -> Source<'a> {
        Source::new(self.text, &self.fields.pool)
    }

    /// `audit.k8s.io/v1` or `audit.k8s.io/v1beta1`; absent in some exports.
    pub fn api_version(&self) -> Option<&'a str> {
        self.source().optional(self.fields.api_version)
    }

    /// The unique id of the request; shared by the events of its stages.
    pub fn audit_id(&self) -> &'a str {
        self.source().get(self.fields.audit_id)
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
        self.source()
            .optional(self.fields.request_uri)
            .unwrap_or_default()
    }

    /// The Kubernetes verb (`get`, `list`, `create`, ...) or the lower-cased HTTP method.
    pub fn verb(&self) -> &'a str {
        self.source().get(self.fields.verb)
    }

    /// The authenticated user (all fields empty if the event has none).
    pub fn user(&self) -> UserInfo<'a> {
        UserInfo {
            source: self.source(),
            fields: &self.fields.user,
        }
    }

    /// The user impersonated by the authenticated one, if any.
    pub fn impersonated_user(&self) -> Option<UserInfo<'a>> {
        let source = self.source();
        let fields = self.fields.impersonated_user.as_ref()?;
        Some(UserInfo { source, fields })
    }

    /// Client addresses, the request's own first, then proxies.
    pub fn source_ips(&self) -> TextList<'a> {
        TextList::new(self.source(), self.fields.source_ips)
    }

    /// The client's User-Agent header.
    pub fn user_agent(&self) -> Option<&'a str> {
        self.source().optional(self.fields.user_agent)
    }

    /// The object of a resource request; absent for non-resource requests (`/healthz`).
    pub fn object_ref(&self) -> Option<ObjectReference<'a>> {
        let source = self.source();
        let fields = self.fields.object_ref.as_ref()?;
        Some(ObjectReference { source, fields })
    }

    /// The response status.
    pub fn response_status(&self) -> Option<ResponseStatus<'a>> {
        let source = self.source();
        let fields = self.fields.response_status.as_ref()?;
        Some(ResponseStatus { source, fields })
    }

    /// When the apiserver received the request (RFC 3339, microseconds).
    pub fn request_received_timestamp(&self) -> Option<&'a str> {
        self.source()
            .optional(self.fields.request_received_timestamp)
    }

    /// When the apiserver reached this stage (RFC 3339, microseconds).
    pub fn stage_timestamp(&self) -> Option<&'a str> {
        self.source().optional(self.fields.stage_timestamp)
    }

    /// Annotations (among them `authorization.k8s.io/decision` and `.../reason`), in their order.
    pub fn annotations(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone + 'a {
        let source = self.source();
        source
            .list(self.fields.annotations)
            .chunks_exact(2)
            .map(move |pair| match pair {
                [key, value] => (source.get(*key), source.get(*value)),
                _ => ("", ""),
            })
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
    source: Source<'a>,
    fields: &'a UserFields,
}

impl<'a> UserInfo<'a> {
    /// The user name (`system:serviceaccount:NS:NAME` for service accounts; empty if absent).
    pub fn username(&self) -> &'a str {
        self.source
            .optional(self.fields.username)
            .unwrap_or_default()
    }

    /// The user's unique id, when the authenticator gives one.
    pub fn uid(&self) -> Option<&'a str> {
        self.source.optional(self.fields.uid)
    }

    /// The groups the user belongs to.
    pub fn groups(&self) -> TextList<'a> {
        TextList::new(self.source, self.fields.groups)
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
    source: Source<'a>,
    fields: &'a ObjectFields,
}

impl<'a> ObjectReference<'a> {
    /// The resource, plural and lower case (`pods`, `configmaps`).
    pub fn resource(&self) -> Option<&'a str> {
        self.source.optional(self.fields.resource)
    }

    /// The namespace; absent for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&'a str> {
        self.source.optional(self.fields.namespace)
    }

    /// The object's name; absent for list, watch and create requests without a name.
    pub fn name(&self) -> Option<&'a str> {
        self.source.optional(self.fields.name)
    }

    /// The object's uid.
    pub fn uid(&self) -> Option<&'a str> {
        self.source.optional(self.fields.uid)
    }

    /// The API group (`apps`, `rbac.authorization.k8s.io`); empty or absent for the core group.
    pub fn api_group(&self) -> Option<&'a str> {
        self.source.optional(self.fields.api_group)
    }

    /// The API version (`v1`).
    pub fn api_version(&self) -> Option<&'a str> {
        self.source.optional(self.fields.api_version)
    }

    /// The object's resource version.
    pub fn resource_version(&self) -> Option<&'a str> {
        self.source.optional(self.fields.resource_version)
    }

    /// The subresource (`exec`, `log`, `status`).
    pub fn subresource(&self) -> Option<&'a str> {
        self.source.optional(self.fields.subresource)
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
    source: Source<'a>,
    fields: &'a StatusFields,
}

impl<'a> ResponseStatus<'a> {
    /// The HTTP status code of the response.
    pub fn code(&self) -> Option<i64> {
        self.fields.code
    }

    /// `Success` or `Failure`, when the apiserver sets it.
    pub fn status(&self) -> Option<&'a str> {
        self.source.optional(self.fields.status)
    }

    /// A machine-readable reason (`NotFound`, `Forbidden`).
    pub fn reason(&self) -> Option<&'a str> {
        self.source.optional(self.fields.reason)
    }

    /// A human-readable message.
    pub fn message(&self) -> Option<&'a str> {
        self.source.optional(self.fields.message)
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
    source: Source<'a>,
    items: &'a [Text],
}

impl<'a> TextList<'a> {
    fn new(source: Source<'a>, list: List) -> TextList<'a> {
        TextList {
            source,
            items: source.list(list),
        }
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
        self.items.get(index).map(|item| self.source.get(*item))
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
            source: self.source,
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
    source: Source<'a>,
    items: std::slice::Iter<'a, Text>,
}

impl<'a> Iterator for TextIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let source = self.source;
        self.items.next().map(|item| source.get(*item))
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
