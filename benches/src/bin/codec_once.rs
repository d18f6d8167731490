//! The codec bench's work done once, for instruction counts.
//!
//! Decodes `EVENTS` generated events (seed 1, as `benches/codec.rs`) into
//! typed headers with raw bodies and writes them back, once, then prints how
//! many bytes it wrote. Wall-clock figures on a shared machine move by tens of
//! percent from run to run; instruction counts do not:
//!
//! ```sh
//! cargo build --release -p auditflow-benches --bin codec_once
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/codec.out \
//!     --toggle-collect='codec_once::codec' target/release/codec_once 10000 owned
//! callgrind_annotate /tmp/codec.out | head -30
//! ```
//!
//! The second argument picks the path: `parse` (`AuditEvent::parse` of a
//! `&str`, copying it) or `owned` (a source's path: the line's bytes copied,
//! checked as UTF-8, and kept as the event's text).

use std::sync::Arc;

use auditflow_benches::sample_lines;
use auditflow_core::event::{decode_document_each, AuditEvent, Event, Payload};

/// The allocator of the `auditflow` binary, so the counts are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().as_deref().unwrap_or("10000").parse()?;
    let variant = args.next().unwrap_or_else(|| "owned".to_string());
    let lines = sample_lines(events, 1);
    let out = codec(&lines, &variant)?;
    println!("{} events, {} bytes written", lines.len(), out);
    Ok(())
}

/// The measured part: every line decoded and written back; the bytes written.
///
/// Count only this with `--toggle-collect='codec_once::codec'`.
#[inline(never)]
fn codec(lines: &[String], variant: &str) -> anyhow::Result<usize> {
    let source_id: Arc<str> = "bench".into();
    let mut out = Vec::with_capacity(lines.iter().map(String::len).sum::<usize>() + lines.len());
    for line in lines {
        match variant {
            "parse" => {
                let event = AuditEvent::parse(line)?;
                let event = Event::new(Payload::Audit(Arc::new(event)), source_id.clone());
                event.write_json(&mut out)?;
                out.push(b'\n');
            }
            "owned" => {
                let text = String::from_utf8(line.as_bytes().to_vec())?;
                let mut result = Ok(());
                decode_document_each(text, |event| match event {
                    Ok(event) => {
                        let event = Event::new(Payload::Audit(Arc::new(event)), source_id.clone());
                        result = event.write_json(&mut out).map_err(anyhow::Error::from);
                        out.push(b'\n');
                    }
                    Err(error) => result = Err(anyhow::anyhow!("{}", error.error)),
                })
                .map_err(|(error, _)| anyhow::anyhow!("{error}"))?;
                result?;
            }
            other => anyhow::bail!("unknown variant {other}: use parse or owned"),
        }
    }
    Ok(out.len())
}
