//! The `auditflow` command: run, check and feed audit pipelines.
//!
//! - `auditflow run [--config FILE] [--once]`: runs a pipeline;
//! - `auditflow validate [--config FILE]`: checks a configuration and prints every error;
//! - `auditflow generate --count N`: writes synthetic audit traffic;
//! - `auditflow detect --rules FILE [INPUT ...]`: prints the alerts rules raise on audit events;
//! - `auditflow test [--config FILE]`: runs the rule unit tests of a pipeline's detect transforms.
//! - `auditflow policy explain --policy FILE [INPUT]`: which audit policy rule decides each event.
//! - `auditflow query`: searches the local store.

mod api;
mod catalog;
mod detect;
mod generate;
mod policy;
mod query;
mod run;
mod test;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: an event is a handful of small allocations made on one thread and
/// freed on another; glibc's allocator spent about a third of the pipeline's
/// time on them in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A streaming pipeline for Kubernetes audit events.
#[derive(Debug, Parser)]
#[command(name = "auditflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline.
    Run {
        /// The pipeline configuration.
        #[arg(long, short, default_value = "pipeline.toml")]
        config: PathBuf,
        /// Stop once every source that can end (stdin, files read to their end) has ended.
        #[arg(long)]
        once: bool,
    },
    /// Check a pipeline configuration; print every error and exit non-zero if there is one.
    Validate {
        /// The pipeline configuration.
        #[arg(long, short, default_value = "pipeline.toml")]
        config: PathBuf,
    },
    /// Write realistic synthetic audit events to standard output.
    Generate(generate::GenerateArgs),
    /// Run detection rules over audit events; print the alerts as NDJSON.
    Detect(detect::DetectArgs),
    /// Run the rule unit tests of the pipeline's detect transforms.
    Test {
        /// The pipeline configuration.
        #[arg(long, short, default_value = "pipeline.toml")]
        config: PathBuf,
    },
    /// Work with Kubernetes audit policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Search the events and alerts of a pipeline's local_store, newest first.
    Query(Box<query::QueryArgs>),
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, once } => run::run(&config, once),
        Command::Validate { config } => validate::validate(&config),
        Command::Generate(args) => generate::generate(&args),
        Command::Detect(args) => detect::detect(&args),
        Command::Test { config } => test::test(&config),
        Command::Policy(command) => policy::policy(&command),
        Command::Query(args) => query::query(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUDITFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
