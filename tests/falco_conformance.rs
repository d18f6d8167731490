//! Falco's own Kubernetes audit test cases (`falco_k8s_audit_tests.yaml`), run as they are:
//! each case's rule files are loaded in order, its trace is decoded, and the
//! alerts must match the expected count per rule and priority (or be none).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use auditflow_core::event::{Event, Priority};
use auditflow_sources::decode::StreamDecoder;
use auditflow_transforms::detect::{load_rules, DetectState, Engine};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    detect: bool,
    #[serde(default)]
    detect_level: Option<String>,
    #[serde(default)]
    detect_counts: Vec<BTreeMap<String, usize>>,
    rules_file: Vec<String>,
    addl_cmdline_opts: String,
    #[serde(default)]
    stderr_contains: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Suite {
    trace_files: BTreeMap<String, Case>,
}

fn load_suite(dir: &Path) -> Suite {
    let text = std::fs::read_to_string(dir.join("falco_k8s_audit_tests.yaml")).unwrap();
    serde_yaml::from_str(&text.replace("!mux", "")).unwrap()
}

/// The rule files of a case, mapped as SOURCE.md says (the syscall rules file is skipped).
fn rule_files(dir: &Path, case: &Case) -> Vec<PathBuf> {
    case.rules_file
        .iter()
        .filter(|path| !path.ends_with("/falco_rules.yaml"))
        .map(|path| {
            if path.ends_with("k8saudit-rules/k8s_audit_rules.yaml") {
                dir.join("k8s_audit_rules-2023-08.yaml")
            } else {
                let name = path.strip_prefix("./rules/k8s_audit/").unwrap();
                dir.join("rules").join(name)
            }
        })
        .collect()
}

fn trace_file(dir: &Path, case: &Case) -> PathBuf {
    let name = case
        .addl_cmdline_opts
        .split("trace_files/k8s_audit/")
        .nth(1)
        .unwrap()
        .trim();
    dir.join("traces").join(name)
}

/// Runs one case; returns what differs from Falco's expectation (empty: it passes).
fn run_case(dir: &Path, name: &str, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let rules = match load_rules(&rule_files(dir, case)) {
        Ok(loaded) => loaded.rules,
        Err(error) => return vec![format!("{name}: rules did not load: {error}")],
    };
    let bytes = std::fs::read(trace_file(dir, case)).unwrap();
    let mut decoder = StreamDecoder::new("trace".into(), 1 << 22);
    let mut decoded = decoder.push(&bytes);
    let rest = decoder.finish();
    decoded.events.extend(rest.events);
    decoded.failures.extend(rest.failures);
    let events: Vec<Event> = decoded.events;
    match (&case.stderr_contains, decoded.failures.first()) {
        (None, Some(failure)) => {
            problems.push(format!("{name}: trace did not decode: {}", failure.message))
        }
        (Some(_), None) => problems.push(format!(
            "{name}: a trace Falco rejects decoded as audit events"
        )),
        (Some(_), Some(failure)) => println!("{name}: rejected as Falco does: {}", failure.message),
        (None, None) => {}
    }
    let mut engine = Engine::new(rules, DetectState::new(1000), "test".into());
    let mut matches = Vec::new();
    for event in &events {
        engine.evaluate(event, &mut matches);
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for found in &matches {
        *counts.entry(found.alert.rule.clone()).or_default() += 1;
    }
    if !case.detect {
        if !matches.is_empty() {
            problems.push(format!("{name}: expected no alert, got {counts:?}"));
        }
        return problems;
    }
    for expected in &case.detect_counts {
        for (rule, count) in expected {
            let got = counts.get(rule).copied().unwrap_or(0);
            if got != *count {
                problems.push(format!(
                    "{name}: `{rule}`: expected {count}, got {got} (all: {counts:?})"
                ));
            }
        }
    }
    if let Some(level) = &case.detect_level {
        let level = Priority::parse(level).unwrap();
        if !matches.iter().any(|found| found.alert.priority == level) {
            problems.push(format!("{name}: no alert at priority {}", level.as_str()));
        }
        for expected in &case.detect_counts {
            for rule in expected.keys() {
                for found in matches.iter().filter(|m| &m.alert.rule == rule) {
                    if found.alert.priority != level {
                        problems.push(format!(
                            "{name}: `{rule}` raised at {:?}",
                            found.alert.priority
                        ));
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn falco_k8s_audit_test_cases_all_pass() {
    let dir = common::conformance_dir();
    let suite = load_suite(&dir);
    assert_eq!(suite.trace_files.len(), 66, "Falco's suite has 66 cases");
    let mut problems = Vec::new();
    let mut passed = 0;
    for (name, case) in &suite.trace_files {
        let case_problems = run_case(&dir, name, case);
        if case_problems.is_empty() {
            passed += 1;
        }
        problems.extend(case_problems);
    }
    println!(
        "Falco k8s audit conformance: {passed}/{} cases pass",
        suite.trace_files.len()
    );
    assert!(
        problems.is_empty(),
        "{} case(s) failed:\n{}",
        suite.trace_files.len() - passed,
        problems.join("\n")
    );
}
