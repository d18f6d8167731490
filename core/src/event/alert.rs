//! The alert: what a detection raises, in Falco's JSON output form.
//!
//! falcosidekick and other Falco consumers read these fields as they are:
//! `time`, `rule`, `priority`, `output`, `output_fields`, `source`, `tags`,
//! `hostname`.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// Falco's priorities, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// The system is unusable.
    Emergency,
    /// Action must be taken immediately.
    Alert,
    /// Critical conditions.
    Critical,
    /// Error conditions.
    Error,
    /// Warning conditions.
    Warning,
    /// Normal but significant conditions.
    Notice,
    /// Informational messages.
    #[serde(rename = "Informational")]
    Informational,
    /// Debug-level messages.
    Debug,
}

impl Priority {
    /// Parses a priority as Falco rule files write it (case-insensitive; `INFO` and `informational` alike).
    pub fn parse(name: &str) -> Option<Priority> {
        let priority = match name.to_ascii_lowercase().as_str() {
            "emergency" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" => Priority::Critical,
            "error" => Priority::Error,
            "warning" => Priority::Warning,
            "notice" => Priority::Notice,
            "info" | "informational" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => return None,
        };
        Some(priority)
    }

    /// The name Falco prints in its JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

/// One alert raised by a detection rule on an audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// When the audit event happened (RFC 3339 with nanoseconds, UTC).
    pub time: String,
    /// The name of the rule that matched.
    pub rule: String,
    /// The rule's priority.
    pub priority: Priority,
    /// The rule's output with its fields filled in.
    pub output: String,
    /// The fields the output names, with their values (`null` where Falco prints `<NA>`).
    pub output_fields: IndexMap<String, serde_json::Value>,
    /// The event source: `k8s_audit`.
    pub source: String,
    /// The rule's tags.
    pub tags: Vec<String>,
    /// The host that raised the alert.
    pub hostname: String,
}

impl Alert {
    /// Appends the alert as one JSON object (Falco's JSON output form).
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, self)
    }

    /// A one-line text rendering: time, priority, rule and output.
    pub fn to_text(&self) -> String {
        format!(
            "{} {}: {} ({})",
            self.time,
            self.priority.as_str(),
            self.output,
            self.rule
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_parse_as_falco_writes_them() {
        assert_eq!(Priority::parse("WARNING"), Some(Priority::Warning));
        assert_eq!(Priority::parse("INFO"), Some(Priority::Informational));
        assert_eq!(Priority::parse("loud"), None);
    }

    #[test]
    fn alert_serializes_in_falco_form() {
        let alert = Alert {
            time: "2026-11-24T10:00:00.000000000Z".into(),
            rule: "Create Privileged Pod".into(),
            priority: Priority::Warning,
            output: "Pod started".into(),
            output_fields: IndexMap::new(),
            source: "k8s_audit".into(),
            tags: vec!["k8s".into()],
            hostname: "node-1".into(),
        };
        let mut out = Vec::new();
        alert.write_json(&mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["priority"], "Warning");
        assert_eq!(value["rule"], "Create Privileged Pod");
        assert_eq!(value["source"], "k8s_audit");
    }
}
