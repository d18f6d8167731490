//! The `file` source: tails files such as the kube-apiserver's rotated `audit.log`.
//!
//! # The model
//!
//! The source runs one task. Every `glob_interval` it expands the `include`
//! globs ([`discovery`]) and looks at what it finds; in between it reads the
//! files it has open in turns ([`reader`]), round-robin, one batch (about
//! 1 MiB, ~1000 audit events) per file per turn, and sleeps for
//! `poll_interval` only when no file had anything new. The lines of a turn are
//! decoded on tokio's blocking pool while the next turn is read, and sent in
//! order ([`batch`]).
//!
//! A file's *content* is recognised by a checksum of its first line
//! ([`fingerprint`]); its device and inode tell a renamed file from a new one
//! while it is open. Progress is kept per content, not per path, so that:
//! - a renamed file (lumberjack rotation) keeps being read through its open
//!   handle to its end, and the new `audit.log` is read from its start;
//! - a copy of a file (copytruncate's copy, a `.gz` backup compressed after
//!   rotation) resumes where the original was left: nothing is read twice;
//! - a file that shrinks under an open handle, or whose first line changes, was
//!   truncated and is read again from offset 0.
//!
//! Every batch carries an acknowledgement handle; the offset of a content is
//! *committed* only once every batch before it has been delivered by the
//! sinks ([`progress`]). Committed offsets are saved to
//! `data_dir/<id>/checkpoints.json` atomically at most every `checkpoint_interval` and at
//! shutdown ([`checkpoint`]), so after a crash every event is delivered again
//! from the last committed offset: nothing is lost, and the only duplicates
//! are the events that were in flight.
//!
//! ```toml
//! [sources.apiserver]
//! type = "file"
//! include = ["/var/log/kubernetes/audit/audit*.log"]
//! exclude = []                  # globs of paths never read
//! read_from = "beginning"       # or "end": where files found at the very first start begin
//! max_line_bytes = 4194304      # longer lines go to `apiserver.errors`
//! glob_interval = "1s"          # how often include is expanded again
//! poll_interval = "250ms"       # how long to wait when no file has new data
//! checkpoint_interval = "1s"    # how often committed offsets are saved at most
//! ignore_older = "7d"           # skip files not modified for that long (default: none)
//! fingerprint = { max_bytes = 4096 }   # how much of the first line identifies a file
//! ```

pub mod batch;
pub mod checkpoint;
pub mod discovery;
pub mod fingerprint;
mod metrics;
pub mod progress;
pub mod reader;
mod source;

#[cfg(test)]
mod tests;

use std::time::Duration;

use auditflow_core::component::{ComponentTask, SourceConfig, SourceContext};
use auditflow_core::config::duration::{deserialize_duration, deserialize_optional_duration};
use auditflow_core::config::{parse_options, OptionError};
use serde::Deserialize;

use crate::stdin::DEFAULT_MAX_LINE_BYTES;

/// The default bound on the first-line checksum.
pub const DEFAULT_FINGERPRINT_BYTES: usize = 4096;

/// Where the files found at the very first start (no checkpoint yet) begin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Read them whole.
    #[default]
    Beginning,
    /// Skip what they hold already; read only what is appended from now on.
    End,
}

/// How a file is recognised across renames, copies and compression.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintOptions {
    /// The checksum covers the first line, or its first `max_bytes` bytes if it is longer.
    #[serde(default = "default_fingerprint_bytes")]
    pub max_bytes: usize,
}

impl Default for FingerprintOptions {
    fn default() -> FingerprintOptions {
        FingerprintOptions {
            max_bytes: DEFAULT_FINGERPRINT_BYTES,
        }
    }
}

/// Options of the `file` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Globs of the files to read (`*` does not cross `/`; `**` does).
    pub include: Vec<String>,
    /// Globs of paths never read, even when `include` matches them.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where the files found at the very first start begin.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// The longest line accepted, in bytes; longer lines become `errors` records.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// How often `include` is expanded again to find new and renamed files.
    #[serde(
        default = "default_glob_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub glob_interval: Duration,
    /// How long to wait before reading again when no file had new data.
    #[serde(
        default = "default_poll_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub poll_interval: Duration,
    /// How often committed offsets are saved at most: a crash re-sends at most
    /// this long of deliveries, plus the events in flight.
    #[serde(
        default = "default_checkpoint_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub checkpoint_interval: Duration,
    /// How a file is recognised.
    #[serde(default)]
    pub fingerprint: FingerprintOptions,
    /// Files not modified for this long are not read.
    #[serde(default, deserialize_with = "deserialize_optional_duration")]
    pub ignore_older: Option<Duration>,
}

fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

fn default_fingerprint_bytes() -> usize {
    DEFAULT_FINGERPRINT_BYTES
}

fn default_glob_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_poll_interval() -> Duration {
    Duration::from_millis(250)
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}

/// The largest `fingerprint.max_bytes` accepted (it is read at every check of a file).
const MAX_FINGERPRINT_BYTES: usize = 1024 * 1024;

/// Checks the options table of a `file` source.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SourceConfig>, Vec<OptionError>> {
    let config: FileConfig = parse_options(options)?;
    let errors = check(&config);
    if errors.is_empty() {
        Ok(Box::new(config))
    } else {
        Err(errors)
    }
}

/// Every problem with values that have the right type but cannot work.
fn check(config: &FileConfig) -> Vec<OptionError> {
    let mut errors = Vec::new();
    if config.include.is_empty() {
        errors.push(OptionError::new(
            "include",
            "must name at least one glob, like [\"/var/log/kubernetes/audit/audit*.log\"]",
        ));
    }
    errors.extend(discovery::check_globs("include", &config.include));
    errors.extend(discovery::check_globs("exclude", &config.exclude));
    if config.max_line_bytes == 0 {
        errors.push(OptionError::new("max_line_bytes", "must be greater than 0"));
    }
    if !(1..=MAX_FINGERPRINT_BYTES).contains(&config.fingerprint.max_bytes) {
        errors.push(OptionError::new(
            "fingerprint.max_bytes",
            format!("must be between 1 and {MAX_FINGERPRINT_BYTES}"),
        ));
    }
    for (field, value) in [
        ("glob_interval", config.glob_interval),
        ("poll_interval", config.poll_interval),
        ("checkpoint_interval", config.checkpoint_interval),
    ] {
        if value.is_zero() {
            errors.push(OptionError::new(field, "must be longer than 0s"));
        }
    }
    errors
}

impl SourceConfig for FileConfig {
    fn decodes_inline(&self) -> bool {
        true
    }

    /// Files can always grow, but with `--once` the source ends once everything is read.
    fn can_end(&self) -> bool {
        true
    }

    fn build(&self, context: SourceContext) -> anyhow::Result<ComponentTask> {
        let source = source::FileSource::open(self.clone(), &context)?;
        Ok(Box::pin(source.run(context)))
    }
}
