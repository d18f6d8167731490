//! The `local_store` sink through the real binary: replays store nothing twice,
//! retention deletes exactly the expired day files, `kill -9` in the middle of
//! ingesting loses nothing acknowledged, and `auditflow query` reads while the
//! pipeline writes.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{Duration as Days, Utc};
use common::*;

/// Events starting an hour ago (kept by any retention), 1000 a second of simulated time.
fn recent_events(count: u64, seed: u64) -> Vec<u8> {
    let start = (Utc::now() - Days::hours(1)).to_rfc3339();
    generate(&[
        "--count",
        &count.to_string(),
        "--seed",
        &seed.to_string(),
        "--start",
        &start,
    ])
}

/// `auditflow query` on the store `store` of `data_dir`; returns stdout, after checking it succeeded.
fn query(data_dir: &Path, args: &[&str]) -> String {
    let output = Command::new(binary())
        .arg("query")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--store", "store"])
        .args(args)
        .output()
        .expect("run auditflow query");
    assert!(
        output.status.success(),
        "query {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn count(data_dir: &Path) -> u64 {
    query(data_dir, &["--count"])
        .trim()
        .parse()
        .expect("a count")
}

/// The (auditID, stage) of every line of NDJSON audit events.
fn keys(ndjson: &[u8]) -> HashSet<(String, String)> {
    ndjson
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let event: serde_json::Value = serde_json::from_slice(line).expect("an event");
            (
                event["auditID"].as_str().unwrap_or_default().to_string(),
                event["stage"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn stored_keys(data_dir: &Path) -> HashSet<(String, String)> {
    keys(query(data_dir, &["--limit", "100000000", "--output", "json"]).as_bytes())
}

const STORE_SINK: &str = "[sinks.store]\ntype = \"local_store\"\ninputs = [\"in\"]\n";

#[test]
fn the_same_events_delivered_twice_are_stored_once() {
    let workspace = Workspace::new();
    let (config, _) = workspace.stdin_pipeline_with_api(STORE_SINK);
    let events = recent_events(5_000, 11);
    for run in 0..2 {
        let output = workspace.run_once(&config, &events);
        assert!(
            output.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(count(&workspace.path("data")), 5_000, "after run {run}");
    }
    assert_eq!(stored_keys(&workspace.path("data")), keys(&events));
}

#[test]
fn retention_deletes_exactly_the_day_files_older_than_it() {
    let workspace = Workspace::new();
    let store = workspace.path("data/store");
    std::fs::create_dir_all(&store).expect("store dir");
    let today = Utc::now().date_naive();
    let day = |ago: i64| {
        (today - Days::days(ago))
            .format("%Y-%m-%d.sqlite")
            .to_string()
    };
    for ago in [95, 92, 91, 90, 89, 1, 0] {
        std::fs::write(store.join(day(ago)), b"").expect("partition");
        std::fs::write(store.join(format!("{}-wal", day(ago))), b"").expect("wal");
    }
    std::fs::write(store.join("README.txt"), b"not a partition").expect("other file");
    let (config, _) =
        workspace.stdin_pipeline_with_api(&format!("{STORE_SINK}retention_days = 90\n"));
    let output = workspace.run_once(&config, b"");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut left: Vec<String> = std::fs::read_dir(&store)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // Ninety days of retention: the day that began 90 days ago still holds events
    // younger than 90 days; the days before it are deleted with their WAL files.
    // (`lock` is the writer's lock file.)
    let mut expected: Vec<String> = [90, 89, 1, 0]
        .iter()
        .flat_map(|ago| [day(*ago), format!("{}-wal", day(*ago))])
        .chain(["README.txt".to_string(), "lock".to_string()])
        .collect();
    expected.sort();
    assert_eq!(left, expected);
    let logged = String::from_utf8_lossy(&output.stderr);
    assert!(
        logged.contains(&format!(
            "retention: deleted {}",
            store.join(day(95)).display()
        )),
        "{logged}"
    );
}

fn file_pipeline(workspace: &Workspace) -> std::path::PathBuf {
    workspace.config(
        r#"
data_dir = "{dir}/data"
[sources.in]
type = "file"
include = ["{dir}/logs/audit*.log"]
poll_interval = "20ms"
checkpoint_interval = "100ms"

[sinks.store]
type = "local_store"
inputs = ["in"]
"#,
    )
}

/// The lines of `log` before the offset its checkpoint says is delivered.
fn acknowledged_lines(workspace: &Workspace, log: &[u8]) -> usize {
    let text =
        std::fs::read_to_string(workspace.path("data/in/checkpoints.json")).unwrap_or_default();
    let offset = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|file| file["checkpoints"][0]["offset"].as_u64())
        .unwrap_or(0) as usize;
    log[..offset.min(log.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

#[test]
fn kill_9_while_ingesting_loses_nothing_acknowledged_and_stores_nothing_twice() {
    const TOTAL: usize = 100_000;
    let workspace = Workspace::new();
    std::fs::create_dir_all(workspace.path("logs")).expect("logs");
    let log = recent_events(TOTAL as u64, 12);
    std::fs::write(workspace.path("logs/audit.log"), &log).expect("log");
    let config = file_pipeline(&workspace);
    let mut child = workspace.start(&config);
    wait_for(Duration::from_secs(60), "a first checkpoint", || {
        acknowledged_lines(&workspace, &log) > 0
    });
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let acknowledged = acknowledged_lines(&workspace, &log);
    eprintln!("killed with {acknowledged} of {TOTAL} events acknowledged");
    let stored = stored_keys(&workspace.path("data"));
    let before_kill = keys(&log[..line_end(&log, acknowledged)]);
    assert!(
        before_kill.is_subset(&stored),
        "{} acknowledged events are not stored",
        before_kill.difference(&stored).count()
    );
    let output = Command::new(binary())
        .args(["run", "--once", "--config"])
        .arg(&config)
        .output()
        .expect("restart");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(count(&workspace.path("data")), TOTAL as u64);
    assert_eq!(stored_keys(&workspace.path("data")), keys(&log));
}

/// The byte offset just after the `lines`-th newline.
fn line_end(text: &[u8], lines: usize) -> usize {
    text.iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(lines.wrapping_sub(1))
        .map_or(0, |(index, _)| index + 1)
}

#[test]
fn query_reads_while_the_pipeline_writes() {
    const CHUNKS: usize = 10;
    const PER_CHUNK: usize = 3_000;
    let workspace = Workspace::new();
    std::fs::create_dir_all(workspace.path("logs")).expect("logs");
    let log = recent_events((CHUNKS * PER_CHUNK) as u64, 13);
    let config = file_pipeline(&workspace);
    let mut child = workspace.start(&config);
    let mut file = std::fs::File::create(workspace.path("logs/audit.log")).expect("log");
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    let mut seen = Vec::new();
    for chunk in lines.chunks(PER_CHUNK) {
        file.write_all(&chunk.concat()).expect("append");
        file.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(150));
        seen.push(count(&workspace.path("data")));
    }
    wait_for(Duration::from_secs(60), "every event stored", || {
        let now = count(&workspace.path("data"));
        seen.push(now);
        now == (CHUNKS * PER_CHUNK) as u64
    });
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    eprintln!("counts seen while ingesting: {seen:?}");
    assert!(seen.windows(2).all(|pair| pair[0] <= pair[1]), "{seen:?}");
    assert!(
        seen.iter()
            .any(|&c| c > 0 && c < (CHUNKS * PER_CHUNK) as u64),
        "no query ran while the store was partly written: {seen:?}"
    );
}
