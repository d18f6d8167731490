//! The README's first command: `auditflow run --once` on the default pipeline
//! and the bundled sample, from a fresh directory.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn the_default_pipeline_ingests_the_bundled_sample_and_exits_zero() {
    let workspace = Workspace::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("pipeline.toml"), workspace.path("pipeline.toml")).expect("copy");
    std::os::unix::fs::symlink(repo.join("examples"), workspace.path("examples")).expect("link");
    let run = || {
        Command::new(binary())
            .args(["run", "--once"])
            .current_dir(workspace.dir.path())
            .env(
                "AUDITFLOW_API_ADDRESS",
                format!("127.0.0.1:{}", free_port()),
            )
            .output()
            .expect("run auditflow")
    };
    let output = run();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Three files of 1,500 events: audit.log, a renamed backup and a gzipped one.
    let archived = workspace.json_lines("data/audit.ndjson");
    assert_eq!(archived.len(), 4_500);
    let console = String::from_utf8_lossy(&output.stdout);
    let writes = archived
        .iter()
        .filter(|e| {
            ["create", "update", "patch", "delete", "deletecollection"]
                .contains(&e["verb"].as_str().unwrap_or(""))
                && e["stage"] == "ResponseComplete"
        })
        .count();
    assert!(writes > 0);
    assert_eq!(console.lines().count(), writes);
    assert!(
        !workspace.path("data/errors.ndjson").exists()
            || workspace.json_lines("data/errors.ndjson").is_empty()
    );
    // A second run resumes from the checkpoints: nothing is read twice.
    assert!(run().status.success());
    assert_eq!(workspace.json_lines("data/audit.ndjson").len(), 4_500);
}
