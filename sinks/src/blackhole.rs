//! The `blackhole` sink: acknowledges and discards events, optionally at a set rate.
//!
//! With `rate = N`, it takes at most N events per second on average, which
//! makes it a slow sink on demand: the way to see backpressure reach the
//! sources, in tests and benchmarks.
//!
//! ```toml
//! [sinks.void]
//! type = "blackhole"
//! inputs = ["in"]
//! rate = 1000        # events per second; unlimited when absent
//! ```

use std::time::{Duration, Instant};

use auditflow_core::component::{ComponentTask, SinkConfig, SinkContext};
use auditflow_core::config::{parse_options, OptionError};
use serde::Deserialize;

/// Options of the `blackhole` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {
    /// Events per second at most; unlimited when absent.
    #[serde(default)]
    pub rate: Option<u64>,
}

/// Checks the options table of a `blackhole` sink.
pub fn parse(options: &toml::Table) -> Result<Box<dyn SinkConfig>, Vec<OptionError>> {
    let config: BlackholeConfig = parse_options(options)?;
    if config.rate == Some(0) {
        return Err(vec![OptionError::new(
            "rate",
            "must be at least 1 event per second; remove it for no limit",
        )]);
    }
    Ok(Box::new(config))
}

impl SinkConfig for BlackholeConfig {
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask> {
        Ok(Box::pin(run(self.rate, context)))
    }
}

async fn run(rate: Option<u64>, mut context: SinkContext) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut taken: u64 = 0;
    while let Some(batch) = context.input.recv().await {
        taken += batch.len() as u64;
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(taken as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let bytes = batch.iter().map(|event| event.json_size()).sum();
        context.delivered(batch, bytes);
    }
    Ok(())
}
