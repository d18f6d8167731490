//! Lossless round trips: what goes in through stdin comes out of the file sink JSON-equal.

mod common;

use common::*;

const STDIN_TO_FILE: &str = r#"
data_dir = "{dir}/data"
[sources.in]
type = "stdin"
[sinks.out]
type = "file"
inputs = ["in"]
path = "{dir}/out.ndjson"
[sinks.errors]
type = "file"
inputs = ["in.errors"]
path = "{dir}/errors.ndjson"
"#;

/// Every event of every document of `input`, as JSON values (EventList items flattened).
fn expected_events(input: &str) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    let stream = serde_json::Deserializer::from_str(input).into_iter::<serde_json::Value>();
    for document in stream {
        let document = document.expect("test input is JSON");
        match document.get("kind").and_then(|k| k.as_str()) {
            Some("EventList") => {
                events.extend(document["items"].as_array().cloned().unwrap_or_default())
            }
            Some("Event") => events.push(document),
            _ => {}
        }
    }
    events
}

#[test]
fn falco_traces_round_trip_json_equal() {
    let workspace = Workspace::new();
    let config = workspace.config(STDIN_TO_FILE);
    let traces = conformance_dir().join("traces");
    let mut files: Vec<_> = std::fs::read_dir(&traces)
        .expect("the conformance traces are beside the repository")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 40,
        "expected Falco's traces in {}",
        traces.display()
    );
    let mut input = String::new();
    for file in &files {
        input.push_str(&std::fs::read_to_string(file).expect("read trace"));
        input.push('\n');
    }
    let output = workspace.run_once(&config, input.as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = expected_events(&input);
    let written = workspace.json_lines("out.ndjson");
    assert_eq!(written.len(), expected.len());
    assert_eq!(written, expected);
    // fal_01_003.json is `{"kind": 0}`: not an audit event, so one errors record.
    let errors = workspace.json_lines("errors.ndjson");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["input"], "{\"kind\": 0}");
}

#[test]
fn generated_events_round_trip_byte_for_byte() {
    let workspace = Workspace::new();
    let config = workspace.config(STDIN_TO_FILE);
    let input = generate(&["--count", "20000", "--seed", "7"]);
    let output = workspace.run_once(&config, &input);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = std::fs::read(workspace.path("out.ndjson")).expect("output file");
    assert_eq!(written.len(), input.len());
    assert!(written == input, "the output differs from the input");
}

#[test]
fn event_lists_are_split_into_events() {
    let workspace = Workspace::new();
    let config = workspace.config(STDIN_TO_FILE);
    let input = generate(&["--count", "1000", "--seed", "3", "--format", "eventlist"]);
    let plain = generate(&["--count", "1000", "--seed", "3"]);
    let output = workspace.run_once(&config, &input);
    assert!(output.status.success());
    let written = std::fs::read(workspace.path("out.ndjson")).expect("output file");
    assert!(
        written == plain,
        "EventList items differ from the same events as NDJSON"
    );
}

#[test]
fn pretty_printed_documents_are_accepted() {
    let workspace = Workspace::new();
    let config = workspace.config(STDIN_TO_FILE);
    let trace = conformance_dir().join("traces/create_configmap.json");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trace).expect("trace")).expect("json");
    let pretty = format!(
        "{}\n{}\n",
        serde_json::to_string_pretty(&value).unwrap(),
        value
    );
    let output = workspace.run_once(&config, pretty.as_bytes());
    assert!(output.status.success());
    assert_eq!(
        workspace.json_lines("out.ndjson"),
        vec![value.clone(), value]
    );
}

#[test]
fn an_unfinished_line_left_in_the_output_is_cut_before_new_events_are_appended() {
    let workspace = Workspace::new();
    let config = workspace.config(STDIN_TO_FILE);
    let whole = r#"{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get"}"#;
    // What a kill in the middle of a write leaves: whole lines, then part of one.
    std::fs::write(
        workspace.path("out.ndjson"),
        format!("{whole}\n{{\"kind\":\"Event\",\"audit"),
    )
    .expect("write the earlier output");
    let next = r#"{"kind":"Event","auditID":"b","stage":"ResponseComplete","verb":"get"}"#;
    let output = workspace.run_once(&config, format!("{next}\n").as_bytes());
    assert!(output.status.success(), "{output:?}");
    let written = std::fs::read_to_string(workspace.path("out.ndjson")).expect("output");
    assert_eq!(written, format!("{whole}\n{next}\n"));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("cut an unfinished last line of 22 bytes"),
        "{log}"
    );
}
