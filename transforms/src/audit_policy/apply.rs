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

use auditflow_core::event::{AuditEvent, AuditEventEdit, EventError, Level};
use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::Value;

use super::checker::Decision;

/// What applying a decision does to an event.
#[derive(Debug)]
pub enum Applied {
    /// The event is already as the decision wants it.
    Unchanged,
    /// The event with bodies removed and its level set.
    Edited(Box<AuditEvent>),
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

const REQUEST_OBJECT: &str = "requestObject";
const RESPONSE_OBJECT: &str = "responseObject";

/// The level an event ends up at: the lower of the one it was logged at and the decided one.
pub fn effective_level(event: &AuditEvent, decided: Level) -> Level {
    event
        .header()
        .level()
        .map_or(decided, |logged| logged.min(decided))
}

/// Applies a decision to an event.
pub fn apply(event: &AuditEvent, decision: &Decision<'_>) -> Result<Applied, EventError> {
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
    let drop_request = level < Level::Request && event.request_object().is_some();
    let drop_response = level < Level::RequestResponse && event.response_object().is_some();
    let keeps_managed_fields = |body: Option<&str>, dropped: bool| {
        !dropped && body.is_some_and(|text| text.contains("\"managedFields\""))
    };
    let strip_request =
        decision.omit_managed_fields && keeps_managed_fields(event.request_object(), drop_request);
    let strip_response = decision.omit_managed_fields
        && keeps_managed_fields(event.response_object(), drop_response);
    let set_level = event.header().level() != Some(level);
    if !(drop_request || drop_response || strip_request || strip_response || set_level) {
        return Ok(Applied::Unchanged);
    }
    let mut edit = event.edit()?;
    if drop_request {
        edit.remove(REQUEST_OBJECT);
    }
    if drop_response {
        edit.remove(RESPONSE_OBJECT);
    }
    for (strip, body) in [
        (strip_request, REQUEST_OBJECT),
        (strip_response, RESPONSE_OBJECT),
    ] {
        if strip {
            remove_managed_fields(&mut edit, body)?;
        }
    }
    if set_level {
        edit.set("level", &Value::from(level.as_str()))?;
    }
    edit.finish().map(|event| Applied::Edited(Box::new(event)))
}

/// Removes `metadata.managedFields` from a body, or from each item of a list body.
///
/// Works on raw JSON: only the body's top level, its `metadata` and the items
/// of a list are parsed, so everything else is written back as it was.
fn remove_managed_fields(edit: &mut AuditEventEdit, body: &str) -> Result<bool, EventError> {
    let Some(mut object) = edit.get(body).and_then(raw_object) else {
        return Ok(false);
    };
    let mut changed = strip_managed_fields(&mut object)?;
    if let Some(items) = object.get("items") {
        if let Some(items) = strip_from_items(items)? {
            object.insert("items".to_string(), items);
            changed = true;
        }
    }
    if changed {
        edit.set_raw(body, to_raw(&object)?);
    }
    Ok(changed)
}

type RawObject = IndexMap<String, Box<RawValue>>;

/// The top-level fields of a JSON object, each as raw JSON; `None` for anything else.
fn raw_object(text: &str) -> Option<RawObject> {
    text.trim_start()
        .starts_with('{')
        .then(|| serde_json::from_str(text).ok())
        .flatten()
}

fn to_raw<T: serde::Serialize>(value: &T) -> Result<Box<RawValue>, EventError> {
    serde_json::value::to_raw_value(value).map_err(EventError::from_json)
}

/// Removes `managedFields` from an object's `metadata`; returns whether it was there.
fn strip_managed_fields(object: &mut RawObject) -> Result<bool, EventError> {
    let Some(metadata) = object.get("metadata") else {
        return Ok(false);
    };
    if !metadata.get().contains("\"managedFields\"") {
        return Ok(false);
    }
    let Some(mut metadata) = raw_object(metadata.get()) else {
        return Ok(false);
    };
    if metadata.shift_remove("managedFields").is_none() {
        return Ok(false);
    }
    object.insert("metadata".to_string(), to_raw(&metadata)?);
    Ok(true)
}

/// The items of a list with `managedFields` removed from each, if any had it.
fn strip_from_items(items: &RawValue) -> Result<Option<Box<RawValue>>, EventError> {
    if !items.get().contains("\"managedFields\"") {
        return Ok(None);
    }
    let Ok(mut items) = serde_json::from_str::<Vec<Box<RawValue>>>(items.get()) else {
        return Ok(None);
    };
    let mut changed = false;
    for item in items.iter_mut() {
        if let Some(mut object) = raw_object(item.get()) {
            if strip_managed_fields(&mut object)? {
                *item = to_raw(&object)?;
                changed = true;
            }
        }
    }
    Ok(if changed { Some(to_raw(&items)?) } else { None })
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

    fn applied(event: &AuditEvent) -> Applied {
        let policy = Policy::parse(POLICY).unwrap();
        let decision = policy.decide(&RequestAttributes::of(event.header()));
        apply(event, &decision).unwrap()
    }

    fn edited(event: &AuditEvent) -> AuditEvent {
        match applied(event) {
            Applied::Edited(event) => *event,
            other => panic!("expected an edit, got {other:?}"),
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
}
