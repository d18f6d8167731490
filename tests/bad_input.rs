//! Hostile and malformed input: every bad input is one `errors` record and one
//! count, and the good events around it are delivered.

mod common;

use common::*;

const GOOD: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"ID","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"u"},"sourceIPs":["10.0.0.1"]}"#;

fn good(n: usize) -> String {
    GOOD.replace("\"ID\"", &format!("\"good-{n}\""))
}

#[test]
fn every_bad_input_is_an_errors_record_and_the_rest_flows() {
    let workspace = Workspace::new();
    let (config, port) = workspace.stdin_pipeline_with_api(
        r#"
[sinks.out]
type = "file"
inputs = ["in"]
path = "{dir}/out.ndjson"
[sinks.dead_letter]
type = "file"
inputs = ["in.errors"]
path = "{dir}/errors.ndjson"
"#,
    );
    let deep = format!(
        r#"{{"auditID":"deep","stage":"ResponseComplete","verb":"get","requestObject":{}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let huge = format!(
        r#"{{"auditID":"huge","stage":"ResponseComplete","verb":"get","requestObject":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let mut input: Vec<u8> = Vec::new();
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not json".to_vec(), "invalid_json"),
        (b"[1,2,3]".to_vec(), "not_audit_event"),
        (b"42".to_vec(), "not_audit_event"),
        (
            br#"{"kind":"Pod","metadata":{"name":"x"}}"#.to_vec(),
            "not_audit_event",
        ),
        (
            br#"{"auditID":"x","stage":"ResponseComplete","verb":7}"#.to_vec(),
            "invalid_json",
        ),
        (
            b"{\"auditID\":\"\xff\xfe\",\"stage\":\"Panic\",\"verb\":\"get\"}".to_vec(),
            "invalid_utf8",
        ),
        (huge.into_bytes(), "too_large"),
        (deep.into_bytes(), "invalid_json"),
        (b"{\"auditID\":\"trunc".to_vec(), "invalid_json"),
    ];
    for (index, (line, _)) in bad.iter().enumerate() {
        input.extend_from_slice(good(index).as_bytes());
        input.push(b'\n');
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    input.extend_from_slice(good(99).as_bytes());
    input.push(b'\n');

    let mut child = workspace.start(&config);
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, &input).expect("feed input");
    wait_for(
        std::time::Duration::from_secs(30),
        "the good events",
        || workspace.json_lines("out.ndjson").len() == bad.len() + 1,
    );
    let errors = workspace.json_lines("errors.ndjson");
    assert_eq!(errors.len(), bad.len(), "{errors:#?}");
    for record in &errors {
        assert_eq!(record["component_id"], "in");
        assert!(record["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(record["input"]
            .as_str()
            .is_some_and(|i| i.len() <= 64 * 1024));
    }
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let mut expected_counts = std::collections::BTreeMap::new();
    for (_, kind) in &bad {
        *expected_counts.entry(*kind).or_insert(0.0) += 1.0;
    }
    for (kind, count) in expected_counts {
        let labels = [("component_id", "in"), ("error_type", kind)];
        assert_eq!(
            metric(&metrics, "auditflow_component_errors_total", &labels),
            Some(count),
            "errors of type {kind}\n{metrics}"
        );
    }
    drop(stdin);
    // With its only source at EOF, the pipeline drains and exits cleanly.
    let status = wait_exit(&mut child, std::time::Duration::from_secs(30));
    assert!(status.success());
}
