//! The `loki` sink against the real Loki-protocol server that
//! `scripts/services.sh start loki` runs (VictoriaLogs, which serves Loki's
//! push API; the test command exports `AUDITFLOW_TEST_LOKI`). Each test
//! writes streams of its own `cluster` label and reads them back with
//! LogsQL, counting the events out.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{generate, metric, Workspace};

/// The server's URL; panics (never skips) when it is unset or does not answer.
fn endpoint() -> String {
    let url = std::env::var("AUDITFLOW_TEST_LOKI").unwrap_or_else(|_| {
        panic!(
            "AUDITFLOW_TEST_LOKI is not set: run `scripts/test.sh`, or \
             `scripts/services.sh start loki` and `export AUDITFLOW_TEST_LOKI=http://127.0.0.1:9428`"
        )
    });
    assert!(
        TcpStream::connect(address(&url)).is_ok(),
        "nothing answers at {url}: start it with `scripts/services.sh start loki`"
    );
    url
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// `GET path` (HTTP/1.0); the body.
fn get(path: &str) -> String {
    let mut stream = TcpStream::connect(address(&endpoint())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The entries of the LogsQL `query`, each as its JSON object.
fn query(logsql: &str) -> Vec<serde_json::Value> {
    get("/internal/force_flush");
    let encoded: String = logsql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    get(&format!("/select/logsql/query?query={encoded}"))
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("a JSON entry"))
        .collect()
}

/// A `cluster` label value no other test (or earlier run) uses.
fn unique_cluster(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{name}-{nanos}")
}

/// Runs `run --once` on `input` with a `loki` sink `loki` (its `options`
/// added), its API on a free port; returns the output and the final metrics.
fn ship(workspace: &Workspace, options: &str, input: &[u8]) -> std::process::Output {
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/data\"\n[sources.in]\ntype = \"stdin\"\n[sinks.loki]\ntype = \"loki\"\ninputs = [\"in\"]\nendpoint = \"{}\"\npath = \"/insert/loki/api/v1/push?disable_message_parsing=1\"\n{options}\n",
        endpoint()
    ));
    let output = workspace.run_once(&config, input);
    assert!(
        output.status.success(),
        "auditflow failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn fifty_thousand_events_come_back_byte_for_byte_at_their_own_time() {
    let workspace = Workspace::new();
    let cluster = unique_cluster("many");
    let input = generate(&["--count", "50000", "--seed", "17"]);
    ship(&workspace, &format!("cluster = \"{cluster}\""), &input);
    let entries = query(&format!("{{cluster=\"{cluster}\"}}"));
    assert_eq!(entries.len(), 50_000);
    let sent: BTreeSet<&str> = std::str::from_utf8(&input)
        .expect("UTF-8")
        .lines()
        .collect();
    let mut streams = BTreeSet::new();
    for entry in &entries {
        let line = entry["_msg"].as_str().expect("a line");
        assert!(sent.contains(line), "a line that was not sent: {line}");
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON");
        let own =
            chrono::DateTime::parse_from_rfc3339(event["stageTimestamp"].as_str().expect("time"))
                .expect("a time");
        let stored = chrono::DateTime::parse_from_rfc3339(entry["_time"].as_str().expect("_time"))
            .expect("a time");
        assert_eq!(own, stored, "the entry's time is the event's own");
        assert_eq!(entry["verb"], event["verb"], "the verb label");
        assert_eq!(entry["auditID"], event["auditID"], "auditID is metadata");
        streams.insert(entry["_stream"].as_str().unwrap_or_default().to_string());
    }
    let distinct: BTreeSet<&str> = entries.iter().filter_map(|e| e["_msg"].as_str()).collect();
    assert_eq!(distinct.len(), sent.len(), "every event, once");
    assert!(
        streams.len() < 200,
        "{} streams: labels must keep them few",
        streams.len()
    );
    assert!(streams
        .iter()
        .all(|s| !s.contains("auditID") && !s.contains("user=")));
}

#[test]
fn a_label_with_too_many_values_goes_to_metadata_and_the_events_still_go() {
    let workspace = Workspace::new();
    let cluster = unique_cluster("users");
    let base = String::from_utf8(generate(&["--count", "5000", "--seed", "23"])).expect("UTF-8");
    let mut input = String::new();
    for (n, line) in base.lines().enumerate() {
        let mut event: serde_json::Value = serde_json::from_str(line).expect("JSON");
        event["user"]["username"] = serde_json::json!(format!("user-{n}"));
        input.push_str(&event.to_string());
        input.push('\n');
    }
    std::fs::write(workspace.path("audit.log"), &input).expect("write the log");
    let port = common::free_port();
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n[sources.log]\ntype = \"file\"\ninclude = [\"{{dir}}/audit.log\"]\n[sinks.loki]\ntype = \"loki\"\ninputs = [\"log\"]\nendpoint = \"{}\"\npath = \"/insert/loki/api/v1/push?disable_message_parsing=1\"\nlabels = {{ job = \"kubernetes-audit\", cluster = \"{cluster}\", user = \"{{{{ user.username }}}}\" }}\nmax_label_values = 100\n",
        endpoint()
    ));
    let mut child = common::start_logged(&workspace, &config);
    common::wait_for(Duration::from_secs(60), "every event pushed", || {
        common::delivered(port, "loki") >= 5000.0
    });
    let metrics = common::http_get(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    assert_eq!(
        metric(
            &metrics,
            "auditflow_component_errors_total",
            &[("component_id", "loki"), ("error_type", "label_refused")]
        ),
        Some(1.0)
    );
    common::terminate(&child);
    common::wait_exit(&mut child, Duration::from_secs(30));
    let entries = query(&format!("{{cluster=\"{cluster}\"}}"));
    assert_eq!(entries.len(), 5000, "every event is stored");
    let mut by_stream: BTreeMap<bool, usize> = BTreeMap::new();
    for entry in &entries {
        let labelled = entry["_stream"]
            .as_str()
            .unwrap_or_default()
            .contains("user=");
        *by_stream.entry(labelled).or_default() += 1;
        assert!(
            entry["user"]
                .as_str()
                .is_some_and(|u| u.starts_with("user-")),
            "the user is kept: {entry}"
        );
    }
    assert_eq!(
        by_stream.get(&true),
        Some(&100),
        "the first 100 users were labels"
    );
    assert_eq!(
        by_stream.get(&false),
        Some(&4900),
        "the rest went to metadata"
    );
}

