//! The `elasticsearch` sink: stores audit events and alerts in Elasticsearch
//! or OpenSearch, through the `_bulk` API, each event exactly once.
//!
//! **At start** the sink asks the cluster what it is (`GET /`:
//! OpenSearch or Elasticsearch, and whether OpenSearch has its ISM plugin),
//! installs its index templates ([`mapping`]: audit events and alerts, each
//! with fixed types for the header and the bodies as flat objects, so no body
//! can explode or conflict the mapping) and, with `retention`, its lifecycle
//! policy ([`lifecycle`]). While the cluster cannot be reached it waits and
//! tries again, reading no input (backpressure).
//!
//! **Each batch** (`batch.*`) is one `_bulk` request of `create` operations,
//! gzip-compressed with `compression = "gzip"`. Each event's index is the
//! `index` template rendered by the event's own time (an alert's,
//! `alerts_index`), or the data stream of `mode = "data_stream"`, and its id is
//! derived from auditID and stage ([`document`]), so a replay or a retried
//! batch stores nothing twice (the cluster answers 409, counted as
//! delivered). The answer is read item by item ([`bulk`]): items refused with
//! 429 or 5xx are sent again alone, with backoff (`request.*`); items refused
//! for their content go to the sink's `errors` output as records naming the
//! index, the reason and the auditID. A batch's events are acknowledged once
//! every item is stored or handed to `errors`. A cluster that is down, red or
//! answering 429 holds the pipeline up and loses nothing; after
//! `request.retry_attempts` retries the events are reported as not delivered
//! (a file or Kafka source reads them again).
//!
//! ```toml
//! [sinks.search]
//! type = "elasticsearch"
//! inputs = ["policy", "detect.alerts"]
//! endpoints = ["https://es-1:9200", "https://es-2:9200"]
//! auth = { strategy = "basic", user = "auditflow", password = "${ES_PASSWORD}" }
//! tls = { ca_file = "/etc/auditflow/es-ca.pem" }
//! index = "auditflow-audit-%Y.%m.%d"
//! retention = "90d"
//! ```

pub mod bulk;
pub mod connection;
pub mod document;
pub mod lifecycle;
pub mod mapping;
pub mod search;
mod sink;
#[cfg(test)]
mod tests;

use std::time::Duration;

use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::duration::deserialize_optional_duration;
use auditflow_core::config::{parse_options, AuthOptions, OptionError, TlsOptions};
use auditflow_core::template::Template;
use serde::Deserialize;

use crate::http_client::{BatchOptions, BatchTable, Compression, RequestOptions};
use connection::ClusterConnection;

/// The sink's `type`.
pub const TYPE_NAME: &str = "elasticsearch";

/// Where events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexMode {
    /// Into indices named by the `index` template (by default one a day).
    #[default]
    Index,
    /// Into a data stream named by `index`, rolled over by size.
    DataStream,
}

/// Options of the `elasticsearch` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// The nodes' URLs, used in turn.
    pub endpoints: Vec<String>,
    /// Credentials (`basic`, `bearer`, `api_key`).
    pub auth: Option<AuthOptions>,
    /// TLS for `https://` endpoints.
    pub tls: Option<TlsOptions>,
    /// `index` (default) or `data_stream`.
    #[serde(default)]
    pub mode: IndexMode,
    /// The index (or data stream) of audit events: a template.
    pub index: Option<String>,
    /// The index (or data stream) of alerts: a template.
    pub alerts_index: Option<String>,
    /// The document id, a template (default: derived from auditID and stage).
    pub id: Option<String>,
    /// `none` (default) or `gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// When a batch is cut.
    #[serde(default)]
    pub batch: BatchTable,
    /// Timeouts and retries.
    #[serde(default)]
    pub request: RequestOptions,
    /// How many bulk requests may be in flight at once (default 2).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Delete what is older than this (`90d`).
    #[serde(default, deserialize_with = "deserialize_optional_duration")]
    pub retention: Option<Duration>,
    /// The primary shard size at which a data stream rolls over (default `50gb`).
    pub rollover_size: Option<String>,
    /// Index settings the templates add (`index.number_of_shards`,
    /// `index.refresh_interval`, ...).
    #[serde(default)]
    pub index_settings: toml::Table,
    /// Install the index templates (and lifecycle policy) at start (default
    /// `true`); with `false` they are expected to exist.
    #[serde(default = "manage_by_default")]
    pub manage_templates: bool,
}

