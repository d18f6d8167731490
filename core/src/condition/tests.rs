//! Tests of the condition parser: precedence, values, quoting, positions in
//! errors, printing, and rewriting the tree.

use super::*;

fn parse_error(condition: &str) -> ConditionError {
    match parse(condition) {
        Ok(expr) => panic!("`{condition}` parsed as {expr}"),
        Err(error) => error,
    }
}

#[track_caller]
fn check_error(condition: &str, position: usize, message_part: &str) {
    let error = parse_error(condition);
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
fn error_positions_and_messages() {
    check_error(
        "",
        1,
        "expected a field, a macro, `not` or `(`, found the end",
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
}

#[test]
fn positions_count_characters_not_bytes() {
    check_error("ka.user.name = \"é\" ka.verb = x", 20, "found `ka.verb`");
    check_error("ka.user.name = ünïcödé extra", 24, "found `extra`");
}

#[test]
fn error_display_names_the_position() {
    let error = parse_error("ka.verb = get )");
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
    assert!(parse(&fine).is_ok());
}

#[test]
fn no_input_slice_panics() {
    let text = r#"(ka.verb in (create, "up date") and not jevt.value[/a~1b/0] != 'x\'y') or ka.uri pmatch (/a/*, /b) or m"#;
    for (end, _) in text.char_indices().chain([(text.len(), ' ')]) {
        let prefix = &text[..end];
        for (start, _) in prefix.char_indices() {
            let _ = parse(&prefix[start..]);
        }
    }
}

#[test]
fn empty_value_lists_are_allowed() {
    assert_eq!(parsed_shape("ka.verb in ()"), "ka.verb in ()");
    assert_eq!(parsed_shape("ka.verb in ( )"), "ka.verb in ()");
}

#[test]
fn macros_and_lists_expand_in_the_tree() {
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
    let unknown = parse("nope")
        .unwrap()
        .try_replace_macros(&mut |r| Err(r.name.clone()));
    assert_eq!(unknown, Err("nope".to_string()));
}
