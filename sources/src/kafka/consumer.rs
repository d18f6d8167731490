//! The `kafka` source's consumer: one thread that polls librdkafka, frames the
//! messages into batches (one partition each), commits offsets, and hands
//! partitions over on a rebalance.
//!
//! librdkafka runs rebalance callbacks inside `poll`, on the thread that
//! polls; this thread is that thread, so a revocation can wait there (up to
//! `drain_timeout`) for the acknowledgements of the revoked partitions'
//! batches, which the source's acknowledgement task records in the shared
//! [`OffsetTracker`], and commit their offsets before the partitions go to
//! another member. While the pipeline is full the thread waits to hand its
//! next batch over and polls no more (backpressure reaches the broker as
//! unread messages, never as memory).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use auditflow_clients::kafka::ComponentLog;
use auditflow_core::backoff::Backoff;
use auditflow_core::metrics::{ComponentMetrics, Counter};
use auditflow_core::throttle::{SharedThrottle, Throttle};
use bytes::Bytes;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use tokio::sync::mpsc;

use super::offsets::{OffsetTracker, Span, TopicPartition};
use crate::decode::FrameOrigins;
use crate::framing::{DocumentAssembler, Frame, LineFramer};
use auditflow_core::event::MessageOrigin;

/// The most messages one poll round gathers.
const ROUND_MESSAGES: usize = 2000;
/// The most payload bytes one poll round gathers.
const ROUND_BYTES: usize = 2 * 1024 * 1024;
/// How long one poll round waits for more messages once it has some.
const ROUND_LINGER: Duration = Duration::from_millis(5);
/// How long a poll waits when nothing comes.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// What the polling thread and the source's tasks share.
pub struct Shared {
    tracker: Mutex<OffsetTracker>,
    settled: Condvar,
    /// Set when the source stops reading: polling ends, commits go on.
    pub stop_polling: AtomicBool,
    /// Set when every acknowledgement is in: the last commit is made and the consumer closes.
    pub finished: AtomicBool,
}

impl Shared {
    /// Nothing tracked yet.
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            tracker: Mutex::new(OffsetTracker::new()),
            settled: Condvar::new(),
            stop_polling: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        })
    }

    /// The tracker, locked.
    pub fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        match self.tracker.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records a batch's outcome and wakes a revocation waiting for it.
    pub fn settle(&self, span: &Span, status: auditflow_core::ack::BatchStatus) {
        self.tracker().settle(span, status);
        self.settled.notify_all();
    }

    /// The source has stopped: polling ends, a revocation waits no more, and
    /// the thread makes its last commit and closes the consumer.
    pub fn finish(&self) {
        // Set under the lock a revocation waits with, so its wake-up cannot be missed.
        let tracker = self.tracker();
        self.stop_polling.store(true, Ordering::Release);
        self.finished.store(true, Ordering::Release);
        drop(tracker);
        self.settled.notify_all();
    }
}

/// A batch of one partition's messages, framed.
#[derive(Debug)]
pub struct Polled {
    /// Its offsets, as tracked.
    pub span: Span,
    /// Its lines and documents.
    pub frames: Vec<Frame>,
    /// Which message each run of frames came from.
    pub origins: FrameOrigins,
}

/// The source's own series besides the component metrics.
#[derive(Clone)]
pub struct KafkaMetrics {
    component: ComponentMetrics,
    messages: Counter,
    commits: Counter,
    failed_commits: Counter,
    /// Failed commits are logged once per interval (they repeat while the brokers are down).
    commit_warning: SharedThrottle,
}

impl KafkaMetrics {
    /// The series of the source whose component metrics are `component`.
    pub fn new(component: &ComponentMetrics) -> KafkaMetrics {
        let registry = component.registry();
        let labels = component.labels_with(&[]);
        KafkaMetrics {
            messages: registry.counter(
                "auditflow_kafka_consumed_messages_total",
                "Kafka messages a kafka source read.",
                &labels,
            ),
            commits: registry.counter(
                "auditflow_kafka_commits_total",
                "Offset commits a kafka source made.",
                &labels,
            ),
            failed_commits: registry.counter(
                "auditflow_kafka_failed_commits_total",
                "Offset commits of a kafka source that failed (tried again).",
                &labels,
            ),
            component: component.clone(),
            commit_warning: SharedThrottle::new(Duration::from_secs(10)),
        }
    }

    fn rebalance(&self, event: &str) {
        self.component
            .registry()
            .counter(
                "auditflow_kafka_rebalances_total",
                "Partitions assigned to or revoked from a kafka source.",
                &self.component.labels_with(&[("event", event)]),
            )
            .add(1);
    }

