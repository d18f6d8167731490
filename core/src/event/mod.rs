//! The events that flow through a pipeline.
//!
//! An [`Event`] is a payload plus pipeline metadata. The payload is one of:
//! - an [`AuditEvent`]: a Kubernetes audit event, typed header plus raw text;
//! - an [`Alert`]: what a detection raised, in Falco's JSON output form;
//! - a [`Record`]: any other JSON object, such as the `errors` records
//!   (`{"component_id", "error", "input"}`) that components emit for input
//!   they could not process.
//!
//! Payloads are reference-counted, so fanning a batch out to several sinks
//! copies pointers, not events; a transform that changes an event copies it on
//! write. The metadata carries the acknowledgement [`Finalizer`]: every copy of
//! an event holds it, and the source's batch is acknowledged once the last copy
//! has been delivered or dropped.

mod alert;
mod audit;
mod header;
mod json;
mod scan;

use std::sync::Arc;
use std::time::Instant;

pub use alert::{Alert, Priority};
pub use audit::{
    array_items, object_members, object_members_lazily, BodyChange, JsonMember, Members,
};
pub use audit::{
    decode_document, decode_document_each, decode_document_owned, AuditEvent, AuditEventEdit,
    DecodedDocument, ItemError, Level, Stage,
};
pub use header::{AuditHeader, ObjectReference, ResponseStatus, TextIter, TextList, UserInfo};
pub use json::{compact_json, truncate_utf8};

use crate::ack::Finalizer;

/// Why an input could not be turned into an audit event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The text is not valid JSON (or a field has the wrong type).
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The document is valid JSON but not an object.
    #[error("not an audit event: the document is {0}, expected a JSON object (an audit.k8s.io Event or EventList)")]
    NotAnObject(&'static str),
    /// The document is an object but not an audit event.
    #[error("not an audit event: {0}")]
    NotAudit(String),
}

impl EventError {
    /// Wraps a serde_json error, naming the field for type errors.
    pub fn from_json(error: serde_json::Error) -> EventError {
        EventError::Json(error.to_string())
    }

    /// The `error_type` label this error is counted under in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            EventError::Json(_) => "invalid_json",
            EventError::NotAnObject(_) | EventError::NotAudit(_) => "not_audit_event",
        }
    }
}

/// A JSON object that is neither an audit event nor an alert (an `errors` record, for one).
pub type Record = serde_json::Map<String, serde_json::Value>;

/// What an event carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A Kubernetes audit event.
    Audit(Arc<AuditEvent>),
    /// An alert raised by a detection.
    Alert(Arc<Alert>),
    /// Any other JSON object.
    Record(Arc<Record>),
}

/// The broker message an event came in (the `kafka` source): where it was
/// read, and the message's key and headers. Every event of one message shares
/// it; conditions read it as `kafka.topic`, `kafka.partition`, `kafka.offset`,
/// `kafka.key` and `kafka.header[NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOrigin {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The message's offset in its partition.
    pub offset: i64,
    /// The message key, as text (invalid UTF-8 replaced), if it has one.
    pub key: Option<String>,
    /// The message headers, in order, their values as text (invalid UTF-8 replaced).
    pub headers: Vec<(String, String)>,
}

impl MessageOrigin {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Pipeline metadata of an event.
#[derive(Debug, Clone)]
pub struct EventMetadata {
    /// The id of the source that produced the event.
    pub source_id: Arc<str>,
    /// When the source received the event (end-to-end latency is measured from here).
    pub received_at: Instant,
    /// The acknowledgement handle of the source batch the event came in, if the source asked for one.
    pub finalizer: Option<Finalizer>,
    /// The broker message the event came in, for sources that read messages.
    pub origin: Option<Arc<MessageOrigin>>,
}

/// An event in the pipeline: payload and metadata.
#[derive(Debug, Clone)]
pub struct Event {
    /// What the event carries.
    pub payload: Payload,
    /// Where it came from, when, and its acknowledgement handle.
    pub meta: EventMetadata,
}

impl Event {
    /// A new event from a source, received now.
    pub fn new(payload: Payload, source_id: Arc<str>) -> Event {
        Event {
            payload,
            meta: EventMetadata {
                source_id,
                received_at: Instant::now(),
                finalizer: None,
                origin: None,
            },
        }
    }

    /// Attaches the acknowledgement handle of the batch the event belongs to.
    pub fn with_finalizer(mut self, finalizer: Finalizer) -> Event {
        self.meta.finalizer = Some(finalizer);
        self
    }

    /// The audit event, if that is the payload.
    pub fn as_audit(&self) -> Option<&AuditEvent> {
        match &self.payload {
            Payload::Audit(event) => Some(event),
            _ => None,
        }
    }

    /// Appends the payload as one line of JSON (no newline).
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match &self.payload {
            Payload::Audit(event) => {
                out.extend_from_slice(event.as_json().as_bytes());
                Ok(())
            }
            Payload::Alert(alert) => alert.write_json(out),
            Payload::Record(record) => serde_json::to_writer(out, record.as_ref()),
        }
    }

    /// A one-line human-readable rendering of the payload.
    pub fn to_text(&self) -> String {
        match &self.payload {
            Payload::Audit(event) => audit_text(event.header()),
            Payload::Alert(alert) => alert.to_text(),
            Payload::Record(record) => {
                serde_json::Value::Object(record.as_ref().clone()).to_string()
            }
        }
    }

    /// The size of the payload's JSON text, as counted in byte metrics.
    pub fn json_size(&self) -> usize {
        match &self.payload {
            Payload::Audit(event) => event.as_json().len(),
            _ => {
                let mut out = Vec::new();
                let _ = self.write_json(&mut out);
                out.len()
            }
        }
    }
}

fn audit_text(header: AuditHeader<'_>) -> String {
    let object = header.object_ref();
    let resource = object
        .and_then(|o| o.resource())
        .map(|resource| match object.and_then(|o| o.subresource()) {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        })
        .unwrap_or_else(|| header.request_uri().to_string());
    let target = match (
        object.and_then(|o| o.namespace()),
        object.and_then(|o| o.name()),
    ) {
        (Some(ns), Some(name)) => format!(" {ns}/{name}"),
        (Some(ns), None) => format!(" {ns}/"),
        (None, Some(name)) => format!(" {name}"),
        (None, None) => String::new(),
    };
    let code = header
        .response_code()
        .map(|code| code.to_string())
        .unwrap_or_else(|| "-".to_string());
    format!(
        "{} {} {} {}{} {} {}",
        header.timestamp().unwrap_or("-"),
        header.user().username(),
        header.verb(),
        resource,
        target,
        code,
        header.stage().as_str()
    )
}

/// Builds an `errors` record: `{"component_id", "error", "input"}`, the input cut to 64 KiB.
pub fn error_record(component_id: &str, error: &str, input: &str) -> Record {
    const MAX_INPUT_BYTES: usize = 64 * 1024;
    let mut record = Record::new();
    record.insert("component_id".into(), component_id.into());
    record.insert("error".into(), error.into());
    record.insert("input".into(), truncate_utf8(input, MAX_INPUT_BYTES).into());
    record
}

#[cfg(test)]
mod tests;
