//! The `redact` transform through the real binary: no Secret value survives.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Events about Secrets in every form the apiserver writes their bodies.
fn secret_events() -> String {
    let head = |id: &str, verb: &str| {
        json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": id, "stage": "ResponseComplete", "verb": verb,
            "requestURI": "/api/v1/namespaces/prod/secrets/db",
            "user": {"username": "alice", "groups": ["system:authenticated"]},
            "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"}})
    };
    let with = |mut event: Value, field: &str, body: Value| {
        event[field] = body;
        event
    };
    let events = [
        with(
            head("merge-patch", "patch"),
            "requestObject",
            json!({"data": {"password": "bWVyZ2VkLXBhc3N3b3Jk"}, "metadata": {"annotations": {LAST_APPLIED: "{\"data\":{\"password\":\"bGFzdC1hcHBsaWVk\"}}"}}}),
        ),
        with(
            head("json-patch", "patch"),
            "requestObject",
            json!([{"op": "replace", "path": "/data/password", "value": "anNvbi1wYXRjaGVk"},
                   {"op": "add", "path": "/stringData", "value": {"token": "plain-json-patch-token"}}]),
        ),
        with(
            head("apply-yaml", "patch"),
            "requestObject",
            json!("apiVersion: v1\nkind: Secret\nstringData:\n  token: yaml-applied-token\n"),
        ),
        with(
            head("list", "list"),
            "responseObject",
            json!({"kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": [
                {"metadata": {"name": "a"}, "data": {"k": "bGlzdGVkLWE="}},
                {"metadata": {"name": "b"}, "data": {"k": "bGlzdGVkLWI="}, "stringData": null}]}),
        ),
        with(
            head("table", "list"),
            "responseObject",
            json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "rows": [{"cells": ["db", "Opaque", 1],
                "object": {"kind": "PartialObjectMetadata", "metadata": {"name": "db", "annotations": {LAST_APPLIED: "{\"stringData\":{\"t\":\"table-last-applied\"}}"}}}}]}),
        ),
        with(
            head("delete", "delete"),
            "requestObject",
            json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"}),
        ),
    ];
    let mut text = String::new();
    for event in events {
        text.push_str(&event.to_string());
        text.push('\n');
    }
    text
}

/// How a value appears inside JSON text (a string without its quotes).
fn fragment(value: &Value) -> String {
    match value {
        Value::String(text) => {
            let quoted = serde_json::to_string(text).unwrap();
            quoted[1..quoted.len() - 1].to_string()
        }
        other => other.to_string(),
    }
}

/// Every Secret value in the input, as it appears in the JSON text.
fn secret_values(input: &str) -> HashSet<String> {
    let mut values = HashSet::new();
    for line in input.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let about_secrets = event["objectRef"]["resource"] == "secrets";
        for body in ["requestObject", "responseObject"] {
            collect(&event[body], about_secrets, &mut values);
        }
    }
    values
}

