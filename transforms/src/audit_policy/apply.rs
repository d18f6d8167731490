//! Applying a decided level to an audit event.
//!
//! The level can only go down: an event logged at `Metadata` stays at
//! `Metadata` even when the policy says `RequestResponse`, since no body can be
//! made up. `None`, or a stage the rule omits, drops the event; `Metadata`
//! removes both bodies, `Request` the response body; `level` is set to the level
//! the event ends up at. With `omitManagedFields`, `metadata.managedFields` is
//! removed from the bodies kept (and from each item of a list body). An event
//! that needs none of this is passed on untouched, without being parsed; an
//! edited one keeps every other field byte for byte.

use std::ops::Range;
use std::sync::Arc;

use auditflow_core::event::{
    array_items, object_members_lazily, AuditEvent, BodyChange, EventError, Level,
};

use super::checker::Decision;

/// What applying a decision did to an event.
#[derive(Debug)]
pub enum Applied {
    /// The event is already as the decision wants it.
    Unchanged,
    /// The event's bodies were removed or stripped and its level set.
    Edited,
    /// The event is not logged.
    Dropped(DropReason),
}

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The policy's level for the request is `None` (or no rule matched).
    LevelNone,
    /// The matching rule (or the policy) omits the event's stage.
    OmittedStage,
}

impl DropReason {
    /// The `reason` label of the dropped-events metric.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::LevelNone => "level_none",
            DropReason::OmittedStage => "omitted_stage",
        }
    }
}

/// The level an event ends up at: the lower of the one it was logged at and the decided one.
pub fn effective_level(event: &AuditEvent, decided: Level) -> Level {
    event
        .header()
        .level()
        .map_or(decided, |logged| logged.min(decided))
}

/// Applies a decision to an event; an edit changes the event in place (a copy, if it is shared).
pub fn apply(shared: &mut Arc<AuditEvent>, decision: &Decision<'_>) -> Result<Applied, EventError> {
    let event: &AuditEvent = shared;
    if decision.level == Level::None {
        return Ok(Applied::Dropped(DropReason::LevelNone));
    }
    if decision.omits(event.header().stage()) {
        return Ok(Applied::Dropped(DropReason::OmittedStage));
    }
    let level = effective_level(event, decision.level);
    if level == Level::None {
        // Logged at None (some exports keep such events): nothing to keep.
        return Ok(Applied::Dropped(DropReason::LevelNone));
    }
    let keeps_request = level >= Level::Request;
    let keeps_response = level >= Level::RequestResponse;
    let stripped = |body: Option<&str>, kept: bool| {
        body.filter(|_| kept && decision.omit_managed_fields)
            .and_then(without_managed_fields)
    };
    let stripped_request = stripped(event.request_object(), keeps_request);
    let stripped_response = stripped(event.response_object(), keeps_response);
    let request = body_change(
        event.request_object(),
        keeps_request,
        stripped_request.as_deref(),
    );
    let response = body_change(
        event.response_object(),
        keeps_response,
        stripped_response.as_deref(),
    );
    let unchanged = |change: &BodyChange<'_>| matches!(change, BodyChange::Keep);
    if unchanged(&request) && unchanged(&response) && event.header().level() == Some(level) {
        return Ok(Applied::Unchanged);
    }
    Arc::make_mut(shared).rebuild(level, request, response)?;
    Ok(Applied::Edited)
}

/// What becomes of a body: removed when the level does not keep it, else the stripped one if any.
fn body_change<'a>(body: Option<&str>, kept: bool, stripped: Option<&'a str>) -> BodyChange<'a> {
    match (body, kept, stripped) {
        (None, _, _) => BodyChange::Keep,
        (Some(_), false, _) => BodyChange::Remove,
        (Some(_), true, Some(stripped)) => BodyChange::Stripped(stripped),
        (Some(_), true, None) => BodyChange::Keep,
    }
}

