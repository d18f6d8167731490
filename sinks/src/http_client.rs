//! What the HTTP sinks (`http`, `alertmanager`) share: batching, requests with
//! retries, and acknowledging a batch by the outcome of its request.
//!
//! **Batching.** A [`Batcher`] collects items until `batch.max_events` or
//! `batch.max_bytes` is reached, or `batch.timeout` has passed since its oldest
//! item; [`run_batched`] drives a [`BatchedSink`] with it: it reads the sink's
//! input, cuts batches, hands each to [`BatchedSink::send`], and runs the
//! sink's periodic work. While a batch is being sent, no input is read, so a
//! slow or unreachable endpoint holds up the pipeline (backpressure) instead
//! of piling events up in memory.
//!
//! **Retries.** [`HttpClient::send`] sends one request and retries it on
//! connection errors, timeouts, 429 and 5xx responses, waiting an exponential
//! backoff (`request.retry_initial_backoff`, doubled each time up to
//! `request.retry_max_backoff`; see [`auditflow_core::backoff`]), or what a `Retry-After` header asks
//! (seconds or an HTTP date, at most [`MAX_RETRY_AFTER`]). Any other status is
//! a rejection: it is not retried. After `request.retry_attempts` retries the
//! delivery has failed.
//!
//! **Acknowledgements.** [`acknowledge`] reports a batch's events as delivered
//! on a 2xx answer, as `Errored` when retries ran out (a file source reads them
//! again), and as `Rejected` when the endpoint refused them.

use std::future::Future;
use std::time::{Duration, Instant};

use auditflow_core::ack::BatchStatus;
use auditflow_core::component::SinkContext;
use auditflow_core::config::duration::{deserialize_duration, deserialize_optional_duration};
use auditflow_core::config::{OptionError, TlsOptions};
use auditflow_core::event::Event;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use auditflow_core::backoff::Backoff;

/// The longest wait a `Retry-After` header is honoured for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How much of an error response's body is quoted in logs and errors.
const MAX_QUOTED_BODY: usize = 512;

/// `batch.*`: when a batch is cut.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchOptions {
    /// The most events in one request.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// The most bytes of encoded events in one request (before compression).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// How long the oldest event of a batch waits for the batch to fill.
    #[serde(
        default = "default_batch_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout: default_batch_timeout(),
        }
    }
}

fn default_max_events() -> usize {
    1000
}

fn default_max_bytes() -> usize {
    1024 * 1024
}

fn default_batch_timeout() -> Duration {
    Duration::from_secs(1)
}

/// `batch.*` as written, for a sink whose defaults are not [`BatchOptions::default`]
/// (the `kafka` sink lingers milliseconds, not a second): each limit left out takes
/// the sink's own default ([`BatchTable::or`]).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchTable {
    /// `batch.max_events`, if set.
    pub max_events: Option<usize>,
    /// `batch.max_bytes`, if set.
    pub max_bytes: Option<usize>,
    /// `batch.timeout`, if set.
    #[serde(default, deserialize_with = "deserialize_optional_duration")]
    pub timeout: Option<Duration>,
}

impl BatchTable {
    /// The limits set, the others taken from `defaults`.
    pub fn or(self, defaults: BatchOptions) -> BatchOptions {
        BatchOptions {
            max_events: self.max_events.unwrap_or(defaults.max_events),
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes),
            timeout: self.timeout.unwrap_or(defaults.timeout),
        }
    }
}

impl BatchOptions {
    /// Checks the limits; errors name `batch.FIELD`.
    pub fn check(&self, errors: &mut Vec<OptionError>) {
        if self.max_events == 0 {
            errors.push(OptionError::new("batch.max_events", "must be at least 1"));
        }
        if self.max_bytes == 0 {
            errors.push(OptionError::new("batch.max_bytes", "must be at least 1"));
        }
    }
}

/// How a request body is compressed (`compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Not compressed.
    #[default]
    None,
    /// gzip, with `Content-Encoding: gzip`.
    Gzip,
}

