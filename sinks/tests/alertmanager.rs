//! The `alertmanager` sink against a real Alertmanager.
//!
//! `scripts/test.sh` starts Alertmanager (`scripts/services.sh start alertmanager`)
//! and exports `AUDITFLOW_TEST_ALERTMANAGER=http://127.0.0.1:9093`. These tests
//! fail, never skip, when the variable is unset or Alertmanager does not answer:
//! to run them alone, start it with the script and export the variable.
//! Each test tags its alerts with a label of its own (`test_run`), so tests can
//! share one Alertmanager.

mod support;

use std::time::Duration;

use auditflow_core::ack::BatchStatus;
use auditflow_core::event::Priority;
use chrono::{DateTime, Utc};
use serde_json::Value;
use support::{ack, alert_event, audit_event, forward, free_port, unique, RunningSink};

/// Alertmanager's URL; fails the test with how to fix it when it is not there.
async fn alertmanager() -> String {
    let url = std::env::var("AUDITFLOW_TEST_ALERTMANAGER").unwrap_or_else(|_| {
        panic!(
            "AUDITFLOW_TEST_ALERTMANAGER is not set: run `bash scripts/test.sh`, or \
             `scripts/services.sh start alertmanager` and \
             `export AUDITFLOW_TEST_ALERTMANAGER=http://127.0.0.1:9093`"
        )
    });
    let ready = reqwest::get(format!("{url}/-/ready")).await;
    assert!(
        ready.is_ok_and(|r| r.status().is_success()),
        "Alertmanager at {url} is not ready: start it with `scripts/services.sh start alertmanager`"
    );
    url
}

