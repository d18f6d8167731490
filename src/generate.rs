//! `auditflow generate`: synthetic audit traffic on standard output.
//!
//! Same seed and options → same bytes. `--rate` paces the output in real time
//! (for tailing and lag tests); without it events are written as fast as possible.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use auditflow_core::generate::{Generator, GeneratorOptions, OutputFormat};
use chrono::{DateTime, Utc};

/// Options of `auditflow generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// How many events to write.
    #[arg(long)]
    pub count: u64,
    /// The seed of the random stream: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `ndjson` (one event a line) or `eventlist` (EventList documents of up to 400 events, one a line).
    #[arg(long, value_enum, default_value = "ndjson")]
    pub format: FormatArg,
    /// Write at most this many events per second of real time (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The simulated time of the first event (RFC 3339); default 2026-01-01T00:00:00Z.
    #[arg(long)]
    pub start: Option<DateTime<Utc>>,
    /// Simulated traffic density: the events' timestamps advance at this many events per second.
    #[arg(long, default_value_t = 1000.0)]
    pub events_per_second: f64,
    /// Add six security incidents at fixed times of the start's UTC day (see the README).
    #[arg(long)]
    pub incidents: bool,
}

/// The output format on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// One event a line.
    Ndjson,
    /// `EventList` documents, one a line.
    Eventlist,
}

/// How many events are written between two pacing checks with `--rate`.
const PACED_CHUNK: u64 = 100;

/// Writes the events.
pub fn generate(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    if !(args.events_per_second.is_finite() && args.events_per_second > 0.0) {
        anyhow::bail!("--events-per-second must be a positive number");
    }
    if args
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        anyhow::bail!("--rate must be a positive number of events per second");
    }
    let mut options = GeneratorOptions {
        seed: args.seed,
        events_per_second: args.events_per_second,
        incidents: args.incidents,
        ..GeneratorOptions::default()
    };
    if let Some(start) = args.start {
        options.start = start;
    }
    let format = match args.format {
        FormatArg::Ndjson => OutputFormat::Ndjson,
        FormatArg::Eventlist => OutputFormat::EventList,
    };
    let mut generator = Generator::new(options);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = match args.rate {
        None => generator.write_events(args.count, format, &mut out),
        Some(rate) => write_paced(&mut generator, args.count, format, rate, &mut out),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A closed pipe (`generate | head`) is a normal way to stop.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error).context("cannot write the events to standard output"),
    }
}

fn write_paced(
    generator: &mut Generator,
    count: u64,
    format: OutputFormat,
    rate: f64,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let started = Instant::now();
    let mut done = 0;
    while done < count {
        let chunk = PACED_CHUNK.min(count - done);
        generator.write_events(chunk, format, out)?;
        out.flush()?;
        done += chunk;
        let due = started + Duration::from_secs_f64(done as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}
