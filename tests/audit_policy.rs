//! The `audit_policy` transform and `auditflow policy explain`, through the real binary.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn example_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy.yaml")
}

fn falco_policy() -> PathBuf {
    conformance_dir().join("k8saudit-audit-policy.yaml")
}

/// Runs `in (stdin) -> policy -> out (file)` on `input`; returns the events written.
fn run_policy(workspace: &Workspace, policy: &Path, input: &[u8]) -> Vec<Value> {
    let config = workspace.config(&format!(
        r#"
data_dir = "{{dir}}/data"
[sources.in]
type = "stdin"
[transforms.policy]
type = "audit_policy"
inputs = ["in"]
policy_file = "{}"
[sinks.out]
type = "file"
inputs = ["policy"]
path = "{{dir}}/out.ndjson"
"#,
        policy.display()
    ));
    let output = workspace.run_once(&config, input);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    workspace.json_lines("out.ndjson")
}

/// Runs `auditflow policy explain` with `args`, feeding `input`; returns (exit success, stdout, stderr).
fn explain(args: &[&str], input: &[u8]) -> (bool, String, String) {
    let mut all = vec!["policy", "explain"];
    all.extend_from_slice(args);
    let output = run_with_stdin(&all, input);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn level_rank(level: &str) -> u8 {
    match level {
        "None" => 0,
        "Metadata" => 1,
        "Request" => 2,
        "RequestResponse" => 3,
        other => panic!("unknown level {other}"),
    }
}

fn key(event: &Value) -> (String, String) {
    (
        event["auditID"].as_str().unwrap_or_default().to_string(),
        event["stage"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn the_example_policy_relevels_generated_traffic() {
    let workspace = Workspace::new();
    let input = generate(&["--count", "20000", "--seed", "1"]);
    let output = run_policy(&workspace, &example_policy(), &input);

    // What `policy explain` says must be kept: a level other than None, a stage not omitted.
    let (ok, explained, stderr) =
        explain(&["--policy", example_policy().to_str().unwrap()], &input);
    assert!(ok, "{stderr}");
    let decisions: Vec<Value> = explained
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(decisions.len(), 20000);
    let kept = decisions
        .iter()
        .filter(|d| d["level"] != "None" && d["omitted"] == false)
        .count();
    assert_eq!(kept, 9460, "seed 1 traffic under examples/policy.yaml");
    assert_eq!(output.len(), kept);

    let inputs: HashMap<(String, String), (Value, String)> = String::from_utf8(input)
        .unwrap()
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            (key(&event), (event, line.to_string()))
        })
        .collect();
    let text = std::fs::read_to_string(workspace.path("out.ndjson")).unwrap();
    assert!(!text.contains("\"managedFields\""), "omitManagedFields");
    let mut untouched = 0;
    for (event, line) in output.iter().zip(text.lines()) {
        let (original, original_line) = &inputs[&key(event)];
        let level = event["level"].as_str().unwrap();
        assert!(level_rank(level) <= level_rank(original["level"].as_str().unwrap()));
        assert_ne!(event["stage"], "RequestReceived");
        let resource = event["objectRef"]["resource"].as_str().unwrap_or("");
        let subresource = event["objectRef"]["subresource"].as_str().unwrap_or("");
        assert_ne!(resource, "events");
        assert!(!event["requestURI"]
            .as_str()
            .unwrap()
            .starts_with("/healthz"));
        if ["secrets", "configmaps"].contains(&resource) && subresource.is_empty() {
            assert_eq!(level, "Metadata", "{line}");
        }
        if level == "Metadata" {
            assert!(event.get("requestObject").is_none() && event.get("responseObject").is_none());
        }
        if level == "Request" {
            assert!(event.get("responseObject").is_none());
        }
        if line == original_line {
            untouched += 1;
        } else {
            // Only the level and the bodies may differ.
            let mut a = original.clone();
            let mut b = event.clone();
            for value in [&mut a, &mut b] {
                let object = value.as_object_mut().unwrap();
                for field in ["level", "requestObject", "responseObject"] {
                    object.remove(field);
                }
            }
            assert_eq!(a, b);
        }
    }
    assert!(
        untouched > 5000,
        "events already at their level pass byte for byte: {untouched}"
    );
}

#[test]
fn falcos_policy_on_falcos_traces() {
    let workspace = Workspace::new();
    let output = run_policy(&workspace, &falco_policy(), falco_traces().as_bytes());
    let mut levels: HashMap<String, usize> = HashMap::new();
    for event in &output {
        *levels
            .entry(event["level"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(output.len(), 51, "every trace event matches a rule");
    assert_eq!(levels.get("RequestResponse"), Some(&31), "{levels:?}");
    assert_eq!(levels.get("Request"), Some(&16), "{levels:?}");
    assert_eq!(levels.get("Metadata"), Some(&4), "{levels:?}");
}

#[test]
fn explain_gives_falcos_traces_the_level_the_apiserver_logged_them_at() {
    // The traces were recorded by an apiserver running Falco's policy: the
    // checker must decide, for every event, the level the apiserver chose.
    let (_, stdout, stderr) = explain(
        &["--policy", falco_policy().to_str().unwrap()],
        falco_traces().as_bytes(),
    );
    assert_eq!(
        stderr.matches("error:").count(),
        1,
        "one trace is not an event: {stderr}"
    );
    let logged: HashMap<(String, String), String> = falco_traces()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event.get("auditID").is_some())
        .map(|event| (key(&event), event["level"].as_str().unwrap().to_string()))
        .collect();
    let decided: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decided.len(), 51);
    for decision in &decided {
        assert_eq!(
            decision["level"],
            logged[&key(decision)].as_str(),
            "{decision}"
        );
        assert_eq!(decision["omitted"], false);
    }
}

#[test]
fn an_invalid_policy_is_a_validate_error_naming_file_rule_and_field() {
    let workspace = Workspace::new();
    let policy = workspace.path("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n- level: Everything\n- level: None\n  omitStages: [Done]\n  nonResourceURLs: [\"/a*b\"]\n  namespaces: [default]\n",
    )
    .unwrap();
    let config = workspace.config(
        r#"
[sources.in]
type = "stdin"
[transforms.policy]
type = "audit_policy"
inputs = ["in"]
policy_file = "{dir}/policy.yaml"
[sinks.out]
type = "console"
inputs = ["policy"]
"#,
    );
    let output = Command::new(binary())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let at = format!(
        "error: transforms.policy.policy_file: {}: ",
        policy.display()
    );
    for expected in [
        "rules[1].level: unknown level `Everything`",
        "rules[2].nonResourceURLs[0]: `/a*b`: non-resource URL wildcards '*' must be the final character",
        "rules[2].nonResourceURLs: rules cannot apply to both regular resources and non-resource URLs",
        "rules[2].omitStages[0]: unknown stage `Done`",
    ] {
        assert!(stderr.contains(&format!("{at}{expected}")), "{expected} in {stderr}");
    }
    assert!(stderr.contains("4 errors found"), "{stderr}");

    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  verb: [get]\n",
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{at}rules[0].verb: unknown field `verb`")),
        "{stderr}"
    );
}

/// A policy exercising every matching form, and events with the rule `policy explain` must name.
const TABLE_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None                                    # 0
  users: ["system:kube-proxy"]
  verbs: [watch]
- level: None                                    # 1
  nonResourceURLs: ["/healthz*", /version]
- level: RequestResponse                         # 2
  resources: [{group: "", resources: [pods/exec, "pods/attach"]}]
  omitStages: [ResponseStarted]
- level: Metadata                                # 3
  resources: [{group: "", resources: [secrets, configmaps]}]
- level: None                                    # 4
  userGroups: [system:nodes]
  resources: [{group: "", resources: ["*/status"]}]
- level: Request                                 # 5
  namespaces: [kube-system]
  resources: [{group: apps, resources: ["deployments/*"]}]
- level: None                                    # 6
  namespaces: [""]
  resources: [{group: "", resources: [nodes], resourceNames: [node-1]}]
- level: Metadata                                # 7
  nonResourceURLs: ["*"]
- level: Request                                 # 8
  verbs: [create, update, patch, delete]
"#;

fn table_event(
    id: &str,
    stage: &str,
    user: &str,
    groups: &str,
    verb: &str,
    target: &str,
) -> String {
    let object = if target.starts_with('{') {
        format!(r#","objectRef":{target}"#)
    } else {
        String::new()
    };
    let uri = if target.starts_with('/') {
        target
    } else {
        "/api/v1/x"
    };
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"{id}","stage":"{stage}","requestURI":"{uri}","verb":"{verb}","user":{{"username":"{user}","groups":{groups}}}{object}}}"#
    )
}

