//! `auditflow generate`: synthetic audit traffic on standard output.

use std::process::ExitCode;

/// Options of `auditflow generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// How many events to write.
    #[arg(long)]
    pub count: u64,
}

/// Writes the events.
pub fn generate(_args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("generate is not built yet")
}
