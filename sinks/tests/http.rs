//! The `http` sink against an in-test HTTP server (axum) that answers from a
//! script: errors, 429 with `Retry-After`, answers slower than the request
//! timeout, and (through a TCP forwarder) dropped connections. Every test
//! counts what the server accepted: no event lost, none accepted twice.

mod support;

use std::collections::VecDeque;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditflow_core::ack::BatchStatus;
use auditflow_core::event::Priority;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use support::{ack, alert_event, audit_event, forward, free_port, RunningSink};

/// What the server does with one request.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Answers 200.
    Accept,
    /// Answers this status, with a body naming it.
    Status(u16),
    /// Answers 429 with `Retry-After: N` seconds.
    TooManyRequests(u64),
    /// Waits this long, then answers 200 (to a client that gave up: recorded as late).
    Slow(Duration),
}

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    headers: HeaderMap,
    /// The body, gunzipped when it came with `Content-Encoding: gzip`.
    body: Vec<u8>,
    at: Instant,
    status: u16,
}

#[derive(Default)]
struct Server {
    script: Mutex<VecDeque<Step>>,
    received: Mutex<Vec<Received>>,
    late: Mutex<Vec<Received>>,
}

impl Server {
    /// Starts a server that follows `script`, then accepts everything; returns it and its URL.
    async fn start(script: &[Step]) -> (Arc<Server>, String) {
        let server = Arc::new(Server {
            script: Mutex::new(script.iter().copied().collect()),
            ..Server::default()
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test server");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        (server, format!("http://{address}"))
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The bodies the server answered 2xx in time.
    fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }
}

async fn handle(
    State(server): State<Arc<Server>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let step = server
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Step::Accept);
    let body = decoded(&headers, &body);
    let mut received = Received {
        method,
        headers,
        body,
        at: Instant::now(),
        status: 200,
    };
    match step {
        Step::Accept => {
            server.received.lock().unwrap().push(received);
            StatusCode::OK.into_response()
        }
        Step::Status(code) => {
            received.status = code;
            server.received.lock().unwrap().push(received);
            let status = StatusCode::from_u16(code).unwrap();
            (status, format!("scripted {code}")).into_response()
        }
        Step::TooManyRequests(seconds) => {
            received.status = 429;
            server.received.lock().unwrap().push(received);
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", seconds.to_string())],
                "slow down",
            )
                .into_response()
        }
        Step::Slow(wait) => {
            received.status = 0;
            server.received.lock().unwrap().push(received.clone());
            tokio::time::sleep(wait).await;
            server.late.lock().unwrap().push(received);
            StatusCode::OK.into_response()
        }
    }
}

fn decoded(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    if !gzip {
        return body.to_vec();
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

/// The auditIDs in an NDJSON body, in order.
fn ndjson_ids(body: &[u8]) -> Vec<String> {
    std::str::from_utf8(body)
        .expect("UTF-8")
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("a JSON line");
            value["auditID"].as_str().expect("an auditID").to_string()
        })
        .collect()
}

/// Every auditID the server accepted, in order of acceptance.
fn accepted_ids(server: &Server) -> Vec<String> {
    server
        .accepted()
        .iter()
        .flat_map(|r| ndjson_ids(&r.body))
        .collect()
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:04}")).collect()
}

fn events(ids: &[String]) -> Vec<auditflow_core::event::Event> {
    ids.iter().map(|id| audit_event(id)).collect()
}

fn fast_retries() -> &'static str {
    "request = { timeout = \"2s\", retry_attempts = 10, retry_initial_backoff = \"20ms\", retry_max_backoff = \"50ms\" }"
}

#[tokio::test]
async fn batches_are_cut_by_count_and_every_event_arrives_once_in_order() {
    let (server, url) = Server::start(&[]).await;
    let sink = RunningSink::start(
        "http",
        &format!(
            "uri = \"{url}/ingest\"\nheaders = {{ X-Token = \"secret\" }}\nbatch = {{ max_events = 3, timeout = \"100ms\" }}"
        ),
    );
    let all = ids("count", 7);
    let first = sink.send(events(&all[..4])).await;
    let second = sink.send(events(&all[4..])).await;
    assert_eq!(ack(first, 10).await, BatchStatus::Delivered);
    assert_eq!(ack(second, 10).await, BatchStatus::Delivered);

    let received = server.received();
    let sizes: Vec<usize> = received.iter().map(|r| ndjson_ids(&r.body).len()).collect();
    assert_eq!(
        sizes,
        [3, 3, 1],
        "max_events = 3 cuts 7 events into 3 + 3 + 1"
    );
    assert_eq!(accepted_ids(&server), all);
    let request = &received[0];
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.headers["x-token"], "secret");
    assert_eq!(request.headers["content-type"], "application/x-ndjson");
    let registry = sink.finish().await;
    assert_eq!(
        support::metric(&registry, "auditflow_component_sent_events_total", &[]),
        7.0
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_accepted() {
    let (server, url) = Server::start(&[Step::Status(500), Step::Status(503)]).await;
    let sink = RunningSink::start("http", &format!("uri = \"{url}/\"\n{}", fast_retries()));
    let all = ids("retry", 5);
    assert_eq!(
        ack(sink.send(events(&all)).await, 10).await,
        BatchStatus::Delivered
    );
    let received = server.received();
    assert_eq!(received.len(), 3, "two failures, then the accepted request");
    assert!(
        received.iter().all(|r| r.body == received[0].body),
        "each retry sends the same batch"
    );
    assert_eq!(accepted_ids(&server), all);
    assert_eq!(sink.errors("request_retried"), 2.0);
    sink.finish().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (server, url) = Server::start(&[Step::TooManyRequests(1)]).await;
    let sink = RunningSink::start("http", &format!("uri = \"{url}/\"\n{}", fast_retries()));
    let all = ids("after", 2);
    assert_eq!(
        ack(sink.send(events(&all)).await, 10).await,
        BatchStatus::Delivered
    );
    let received = server.received();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 is waited for, not the 20ms backoff: waited {waited:?}"
    );
    assert_eq!(accepted_ids(&server), all);
    sink.finish().await;
}

