#![warn(missing_docs)]
//! auditflow-clients: the client libraries that a source and a sink share,
//! each with its connection options and setup written once.
//!
//! - [`kafka`]: librdkafka (the `kafka` source and sink).
//!
//! Heavy client libraries live here and in the components that use them,
//! never in `auditflow-core`.

pub mod kafka;
