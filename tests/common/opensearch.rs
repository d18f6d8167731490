//! The OpenSearch node the tests talk to (`scripts/services.sh start
//! opensearch`; the test command exports `AUDITFLOW_TEST_OPENSEARCH`): plain
//! HTTP requests to it, counts, and index names of each test's own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The node's URL; panics (never skips) when it is not set or does not answer.
pub fn endpoint() -> String {
    let url = std::env::var("AUDITFLOW_TEST_OPENSEARCH").unwrap_or_else(|_| {
        panic!(
            "AUDITFLOW_TEST_OPENSEARCH is not set: run `scripts/test.sh`, or \
             `scripts/services.sh start opensearch` and `export AUDITFLOW_TEST_OPENSEARCH=http://127.0.0.1:9200`"
        )
    });
    assert!(
        TcpStream::connect(address(&url)).is_ok(),
        "no OpenSearch node answers at {url}: start it with `scripts/services.sh start opensearch`"
    );
    url
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Sends a request (HTTP/1.0, so the answer is not chunked); the status and the body as JSON.
pub fn request(method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let url = endpoint();
    let mut stream = TcpStream::connect(address(&url)).expect("connect to OpenSearch");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("set a read timeout");
    let body = body.unwrap_or("");
    let content_type = if path.contains("_bulk") {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string()));
    (status, json)
}

/// Sends a request that must succeed; its answer.
pub fn ok(method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
    let (status, answer) = request(method, path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: HTTP {status}: {answer}"
    );
    answer
}

/// Makes what was written searchable, then counts the documents of `pattern`.
pub fn count(pattern: &str) -> u64 {
    refresh(pattern);
    let answer = ok(
        "GET",
        &format!("/{pattern}/_count?ignore_unavailable=true&allow_no_indices=true"),
        None,
    );
    answer["count"].as_u64().expect("a count")
}

/// Refreshes the indices of `pattern`.
pub fn refresh(pattern: &str) {
    ok(
        "POST",
        &format!("/{pattern}/_refresh?ignore_unavailable=true&allow_no_indices=true"),
        None,
    );
}

/// The names of the indices matching `pattern`, sorted.
pub fn indices(pattern: &str) -> Vec<String> {
    let answer = ok(
        "GET",
        &format!("/_cat/indices/{pattern}?format=json&h=index"),
        None,
    );
    let mut names: Vec<String> = answer
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row["index"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A prefix of index names no other test (or earlier run) uses; what earlier
/// runs left under it is deleted.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let prefix = format!("t-{name}-{}-{nanos}", std::process::id()).to_lowercase();
    request("DELETE", &format!("/{prefix}*"), None);
    request("DELETE", &format!("/_index_template/{prefix}*"), None);
    prefix
}

/// The options of an `elasticsearch` sink writing to this node under `prefix`.
pub fn sink_options(prefix: &str) -> String {
    format!(
        "endpoints = [\"{}\"]\nindex = \"{prefix}-audit-%Y.%m.%d\"\nalerts_index = \"{prefix}-alerts-%Y.%m.%d\"\n",
        endpoint()
    )
}
