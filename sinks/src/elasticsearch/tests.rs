//! Unit tests of the `elasticsearch` sink's options, documents, bulk answers
//! and the requests it sends (the Elasticsearch ones included: the test node
//! is OpenSearch).

use std::sync::Arc;
use std::time::Duration;

use auditflow_core::event::{Alert, AuditEvent, Event, Payload, Priority};
use auditflow_core::template::Template;

use super::bulk::{self, ItemOutcome};
use super::connection::Distribution;
use super::document::{
    has_long_string, index_name, restore_source, DocumentBuilder, MAX_INDEXED_STRING,
};
use super::lifecycle::{age, ilm_policy, ism_policy};
use super::mapping::{index_template, template_name, Content, TemplateLifecycle};
use super::search::{events_query, read_groups};
use super::*;
use crate::local_store::read::{EventFilter, TimeRange};

fn table(text: &str) -> toml::Table {
    text.parse().expect("TOML")
}

fn fields(errors: &[OptionError]) -> Vec<&str> {
    errors.iter().map(|error| error.field.as_str()).collect()
}

const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/production/configmaps/app-config","verb":"delete","user":{"username":"alice@example.com","groups":["dev"]},"sourceIPs":["10.0.0.7"],"objectRef":{"resource":"configmaps","namespace":"production","name":"app-config","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"DeleteOptions"},"requestReceivedTimestamp":"2026-11-24T17:42:18.000000Z","stageTimestamp":"2026-11-24T17:42:18.004781Z"}"#;

fn audit(text: &str) -> Event {
    let event = AuditEvent::parse(text).expect("an audit event");
    Event::new(Payload::Audit(Arc::new(event)), "in".into())
}

fn builder(distribution: Distribution) -> DocumentBuilder {
    DocumentBuilder {
        index: Template::parse(default_index(IndexMode::Index)).expect("template"),
        alerts_index: Template::parse(default_alerts_index(IndexMode::Index)).expect("template"),
        id: None,
        distribution,
    }
}

#[test]
fn the_defaults_are_daily_indices_and_bulk_sized_batches() {
    let checked = check(&table("endpoints = [\"http://127.0.0.1:9200\"]")).expect("valid");
    assert_eq!(checked.index.as_str(), "auditflow-audit-%Y.%m.%d");
    assert_eq!(checked.alerts_index.as_str(), "auditflow-alerts-%Y.%m.%d");
    assert_eq!(checked.batch.max_events, 5000);
    assert_eq!(checked.batch.max_bytes, 10 * 1024 * 1024);
    assert!(checked.config.manage_templates);
    assert_eq!(checked.rollover_size(), None);
    assert_eq!(
        checked.patterns(),
        (
            "auditflow-audit-*.*.*".to_string(),
            "auditflow-alerts-*.*.*".to_string()
        )
    );
    let stream = check(&table(
        "endpoints = [\"http://a:9200\"]\nmode = \"data_stream\"",
    ))
    .expect("valid");
    assert_eq!(stream.index.as_str(), "auditflow-audit");
    assert_eq!(stream.rollover_size(), Some("50gb"));
}

#[test]
fn every_bad_option_is_named() {
    let errors = check(&table(
        r#"endpoints = ["ftp://x", "not a url"]
index = "audit-%Q"
alerts_index = "{{ unclosed"
retention = "10m"
rollover_size = "big"
auth = { strategy = "basic", user = "u" }
tls = { crt_file = "c.pem" }
[batch]
max_events = 0
"#,
    ))
    .expect_err("invalid");
    assert_eq!(
        fields(&errors),
        [
            "endpoints[0]",
            "endpoints[1]",
            "auth.password",
            "tls.key_file",
            "index",
            "alerts_index",
            "batch.max_events",
            "retention",
            "rollover_size",
            "rollover_size",
        ]
    );
    let errors = check(&table("endpoints = []")).expect_err("invalid");
    assert_eq!(fields(&errors), ["endpoints"]);
    let errors = check(&table(
        "endpoints = [\"http://a\"]\nindex = \"same\"\nalerts_index = \"same\"",
    ))
    .expect_err("invalid");
    assert_eq!(fields(&errors), ["alerts_index"]);
    let errors = check(&table(
        "endpoints = [\"http://a\"]\n[index_settings]\nshards = 3\n\"index.blocks\" = { a = 1 }\n\"index.lifecycle.name\" = \"x\"",
    ))
    .expect_err("invalid");
    assert_eq!(
        fields(&errors),
        [
            "index_settings.index.blocks",
            "index_settings.index.lifecycle.name",
            "index_settings.shards"
        ]
    );
    let errors = check(&table("endpoints = [\"http://a\"]\nshards = 3")).expect_err("invalid");
    assert!(errors[0].message.contains("shards"), "{errors:?}");
}

