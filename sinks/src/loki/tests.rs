//! Unit tests of the `loki` sink's options, labels and push bodies.

use std::collections::BTreeMap;
use std::sync::Arc;

use auditflow_core::event::{AuditEvent, Event, Payload};
use auditflow_core::template::Template;
use prost::Message as _;

use super::labels::Labeller;
use super::push::{label_set, Entry, PushRequest, Streams};
use super::*;

fn table(text: &str) -> toml::Table {
    text.parse().expect("TOML")
}

fn audit(user: &str) -> Event {
    let text = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{{"username":"{user}"}},"objectRef":{{"resource":"pods","namespace":"default"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-11-24T17:42:18.004781Z"}}"#
    );
    let event = AuditEvent::parse(&text).expect("an audit event");
    Event::new(Payload::Audit(Arc::new(event)), "in".into())
}

#[test]
fn the_defaults_keep_many_valued_fields_out_of_the_labels() {
    let checked = check(&table(
        "endpoint = \"http://loki:3100\"\ncluster = \"prod\"",
    ))
    .expect("valid");
    assert_eq!(checked.url.as_str(), "http://loki:3100/loki/api/v1/push");
    let labels: Vec<&str> = checked
        .labels
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(labels, ["cluster", "job", "resource", "stage", "verb"]);
    let metadata: Vec<&str> = checked
        .metadata
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(metadata, ["auditID", "code", "name", "namespace", "user"]);
    assert_eq!(checked.config.compression, PushCompression::Snappy);
    assert_eq!(checked.config.max_label_values, 100);
}

#[test]
fn every_bad_option_is_named() {
    let errors = check(&table(
        "endpoint = \"ftp://x\"\ntenant_id = \"a\\nb\"\nlabels = { \"bad-name\" = \"x\", ok = \"%Q\" }\nmax_label_values = 0\nauth = { strategy = \"bearer\" }",
    ))
    .expect_err("invalid");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "endpoint",
            "tenant_id",
            "auth.token",
            "labels.bad-name",
            "labels.ok",
            "max_label_values"
        ]
    );
}

#[test]
fn label_sets_are_written_in_lokis_text_form() {
    let labels: BTreeMap<String, String> = [("job", "a\"b"), ("verb", "get\\n")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(label_set(&labels), r#"{job="a\"b", verb="get\\n"}"#);
}

fn entry(time_nanos: i64, line: &str) -> Entry {
    Entry {
        time_nanos,
        line: line.to_string(),
        metadata: [("auditID".to_string(), line.to_string())].into(),
    }
}

#[test]
fn streams_are_sorted_by_time_and_encode_as_protobuf_and_json() {
    let mut streams = Streams::default();
    let job: BTreeMap<String, String> = [("job".to_string(), "a".to_string())].into();
    streams.push(job.clone(), entry(3_000_000_001, "late"));
    streams.push(job.clone(), entry(1_500_000_000, "early"));
    streams.push(
        [("job".to_string(), "b".to_string())].into(),
        entry(2, "other"),
    );
    streams.sort();
    assert_eq!(streams.len(), 2);
    let compressed = streams.protobuf().expect("encoded");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&compressed)
        .expect("snappy");
    let request = PushRequest::decode(raw.as_slice()).expect("protobuf");
    assert_eq!(request.streams[0].labels, r#"{job="a"}"#);
    let lines: Vec<&str> = request.streams[0]
        .entries
        .iter()
        .map(|e| e.line.as_str())
        .collect();
    assert_eq!(lines, ["early", "late"]);
    let first = request.streams[0].entries[0].timestamp.expect("a time");
    assert_eq!((first.seconds, first.nanos), (1, 500_000_000));
    assert_eq!(
        request.streams[0].entries[0].structured_metadata[0].name,
        "auditID"
    );
    let json: serde_json::Value = serde_json::from_slice(&streams.json()).expect("JSON");
    assert_eq!(json["streams"][0]["stream"]["job"], "a");
    assert_eq!(
        json["streams"][0]["values"][0],
        serde_json::json!(["1500000000", "early", { "auditID": "early" }])
    );
}

#[test]
fn a_label_past_its_value_limit_moves_to_metadata_for_good() {
    let template = |text: &str| Template::parse(text).expect("template");
    let mut labeller = Labeller::new(
        vec![
            ("job".to_string(), template("audit")),
            ("user".to_string(), template("{{ user.username }}")),
        ],
        vec![("verb".to_string(), template("{{ verb }}"))],
        2,
    );
    let mut refused = Vec::new();
    let first = labeller.render(&audit("alice"), &mut refused);
    assert_eq!(first.labels.get("user").map(String::as_str), Some("alice"));
    assert_eq!(first.metadata.get("verb").map(String::as_str), Some("list"));
    labeller.render(&audit("bob"), &mut refused);
    labeller.render(&audit("alice"), &mut refused);
    assert!(refused.is_empty());
    let third = labeller.render(&audit("carol"), &mut refused);
    assert_eq!(refused, ["user"]);
    assert!(!third.labels.contains_key("user"));
    assert_eq!(
        third.metadata.get("user").map(String::as_str),
        Some("carol")
    );
    let again = labeller.render(&audit("alice"), &mut refused);
    assert!(!again.labels.contains_key("user"), "refused for good");
    assert_eq!(refused.len(), 1, "warned once");
    assert_eq!(again.labels.get("job").map(String::as_str), Some("audit"));
}

#[test]
fn an_endpoints_own_path_is_kept_before_the_push_path() {
    let checked = check(&table(
        "endpoint = \"https://gw.example.com/loki-a/\"\npath = \"/insert/loki/api/v1/push?disable_message_parsing=1\"",
    ))
    .expect("valid");
    assert_eq!(
        checked.url.as_str(),
        "https://gw.example.com/loki-a/insert/loki/api/v1/push?disable_message_parsing=1"
    );
}

#[test]
fn names_are_labels_or_metadata_and_not_the_servers_own() {
    let errors = check(&table(
        "endpoint = \"http://a\"\nlabels = { job = \"x\", user = \"{{ user.username }}\", _msg = \"y\" }\nstructured_metadata = { user = \"{{ user.username }}\" }\nauth = { strategy = \"api_key\", token = \"t\" }",
    ))
    .expect_err("invalid");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["auth.strategy", "labels._msg", "structured_metadata.user"]
    );
}

#[test]
fn a_missing_field_leaves_no_metadata_and_a_real_none_stays() {
    let template = |text: &str| Template::parse(text).expect("template");
    let mut labeller = Labeller::new(
        vec![("job".to_string(), template("audit"))],
        vec![
            ("user".to_string(), template("{{ user.username }}")),
            ("name".to_string(), template("{{ objectRef.name }}")),
        ],
        100,
    );
    let rendered = labeller.render(&audit("none"), &mut Vec::new());
    assert_eq!(
        rendered.metadata.get("user").map(String::as_str),
        Some("none")
    );
    assert!(
        !rendered.metadata.contains_key("name"),
        "the event has no name"
    );
    assert_eq!(
        rendered.missing_fields, 0,
        "metadata fields are not counted"
    );
}
