//! The `detect` transform in a running pipeline, its state across restarts,
//! rule file errors, and the `auditflow detect` and `auditflow test` commands.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The rules of these tests: Falco's current Kubernetes audit rules, then auditflow's pack.
fn rule_files() -> String {
    format!(
        "[\"{}\", \"{}\"]",
        conformance_dir().join("k8s_audit_rules.yaml").display(),
        repository_dir()
            .join("examples/rules/auditflow_rules.yaml")
            .display()
    )
}

fn counts_by_rule(alerts: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for alert in alerts {
        *counts
            .entry(alert["rule"].as_str().expect("rule").to_string())
            .or_default() += 1;
    }
    counts
}

/// A failed (401) request from `ip` at second `second` after 2026-11-25T10:00:00Z.
fn unauthorized(ip: &str, second: u32, id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{{"username":"system:anonymous"}},"sourceIPs":["{ip}"],"responseStatus":{{"code":401}},"stageTimestamp":"2026-11-25T10:00:{second:02}.000000Z"}}"#
    )
}

/// A successful read of secret `name` by a service account on day `day` of November 2026.
fn secret_read(name: &str, day: u32, id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/apps/secrets/{name}","verb":"get","user":{{"username":"system:serviceaccount:apps:backend"}},"sourceIPs":["10.0.0.9"],"objectRef":{{"resource":"secrets","namespace":"apps","name":"{name}"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-11-{day:02}T10:00:00.000000Z"}}"#
    )
}

fn lines(events: &[String]) -> Vec<u8> {
    let mut input = events.join("\n").into_bytes();
    input.push(b'\n');
    input
}

#[test]
fn detect_passes_every_event_on_and_sends_alerts_to_its_alerts_output() {
    let workspace = Workspace::new();
    let (config, port) = workspace.stdin_pipeline_with_api(&format!(
        r#"
[transforms.detect]
type = "detect"
inputs = ["in"]
rules = {rules}
hostname = "test-host"
[sinks.events]
type = "file"
inputs = ["detect"]
path = "{{dir}}/events.ndjson"
[sinks.alerts]
type = "file"
inputs = ["detect.alerts"]
path = "{{dir}}/alerts.ndjson"
"#,
        rules = rule_files()
    ));
    let mut child = workspace.start(&config);
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, falco_traces().as_bytes()).expect("feed");
    wait_for(Duration::from_secs(30), "84 alerts", || {
        workspace.json_lines("alerts.ndjson").len() == 84
    });
    assert_eq!(workspace.json_lines("events.ndjson").len(), 51);
    let alerts = workspace.json_lines("alerts.ndjson");
    let counts = counts_by_rule(&alerts);
    assert_eq!(counts["Attach/Exec Pod"], 2);
    assert_eq!(counts["Create Privileged Pod"], 3);
    assert_eq!(counts["Privileged Pod Created"], 3);
    assert_eq!(
        counts["Create/Modify Configmap With Private Credentials"],
        6
    );
    assert_eq!(
        counts["Binding To cluster-admin Or cluster-admin Changed"],
        1
    );
    for alert in &alerts {
        assert_eq!(alert["source"], "k8s_audit");
        assert_eq!(alert["hostname"], "test-host");
        assert!(alert["output_fields"].is_object());
        let time = alert["time"].as_str().expect("time");
        assert!(time.ends_with('Z') && time.len() == 30, "{time}");
    }
    let exec = alerts
        .iter()
        .find(|a| {
            a["rule"] == "Attach/Exec Pod" && a["output_fields"]["ka.target.subresource"] == "exec"
        })
        .expect("an exec alert");
    assert_eq!(exec["priority"], "Notice");
    assert_eq!(exec["output_fields"]["ka.target.subresource"], "exec");
    assert!(exec["output"]
        .as_str()
        .unwrap()
        .ends_with("Notice Attach/Exec to pod (user=minikube-user pod=nginx-deployment-7998647bdf-phvq7 resource=pods ns=default action=exec command=bash)"));

    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let hits = |rule| {
        metric(
            &metrics,
            "auditflow_detect_rule_matches_total",
            &[("component_id", "detect"), ("rule", rule)],
        )
    };
    assert_eq!(hits("Attach/Exec Pod"), Some(2.0), "{metrics}");
    assert_eq!(hits("K8s ConfigMap Created"), Some(8.0));
    assert_eq!(hits("Create HostPid Pod"), Some(0.0));
    drop(stdin);
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}

