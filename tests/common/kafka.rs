//! Helpers of the tests that talk to the real Kafka broker started by
//! `scripts/services.sh start kafka` (the test command starts it and exports
//! `AUDITFLOW_TEST_KAFKA`): create topics, produce raw messages, read a topic back.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

/// The broker's address; fails the test with how to fix it when the broker is not there.
pub fn bootstrap() -> String {
    let address = std::env::var("AUDITFLOW_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "AUDITFLOW_TEST_KAFKA is not set: run `scripts/test.sh`, or \
             `scripts/services.sh start kafka` and `export AUDITFLOW_TEST_KAFKA=127.0.0.1:9092`"
        )
    });
    assert!(
        std::net::TcpStream::connect(&address).is_ok(),
        "no Kafka broker answers at {address}: start it with `scripts/services.sh start kafka`"
    );
    address
}

/// Writes the sidecar's pipeline (`{dir}/audit.log` → the `kafka` sink `kafka`
/// writing `topic`, with `sink_options` added to it), its API on `api_port` if given.
pub fn sidecar_config(
    workspace: &super::Workspace,
    topic: &str,
    api_port: Option<u16>,
    sink_options: &str,
) -> std::path::PathBuf {
    let api = api_port
        .map(|port| format!("[api]\naddress = \"127.0.0.1:{port}\"\n"))
        .unwrap_or_default();
    workspace.config(&format!(
        "data_dir = \"{{dir}}/sidecar\"\n{api}[sources.apiserver]\ntype = \"file\"\ninclude = [\"{{dir}}/audit.log\"]\n[sinks.kafka]\ntype = \"kafka\"\ninputs = [\"apiserver\"]\nbootstrap_servers = \"{}\"\ntopic = \"{topic}\"\n{sink_options}\n",
        bootstrap()
    ))
}

/// A topic name no other test (or earlier run) uses.
pub fn unique_topic(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{name}-{}-{nanos}", std::process::id())
}

fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    config
}

/// Creates a topic with `partitions` partitions (retrying while the broker starts up).
pub fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        client_config().create().expect("a Kafka admin client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let result = futures::executor::block_on(admin.create_topics([&new_topic], &options));
        match result.as_deref() {
            Ok([Ok(_)]) => return,
            other if Instant::now() > deadline => panic!("cannot create topic {topic}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Produces raw messages (`None`: a message without a payload) to partition 0 of a topic.
pub fn produce(topic: &str, payloads: &[Option<Vec<u8>>]) {
    let producer: BaseProducer = client_config()
        .set("message.max.bytes", "10000000")
        .create()
        .expect("a Kafka producer");
    for payload in payloads {
        let mut record = BaseRecord::<(), [u8]>::to(topic).partition(0);
        if let Some(payload) = payload {
            record = record.payload(payload.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).expect("produce");
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("flush the test producer");
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct ReadMessage {
    pub partition: i32,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

/// Reads every partition of a topic from the start until `count` messages came (or `timeout`).
pub fn read_topic(
    topic: &str,
    partitions: i32,
    count: usize,
    timeout: Duration,
) -> Vec<ReadMessage> {
    let consumer: BaseConsumer = client_config()
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a Kafka consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign the partitions");
    let deadline = Instant::now() + timeout;
    let mut messages = Vec::new();
    while messages.len() < count && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (h.key.to_string(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        messages.push(ReadMessage {
            partition: message.partition(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            payload: message.payload().unwrap_or_default().to_vec(),
        });
    }
    messages
}
