//! Templates over events: the Kafka topic, Elasticsearch index names and
//! document ids, and later Loki labels, S3 key prefixes and AMQP routing keys.
//!
//! A template is text with `{{ field.path }}` placeholders, each replaced by
//! the event's value at that path, and `strftime` items (`%Y`, `%m`, `%d`,
//! `%H`, ...) outside the placeholders, rendered from the **event's own
//! time** (an audit event's `stageTimestamp`, else `requestReceivedTimestamp`;
//! an alert's `time`), not the time it arrived:
//!
//! ```text
//! audit-{{ objectRef.namespace }}                 -> audit-production
//! {{ objectRef.namespace | default("cluster") }}  -> cluster for a cluster-scoped object
//! auditflow-audit-%Y.%m.%d                        -> auditflow-audit-2026.11.24
//! ```
//!
//! A template is parsed and checked once ([`Template::parse`], so `validate`
//! reports a bad one naming the option), and rendered per event into a
//! caller's buffer. The common fields of an audit event (`verb`, `stage`,
//! `auditID`, `user.username`, `objectRef.*`, `responseStatus.code`,
//! `annotations.KEY`, ...) are read from its typed header without parsing its
//! text; any other path (a field inside `requestObject`, say) parses the event
//! when it is rendered. A template with no placeholder and no time item is a
//! constant ([`Template::as_constant`]) and costs nothing per event.
//!
//! A field the event does not have (or whose value is `null`) renders as its
//! `default("…")` when it gives one, else as [`MISSING_FIELD_FALLBACK`];
//! either way [`Rendered::missing`] counts it, so the component can count it
//! in its metrics.

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};

use crate::event::{AuditHeader, Event, Payload};

/// What a field that is missing renders as when its placeholder gives no `default`.
pub const MISSING_FIELD_FALLBACK: &str = "none";

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Time(Vec<Item<'static>>),
    Field {
        path: FieldPath,
        default: Option<String>,
    },
}

/// Where a placeholder's value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldPath {
    /// A field of the audit event's typed header.
    Header(HeaderField),
    /// `annotations.KEY`.
    Annotation(String),
    /// Any other path: the members to walk, from the top of the payload's JSON.
    Json(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderField {
    AuditId,
    Stage,
    Verb,
    Level,
    RequestUri,
    UserAgent,
    Username,
    UserUid,
    ImpersonatedUsername,
    SourceIp,
    Resource,
    Subresource,
    Namespace,
    Name,
    ApiGroup,
    ApiVersion,
    Code,
}

impl HeaderField {
    fn of(path: &str) -> Option<HeaderField> {
        Some(match path {
            "auditID" => HeaderField::AuditId,
            "stage" => HeaderField::Stage,
            "verb" => HeaderField::Verb,
            "level" => HeaderField::Level,
            "requestURI" => HeaderField::RequestUri,
            "userAgent" => HeaderField::UserAgent,
            "user.username" => HeaderField::Username,
            "user.uid" => HeaderField::UserUid,
            "impersonatedUser.username" => HeaderField::ImpersonatedUsername,
            "sourceIPs" | "sourceIPs.0" => HeaderField::SourceIp,
            "objectRef.resource" => HeaderField::Resource,
            "objectRef.subresource" => HeaderField::Subresource,
            "objectRef.namespace" => HeaderField::Namespace,
            "objectRef.name" => HeaderField::Name,
            "objectRef.apiGroup" => HeaderField::ApiGroup,
            "objectRef.apiVersion" => HeaderField::ApiVersion,
            "responseStatus.code" => HeaderField::Code,
            _ => return None,
        })
    }

    fn write(self, header: AuditHeader<'_>, out: &mut String) -> bool {
        let object = header.object_ref();
        let text = match self {
            HeaderField::AuditId => Some(header.audit_id()),
            HeaderField::Stage => Some(header.stage().as_str()),
            HeaderField::Verb => Some(header.verb()),
            HeaderField::Level => header.level().map(|level| level.as_str()),
            HeaderField::RequestUri => Some(header.request_uri()),
            HeaderField::UserAgent => header.user_agent(),
            HeaderField::Username => Some(header.user().username()),
            HeaderField::UserUid => header.user().uid(),
            HeaderField::ImpersonatedUsername => {
                header.impersonated_user().map(|user| user.username())
            }
            HeaderField::SourceIp => header.source_ips().first(),
            HeaderField::Resource => object.and_then(|o| o.resource()),
            HeaderField::Subresource => object.and_then(|o| o.subresource()),
            HeaderField::Namespace => object.and_then(|o| o.namespace()),
            HeaderField::Name => object.and_then(|o| o.name()),
            HeaderField::ApiGroup => object.and_then(|o| o.api_group()),
            HeaderField::ApiVersion => object.and_then(|o| o.api_version()),
            HeaderField::Code => {
                return match header.response_code() {
                    Some(code) => write!(out, "{code}").is_ok(),
                    None => false,
                }
            }
        };
        match text {
            Some(text) if !text.is_empty() => {
                out.push_str(text);
                true
            }
            _ => false,
        }
    }
}

/// What rendering one event did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rendered {
    /// How many placeholders named a field the event does not have (rendered as their fallback).
    pub missing: usize,
}

