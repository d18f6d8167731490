//! `auditflow query`: every flag on a store of known events and alerts, with
//! the exact rows expected, newest first; a damaged partition.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use auditflow_core::event::{Alert, AuditEvent, Event, Payload, Priority};
use auditflow_sinks::local_store::writer::Writer;
use chrono::{DateTime, Duration, Utc};
use common::*;

struct Spec {
    id: &'static str,
    ago: Duration,
    user: &'static str,
    groups: &'static [&'static str],
    verb: &'static str,
    resource: &'static str,
    subresource: Option<&'static str>,
    namespace: &'static str,
    name: Option<&'static str>,
    code: u16,
    ip: &'static str,
}

fn specs() -> Vec<Spec> {
    let people = &["sre", "system:authenticated"][..];
    let devs = &["dev", "team-a", "system:authenticated"][..];
    vec![
        Spec {
            id: "e1",
            ago: Duration::minutes(10),
            user: "alice@example.com",
            groups: people,
            verb: "delete",
            resource: "configmaps",
            subresource: None,
            namespace: "production",
            name: Some("app-config"),
            code: 200,
            ip: "203.0.113.24",
        },
        Spec {
            id: "e2",
            ago: Duration::minutes(20),
            user: "bob@example.com",
            groups: devs,
            verb: "get",
            resource: "pods",
            subresource: None,
            namespace: "team-a",
            name: Some("worker-1"),
            code: 200,
            ip: "203.0.113.77",
        },
        Spec {
            id: "e3",
            ago: Duration::hours(2),
            user: "bob@example.com",
            groups: devs,
            verb: "create",
            resource: "pods",
            subresource: Some("exec"),
            namespace: "production",
            name: Some("checkout-1"),
            code: 101,
            ip: "203.0.113.77",
        },
        Spec {
            id: "e4",
            ago: Duration::hours(30),
            user: "system:serviceaccount:team-b:report-generator",
            groups: &["system:serviceaccounts", "system:authenticated"],
            verb: "get",
            resource: "secrets",
            subresource: None,
            namespace: "production",
            name: Some("db-credentials"),
            code: 200,
            ip: "10.244.3.41",
        },
        Spec {
            id: "e5",
            ago: Duration::hours(50),
            user: "",
            groups: &[],
            verb: "list",
            resource: "secrets",
            subresource: None,
            namespace: "production",
            name: None,
            code: 401,
            ip: "198.51.100.23",
        },
        Spec {
            id: "e6",
            ago: Duration::hours(50) + Duration::seconds(1),
            user: "alice@example.com",
            groups: people,
            verb: "delete",
            resource: "configmaps",
            subresource: None,
            namespace: "production",
            name: Some("old-config"),
            code: 404,
            ip: "203.0.113.24",
        },
    ]
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn audit_event(spec: &Spec, now: DateTime<Utc>) -> Event {
    let time = timestamp(now - spec.ago);
    let mut object = serde_json::json!({"resource": spec.resource, "namespace": spec.namespace, "apiVersion": "v1"});
    if let Some(name) = spec.name {
        object["name"] = name.into();
    }
    if let Some(sub) = spec.subresource {
        object["subresource"] = sub.into();
    }
    let user = if spec.user.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({"username": spec.user, "groups": spec.groups})
    };
    let event = serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": spec.id, "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/{}/{}", spec.namespace, spec.resource),
        "verb": spec.verb, "user": user, "sourceIPs": [spec.ip], "userAgent": "kubectl/v1.31.2",
        "objectRef": object, "responseStatus": {"metadata": {}, "code": spec.code},
        "requestReceivedTimestamp": time, "stageTimestamp": time,
    });
    let audit = AuditEvent::parse(&event.to_string()).expect("a valid event");
    Event::new(Payload::Audit(Arc::new(audit)), "test".into())
}

fn alert(
    rule: &str,
    priority: Priority,
    ago: Duration,
    user: &str,
    namespace: &str,
    now: DateTime<Utc>,
) -> Event {
    let mut fields = indexmap::IndexMap::new();
    fields.insert("ka.user.name".to_string(), user.into());
    fields.insert("ka.target.namespace".to_string(), namespace.into());
    let alert = Alert {
        time: timestamp(now - ago),
        rule: rule.to_string(),
        priority,
        output: format!("{rule} (user={user} ns={namespace})"),
        output_fields: fields,
        source: "k8s_audit".into(),
        tags: vec!["k8s".into()],
        hostname: "auditflow".into(),
    };
    Event::new(Payload::Alert(Arc::new(alert)), "test".into())
}

