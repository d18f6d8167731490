//! The `stdin` source: audit events from standard input.
//!
//! Reads NDJSON (one event or `EventList` per line) and pretty-printed JSON
//! documents alike (see [`crate::framing`]). A line that is not an audit event
//! becomes an `errors` record and reading goes on. The source ends at EOF, so
//! `auditflow run --once` stops when the input is used up.
//!
//! ```toml
//! [sources.in]
//! type = "stdin"
//! max_line_bytes = 4194304   # default 4 MiB; longer lines go to `in.errors`
//! ```

use auditflow_core::component::{ComponentTask, SourceConfig, SourceContext};
use auditflow_core::config::{parse_options, OptionError};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::decode::{decode_parallelism, Decoded, OrderedDecoder};
use crate::framing::{DocumentAssembler, Frame, LineFramer};

/// The default longest line or document accepted.
pub const DEFAULT_MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Options of the `stdin` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// The longest line (or pretty-printed document) accepted, in bytes.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

/// Checks the options table of a `stdin` source.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SourceConfig>, Vec<OptionError>> {
    let config: StdinConfig = parse_options(options)?;
    if config.max_line_bytes == 0 {
        return Err(vec![OptionError::new(
            "max_line_bytes",
            "must be greater than 0",
        )]);
    }
    Ok(Box::new(config))
}

impl SourceConfig for StdinConfig {
    fn can_end(&self) -> bool {
        true
    }

    fn build(&self, context: SourceContext) -> anyhow::Result<ComponentTask> {
        let max = self.max_line_bytes;
        Ok(Box::pin(read_stream(tokio::io::stdin(), max, context)))
    }
}

/// Reads a byte stream to its end (or until shutdown), sending events as they are decoded.
pub async fn read_stream(
    mut reader: impl AsyncRead + Unpin,
    max_line_bytes: usize,
    context: SourceContext,
) -> anyhow::Result<()> {
    let mut framer = LineFramer::new(max_line_bytes);
    let mut assembler = DocumentAssembler::new(max_line_bytes);
    let mut decoder = OrderedDecoder::new(context.id.clone(), decode_parallelism());
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let mut frames = Vec::new();
    let mut reading = true;
    while reading || !decoder.is_empty() {
        tokio::select! {
            biased;
            decoded = decoder.next(), if !decoder.is_empty() => {
                if let Some(decoded) = decoded {
                    if !send_decoded(&context, decoded).await {
                        break;
                    }
                }
            }
            read = reader.read(&mut buffer), if reading && !decoder.is_full() => {
                let read = read?;
                reading = read > 0;
                if read == 0 {
                    frames.extend(framer.finish());
                }
                context.metrics.received_bytes.add(read as u64);
                framer.push(&buffer[..read], &mut frames);
                decoder.submit(assemble(&mut assembler, &mut frames, !reading));
            }
            _ = context.shutdown.cancelled(), if reading => reading = false,
        }
    }
    Ok(())
}

fn assemble(assembler: &mut DocumentAssembler, frames: &mut Vec<Frame>, end: bool) -> Vec<Frame> {
    let mut documents: Vec<Frame> = frames
        .drain(..)
        .filter_map(|frame| assembler.push_line(frame))
        .collect();
    if end {
        documents.extend(assembler.finish());
    }
    documents
}

async fn send_decoded(context: &SourceContext, decoded: Decoded) -> bool {
    context.send_failures(decoded.failures, None).await;
    decoded.events.is_empty() || context.send(decoded.events).await
}