impl Template {
    /// Parses and checks a template; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            push_text(&mut parts, &rest[..open])?;
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "`{{{{` at byte {} is not closed by `}}}}`",
                    text.len() - rest.len() + open
                )
            })?;
            parts.push(parse_field(after[..close].trim())?);
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err("`}}` without its `{{`".to_string());
        }
        push_text(&mut parts, rest)?;
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The rendered text when it is the same for every event (no placeholder, no time item).
    pub fn as_constant(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// The field paths the template reads, as written in its placeholders.
    pub fn fields(&self) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::Field { path, .. } => Some(path.to_string()),
                _ => None,
            })
            .collect()
    }

    /// The names this template can render, as a wildcard pattern: its literal
    /// text kept, each placeholder and time item replaced by `*` (runs of `*`
    /// merged). `auditflow-audit-%Y.%m.%d` gives `auditflow-audit-*.*.*`, which
    /// an index pattern or a listing filter can use.
    pub fn wildcard_pattern(&self) -> String {
        fn wildcard(pattern: &mut String) {
            if !pattern.ends_with('*') {
                pattern.push('*');
            }
        }
        let mut pattern = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => pattern.push_str(text),
                Part::Field { .. } => wildcard(&mut pattern),
                Part::Time(items) => {
                    for item in items {
                        match item {
                            Item::Literal(text) | Item::Space(text) => pattern.push_str(text),
                            Item::OwnedLiteral(text) | Item::OwnedSpace(text) => {
                                pattern.push_str(text)
                            }
                            _ => wildcard(&mut pattern),
                        }
                    }
                }
            }
        }
        pattern
    }

    /// Renders the template for `event`, appending to `out`.
    pub fn render(&self, event: &Event, out: &mut String) -> Rendered {
        if let Some(constant) = self.as_constant() {
            out.push_str(constant);
            return Rendered::default();
        }
        let mut rendered = Rendered::default();
        let mut time = None;
        let mut value = None;
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Time(items) => {
                    let time = *time.get_or_insert_with(|| event_time(event));
                    let _ = write!(out, "{}", time.format_with_items(items.iter()));
                }
                Part::Field { path, default } => {
                    if !write_field(event, path, &mut value, out) {
                        rendered.missing += 1;
                        out.push_str(default.as_deref().unwrap_or(MISSING_FIELD_FALLBACK));
                    }
                }
            }
        }
        rendered
    }

    /// Renders the template for `event` into a new string.
    pub fn render_to_string(&self, event: &Event) -> (String, Rendered) {
        let mut out = String::new();
        let rendered = self.render(event, &mut out);
        (out, rendered)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldPath::Header(field) => write!(f, "{}", header_field_name(*field)),
            FieldPath::Annotation(key) => write!(f, "annotations.{key}"),
            FieldPath::Json(members) => write!(f, "{}", members.join(".")),
        }
    }
}

fn header_field_name(field: HeaderField) -> &'static str {
    match field {
        HeaderField::AuditId => "auditID",
        HeaderField::Stage => "stage",
        HeaderField::Verb => "verb",
        HeaderField::Level => "level",
        HeaderField::RequestUri => "requestURI",
        HeaderField::UserAgent => "userAgent",
        HeaderField::Username => "user.username",
        HeaderField::UserUid => "user.uid",
        HeaderField::ImpersonatedUsername => "impersonatedUser.username",
        HeaderField::SourceIp => "sourceIPs",
        HeaderField::Resource => "objectRef.resource",
        HeaderField::Subresource => "objectRef.subresource",
        HeaderField::Namespace => "objectRef.namespace",
        HeaderField::Name => "objectRef.name",
        HeaderField::ApiGroup => "objectRef.apiGroup",
        HeaderField::ApiVersion => "objectRef.apiVersion",
        HeaderField::Code => "responseStatus.code",
    }
}

/// Adds the text between placeholders: literal, or strftime items where it has a `%`.
fn push_text(parts: &mut Vec<Part>, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    if !text.contains('%') {
        parts.push(Part::Literal(text.to_string()));
        return Ok(());
    }
    let items = StrftimeItems::new(text)
        .parse_to_owned()
        .map_err(|_| format!("`{text}` holds a `%` that is not a strftime item such as %Y, %m, %d or %H (write %% for a literal %)"))?;
    parts.push(Part::Time(items));
    Ok(())
}

