//! The `timeshift` transform: moves recorded audit events to another day, for demos and replays.
//!
//! Every timestamp of an event is moved by the same whole number of days, so
//! that the day the events were recorded on becomes the target day while the
//! time of day stays as it was (a 02:47 exec is still at night, a maintenance
//! window still falls in its hours):
//!
//! ```toml
//! [transforms.as_yesterday]
//! type = "timeshift"
//! inputs = ["sample"]
//! recorded_on = "2026-11-24"   # the UTC day the events were recorded
//! shift_to = "yesterday"       # "yesterday", "today" or a day such as "2027-01-15"
//! ```
//!
//! The shift is computed once, when the pipeline starts (`yesterday` is the
//! UTC day before the start). Moved: `requestReceivedTimestamp`,
//! `stageTimestamp`, and in `requestObject` and `responseObject` the
//! `metadata.creationTimestamp`, `metadata.deletionTimestamp` and
//! `metadata.managedFields[].time`. Only the date part of each timestamp is
//! rewritten; the rest of the text is kept as it was. Events of other days move
//! by the same number of days. Each event is parsed and written again, so this
//! is meant for sample data and replays, not for production traffic. Alerts and
//! records pass unchanged.

use std::sync::{Arc, OnceLock};

use auditflow_core::component::{Transform, TransformConfig, TransformContext, TransformOutput};
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::{AuditEvent, Event, EventError, Payload};
use chrono::{Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;

/// Options of the `timeshift` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeshiftOptions {
    recorded_on: String,
    #[serde(default = "default_target")]
    shift_to: String,
}

fn default_target() -> String {
    "yesterday".to_string()
}

/// Where the events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Yesterday,
    Today,
    Day(NaiveDate),
}

/// A checked `timeshift` configuration.
pub struct TimeshiftConfig {
    recorded_on: NaiveDate,
    target: Target,
    /// The shift in days, decided by the first instance built (when the
    /// pipeline starts), so that every instance of an inlined transform moves
    /// events by the same days, whenever it was built.
    decided_days: OnceLock<i64>,
}

fn parse_day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Checks the options table of a `timeshift` transform.
pub fn parse(options: &toml::Table) -> Result<Box<dyn TransformConfig>, Vec<OptionError>> {
    let options: TimeshiftOptions = parse_options(options)?;
    let mut errors = Vec::new();
    let recorded_on = parse_day(&options.recorded_on);
    if recorded_on.is_none() {
        errors.push(OptionError::new(
            "recorded_on",
            format!(
                "`{}` is not a day: write it as YYYY-MM-DD",
                options.recorded_on
            ),
        ));
    }
    let target = match options.shift_to.as_str() {
        "yesterday" => Some(Target::Yesterday),
        "today" => Some(Target::Today),
        day => parse_day(day).map(Target::Day),
    };
    if target.is_none() {
        errors.push(OptionError::new(
            "shift_to",
            format!(
                "`{}` is not a target day: write yesterday, today or YYYY-MM-DD",
                options.shift_to
            ),
        ));
    }
    match (recorded_on, target) {
        (Some(recorded_on), Some(target)) if errors.is_empty() => Ok(Box::new(TimeshiftConfig {
            recorded_on,
            target,
            decided_days: OnceLock::new(),
        })),
        _ => Err(errors),
    }
}

impl TimeshiftConfig {
    /// The whole number of days events move by, for a pipeline starting on `today`.
    fn shift_days(&self, today: NaiveDate) -> i64 {
        let target = match self.target {
            Target::Yesterday => today - Duration::days(1),
            Target::Today => today,
            Target::Day(day) => day,
        };
        (target - self.recorded_on).num_days()
    }
}

impl TransformConfig for TimeshiftConfig {
    fn runs_inline(&self) -> bool {
        true
    }

    fn build(&self, context: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        let days = *self.decided_days.get_or_init(|| {
            let days = self.shift_days(Utc::now().date_naive());
            tracing::info!(component_id = %context.id, "moving events by {days} days ({} becomes {})", self.recorded_on, self.recorded_on + Duration::days(days));
            days
        });
        Ok(Box::new(Timeshift {
            shift: Duration::days(days),
        }))
    }
}

/// The running transform.
struct Timeshift {
    shift: Duration,
}

/// The top-level timestamp fields of an audit event.
const EVENT_TIMESTAMPS: [&str; 2] = ["requestReceivedTimestamp", "stageTimestamp"];

/// The bodies whose object metadata holds timestamps.
const BODIES: [&str; 2] = ["requestObject", "responseObject"];

impl Transform for Timeshift {
    fn transform(&mut self, batch: Vec<Event>, output: &mut TransformOutput) {
        for event in batch {
            let Payload::Audit(audit) = &event.payload else {
                output.push(event);
                continue;
            };
            if self.shift.is_zero() {
                output.push(event);
                continue;
            }
            match shift_event(audit, self.shift) {
                Ok(shifted) => {
                    let mut event = event;
                    event.payload = Payload::Audit(Arc::new(shifted));
                    output.push(event);
                }
                Err(error) => output.push_error(
                    &event,
                    &format!("cannot move the event's timestamps: {error}"),
                ),
            }
        }
    }
}

