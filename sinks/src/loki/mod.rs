//! The `loki` sink: pushes audit events and alerts to Loki's push API (or a
//! server that speaks it), with labels that keep Loki's streams few.
//!
//! **Each event is one entry**: its JSON as received, byte for byte (or a
//! `text` line), at the event's own time (`stageTimestamp`, else
//! `requestReceivedTimestamp`; an alert's `time`), never the time it arrived;
//! an event without one is refused (counted as `timestamp_missing`; an
//! `errors` record, which has none, goes at its arrival time). Its
//! **labels** ([`labels`]) are templates over the event with few values
//! (`job`, `verb`, `stage`, `resource`, the `cluster`); the many-valued
//! fields (`auditID`, `user`, `namespace`, `name`, `code`) go to structured
//! metadata, and a label that turns out to have more than `max_label_values`
//! values is moved there at run time.
//!
//! **Each batch** is one push request ([`push`]): entries grouped into
//! streams, sorted by time within each, as snappy-compressed protobuf (the
//! default) or JSON (gzip-compressed with `compression = "gzip"`). A 2xx
//! answer acknowledges the batch; 408, 429 and 5xx are retried with backoff
//! (`Retry-After` honoured), holding the pipeline up meanwhile; another status
//! rejects the batch, with the server's message logged (see
//! [`crate::http_client`]).
//!
//! ```toml
//! [sinks.loki]
//! type = "loki"
//! inputs = ["policy", "detect.alerts"]
//! endpoint = "https://loki.example.com"
//! tenant_id = "platform"
//! auth = { strategy = "basic", user = "auditflow", password = "${LOKI_PASSWORD}" }
//! cluster = "production-eu"
//! ```

pub mod labels;
pub mod push;
pub mod search;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use auditflow_core::ack::BatchStatus;
use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::{parse_options, AuthOptions, OptionError, TlsOptions};
use auditflow_core::event::Event;
use auditflow_core::template::{own_time, Template};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::Deserialize;

use crate::http_client::{
    acknowledge, parse_url, run_batched, BatchOptions, BatchTable, BatchedSink, HttpClient,
    RequestOptions, RequestSpec,
};
use labels::Labeller;
use push::{Entry, Streams};

/// The sink's `type`.
pub const TYPE_NAME: &str = "loki";

/// What an entry's line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineEncoding {
    /// The event's JSON, byte for byte.
    #[default]
    Json,
    /// One line of text: time, user, verb, object (an alert: its output).
    Text,
}

/// How the push request is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushCompression {
    /// Protobuf, snappy-compressed (what Promtail and Alloy send).
    #[default]
    Snappy,
    /// JSON, gzip-compressed.
    Gzip,
    /// JSON, not compressed.
    None,
}

/// Options of the `loki` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// The server's base URL (`http://loki:3100`).
    pub endpoint: String,
    /// The push path (default `/loki/api/v1/push`).
    #[serde(default = "default_path")]
    pub path: String,
    /// The tenant (`X-Scope-OrgID`).
    pub tenant_id: Option<String>,
    /// Credentials (`basic` or `bearer`).
    pub auth: Option<AuthOptions>,
    /// TLS for an `https://` endpoint.
    pub tls: Option<TlsOptions>,
    /// The cluster's name, as the `cluster` label.
    pub cluster: Option<String>,
    /// Label name to template (replaces the default labels).
    pub labels: Option<BTreeMap<String, String>>,
    /// Structured metadata name to template (replaces the default metadata).
    pub structured_metadata: Option<BTreeMap<String, String>>,
    /// The most values a label may take before it is moved to metadata.
    #[serde(default = "default_max_label_values")]
    pub max_label_values: usize,
    /// `json` (default) or `text`.
    #[serde(default)]
    pub encoding: LineEncoding,
    /// `snappy` (protobuf, default), `gzip` (JSON) or `none` (JSON).
    #[serde(default)]
    pub compression: PushCompression,
    /// When a batch is cut.
    #[serde(default)]
    pub batch: BatchTable,
    /// Timeouts and retries.
    #[serde(default)]
    pub request: RequestOptions,
}

