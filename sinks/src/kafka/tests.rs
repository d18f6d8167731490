use std::sync::Arc;

use auditflow_core::event::AuditEvent;

use super::*;

fn audit(text: &str) -> Event {
    let event = AuditEvent::parse(text).expect("a test audit event");
    Event::new(Payload::Audit(Arc::new(event)), "in".into())
}

fn parse_text(text: &str) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    parse(&text.parse().expect("test options are TOML"))
}

#[test]
fn the_key_is_the_object_identity_by_default() {
    let event = audit(
        r#"{"auditID":"a-1","stage":"ResponseComplete","verb":"delete","objectRef":{"resource":"configmaps","namespace":"production","name":"app-config"}}"#,
    );
    let mut key = String::new();
    assert!(write_key(&event, KeyField::Object, &mut key));
    assert_eq!(key, "production/configmaps/app-config");
    key.clear();
    assert!(write_key(&event, KeyField::AuditId, &mut key));
    assert_eq!(key, "a-1");
    assert!(!write_key(&event, KeyField::None, &mut String::new()));
    let cluster_scoped = audit(
        r#"{"auditID":"b","stage":"ResponseComplete","verb":"get","objectRef":{"resource":"nodes","name":"node-1"}}"#,
    );
    key.clear();
    assert!(write_key(&cluster_scoped, KeyField::Object, &mut key));
    assert_eq!(key, "/nodes/node-1");
    let non_resource =
        audit(r#"{"auditID":"c","stage":"ResponseComplete","verb":"get","requestURI":"/healthz"}"#);
    assert!(!write_key(
        &non_resource,
        KeyField::Object,
        &mut String::new()
    ));
}

#[test]
fn rendered_topics_are_made_valid_topic_names() {
    for (rendered, topic) in [
        ("audit-production", "audit-production"),
        (
            "audit-system:serviceaccount:a",
            "audit-system_serviceaccount_a",
        ),
        ("", "_"),
        ("audit-é", "audit-_"),
    ] {
        let mut text = rendered.to_string();
        sanitize_topic(&mut text);
        assert_eq!(text, topic);
    }
    let mut long = "a".repeat(300);
    sanitize_topic(&mut long);
    assert_eq!(long.len(), 249);
}

#[test]
fn permanent_failures_are_told_from_passing_ones() {
    let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
    let reason = never_deliverable(&too_large, 1_000_000).expect("never deliverable");
    assert!(reason.contains("1000000 bytes"), "{reason}");
    let invalid = KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTopic);
    assert!(never_deliverable(&invalid, 1).is_some());
    for passing in [
        RDKafkaErrorCode::MessageTimedOut,
        RDKafkaErrorCode::AllBrokersDown,
        RDKafkaErrorCode::NotEnoughReplicas,
        RDKafkaErrorCode::UnknownTopicOrPartition,
        // An operator grants it later: the events wait, they are not refused.
        RDKafkaErrorCode::TopicAuthorizationFailed,
        RDKafkaErrorCode::InvalidMessage,
    ] {
        let error = KafkaError::MessageProduction(passing);
        assert!(never_deliverable(&error, 1).is_none(), "{passing:?}");
    }
}

#[test]
fn options_are_checked_and_named() {
    assert!(parse_text(
        "bootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"audit-{{ objectRef.namespace }}\""
    )
    .is_ok());
    let errors = parse_text(
        "topic = \"audit-{{ verb\"\ncompression = \"brotli\"\nkey_field = \"user\"\nbatch = { max_events = 0 }\nmax_in_flight_events = 0\ncolour = 1",
    )
    .map(|_| ())
    .expect_err("invalid options");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for field in ["bootstrap_servers", "compression", "key_field", "colour"] {
        assert!(fields.contains(&field), "{field} not in {errors:?}");
    }
    let errors = parse_text(
        "bootstrap_servers = \"k:9092\"\ntopic = \"audit-{{ verb\"\nbatch = { max_events = 0 }\nmax_in_flight_events = 0\nmax_message_bytes = 10",
    )
    .map(|_| ())
    .expect_err("invalid values");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "topic",
            "batch.max_events",
            "max_in_flight_events",
            "max_message_bytes"
        ],
        "{errors:?}"
    );
}

