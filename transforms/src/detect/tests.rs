//! Unit tests of rule loading, compilation and evaluation.

use std::sync::Arc;

use auditflow_core::event::{AuditEvent, Event, Payload, Priority};

use super::compile::compile_rules;
use super::engine::Engine;
use super::rules::RuleSet;
use super::stateful::DetectState;
use super::CompiledRule;

fn compile(text: &str) -> Result<Vec<CompiledRule>, String> {
    let mut set = RuleSet::default();
    set.add_text("rules.yaml".into(), text)
        .map_err(|e| e.to_string())?;
    compile_rules(&set).map_err(|e| e.to_string())
}

fn event(json: &str) -> Event {
    Event::new(
        Payload::Audit(Arc::new(AuditEvent::parse(json).unwrap())),
        "test".into(),
    )
}

const CREATE_POD: &str = r#"{"auditID":"1","stage":"ResponseComplete","verb":"create","requestURI":"/api/v1/namespaces/ns/pods","user":{"username":"alice","groups":["a","b"]},"objectRef":{"resource":"pods","namespace":"ns"},"responseStatus":{"code":201},"stageTimestamp":"2026-11-25T10:00:00.123456Z","requestObject":{"spec":{"containers":[{"image":"nginx:1.27"},{"image":"busybox"}]}}}"#;

/// The names of the rules that match `json`.
fn matching(rules: Vec<CompiledRule>, json: &str) -> Vec<String> {
    let mut engine = Engine::new(rules.into(), DetectState::new(10), "h".into());
    let mut found = Vec::new();
    engine.evaluate(&event(json), &mut found);
    found.into_iter().map(|m| m.alert.rule).collect()
}

fn rule(name: &str, condition: &str) -> String {
    format!("- rule: {name}\n  desc: d\n  condition: {condition}\n  output: o\n  priority: INFO\n  source: k8s_audit\n")
}

#[test]
fn lists_inside_lists_expand_and_unknown_names_stay_values() {
    let text = format!(
        "- list: inner\n  items: [busybox]\n- list: outer\n  items: [inner, \"nginx\"]\n{}{}",
        rule("Known", "ka.req.pod.containers.image.repository in (outer)"),
        rule(
            "Literal",
            "ka.req.pod.containers.image.repository in (undefined_list, nginx)"
        )
    );
    assert_eq!(matching(compile(&text).unwrap(), CREATE_POD), vec!["Known"]);
}

#[test]
fn override_append_replace_and_enable_only_items_change_loaded_rules() {
    let text = format!(
        "{}{}{}- rule: B\n  enabled: false\n",
        rule("A", "ka.verb = create"),
        "- rule: A\n  condition: and ka.user.name = bob\n  priority: ERROR\n  override:\n    condition: append\n    priority: replace\n",
        rule("B", "ka.verb = create"),
    );
    let rules = compile(&text).unwrap();
    assert_eq!(rules.len(), 1, "B is disabled");
    assert_eq!(rules[0].priority, Priority::Error);
    assert!(
        matching(rules, CREATE_POD).is_empty(),
        "the appended `and ka.user.name = bob` holds"
    );
    let error = compile(&format!(
        "{}- rule: A\n  condition: and ka.verb = get\n  output: x\n  override:\n    condition: append\n",
        rule("A", "ka.verb = create")
    ))
    .unwrap_err();
    assert!(
        error.contains("`output` is given without saying how to merge it"),
        "{error}"
    );
}

#[test]
fn outputs_render_fields_lists_and_missing_values_as_falco_does() {
    let text = "- rule: R\n  condition: ka.verb = create\n  output: >\n    user=%ka.user.name groups=%ka.user.groups images=%ka.req.pod.containers.image\n    name=%ka.target.name 100%\n  priority: NOTICE\n  source: k8s_audit\n  tags: [k8s]\n";
    let mut engine = Engine::new(
        compile(text).unwrap().into(),
        DetectState::new(10),
        "h".into(),
    );
    let mut found = Vec::new();
    engine.evaluate(&event(CREATE_POD), &mut found);
    let alert = &found[0].alert;
    assert_eq!(
        alert.output,
        "10:00:00.123456000: Notice user=alice groups=(a,b) images=(nginx:1.27,busybox) name=<NA> 100%"
    );
    assert_eq!(alert.time, "2026-11-25T10:00:00.123456000Z");
    assert_eq!(
        alert.output_fields["ka.target.name"],
        serde_json::Value::Null
    );
    assert_eq!(alert.output_fields["ka.user.name"], "alice");
    assert_eq!(alert.tags, vec!["k8s"]);
}

#[test]
fn rules_that_need_another_verb_are_skipped_by_the_index() {
    let text = format!(
        "- macro: kmodify\n  condition: ka.verb in (create, update)\n{}{}{}",
        rule("Modify", "kmodify and ka.target.resource = pods"),
        rule("Narrowed", "kmodify and ka.verb = update"),
        rule("Any", "not ka.verb = get or ka.user.name = alice")
    );
    let text = format!(
        "{text}{}",
        rule(
            "Started",
            "jevt.value[/stage] = ResponseStarted and ka.verb in (create, get)"
        )
    );
    let rules = compile(&text).unwrap();
    assert_eq!(
        rules[3].stages.as_ref().map(|s| s.to_vec()),
        Some(vec!["ResponseStarted".to_string()])
    );
    assert!(rules[3].may_match("get", "ResponseStarted"));
    assert!(!rules[3].may_match("get", "ResponseComplete"));
    let verbs: Vec<Option<Vec<String>>> = rules
        .iter()
        .map(|r| r.verbs.as_ref().map(|v| v.to_vec()))
        .collect();
    assert_eq!(
        verbs,
        vec![
            Some(vec!["create".to_string(), "update".to_string()]),
            Some(vec!["update".to_string()]),
            None,
            Some(vec!["create".to_string(), "get".to_string()]),
        ]
    );
    assert_eq!(matching(rules, CREATE_POD), vec!["Modify", "Any"]);
}

#[test]
fn macro_cycles_and_unknown_macros_are_errors_naming_the_rule() {
    let cycle = format!(
        "- macro: a\n  condition: b\n- macro: b\n  condition: a\n{}",
        rule("R", "a")
    );
    let error = compile(&cycle).unwrap_err();
    assert!(
        error.contains("rules.yaml:5:1: rule \"R\": macro `a` refers to itself"),
        "{error}"
    );
    let unknown = format!("- macro: a\n  condition: nowhere\n{}", rule("R", "a"));
    let error = compile(&unknown).unwrap_err();
    assert!(
        error.contains("unknown macro `nowhere` (used in macro `a`)"),
        "{error}"
    );
}

#[test]
fn appends_to_lists_and_macros_not_defined_define_them_with_a_notice() {
    let mut set = RuleSet::default();
    set.add_text("r.yaml".into(), "- list: l\n  items: [a]\n  append: true\n")
        .unwrap();
    assert_eq!(set.lists["l"].items, vec!["a"]);
    assert!(set.notices[0].contains("appends to a list not defined before"));
}
