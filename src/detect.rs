//! `auditflow detect`: runs detection rules over audit events and prints the alerts.
//!
//! Input is NDJSON, or JSON documents holding an `Event` or an `EventList`
//! (pretty-printed or not), from the files given or standard input; it is
//! decoded exactly as the `stdin` source decodes it. Alerts go to standard
//! output as NDJSON in Falco's JSON output form; inputs that are not audit
//! events are reported on standard error. Stateful rules keep their state in
//! memory for the run.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use auditflow_sources::decode::{Decoded, StreamDecoder};
use auditflow_sources::stdin::DEFAULT_MAX_LINE_BYTES;
use auditflow_transforms::detect::{default_hostname, load_rules, DetectState, Engine};

/// Options of `auditflow detect`.
#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// A rule file (Falco format); repeat to load several, in order.
    #[arg(long = "rules", required = true)]
    pub rules: Vec<PathBuf>,
    /// Input files; standard input when none is given.
    pub inputs: Vec<PathBuf>,
    /// The `hostname` the alerts carry (default: this host's name).
    #[arg(long)]
    pub hostname: Option<String>,
}

/// Runs the rules over the inputs, printing alerts as NDJSON.
pub fn detect(args: &DetectArgs) -> anyhow::Result<ExitCode> {
    let loaded = load_rules(&args.rules)?;
    for notice in &loaded.notices {
        eprintln!("notice: {notice}");
    }
    let hostname = args.hostname.clone().unwrap_or_else(default_hostname);
    let mut run = Run {
        engine: Engine::new(loaded.rules, DetectState::new(1_000_000), hostname.into()),
        out: BufWriter::new(std::io::stdout().lock()),
        alerts: 0,
        events: 0,
        failures: 0,
    };
    if args.inputs.is_empty() {
        run.read("stdin", std::io::stdin().lock())?;
    }
    for path in &args.inputs {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open the input {}", path.display()))?;
        run.read(&path.display().to_string(), file)?;
    }
    run.out.flush()?;
    eprintln!(
        "{} event(s), {} alert(s){}",
        run.events,
        run.alerts,
        match run.failures {
            0 => String::new(),
            n => format!(", {n} input(s) that are not audit events"),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// One run over several inputs.
struct Run<W: Write> {
    engine: Engine,
    out: W,
    alerts: u64,
    events: u64,
    failures: u64,
}

impl<W: Write> Run<W> {
    fn read(&mut self, name: &str, mut input: impl Read) -> anyhow::Result<()> {
        let mut decoder = StreamDecoder::new(name.into(), DEFAULT_MAX_LINE_BYTES);
        let mut buffer = vec![0; 256 * 1024];
        loop {
            let read = input
                .read(&mut buffer)
                .with_context(|| format!("cannot read {name}"))?;
            if read == 0 {
                break;
            }
            let chunk = buffer.get(..read).unwrap_or_default();
            let decoded = decoder.push(chunk);
            self.evaluate(name, decoded)?;
        }
        let rest = decoder.finish();
        self.evaluate(name, rest)
    }

    fn evaluate(&mut self, name: &str, decoded: Decoded) -> anyhow::Result<()> {
        for failure in &decoded.failures {
            self.failures += 1;
            eprintln!("{name}: skipped: {}", failure.message);
        }
        let mut matches = Vec::new();
        for event in &decoded.events {
            self.events += 1;
            self.engine.evaluate(event, &mut matches);
        }
        let mut line = Vec::new();
        for found in matches {
            self.alerts += 1;
            line.clear();
            found.alert.write_json(&mut line)?;
            line.push(b'\n');
            self.out.write_all(&line)?;
        }
        Ok(())
    }
}