/// Runs the pack over `events` in a pipeline whose state lives in the workspace's `data`.
fn run_pack(workspace: &Workspace, events: &[String], alerts_file: &str) -> Vec<serde_json::Value> {
    let config = workspace.config(&format!(
        r#"
data_dir = "{{dir}}/data"
[sources.in]
type = "stdin"
[transforms.detect]
type = "detect"
inputs = ["in"]
rules = ["{pack}"]
[sinks.alerts]
type = "file"
inputs = ["detect.alerts"]
path = "{{dir}}/{alerts_file}"
"#,
        pack = repository_dir()
            .join("examples/rules/auditflow_rules.yaml")
            .display()
    ));
    let output = workspace.run_once(&config, &lines(events));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    workspace.json_lines(alerts_file)
}

#[test]
fn stateful_detections_survive_a_restart() {
    let workspace = Workspace::new();
    let first: Vec<String> = (0..3)
        .map(|i| unauthorized("203.0.113.9", i, &format!("a{i}")))
        .chain([secret_read("db-password", 1, "s1")])
        .collect();
    assert!(run_pack(&workspace, &first, "alerts-1.ndjson").is_empty());
    assert!(workspace.path("data/detect-detect.state.json").exists());

    let second: Vec<String> = (3..5)
        .map(|i| unauthorized("203.0.113.9", i, &format!("a{i}")))
        .chain([
            secret_read("db-password", 3, "s2"),
            secret_read("tls-key", 3, "s3"),
        ])
        .collect();
    let alerts = run_pack(&workspace, &second, "alerts-2.ndjson");
    let counts = counts_by_rule(&alerts);
    assert_eq!(
        counts.get("Authentication Failure Burst"),
        Some(&1),
        "{alerts:#?}"
    );
    assert_eq!(
        counts.get("Secret Read By Unusual Service Account"),
        Some(&1)
    );
    let secret = alerts
        .iter()
        .find(|a| a["rule"] == "Secret Read By Unusual Service Account")
        .unwrap();
    assert!(secret["output"]
        .as_str()
        .unwrap()
        .contains("secret=tls-key"));
    let burst = alerts
        .iter()
        .find(|a| a["rule"] == "Authentication Failure Burst")
        .unwrap();
    assert_eq!(burst["output_fields"]["auditflow.count"], 5);

    // Without the saved state the same second run raises nothing: the first
    // failures and the learning period start are what made the difference.
    let fresh = Workspace::new();
    assert!(run_pack(&fresh, &second, "alerts.ndjson").is_empty());
}

#[test]
fn state_stays_within_max_state_keys_and_evictions_are_counted() {
    let workspace = Workspace::new();
    let (config, port) = workspace.stdin_pipeline_with_api(&format!(
        r#"
[transforms.detect]
type = "detect"
inputs = ["in"]
rules = ["{pack}"]
max_state_keys = 10
[sinks.alerts]
type = "file"
inputs = ["detect.alerts"]
path = "{{dir}}/alerts.ndjson"
"#,
        pack = repository_dir()
            .join("examples/rules/auditflow_rules.yaml")
            .display()
    ));
    let events: Vec<String> = (0..50)
        .map(|i| unauthorized(&format!("198.51.100.{i}"), i % 60, &format!("e{i}")))
        .collect();
    let mut child = workspace.start(&config);
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, &lines(&events)).expect("feed");
    let labels = [("component_id", "detect")];
    wait_for(Duration::from_secs(30), "50 events through detect", || {
        http_get(port, "/metrics").is_some_and(|(_, m)| {
            metric(&m, "auditflow_component_received_events_total", &labels) == Some(50.0)
        })
    });
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let keys = metric(&metrics, "auditflow_detect_state_keys", &labels).expect("keys gauge");
    let evicted = metric(&metrics, "auditflow_detect_state_evictions_total", &labels)
        .expect("evictions counter");
    assert!(keys <= 10.0, "{keys} keys held");
    assert_eq!(keys + evicted, 50.0, "{metrics}");
    drop(stdin);
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}