    fn lag(&self, topic: &str, partition: i32, lag: i64) {
        let partition = partition.to_string();
        self.component
            .registry()
            .gauge(
                LAG,
                "Messages of a partition not yet read by a kafka source (librdkafka's statistics).",
                &self
                    .component
                    .labels_with(&[("topic", topic), ("partition", &partition)]),
            )
            .set(lag);
    }

    /// A partition no longer read: its lag series goes.
    fn forget_lag(&self, topic: &str, partition: i32) {
        let partition = partition.to_string();
        self.component.registry().remove(
            LAG,
            &self
                .component
                .labels_with(&[("topic", topic), ("partition", &partition)]),
        );
    }

    /// Counts a failed commit, and logs it once per interval, saying what happens `then`.
    fn commit_failed(&self, log: &ComponentLog, error: &KafkaError, then: &str) {
        self.failed_commits.add(1);
        let allowed = self.commit_warning.allow();
        if let Some(more) = allowed {
            tracing::warn!(component_id = %log.component_id(), "committing offsets failed: {error}; {then} ({more} more failed commits since the last warning)");
        }
    }
}

/// The consumer lag gauge.
const LAG: &str = "auditflow_kafka_consumer_lag";

/// The consumer's context: logs, statistics and rebalances.
pub struct SourceClient {
    log: ComponentLog,
    shared: Arc<Shared>,
    drain_timeout: Duration,
    metrics: KafkaMetrics,
}

impl SourceClient {
    /// The context of the source's consumer.
    pub fn new(
        log: ComponentLog,
        shared: Arc<Shared>,
        drain_timeout: Duration,
        metrics: KafkaMetrics,
    ) -> SourceClient {
        SourceClient {
            log,
            shared,
            drain_timeout,
            metrics,
        }
    }

