//! The `route` transform: sends each event to every named output whose condition it matches.
//!
//! Outputs are `ID.NAME` for each route and `ID._unmatched` for events that
//! match none. An event matching several routes goes to each of them.
//!
//! ```toml
//! [transforms.by_namespace]
//! type = "route"
//! inputs = ["in"]
//! [transforms.by_namespace.route]
//! prod = "ka.target.namespace in (production, prod)"
//! system = "ka.target.namespace startswith kube-"
//! ```

use auditflow_core::component::{Transform, TransformConfig, TransformContext, TransformOutput};
use auditflow_core::condition::Condition;
use auditflow_core::config::{parse_options, OptionError};
use auditflow_core::event::Event;
use indexmap::IndexMap;
use serde::Deserialize;

use crate::compile_condition;

/// The output that receives events matching no route.
pub const UNMATCHED_OUTPUT: &str = "_unmatched";

/// Options of the `route` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteOptions {
    route: IndexMap<String, String>,
}

/// A checked `route` configuration.
pub struct RouteConfig {
    routes: Vec<(String, Condition)>,
}

/// Checks the options table of a `route` transform.
pub fn parse(options: &toml::Table) -> Result<Box<dyn TransformConfig>, Vec<OptionError>> {
    let options: RouteOptions = parse_options(options)?;
    let mut routes = Vec::new();
    let mut errors = Vec::new();
    if options.route.is_empty() {
        errors.push(OptionError::new(
            "route",
            "declare at least one route: NAME = \"condition\"",
        ));
    }
    for (name, text) in &options.route {
        let field = format!("route.{name}");
        if !valid_output_name(name) {
            errors.push(OptionError::new(
                field.clone(),
                "a route name may hold only letters, digits, `_` and `-`, and `errors` and `_unmatched` are taken",
            ));
        }
        match compile_condition(&field, text) {
            Ok(condition) => routes.push((name.clone(), condition)),
            Err(mut condition_errors) => errors.append(&mut condition_errors),
        }
    }
    if errors.is_empty() {
        Ok(Box::new(RouteConfig { routes }))
    } else {
        Err(errors)
    }
}

fn valid_output_name(name: &str) -> bool {
    !name.is_empty()
        && name != UNMATCHED_OUTPUT
        && name != auditflow_core::component::ERRORS_OUTPUT
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl TransformConfig for RouteConfig {
    fn named_outputs(&self) -> Vec<String> {
        let mut names: Vec<String> = self.routes.iter().map(|(name, _)| name.clone()).collect();
        names.push(UNMATCHED_OUTPUT.to_string());
        names
    }

    fn has_default_output(&self) -> bool {
        false
    }

    fn build(&self, _context: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        Ok(Box::new(Route {
            conditions: self.routes.iter().map(|(_, c)| c.clone()).collect(),
        }))
    }
}

struct Route {
    conditions: Vec<Condition>,
}

impl Transform for Route {
    fn transform(&mut self, batch: Vec<Event>, output: &mut TransformOutput) {
        let unmatched = self.conditions.len();
        for event in batch {
            let mut matched = false;
            for (index, condition) in self.conditions.iter().enumerate() {
                if condition.matches(&event) {
                    output.push_named(index, event.clone());
                    matched = true;
                }
            }
            if !matched {
                output.push_named(unmatched, event);
            }
        }
    }
}