/// `auditflow validate` on a pipeline loading `rules` (a rule file's text); returns stderr.
fn validate_rules(rules: &str) -> String {
    let workspace = Workspace::new();
    std::fs::write(workspace.path("rules.yaml"), rules).unwrap();
    let config = workspace.config(
        r#"
[sources.in]
type = "stdin"
[transforms.detect]
type = "detect"
inputs = ["in"]
rules = ["{dir}/rules.yaml"]
[sinks.out]
type = "console"
inputs = ["detect.alerts"]
"#,
    );
    let output = Command::new(binary())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("run validate");
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn rule_file_errors_name_the_file_the_position_and_the_rule() {
    let rule = |condition: &str| {
        format!(
            "- macro: kcreate\n  condition: ka.verb = create\n\n- rule: Broken\n  desc: d\n  condition: {condition}\n  output: o\n  priority: WARNING\n  source: k8s_audit\n"
        )
    };
    let unknown_field = validate_rules(&rule("kcreate and ka.nothing = 1"));
    assert!(
        unknown_field
            .contains("rules.yaml:4:1: rule \"Broken\": condition: unknown field `ka.nothing`"),
        "{unknown_field}"
    );

    let unknown_macro = validate_rules(&rule("kcreate and not nowhere"));
    assert!(unknown_macro.contains("rules.yaml:4:1: rule \"Broken\": condition: unknown macro or field `nowhere` at position 17"), "{unknown_macro}");

    let syntax = validate_rules(&rule("kcreate and (ka.verb = get"));
    assert!(
        syntax.contains("rules.yaml:4:1: rule \"Broken\": condition: at position 13: unclosed `(`"),
        "{syntax}"
    );

    let yaml = validate_rules("- rule: X\n  condition: [unclosed\n");
    assert!(yaml.contains("rules.yaml:3:1: not valid YAML"), "{yaml}");

    let priority = validate_rules(&rule("kcreate").replace("WARNING", "LOUD"));
    assert!(
        priority.contains("rule \"Broken\": unknown priority `LOUD`"),
        "{priority}"
    );

    let append = validate_rules(
        "- rule: Ghost\n  condition: and ka.verb = get\n  append: true\n  source: k8s_audit\n",
    );
    assert!(append.contains("rules.yaml:1:1: rule \"Ghost\": `append`/`override` needs a rule of that name loaded before"), "{append}");

    let output = validate_rules(&rule("kcreate").replace("output: o", "output: x=%ka.bogus"));
    assert!(
        output.contains("rule \"Broken\": output: unknown field `%ka.bogus`"),
        "{output}"
    );

    let stateful = validate_rules(&format!(
        "{}  auditflow:\n    threshold: {{count: 0, window: 1m, group_by: [ka.user.name]}}\n",
        rule("kcreate")
    ));
    assert!(
        stateful.contains(
            "rule \"Broken\": auditflow: `threshold.count` must be a whole number of at least 1"
        ),
        "{stateful}"
    );
}

#[test]
fn rules_of_other_sources_are_ignored_and_exceptions_apply() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        r#"
- rule: Shell in container
  condition: proc.name = bash
  output: shell
  priority: WARNING
- rule: Secret Deleted
  condition: ka.verb = delete and ka.target.resource = secrets
  output: deleted %ka.target.name by %ka.user.name
  priority: NOTICE
  source: k8s_audit
  exceptions:
    - name: cleanup
      fields: [ka.user.name, ka.target.namespace]
      comps: [=, in]
      values:
        - [janitor, [test, staging]]
- rule: Secret Deleted
  exceptions:
    - name: cleanup
      values:
        - [janitor, [default]]
  append: true
  source: k8s_audit
"#,
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["detect", "--rules"])
        .arg(&rules)
        .arg(conformance_dir().join("traces/delete_secret.json"))
        .output()
        .expect("run detect");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ignored rules not for Kubernetes audit events (`source: k8s_audit`): 1 of source `syscall`"), "{stderr}");
    // The trace deletes a secret in `default` as minikube-user: not excepted.
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    let excepted = std::fs::read_to_string(&rules)
        .unwrap()
        .replace("[janitor, [default]]", "[minikube-user, [default]]");
    std::fs::write(&rules, excepted).unwrap();
    let output = Command::new(binary())
        .args(["detect", "--rules"])
        .arg(&rules)
        .arg(conformance_dir().join("traces/delete_secret.json"))
        .output()
        .expect("run detect");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 0);
}

