//! Tests of the condition language: parsing, errors, every operator on every
//! standard field, list and missing-field semantics, `jevt.value`, and
//! payloads that are not audit events.

use std::sync::Arc;

use super::*;
use crate::event::{Alert, AuditEvent, Event, Payload, Priority, Record};

/// A pod created by a kube-system service account, with a privileged container.
const POD_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"e1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/pods","verb":"create","user":{"username":"system:serviceaccount:kube-system:deployer","groups":["system:serviceaccounts","system:authenticated"]},"impersonatedUser":{"username":"bob"},"sourceIPs":["10.0.0.7","10.0.0.1"],"userAgent":"kubectl/v1.31","objectRef":{"resource":"pods","namespace":"kube-system","name":"nginx","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","spec":{"containers":[{"name":"c","image":"nginx:1.27","securityContext":{"privileged":true}}]}},"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}}"#;

/// An exec into a pod, forbidden.
const EXEC_FORBIDDEN: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"e2","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/pods/web-0/exec?command=sh","verb":"create","user":{"username":"alice","groups":["dev"]},"sourceIPs":["192.168.1.20"],"objectRef":{"resource":"pods","subresource":"exec","namespace":"prod","name":"web-0","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":403},"annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}"#;

/// A non-resource request without response, groups or annotations.
const HEALTHZ: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"e3","stage":"RequestReceived","requestURI":"/healthz","verb":"get","user":{"username":"system:anonymous"}}"#;

fn audit(text: &str) -> Event {
    let event = AuditEvent::parse(text).expect("test event parses");
    Event::new(Payload::Audit(Arc::new(event)), "src".into())
}

fn record() -> Event {
    let value = serde_json::json!({
        "component_id": "k8s",
        "error": "invalid JSON",
        "nested": {"code": 7, "tags": ["a", "b"], "flag": false, "none": null},
    });
    let serde_json::Value::Object(map) = value else {
        panic!("a JSON object");
    };
    let record: Record = map;
    Event::new(Payload::Record(Arc::new(record)), "src".into())
}

fn alert() -> Event {
    let alert = Alert {
        time: "2026-11-24T10:00:00.000000000Z".into(),
        rule: "Exec Into Pod".into(),
        priority: Priority::Warning,
        output: "exec".into(),
        output_fields: Default::default(),
        source: "k8s_audit".into(),
        tags: vec!["k8s".into()],
        hostname: "node-1".into(),
    };
    Event::new(Payload::Alert(Arc::new(alert)), "src".into())
}

fn matches(condition: &str, event: &Event) -> bool {
    match Condition::compile(condition) {
        Ok(compiled) => compiled.matches(event),
        Err(error) => panic!("`{condition}` does not compile: {error}"),
    }
}

#[track_caller]
fn check(condition: &str, event: &Event, expected: bool) {
    assert_eq!(matches(condition, event), expected, "`{condition}`");
}

fn compile_error(condition: &str) -> ConditionError {
    match Condition::compile(condition) {
        Ok(_) => panic!("`{condition}` compiled"),
        Err(error) => error,
    }
}

#[track_caller]
fn check_error(condition: &str, position: usize, message_part: &str) {
    let error = compile_error(condition);
    assert_eq!(error.position, position, "`{condition}`: {error}");
    assert!(
        error.message.contains(message_part),
        "`{condition}`: {error} does not say `{message_part}`"
    );
}

fn compare(field: &str, operator: Operator, value: &str) -> Expr {
    Expr::Compare(Comparison {
        field: FieldName {
            name: field.into(),
            arg: None,
            position: 1,
        },
        operator,
        operator_position: 1,
        operand: Operand::Value(Literal {
            text: value.into(),
            quoted: false,
            position: 1,
        }),
    })
}

/// The tree without positions, for comparing parses.
fn shape(expr: &Expr) -> String {
    match expr {
        Expr::And(items) => format!(
            "and({})",
            items.iter().map(shape).collect::<Vec<_>>().join(", ")
        ),
        Expr::Or(items) => format!(
            "or({})",
            items.iter().map(shape).collect::<Vec<_>>().join(", ")
        ),
        Expr::Not(inner) => format!("not({})", shape(inner)),
        Expr::Compare(c) => c.to_string(),
        Expr::Macro(m) => format!("macro {}", m.name),
    }
}

fn parsed_shape(text: &str) -> String {
    match parse(text) {
        Ok(expr) => shape(&expr),
        Err(error) => panic!("`{text}` does not parse: {error}"),
    }
}

// ---- parser ----

#[test]
fn not_binds_tighter_than_and_tighter_than_or() {
    assert_eq!(
        parsed_shape("a or b and c"),
        "or(macro a, and(macro b, macro c))"
    );
    assert_eq!(
        parsed_shape("a and b or c and d"),
        "or(and(macro a, macro b), and(macro c, macro d))"
    );
    assert_eq!(parsed_shape("not a and b"), "and(not(macro a), macro b)");
    assert_eq!(parsed_shape("not a or b"), "or(not(macro a), macro b)");
    assert_eq!(parsed_shape("not (a or b)"), "not(or(macro a, macro b))");
    assert_eq!(parsed_shape("not not a"), "not(not(macro a))");
    assert_eq!(
        parsed_shape("(a or b) and c"),
        "and(or(macro a, macro b), macro c)"
    );
}

