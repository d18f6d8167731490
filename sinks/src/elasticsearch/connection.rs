//! The connection of an `elasticsearch` sink (and of `auditflow query` against
//! one): `endpoints` used in turn, `auth`, `tls`, built into an
//! [`OpenSearch`] client; and what the cluster is ([`ClusterInfo`]: OpenSearch
//! or Elasticsearch, its version, whether it has a lifecycle plugin), asked
//! once at start so the sink can adapt its requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auditflow_core::config::{AuthOptions, Credentials, OptionError, TlsOptions};
use opensearch::auth::ClientCertificate;
use opensearch::cert::{Certificate, CertificateValidation};
use opensearch::http::headers::{HeaderMap, HeaderValue, AUTHORIZATION};
use opensearch::http::transport::{Connection, ConnectionPool, TransportBuilder};
use opensearch::http::{Method, StatusCode, Url};
use opensearch::OpenSearch;
use serde::Deserialize;

use crate::http_client::parse_url;

/// Where the cluster is and how to log in: the options a sink and `query` share.
#[derive(Debug, Clone)]
pub struct ClusterConnection {
    /// The nodes, used in turn.
    pub endpoints: Vec<Url>,
    /// The credentials sent with every request.
    pub credentials: Option<Credentials>,
    /// TLS settings for `https://` endpoints.
    pub tls: Option<TlsOptions>,
}

impl ClusterConnection {
    /// Checks `endpoints`, `auth` and `tls`; errors name the option.
    pub fn parse(
        endpoints: &[String],
        auth: Option<&AuthOptions>,
        tls: Option<&TlsOptions>,
    ) -> Result<ClusterConnection, Vec<OptionError>> {
        let mut errors = Vec::new();
        if endpoints.is_empty() {
            errors.push(OptionError::new(
                "endpoints",
                "needs at least one URL, like [\"http://127.0.0.1:9200\"]",
            ));
        }
        let mut urls = Vec::new();
        for (index, text) in endpoints.iter().enumerate() {
            match parse_url(&format!("endpoints[{index}]"), text) {
                Ok(url) => urls.push(url),
                Err(error) => errors.push(error),
            }
        }
        let credentials = match auth.map(|auth| auth.credentials("auth")).transpose() {
            Ok(credentials) => credentials,
            Err(more) => {
                errors.extend(more);
                None
            }
        };
        if let Some(tls) = tls {
            tls.check("tls", &mut errors);
            tls.check_unencrypted_key("tls", &mut errors);
        }
        if errors.is_empty() {
            Ok(ClusterConnection {
                endpoints: urls,
                credentials,
                tls: tls.cloned(),
            })
        } else {
            Err(errors)
        }
    }

    /// A client for these endpoints, each request limited to `timeout`.
    pub fn client(&self, timeout: Duration) -> anyhow::Result<ClusterClient> {
        let pool = RoundRobinPool::new(&self.endpoints).context("no endpoint to connect to")?;
        let mut builder = TransportBuilder::new(pool).timeout(timeout).disable_proxy();
        if let Some(value) = self.authorization()? {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, value);
            builder = builder.headers(headers);
        }
        if let Some(tls) = &self.tls {
            builder = with_tls(builder, tls)?;
        }
        Ok(ClusterClient {
            client: OpenSearch::new(builder.build()?),
            nodes: self.endpoints.len(),
        })
    }

    /// The `Authorization` header of the credentials (set as a header so that a
    /// client certificate can go with it).
    fn authorization(&self) -> anyhow::Result<Option<HeaderValue>> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        let text = credentials.authorization();
        let mut value = HeaderValue::from_str(&text)
            .context("auth: the credentials hold a character an HTTP header cannot carry")?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

fn with_tls(mut builder: TransportBuilder, tls: &TlsOptions) -> anyhow::Result<TransportBuilder> {
    if !tls.verify {
        builder = builder.cert_validation(CertificateValidation::None);
    } else if let Some(pem) = tls.read_ca_pem()? {
        let certificate =
            Certificate::from_pem(&pem).context("tls.ca_file holds no PEM certificate")?;
        builder = builder.cert_validation(CertificateValidation::Full(certificate));
    }
    if let Some(pem) = tls.read_identity_pem()? {
        builder = builder.auth(opensearch::auth::Credentials::Certificate(
            ClientCertificate::Pem(pem),
        ));
    }
    Ok(builder)
}

