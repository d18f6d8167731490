//! The `filter` transform: passes the events that match a condition, drops the others.
//!
//! Dropped events count as handled: their acknowledgement resolves as delivered.
//!
//! ```toml
//! [transforms.writes]
//! type = "filter"
//! inputs = ["in"]
//! condition = "ka.verb in (create, update, patch, delete)"
//! ```

use auditflow_core::component::{Transform, TransformConfig, TransformContext, TransformOutput};
use auditflow_core::condition::Condition;
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::Event;
use auditflow_core::metrics::Counter;
use serde::Deserialize;

use crate::compile_condition;

/// Options of the `filter` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterOptions {
    condition: String,
}

/// A checked `filter` configuration.
pub struct FilterConfig {
    condition: Condition,
}

/// Checks the options table of a `filter` transform.
pub fn parse(options: &toml::Table) -> Result<Box<dyn TransformConfig>, Vec<OptionError>> {
    let options: FilterOptions = parse_options(options)?;
    let condition = compile_condition("condition", &options.condition)?;
    Ok(Box::new(FilterConfig { condition }))
}

impl TransformConfig for FilterConfig {
    fn runs_inline(&self) -> bool {
        true
    }

    fn build(&self, context: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        Ok(Box::new(Filter {
            condition: self.condition.clone(),
            discarded: context.metrics.discarded_events.clone(),
        }))
    }
}

struct Filter {
    condition: Condition,
    discarded: Counter,
}

impl Transform for Filter {
    fn transform(&mut self, batch: Vec<Event>, output: &mut TransformOutput) {
        let before = batch.len();
        let mut kept = 0;
        for event in batch {
            if self.condition.matches(&event) {
                output.push(event);
                kept += 1;
            }
        }
        self.discarded.add((before - kept) as u64);
    }
}
