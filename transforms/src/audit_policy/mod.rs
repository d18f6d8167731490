//! The `audit_policy` transform: applies a Kubernetes audit `Policy` to the stream.
//!
//! For each audit event the policy's first matching rule decides the level,
//! exactly as the kube-apiserver decides it ([`checker`]); the event is then
//! dropped (`None`, or a stage the rule omits), stripped of its bodies down to
//! that level, and re-levelled ([`apply`]). Alerts and records pass unchanged.
//!
//! ```toml
//! [transforms.policy]
//! type = "audit_policy"
//! inputs = ["apiserver"]
//! policy_file = "examples/policy.yaml"
//! ```
//!
//! Dropped events count as handled for acknowledgements and are counted in
//! `auditflow_audit_policy_dropped_events_total{reason}` (and in the component's
//! `discarded_events`); kept events in `auditflow_audit_policy_events_total{level}`.

pub mod apply;
pub mod checker;
mod index;
pub mod policy;
mod rule_sets;

use std::path::PathBuf;
use std::sync::Arc;

use auditflow_core::component::{Transform, TransformConfig, TransformContext, TransformOutput};
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::{Event, Level, Payload};
use auditflow_core::metrics::{ComponentMetrics, Counter};
use serde::Deserialize;

pub use apply::{apply, Applied, DropReason};
pub use checker::{Decision, RequestAttributes, RuleMismatch, Target};
pub use policy::{Policy, PolicyError, Rule};

/// Options of the `audit_policy` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditPolicyOptions {
    policy_file: PathBuf,
}

/// A checked `audit_policy` configuration: the loaded policy.
pub struct AuditPolicyConfig {
    policy: Arc<Policy>,
}

/// Checks the options of an `audit_policy` transform, loading and checking its policy file.
pub fn parse(options: &toml::Table) -> Result<Box<dyn TransformConfig>, Vec<OptionError>> {
    let options: AuditPolicyOptions = parse_options(options)?;
    let policy = load_policy(&options.policy_file).map_err(|errors| {
        errors
            .into_iter()
            .map(|error| OptionError::new("policy_file", error))
            .collect::<Vec<_>>()
    })?;
    Ok(Box::new(AuditPolicyConfig {
        policy: Arc::new(policy),
    }))
}

/// Loads a policy file; each error message names the file and the field (`rules[2].level`).
pub fn load_policy(path: &std::path::Path) -> Result<Policy, Vec<String>> {
    Policy::load(path).map_err(|errors| {
        errors
            .iter()
            .map(|error| format!("{}: {error}", path.display()))
            .collect()
    })
}

impl TransformConfig for AuditPolicyConfig {
    fn runs_inline(&self) -> bool {
        true
    }

    fn build(&self, context: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        Ok(Box::new(AuditPolicy {
            policy: self.policy.clone(),
            metrics: PolicyMetrics::new(&context.metrics),
        }))
    }
}

/// The series the transform reports, looked up once.
struct PolicyMetrics {
    component: ComponentMetrics,
    dropped_level_none: Counter,
    dropped_omitted_stage: Counter,
    /// Kept events by level, indexed by `Level as usize - 1` (Metadata, Request, RequestResponse).
    kept: [Counter; 3],
}

impl PolicyMetrics {
    fn new(component: &ComponentMetrics) -> PolicyMetrics {
        let registry = component.registry();
        let dropped = |reason: DropReason| {
            registry.counter(
                "auditflow_audit_policy_dropped_events_total",
                "Events the audit policy dropped, by reason (level_none, omitted_stage).",
                &component.labels_with(&[("reason", reason.as_str())]),
            )
        };
        let kept = |level: Level| {
            registry.counter(
                "auditflow_audit_policy_events_total",
                "Events the audit policy kept, by the level they were given.",
                &component.labels_with(&[("level", level.as_str())]),
            )
        };
        PolicyMetrics {
            component: component.clone(),
            dropped_level_none: dropped(DropReason::LevelNone),
            dropped_omitted_stage: dropped(DropReason::OmittedStage),
            kept: [
                kept(Level::Metadata),
                kept(Level::Request),
                kept(Level::RequestResponse),
            ],
        }
    }

    /// Adds a batch's counts to the series.
    fn add(&self, tally: &Tally) {
        let [level_none, omitted_stage] = tally.dropped;
        self.component
            .discarded_events
            .add(level_none + omitted_stage);
        self.dropped_level_none.add(level_none);
        self.dropped_omitted_stage.add(omitted_stage);
        for (counter, count) in self.kept.iter().zip(tally.kept) {
            counter.add(count);
        }
    }
}

/// The counts of one batch, added to the shared series once per batch.
#[derive(Default)]
struct Tally {
    /// Dropped events: level `None`, omitted stage.
    dropped: [u64; 2],
    /// Kept events by level: Metadata, Request, RequestResponse.
    kept: [u64; 3],
}

impl Tally {
    fn dropped(&mut self, reason: DropReason) {
        let index = match reason {
            DropReason::LevelNone => 0,
            DropReason::OmittedStage => 1,
        };
        if let Some(count) = self.dropped.get_mut(index) {
            *count += 1;
        }
    }

    fn kept(&mut self, level: Level) {
        let index = match level {
            Level::None => return,
            Level::Metadata => 0,
            Level::Request => 1,
            Level::RequestResponse => 2,
        };
        if let Some(count) = self.kept.get_mut(index) {
            *count += 1;
        }
    }
}

struct AuditPolicy {
    policy: Arc<Policy>,
    metrics: PolicyMetrics,
}

impl Transform for AuditPolicy {
    fn transform(&mut self, batch: Vec<Event>, output: &mut TransformOutput) {
        let mut tally = Tally::default();
        for mut event in batch {
            let Payload::Audit(audit) = &mut event.payload else {
                output.push(event);
                continue;
            };
            let decision = self.policy.decide_event(audit.header());
            match apply(audit, &decision) {
                Ok(Applied::Unchanged | Applied::Edited) => {
                    tally.kept(audit.header().level().unwrap_or(decision.level));
                    output.push(event);
                }
                Ok(Applied::Dropped(reason)) => tally.dropped(reason),
                Err(error) => {
                    self.metrics.component.error("edit_failed", 1);
                    output.push_error(
                        &event,
                        &format!("cannot apply the audit policy to this event: {error}"),
                    );
                }
            }
        }
        self.metrics.add(&tally);
    }
}
