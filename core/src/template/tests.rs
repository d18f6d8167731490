use std::sync::Arc;

use super::*;
use crate::event::{Alert, AuditEvent, Priority};

fn audit(text: &str) -> Event {
    let event = AuditEvent::parse(text).expect("a test audit event");
    Event::new(Payload::Audit(Arc::new(event)), "in".into())
}

const DELETE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/production/configmaps/app-config","verb":"delete","user":{"username":"alice@example.com","groups":["dev"]},"sourceIPs":["10.0.0.7","10.0.0.8"],"objectRef":{"resource":"configmaps","namespace":"production","name":"app-config","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"DeleteOptions","propagationPolicy":"Background"},"requestReceivedTimestamp":"2026-11-24T17:42:18.000000Z","stageTimestamp":"2026-11-24T17:42:18.004781Z","annotations":{"authorization.k8s.io/decision":"allow"}}"#;

fn render(template: &str, event: &Event) -> (String, usize) {
    let template = Template::parse(template).expect("a valid template");
    let (text, rendered) = template.render_to_string(event);
    (text, rendered.missing)
}

#[test]
fn header_fields_render_from_the_typed_header() {
    let event = audit(DELETE);
    assert_eq!(
        render("audit-{{ objectRef.namespace }}", &event),
        ("audit-production".into(), 0)
    );
    assert_eq!(
        render(
            "{{verb}}.{{ objectRef.resource }}.{{ responseStatus.code }}",
            &event
        ),
        ("delete.configmaps.200".into(), 0)
    );
    assert_eq!(
        render(
            "{{ user.username }} {{ sourceIPs }} {{ stage }} {{ auditID }} {{ level }}",
            &event
        ),
        (
            "alice@example.com 10.0.0.7 ResponseComplete a-1 RequestResponse".into(),
            0
        )
    );
    assert_eq!(
        render("{{ annotations.authorization.k8s.io/decision }}", &event),
        ("allow".into(), 0)
    );
}

#[test]
fn other_paths_are_read_from_the_event_text() {
    let event = audit(DELETE);
    assert_eq!(
        render(
            "{{ requestObject.propagationPolicy }}/{{ user.groups.0 }}",
            &event
        ),
        ("Background/dev".into(), 0)
    );
}

#[test]
fn time_items_use_the_event_time_not_the_arrival() {
    let event = audit(DELETE);
    assert_eq!(
        render("auditflow-audit-%Y.%m.%d/hour=%H", &event),
        ("auditflow-audit-2026.11.24/hour=17".into(), 0)
    );
    assert_eq!(render("100%%", &event), ("100%".into(), 0));
}

#[test]
fn a_missing_field_renders_its_default_or_the_fallback_and_is_counted() {
    let event = audit(
        r#"{"auditID":"b","stage":"ResponseComplete","verb":"list","requestURI":"/api/v1/nodes","objectRef":{"resource":"nodes"}}"#,
    );
    assert_eq!(
        render(
            "audit-{{ objectRef.namespace | default(\"cluster\") }}",
            &event
        ),
        ("audit-cluster".into(), 1)
    );
    assert_eq!(
        render("{{ objectRef.name }}-{{ requestObject.spec }}", &event),
        (
            format!("{MISSING_FIELD_FALLBACK}-{MISSING_FIELD_FALLBACK}"),
            2
        )
    );
}

#[test]
fn alerts_render_their_fields_and_time() {
    let mut output_fields = indexmap::IndexMap::new();
    output_fields.insert("ka.target.namespace".to_string(), "kube-system".into());
    let alert = Alert {
        time: "2026-11-24T02:47:00.000000000Z".into(),
        rule: "Create Privileged Pod".into(),
        priority: Priority::Warning,
        output: "x".into(),
        output_fields,
        source: "k8s_audit".into(),
        tags: vec![],
        hostname: "h".into(),
    };
    let event = Event::new(Payload::Alert(Arc::new(alert)), "detect".into());
    assert_eq!(
        render(
            "alerts-{{ priority }}-{{ output_fields.ka.target.namespace }}-%H",
            &event
        ),
        ("alerts-Warning-kube-system-02".into(), 0)
    );
}

#[test]
fn a_constant_template_is_known_as_one() {
    let template = Template::parse("kubernetes-audit").unwrap();
    assert_eq!(template.as_constant(), Some("kubernetes-audit"));
    assert!(Template::parse("a-%Y").unwrap().as_constant().is_none());
    let fields = Template::parse("{{ verb }}-{{ requestObject.kind }}")
        .unwrap()
        .fields();
    assert_eq!(fields, vec!["verb", "requestObject.kind"]);
}

#[test]
fn bad_templates_say_what_is_wrong() {
    for (text, says) in [
        ("audit-{{ verb", "is not closed"),
        ("audit-verb }}", "without its"),
        ("{{ }}", "does not name a field"),
        ("{{ a..b }}", "does not name a field"),
        ("{{ verb | upper }}", "unknown filter"),
        ("{{ verb | default(x) }}", "unknown filter"),
        ("audit-%Q", "strftime"),
    ] {
        let error = Template::parse(text).expect_err(text);
        assert!(error.contains(says), "{text}: {error}");
    }
}

#[test]
fn a_wildcard_pattern_keeps_the_literal_text() {
    let pattern = |text: &str| Template::parse(text).unwrap().wildcard_pattern();
    assert_eq!(pattern("auditflow-audit-%Y.%m.%d"), "auditflow-audit-*.*.*");
    assert_eq!(pattern("audit-{{ objectRef.namespace }}-%Y%m"), "audit-*-*");
    assert_eq!(pattern("plain"), "plain");
}

#[test]
fn a_wildcard_pattern_of_a_dashed_prefix() {
    let pattern = Template::parse("t-days-10579-7866145-audit-%Y.%m.%d")
        .unwrap()
        .wildcard_pattern();
    assert_eq!(pattern, "t-days-10579-7866145-audit-*.*.*");
}
