//! The `stdin` source: audit events from standard input.
//!
//! Reads NDJSON (one event or `EventList` per line) and pretty-printed JSON
//! documents alike (see [`crate::framing`]). A line that is not an audit event
//! becomes an `errors` record and reading goes on. The source ends at EOF, so
//! `auditflow run --once` stops when the input is used up.
//!
//! A thread of its own reads standard input in chunks, a few ahead of the
//! pipeline (the channel between them is bounded, so a slow pipeline stops the
//! reads); the source task frames each chunk into lines without copying them
//! and hands groups of lines to the decoders, which run on the other cores.
//!
//! ```toml
//! [sources.in]
//! type = "stdin"
//! max_line_bytes = 4194304   # default 4 MiB; longer lines go to `in.errors`
//! ```

use auditflow_core::component::{ComponentTask, SourceConfig, SourceContext};
use auditflow_core::config::{parse_options, OptionError};
use std::io::Read;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::decode::{decode_parallelism, Decoded, OrderedDecoder};
use crate::framing::{DocumentAssembler, Frame, LineFramer};

/// The default longest line or document accepted.
pub const DEFAULT_MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// The most bytes one read takes.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// How many chunks the reading thread may be ahead of the source task.
const CHUNKS_AHEAD: usize = 4;

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
    fn decodes_inline(&self) -> bool {
        true
    }

    fn can_end(&self) -> bool {
        true
    }

    fn build(&self, context: SourceContext) -> anyhow::Result<ComponentTask> {
        let max = self.max_line_bytes;
        let chunks = spawn_reader("auditflow-stdin", std::io::stdin())?;
        Ok(Box::pin(read_stream(chunks, max, context)))
    }
}

/// Reads `input` to its end on a thread named `name`, handing out its chunks
/// (an error ends them); the thread stops at the end of the input, or at its
/// next read after the receiver is gone.
pub fn spawn_reader(
    name: &str,
    mut input: impl Read + Send + 'static,
) -> anyhow::Result<mpsc::Receiver<std::io::Result<Bytes>>> {
    let (chunks, receiver) = mpsc::channel(CHUNKS_AHEAD);
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || loop {
            let mut chunk = BytesMut::zeroed(READ_BUFFER_BYTES);
            let read = match input.read(&mut chunk) {
                Ok(0) => return,
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let _ = chunks.blocking_send(Err(error));
                    return;
                }
            };
            chunk.truncate(read);
            if chunks.blocking_send(Ok(chunk.freeze())).is_err() {
                return;
            }
        })?;
    Ok(receiver)
}

/// Reads a stream of chunks to its end (or until shutdown), sending events as they are decoded.
pub async fn read_stream(
    mut chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    max_line_bytes: usize,
    context: SourceContext,
) -> anyhow::Result<()> {
    let mut framer = LineFramer::new(max_line_bytes);
    let mut assembler = DocumentAssembler::new(max_line_bytes);
    let mut decoder = OrderedDecoder::new(
        context.id.clone(),
        decode_parallelism(),
        context.inline_transforms(),
    );
    let mut frames = Vec::new();
    let mut reading = true;
    // One chunk read ahead while every decoding slot is busy: reading overlaps decoding.
    let mut read_ahead: Option<Vec<Frame>> = None;
    while reading || read_ahead.is_some() || !decoder.is_empty() {
        if !decoder.is_full() {
            if let Some(chunk) = read_ahead.take() {
                decoder.submit(chunk);
            }
        }
        tokio::select! {
            biased;
            decoded = decoder.next(), if !decoder.is_empty() => {
                if let Some(decoded) = decoded.transpose()? {
                    if !send_decoded(&context, decoded).await {
                        break;
                    }
                }
            }
            chunk = chunks.recv(), if reading && read_ahead.is_none() => {
                match chunk.transpose()? {
                    Some(chunk) => {
                        context.metrics.received_bytes.add(chunk.len() as u64);
                        framer.push_shared(chunk, &mut frames);
                    }
                    None => {
                        reading = false;
                        frames.extend(framer.finish());
                    }
                }
                let chunk = assemble(&mut assembler, &mut frames, !reading);
                if decoder.is_full() {
                    read_ahead = Some(chunk);
                } else {
                    decoder.submit(chunk);
                }
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
    context
        .send_transform_errors(decoded.transform_errors)
        .await;
    decoded.events.is_empty() || context.send(decoded.events).await
}
