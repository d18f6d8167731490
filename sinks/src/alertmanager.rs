//! The `alertmanager` sink: sends alerts to Prometheus Alertmanager (API v2).
//!
//! **The model.** An audit alert is an instantaneous event: a rule matched one
//! audit event at one moment. Alertmanager thinks in alerts that fire for a
//! while and then resolve. The sink maps one onto the other like this:
//!
//! - Each alert becomes an Alertmanager alert with the labels `alertname` (the
//!   rule), `severity` (the priority, lowercased: `warning`, `critical`, ...),
//!   `namespace` and `user` (the `ka.target.namespace` and `ka.user.name`
//!   output fields, when the rule's output has them), plus the configured
//!   static `labels`; the annotations `summary` (the rendered output) and
//!   `description` (the output, the rule's tags and the event source).
//!   Alertmanager identifies an alert by its label set, so repeated hits of one
//!   rule for one user in one namespace are one Alertmanager alert.
//! - `startsAt` is the time of the audit event that raised it; when the same
//!   label set is still active, Alertmanager keeps the earliest `startsAt`.
//! - `endsAt` is `resolve_timeout` after the later of the event's time and the
//!   moment the sink sends it: the alert fires for `resolve_timeout` after its
//!   last hit, then resolves by itself. (An alert about an old event, from a
//!   replayed log, still fires for `resolve_timeout`: late detections are not
//!   sent already resolved.) Every new hit of the label set moves `endsAt`.
//! - The sink remembers the active alerts (at most `max_active_alerts`, keyed
//!   by label set) and sends each again every `resend_interval` until its
//!   `endsAt`, with the same `startsAt`/`endsAt`, so an Alertmanager that
//!   restarted without its state, or a cluster peer that missed a request, has
//!   it again before it would have resolved. When the map is full, the alert
//!   closest to its end is forgotten first (it still resolves at its `endsAt`).
//!
//! **Delivery.** Alerts are batched and POSTed to `ENDPOINT/api/v2/alerts` with
//! the retries of [`crate::http_client`]; the events are acknowledged once
//! Alertmanager answered 2xx. A 4xx other than 408/429 (an invalid label, say)
//! rejects the batch: the error names the status and Alertmanager's message.
//!
//! **Other events.** Only alerts are sent. An audit event or record that
//! reaches the sink (its `inputs` should name a detection's `alerts` output)
//! is dropped, counted in `auditflow_component_discarded_events_total`, and
//! logged as a warning at most every 10 seconds.
//!
//! ```toml
//! [sinks.alertmanager]
//! type = "alertmanager"
//! inputs = ["detect.alerts"]
//! endpoint = "http://127.0.0.1:9093"
//! labels = { cluster = "prod-eu-1" }
//! resolve_timeout = "5m"
//! resend_interval = "1m"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::duration::deserialize_duration;
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::{Alert, Event, Payload};
use auditflow_core::metrics::Counter;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::Deserialize;

use crate::http_client::{
    acknowledge, parse_headers, parse_url, run_batched, BatchOptions, BatchedSink, DeliveryError,
    HttpClient, RequestOptions, RequestSpec,
};

/// The labels the sink sets itself; static `labels` may not use them.
pub const RESERVED_LABELS: [&str; 4] = ["alertname", "severity", "namespace", "user"];

/// The output field whose value becomes the `namespace` label.
const NAMESPACE_FIELD: &str = "ka.target.namespace";

/// The output field whose value becomes the `user` label.
const USER_FIELD: &str = "ka.user.name";

/// How often a warning about events that are not alerts is logged at most.
const NOT_ALERT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Options of the `alertmanager` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL (`http://127.0.0.1:9093`); alerts go to `/api/v2/alerts` under it.
    pub endpoint: String,
    /// Static labels added to every alert (`cluster`, `env`, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Headers of every request (an `Authorization` for a proxy in front of Alertmanager).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The `generatorURL` of every alert (a dashboard or runbook link).
    #[serde(default)]
    pub generator_url: Option<String>,
    /// How long an alert fires after its last hit before it resolves.
    #[serde(
        default = "default_resolve_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub resolve_timeout: Duration,
    /// How often an active alert is sent again.
    #[serde(
        default = "default_resend_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub resend_interval: Duration,
    /// The most active alerts remembered for resending.
    #[serde(default = "default_max_active_alerts")]
    pub max_active_alerts: usize,
    /// When a batch is cut.
    #[serde(default)]
    pub batch: BatchOptions,
    /// Timeouts and retries.
    #[serde(default)]
    pub request: RequestOptions,
}

