//! The `kafka` source: audit events from Kafka topics, read as a member of a
//! consumer group, with offsets committed only for what every sink delivered.
//!
//! It is how the aggregation tier scales out: run any number of auditflow
//! processes with the same `group_id`; Kafka spreads the topics' partitions
//! over them and moves a dead member's partitions to the others.
//!
//! Each message holds audit events as the other sources read them: one event,
//! NDJSON lines, or an `EventList` document (pretty-printed or not), decoded by
//! the shared decoder ([`crate::decode`]); what is not an audit event goes to
//! `ID.errors`, naming the partition and offsets, and the rest flows.
//!
//! **Offsets.** A thread of the source polls librdkafka ([`consumer`]) and
//! hands over batches of one partition each. A batch's offsets are committed
//! once every sink has acknowledged its events, per partition and in read
//! order ([`offsets`]): never past a batch still in flight, so a crash (kill
//! -9 included) re-delivers at most what was in flight. Commits go out every
//! `commit_interval`. When a rebalance revokes partitions, the source waits
//! (up to `drain_timeout`) for their batches' acknowledgements and commits
//! them before the partitions change hands. A batch a sink could not deliver
//! makes its partition read again from its oldest unacknowledged batch.
//!
//! ```toml
//! [sources.kafka]
//! type = "kafka"
//! bootstrap_servers = "kafka-0:9092"
//! topics = ["kubernetes-audit"]
//! group_id = "auditflow-aggregators"
//! auto_offset_reset = "earliest"   # where a group with no committed offset starts
//! ```

pub mod consumer;
pub mod offsets;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use auditflow_clients::kafka::{parse_with_connection, ComponentLog, KafkaConnection, Reserved};
use auditflow_core::ack::{BatchNotifier, BatchReceiver};
use auditflow_core::backoff::Backoff;
use auditflow_core::component::{ComponentTask, SourceConfig, SourceContext};
use auditflow_core::config::duration::deserialize_duration;
use auditflow_core::config::OptionError;
use auditflow_core::throttle::Throttle;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::decode::{decode_parallelism, Decoded, OrderedDecoder};
use crate::stdin::DEFAULT_MAX_LINE_BYTES;
use consumer::{KafkaMetrics, PollLoop, Polled, Shared, SourceClient};
use offsets::Span;

/// The source's `type`.
pub const TYPE_NAME: &str = "kafka";

/// The librdkafka properties the source sets itself: `librdkafka_options` may
/// not override them (its offset handling rests on them, or they have options).
pub const RESERVED: [Reserved; 7] = [
    ("bootstrap.servers", "set bootstrap_servers"),
    ("metadata.broker.list", "set bootstrap_servers"),
    ("group.id", "set group_id"),
    (
        "enable.auto.commit",
        "the source commits only what every sink delivered",
    ),
    (
        "enable.auto.offset.store",
        "the source commits only what every sink delivered",
    ),
    (
        "enable.partition.eof",
        "the source reads on past the end of a partition",
    ),
    ("auto.offset.reset", "set auto_offset_reset"),
];

/// Batches framed by the polling thread and not yet decoded.
const POLLED_AHEAD: usize = 4;

/// Where a group with no committed offset for a partition starts reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoOffsetReset {
    /// From the oldest message the topic keeps (nothing the topic holds is missed).
    #[default]
    Earliest,
    /// From the next message written.
    Latest,
}

impl AutoOffsetReset {
    fn as_str(self) -> &'static str {
        match self {
            AutoOffsetReset::Earliest => "earliest",
            AutoOffsetReset::Latest => "latest",
        }
    }
}

/// How messages are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// `audit.k8s.io` Events: one per line (NDJSON) or `EventList` documents.
    #[default]
    Audit,
}

/// The `kafka` source's own options (the connection options are [`KafkaConnection`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceOptions {
    /// The topics to read.
    pub topics: Vec<String>,
    /// The consumer group: processes with the same group share the partitions.
    pub group_id: String,
    /// Where to start in a partition the group has no offset for.
    #[serde(default)]
    pub auto_offset_reset: AutoOffsetReset,
    /// How messages are decoded.
    #[serde(default)]
    pub decoding: Decoding,
    /// The longest line or document of a message, in bytes; longer ones go to `ID.errors`.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// How often acknowledged offsets are committed.
    #[serde(
        default = "default_commit_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub commit_interval: Duration,
    /// How long a rebalance or a shutdown waits for in-flight batches to be acknowledged.
    #[serde(
        default = "default_drain_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub drain_timeout: Duration,
}

fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

/// A checked `kafka` source.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// How to reach the brokers.
    pub connection: KafkaConnection,
    /// The source's own options.
    pub options: KafkaSourceOptions,
}

/// Checks the options table of a `kafka` source.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SourceConfig>, Vec<OptionError>> {
    let (connection, own) = parse_with_connection::<KafkaSourceOptions>(options, &RESERVED)?;
    let mut errors = Vec::new();
    if own.topics.is_empty() || own.topics.iter().any(|t| t.trim().is_empty()) {
        errors.push(OptionError::new(
            "topics",
            "name at least one topic, such as [\"kubernetes-audit\"] (a name starting with ^ is a regular expression)",
        ));
    }
    if own.group_id.trim().is_empty() {
        errors.push(OptionError::new("group_id", "must not be empty"));
    }
    if own.max_line_bytes == 0 {
        errors.push(OptionError::new("max_line_bytes", "must be greater than 0"));
    }
    if own.commit_interval.is_zero() {
        errors.push(OptionError::new(
            "commit_interval",
            "must be longer than 0s",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let config = KafkaSourceConfig {
        connection,
        options: own,
    };
    config
        .connection
        .check_client_config(&config.properties())
        .map_err(|error| vec![error])?;
    Ok(Box::new(config))
}

impl SourceConfig for KafkaSourceConfig {
    fn can_end(&self) -> bool {
        false
    }

    fn decodes_inline(&self) -> bool {
        true
    }

    fn build(&self, context: SourceContext) -> anyhow::Result<ComponentTask> {
        let shared = Shared::new();
        let metrics = KafkaMetrics::new(&context.metrics);
        let log = ComponentLog::new(context.id.clone());
        let consumer = self.consumer(&context, &shared, &metrics, &log)?;
        let (batches, polled) = mpsc::channel(POLLED_AHEAD);
        let poll_loop = PollLoop {
            consumer,
            shared: shared.clone(),
            batches: Some(batches),
            max_line_bytes: self.options.max_line_bytes,
            commit_interval: self.options.commit_interval,
            metrics,
            log,
            read_warning: Throttle::new(Duration::from_secs(10)),
            rewind_warning: Throttle::new(Duration::from_secs(10)),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(30)),
            rewind_backoff: std::collections::BTreeMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("auditflow-kafka-{}", context.id))
            .spawn(move || poll_loop.run())?;
        let drain_timeout = self.options.drain_timeout;
        Ok(Box::pin(async move {
            let result = read(polled, &shared, context, drain_timeout).await;
            // Whatever ended the reading (shutdown, or an error), the thread stops.
            shared.finish();
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                anyhow::bail!("the Kafka polling thread failed unexpectedly; the offsets not yet committed are read again at the next start");
            }
            result
        }))
    }
}

impl KafkaSourceConfig {
    /// The consumer properties the source's options make.
    fn properties(&self) -> Vec<(&'static str, String)> {
        vec![
            ("group.id", self.options.group_id.clone()),
            ("enable.auto.commit", "false".to_string()),
            ("enable.auto.offset.store", "false".to_string()),
            (
                "auto.offset.reset",
                self.options.auto_offset_reset.as_str().to_string(),
            ),
            ("enable.partition.eof", "false".to_string()),
            ("statistics.interval.ms", "5000".to_string()),
            // librdkafka stops fetching for a second (its default) once its
            // prefetch queue is full; the pipeline drains that queue in less,
            // then waits for the next fetch: 20 ms keeps it fed (140,000
            // events/s became 420,000 on the bench, see BENCHMARKS.md).
            ("fetch.queue.backoff.ms", "20".to_string()),
            // 16 MiB of prefetched messages (64 MiB by default) is enough to
            // keep the pipeline fed and holds the process's memory down.
            ("queued.max.messages.kbytes", "16384".to_string()),
        ]
    }

