//! The alert sinks in the binary: the `http` sink in a whole pipeline
//! (`auditflow run --once` reads generated traffic on stdin and sends it to a
//! test server that fails the first requests; every event arrives exactly once
//! and the run exits 0), and the alerting example's validation.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::*;

#[derive(Default)]
struct Received {
    /// Requests answered with an error so far.
    failed: usize,
    /// The events (auditID/stage) of the requests answered 200, in order.
    accepted: Vec<String>,
}

/// What identifies an audit event: its auditID and stage.
fn event_key(event: &serde_json::Value) -> String {
    format!("{}/{}", event["auditID"], event["stage"])
}

/// Fails the first two requests with 503, then accepts and records the NDJSON lines.
async fn ingest(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> StatusCode {
    let mut received = received.lock().unwrap();
    if received.failed < 2 {
        received.failed += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    for line in String::from_utf8_lossy(&body).lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("an NDJSON line");
        received.accepted.push(event_key(&event));
    }
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_to_http_delivers_every_event_once_through_server_errors() {
    let received = Arc::new(Mutex::new(Received::default()));
    let router = axum::Router::new()
        .fallback(ingest)
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let workspace = Workspace::new();
    let (config, _) = workspace.stdin_pipeline_with_api(&format!(
        "[sinks.out]\ntype = \"http\"\ninputs = [\"in\"]\nuri = \"http://{address}/audit\"\n\
         batch = {{ max_events = 250 }}\n\
         request = {{ retry_initial_backoff = \"50ms\", retry_max_backoff = \"100ms\" }}\n"
    ));
    let input = generate(&["--count", "2000", "--seed", "7"]);
    let expected: Vec<String> = String::from_utf8_lossy(&input)
        .lines()
        .map(|line| event_key(&serde_json::from_str(line).unwrap()))
        .collect();
    let output = tokio::task::spawn_blocking(move || workspace.run_once(&config, &input))
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "auditflow failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let received = received.lock().unwrap();
    assert_eq!(received.failed, 2);
    assert_eq!(received.accepted.len(), 2000, "every event accepted once");
    let unique: HashSet<&String> = received.accepted.iter().collect();
    assert_eq!(unique.len(), 2000, "no duplicates");
    assert_eq!(received.accepted, expected, "in input order");
}

#[test]
fn the_alerting_example_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(binary())
        .args([
            "validate",
            "--config",
            "examples/alerts-to-alertmanager.toml",
        ])
        .current_dir(root)
        .output()
        .expect("run validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("error:"), "{text}");
}
