//! The running pipeline: backpressure keeps memory bounded, SIGTERM drains
//! everything in flight, and `/metrics` counts what flowed.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_slow_sink_holds_up_the_source_and_memory_stays_bounded() {
    let workspace = Workspace::new();
    let (config, port) = workspace.stdin_pipeline_with_api(
        r#"
[sinks.slow]
type = "blackhole"
inputs = ["in"]
rate = 5000
"#,
    );
    let events = generate(&["--count", "20000", "--seed", "11"]);
    let average = events.len() as f64 / 20_000.0;
    let mut child = workspace.start(&config);
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    // Offer the pipeline about 1 GB in 4 seconds; it can only take 5,000 events a second.
    let (written_tx, written_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut written = 0usize;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) && written < 1 << 30 {
            if stdin.write_all(&events).is_err() {
                break;
            }
            written += events.len();
            let _ = written_tx.send(written);
        }
    });
    std::thread::sleep(Duration::from_secs(5));
    let written: usize = written_rx.try_iter().last().unwrap_or(0);
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let delivered = metric(
        &metrics,
        "auditflow_component_sent_events_total",
        &[("component_id", "slow")],
    )
    .expect("sink metric");
    let peak_kib = peak_rss_kib(pid).expect("peak memory");
    terminate(&child);
    wait_exit(&mut child, Duration::from_secs(30));
    // ~1 KB events: what the writer got in beyond what was delivered sits in the
    // pipe, the read buffer and the bounded channels: a few MB, never the input.
    let in_flight = written as f64 - delivered * average;
    assert!(
        delivered > 5_000.0 && delivered < 40_000.0,
        "delivered {delivered}"
    );
    assert!(
        in_flight < 64.0 * 1024.0 * 1024.0,
        "{in_flight} bytes in flight"
    );
    assert!(peak_kib < 256 * 1024, "peak memory {peak_kib} KiB");
}

#[test]
fn sigterm_drains_in_flight_events_and_exits_zero() {
    let workspace = Workspace::new();
    let config = workspace.config(
        r#"
data_dir = "{dir}/data"
[sources.in]
type = "stdin"
[sinks.slow]
type = "blackhole"
inputs = ["in"]
rate = 5000
[sinks.out]
type = "file"
inputs = ["in"]
path = "{dir}/out.ndjson"
"#,
    );
    let events = generate(&["--count", "30000", "--seed", "5"]);
    let mut child = workspace.start(&config);
    let mut stdin = child.stdin.take().expect("stdin");
    let input = events.clone();
    let writer = std::thread::spawn(move || {
        // Fails with a broken pipe once auditflow has exited: expected.
        let _ = stdin.write_all(&input);
    });
    // The slow sink (6 s for all events) holds the pipeline back; stop it while events are in flight.
    std::thread::sleep(Duration::from_secs(1));
    terminate(&child);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    // Everything the source read before SIGTERM is delivered; the rest stays
    // unread in the pipe. So the file holds a prefix of the input, in order,
    // nothing missing in the middle, whole lines only.
    let written = std::fs::read(workspace.path("out.ndjson")).unwrap_or_default();
    assert!(
        !written.is_empty() && written.len() < events.len(),
        "{} bytes written",
        written.len()
    );
    assert!(
        events.starts_with(&written),
        "the output is not a prefix of the input"
    );
    assert!(written.ends_with(b"\n"));
    writer.join().expect("writer");
}

#[test]
fn metrics_count_what_flowed_and_health_answers() {
    let workspace = Workspace::new();
    let (config, port) = workspace.stdin_pipeline_with_api(
        r#"
[sinks.out]
type = "file"
inputs = ["in"]
path = "{dir}/out.ndjson"
[sinks.void]
type = "blackhole"
inputs = ["in"]
"#,
    );
    let mut events = generate(&["--count", "1000", "--seed", "9"]);
    events.extend_from_slice(b"garbage\n");
    let mut child = workspace.start(&config);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&events).expect("feed");
    wait_for(Duration::from_secs(20), "1000 events delivered", || {
        http_get(port, "/metrics").is_some_and(|(_, m)| {
            metric(
                &m,
                "auditflow_component_sent_events_total",
                &[("component_id", "out")],
            ) == Some(1000.0)
        })
    });
    let (status, body) = http_get(port, "/health").expect("health");
    assert_eq!(status, 200);
    assert!(body.contains("ok"));
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let value = |name: &str, labels: &[(&str, &str)]| metric(&metrics, name, labels);
    assert_eq!(
        value(
            "auditflow_component_sent_events_total",
            &[("component_id", "in"), ("output", "_default")]
        ),
        Some(1000.0)
    );
    assert_eq!(
        value(
            "auditflow_component_received_events_total",
            &[("component_id", "out")]
        ),
        Some(1000.0)
    );
    assert_eq!(
        value(
            "auditflow_component_received_events_total",
            &[("component_id", "void")]
        ),
        Some(1000.0)
    );
    assert_eq!(
        value(
            "auditflow_component_errors_total",
            &[("component_id", "in"), ("error_type", "invalid_json")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "auditflow_component_discarded_events_total",
            &[("component_id", "in")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("auditflow_buffer_events", &[("component_id", "out")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            "auditflow_component_received_bytes_total",
            &[("component_id", "in")]
        ),
        Some(events.len() as f64)
    );
    assert!(metrics.contains("auditflow_end_to_end_latency_seconds{component_id=\"out\",component_kind=\"sink\",component_type=\"file\",quantile=\"0.99\"}"));
    assert_eq!(
        value(
            "auditflow_end_to_end_latency_seconds_count",
            &[("component_id", "out")]
        ),
        Some(1000.0)
    );
    assert!(metrics.contains("component_type=\"stdin\""));
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}
