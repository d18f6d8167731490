//! The `kafka` sink and source against the real Kafka broker that
//! `scripts/services.sh start kafka` runs (the test command starts it and
//! exports `AUDITFLOW_TEST_KAFKA`). Every test has topics and groups of its
//! own, and counts the events out.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::kafka::{bootstrap, create_topic, produce, read_topic, sidecar_config, unique_topic};
use common::{
    binary, complete_lines, delivered, free_port, generate, http_get, metric, run_once_ok,
    terminate, wait_exit, wait_for, Workspace,
};

/// Events of `generate` written to a topic by `auditflow run --once` (stdin → kafka).
fn ship(workspace: &Workspace, topic: &str, input: &[u8], sink_options: &str) {
    ship_to(workspace, &bootstrap(), topic, input, sink_options);
}

/// [`ship`] through the brokers at `bootstrap` (another listener of the test broker).
fn ship_to(workspace: &Workspace, bootstrap: &str, topic: &str, input: &[u8], sink_options: &str) {
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/producer\"\n[sources.in]\ntype = \"stdin\"\n[sinks.kafka]\ntype = \"kafka\"\ninputs = [\"in\"]\nbootstrap_servers = \"{bootstrap}\"\ntopic = \"{topic}\"\n{sink_options}\n"
    ));
    let output = workspace.run_once(&config, input);
    assert!(
        output.status.success(),
        "the producer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A consumer pipeline (kafka source → file sink) of its own directory `name`.
struct Consumer {
    dir: std::path::PathBuf,
    port: u16,
    config: std::path::PathBuf,
    child: Option<Child>,
}

impl Consumer {
    fn new(workspace: &Workspace, name: &str, topic: &str, group: &str, extra: &str) -> Consumer {
        let dir = workspace.path(name);
        std::fs::create_dir_all(&dir).expect("consumer directory");
        let port = free_port();
        let text = format!(
            r#"data_dir = "{dir}/data"
[api]
address = "127.0.0.1:{port}"
[sources.kafka]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "{group}"
librdkafka_options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
{extra}
[sinks.out]
type = "file"
inputs = ["kafka"]
path = "{dir}/out.ndjson"
[sinks.dead_letter]
type = "file"
inputs = ["kafka.errors"]
path = "{dir}/errors.ndjson"
"#,
            dir = dir.display(),
            bootstrap = bootstrap(),
        );
        let config = dir.join("pipeline.toml");
        std::fs::write(&config, text).expect("write the consumer's configuration");
        Consumer {
            dir,
            port,
            config,
            child: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("auditflow.log"))
            .expect("the consumer's log");
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the consumer");
        self.child = Some(child);
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 the consumer");
            child.wait().expect("reap the consumer");
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let status = wait_exit(&mut child, Duration::from_secs(60));
            assert!(status.success(), "the consumer failed: {}", self.log());
        }
    }

    fn lines(&self) -> Vec<String> {
        complete_lines(&self.dir.join("out.ndjson"))
    }

    fn errors(&self) -> Vec<serde_json::Value> {
        complete_lines(&self.dir.join("errors.ndjson"))
            .iter()
            .map(|line| serde_json::from_str(line).expect("an errors record"))
            .collect()
    }

    fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("auditflow.log")).unwrap_or_default()
    }

    /// Waits until the output holds at least `count` lines.
    fn wait_lines(&self, count: usize, timeout: Duration) {
        let mut last = 0;
        let waited = std::time::Instant::now();
        while waited.elapsed() < timeout {
            last = self.lines().len();
            if last >= count {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{last} of {count} lines after {timeout:?}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How many times each line occurs.
fn counts(lines: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for line in lines {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    counts
}

fn input_lines(input: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(input)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Asserts that every input line is in `output` and returns how many extra copies there are.
fn assert_every_event(input: &[String], output: &[String]) -> usize {
    let seen = counts(output);
    let missing: Vec<&String> = input
        .iter()
        .filter(|line| !seen.contains_key(line.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events missing, such as {}",
        missing.len(),
        input.len(),
        missing.first().map(|s| s.as_str()).unwrap_or_default()
    );
    let expected = counts(input);
    assert!(
        seen.keys().all(|line| expected.contains_key(line)),
        "the output holds events that were never sent"
    );
    output.len() - input.len()
}

fn object_key(line: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).expect("an audit event");
    let object = &value["objectRef"];
    let text = |field: &str| object[field].as_str().unwrap_or_default().to_string();
    format!(
        "{}/{}/{}",
        text("namespace"),
        text("resource"),
        text("name")
    )
}

/// The events of each object, in the order they appear.
fn histories(lines: &[String]) -> BTreeMap<String, Vec<&str>> {
    let mut histories: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for line in lines {
        histories.entry(object_key(line)).or_default().push(line);
    }
    histories
}

#[test]
fn file_to_kafka_to_file_delivers_every_event_byte_for_byte_in_order_per_object() {
    let workspace = Workspace::new();
    let topic = unique_topic("e2e");
    create_topic(&topic, 4);
    let input = generate(&["--count", "20000", "--seed", "3"]);
    std::fs::write(workspace.path("audit.log"), &input).expect("write the audit log");
    let config = sidecar_config(&workspace, &topic, None, "");
    run_once_ok(&config);

    let mut consumer = Consumer::new(&workspace, "aggregator", &topic, "e2e", "");
    consumer.start();
    let input = input_lines(&input);
    consumer.wait_lines(input.len(), Duration::from_secs(90));
    consumer.stop();
    let output = consumer.lines();
    assert_eq!(assert_every_event(&input, &output), 0, "no event twice");
    // Within each object, the events come out in the order they went in (events
    // with no object, such as /healthz, have no key and no order across partitions).
    let before = histories(&input);
    let after = histories(&output);
    let out_of_order: Vec<&String> = before
        .iter()
        .filter(|(key, history)| key.as_str() != "//" && after.get(*key) != Some(history))
        .map(|(key, _)| key)
        .collect();
    assert!(
        out_of_order.is_empty(),
        "objects whose events came out of order: {out_of_order:?}"
    );
    assert!(before.len() > 100, "the traffic touches many objects");

    // Keys and headers as documented: the object's identity, stage/verb/user.
    let messages = read_topic(&topic, 4, input.len(), Duration::from_secs(60));
    assert_eq!(messages.len(), input.len());
    let mut partitions_of_key: HashMap<String, i32> = HashMap::new();
    for message in &messages {
        let line = String::from_utf8_lossy(&message.payload).into_owned();
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON payload");
        let names: Vec<&str> = message.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["stage", "verb", "user"]);
        assert_eq!(
            message.headers[1].1,
            event["verb"].as_str().unwrap_or_default()
        );
        if event.get("objectRef").is_some() {
            let key = message.key.clone().expect("a keyed message");
            assert_eq!(key, object_key(&line));
            let partition = *partitions_of_key.entry(key).or_insert(message.partition);
            assert_eq!(partition, message.partition, "one object, one partition");
        }
    }
    let used: std::collections::BTreeSet<i32> = messages.iter().map(|m| m.partition).collect();
    assert_eq!(used.len(), 4, "the keys spread over the partitions");
}

#[test]
fn a_consumer_killed_three_times_mid_stream_loses_no_event() {
    let workspace = Workspace::new();
    let topic = unique_topic("kill-consumer");
    create_topic(&topic, 2);
    let input = generate(&["--count", "60000", "--seed", "5"]);
    ship(&workspace, &topic, &input, "");
    let input = input_lines(&input);
    let mut consumer = Consumer::new(&workspace, "aggregator", &topic, "kill-consumer", "");
    for kill in 1..=3 {
        consumer.start();
        consumer.wait_lines(kill * 12_000, Duration::from_secs(90));
        consumer.kill_9();
    }
    consumer.start();
    wait_for(
        Duration::from_secs(120),
        "every event after three kills",
        || {
            let seen = counts(&consumer.lines()).len();
            seen >= counts(&input).len()
        },
    );
    consumer.stop();
    let duplicates = assert_every_event(&input, &consumer.lines());
    // What a kill re-delivers is what was read but not committed: the batches in
    // flight (at most a few thousand events) plus up to one commit interval.
    assert!(
        duplicates <= 3 * 20_000,
        "{duplicates} duplicates after 3 kills"
    );
    eprintln!("3 kills: {duplicates} events delivered twice");
}

#[test]
fn a_producer_killed_mid_stream_and_restarted_loses_no_event() {
    let workspace = Workspace::new();
    let topic = unique_topic("kill-producer");
    create_topic(&topic, 1);
    let input = generate(&["--count", "150000", "--seed", "9"]);
    std::fs::write(workspace.path("audit.log"), &input).expect("write the audit log");
    let port = free_port();
    let config = sidecar_config(
        &workspace,
        &topic,
        Some(port),
        "max_in_flight_events = 5000",
    );
    let mut sidecar = Command::new(binary())
        .args(["run", "--once", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the sidecar");
    wait_for(
        Duration::from_secs(60),
        "the sidecar to deliver 20,000 events",
        || delivered(port, "kafka") >= 20_000.0,
    );
    sidecar.kill().expect("kill -9 the sidecar");
    sidecar.wait().expect("reap the sidecar");
    run_once_ok(&config);

    let input = input_lines(&input);
    let messages = read_topic(&topic, 1, input.len() * 2, Duration::from_secs(30));
    let output: Vec<String> = messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    let duplicates = assert_every_event(&input, &output);
    assert!(duplicates < input.len() / 2, "{duplicates} duplicates");
    eprintln!("producer killed once: {duplicates} events written twice");
}

#[test]
fn two_consumers_of_one_group_share_the_partitions_and_one_takes_over_when_the_other_dies() {
    let workspace = Workspace::new();
    let topic = unique_topic("group");
    create_topic(&topic, 4);
    let mut a = Consumer::new(&workspace, "a", &topic, "group", "");
    let mut b = Consumer::new(&workspace, "b", &topic, "group", "");
    a.start();
    b.start();
    let assigned = format!("partitions assigned: {topic}[");
    wait_for(
        Duration::from_secs(60),
        "both consumers to get partitions",
        || a.log().contains(&assigned) && b.log().contains(&assigned),
    );
    let first = generate(&["--count", "20000", "--seed", "11"]);
    ship(&workspace, &topic, &first, "");
    let first = input_lines(&first);
    wait_for(
        Duration::from_secs(90),
        "the first events in either consumer",
        || {
            let mut union = a.lines();
            union.extend(b.lines());
            counts(&union).len() >= counts(&first).len()
        },
    );
    assert!(
        !a.lines().is_empty() && !b.lines().is_empty(),
        "both consumers receive events"
    );
    b.kill_9();
    let b_had = b.lines().len();
    let second = generate(&["--count", "20000", "--seed", "12"]);
    ship(&workspace, &topic, &second, "");
    let mut every = first.clone();
    every.extend(input_lines(&second));
    wait_for(Duration::from_secs(120), "every event in the union", || {
        let mut union = a.lines();
        union.extend(b.lines());
        counts(&union).len() >= counts(&every).len()
    });
    a.stop();
    assert_eq!(
        b.lines().len(),
        b_had,
        "the killed consumer wrote nothing more"
    );
    let mut union = a.lines();
    union.extend(b.lines());
    assert_every_event(&every, &union);
    assert!(
        a.log().matches(&assigned).count() >= 2,
        "the survivor was given the dead one's partitions:\n{}",
        a.log()
    );
}

#[test]
fn bad_records_and_event_lists_are_told_apart_and_the_rest_flows() {
    let workspace = Workspace::new();
    let topic = unique_topic("bad-records");
    create_topic(&topic, 1);
    let event = |id: &str| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"{id}","stage":"ResponseComplete","verb":"get","requestURI":"/api/v1/pods","user":{{"username":"u"}}}}"#
        )
    };
    let pretty_list = format!(
        "{{\n  \"kind\": \"EventList\",\n  \"apiVersion\": \"audit.k8s.io/v1\",\n  \"items\": [\n    {},\n    {},\n    {}\n  ]\n}}\n",
        event("list-1"),
        event("list-2"),
        event("list-3")
    );
    let mixed_list = format!(
        r#"{{"kind":"EventList","items":[{},{{"auditID":"broken"}}]}}"#,
        event("mixed-1")
    );
    let ndjson = format!("{}\n{}\n", event("lines-1"), event("lines-2"));
    produce(
        &topic,
        &[
            Some(event("single").into_bytes()),
            Some(b"this is not JSON".to_vec()),
            Some(pretty_list.into_bytes()),
            Some(mixed_list.into_bytes()),
            None,
            Some(ndjson.into_bytes()),
            Some(vec![b'{', 0xff, b'}']),
            Some(event("last").into_bytes()),
        ],
    );
    let mut consumer = Consumer::new(&workspace, "aggregator", &topic, "bad-records", "");
    consumer.start();
    consumer.wait_lines(8, Duration::from_secs(60));
    wait_for(Duration::from_secs(30), "three errors records", || {
        consumer.errors().len() >= 3
    });
    let metrics = consumer.metrics();
    consumer.stop();
    let ids: Vec<String> = consumer
        .lines()
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["auditID"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        ["single", "list-1", "list-2", "list-3", "mixed-1", "lines-1", "lines-2", "last"]
    );
    let errors = consumer.errors();
    assert_eq!(errors.len(), 3, "{errors:?}");
    let messages: Vec<&str> = errors
        .iter()
        .map(|e| e["error"].as_str().unwrap_or_default())
        .collect();
    // Each record names the message: "the message of TOPIC[0] at offset N: ...".
    for (message, offset) in messages.iter().zip([1, 3, 6]) {
        let place = format!("the message of {topic}[0] at offset {offset}: ");
        assert!(message.starts_with(&place), "{messages:?}");
    }
    assert!(
        messages.iter().any(|m| m.contains("invalid JSON")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("invalid UTF-8")),
        "{messages:?}"
    );
    assert_eq!(
        errors
            .iter()
            .filter(|e| e["input"] == "{\"auditID\":\"broken\"}")
            .count(),
        1
    );
    let count = |kind: &str| {
        metric(
            &metrics,
            "auditflow_component_errors_total",
            &[("component_id", "kafka"), ("error_type", kind)],
        )
    };
    assert_eq!(count("invalid_json"), Some(1.0));
    assert_eq!(count("not_audit_event"), Some(1.0));
    assert_eq!(count("invalid_utf8"), Some(1.0));
}

#[test]
fn a_message_over_the_size_limit_goes_to_the_sinks_errors_and_the_rest_is_delivered() {
    let workspace = Workspace::new();
    let topic = unique_topic("too-large");
    create_topic(&topic, 1);
    // Incompressible bodies: the broker's limit applies to the compressed batch.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut noise = |bytes: usize| -> String {
        (0..bytes)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect()
    };
    let event = |id: &str, body: &str| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"{id}","stage":"ResponseComplete","verb":"create","requestURI":"/api/v1/namespaces/a/configmaps","objectRef":{{"resource":"configmaps","namespace":"a","name":"big"}},"requestObject":{{"data":{{"blob":"{body}"}}}}}}"#
        )
    };
    let input = [
        event("s-1", "small"),
        event("big-1", &noise(2_000_000)),
        event("s-2", "small"),
        event("big-2", &noise(2_500_000)),
        event("s-3", "small"),
    ]
    .join("\n");
    let dead_letter = workspace.path("refused.ndjson");
    // Over the sink's own limit: refused before it is sent. Over the broker's limit
    // (1,048,588 bytes) with the sink's limit raised: refused by the broker.
    for (limit, says) in [
        (1_000_000, "over the limit of 1000000 bytes"),
        (3_000_000, "the broker refused the message as too large"),
    ] {
        let _ = std::fs::remove_file(&dead_letter);
        let config = workspace.config(&format!(
            r#"data_dir = "{{dir}}/producer-{limit}"
[sources.in]
type = "stdin"
[sinks.kafka]
type = "kafka"
inputs = ["in"]
bootstrap_servers = "{}"
topic = "{topic}"
max_message_bytes = {limit}
[sinks.refused]
type = "file"
inputs = ["kafka.errors"]
path = "{}"
"#,
            bootstrap(),
            dead_letter.display()
        ));
        let output = workspace.run_once(&config, input.as_bytes());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let records: Vec<serde_json::Value> = complete_lines(&dead_letter)
            .iter()
            .map(|l| serde_json::from_str(l).expect("an errors record"))
            .collect();
        let mut ids: Vec<&str> = Vec::new();
        for record in &records {
            assert_eq!(record["component_id"], "kafka");
            let input = record["input"].as_str().unwrap_or_default();
            ids.extend(
                ["big-1", "big-2"]
                    .into_iter()
                    .filter(|id| input.contains(id)),
            );
            let error = record["error"].as_str().unwrap_or_default();
            assert!(error.contains(says), "limit {limit}: {error}");
            assert!(error.contains("max_message_bytes"), "{error}");
        }
        ids.sort();
        assert_eq!(ids, ["big-1", "big-2"], "limit {limit}");
    }
    let messages = read_topic(&topic, 1, 6, Duration::from_secs(20));
    let ids: Vec<String> = messages
        .iter()
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(&m.payload).expect("JSON")["auditID"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["s-1", "s-2", "s-3", "s-1", "s-2", "s-3"]);
}