#[test]
fn the_detect_command_reads_files_or_stdin_and_prints_ndjson_alerts() {
    let dir = conformance_dir();
    let rules = dir.join("k8s_audit_rules.yaml");
    let from_file = Command::new(binary())
        .args(["detect", "--hostname", "h", "--rules"])
        .arg(&rules)
        .arg(dir.join("traces/exec_pod.json"))
        .arg(dir.join("traces/attach_pod.json"))
        .output()
        .expect("run detect");
    assert!(from_file.status.success());
    let alerts: Vec<serde_json::Value> = String::from_utf8_lossy(&from_file.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("NDJSON"))
        .collect();
    assert_eq!(
        counts_by_rule(&alerts),
        BTreeMap::from([("Attach/Exec Pod".to_string(), 2)])
    );
    assert!(String::from_utf8_lossy(&from_file.stderr).contains("2 event(s), 2 alert(s)"));

    let mut child = Command::new(binary())
        .args(["detect", "--rules"])
        .arg(&rules)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start detect");
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, falco_traces().as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("51 event(s)"), "{stderr}");
    assert!(
        stderr.contains("1 input(s) that are not audit events"),
        "{stderr}"
    );

    let missing = Command::new(binary())
        .args(["detect", "--rules", "/nonexistent/rules.yaml"])
        .output()
        .expect("run detect");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("/nonexistent/rules.yaml:1:1: cannot read the rule file"));
}

#[test]
fn the_test_command_runs_the_rule_pack_tests() {
    let output = Command::new(binary())
        .args(["test", "--config", "examples/rules/pipeline.toml"])
        .current_dir(repository_dir())
        .output()
        .expect("run test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("test result: 28 passed; 0 failed"),
        "{stdout}"
    );
}

#[test]
fn the_test_command_reports_failures_and_exits_non_zero() {
    let workspace = Workspace::new();
    std::fs::write(
        workspace.path("tests.yaml"),
        format!(
            "tests:\n  - name: wrong count\n    events:\n      - {}\n    expect:\n      - {{rule: Authentication Failure Burst, count: 1}}\n  - name: right\n    events: []\n    expect: []\n",
            unauthorized("192.0.2.1", 0, "x")
        ),
    )
    .unwrap();
    let config = workspace.config(&format!(
        r#"
[sources.in]
type = "stdin"
[transforms.detect]
type = "detect"
inputs = ["in"]
rules = ["{pack}"]
tests = ["{{dir}}/tests.yaml"]
[sinks.out]
type = "console"
inputs = ["detect.alerts"]
"#,
        pack = repository_dir()
            .join("examples/rules/auditflow_rules.yaml")
            .display()
    ));
    let output = Command::new(binary())
        .args(["test", "--config"])
        .arg(&config)
        .output()
        .expect("run test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.contains("test detect: wrong count ... FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("`Authentication Failure Burst`: expected 1 alert(s), got 0"),
        "{stdout}"
    );
    assert!(stdout.contains("test detect: right ... ok"), "{stdout}");
    assert!(
        stdout.contains("test result: 1 passed; 1 failed"),
        "{stdout}"
    );
}