fn default_path() -> String {
    "/loki/api/v1/push".to_string()
}

fn default_max_label_values() -> usize {
    100
}

/// The default labels: few values each.
pub fn default_labels(cluster: Option<&str>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("job", "kubernetes-audit"),
        ("verb", "{{ verb | default(\"none\") }}"),
        ("stage", "{{ stage | default(\"none\") }}"),
        ("resource", "{{ objectRef.resource | default(\"none\") }}"),
    ]
    .into_iter()
    .map(|(name, template)| (name.to_string(), template.to_string()))
    .collect();
    if let Some(cluster) = cluster {
        labels.insert("cluster".to_string(), cluster.to_string());
    }
    labels
}

/// The default structured metadata: the many-valued fields.
pub fn default_metadata() -> BTreeMap<String, String> {
    [
        ("auditID", "{{ auditID }}"),
        ("user", "{{ user.username }}"),
        ("namespace", "{{ objectRef.namespace }}"),
        ("name", "{{ objectRef.name }}"),
        ("code", "{{ responseStatus.code }}"),
    ]
    .into_iter()
    .map(|(name, template)| (name.to_string(), template.to_string()))
    .collect()
}

/// The batch limits of this sink when `batch` leaves them out.
pub fn default_batch() -> BatchOptions {
    BatchOptions {
        max_events: 5000,
        max_bytes: 4 * 1024 * 1024,
        timeout: Duration::from_secs(1),
    }
}

/// A `loki` sink's options, checked.
#[derive(Debug, Clone)]
pub struct CheckedLoki {
    /// The options as written.
    pub config: LokiConfig,
    /// The push URL.
    pub url: Url,
    /// The headers of every push (tenant, credentials).
    pub headers: HeaderMap,
    /// Label templates.
    pub labels: Vec<(String, Template)>,
    /// Metadata templates.
    pub metadata: Vec<(String, Template)>,
    /// The batch limits.
    pub batch: BatchOptions,
}

/// Checks the options table of a `loki` sink.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    Ok(Box::new(check(options)?))
}

/// Checks the options table of a `loki` sink; every error names its option.
pub fn check(options: &toml::Table) -> Result<CheckedLoki, Vec<OptionError>> {
    let config: LokiConfig = parse_options(options)?;
    let mut errors = Vec::new();
    let url = parse_url("endpoint", &config.endpoint)
        .and_then(|base| push_url(&base, &config.path))
        .map_err(|error| errors.push(error))
        .ok();
    let headers = headers(&config, &mut errors);
    let labels = config
        .labels
        .clone()
        .unwrap_or_else(|| default_labels(config.cluster.as_deref()));
    let no_labels = labels.is_empty();
    let labels = templates("labels", &labels, true, &mut errors);
    // The default metadata leaves out what the labels already carry.
    let metadata = config.structured_metadata.clone().unwrap_or_else(|| {
        let mut metadata = default_metadata();
        metadata.retain(|name, _| !labels.iter().any(|(label, _)| label == name));
        metadata
    });
    let metadata = templates("structured_metadata", &metadata, false, &mut errors);
    if labels.len() > MAX_LABELS {
        errors.push(OptionError::new("labels", format!("has {} labels; Loki takes at most {MAX_LABELS} a stream: move some to structured_metadata", labels.len())));
    }
    for (name, _) in &labels {
        if metadata.iter().any(|(other, _)| other == name) {
            errors.push(OptionError::new(
                format!("structured_metadata.{name}"),
                "is also a label: give one of them another name",
            ));
        }
    }
    if no_labels {
        errors.push(OptionError::new(
            "labels",
            "needs at least one label: Loki keeps entries in streams of labels",
        ));
    }
    if config.max_label_values == 0 {
        errors.push(OptionError::new("max_label_values", "must be at least 1"));
    }
    if let Some(tls) = &config.tls {
        tls.check("tls", &mut errors);
        tls.check_unencrypted_key("tls", &mut errors);
    }
    let batch = config.batch.or(default_batch());
    batch.check(&mut errors);
    config.request.check(&mut errors);
    match url {
        Some(url) if errors.is_empty() => Ok(CheckedLoki {
            config,
            url,
            headers,
            labels,
            metadata,
            batch,
        }),
        _ => Err(errors),
    }
}

