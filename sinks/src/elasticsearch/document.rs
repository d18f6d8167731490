//! What an event becomes in the cluster: its index, its document id and its
//! source.
//!
//! - **Index**: the `index` template rendered over the event (its own time,
//!   not the arrival time), or `alerts_index` for an alert; made a valid index
//!   name (lower case, none of `\ / * ? " < > | , # :` or spaces).
//! - **Id**: the `id` template when one is set; by default derived from the
//!   event, so that a replay or a retried batch stores nothing twice:
//!   `auditID-stage` for an audit event (the pair is unique per apiserver
//!   event), a hash of the alert for an alert, a hash of the text for anything
//!   else (and for an audit event without a usable auditID).
//! - **Source**: the event's JSON exactly as received, with `@timestamp` (the
//!   event's own time, which the index templates, data streams and lifecycle
//!   policies sort and age by) put first.
//!
//! OpenSearch's `flat_object` has no `ignore_above`: a body holding a string
//! longer than Lucene's term limit (a ConfigMap carrying a large file) would
//! be refused whole. For OpenSearch, such strings (in the bodies and the
//! annotations) are cut to [`MAX_INDEXED_STRING`] bytes in the indexed field
//! and the field as received is kept, unindexed, under [`ORIGINAL_FIELD`];
//! `auditflow query` puts it back.

use std::fmt::Write as _;

use auditflow_core::event::{Event, Payload};
use auditflow_core::template::{event_time, Template};
use chrono::SecondsFormat;
use indexmap::IndexMap;
use serde_json::value::RawValue;

use super::connection::Distribution;

/// The longest string (in bytes) a body's leaf is indexed with: Lucene refuses
/// terms over 32,766 bytes, and `flat_object` indexes `path=value` terms.
pub const MAX_INDEXED_STRING: usize = 8191;

/// The unindexed field that keeps a body whose long strings were cut for indexing.
pub const ORIGINAL_FIELD: &str = "auditflow_original";

/// The longest auditID used as is in a document id (longer ones are hashed).
const MAX_AUDIT_ID: usize = 200;

/// The longest document id the cluster accepts, in bytes (a longer rendered
/// `id` falls back to the derived id).
const MAX_ID: usize = 512;

/// The longest index name the cluster accepts, in bytes.
const MAX_INDEX_NAME: usize = 255;

/// The top-level fields of an audit event indexed as flat objects, whose long
/// strings are cut for OpenSearch.
const FLAT_FIELDS: [&str; 3] = ["requestObject", "responseObject", "annotations"];

/// One event made ready for the bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The index (or data stream) it goes to.
    pub index: String,
    /// Its `_id`.
    pub id: String,
    /// Its source: one JSON object.
    pub source: Vec<u8>,
}

/// Turns events into documents, as a sink's options say.
#[derive(Debug, Clone)]
pub struct DocumentBuilder {
    /// Where audit events (and `errors` records) go.
    pub index: Template,
    /// Where alerts go.
    pub alerts_index: Template,
    /// The document id, when not derived from the event.
    pub id: Option<Template>,
    /// The cluster's server (OpenSearch needs long body strings cut).
    pub distribution: Distribution,
}

/// What building a document noticed, for the sink's metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Notes {
    /// Template fields the event did not have.
    pub missing_fields: usize,
    /// Whether a body's long strings were cut for indexing.
    pub cut_bodies: bool,
}

impl DocumentBuilder {
    /// The document of `event`, or why the event cannot be one.
    pub fn build(&self, event: &Event) -> Result<(Document, Notes), String> {
        let mut notes = Notes::default();
        let template = match event.payload {
            Payload::Alert(_) => &self.alerts_index,
            _ => &self.index,
        };
        let (index, rendered) = template.render_to_string(event);
        notes.missing_fields += rendered.missing;
        let index = index_name(&index);
        let mut json = Vec::new();
        event
            .write_json(&mut json)
            .map_err(|error| format!("the event cannot be written as JSON: {error}"))?;
        let mut original = None;
        if self.distribution == Distribution::OpenSearch {
            if let Some((cut, bodies)) = cut_long_strings(event) {
                json = cut;
                original = Some(bodies);
                notes.cut_bodies = true;
            }
        }
        let id = match &self.id {
            Some(template) => {
                let (id, rendered) = template.render_to_string(event);
                notes.missing_fields += rendered.missing;
                if rendered.missing > 0 || id.is_empty() || id.len() > MAX_ID {
                    derived_id(event, &json)
                } else {
                    id
                }
            }
            None => derived_id(event, &json),
        };
        let source = with_timestamp(event, &json, original.as_deref());
        Ok((Document { index, id, source }, notes))
    }
}

/// A valid index name: lower case, the characters an index name cannot hold
/// replaced by `_`, no leading `-`, `_` or `+`, at most 255 bytes.
pub fn index_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| match c {
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':' => '_',
            c if c.is_whitespace() => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect::<String>()
        .to_lowercase();
    let trimmed = name.trim_start_matches(['-', '_', '+']).len();
    name.replace_range(..name.len() - trimmed, "");
    if name.is_empty() || name == "." || name == ".." {
        return "auditflow-unnamed".to_string();
    }
    auditflow_core::event::truncate_utf8(&name, MAX_INDEX_NAME).to_string()
}

/// A pattern of index names made valid as [`index_name`] makes names (lower
/// case, the characters a name cannot hold replaced by `_`), its `*` kept.
pub fn index_pattern(pattern: &str) -> String {
    pattern
        .split('*')
        .map(|part| {
            part.chars()
                .map(|c| match c {
                    '\\' | '/' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':' => '_',
                    c if c.is_whitespace() => '_',
                    c => c,
                })
                .collect::<String>()
                .to_lowercase()
        })
        .collect::<Vec<_>>()
        .join("*")
}