    fn consumer(
        &self,
        context: &SourceContext,
        shared: &Arc<Shared>,
        metrics: &KafkaMetrics,
        log: &ComponentLog,
    ) -> anyhow::Result<BaseConsumer<SourceClient>> {
        let config = self
            .connection
            .client_config(&context.id, &self.properties());
        let client = SourceClient::new(
            log.clone(),
            shared.clone(),
            self.options.drain_timeout,
            metrics.clone(),
        );
        let consumer: BaseConsumer<SourceClient> =
            config.create_with_context(client).map_err(|error| {
                anyhow::anyhow!(
                    "cannot create the Kafka consumer: {error}; check the source's options"
                )
            })?;
        let topics: Vec<&str> = self.options.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|error| {
            anyhow::anyhow!("cannot subscribe to {}: {error}", topics.join(", "))
        })?;
        Ok(consumer)
    }
}

/// Decodes and sends the polled batches until shutdown, then waits for their acknowledgements.
async fn read(
    mut polled: mpsc::Receiver<Polled>,
    shared: &Arc<Shared>,
    context: SourceContext,
    drain_timeout: Duration,
) -> anyhow::Result<()> {
    let mut decoder = OrderedDecoder::new(
        context.id.clone(),
        decode_parallelism(),
        context.inline_transforms(),
    );
    let mut spans = std::collections::VecDeque::new();
    let mut acknowledgements = FuturesUnordered::new();
    // Reading goes on after a shutdown until the polling thread, told to stop,
    // closes its channel: what it read is sent, not dropped.
    let mut reading = true;
    let mut stopping = false;
    while reading || !decoder.is_empty() {
        tokio::select! {
            biased;
            settled = acknowledgements.next(), if !acknowledgements.is_empty() => {
                if let Some((span, status)) = settled {
                    shared.settle(&span, status);
                }
            }
            decoded = decoder.next(), if !decoder.is_empty() => {
                let Some(decoded) = decoded.transpose()? else { continue };
                let span = spans.pop_front().ok_or_else(|| {
                    anyhow::anyhow!("internal error: a decoded batch of the kafka source has no offsets")
                })?;
                match send(&context, shared, span, decoded).await {
                    Some(Some(acknowledgement)) => acknowledgements.push(acknowledgement),
                    Some(None) => {}
                    None => reading = false,
                }
            }
            batch = polled.recv(), if reading && !decoder.is_full() => match batch {
                Some(batch) => {
                    decoder.submit_from(batch.frames, batch.origins);
                    spans.push_back(batch.span);
                }
                None => reading = false,
            },
            _ = context.shutdown.cancelled(), if !stopping => {
                stopping = true;
                shared.stop_polling.store(true, Ordering::Release);
            }
        }
    }
    shared.stop_polling.store(true, Ordering::Release);
    // Let the polling thread see the stop even while it waits to hand a batch over.
    drop(polled);
    let drained = tokio::time::timeout(drain_timeout, async {
        while let Some((span, status)) = acknowledgements.next().await {
            shared.settle(&span, status);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(component_id = %context.id, "{} batches were not acknowledged within drain_timeout; they are read again at the next start", acknowledgements.len());
    }
    Ok(())
}

type Acknowledgement =
    futures::future::BoxFuture<'static, (Span, auditflow_core::ack::BatchStatus)>;

/// Sends one decoded batch; its acknowledgement to wait for, `Some(None)` when
/// it was read before a rewind or a revocation (dropped unsent), `None` when
/// nothing downstream takes events any more.
async fn send(
    context: &SourceContext,
    shared: &Shared,
    span: Span,
    mut decoded: Decoded,
) -> Option<Option<Acknowledgement>> {
    if !shared.tracker().is_current(&span) {
        return Some(None);
    }
    let (finalizer, receiver) = BatchNotifier::new_batch();
    decoded.set_finalizer(&finalizer);
    context
        .send_failures(decoded.failures, Some(&finalizer))
        .await;
    context
        .send_transform_errors(decoded.transform_errors)
        .await;
    let events = decoded.events;
    let sent = events.is_empty() || context.send(events).await;
    drop(finalizer);
    let acknowledgement = acknowledged(span, receiver);
    sent.then_some(Some(acknowledgement))
}

fn acknowledged(span: Span, receiver: BatchReceiver) -> Acknowledgement {
    Box::pin(async move { (span, receiver.await) })
}