/// The push URL: `path` (with its query string) after the endpoint's own
/// path, so a server behind a gateway at `https://gw/loki-a` keeps its prefix.
pub(crate) fn push_url(base: &Url, path: &str) -> Result<Url, OptionError> {
    if !path.starts_with('/') {
        return Err(OptionError::new(
            "path",
            format!("`{path}` must begin with /"),
        ));
    }
    let (path, query) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let mut url = base.clone();
    url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
    url.set_query(query);
    Ok(url)
}

/// The most labels a stream may have in Loki by default (`max_label_names_per_series`).
const MAX_LABELS: usize = 15;

fn headers(config: &LokiConfig, errors: &mut Vec<OptionError>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(tenant) = &config.tenant_id {
        match HeaderValue::from_str(tenant) {
            Ok(value) => {
                headers.insert("X-Scope-OrgID", value);
            }
            Err(_) => errors.push(OptionError::new(
                "tenant_id",
                "is not a valid HTTP header value (visible ASCII)",
            )),
        }
    }
    if let Some(auth) = &config.auth {
        if auth.strategy == auditflow_core::config::auth::AuthStrategy::ApiKey {
            errors.push(OptionError::new(
                "auth.strategy",
                "Loki takes \"basic\" or \"bearer\" credentials, not an API key",
            ));
        }
        match auth.credentials("auth") {
            Ok(credentials) => match HeaderValue::from_str(&credentials.authorization()) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    headers.insert(AUTHORIZATION, value);
                }
                Err(_) => errors.push(OptionError::new(
                    "auth",
                    "the credentials hold a character an HTTP header cannot carry",
                )),
            },
            Err(more) => errors.extend(more),
        }
    }
    headers
}

/// Parses a table of name → template; errors name `FIELD.NAME`.
fn templates(
    field: &str,
    table: &BTreeMap<String, String>,
    are_labels: bool,
    errors: &mut Vec<OptionError>,
) -> Vec<(String, Template)> {
    let mut parsed = Vec::new();
    for (name, text) in table {
        if !labels::is_label_name(name) {
            errors.push(OptionError::new(
                format!("{field}.{name}"),
                "is not a valid name: letters, digits and _, not starting with a digit",
            ));
            continue;
        }
        match Template::parse(text) {
            Ok(template) => {
                if are_labels {
                    let risky = labels::high_cardinality_fields(&template);
                    if !risky.is_empty() {
                        tracing::warn!("{field}.{name} reads {}, which has a value per user, object or request: as a label it makes a stream each; it is moved to structured metadata once it passes max_label_values", risky.join(", "));
                    }
                }
                parsed.push((name.clone(), template));
            }
            Err(message) => errors.push(OptionError::new(format!("{field}.{name}"), message)),
        }
    }
    parsed
}

