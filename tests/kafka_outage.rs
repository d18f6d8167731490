//! The Kafka broker stopped for 20 seconds in the middle of a stream, and
//! started again: the sidecar (file → kafka) and the aggregator (kafka → file)
//! both ride it out, resume by themselves, lose nothing, and hold their memory
//! bounded meanwhile.
//!
//! It stops and starts the broker that `scripts/services.sh` runs, so it is a
//! test binary of its own: cargo runs test binaries one after another, so no
//! other Kafka test runs while the broker is down.

mod common;

use std::time::{Duration, Instant};

use common::kafka::{bootstrap, create_topic, sidecar_config, unique_topic};
use common::{
    complete_lines, delivered, free_port, generate, peak_rss_kib, services, start_logged_as,
    wait_for, KillOnDrop, RestartOnDrop, Workspace,
};

#[test]
fn the_broker_stopped_for_20_seconds_mid_stream_loses_nothing_on_either_side() {
    let workspace = Workspace::new();
    let topic = unique_topic("outage");
    create_topic(&topic, 2);
    let (sidecar_port, aggregator_port) = (free_port(), free_port());
    let sidecar = sidecar_config(
        &workspace,
        &topic,
        Some(sidecar_port),
        "max_in_flight_events = 2000",
    );
    let aggregator = workspace.path("aggregator.toml");
    std::fs::write(
        &aggregator,
        format!(
            r#"data_dir = "{dir}/aggregator"
[api]
address = "127.0.0.1:{aggregator_port}"
[sources.kafka]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "outage"
[sinks.out]
type = "file"
inputs = ["kafka"]
path = "{dir}/out.ndjson"
"#,
            dir = workspace.dir.path().display(),
            bootstrap = bootstrap()
        ),
    )
    .expect("write the aggregator's configuration");

    // 50,000 events written to the audit log over about 25 seconds, in steps.
    let input = generate(&["--count", "50000", "--seed", "21"]);
    let log_path = workspace.path("audit.log");
    std::fs::write(&log_path, b"").expect("create the audit log");
    let mut sidecar_process = KillOnDrop(start_logged_as(&workspace, &sidecar, "sidecar"));
    let mut aggregator_process = KillOnDrop(start_logged_as(&workspace, &aggregator, "aggregator"));
    let writer =
        common::append_in_chunks(log_path.clone(), &input, 1000, Duration::from_millis(500));
    wait_for(
        Duration::from_secs(60),
        "the stream to flow through Kafka",
        || delivered(aggregator_port, "out") >= 5000.0,
    );

    let mut restart = RestartOnDrop::new("kafka");
    services("stop", "kafka");
    let stopped_at = Instant::now();
    let during = delivered(sidecar_port, "kafka");
    std::thread::sleep(Duration::from_secs(20));
    let sidecar_rss = peak_rss_kib(sidecar_process.0.id());
    restart.start_now();
    eprintln!(
        "broker down for {:?}; the sidecar had delivered {during} events when it stopped",
        stopped_at.elapsed()
    );

    writer.join().expect("the writer thread");
    let input: Vec<String> = String::from_utf8_lossy(&input)
        .lines()
        .map(str::to_string)
        .collect();
    let out = workspace.path("out.ndjson");
    wait_for(
        Duration::from_secs(180),
        "every event after the outage",
        || {
            let seen: std::collections::HashSet<String> =
                complete_lines(&out).into_iter().collect();
            input.iter().all(|line| seen.contains(line))
        },
    );
    let aggregator_rss = peak_rss_kib(aggregator_process.0.id());
    let sidecar_rss_after = peak_rss_kib(sidecar_process.0.id());
    for KillOnDrop(process) in [&mut sidecar_process, &mut aggregator_process] {
        common::terminate(process);
        let status = common::wait_exit(process, Duration::from_secs(60));
        assert!(status.success());
    }
    let output = complete_lines(&out);
    let duplicates = output.len() - input.len();
    eprintln!(
        "every one of {} events arrived ({duplicates} twice); peak RSS: sidecar {:?} KiB during the outage, {:?} KiB in all; aggregator {:?} KiB",
        input.len(),
        sidecar_rss,
        sidecar_rss_after,
        aggregator_rss
    );
    for rss in [sidecar_rss_after, aggregator_rss] {
        let rss = rss.expect("the process's peak RSS");
        assert!(rss < 250 * 1024, "peak RSS {rss} KiB");
    }
}