/// A data directory with the store `store` holding the six events and three alerts.
fn fixture() -> Workspace {
    let workspace = Workspace::new();
    let now = Utc::now();
    let mut events: Vec<Event> = specs().iter().map(|spec| audit_event(spec, now)).collect();
    events.push(alert(
        "K8s ConfigMap Deleted",
        Priority::Informational,
        Duration::minutes(10),
        "alice@example.com",
        "production",
        now,
    ));
    events.push(alert(
        "Attach/Exec Pod",
        Priority::Notice,
        Duration::hours(2),
        "bob@example.com",
        "production",
        now,
    ));
    events.push(alert(
        "Create Privileged Pod",
        Priority::Warning,
        Duration::hours(30),
        "erin@example.com",
        "default",
        now,
    ));
    let mut writer = Writer::new(workspace.path("data/store"), 90, 3).expect("writer");
    let summary = writer
        .write(&events, now.timestamp_micros())
        .expect("write");
    assert_eq!(summary.stored, 9);
    writer.close();
    workspace
}

fn run_query(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("query")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--store", "store"])
        .args(args)
        .output()
        .expect("run auditflow query")
}

/// The auditIDs (events) or rules (alerts) the query prints as JSON, in order.
fn ids(data_dir: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    success_stdout(&run_query(data_dir, &all))
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            value["auditID"]
                .as_str()
                .or(value["rule"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn json_lines(data_dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    success_stdout(&run_query(data_dir, &all))
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

#[test]
fn every_filter_selects_exactly_its_events_newest_first() {
    let workspace = fixture();
    let data = workspace.path("data");
    let from = timestamp(Utc::now() - Duration::hours(3));
    let to = timestamp(Utc::now() - Duration::minutes(15));
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec![], vec!["e1", "e2", "e3", "e4", "e5", "e6"]),
        (vec!["--since", "1h"], vec!["e1", "e2"]),
        (vec!["--since", "48h"], vec!["e1", "e2", "e3", "e4"]),
        (vec!["--from", &from, "--to", &to], vec!["e2", "e3"]),
        (vec!["--from", "3h", "--to", "15m"], vec!["e2", "e3"]),
        (vec!["--user", "bob@example.com"], vec!["e2", "e3"]),
        (vec!["--group", "sre"], vec!["e1", "e6"]),
        (vec!["--group", "system:serviceaccounts"], vec!["e4"]),
        (vec!["--verb", "delete"], vec!["e1", "e6"]),
        (vec!["--resource", "secrets"], vec!["e4", "e5"]),
        (vec!["--namespace", "team-a"], vec!["e2"]),
        (vec!["--name", "app-config"], vec!["e1"]),
        (vec!["--code", "401"], vec!["e5"]),
        (vec!["--source-ip", "203.0.113.24"], vec!["e1", "e6"]),
        (vec!["--where", "ka.target.subresource = exec"], vec!["e3"]),
        (
            vec![
                "--where",
                "ka.response.code >= 400",
                "--namespace",
                "production",
            ],
            vec!["e5", "e6"],
        ),
        (
            vec![
                "--verb",
                "delete",
                "--namespace",
                "production",
                "--since",
                "48h",
            ],
            vec!["e1"],
        ),
        (vec!["--verb", "delete", "--user", "nobody"], vec![]),
        (vec!["--limit", "2"], vec!["e1", "e2"]),
        (vec!["--limit", "1", "--where", "ka.verb = get"], vec!["e2"]),
    ];
    for (args, expected) in cases {
        assert_eq!(ids(&data, &args), expected, "query {args:?}");
    }
}

#[test]
fn count_and_group_by_count_the_matches() {
    let workspace = fixture();
    let data = workspace.path("data");
    let count = |args: &[&str]| -> String {
        let mut all = vec!["--count"];
        all.extend_from_slice(args);
        success_stdout(&run_query(&data, &all)).trim().to_string()
    };
    assert_eq!(count(&[]), "6");
    assert_eq!(count(&["--verb", "delete"]), "2");
    assert_eq!(count(&["--where", "ka.response.code >= 400"]), "2");
    assert_eq!(count(&["--alerts"]), "3");
    let by_user = json_lines(&data, &["--group-by", "user"]);
    assert_eq!(
        by_user,
        [
            serde_json::json!({"user": "alice@example.com", "count": 2}),
            serde_json::json!({"user": "bob@example.com", "count": 2}),
            serde_json::json!({"user": "", "count": 1}),
            serde_json::json!({"user": "system:serviceaccount:team-b:report-generator", "count": 1}),
        ]
    );
    let verbs = json_lines(
        &data,
        &["--group-by", "verb", "--where", "ka.response.code = 200"],
    );
    assert_eq!(
        verbs,
        [
            serde_json::json!({"verb": "get", "count": 2}),
            serde_json::json!({"verb": "delete", "count": 1})
        ]
    );
    let groups = json_lines(&data, &["--group-by", "group", "--limit", "2"]);
    assert_eq!(
        groups,
        [
            serde_json::json!({"group": "system:authenticated", "count": 5}),
            serde_json::json!({"group": "dev", "count": 2})
        ]
    );
    let table = success_stdout(&run_query(&data, &["--group-by", "code"]));
    assert_eq!(table.lines().next(), Some("COUNT  CODE"));
    assert_eq!(table.lines().nth(1), Some("3      200"));
}

#[test]
fn alerts_are_queried_with_their_own_filters() {
    let workspace = fixture();
    let data = workspace.path("data");
    let all = [
        "K8s ConfigMap Deleted",
        "Attach/Exec Pod",
        "Create Privileged Pod",
    ];
    assert_eq!(ids(&data, &["--alerts"]), all);
    assert_eq!(ids(&data, &["--alerts", "--since", "24h"]), &all[..2]);
    assert_eq!(
        ids(&data, &["--alerts", "--user", "erin@example.com"]),
        ["Create Privileged Pod"]
    );
    assert_eq!(
        ids(&data, &["--alerts", "--namespace", "production"]),
        &all[..2]
    );
    assert_eq!(
        ids(
            &data,
            &["--alerts", "--where", "jevt.value[/priority] = Warning"]
        ),
        ["Create Privileged Pod"]
    );
    assert_eq!(
        ids(&data, &["--alerts", "--limit", "1"]),
        ["K8s ConfigMap Deleted"]
    );
    let rules = json_lines(&data, &["--alerts", "--group-by", "priority"]);
    assert_eq!(rules.len(), 3);
    let table = success_stdout(&run_query(&data, &["--alerts", "--since", "1h"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("TIME")
            && lines[0].contains("PRIORITY")
            && lines[0].ends_with("OUTPUT")
    );
    assert!(lines[1].contains("Informational  K8s ConfigMap Deleted  K8s ConfigMap Deleted (user=alice@example.com ns=production)"), "{table}");
    let refused = run_query(&data, &["--alerts", "--verb", "delete"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--verb filters audit events"));
}

#[test]
fn the_table_shows_who_did_what_and_json_the_events_as_stored() {
    let workspace = fixture();
    let data = workspace.path("data");
    let table = success_stdout(&run_query(
        &data,
        &[
            "--verb",
            "delete",
            "--namespace",
            "production",
            "--since",
            "48h",
        ],
    ));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["TIME", "USER", "VERB", "RESOURCE", "NAMESPACE/NAME", "CODE"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[1..],
        [
            "alice@example.com",
            "delete",
            "configmaps",
            "production/app-config",
            "200"
        ]
    );
    let events = json_lines(&data, &["--name", "checkout-1"]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["objectRef"]["subresource"], "exec");
    assert_eq!(events[0]["responseStatus"]["code"], 101);
}

#[test]
fn the_store_is_found_from_the_pipeline_configuration() {
    let workspace = fixture();
    let config = "data_dir = \"{dir}/data\"\n[sources.in]\ntype = \"stdin\"\n[sinks.store]\ntype = \"local_store\"\ninputs = [\"in\"]\n";
    workspace.config(config);
    let query = |args: &[&str]| {
        Command::new(binary())
            .arg("query")
            .args(args)
            .current_dir(workspace.dir.path())
            .output()
            .expect("run auditflow query")
    };
    assert_eq!(success_stdout(&query(&["--count"])).trim(), "6");
    let other = workspace.path("other.toml");
    std::fs::write(
        &other,
        format!(
            "{}[sinks.second]\ntype = \"local_store\"\ninputs = [\"in\"]\n",
            config.replace("{dir}", &workspace.dir.path().display().to_string())
        ),
    )
    .expect("config");
    let ambiguous = query(&["--config", "other.toml", "--count"]);
    assert!(!ambiguous.status.success());
    let message = String::from_utf8_lossy(&ambiguous.stderr);
    assert!(
        message.contains("several store sinks (second, store): choose one with --store ID"),
        "{message}"
    );
    assert_eq!(
        success_stdout(&query(&[
            "--config",
            "other.toml",
            "--store",
            "store",
            "--count"
        ]))
        .trim(),
        "6"
    );
}

#[test]
fn a_damaged_partition_is_named_and_the_other_days_are_still_answered() {
    let workspace = fixture();
    let data = workspace.path("data");
    let day = (Utc::now() - Duration::days(10))
        .format("%Y-%m-%d.sqlite")
        .to_string();
    let damaged = data.join("store").join(&day);
    std::fs::write(&damaged, vec![b'#'; 4096]).expect("damaged file");
    let output = run_query(&data, &["--output", "json"]);
    assert!(!output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 6);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("error: {}: ", damaged.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("move the file away if it is damaged"),
        "{stderr}"
    );
    // A range that does not reach the damaged day does not open it.
    assert_eq!(
        success_stdout(&run_query(&data, &["--since", "48h", "--count"])).trim(),
        "4"
    );
}
