//! The README's first commands: `auditflow run --once` on the default pipeline
//! and the bundled sample, from a fresh directory, then `auditflow query`
//! answering "who deleted app-config yesterday?".

mod common;

use std::path::Path;
use std::process::{Command, Output};

use chrono::{Duration, Utc};
use common::*;

/// Events of the bundled sample (scripts/sample-audit.sh) that `examples/policy.yaml`
/// keeps: the others are RequestReceived stages and noise the policy logs at `None`.
const STORED_EVENTS: usize = 9_404;

/// Alerts of priority Warning and above that the rules raise on the sample.
const STORED_ALERTS: usize = 62;

/// The rule that reports each of the sample's six incidents.
const INCIDENT_RULES: [&str; 6] = [
    "Resource Deleted In Production Namespace",
    "Exec Into Production Pod Outside Maintenance Window",
    "Create Privileged Pod",
    "Secret Read By Unusual Service Account",
    "Binding To cluster-admin Or cluster-admin Changed",
    "Authentication Failure Burst",
];

fn in_workspace(workspace: &Workspace, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(workspace.dir.path())
        .env(
            "AUDITFLOW_API_ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        )
        .output()
        .expect("run auditflow")
}

#[test]
fn the_default_pipeline_stores_the_sample_as_yesterday_and_query_answers_who_did_it() {
    let workspace = Workspace::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("pipeline.toml"), workspace.path("pipeline.toml")).expect("copy");
    std::os::unix::fs::symlink(repo.join("examples"), workspace.path("examples")).expect("link");
    let console = success_stdout(&in_workspace(&workspace, &["run", "--once"]));
    let count = |args: &[&str]| -> usize {
        let mut all = vec!["query", "--count"];
        all.extend_from_slice(args);
        success_stdout(&in_workspace(&workspace, &all))
            .trim()
            .parse()
            .expect("a count")
    };
    assert_eq!(count(&[]), STORED_EVENTS);
    assert_eq!(count(&["--since", "48h"]), STORED_EVENTS);
    assert_eq!(
        count(&["--where", "ka.stage = RequestReceived"]),
        0,
        "the policy omits RequestReceived"
    );
    // Secret bodies never reach the store (the policy logs Secrets at Metadata).
    let secrets = "ka.target.resource = secrets";
    assert!(count(&["--where", secrets]) > 0);
    assert_eq!(
        count(&["--where", &format!("{secrets} and (jevt.value[/requestObject] exists or jevt.value[/responseObject] exists)")]),
        0
    );
    // Every stored alert is printed on the console, one line each.
    assert_eq!(count(&["--alerts"]), STORED_ALERTS);
    assert_eq!(console.lines().count(), STORED_ALERTS, "{console}");
    let alerts_by_rule = success_stdout(&in_workspace(
        &workspace,
        &["query", "--alerts", "--since", "48h", "--group-by", "rule"],
    ));
    for rule in INCIDENT_RULES {
        assert!(alerts_by_rule.contains(rule), "{rule}: {alerts_by_rule}");
    }
    assert!(
        !workspace.path("data/errors.ndjson").exists()
            || workspace.json_lines("data/errors.ndjson").is_empty()
    );
    // The sample's day became yesterday; the deletion keeps its time of day.
    let yesterday = (Utc::now() - Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let table = success_stdout(&in_workspace(
        &workspace,
        &[
            "query",
            "--verb",
            "delete",
            "--namespace",
            "production",
            "--since",
            "48h",
            "--name",
            "app-config",
        ],
    ));
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert!(
        rows[0].starts_with(&format!(
            "{yesterday}T17:42:18.004781Z  alice@example.com  delete"
        )),
        "{table}"
    );
    assert!(rows[0].ends_with("production/app-config  200"), "{table}");
    // A second run resumes from the checkpoints: nothing is read or stored twice.
    success_stdout(&in_workspace(&workspace, &["run", "--once"]));
    assert_eq!(count(&[]), STORED_EVENTS);
    assert_eq!(count(&["--alerts"]), STORED_ALERTS);
}
