//! The `http` sink: sends batches of events to a URL as NDJSON or a JSON array.
//!
//! Every payload is sent in its JSON form: audit events exactly as received,
//! alerts in Falco's JSON output form (what falcosidekick and other Falco
//! consumers read as is), `errors` records as they are. A batch is one request;
//! its events are acknowledged when the endpoint answers 2xx. Connection
//! errors, timeouts, 408, 429 and 5xx answers are retried with backoff (a
//! `Retry-After` header is honoured); another status rejects the batch. See
//! [`crate::http_client`] for the batching and retry model.
//!
//! ```toml
//! [sinks.sidekick]
//! type = "http"
//! inputs = ["detect.alerts"]
//! uri = "http://falcosidekick:2801/"
//! encoding = "ndjson"            # or "json_array"
//! compression = "gzip"           # or "none"
//! headers = { Authorization = "Bearer ${SIDEKICK_TOKEN}" }
//! batch = { max_events = 500, timeout = "1s" }
//! ```

use std::collections::BTreeMap;

use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::Event;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::Deserialize;

use crate::http_client::{
    acknowledge, parse_headers, parse_url, run_batched, BatchOptions, BatchedSink, Compression,
    HttpClient, RequestOptions, RequestSpec,
};

/// How a batch is written in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpEncoding {
    /// One JSON object a line (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// One JSON array of the events (`application/json`).
    JsonArray,
}

/// The HTTP method of the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `POST`.
    #[default]
    Post,
    /// `PUT`.
    Put,
}

/// Options of the `http` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// The URL the batches are sent to.
    pub uri: String,
    /// `POST` (default) or `PUT`.
    #[serde(default)]
    pub method: HttpMethod,
    /// Headers of every request (values may hold `${VAR}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `ndjson` (default) or `json_array`.
    #[serde(default)]
    pub encoding: HttpEncoding,
    /// `none` (default) or `gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// When a batch is cut.
    #[serde(default)]
    pub batch: BatchOptions,
    /// Timeouts and retries.
    #[serde(default)]
    pub request: RequestOptions,
}

/// Checks the options table of an `http` sink.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    let config: HttpSinkConfig = parse_options(options)?;
    let mut errors = Vec::new();
    let url = parse_url("uri", &config.uri).map_err(|error| errors.push(error));
    let headers = parse_headers(&config.headers).map_err(|more| errors.extend(more));
    config.batch.check(&mut errors);
    config.request.check(&mut errors);
    match (url, headers) {
        (Ok(url), Ok(headers)) if errors.is_empty() => Ok(Box::new(CheckedHttpSink {
            config,
            url,
            headers,
        })),
        _ => Err(errors),
    }
}

/// An `http` sink's options with its URL and headers parsed.
struct CheckedHttpSink {
    config: HttpSinkConfig,
    url: Url,
    headers: HeaderMap,
}

impl SinkConfig for CheckedHttpSink {
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask> {
        let sink = HttpSink::new(self, &context)?;
        Ok(Box::pin(run_batched(sink, self.config.batch, context)))
    }
}

struct HttpSink {
    client: HttpClient,
    method: Method,
    url: Url,
    headers: HeaderMap,
    encoding: HttpEncoding,
    compression: Compression,
}

impl HttpSink {
    fn new(checked: &CheckedHttpSink, context: &SinkContext) -> anyhow::Result<HttpSink> {
        let config = &checked.config;
        let mut headers = checked.headers.clone();
        let content_type = match config.encoding {
            HttpEncoding::Ndjson => "application/x-ndjson",
            HttpEncoding::JsonArray => "application/json",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if config.compression == Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(HttpSink {
            client: HttpClient::new(config.request, &context.id)?,
            method: match config.method {
                HttpMethod::Post => Method::POST,
                HttpMethod::Put => Method::PUT,
            },
            url: checked.url.clone(),
            headers,
            encoding: config.encoding,
            compression: config.compression,
        })
    }

    /// The request body of a batch: its items joined as the encoding says, compressed.
    fn body(&self, items: &[(Event, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
        let size: usize = items.iter().map(|(_, json)| json.len() + 1).sum();
        let mut body = Vec::with_capacity(size + 2);
        match self.encoding {
            HttpEncoding::Ndjson => {
                for (_, json) in items {
                    body.extend_from_slice(json);
                    body.push(b'\n');
                }
            }
            HttpEncoding::JsonArray => {
                body.push(b'[');
                for (index, (_, json)) in items.iter().enumerate() {
                    if index > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(json);
                }
                body.push(b']');
            }
        }
        self.compression.compress(body)
    }
}

impl BatchedSink for HttpSink {
    type Item = (Event, Vec<u8>);

    fn prepare(&mut self, event: Event, context: &SinkContext) -> Option<(Self::Item, usize)> {
        let mut json = Vec::new();
        match event.write_json(&mut json) {
            Ok(()) => {
                let size = json.len();
                Some(((event, json), size))
            }
            Err(error) => {
                tracing::error!(component_id = %context.id, "an event cannot be encoded as JSON: {error}");
                context.failed(
                    vec![event],
                    auditflow_core::ack::BatchStatus::Rejected,
                    "encode_failed",
                );
                None
            }
        }
    }

    async fn send(&mut self, batch: Vec<Self::Item>, context: &SinkContext) {
        let body = match self.body(&batch) {
            Ok(body) => body,
            Err(error) => {
                let events = batch.into_iter().map(|(event, _)| event).collect();
                tracing::error!(component_id = %context.id, "cannot compress a batch: {error}");
                context.failed(
                    events,
                    auditflow_core::ack::BatchStatus::Errored,
                    "encode_failed",
                );
                return;
            }
        };
        let bytes = body.len();
        let request = RequestSpec {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: Bytes::from(body),
        };
        let result = self.client.send(&request, context).await;
        let events = batch.into_iter().map(|(event, _)| event).collect();
        acknowledge(context, events, bytes, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_are_post_ndjson_uncompressed() {
        let config: HttpSinkConfig = parse_options(&table("uri = \"http://x/\"")).unwrap();
        assert_eq!(config.method, HttpMethod::Post);
        assert_eq!(config.encoding, HttpEncoding::Ndjson);
        assert_eq!(config.compression, Compression::None);
        assert_eq!(config.batch.max_events, 1000);
        assert_eq!(config.request.retry_attempts, 10);
    }

    #[test]
    fn every_bad_option_is_reported() {
        let errors = parse(&table(
            "uri = \"ftp://x\"\nmethod = \"PUT\"\nheaders = { \"a b\" = \"c\" }\n[batch]\nmax_events = 0\n[request]\ntimeout = \"0s\"",
        ))
        .err()
        .unwrap();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["uri", "headers.a b", "batch.max_events", "request.timeout"]
        );
        let errors = parse(&table("uri = \"http://x/\"\nmethod = \"GET\""))
            .err()
            .unwrap();
        assert_eq!(errors[0].field, "method");
        let errors = parse(&table("uri = \"http://x/\"\nencoding = \"xml\""))
            .err()
            .unwrap();
        assert_eq!(errors[0].field, "encoding");
    }
}