impl Compression {
    /// The body compressed (gzip at its fast level: the sink's CPU matters more
    /// than the last few percent of bytes).
    pub fn compress(self, body: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(body),
            Compression::Gzip => {
                use std::io::Write as _;
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::fast(),
                );
                encoder.write_all(&body)?;
                encoder.finish()
            }
        }
    }

    /// The `Content-Encoding` header value, if the body is compressed.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
        }
    }
}

/// `request.*`: timeouts and retries of each request.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestOptions {
    /// How long one attempt may take, connection included.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
    /// How many times a failed request is tried again before the delivery fails.
    #[serde(default = "default_retry_attempts")]
    pub retry_attempts: u32,
    /// The first wait before a retry.
    #[serde(
        default = "default_initial_backoff",
        deserialize_with = "deserialize_duration"
    )]
    pub retry_initial_backoff: Duration,
    /// The longest wait between two attempts (a `Retry-After` header may ask for more).
    #[serde(
        default = "default_max_backoff",
        deserialize_with = "deserialize_duration"
    )]
    pub retry_max_backoff: Duration,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            timeout: default_request_timeout(),
            retry_attempts: default_retry_attempts(),
            retry_initial_backoff: default_initial_backoff(),
            retry_max_backoff: default_max_backoff(),
        }
    }
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_retry_attempts() -> u32 {
    10
}

fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl RequestOptions {
    /// Checks the durations; errors name `request.FIELD`.
    pub fn check(&self, errors: &mut Vec<OptionError>) {
        if self.timeout.is_zero() {
            errors.push(OptionError::new(
                "request.timeout",
                "must be longer than 0s",
            ));
        }
        if self.retry_initial_backoff.is_zero() {
            errors.push(OptionError::new(
                "request.retry_initial_backoff",
                "must be longer than 0s",
            ));
        }
        if self.retry_max_backoff < self.retry_initial_backoff {
            errors.push(OptionError::new(
                "request.retry_max_backoff",
                "must be at least request.retry_initial_backoff",
            ));
        }
    }
}

/// Parses an endpoint URL option (`http://` or `https://`), naming `field` in the error.
pub fn parse_url(field: &str, text: &str) -> Result<Url, OptionError> {
    let url = Url::parse(text).map_err(|error| {
        OptionError::new(
            field,
            format!("`{text}` is not a URL ({error}); write it like \"http://HOST:PORT/PATH\""),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OptionError::new(
            field,
            format!("`{text}`: only http:// and https:// URLs are supported"),
        ));
    }
    Ok(url)
}

/// Parses the `headers` option into a header map, naming each bad header.
pub fn parse_headers<'a>(
    headers: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<HeaderMap, Vec<OptionError>> {
    let mut map = HeaderMap::new();
    let mut errors = Vec::new();
    for (name, value) in headers {
        let field = format!("headers.{name}");
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(mut value)) => {
                value.set_sensitive(true);
                map.insert(name, value);
            }
            (Err(_), _) => errors.push(OptionError::new(
                field,
                "is not a valid HTTP header name (letters, digits and -)",
            )),
            (_, Err(_)) => errors.push(OptionError::new(
                field,
                "is not a valid HTTP header value (visible ASCII, no newline)",
            )),
        }
    }
    if errors.is_empty() {
        Ok(map)
    } else {
        Err(errors)
    }
}

/// Collects items into batches by count, size and age.
#[derive(Debug)]
pub struct Batcher<T> {
    options: BatchOptions,
    items: Vec<T>,
    bytes: usize,
    oldest: Option<Instant>,
}

impl<T> Batcher<T> {
    /// An empty batcher.
    pub fn new(options: BatchOptions) -> Batcher<T> {
        Batcher {
            options,
            items: Vec::new(),
            bytes: 0,
            oldest: None,
        }
    }

    /// Adds an item of `bytes` bytes; returns the batch it completes, if it completes one.
    ///
    /// An item that would take the batch past `max_bytes` closes the batch
    /// before it and starts the next one (an item alone larger than `max_bytes`
    /// is sent alone).
    pub fn push(&mut self, item: T, bytes: usize) -> Option<Vec<T>> {
        let mut completed = None;
        if !self.items.is_empty() && self.bytes + bytes > self.options.max_bytes {
            completed = self.take();
        }
        if self.items.is_empty() {
            self.oldest = Some(Instant::now());
        }
        self.items.push(item);
        self.bytes += bytes;
        if completed.is_none()
            && (self.items.len() >= self.options.max_events || self.bytes >= self.options.max_bytes)
        {
            completed = self.take();
        }
        completed
    }

