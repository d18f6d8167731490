//! The `_bulk` request of a batch and the reading of its answer, item by item.
//!
//! Every document is sent as a `create` operation with its derived `_id`
//! (data streams take nothing else, and `create` is what makes a replay
//! harmless): the cluster stores it once and answers 409 for a copy, which
//! counts as delivered. The answer lists one result per operation, in order;
//! [`read_answer`] sorts each into an [`ItemOutcome`]:
//!
//! - 2xx, and 409 `version_conflict_engine_exception`: stored;
//! - 429 and 5xx (a full write queue, a shard not yet allocated, a node
//!   leaving), and 403 `cluster_block_exception` (a write block an operator
//!   lifts): retried alone, with backoff;
//! - anything else (400 `mapper_parsing_exception`, ...): refused for its
//!   content; the event goes to the sink's `errors` output with the reason.

use serde::Deserialize;

use super::document::Document;

/// How one operation of a bulk request came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Stored now, or stored before (a 409 for a `create` of an id that exists).
    Stored,
    /// Not stored this time, worth trying again: why.
    Retry(String),
    /// Refused for what it holds: why, in the cluster's words.
    Refused(String),
}

/// Appends a document's two lines (`create` action, source) to a bulk body.
pub fn write_operation(body: &mut Vec<u8>, document: &Document) {
    body.extend_from_slice(b"{\"create\":{\"_index\":");
    write_json_string(body, &document.index);
    body.extend_from_slice(b",\"_id\":");
    write_json_string(body, &document.id);
    body.extend_from_slice(b"}}\n");
    body.extend_from_slice(&document.source);
    body.push(b'\n');
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// The bytes of the action line's fixed text and the two newlines.
const OPERATION_OVERHEAD: usize = r#"{"create":{"_index":"","_id":""}}"#.len() + 2;

/// The bytes a document adds to a bulk body (names that need escaping add a few more).
pub fn operation_size(document: &Document) -> usize {
    document.source.len() + document.index.len() + document.id.len() + OPERATION_OVERHEAD
}

#[derive(Deserialize)]
struct BulkAnswer {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, ItemAnswer>>,
}

/// The answer read only as far as "did every item succeed, and how many are
/// there" (the common case, without building each item's result).
#[derive(Deserialize)]
struct BulkSummary {
    errors: bool,
    #[serde(default)]
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ItemAnswer {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    caused_by: Option<Box<ItemError>>,
}

impl ItemError {
    fn describe(&self) -> String {
        let mut text = match &self.reason {
            Some(reason) => format!("{}: {reason}", self.kind),
            None => self.kind.clone(),
        };
        if let Some(cause) = &self.caused_by {
            text.push_str(&format!(" (caused by {})", cause.describe()));
        }
        text
    }
}

/// The outcome of each of the `sent` operations, in order; an error when the
/// answer is not a bulk answer for them (the whole request is then retried).
pub fn read_answer(body: &[u8], sent: usize) -> Result<Vec<ItemOutcome>, String> {
    let unreadable = |error: serde_json::Error| format!("the bulk answer cannot be read: {error}");
    let summary: BulkSummary = serde_json::from_slice(body).map_err(unreadable)?;
    if !summary.errors && summary.items.len() == sent {
        return Ok(vec![ItemOutcome::Stored; sent]);
    }
    let answer: BulkAnswer = serde_json::from_slice(body).map_err(unreadable)?;
    if answer.items.len() != sent {
        return Err(format!(
            "the bulk answer lists {} results for {sent} operations",
            answer.items.len()
        ));
    }
    Ok(answer
        .items
        .into_iter()
        .map(|item| match item.into_values().next() {
            Some(result) => outcome(result),
            None => ItemOutcome::Retry("an empty result in the bulk answer".to_string()),
        })
        .collect())
}

fn outcome(result: ItemAnswer) -> ItemOutcome {
    let reason = || {
        result
            .error
            .as_ref()
            .map_or_else(|| format!("HTTP {}", result.status), ItemError::describe)
    };
    match result.status {
        200..=299 => ItemOutcome::Stored,
        409 if result
            .error
            .as_ref()
            .is_none_or(|error| error.kind == "version_conflict_engine_exception") =>
        {
            ItemOutcome::Stored
        }
        408 | 429 | 500..=599 => {
            ItemOutcome::Retry(format!("HTTP {}: {}", result.status, reason()))
        }
        // A write block on the index (`index.blocks.write`, read-only): an
        // operator lifts it; the events wait.
        403 if result
            .error
            .as_ref()
            .is_some_and(|error| error.kind == "cluster_block_exception") =>
        {
            ItemOutcome::Retry(format!("HTTP 403: {}", reason()))
        }
        status => ItemOutcome::Refused(format!("HTTP {status}: {}", reason())),
    }
}
