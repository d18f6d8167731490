//! The `kafka` sink: every event to a Kafka topic, acknowledged when the
//! broker has it.
//!
//! Each event is one message, written exactly as received: an audit event's
//! JSON text byte for byte, an alert in Falco's JSON output form, an `errors`
//! record as it is. The message key keeps one object's history in one
//! partition, in order (`key_field = "object"`: `namespace/resource/name`);
//! the headers `stage`, `verb` and `user` (an alert's `rule` and `priority`)
//! let consumers filter without parsing. The topic is a template
//! ([`auditflow_core::template`]): `"audit-{{ objectRef.namespace | default(\"cluster\") }}"`.
//!
//! **Delivery.** The producer is idempotent with `acks=all`: the broker
//! writes each message once and in order, whatever librdkafka retries. An
//! event is acknowledged to its source only when its delivery report says the
//! broker has it. While the brokers are down or restarting, librdkafka keeps
//! the messages and retries them for `message_timeout`; a message whose time
//! runs out (or that fails in another way that may pass) is produced again
//! after a backoff (`request.retry_initial_backoff` up to
//! `request.retry_max_backoff`), for as long as the pipeline runs, so nothing
//! is lost; once the input has ended (shutdown), such a failure is reported
//! to the source instead (a file source reads those lines again at its next
//! start). At most `max_in_flight_events` events wait for their reports: past
//! that the sink reads no more input, and the wait travels back to the
//! sources (backpressure, memory bounded). A message the broker can never
//! take (larger than a size limit, a topic name it refuses, a record it
//! refuses to store) goes to the sink's `errors` output as a record naming
//! why, and the rest flows; anything else (an authorization not yet granted, a
//! topic not yet created) is tried again. librdkafka's fatal error stops the
//! sink, reporting what was not delivered as such.
//!
//! ```toml
//! [sinks.kafka]
//! type = "kafka"
//! inputs = ["apiserver"]
//! bootstrap_servers = "kafka-0:9092,kafka-1:9092"
//! topic = "kubernetes-audit"
//! key_field = "object"          # or "auditID", or "none"
//! compression = "zstd"          # none, gzip, snappy, lz4, zstd
//! headers = true
//! batch = { max_events = 10000, max_bytes = 1048576, timeout = "5ms" }
//! message_timeout = "5m"
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use auditflow_clients::kafka::{parse_with_connection, ComponentLog, KafkaConnection, Reserved};
use auditflow_core::ack::BatchStatus;
use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::duration::deserialize_duration;
use auditflow_core::config::OptionError;
use auditflow_core::event::{Event, Payload};
use auditflow_core::template::Template;
use auditflow_core::throttle::Throttle;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::http_client::{BatchOptions, BatchTable, RequestOptions};
use auditflow_core::backoff::Backoff;

/// The sink's `type`.
pub const TYPE_NAME: &str = "kafka";

/// What the message key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum KeyField {
    /// The object's identity, `namespace/resource/name` (an alert: its rule).
    #[default]
    #[serde(rename = "object")]
    Object,
    /// The event's `auditID` (spreads one object's events over partitions).
    #[serde(rename = "auditID")]
    AuditId,
    /// No key: librdkafka spreads messages over partitions.
    #[serde(rename = "none")]
    None,
}

/// How librdkafka compresses message batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    /// Not compressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard (the default: the best ratio on JSON at a small CPU cost).
    #[default]
    Zstd,
}