    /// Takes what is collected, if anything.
    pub fn take(&mut self) -> Option<Vec<T>> {
        if self.items.is_empty() {
            return None;
        }
        self.bytes = 0;
        self.oldest = None;
        Some(std::mem::take(&mut self.items))
    }

    /// When the collected items are due to be sent (`None` when there are none).
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|oldest| oldest + self.options.timeout)
    }
}

/// A sink that sends batches of items over HTTP, driven by [`run_batched`].
pub trait BatchedSink: Send {
    /// What one event becomes in a batch.
    type Item: Send;

    /// Turns an event into its item and its size in bytes, or finishes it
    /// (acknowledges or fails it) and returns `None` when it is not to be sent.
    fn prepare(&mut self, event: Event, context: &SinkContext) -> Option<(Self::Item, usize)>;

    /// Sends a batch and acknowledges its events by the outcome.
    fn send(
        &mut self,
        batch: Vec<Self::Item>,
        context: &SinkContext,
    ) -> impl Future<Output = ()> + Send;

    /// Waits for what [`BatchedSink::send`] left in flight (a sink that sends
    /// several batches at once); runs once, after the last batch is sent.
    fn flush(&mut self, _context: &SinkContext) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// How often [`BatchedSink::housekeeping`] runs, if the sink has periodic work.
    fn housekeeping_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work (the `alertmanager` sink re-sends its active alerts).
    fn housekeeping(&mut self, _context: &SinkContext) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Runs a batched sink until its input ends, then sends what is left.
pub async fn run_batched<S: BatchedSink>(
    mut sink: S,
    options: BatchOptions,
    mut context: SinkContext,
) -> anyhow::Result<()> {
    let mut batcher = Batcher::new(options);
    let far_future = Duration::from_secs(365 * 24 * 3600);
    let housekeeping_every = sink.housekeeping_interval();
    let mut next_housekeeping = housekeeping_every.map(|every| Instant::now() + every);
    loop {
        let deadline = batcher.deadline();
        let due_batch = deadline.unwrap_or_else(|| Instant::now() + far_future);
        let due_housekeeping = next_housekeeping.unwrap_or_else(|| Instant::now() + far_future);
        tokio::select! {
            input = context.input.recv() => {
                let Some(events) = input else { break };
                for event in events {
                    let Some((item, bytes)) = sink.prepare(event, &context) else { continue };
                    if let Some(batch) = batcher.push(item, bytes) {
                        sink.send(batch, &context).await;
                    }
                }
            }
            _ = tokio::time::sleep_until(due_batch.into()), if deadline.is_some() => {
                if let Some(batch) = batcher.take() {
                    sink.send(batch, &context).await;
                }
            }
            _ = tokio::time::sleep_until(due_housekeeping.into()), if next_housekeeping.is_some() => {
                sink.housekeeping(&context).await;
                next_housekeeping = housekeeping_every.map(|every| Instant::now() + every);
            }
        }
    }
    if let Some(batch) = batcher.take() {
        sink.send(batch, &context).await;
    }
    sink.flush(&context).await;
    Ok(())
}

/// One request to send: everything but the retries.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// `POST` or `PUT`.
    pub method: Method,
    /// Where to.
    pub url: Url,
    /// Headers (the configured ones plus `Content-Type` and `Content-Encoding`).
    pub headers: HeaderMap,
    /// The body, shared between attempts.
    pub body: Bytes,
}

/// Why a request did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// The endpoint refused the request with a status that retrying will not change.
    Rejected {
        /// The status.
        status: u16,
        /// What the endpoint said (the start of the body).
        message: String,
    },
    /// Every attempt failed (connection error, timeout, 429 or 5xx); the last reason.
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// Why the last one failed.
        last_error: String,
    },
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Rejected { status, message } => {
                write!(
                    f,
                    "the endpoint rejected the request with HTTP {status}: {message}"
                )
            }
            DeliveryError::GaveUp {
                attempts,
                last_error,
            } => write!(
                f,
                "no delivery after {attempts} attempts; the last one failed: {last_error}"
            ),
        }
    }
}

