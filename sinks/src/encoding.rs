//! How sinks that write lines encode events: `ndjson` or `text`.

use auditflow_core::event::Event;
use serde::Deserialize;

/// The line encoding of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One JSON object a line: audit events exactly as received, alerts in Falco's form.
    #[default]
    Ndjson,
    /// One human-readable line an event (time, user, verb, resource, object, code, stage).
    Text,
}

/// Appends a batch to `out`, one line an event. Returns how many events could not be encoded.
pub fn encode_batch(events: &[Event], encoding: Encoding, out: &mut Vec<u8>) -> usize {
    let mut failed = 0;
    for event in events {
        let start = out.len();
        let ok = match encoding {
            Encoding::Ndjson => event.write_json(out).is_ok(),
            Encoding::Text => {
                out.extend_from_slice(event.to_text().as_bytes());
                true
            }
        };
        if ok {
            out.push(b'\n');
        } else {
            out.truncate(start);
            failed += 1;
        }
    }
    failed
}