/// The id of an event that has no `id` template: `auditID-stage`, else a hash.
fn derived_id(event: &Event, json: &[u8]) -> String {
    match &event.payload {
        Payload::Audit(audit) => {
            let header = audit.header();
            let audit_id = header.audit_id();
            if !audit_id.is_empty() && audit_id.len() <= MAX_AUDIT_ID {
                return format!("{audit_id}-{}", header.stage().as_str());
            }
            format!("h-{:032x}", xxhash_rust::xxh3::xxh3_128(json))
        }
        Payload::Alert(_) => format!("alert-{:032x}", xxhash_rust::xxh3::xxh3_128(json)),
        Payload::Record(_) => format!("record-{:032x}", xxhash_rust::xxh3::xxh3_128(json)),
    }
}

/// The source: `{"@timestamp":"…",` then the event's fields, then the
/// original bodies if they were cut.
fn with_timestamp(event: &Event, json: &[u8], original: Option<&str>) -> Vec<u8> {
    let mut timestamp = String::with_capacity(48);
    let _ = write!(
        timestamp,
        "{{\"@timestamp\":\"{}\"",
        event_time(event).to_rfc3339_opts(SecondsFormat::Micros, true)
    );
    let mut source = Vec::with_capacity(json.len() + timestamp.len() + 1);
    source.extend_from_slice(timestamp.as_bytes());
    let rest = json.strip_prefix(b"{").unwrap_or(json);
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    match original {
        Some(bodies) => {
            if !empty {
                source.push(b',');
                source.extend_from_slice(rest.strip_suffix(b"}").unwrap_or(rest));
            }
            source.extend_from_slice(format!(",\"{ORIGINAL_FIELD}\":{bodies}}}").as_bytes());
        }
        None => {
            if !empty {
                source.push(b',');
            }
            source.extend_from_slice(if empty { b"}" } else { rest });
        }
    }
    source
}

/// For an audit event whose bodies (or annotations) hold a string longer
/// than [`MAX_INDEXED_STRING`]: the event's JSON with those strings cut, and
/// an object of those fields as received (their text byte for byte). `None`
/// when nothing needs cutting: one pass over the text
/// ([`has_long_string`]) rules that out for most events without parsing
/// them, and an event that cannot be edited (nested deeper than the parser
/// goes) is sent as it is (the cluster refuses it with its reason if it must).
fn cut_long_strings(event: &Event) -> Option<(Vec<u8>, String)> {
    let Payload::Audit(audit) = &event.payload else {
        return None;
    };
    if !has_long_string(audit.as_json().as_bytes(), MAX_INDEXED_STRING) {
        return None;
    }
    let mut edit = audit.edit().ok()?;
    let mut originals = String::from("{");
    for field in FLAT_FIELDS {
        let Some(raw) = edit.get(field).map(str::to_string) else {
            continue;
        };
        if edit.update(field, cut_strings).ok()? {
            if originals.len() > 1 {
                originals.push(',');
            }
            let _ = write!(originals, "\"{field}\":{raw}");
        }
    }
    if originals.len() == 1 {
        return None;
    }
    originals.push('}');
    let cut = edit.finish().ok()?;
    Some((cut.as_json().as_bytes().to_vec(), originals))
}

/// Whether `text` (JSON) may hold a string longer than `limit` bytes: two
/// unescaped quotes further apart than that. Never says no for a text that
/// has one (a string's raw text is at least as long as the string).
pub fn has_long_string(text: &[u8], limit: usize) -> bool {
    let mut opened: Option<usize> = None;
    for at in memchr::memchr_iter(b'"', text) {
        let backslashes = text
            .get(..at)
            .unwrap_or_default()
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 1 {
            continue;
        }
        match opened.take() {
            Some(start) if at - start > limit => return true,
            Some(_) => {}
            None => opened = Some(at + 1),
        }
    }
    false
}

/// Cuts every string (and key) longer than [`MAX_INDEXED_STRING`] bytes; whether any was.
fn cut_strings(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) if text.len() > MAX_INDEXED_STRING => {
            let keep = auditflow_core::event::truncate_utf8(text, MAX_INDEXED_STRING).len();
            text.truncate(keep);
            true
        }
        serde_json::Value::Array(items) => {
            let mut cut = false;
            for item in items {
                cut |= cut_strings(item);
            }
            cut
        }
        serde_json::Value::Object(fields) => {
            let long_keys: Vec<String> = fields
                .keys()
                .filter(|key| key.len() > MAX_INDEXED_STRING)
                .cloned()
                .collect();
            let mut cut = !long_keys.is_empty();
            for key in long_keys {
                if let Some(item) = fields.remove(&key) {
                    let short = auditflow_core::event::truncate_utf8(&key, MAX_INDEXED_STRING);
                    fields.insert(short.to_string(), item);
                }
            }
            for item in fields.values_mut() {
                cut |= cut_strings(item);
            }
            cut
        }
        _ => false,
    }
}

/// The source of a stored document as the event it was, its fields in their
/// order: `@timestamp` dropped and the bodies kept under [`ORIGINAL_FIELD`]
/// put back.
pub fn restore_source(source: &str) -> Result<String, serde_json::Error> {
    let mut fields: IndexMap<String, Box<RawValue>> = serde_json::from_str(source)?;
    fields.shift_remove("@timestamp");
    if let Some(originals) = fields.shift_remove(ORIGINAL_FIELD) {
        let originals: IndexMap<String, Box<RawValue>> = serde_json::from_str(originals.get())?;
        for (body, value) in originals {
            if let Some(slot) = fields.get_mut(&body) {
                *slot = value;
            } else {
                fields.insert(body, value);
            }
        }
    }
    serde_json::to_string(&fields)
}