/// The endpoints taken in turn, one request each, so that a node that fails
/// is left for the next on the retry.
#[derive(Debug, Clone)]
struct RoundRobinPool {
    connections: Arc<[Connection]>,
    next: Arc<AtomicUsize>,
}

impl RoundRobinPool {
    /// `None` without endpoints.
    fn new(endpoints: &[Url]) -> Option<RoundRobinPool> {
        if endpoints.is_empty() {
            return None;
        }
        let connections: Vec<Connection> = endpoints
            .iter()
            .map(|url| Connection::new(url.clone()))
            .collect();
        Some(RoundRobinPool {
            connections: connections.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }
}

impl ConnectionPool for RoundRobinPool {
    fn next(&self) -> &Connection {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        // `new` refuses an empty list, so `turn` is always in range.
        &self.connections[turn]
    }
}

/// Which server the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// OpenSearch: bodies are `flat_object`, lifecycles are ISM policies.
    OpenSearch,
    /// Elasticsearch: bodies are `flattened`, lifecycles are ILM policies.
    Elasticsearch,
}

/// What the cluster is, asked once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// OpenSearch or Elasticsearch.
    pub distribution: Distribution,
    /// Its version (`2.19.6`, `8.15.0`).
    pub version: String,
    /// Whether it can run lifecycle policies (OpenSearch's ISM plugin;
    /// Elasticsearch always has ILM).
    pub has_lifecycle: bool,
}

#[derive(Deserialize)]
struct RootAnswer {
    version: VersionAnswer,
}

#[derive(Deserialize)]
struct VersionAnswer {
    number: String,
    distribution: Option<String>,
}

impl ClusterInfo {
    /// Asks the cluster (`GET /`, and for OpenSearch whether ISM answers).
    pub async fn ask(client: &ClusterClient) -> Result<ClusterInfo, RequestError> {
        let root: RootAnswer = client.get_json("/").await?;
        let distribution = match root.version.distribution.as_deref() {
            Some("opensearch") => Distribution::OpenSearch,
            _ => Distribution::Elasticsearch,
        };
        let has_lifecycle = match distribution {
            Distribution::Elasticsearch => true,
            Distribution::OpenSearch => {
                let (status, body) = client
                    .request(Method::Get, "/_plugins/_ism/policies?size=1", None)
                    .await?;
                // A node without the plugin has no handler for the path (400,
                // or 404); any other refusal (403 for a user without the
                // plugin's rights) is an error to fix, not a missing plugin.
                match status.as_u16() {
                    400 | 404 => false,
                    _ => {
                        check_status(status, &body)?;
                        true
                    }
                }
            }
        };
        Ok(ClusterInfo {
            distribution,
            version: root.version.number,
            has_lifecycle,
        })
    }
}

/// Why a request to the cluster failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// No answer (connection refused, timeout), or one worth waiting out
    /// (408, 429, 5xx): try again later.
    Unavailable(String),
    /// The cluster refused the request; retrying will not change it.
    Refused {
        /// The HTTP status.
        status: u16,
        /// What the cluster said.
        message: String,
    },
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Unavailable(reason) => write!(f, "the cluster is unavailable: {reason}"),
            RequestError::Refused { status, message } => {
                write!(
                    f,
                    "the cluster refused the request with HTTP {status}: {message}"
                )
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// An answer of the cluster: its status, the wait a `Retry-After` header asks
/// for, and its body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// What `Retry-After` asks for, if the answer has one.
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: bytes::Bytes,
}

/// An [`OpenSearch`] client over the endpoints in turn that tries the next
/// endpoint at once when one does not answer, so one node down costs no
/// backoff while another answers.
#[derive(Debug, Clone)]
pub struct ClusterClient {
    client: OpenSearch,
    nodes: usize,
}

