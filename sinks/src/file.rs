//! The `file` sink: appends events to a file, one JSON object a line.
//!
//! Each batch is written with one write (on a blocking thread, straight from
//! the encoded batch, no copy in between) before its events are acknowledged, so an acknowledged event is in the file (the operating
//! system's page cache) even if auditflow is killed; the file is synced to disk
//! when the sink stops. A write that fails (a full disk) is counted as
//! `write_failed`, the batch is reported as not delivered, and the file is
//! reopened for the next batch.
//!
//! A write cut short (auditflow killed in the middle of one, a full disk)
//! can leave an unfinished last line. Its events were not acknowledged, so
//! they are sent again; when the sink opens the file it cuts that unfinished
//! line off first (logged, and counted as `unfinished_line_removed`), so that
//! the file holds only whole lines and the next event does not run into the
//! broken one.
//!
//! ```toml
//! [sinks.archive]
//! type = "file"
//! inputs = ["in"]
//! path = "/var/log/auditflow/audit.ndjson"
//! encoding = "ndjson"        # or "text"
//! ```

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
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

/// Opens the file for appending, cutting off an unfinished last line; gives how many bytes were cut.
async fn open(path: &Path) -> anyhow::Result<(Arc<std::fs::File>, u64)> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("cannot create the directory {}", parent.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| {
            format!(
                "cannot open {} for appending; check the path and its permissions",
                path.display()
            )
        })?;
    let file = file.into_std().await;
    let (file, cut) = tokio::task::spawn_blocking(move || {
        let cut = cut_unfinished_line(&file);
        (file, cut)
    })
    .await?;
    let cut = cut.with_context(|| {
        format!(
            "cannot check the end of {} for an unfinished line; check its permissions",
            path.display()
        )
    })?;
    Ok((Arc::new(file), cut))
}

/// Cuts the file after its last newline, if it does not end with one; returns the bytes cut.
fn cut_unfinished_line(file: &std::fs::File) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let length = file.metadata()?.len();
    let mut end = length;
    let mut chunk = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let part = chunk.get_mut(..(end - start) as usize).unwrap_or_default();
        file.read_exact_at(part, start)?;
        if let Some(newline) = memchr::memrchr(b'\n', part) {
            end = start + newline as u64 + 1;
            break;
        }
        end = start;
    }
    if end < length {
        file.set_len(end)?;
    }
    Ok(length - end)
}

/// Opens the file, telling of an unfinished line it cut off.
async fn open_reporting(
    config: &FileSinkConfig,
    context: &SinkContext,
) -> anyhow::Result<Arc<std::fs::File>> {
    let (file, cut) = open(&config.path).await?;
    if cut > 0 {
        tracing::warn!(component_id = %context.id, path = %config.path.display(), "cut an unfinished last line of {cut} bytes, left by a write that was cut short; its events were not acknowledged and are sent again");
        context.metrics.error("unfinished_line_removed", 1);
    }
    Ok(file)
}

async fn run(config: FileSinkConfig, mut context: SinkContext) -> anyhow::Result<()> {
    let mut file = Some(open_reporting(&config, &context).await?);
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
                file = open_reporting(&config, &context).await.ok();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(content: &[u8]) -> (Vec<u8>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, content).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        let removed = cut_unfinished_line(&file).unwrap();
        (std::fs::read(&path).unwrap(), removed)
    }

    #[test]
    fn an_unfinished_last_line_is_cut_and_whole_lines_stay() {
        assert_eq!(cut(b""), (b"".to_vec(), 0));
        assert_eq!(cut(b"{\"a\":1}\n"), (b"{\"a\":1}\n".to_vec(), 0));
        assert_eq!(cut(b"{\"a\":1}\n{\"b\":"), (b"{\"a\":1}\n".to_vec(), 5));
        assert_eq!(cut(b"{\"b\":"), (b"".to_vec(), 5));
        // Longer than one chunk read backwards.
        let mut long = b"first\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', 200_000));
        assert_eq!(cut(&long), (b"first\n".to_vec(), 200_000));
    }
}