impl KafkaCompression {
    fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// The `kafka` sink's own options (the connection options are [`KafkaConnection`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkOptions {
    /// The topic, a template over the event's fields and time.
    pub topic: String,
    /// What the message key is.
    #[serde(default)]
    pub key_field: KeyField,
    /// Batch compression.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// Whether `stage`, `verb` and `user` (an alert's `rule`, `priority`) go in the message headers.
    #[serde(default = "headers_by_default")]
    pub headers: bool,
    /// librdkafka's batches: `max_events` (`batch.num.messages`), `max_bytes`
    /// (`batch.size`), `timeout` (`linger.ms`).
    #[serde(default)]
    pub batch: BatchTable,
    /// How long librdkafka tries to deliver a message before it reports a failure.
    #[serde(
        default = "default_message_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub message_timeout: Duration,
    /// The largest message, in bytes (librdkafka's `message.max.bytes`); keep it at or
    /// under the broker's `message.max.bytes` and the topic's `max.message.bytes`.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// The most events waiting for their delivery reports.
    #[serde(default = "default_max_in_flight_events")]
    pub max_in_flight_events: usize,
    /// The backoff between two productions of a message whose delivery failed
    /// (`retry_initial_backoff`, `retry_max_backoff`; the other fields are not used).
    #[serde(default)]
    pub request: RequestOptions,
}

fn headers_by_default() -> bool {
    true
}

fn default_message_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_max_message_bytes() -> usize {
    1_000_000
}

fn default_max_in_flight_events() -> usize {
    10_000
}

/// The batch defaults of the `kafka` sink: linger a few milliseconds, as librdkafka does.
pub const DEFAULT_BATCH: BatchOptions = BatchOptions {
    max_events: 10_000,
    max_bytes: 1024 * 1024,
    timeout: Duration::from_millis(5),
};

/// A checked `kafka` sink.
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    /// How to reach the brokers.
    pub connection: KafkaConnection,
    /// The sink's own options.
    pub options: KafkaSinkOptions,
    /// The batch limits, defaults filled in.
    pub batch: BatchOptions,
    topic: Template,
}

/// The librdkafka properties the sink sets itself: `librdkafka_options` may not
/// override them (its guarantees rest on the first ones; the others have options).
pub const RESERVED: [Reserved; 17] = [
    ("bootstrap.servers", "set bootstrap_servers"),
    ("metadata.broker.list", "set bootstrap_servers"),
    ("delivery.timeout.ms", "set message_timeout"),
    (
        "delivery.report.only.error",
        "the sink acknowledges an event by its delivery report",
    ),
    (
        "transactional.id",
        "the sink writes with an idempotent producer, not transactions",
    ),
    (
        "enable.idempotence",
        "the sink always writes each message once, in order",
    ),
    ("acks", "the sink always waits for every in-sync replica"),
    (
        "request.required.acks",
        "the sink always waits for every in-sync replica",
    ),
    ("queue.buffering.max.messages", "set max_in_flight_events"),
    ("message.timeout.ms", "set message_timeout"),
    ("compression.type", "set compression"),
    ("compression.codec", "set compression"),
    ("linger.ms", "set batch.timeout"),
    ("queue.buffering.max.ms", "set batch.timeout"),
    ("batch.num.messages", "set batch.max_events"),
    ("batch.size", "set batch.max_bytes"),
    ("message.max.bytes", "set max_message_bytes"),
];

/// Checks the options table of a `kafka` sink.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    let (connection, own) = parse_with_connection::<KafkaSinkOptions>(options, &RESERVED)?;
    let mut errors = Vec::new();
    let topic = Template::parse(&own.topic)
        .map_err(|message| errors.push(OptionError::new("topic", message)))
        .ok();
    let batch = own.batch.or(DEFAULT_BATCH);
    batch.check(&mut errors);
    own.request.check(&mut errors);
    if own.message_timeout <= batch.timeout {
        errors.push(OptionError::new(
            "message_timeout",
            "must be longer than batch.timeout (librdkafka's message.timeout.ms must exceed linger.ms)",
        ));
    }
    if own.max_in_flight_events == 0 || own.max_in_flight_events > MAX_IN_FLIGHT {
        errors.push(OptionError::new(
            "max_in_flight_events",
            format!("must be between 1 and {MAX_IN_FLIGHT}"),
        ));
    }
    if let Some(kbytes) = connection
        .librdkafka_options
        .get("queue.buffering.max.kbytes")
        .and_then(|kbytes| kbytes.parse::<usize>().ok())
    {
        if kbytes.saturating_mul(1024) < own.max_message_bytes {
            errors.push(OptionError::new(
                "librdkafka_options.queue.buffering.max.kbytes",
                format!("{kbytes} KiB holds less than one message of max_message_bytes ({} bytes); raise it or lower max_message_bytes", own.max_message_bytes),
            ));
        }
    }
    if !(1000..=1_000_000_000).contains(&own.max_message_bytes) {
        errors.push(OptionError::new(
            "max_message_bytes",
            "must be between 1000 and 1000000000 (librdkafka's bounds)",
        ));
    }
    let Some(topic) = topic.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let config = KafkaSinkConfig {
        connection,
        options: own,
        batch,
        topic,
    };
    config
        .connection
        .check_client_config(&config.properties())
        .map_err(|error| vec![error])?;
    Ok(Box::new(config))
}