#[test]
fn explain_names_the_rule_for_a_table_of_events() {
    let workspace = Workspace::new();
    let policy = workspace.path("policy.yaml");
    std::fs::write(&policy, TABLE_POLICY).unwrap();
    let rc = "ResponseComplete";
    let cases: Vec<(String, &str, Option<u64>, bool)> = vec![
        (
            table_event(
                "proxy-watch",
                rc,
                "system:kube-proxy",
                "[]",
                "watch",
                r#"{"resource":"endpoints","namespace":"default"}"#,
            ),
            "None",
            Some(0),
            false,
        ),
        (
            table_event(
                "proxy-get",
                rc,
                "system:kube-proxy",
                "[]",
                "get",
                r#"{"resource":"endpoints","namespace":"default"}"#,
            ),
            "None",
            None,
            false,
        ),
        (
            table_event("health", rc, "u", "[]", "get", "/healthz/etcd?verbose"),
            "None",
            Some(1),
            false,
        ),
        (
            table_event("version", rc, "u", "[]", "get", "/version"),
            "None",
            Some(1),
            false,
        ),
        (
            table_event(
                "exec",
                rc,
                "u",
                "[]",
                "create",
                r#"{"resource":"pods","subresource":"exec","namespace":"d","name":"p"}"#,
            ),
            "RequestResponse",
            Some(2),
            false,
        ),
        (
            table_event(
                "exec-started",
                "ResponseStarted",
                "u",
                "[]",
                "create",
                r#"{"resource":"pods","subresource":"exec","namespace":"d","name":"p"}"#,
            ),
            "RequestResponse",
            Some(2),
            true,
        ),
        (
            table_event(
                "exec-received",
                "RequestReceived",
                "u",
                "[]",
                "create",
                r#"{"resource":"pods","subresource":"exec","namespace":"d","name":"p"}"#,
            ),
            "RequestResponse",
            Some(2),
            true,
        ),
        (
            table_event(
                "log",
                rc,
                "u",
                "[]",
                "get",
                r#"{"resource":"pods","subresource":"log","namespace":"d","name":"p"}"#,
            ),
            "None",
            None,
            false,
        ),
        (
            table_event(
                "secret",
                rc,
                "u",
                "[]",
                "get",
                r#"{"resource":"secrets","namespace":"d","name":"s"}"#,
            ),
            "Metadata",
            Some(3),
            false,
        ),
        (
            table_event(
                "node-status",
                rc,
                "system:node:n",
                r#"["system:nodes","system:authenticated"]"#,
                "patch",
                r#"{"resource":"nodes","subresource":"status","name":"n"}"#,
            ),
            "None",
            Some(4),
            false,
        ),
        (
            table_event(
                "user-status",
                rc,
                "u",
                r#"["system:authenticated"]"#,
                "patch",
                r#"{"resource":"nodes","subresource":"status","name":"n"}"#,
            ),
            "Request",
            Some(8),
            false,
        ),
        (
            table_event(
                "scale",
                rc,
                "u",
                "[]",
                "update",
                r#"{"resource":"deployments","subresource":"scale","namespace":"kube-system","apiGroup":"apps"}"#,
            ),
            "Request",
            Some(5),
            false,
        ),
        (
            table_event(
                "deploy",
                rc,
                "u",
                "[]",
                "get",
                r#"{"resource":"deployments","namespace":"kube-system","apiGroup":"apps"}"#,
            ),
            "Request",
            Some(5),
            false,
        ),
        (
            table_event(
                "deploy-other-ns",
                rc,
                "u",
                "[]",
                "get",
                r#"{"resource":"deployments","namespace":"default","apiGroup":"apps"}"#,
            ),
            "None",
            None,
            false,
        ),
        (
            table_event(
                "node-1",
                rc,
                "u",
                "[]",
                "get",
                r#"{"resource":"nodes","name":"node-1"}"#,
            ),
            "None",
            Some(6),
            false,
        ),
        (
            table_event(
                "node-2",
                rc,
                "u",
                "[]",
                "get",
                r#"{"resource":"nodes","name":"node-2"}"#,
            ),
            "None",
            None,
            false,
        ),
        (
            table_event("metrics", rc, "u", "[]", "get", "/metrics"),
            "Metadata",
            Some(7),
            false,
        ),
    ];
    let mut input = String::new();
    for (event, ..) in &cases {
        input.push_str(event);
        input.push('\n');
    }
    let (ok, stdout, stderr) = explain(&["--policy", policy.to_str().unwrap()], input.as_bytes());
    assert!(ok, "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len());
    for ((event, level, rule, omitted), line) in cases.iter().zip(&lines) {
        let event: Value = serde_json::from_str(event).unwrap();
        let expected = serde_json::json!({
            "auditID": event["auditID"], "stage": event["stage"],
            "level": level, "rule": rule, "omitted": omitted,
        });
        assert_eq!(line, &expected);
    }
}

#[test]
fn explain_why_lists_the_failed_conditions_and_reports_bad_lines() {
    let workspace = Workspace::new();
    let policy = workspace.path("policy.yaml");
    std::fs::write(&policy, TABLE_POLICY).unwrap();
    let event = table_event(
        "scale",
        "ResponseComplete",
        "u",
        r#"["dev"]"#,
        "update",
        r#"{"resource":"deployments","subresource":"scale","namespace":"kube-system","apiGroup":"apps"}"#,
    );
    // A pretty-printed document, a bad line, then the event again as NDJSON.
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&event).unwrap()).unwrap();
    let input = format!("{pretty}\nnot json\n{event}\n");
    let (ok, stdout, stderr) = explain(
        &["--policy", policy.to_str().unwrap(), "--why"],
        input.as_bytes(),
    );
    assert!(!ok, "a bad line makes the exit code non-zero");
    let bad_line = pretty.lines().count() + 1;
    assert!(
        stderr.contains(&format!("error: <stdin>:{bad_line}: invalid JSON")),
        "{stderr}"
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "the events around the bad line are explained"
    );
    assert_eq!(lines[0], lines[1]);
    let why = &lines[0]["why"];
    let failed = |rule: usize| -> Vec<String> {
        why[rule]["failed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(lines[0]["rule"], 5);
    assert_eq!(why.as_array().unwrap().len(), 5, "rules 0 to 4");
    assert_eq!(failed(0), vec!["users", "verbs"]);
    assert_eq!(failed(1), vec!["nonResourceURLs"]);
    assert_eq!(failed(2), vec!["resources"]);
    assert_eq!(failed(3), vec!["resources"]);
    assert_eq!(failed(4), vec!["userGroups", "resources"]);
    assert_eq!(why[0]["failed"][1]["request"], "update");
    assert_eq!(
        why[2]["failed"][0]["request"],
        "group \"apps\", resource deployments/scale, name \"\""
    );
}

#[test]
fn explain_reads_a_file_and_refuses_a_bad_policy() {
    let workspace = Workspace::new();
    let input = workspace.path("audit.log");
    std::fs::write(&input, falco_traces()).unwrap();
    let (ok, stdout, stderr) = explain(
        &[
            "--policy",
            falco_policy().to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        b"",
    );
    assert!(!ok, "one of the traces is not an audit event");
    assert!(
        stderr.contains(&format!("error: {}:", input.display())) && stderr.contains("kind is 0"),
        "{stderr}"
    );
    assert_eq!(stdout.lines().count(), 51);

    let policy = workspace.path("bad.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n",
    )
    .unwrap();
    let (ok, _, stderr) = explain(&["--policy", policy.to_str().unwrap()], b"");
    assert!(!ok);
    assert!(
        stderr.contains("rules: a policy needs at least one rule"),
        "{stderr}"
    );
}

#[test]
fn drops_are_counted_by_reason_in_metrics() {
    let workspace = Workspace::new();
    let policy = workspace.path("policy.yaml");
    std::fs::write(&policy, TABLE_POLICY).unwrap();
    let (config, port) = workspace.stdin_pipeline_with_api(
        r#"
[transforms.policy]
type = "audit_policy"
inputs = ["in"]
policy_file = "{dir}/policy.yaml"
[sinks.out]
type = "file"
inputs = ["policy"]
path = "{dir}/out.ndjson"
"#,
    );
    let exec = r#"{"resource":"pods","subresource":"exec","namespace":"d","name":"p"}"#;
    let events = [
        table_event("a", "ResponseComplete", "u", "[]", "get", "/healthz"),
        table_event("b", "ResponseComplete", "u", "[]", "get", "/version"),
        table_event("c", "RequestReceived", "u", "[]", "create", exec),
        table_event("d", "ResponseStarted", "u", "[]", "create", exec),
        table_event("e", "RequestReceived", "u", "[]", "get", "/metrics"),
        table_event("f", "ResponseComplete", "u", "[]", "create", exec),
        table_event("g", "ResponseComplete", "u", "[]", "get", "/metrics"),
    ];
    let mut child = workspace.start(&config);
    let mut stdin = child.stdin.take().unwrap();
    for event in &events {
        writeln!(stdin, "{event}").unwrap();
    }
    stdin.flush().unwrap();
    let mut metrics = String::new();
    wait_for(Duration::from_secs(20), "the events to be handled", || {
        metrics = http_get(port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        metric(
            &metrics,
            "auditflow_component_received_events_total",
            &[("component_id", "policy")],
        ) == Some(7.0)
    });
    let dropped = |reason: &str| {
        metric(
            &metrics,
            "auditflow_audit_policy_dropped_events_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(dropped("level_none"), Some(2.0), "{metrics}");
    assert_eq!(dropped("omitted_stage"), Some(3.0), "{metrics}");
    let kept = |level: &str| {
        metric(
            &metrics,
            "auditflow_audit_policy_events_total",
            &[("level", level)],
        )
    };
    assert_eq!(kept("RequestResponse"), Some(1.0));
    assert_eq!(kept("Metadata"), Some(1.0));
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
    drop(stdin);
    let out = workspace.json_lines("out.ndjson");
    let ids: Vec<&str> = out.iter().map(|e| e["auditID"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["f", "g"]);
    assert_eq!(out[1]["level"], "Metadata");
}
