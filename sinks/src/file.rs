//! The `file` sink: appends events to a file, one JSON object a line.
//!
//! Each batch is written with one write and flushed before its events are
//! acknowledged, so an acknowledged event is in the file (the operating
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

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use auditflow_core::ack::BatchStatus;
use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::{parse_options, OptionError};
use serde::Deserialize;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

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

async fn open(path: &Path) -> anyhow::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("cannot create the directory {}", parent.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| {
            format!(
                "cannot open {} for appending; check the path and its permissions",
                path.display()
            )
        })
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
        let written = match file.as_mut() {
            Some(handle) => write_batch(handle, &buffer).await,
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
    if let Some(mut handle) = file {
        handle.flush().await?;
        handle.sync_all().await?;
    }
    Ok(())
}

async fn write_batch(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes).await?;
    file.flush().await
}
