//! One webhook request, from its headers to its answer.
//!
//! [`Receiver::respond`] runs the checks in the order the module docs of
//! [`super`] list; each check either passes or produces a [`Refusal`] (status,
//! message, `Retry-After`), so every refusal answers with a plain-text reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditflow_core::ack::{BatchNotifier, BatchStatus};
use auditflow_core::component::{InputFailure, SourceContext};
use auditflow_core::event::Event;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::body::{gunzip_limited, read_limited, BodyError};
use super::metrics::WebhookMetrics;
use super::WebhookConfig;
use crate::decode::decode_document_whole;

/// The `Retry-After` of answers that ask the client to come back (seconds).
const RETRY_AFTER_SECONDS: u64 = 1;

/// What every request of one webhook source shares.
pub struct Receiver {
    context: SourceContext,
    path: String,
    token: Option<Vec<u8>>,
    slots: Arc<Semaphore>,
    max_concurrent_requests: usize,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    backpressure_wait: Duration,
    metrics: WebhookMetrics,
}

/// A request that is not accepted: its status, the reason, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// Why, in words a person can act on.
    pub message: String,
    /// Seconds after which the client may retry, for refusals that are not the client's fault.
    pub retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_later(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            retry_after: Some(RETRY_AFTER_SECONDS),
            ..Refusal::new(status, message)
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, format!("{}\n", self.message)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

/// Keeps the in-flight gauge right even when a client goes away mid-request.
struct InFlight<'a>(&'a WebhookMetrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a WebhookMetrics) -> InFlight<'a> {
        metrics.in_flight.add(1);
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.add(-1);
    }
}

impl Receiver {
    /// The shared state of a source's requests.
    pub fn new(config: &WebhookConfig, context: SourceContext) -> Receiver {
        let metrics = WebhookMetrics::new(&context.metrics);
        Receiver {
            path: config.path.clone(),
            token: config
                .auth
                .as_ref()
                .map(|auth| auth.bearer_token.clone().into_bytes()),
            slots: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            max_concurrent_requests: config.max_concurrent_requests,
            max_body_bytes: config.max_body_bytes,
            body_read_timeout: config.body_read_timeout,
            backpressure_wait: config.backpressure_wait,
            metrics,
            context,
        }
    }

    /// Counts a TLS handshake that failed (no client certificate, a certificate of another CA, ...).
    pub fn tls_failed(&self) {
        self.metrics.error("tls_handshake_failed");
    }

    /// Answers one request, and records the answer in the metrics.
    pub async fn respond(&self, request: Request<Body>) -> Response {
        let started = Instant::now();
        let _in_flight = InFlight::enter(&self.metrics);
        let response = match self.handle(request).await {
            Ok(events) => (StatusCode::OK, format!("{events} events delivered\n")).into_response(),
            Err(refusal) => refusal.into_response(),
        };
        self.metrics
            .answered(response.status().as_u16(), started.elapsed());
        response
    }