/// The most `max_in_flight_events` (librdkafka's queue holds at most 10,000,000 messages).
const MAX_IN_FLIGHT: usize = 1_000_000;

impl SinkConfig for KafkaSinkConfig {
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask> {
        let (reports_sender, reports) = mpsc::unbounded_channel();
        let client = ProducerClient {
            log: ComponentLog::new(context.id.clone()),
            reports: reports_sender,
        };
        let producer = self
            .connection
            .client_config(&context.id, &self.properties())
            .create_with_context(client)
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot create the Kafka producer: {error}; check the sink's options"
                )
            })?;
        let sink = KafkaSink {
            producer: Some(producer),
            reports,
            topic: self.topic.clone(),
            options: self.options.clone(),
            backoff: Backoff::new(
                self.options.request.retry_initial_backoff,
                self.options.request.retry_max_backoff,
            ),
            scratch: Scratch::default(),
            slots: Slots::new(self.options.max_in_flight_events),
            waiting: BTreeMap::new(),
            waits: 0,
            pending: VecDeque::new(),
            delivered: Delivered::default(),
            refused: Vec::new(),
            input_open: true,
            fatal: None,
            retry_warning: Throttle::new(WARNING_INTERVAL),
        };
        Ok(Box::pin(sink.run(context)))
    }
}

impl KafkaSinkConfig {
    /// The producer properties the sink's options make.
    fn properties(&self) -> Vec<(&'static str, String)> {
        let options = &self.options;
        vec![
            ("enable.idempotence", "true".to_string()),
            ("acks", "all".to_string()),
            ("compression.type", options.compression.as_str().to_string()),
            ("linger.ms", self.batch.timeout.as_millis().to_string()),
            ("batch.num.messages", self.batch.max_events.to_string()),
            ("batch.size", self.batch.max_bytes.to_string()),
            (
                "message.timeout.ms",
                options.message_timeout.as_millis().to_string(),
            ),
            ("message.max.bytes", options.max_message_bytes.to_string()),
            (
                "queue.buffering.max.messages",
                (options.max_in_flight_events + 1).to_string(),
            ),
        ]
    }
}

/// A delivery report: the slot of the message, and its outcome.
#[derive(Debug)]
struct Report {
    slot: usize,
    result: Result<(), KafkaError>,
}

/// The producer's context: librdkafka's log lines and errors through
/// `tracing`, and each delivery report handed to the sink's task (librdkafka
/// calls it on the producer's polling thread).
struct ProducerClient {
    log: ComponentLog,
    reports: mpsc::UnboundedSender<Report>,
}

impl ClientContext for ProducerClient {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for ProducerClient {
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery: &DeliveryResult<'_>, slot: usize) {
        let result = match delivery {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.clone()),
        };
        // The sink's task is gone only once it has stopped waiting for reports.
        let _ = self.reports.send(Report { slot, result });
    }
}

/// Buffers reused from one message to the next.
#[derive(Default)]
struct Scratch {
    topic: String,
    key: String,
    payload: Vec<u8>,
}

/// A message handed to librdkafka, waiting for its delivery report.
struct InFlight {
    event: Event,
    size: usize,
    /// Productions made, this one included.
    attempt: u32,
}

/// The messages in flight, by slot: the delivery opaque librdkafka hands
/// back is the slot's index, so a report costs no allocation.
struct Slots {
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
}