fn manage_by_default() -> bool {
    true
}

fn default_concurrency() -> usize {
    2
}

/// The batch limits of this sink when `batch` leaves them out: bulk requests
/// of a few megabytes are what clusters index fastest.
pub fn default_batch() -> BatchOptions {
    BatchOptions {
        max_events: 5000,
        max_bytes: 10 * 1024 * 1024,
        timeout: Duration::from_secs(1),
    }
}

/// The default index template of audit events in each mode.
pub fn default_index(mode: IndexMode) -> &'static str {
    match mode {
        IndexMode::Index => "auditflow-audit-%Y.%m.%d",
        IndexMode::DataStream => "auditflow-audit",
    }
}

/// The default index template of alerts in each mode.
pub fn default_alerts_index(mode: IndexMode) -> &'static str {
    match mode {
        IndexMode::Index => "auditflow-alerts-%Y.%m.%d",
        IndexMode::DataStream => "auditflow-alerts",
    }
}

/// The default rollover size of a data stream's write index.
pub const DEFAULT_ROLLOVER_SIZE: &str = "50gb";

/// An `elasticsearch` sink's options, checked.
#[derive(Debug, Clone)]
pub struct CheckedElasticsearch {
    /// The options as written.
    pub config: ElasticsearchConfig,
    /// Endpoints, credentials and TLS.
    pub connection: ClusterConnection,
    /// The index template of audit events.
    pub index: Template,
    /// The index template of alerts.
    pub alerts_index: Template,
    /// The id template, if one is set.
    pub id: Option<Template>,
    /// The batch limits.
    pub batch: BatchOptions,
}

impl CheckedElasticsearch {
    /// The index patterns of audit events and of alerts (for templates,
    /// lifecycle policies and searches).
    pub fn patterns(&self) -> (String, String) {
        (
            document::index_pattern(&self.index.wildcard_pattern()),
            document::index_pattern(&self.alerts_index.wildcard_pattern()),
        )
    }

    /// The rollover size, for a data stream.
    pub fn rollover_size(&self) -> Option<&str> {
        match self.config.mode {
            IndexMode::Index => None,
            IndexMode::DataStream => Some(
                self.config
                    .rollover_size
                    .as_deref()
                    .unwrap_or(DEFAULT_ROLLOVER_SIZE),
            ),
        }
    }
}

/// Checks the options table of an `elasticsearch` sink.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    Ok(Box::new(check(options)?))
}

/// Checks the options table of an `elasticsearch` sink; every error names its option.
pub fn check(options: &toml::Table) -> Result<CheckedElasticsearch, Vec<OptionError>> {
    let config: ElasticsearchConfig = parse_options(options)?;
    let mut errors = Vec::new();
    let connection =
        ClusterConnection::parse(&config.endpoints, config.auth.as_ref(), config.tls.as_ref())
            .map_err(|more| errors.extend(more))
            .ok();
    let mut template = |field: &str, text: &str| match Template::parse(text) {
        Ok(template) => Some(template),
        Err(message) => {
            errors.push(OptionError::new(field, message));
            None
        }
    };
    let index = template(
        "index",
        config
            .index
            .as_deref()
            .unwrap_or(default_index(config.mode)),
    );
    let alerts_index = template(
        "alerts_index",
        config
            .alerts_index
            .as_deref()
            .unwrap_or(default_alerts_index(config.mode)),
    );
    let id = config.id.as_deref().map(|text| template("id", text));
    let batch = config.batch.or(default_batch());
    batch.check(&mut errors);
    config.request.check(&mut errors);
    if config.concurrency == 0 || config.concurrency > 64 {
        errors.push(OptionError::new(
            "concurrency",
            "must be between 1 and 64 bulk requests in flight",
        ));
    }
    check_lifecycle(&config, &mut errors);
    check_index_settings(&config.index_settings, &mut errors);
    if let (Some(index), Some(alerts)) = (&index, &alerts_index) {
        check_patterns(index, alerts, &mut errors);
    }
    match (connection, index, alerts_index, id) {
        (Some(connection), Some(index), Some(alerts_index), id)
            if errors.is_empty() && id.as_ref().is_none_or(Option::is_some) =>
        {
            Ok(CheckedElasticsearch {
                config,
                connection,
                index,
                alerts_index,
                id: id.flatten(),
                batch,
            })
        }
        _ => Err(errors),
    }
}

