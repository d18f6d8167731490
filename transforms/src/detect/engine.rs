//! Evaluating compiled rules on events and raising alerts.
//!
//! Each audit event is evaluated against every rule with one shared
//! [`EvalContext`], so its bodies are parsed at most once whatever the number
//! of rules reading them, and not at all when no rule gets that far. Rules are
//! indexed by the verbs their conditions require: a rule whose condition can
//! only hold for `create` is not even looked at for the `get`/`list`/`watch`
//! traffic that makes up most of an audit log.

use std::sync::Arc;

use auditflow_core::condition::{event_time, format_event_time, EvalContext};
use auditflow_core::event::{Alert, Event};
use chrono::{DateTime, Utc};

use super::compile::CompiledRule;
use super::rules::K8S_AUDIT_SOURCE;
use super::stateful::{DetectState, Verdict};

/// One rule matching one event.
#[derive(Debug)]
pub struct Match {
    /// The index of the rule in [`Engine::rules`].
    pub rule: usize,
    /// The alert it raised.
    pub alert: Alert,
}

/// Compiled rules, their state, and the host name alerts carry.
#[derive(Debug)]
pub struct Engine {
    rules: Arc<[CompiledRule]>,
    state: DetectState,
    hostname: Arc<str>,
}

impl Engine {
    /// An engine over `rules` with `state` for the stateful ones.
    pub fn new(rules: Arc<[CompiledRule]>, state: DetectState, hostname: Arc<str>) -> Engine {
        Engine {
            rules,
            state,
            hostname,
        }
    }

    /// The rules, in load order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// The state of the stateful rules.
    pub fn state_mut(&mut self) -> &mut DetectState {
        &mut self.state
    }

    /// Evaluates every rule on `event`, appending what matched. Events that are
    /// not audit events match nothing.
    pub fn evaluate(&mut self, event: &Event, matches: &mut Vec<Match>) {
        let Some(audit) = event.as_audit() else {
            return;
        };
        let ctx = EvalContext::new(event);
        let mut time: Option<DateTime<Utc>> = None;
        let verb = audit.header().verb.as_str();
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.may_match_verb(verb) || !rule.condition.matches_in(&ctx) {
                continue;
            }
            let time = *time.get_or_insert_with(|| event_time(audit.header()));
            let mut extra = Vec::new();
            if let Some(spec) = &rule.stateful {
                if spec.windows.as_ref().is_some_and(|w| w.contains(time)) {
                    continue;
                }
                if let Some(kind) = &spec.kind {
                    let nanos = time.timestamp_nanos_opt().unwrap_or_default();
                    match self.state.check(&rule.name, kind, &ctx, nanos) {
                        Verdict::Quiet => continue,
                        Verdict::Alert(fields) => extra = fields,
                    }
                }
            }
            matches.push(Match {
                rule: index,
                alert: alert(rule, &ctx, time, extra, &self.hostname),
            });
        }
    }
}

/// The alert of `rule` on the event of `ctx`, in Falco's JSON output form.
fn alert(
    rule: &CompiledRule,
    ctx: &EvalContext<'_>,
    time: DateTime<Utc>,
    extra: Vec<(&'static str, serde_json::Value)>,
    hostname: &str,
) -> Alert {
    let (text, mut output_fields) = rule.output.render(ctx);
    output_fields.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    Alert {
        time: format_event_time(time),
        rule: rule.name.to_string(),
        priority: rule.priority,
        output: format!(
            "{}: {} {}",
            time.format("%H:%M:%S%.9f"),
            rule.priority.as_str(),
            text
        ),
        output_fields,
        source: K8S_AUDIT_SOURCE.to_string(),
        tags: rule.tags.to_vec(),
        hostname: hostname.to_string(),
    }
}

/// The host name alerts carry by default: the kernel's, else `$HOSTNAME`, else `localhost`.
pub fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}