#[test]
fn a_document_goes_to_the_index_of_its_own_day_with_a_derived_id() {
    let event = audit(EVENT);
    let (document, notes) = builder(Distribution::OpenSearch)
        .build(&event)
        .expect("built");
    assert_eq!(document.index, "auditflow-audit-2026.11.24");
    assert_eq!(document.id, "a-1-ResponseComplete");
    assert_eq!(notes.missing_fields, 0);
    let source = String::from_utf8(document.source).expect("UTF-8");
    assert!(
        source.starts_with(r#"{"@timestamp":"2026-11-24T17:42:18.004781Z","kind":"Event""#),
        "{source}"
    );
    let value: serde_json::Value = serde_json::from_str(&source).expect("JSON");
    assert_eq!(value["verb"], "delete");
    assert_eq!(restore_source(&source).expect("restored"), EVENT);
}

#[test]
fn an_alert_goes_to_the_alerts_index_with_an_id_of_its_content() {
    let alert = Alert {
        time: "2026-11-24T17:42:18.004781000Z".into(),
        rule: "Resource Deleted In Production Namespace".into(),
        priority: Priority::Warning,
        output: "deleted".into(),
        output_fields: Default::default(),
        source: "k8s_audit".into(),
        tags: vec!["k8s".into()],
        hostname: "auditflow".into(),
    };
    let event = Event::new(Payload::Alert(Arc::new(alert)), "detect".into());
    let builder = builder(Distribution::Elasticsearch);
    let (first, _) = builder.build(&event).expect("built");
    let (again, _) = builder.build(&event).expect("built");
    assert_eq!(first.index, "auditflow-alerts-2026.11.24");
    assert!(first.id.starts_with("alert-"), "{}", first.id);
    assert_eq!(first.id, again.id, "the same alert has the same id");
}

#[test]
fn an_id_template_is_used_unless_its_field_is_missing() {
    let mut builder = builder(Distribution::OpenSearch);
    builder.id = Some(Template::parse("{{ objectRef.name }}-{{ auditID }}").expect("template"));
    let (document, _) = builder.build(&audit(EVENT)).expect("built");
    assert_eq!(document.id, "app-config-a-1");
    builder.id = Some(Template::parse("{{ objectRef.subresource }}").expect("template"));
    let (document, notes) = builder.build(&audit(EVENT)).expect("built");
    assert_eq!(document.id, "a-1-ResponseComplete");
    assert_eq!(notes.missing_fields, 1);
}

#[test]
fn long_body_strings_are_cut_for_opensearch_and_kept_whole() {
    let long = "é".repeat(MAX_INDEXED_STRING);
    let text = EVENT.replace(
        r#""requestObject":{"kind":"DeleteOptions"}"#,
        &format!(r#""requestObject":{{"data":{{"big.conf":"{long}","small":"s"}}}}"#),
    );
    let event = audit(&text);
    let (document, notes) = builder(Distribution::OpenSearch)
        .build(&event)
        .expect("built");
    assert!(notes.cut_bodies);
    let source: serde_json::Value = serde_json::from_slice(&document.source).expect("JSON");
    let indexed = source["requestObject"]["data"]["big.conf"]
        .as_str()
        .expect("cut");
    assert!(indexed.len() <= MAX_INDEXED_STRING && !indexed.is_empty());
    assert_eq!(source["requestObject"]["data"]["small"], "s");
    assert_eq!(
        source["auditflow_original"]["requestObject"]["data"]["big.conf"],
        long.as_str()
    );
    let restored = restore_source(&String::from_utf8_lossy(&document.source)).expect("restored");
    let restored: serde_json::Value = serde_json::from_str(&restored).expect("JSON");
    let original: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(restored, original);
    // Elasticsearch's `flattened` skips long values itself (`ignore_above`).
    let (document, notes) = builder(Distribution::Elasticsearch)
        .build(&event)
        .expect("built");
    assert!(!notes.cut_bodies);
    assert!(!String::from_utf8_lossy(&document.source).contains("auditflow_original"));
}

#[test]
fn index_names_are_made_valid() {
    assert_eq!(index_name("Audit-Team A/prod"), "audit-team_a_prod");
    assert_eq!(index_name("-_+x"), "x");
    assert_eq!(index_name(""), "auditflow-unnamed");
    assert_eq!(index_name(&"a".repeat(300)).len(), 255);
}

#[test]
fn bulk_operations_are_create_lines_with_escaped_names() {
    let (document, _) = builder(Distribution::OpenSearch)
        .build(&audit(EVENT))
        .expect("built");
    let mut body = Vec::new();
    bulk::write_operation(&mut body, &document);
    let text = String::from_utf8(body).expect("UTF-8");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(r#"{"create":{"_index":"auditflow-audit-2026.11.24","_id":"a-1-ResponseComplete"}}"#)
    );
    assert!(lines
        .next()
        .is_some_and(|line| line.starts_with("{\"@timestamp\"")));
    assert_eq!(lines.next(), None);
    assert!(bulk::operation_size(&document) >= text.len());
}

#[test]
fn a_bulk_answer_is_read_item_by_item() {
    let answer = br#"{"took":3,"errors":true,"items":[
        {"create":{"_index":"i","_id":"1","status":201}},
        {"create":{"_index":"i","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[2]: version conflict, document already exists"}}},
        {"create":{"_index":"i","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
        {"create":{"_index":"i","_id":"4","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
        {"create":{"_index":"i","_id":"5","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [sourceIPs] of type [ip]","caused_by":{"type":"illegal_argument_exception","reason":"'x' is not an IP string literal."}}}}
    ]}"#;
    let outcomes = bulk::read_answer(answer, 5).expect("read");
    assert_eq!(outcomes[0], ItemOutcome::Stored);
    assert_eq!(outcomes[1], ItemOutcome::Stored, "a copy is already stored");
    assert!(matches!(&outcomes[2], ItemOutcome::Retry(reason) if reason.contains("429")));
    assert!(matches!(&outcomes[3], ItemOutcome::Retry(reason) if reason.contains("primary shard")));
    match &outcomes[4] {
        ItemOutcome::Refused(reason) => assert!(
            reason.contains("mapper_parsing_exception") && reason.contains("not an IP string"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let all_stored = br#"{"took":1,"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}]}"#;
    assert_eq!(
        bulk::read_answer(all_stored, 2).expect("read"),
        [ItemOutcome::Stored, ItemOutcome::Stored]
    );
    assert!(
        bulk::read_answer(all_stored, 3).is_err(),
        "a short answer is retried whole"
    );
    assert!(bulk::read_answer(b"<html>", 1).is_err());
    let other_conflict = br#"{"errors":true,"items":[{"create":{"status":409,"error":{"type":"other_exception"}}}]}"#;
    assert!(matches!(
        bulk::read_answer(other_conflict, 1).expect("read")[0],
        ItemOutcome::Refused(_)
    ));
}

#[test]
fn the_audit_template_fixes_the_header_types_and_flattens_the_bodies() {
    let patterns = ["auditflow-audit-*.*.*".to_string()];
    let opensearch = index_template(
        Content::Audit,
        Distribution::OpenSearch,
        &patterns,
        false,
        &TemplateLifecycle::None,
        &Default::default(),
    );
    let properties = &opensearch["template"]["mappings"]["properties"];
    assert_eq!(opensearch["template"]["mappings"]["dynamic"], false);
    assert_eq!(properties["verb"]["type"], "keyword");
    assert_eq!(properties["sourceIPs"]["type"], "ip");
    assert_eq!(
        properties["responseStatus"]["properties"]["code"]["type"],
        "integer"
    );
    assert_eq!(properties["stageTimestamp"]["type"], "date");
    assert_eq!(properties["@timestamp"]["type"], "date_nanos");
    assert_eq!(properties["requestObject"]["type"], "flat_object");
    assert_eq!(properties["annotations"]["type"], "flat_object");
    assert_eq!(properties["auditflow_original"]["enabled"], false);
    assert!(opensearch.get("data_stream").is_none());
    assert!(opensearch["template"]["settings"]
        .get("index.lifecycle.name")
        .is_none());

    let elasticsearch = index_template(
        Content::Audit,
        Distribution::Elasticsearch,
        &patterns,
        true,
        &TemplateLifecycle::Ilm("auditflow-audit-retention".into()),
        &index_settings_json(&table("\"index.number_of_shards\" = 3")),
    );
    let properties = &elasticsearch["template"]["mappings"]["properties"];
    assert_eq!(properties["requestObject"]["type"], "flattened");
    assert_eq!(properties["requestObject"]["ignore_above"], 8191);
    assert_eq!(properties["requestObject"]["depth_limit"], 100);
    assert_eq!(
        properties["user"]["properties"]["extra"]["type"],
        "flattened"
    );
    assert_eq!(elasticsearch["data_stream"], serde_json::json!({}));
    assert_eq!(
        elasticsearch["template"]["settings"]["index.lifecycle.name"],
        "auditflow-audit-retention"
    );
    assert_eq!(
        elasticsearch["template"]["settings"]["index.number_of_shards"],
        3
    );
    let alerts = index_template(
        Content::Alerts,
        Distribution::Elasticsearch,
        &["auditflow-alerts-*".to_string()],
        false,
        &TemplateLifecycle::None,
        &Default::default(),
    );
    let properties = &alerts["template"]["mappings"]["properties"];
    assert_eq!(properties["output_fields"]["type"], "flattened");
    assert_eq!(properties["rule"]["type"], "keyword");
    assert_eq!(properties["output"]["fields"]["keyword"]["type"], "keyword");
}

#[test]
fn templates_are_named_after_their_indices() {
    assert_eq!(
        template_name("auditflow-audit-*.*.*", "x"),
        "auditflow-audit"
    );
    assert_eq!(template_name("audit-*-*", "x"), "audit");
    assert_eq!(
        template_name("*-audit", "auditflow-search-audit"),
        "auditflow-search-audit"
    );
}

#[test]
fn retention_policies_delete_past_the_age_and_roll_data_streams_over() {
    let day = Duration::from_secs(86_400);
    assert_eq!(age(90 * day), "90d");
    assert_eq!(age(Duration::from_secs(36 * 3600)), "36h");
    assert_eq!(age(Duration::from_secs(90 * 60)), "2h");

    let patterns = [
        "auditflow-audit-*.*.*".to_string(),
        "auditflow-alerts-*.*.*".to_string(),
    ];
    let ism = ism_policy(90 * day, &patterns, None);
    let states = &ism["policy"]["states"];
    assert_eq!(states[0]["name"], "hot");
    assert_eq!(states[0]["actions"], serde_json::json!([]));
    assert_eq!(
        states[0]["transitions"][0]["conditions"]["min_index_age"],
        "90d"
    );
    assert_eq!(states[1]["actions"][0], serde_json::json!({ "delete": {} }));
    assert_eq!(
        ism["policy"]["ism_template"][0]["index_patterns"],
        serde_json::json!(patterns)
    );
    let ism = ism_policy(30 * day, &patterns, Some("50gb"));
    assert_eq!(
        ism["policy"]["states"][0]["actions"][0]["rollover"]["min_primary_shard_size"],
        "50gb"
    );

    let ilm = ilm_policy(90 * day, None);
    assert_eq!(ilm["policy"]["phases"]["delete"]["min_age"], "90d");
    assert_eq!(
        ilm["policy"]["phases"]["delete"]["actions"],
        serde_json::json!({ "delete": {} })
    );
    assert!(ilm["policy"]["phases"]["hot"]["actions"]
        .get("rollover")
        .is_none());
    let ilm = ilm_policy(90 * day, Some("10gb"));
    assert_eq!(
        ilm["policy"]["phases"]["hot"]["actions"]["rollover"]["max_primary_shard_size"],
        "10gb"
    );
}

#[test]
fn query_filters_become_term_filters_and_a_time_range() {
    let filter = EventFilter {
        user: Some("alice@example.com".into()),
        verb: Some("delete".into()),
        code: Some(200),
        ..EventFilter::default()
    };
    let range = TimeRange {
        from: Some(1_764_000_000_000_000),
        to: None,
    };
    let query = events_query(&range, &filter);
    let filters = query["bool"]["filter"].as_array().expect("filters");
    assert!(filters.contains(&serde_json::json!({ "term": { "kind": "Event" } })));
    assert!(
        filters.contains(&serde_json::json!({ "term": { "user.username": "alice@example.com" } }))
    );
    assert!(filters.contains(&serde_json::json!({ "term": { "verb": "delete" } })));
    assert!(filters.contains(&serde_json::json!({ "term": { "responseStatus.code": 200 } })));
    let range = filters
        .iter()
        .find_map(|filter| filter.get("range"))
        .expect("a range");
    assert_eq!(range["@timestamp"]["gte"], "2025-11-24T16:00:00.000000Z");
    assert!(range["@timestamp"].get("lt").is_none());
}

#[test]
fn group_counts_include_the_events_without_the_field() {
    let answer = serde_json::json!({ "aggregations": {
        "values": { "buckets": [
            { "key": 200, "doc_count": 5 },
            { "key": 403, "doc_count": 7 },
        ] },
        "absent": { "doc_count": 5 },
    } });
    assert_eq!(
        read_groups(&answer),
        [
            ("403".to_string(), 7),
            ("-".to_string(), 5),
            ("200".to_string(), 5)
        ]
    );
}

#[test]
fn a_long_string_is_found_without_parsing() {
    let limit = 10;
    assert!(!has_long_string(
        br#"{"a":"short","b":"0123456789"}"#,
        limit
    ));
    assert!(has_long_string(br#"{"a":"0123456789AB"}"#, limit));
    // Escaped quotes do not end a string.
    assert!(has_long_string(br#"{"a":"01\"23\"456789"}"#, limit));
    assert!(!has_long_string(br#"{"a":"x\\","b":"y"}"#, limit));
    assert!(!has_long_string(b"", limit));
}

#[test]
fn patterns_must_tell_the_indices_apart() {
    let errors = check(&table(
        "endpoints = [\"http://a\"]\nindex = \"{{ objectRef.namespace }}-%Y\"",
    ))
    .expect_err("invalid");
    assert_eq!(fields(&errors), ["index"]);
    assert!(errors[0].message.contains("every index"), "{errors:?}");
    let errors = check(&table(
        "endpoints = [\"http://a\"]\nindex = \"auditflow-%Y\"\nalerts_index = \"auditflow-alerts-%Y\"",
    ))
    .expect_err("invalid");
    assert_eq!(fields(&errors), ["alerts_index"]);
    let checked = check(&table(
        "endpoints = [\"http://a\"]\nindex = \"Audit Logs-%Y\"\nalerts_index = \"Alerts-%Y\"",
    ))
    .expect("valid");
    assert_eq!(
        checked.patterns(),
        ("audit_logs-*".to_string(), "alerts-*".to_string()),
        "patterns are named as the indices are"
    );
}

#[test]
fn an_id_longer_than_the_cluster_takes_falls_back_to_the_derived_one() {
    let mut builder = builder(Distribution::OpenSearch);
    builder.id = Some(Template::parse("{{ requestURI }}").expect("template"));
    let long_uri = format!("/api/v1/namespaces/default/configmaps/{}", "c".repeat(600));
    let text = EVENT.replace(
        "/api/v1/namespaces/production/configmaps/app-config",
        &long_uri,
    );
    let (document, _) = builder.build(&audit(&text)).expect("built");
    assert_eq!(document.id, "a-1-ResponseComplete");
}

#[test]
fn a_write_block_is_waited_out() {
    let answer = br#"{"errors":true,"items":[{"create":{"status":403,"error":{"type":"cluster_block_exception","reason":"index [i] blocked by: [FORBIDDEN/8/index write (api)];"}}},{"create":{"status":403,"error":{"type":"security_exception","reason":"no permissions"}}}]}"#;
    let outcomes = bulk::read_answer(answer, 2).expect("read");
    assert!(matches!(outcomes[0], ItemOutcome::Retry(_)));
    assert!(matches!(outcomes[1], ItemOutcome::Refused(_)));
}
