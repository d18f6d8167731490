//! Tests of the event model: decoding, losslessness, edits and bad input.

use super::*;

const CONFIGMAP: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/configmaps/app","verb":"delete","user":{"username":"alice","groups":["dev","system:authenticated"]},"impersonatedUser":{"username":"bob"},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.31","objectRef":{"resource":"configmaps","namespace":"prod","name":"app","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"DeleteOptions","n":1.50},"responseObject":{"kind":"Status"},"requestReceivedTimestamp":"2026-11-24T10:00:00.000001Z","stageTimestamp":"2026-11-24T10:00:00.000201Z","annotations":{"authorization.k8s.io/decision":"allow"},"futureField":{"x":[1,2,3]}}"#;

#[test]
fn header_is_typed() {
    let event = AuditEvent::parse(CONFIGMAP).unwrap();
    let header = event.header();
    assert_eq!(header.audit_id(), "a1");
    assert_eq!(*header.stage(), Stage::ResponseComplete);
    assert_eq!(header.level(), Some(Level::RequestResponse));
    assert_eq!(header.verb(), "delete");
    assert_eq!(header.user().groups(), vec!["dev", "system:authenticated"]);
    assert_eq!(header.impersonated_user().unwrap().username(), "bob");
    assert_eq!(header.response_code(), Some(200));
    assert_eq!(
        header.annotation("authorization.k8s.io/decision"),
        Some("allow")
    );
    let object = header.object_ref().unwrap();
    assert_eq!(object.namespace(), Some("prod"));
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

/// The header of `CONFIGMAP`, field by field, as `header_is_typed` and the rest expect it.
fn assert_configmap_header(header: AuditHeader<'_>) {
    assert_eq!(header.api_version(), Some("audit.k8s.io/v1"));
    assert_eq!(header.audit_id(), "a1");
    assert_eq!(
        header.request_uri(),
        "/api/v1/namespaces/prod/configmaps/app"
    );
    assert_eq!(header.user().username(), "alice");
    assert_eq!(header.user().groups().join(","), "dev,system:authenticated");
    assert_eq!(header.source_ips().first(), Some("10.0.0.1"));
    assert_eq!(header.user_agent(), Some("kubectl/v1.31"));
    let object = header.object_ref().unwrap();
    assert_eq!(object.resource(), Some("configmaps"));
    assert_eq!(object.name(), Some("app"));
    assert_eq!(object.api_version(), Some("v1"));
    assert_eq!(
        header.request_received_timestamp(),
        Some("2026-11-24T10:00:00.000001Z")
    );
    assert_eq!(
        header.stage_timestamp(),
        Some("2026-11-24T10:00:00.000201Z")
    );
    assert_eq!(
        header.annotations().collect::<Vec<_>>(),
        vec![("authorization.k8s.io/decision", "allow")]
    );
}

#[test]
fn header_strings_are_read_from_the_kept_text_wherever_the_event_starts() {
    // Alone, after whitespace, as the first and as a later item of a list.
    assert_configmap_header(AuditEvent::parse(CONFIGMAP).unwrap().header());
    let padded = AuditEvent::parse(&format!(" \t {CONFIGMAP} \n")).unwrap();
    assert_configmap_header(padded.header());
    let owned = decode_document_owned(format!("  {CONFIGMAP}")).unwrap();
    assert_configmap_header(owned[0].as_ref().unwrap().header());
    let list =
        format!(r#"  {{"kind":"EventList","items":[ {CONFIGMAP} , {{"x":1}}, {CONFIGMAP}]}}"#);
    let items = decode_document(&list).unwrap();
    assert_configmap_header(items[0].as_ref().unwrap().header());
    assert_configmap_header(items[2].as_ref().unwrap().header());
    // An edit keeps the header while the text around it is rewritten.
    let mut edit = items[2].as_ref().unwrap().edit().unwrap();
    edit.remove("requestObject");
    edit.remove("kind");
    let edited = edit.finish().unwrap();
    assert_configmap_header(edited.header());
    assert_eq!(edited, AuditEvent::parse(edited.as_json()).unwrap());
}

#[test]
fn escaped_header_strings_are_unescaped_and_plain_ones_kept_as_written() {
    let text = r#"{"auditID":"a\u0031","stage":"Response\u0043omplete","verb":"get","user":{"username":"a\"b","groups":["x\/y","plain"]},"sourceIPs":["10.0.0.\u0031"],"annotations":{"k\u0031":"v\n","k2":"w"},"objectRef":{"name":"n\u00e9"}}"#;
    let event = AuditEvent::parse(text).unwrap();
    let header = event.header();
    assert_eq!(header.audit_id(), "a1");
    assert_eq!(*header.stage(), Stage::ResponseComplete);
    assert_eq!(header.user().username(), "a\"b");
    assert_eq!(header.user().groups(), vec!["x/y", "plain"]);
    assert_eq!(header.source_ips().first(), Some("10.0.0.1"));
    assert_eq!(header.annotation("k1"), Some("v\n"));
    assert_eq!(header.annotation("k2"), Some("w"));
    assert_eq!(header.object_ref().unwrap().name(), Some("né"));
    assert_eq!(event.as_json(), text, "the text itself is kept as written");
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
    assert_eq!(edited.header().level(), Some(Level::Request));
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
    assert_eq!(edited.header().level(), Some(Level::Metadata));
    assert!(edited.response_object().is_some());
    // A header field: parsed again.
    let mut edit = event.edit().unwrap();
    edit.set("verb", &"patch".into()).unwrap();
    let edited = edit.finish().unwrap();
    assert_eq!(edited.header().verb(), "patch");
    assert_eq!(edited, AuditEvent::parse(edited.as_json()).unwrap());
    // A level no apiserver writes is refused, as decoding refuses it.
    let mut edit = event.edit().unwrap();
    edit.set("level", &"Everything".into()).unwrap();
    assert!(edit.finish().is_err());
}

/// An event with the given extra top-level fields (a JSON fragment starting with a comma).
fn event_with(id: &str, extra: &str) -> String {
    format!(r#"{{"auditID":"{id}","stage":"ResponseComplete","verb":"get"{extra}}}"#)
}

#[test]
fn list_items_with_escapes_unicode_and_nested_lists_are_read_in_one_pass() {
    let escaped = event_with(
        "e\\u0031",
        r#","user":{"username":"al\u00efce \ud83d\ude00 \"q\" \\ \/","groups":["g\tx"]},"annotations":{"k\u0031":"v","k1":"w"}"#,
    );
    let unicode = event_with(
        "ü",
        r#","requestURI":"/api/v1/namespaces/ñ","requestObject":{"a":"ö\"]}"}"#,
    );
    let nested = event_with(
        "n",
        r#","items":[{"kind":"EventList","items":[]}],"responseObject":{"kind":"EventList","items":[[1,{"x":null}]]}"#,
    );
    let list = format!(
        "{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[ {escaped} ,\n{unicode},{nested} ],\"metadata\":{{}}}}"
    );
    let items = decode_document(&list).unwrap();
    let events: Vec<&AuditEvent> = items.iter().map(|item| item.as_ref().unwrap()).collect();
    assert_eq!(events.len(), 3);
    let header = events[0].header();
    assert_eq!(header.audit_id(), "e1");
    assert_eq!(header.user().username(), "al\u{ef}ce \u{1F600} \"q\" \\ /");
    assert_eq!(header.user().groups(), vec!["g\tx"]);
    assert_eq!(header.annotations().collect::<Vec<_>>(), vec![("k1", "w")]);
    assert_eq!(events[0].as_json(), escaped);
    assert_eq!(events[1].header().audit_id(), "ü");
    assert_eq!(events[1].header().request_uri(), "/api/v1/namespaces/ñ");
    assert_eq!(events[1].request_object(), Some(r#"{"a":"ö\"]}"}"#));
    assert_eq!(events[1].as_json(), unicode);
    assert_eq!(
        events[2].response_object(),
        Some(r#"{"kind":"EventList","items":[[1,{"x":null}]]}"#)
    );
    assert_eq!(events[2].as_json(), nested);
}

#[test]
fn bad_list_items_spoil_only_themselves() {
    let good = event_with("g", "");
    let wrong_type = event_with(
        "t",
        r#","user":{"username":5},"requestObject":{"deep":[{"x":1}]}"#,
    );
    let duplicate = event_with("d", r#","verb":"list""#);
    let bad_level = event_with("l", r#","level":"Loud""#);
    let inner_list = r#"{"kind":"EventList","items":[]}"#;
    let items_not_a_list = event_with("i", r#","items":5"#);
    let lone_surrogate = event_with("\\ud800", "");
    let list = format!(
        r#"{{"kind":"EventList","items":[{good},{wrong_type},"text",[1],null,{duplicate},{bad_level},{inner_list},{items_not_a_list},{lone_surrogate},{good}]}}"#
    );
    let items = decode_document(&list).unwrap();
    let kinds: Vec<Option<&str>> = items
        .iter()
        .map(|item| item.as_ref().err().map(|bad| bad.error.kind()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            None,
            Some("invalid_json"),
            Some("not_audit_event"),
            Some("not_audit_event"),
            Some("not_audit_event"),
            Some("invalid_json"),
            Some("not_audit_event"),
            Some("not_audit_event"),
            Some("invalid_json"),
            Some("invalid_json"),
            None,
        ]
    );
    let inputs: Vec<&str> = items
        .iter()
        .filter_map(|item| item.as_ref().err().map(|bad| bad.input.as_str()))
        .collect();
    assert_eq!(inputs[0], wrong_type);
    assert_eq!(&inputs[1..4], &["\"text\"", "[1]", "null"]);
    assert_eq!(inputs[4], duplicate);
    let messages: Vec<String> = items
        .iter()
        .filter_map(|item| item.as_ref().err().map(|bad| bad.error.to_string()))
        .collect();
    assert!(messages[0].contains("expected a string"), "{}", messages[0]);
    assert!(messages[1].contains("a JSON string"), "{}", messages[1]);
    assert!(
        messages[4].contains("duplicate field `verb`"),
        "{}",
        messages[4]
    );
    assert!(
        messages[6].contains("where one Event was expected"),
        "{}",
        messages[6]
    );
    assert!(messages[8].contains("surrogate"), "{}", messages[8]);
    assert_eq!(items[10].as_ref().unwrap().as_json(), good);
}

#[test]
fn a_syntax_error_anywhere_spoils_the_whole_document() {
    let good = event_with("g", "");
    let broken_bodies = [
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":-}"#,
        r#"{"a":1e}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12g4"}"#,
        "{\"a\":\"tab\there\"}",
        r#"{"a":tru}"#,
        r#"{"a":[1,]}"#,
        r#"{"a":{"b":1,}}"#,
        r#"{"a" 1}"#,
        r#"{"a":1 "b":2}"#,
        r#"{a:1}"#,
        r#"{"a":"open}"#,
        r#"{"a":[1"#,
    ];
    for body in broken_bodies {
        let single = event_with("s", &format!(r#","requestObject":{body}"#));
        let error = decode_document(&single).expect_err(&single);
        assert_eq!(error.kind(), "invalid_json", "{single}: {error}");
        let list = format!(r#"{{"kind":"EventList","items":[{good},{single}]}}"#);
        let error = decode_document(&list).expect_err(&list);
        assert_eq!(error.kind(), "invalid_json", "{list}: {error}");
    }
    let error = decode_document(&format!("{good} x")).unwrap_err();
    assert!(error.to_string().contains("trailing characters"), "{error}");
    let error = decode_document(&format!("{good},")).unwrap_err();
    assert_eq!(error.kind(), "invalid_json");
}

#[test]
fn valid_bodies_of_every_kind_are_located() {
    let body = r#"{"n":[-0,1.5e-3,2E+2,0.25,-12],"t":true,"f":false,"z":null,"s":"\\\"\/\b\f\n\r\t\u00e9","e":{},"l":[]}"#;
    let text = event_with(
        "v",
        &format!(r#","requestObject":{body},"responseObject":null"#),
    );
    let event = AuditEvent::parse(&text).unwrap();
    assert_eq!(event.request_object(), Some(body));
    assert_eq!(event.response_object(), None);
}

#[test]
fn nesting_is_limited_at_128_levels() {
    let nested = |depth: usize| {
        event_with(
            "n",
            &format!(
                r#","requestObject":{}{}"#,
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            ),
        )
    };
    assert!(AuditEvent::parse(&nested(128)).is_ok());
    let error = AuditEvent::parse(&nested(129)).unwrap_err();
    assert!(
        error.to_string().contains("nested deeper than 128"),
        "{error}"
    );
    let list = format!(r#"{{"kind":"EventList","items":[{}]}}"#, nested(127));
    assert!(decode_document(&list).is_err());
}

#[test]
fn typed_fields_accept_null_and_refuse_wrong_types() {
    let nulls = event_with(
        "x",
        r#","apiVersion":null,"level":null,"user":null,"sourceIPs":null,"objectRef":{"name":null},"responseStatus":{"code":null},"annotations":null,"kind":null"#,
    );
    let event = AuditEvent::parse(&nulls).unwrap();
    assert_eq!(event.header().level(), None);
    assert_eq!(event.header().object_ref().unwrap().name(), None);
    let wrong = [
        r#","user":{"groups":null}"#,
        r#","user":"alice""#,
        r#","sourceIPs":[null]"#,
        r#","responseStatus":{"code":200.0}"#,
        r#","responseStatus":{"code":9223372036854775808}"#,
        r#","annotations":{"a":1}"#,
        r#","objectRef":{"name":{}}"#,
        r#","objectRef":{"name":"a","name":"b"}"#,
    ];
    for extra in wrong {
        let text = event_with("x", extra);
        let error = AuditEvent::parse(&text).expect_err(&text);
        assert_eq!(error.kind(), "invalid_json", "{text}: {error}");
    }
    let code = event_with("x", r#","responseStatus":{"code":-404,"unknown":[1]}"#);
    assert_eq!(
        AuditEvent::parse(&code).unwrap().header().response_code(),
        Some(-404)
    );
}

#[test]
fn generated_events_read_as_serde_json_reads_them() {
    let mut generator = crate::generate::Generator::new(crate::generate::GeneratorOptions {
        seed: 7,
        ..crate::generate::GeneratorOptions::default()
    });
    for _ in 0..300 {
        let mut line = String::new();
        generator.next_event(&mut line);
        let event = AuditEvent::parse(&line).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let header = event.header();
        assert_eq!(value["auditID"], header.audit_id());
        assert_eq!(value["verb"], header.verb());
        assert_eq!(
            value["user"]["username"].as_str().unwrap_or_default(),
            header.user().username()
        );
        assert_eq!(value["stage"], header.stage().as_str());
        let groups: Vec<&str> = value["user"]["groups"]
            .as_array()
            .map(|groups| groups.iter().filter_map(|g| g.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(header.user().groups(), groups);
        let name = header.object_ref().and_then(|object| object.name());
        assert_eq!(value["objectRef"]["name"].as_str(), name);
        assert_eq!(
            value["responseStatus"]["code"].as_i64(),
            header.response_code()
        );
        let body = |raw: Option<&str>| {
            raw.map(|raw| serde_json::from_str::<serde_json::Value>(raw).unwrap())
        };
        assert_eq!(
            body(event.request_object()),
            value.get("requestObject").cloned()
        );
        assert_eq!(
            body(event.response_object()),
            value.get("responseObject").cloned()
        );
        assert_eq!(event.as_json(), line);
    }
}