    /// Waits for the revoked partitions' batches, then commits their offsets.
    fn hand_over(&self, consumer: &BaseConsumer<SourceClient>, revoked: &TopicPartitionList) {
        let partitions: Vec<TopicPartition> = revoked
            .elements()
            .iter()
            .map(|element| (Arc::from(element.topic()), element.partition()))
            .collect();
        let deadline = Instant::now() + self.drain_timeout;
        let mut tracker = self.shared.tracker();
        let open = |tracker: &OffsetTracker| {
            partitions
                .iter()
                .map(|p| tracker.open_batches(p))
                .sum::<usize>()
        };
        while open(&tracker) > 0 && !self.shared.finished.load(Ordering::Acquire) {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(component_id = %self.log.component_id(), "{} batches of the revoked partitions were not acknowledged within drain_timeout; their offsets are not committed, so the next owner reads them again", open(&tracker));
                break;
            }
            tracker = match self.shared.settled.wait_timeout(tracker, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        let offsets: Vec<(TopicPartition, i64)> = partitions
            .iter()
            .filter_map(|p| Some((p.clone(), tracker.revoke(p)?)))
            .collect();
        drop(tracker);
        for (topic, partition) in &partitions {
            self.metrics.forget_lag(topic, *partition);
        }
        if let Err(error) = commit(consumer, &offsets, CommitMode::Sync, &self.metrics) {
            self.metrics.commit_failed(
                &self.log,
                &error,
                "the next owner of these partitions reads from their last commit",
            );
        }
    }
}

impl ClientContext for SourceClient {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        for (name, topic) in &statistics.topics {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics.lag(name, *partition, stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for SourceClient {
    fn pre_rebalance(&self, consumer: &BaseConsumer<SourceClient>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(revoked) => {
                self.metrics.rebalance("revoke");
                tracing::info!(component_id = %self.log.component_id(), "partitions revoked: {}", describe(revoked));
                self.hand_over(consumer, revoked);
            }
            Rebalance::Assign(assigned) => {
                self.metrics.rebalance("assign");
                let mut tracker = self.shared.tracker();
                for element in assigned.elements() {
                    tracker.assign((Arc::from(element.topic()), element.partition()));
                }
                drop(tracker);
                tracing::info!(component_id = %self.log.component_id(), "partitions assigned: {}", describe(assigned));
            }
            Rebalance::Error(error) => {
                // librdkafka unassigns every partition: nothing tracked may be committed any more.
                self.shared.tracker().forget_all();
                tracing::warn!(component_id = %self.log.component_id(), "rebalance failed: {error}; the partitions are given up, and read from their last commit once assigned again");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let Err(error) = result else {
            return;
        };
        self.metrics
            .commit_failed(&self.log, &error, "tried again at the next commit");
        let mut tracker = self.shared.tracker();
        for element in offsets.elements() {
            if let Offset::Offset(offset) = element.offset() {
                let partition = (Arc::from(element.topic()), element.partition());
                tracker.retry_commit(&partition, offset);
            }
        }
    }
}

fn describe(list: &TopicPartitionList) -> String {
    let names: Vec<String> = list
        .elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Commits offsets (the next offset to read of each partition). An
/// asynchronous commit that fails at the broker is reported to
/// [`SourceClient`]'s commit callback; this returns what fails at once.
fn commit(
    consumer: &BaseConsumer<SourceClient>,
    offsets: &[(TopicPartition, i64)],
    mode: CommitMode,
    metrics: &KafkaMetrics,
) -> KafkaResult<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&list, mode)?;
    metrics.commits.add(1);
    Ok(())
}

/// What the polling thread needs besides the consumer.
pub struct PollLoop {
    /// The consumer, subscribed.
    pub consumer: BaseConsumer<SourceClient>,
    /// Shared with the source's tasks.
    pub shared: Arc<Shared>,
    /// Where framed batches go; closed once polling stops, so the source sends what is left.
    pub batches: Option<mpsc::Sender<Polled>>,
    /// The longest line or document of a message accepted.
    pub max_line_bytes: usize,
    /// How often acknowledged offsets are committed.
    pub commit_interval: Duration,
    /// The source's metrics.
    pub metrics: KafkaMetrics,
    /// The source's log.
    pub log: ComponentLog,
    /// Read failures are logged once per interval.
    pub read_warning: Throttle,
    /// Rewinds are logged once per interval.
    pub rewind_warning: Throttle,
    /// The waits between rewinds of a partition that follow each other.
    pub backoff: Backoff,
    /// When each partition may be sought back again.
    pub rewind_backoff: BTreeMap<TopicPartition, RewindBackoff>,
}

/// How soon a partition may be rewound again.
#[derive(Debug, Default)]
pub struct RewindBackoff {
    due: Option<Instant>,
    last: Option<Instant>,
    rewinds: u32,
}

/// Rewinds further apart than this start the backoff over.
const REWIND_CALM: Duration = Duration::from_secs(60);

impl RewindBackoff {
    /// Records a rewind made `now`; the wait before the partition's next one.
    fn next(&mut self, now: Instant, backoff: &mut Backoff) -> Duration {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) > REWIND_CALM)
        {
            self.rewinds = 0;
        }
        let wait = backoff.wait(self.rewinds);
        self.rewinds = self.rewinds.saturating_add(1);
        self.last = Some(now);
        self.due = Some(now + wait);
        wait
    }
}

impl PollLoop {
    /// Polls until told to stop, then commits until every acknowledgement is in, and closes.
    pub fn run(mut self) {
        let mut last_commit = Instant::now();
        while !self.shared.stop_polling.load(Ordering::Acquire) {
            self.seek_rewinds();
            if last_commit.elapsed() >= self.commit_interval {
                self.commit_acknowledged(CommitMode::Async);
                last_commit = Instant::now();
            }
            if !self.poll_round() {
                break;
            }
        }
        self.batches = None;
        // Read no more: polling now serves only librdkafka's events (commit results, rebalances).
        if let Ok(assignment) = self.consumer.assignment() {
            let _ = self.consumer.pause(&assignment);
        }
        while !self.shared.finished.load(Ordering::Acquire) {
            self.commit_acknowledged(CommitMode::Async);
            // Serves the commit callbacks (and librdkafka's other events) while waiting.
            self.consumer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(50));
        }
        self.commit_acknowledged(CommitMode::Sync);
        tracing::info!(component_id = %self.log.component_id(), "kafka consumer closing");
    }

    fn commit_acknowledged(&self, mode: CommitMode) {
        let offsets = self.shared.tracker().take_commits();
        if let Err(error) = commit(&self.consumer, &offsets, mode, &self.metrics) {
            self.metrics
                .commit_failed(&self.log, &error, "tried again at the next commit");
            let mut tracker = self.shared.tracker();
            for (partition, offset) in &offsets {
                tracker.retry_commit(partition, *offset);
            }
        }
    }

    /// Seeks back the partitions a failed batch rewound. Until its seek is
    /// made, nothing read from a partition is sent; a seek that fails is tried
    /// again at the next round. A partition rewound again soon after its last
    /// rewind waits a backoff first (a sink that fails at once would otherwise
    /// have it read again at full speed).
    fn seek_rewinds(&mut self) {
        let rewinds = self.shared.tracker().rewinds();
        let now = Instant::now();
        for ((topic, partition), offset) in rewinds {
            let key = (topic.clone(), partition);
            let backoff = self.rewind_backoff.entry(key.clone()).or_default();
            if backoff.due.is_some_and(|due| now < due) {
                continue;
            }
            let sought = self.consumer.seek(
                &topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            );
            let allowed = self.rewind_warning.allow();
            let Err(error) = sought else {
                self.shared.tracker().rewound(&key, offset);
                let wait = backoff.next(now, &mut self.backoff);
                if let Some(more) = allowed {
                    tracing::warn!(component_id = %self.log.component_id(), "a batch of {topic}[{partition}] was not delivered; reading again from offset {offset}, its next rewind waits {wait:?} ({more} more such rewinds since the last warning)");
                }
                continue;
            };
            if allowed.is_some() {
                tracing::error!(component_id = %self.log.component_id(), "cannot seek {topic}[{partition}] back to {offset}: {error}; nothing more of it is sent until the seek succeeds (tried again at each round)");
            }
        }
    }

