//! The `detect` transform: Falco's Kubernetes audit rules, plus stateful detections.
//!
//! ```toml
//! [transforms.detect]
//! type = "detect"
//! inputs = ["audit"]
//! rules = ["k8s_audit_rules.yaml", "examples/rules/auditflow_rules.yaml"]
//! tests = ["examples/rules/auditflow_rules_tests.yaml"]   # run by `auditflow test`
//! # hostname = "auditflow-1"       # the alerts' `hostname` (default: this host's name)
//! # max_state_keys = 100000        # groups and keys kept for stateful rules
//! ```
//!
//! Every event goes on to the default output `ID` unchanged. Each rule that
//! matches an audit event raises one alert, sent to `ID.alerts` in Falco's JSON
//! output form and carrying the event's acknowledgement handle. Rule files are
//! read and compiled when the configuration is checked, so `auditflow validate`
//! reports their errors with file, line and rule.
//!
//! Modules: [`rules`] reads files, [`compile`] expands and compiles, [`engine`]
//! evaluates, [`stateful`] keeps thresholds and baselines, [`testing`] runs
//! rule unit tests.

pub mod compile;
pub mod engine;
pub mod rules;
pub mod stateful;
pub mod testing;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auditflow_core::component::{Transform, TransformConfig, TransformContext, TransformOutput};
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::{Event, Payload};
use auditflow_core::metrics::{Counter, Gauge};
use serde::Deserialize;

pub use compile::CompiledRule;
pub use engine::{default_hostname, Engine, Match};
pub use rules::{RuleError, RuleSet};
pub use stateful::DetectState;

/// The name of the output carrying alerts (`ID.alerts`).
pub const ALERTS_OUTPUT: &str = "alerts";

/// How often the state of stateful rules is written to `data_dir`.
const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(5);

/// Options of the `detect` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectOptions {
    /// Rule files, loaded in order.
    pub rules: Vec<PathBuf>,
    /// Rule test files, run by `auditflow test`.
    #[serde(default)]
    pub tests: Vec<PathBuf>,
    /// The `hostname` alerts carry.
    #[serde(default)]
    pub hostname: Option<String>,
    /// How many groups and keys stateful rules keep in memory.
    #[serde(default = "default_max_state_keys")]
    pub max_state_keys: usize,
}

fn default_max_state_keys() -> usize {
    100_000
}

/// Rules loaded from files and compiled, with what loading noticed.
#[derive(Debug)]
pub struct LoadedRules {
    /// The enabled `k8s_audit` rules, compiled.
    pub rules: Arc<[CompiledRule]>,
    /// Notices: rules of other sources ignored, appends that defined a list, unknown keys.
    pub notices: Vec<String>,
}

/// Reads and compiles rule files in order.
pub fn load_rules(paths: &[impl AsRef<Path>]) -> Result<LoadedRules, RuleError> {
    let set = RuleSet::load(paths)?;
    let rules = compile::compile_rules(&set)?;
    let mut notices = set.notices.clone();
    if !set.other_sources.is_empty() {
        let sources: Vec<String> = set
            .other_sources
            .iter()
            .map(|(source, count)| format!("{count} of source `{source}`"))
            .collect();
        notices.push(format!(
            "ignored rules not for Kubernetes audit events (`source: k8s_audit`): {}",
            sources.join(", ")
        ));
    }
    Ok(LoadedRules {
        rules: rules.into(),
        notices,
    })
}

/// A checked `detect` configuration.
pub struct DetectConfig {
    options: DetectOptions,
    rules: LoadedRules,
}

impl DetectConfig {
    /// The options as given.
    pub fn options(&self) -> &DetectOptions {
        &self.options
    }

    /// The compiled rules.
    pub fn rules(&self) -> &Arc<[CompiledRule]> {
        &self.rules.rules
    }
}

/// Checks the options of a `detect` transform and loads its rules.
pub fn parse(options: &toml::Table) -> Result<Box<dyn TransformConfig>, Vec<OptionError>> {
    parse_config(options).map(|config| Box::new(config) as Box<dyn TransformConfig>)
}

