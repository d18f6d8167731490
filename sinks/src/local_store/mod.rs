//! The `local_store` sink: an embedded, searchable store of audit events and alerts.
//!
//! ```toml
//! [sinks.store]
//! type = "local_store"
//! inputs = ["apiserver", "detect.alerts"]
//! retention_days = 90          # default 90
//! ```
//!
//! Events are stored under `data_dir/<sink id>/`, one SQLite database per UTC
//! day (`2026-11-24.sqlite`, see [`partition`]), in WAL mode so that
//! `auditflow query` reads while the pipeline writes. The header fields are
//! indexed columns and the whole event is kept compressed ([`schema`]).
//!
//! The model: the async task collects events from its input and hands them to
//! a blocking thread, where the [`writer::Writer`] writes each day's part in
//! one transaction, in blocks of events ([`block`]). Events are written
//! together once `batch.max_events` have come, or the oldest has waited
//! `batch.timeout`, and only when the writer is free: while it writes, the
//! next events are collected (up to `batch.max_events`), so the pipeline keeps
//! reading and a busy store writes bigger, better-compressed blocks. Only after
//! every part is committed are the events acknowledged, so a source's
//! checkpoint never moves past an event that is not stored. A delivery that is
//! replayed after a crash stores nothing twice (the `seen` table).
//!
//! Retention deletes whole day files (no `DELETE`, no vacuum) at start and
//! every hour: a day is deleted once all of it is older than `retention_days`.
//! Events that arrive for a day retention has already deleted are not stored
//! (counted in `discarded_events`).
//!
//! [`read`] is the read side, shared with `auditflow query`.

pub mod block;
pub mod partition;
pub mod read;
pub mod schema;
pub mod seen;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use auditflow_core::ack::BatchStatus;
use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::duration::deserialize_duration;
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::Event;
use serde::Deserialize;

use writer::{WriteSummary, Writer};

/// The `type` name of the sink.
pub const TYPE_NAME: &str = "local_store";

/// The most events written in one go, by default.
pub const MAX_WRITE_EVENTS: usize = 16_384;

/// How often retention runs after the run at start.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

fn default_retention_days() -> u32 {
    90
}

fn default_compression_level() -> i32 {
    1
}

fn default_max_events() -> usize {
    MAX_WRITE_EVENTS
}

fn default_batch_timeout() -> Duration {
    Duration::from_secs(1)
}

/// When collected events are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreBatch {
    /// The most events written in one transaction (and collected while the writer is busy).
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// How long the oldest collected event waits for more before they are written.
    #[serde(
        default = "default_batch_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
}

impl Default for StoreBatch {
    fn default() -> Self {
        StoreBatch {
            max_events: default_max_events(),
            timeout: default_batch_timeout(),
        }
    }
}

/// Options of the `local_store` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalStoreConfig {
    /// Days of events kept; older day partitions are deleted.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// The zstd level events are compressed with (1 fastest to 19 smallest).
    #[serde(default = "default_compression_level")]
    pub compression_level: i32,
    /// When collected events are written.
    #[serde(default)]
    pub batch: StoreBatch,
}

/// Checks the options table of a `local_store` sink.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    let config: LocalStoreConfig = parse_options(options)?;
    let mut errors = Vec::new();
    if config.retention_days == 0 {
        errors.push(OptionError::new(
            "retention_days",
            "must be at least 1 (the number of days of events to keep)",
        ));
    }
    if !(1..=19).contains(&config.compression_level) {
        errors.push(OptionError::new(
            "compression_level",
            "must be between 1 (fastest) and 19 (smallest)",
        ));
    }
    if config.batch.max_events == 0 {
        errors.push(OptionError::new(
            "batch.max_events",
            "must be at least 1 (the most events written together)",
        ));
    }
    if errors.is_empty() {
        Ok(Box::new(config))
    } else {
        Err(errors)
    }
}

/// The directory of a `local_store` sink's partitions: `data_dir/<sink id>`.
pub fn store_dir(data_dir: &Path, sink_id: &str) -> PathBuf {
    data_dir.join(sink_id)
}

impl SinkConfig for LocalStoreConfig {
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask> {
        Ok(Box::pin(run(self.clone(), context)))
    }
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Runs a job on the writer in a blocking thread and hands the writer back.
async fn on_writer<T: Send + 'static>(
    mut writer: Writer,
    job: impl FnOnce(&mut Writer) -> T + Send + 'static,
) -> anyhow::Result<(Writer, T)> {
    tokio::task::spawn_blocking(move || {
        let result = job(&mut writer);
        (writer, result)
    })
    .await
    .context("the local_store writer thread failed")
}

