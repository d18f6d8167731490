//! `auditflow policy explain`: which rule of an audit policy decides each event, and why.
//!
//! Reads audit events (NDJSON, or pretty-printed JSON documents; `Event` or
//! `EventList`) from a file or standard input through the same framing and
//! decoding as the `stdin` source, and prints one NDJSON line per event:
//! `{"auditID", "stage", "level", "rule", "omitted"}`, plus `"why"` with
//! `--why`. Input that cannot be decoded is reported on stderr with its line
//! number; the rest is still explained, and the exit code is 1 at the end.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use auditflow_core::component::InputFailure;
use auditflow_core::event::{AuditEvent, Event};
use auditflow_sources::decode::decode_frame;
use auditflow_sources::framing::{DocumentAssembler, Frame, LineFramer};
use auditflow_sources::stdin::DEFAULT_MAX_LINE_BYTES;
use auditflow_transforms::audit_policy::{load_policy, Policy, RequestAttributes};
use serde_json::{json, Value};

/// `auditflow policy ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// For each audit event, print the level an audit policy gives it and the rule that decides.
    Explain(ExplainArgs),
}

/// Options of `auditflow policy explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The audit policy (YAML, `audit.k8s.io/v1` Policy).
    #[arg(long)]
    pub policy: PathBuf,
    /// Also print, for each rule before the matching one, which of its conditions failed.
    #[arg(long)]
    pub why: bool,
    /// The audit events (NDJSON or JSON documents); standard input when absent.
    pub input: Option<PathBuf>,
}

/// Runs a `policy` subcommand.
pub fn policy(command: &PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Explain(args) => explain(args),
    }
}

fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let policy = match load_policy(&args.policy) {
        Ok(policy) => policy,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let (name, reader): (String, Box<dyn Read>) = match &args.input {
        Some(path) => (path.display().to_string(), Box::new(open(path)?)),
        None => ("<stdin>".to_string(), Box::new(std::io::stdin().lock())),
    };
    let mut explainer = Explainer {
        policy: &policy,
        why: args.why,
        input_name: name,
        failures: 0,
        out: BufWriter::new(std::io::stdout().lock()),
    };
    let result = read_documents(reader, |line, frame| explainer.document(line, frame));
    match result.and_then(|()| explainer.out.flush().map_err(Into::into)) {
        Ok(()) => {}
        Err(error) if is_broken_pipe(&error) => return Ok(ExitCode::SUCCESS),
        Err(error) => return Err(error),
    }
    Ok(if explainer.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn open(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// A closed pipe (`policy explain ... | head`) is a normal way to stop.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = match (
            cause.downcast_ref::<std::io::Error>(),
            cause.downcast_ref::<serde_json::Error>(),
        ) {
            (Some(io), _) => Some(io.kind()),
            (None, Some(json)) => json.io_error_kind(),
            (None, None) => None,
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Reads lines and documents, calling `document` with each one's first line number.
fn read_documents(
    mut reader: impl Read,
    mut document: impl FnMut(usize, Frame) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut framer = LineFramer::new(DEFAULT_MAX_LINE_BYTES);
    let mut assembler = DocumentAssembler::new(DEFAULT_MAX_LINE_BYTES);
    let mut line_number = 0;
    let mut open_since: Option<usize> = None;
    let mut buffer = vec![0; 1 << 16];
    let mut lines = Vec::new();
    loop {
        let read = reader.read(&mut buffer).context("cannot read the input")?;
        match buffer.get(..read) {
            Some(chunk) if read > 0 => framer.push(chunk, &mut lines),
            _ => lines.extend(framer.finish()),
        }
        for line in lines.drain(..) {
            line_number += 1;
            match assembler.push_line(line) {
                Some(frame) => document(open_since.take().unwrap_or(line_number), frame)?,
                None => {
                    open_since.get_or_insert(line_number);
                }
            }
        }
        if read == 0 {
            if let Some(frame) = assembler.finish() {
                document(open_since.unwrap_or(line_number), frame)?;
            }
            return Ok(());
        }
    }
}

struct Explainer<'a, W: Write> {
    policy: &'a Policy,
    why: bool,
    input_name: String,
    failures: usize,
    out: W,
}

impl<W: Write> Explainer<'_, W> {
    fn document(&mut self, line: usize, frame: Frame) -> anyhow::Result<()> {
        let source: Arc<str> = "policy-explain".into();
        let mut events: Vec<Event> = Vec::new();
        let mut failures: Vec<InputFailure> = Vec::new();
        decode_frame(frame, &source, &mut events, &mut failures);
        for failure in failures {
            self.failures += 1;
            eprintln!(
                "error: {}:{line}: {} ({})",
                self.input_name, failure.message, failure.error_type
            );
        }
        for event in &events {
            if let Some(audit) = event.as_audit() {
                let line = self.explain(audit);
                serde_json::to_writer(&mut self.out, &line)?;
                self.out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn explain(&self, event: &AuditEvent) -> Value {
        let header = event.header();
        let request = RequestAttributes::of(header);
        let decision = self.policy.decide(&request);
        let mut line = json!({
            "auditID": header.audit_id(),
            "stage": header.stage().as_str(),
            "level": decision.level.as_str(),
            "rule": decision.rule,
            "omitted": decision.omits(header.stage()),
        });
        if self.why {
            let why: Vec<Value> = self
                .policy
                .explain(&request)
                .into_iter()
                .map(|mismatch| {
                    let failed: Vec<Value> = mismatch
                        .failed
                        .iter()
                        .map(|field| json!({"field": field, "request": request.describe(field)}))
                        .collect();
                    json!({"rule": mismatch.rule, "failed": failed})
                })
                .collect();
            line["why"] = Value::Array(why);
        }
        line
    }
}
