//! Rule unit tests: input events, and the alerts they must (or must not) raise.
//!
//! A test file is YAML:
//!
//! ```yaml
//! tests:
//!   - name: a privileged pod raises one alert
//!     events:                     # audit events, in order (YAML or JSON objects)
//!       - {kind: Event, apiVersion: audit.k8s.io/v1, stage: ResponseComplete, ...}
//!     expect:
//!       - rule: Privileged Pod Created
//!         count: 1                # default 1; 0 means "this rule must not fire"
//!         priority: WARNING       # optional
//!         output_contains: "user=alice"   # optional, checked on every alert of the rule
//!   - name: reads raise nothing
//!     events: [...]
//!     expect: []                  # no alert at all, from any rule
//! ```
//!
//! Each test runs on a fresh engine (empty state for stateful rules) over the
//! rules of the detect transform that names the file in its `tests` option.
//! Only the rules a test names are checked, unless `expect` is empty.

use std::path::Path;
use std::sync::Arc;

use auditflow_core::event::{Alert, AuditEvent, Event, Payload, Priority};
use serde::Deserialize;

use super::compile::CompiledRule;
use super::engine::Engine;
use super::stateful::DetectState;

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The tests, in order.
    pub tests: Vec<RuleTest>,
}

/// One test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTest {
    /// What the test checks.
    pub name: String,
    /// The input events, in order.
    pub events: Vec<serde_json::Value>,
    /// The alerts expected; empty: none at all.
    pub expect: Vec<Expectation>,
}

/// Alerts expected of one rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The rule's name.
    pub rule: String,
    /// How many alerts (default 1).
    #[serde(default = "one")]
    pub count: usize,
    /// Their priority.
    #[serde(default)]
    pub priority: Option<String>,
    /// Text every one of their outputs contains.
    #[serde(default)]
    pub output_contains: Option<String>,
}

fn one() -> usize {
    1
}

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// The test's name.
    pub name: String,
    /// What went wrong; empty when the test passed.
    pub failures: Vec<String>,
}

impl TestOutcome {
    /// Whether the test passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Reads a test file.
pub fn read_test_file(path: &Path) -> Result<TestFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("{}: cannot read the test file: {error}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|error| {
        let at = error
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        format!("{}{at}: not a valid test file: {error}", path.display())
    })
}

/// Runs one test against `rules`.
pub fn run_test(test: &RuleTest, rules: &Arc<[CompiledRule]>) -> TestOutcome {
    let mut failures = Vec::new();
    let mut engine = Engine::new(rules.clone(), DetectState::new(100_000), "test".into());
    let mut matches = Vec::new();
    for (index, value) in test.events.iter().enumerate() {
        match AuditEvent::parse(&value.to_string()) {
            Ok(audit) => {
                let event = Event::new(Payload::Audit(Arc::new(audit)), "test".into());
                engine.evaluate(&event, &mut matches);
            }
            Err(error) => {
                failures.push(format!("event {}: not an audit event: {error}", index + 1))
            }
        }
    }
    let alerts: Vec<Alert> = matches.into_iter().map(|found| found.alert).collect();
    if test.expect.is_empty() {
        for alert in &alerts {
            failures.push(format!(
                "expected no alert, got `{}`: {}",
                alert.rule, alert.output
            ));
        }
    }
    for expectation in &test.expect {
        check(expectation, &alerts, rules, &mut failures);
    }
    TestOutcome {
        name: test.name.clone(),
        failures,
    }
}

fn check(
    expectation: &Expectation,
    alerts: &[Alert],
    rules: &[CompiledRule],
    failures: &mut Vec<String>,
) {
    let rule = &expectation.rule;
    if !rules.iter().any(|r| &*r.name == rule) {
        failures.push(format!("no enabled rule is named `{rule}`"));
        return;
    }
    let raised: Vec<&Alert> = alerts.iter().filter(|alert| &alert.rule == rule).collect();
    if raised.len() != expectation.count {
        failures.push(format!(
            "`{rule}`: expected {} alert(s), got {}",
            expectation.count,
            raised.len()
        ));
    }
    if let Some(priority) = &expectation.priority {
        match Priority::parse(priority) {
            Some(wanted) => {
                for alert in raised.iter().filter(|a| a.priority != wanted) {
                    failures.push(format!(
                        "`{rule}`: expected priority {}, got {}",
                        wanted.as_str(),
                        alert.priority.as_str()
                    ));
                }
            }
            None => failures.push(format!("`{rule}`: unknown priority `{priority}`")),
        }
    }
    if let Some(text) = &expectation.output_contains {
        for alert in raised.iter().filter(|a| !a.output.contains(text.as_str())) {
            failures.push(format!(
                "`{rule}`: output does not contain `{text}`: {}",
                alert.output
            ));
        }
    }
}