#[test]
fn precedence_shows_in_evaluation() {
    let pod = audit(POD_CREATE);
    // or(false, and(true, false)) = false; a left-to-right reading would give true.
    check(
        "ka.verb = get or ka.verb = create and ka.target.resource = secrets",
        &pod,
        false,
    );
    check(
        "(ka.verb = get or ka.verb = create) and ka.target.resource = pods",
        &pod,
        true,
    );
    check("not ka.verb = get and ka.verb = create", &pod, true);
    check("not (ka.verb = create and ka.verb = get)", &pod, true);
}

#[test]
fn comparisons_parse_with_or_without_spaces() {
    assert_eq!(parsed_shape("ka.verb=create"), "ka.verb = create");
    assert_eq!(parsed_shape("ka.verb==create"), "ka.verb = create");
    assert_eq!(
        parsed_shape("ka.response.code>=400"),
        "ka.response.code >= 400"
    );
    assert_eq!(parsed_shape("ka.verb!=get"), "ka.verb != get");
    assert_eq!(parsed_shape("ka.verb   exists"), "ka.verb exists");
    assert_eq!(
        parsed_shape("(ka.verb=get)and(ka.uri=/x)"),
        "and(ka.verb = get, ka.uri = /x)"
    );
    assert_eq!(
        parsed_shape("ka.verb in(get,list)"),
        "ka.verb in (get, list)"
    );
}

