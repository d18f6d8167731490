//! The index templates the sink installs: one for audit events, one for
//! alerts, each matching the indices its template can render.
//!
//! **Audit events.** The header fields people filter and group by have fixed
//! types: `keyword` for names (`verb`, `user.username`, `user.groups`,
//! `objectRef.*`, `stage`, `level`, ...), `integer` for
//! `responseStatus.code`, `ip` for `sourceIPs`, `date` for the timestamps and
//! `@timestamp`. The open-ended parts, `requestObject`, `responseObject`,
//! `annotations` and the users' `extra`, are one field each of OpenSearch's
//! `flat_object` or Elasticsearch's `flattened` type: every leaf is indexed as
//! a keyword and searchable by its path (`requestObject.spec.replicas: 3`),
//! yet the field adds no mapping of its own, so no body can grow the mapping
//! past its field limit or conflict with another (`spec` a string in one
//! event, an object in the next). The top level is `dynamic: false`: a field
//! the template does not name is kept in `_source` and not indexed. Keywords
//! longer than 8,191 characters are kept and not indexed (`ignore_above`),
//! so no value exceeds Lucene's term limit.
//!
//! **Alerts** (Falco's JSON form): `rule`, `priority`, `source`, `tags`,
//! `hostname` as keywords, `output` as text with a keyword beside it, `time`
//! and `@timestamp` as dates, `output_fields` as a flat object.

use serde_json::{json, Value};

use super::connection::Distribution;

/// Keywords longer than this many characters are not indexed (4 bytes a
/// character at most keeps them under Lucene's 32,766-byte term limit).
const IGNORE_ABOVE: u32 = 8191;

/// The `_meta.managed_by` of the sink's templates and of the indices they make.
pub const MANAGED_BY: &str = "auditflow";

/// The lifecycle settings of the indices a template makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateLifecycle {
    /// None (no retention, or OpenSearch, whose ISM policies name their indices).
    None,
    /// Elasticsearch: `index.lifecycle.name` set to this ILM policy.
    Ilm(String),
}

/// What an index template is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Audit events (and `errors` records).
    Audit,
    /// Alerts in Falco's JSON form.
    Alerts,
}

/// The body of `PUT _index_template/NAME`.
pub fn index_template(
    content: Content,
    distribution: Distribution,
    patterns: &[String],
    data_stream: bool,
    lifecycle: &TemplateLifecycle,
    extra_settings: &serde_json::Map<String, Value>,
) -> Value {
    let mut mappings = match content {
        Content::Audit => audit_mappings(distribution),
        Content::Alerts => alert_mappings(distribution),
    };
    // On every index the template makes: the retention sweep deletes only these.
    mappings["_meta"] = json!({ "managed_by": MANAGED_BY });
    let mut settings = json!({ "index.mapping.total_fields.limit": 1000 });
    for (name, value) in extra_settings {
        settings[name] = value.clone();
    }
    if let TemplateLifecycle::Ilm(policy) = lifecycle {
        settings["index.lifecycle.name"] = json!(policy);
    }
    let mut template = json!({
        "index_patterns": patterns,
        "priority": 200,
        "template": { "settings": settings, "mappings": mappings },
        "_meta": { "managed_by": MANAGED_BY, "content": match content {
            Content::Audit => "audit events",
            Content::Alerts => "alerts",
        } },
    });
    if data_stream {
        template["data_stream"] = json!({});
    }
    template
}

fn keyword() -> Value {
    json!({ "type": "keyword", "ignore_above": IGNORE_ABOVE })
}

/// The type of an open-ended object: `flat_object` or `flattened`.
fn flat(distribution: Distribution) -> Value {
    match distribution {
        Distribution::OpenSearch => json!({ "type": "flat_object" }),
        Distribution::Elasticsearch => json!({
            "type": "flattened",
            "ignore_above": IGNORE_ABOVE,
            "depth_limit": 100,
        }),
    }
}

fn user_info(distribution: Distribution) -> Value {
    json!({ "properties": {
        "username": keyword(),
        "uid": keyword(),
        "groups": keyword(),
        "extra": flat(distribution),
    } })
}

fn audit_mappings(distribution: Distribution) -> Value {
    let object_ref = [
        "resource",
        "namespace",
        "name",
        "uid",
        "apiGroup",
        "apiVersion",
        "resourceVersion",
        "subresource",
    ];
    let object_ref: serde_json::Map<String, Value> = object_ref
        .iter()
        .map(|field| (field.to_string(), keyword()))
        .collect();
    json!({
        "dynamic": false,
        "properties": {
            "@timestamp": { "type": "date_nanos" },
            "kind": keyword(),
            "apiVersion": keyword(),
            "level": keyword(),
            "auditID": keyword(),
            "stage": keyword(),
            "requestURI": keyword(),
            "verb": keyword(),
            "user": user_info(distribution),
            "impersonatedUser": user_info(distribution),
            "sourceIPs": { "type": "ip" },
            "userAgent": keyword(),
            "objectRef": { "properties": object_ref },
            "responseStatus": { "properties": {
                "code": { "type": "integer" },
                "status": keyword(),
                "reason": keyword(),
                "message": { "type": "text" },
            } },
            "requestObject": flat(distribution),
            "responseObject": flat(distribution),
            "requestReceivedTimestamp": { "type": "date" },
            "stageTimestamp": { "type": "date" },
            "annotations": flat(distribution),
            (super::document::ORIGINAL_FIELD): { "type": "object", "enabled": false },
        },
    })
}

fn alert_mappings(distribution: Distribution) -> Value {
    json!({
        "dynamic": false,
        "properties": {
            "@timestamp": { "type": "date_nanos" },
            "time": { "type": "date" },
            "rule": keyword(),
            "priority": keyword(),
            "output": { "type": "text", "fields": { "keyword": keyword() } },
            "output_fields": flat(distribution),
            "source": keyword(),
            "tags": keyword(),
            "hostname": keyword(),
        },
    })
}

/// The name of the template (or policy) for the indices of `pattern`: the
/// pattern's text before its first wildcard (`auditflow-audit` for
/// `auditflow-audit-*.*.*`), so that sinks writing the same indices share one
/// template and sinks writing others do not overwrite it; `fallback` when the
/// pattern starts with a wildcard.
pub fn template_name(pattern: &str, fallback: &str) -> String {
    let stem = pattern
        .split('*')
        .next()
        .unwrap_or_default()
        .trim_end_matches(['-', '_', '.']);
    if stem.is_empty() {
        fallback.to_string()
    } else {
        stem.to_string()
    }
}

/// The field of an audit document a `--group-by` or filter name is mapped to.
pub fn audit_field(name: &str) -> Option<&'static str> {
    Some(match name {
        "user" => "user.username",
        "group" => "user.groups",
        "verb" => "verb",
        "resource" => "objectRef.resource",
        "subresource" => "objectRef.subresource",
        "namespace" => "objectRef.namespace",
        "name" => "objectRef.name",
        "code" => "responseStatus.code",
        "source-ip" => "sourceIPs",
        "user-agent" => "userAgent",
        "level" => "level",
        "stage" => "stage",
        _ => return None,
    })
}