impl Slots {
    fn new(capacity: usize) -> Slots {
        Slots {
            slots: (0..capacity).map(|_| None).collect(),
            free: (0..capacity).rev().collect(),
        }
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// Puts a message in a free slot: its index and the message, or the message back when none is free.
    fn put(&mut self, message: InFlight) -> Result<(usize, &mut InFlight), InFlight> {
        let Some(slot) = self.free.pop() else {
            return Err(message);
        };
        match self.slots.get_mut(slot) {
            Some(place) => Ok((slot, place.insert(message))),
            None => Err(message),
        }
    }

    fn take(&mut self, slot: usize) -> Option<InFlight> {
        let message = self.slots.get_mut(slot)?.take()?;
        self.free.push(slot);
        Some(message)
    }

    /// Every message in flight, its slot freed.
    fn drain(&mut self) -> Vec<Event> {
        let events: Vec<Event> = self
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .map(|message| message.event)
            .collect();
        self.free = (0..self.slots.len()).rev().collect();
        events
    }
}

/// Why a message could not be handed to librdkafka.
enum Refusal {
    /// librdkafka's queue is full: wait for deliveries, then try again.
    QueueFull(Event, u32),
    /// The message can never be delivered.
    Never(Event, String),
    /// It failed in a way that may pass: produce it again after a backoff.
    Again(Event, u32, KafkaError),
    /// The producer can produce no more (librdkafka's fatal error).
    Fatal(Event, KafkaError),
}

struct KafkaSink {
    /// `None` once dropped, off the runtime's threads (dropping it joins its thread and flushes).
    producer: Option<ThreadedProducer<ProducerClient>>,
    reports: mpsc::UnboundedReceiver<Report>,
    topic: Template,
    options: KafkaSinkOptions,
    backoff: Backoff,
    scratch: Scratch,
    slots: Slots,
    /// Messages waiting out a backoff before they are produced again, by when
    /// they are due (and a number that keeps equal times apart).
    waiting: BTreeMap<(Instant, u64), (Event, u32)>,
    waits: u64,
    /// Messages to produce, with the productions made so far.
    pending: VecDeque<(Event, u32)>,
    delivered: Delivered,
    /// Messages that will never be delivered, with the reason, for the `errors` output.
    refused: Vec<(Event, String)>,
    input_open: bool,
    /// The fatal error that stopped the producer.
    fatal: Option<KafkaError>,
    /// Failed deliveries are logged once per interval, not once per message.
    retry_warning: Throttle,
}

/// How often a failed delivery is logged.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// How long a message waits when librdkafka's queue has no room although every report is in.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// Delivery reports settled at a time.
const REPORTS_AT_ONCE: usize = 1024;

impl KafkaSink {
    async fn run(mut self, mut context: SinkContext) -> anyhow::Result<()> {
        let result = self.deliver(&mut context).await;
        if result.is_err() {
            // Whatever was not delivered is reported so, never left to resolve as delivered.
            self.fail_everything(&context).await;
        }
        if let Some(producer) = self.producer.take() {
            let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
        }
        result
    }

    /// Delivers until the input has ended and every message is settled.
    async fn deliver(&mut self, context: &mut SinkContext) -> anyhow::Result<()> {
        let mut reports = Vec::with_capacity(REPORTS_AT_ONCE);
        loop {
            let blocked = self.produce_pending(context);
            if let Some(error) = &self.fatal {
                anyhow::bail!("the Kafka producer failed for good ({error}); the events not delivered are reported so");
            }
            context
                .refuse(std::mem::take(&mut self.refused), "message_refused")
                .await;
            let budget = self.slots.in_flight() + self.waiting.len() + self.pending.len();
            let read = self.input_open
                && !blocked
                && self.pending.is_empty()
                && budget < self.options.max_in_flight_events;
            let in_flight = self.slots.in_flight() > 0;
            let next_due = self.waiting.keys().next().map(|(due, _)| *due);
            tokio::select! {
                biased;
                received = self.reports.recv_many(&mut reports, REPORTS_AT_ONCE), if in_flight => {
                    if received == 0 {
                        anyhow::bail!("the Kafka producer's delivery reports stopped");
                    }
                    for report in reports.drain(..) {
                        self.settle(report, context);
                    }
                    self.delivered.acknowledge(context);
                }
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    self.release_due();
                }
                batch = context.input.recv(), if read => match batch {
                    Some(events) => self.pending.extend(events.into_iter().map(|event| (event, 0))),
                    None => {
                        self.input_open = false;
                        // A stopping pipeline does not wait out backoffs: those are not delivered.
                        self.fail_waiting(context);
                    }
                },
                else => break,
            }
        }
        self.delivered.acknowledge(context);
        Ok(())
    }