#[test]
fn values_bare_quoted_and_listed() {
    let Ok(Expr::Compare(c)) = parse(r#"ka.user.name = system:serviceaccount:x:y"#) else {
        panic!("a comparison");
    };
    assert_eq!(
        c.operand,
        Operand::Value(Literal {
            text: "system:serviceaccount:x:y".into(),
            quoted: false,
            position: 16
        })
    );
    let Ok(Expr::Compare(c)) =
        parse(r#"ka.uri in ("a b", 'c"d', /api/v1, "e\"f\\g\n", 'it\'s', "\d")"#)
    else {
        panic!("a comparison");
    };
    let Operand::List(items) = c.operand else {
        panic!("a list");
    };
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(
        texts,
        ["a b", "c\"d", "/api/v1", "e\"f\\g\n", "it's", "\\d"]
    );
    let quoted: Vec<bool> = items.iter().map(|i| i.quoted).collect();
    assert_eq!(quoted, [true, true, false, true, true, true]);
    let positions: Vec<usize> = items.iter().map(|i| i.position).collect();
    assert_eq!(positions, [12, 19, 26, 35, 48, 57]);
}

#[test]
fn empty_value_lists_are_allowed_and_match_nothing() {
    assert_eq!(parsed_shape("ka.verb in ()"), "ka.verb in ()");
    assert_eq!(parsed_shape("ka.verb in ( )"), "ka.verb in ()");
    check("ka.verb in ()", &audit(POD_CREATE), false);
    check("ka.verb intersects ()", &audit(POD_CREATE), false);
    check("ka.uri pmatch ()", &audit(POD_CREATE), false);
}

#[test]
fn fields_take_bracketed_arguments() {
    let Ok(Expr::Compare(c)) = parse("jevt.value[/objectRef/resource] = pods") else {
        panic!("a comparison");
    };
    assert_eq!(c.field.name, "jevt.value");
    assert_eq!(c.field.arg.as_deref(), Some("/objectRef/resource"));
    assert_eq!(c.operator_position, 33);
    let Ok(Expr::Compare(c)) = parse("ka.uri.param[pretty] exists") else {
        panic!("a comparison");
    };
    assert_eq!(c.field.arg.as_deref(), Some("pretty"));
}

#[test]
fn bare_identifiers_are_macros() {
    let expr = parse("kube_system_ns and not (allowed_user or ka.verb = get)").unwrap();
    let names: Vec<(&str, usize)> = expr
        .macros()
        .iter()
        .map(|m| (m.name.as_str(), m.position))
        .collect();
    assert_eq!(names, [("kube_system_ns", 1), ("allowed_user", 25)]);
}

#[test]
fn printing_a_tree_reads_back_the_same() {
    let texts = [
        "ka.verb in (create, update) and not (ka.user.name startswith \"system:\" or ka.target.namespace = kube-system)",
        "a or b and c",
        "(a or b) and not (c and d)",
        "not not ka.verb exists",
        "ka.uri pmatch (/api, \"/a b\") or ka.user.name = \"\"",
        "jevt.value[/a~1b] = 'x\"y\\\\z'",
    ];
    for text in texts {
        let expr = parse(text).unwrap();
        let printed = expr.to_string();
        let reparsed = parse(&printed).unwrap_or_else(|e| panic!("`{printed}`: {e}"));
        assert_eq!(
            shape(&reparsed),
            shape(&expr),
            "`{text}` printed as `{printed}`"
        );
    }
    assert_eq!(
        parse("(a or b) and not (c and d)").unwrap().to_string(),
        "(a or b) and not (c and d)"
    );
}

#[test]
fn scan_field_reads_output_field_references() {
    let (field, len) = scan_field("ka.user.name) did x").unwrap();
    assert_eq!(
        (field.name.as_str(), field.arg, len),
        ("ka.user.name", None, 12)
    );
    let (field, len) = scan_field("jevt.value[/a/b] x").unwrap();
    assert_eq!(
        (field.name.as_str(), field.arg.as_deref(), len),
        ("jevt.value", Some("/a/b"), 16)
    );
    assert!(scan_field("jevt.value[/a").is_none());
    assert!(scan_field(" ka.verb").is_none());
    assert!(scan_field("").is_none());
}

// ---- errors ----

#[test]
fn error_positions_and_messages() {
    check_error(
        "",
        1,
        "expected a field, a macro, `not` or `(`, found the end",
    );
    check_error("ka.foo = x", 1, "unknown field `ka.foo`");
    check_error(
        "ka.verb = get and ka.nope exists",
        19,
        "unknown field `ka.nope`",
    );
    check_error("ka.verb equals get", 9, "expected an operator");
    check_error("ka.verb regex \"g.*\"", 9, "`regex` is not supported");
    check_error("ka.verb", 8, "after the field `ka.verb`, found the end");
    check_error("(ka.verb = get", 1, "unclosed `(`");
    check_error("ka.verb = get and (ka.uri = /x or (a)", 19, "unclosed `(`");
    check_error(
        "(ka.verb = get ka.uri = /x)",
        16,
        "expected `)`, `and` or `or`, found `ka.uri`",
    );
    check_error("ka.verb = \"get", 11, "unclosed string");
    check_error("ka.verb = 'get", 11, "expected a closing '");
    check_error(
        "ka.verb = get )",
        15,
        "expected `and`, `or` or the end of the condition, found `)`",
    );
    check_error("ka.verb = get extra", 15, "found `extra`");
    check_error("ka.verb =", 10, "expected a value after `=`, found the end");
    check_error(
        "ka.verb = (get)",
        11,
        "expected a value after `=`, found `(`",
    );
    check_error(
        "ka.verb in get",
        12,
        "expected `(` and a list of values after `in`",
    );
    check_error(
        "ka.verb in (get,",
        12,
        "unclosed `(`: expected `)` to end the list",
    );
    check_error(
        "ka.verb in (get, )",
        18,
        "expected a value in the list, found `)`",
    );
    check_error("ka.verb in (get list)", 17, "expected `,` or `)`");
    check_error("jevt.value[/a = b", 11, "unclosed `[`");
    check_error("ka.verb = get and", 18, "found the end of the condition");
    check_error("ka.verb = get or or", 18, "found `or`");
    check_error("and", 1, "found `and`");
    check_error("= get", 1, "found `=`");
    check_error("tolower(ka.user.name) = bob", 1, "transformers");
    check_error("ka.verb[0] = get", 1, "takes no argument");
    check_error("jevt.value = x", 1, "needs a JSON pointer");
    check_error("jevt.value[a/b] = x", 1, "not a JSON pointer");
    check_error("jevt.value[/a~2] = x", 1, "`~` must be followed by 0 or 1");
    check_error("ka.uri glob \"[z-a]\"", 13, "invalid glob pattern");
}

#[test]
fn positions_count_characters_not_bytes() {
    check_error("ka.user.name = \"é\" and ka.bad = x", 24, "unknown field");
    check_error("ka.user.name = ünïcödé extra", 24, "found `extra`");
}

#[test]
fn unexpanded_macros_do_not_compile() {
    check_error(
        "ka.verb = get and my_macro",
        19,
        "unknown macro or field `my_macro`",
    );
    check_error("not (never_true)", 6, "unknown macro or field `never_true`");
}

#[test]
fn error_display_names_the_position() {
    let error = compile_error("ka.verb = get )");
    assert_eq!(
        error.to_string(),
        "at position 15: expected `and`, `or` or the end of the condition, found `)`"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(error);
    assert!(boxed.to_string().starts_with("at position 15"));
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!("{}ka.verb = get{}", "(".repeat(10_000), ")".repeat(10_000));
    check_error(&deep, 101, "more than 100 deep");
    let nots = format!("{}ka.verb = get", "not ".repeat(10_000));
    assert!(parse(&nots).is_err());
    let fine = format!("{}ka.verb = create{}", "(".repeat(50), ")".repeat(50));
    check(&fine, &audit(POD_CREATE), true);
}

#[test]
fn no_input_prefix_panics() {
    let text = r#"(ka.verb in (create, "up date") and not jevt.value[/a~1b/0] != 'x\'y') or ka.uri pmatch (/a/*, /b) or ka.user.groups intersects (a) or ka.response.code >= 4e2 or ka.uri glob "[!a-c]*?" or m"#;
    let pod = audit(POD_CREATE);
    for (end, _) in text.char_indices().chain([(text.len(), ' ')]) {
        let prefix = &text[..end];
        if let Ok(condition) = Condition::compile(prefix) {
            condition.matches(&pod);
        }
        for (start, _) in prefix.char_indices() {
            let _ = parse(&prefix[start..]);
        }
    }
}

// ---- every operator on every standard field ----

/// Checks every operator on a text field whose value in `event` is `value`.
fn check_text_field(field: &str, value: &str, event: &Event) {
    let chars: Vec<char> = value.chars().collect();
    let head: String = chars.iter().take(chars.len() / 2 + 1).collect();
    let tail: String = chars.iter().skip(chars.len() / 2).collect();
    let middle: String = chars
        .iter()
        .skip(1)
        .take(chars.len().saturating_sub(2).max(1))
        .collect();
    let last_wild: String = chars
        .iter()
        .take(chars.len() - 1)
        .chain(['?'].iter())
        .collect();
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let cases: Vec<(String, bool)> = vec![
        (format!("{field} = {}", q(value)), true),
        (format!("{field} == {}", q(value)), true),
        (format!("{field} = {}", q("zz-other")), false),
        (format!("{field} != {}", q(value)), false),
        (format!("{field} != {}", q("zz-other")), true),
        (format!("{field} < {}", q(&format!("{value}~"))), true),
        (format!("{field} <= {}", q(value)), true),
        (format!("{field} > {}", q(value)), false),
        (format!("{field} >= {}", q(value)), true),
        (format!("{field} > {}", q("")), true),
        (format!("{field} contains {}", q(&middle)), true),
        (format!("{field} contains {}", q("zz-other")), false),
        (
            format!("{field} icontains {}", q(&middle.to_uppercase())),
            true,
        ),
        (format!("{field} icontains {}", q("ZZ-OTHER")), false),
        (format!("{field} startswith {}", q(&head)), true),
        (
            format!("{field} startswith {}", q(&tail)),
            value.starts_with(&tail),
        ),
        (format!("{field} endswith {}", q(&tail)), true),
        (format!("{field} endswith {}", q("zz-other")), false),
        (
            format!("{field} glob {}", q(&last_wild)),
            !value.ends_with('/'),
        ),
        (format!("{field} glob {}", q(&format!("{value}?"))), false),
        (
            format!("{field} in ({}, {})", q("zz-other"), q(value)),
            true,
        ),
        (format!("{field} in ({})", q("zz-other")), false),
        (format!("{field} intersects ({})", q(value)), true),
        (format!("{field} intersects ({}, b)", q("zz-other")), false),
        (format!("{field} pmatch ({})", q(value)), true),
        (
            format!("{field} pmatch ({})", q(&format!("{value}x"))),
            false,
        ),
        (format!("{field} exists"), true),
        (format!("not {field} exists"), false),
    ];
    for (condition, expected) in cases {
        check(&condition, event, expected);
    }
}

/// Checks that every operator is false on a field `event` lacks, and `not` of it true.
fn check_missing_field(field: &str, event: &Event) {
    let comparisons = [
        "= x",
        "!= x",
        "< x",
        "<= x",
        "> x",
        ">= x",
        "= 0",
        "!= 0",
        "> 0",
        "contains x",
        "icontains x",
        "startswith x",
        "endswith x",
        "glob *",
        "in (x)",
        "intersects (x)",
        "pmatch (/)",
        "exists",
    ];
    for comparison in comparisons {
        check(&format!("{field} {comparison}"), event, false);
        check(&format!("not {field} {comparison}"), event, true);
        check(&format!("not ({field} {comparison})"), event, true);
    }
}

const TEXT_FIELDS: [(&str, &str); 13] = [
    ("ka.auditid", "e1"),
    ("ka.stage", "ResponseComplete"),
    ("ka.verb", "create"),
    ("ka.uri", "/api/v1/namespaces/kube-system/pods"),
    ("ka.user.name", "system:serviceaccount:kube-system:deployer"),
    ("ka.impuser.name", "bob"),
    ("ka.target.resource", "pods"),
    ("ka.target.namespace", "kube-system"),
    ("ka.target.name", "nginx"),
    ("ka.auth.decision", "allow"),
    ("ka.auth.reason", "RBAC: allowed"),
    ("ka.useragent", "kubectl/v1.31"),
    ("jevt.value[/objectRef/name]", "nginx"),
];

#[test]
fn every_operator_on_every_text_field() {
    let pod = audit(POD_CREATE);
    for (field, value) in TEXT_FIELDS {
        check_text_field(field, value, &pod);
    }
    let exec = audit(EXEC_FORBIDDEN);
    check_text_field("ka.target.subresource", "exec", &exec);
    check_text_field("ka.auth.decision", "forbid", &exec);
    check_text_field(
        "ka.uri",
        "/api/v1/namespaces/prod/pods/web-0/exec?command=sh",
        &exec,
    );
}

#[test]
fn every_operator_on_missing_fields() {
    let healthz = audit(HEALTHZ);
    let missing = [
        "ka.impuser.name",
        "ka.user.groups",
        "ka.target.resource",
        "ka.target.subresource",
        "ka.target.namespace",
        "ka.target.name",
        "ka.response.code",
        "ka.auth.decision",
        "ka.auth.reason",
        "ka.useragent",
        "ka.sourceips",
        "jevt.value[/objectRef]",
        "jevt.value[/user/groups/0]",
        "jevt.value[/annotations/x]",
    ];
    for field in missing {
        check_missing_field(field, &healthz);
    }
    check_missing_field("ka.target.subresource", &audit(POD_CREATE));
}

#[test]
fn every_operator_on_the_response_code() {
    let exec = audit(EXEC_FORBIDDEN);
    let cases = [
        ("ka.response.code = 403", true),
        ("ka.response.code == \"403\"", true),
        ("ka.response.code = 403.0", true),
        ("ka.response.code = 4.03e2", true),
        ("ka.response.code = 401", false),
        ("ka.response.code = forbidden", false),
        ("ka.response.code != 403", false),
        ("ka.response.code != \"200\"", true),
        ("ka.response.code != forbidden", true),
        ("ka.response.code < 500", true),
        ("ka.response.code <= 403", true),
        ("ka.response.code > 403", false),
        ("ka.response.code >= 400", true),
        ("ka.response.code >= \"400\"", true),
        ("ka.response.code > 99", true),
        ("ka.response.code > abc", false),
        ("ka.response.code < abc", false),
        ("ka.response.code in (\"401\", \"403\")", true),
        ("ka.response.code in (401, 403)", true),
        ("ka.response.code in (401, 404)", false),
        ("ka.response.code intersects (403)", true),
        ("ka.response.code intersects (\"200\", forbidden)", false),
        ("ka.response.code contains 0", true),
        ("ka.response.code icontains 03", true),
        ("ka.response.code startswith 4", true),
        ("ka.response.code startswith 5", false),
        ("ka.response.code endswith 3", true),
        ("ka.response.code glob \"4??\"", true),
        ("ka.response.code glob \"5*\"", false),
        ("ka.response.code pmatch (403)", true),
        ("ka.response.code exists", true),
    ];
    for (condition, expected) in cases {
        check(condition, &exec, expected);
    }
}

#[test]
fn ten_or_more_values_use_a_set_with_the_same_answers() {
    let exec = audit(EXEC_FORBIDDEN);
    let many: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    let list = many.join(", ");
    check(&format!("ka.verb in ({list}, create)"), &exec, true);
    check(&format!("ka.verb in ({list})"), &exec, false);
    check(&format!("ka.response.code in ({list}, 403)"), &exec, true);
    check(
        &format!("ka.user.groups intersects ({list}, dev)"),
        &exec,
        true,
    );
    check(&format!("ka.user.groups in ({list}, dev)"), &exec, true);
}

// ---- list fields ----

#[test]
fn list_fields_in_means_every_element_intersects_means_some() {
    let pod = audit(POD_CREATE);
    let groups = "ka.user.groups";
    let cases = [
        ("in (system:serviceaccounts, system:authenticated)", true),
        (
            "in (system:authenticated, system:serviceaccounts, other)",
            true,
        ),
        ("in (system:authenticated)", false),
        ("in (other)", false),
        ("intersects (system:authenticated)", true),
        ("intersects (other, system:serviceaccounts)", true),
        ("intersects (other)", false),
        ("= system:authenticated", true),
        ("= system:serviceaccounts", true),
        ("= system", false),
        ("!= system:authenticated", false),
        ("!= other", true),
        ("contains accounts", true),
        ("icontains AUTHENTICATED", true),
        ("contains masters", false),
        ("startswith system:auth", true),
        ("endswith :serviceaccounts", true),
        ("glob \"system:*\"", true),
        ("glob \"dev*\"", false),
        ("> system:a", true),
        ("< system:a", false),
        ("pmatch (system:authenticated)", true),
        ("exists", true),
    ];
    for (comparison, expected) in cases {
        check(&format!("{groups} {comparison}"), &pod, expected);
    }
    check("ka.sourceips in (10.0.0.7, 10.0.0.1)", &pod, true);
    check("ka.sourceips in (10.0.0.7)", &pod, false);
    check("ka.sourceips intersects (10.0.0.1)", &pod, true);
    check("ka.sourceips startswith 10.0.0.", &pod, true);
}

#[test]
fn empty_list_fields_are_missing() {
    let healthz = audit(HEALTHZ);
    check("ka.user.groups exists", &healthz, false);
    check("ka.user.groups in (a, b)", &healthz, false);
    check("not ka.user.groups intersects (a)", &healthz, true);
    assert_eq!(field_value("ka.user.groups", &healthz), FieldValue::Missing);
}

// ---- jevt.value ----

#[test]
fn jevt_value_reads_json_pointers_into_the_whole_event() {
    let pod = audit(POD_CREATE);
    let cases = [
        ("jevt.value[/objectRef/resource] = pods", true),
        (
            "jevt.value[/requestObject/spec/containers/0/securityContext/privileged] = true",
            true,
        ),
        (
            "jevt.value[/requestObject/spec/containers/0/securityContext/privileged] != false",
            true,
        ),
        (
            "jevt.value[/requestObject/spec/containers/0/image] startswith nginx:",
            true,
        ),
        (
            "jevt.value[/requestObject/spec/containers/1/image] exists",
            false,
        ),
        (
            "jevt.value[/requestObject/spec/containers/00/image] exists",
            false,
        ),
        (
            "jevt.value[/annotations/authorization.k8s.io~1decision] = allow",
            true,
        ),
        ("jevt.value[/responseStatus/code] = 201", true),
        (
            "jevt.value[/responseStatus/code] in (\"200\", \"201\")",
            true,
        ),
        ("jevt.value[/responseStatus/code] < 300", true),
        (
            "jevt.value[/user/groups] contains \"system:authenticated\"",
            true,
        ),
        (
            "jevt.value[/user/groups] = '[\"system:serviceaccounts\",\"system:authenticated\"]'",
            true,
        ),
        ("jevt.value[/responseStatus/metadata] = {}", true),
        ("jevt.value[/nope] exists", false),
        ("jevt.value[/verb/x] exists", false),
        ("jevt.value[] contains \"auditID\"", true),
    ];
    for (condition, expected) in cases {
        check(condition, &pod, expected);
    }
}

#[test]
fn jevt_is_parsed_lazily_and_once() {
    let pod = audit(POD_CREATE);
    let ctx = EvalContext::new(&pod);
    let header_only =
        Condition::compile("ka.verb = create and ka.user.groups intersects (x)").unwrap();
    assert!(!header_only.matches_in(&ctx));
    assert!(
        !ctx.json_is_parsed(),
        "a header-only condition parsed the JSON"
    );

    let short_circuit = Condition::compile("ka.verb = get and jevt.value[/verb] = create").unwrap();
    assert!(!short_circuit.matches_in(&ctx));
    assert!(
        !ctx.json_is_parsed(),
        "an unreached jevt field parsed the JSON"
    );

    let header_pointer = Condition::compile("jevt.value[/verb] = create").unwrap();
    assert!(header_pointer.matches_in(&ctx));
    assert!(
        !ctx.json_is_parsed(),
        "a pointer to a header member parsed the JSON"
    );

    let json = Condition::compile("jevt.value[/level] = RequestResponse").unwrap();
    assert!(json.matches_in(&ctx));
    assert!(ctx.json_is_parsed());
    let Some(JsonRef::Value(first)) = ctx.json() else {
        panic!("parsed JSON");
    };
    let Some(JsonRef::Value(second)) = ctx.json() else {
        panic!("parsed JSON");
    };
    assert!(std::ptr::eq(first, second), "the JSON was parsed twice");
}

#[test]
fn json_pointer_resolves_and_unescapes() {
    let value = serde_json::json!({"a/b": {"~c": [10, 20]}, "": 1});
    let root = JsonRef::Value(&value);
    let resolve = |pointer: &str| {
        JsonPointer::parse(pointer)
            .unwrap()
            .resolve(root)
            .map(|v| v.to_field().to_value())
    };
    assert_eq!(resolve("/a~1b/~0c/1"), Some(FieldValue::Int(20)));
    assert_eq!(resolve("/"), Some(FieldValue::Int(1)));
    assert_eq!(resolve("/a~1b/~0c/2"), None);
    assert_eq!(resolve("/a~1b/~0c/-1"), None);
    assert!(JsonPointer::parse("a").is_err());
}

// ---- payloads that are not audit events ----

#[test]
fn records_have_no_ka_fields_but_jevt_works() {
    let event = record();
    check("ka.verb exists", &event, false);
    check("not ka.verb = get", &event, true);
    check("ka.user.groups intersects (a)", &event, false);
    check("jevt.value[/component_id] = k8s", &event, true);
    check("jevt.value[/error] startswith invalid", &event, true);
    check("jevt.value[/nested/code] >= 7", &event, true);
    check("jevt.value[/nested/code] = \"7\"", &event, true);
    check("jevt.value[/nested/tags/1] = b", &event, true);
    check("jevt.value[/nested/flag] = false", &event, true);
    check("jevt.value[/nested/none] exists", &event, false);
    check("jevt.value[/nested/tags] = '[\"a\",\"b\"]'", &event, true);
    check("jevt.value[] contains component_id", &event, true);
    let ctx = EvalContext::new(&event);
    assert!(Condition::compile("jevt.value[/error] exists")
        .unwrap()
        .matches_in(&ctx));
    assert!(!ctx.json_is_parsed(), "a record needs no parsing");
}

#[test]
fn alerts_have_no_ka_fields_but_jevt_works() {
    let event = alert();
    check("ka.verb exists", &event, false);
    check("jevt.value[/rule] = \"Exec Into Pod\"", &event, true);
    check("jevt.value[/priority] = Warning", &event, true);
    check("jevt.value[/tags/0] = k8s", &event, true);
}

// ---- glob, pmatch, icontains ----

#[test]
fn glob_wildcards_stay_within_path_segments() {
    let pod = audit(POD_CREATE);
    let cases = [
        ("ka.uri glob \"/api/v1/namespaces/*/pods\"", true),
        ("ka.uri glob \"/api/*\"", false),
        ("ka.uri glob \"/api/v?/namespaces/kube-system/pods\"", true),
        (
            "ka.uri glob \"/api/v[0-9]/namespaces/kube-[a-z]ystem/pods\"",
            true,
        ),
        ("ka.uri glob \"/api/v[!0-9]/*/*/pods\"", false),
        ("ka.uri glob \"/api/v[^a-z]/*/*/pods\"", true),
        ("ka.user.name glob \"system:serviceaccount:*\"", true),
        ("ka.user.name glob \"system:serviceaccount\"", false),
        ("ka.user.name glob \"*:deployer\"", true),
        ("ka.user.name glob \"*:*:*:*\"", true),
        ("ka.user.name glob \"*\"", true),
        ("ka.verb glob \"cr[]e]ate\"", true),
        ("ka.verb glob \"cr[]x]ate\"", false),
        ("ka.verb glob \"c[]r]eate\"", true),
        ("ka.verb glob \"c[reate\"", false),
        ("ka.verb glob \"c.eate\"", false),
    ];
    for (condition, expected) in cases {
        check(condition, &pod, expected);
    }
    let literal_bracket = audit(&POD_CREATE.replace("\"create\"", "\"c[reate\""));
    check("ka.verb glob \"c[reate\"", &literal_bracket, true);
}

#[test]
fn pmatch_matches_whole_path_segments() {
    let pod = audit(POD_CREATE);
    let cases = [
        ("ka.uri pmatch (/api/v1)", true),
        ("ka.uri pmatch (/api/v1/)", true),
        ("ka.uri pmatch (/api/v)", false),
        (
            "ka.uri pmatch (/apis, /api/v1/namespaces/kube-system/pods)",
            true,
        ),
        (
            "ka.uri pmatch (/api/v1/namespaces/kube-system/pods/x)",
            false,
        ),
        ("ka.uri pmatch (/)", true),
        ("ka.uri pmatch (/api/*/namespaces)", true),
        ("ka.uri pmatch (/*)", true),
        ("ka.uri pmatch (/api/*s)", false),
        ("ka.uri pmatch (/ap?/v1/namespaces/*/pods)", true),
    ];
    for (condition, expected) in cases {
        check(condition, &pod, expected);
    }
}

#[test]
fn icontains_ignores_case_for_ascii_and_unicode() {
    let event = audit(&POD_CREATE.replace("\"nginx\"", "\"Ünïcode-NGINX\""));
    check("ka.target.name icontains nginx", &event, true);
    check("ka.target.name icontains ünï", &event, true);
    check("ka.target.name icontains \"\"", &event, true);
    check("ka.target.name contains nginx", &event, false);
}

// ---- extraction for output ----

fn field_value(name: &str, event: &Event) -> FieldValue {
    let (field, _) = scan_field(name).unwrap();
    StandardFields
        .resolve(&field.name, field.arg.as_deref())
        .unwrap()
        .extract(event)
}

#[test]
fn extracted_values_print_as_falco_prints_them() {
    let pod = audit(POD_CREATE);
    let text = |name: &str| field_value(name, &pod).to_string();
    assert_eq!(
        text("ka.user.name"),
        "system:serviceaccount:kube-system:deployer"
    );
    assert_eq!(
        text("ka.user.groups"),
        "(system:serviceaccounts,system:authenticated)"
    );
    assert_eq!(text("ka.response.code"), "201");
    assert_eq!(text("ka.target.subresource"), "<NA>");
    assert_eq!(
        text("jevt.value[/requestObject/spec/containers/0/securityContext/privileged]"),
        "true"
    );
    let status: serde_json::Value =
        serde_json::from_str(&text("jevt.value[/responseStatus]")).unwrap();
    assert_eq!(status, serde_json::json!({"metadata": {}, "code": 201}));
    assert_eq!(text("jevt.value[/missing]"), "<NA>");
    assert_eq!(text("ka.verb"), "create");
    assert_eq!(field_value("ka.verb", &record()), FieldValue::Missing);
    assert_eq!(
        field_value("ka.user.groups", &pod).to_json(),
        serde_json::json!(["system:serviceaccounts", "system:authenticated"])
    );
    assert_eq!(
        field_value("ka.target.subresource", &pod).to_json(),
        serde_json::Value::Null
    );
    assert_eq!(FieldValue::Float(1.5).to_string(), "1.5");
    assert_eq!(FieldValue::List(vec![]).to_string(), "()");
}

#[test]
fn standard_field_names_all_resolve() {
    for name in StandardFields::names() {
        let arg = match name {
            "jevt.value" => Some("/verb"),
            "ka.uri.param"
            | "ka.req.volume.hostpath"
            | "ka.req.binding.subject.has_name"
            | "kafka.header" => Some("x"),
            _ => None,
        };
        assert!(StandardFields.resolve(name, arg).is_ok(), "{name}");
    }
    assert_eq!(
        StandardFields.resolve("ka.nope", None).err(),
        Some(FieldError::Unknown)
    );
}

// ---- extension points ----

/// A resolver adding one field, deferring the rest to the standard ones.
struct Extra;

#[derive(Debug)]
struct ImageField;

impl FieldExtractor for ImageField {
    fn read<'c>(&self, ctx: &'c EvalContext<'_>) -> FieldRef<'c> {
        let Some(containers) = ctx
            .json()
            .and_then(|root| root.child("requestObject"))
            .and_then(|v| v.child("spec"))
            .and_then(|v| v.child("containers"))
        else {
            return FieldRef::Missing;
        };
        let images = (0..)
            .map_while(|i: usize| containers.child(&i.to_string()))
            .filter_map(|c| c.child("image"))
            .filter_map(|image| match image.to_field() {
                FieldRef::One(scalar) => Some(scalar),
                _ => None,
            })
            .collect();
        FieldRef::List(images)
    }
}

impl FieldResolver for Extra {
    fn resolve(
        &self,
        name: &str,
        _arg: Option<&str>,
    ) -> Result<Box<dyn FieldExtractor>, FieldError> {
        match name {
            "ka.req.pod.sidecar.image" => Ok(Box::new(ImageField)),
            _ => Err(FieldError::Unknown),
        }
    }
}

#[test]
fn resolvers_extend_the_standard_fields() {
    let pod = audit(POD_CREATE);
    let fields = (Extra, StandardFields);
    let condition = Condition::compile_with(
        "ka.verb = create and ka.req.pod.sidecar.image intersects (nginx:1.27, busybox)",
        &fields,
    )
    .unwrap();
    assert!(condition.matches(&pod));
    assert!(Condition::compile("ka.req.pod.sidecar.image exists").is_err());
    let image = fields.resolve("ka.req.pod.sidecar.image", None).unwrap();
    assert_eq!(image.extract(&pod).to_string(), "(nginx:1.27)");
}

#[test]
fn macros_and_lists_expand_in_the_tree() {
    let pod = audit(POD_CREATE);
    let mut expr =
        parse("pod_write and ka.target.namespace in (system_namespaces, \"system_namespaces\")")
            .unwrap();
    expr.expand_lists(&mut |name| {
        (name == "system_namespaces").then(|| {
            ["kube-system", "kube-public"]
                .map(|text| Literal {
                    text: text.into(),
                    quoted: false,
                    position: 1,
                })
                .to_vec()
        })
    });
    let expanded = expr
        .try_replace_macros(&mut |reference| -> Result<Option<Expr>, String> {
            match reference.name.as_str() {
                "pod_write" => Ok(Some(Expr::And(vec![
                    compare("ka.target.resource", Operator::Eq, "pods"),
                    compare("ka.verb", Operator::Ne, "get"),
                ]))),
                other => Err(format!("unknown macro {other}")),
            }
        })
        .unwrap();
    assert!(expanded.macros().is_empty());
    assert_eq!(
        expanded.to_string(),
        "(ka.target.resource = pods and ka.verb != get) and ka.target.namespace in (kube-system, kube-public, \"system_namespaces\")"
    );
    let condition = Condition::from_expr(&expanded, &StandardFields).unwrap();
    assert!(condition.matches(&pod));
    assert_eq!(condition.source(), expanded.to_string());

    let unknown = parse("nope")
        .unwrap()
        .try_replace_macros(&mut |r| Err(r.name.clone()));
    assert_eq!(unknown, Err("nope".to_string()));
}

#[test]
fn hand_built_trees_with_mismatched_operands_are_errors() {
    let expr = compare("ka.verb", Operator::In, "create");
    assert!(Condition::from_expr(&expr, &StandardFields).is_err());
    let expr = Expr::Compare(Comparison {
        field: FieldName {
            name: "ka.verb".into(),
            arg: None,
            position: 1,
        },
        operator: Operator::Exists,
        operator_position: 9,
        operand: Operand::List(vec![]),
    });
    assert_eq!(
        Condition::from_expr(&expr, &StandardFields)
            .err()
            .map(|e| e.position),
        Some(9)
    );
}

#[test]
fn conditions_are_shareable() {
    fn assert_send_sync_clone<T: Send + Sync + Clone>(_: &T) {}
    let condition = Condition::compile("ka.verb = create").unwrap();
    assert_send_sync_clone(&condition);
    let pod = audit(POD_CREATE);
    let copy = condition.clone();
    std::thread::scope(|scope| {
        scope.spawn(|| assert!(copy.matches(&pod)));
    });
    assert_eq!(format!("{condition:?}"), "Condition(\"ka.verb = create\")");
}

#[test]
fn operators_list_and_keywords() {
    assert_eq!(
        Operator::from_keyword("intersects"),
        Some(Operator::Intersects)
    );
    assert_eq!(Operator::from_keyword("="), None);
    assert!(Operator::list().starts_with("=, !=, <"));
    for operator in Operator::ALL {
        let text = match operator.operand_kind() {
            OperandKind::None => format!("ka.verb {operator}"),
            OperandKind::Value => format!("ka.verb {operator} x"),
            OperandKind::List => format!("ka.verb {operator} (x)"),
        };
        let Ok(Expr::Compare(c)) = parse(&text) else {
            panic!("`{text}`");
        };
        assert_eq!(c.operator, operator);
    }
}

#[test]
fn the_kafka_fields_read_the_message_an_event_came_in() {
    let mut event = audit(EXEC_FORBIDDEN);
    for field in [
        "kafka.topic",
        "kafka.partition",
        "kafka.offset",
        "kafka.key",
    ] {
        check(&format!("{field} exists"), &event, false);
    }
    check("kafka.header[cluster] exists", &event, false);
    event.meta.origin = Some(Arc::new(crate::event::MessageOrigin {
        topic: "audit-prod".into(),
        partition: 3,
        offset: 1207,
        key: Some("prod/pods/web-0".into()),
        headers: vec![
            ("stage".into(), "ResponseComplete".into()),
            ("cluster".into(), "eu-1".into()),
        ],
    }));
    check(
        "kafka.topic = audit-prod and kafka.partition = 3",
        &event,
        true,
    );
    check("kafka.offset > 1200 and kafka.offset < 1208", &event, true);
    check("kafka.key startswith prod/", &event, true);
    check(
        "kafka.header[cluster] = eu-1 and kafka.header[stage] = ResponseComplete",
        &event,
        true,
    );
    check("kafka.header[region] exists", &event, false);
    assert!(Condition::compile("kafka.header = x").is_err());
    assert!(Condition::compile("kafka.topic[x] = y").is_err());
}