impl DeliveryError {
    /// The acknowledgement status of events whose delivery failed this way.
    pub fn batch_status(&self) -> BatchStatus {
        match self {
            DeliveryError::Rejected { .. } => BatchStatus::Rejected,
            DeliveryError::GaveUp { .. } => BatchStatus::Errored,
        }
    }

    /// The `error_type` the events are counted under.
    pub fn error_type(&self) -> &'static str {
        match self {
            DeliveryError::Rejected { .. } => "delivery_rejected",
            DeliveryError::GaveUp { .. } => "delivery_failed",
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    Retry {
        reason: String,
        wait: Option<Duration>,
    },
    Rejected {
        status: u16,
        message: String,
    },
}

/// An HTTP client with the retry policy of a sink.
#[derive(Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    options: RequestOptions,
    backoff: Backoff,
    component_id: String,
}

impl HttpClient {
    /// A client with TLS (rustls, the Mozilla root certificates) and the request timeout.
    pub fn new(options: RequestOptions, component_id: &str) -> anyhow::Result<HttpClient> {
        HttpClient::with_tls(options, component_id, None)
    }

    /// [`HttpClient::new`] with the `tls` options of the sink: its CA, its
    /// client certificate, or no verification.
    pub fn with_tls(
        options: RequestOptions,
        component_id: &str,
        tls: Option<&TlsOptions>,
    ) -> anyhow::Result<HttpClient> {
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout);
        if let Some(tls) = tls {
            builder = with_tls(builder, tls)?;
        }
        let client = builder.build()?;
        Ok(HttpClient {
            client,
            backoff: Backoff::new(options.retry_initial_backoff, options.retry_max_backoff),
            options,
            component_id: component_id.to_string(),
        })
    }

    /// Sends a request once, without retries; `Ok` on a 2xx answer.
    pub async fn send_once(&mut self, request: &RequestSpec) -> Result<(), DeliveryError> {
        match self.attempt(request).await {
            Attempt::Delivered => Ok(()),
            Attempt::Rejected { status, message } => {
                Err(DeliveryError::Rejected { status, message })
            }
            Attempt::Retry { reason, .. } => Err(DeliveryError::GaveUp {
                attempts: 1,
                last_error: reason,
            }),
        }
    }

    /// Sends a request, retrying it as the options say; `Ok` on a 2xx answer.
    pub async fn send(
        &mut self,
        request: &RequestSpec,
        context: &SinkContext,
    ) -> Result<(), DeliveryError> {
        let mut retries = 0;
        loop {
            match self.attempt(request).await {
                Attempt::Delivered => return Ok(()),
                Attempt::Rejected { status, message } => {
                    return Err(DeliveryError::Rejected { status, message })
                }
                Attempt::Retry { reason, wait } => {
                    if retries >= self.options.retry_attempts {
                        return Err(DeliveryError::GaveUp {
                            attempts: retries + 1,
                            last_error: reason,
                        });
                    }
                    let wait = wait.unwrap_or_else(|| self.backoff.wait(retries));
                    context.metrics.error("request_retried", 1);
                    tracing::warn!(component_id = %self.component_id, url = %request.url, "request failed: {reason}; retry {} of {} in {wait:?}", retries + 1, self.options.retry_attempts);
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
            }
        }
    }

    async fn attempt(&self, request: &RequestSpec) -> Attempt {
        let response = self
            .client
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone())
            .body(request.body.clone())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                return Attempt::Retry {
                    reason: describe_request_error(&error),
                    wait: None,
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            // Read the body so the connection can be reused.
            let _ = response.bytes().await;
            return Attempt::Delivered;
        }
        let retry_after = retry_after(response.headers());
        let message = quoted_body(response).await;
        if is_retryable(status) {
            Attempt::Retry {
                reason: format!("HTTP {}: {message}", status.as_u16()),
                wait: retry_after,
            }
        } else {
            Attempt::Rejected {
                status: status.as_u16(),
                message,
            }
        }
    }
}

