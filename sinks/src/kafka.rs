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
//! take (larger than its size limit, a topic name it refuses, no
//! authorization) goes to the sink's `errors` output as a record naming why,
//! and the rest flows.
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

use std::collections::VecDeque;
use std::time::Duration;

use auditflow_clients::kafka::{split_options, ComponentLog, KafkaConnection};
use auditflow_core::ack::BatchStatus;
use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::duration::deserialize_duration;
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::{Event, Payload};
use auditflow_core::template::Template;
use auditflow_core::throttle::Throttle;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::http_client::{BatchOptions, BatchTable, RequestOptions};
use crate::retry::Backoff;

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

/// Checks the options table of a `kafka` sink.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    let (connection, own) = split_options(options);
    let own = parse_options::<KafkaSinkOptions>(&own);
    let (connection, own) = match (connection, own) {
        (Ok(connection), Ok(own)) => (connection, own),
        (connection, own) => {
            let mut errors = connection.err().unwrap_or_default();
            errors.extend(own.err().unwrap_or_default());
            return Err(errors);
        }
    };
    let mut errors = Vec::new();
    let topic = Template::parse(&own.topic)
        .map_err(|message| errors.push(OptionError::new("topic", message)))
        .ok();
    let batch = own.batch.or(DEFAULT_BATCH);
    batch.check(&mut errors);
    own.request.check(&mut errors);
    if own.message_timeout < Duration::from_millis(1) {
        errors.push(OptionError::new("message_timeout", "must be at least 1ms"));
    }
    if own.max_in_flight_events == 0 {
        errors.push(OptionError::new(
            "max_in_flight_events",
            "must be at least 1",
        ));
    }
    if !(1000..=1_000_000_000).contains(&own.max_message_bytes) {
        errors.push(OptionError::new(
            "max_message_bytes",
            "must be between 1000 and 1000000000 (librdkafka's bounds)",
        ));
    }
    match topic {
        Some(topic) if errors.is_empty() => Ok(Box::new(KafkaSinkConfig {
            connection,
            options: own,
            batch,
            topic,
        })),
        _ => Err(errors),
    }
}

impl SinkConfig for KafkaSinkConfig {
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask> {
        let (reports_sender, reports) = mpsc::unbounded_channel();
        let producer = self.producer(&context, reports_sender)?;
        let sink = KafkaSink {
            producer,
            reports,
            topic: self.topic.clone(),
            options: self.options.clone(),
            backoff: Backoff::new(
                self.options.request.retry_initial_backoff,
                self.options.request.retry_max_backoff,
            ),
            scratch: Scratch::default(),
            slots: Slots::new(self.options.max_in_flight_events),
            waiting: FuturesUnordered::new(),
            pending: VecDeque::new(),
            delivered: Delivered::default(),
            refused: Vec::new(),
            input_open: true,
            retry_warning: Throttle::new(WARNING_INTERVAL),
        };
        Ok(Box::pin(sink.run(context)))
    }
}

