#![warn(missing_docs)]
//! auditflow-sources: where audit events enter a pipeline.
//!
//! One module per source `type`; [`register`] adds them all to a catalog.
//! [`framing`] and [`decode`] are the shared pieces every JSON-reading source
//! uses: bounded line and document framing, and decoding into events or
//! `errors` records.

pub mod decode;
pub mod file;
pub mod framing;
pub mod kafka;
pub mod stdin;
pub mod webhook;

use auditflow_core::component::{Catalog, ComponentSpec};

/// Registers every source type.
pub fn register(catalog: &mut Catalog) {
    catalog.register("file", ComponentSpec::Source(file::parse));
    catalog.register(kafka::TYPE_NAME, ComponentSpec::Source(kafka::parse));
    catalog.register("stdin", ComponentSpec::Source(stdin::parse));
    catalog.register("webhook", ComponentSpec::Source(webhook::parse));
}