/// A body without `metadata.managedFields` (its own, and each list item's), if it had any.
///
/// Works on the raw JSON: the members are only located, and the body is written
/// back with those members cut out, every other byte as it was. Members are
/// walked only as far as needed: a body with no `"items"` key and one
/// `"metadata"` key anywhere in it is not a list and has one `metadata`, so
/// only the values before it are walked (the first two members of most
/// bodies), and within it those up to the member after `managedFields`. Any
/// other body (a list, a Deployment with its pod template's `metadata`, a
/// duplicated key) is walked whole, and every top-level `metadata` is cut.
fn without_managed_fields(body: &str) -> Option<String> {
    let bytes = body.as_bytes();
    memchr::memmem::find(bytes, MANAGED_FIELDS_KEY.as_bytes())?;
    let metadata_keys = memchr::memmem::find_iter(bytes, METADATA_KEY.as_bytes()).take(2);
    if metadata_keys.count() == 1 && memchr::memmem::find(bytes, ITEMS_KEY.as_bytes()).is_none() {
        let metadata = object_members_lazily(body)?.value_start_of("metadata")?;
        return cut_out(body, managed_fields_cut(body, metadata..body.len()));
    }
    let mut cuts = Vec::new();
    for member in object_members_lazily(body)? {
        if member.is(body, "metadata") {
            cuts.extend(managed_fields_cut(body, member.value.clone()));
        } else if member.is(body, "items") {
            let items = body.get(member.value.clone()).and_then(array_items);
            for item in items.into_iter().flatten() {
                let item = offset(item, member.value.start);
                if let Some(metadata) = metadata_of(body, item) {
                    cuts.extend(managed_fields_cut(body, metadata));
                }
            }
        }
    }
    cut_out(body, cuts)
}

/// `body` without the `cuts` (in order, apart); `None` when there are none.
fn cut_out(body: &str, cuts: impl IntoIterator<Item = Range<usize>>) -> Option<String> {
    let mut cuts = cuts.into_iter().peekable();
    cuts.peek()?;
    let mut text = String::with_capacity(body.len());
    let mut at = 0;
    for cut in cuts {
        text.push_str(body.get(at..cut.start)?);
        at = cut.end;
    }
    text.push_str(body.get(at..)?);
    Some(text)
}

const MANAGED_FIELDS_KEY: &str = "\"managedFields\"";
const ITEMS_KEY: &str = "\"items\"";
const METADATA_KEY: &str = "\"metadata\"";

/// The part of `body` to cut to remove `managedFields` from the object starting at
/// `metadata.start` (with a comma); `metadata` may run on past the object's end.
fn managed_fields_cut(body: &str, metadata: Range<usize>) -> Option<Range<usize>> {
    let text = body.get(metadata.clone())?;
    let mut members = object_members_lazily(text)?;
    let mut previous = None;
    let this = loop {
        let member = members.next()?;
        if member.is(text, "managedFields") {
            break member.whole();
        }
        previous = Some(member);
    };
    let cut = match (previous, members.next()) {
        (_, Some(next)) => this.start..next.whole().start,
        (Some(previous), None) => previous.value.end..this.end,
        (None, None) => this,
    };
    Some(offset(cut, metadata.start))
}

/// Where the `metadata` of the object at `object` in `body` is.
fn metadata_of(body: &str, object: Range<usize>) -> Option<Range<usize>> {
    let text = body.get(object.clone())?;
    let metadata = object_members_lazily(text)?.find(|member| member.is(text, "metadata"))?;
    Some(offset(metadata.value, object.start))
}