/// The indices of `index` and `alerts_index` must be told apart by their
/// names: each template, lifecycle policy and search matches its own only.
fn check_patterns(index: &Template, alerts: &Template, errors: &mut Vec<OptionError>) {
    let patterns = [
        ("index", document::index_pattern(&index.wildcard_pattern())),
        (
            "alerts_index",
            document::index_pattern(&alerts.wildcard_pattern()),
        ),
    ];
    for (field, pattern) in &patterns {
        if pattern.starts_with('*') {
            errors.push(OptionError::new(
                *field,
                format!("`{pattern}` would match every index: begin it with fixed text, like \"auditflow-audit-…\", so that its template, retention and searches touch its own indices only"),
            ));
        }
    }
    let [(_, audit), (_, alerts)] = &patterns;
    let stem = |pattern: &str| pattern.split('*').next().unwrap_or_default().to_string();
    let (audit_stem, alerts_stem) = (stem(audit), stem(alerts));
    let overlap = audit_stem.starts_with(&alerts_stem) || alerts_stem.starts_with(&audit_stem);
    if overlap && !audit_stem.is_empty() && !alerts_stem.is_empty() {
        errors.push(OptionError::new(
            "alerts_index",
            format!("`{alerts}` and index's `{audit}` can name the same indices: give alerts a name of their own (alerts have their own mapping), like \"auditflow-alerts-%Y.%m.%d\""),
        ));
    }
}

fn check_lifecycle(config: &ElasticsearchConfig, errors: &mut Vec<OptionError>) {
    if config
        .retention
        .is_some_and(|retention| retention < Duration::from_secs(3600))
    {
        errors.push(OptionError::new(
            "retention",
            "must be at least 1h (lifecycle policies count in hours and days), like \"90d\"",
        ));
    }
    if let Some(size) = &config.rollover_size {
        if config.mode != IndexMode::DataStream {
            errors.push(OptionError::new(
                "rollover_size",
                "applies to mode = \"data_stream\" only (daily indices do not roll over)",
            ));
        }
        if !is_byte_size(size) {
            errors.push(OptionError::new(
                "rollover_size",
                format!("`{size}` is not a size such as \"50gb\" or \"500mb\""),
            ));
        }
    }
}

fn check_index_settings(settings: &toml::Table, errors: &mut Vec<OptionError>) {
    for (name, value) in settings {
        let field = format!("index_settings.{name}");
        if !name.starts_with("index.") {
            errors.push(OptionError::new(
                &field,
                "an index setting is named `index.…`, like \"index.number_of_shards\"",
            ));
        } else if !matches!(
            value,
            toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Boolean(_)
        ) {
            errors.push(OptionError::new(
                &field,
                "takes a string, a number or true/false",
            ));
        } else if name == "index.lifecycle.name" {
            errors.push(OptionError::new(
                &field,
                "is set by `retention`; leave it out",
            ));
        }
    }
}

/// The index settings as JSON, for the templates.
pub fn index_settings_json(settings: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    settings
        .iter()
        .filter_map(|(name, value)| {
            let value = match value {
                toml::Value::String(text) => serde_json::Value::from(text.as_str()),
                toml::Value::Integer(number) => serde_json::Value::from(*number),
                toml::Value::Boolean(flag) => serde_json::Value::from(*flag),
                _ => return None,
            };
            Some((name.clone(), value))
        })
        .collect()
}

/// Whether `text` is a size the lifecycle APIs take: digits and `b`, `kb`, `mb`, `gb`, `tb` or `pb`.
fn is_byte_size(text: &str) -> bool {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    digits > 0
        && matches!(
            text.get(digits..),
            Some("b" | "kb" | "mb" | "gb" | "tb" | "pb")
        )
}

impl SinkConfig for CheckedElasticsearch {
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask> {
        let sink = sink::ElasticsearchSink::new(self.clone(), &context)?;
        Ok(Box::pin(sink.run(context)))
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
