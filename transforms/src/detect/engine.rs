//! Evaluating compiled rules on events and raising alerts.
//!
//! Each audit event is evaluated against every rule with one shared
//! [`EvalContext`], so its bodies are parsed at most once whatever the number
//! of rules reading them, and not at all when no rule gets that far. Rules are
//! indexed by the verbs and stages their conditions require: a rule whose
//! condition can only hold for `create` is not even looked at for the
//! `get`/`list`/`watch` traffic that makes up most of an audit log. The rules
//! that may match a (verb, stage) pair are worked out the first time the pair
//! is seen and kept.

use std::collections::HashMap;
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
    candidates: Candidates,
}

/// The indexes of the rules that may match, by verb and stage.
#[derive(Debug, Default)]
struct Candidates {
    by_verb: HashMap<Box<str>, ByStage>,
    pairs: usize,
}

/// Rule indexes by stage, for one verb.
type ByStage = HashMap<Box<str>, Box<[usize]>>;

/// At most this many (verb, stage) pairs are kept (verbs come from clients; bound them).
const MAX_CANDIDATE_PAIRS: usize = 4096;

impl Candidates {
    /// The rules that may match `verb` at `stage`, computed and kept on first sight.
    fn get(&mut self, rules: &[CompiledRule], verb: &str, stage: &str) -> Option<&[usize]> {
        let known = self
            .by_verb
            .get(verb)
            .is_some_and(|stages| stages.contains_key(stage));
        if !known {
            if self.pairs >= MAX_CANDIDATE_PAIRS {
                return None;
            }
            let indexes = (0..rules.len())
                .filter(|&i| rules.get(i).is_some_and(|r| r.may_match(verb, stage)))
                .collect();
            self.pairs += 1;
            self.by_verb
                .entry(verb.into())
                .or_default()
                .insert(stage.into(), indexes);
        }
        self.by_verb
            .get(verb)
            .and_then(|stages| stages.get(stage))
            .map(|indexes| &**indexes)
    }
}

impl Engine {
    /// An engine over `rules` with `state` for the stateful ones.
    pub fn new(rules: Arc<[CompiledRule]>, state: DetectState, hostname: Arc<str>) -> Engine {
        Engine {
            rules,
            state,
            hostname,
            candidates: Candidates::default(),
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
        let header = audit.header();
        let Engine {
            rules,
            state,
            hostname,
            candidates,
        } = self;
        let all: Vec<usize>;
        let indexes = match candidates.get(rules, header.verb(), header.stage().as_str()) {
            Some(indexes) => indexes,
            None => {
                all = (0..rules.len()).collect();
                &all
            }
        };
        for &index in indexes {
            let Some(rule) = rules.get(index) else {
                continue;
            };
            if !rule.condition.matches_in(&ctx) {
                continue;
            }
            let time = *time.get_or_insert_with(|| event_time(header));
            let mut extra = Vec::new();
            if let Some(spec) = &rule.stateful {
                if spec.windows.as_ref().is_some_and(|w| w.contains(time)) {
                    continue;
                }
                if let Some(kind) = &spec.kind {
                    let nanos = time.timestamp_nanos_opt().unwrap_or_default();
                    match state.check(&rule.name, kind, &ctx, nanos) {
                        Verdict::Quiet => continue,
                        Verdict::Alert(fields) => extra = fields,
                    }
                }
            }
            matches.push(Match {
                rule: index,
                alert: alert(rule, &ctx, time, extra, hostname),
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
