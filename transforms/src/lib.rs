//! auditflow-transforms: what happens to events between sources and sinks.
//!
//! One module per transform `type`; [`register`] adds them all to a catalog.

use auditflow_core::component::Catalog;

/// Registers every transform type.
pub fn register(_catalog: &mut Catalog) {}