#[test]
fn sasl_plain_and_scram_authenticate_against_the_brokers_sasl_listener() {
    let workspace = Workspace::new();
    let sasl_address = bootstrap().replace(":9092", ":9094");
    for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
        let topic = unique_topic(&format!("sasl-{}", mechanism.to_lowercase()));
        create_topic(&topic, 1);
        let sasl = format!(
            "sasl = {{ mechanism = \"{mechanism}\", username = \"auditflow\", password = \"${{KAFKA_PASSWORD}}\" }}"
        );
        let config = workspace.config(&format!(
            "data_dir = \"{{dir}}/p\"\n[sources.in]\ntype = \"stdin\"\n[sinks.kafka]\ntype = \"kafka\"\ninputs = [\"in\"]\nbootstrap_servers = \"{sasl_address}\"\ntopic = \"{topic}\"\n{sasl}\n"
        ));
        let input = generate(&["--count", "500", "--seed", "2"]);
        let output = Command::new(binary())
            .args(["run", "--once", "--config"])
            .arg(&config)
            .env("KAFKA_PASSWORD", "auditflow-secret")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(&input)?;
                child.wait_with_output()
            })
            .expect("run the producer");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut consumer = Consumer::new(&workspace, &format!("c-{mechanism}"), &topic, "sasl", "");
        let text = std::fs::read_to_string(&consumer.config).expect("config");
        let text = text.replace(&bootstrap(), &sasl_address).replace(
            "group_id = \"sasl\"",
            &format!(
                "group_id = \"sasl\"\n{}",
                sasl.replace("${KAFKA_PASSWORD}", "auditflow-secret")
            ),
        );
        std::fs::write(&consumer.config, text).expect("config");
        consumer.start();
        consumer.wait_lines(500, Duration::from_secs(60));
        consumer.stop();
        assert_every_event(&input_lines(&input), &consumer.lines());
    }
}