fn default_resolve_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_resend_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_max_active_alerts() -> usize {
    10_000
}

/// Checks the options table of an `alertmanager` sink.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    let config: AlertmanagerConfig = parse_options(options)?;
    let mut errors = Vec::new();
    let url = alerts_url(&config.endpoint).map_err(|error| errors.push(error));
    let headers = parse_headers(&config.headers).map_err(|more| errors.extend(more));
    if let Some(generator_url) = &config.generator_url {
        if let Err(error) = parse_url("generator_url", generator_url) {
            errors.push(error);
        }
    }
    check_static_labels(&config.labels, &mut errors);
    check_timing(&config, &mut errors);
    config.batch.check(&mut errors);
    config.request.check(&mut errors);
    match (url, headers) {
        (Ok(url), Ok(headers)) if errors.is_empty() => Ok(Box::new(CheckedAlertmanager {
            config,
            url,
            headers,
        })),
        _ => Err(errors),
    }
}

/// `ENDPOINT/api/v2/alerts`.
fn alerts_url(endpoint: &str) -> Result<Url, OptionError> {
    let base = parse_url("endpoint", endpoint)?;
    let path = format!("{}/api/v2/alerts", base.path().trim_end_matches('/'));
    let mut url = base;
    url.set_path(&path);
    Ok(url)
}

/// Whether `name` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_static_labels(labels: &BTreeMap<String, String>, errors: &mut Vec<OptionError>) {
    for (name, value) in labels {
        let field = format!("labels.{name}");
        if !is_label_name(name) {
            errors.push(OptionError::new(
                field,
                "is not a valid label name: use letters, digits and _, not starting with a digit",
            ));
        } else if RESERVED_LABELS.contains(&name.as_str()) {
            errors.push(OptionError::new(
                field,
                format!(
                    "is set by the sink from each alert ({}); choose another name",
                    RESERVED_LABELS.join(", ")
                ),
            ));
        } else if value.is_empty() {
            errors.push(OptionError::new(
                field,
                "is empty (Alertmanager treats an empty label as absent); remove it or give it a value",
            ));
        }
    }
}

fn check_timing(config: &AlertmanagerConfig, errors: &mut Vec<OptionError>) {
    if config.resolve_timeout.is_zero() {
        errors.push(OptionError::new(
            "resolve_timeout",
            "must be longer than 0s",
        ));
    }
    if config.resend_interval.is_zero() || config.resend_interval >= config.resolve_timeout {
        errors.push(OptionError::new(
            "resend_interval",
            format!(
                "must be longer than 0s and shorter than resolve_timeout ({}), or an alert would resolve before it is sent again",
                humanize(config.resolve_timeout)
            ),
        ));
    }
    if config.max_active_alerts == 0 {
        errors.push(OptionError::new("max_active_alerts", "must be at least 1"));
    }
}

