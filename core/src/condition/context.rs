//! The per-event evaluation context: the event, and its JSON parsed on demand.
//!
//! Header fields read the typed [`AuditHeader`](crate::event::AuditHeader)
//! directly. Only `jevt.*` fields need the event as a JSON tree; the context
//! parses it the first time one asks and keeps it for the rest of the
//! evaluation, so an event is parsed at most once however many `jevt` fields
//! (or conditions, with [`Condition::matches_in`](super::Condition::matches_in)) read it.
//! Fields inside the request or response body (`ka.req.*`, `ka.resp.*`,
//! `jevt.value[/requestObject/...]`) parse only that body, also once.

use std::cell::OnceCell;

use serde_json::Value;

use super::json::JsonRef;
use crate::event::{AuditEvent, Event, Payload};

/// One event being evaluated, with its JSON parsed lazily.
#[derive(Debug)]
pub struct EvalContext<'e> {
    event: &'e Event,
    json: OnceCell<Option<Value>>,
    request_object: OnceCell<Option<Value>>,
    response_object: OnceCell<Option<Value>>,
}

impl<'e> EvalContext<'e> {
    /// A context for `event`; nothing is parsed yet.
    pub fn new(event: &'e Event) -> EvalContext<'e> {
        EvalContext {
            event,
            json: OnceCell::new(),
            request_object: OnceCell::new(),
            response_object: OnceCell::new(),
        }
    }

    /// The event.
    pub fn event(&self) -> &'e Event {
        self.event
    }

    /// The audit event, if that is the payload.
    pub fn audit(&self) -> Option<&'e AuditEvent> {
        self.event.as_audit()
    }

    /// The whole event as JSON: parsed on first use (audit events, alerts), or
    /// the record's own map. `None` if the event text does not parse.
    pub fn json(&self) -> Option<JsonRef<'_>> {
        match &self.event.payload {
            Payload::Record(record) => Some(JsonRef::Object(record)),
            Payload::Audit(audit) => self
                .json
                .get_or_init(|| audit.to_value().ok())
                .as_ref()
                .map(JsonRef::Value),
            Payload::Alert(alert) => self
                .json
                .get_or_init(|| serde_json::to_value(alert.as_ref()).ok())
                .as_ref()
                .map(JsonRef::Value),
        }
    }

    /// The audit event's `requestObject`, parsed on first use (the rest of the event is not parsed).
    pub fn request_object(&self) -> Option<&Value> {
        self.request_object
            .get_or_init(|| parse_body(self.audit()?.request_object()?))
            .as_ref()
    }

    /// The audit event's `responseObject`, parsed on first use.
    pub fn response_object(&self) -> Option<&Value> {
        self.response_object
            .get_or_init(|| parse_body(self.audit()?.response_object()?))
            .as_ref()
    }

    /// Whether the event's JSON has been parsed in this context (records never need parsing).
    pub fn json_is_parsed(&self) -> bool {
        self.json.get().is_some()
    }
}

/// A body as JSON; `None` when it does not parse (it was checked when the event was decoded).
fn parse_body(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}
