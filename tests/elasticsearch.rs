//! The `elasticsearch` sink and `auditflow query` against the real OpenSearch
//! node that `scripts/services.sh start opensearch` runs (the test command
//! starts it and exports `AUDITFLOW_TEST_OPENSEARCH`). Every test writes
//! indices of its own prefix and counts the events out.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::opensearch::{count, indices, ok, sink_options, unique_prefix};
use common::{
    binary, delivered, falco_traces, generate, http_get, metric, start_logged, terminate,
    wait_exit, wait_for, Workspace,
};

/// Runs `auditflow run --once` on `input` with an `elasticsearch` sink `search`
/// (its options: `sink_options(prefix)` and `extra`) and a file sink of its
/// `errors` output (`{dir}/errors.ndjson`); asserts that it succeeds.
fn ship(workspace: &Workspace, prefix: &str, extra: &str, input: &[u8]) {
    ship_from(workspace, "\"in\"", prefix, extra, input);
}

/// [`ship`] with the sink reading `inputs` (TOML list items).
fn ship_from(workspace: &Workspace, inputs: &str, prefix: &str, extra: &str, input: &[u8]) {
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/data\"\n[sources.in]\ntype = \"stdin\"\n[sinks.search]\ntype = \"elasticsearch\"\ninputs = [{inputs}]\n{}{extra}\n[sinks.dead_letter]\ntype = \"file\"\ninputs = [\"search.errors\"]\npath = \"{{dir}}/errors.ndjson\"\n",
        sink_options(prefix)
    ));
    let output = workspace.run_once(&config, input);
    assert!(
        output.status.success(),
        "auditflow failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An audit event (one line) with its auditID, time and the rest given.
fn event(audit_id: &str, time: &str, extra: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"{audit_id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/configmaps/c","verb":"update","user":{{"username":"alice@example.com","groups":["dev"]}},"sourceIPs":["10.0.0.7"],"objectRef":{{"resource":"configmaps","namespace":"default","name":"c","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{time}","stageTimestamp":"{time}"{extra}}}"#
    )
}

#[test]
fn a_hundred_thousand_events_are_stored_once_and_a_replay_adds_none() {
    let workspace = Workspace::new();
    let prefix = unique_prefix("exactly-once");
    let input = generate(&["--count", "100000", "--seed", "7"]);
    ship(&workspace, &prefix, "compression = \"gzip\"", &input);
    assert_eq!(count(&format!("{prefix}-audit-*")), 100_000);
    ship(&workspace, &prefix, "compression = \"gzip\"", &input);
    assert_eq!(
        count(&format!("{prefix}-audit-*")),
        100_000,
        "the replay stored events a second time"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.path("errors.ndjson")).unwrap_or_default(),
        "",
        "no event may be refused"
    );
    let mapping = ok("GET", &format!("/{prefix}-audit-*/_mapping"), None);
    for (index, body) in mapping.as_object().expect("mappings") {
        let fields = leaf_fields(&body["mappings"]);
        assert!(
            fields < 100,
            "{index} maps {fields} fields: the bodies must not grow the mapping"
        );
    }
}