    /// Moves the messages whose backoff is over back to the front of the queue, in order.
    fn release_due(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        for message in due.into_iter().rev() {
            self.pending.push_front(message);
        }
    }

    /// Settles the delivery reports already in, then reports every message
    /// not delivered (in flight, waiting, pending) as not delivered, and the
    /// refused ones as refused.
    async fn fail_everything(&mut self, context: &SinkContext) {
        while let Ok(report) = self.reports.try_recv() {
            self.settle(report, context);
        }
        self.delivered.acknowledge(context);
        context
            .refuse(std::mem::take(&mut self.refused), "message_refused")
            .await;
        let mut undelivered = self.slots.drain();
        undelivered.extend(
            std::mem::take(&mut self.waiting)
                .into_values()
                .map(|(event, _)| event),
        );
        undelivered.extend(self.pending.drain(..).map(|(event, _)| event));
        if !undelivered.is_empty() {
            context.failed(undelivered, BatchStatus::Errored, "delivery_failed");
        }
    }

    /// Waits out a backoff, then produces the message again.
    fn wait_and_retry(
        &mut self,
        event: Event,
        attempt: u32,
        error: &KafkaError,
        context: &SinkContext,
    ) {
        let wait = self.backoff.wait(attempt.saturating_sub(1));
        context.metrics.error("delivery_retried", 1);
        if let Some(more) = self.retry_warning.allow() {
            tracing::warn!(component_id = %context.id, "a message was not delivered ({error}); it is produced again in {wait:?} ({more} more such retries since the last warning)");
        }
        self.wait(wait, event, attempt);
    }

    /// Puts a message aside for `wait`, then back at the front of the queue.
    fn wait(&mut self, wait: Duration, event: Event, attempt: u32) {
        self.waits += 1;
        self.waiting
            .insert((Instant::now() + wait, self.waits), (event, attempt));
    }

    /// Hands pending messages to librdkafka while there are slots; `true` when
    /// its queue is full (deliveries must be waited for before more can go).
    fn produce_pending(&mut self, context: &SinkContext) -> bool {
        while self.slots.has_room() && self.fatal.is_none() {
            let Some((event, attempt)) = self.pending.pop_front() else {
                return false;
            };
            match self.produce(event, attempt, context) {
                None => {}
                Some(Refusal::QueueFull(event, attempt)) => {
                    if self.slots.in_flight() == 0 {
                        // Every report is in, but librdkafka frees the messages' room just
                        // after it hands their reports over: look again in a moment.
                        self.wait(QUEUE_FULL_WAIT, event, attempt);
                        return false;
                    }
                    self.pending.push_front((event, attempt));
                    return true;
                }
                Some(Refusal::Never(event, reason)) => self.refused.push((event, reason)),
                Some(Refusal::Again(event, attempt, error)) => {
                    self.retry_or_fail(event, attempt + 1, &error, context)
                }
                Some(Refusal::Fatal(event, error)) => {
                    self.pending.push_front((event, attempt));
                    self.fatal = Some(error);
                }
            }
        }
        false
    }

    /// Renders the topic, key and payload of an event into the scratch buffers;
    /// whether the message has a key.
    fn render(&mut self, event: &Event, context: &SinkContext) -> bool {
        let Scratch {
            topic,
            key,
            payload,
        } = &mut self.scratch;
        topic.clear();
        if self.topic.render(event, topic).missing > 0 {
            context.metrics.error("template_field_missing", 1);
        }
        sanitize_topic(topic);
        key.clear();
        payload.clear();
        if !matches!(event.payload, Payload::Audit(_)) {
            let _ = event.write_json(payload);
        }
        write_key(event, self.options.key_field, key)
    }