#[test]
fn a_wrong_password_is_reported_and_nothing_is_acknowledged() {
    let workspace = Workspace::new();
    let topic = unique_topic("sasl-wrong");
    let port = free_port();
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/p\"\n[api]\naddress = \"127.0.0.1:{port}\"\n[sources.in]\ntype = \"stdin\"\n[sinks.kafka]\ntype = \"kafka\"\ninputs = [\"in\"]\nbootstrap_servers = \"{}\"\ntopic = \"{topic}\"\nsasl = {{ mechanism = \"SCRAM-SHA-256\", username = \"auditflow\", password = \"wrong\" }}\n",
        bootstrap().replace(":9092", ":9094")
    ));
    let (log, delivered) = run_unable_to_connect(&config, port);
    assert!(
        log.contains("Authentication failed") || log.contains("SASL authentication error"),
        "{log}"
    );
    assert_eq!(delivered, 0.0);
}

#[test]
fn the_sidecar_and_aggregator_examples_validate() {
    for example in [
        "examples/sidecar-file-to-kafka.toml",
        "examples/aggregator-kafka.toml",
    ] {
        let output = Command::new(binary())
            .args(["validate", "--config", example])
            .current_dir(common::repository_dir())
            .env("KAFKA_BOOTSTRAP_SERVERS", "kafka-0.kafka:9092")
            .output()
            .expect("run validate");
        assert!(
            output.status.success(),
            "{example}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn conditions_read_the_topic_partition_offset_and_headers_of_each_event() {
    let workspace = Workspace::new();
    let topic = unique_topic("origin");
    create_topic(&topic, 2);
    let input = generate(&["--count", "3000", "--seed", "13"]);
    ship(&workspace, &topic, &input, "");
    let deletes: Vec<String> = input_lines(&input)
        .into_iter()
        .filter(|line| line.contains("\"verb\":\"delete\""))
        .collect();
    assert!(!deletes.is_empty());
    let mut consumer = Consumer::new(&workspace, "aggregator", &topic, "origin", "");
    let text = std::fs::read_to_string(&consumer.config).expect("config");
    let condition = format!(
        "kafka.header[verb] = delete and kafka.topic = {topic} and kafka.partition in (0, 1) and kafka.offset >= 0 and kafka.key exists"
    );
    let text = text.replace(
        "[sinks.out]\ntype = \"file\"\ninputs = [\"kafka\"]",
        &format!("[transforms.deletes]\ntype = \"filter\"\ninputs = [\"kafka\"]\ncondition = \"{condition}\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"deletes\"]"),
    );
    std::fs::write(&consumer.config, text).expect("config");
    consumer.start();
    consumer.wait_lines(deletes.len(), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    consumer.stop();
    assert_eq!(assert_every_event(&deletes, &consumer.lines()), 0);
}

/// Runs a producer (stdin → kafka, its API on `port`) that cannot reach the
/// broker for 5 seconds, fed 10 events; its log, and how many events it delivered.
fn run_unable_to_connect(config: &std::path::Path, port: u16) -> (String, f64) {
    let mut child = Command::new(binary())
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the producer");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(&generate(&["--count", "10"]))
            .expect("feed");
    }
    std::thread::sleep(Duration::from_secs(5));
    let delivered = delivered(port, "kafka");
    child.kill().expect("kill");
    let output = child.wait_with_output().expect("wait");
    (
        String::from_utf8_lossy(&output.stderr).into_owned(),
        delivered,
    )
}

/// The test CA and client certificate of the broker's TLS listener (127.0.0.1:9095).
fn tls_dir() -> std::path::PathBuf {
    let dir = std::env::var("AUDITFLOW_TEST_KAFKA_TLS").unwrap_or_else(|_| {
        panic!(
            "AUDITFLOW_TEST_KAFKA_TLS is not set: run `scripts/test.sh`, or \
             `export AUDITFLOW_TEST_KAFKA_TLS=$PWD/target/services/kafka/tls`"
        )
    });
    let dir = std::path::PathBuf::from(dir);
    assert!(
        dir.join("ca.crt").exists(),
        "no test CA in {}: start Kafka with `scripts/services.sh start kafka`",
        dir.display()
    );
    dir
}

#[test]
fn tls_with_a_client_certificate_ships_and_reads_and_a_wrong_ca_delivers_nothing() {
    let workspace = Workspace::new();
    let dir = tls_dir();
    let tls_address = bootstrap().replace(":9092", ":9095");
    let tls = format!(
        "tls = {{ ca_file = \"{0}/ca.crt\", crt_file = \"{0}/client.crt\", key_file = \"{0}/client.key\" }}",
        dir.display()
    );
    let topic = unique_topic("tls");
    create_topic(&topic, 1);
    let input = generate(&["--count", "500", "--seed", "4"]);
    ship_to(&workspace, &tls_address, &topic, &input, &tls);
    let mut consumer = Consumer::new(&workspace, "aggregator", &topic, "tls", &format!("{tls}\n"));
    let text = std::fs::read_to_string(&consumer.config).expect("config");
    std::fs::write(&consumer.config, text.replace(&bootstrap(), &tls_address)).expect("config");
    consumer.start();
    consumer.wait_lines(500, Duration::from_secs(60));
    consumer.stop();
    assert_eq!(
        assert_every_event(&input_lines(&input), &consumer.lines()),
        0
    );

    // The system's CA certificates do not know the test CA: the handshake fails, nothing is delivered.
    let port = free_port();
    let config = workspace.config(&format!(
        "data_dir = \"{{dir}}/wrong-ca\"\n[api]\naddress = \"127.0.0.1:{port}\"\n[sources.in]\ntype = \"stdin\"\n[sinks.kafka]\ntype = \"kafka\"\ninputs = [\"in\"]\nbootstrap_servers = \"{tls_address}\"\ntopic = \"{topic}\"\ntls = {{ crt_file = \"{0}/client.crt\", key_file = \"{0}/client.key\" }}\n",
        dir.display()
    ));
    let (log, delivered) = run_unable_to_connect(&config, port);
    assert!(log.contains("certificate verify failed"), "{log}");
    assert_eq!(delivered, 0.0);
}

/// An HTTP endpoint that answers 503 to its first `failures` requests and
/// 200 to the rest, keeping the NDJSON lines of the requests it took.
fn flaky_endpoint(failures: usize) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the endpoint");
    let port = listener.local_addr().expect("its address").port();
    let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = taken.clone();
    std::thread::spawn(move || {
        let mut requests = 0usize;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                let mut head = 0;
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    head += 1;
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                if head == 0 {
                    break;
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                requests += 1;
                let status = if requests <= failures {
                    "503 Service Unavailable"
                } else {
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let mut taken = kept.lock().expect("the endpoint's lines");
                    taken.extend(text.lines().map(str::to_string));
                    "200 OK"
                };
                let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (port, taken)
}

#[test]
fn a_batch_a_sink_could_not_deliver_is_read_again_from_kafka_and_delivered() {
    let workspace = Workspace::new();
    let topic = unique_topic("rewind");
    create_topic(&topic, 1);
    let input = generate(&["--count", "3000", "--seed", "8"]);
    ship(&workspace, &topic, &input, "");
    // The first two requests fail with no retry left: the source reads those events again.
    let (endpoint, taken) = flaky_endpoint(2);
    let port = free_port();
    let config = workspace.config(&format!(
        r#"data_dir = "{{dir}}/aggregator"
[api]
address = "127.0.0.1:{port}"
[sources.kafka]
type = "kafka"
bootstrap_servers = "{}"
topics = ["{topic}"]
group_id = "rewind"
[sinks.out]
type = "http"
inputs = ["kafka"]
uri = "http://127.0.0.1:{endpoint}/"
batch = {{ max_events = 500, timeout = "100ms" }}
request = {{ retry_attempts = 0 }}
"#,
        bootstrap()
    ));
    let mut child = common::start_logged(&workspace, &config);
    let input = input_lines(&input);
    wait_for(
        Duration::from_secs(60),
        "every event at the endpoint",
        || {
            let taken = taken.lock().expect("lines");
            counts(&taken).len() >= counts(&input).len()
        },
    );
    let metrics = http_get(port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    let log = std::fs::read_to_string(workspace.path("auditflow.log")).unwrap_or_default();
    assert!(
        log.contains("was not delivered; reading again from offset"),
        "{log}"
    );
    let taken = taken.lock().expect("lines").clone();
    assert_every_event(&input, &taken);
    let failed = metric(
        &metrics,
        "auditflow_component_errors_total",
        &[("component_id", "out"), ("error_type", "delivery_failed")],
    );
    assert!(failed.unwrap_or_default() >= 1.0, "{metrics}");
}

#[test]
fn a_consumer_stopped_with_sigterm_mid_stream_hands_over_without_a_duplicate() {
    let workspace = Workspace::new();
    let topic = unique_topic("sigterm");
    create_topic(&topic, 2);
    let input = generate(&["--count", "40000", "--seed", "6"]);
    ship(&workspace, &topic, &input, "");
    let input = input_lines(&input);
    let mut consumer = Consumer::new(&workspace, "aggregator", &topic, "sigterm", "");
    consumer.start();
    consumer.wait_lines(10_000, Duration::from_secs(90));
    consumer.stop();
    let before = consumer.lines().len();
    assert!(
        before < input.len(),
        "the stop landed mid-stream ({before} delivered)"
    );
    consumer.start();
    consumer.wait_lines(input.len(), Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(1));
    consumer.stop();
    // What was read before the stop was sent, delivered and committed: nothing twice.
    assert_eq!(assert_every_event(&input, &consumer.lines()), 0);
}
