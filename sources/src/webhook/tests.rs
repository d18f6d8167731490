//! Unit tests of the webhook source's options, body limits and header checks;
//! `tests/webhook.rs` drives the whole source through the binary.

use std::io::Write;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use flate2::write::GzEncoder;
use flate2::Compression;

use super::body::{gunzip_limited, read_limited, BodyError};
use super::handler::{check_content_type, is_gzip};
use super::{parse, WebhookConfig};
use auditflow_core::config::parse_options;

fn options(text: &str) -> toml::Table {
    toml::from_str(text).expect("valid TOML")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

#[test]
fn defaults_and_nested_options() {
    let config: WebhookConfig = parse_options(&options(
        r#"address = "127.0.0.1:8443"
tls = { crt_file = "s.crt", key_file = "s.key", client_ca_file = "ca.crt" }
auth = { bearer_token = "secret" }"#,
    ))
    .expect("valid options");
    assert_eq!(config.path, "/");
    assert_eq!(config.max_body_bytes, 32 * 1024 * 1024);
    assert_eq!(config.header_read_timeout, Duration::from_secs(10));
    assert!(config.tls.is_some_and(|tls| tls.client_ca_file.is_some()));
    assert!(parse(&options(r#"address = "127.0.0.1:8443""#)).is_ok());
}

#[test]
fn values_that_cannot_work_are_refused_with_their_field() {
    let errors = parse(&options(
        r#"address = "127.0.0.1:1"
path = "audit"
max_body_bytes = 0
max_concurrent_requests = 0
header_read_timeout = "0s"
auth = { bearer_token = "" }"#,
    ))
    .err()
    .unwrap_or_default();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "path",
            "max_body_bytes",
            "max_concurrent_requests",
            "header_read_timeout",
            "auth.bearer_token"
        ]
    );
    let errors = parse(&options(r#"address = "nowhere""#))
        .err()
        .unwrap_or_default();
    assert_eq!(errors.first().map(|e| e.field.as_str()), Some("address"));
    let errors = parse(&options("path = \"/\"")).err().unwrap_or_default();
    assert!(errors
        .iter()
        .any(|e| e.message.contains("`address` is required")));
}

#[tokio::test]
async fn a_body_within_the_limit_is_read_whole() {
    let body = read_limited(
        Body::from(vec![7u8; 100]),
        100,
        Some(100),
        Duration::from_secs(1),
    );
    assert_eq!(body.await.map(|b| b.len()), Ok(100));
}

#[tokio::test]
async fn a_body_past_the_limit_is_refused_by_its_length_or_while_it_streams() {
    let too_large = Err(BodyError::TooLarge {
        limit: 99,
        decompressed: false,
    });
    let declared = read_limited(
        Body::from(vec![0u8; 10]),
        99,
        Some(100),
        Duration::from_secs(1),
    );
    assert_eq!(declared.await, too_large);
    let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(vec![0u8; 10]));
    let streamed = Body::from_stream(futures::stream::iter(chunks));
    let streamed = read_limited(streamed, 99, None, Duration::from_secs(1)).await;
    assert_eq!(streamed, too_large);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_times_out() {
    let never = Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>());
    let read = read_limited(never, 10, None, Duration::from_millis(50)).await;
    assert_eq!(read, Err(BodyError::Timeout(Duration::from_millis(50))));
}

#[test]
fn gzip_is_decompressed_up_to_the_limit_and_no_further() {
    let text = b"{\"auditID\":\"a\"}".repeat(100);
    assert_eq!(gunzip_limited(&gzip(&text), text.len()), Ok(text.clone()));
    let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
    assert!(bomb.len() < 100 * 1024, "the bomb is small: {}", bomb.len());
    let refused = gunzip_limited(&bomb, 1024 * 1024);
    assert_eq!(
        refused,
        Err(BodyError::TooLarge {
            limit: 1024 * 1024,
            decompressed: true
        })
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("decompresses to more than max_body_bytes"),
        "{message}"
    );
}

#[test]
fn truncated_or_corrupt_gzip_is_an_error() {
    let whole = gzip(&b"{\"auditID\":\"a\"}".repeat(1000));
    let truncated = whole.get(..whole.len() / 2).unwrap_or_default();
    assert!(matches!(
        gunzip_limited(truncated, 1 << 20),
        Err(BodyError::Gzip(_))
    ));
    assert!(matches!(
        gunzip_limited(b"not gzip", 1 << 20),
        Err(BodyError::Gzip(_))
    ));
}

fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| (name.clone(), HeaderValue::from_static(value)))
        .collect()
}

#[test]
fn only_json_is_accepted() {
    for accepted in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        assert!(check_content_type(&headers(&[(header::CONTENT_TYPE, accepted)])).is_ok());
    }
    let refused = check_content_type(&headers(&[(header::CONTENT_TYPE, "text/plain")]));
    let refused = refused.expect_err("text/plain is refused");
    assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        refused.message.contains("`text/plain`"),
        "{}",
        refused.message
    );
    assert!(check_content_type(&HeaderMap::new()).is_err());
}

#[test]
fn gzip_and_identity_are_the_encodings_accepted() {
    assert_eq!(is_gzip(&HeaderMap::new()), Ok(false));
    assert_eq!(
        is_gzip(&headers(&[(header::CONTENT_ENCODING, "gzip")])),
        Ok(true)
    );
    assert_eq!(
        is_gzip(&headers(&[(header::CONTENT_ENCODING, "identity")])),
        Ok(false)
    );
    let refused = is_gzip(&headers(&[(header::CONTENT_ENCODING, "br")])).err();
    assert_eq!(
        refused.map(|r| r.status),
        Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
    );
}
