//! The README's first commands: `auditflow run --once` on the default pipeline
//! and the bundled sample, from a fresh directory, then `auditflow query`
//! answering "who deleted app-config yesterday?".

mod common;

use std::path::Path;
use std::process::{Command, Output};

use chrono::{Duration, Utc};
use common::*;

/// Events in the bundled sample (scripts/sample-audit.sh).
const SAMPLE_EVENTS: usize = 20_000;

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

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_default_pipeline_stores_the_sample_as_yesterday_and_query_finds_the_deletion() {
    let workspace = Workspace::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("pipeline.toml"), workspace.path("pipeline.toml")).expect("copy");
    std::os::unix::fs::symlink(repo.join("examples"), workspace.path("examples")).expect("link");
    let console = succeeded(&in_workspace(&workspace, &["run", "--once"]));
    let count = |args: &[&str]| -> usize {
        let mut all = vec!["query", "--count"];
        all.extend_from_slice(args);
        succeeded(&in_workspace(&workspace, &all))
            .trim()
            .parse()
            .expect("a count")
    };
    assert_eq!(count(&[]), SAMPLE_EVENTS);
    assert_eq!(count(&["--since", "48h"]), SAMPLE_EVENTS);
    let writes = count(&["--where", "ka.verb in (create, update, patch, delete, deletecollection) and ka.stage = ResponseComplete"]);
    assert!(writes > 0);
    assert_eq!(console.lines().count(), writes);
    assert!(
        !workspace.path("data/errors.ndjson").exists()
            || workspace.json_lines("data/errors.ndjson").is_empty()
    );
    // The sample's day became yesterday; the deletion keeps its time of day.
    let yesterday = (Utc::now() - Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let table = succeeded(&in_workspace(
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
    // Its two stages: RequestReceived (no response yet) and ResponseComplete, newest first.
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[1].starts_with(&format!(
            "{yesterday}T17:42:18.000000Z  alice@example.com  delete"
        )),
        "{table}"
    );
    assert!(rows[1].ends_with("production/app-config  -"), "{table}");
    assert!(
        rows[0].starts_with(&format!(
            "{yesterday}T17:42:18.004781Z  alice@example.com  delete"
        )),
        "{table}"
    );
    assert!(rows[0].ends_with("production/app-config  200"), "{table}");
    // A second run resumes from the checkpoints: nothing is read or stored twice.
    succeeded(&in_workspace(&workspace, &["run", "--once"]));
    assert_eq!(count(&[]), SAMPLE_EVENTS);
}