    /// Produces one message into a free slot; what became of it if it could not be.
    fn produce(&mut self, event: Event, attempt: u32, context: &SinkContext) -> Option<Refusal> {
        let keyed = self.render(&event, context);
        let headers = self.options.headers.then(|| headers_of(&event));
        let Some(producer) = &self.producer else {
            return Some(Refusal::Fatal(event, KafkaError::Canceled));
        };
        let message = InFlight {
            size: 0,
            event,
            attempt: attempt + 1,
        };
        let (slot, message) = match self.slots.put(message) {
            Ok(placed) => placed,
            Err(message) => return Some(Refusal::QueueFull(message.event, attempt)),
        };
        let body: &[u8] = match &message.event.payload {
            Payload::Audit(audit) => audit.as_json().as_bytes(),
            _ => &self.scratch.payload,
        };
        message.size = body.len();
        let size = message.size;
        let mut record =
            BaseRecord::<str, [u8], usize>::with_opaque_to(&self.scratch.topic, slot).payload(body);
        if keyed {
            record = record.key(self.scratch.key.as_str());
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        let Err((error, _)) = producer.send(record) else {
            return None;
        };
        let event = match self.slots.take(slot) {
            Some(message) => message.event,
            None => return None,
        };
        Some(self.send_refusal(event, attempt, size, error))
    }

    /// What a failed hand-over to librdkafka means for the message.
    fn send_refusal(&self, event: Event, attempt: u32, size: usize, error: KafkaError) -> Refusal {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => Refusal::QueueFull(event, attempt),
            Some(RDKafkaErrorCode::Fatal) => Refusal::Fatal(event, error),
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                Refusal::Never(event, too_large(size, self.options.max_message_bytes))
            }
            Some(RDKafkaErrorCode::InvalidTopic) => Refusal::Never(
                event,
                format!(
                    "the topic `{}` is not a valid topic name ({error})",
                    self.scratch.topic
                ),
            ),
            _ => Refusal::Again(event, attempt, error),
        }
    }

    /// Acts on one delivery report.
    fn settle(&mut self, report: Report, context: &SinkContext) {
        let Some(InFlight {
            event,
            size,
            attempt,
        }) = self.slots.take(report.slot)
        else {
            return;
        };
        let error = match report.result {
            Ok(()) => return self.delivered.push(event, size, context),
            Err(error) => error,
        };
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.pending.push_front((event, attempt));
            self.fatal = Some(error);
        } else if let Some(reason) = never_deliverable(&error, self.options.max_message_bytes) {
            self.refused.push((event, reason));
        } else {
            self.retry_or_fail(event, attempt, &error, context);
        }
    }

    /// A message that failed in a way that may pass: produced again after a
    /// backoff while the pipeline runs; once it is stopping, reported as not
    /// delivered (a `file` source reads it again at its next start).
    fn retry_or_fail(
        &mut self,
        event: Event,
        attempt: u32,
        error: &KafkaError,
        context: &SinkContext,
    ) {
        if self.input_open {
            return self.wait_and_retry(event, attempt, error, context);
        }
        if self.retry_warning.allow().is_some() {
            tracing::error!(component_id = %context.id, "a message was not delivered ({error}) and the pipeline is stopping; it is reported as not delivered (counted in delivery_failed)");
        }
        context.failed(vec![event], BatchStatus::Errored, "delivery_failed");
    }

    /// Reports the messages waiting out a backoff as not delivered.
    fn fail_waiting(&mut self, context: &SinkContext) {
        let waiting: Vec<Event> = std::mem::take(&mut self.waiting)
            .into_values()
            .map(|(event, _)| event)
            .collect();
        if !waiting.is_empty() {
            context.failed(waiting, BatchStatus::Errored, "delivery_failed");
        }
    }
}

