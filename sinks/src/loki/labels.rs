//! The labels and structured metadata of each entry, and the cardinality
//! guard that keeps high-cardinality values out of the labels.
//!
//! Loki indexes labels: each distinct set of label values is a stream, and
//! a label with many values (a user, an object name, an auditID) makes
//! millions of streams and takes the cluster down. So the sink puts the
//! fields people filter on and that have few values (`verb`, `stage`,
//! `resource`, the cluster) in labels, and the many-valued ones (`auditID`,
//! `user`, `namespace`, `name`, `code`) in structured metadata, which Loki
//! stores per entry and filters on without indexing.
//!
//! **The guard.** A label that shows more than `max_label_values` distinct
//! values is refused from then on (until the sink restarts): its value goes
//! to structured metadata instead, with one warning naming the label and the
//! `label_refused` metric; the events still go.

use std::collections::{BTreeMap, HashSet};

use auditflow_core::event::Event;
use auditflow_core::template::Template;

/// The fields whose values are too many for a label; `validate` warns when a
/// label template reads one.
pub const HIGH_CARDINALITY_FIELDS: [&str; 9] = [
    "user.username",
    "user.uid",
    "impersonatedUser.username",
    "objectRef.name",
    "objectRef.uid",
    "auditID",
    "sourceIPs",
    "requestURI",
    "userAgent",
];

/// The longest label value Loki takes by default (`max_label_value_length`);
/// a longer one goes to structured metadata for that entry.
pub const MAX_LABEL_VALUE: usize = 2048;

/// One entry's labels and metadata, rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// Label name to value, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// Structured metadata name to value, sorted by name.
    pub metadata: BTreeMap<String, String>,
    /// Label template fields the event did not have (their `default`, or
    /// `none`, was used).
    pub missing_fields: usize,
}

/// Renders labels and metadata, and guards the labels' cardinality.
#[derive(Debug)]
pub struct Labeller {
    labels: Vec<(String, Template)>,
    metadata: Vec<(String, Template)>,
    guard: CardinalityGuard,
}

/// The values each label has shown, and the labels refused.
#[derive(Debug)]
struct CardinalityGuard {
    max_values: usize,
    seen: BTreeMap<String, HashSet<String>>,
    refused: HashSet<String>,
}

impl Labeller {
    /// A labeller of these label and metadata templates.
    pub fn new(
        labels: Vec<(String, Template)>,
        metadata: Vec<(String, Template)>,
        max_values: usize,
    ) -> Labeller {
        Labeller {
            labels,
            metadata,
            guard: CardinalityGuard {
                max_values,
                seen: BTreeMap::new(),
                refused: HashSet::new(),
            },
        }
    }

    /// The labels and metadata of `event`; a label refused now is returned
    /// in `newly_refused` (to be warned about once).
    pub fn render(&mut self, event: &Event, newly_refused: &mut Vec<String>) -> Rendered {
        let mut rendered = Rendered::default();
        for (name, template) in &self.metadata {
            let (value, result) = template.render_to_string(event);
            // A field the event lacks is left out (its fallback text is not a value).
            if result.missing == 0 && !value.is_empty() {
                rendered.metadata.insert(name.clone(), value);
            }
        }
        for (name, template) in &self.labels {
            let (value, result) = template.render_to_string(event);
            rendered.missing_fields += result.missing;
            if value.len() <= MAX_LABEL_VALUE && self.guard.admits(name, &value, newly_refused) {
                rendered.labels.insert(name.clone(), value);
            } else {
                rendered.metadata.insert(name.clone(), value);
            }
        }
        rendered
    }
}

impl CardinalityGuard {
    /// Whether `value` may go in label `name`: the label is not refused, and
    /// the value is one it has shown or it has shown fewer than the limit.
    fn admits(&mut self, name: &str, value: &str, newly_refused: &mut Vec<String>) -> bool {
        if self.refused.contains(name) {
            return false;
        }
        let seen = self.seen.entry(name.to_string()).or_default();
        if seen.contains(value) {
            return true;
        }
        if seen.len() < self.max_values {
            seen.insert(value.to_string());
            return true;
        }
        self.seen.remove(name);
        self.refused.insert(name.to_string());
        newly_refused.push(name.to_string());
        false
    }
}

/// Whether a name is valid for a label or metadata: `[a-zA-Z][a-zA-Z0-9_]*`
/// (Loki's label names, without the leading `_` that Loki and VictoriaLogs
/// keep for their own fields: `__name__`, `_msg`, `_time`, `_stream`).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The fields of [`HIGH_CARDINALITY_FIELDS`] a template reads.
pub fn high_cardinality_fields(template: &Template) -> Vec<String> {
    template
        .fields()
        .into_iter()
        .filter(|field| HIGH_CARDINALITY_FIELDS.contains(&field.as_str()))
        .collect()
}
