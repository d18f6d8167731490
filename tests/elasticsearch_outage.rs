//! The OpenSearch node stopped for 15 seconds in the middle of a stream, and
//! started again: the sink holds the pipeline up meanwhile, resumes by
//! itself, and every event is stored exactly once.
//!
//! It stops and starts the node that `scripts/services.sh` runs, so it is a
//! test binary of its own: cargo runs test binaries one after another, so no
//! other OpenSearch test runs while the node is down.

mod common;

use std::time::Duration;

use common::opensearch::{count, sink_options, unique_prefix};
use common::{
    delivered, free_port, generate, services, start_logged, wait_for, KillOnDrop, RestartOnDrop,
    Workspace,
};

#[test]
fn the_node_stopped_mid_stream_loses_nothing_and_stores_nothing_twice() {
    let workspace = Workspace::new();
    let prefix = unique_prefix("outage");
    let port = free_port();
    let log_path = workspace.path("audit.log");
    std::fs::write(&log_path, b"").expect("create the audit log");
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n[sources.log]\ntype = \"file\"\ninclude = [\"{{dir}}/audit.log\"]\n[sinks.search]\ntype = \"elasticsearch\"\ninputs = [\"log\"]\n{}batch = {{ max_events = 500 }}\nrequest = {{ timeout = \"5s\", retry_initial_backoff = \"200ms\", retry_max_backoff = \"2s\", retry_attempts = 1000 }}\n",
        sink_options(&prefix)
    ));
    // 40,000 events appended to the audit log over about 20 seconds.
    let input = generate(&["--count", "40000", "--seed", "31"]);
    let _pipeline = KillOnDrop(start_logged(&workspace, &config));
    let writer = common::append_in_chunks(log_path, &input, 1000, Duration::from_millis(500));
    wait_for(
        Duration::from_secs(60),
        "the stream to reach the node",
        || delivered(port, "search") >= 5000.0,
    );
    let mut restart = RestartOnDrop::new("opensearch");
    services("stop", "opensearch");
    let at_stop = delivered(port, "search");
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(
        delivered(port, "search"),
        at_stop,
        "nothing can be delivered while the node is down"
    );
    restart.start_now();
    writer.join().expect("the writer thread");
    wait_for(Duration::from_secs(180), "every event stored", || {
        delivered(port, "search") >= 40_000.0
    });
    assert_eq!(count(&format!("{prefix}-audit-*")), 40_000);
}