/// Applies a sink's `tls` options to a client: the CA certificates (PEM) the
/// server's must chain to, a client certificate and key (PEM, unencrypted),
/// or `verify = false`. Errors name the option and the file.
pub fn with_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &TlsOptions,
) -> anyhow::Result<reqwest::ClientBuilder> {
    use anyhow::Context as _;
    if !tls.verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(pem) = tls.read_ca_pem()? {
        for certificate in reqwest::Certificate::from_pem_bundle(&pem)
            .context("tls.ca_file holds no PEM certificate")?
        {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let Some(pem) = tls.read_identity_pem()? {
        let identity = reqwest::Identity::from_pem(&pem).context(
            "tls.crt_file and tls.key_file are not a PEM certificate and an unencrypted key",
        )?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}

/// Whether an answer with this status is worth trying again: 408, 429 and 5xx.
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// A request error as one line: what failed (timed out, cannot connect) and its innermost cause.
pub fn describe_request_error(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    if error.source().is_none() {
        return kind.to_string();
    }
    format!("{kind}: {}", innermost_cause(error))
}

/// The innermost cause of an error (what a chain of wrapped errors ends in),
/// or the error itself when it wraps nothing.
pub fn innermost_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    cause
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
            let seconds = (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0);
            Duration::from_millis(seconds as u64)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The start of an error response's body, as one line of text.
async fn quoted_body(response: reqwest::Response) -> String {
    let body = response.bytes().await.unwrap_or_default();
    quote_body(&body)
}

/// The start of an error answer, as one line of text: its `message` or
/// `error` when it is JSON that has one, at most [`MAX_QUOTED_BODY`] bytes.
pub fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::String(message)) => message,
        Ok(serde_json::Value::Object(object)) => {
            match object.get("message").or(object.get("error")) {
                Some(serde_json::Value::String(message)) => message.clone(),
                _ => text.into_owned(),
            }
        }
        _ => text.into_owned(),
    };
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return "(empty body)".to_string();
    }
    auditflow_core::event::truncate_utf8(&line, MAX_QUOTED_BODY).to_string()
}

/// Acknowledges a batch by the outcome of its request, logging a failure.
pub fn acknowledge(
    context: &SinkContext,
    events: Vec<Event>,
    bytes: usize,
    result: Result<(), DeliveryError>,
) {
    match result {
        Ok(()) => context.delivered(events, bytes),
        Err(error) => {
            tracing::error!(component_id = %context.id, events = events.len(), "{error}; the events are reported as not delivered");
            context.failed(events, error.batch_status(), error.error_type());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max_events: usize, max_bytes: usize) -> BatchOptions {
        BatchOptions {
            max_events,
            max_bytes,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_batch_is_cut_at_max_events() {
        let mut batcher = Batcher::new(options(3, 1000));
        assert_eq!(batcher.push(1, 1), None);
        assert_eq!(batcher.push(2, 1), None);
        assert_eq!(batcher.push(3, 1), Some(vec![1, 2, 3]));
        assert_eq!(batcher.deadline(), None);
    }

    #[test]
    fn an_item_past_max_bytes_starts_the_next_batch() {
        let mut batcher = Batcher::new(options(100, 10));
        assert_eq!(batcher.push('a', 6), None);
        assert_eq!(batcher.push('b', 6), Some(vec!['a']));
        assert!(batcher.deadline().is_some());
        assert_eq!(batcher.push('c', 4), Some(vec!['b', 'c']));
        assert_eq!(batcher.push('d', 50), Some(vec!['d']));
        assert_eq!(batcher.take(), None);
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        let date = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn bad_headers_and_urls_are_named() {
        let headers = [
            ("X Bad".to_string(), "v".to_string()),
            ("X-Ok".to_string(), "line\nbreak".to_string()),
        ];
        let errors = parse_headers(headers.iter().map(|(k, v)| (k, v))).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].field, "headers.X Bad");
        assert!(parse_url("uri", "ftp://x")
            .unwrap_err()
            .message
            .contains("only http"));
        assert!(parse_url("uri", "not a url")
            .unwrap_err()
            .message
            .contains("not a URL"));
    }
}