fn offset(range: Range<usize>, by: usize) -> Range<usize> {
    range.start + by..range.end + by
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_policy::checker::RequestAttributes;
    use crate::audit_policy::policy::Policy;

    const POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nomitManagedFields: true\nrules:\n- level: None\n  verbs: [watch]\n- level: RequestResponse\n  resources: [{resources: [pods/exec]}]\n  omitManagedFields: false\n- level: Request\n  verbs: [create]\n- level: Metadata\n";

    /// A create of a ConfigMap logged at RequestResponse, with an unknown field and a number
    /// written in a way a re-serialisation would change.
    fn event(verb: &str, stage: &str, level: &str, resource: &str) -> AuditEvent {
        AuditEvent::parse(&format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"{level}","auditID":"x","stage":"{stage}","requestURI":"/api/v1/namespaces/d/{resource}","verb":"{verb}","user":{{"username":"u"}},"objectRef":{{"resource":"{resource}","namespace":"d"}},"requestObject":{{"kind":"ConfigMap","metadata":{{"name":"c","managedFields":[{{"manager":"kubectl"}}]}},"data":{{"a":"1"}}}},"responseObject":{{"kind":"ConfigMap","metadata":{{"name":"c","managedFields":[{{"manager":"kubectl"}}]}}}},"futureField":{{"n":1.50}},"annotations":{{"x":"y"}}}}"#
        ))
        .unwrap()
    }

    /// What applying the policy did, and the event afterwards.
    fn applied_to(event: &AuditEvent) -> (Applied, AuditEvent) {
        let policy = Policy::parse(POLICY).unwrap();
        let decision = policy.decide(&RequestAttributes::of(event.header()));
        let mut shared = Arc::new(event.clone());
        let applied = apply(&mut shared, &decision).unwrap();
        (applied, (*shared).clone())
    }

    fn applied(event: &AuditEvent) -> Applied {
        let (applied, after) = applied_to(event);
        if !matches!(applied, Applied::Edited) {
            assert_eq!(&after, event, "only an edit changes the event");
        }
        applied
    }

    fn edited(event: &AuditEvent) -> AuditEvent {
        match applied_to(event) {
            (Applied::Edited, event) => event,
            (other, _) => panic!("expected an edit, got {other:?}"),
        }
    }

    #[test]
    fn none_and_omitted_stages_drop() {
        let watch = event("watch", "ResponseComplete", "RequestResponse", "configmaps");
        assert!(matches!(
            applied(&watch),
            Applied::Dropped(DropReason::LevelNone)
        ));
        let received = event("create", "RequestReceived", "RequestResponse", "configmaps");
        assert!(matches!(
            applied(&received),
            Applied::Dropped(DropReason::OmittedStage)
        ));
    }

    #[test]
    fn metadata_removes_both_bodies_and_keeps_the_rest_byte_for_byte() {
        let get = event("get", "ResponseComplete", "RequestResponse", "configmaps");
        let result = edited(&get);
        assert_eq!(
            result.as_json(),
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/d/configmaps","verb":"get","user":{"username":"u"},"objectRef":{"resource":"configmaps","namespace":"d"},"futureField":{"n":1.50},"annotations":{"x":"y"}}"#
        );
    }

    #[test]
    fn request_removes_the_response_and_managed_fields() {
        let create = event(
            "create",
            "ResponseComplete",
            "RequestResponse",
            "configmaps",
        );
        let result = edited(&create);
        assert_eq!(result.header().level(), Some(Level::Request));
        assert_eq!(result.response_object(), None);
        assert_eq!(
            result.request_object(),
            Some(r#"{"kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1"}}"#)
        );
        assert!(result
            .as_json()
            .ends_with(r#""futureField":{"n":1.50},"annotations":{"x":"y"}}"#));
    }

    #[test]
    fn the_rule_keeps_managed_fields_and_an_event_at_its_level_is_untouched() {
        let exec = event("create", "ResponseComplete", "RequestResponse", "pods/exec");
        let exec = AuditEvent::parse(&exec.as_json().replace(
            r#""resource":"pods/exec""#,
            r#""resource":"pods","subresource":"exec""#,
        ))
        .unwrap();
        assert!(matches!(applied(&exec), Applied::Unchanged));
    }

    #[test]
    fn the_level_only_goes_down() {
        let logged_at_metadata = AuditEvent::parse(
            r#"{"level":"Metadata","auditID":"x","stage":"ResponseComplete","verb":"create","user":{"username":"u"},"objectRef":{"resource":"pods","subresource":"exec"}}"#,
        )
        .unwrap();
        assert!(matches!(applied(&logged_at_metadata), Applied::Unchanged));
        let without_level = AuditEvent::parse(
            r#"{"auditID":"x","stage":"ResponseComplete","verb":"create","user":{"username":"u"},"objectRef":{"resource":"pods","subresource":"exec"}}"#,
        )
        .unwrap();
        assert_eq!(
            edited(&without_level).header().level(),
            Some(Level::RequestResponse)
        );
    }

    #[test]
    fn an_event_logged_at_none_stays_dropped() {
        let none = AuditEvent::parse(
            r#"{"level":"None","auditID":"x","stage":"ResponseComplete","verb":"get","user":{"username":"u"}}"#,
        )
        .unwrap();
        assert!(matches!(
            applied(&none),
            Applied::Dropped(DropReason::LevelNone)
        ));
    }

    #[test]
    fn managed_fields_go_from_each_item_of_a_list() {
        let list = AuditEvent::parse(
            r#"{"level":"RequestResponse","auditID":"x","stage":"ResponseComplete","verb":"create","user":{"username":"u"},"objectRef":{"resource":"configmaps"},"requestObject":{"kind":"ConfigMapList","metadata":{},"items":[{"metadata":{"name":"a","managedFields":[]}},{"metadata":{"name":"b","managedFields":[{}]}}]}}"#,
        )
        .unwrap();
        assert_eq!(
            edited(&list).request_object(),
            Some(
                r#"{"kind":"ConfigMapList","metadata":{},"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}"#
            )
        );
    }

    #[test]
    fn managed_fields_are_cut_wherever_they_are_in_metadata() {
        let cases = [
            (
                r#"{"metadata":{"managedFields":[{"a":"}"}],"name":"n"},"spec":{}}"#,
                Some(r#"{"metadata":{"name":"n"},"spec":{}}"#),
            ),
            (
                r#"{"metadata":{"name":"n", "managedFields" : [] },"x":"\"managedFields\""}"#,
                Some(r#"{"metadata":{"name":"n" },"x":"\"managedFields\""}"#),
            ),
            (
                r#"{"metadata":{"managedFields":null}}"#,
                Some(r#"{"metadata":{}}"#),
            ),
            (r#"{"spec":{"managedFields":[]}}"#, None),
            // A duplicated `metadata`: each is cut (a reader may take either).
            (
                r#"{"metadata":{"managedFields":[1]},"metadata":{"managedFields":[2]}}"#,
                Some(r#"{"metadata":{},"metadata":{}}"#),
            ),
            (
                r#"{"metadata":null,"metadata":{"name":"b","managedFields":[]}}"#,
                Some(r#"{"metadata":null,"metadata":{"name":"b"}}"#),
            ),
            // A pod template's `metadata` below the object's own: only the object's is cut.
            (
                r#"{"metadata":{"managedFields":[],"name":"d"},"spec":{"template":{"metadata":{"managedFields":[]}}}}"#,
                Some(
                    r#"{"metadata":{"name":"d"},"spec":{"template":{"metadata":{"managedFields":[]}}}}"#,
                ),
            ),
            // `metadata` after a body member, and an `"items"` key that is not the body's.
            (
                r#"{"spec":{"items":[{"managedFields":1}]},"metadata":{"managedFields":[],"name":"n"}}"#,
                Some(r#"{"spec":{"items":[{"managedFields":1}]},"metadata":{"name":"n"}}"#),
            ),
            (r#""managedFields""#, None),
        ];
        for (body, expected) in cases {
            let stripped = without_managed_fields(body);
            assert_eq!(stripped.as_deref(), expected, "{body}");
        }
    }
}