impl KafkaSinkConfig {
    fn producer(
        &self,
        context: &SinkContext,
        reports: mpsc::UnboundedSender<Report>,
    ) -> anyhow::Result<ThreadedProducer<ProducerClient>> {
        let mut config = self.connection.client_config(&context.id);
        let options = &self.options;
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", options.compression.as_str())
            .set("linger.ms", self.batch.timeout.as_millis().to_string())
            .set("batch.num.messages", self.batch.max_events.to_string())
            .set("batch.size", self.batch.max_bytes.to_string())
            .set(
                "message.timeout.ms",
                options.message_timeout.as_millis().to_string(),
            )
            .set("message.max.bytes", options.max_message_bytes.to_string())
            .set(
                "queue.buffering.max.messages",
                (options.max_in_flight_events + 1).to_string(),
            );
        for (name, value) in &self.connection.librdkafka_options {
            config.set(name, value);
        }
        let client = ProducerClient {
            log: ComponentLog::new(context.id.clone()),
            reports,
        };
        config.create_with_context(client).map_err(|error| {
            anyhow::anyhow!("cannot create the Kafka producer: {error}; check the sink's options")
        })
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
pub struct ProducerClient {
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

    fn put(&mut self, message: InFlight) -> Result<usize, InFlight> {
        let Some(slot) = self.free.pop() else {
            return Err(message);
        };
        if let Some(place) = self.slots.get_mut(slot) {
            *place = Some(message);
        }
        Ok(slot)
    }

    fn take(&mut self, slot: usize) -> Option<InFlight> {
        let message = self.slots.get_mut(slot)?.take()?;
        self.free.push(slot);
        Some(message)
    }
}

/// Why a message could not be handed to librdkafka.
enum Refusal {
    /// librdkafka's queue is full: wait for deliveries, then try again.
    QueueFull(Event, u32),
    /// The message can never be delivered.
    Never(Event, String),
}

struct KafkaSink {
    producer: ThreadedProducer<ProducerClient>,
    reports: mpsc::UnboundedReceiver<Report>,
    topic: Template,
    options: KafkaSinkOptions,
    backoff: Backoff,
    scratch: Scratch,
    slots: Slots,
    /// Messages waiting out a backoff before they are produced again (or a
    /// wait for room in a queue another producer filled).
    waiting: FuturesUnordered<BoxFuture<'static, Option<(Event, u32)>>>,
    /// Messages to produce, with the productions made so far.
    pending: VecDeque<(Event, u32)>,
    delivered: Delivered,
    /// Messages that will never be delivered, with the reason, for the `errors` output.
    refused: Vec<(Event, String)>,
    input_open: bool,
    /// Failed deliveries are logged once per interval, not once per message.
    retry_warning: Throttle,
}

/// How often a failed delivery is logged.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Delivery reports settled at a time.
const REPORTS_AT_ONCE: usize = 1024;

/// How long to wait when librdkafka's queue is full of messages that are not this sink's.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(10);

impl KafkaSink {
    async fn run(mut self, mut context: SinkContext) -> anyhow::Result<()> {
        let mut reports = Vec::with_capacity(REPORTS_AT_ONCE);
        loop {
            let blocked = self.produce_pending(&context);
            context
                .refuse(std::mem::take(&mut self.refused), "message_refused")
                .await;
            let read =
                self.input_open && !blocked && self.pending.is_empty() && self.slots.has_room();
            let in_flight = self.slots.in_flight() > 0;
            tokio::select! {
                biased;
                received = self.reports.recv_many(&mut reports, REPORTS_AT_ONCE), if in_flight => {
                    if received == 0 {
                        anyhow::bail!("the Kafka producer's delivery reports stopped; its events were not acknowledged");
                    }
                    for report in reports.drain(..) {
                        self.settle(report, &context);
                    }
                    self.delivered.acknowledge(&context);
                }
                again = self.waiting.next(), if !self.waiting.is_empty() => {
                    if let Some(Some(message)) = again {
                        self.pending.push_back(message);
                    }
                }
                batch = context.input.recv(), if read => match batch {
                    Some(events) => self.pending.extend(events.into_iter().map(|event| (event, 0))),
                    None => self.input_open = false,
                },
                else => break,
            }
        }
        self.delivered.acknowledge(&context);
        let undelivered: Vec<Event> = self.pending.drain(..).map(|(event, _)| event).collect();
        if !undelivered.is_empty() {
            context.failed(undelivered, BatchStatus::Errored, "delivery_failed");
        }
        Ok(())
    }

    /// Hands pending messages to librdkafka while there are slots; `true` when
    /// its queue is full (deliveries must be waited for before more can go).
    fn produce_pending(&mut self, context: &SinkContext) -> bool {
        while self.slots.has_room() {
            let Some((event, attempt)) = self.pending.pop_front() else {
                return false;
            };
            match self.produce(event, attempt, context) {
                Ok(()) => {}
                Err(Refusal::QueueFull(event, attempt)) => {
                    self.pending.push_front((event, attempt));
                    if self.slots.in_flight() == 0 {
                        // Nothing of ours to wait for (another producer fills the queue): look again soon.
                        self.waiting.push(Box::pin(async {
                            tokio::time::sleep(QUEUE_FULL_WAIT).await;
                            None
                        }));
                    }
                    return true;
                }
                Err(Refusal::Never(event, reason)) => self.refused.push((event, reason)),
            }
        }
        false
    }

    /// Produces one message into a free slot.
    fn produce(
        &mut self,
        event: Event,
        attempt: u32,
        context: &SinkContext,
    ) -> Result<(), Refusal> {
        let Scratch {
            topic,
            key,
            payload,
        } = &mut self.scratch;
        topic.clear();
        if self.topic.render(&event, topic).missing > 0 {
            context.metrics.error("template_field_missing", 1);
        }
        sanitize_topic(topic);
        key.clear();
        let keyed = write_key(&event, self.options.key_field, key);
        payload.clear();
        if !matches!(event.payload, Payload::Audit(_)) {
            let _ = event.write_json(payload);
        }
        let headers = self.options.headers.then(|| headers_of(&event));
        let in_flight = InFlight {
            size: 0,
            event,
            attempt: attempt + 1,
        };
        let slot = match self.slots.put(in_flight) {
            Ok(slot) => slot,
            Err(message) => return Err(Refusal::QueueFull(message.event, attempt)),
        };
        let Some(Some(message)) = self.slots.slots.get_mut(slot) else {
            return Ok(());
        };
        let body: &[u8] = match &message.event.payload {
            Payload::Audit(audit) => audit.as_json().as_bytes(),
            _ => payload,
        };
        message.size = body.len();
        let mut record = BaseRecord::<str, [u8], usize>::with_opaque_to(topic, slot).payload(body);
        if keyed {
            record = record.key(key.as_str());
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        let Err((error, _)) = self.producer.send(record) else {
            return Ok(());
        };
        let size = message.size;
        let Some(InFlight { event, .. }) = self.slots.take(slot) else {
            return Ok(());
        };
        Err(match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => Refusal::QueueFull(event, attempt),
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                Refusal::Never(event, too_large(size, self.options.max_message_bytes))
            }
            _ => Refusal::Never(
                event,
                format!("the Kafka producer refused the message for topic `{topic}`: {error}"),
            ),
        })
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
        if let Some(reason) = never_deliverable(&error, self.options.max_message_bytes) {
            self.refused.push((event, reason));
        } else if self.input_open {
            let wait = self.backoff.wait(attempt.saturating_sub(1));
            context.metrics.error("delivery_retried", 1);
            if let Some(more) = self.retry_warning.allow() {
                tracing::warn!(component_id = %context.id, "a message was not delivered ({error}); it is produced again in {wait:?} ({more} more such retries since the last warning)");
            }
            self.waiting.push(Box::pin(async move {
                tokio::time::sleep(wait).await;
                Some((event, attempt))
            }));
        } else {
            if self.retry_warning.allow().is_some() {
                tracing::error!(component_id = %context.id, "a message was not delivered ({error}) and the pipeline is stopping; it is reported as not delivered (counted in delivery_failed)");
            }
            context.failed(vec![event], BatchStatus::Errored, "delivery_failed");
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

/// Why a failed message will never be delivered, or `None` if trying again may work.
fn never_deliverable(error: &KafkaError, max_message_bytes: usize) -> Option<String> {
    let code = error.rdkafka_error_code()?;
    match code {
        RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize => Some(format!(
            "the broker refused the message as too large ({error}); this sink's limit is {max_message_bytes} bytes (max_message_bytes): raise the broker's message.max.bytes and the topic's max.message.bytes, or lower max_message_bytes to match them"
        )),
        RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed
        | RDKafkaErrorCode::InvalidTopic
        | RDKafkaErrorCode::InvalidRecord
        | RDKafkaErrorCode::InvalidMessage
        | RDKafkaErrorCode::MessageBatchTooLarge
        | RDKafkaErrorCode::UnknownTopic => Some(format!(
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
