//! The `redact` transform: what must never be stored is taken out of the bodies.
//!
//! With no options it is Secret-safe ([`secret`]): the values of every Secret's
//! `data` and `stringData` are replaced (keys kept) and its last-applied
//! annotation removed, whatever level the event was logged at. On top of that:
//!
//! - `fields`: paths whose values are redacted ([`path`]);
//! - `patterns` and `builtin_patterns`: regular expressions searched in every
//!   string of the bodies ([`pattern`]);
//! - `mode`: `mask` (default), `hash` (keyed HMAC-SHA256, needs `key`) or
//!   `remove` ([`replacer`]).
//!
//! ```toml
//! [transforms.redact]
//! type = "redact"
//! inputs = ["policy"]
//! fields = ["requestObject.spec.containers[*].env[*].value"]
//! builtin_patterns = ["jwt", "bearer_token"]
//! patterns = [{ name = "internal_token", regex = "itk_[A-Za-z0-9]{32}" }]
//! mode = "hash"
//! key = "${REDACT_KEY}"
//! ```
//!
//! Events without bodies are passed on as they are, and a body is only parsed
//! when something may have to be redacted in it: it belongs to a request about
//! Secrets or its text holds `"Secret`, a field path starts in it, or a
//! pattern matches its raw text. Redactions are counted in
//! `auditflow_redact_redactions_total{rule}` (`secret`, `field`, or the
//! pattern's name) and edited events in `auditflow_redact_events_total`.

pub mod path;
pub mod pattern;
pub mod replacer;
pub mod secret;

use std::sync::Arc;

use auditflow_core::component::{Transform, TransformConfig, TransformContext, TransformOutput};
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::{AuditEvent, Event, EventError, Payload};
use auditflow_core::metrics::{ComponentMetrics, Counter};
use serde::Deserialize;
use serde_json::Value;

use path::{Body, FieldPath};
use pattern::{Pattern, PatternSet, BUILTIN_PATTERNS};
use replacer::{HashEncoding, Mode, Replacer};
use secret::SecretScope;

/// Options of the `redact` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedactOptions {
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    patterns: Vec<PatternOption>,
    #[serde(default)]
    builtin_patterns: Vec<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    hash_encoding: HashEncoding,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternOption {
    name: String,
    regex: String,
}

/// A checked `redact` configuration.
#[derive(Debug, Clone)]
pub struct RedactConfig {
    redactor: Arc<Redactor>,
}

/// Checks the options of a `redact` transform.
pub fn parse(options: &toml::Table) -> Result<Box<dyn TransformConfig>, Vec<OptionError>> {
    let options: RedactOptions = parse_options(options)?;
    Redactor::from_options(options).map(|redactor| {
        Box::new(RedactConfig {
            redactor: Arc::new(redactor),
        }) as Box<dyn TransformConfig>
    })
}

impl TransformConfig for RedactConfig {
    fn runs_inline(&self) -> bool {
        true
    }

    fn build(&self, context: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        Ok(Box::new(Redact {
            metrics: RedactMetrics::new(&context.metrics, &self.redactor),
            redactor: self.redactor.clone(),
        }))
    }
}

/// Everything the transform redacts, and how.
#[derive(Debug, Clone)]
pub struct Redactor {
    fields: Vec<FieldPath>,
    patterns: PatternSet,
    replacer: Replacer,
}

/// How many values one event had redacted, by rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Values of Secrets.
    pub secret: u64,
    /// Values reached by `fields`.
    pub field: u64,
    /// Matches of each pattern, in the order of [`PatternSet::patterns`].
    pub patterns: Vec<u64>,
}

impl Tally {
    fn total(&self) -> u64 {
        self.secret + self.field + self.patterns.iter().sum::<u64>()
    }
}

impl Redactor {
    fn from_options(options: RedactOptions) -> Result<Redactor, Vec<OptionError>> {
        let mut errors = Vec::new();
        let mut fields = Vec::new();
        for (index, text) in options.fields.iter().enumerate() {
            match FieldPath::parse(text) {
                Ok(path) => fields.push(path),
                Err(error) => errors.push(OptionError::new(format!("fields[{index}]"), error)),
            }
        }
        let mut patterns = Vec::new();
        for (index, name) in options.builtin_patterns.iter().enumerate() {
            match Pattern::builtin(name) {
                Some(pattern) => patterns.push(pattern),
                None => errors.push(OptionError::new(
                    format!("builtin_patterns[{index}]"),
                    format!(
                        "unknown built-in pattern `{name}`: expected one of {}",
                        builtin_names().join(", ")
                    ),
                )),
            }
        }
        for (index, option) in options.patterns.iter().enumerate() {
            if let Some(problem) = bad_pattern_name(&option.name, &patterns) {
                errors.push(OptionError::new(format!("patterns[{index}].name"), problem));
            }
            match Pattern::new(&option.name, &option.regex) {
                Ok(pattern) => patterns.push(pattern),
                Err(error) => {
                    errors.push(OptionError::new(format!("patterns[{index}].regex"), error))
                }
            }
        }
        let replacer = Replacer::new(options.mode, options.key.as_deref(), options.hash_encoding)
            .map_err(|error| OptionError::new("key", error));
        match replacer {
            Ok(replacer) if errors.is_empty() => Ok(Redactor {
                fields,
                patterns: PatternSet::new(patterns),
                replacer,
            }),
            Ok(_) => Err(errors),
            Err(error) => {
                errors.push(error);
                Err(errors)
            }
        }
    }