#[test]
fn events_out_of_order_and_without_a_time_have_a_clear_outcome() {
    let workspace = Workspace::new();
    let cluster = unique_cluster("order");
    let lines: Vec<String> = String::from_utf8(generate(&["--count", "3000", "--seed", "29"]))
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect();
    // Newest first, across batches of 500.
    let mut input: String = lines.iter().rev().map(|line| format!("{line}\n")).collect();
    let mut timeless: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON");
    timeless["auditID"] = serde_json::json!("no-time");
    let object = timeless.as_object_mut().expect("an object");
    object.remove("stageTimestamp");
    object.remove("requestReceivedTimestamp");
    input.push_str(&timeless.to_string());
    input.push('\n');
    let output = ship(
        &workspace,
        &format!("cluster = \"{cluster}\"\nbatch = {{ max_events = 500 }}"),
        input.as_bytes(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without stageTimestamp"), "{stderr}");
    let entries = query(&format!("{{cluster=\"{cluster}\"}}"));
    assert_eq!(entries.len(), 3000, "every event with a time is stored");
    assert!(entries.iter().all(|e| e["auditID"] != "no-time"));
}

#[test]
fn query_answers_through_logsql_as_the_local_store_does() {
    let workspace = Workspace::new();
    let cluster = unique_cluster("readme");
    let config = common::run_default_pipeline_with(
        &workspace,
        &format!(
            "[sinks.grafana]\ntype = \"loki\"\ninputs = [\"detect\", \"notable\"]\nendpoint = \"{}\"\npath = \"/insert/loki/api/v1/push?disable_message_parsing=1\"\ncluster = \"{cluster}\"\n",
            endpoint()
        ),
    );
    get("/internal/force_flush");
    common::assert_stores_answer_alike(
        &workspace,
        &config,
        "store",
        "grafana",
        &common::README_QUESTIONS,
    );
}

#[test]
fn validate_warns_of_a_label_over_a_many_valued_field() {
    let workspace = Workspace::new();
    let config = workspace.config(
        "[sources.in]\ntype = \"stdin\"\n[sinks.loki]\ntype = \"loki\"\ninputs = [\"in\"]\nendpoint = \"http://127.0.0.1:3100\"\nlabels = { job = \"audit\", user = \"{{ user.username }}\" }\n",
    );
    let output = std::process::Command::new(common::binary())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("run validate");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("labels.user reads user.username"),
        "{stderr}"
    );
}

#[test]
fn the_grafana_dashboard_selects_streams_by_the_default_labels_only() {
    let text = std::fs::read_to_string(
        common::repository_dir().join("examples/grafana/auditflow-audit.json"),
    )
    .expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let labels = ["job", "cluster", "verb", "stage", "resource"];
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 5);
    for panel in panels {
        let expr = panel["targets"][0]["expr"].as_str().expect("a query");
        let selector = expr
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(inside, _)| inside)
            .expect("a stream selector");
        for matcher in selector.split(',') {
            let name = matcher
                .trim()
                .split(['=', '!', '~'])
                .next()
                .unwrap_or_default();
            assert!(
                labels.contains(&name),
                "{expr}: `{name}` is not a default label"
            );
        }
    }
}

#[test]
fn json_pushes_gzipped_or_not_and_text_lines_are_stored_too() {
    let workspace = Workspace::new();
    let input = generate(&["--count", "500", "--seed", "43"]);
    for (name, options) in [
        ("gzip", "compression = \"gzip\""),
        ("plain", "compression = \"none\""),
        ("text", "encoding = \"text\""),
    ] {
        let cluster = unique_cluster(name);
        ship(
            &workspace,
            &format!("cluster = \"{cluster}\"\n{options}"),
            &input,
        );
        let entries = query(&format!("{{cluster=\"{cluster}\"}}"));
        assert_eq!(entries.len(), 500, "{name}");
        let line = entries[0]["_msg"].as_str().unwrap_or_default();
        assert_eq!(line.starts_with('{'), name != "text", "{name}: {line}");
    }
}