/// A write running on the blocking pool: it hands back the writer, the events and the outcome.
type Writing = tokio::task::JoinHandle<(Writer, Vec<Event>, anyhow::Result<WriteSummary>)>;

/// Events collected for the next write.
struct Collected {
    events: Vec<Event>,
    since: Option<tokio::time::Instant>,
}

impl Collected {
    fn push(&mut self, batch: Vec<Event>) {
        if self.events.is_empty() {
            self.since = Some(tokio::time::Instant::now());
        }
        self.events.extend(batch);
    }

    fn take(&mut self) -> Vec<Event> {
        self.since = None;
        std::mem::take(&mut self.events)
    }
}

async fn run(config: LocalStoreConfig, mut context: SinkContext) -> anyhow::Result<()> {
    let dir = store_dir(&context.data_dir, &context.id);
    let writer = tokio::task::spawn_blocking(move || {
        Writer::new(dir, config.retention_days, config.compression_level)
    })
    .await??;
    let id = context.id.to_string();
    let (writer, ()) = on_writer(writer, move |w| retain(w, &id)).await?;
    let mut writer = Some(writer);
    let start = tokio::time::Instant::now() + RETENTION_INTERVAL;
    let mut retention = tokio::time::interval_at(start, RETENTION_INTERVAL);
    let mut writing: Option<Writing> = None;
    let mut collected = Collected {
        events: Vec::new(),
        since: None,
    };
    let mut input_open = true;
    loop {
        let full = collected.events.len() >= config.batch.max_events;
        let due = collected.since.map(|since| since + config.batch.timeout);
        let now = tokio::time::Instant::now();
        let ready = full || !input_open || due.is_some_and(|due| due <= now);
        if !collected.events.is_empty() && ready {
            if let Some(idle) = writer.take() {
                writing = Some(start_write(idle, collected.take()));
            }
        }
        if !input_open && writing.is_none() && collected.events.is_empty() {
            break;
        }
        tokio::select! {
            finished = finish(&mut writing) => {
                writing = None;
                let (idle, batch, result) = finished.context("the local_store writer thread failed")?;
                writer = Some(idle);
                report(batch, result, &context);
            }
            batch = context.input.recv(), if input_open && !full => match batch {
                Some(batch) => collected.push(batch),
                None => input_open = false,
            },
            _ = sleep_until(due), if writer.is_some() && !collected.events.is_empty() => {}
            _ = retention.tick(), if writer.is_some() => {
                if let Some(idle) = writer.take() {
                    let id = context.id.to_string();
                    let (idle, ()) = on_writer(idle, move |w| retain(w, &id)).await?;
                    writer = Some(idle);
                }
            }
        }
    }
    if let Some(idle) = writer {
        on_writer(idle, Writer::close).await?;
    }
    Ok(())
}

/// Writes `batch` on the blocking pool.
fn start_write(mut writer: Writer, batch: Vec<Event>) -> Writing {
    tokio::task::spawn_blocking(move || {
        let result = writer.write(&batch, now_micros());
        (writer, batch, result)
    })
}

/// The end of the running write; never, when none runs.
async fn finish(
    writing: &mut Option<Writing>,
) -> Result<(Writer, Vec<Event>, anyhow::Result<WriteSummary>), tokio::task::JoinError> {
    match writing {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `due`; never, when there is none.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Acknowledges a written batch, or reports it as not delivered.
fn report(batch: Vec<Event>, result: anyhow::Result<WriteSummary>, context: &SinkContext) {
    match result {
        Ok(summary) => acknowledge(batch, summary, context),
        Err(error) => {
            tracing::error!(component_id = %context.id, "{error:#}; the batch is reported as not delivered and will be sent again");
            context.failed(batch, BatchStatus::Errored, "write_failed");
        }
    }
}

fn acknowledge(batch: Vec<Event>, summary: WriteSummary, context: &SinkContext) {
    let skipped = summary.expired + summary.unsupported;
    if skipped > 0 {
        context.metrics.discarded_events.add(skipped as u64);
    }
    if summary.duplicates > 0 {
        tracing::debug!(component_id = %context.id, "{} events were stored already (a replay)", summary.duplicates);
    }
    context.delivered(batch, summary.bytes);
}

fn retain(writer: &mut Writer, id: &str) {
    match writer.apply_retention(now_micros()) {
        Ok(deleted) => {
            for path in deleted {
                tracing::info!(component_id = %id, "retention: deleted {}", path.display());
            }
        }
        Err(error) => {
            tracing::warn!(component_id = %id, "retention in {} failed: {error:#}; retrying in an hour", writer.dir().display())
        }
    }
}

#[cfg(test)]
mod tests;