fn humanize(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

/// An `alertmanager` sink's options with its URL and headers parsed.
struct CheckedAlertmanager {
    config: AlertmanagerConfig,
    url: Url,
    headers: HeaderMap,
}

impl SinkConfig for CheckedAlertmanager {
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask> {
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let sink = AlertmanagerSink {
            client: HttpClient::new(self.config.request, &context.id)?,
            url: self.url.clone(),
            headers,
            config: self.config.clone(),
            active: HashMap::new(),
            last_not_alert_warning: None,
            resent: context.metrics.registry().counter(
                "auditflow_alertmanager_resent_alerts_total",
                "Active alerts the alertmanager sink sent again.",
                &context.metrics.labels_with(&[]),
            ),
        };
        Ok(Box::pin(run_batched(sink, self.config.batch, context)))
    }
}

/// An Alertmanager label set.
type Labels = BTreeMap<String, String>;

/// One alert as Alertmanager knows it.
#[derive(Debug, Clone, PartialEq)]
struct AmAlert {
    labels: Labels,
    annotations: BTreeMap<String, String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

impl AmAlert {
    /// The alert in Alertmanager's `postableAlert` form.
    fn to_json(&self, generator_url: Option<&str>) -> serde_json::Value {
        let mut alert = serde_json::json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "endsAt": self.ends_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        if let (Some(url), Some(object)) = (generator_url, alert.as_object_mut()) {
            object.insert("generatorURL".into(), url.into());
        }
        alert
    }

    /// Folds a newer hit of the same label set into this one.
    fn merge(&mut self, newer: AmAlert) {
        self.starts_at = self.starts_at.min(newer.starts_at);
        self.ends_at = self.ends_at.max(newer.ends_at);
        self.annotations = newer.annotations;
    }
}

/// An alert the sink sends again until it ends.
#[derive(Debug)]
struct ActiveAlert {
    alert: AmAlert,
    last_sent: Instant,
}

struct AlertmanagerSink {
    client: HttpClient,
    url: Url,
    headers: HeaderMap,
    config: AlertmanagerConfig,
    active: HashMap<Labels, ActiveAlert>,
    last_not_alert_warning: Option<Instant>,
    resent: Counter,
}

impl AlertmanagerSink {
    /// The Alertmanager alert an auditflow alert becomes, seen now.
    fn am_alert(&self, alert: &Alert, context: &SinkContext) -> AmAlert {
        let now = Utc::now();
        let starts_at = match DateTime::parse_from_rfc3339(&alert.time) {
            Ok(time) => time.with_timezone(&Utc),
            Err(error) => {
                context.metrics.error("invalid_alert_time", 1);
                tracing::debug!(component_id = %context.id, "alert time `{}` is not RFC 3339 ({error}); using the current time", alert.time);
                now
            }
        };
        let resolve_after = chrono::Duration::from_std(self.config.resolve_timeout)
            .unwrap_or(chrono::Duration::MAX);
        let ends_at = starts_at
            .max(now)
            .checked_add_signed(resolve_after)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        AmAlert {
            labels: alert_labels(alert, &self.config.labels),
            annotations: alert_annotations(alert),
            starts_at,
            ends_at,
        }
    }

    fn drop_not_alert(&mut self, event: Event, context: &SinkContext) {
        context.metrics.discarded_events.add(1);
        if self
            .last_not_alert_warning
            .is_none_or(|at| at.elapsed() >= NOT_ALERT_WARNING_INTERVAL)
        {
            self.last_not_alert_warning = Some(Instant::now());
            tracing::warn!(component_id = %context.id, "the alertmanager sink only sends alerts; other events are dropped: name a detection's alerts output (like \"detect.alerts\") in its inputs");
        }
        drop(event);
    }

    /// The batch's alerts merged by label set, with what is already active, in first-seen order.
    fn merged(&self, batch: &[(Event, AmAlert)]) -> Vec<AmAlert> {
        let mut merged: Vec<AmAlert> = Vec::new();
        let mut index: HashMap<&Labels, usize> = HashMap::new();
        for (_, alert) in batch {
            match index.get(&alert.labels) {
                Some(&at) => merged[at].merge(alert.clone()),
                None => {
                    index.insert(&alert.labels, merged.len());
                    let mut first = alert.clone();
                    if let Some(active) = self.active.get(&alert.labels) {
                        let mut earlier = active.alert.clone();
                        earlier.merge(first);
                        first = earlier;
                    }
                    merged.push(first);
                }
            }
        }
        merged
    }

    /// POSTs alerts to Alertmanager; returns the body's size and the outcome.
    ///
    /// With `retry`, failures are retried as `request.*` says; without, one attempt is made.
    async fn post(
        &mut self,
        alerts: &[AmAlert],
        retry: bool,
        context: &SinkContext,
    ) -> (usize, Result<(), DeliveryError>) {
        let generator_url = self.config.generator_url.as_deref();
        let body =
            serde_json::Value::Array(alerts.iter().map(|a| a.to_json(generator_url)).collect())
                .to_string();
        let bytes = body.len();
        let request = RequestSpec {
            method: Method::POST,
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: Bytes::from(body),
        };
        let result = if retry {
            self.client.send(&request, context).await
        } else {
            self.client.send_once(&request).await
        };
        (bytes, result)
    }

    /// Remembers alerts Alertmanager accepted, forgetting the ones closest to their end when full.
    fn remember(&mut self, alerts: Vec<AmAlert>) {
        let now = Instant::now();
        for alert in alerts {
            if !self.active.contains_key(&alert.labels)
                && self.active.len() >= self.config.max_active_alerts
            {
                self.forget_one();
            }
            self.active.insert(
                alert.labels.clone(),
                ActiveAlert {
                    alert,
                    last_sent: now,
                },
            );
        }
    }

    fn forget_one(&mut self) {
        let closest_to_end = self
            .active
            .iter()
            .min_by_key(|(_, active)| active.alert.ends_at)
            .map(|(labels, _)| labels.clone());
        if let Some(labels) = closest_to_end {
            self.active.remove(&labels);
        }
    }
}

impl BatchedSink for AlertmanagerSink {
    type Item = (Event, AmAlert);

    fn prepare(&mut self, event: Event, context: &SinkContext) -> Option<(Self::Item, usize)> {
        let Payload::Alert(alert) = &event.payload else {
            self.drop_not_alert(event, context);
            return None;
        };
        let am_alert = self.am_alert(alert, context);
        let size = alert.output.len() + alert.rule.len() + 256;
        Some(((event, am_alert), size))
    }

    async fn send(&mut self, batch: Vec<Self::Item>, context: &SinkContext) {
        let alerts = self.merged(&batch);
        let (bytes, result) = self.post(&alerts, true, context).await;
        if result.is_ok() {
            self.remember(alerts);
        }
        let events = batch.into_iter().map(|(event, _)| event).collect();
        acknowledge(context, events, bytes, result);
    }

    fn housekeeping_interval(&self) -> Option<Duration> {
        let quarter = self.config.resend_interval / 4;
        Some(quarter.clamp(Duration::from_millis(50), Duration::from_secs(15)))
    }

    async fn housekeeping(&mut self, context: &SinkContext) {
        let now = Utc::now();
        self.active.retain(|_, active| active.alert.ends_at > now);
        let resend_interval = self.config.resend_interval;
        let mut due: Vec<AmAlert> = self
            .active
            .values()
            .filter(|active| active.last_sent.elapsed() >= resend_interval)
            .map(|active| active.alert.clone())
            .collect();
        due.sort_by_key(|alert| alert.starts_at);
        for chunk in due.chunks(self.config.batch.max_events) {
            // One attempt: a resend that fails is tried again at the next interval,
            // and retrying it here would hold up new alerts.
            let (_, result) = self.post(chunk, false, context).await;
            match result {
                Ok(()) => {
                    let sent_at = Instant::now();
                    for alert in chunk {
                        if let Some(active) = self.active.get_mut(&alert.labels) {
                            active.last_sent = sent_at;
                        }
                    }
                    self.resent.add(chunk.len() as u64);
                }
                Err(error) => {
                    context.metrics.error("resend_failed", chunk.len() as u64);
                    tracing::warn!(component_id = %context.id, alerts = chunk.len(), "re-sending active alerts failed: {error}; trying again in {}", humanize(resend_interval));
                }
            }
        }
    }
}

/// The labels of an alert: the rule, the priority, namespace and user when known, the static ones.
fn alert_labels(alert: &Alert, static_labels: &Labels) -> Labels {
    let mut labels = static_labels.clone();
    labels.insert("alertname".into(), alert.rule.clone());
    labels.insert(
        "severity".into(),
        alert.priority.as_str().to_ascii_lowercase(),
    );
    for (label, field) in [("namespace", NAMESPACE_FIELD), ("user", USER_FIELD)] {
        if let Some(value) = output_field_text(alert, field) {
            labels.insert(label.into(), value);
        }
    }
    labels
}

/// An output field as label text; `None` when absent, `<NA>` (null) or empty.
fn output_field_text(alert: &Alert, field: &str) -> Option<String> {
    match alert.output_fields.get(field)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) if text.is_empty() => None,
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// `summary` (the output) and `description` (the output, tags and source).
fn alert_annotations(alert: &Alert) -> BTreeMap<String, String> {
    let mut description = alert.output.clone();
    if !alert.tags.is_empty() {
        description.push_str(&format!("\ntags: {}", alert.tags.join(", ")));
    }
    description.push_str(&format!(
        "\nrule: {} ({}), source: {}, host: {}",
        alert.rule,
        alert.priority.as_str(),
        alert.source,
        alert.hostname
    ));
    BTreeMap::from([
        ("summary".to_string(), alert.output.clone()),
        ("description".to_string(), description),
    ])
}

#[cfg(test)]
mod tests {
    use auditflow_core::event::Priority;
    use indexmap::IndexMap;

    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn fields(text: &str) -> Vec<String> {
        match parse(&table(text)) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    fn alert(fields: &[(&str, serde_json::Value)]) -> Alert {
        Alert {
            time: "2026-11-24T10:00:00.123456789Z".into(),
            rule: "Exec Into Pod".into(),
            priority: Priority::Critical,
            output: "exec by alice".into(),
            output_fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<IndexMap<_, _>>(),
            source: "k8s_audit".into(),
            tags: vec!["k8s".into()],
            hostname: "node-1".into(),
        }
    }

    #[test]
    fn the_alerts_url_is_under_the_endpoint() {
        let url = alerts_url("http://am:9093").unwrap();
        assert_eq!(url.as_str(), "http://am:9093/api/v2/alerts");
        let url = alerts_url("https://proxy/alertmanager/").unwrap();
        assert_eq!(url.as_str(), "https://proxy/alertmanager/api/v2/alerts");
    }

    #[test]
    fn bad_options_are_all_named() {
        assert!(fields("endpoint = \"http://am:9093\"").is_empty());
        assert_eq!(
            fields(
                "endpoint = \"am\"\nlabels = { severity = \"x\", \"9x\" = \"y\", env = \"\" }\n\
                 resolve_timeout = \"1m\"\nresend_interval = \"1m\"\nmax_active_alerts = 0"
            ),
            [
                "endpoint",
                "labels.9x",
                "labels.env",
                "labels.severity",
                "resend_interval",
                "max_active_alerts"
            ]
        );
    }

    #[test]
    fn labels_come_from_the_rule_priority_and_output_fields() {
        let statics = Labels::from([("cluster".to_string(), "eu".to_string())]);
        let labels = alert_labels(
            &alert(&[
                ("ka.target.namespace", "prod".into()),
                ("ka.user.name", "alice".into()),
            ]),
            &statics,
        );
        let expected: Labels = [
            ("alertname", "Exec Into Pod"),
            ("severity", "critical"),
            ("namespace", "prod"),
            ("user", "alice"),
            ("cluster", "eu"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, expected);
        let labels = alert_labels(
            &alert(&[("ka.target.namespace", serde_json::Value::Null)]),
            &Labels::new(),
        );
        assert!(!labels.contains_key("namespace"), "<NA> is no label");
        assert!(!labels.contains_key("user"));
    }

    #[test]
    fn a_merge_keeps_the_earliest_start_and_the_latest_end() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut first = AmAlert {
            labels: Labels::new(),
            annotations: BTreeMap::from([("summary".into(), "old".into())]),
            starts_at: at("2026-11-24T10:00:00Z"),
            ends_at: at("2026-11-24T10:05:00Z"),
        };
        first.merge(AmAlert {
            labels: Labels::new(),
            annotations: BTreeMap::from([("summary".into(), "new".into())]),
            starts_at: at("2026-11-24T10:01:00Z"),
            ends_at: at("2026-11-24T10:06:00Z"),
        });
        assert_eq!(first.starts_at, at("2026-11-24T10:00:00Z"));
        assert_eq!(first.ends_at, at("2026-11-24T10:06:00Z"));
        assert_eq!(first.annotations["summary"], "new");
        let json = first.to_json(Some("https://runbooks/exec"));
        assert_eq!(json["startsAt"], "2026-11-24T10:00:00.000Z");
        assert_eq!(json["generatorURL"], "https://runbooks/exec");
    }
}
