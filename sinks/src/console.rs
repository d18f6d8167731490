//! The `console` sink: events on standard output.
//!
//! ```toml
//! [sinks.show]
//! type = "console"
//! inputs = ["detect.alerts"]
//! encoding = "text"          # or "ndjson" (default)
//! ```

use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::{parse_options, OptionError};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::encoding::{encode_batch, Encoding};

/// Options of the `console` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `ndjson` (default) or `text`.
    #[serde(default)]
    pub encoding: Encoding,
}

/// Checks the options table of a `console` sink.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    Ok(Box::new(parse_options::<ConsoleConfig>(options)?))
}

impl SinkConfig for ConsoleConfig {
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask> {
        Ok(Box::pin(run(self.encoding, context)))
    }
}

async fn run(encoding: Encoding, mut context: SinkContext) -> anyhow::Result<()> {
    let mut stdout = tokio::io::stdout();
    let mut buffer = Vec::new();
    while let Some(batch) = context.input.recv().await {
        buffer.clear();
        let unencodable = encode_batch(&batch, encoding, &mut buffer);
        if unencodable > 0 {
            context.metrics.error("encode_failed", unencodable as u64);
        }
        stdout.write_all(&buffer).await?;
        stdout.flush().await?;
        context.delivered(batch, buffer.len());
    }
    Ok(())
}