#[tokio::test]
async fn a_response_slower_than_the_timeout_is_retried() {
    let (server, url) = Server::start(&[Step::Slow(Duration::from_millis(1500))]).await;
    let sink = RunningSink::start(
        "http",
        &format!("uri = \"{url}/\"\nrequest = {{ timeout = \"300ms\", retry_initial_backoff = \"20ms\", retry_max_backoff = \"50ms\" }}"),
    );
    let all = ids("slow", 3);
    let started = Instant::now();
    assert_eq!(
        ack(sink.send(events(&all)).await, 10).await,
        BatchStatus::Delivered
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "the sink gave up on the slow answer after the 300ms timeout"
    );
    assert_eq!(server.received().len(), 2);
    assert_eq!(accepted_ids(&server), all, "the retry was accepted once");
    sink.finish().await;
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let (server, url) = Server::start(&[]).await;
    let port = free_port();
    let accepted = forward(port, url.trim_start_matches("http://").to_string(), 2).await;
    let sink = RunningSink::start(
        "http",
        &format!("uri = \"http://127.0.0.1:{port}/\"\n{}", fast_retries()),
    );
    let all = ids("dropped", 4);
    assert_eq!(
        ack(sink.send(events(&all)).await, 10).await,
        BatchStatus::Delivered
    );
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "two dropped connections, then one that got through"
    );
    assert_eq!(accepted_ids(&server), all);
    sink.finish().await;
}

#[tokio::test]
async fn json_array_gzip_put_carries_audit_events_and_alerts() {
    let (server, url) = Server::start(&[]).await;
    let sink = RunningSink::start(
        "http",
        &format!("uri = \"{url}/alerts\"\nmethod = \"PUT\"\nencoding = \"json_array\"\ncompression = \"gzip\""),
    );
    let mut batch = events(&ids("array", 2));
    batch.push(alert_event(
        "Create Privileged Pod",
        Priority::Warning,
        "prod",
        "bob",
        "2026-11-24T10:00:00.000000000Z",
    ));
    assert_eq!(
        ack(sink.send(batch).await, 10).await,
        BatchStatus::Delivered
    );
    let registry = sink.finish().await;
    assert!(support::metric(&registry, "auditflow_component_sent_bytes_total", &[]) > 0.0);
    let requests = server.received();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, Method::PUT);
    assert_eq!(request.headers["content-encoding"], "gzip");
    assert_eq!(request.headers["content-type"], "application/json");
    let body: Vec<Value> = serde_json::from_slice(&request.body).expect("a JSON array");
    assert_eq!(body.len(), 3);
    assert_eq!(body[0]["auditID"], "array-0000");
    assert_eq!(body[1]["auditID"], "array-0001");
    assert_eq!(body[2]["rule"], "Create Privileged Pod");
    assert_eq!(body[2]["priority"], "Warning");
    assert_eq!(body[2]["output_fields"]["ka.user.name"], "bob");
}

#[tokio::test]
async fn a_client_error_rejects_the_batch_without_retrying() {
    let (server, url) = Server::start(&[Step::Status(400)]).await;
    let sink = RunningSink::start("http", &format!("uri = \"{url}/\"\n{}", fast_retries()));
    assert_eq!(
        ack(sink.send(events(&ids("bad", 2))).await, 10).await,
        BatchStatus::Rejected
    );
    let next = ids("good", 1);
    assert_eq!(
        ack(sink.send(events(&next)).await, 10).await,
        BatchStatus::Delivered
    );
    assert_eq!(
        server.received().len(),
        2,
        "the rejected batch is not retried"
    );
    assert_eq!(accepted_ids(&server), next);
    assert_eq!(sink.errors("delivery_rejected"), 2.0);
    sink.finish().await;
}

#[tokio::test]
async fn no_event_is_lost_or_accepted_twice_through_mixed_failures() {
    let script = [
        Step::Status(500),
        Step::Accept,
        Step::TooManyRequests(0),
        Step::Status(502),
        Step::Accept,
        Step::Slow(Duration::from_millis(600)),
        Step::Accept,
        Step::Status(503),
        Step::TooManyRequests(0),
    ];
    let (server, url) = Server::start(&script).await;
    let sink = RunningSink::start(
        "http",
        &format!(
            "uri = \"{url}/\"\ncompression = \"gzip\"\nbatch = {{ max_events = 7, timeout = \"20ms\" }}\n\
             request = {{ timeout = \"200ms\", retry_attempts = 10, retry_initial_backoff = \"10ms\", retry_max_backoff = \"30ms\" }}"
        ),
    );
    let all = ids("mixed", 200);
    let mut receivers = Vec::new();
    for chunk in all.chunks(10) {
        receivers.push(sink.send(events(chunk)).await);
    }
    for receiver in receivers {
        assert_eq!(ack(receiver, 30).await, BatchStatus::Delivered);
    }
    sink.finish().await;
    let accepted = accepted_ids(&server);
    assert_eq!(accepted.len(), 200, "every event accepted exactly once");
    assert_eq!(accepted, all, "in order");
    let failures = script
        .iter()
        .filter(|step| !matches!(step, Step::Accept))
        .count();
    assert_eq!(
        server.received().len(),
        server.accepted().len() + failures,
        "one extra request per scripted failure"
    );
}
