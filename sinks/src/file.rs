//! The `file` sink: appends events to a file, one JSON object a line.
//!
//! Each batch is written with one write (on a blocking thread, straight from
//! the encoded batch, no copy in between) before its events are acknowledged, so an acknowledged event is in the file (the operating
//! system's page cache) even if auditflow is killed; the file is synced to disk
//! when the sink stops. A write that fails (a full disk) is counted as
//! `write_failed`, the batch is reported as not delivered, and the file is
//! reopened for the next batch.
//!
//! ```toml
//! [sinks.archive]
//! type = "file"
//! inputs = ["in"]
//! path = "/var/log/auditflow/audit.ndjson"
//! encoding = "ndjson"        # or "text"
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use auditflow_core::ack::BatchStatus;
use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::{parse_options, OptionError};
use serde::Deserialize;
use tokio::fs::OpenOptions;

use crate::encoding::{encode_batch, Encoding};

/// Options of the `file` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to (created with its directories if missing).
    pub path: PathBuf,
    /// `ndjson` (default) or `text`.
    #[serde(default)]
    pub encoding: Encoding,
}

/// Checks the options table of a `file` sink.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    let config: FileSinkConfig = parse_options(options)?;
    if config.path.as_os_str().is_empty() {
        return Err(vec![OptionError::new("path", "must not be empty")]);
    }
    Ok(Box::new(config))
}

impl SinkConfig for FileSinkConfig {
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask> {
        Ok(Box::pin(run(self.clone(), context)))
    }
}

async fn open(path: &Path) -> anyhow::Result<Arc<std::fs::File>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("cannot create the directory {}", parent.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| {
            format!(
                "cannot open {} for appending; check the path and its permissions",
                path.display()
            )
        })?;
    Ok(Arc::new(file.into_std().await))
}

async fn run(config: FileSinkConfig, mut context: SinkContext) -> anyhow::Result<()> {
    let mut file = Some(open(&config.path).await?);
    let mut buffer = Vec::with_capacity(1 << 20);
    while let Some(batch) = context.input.recv().await {
        buffer.clear();
        let unencodable = encode_batch(&batch, config.encoding, &mut buffer);
        if unencodable > 0 {
            context.metrics.error("encode_failed", unencodable as u64);
        }
        let written = match &file {
            Some(handle) => {
                let result;
                (buffer, result) = write_batch(handle.clone(), buffer).await;
                result
            }
            None => Err(std::io::Error::other("the file is not open")),
        };
        match written {
            Ok(()) => context.delivered(batch, buffer.len()),
            Err(error) => {
                tracing::error!(component_id = %context.id, path = %config.path.display(), "write failed: {error}; the batch is reported as not delivered");
                context.failed(batch, BatchStatus::Errored, "write_failed");
                file = open(&config.path).await.ok();
            }
        }
    }
    if let Some(handle) = file {
        tokio::task::spawn_blocking(move || handle.sync_all()).await??;
    }
    Ok(())
}

/// Writes a batch on a blocking thread, handing the buffer back for the next batch.
async fn write_batch(file: Arc<std::fs::File>, bytes: Vec<u8>) -> (Vec<u8>, std::io::Result<()>) {
    let written = tokio::task::spawn_blocking(move || {
        let result = file.as_ref().write_all(&bytes);
        (bytes, result)
    })
    .await;
    written.unwrap_or_else(|error| {
        let lost = std::io::Error::other(format!("the write stopped unexpectedly: {error}"));
        (Vec::with_capacity(1 << 20), Err(lost))
    })
}