impl ClusterClient {
    /// Sends a request (each endpoint tried once while none answers); any
    /// answer is returned, no answer from any is [`RequestError::Unavailable`].
    /// The body is shared between the attempts, not copied.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<bytes::Bytes>,
    ) -> Result<Answer, RequestError> {
        let mut last_error = String::new();
        for _ in 0..self.nodes.max(1) {
            let sent = self
                .client
                .send(
                    method,
                    path,
                    headers.clone(),
                    None::<&()>,
                    body.clone(),
                    None,
                )
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    last_error = describe_error(&error);
                    continue;
                }
            };
            let status = response.status_code();
            let retry_after = crate::http_client::retry_after(response.headers());
            match response.bytes().await {
                Ok(body) => {
                    return Ok(Answer {
                        status,
                        retry_after,
                        body,
                    })
                }
                Err(error) => last_error = describe_error(&error),
            }
        }
        Err(RequestError::Unavailable(last_error))
    }

    /// Sends a request with an optional JSON body; the status and the body's bytes.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, bytes::Bytes), RequestError> {
        let mut headers = HeaderMap::new();
        if body.is_some() {
            headers.insert(
                opensearch::http::headers::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let body = body.map(|value| bytes::Bytes::from(value.to_string()));
        let answer = self.send(method, path, headers, body).await?;
        Ok((answer.status, answer.body))
    }

    /// Sends a request and reads a successful answer as `T`; any other status is an error.
    pub async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, RequestError> {
        let (status, bytes) = self.request(method, path, body).await?;
        check_status(status, &bytes)?;
        serde_json::from_slice(&bytes).map_err(|error| RequestError::Refused {
            status: status.as_u16(),
            message: format!("the answer to {path} is not what was expected: {error}"),
        })
    }

    /// `GET path`, read as `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, RequestError> {
        self.send_json(Method::Get, path, None).await
    }
}

/// `Ok` for a 2xx status; otherwise the error the answer makes.
pub fn check_status(status: StatusCode, body: &[u8]) -> Result<(), RequestError> {
    if status.is_success() {
        return Ok(());
    }
    let message = crate::http_client::quote_body(body);
    if crate::http_client::is_retryable(status) {
        Err(RequestError::Unavailable(format!(
            "HTTP {}: {message}",
            status.as_u16()
        )))
    } else {
        Err(RequestError::Refused {
            status: status.as_u16(),
            message,
        })
    }
}

/// A client error as one line, down to its innermost cause.
pub fn describe_error(error: &opensearch::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    format!("{kind}: {}", crate::http_client::innermost_cause(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(auth: &str) -> ClusterConnection {
        let auth: AuthOptions =
            auditflow_core::config::parse_options(&auth.parse::<toml::Table>().expect("TOML"))
                .expect("auth options");
        ClusterConnection::parse(&["http://127.0.0.1:9200".to_string()], Some(&auth), None)
            .expect("valid")
    }

    #[test]
    fn each_strategy_sends_its_authorization_header() {
        let header = |auth: &str| {
            let value = connection(auth)
                .authorization()
                .expect("a header")
                .expect("set");
            assert!(value.is_sensitive(), "credentials are kept out of logs");
            value.to_str().expect("text").to_string()
        };
        assert_eq!(
            header("strategy = \"basic\"\nuser = \"auditflow\"\npassword = \"s3cret\""),
            "Basic YXVkaXRmbG93OnMzY3JldA=="
        );
        assert_eq!(
            header("strategy = \"bearer\"\ntoken = \"t0k\""),
            "Bearer t0k"
        );
        assert_eq!(
            header("strategy = \"api_key\"\ntoken = \"aWQ6a2V5\""),
            "ApiKey aWQ6a2V5"
        );
        let none =
            ClusterConnection::parse(&["http://a:9200".to_string()], None, None).expect("valid");
        assert!(none.authorization().expect("no error").is_none());
    }

    #[test]
    fn endpoints_are_taken_in_turn() {
        let urls: Vec<Url> = ["http://a:9200/", "http://b:9200/"]
            .iter()
            .map(|text| Url::parse(text).expect("URL"))
            .collect();
        let pool = RoundRobinPool::new(&urls).expect("a pool");
        let first = pool.connections.first().expect("a connection");
        let turns: Vec<bool> = (0..4).map(|_| std::ptr::eq(pool.next(), first)).collect();
        assert_eq!(turns, [true, false, true, false]);
        assert!(RoundRobinPool::new(&[]).is_none());
    }

    #[test]
    fn an_encrypted_key_is_refused_with_the_way_out() {
        let tls = TlsOptions {
            ca_file: None,
            crt_file: Some("c.pem".into()),
            key_file: Some("k.pem".into()),
            key_pass: Some("x".into()),
            verify: true,
        };
        let errors = ClusterConnection::parse(&["https://a".to_string()], None, Some(&tls))
            .expect_err("refused");
        assert_eq!(errors[0].field, "tls.key_pass");
        assert!(errors[0].message.contains("openssl pkey"));
    }
}