/// The active alerts carrying `test_run="run"`.
async fn alerts_of_run(url: &str, run: &str) -> Vec<Value> {
    let response = reqwest::Client::new()
        .get(format!("{url}/api/v2/alerts"))
        .query(&[("filter", format!("test_run=\"{run}\""))])
        .send()
        .await
        .expect("GET /api/v2/alerts");
    assert!(response.status().is_success());
    let text = response.text().await.expect("a body");
    let alerts: Vec<Value> = serde_json::from_str(&text).expect("a JSON array");
    alerts
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn options(url: &str, run: &str, extra: &str) -> String {
    format!(
        "endpoint = \"{url}\"\nlabels = {{ test_run = \"{run}\", cluster = \"test\" }}\n\
         batch = {{ timeout = \"50ms\" }}\n{extra}"
    )
}

#[tokio::test]
async fn alerts_arrive_with_labels_annotations_and_start_times() {
    let url = alertmanager().await;
    let run = unique("labels");
    let sink = RunningSink::start("alertmanager", &options(&url, &run, ""));
    let now = Utc::now();
    let earlier = (now - chrono::Duration::seconds(30)).to_rfc3339();
    let later = (now - chrono::Duration::seconds(10)).to_rfc3339();
    let batch = vec![
        alert_event("Exec Into Pod", Priority::Notice, "prod", "alice", &later),
        alert_event("Exec Into Pod", Priority::Notice, "prod", "alice", &earlier),
        alert_event(
            "Create Privileged Pod",
            Priority::Warning,
            "dev",
            "bob",
            &later,
        ),
        audit_event("not-an-alert"),
    ];
    assert_eq!(
        ack(sink.send(batch).await, 30).await,
        BatchStatus::Delivered
    );
    assert_eq!(
        sink.metric("auditflow_component_discarded_events_total", &[]),
        1.0,
        "the audit event is dropped and counted"
    );
    assert_eq!(
        sink.metric("auditflow_component_sent_events_total", &[]),
        3.0
    );

    let mut alerts = alerts_of_run(&url, &run).await;
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    alerts.sort_by_key(|a| {
        a["labels"]["alertname"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    let privileged = &alerts[0];
    assert_eq!(
        privileged["labels"],
        serde_json::json!({
            "alertname": "Create Privileged Pod", "severity": "warning", "namespace": "dev",
            "user": "bob", "cluster": "test", "test_run": run,
        })
    );
    assert_eq!(
        privileged["annotations"]["summary"],
        "Create Privileged Pod by bob in dev"
    );
    let description = privileged["annotations"]["description"].as_str().unwrap();
    assert!(description.contains("tags: k8s, test"), "{description}");
    let exec = &alerts[1];
    assert_eq!(exec["labels"]["severity"], "notice");
    assert_eq!(exec["labels"]["user"], "alice");
    let starts = time(&exec["startsAt"]);
    assert!(
        (starts - (now - chrono::Duration::seconds(30)))
            .num_milliseconds()
            .abs()
            < 2,
        "two hits of one label set start at the earlier one: {starts}"
    );
    let ends = time(&exec["endsAt"]);
    let expected_end = now + chrono::Duration::minutes(5);
    assert!(
        (ends - expected_end).num_seconds().abs() <= 5,
        "endsAt is resolve_timeout (5m) after the send: {ends}, expected about {expected_end}"
    );
    assert_eq!(exec["status"]["state"], "active");
    sink.finish().await;
}

#[tokio::test]
async fn active_alerts_are_sent_again_and_resolve_after_resolve_timeout() {
    let url = alertmanager().await;
    let run = unique("resend");
    let sink = RunningSink::start(
        "alertmanager",
        &options(
            &url,
            &run,
            "resend_interval = \"500ms\"\nresolve_timeout = \"4s\"",
        ),
    );
    let now = Utc::now().to_rfc3339();
    let batch = vec![alert_event(
        "Exec Into Pod",
        Priority::Critical,
        "prod",
        "eve",
        &now,
    )];
    assert_eq!(
        ack(sink.send(batch).await, 30).await,
        BatchStatus::Delivered
    );
    let first = alerts_of_run(&url, &run).await;
    assert_eq!(first.len(), 1);
    let first_update = time(&first[0]["updatedAt"]);
    let ends = time(&first[0]["endsAt"]);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = alerts_of_run(&url, &run).await;
    assert_eq!(again.len(), 1);
    assert!(
        time(&again[0]["updatedAt"]) > first_update,
        "the sink sent the active alert again"
    );
    assert_eq!(time(&again[0]["endsAt"]), ends, "a resend keeps endsAt");
    assert!(sink.metric("auditflow_alertmanager_resent_alerts_total", &[]) >= 1.0);

    let wait = (ends - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(500);
    tokio::time::sleep(wait).await;
    assert!(
        alerts_of_run(&url, &run).await.is_empty(),
        "the alert resolved at its endsAt"
    );
    let resent = sink.metric("auditflow_alertmanager_resent_alerts_total", &[]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        sink.metric("auditflow_alertmanager_resent_alerts_total", &[]),
        resent,
        "a resolved alert is not sent again"
    );
    sink.finish().await;
}

#[tokio::test]
async fn an_endpoint_that_comes_up_late_gets_the_alerts_after_retries() {
    let url = alertmanager().await;
    let run = unique("late");
    let port = free_port();
    let sink = RunningSink::start(
        "alertmanager",
        &options(
            &format!("http://127.0.0.1:{port}"),
            &run,
            "request = { retry_attempts = 50, retry_initial_backoff = \"100ms\", retry_max_backoff = \"200ms\" }",
        ),
    );
    let now = Utc::now().to_rfc3339();
    let receiver = sink
        .send(vec![alert_event(
            "Anonymous Request Allowed",
            Priority::Error,
            "kube-system",
            "system:anonymous",
            &now,
        )])
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let target = url.trim_start_matches("http://").to_string();
    forward(port, target, 0).await;
    assert_eq!(ack(receiver, 30).await, BatchStatus::Delivered);
    assert!(sink.errors("request_retried") >= 2.0);
    let alerts = alerts_of_run(&url, &run).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["labels"]["user"], "system:anonymous");
    assert_eq!(alerts[0]["labels"]["severity"], "error");
    sink.finish().await;
}

#[tokio::test]
async fn an_endpoint_that_stays_down_fails_the_delivery() {
    let run = unique("down");
    let port = free_port();
    let sink = RunningSink::start(
        "alertmanager",
        &options(
            &format!("http://127.0.0.1:{port}"),
            &run,
            "request = { retry_attempts = 2, retry_initial_backoff = \"50ms\", retry_max_backoff = \"100ms\" }",
        ),
    );
    let now = Utc::now().to_rfc3339();
    let receiver = sink
        .send(vec![alert_event(
            "Exec Into Pod",
            Priority::Notice,
            "prod",
            "a",
            &now,
        )])
        .await;
    assert_eq!(ack(receiver, 30).await, BatchStatus::Errored);
    assert_eq!(sink.errors("delivery_failed"), 1.0);
    assert_eq!(sink.errors("request_retried"), 2.0);
    sink.finish().await;
}

#[tokio::test]
async fn a_refused_request_is_rejected_without_retries() {
    let url = alertmanager().await;
    let run = unique("refused");
    // Alertmanager answers 404 under a path it does not serve.
    let sink = RunningSink::start(
        "alertmanager",
        &options(&format!("{url}/no-such-prefix"), &run, ""),
    );
    let now = Utc::now().to_rfc3339();
    let receiver = sink
        .send(vec![alert_event(
            "Exec Into Pod",
            Priority::Notice,
            "prod",
            "a",
            &now,
        )])
        .await;
    assert_eq!(ack(receiver, 30).await, BatchStatus::Rejected);
    assert_eq!(sink.errors("delivery_rejected"), 1.0);
    assert_eq!(sink.errors("request_retried"), 0.0);
    sink.finish().await;
}

#[tokio::test]
async fn only_max_active_alerts_are_remembered_for_resending() {
    let url = alertmanager().await;
    let run = unique("bounded");
    let sink = RunningSink::start(
        "alertmanager",
        &options(
            &url,
            &run,
            "max_active_alerts = 1\nresend_interval = \"300ms\"\nresolve_timeout = \"1m\"",
        ),
    );
    let now = Utc::now().to_rfc3339();
    let first = sink
        .send(vec![alert_event(
            "Exec Into Pod",
            Priority::Notice,
            "prod",
            "old",
            &now,
        )])
        .await;
    assert_eq!(ack(first, 30).await, BatchStatus::Delivered);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = sink
        .send(vec![alert_event(
            "Exec Into Pod",
            Priority::Notice,
            "prod",
            "new",
            &now,
        )])
        .await;
    assert_eq!(ack(second, 30).await, BatchStatus::Delivered);
    let updated = |alerts: &[Value], user: &str| {
        alerts
            .iter()
            .find(|a| a["labels"]["user"] == user)
            .map(|a| time(&a["updatedAt"]))
            .expect("the alert is in Alertmanager")
    };
    let before = alerts_of_run(&url, &run).await;
    assert_eq!(before.len(), 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = alerts_of_run(&url, &run).await;
    assert_eq!(
        after.len(),
        2,
        "a forgotten alert still fires until its endsAt"
    );
    assert_eq!(
        updated(&after, "old"),
        updated(&before, "old"),
        "the alert pushed out of the map is not sent again"
    );
    assert!(
        updated(&after, "new") > updated(&before, "new"),
        "the remembered one is"
    );
    sink.finish().await;
}