impl SinkConfig for CheckedLoki {
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask> {
        let sink = LokiSink::new(self, &context)?;
        Ok(Box::pin(run_batched(sink, self.batch, context)))
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// One event ready for a push: its labels and its entry.
pub struct Prepared {
    event: Event,
    labels: BTreeMap<String, String>,
    entry: Entry,
}

struct LokiSink {
    client: HttpClient,
    url: Url,
    headers: HeaderMap,
    encoding: LineEncoding,
    compression: PushCompression,
    labeller: Labeller,
    /// Warnings about events refused for their time, at most one a minute.
    timeless: auditflow_core::throttle::Throttle,
}

impl LokiSink {
    fn new(checked: &CheckedLoki, context: &SinkContext) -> anyhow::Result<LokiSink> {
        let config = &checked.config;
        let mut headers = checked.headers.clone();
        // Protobuf bodies are snappy *block* compressed, which Loki reads
        // without a Content-Encoding; JSON bodies may be gzipped.
        let content_type = match config.compression {
            PushCompression::Snappy => "application/x-protobuf",
            PushCompression::Gzip | PushCompression::None => "application/json",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if config.compression == PushCompression::Gzip {
            if let Some(encoding) = crate::http_client::Compression::Gzip.content_encoding() {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
            }
        }
        Ok(LokiSink {
            client: HttpClient::with_tls(config.request, &context.id, config.tls.as_ref())?,
            url: checked.url.clone(),
            headers,
            encoding: config.encoding,
            compression: config.compression,
            labeller: Labeller::new(
                checked.labels.clone(),
                checked.metadata.clone(),
                config.max_label_values,
            ),
            timeless: auditflow_core::throttle::Throttle::new(Duration::from_secs(60)),
        })
    }

    fn body(&self, batch: &[Prepared]) -> std::io::Result<Vec<u8>> {
        let mut streams = Streams::default();
        for prepared in batch {
            streams.push(prepared.labels.clone(), prepared.entry.clone());
        }
        streams.sort();
        match self.compression {
            PushCompression::Snappy => streams.protobuf().map_err(std::io::Error::other),
            PushCompression::Gzip => crate::http_client::Compression::Gzip.compress(streams.json()),
            PushCompression::None => Ok(streams.json()),
        }
    }
}

impl BatchedSink for LokiSink {
    type Item = Prepared;

    fn prepare(&mut self, event: Event, context: &SinkContext) -> Option<(Self::Item, usize)> {
        let time = match (&event.payload, own_time(&event)) {
            (_, Some(time)) => time,
            // An `errors` record routed here has no time of its own.
            (auditflow_core::event::Payload::Record(_), None) => chrono::Utc::now(),
            (_, None) => {
                if let Some(more) = self.timeless.allow() {
                    tracing::warn!(component_id = %context.id, also = more, "an event without stageTimestamp or requestReceivedTimestamp is not pushed: Loki orders entries by their time");
                }
                context.failed(vec![event], BatchStatus::Rejected, "timestamp_missing");
                return None;
            }
        };
        let Some(time_nanos) = time.timestamp_nanos_opt() else {
            if let Some(more) = self.timeless.allow() {
                tracing::warn!(component_id = %context.id, also = more, "an event whose time is outside 1677-2262 is not pushed (Loki counts nanoseconds in 64 bits)");
            }
            context.failed(vec![event], BatchStatus::Rejected, "timestamp_out_of_range");
            return None;
        };
        let line = match self.encoding {
            LineEncoding::Json => {
                let mut json = Vec::new();
                if event.write_json(&mut json).is_err() {
                    context.failed(vec![event], BatchStatus::Rejected, "encode_failed");
                    return None;
                }
                String::from_utf8_lossy(&json).into_owned()
            }
            LineEncoding::Text => event.to_text(),
        };
        let mut refused = Vec::new();
        let mut rendered = self.labeller.render(&event, &mut refused);
        for label in refused {
            context.metrics.error("label_refused", 1);
            tracing::warn!(component_id = %context.id, label = %label, "label `{label}` passed max_label_values distinct values: its values go to structured metadata from now on");
        }
        if rendered.missing_fields > 0 {
            context
                .metrics
                .error("template_field_missing", rendered.missing_fields as u64);
        }
        rendered.metadata.retain(|_, value| {
            !value.is_empty() && value != auditflow_core::template::MISSING_FIELD_FALLBACK
        });
        let size = line.len() + 64;
        Some((
            Prepared {
                event,
                labels: rendered.labels,
                entry: Entry {
                    time_nanos,
                    line,
                    metadata: rendered.metadata,
                },
            },
            size,
        ))
    }

    async fn send(&mut self, batch: Vec<Self::Item>, context: &SinkContext) {
        let body = match self.body(&batch) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(component_id = %context.id, "cannot encode a push: {error}");
                let events = batch.into_iter().map(|prepared| prepared.event).collect();
                context.failed(events, BatchStatus::Errored, "encode_failed");
                return;
            }
        };
        let bytes = body.len();
        let request = RequestSpec {
            method: Method::POST,
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: Bytes::from(body),
        };
        let result = self.client.send(&request, context).await;
        let events = batch.into_iter().map(|prepared| prepared.event).collect();
        acknowledge(context, events, bytes, result);
    }
}
