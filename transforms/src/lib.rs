#![warn(missing_docs)]
//! auditflow-transforms: what happens to events between sources and sinks.
//!
//! One module per transform `type`; [`register`] adds them all to a catalog.

pub mod audit_policy;
pub mod detect;
pub mod filter;
pub mod redact;
pub mod route;
pub mod timeshift;

use auditflow_core::component::{Catalog, ComponentSpec};
use auditflow_core::condition::Condition;
use auditflow_core::config::OptionError;

/// Registers every transform type.
pub fn register(catalog: &mut Catalog) {
    catalog.register("detect", ComponentSpec::Transform(detect::parse));
    catalog.register("filter", ComponentSpec::Transform(filter::parse));
    catalog.register("route", ComponentSpec::Transform(route::parse));
    catalog.register(
        "audit_policy",
        ComponentSpec::Transform(audit_policy::parse),
    );
    catalog.register("redact", ComponentSpec::Transform(redact::parse));
    catalog.register("timeshift", ComponentSpec::Transform(timeshift::parse));
}

/// Compiles a condition option, naming the option and position of a syntax error.
pub(crate) fn compile_condition(field: &str, text: &str) -> Result<Condition, Vec<OptionError>> {
    Condition::compile(text).map_err(|error| vec![OptionError::new(field, error.to_string())])
}