    /// Accepts a request: returns how many events were delivered, or why not.
    async fn handle(&self, request: Request<Body>) -> Result<usize, Refusal> {
        if request.uri().path() != self.path {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!("audit events are received on `{}`", self.path),
            ));
        }
        if request.method() != Method::POST {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "audit events are sent with POST",
            ));
        }
        self.authenticate(request.headers())?;
        let _slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            Refusal::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} requests are in progress already (max_concurrent_requests); retry later",
                    self.max_concurrent_requests
                ),
            )
        })?;
        check_content_type(request.headers())?;
        let gzip = is_gzip(request.headers())?;
        let expected = content_length(request.headers());
        let body = read_limited(
            request.into_body(),
            self.max_body_bytes,
            expected,
            self.body_read_timeout,
        )
        .await;
        let body = match body {
            Ok(body) => body,
            Err(error) => return Err(self.refuse_body(error).await),
        };
        self.metrics.received(0, body.len());
        let events = self.decode(body, gzip).await?;
        self.metrics.received(events.len(), 0);
        self.deliver(events).await
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
        let refusal = match presented {
            Some(presented) if bool::from(presented.ct_eq(token)) => return Ok(()),
            Some(_) => "the bearer token is wrong",
            None => "missing `Authorization: Bearer TOKEN`; this source requires auth.bearer_token",
        };
        self.metrics.error("unauthorized");
        Err(Refusal::new(StatusCode::UNAUTHORIZED, refusal))
    }

    /// Decompresses and decodes a body on the blocking pool: all its events, or a refusal.
    async fn decode(&self, body: Vec<u8>, gzip: bool) -> Result<Vec<Event>, Refusal> {
        let source_id = self.context.id.clone();
        let limit = self.max_body_bytes;
        let decoded = tokio::task::spawn_blocking(move || {
            let text = if gzip {
                gunzip_limited(&body, limit).map_err(Err)?
            } else {
                body
            };
            decode_document_whole(text, &source_id).map_err(Ok)
        })
        .await;
        match decoded {
            Ok(Ok(events)) => Ok(events),
            Ok(Err(Ok(failure))) => Err(self.refuse_input(StatusCode::BAD_REQUEST, failure).await),
            Ok(Err(Err(error))) => Err(self.refuse_body(error).await),
            Err(error) => Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("decoding failed unexpectedly: {error}"),
            )),
        }
    }

    /// The answer to a body that could not be read or decompressed.
    async fn refuse_body(&self, error: BodyError) -> Refusal {
        let (status, error_type) = match &error {
            BodyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            BodyError::Gzip(_) => (StatusCode::BAD_REQUEST, "invalid_gzip"),
            BodyError::Timeout(_) => {
                self.metrics.error("body_timeout");
                return Refusal::new(StatusCode::REQUEST_TIMEOUT, error.to_string());
            }
            BodyError::Read(_) => {
                self.metrics.error("read_failed");
                return Refusal::new(StatusCode::BAD_REQUEST, error.to_string());
            }
        };
        let failure = InputFailure {
            error_type,
            message: error.to_string(),
            input: String::new(),
        };
        self.refuse_input(status, failure).await
    }

    /// Counts a bad input, sends its `errors` record, and answers with its reason.
    async fn refuse_input(&self, status: StatusCode, failure: InputFailure) -> Refusal {
        let message = format!(
            "{}; the request was refused as a whole, none of its events was accepted",
            failure.message
        );
        self.context.send_failures(vec![failure], None).await;
        Refusal::new(status, message)
    }

    /// Sends the events as one batch and waits until the sinks have them.
    async fn deliver(&self, events: Vec<Event>) -> Result<usize, Refusal> {
        let count = events.len();
        if count == 0 {
            return Ok(0);
        }
        let (finalizer, receiver) = BatchNotifier::new_batch();
        let events = events
            .into_iter()
            .map(|event| event.with_finalizer(finalizer.clone()))
            .collect();
        drop(finalizer);
        match self
            .context
            .send_within(events, self.backpressure_wait)
            .await
        {
            Err(_refused) => Err(Refusal::retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "the pipeline is full (the sinks are behind); retry later",
            )),
            Ok(false) => Err(Refusal::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the pipeline is stopping; retry later",
            )),
            Ok(true) => match receiver.await {
                BatchStatus::Delivered => Ok(count),
                status => {
                    self.metrics.error("delivery_failed");
                    Err(Refusal::retry_later(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("a sink could not deliver the events ({status:?}); retry later"),
                    ))
                }
            },
        }
    }
}

/// Refuses a body that is not declared as JSON.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let value = headers.get(header::CONTENT_TYPE);
    let media_type = value
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or_default().trim());
    if media_type.is_some_and(|media| media.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    let found = match value {
        Some(value) => format!("`{}`", String::from_utf8_lossy(value.as_bytes())),
        None => "missing".to_string(),
    };
    Err(Refusal::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("Content-Type is {found}; send application/json (an audit.k8s.io/v1 Event or EventList)"),
    ))
}

/// Whether the body is gzip; refuses encodings other than gzip and identity.
pub fn is_gzip(headers: &HeaderMap) -> Result<bool, Refusal> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    match text.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => Ok(true),
        "identity" | "" => Ok(false),
        _ => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding `{text}` is not supported; send gzip or identity"),
        )),
    }
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