fn shift_event(audit: &AuditEvent, shift: Duration) -> Result<AuditEvent, EventError> {
    let mut edit = audit.edit()?;
    for field in EVENT_TIMESTAMPS {
        if let Some(shifted) = edit
            .get(field)
            .and_then(|raw| shift_raw_timestamp(raw, shift))
        {
            edit.set(field, &Value::String(shifted))?;
        }
    }
    for body in BODIES {
        let Some(raw) = edit.get(body) else { continue };
        if !raw.contains("Timestamp\"") && !raw.contains("\"managedFields\"") {
            continue;
        }
        let mut value: Value = serde_json::from_str(raw).map_err(EventError::from_json)?;
        if shift_metadata(&mut value, shift) {
            edit.set(body, &value)?;
        }
    }
    edit.finish()
}

/// Moves the timestamps of an object's metadata; returns whether any moved.
fn shift_metadata(object: &mut Value, shift: Duration) -> bool {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    let mut moved = false;
    for field in ["creationTimestamp", "deletionTimestamp"] {
        if let Some(slot) = metadata.get_mut(field) {
            moved |= shift_value(slot, shift);
        }
    }
    if let Some(entries) = metadata
        .get_mut("managedFields")
        .and_then(Value::as_array_mut)
    {
        for entry in entries {
            if let Some(slot) = entry.get_mut("time") {
                moved |= shift_value(slot, shift);
            }
        }
    }
    moved
}

fn shift_value(slot: &mut Value, shift: Duration) -> bool {
    match slot.as_str().and_then(|text| shift_timestamp(text, shift)) {
        Some(shifted) => {
            *slot = Value::String(shifted);
            true
        }
        None => false,
    }
}

/// Shifts a raw JSON string value holding a timestamp.
fn shift_raw_timestamp(raw: &str, shift: Duration) -> Option<String> {
    let text: String = serde_json::from_str(raw).ok()?;
    shift_timestamp(&text, shift)
}

/// Moves the `YYYY-MM-DD` date that starts an RFC 3339 timestamp; the rest is kept verbatim.
fn shift_timestamp(timestamp: &str, shift: Duration) -> Option<String> {
    let date = parse_day(timestamp.get(..10)?)?;
    let rest = timestamp.get(10..)?;
    let shifted = date.checked_add_signed(shift)?;
    Some(format!("{}{rest}", shifted.format("%Y-%m-%d")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_date_part_moves() {
        let shift = Duration::days(3);
        assert_eq!(
            shift_timestamp("2026-11-24T02:47:13.000612Z", shift).as_deref(),
            Some("2026-11-27T02:47:13.000612Z")
        );
        assert_eq!(
            shift_timestamp("2026-12-30T23:59:59Z", shift).as_deref(),
            Some("2027-01-02T23:59:59Z")
        );
        assert_eq!(shift_timestamp("yesterday", shift), None);
    }

    #[test]
    fn the_recorded_day_becomes_the_target_day() {
        let config = TimeshiftConfig {
            recorded_on: parse_day("2026-11-24").unwrap(),
            target: Target::Yesterday,
            decided_days: OnceLock::new(),
        };
        assert_eq!(config.shift_days(parse_day("2027-03-02").unwrap()), 97);
        assert_eq!(config.shift_days(parse_day("2026-11-25").unwrap()), 0);
    }

    #[test]
    fn event_and_body_timestamps_move() {
        let text = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"create","user":{"username":"erin"},"responseObject":{"kind":"Pod","metadata":{"name":"p","creationTimestamp":"2026-11-24T14:31:09Z","managedFields":[{"manager":"kubectl","time":"2026-11-24T14:31:09Z"}]}},"requestReceivedTimestamp":"2026-11-24T14:31:09.000000Z","stageTimestamp":"2026-11-24T14:31:09.009412Z"}"#;
        let event = AuditEvent::parse(text).unwrap();
        let shifted = shift_event(&event, Duration::days(1)).unwrap();
        let header = shifted.header();
        assert_eq!(
            header.stage_timestamp(),
            Some("2026-11-25T14:31:09.009412Z")
        );
        assert_eq!(
            header.request_received_timestamp(),
            Some("2026-11-25T14:31:09.000000Z")
        );
        let body: Value = serde_json::from_str(shifted.response_object().unwrap()).unwrap();
        assert_eq!(
            body["metadata"]["creationTimestamp"],
            "2026-11-25T14:31:09Z"
        );
        assert_eq!(
            body["metadata"]["managedFields"][0]["time"],
            "2026-11-25T14:31:09Z"
        );
    }
}
