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
//! The model: the async task gathers the batches waiting in its input (up to
//! [`MAX_WRITE_EVENTS`]) and hands them to a blocking thread, where the
//! [`writer::Writer`] writes each day's part in one transaction. Only after every
//! part is committed are the events acknowledged, so a source's checkpoint never
//! moves past an event that is not stored. A delivery that is replayed after a
//! crash stores nothing twice (`UNIQUE (time, audit_id, stage)`, `INSERT OR IGNORE`).
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
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use auditflow_core::ack::BatchStatus;
use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::Event;
use serde::Deserialize;

use writer::{WriteSummary, Writer};

/// The `type` name of the sink.
pub const TYPE_NAME: &str = "local_store";

/// The most events written in one go (gathered from the batches waiting in the input).
pub const MAX_WRITE_EVENTS: usize = 16_384;

/// How often retention runs after the run at start.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

fn default_retention_days() -> u32 {
    90
}

fn default_compression_level() -> i32 {
    3
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

async fn run(config: LocalStoreConfig, mut context: SinkContext) -> anyhow::Result<()> {
    let dir = store_dir(&context.data_dir, &context.id);
    let writer = tokio::task::spawn_blocking(move || {
        Writer::new(dir, config.retention_days, config.compression_level)
    })
    .await??;
    let id = context.id.to_string();
    let (mut writer, ()) = on_writer(writer, move |w| retain(w, &id)).await?;
    let start = tokio::time::Instant::now() + RETENTION_INTERVAL;
    let mut retention = tokio::time::interval_at(start, RETENTION_INTERVAL);
    loop {
        tokio::select! {
            batch = context.input.recv() => {
                let Some(batch) = batch else { break };
                let batch = gather(batch, &mut context);
                writer = write_batch(writer, batch, &context).await?;
            }
            _ = retention.tick() => {
                let id = context.id.to_string();
                (writer, ()) = on_writer(writer, move |w| retain(w, &id)).await?;
            }
        }
    }
    on_writer(writer, Writer::close).await?;
    Ok(())
}

/// Adds the batches already waiting in the input to `batch`, up to [`MAX_WRITE_EVENTS`].
fn gather(mut batch: Vec<Event>, context: &mut SinkContext) -> Vec<Event> {
    while batch.len() < MAX_WRITE_EVENTS {
        match context.input.try_recv() {
            Some(more) => batch.extend(more),
            None => break,
        }
    }
    batch
}

async fn write_batch(
    writer: Writer,
    batch: Vec<Event>,
    context: &SinkContext,
) -> anyhow::Result<Writer> {
    let (writer, (batch, result)) = on_writer(writer, move |w| {
        let result = w.write(&batch, now_micros());
        (batch, result)
    })
    .await?;
    match result {
        Ok(summary) => acknowledge(batch, summary, context),
        Err(error) => {
            tracing::error!(component_id = %context.id, "{error:#}; the batch is reported as not delivered and will be sent again");
            context.failed(batch, BatchStatus::Errored, "write_failed");
        }
    }
    Ok(writer)
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