fn collect(value: &Value, about_secrets: bool, values: &mut HashSet<String>) {
    match value {
        Value::Object(object) => {
            let secret_like =
                about_secrets || object.get("kind").and_then(Value::as_str) == Some("Secret");
            if secret_like {
                for field in ["data", "stringData"] {
                    if let Some(Value::Object(data)) = object.get(field) {
                        values.extend(data.values().map(fragment));
                    }
                }
                let annotation = &value["metadata"]["annotations"][LAST_APPLIED];
                if !annotation.is_null() {
                    values.insert(fragment(annotation));
                }
                if let Some(path) = object.get("path").and_then(Value::as_str) {
                    if path.starts_with("/data") || path.starts_with("/stringData") {
                        values.insert(fragment(&value["value"]));
                    }
                }
            }
            for child in object.values() {
                collect(child, about_secrets, values);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect(item, about_secrets, values)),
        Value::String(text) if about_secrets && text.contains("kind: Secret") => {
            values.insert(fragment(value));
        }
        _ => {}
    }
}

fn redact_pipeline(workspace: &Workspace, options: &str) -> std::path::PathBuf {
    workspace.config(&format!(
        r#"
data_dir = "{{dir}}/data"
[sources.in]
type = "stdin"
[transforms.redact]
type = "redact"
inputs = ["in"]
{options}
[sinks.out]
type = "file"
inputs = ["redact"]
path = "{{dir}}/out.ndjson"
"#
    ))
}

#[test]
fn no_secret_value_survives_with_no_options() {
    let workspace = Workspace::new();
    let generated = String::from_utf8(generate(&["--count", "20000", "--seed", "1"])).unwrap();
    let input = format!("{}{generated}{}", falco_traces(), secret_events());
    let secrets = secret_values(&input);
    assert!(
        secrets.len() >= 40,
        "the input holds Secret values: {}",
        secrets.len()
    );
    for value in &secrets {
        assert!(input.contains(value.as_str()), "{value}");
    }

    let config = redact_pipeline(&workspace, "");
    let output = workspace.run_once(&config, input.as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(workspace.path("out.ndjson")).unwrap();
    assert_eq!(text.lines().count(), 20000 + 51 + 6, "every event passes");
    for value in &secrets {
        assert!(!text.contains(value.as_str()), "{value} survived");
    }
    assert_eq!(
        text.matches(LAST_APPLIED).count(),
        falco_traces().matches(LAST_APPLIED).count(),
        "only the annotations of Secrets are removed (Falco's traces hold a ClusterRole's)"
    );

    // Events with no Secret body pass byte for byte; the others kept their keys.
    let input_lines: HashSet<&str> = input.lines().collect();
    let changed: Vec<Value> = text
        .lines()
        .filter(|line| !input_lines.contains(line))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(changed
        .iter()
        .all(|event| event["objectRef"]["resource"] == "secrets"));
    let generated_with_bodies = generated
        .lines()
        .filter(|line| line.contains("\"resource\":\"secrets\"") && line.contains("Object\":{"))
        .count();
    assert_eq!(
        changed.len(),
        generated_with_bodies + 5,
        "all but DeleteOptions changed"
    );
    let list = changed.iter().find(|e| e["auditID"] == "list").unwrap();
    assert_eq!(
        list["responseObject"]["items"][1]["data"],
        json!({"k": "[REDACTED]"})
    );
    let json_patch = changed
        .iter()
        .find(|e| e["auditID"] == "json-patch")
        .unwrap();
    assert_eq!(json_patch["requestObject"][0]["path"], "/data/password");
    assert_eq!(json_patch["requestObject"][0]["value"], "[REDACTED]");
}

#[test]
fn the_redactions_are_counted_in_metrics() {
    let workspace = Workspace::new();
    let (config, port) = workspace.stdin_pipeline_with_api(
        r#"
[transforms.redact]
type = "redact"
inputs = ["in"]
builtin_patterns = ["jwt"]
[sinks.out]
type = "file"
inputs = ["redact"]
path = "{dir}/out.ndjson"
"#,
    );
    let mut child = workspace.start(&config);
    let input = secret_events();
    // stdin stays open until the metrics are read: at its end the pipeline stops.
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::io::Write;
        stdin.write_all(input.as_bytes()).unwrap();
        stdin
            .write_all(format!("{}\n", pod_with_secrets()).as_bytes())
            .unwrap();
        stdin.flush().unwrap();
    }
    let mut metrics = String::new();
    wait_for(Duration::from_secs(20), "the events to be written", || {
        metrics = http_get(port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        metric(&metrics, "auditflow_redact_events_total", &[]) == Some(6.0)
    });
    let rule = |name: &str| {
        metric(
            &metrics,
            "auditflow_redact_redactions_total",
            &[("rule", name)],
        )
    };
    // merge patch 2, JSON patch 2, apply body 1, list 2, table 1, the pod's Secret 1.
    assert_eq!(rule("secret"), Some(9.0), "{metrics}");
    assert_eq!(rule("jwt"), Some(1.0), "{metrics}");
    assert_eq!(rule("field"), Some(0.0), "{metrics}");
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
    drop(stdin);
}

/// A pod whose spec holds an env value, a JWT and a Secret nested in an annotation-free list.
fn pod_with_secrets() -> Value {
    json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": "pod",
        "stage": "ResponseComplete", "verb": "create", "requestURI": "/api/v1/namespaces/d/pods",
        "user": {"username": "bob"}, "objectRef": {"resource": "pods", "namespace": "d", "apiVersion": "v1"},
        "requestObject": {"kind": "Pod", "spec": {"containers": [{"name": "app",
            "env": [{"name": "DB_PASSWORD", "value": "env-password-1"}, {"name": "TOKEN", "value": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl"}],
            "args": ["--aws=AKIAIOSFODNN7EXAMPLE"]}]},
            "metadata": {"annotations": {"backup": "{\"kind\":\"Secret\",\"data\":{}}"}},
            "extra": [{"kind": "Secret", "data": {"nested": "bmVzdGVk"}}]}})
}

#[test]
fn fields_patterns_and_hash_mode_with_a_key_from_the_environment() {
    let workspace = Workspace::new();
    let config = redact_pipeline(
        &workspace,
        r#"fields = ["requestObject.spec.containers[*].env[*].value"]
builtin_patterns = ["aws_access_key"]
patterns = [{ name = "bob", regex = "bob" }]
mode = "hash"
key = "${REDACT_KEY}"
hash_encoding = "base64""#,
    );
    let input = format!("{}\n", pod_with_secrets());
    let run = |key: &str| {
        let mut command = Command::new(binary());
        command
            .args(["run", "--once", "--config"])
            .arg(&config)
            .env("REDACT_KEY", key);
        run_with_input(command, input.as_bytes())
    };
    assert!(run("first-key").status.success());
    let first = workspace.json_lines("out.ndjson");
    std::fs::remove_file(workspace.path("out.ndjson")).unwrap();
    assert!(run("second-key").status.success());
    let second = workspace.json_lines("out.ndjson");
    let env = |events: &[Value], index: usize| {
        events[0]["requestObject"]["spec"]["containers"][0]["env"][index]["value"].clone()
    };
    let hashed = env(&first, 0);
    assert!(
        hashed.as_str().unwrap().starts_with("hmac-sha256:"),
        "{hashed}"
    );
    assert_eq!(
        hashed.as_str().unwrap().len(),
        "hmac-sha256:".len() + 44,
        "base64"
    );
    assert_ne!(env(&first, 0), env(&second, 0), "the key matters");
    let text = serde_json::to_string(&first).unwrap();
    for secret in [
        "env-password-1",
        "AKIAIOSFODNN7EXAMPLE",
        "bmVzdGVk",
        "eyJzdWIiOiJib2IifQ",
    ] {
        assert!(!text.contains(secret), "{secret} survived: {text}");
    }
    assert_eq!(
        first[0]["user"]["username"], "bob",
        "patterns only look inside the bodies"
    );
    assert!(
        first[0]["requestObject"]["spec"]["containers"][0]["args"][0]
            .as_str()
            .unwrap()
            .starts_with("--aws=hmac-sha256:")
    );
    assert_eq!(
        first[0]["requestObject"]["extra"][0]["data"]["nested"]
            .as_str()
            .unwrap()
            .len(),
        56
    );
}

fn run_with_input(mut command: Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn bad_options_are_validate_errors() {
    let workspace = Workspace::new();
    let config = redact_pipeline(
        &workspace,
        "mode = \"hash\"\nfields = [\"spec.x\"]\nbuiltin_patterns = [\"passwords\"]",
    );
    let output = Command::new(binary())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "error: transforms.redact.key: mode = \"hash\" needs a key",
        "error: transforms.redact.fields[0]: `spec`: a path starts with requestObject or responseObject",
        "error: transforms.redact.builtin_patterns[0]: unknown built-in pattern `passwords`: expected one of bearer_token, jwt, aws_access_key, private_key, basic_auth_url",
    ] {
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }
    assert!(stderr.contains("3 errors found"), "{stderr}");
}

#[test]
fn policy_then_redact_with_the_example_policy() {
    let workspace = Workspace::new();
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy.yaml");
    let config = workspace.config(&format!(
        r#"
data_dir = "{{dir}}/data"
[sources.in]
type = "stdin"
[transforms.policy]
type = "audit_policy"
inputs = ["in"]
policy_file = "{}"
[transforms.redact]
type = "redact"
inputs = ["policy"]
[sinks.out]
type = "file"
inputs = ["redact"]
path = "{{dir}}/out.ndjson"
"#,
        policy.display()
    ));
    let input = format!("{}{}\n", secret_events(), pod_with_secrets());
    let output = workspace.run_once(&config, input.as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = workspace.json_lines("out.ndjson");
    assert_eq!(events.len(), 7);
    for event in &events {
        if event["objectRef"]["resource"] == "secrets" {
            assert_eq!(event["level"], "Metadata");
            assert!(event.get("requestObject").is_none() && event.get("responseObject").is_none());
        }
    }
    let pod = events.iter().find(|e| e["auditID"] == "pod").unwrap();
    assert_eq!(pod["level"], "Request");
    assert_eq!(
        pod["requestObject"]["extra"][0]["data"]["nested"],
        "[REDACTED]"
    );
}