/// Like [`parse`], keeping the concrete type (for `auditflow test`).
pub fn parse_config(options: &toml::Table) -> Result<DetectConfig, Vec<OptionError>> {
    let options: DetectOptions = parse_options(options)?;
    if options.rules.is_empty() {
        return Err(vec![OptionError::new(
            "rules",
            "list at least one rule file, as in rules = [\"k8s_audit_rules.yaml\"]",
        )]);
    }
    let rules = load_rules(&options.rules)
        .map_err(|error| vec![OptionError::new("rules", error.to_string())])?;
    Ok(DetectConfig { options, rules })
}

impl TransformConfig for DetectConfig {
    fn named_outputs(&self) -> Vec<String> {
        vec![ALERTS_OUTPUT.to_string()]
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn build(&self, context: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        for notice in &self.rules.notices {
            tracing::info!(component_id = %context.id, "{notice}");
        }
        let stateful = self.rules.rules.iter().any(|rule| rule.stateful.is_some());
        let state_path = stateful.then(|| {
            context
                .data_dir
                .join(format!("detect-{}.state.json", context.id))
        });
        let state = match &state_path {
            Some(path) => DetectState::load(path, self.options.max_state_keys)?,
            None => DetectState::new(self.options.max_state_keys),
        };
        let hostname = self
            .options
            .hostname
            .clone()
            .unwrap_or_else(default_hostname);
        let metrics = &context.metrics;
        let hits = self
            .rules
            .rules
            .iter()
            .map(|rule| {
                metrics.registry().counter(
                    "auditflow_detect_rule_matches_total",
                    "Alerts a detection rule raised.",
                    &metrics.labels_with(&[("rule", &rule.name)]),
                )
            })
            .collect();
        Ok(Box::new(Detect {
            engine: Engine::new(self.rules.rules.clone(), state, hostname.into()),
            hits,
            evictions: metrics.registry().counter(
                "auditflow_detect_state_evictions_total",
                "Groups and keys of stateful rules evicted to stay within max_state_keys.",
                &metrics.labels_with(&[]),
            ),
            state_keys: metrics.registry().gauge(
                "auditflow_detect_state_keys",
                "Groups and keys held by stateful rules.",
                &metrics.labels_with(&[]),
            ),
            reported_evictions: 0,
            state_path,
            id: context.id.clone(),
            metrics: context.metrics.clone(),
        }))
    }
}

/// The running transform.
struct Detect {
    engine: Engine,
    hits: Vec<Counter>,
    evictions: Counter,
    state_keys: Gauge,
    reported_evictions: u64,
    state_path: Option<PathBuf>,
    id: Arc<str>,
    metrics: auditflow_core::metrics::ComponentMetrics,
}

impl Transform for Detect {
    fn transform(&mut self, batch: Vec<Event>, output: &mut TransformOutput) {
        let mut matches = Vec::new();
        for event in batch {
            self.engine.evaluate(&event, &mut matches);
            for found in matches.drain(..) {
                if let Some(hits) = self.hits.get(found.rule) {
                    hits.add(1);
                }
                output.push_named(0, alert_event(&event, found));
            }
            output.push(event);
        }
        self.report_state();
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.state_path.as_ref().map(|_| STATE_SAVE_INTERVAL)
    }

    fn tick(&mut self, _output: &mut TransformOutput) {
        let Some(path) = &self.state_path else {
            return;
        };
        if let Err(error) = self.engine.state_mut().save(path) {
            self.metrics.error("state_save_failed", 1);
            tracing::warn!(component_id = %self.id, "cannot save the detection state to {}: {error:#}", path.display());
        }
    }
}

impl Detect {
    fn report_state(&mut self) {
        let state = self.engine.state_mut();
        let evicted = state.evicted();
        self.evictions.add(evicted - self.reported_evictions);
        self.reported_evictions = evicted;
        self.state_keys
            .set(i64::try_from(state.len()).unwrap_or(i64::MAX));
    }
}

/// The alert as an event: it keeps the audit event's acknowledgement handle and receive time.
fn alert_event(event: &Event, found: Match) -> Event {
    let mut alert = Event::new(
        Payload::Alert(Arc::new(found.alert)),
        event.meta.source_id.clone(),
    );
    alert.meta.received_at = event.meta.received_at;
    alert.meta.finalizer = event.meta.finalizer.clone();
    alert
}