/// Parses the inside of a placeholder: `path` or `path | default("text")`.
fn parse_field(inside: &str) -> Result<Part, String> {
    let (path, default) = match inside.split_once('|') {
        None => (inside, None),
        Some((path, filter)) => (path.trim(), Some(parse_default(filter.trim())?)),
    };
    let valid = !path.is_empty()
        && path.split('.').all(|member| {
            !member.is_empty()
                && member
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
        });
    if !valid {
        return Err(format!(
            "`{{{{ {inside} }}}}` does not name a field; write a path of members joined by dots, such as {{{{ objectRef.namespace }}}} or {{{{ annotations.authorization.k8s.io/decision }}}}"
        ));
    }
    Ok(Part::Field {
        path: field_path(path),
        default,
    })
}

fn parse_default(filter: &str) -> Result<String, String> {
    let argument = filter
        .strip_prefix("default(")
        .and_then(|rest| rest.strip_suffix(')'))
        .map(str::trim)
        .and_then(|quoted| quoted.strip_prefix('"')?.strip_suffix('"'));
    match argument {
        Some(text) if !text.contains('"') => Ok(text.to_string()),
        _ => Err(format!(
            "unknown filter `{filter}`; the one filter is default(\"TEXT\"), the text a missing field renders as"
        )),
    }
}

fn field_path(path: &str) -> FieldPath {
    if let Some(field) = HeaderField::of(path) {
        return FieldPath::Header(field);
    }
    if let Some(key) = path.strip_prefix("annotations.") {
        return FieldPath::Annotation(key.to_string());
    }
    FieldPath::Json(path.split('.').map(str::to_string).collect())
}

/// The event's own time (an audit event's `stageTimestamp`, else
/// `requestReceivedTimestamp`; an alert's `time`), or now for an event that has none.
pub fn event_time(event: &Event) -> DateTime<Utc> {
    own_time(event).unwrap_or_else(Utc::now)
}

/// The event's own time, if it has one (see [`event_time`]).
pub fn own_time(event: &Event) -> Option<DateTime<Utc>> {
    match &event.payload {
        Payload::Audit(audit) => audit.header().event_time(),
        Payload::Alert(alert) => DateTime::parse_from_rfc3339(&alert.time)
            .ok()
            .map(|time| time.with_timezone(&Utc)),
        Payload::Record(_) => None,
    }
}

/// Writes the value at `path`; `false` when the event has none. `value` keeps
/// the payload parsed once for every placeholder that needs it.
fn write_field(
    event: &Event,
    path: &FieldPath,
    value: &mut Option<serde_json::Value>,
    out: &mut String,
) -> bool {
    match (&event.payload, path) {
        (Payload::Audit(audit), FieldPath::Header(field)) => field.write(audit.header(), out),
        (Payload::Audit(audit), FieldPath::Annotation(key)) => {
            match audit.header().annotation(key) {
                Some(text) => {
                    out.push_str(text);
                    true
                }
                None => false,
            }
        }
        (Payload::Alert(alert), FieldPath::Json(members))
            if members.first().is_some_and(|m| m == "output_fields") && members.len() > 1 =>
        {
            // Alert fields are named like `ka.target.namespace`: the rest of the path is one key.
            let key = members[1..].join(".");
            write_value(alert.output_fields.get(&key), out)
        }
        _ => {
            let value = value.get_or_insert_with(|| payload_value(event));
            write_value(lookup(value, path), out)
        }
    }
}

fn payload_value(event: &Event) -> serde_json::Value {
    match &event.payload {
        Payload::Audit(audit) => audit.to_value().unwrap_or_default(),
        Payload::Alert(alert) => serde_json::to_value(alert.as_ref()).unwrap_or_default(),
        Payload::Record(record) => serde_json::Value::Object(record.as_ref().clone()),
    }
}

fn lookup<'v>(value: &'v serde_json::Value, path: &FieldPath) -> Option<&'v serde_json::Value> {
    let step = |value: &'v serde_json::Value, member: &str| match value {
        serde_json::Value::Array(items) => items.get(member.parse::<usize>().ok()?),
        other => other.get(member),
    };
    match path {
        FieldPath::Json(members) => members.iter().try_fold(value, |v, m| step(v, m)),
        // A header path on a payload that is not an audit event (an alert, a record).
        FieldPath::Header(field) => header_field_name(*field).split('.').try_fold(value, step),
        FieldPath::Annotation(key) => value.get("annotations")?.get(key),
    }
}

fn write_value(value: Option<&serde_json::Value>, out: &mut String) -> bool {
    match value {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::String(text)) if text.is_empty() => false,
        Some(serde_json::Value::String(text)) => {
            out.push_str(text);
            true
        }
        Some(other) => write!(out, "{other}").is_ok(),
    }
}

#[cfg(test)]
mod tests;
