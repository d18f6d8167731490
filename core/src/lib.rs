#![warn(missing_docs)]
//! auditflow-core: what every auditflow component stands on.
//!
//! - [`event`]: the audit event model (typed header, raw bodies, lossless text),
//!   alerts and records;
//! - [`ack`]: end-to-end acknowledgements;
//! - [`backoff`]: the exponential, jittered wait between two attempts;
//! - [`condition`]: Falco's condition language over audit events;
//! - [`config`]: the TOML pipeline configuration and its validation;
//! - [`component`]: the contract every source, transform and sink follows;
//! - [`topology`]: the graph of tasks and bounded channels that runs a pipeline;
//! - [`metrics`]: the internal metrics registry rendered on `/metrics`;
//! - [`template`]: `{{ field }}` and strftime templates over events (topics, index names, keys);
//! - [`throttle`]: warnings that repeat per record, logged once per interval;
//! - [`generate`]: deterministic synthetic audit traffic for demos, tests and benchmarks.

pub mod ack;
pub mod backoff;
pub mod component;
pub mod condition;
pub mod config;
pub mod dir_lock;
pub mod event;
pub mod generate;
pub mod metrics;
pub mod template;
pub mod throttle;
pub mod topology;
