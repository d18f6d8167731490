//! The Loki-protocol server stopped for 10 seconds in the middle of a stream,
//! and started again: the `loki` sink holds the pipeline up meanwhile,
//! resumes by itself, and every event is stored. It stops and starts the
//! server `scripts/services.sh` runs, so it is a test binary of its own.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{
    delivered, free_port, generate, services, start_logged, wait_for, KillOnDrop, RestartOnDrop,
    Workspace,
};

fn endpoint() -> String {
    std::env::var("AUDITFLOW_TEST_LOKI").unwrap_or_else(|_| {
        panic!("AUDITFLOW_TEST_LOKI is not set: run `scripts/test.sh`, or `scripts/services.sh start loki` and `export AUDITFLOW_TEST_LOKI=http://127.0.0.1:9428`")
    })
}

/// How many entries of `cluster` the server holds.
fn stored(cluster: &str) -> u64 {
    let address = endpoint().trim_start_matches("http://").to_string();
    let get = |path: &str| {
        let mut stream = TcpStream::connect(&address).expect("connect");
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    };
    get("/internal/force_flush");
    let answer = get(&format!(
        "/select/logsql/query?query=%7Bcluster%3D%22{cluster}%22%7D%20%7C%20stats%20count()%20n"
    ));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let value: serde_json::Value = serde_json::from_str(body.trim()).expect("a count");
    value["n"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

#[test]
fn the_server_stopped_mid_stream_loses_nothing() {
    let workspace = Workspace::new();
    let cluster = format!("outage-{}", std::process::id());
    let port = free_port();
    let log_path = workspace.path("audit.log");
    std::fs::write(&log_path, b"").expect("create the log");
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n[sources.log]\ntype = \"file\"\ninclude = [\"{{dir}}/audit.log\"]\n[sinks.loki]\ntype = \"loki\"\ninputs = [\"log\"]\nendpoint = \"{}\"\npath = \"/insert/loki/api/v1/push?disable_message_parsing=1\"\ncluster = \"{cluster}\"\nbatch = {{ max_events = 500 }}\nrequest = {{ timeout = \"5s\", retry_initial_backoff = \"200ms\", retry_max_backoff = \"2s\", retry_attempts = 1000 }}\n",
        endpoint()
    ));
    let input = generate(&["--count", "20000", "--seed", "37"]);
    let _pipeline = KillOnDrop(start_logged(&workspace, &config));
    let writer = common::append_in_chunks(log_path, &input, 1000, Duration::from_millis(400));
    wait_for(
        Duration::from_secs(60),
        "the stream to reach the server",
        || delivered(port, "loki") >= 3000.0,
    );
    let mut restart = RestartOnDrop::new("loki");
    services("stop", "loki");
    let at_stop = delivered(port, "loki");
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        delivered(port, "loki"),
        at_stop,
        "nothing is delivered while it is down"
    );
    restart.start_now();
    writer.join().expect("the writer");
    wait_for(Duration::from_secs(120), "every event pushed", || {
        delivered(port, "loki") >= 20_000.0
    });
    assert!(stored(&cluster) >= 20_000, "every event is stored");
}