    /// One round: poll what comes within a few milliseconds, hand it over by
    /// partition. `false` when the source's task is gone.
    fn poll_round(&mut self) -> bool {
        let round = self.gather_round();
        for (partition, gathered) in round {
            // Read across a rebalance or a rewind: the partition's next owner, or
            // the seek, reads these messages again.
            let Some(generation) = gathered.generation else {
                continue;
            };
            let opened =
                self.shared
                    .tracker()
                    .open(partition, generation, gathered.first, gathered.last);
            let (Some(span), Some(batches)) = (opened, &self.batches) else {
                continue;
            };
            let polled = Polled {
                span,
                frames: gathered.frames,
                origins: gathered.origins,
            };
            if batches.blocking_send(polled).is_err() {
                return false;
            }
        }
        true
    }

    /// Polls up to a round's worth of messages, framed by partition.
    fn gather_round(&mut self) -> BTreeMap<TopicPartition, Gathered> {
        let mut round: BTreeMap<TopicPartition, Gathered> = BTreeMap::new();
        let (mut messages, mut bytes) = (0usize, 0usize);
        let mut deadline: Option<Instant> = None;
        while messages < ROUND_MESSAGES && bytes < ROUND_BYTES {
            let wait = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => IDLE_POLL,
            };
            let message = match self.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    if let Some(more) = self.read_warning.allow() {
                        tracing::warn!(component_id = %self.log.component_id(), "reading from Kafka failed: {error} ({more} more such failures since the last warning); librdkafka keeps trying");
                    }
                    break;
                }
            };
            deadline.get_or_insert_with(|| Instant::now() + ROUND_LINGER);
            messages += 1;
            self.metrics.messages.add(1);
            let payload = message.payload().unwrap_or_default();
            bytes += payload.len();
            self.metrics
                .component
                .received_bytes
                .add(payload.len() as u64);
            // One shared name per topic in a round.
            let topic: Arc<str> = match round.keys().find(|(t, _)| **t == *message.topic()) {
                Some((topic, _)) => topic.clone(),
                None => Arc::from(message.topic()),
            };
            let partition = message.partition();
            let gathered = match round.entry((topic.clone(), partition)) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    // The generation the batch belongs to is the one its first message was read in.
                    let generation = self.shared.tracker().generation(entry.key());
                    entry.insert(Gathered::new(
                        generation,
                        message.offset(),
                        self.max_line_bytes,
                    ))
                }
            };
            // A batch that will be dropped (its partition waits for a seek, or is
            // not assigned) is not framed.
            if gathered.generation.is_some() {
                gathered.add(origin_of(&message, topic), payload);
            }
        }
        round
    }
}

/// Where a message was read, with its key and headers.
fn origin_of(message: &BorrowedMessage<'_>, topic: Arc<str>) -> Arc<MessageOrigin> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    (
                        header.key.to_string(),
                        header.value.map(text).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Arc::new(MessageOrigin {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(text),
        headers,
    })
}

/// One partition's messages of a round.
struct Gathered {
    /// The partition's generation when its first message of the round was read
    /// (`None`: not assigned, or waiting for a seek back).
    generation: Option<u64>,
    first: i64,
    last: i64,
    frames: Vec<Frame>,
    origins: FrameOrigins,
    max_line_bytes: usize,
}

impl Gathered {
    fn new(generation: Option<u64>, first: i64, max_line_bytes: usize) -> Gathered {
        Gathered {
            generation,
            first,
            last: first,
            frames: Vec::new(),
            origins: Vec::new(),
            max_line_bytes,
        }
    }

    /// Frames one message: NDJSON lines, or JSON documents (an EventList, pretty or not).
    fn add(&mut self, origin: Arc<MessageOrigin>, payload: &[u8]) {
        self.last = origin.offset;
        let frames_before = self.frames.len();
        let mut framer = LineFramer::new(self.max_line_bytes);
        let mut assembler = DocumentAssembler::new(self.max_line_bytes);
        let mut lines = Vec::new();
        framer.push_shared(Bytes::copy_from_slice(payload), &mut lines);
        lines.extend(framer.finish());
        for line in lines {
            self.frames.extend(assembler.push_line(line));
        }
        self.frames.extend(assembler.finish());
        self.origins
            .push((self.frames.len() - frames_before, origin));
    }
}