    /// What to do with each body of an event: the Secret scope, and whether fields
    /// or patterns apply. `None` for a body that needs no parsing.
    fn plan(&self, event: &AuditEvent, body: Body) -> Option<BodyPlan> {
        let raw = match body {
            Body::Request => event.request_object(),
            Body::Response => event.response_object(),
        }?;
        let about_secrets = event
            .header()
            .object_ref()
            .is_some_and(|object| object.resource() == Some("secrets"));
        let secret = if about_secrets {
            Some(SecretScope::WholeBody)
        } else {
            secret::may_hold_secret(raw).then_some(SecretScope::SecretKinds)
        };
        let fields = self.fields.iter().any(|path| path.body == body);
        let patterns = self.patterns.may_match(raw);
        (secret.is_some() || fields || patterns).then_some(BodyPlan {
            secret,
            fields,
            patterns,
        })
    }

    /// Redacts an event; `Ok(None)` when nothing had to change.
    pub fn redact(&self, event: &AuditEvent) -> Result<Option<(AuditEvent, Tally)>, EventError> {
        let plans: Vec<(Body, BodyPlan)> = [Body::Request, Body::Response]
            .into_iter()
            .filter_map(|body| self.plan(event, body).map(|plan| (body, plan)))
            .collect();
        if plans.is_empty() {
            return Ok(None);
        }
        let mut tally = Tally {
            patterns: vec![0; self.patterns.patterns().len()],
            ..Tally::default()
        };
        let mut edit = event.edit()?;
        for (body, plan) in plans {
            edit.update(body.field(), |value| {
                let before = tally.total();
                self.redact_body(body, &plan, value, &mut tally);
                tally.total() != before
            })?;
        }
        if tally.total() == 0 {
            return Ok(None);
        }
        Ok(Some((edit.finish()?, tally)))
    }

    fn redact_body(&self, body: Body, plan: &BodyPlan, value: &mut Value, tally: &mut Tally) {
        if let Some(scope) = plan.secret {
            tally.secret += secret::redact(value, scope, &self.replacer);
        }
        if plan.fields {
            for path in self.fields.iter().filter(|path| path.body == body) {
                tally.field += path.redact(value, &self.replacer);
            }
        }
        if plan.patterns {
            self.patterns
                .redact(value, &self.replacer, &mut tally.patterns);
        }
    }
}

/// What one body needs.
#[derive(Debug, Clone, Copy)]
struct BodyPlan {
    secret: Option<SecretScope>,
    fields: bool,
    patterns: bool,
}

fn builtin_names() -> Vec<&'static str> {
    BUILTIN_PATTERNS.iter().map(|(name, _, _)| *name).collect()
}

fn bad_pattern_name(name: &str, taken: &[Pattern]) -> Option<String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Some(format!(
            "`{name}`: a pattern name holds letters, digits, `_` and `-` (it appears in the mask marker and the metrics)"
        ));
    }
    if name == "secret" || name == "field" || taken.iter().any(|p| p.name == name) {
        return Some(format!(
            "`{name}` is taken (by `secret`, `field`, a built-in or an earlier pattern): pick another name"
        ));
    }
    None
}

/// The series the transform reports, looked up once.
struct RedactMetrics {
    component: ComponentMetrics,
    events: Counter,
    secret: Counter,
    field: Counter,
    patterns: Vec<Counter>,
}

impl RedactMetrics {
    fn new(component: &ComponentMetrics, redactor: &Redactor) -> RedactMetrics {
        let registry = component.registry();
        let redactions = |rule: &str| {
            registry.counter(
                "auditflow_redact_redactions_total",
                "Values the redact transform replaced or removed, by rule (secret, field, or a pattern's name).",
                &component.labels_with(&[("rule", rule)]),
            )
        };
        RedactMetrics {
            events: registry.counter(
                "auditflow_redact_events_total",
                "Events the redact transform changed.",
                &component.labels_with(&[]),
            ),
            secret: redactions("secret"),
            field: redactions("field"),
            patterns: redactor
                .patterns
                .patterns()
                .iter()
                .map(|pattern| redactions(&pattern.name))
                .collect(),
            component: component.clone(),
        }
    }

    fn count(&self, tally: &Tally) {
        self.events.add(1);
        self.secret.add(tally.secret);
        self.field.add(tally.field);
        for (counter, count) in self.patterns.iter().zip(&tally.patterns) {
            counter.add(*count);
        }
    }
}

struct Redact {
    redactor: Arc<Redactor>,
    metrics: RedactMetrics,
}

impl Transform for Redact {
    fn transform(&mut self, batch: Vec<Event>, output: &mut TransformOutput) {
        for mut event in batch {
            let Some(audit) = event.as_audit() else {
                output.push(event);
                continue;
            };
            match self.redactor.redact(audit) {
                Ok(None) => output.push(event),
                Ok(Some((redacted, tally))) => {
                    self.metrics.count(&tally);
                    event.payload = Payload::Audit(Arc::new(redacted));
                    output.push(event);
                }
                Err(error) => {
                    // An event that cannot be checked is never passed on as it is.
                    self.metrics.component.error("redact_failed", 1);
                    let shown = format!(
                        "(the event {} is withheld: it may hold secrets)",
                        audit.header().audit_id()
                    );
                    output.push_error_showing(
                        &event,
                        &format!("cannot redact this event, so it is not passed on: {error}"),
                        &shown,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
