//! Turning framed input into audit events, or into `errors` records.
//!
//! Shared by every source that reads JSON: one frame (a line or a document)
//! becomes zero or more events (an `EventList` holds many) and zero or more
//! [`InputFailure`]s, each naming what was wrong.

use std::sync::Arc;

use auditflow_core::component::InputFailure;
use auditflow_core::event::{decode_document, Event, EventError, Payload};

use crate::framing::Frame;

/// Decodes one frame, appending its events and failures.
pub fn decode_frame(
    frame: Frame,
    source_id: &Arc<str>,
    events: &mut Vec<Event>,
    failures: &mut Vec<InputFailure>,
) {
    match frame {
        Frame::Complete(bytes) => decode_bytes(bytes, source_id, events, failures),
        Frame::TooLong { prefix, length } => failures.push(InputFailure {
            error_type: "too_large",
            message: format!(
                "input of {length} bytes is longer than max_line_bytes; raise max_line_bytes if such events are expected"
            ),
            input: String::from_utf8_lossy(&prefix).into_owned(),
        }),
    }
}

/// Decodes the bytes of one line or document.
pub fn decode_bytes(
    bytes: Vec<u8>,
    source_id: &Arc<str>,
    events: &mut Vec<Event>,
    failures: &mut Vec<InputFailure>,
) {
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            failures.push(InputFailure {
                error_type: "invalid_utf8",
                message: format!(
                    "invalid UTF-8 at byte {}; audit events are UTF-8 JSON",
                    error.utf8_error().valid_up_to()
                ),
                input: String::from_utf8_lossy(error.as_bytes()).into_owned(),
            });
            return;
        }
    };
    if text.trim().is_empty() {
        return;
    }
    decode_text(&text, source_id, events, failures);
}

/// Decodes one JSON document held in a string.
pub fn decode_text(
    text: &str,
    source_id: &Arc<str>,
    events: &mut Vec<Event>,
    failures: &mut Vec<InputFailure>,
) {
    match decode_document(text) {
        Ok(items) => {
            for item in items {
                match item {
                    Ok(event) => events.push(Event::new(
                        Payload::Audit(Arc::new(event)),
                        source_id.clone(),
                    )),
                    Err(error) => failures.push(failure(&error, text)),
                }
            }
        }
        Err(error) => failures.push(failure(&error, text)),
    }
}

fn failure(error: &EventError, input: &str) -> InputFailure {
    InputFailure {
        error_type: error.kind(),
        message: error.to_string(),
        input: input.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_become_events_or_failures() {
        let id: Arc<str> = "in".into();
        let mut events = Vec::new();
        let mut failures = Vec::new();
        let good = br#"{"auditID":"a","stage":"ResponseComplete","verb":"get"}"#.to_vec();
        decode_frame(Frame::Complete(good), &id, &mut events, &mut failures);
        decode_frame(
            Frame::Complete(b"nope".to_vec()),
            &id,
            &mut events,
            &mut failures,
        );
        decode_frame(
            Frame::Complete(vec![b'{', 0xff, b'}']),
            &id,
            &mut events,
            &mut failures,
        );
        decode_frame(
            Frame::Complete(b"  ".to_vec()),
            &id,
            &mut events,
            &mut failures,
        );
        let too_long = Frame::TooLong {
            prefix: b"{".to_vec(),
            length: 10,
        };
        decode_frame(too_long, &id, &mut events, &mut failures);
        assert_eq!(events.len(), 1);
        let kinds: Vec<&str> = failures.iter().map(|f| f.error_type).collect();
        assert_eq!(kinds, vec!["invalid_json", "invalid_utf8", "too_large"]);
    }
}
