//! Tests of the event model: decoding, losslessness, edits and bad input.

use super::*;

const CONFIGMAP: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/configmaps/app","verb":"delete","user":{"username":"alice","groups":["dev","system:authenticated"]},"impersonatedUser":{"username":"bob"},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.31","objectRef":{"resource":"configmaps","namespace":"prod","name":"app","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"DeleteOptions","n":1.50},"responseObject":{"kind":"Status"},"requestReceivedTimestamp":"2026-11-24T10:00:00.000001Z","stageTimestamp":"2026-11-24T10:00:00.000201Z","annotations":{"authorization.k8s.io/decision":"allow"},"futureField":{"x":[1,2,3]}}"#;

#[test]
fn header_is_typed() {
    let event = AuditEvent::parse(CONFIGMAP).unwrap();
    let header = event.header();
    assert_eq!(header.audit_id, "a1");
    assert_eq!(header.stage, Stage::ResponseComplete);
    assert_eq!(header.level, Some(Level::RequestResponse));
    assert_eq!(header.verb, "delete");
    assert_eq!(header.user.groups, vec!["dev", "system:authenticated"]);
    assert_eq!(header.impersonated_user.as_ref().unwrap().username, "bob");
    assert_eq!(header.response_code(), Some(200));
    assert_eq!(
        header.annotation("authorization.k8s.io/decision"),
        Some("allow")
    );
    let object = header.object_ref.as_ref().unwrap();
    assert_eq!(object.namespace.as_deref(), Some("prod"));
}

#[test]
fn bodies_are_located_verbatim() {
    let event = AuditEvent::parse(CONFIGMAP).unwrap();
    assert_eq!(
        event.request_object(),
        Some(r#"{"kind":"DeleteOptions","n":1.50}"#)
    );
    assert_eq!(event.response_object(), Some(r#"{"kind":"Status"}"#));
}

#[test]
fn unchanged_event_is_written_byte_for_byte() {
    let event = AuditEvent::parse(CONFIGMAP).unwrap();
    assert_eq!(event.as_json(), CONFIGMAP);
}

#[test]
fn pretty_printed_event_becomes_one_equal_line() {
    let value: serde_json::Value = serde_json::from_str(CONFIGMAP).unwrap();
    let pretty = format!(
        "  {}\n",
        CONFIGMAP.replace(",\"", ",\n  \"").replace(":{", ": {\r\n")
    );
    let event = AuditEvent::parse(&pretty).unwrap();
    assert!(!event.as_json().contains('\n'));
    let back: serde_json::Value = serde_json::from_str(event.as_json()).unwrap();
    assert_eq!(back, value);
    assert_eq!(
        event.request_object(),
        Some(r#"{"kind":"DeleteOptions","n":1.50}"#)
    );
}

#[test]
fn leading_whitespace_does_not_shift_bodies() {
    let event = AuditEvent::parse(&format!("   {CONFIGMAP}  ")).unwrap();
    assert_eq!(event.response_object(), Some(r#"{"kind":"Status"}"#));
}

#[test]
fn event_list_items_are_decoded_one_by_one() {
    let list = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{CONFIGMAP},{{"kind":"Event"}},{CONFIGMAP}]}}"#
    );
    let items = decode_document(&list).unwrap();
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok());
    assert!(
        matches!(&items[1], Err(ItemError { error: EventError::NotAudit(_), input }) if input == r#"{"kind":"Event"}"#)
    );
    assert_eq!(items[2].as_ref().unwrap().as_json(), CONFIGMAP);
}

#[test]
fn v1beta1_is_accepted() {
    let text = CONFIGMAP.replace("audit.k8s.io/v1", "audit.k8s.io/v1beta1");
    assert!(AuditEvent::parse(&text).is_ok());
}

#[test]
fn edits_keep_untouched_fields_verbatim() {
    let event = AuditEvent::parse(CONFIGMAP).unwrap();
    let mut edit = event.edit().unwrap();
    assert!(edit.remove("responseObject"));
    edit.set("level", &"Request".into()).unwrap();
    let edited = edit.finish().unwrap();
    assert_eq!(edited.response_object(), None);
    assert_eq!(edited.header().level, Some(Level::Request));
    assert!(edited.as_json().contains(r#""n":1.50"#));
    assert!(edited.as_json().contains(r#""futureField":{"x":[1,2,3]}"#));
    assert!(edited
        .as_json()
        .starts_with(r#"{"kind":"Event","apiVersion""#));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let cases = [
        "",
        "not json",
        "[1,2]",
        "42",
        "\"text\"",
        "null",
        "{\"kind\": 0}",
        "{\"kind\":\"Pod\",\"auditID\":\"x\"}",
        "{\"apiVersion\":\"v1\",\"kind\":\"Event\"}",
        "{\"auditID\":\"x\",\"stage\":\"ResponseComplete\"}",
        "{\"auditID\":5,\"stage\":\"ResponseComplete\",\"verb\":\"get\"}",
        "{\"auditID\":\"x\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"level\":\"Loud\"}",
        "{\"kind\":\"EventList\"}",
        "{\"auditID\":\"x\"",
    ];
    for case in cases {
        assert!(decode_document(case).is_err(), "accepted: {case}");
    }
}

#[test]
fn deep_nesting_is_an_error() {
    let deep = format!(
        "{{\"auditID\":\"x\",\"stage\":\"Panic\",\"verb\":\"get\",\"requestObject\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(decode_document(&deep).is_err());
}

#[test]
fn error_record_truncates_input() {
    let input = "x".repeat(100_000);
    let record = error_record("in", "bad", &input);
    assert_eq!(record["input"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(record["component_id"], "in");
}

#[test]
fn update_rewrites_one_field_and_keeps_key_order() {
    let text = r#"{"auditID":"a","stage":"ResponseComplete","verb":"create","requestObject":{"z":1,"data":{"k":"v"},"a":2},"after":1.50}"#;
    let event = AuditEvent::parse(text).unwrap();
    let mut edit = event.edit().unwrap();
    let changed = edit
        .update("requestObject", |body| {
            body["data"]["k"] = "x".into();
            true
        })
        .unwrap();
    assert!(changed);
    assert!(!edit.update("missing", |_| true).unwrap());
    assert!(!edit.update("after", |_| false).unwrap());
    let edited = edit.finish().unwrap();
    assert_eq!(
        edited.as_json(),
        r#"{"auditID":"a","stage":"ResponseComplete","verb":"create","requestObject":{"z":1,"data":{"k":"x"},"a":2},"after":1.50}"#
    );
}

#[test]
fn a_finished_edit_is_the_event_its_text_decodes_to() {
    let event = AuditEvent::parse(CONFIGMAP).unwrap();
    // Bodies and level only: the header is kept, the bodies located while writing.
    let mut edit = event.edit().unwrap();
    edit.remove("requestObject");
    edit.set("level", &"Metadata".into()).unwrap();
    let edited = edit.finish().unwrap();
    assert_eq!(edited, AuditEvent::parse(edited.as_json()).unwrap());
    assert_eq!(edited.header().level, Some(Level::Metadata));
    assert!(edited.response_object().is_some());
    // A header field: parsed again.
    let mut edit = event.edit().unwrap();
    edit.set("verb", &"patch".into()).unwrap();
    let edited = edit.finish().unwrap();
    assert_eq!(edited.header().verb, "patch");
    assert_eq!(edited, AuditEvent::parse(edited.as_json()).unwrap());
    // A level no apiserver writes is refused, as decoding refuses it.
    let mut edit = event.edit().unwrap();
    edit.set("level", &"Everything".into()).unwrap();
    assert!(edit.finish().is_err());
}