#[test]
fn the_batch_defaults_are_the_sinks_own() {
    let table: BatchTable =
        auditflow_core::config::parse_options(&"max_bytes = 2048".parse().expect("TOML"))
            .expect("valid");
    let batch = table.or(DEFAULT_BATCH);
    assert_eq!(batch.max_bytes, 2048);
    assert_eq!(batch.max_events, DEFAULT_BATCH.max_events);
    assert_eq!(batch.timeout, Duration::from_millis(5));
}

#[test]
fn librdkafka_options_cannot_switch_the_guarantees_off_and_the_derived_client_is_checked() {
    let errors = parse_text(
        "bootstrap_servers = \"k:9092\"\ntopic = \"t\"\nlibrdkafka_options = { acks = \"1\", \"enable.idempotence\" = \"false\", \"linger.ms\" = \"50\" }",
    )
    .map(|_| ())
    .expect_err("reserved properties");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "librdkafka_options.acks",
            "librdkafka_options.enable.idempotence",
            "librdkafka_options.linger.ms"
        ]
    );
    assert!(
        errors[2].message.contains("set batch.timeout"),
        "{errors:?}"
    );
    // librdkafka wants message.timeout.ms above linger.ms: refused at validate, not at run.
    let errors = parse_text(
        "bootstrap_servers = \"k:9092\"\ntopic = \"t\"\nbatch = { timeout = \"2s\" }\nmessage_timeout = \"1s\"",
    )
    .map(|_| ())
    .expect_err("an inconsistent client");
    assert_eq!(errors[0].field, "message_timeout", "{errors:?}");
    let errors = parse_text(
        "bootstrap_servers = \"k:9092\"\ntopic = \"t\"\nbatch = { max_events = 2000000 }",
    )
    .map(|_| ())
    .expect_err("out of librdkafka's range");
    assert!(
        errors[0].message.contains("librdkafka refuses"),
        "{errors:?}"
    );
}

#[test]
fn slots_hand_out_each_index_once_and_drain_every_message() {
    let mut slots = Slots::new(2);
    let event = || audit(r#"{"auditID":"a","stage":"ResponseComplete","verb":"get"}"#);
    let message = |event| InFlight {
        event,
        size: 1,
        attempt: 1,
    };
    let (first, _) = slots.put(message(event())).ok().expect("a free slot");
    let (second, _) = slots.put(message(event())).ok().expect("a free slot");
    assert_ne!(first, second);
    assert!(slots.put(message(event())).is_err(), "full");
    assert_eq!(slots.in_flight(), 2);
    assert!(slots.take(first).is_some());
    assert!(
        slots.take(first).is_none(),
        "a report for a freed slot settles nothing"
    );
    assert_eq!(slots.drain().len(), 1);
    assert_eq!(slots.in_flight(), 0);
}

#[test]
fn aliases_of_reserved_properties_and_a_queue_smaller_than_a_message_are_refused() {
    let errors = parse_text(
        "bootstrap_servers = \"k:9092\"\ntopic = \"t\"\nlibrdkafka_options = { \"delivery.timeout.ms\" = \"1000\", \"delivery.report.only.error\" = \"true\", \"metadata.broker.list\" = \"x:9092\" }",
    )
    .map(|_| ())
    .expect_err("reserved aliases");
    assert_eq!(errors.len(), 3, "{errors:?}");
    let errors = parse_text(
        "bootstrap_servers = \"k:9092\"\ntopic = \"t\"\nlibrdkafka_options = { \"queue.buffering.max.kbytes\" = \"500\" }",
    )
    .map(|_| ())
    .expect_err("a queue smaller than one message");
    assert_eq!(
        errors[0].field,
        "librdkafka_options.queue.buffering.max.kbytes"
    );
}
