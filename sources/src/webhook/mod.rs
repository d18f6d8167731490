//! The `webhook` source: the kube-apiserver's audit webhook backend.
//!
//! # The model
//!
//! The apiserver (`--audit-webhook-config-file`) POSTs `audit.k8s.io/v1`
//! `EventList` batches and retries a batch it did not get a 2xx for. The
//! source is an HTTP/1.1 server ([`server`]), over TLS when `tls` is set, with
//! a client certificate required when `tls.client_ca_file` is set. Each request
//! ([`handler`]) is, in order:
//!
//! 1. authenticated (`auth.bearer_token`, compared in constant time) → 401;
//! 2. admitted if fewer than `max_concurrent_requests` are in progress → 503;
//! 3. checked: `Content-Type: application/json` and `Content-Encoding` gzip or
//!    identity → 415;
//! 4. read whole, at most `max_body_bytes` on the wire and, for gzip, at most
//!    `max_body_bytes` once decompressed, never allocating past it ([`body`])
//!    → 413, or 408 when it does not arrive within `body_read_timeout`;
//! 5. decoded as a whole: every item must be an audit event, or the request is
//!    refused with 400 naming the first bad item, one record goes to
//!    `ID.errors`, and nothing of it is forwarded;
//! 6. sent as one batch, if the pipeline can take it within `backpressure_wait`
//!    → otherwise 429 with `Retry-After`, nothing forwarded;
//! 7. answered 200 once every event of the batch is acknowledged by the sinks
//!    (delivered, or durably buffered), or 503 if a sink reports a failure.
//!
//! So a request is all accepted or all refused, and a 200 means delivered: the
//! apiserver's retries never lose an event. Headers must arrive within
//! `header_read_timeout` (slow-loris clients are disconnected).
//!
//! ```toml
//! [sources.apiserver]
//! type = "webhook"
//! address = "0.0.0.0:8443"
//! path = "/"                          # the path the apiserver posts to
//! max_body_bytes = 33554432           # 32 MiB, on the wire and decompressed
//! max_concurrent_requests = 128       # more at once are answered 503
//! header_read_timeout = "10s"
//! body_read_timeout = "30s"
//! backpressure_wait = "1s"            # how long a request waits for room before 429
//! tls = { crt_file = "server.crt", key_file = "server.key", client_ca_file = "ca.crt" }
//! auth = { bearer_token = "${AUDIT_WEBHOOK_TOKEN}" }
//! ```

pub mod body;
pub mod handler;
mod metrics;
pub mod server;
pub mod tls;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use auditflow_core::component::{ComponentTask, SourceConfig, SourceContext};
use auditflow_core::config::{parse_options, OptionError};
use serde::Deserialize;

use auditflow_core::config::duration::deserialize_duration;

/// The default largest body, compressed or not.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// TLS options: the server's certificate and, for mutual TLS, the CA of client certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// The server certificate chain (PEM), leaf first.
    pub crt_file: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM); when set, clients must present a certificate signed by one.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// Authentication options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthOptions {
    /// The token clients must send as `Authorization: Bearer TOKEN`.
    pub bearer_token: String,
}

/// Options of the `webhook` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The address to listen on, such as `0.0.0.0:8443`.
    pub address: SocketAddr,
    /// The path requests are posted to.
    #[serde(default = "default_path")]
    pub path: String,
    /// The largest body accepted, in bytes, both as received and once decompressed.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How many requests may be in progress at once; more are answered 503.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// How long a client may take to send a request's headers.
    #[serde(
        default = "default_header_read_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body.
    #[serde(
        default = "default_body_read_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub body_read_timeout: Duration,
    /// How long a request waits for room in a full pipeline before it is answered 429.
    #[serde(
        default = "default_backpressure_wait",
        deserialize_with = "deserialize_duration"
    )]
    pub backpressure_wait: Duration,
    /// TLS, and mutual TLS with `client_ca_file`.
    #[serde(default)]
    pub tls: Option<TlsOptions>,
    /// Bearer-token authentication.
    #[serde(default)]
    pub auth: Option<AuthOptions>,
}

fn default_path() -> String {
    "/".to_string()
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

fn default_max_concurrent_requests() -> usize {
    128
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_body_read_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_backpressure_wait() -> Duration {
    Duration::from_secs(1)
}

/// Checks the options table of a `webhook` source.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SourceConfig>, Vec<OptionError>> {
    let config: WebhookConfig = parse_options(options)?;
    let errors = check(&config);
    if errors.is_empty() {
        Ok(Box::new(config))
    } else {
        Err(errors)
    }
}

/// Every problem with values that have the right type but cannot work.
fn check(config: &WebhookConfig) -> Vec<OptionError> {
    let mut errors = Vec::new();
    if !config.path.starts_with('/') {
        errors.push(OptionError::new(
            "path",
            format!("must start with `/`, like \"/{}\"", config.path),
        ));
    }
    if config.max_body_bytes == 0 {
        errors.push(OptionError::new("max_body_bytes", "must be greater than 0"));
    }
    if config.max_concurrent_requests == 0 {
        errors.push(OptionError::new(
            "max_concurrent_requests",
            "must be at least 1",
        ));
    }
    for (field, value) in [
        ("header_read_timeout", config.header_read_timeout),
        ("body_read_timeout", config.body_read_timeout),
    ] {
        if value.is_zero() {
            errors.push(OptionError::new(field, "must be longer than 0s"));
        }
    }
    if config
        .auth
        .as_ref()
        .is_some_and(|auth| auth.bearer_token.is_empty())
    {
        errors.push(OptionError::new(
            "auth.bearer_token",
            "is empty; set it (\"${AUDIT_WEBHOOK_TOKEN}\" takes it from the environment) or remove `auth`",
        ));
    }
    errors
}

impl SourceConfig for WebhookConfig {
    fn can_end(&self) -> bool {
        false
    }

    fn build(&self, context: SourceContext) -> anyhow::Result<ComponentTask> {
        let server = server::WebhookServer::bind(self, context)?;
        Ok(Box::pin(server.run()))
    }
}