/// Events the broker has, acknowledged in groups (the metrics take a lock per call).
#[derive(Default)]
struct Delivered {
    events: Vec<Event>,
    bytes: usize,
}

/// Delivered events acknowledged together at most.
const ACK_GROUP: usize = 512;

impl Delivered {
    fn push(&mut self, event: Event, size: usize, context: &SinkContext) {
        self.events.push(event);
        self.bytes += size;
        if self.events.len() >= ACK_GROUP {
            self.acknowledge(context);
        }
    }

    fn acknowledge(&mut self, context: &SinkContext) {
        if !self.events.is_empty() {
            context.delivered(
                std::mem::take(&mut self.events),
                std::mem::take(&mut self.bytes),
            );
        }
    }
}

/// Why a failed message will never be delivered, or `None` if trying again
/// may work: only a size over a limit, a topic name the broker refuses, and a
/// record it refuses to store; anything else (a broker down, an authorization
/// an operator has yet to grant, a timeout) is tried again.
fn never_deliverable(error: &KafkaError, max_message_bytes: usize) -> Option<String> {
    let code = error.rdkafka_error_code()?;
    match code {
        RDKafkaErrorCode::MessageSizeTooLarge
        | RDKafkaErrorCode::InvalidMessageSize
        | RDKafkaErrorCode::MessageBatchTooLarge => Some(format!(
            "the broker refused the message as too large ({error}); this sink's limit is {max_message_bytes} bytes (max_message_bytes): raise the broker's message.max.bytes and the topic's max.message.bytes, or lower max_message_bytes to match them"
        )),
        RDKafkaErrorCode::InvalidTopic | RDKafkaErrorCode::InvalidRecord => Some(format!(
            "the broker refused the message for good: {error}"
        )),
        _ => None,
    }
}

fn too_large(size: usize, limit: usize) -> String {
    format!(
        "the message is {size} bytes, over the limit of {limit} bytes (max_message_bytes, which must not exceed the broker's message.max.bytes); raise both to ship such events, or drop their bodies with audit_policy"
    )
}

/// Writes the message key; `false` when the message has none.
fn write_key(event: &Event, key_field: KeyField, out: &mut String) -> bool {
    match (&event.payload, key_field) {
        (_, KeyField::None) => false,
        (Payload::Audit(audit), KeyField::AuditId) => {
            out.push_str(audit.header().audit_id());
            true
        }
        (Payload::Audit(audit), KeyField::Object) => {
            let Some(object) = audit.header().object_ref() else {
                return false;
            };
            out.push_str(object.namespace().unwrap_or_default());
            out.push('/');
            out.push_str(object.resource().unwrap_or_default());
            out.push('/');
            out.push_str(object.name().unwrap_or_default());
            true
        }
        (Payload::Alert(alert), _) => {
            out.push_str(&alert.rule);
            true
        }
        (Payload::Record(_), _) => false,
    }
}

/// The message headers: what consumers filter on without parsing the message.
fn headers_of(event: &Event) -> OwnedHeaders {
    let header = |headers: OwnedHeaders, key: &str, value: &str| {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    };
    match &event.payload {
        Payload::Audit(audit) => {
            let h = audit.header();
            let headers = OwnedHeaders::new_with_capacity(3);
            let headers = header(headers, "stage", h.stage().as_str());
            let headers = header(headers, "verb", h.verb());
            header(headers, "user", h.user().username())
        }
        Payload::Alert(alert) => {
            let headers = OwnedHeaders::new_with_capacity(2);
            let headers = header(headers, "rule", &alert.rule);
            header(headers, "priority", alert.priority.as_str())
        }
        Payload::Record(_) => OwnedHeaders::new(),
    }
}

/// Makes a rendered topic a valid Kafka topic name: characters other than
/// letters, digits, `.`, `_` and `-` become `_`, at most 249 characters.
fn sanitize_topic(topic: &mut String) {
    if topic
        .bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
    {
        *topic = topic
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
    }
    if topic.is_empty() {
        topic.push('_');
    }
    topic.truncate(249);
}

#[cfg(test)]
mod tests;