/// The number of fields a mapping defines.
fn leaf_fields(mapping: &serde_json::Value) -> usize {
    mapping["properties"]
        .as_object()
        .map(|properties| {
            properties
                .values()
                .map(|field| {
                    if field.get("properties").is_some() {
                        leaf_fields(field)
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_dead_endpoint_is_passed_over() {
    let workspace = Workspace::new();
    let prefix = unique_prefix("endpoints");
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let input = generate(&["--count", "5000", "--seed", "5"]);
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/data\"\n[sources.in]\ntype = \"stdin\"\n[sinks.search]\ntype = \"elasticsearch\"\ninputs = [\"in\"]\nendpoints = [\"{dead}\", \"{}\"]\nindex = \"{prefix}-audit-%Y.%m.%d\"\nalerts_index = \"{prefix}-alerts-%Y.%m.%d\"\nbatch = {{ max_events = 250 }}\nrequest = {{ retry_initial_backoff = \"50ms\", retry_max_backoff = \"200ms\" }}\n",
        common::opensearch::endpoint()
    ));
    let output = workspace.run_once(&config, &input);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(count(&format!("{prefix}-audit-*")), 5000);
}

#[test]
fn a_pipeline_whose_cluster_never_answers_still_stops() {
    let workspace = Workspace::new();
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/data\"\n[sources.in]\ntype = \"stdin\"\n[sinks.search]\ntype = \"elasticsearch\"\ninputs = [\"in\"]\nendpoints = [\"{dead}\"]\nrequest = {{ retry_initial_backoff = \"100ms\", retry_max_backoff = \"500ms\" }}\n"
    ));
    let started = std::time::Instant::now();
    let output = workspace.run_once(&config, &generate(&["--count", "10"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it took {:?} to stop",
        started.elapsed()
    );
    assert!(
        stderr.contains("cannot be reached") && stderr.contains("reported as not delivered"),
        "{stderr}"
    );
}

#[test]
fn a_data_stream_takes_the_events_once() {
    let workspace = Workspace::new();
    let prefix = unique_prefix("stream");
    let options = format!(
        "mode = \"data_stream\"\nindex = \"{prefix}-audit\"\nalerts_index = \"{prefix}-alerts\"\nrollover_size = \"1gb\"\n"
    );
    let config = |workspace: &Workspace| {
        workspace.config(&format!(
            "data_dir = \"{{dir}}/data\"\n[sources.in]\ntype = \"stdin\"\n[sinks.search]\ntype = \"elasticsearch\"\ninputs = [\"in\"]\nendpoints = [\"{}\"]\n{options}",
            common::opensearch::endpoint()
        ))
    };
    let input = generate(&["--count", "3000", "--seed", "9"]);
    for _ in 0..2 {
        let output = workspace.run_once(&config(&workspace), &input);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stream = ok("GET", &format!("/_data_stream/{prefix}-audit"), None);
    assert_eq!(
        stream["data_streams"][0]["timestamp_field"]["name"],
        "@timestamp"
    );
    assert_eq!(count(&format!("{prefix}-audit")), 3000);
}

#[test]
fn events_land_in_the_index_of_their_own_day_and_old_indices_expire() {
    let workspace = Workspace::new();
    let prefix = unique_prefix("days");
    // An index of events older than the retention, as a sink wrote it long
    // ago (its mapping says so), and one of the same name pattern that some
    // other tool wrote: the retention deletes the first only.
    ok(
        "PUT",
        &format!("/{prefix}-audit-2020.01.01"),
        Some(
            r#"{"mappings":{"_meta":{"managed_by":"auditflow"},"properties":{"@timestamp":{"type":"date_nanos"}}}}"#,
        ),
    );
    for index in ["2020.01.01", "2019.01.01"] {
        ok(
            "PUT",
            &format!("/{prefix}-audit-{index}/_doc/old?refresh=true"),
            Some(r#"{"@timestamp":"2020-01-01T10:00:00Z","auditID":"old"}"#),
        );
    }
    let today = chrono::Utc::now().date_naive();
    let mut input = String::new();
    let mut expected = Vec::new();
    for days_ago in 1..=3 {
        let day = today - chrono::Duration::days(days_ago);
        for n in 0..(10 * days_ago) {
            let time = format!("{}T12:00:{:02}.000001Z", day.format("%Y-%m-%d"), n);
            input.push_str(&event(&format!("d{days_ago}-{n}"), &time, ""));
            input.push('\n');
        }
        expected.push((
            format!("{prefix}-audit-{}", day.format("%Y.%m.%d")),
            10 * days_ago as u64,
        ));
    }
    ship(
        &workspace,
        &prefix,
        "retention = \"30d\"\nindex_settings = { \"index.number_of_replicas\" = 0 }",
        input.as_bytes(),
    );
    expected.sort();
    let names = indices(&format!("{prefix}-audit-*"));
    let mut wanted: Vec<String> = expected.iter().map(|(name, _)| name.clone()).collect();
    wanted.insert(0, format!("{prefix}-audit-2019.01.01"));
    assert_eq!(
        names, wanted,
        "one index a day; the expired one deleted, the one the sink did not make kept"
    );
    for (index, events) in &expected {
        assert_eq!(count(index), *events, "{index}");
        let settings = ok("GET", &format!("/{index}/_settings"), None);
        assert_eq!(
            settings[index]["settings"]["index"]["number_of_replicas"], "0",
            "index_settings reach the indices"
        );
    }
    let template = ok("GET", &format!("/_index_template/{prefix}-audit"), None);
    let template = &template["index_templates"][0]["index_template"];
    assert_eq!(
        template["index_patterns"][0],
        format!("{prefix}-audit-*.*.*")
    );
    assert_eq!(
        template["template"]["mappings"]["properties"]["requestObject"]["type"],
        "flat_object"
    );
}

#[test]
fn conflicting_bodies_are_stored_and_mistyped_headers_go_to_errors() {
    let workspace = Workspace::new();
    let prefix = unique_prefix("conflicts");
    let time = "2026-11-24T10:00:00.000001Z";
    let long = "x".repeat(40_000);
    // Deeper than Elasticsearch's default `flattened` depth limit (20).
    let deep = format!("{}1{}", "{\"level\":".repeat(30), "}".repeat(30));
    let good = [
        event(
            "spec-string",
            time,
            r#","requestObject":{"spec":"a string"}"#,
        ),
        event(
            "spec-object",
            time,
            r#","requestObject":{"spec":{"replicas":3}}"#,
        ),
        event(
            "spec-array",
            time,
            r#","requestObject":{"spec":[1,"two",{"three":3}]}"#,
        ),
        event(
            "spec-number",
            time,
            &format!(r#","requestObject":{{"spec":42}},"responseObject":{{"spec":{deep}}}"#),
        ),
        event(
            "long-string",
            time,
            &format!(r#","requestObject":{{"data":{{"big.conf":"{long}"}}}}"#),
        ),
    ];
    let refused = [
        event("bad-ip", time, "").replace(r#"["10.0.0.7"]"#, r#"["not an address"]"#),
        event("bad-date", time, "").replace(
            &format!(r#""requestReceivedTimestamp":"{time}""#),
            r#""requestReceivedTimestamp":"yesterday""#,
        ),
    ];
    let traces = falco_traces();
    let trace_events = distinct_events(&traces);
    let mut input = String::new();
    for line in good.iter().chain(refused.iter()) {
        input.push_str(line);
        input.push('\n');
    }
    input.push_str(&traces);
    // The source's own `errors` records (a trace line that is not an audit
    // event) go to the same index: a query of the events passes them over.
    ship_from(
        &workspace,
        "\"in\", \"in.errors\"",
        &prefix,
        "",
        input.as_bytes(),
    );
    let errors = workspace.json_lines("errors.ndjson");
    assert_eq!(errors.len(), refused.len(), "{errors:?}");
    assert_eq!(
        count(&format!("{prefix}-audit-*")),
        (good.len() + trace_events + 1) as u64,
        "every good event is stored, and the source's errors record"
    );
    for (record, audit_id) in errors.iter().zip(["bad-ip", "bad-date"]) {
        let reason = record["error"].as_str().expect("a reason");
        assert!(
            reason.contains(&format!("auditID {audit_id}"))
                && reason.contains(&format!("{prefix}-audit-2026.11.24"))
                && reason.contains("mapper_parsing_exception"),
            "{reason}"
        );
    }
    // The long string is cut for indexing only: the query shows it whole.
    let (events, _) = query(
        &workspace,
        &[
            "--endpoint",
            &common::opensearch::endpoint(),
            "--index",
            &format!("{prefix}-audit-*"),
            "--name",
            "c",
            "--output",
            "json",
            "--limit",
            "1000",
        ],
    );
    let stored = events
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON"))
        .find(|event| event["auditID"] == "long-string")
        .expect("the long event");
    assert_eq!(
        stored["requestObject"]["data"]["big.conf"]
            .as_str()
            .map(str::len),
        Some(40_000)
    );
    assert!(stored.get("@timestamp").is_none() && stored.get("auditflow_original").is_none());
}

/// How many distinct events (auditID and stage) the audit events and event
/// lists of `text` hold: a copy of one is stored once.
fn distinct_events(text: &str) -> usize {
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let events = match value["kind"].as_str() {
            Some("EventList") => value["items"].as_array().cloned().unwrap_or_default(),
            Some("Event") => vec![value],
            _ => Vec::new(),
        };
        for event in events {
            seen.insert((event["auditID"].to_string(), event["stage"].to_string()));
        }
    }
    seen.len()
}

/// Runs `auditflow query ARGS` in the workspace; stdout and stderr.
fn query(workspace: &Workspace, args: &[&str]) -> (String, String) {
    let output = Command::new(binary())
        .arg("query")
        .args(args)
        .current_dir(workspace.path(""))
        .output()
        .expect("run auditflow query");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "query {args:?} failed: {stderr}");
    (stdout, stderr)
}

#[test]
fn a_write_blocked_index_holds_the_pipeline_up_until_it_takes_writes_again() {
    let workspace = Workspace::new();
    let prefix = unique_prefix("blocked");
    let index = format!("{prefix}-audit-2026.11.24");
    // The block a full disk sets: the node answers 429 to every write.
    ok(
        "PUT",
        &format!("/{index}"),
        Some(r#"{"settings":{"index.blocks.read_only_allow_delete":true}}"#),
    );
    let input: String = (0..500)
        .map(|n| event(&format!("blocked-{n}"), "2026-11-24T10:00:00.000001Z", "") + "\n")
        .collect();
    std::fs::write(workspace.path("audit.log"), &input).expect("write the log");
    let port = common::free_port();
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n[sources.log]\ntype = \"file\"\ninclude = [\"{{dir}}/audit.log\"]\n[sinks.search]\ntype = \"elasticsearch\"\ninputs = [\"log\"]\n{}request = {{ retry_initial_backoff = \"200ms\", retry_max_backoff = \"1s\", retry_attempts = 1000 }}\n",
        sink_options(&prefix)
    ));
    let mut child = start_logged(&workspace, &config);
    wait_for(
        Duration::from_secs(60),
        "retries of the blocked items",
        || {
            http_get(port, "/metrics").is_some_and(|(_, text)| {
                metric(
                    &text,
                    "auditflow_component_errors_total",
                    &[("component_id", "search"), ("error_type", "items_retried")],
                )
                .is_some_and(|retried| retried >= 500.0)
            })
        },
    );
    assert_eq!(
        delivered(port, "search"),
        0.0,
        "nothing is stored while blocked"
    );
    ok(
        "PUT",
        &format!("/{index}/_settings"),
        Some(r#"{"index.blocks.read_only_allow_delete":null}"#),
    );
    wait_for(Duration::from_secs(60), "the events stored", || {
        delivered(port, "search") >= 500.0
    });
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    assert_eq!(count(&index), 500);
}

#[test]
fn a_pipeline_killed_mid_stream_resumes_and_stores_nothing_twice() {
    let workspace = Workspace::new();
    let prefix = unique_prefix("killed");
    let port = common::free_port();
    std::fs::write(
        workspace.path("audit.log"),
        generate(&["--count", "30000", "--seed", "41"]),
    )
    .expect("write the log");
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n[sources.log]\ntype = \"file\"\ninclude = [\"{{dir}}/audit.log\"]\n[sinks.search]\ntype = \"elasticsearch\"\ninputs = [\"log\"]\n{}batch = {{ max_events = 200 }}\n",
        sink_options(&prefix)
    ));
    let mut child = start_logged(&workspace, &config);
    wait_for(Duration::from_secs(60), "part of the stream stored", || {
        delivered(port, "search") >= 3000.0
    });
    child.kill().expect("kill -9 the pipeline");
    child.wait().expect("reap it");
    let before = count(&format!("{prefix}-audit-*"));
    assert!(
        before < 30_000,
        "the kill came too late to test anything ({before} stored)"
    );
    let status = Command::new(binary())
        .args(["run", "--once", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .status()
        .expect("run the pipeline again");
    assert!(status.success());
    assert_eq!(count(&format!("{prefix}-audit-*")), 30_000);
}

#[test]
fn alerts_are_stored_in_their_index_and_query_answers_as_the_local_store_does() {
    let workspace = Workspace::new();
    let prefix = unique_prefix("readme");
    let config_path = common::run_default_pipeline_with(
        &workspace,
        &format!(
            "[sinks.search]\ntype = \"elasticsearch\"\ninputs = [\"detect\", \"notable\"]\n{}",
            sink_options(&prefix)
        ),
    );
    common::opensearch::refresh(&format!("{prefix}-*"));
    assert_eq!(
        count(&format!("{prefix}-alerts-*")),
        62,
        "the sample's notable alerts"
    );
    let mut questions = common::README_QUESTIONS.to_vec();
    questions.push(&["--code", "403", "--group-by", "user"]);
    common::assert_stores_answer_alike(&workspace, &config_path, "store", "search", &questions);
    let config_arg = config_path.display().to_string();
    let (who, _) = query(
        &workspace,
        &[
            "--config",
            &config_arg,
            "--store",
            "search",
            "--verb",
            "delete",
            "--resource",
            "configmaps",
            "--name",
            "app-config",
        ],
    );
    assert!(who.contains("alice@example.com"), "{who}");
    let stores: BTreeSet<&str> = ["store", "search"].into();
    let output = Command::new(binary())
        .args(["query", "--config", &config_arg, "--count"])
        .output()
        .expect("run auditflow query");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for store in stores {
        assert!(stderr.contains(store), "{stderr}");
    }
}
